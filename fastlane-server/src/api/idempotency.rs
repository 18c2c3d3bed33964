//! `Idempotency-Key` on submissions (`POST /tasks/{taskId}`, `PUT
//! /tasks/{taskId}/jobs/{jobId}` and `POST …/retry`): a client that sends a request again
//! (its connection dropped, it timed out) with the same key gets the first
//! answer, and nothing is created twice.
//!
//! The key's record (a fingerprint of the request, the answer) is written
//! in the transaction that writes the job ([`crate::store::Store::submit`]),
//! so the key exists exactly when the job does; of concurrent requests with
//! one key, one writes and the others find its record. The same key with
//! another request (another route, task or body) is a 409 naming the key.
//! Keys are kept for `IDEMPOTENCY_TTL_SECONDS` (24 h by default).

use poem_openapi::types::{ParseFromJSON, ToJSON};

use super::error::ApiError;
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

    /// The first answer, when the key was used before (or the 409 of
    /// another request); `None` when it is free.
    pub async fn earlier<T: ParseFromJSON>(
        &self,
        store: &dyn crate::store::Store,
        now_ms: i64,
        operation: &'static str,
    ) -> Result<Option<T>, ApiError> {
        match store
            .idempotency(&self.key, now_ms)
            .await
            .map_err(ApiError::store(operation))?
        {
            Some(record) => self.replay(&record, operation).map(Some),
            None => Ok(None),
        }
    }

    /// The answer of the request that took the key while this one was
    /// being written ([`crate::store::Store::submit`] said `false`).
    pub async fn winner<T: ParseFromJSON>(
        &self,
        store: &dyn crate::store::Store,
        now_ms: i64,
        operation: &'static str,
    ) -> Result<T, ApiError> {
        self.earlier(store, now_ms, operation).await?.ok_or_else(|| {
            ApiError::conflict(
                operation,
                format!(
                    "the Idempotency-Key {:?} was just used and has expired; send the request again",
                    self.key
                ),
            )
        })
    }

    /// The record that makes `answer` this key's answer until `expires_ms`.
    pub fn record(&self, answer: &impl ToJSON, expires_ms: i64) -> IdempotencyRecord {
        IdempotencyRecord {
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            response: answer.to_json_string(),
            expires_ms,
        }
    }

    /// The first answer again, when `record` was made by the same request;
    /// a 409 otherwise.
    pub fn replay<T: ParseFromJSON>(
        &self,
        record: &IdempotencyRecord,
        operation: &str,
    ) -> Result<T, ApiError> {
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
        T::parse_from_json(Some(value))
            .map_err(|e| ApiError::internal(operation, format!("stored answer: {}", e.message())))
    }
}
