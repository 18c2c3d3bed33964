//! `Idempotency-Key` on submissions (`POST /tasks/{taskId}` and `PUT
//! /tasks/{taskId}/jobs/{jobId}`): a client that sends a request again
//! (its connection dropped, it timed out) with the same key gets the first
//! answer, and nothing is created twice.
//!
//! The key's record (a fingerprint of the request, the answer) is written
//! in the transaction that writes the job ([`crate::store::Store::create_job`]),
//! so the key exists exactly when the job does; of concurrent requests with
//! one key, one writes and the others find its record. The same key with
//! another request (another route, task or body) is a 409 naming the key.
//! Keys are kept for `IDEMPOTENCY_TTL_SECONDS` (24 h by default).

use poem_openapi::types::{ParseFromJSON, ToJSON};

use super::error::ApiError;
use super::views::JobCreated;
use crate::store::IdempotencyRecord;

/// The longest key accepted.
const MAX_KEY: usize = 255;

/// A checked key and the fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    key: String,
    fingerprint: String,
}

impl Idempotency {
    /// The key of a request to `route` (method and path) with `body`, or
    /// the 400 that says why the key is not one; `None` without a key.
    pub fn of(
        key: Option<&str>,
        route: &str,
        body: &serde_json::Value,
        operation: &str,
    ) -> Result<Option<Self>, ApiError> {
        let Some(key) = key else {
            return Ok(None);
        };
        if key.is_empty()
            || key.len() > MAX_KEY
            || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(ApiError::bad_request(
                operation,
                format!(
                    "the Idempotency-Key header must be 1 to {MAX_KEY} printable ASCII characters"
                ),
            ));
        }
        let request = format!("{route}\n{body}");
        let fingerprint = crate::config::hex(&crate::config::sha256(request.as_bytes()));
        Ok(Some(Self {
            key: key.to_owned(),
            fingerprint,
        }))
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The record that makes `answer` this key's answer until `expires_ms`.
    pub fn record(&self, answer: &JobCreated, expires_ms: i64) -> IdempotencyRecord {
        IdempotencyRecord {
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            response: answer.to_json_string(),
            expires_ms,
        }
    }

    /// The first answer again, when `record` was made by the same request;
    /// a 409 otherwise.
    pub fn replay(
        &self,
        record: &IdempotencyRecord,
        operation: &str,
    ) -> Result<JobCreated, ApiError> {
        if record.fingerprint != self.fingerprint {
            return Err(ApiError::conflict(
                operation,
                format!(
                    "the Idempotency-Key {:?} was used with another request (another route, task or body); use a new key for a new request",
                    self.key
                ),
            ));
        }
        let value: serde_json::Value = serde_json::from_str(&record.response)
            .map_err(|e| ApiError::internal(operation, format!("stored answer: {e}")))?;
        JobCreated::parse_from_json(Some(value))
            .map_err(|e| ApiError::internal(operation, format!("stored answer: {}", e.message())))
    }
}
