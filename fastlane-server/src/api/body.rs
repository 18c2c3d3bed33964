//! [`JsonBody`]: a request body read as JSON whatever its content type
//! (`curl -d` sends `application/x-www-form-urlencoded`), with a size limit,
//! and documented with the schema `S` (the handler validates it by hand, to
//! name the field at fault). Its nesting is bounded before it is parsed
//! ([`MAX_BODY_DEPTH`]).

use poem::{Request, RequestBody, error::ReadBodyError};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    payload::{ParsePayload, Payload},
    registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry},
    types::Type,
};
use serde_json::Value;

use std::marker::PhantomData;

use super::job_request::{BatchRequest, JobRequest};

/// The size limit of request bodies, attached to the route as data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The deepest nesting of objects and lists a body may have (the body
/// itself is level 1); deeper bodies are refused before they are parsed.
pub const MAX_BODY_DEPTH: usize = 64;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Empty, not UTF-8 or not JSON.
    Unparseable,
    /// Larger than the limit.
    TooLarge(usize),
    /// Nested deeper than [`MAX_BODY_DEPTH`].
    TooDeep,
}

impl BodyError {
    /// What the answer to the request says.
    pub fn message(&self) -> String {
        match self {
            Self::Unparseable => {
                "Failed to enqueue task because JSON body could not be parsed.".to_owned()
            }
            Self::TooLarge(limit) => {
                format!("the request body is larger than the limit of {limit} bytes")
            }
            Self::TooDeep => {
                format!("the JSON body is nested more than {MAX_BODY_DEPTH} levels deep")
            }
        }
    }
}

/// How deep the JSON text `bytes` nests objects and lists, counted without
/// parsing it (brackets inside strings do not count).
pub fn nesting(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Reads the bytes of a body as JSON, refusing bodies nested deeper than
/// [`MAX_BODY_DEPTH`] before parsing them.
pub fn read_json(bytes: &[u8]) -> Result<Value, BodyError> {
    if nesting(bytes) > MAX_BODY_DEPTH {
        return Err(BodyError::TooDeep);
    }
    serde_json::from_slice(bytes).map_err(|_| BodyError::Unparseable)
}

/// A request body parsed as JSON, or why it could not be; documented as `S`.
#[derive(Debug)]
pub struct JsonBody<S>(pub Result<Value, BodyError>, PhantomData<S>);

/// The body of a job submission.
pub type JobBody = JsonBody<JobRequest>;

/// The body of a batch submission.
pub type BatchBody = JsonBody<BatchRequest>;

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
            Ok(bytes) => read_json(&bytes),
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

#[cfg(test)]
mod tests {
    use super::nesting;

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert_eq!(nesting(b"1"), 0);
        assert_eq!(nesting(br#"{"a": [1, {"b": []}]}"#), 4);
        assert_eq!(nesting(br#"{"a": "[[[[\"{{{"}"#), 1);
        assert_eq!(nesting(&[b'['; 1000]), 1000);
    }
}
