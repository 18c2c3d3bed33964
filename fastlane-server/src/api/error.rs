//! [`ApiError`]: every error the API answers with, as JSON
//! `{"error": "...", "operation": "..."}`.

use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, payload::Json};

use crate::queue::QueueError;
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ErrorBody {
    /// What went wrong, for humans.
    pub error: String,
    /// Which operation failed (`create_job`, `get_task`, …).
    pub operation: String,
    /// The field of the request at fault, when a job request sent to
    /// `POST /tasks/{taskId}` or `PUT …/jobs/{jobId}` was refused for one
    /// (`cron`, `envs.PATH`, `webhooks.succeeds[0].url`), so that a form can
    /// show the error beside it. A batch's refusals name the job in their
    /// text (`jobs[3]: …`) instead.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

/// An error response.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed; nothing was written.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No such task, job or execution.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The `Idempotency-Key` was used with another request.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than `MAX_BODY_BYTES`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// A bug; the error says what failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The store (or, where a route needs it, the queue) is down; nothing
    /// was written, try again later. Submissions need only the store: while
    /// the queue is away they are accepted and queued once it is back.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl poem_openapi::types::Example for ErrorBody {
    fn example() -> Self {
        Self {
            error: "Task (hello-world) or Job (4b1c…) not found.".to_owned(),
            operation: "retrieve_execution_details".to_owned(),
            field: None,
        }
    }
}

fn body(operation: &str, error: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: error.into(),
        operation: operation.to_owned(),
        field: None,
    })
}

impl ApiError {
    /// 400.
    pub fn bad_request(operation: &str, error: impl Into<String>) -> Self {
        Self::BadRequest(body(operation, error))
    }

    /// 400 for a refused job request, naming the field at fault when the
    /// message does ([`super::job_request::field_at_fault`]).
    pub fn bad_job_request(operation: &str, error: String) -> Self {
        let field = super::job_request::field_at_fault(&error);
        let mut body = body(operation, error);
        body.field = field;
        Self::BadRequest(body)
    }

    /// 404.
    pub fn not_found(operation: &str, error: impl Into<String>) -> Self {
        Self::NotFound(body(operation, error))
    }

    /// 409.
    pub fn conflict(operation: &str, error: impl Into<String>) -> Self {
        Self::Conflict(body(operation, error))
    }

    /// 413.
    pub fn too_large(operation: &str, limit: usize) -> Self {
        Self::PayloadTooLarge(body(
            operation,
            super::body::BodyError::TooLarge(limit).message(),
        ))
    }

    /// 500: a bug.
    pub fn internal(operation: &str, error: impl Into<String>) -> Self {
        let error = error.into();
        tracing::error!(operation, error = %error, "internal error");
        Self::Internal(body(operation, error))
    }

    /// 503.
    pub fn unavailable(operation: &str, error: impl Into<String>) -> Self {
        tracing::error!(operation, "unavailable");
        Self::Unavailable(body(operation, error))
    }

    /// A store failure, as a `map_err` argument: 503 when the store is
    /// away (trying again may work), 500 when a stored record cannot be
    /// read (trying again will not).
    pub fn store(operation: &'static str) -> impl Fn(StoreError) -> Self {
        move |err| {
            tracing::error!(operation, error = %err, "store failure");
            match err {
                StoreError::Unavailable(_) => Self::Unavailable(body(operation, err.to_string())),
                StoreError::Corrupt(_) => Self::Internal(body(operation, err.to_string())),
            }
        }
    }

    /// 503 for a queue failure, as a `map_err` argument.
    pub fn queue(operation: &'static str) -> impl Fn(QueueError) -> Self {
        move |err| {
            tracing::error!(operation, error = %err, "queue failure");
            Self::Unavailable(body(operation, err.to_string()))
        }
    }
}

/// The JSON body for an error poem raised itself (unknown route, wrong
/// method), so that every error the server sends has the same shape.
pub fn framework_error(err: poem::Error) -> poem::Response {
    if err.is_from_response() {
        // One of ours (an `ApiError`), already JSON.
        return err.into_response();
    }
    let status = err.status();
    let message = if status == StatusCode::NOT_FOUND {
        "no such route".to_owned()
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        "method not allowed on this route".to_owned()
    } else {
        err.to_string()
    };
    let json = serde_json::json!({"error": message, "operation": "route"});
    poem::Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json.to_string())
}
