//! # fastlane-plugin-email
//!
//! The e-mail [`Notifier`]: one message per address, with the original
//! fastlane's subjects (`[Fastlane] Job <task>/<job> succeeded!`, `… failed
//! with exit code <n>!`, `… finished with exit code <n>!`), a text and an
//! HTML part with the execution's details and links to the task and the job.
//! SMTP over plain TCP, STARTTLS (`startTls`) or implicit TLS
//! (`implicitTls`), with optional login.
//!
//! Register it with [`register`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use serde_json::json;

use fastlane_sdk::{
    Delivery, DeliveryReport, Execution, NotificationEvent, Notifier, NotifierFactory, PluginError,
    Registry,
};

/// The kind this notifier registers under.
pub const KIND: &str = "email";

/// Configuration of the e-mail notifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmailNotifierConfig {
    /// SMTP server host.
    pub host: String,
    /// SMTP server port.
    pub port: u16,
    /// The sender address.
    pub from: String,
    /// Login user, with `password`.
    #[serde(default)]
    pub user: Option<String>,
    /// Login password, with `user`.
    #[serde(default)]
    pub password: Option<String>,
    /// Upgrade the connection with STARTTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// Connect with TLS from the start (SMTPS, usually port 465).
    #[serde(default)]
    pub implicit_tls: bool,
    /// Seconds an SMTP exchange may take.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Largest stdout or stderr included in a message, in bytes.
    #[serde(default = "default_max_log")]
    pub max_log_bytes: usize,
}

fn default_timeout() -> u64 {
    30
}

fn default_max_log() -> usize {
    64 * 1024
}

/// Sends e-mails.
#[derive(Debug)]
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    max_log_bytes: usize,
}

/// Builds [`EmailNotifier`]s.
#[derive(Debug, Default)]
pub struct EmailNotifierFactory;

impl NotifierFactory for EmailNotifierFactory {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn build(&self, config: serde_json::Value) -> Result<Arc<dyn Notifier>, PluginError> {
        let config: EmailNotifierConfig = serde_json::from_value(config)
            .map_err(|e| PluginError::invalid_config(format!("e-mail notifier: {e}")))?;
        let invalid = |e: &dyn std::fmt::Display| PluginError::invalid_config(format!("SMTP: {e}"));
        let from: Mailbox = config.from.parse().map_err(|e| {
            PluginError::invalid_config(format!("SMTP_FROM {:?}: {e}", config.from))
        })?;
        let mut builder = if config.implicit_tls {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host).map_err(|e| invalid(&e))?
        } else if config.start_tls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)
                .map_err(|e| invalid(&e))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
        };
        builder = builder
            .port(config.port)
            .timeout(Some(Duration::from_secs(config.timeout_seconds)));
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Arc::new(EmailNotifier {
            transport: builder.build(),
            from,
            max_log_bytes: config.max_log_bytes,
        }))
    }
}

/// Adds the e-mail notifier to `registry`.
pub fn register(registry: &mut Registry) -> Result<(), PluginError> {
    registry.register_notifier(Box::new(EmailNotifierFactory))
}

/// The subject, as the original wrote it (and without crashing when there
/// is no exit code: timeouts, expirations and stops say their status).
pub fn subject(delivery: &Delivery) -> String {
    let execution = &delivery.execution;
    let job = format!("{}/{}", execution.task_id, execution.job_id);
    let ended = match execution.exit_code {
        Some(code) => format!("with exit code {code}"),
        None => format!("with status {}", execution.status),
    };
    match delivery.event {
        NotificationEvent::Starts => format!("[Fastlane] Job {job} started!"),
        NotificationEvent::Succeeds => format!("[Fastlane] Job {job} succeeded!"),
        NotificationEvent::Fails => format!("[Fastlane] Job {job} failed {ended}!"),
        NotificationEvent::Finishes => format!("[Fastlane] Job {job} finished {ended}!"),
    }
}

fn cap(text: &str, max: usize) -> String {
    fastlane_sdk::text::truncate(text, max).0
}

fn details(execution: &Execution, max_log_bytes: usize) -> String {
    let error: Vec<String> = [execution.error.as_deref(), execution.stderr.as_deref()]
        .into_iter()
        .flatten()
        .map(|e| cap(e, max_log_bytes))
        .collect();
    let details = json!({
        "executionId": execution.execution_id,
        "status": execution.status,
        "exitCode": execution.exit_code,
        "image": execution.image,
        "command": execution.command,
        "createdAt": execution.created_at,
        "startedAt": execution.started_at,
        "finishedAt": execution.finished_at,
        "log": execution.stdout.as_deref().map(|l| cap(l, max_log_bytes)),
        "error": error.join("\n\nstderr:\n"),
    });
    serde_json::to_string_pretty(&details).unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        KIND
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<DeliveryReport, PluginError> {
        let address = delivery
            .target
            .as_str()
            .ok_or_else(|| PluginError::permanent("an e-mail target must be an address"))?;
        let to: Mailbox = address
            .parse()
            .map_err(|e| PluginError::permanent(format!("bad address {address:?}: {e}")))?;
        let details = details(&delivery.execution, self.max_log_bytes);
        let text = format!(
            "Automatic message. Please do not reply to this!\n\nJob Details:\n{details}\n\n\
             Task: {}\nJob: {}\n",
            delivery.task_url, delivery.job_url
        );
        let html = format!(
            "<p>Automatic message. Please do not reply to this!</p>\
             <h3>Job Details</h3><pre><code>{}</code></pre>\
             <p><a href=\"{}\">[View Task Details]</a> <a href=\"{}\">[View Job Details]</a></p>",
            escape(&details),
            escape(&delivery.task_url),
            escape(&delivery.job_url)
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject(delivery))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| PluginError::permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(response) => Ok(DeliveryReport {
                accepted: true,
                status_code: None,
                detail: Some(format!("SMTP {}", response.code())),
            }),
            Err(e) if e.is_permanent() => Err(PluginError::permanent(format!(
                "the SMTP server refused the message to {address}: {e}"
            ))),
            Err(e) => Err(PluginError::retryable(format!(
                "sending to {address} failed: {e}"
            ))),
        }
    }
}
