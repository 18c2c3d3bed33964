//! # fastlane-plugin-webhook
//!
//! The webhook [`Notifier`]: sends an execution's JSON (the original
//! fastlane's payload) to a URL with the hook's method and headers, with
//! `Content-Type: application/json`, a timeout, TLS verification on, and,
//! when a secret is configured, an HMAC-SHA256 signature in
//! `Fastlane-Signature: sha256=<hex>` computed over the exact body bytes.
//!
//! Register it with [`register`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use fastlane_sdk::{
    Delivery, DeliveryReport, Execution, Notifier, NotifierFactory, PluginError, Registry, Webhook,
};

/// The kind this notifier registers under.
pub const KIND: &str = "webhook";

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "Fastlane-Signature";

/// Configuration of the webhook notifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookNotifierConfig {
    /// Seconds before a call is abandoned (and retried).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Check the receiver's TLS certificate (turn off only for tests).
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    /// Sign bodies with HMAC-SHA256 under this secret.
    #[serde(default)]
    pub signing_secret: Option<String>,
    /// Largest stdout or stderr included in a payload, in bytes.
    #[serde(default = "default_max_log")]
    pub max_log_bytes: usize,
}

fn default_timeout() -> u64 {
    10
}

fn default_true() -> bool {
    true
}

fn default_max_log() -> usize {
    64 * 1024
}

/// Calls webhooks.
#[derive(Debug)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    config: WebhookNotifierConfig,
}

/// Builds [`WebhookNotifier`]s.
#[derive(Debug, Default)]
pub struct WebhookNotifierFactory;

impl NotifierFactory for WebhookNotifierFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(&self, config: Value) -> Result<Arc<dyn Notifier>, PluginError> {
        let config: WebhookNotifierConfig = serde_json::from_value(config)
            .map_err(|e| PluginError::invalid_config(format!("webhook notifier: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds))
            .danger_accept_invalid_certs(!config.verify_tls)
            .user_agent(concat!("fastlane/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PluginError::invalid_config(format!("webhook notifier: {e}")))?;
        Ok(Arc::new(WebhookNotifier { client, config }))
    }
}

/// Adds the webhook notifier to `registry`.
pub fn register(registry: &mut Registry) -> Result<(), PluginError> {
    registry.register_notifier(Box::new(WebhookNotifierFactory))
}

use fastlane_sdk::text::truncate as cap;

/// The body sent for `delivery`: the original's execution JSON (with the
/// job's custom metadata and `job_id`), plus the event and the task.
pub fn payload(delivery: &Delivery, max_log_bytes: usize) -> Value {
    let execution: &Execution = &delivery.execution;
    let (log, log_truncated) = cap(
        execution.stdout.as_deref().unwrap_or_default(),
        max_log_bytes,
    );
    let (error, error_truncated) = cap(
        &[execution.error.as_deref(), execution.stderr.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n\nstderr:\n"),
        max_log_bytes,
    );
    json!({
        "event": delivery.event.as_str(),
        "taskId": execution.task_id,
        "job_id": execution.job_id,
        "jobUrl": delivery.job_url,
        "executionId": execution.execution_id,
        "createdAt": execution.created_at,
        "requestIPAddress": execution.request_ip,
        "startedAt": execution.started_at,
        "finishedAt": execution.finished_at,
        "image": execution.image,
        "command": execution.command,
        "metadata": {
            "custom": delivery.job.spec.custom.clone().unwrap_or_default(),
            "docker_host": execution.placement.as_ref().map(|p| p.host.clone()),
            "container_id": execution.handle.as_ref().map(|h| h.id.clone()),
        },
        "status": execution.status,
        "exitCode": execution.exit_code,
        "log": execution.stdout.as_ref().map(|_| log),
        "error": (execution.error.is_some() || execution.stderr.is_some()).then_some(error),
        "logTruncated": log_truncated,
        "errorTruncated": error_truncated,
    })
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        KIND
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<DeliveryReport, PluginError> {
        let hook: Webhook = serde_json::from_value(delivery.target.clone())
            .map_err(|e| PluginError::permanent(format!("not a webhook: {e}")))?;
        let method = hook.method.as_deref().unwrap_or("POST");
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| PluginError::permanent(format!("bad method {method:?}")))?;
        let body = serde_json::to_vec(&payload(delivery, self.config.max_log_bytes))
            .map_err(|e| PluginError::permanent(e.to_string()))?;
        let mut request = self
            .client
            .request(method, &hook.url)
            .header("Content-Type", "application/json")
            .header("Fastlane-Event", delivery.event.as_str());
        for (name, value) in &hook.headers {
            request = request.header(name, value);
        }
        if let Some(secret) = &self.config.signing_secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| PluginError::retryable(format!("calling {} failed: {e}", hook.url)))?;
        let status = response.status();
        Ok(DeliveryReport {
            accepted: status.as_u16() < 400,
            status_code: Some(status.as_u16()),
            detail: Some(format!("{} answered {status}", hook.url)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
