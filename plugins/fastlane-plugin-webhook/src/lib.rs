//! # fastlane-plugin-webhook
//!
//! The webhook [`Notifier`]: sends an execution's JSON (the original
//! fastlane's payload) to a URL with the hook's method and headers, with
//! `Content-Type: application/json`, a timeout, TLS verification on, and,
//! when a secret is configured, an HMAC-SHA256 signature in
//! `Fastlane-Signature: sha256=<hex>` computed over the exact body bytes.
//!
//! Calls obey the [`egress`] policy: a literal address is checked before
//! the call and on every redirect (at most [`MAX_REDIRECTS`]); a host name
//! is checked address by address when it is resolved, and the connection
//! goes only to an address that passed, so a DNS answer that changes
//! between check and call cannot slip through. No proxy from the
//! environment is used. At most [`MAX_RESPONSE_BYTES`] of a response body
//! are read. Messages name the receiver by host, never by its full URL
//! (which may carry credentials).
//!
//! Register it with [`register`].

pub mod egress;

use std::net::SocketAddr;
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

use egress::{EgressPolicy, Refusal};

/// The kind this notifier registers under.
pub const KIND: &str = "webhook";

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "Fastlane-Signature";

/// Redirects followed per call, each checked against the egress policy.
pub const MAX_REDIRECTS: usize = 5;

/// The most of a receiver's response body that is read (the rest is
/// dropped with the connection).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

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
    /// Let webhooks call loopback and private addresses
    /// (`WEBHOOKS_ALLOW_LOCAL_NETWORK`).
    #[serde(default)]
    pub allow_local_network: bool,
    /// Hosts (names, addresses, CIDR blocks) webhooks may call on the local
    /// network (`WEBHOOKS_ALLOWED_HOSTS`).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl WebhookNotifierConfig {
    /// The egress policy this configuration sets.
    pub fn egress_policy(&self) -> Result<EgressPolicy, egress::BadAllowedHost> {
        EgressPolicy::new(self.allow_local_network, &self.allowed_hosts)
    }
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
    policy: Arc<EgressPolicy>,
}

/// Resolves host names through the system resolver and keeps only the
/// addresses the egress policy allows; with none left, the call fails with
/// the policy's [`Refusal`].
#[derive(Debug)]
struct PolicyResolver {
    policy: Arc<EgressPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match policy.check_addr(Some(&host), addr.ip()) {
                    Ok(()) => true,
                    Err(refused) => {
                        refusal.get_or_insert(refused);
                        false
                    }
                })
                .collect();
            match refusal {
                Some(refused) if allowed.is_empty() => Err(refused.into()),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// Follows at most [`MAX_REDIRECTS`] redirects, each to a URL the policy
/// allows (a host name's addresses are checked when it is resolved).
fn redirect_policy(policy: Arc<EgressPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            let error = format!("more than {MAX_REDIRECTS} redirects");
            return attempt.error(error);
        }
        match policy.check_parsed_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

/// `scheme://host:port` of `url`, without credentials, path or query.
fn receiver_name(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or_default();
            match parsed.port() {
                Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
                None => format!("{}://{host}", parsed.scheme()),
            }
        }
        Err(_) => "the webhook URL".to_owned(),
    }
}

/// A transport error with its causes, without the URL it was for.
fn describe(error: reqwest::Error) -> (String, bool) {
    let refused = error_chain(&error).any(|e| e.downcast_ref::<Refusal>().is_some());
    let error = error.without_url();
    (fastlane_sdk::text::error_chain(&error), refused)
}

fn error_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| (*e).source())
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
        let policy = Arc::new(
            config
                .egress_policy()
                .map_err(|e| PluginError::invalid_config(format!("webhook notifier: {e}")))?,
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds))
            .danger_accept_invalid_certs(!config.verify_tls)
            .user_agent(concat!("fastlane/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: Arc::clone(&policy),
            }))
            .redirect(redirect_policy(Arc::clone(&policy)))
            .build()
            .map_err(|e| PluginError::invalid_config(format!("webhook notifier: {e}")))?;
        Ok(Arc::new(WebhookNotifier {
            client,
            config,
            policy,
        }))
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
        let receiver = receiver_name(&hook.url);
        self.policy
            .check_url(&hook.url)
            .map_err(|refused| PluginError::permanent(format!("{receiver}: {refused}")))?;
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
        let mut response = request.body(body).send().await.map_err(|e| {
            let (text, refused) = describe(e);
            let message = format!("calling {receiver} failed: {text}");
            if refused {
                PluginError::permanent(message)
            } else {
                PluginError::retryable(message)
            }
        })?;
        let status = response.status();
        // Read a little of the body, so that a small answer completes the
        // exchange, but never more than the cap, whatever the receiver sends.
        let mut read = 0;
        while read < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        drop(response);
        Ok(DeliveryReport {
            accepted: status.as_u16() < 400,
            status_code: Some(status.as_u16()),
            detail: Some(format!("{receiver} answered {status}")),
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
