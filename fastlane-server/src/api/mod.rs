//! The HTTP API: poem-openapi operations grouped by area, the OpenAPI
//! document at `/openapi.json`, Swagger UI at `/docs`, the admin UI at
//! `/ui/`.
//!
//! Every route answers with and without a trailing slash, and every error
//! (the framework's own 404 and 405 included) is JSON
//! `{"error": …, "operation": …}`.

mod access;
mod activity;
mod blacklist;
mod body;
mod control;
mod document;
mod error;
mod executions;
mod flow;
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod idempotency;
mod job_request;
mod labels;
mod logs;
mod ordered;
mod params;
mod requests;
mod submit;
mod task_jobs;
mod tasks;
mod ui;
mod views;

use poem::http::{StatusCode, header};
use poem::middleware::{Compression, NormalizePath, TrailingSlash};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Route};
use poem_openapi::{OpenApiService, Tags};

use crate::services::Services;
use crate::urls::Urls;
pub use body::BodyLimit;

/// Groups of operations in the document.
#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Health and farm status.
    Health,
    /// Tasks: named groups of jobs.
    Tasks,
    /// Jobs: what users submit.
    Jobs,
    /// Executions: runs of a job, and their output.
    Executions,
}

type Apis = (
    health::HealthApi,
    activity::ActivityApi,
    tasks::TasksApi,
    task_jobs::TaskJobsApi,
    control::ControlApi,
    executions::ExecutionsApi,
    blacklist::BlacklistApi,
    flow::FlowApi,
    logs::LogsApi,
);

/// The OpenAPI service: the operations and their document.
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            health::HealthApi,
            activity::ActivityApi,
            tasks::TasksApi,
            task_jobs::TaskJobsApi,
            control::ControlApi,
            executions::ExecutionsApi,
            blacklist::BlacklistApi,
            flow::FlowApi,
            logs::LogsApi,
        ),
        "fastlane",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Runs commands in containers on a pool of Docker hosts, and keeps the status, \
         exit code, stdout and stderr of every execution.",
    )
}

pub use document::spec_json;

/// The whole HTTP application.
pub fn app(services: Services) -> impl Endpoint {
    let api = service();
    // Swagger UI and /openapi.json show the completed document.
    let document = spec_json();
    let docs_html = api.swagger_ui_html().replace(&api.spec(), &document);
    let docs = poem::endpoint::make_sync(move |_| poem::web::Html(docs_html.clone()));
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    let limit = BodyLimit(services.config.max_body_bytes);
    let access = std::sync::Arc::new(access::Access::new(&services.config));
    let live = logs::LiveLogs::new(services.config.max_websocket_connections);
    Route::new()
        .at("/openapi.json", spec)
        .at("/docs", docs)
        .at("/ui", ui::Ui)
        .at("/ui/*path", ui::Ui)
        .nest("/", api)
        .with(NormalizePath::new(TrailingSlash::Trim))
        .catch_all_error(|err| async move { error::framework_error(err) })
        .with(Compression::new())
        .around(move |endpoint, request| {
            let access = access.clone();
            async move { access.guard(endpoint, request).await }
        })
        .around(|endpoint, request| async move {
            // A 405 says which methods the route does answer (RFC 9110).
            let path = request.uri().path().to_owned();
            let mut response = endpoint.call(request).await?.into_response();
            if response.status() == StatusCode::METHOD_NOT_ALLOWED
                && let Some(allow) = allowed_methods(&path)
                && let Ok(value) = header::HeaderValue::from_str(&allow)
            {
                response.headers_mut().insert(header::ALLOW, value);
            }
            Ok(response)
        })
        .around(requests::observe)
        .data(services)
        .data(limit)
        .data(live)
}

/// The routes of the OpenAPI document (read once): each template's
/// segments, the template, and the methods it answers.
fn routes() -> &'static [(Vec<String>, String, String)] {
    type Routes = Vec<(Vec<String>, String, String)>;
    static ROUTES: std::sync::OnceLock<Routes> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let spec: serde_json::Value = serde_json::from_str(&spec_json()).unwrap_or_default();
        let Some(paths) = spec["paths"].as_object() else {
            return Vec::new();
        };
        paths
            .iter()
            .map(|(template, item)| {
                let segments = template
                    .trim_matches('/')
                    .split('/')
                    .map(str::to_owned)
                    .collect();
                let mut methods: Vec<String> = item
                    .as_object()
                    .map(|o| o.keys().map(|m| m.to_uppercase()).collect())
                    .unwrap_or_default();
                methods.sort();
                (segments, template.clone(), methods.join(", "))
            })
            .collect()
    })
}

/// The route of the document matching `path`.
fn route(path: &str) -> Option<&'static (Vec<String>, String, String)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    routes().iter().find(|(template, _, _)| {
        template.len() == segments.len()
            && template
                .iter()
                .zip(&segments)
                .all(|(t, s)| t.starts_with('{') || t == s)
    })
}

/// The methods the route matching `path` answers, from the OpenAPI
/// document.
fn allowed_methods(path: &str) -> Option<String> {
    route(path).map(|(_, _, methods)| methods.clone())
}

/// The URLs of the response to `request`: on `PUBLIC_BASE_URL`, else on
/// its `Host`.
fn urls_for(request: &Request, services: &Services) -> Urls {
    Urls::new(
        request.header("host"),
        services.config.public_base_url.as_deref(),
    )
}

/// The template of the OpenAPI document's route matching `path`, such as
/// `/tasks/{taskId}`.
pub fn route_template(path: &str) -> Option<&'static str> {
    route(path).map(|(_, template, _)| template.as_str())
}

/// The job `job_id` of task `task_id`, or the 404 saying `not_found`.
async fn find_job(
    services: &Services,
    task_id: &str,
    job_id: &str,
    operation: &'static str,
    not_found: impl FnOnce() -> String,
) -> Result<fastlane_sdk::Job, error::ApiError> {
    services
        .store
        .job(task_id, job_id)
        .await
        .map_err(error::ApiError::store(operation))?
        .ok_or_else(|| error::ApiError::not_found(operation, not_found()))
}

/// The 404 message of job routes.
const JOB_NOT_FOUND: &str = "Job not found in task.";

/// The 404 message of execution routes.
fn task_or_job_not_found(task_id: &str, job_id: &str) -> String {
    format!("Task ({task_id}) or Job ({job_id}) not found.")
}

/// The client's address: `X-Real-Ip`, else the first `X-Forwarded-For`
/// entry, else the peer.
fn client_ip(request: &Request) -> Option<String> {
    let header = |name| {
        request
            .header(name)
            .map(|v: &str| v.split(',').next().unwrap_or_default().trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    header("x-real-ip")
        .or_else(|| header("x-forwarded-for"))
        .or_else(|| {
            request
                .remote_addr()
                .as_socket_addr()
                .map(|a| a.ip().to_string())
        })
}
