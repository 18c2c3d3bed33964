//! [`JsonBody`]: a request body read as JSON whatever its content type
//! (`curl -d` sends `application/x-www-form-urlencoded`), with a size limit,
//! and documented with the schema `S` (the handler validates it by hand, to
//! name the field at fault).

use poem::{Request, RequestBody, error::ReadBodyError};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    payload::{ParsePayload, Payload},
    registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry},
    types::Type,
};
use serde_json::Value;

use std::marker::PhantomData;

use super::job_request::JobRequest;

/// The size limit of request bodies, attached to the route as data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Empty, not UTF-8 or not JSON.
    Unparseable,
    /// Larger than the limit.
    TooLarge(usize),
}

/// A request body parsed as JSON, or why it could not be; documented as `S`.
#[derive(Debug)]
pub struct JsonBody<S>(pub Result<Value, BodyError>, PhantomData<S>);

/// The body of a job submission.
pub type JobBody = JsonBody<JobRequest>;

impl<S: Type + Send> Payload for JsonBody<S> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(_content_type: &str) -> bool {
        true
    }

    fn schema_ref() -> MetaSchemaRef {
        S::schema_ref()
    }

    fn register(registry: &mut Registry) {
        S::register(registry);
    }
}

impl<S: Type + Send> ParsePayload for JsonBody<S> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let limit = request
            .data::<BodyLimit>()
            .map_or(1024 * 1024, |limit| limit.0);
        let Ok(body) = body.take() else {
            return Ok(Self(Err(BodyError::Unparseable), PhantomData));
        };
        let parsed = match body.into_bytes_limit(limit).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| BodyError::Unparseable),
            Err(ReadBodyError::PayloadTooLarge) => Err(BodyError::TooLarge(limit)),
            Err(_) => Err(BodyError::Unparseable),
        };
        Ok(Self(parsed, PhantomData))
    }
}

// Like poem-openapi's payload extractors, minus their refusal of requests
// without a JSON content type.
impl<'a, S: Type + Send> ApiExtractor<'a> for JsonBody<S> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        <Self as ParsePayload>::from_request(request, body).await
    }
}
