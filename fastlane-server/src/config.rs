//! Configuration: a table of known keys, read from a TOML file and from
//! environment variables of the same names, typed and checked at start-up.
//!
//! The environment wins over the file, the file over the defaults. Every
//! value may be given as a string (as environment variables always are):
//! `"30"` is a fine number and `"false"` a fine boolean. A bad value stops
//! the server with an error that names the key.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A configuration problem, naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The file names a key fastlane does not know.
    #[error("config file {path}: unknown key {key} (`fastlane config` lists the known ones)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A key has a value of the wrong type or out of range.
    #[error("config key {key}: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong with its value.
        message: String,
    },
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Text,
    Integer,
    Float,
    Json,
}

/// One known key: its name, type, default and documentation.
#[derive(Debug)]
struct Key {
    name: &'static str,
    section: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    doc: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "FASTLANE_DATA_DIR",
        section: "General",
        kind: Kind::Text,
        default: Some("fastlane-data"),
        doc: "Where the embedded store and queue keep their files (standalone mode). \
              Relative paths are relative to the working directory.",
    },
    Key {
        name: "PUBLIC_BASE_URL",
        section: "API",
        kind: Kind::Text,
        default: None,
        doc: "The URL clients reach fastlane at, e.g. https://fastlane.example.com. \
              Absolute URLs in responses start with it; when unset they are built from \
              the request's Host header.",
    },
    Key {
        name: "PAGINATION_PER_PAGE",
        section: "API",
        kind: Kind::Integer,
        default: Some("10"),
        doc: "How many tasks a page of GET /tasks/ holds.",
    },
    Key {
        name: "MAX_BODY_BYTES",
        section: "API",
        kind: Kind::Integer,
        default: Some("1048576"),
        doc: "Largest request body accepted; larger ones get 413.",
    },
    Key {
        name: "ENABLE_CORS",
        section: "API",
        kind: Kind::Bool,
        default: Some("true"),
        doc: "Answer browsers' cross-origin requests (CORS).",
    },
    Key {
        name: "CORS_ORIGINS",
        section: "API",
        kind: Kind::Text,
        default: Some("*"),
        doc: "Comma-separated origins allowed to call the API from a browser; * allows any.",
    },
    Key {
        name: "BASIC_AUTH_USERNAME",
        section: "API",
        kind: Kind::Text,
        default: None,
        doc: "With BASIC_AUTH_PASSWORD, every HTTP route asks for these credentials \
              (HTTP Basic authentication).",
    },
    Key {
        name: "BASIC_AUTH_PASSWORD",
        section: "API",
        kind: Kind::Text,
        default: None,
        doc: "The password that goes with BASIC_AUTH_USERNAME.",
    },
    Key {
        name: "BASIC_AUTH_REALM",
        section: "API",
        kind: Kind::Text,
        default: Some(""),
        doc: "The realm named in the WWW-Authenticate header of a 401.",
    },
    Key {
        name: "ENV_BLACKLISTED_WORDS",
        section: "API",
        kind: Kind::Text,
        default: Some("password,key,secret,client_id"),
        doc: "Comma-separated words; an env var whose name contains one of them \
              (case-insensitive) has its value shown as *** in API output.",
    },
    Key {
        name: "DOCKER_HOSTS",
        section: "Docker Executor",
        kind: Kind::Json,
        default: None,
        doc: "Farms of Docker API hosts, as JSON: \
              [{\"match\": \"<task id regex>\", \"hosts\": [\"host:port\", \"unix:///path\"], \"maxRunning\": 10}]. \
              When unset: $DOCKER_HOST, else the first of /var/run/docker.sock, \
              /run/podman/podman.sock and /run/fastlane/podman.sock that exists.",
    },
    Key {
        name: "PRUNE_INTERVAL_SECONDS",
        section: "Docker Executor",
        kind: Kind::Integer,
        default: Some("0"),
        doc: "Every this many seconds, remove the containers of finished executions \
              (as `fastlane prune` does); 0 turns the background pruner off.",
    },
    Key {
        name: "PRUNE_KEEP_NEWEST",
        section: "Docker Executor",
        kind: Kind::Integer,
        default: Some("0"),
        doc: "The background pruner keeps this many of the newest finished containers on each host.",
    },
    Key {
        name: "PRUNE_KEEP_YOUNGER_THAN_SECONDS",
        section: "Docker Executor",
        kind: Kind::Integer,
        default: Some("0"),
        doc: "The background pruner keeps finished containers created less than this long ago.",
    },
    Key {
        name: "HARD_EXECUTION_TIMEOUT_SECONDS",
        section: "Worker",
        kind: Kind::Integer,
        default: Some("1800"),
        doc: "The longest any execution may run, and the timeout of jobs that set none.",
    },
    Key {
        name: "STOP_GRACE_SECONDS",
        section: "Worker",
        kind: Kind::Integer,
        default: Some("10"),
        doc: "When stopping a container (timeout), how long it gets between SIGTERM and SIGKILL.",
    },
    Key {
        name: "EXPONENTIAL_BACKOFF_MIN_MS",
        section: "Worker",
        kind: Kind::Integer,
        default: Some("1000"),
        doc: "Delay before the first retry of a failed execution.",
    },
    Key {
        name: "EXPONENTIAL_BACKOFF_MAX_MS",
        section: "Worker",
        kind: Kind::Integer,
        default: Some("3600000"),
        doc: "The longest delay between retries.",
    },
    Key {
        name: "EXPONENTIAL_BACKOFF_FACTOR",
        section: "Worker",
        kind: Kind::Float,
        default: Some("2"),
        doc: "Each further retry waits this many times longer than the previous one.",
    },
    Key {
        name: "WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS",
        section: "Notifications",
        kind: Kind::Integer,
        default: Some("5000"),
        doc: "Delay before a failed webhook call is tried again.",
    },
    Key {
        name: "WEBHOOKS_EXPONENTIAL_BACKOFF_FACTOR",
        section: "Notifications",
        kind: Kind::Float,
        default: Some("2"),
        doc: "Each further webhook retry waits this many times longer.",
    },
    Key {
        name: "WEBHOOKS_TIMEOUT_SECONDS",
        section: "Notifications",
        kind: Kind::Integer,
        default: Some("10"),
        doc: "How long a webhook call may take before it counts as failed.",
    },
    Key {
        name: "WEBHOOKS_VERIFY_TLS",
        section: "Notifications",
        kind: Kind::Bool,
        default: Some("true"),
        doc: "Check webhook receivers' TLS certificates.",
    },
    Key {
        name: "WEBHOOKS_SIGNING_SECRET",
        section: "Notifications",
        kind: Kind::Text,
        default: None,
        doc: "When set, every webhook body is signed with HMAC-SHA256 under this secret, \
              in the header Fastlane-Signature: sha256=<hex>.",
    },
    Key {
        name: "SMTP_HOST",
        section: "Email",
        kind: Kind::Text,
        default: None,
        doc: "The SMTP server that sends notification e-mails; e-mails are off when unset.",
    },
    Key {
        name: "SMTP_PORT",
        section: "Email",
        kind: Kind::Integer,
        default: Some("25"),
        doc: "The SMTP server's port.",
    },
    Key {
        name: "SMTP_USER",
        section: "Email",
        kind: Kind::Text,
        default: None,
        doc: "Login user for the SMTP server (with SMTP_PASSWORD).",
    },
    Key {
        name: "SMTP_PASSWORD",
        section: "Email",
        kind: Kind::Text,
        default: None,
        doc: "Login password for the SMTP server.",
    },
    Key {
        name: "SMTP_FROM",
        section: "Email",
        kind: Kind::Text,
        default: None,
        doc: "The sender address of notification e-mails (needed with SMTP_HOST).",
    },
    Key {
        name: "SMTP_USE_SSL",
        section: "Email",
        kind: Kind::Bool,
        default: Some("false"),
        doc: "Upgrade SMTP connections with STARTTLS.",
    },
    Key {
        name: "SMTP_IMPLICIT_TLS",
        section: "Email",
        kind: Kind::Bool,
        default: Some("false"),
        doc: "Connect to the SMTP server over TLS from the start (SMTPS, usually port 465).",
    },
    Key {
        name: "SMTP_RETRY_MIN_MS",
        section: "Email",
        kind: Kind::Integer,
        default: Some("5000"),
        doc: "Delay before a failed e-mail is tried again; it doubles each time, up to 10 minutes.",
    },
    Key {
        name: "SMTP_MAX_ATTEMPTS",
        section: "Email",
        kind: Kind::Integer,
        default: Some("30"),
        doc: "How many times an e-mail is tried before it is given up.",
    },
    Key {
        name: "NOTIFICATION_MAX_LOG_BYTES",
        section: "Notifications",
        kind: Kind::Integer,
        default: Some("65536"),
        doc: "Largest stdout or stderr included in a notification; longer ones are cut \
              and marked as truncated.",
    },
    Key {
        name: "SENTRY_DSN",
        section: "Errors",
        kind: Kind::Text,
        default: None,
        doc: "Report failures (pulls, starts, lost containers, notifications given up) to this \
              Sentry project; off when unset.",
    },
    Key {
        name: "SENTRY_ENVIRONMENT",
        section: "Errors",
        kind: Kind::Text,
        default: None,
        doc: "The Sentry environment reports are filed under.",
    },
    Key {
        name: "WORKER_CONCURRENCY",
        section: "Worker",
        kind: Kind::Integer,
        default: Some("8"),
        doc: "How many executions one worker process drives at once.",
    },
    Key {
        name: "QUEUE_LEASE_SECONDS",
        section: "Worker",
        kind: Kind::Integer,
        default: Some("30"),
        doc: "A worker holds a queue message under a lease it renews while it works; \
              a message whose lease lapses is delivered again.",
    },
    Key {
        name: "PLUGINS",
        section: "Plugins",
        kind: Kind::Json,
        default: Some("[]"),
        doc: "Plugin libraries to load at start-up, as JSON: \
              [{\"path\": \"/opt/fastlane/plugins/libmy_plugin.so\", \"config\": {...}}]. \
              Each plugin the library registers is built with its `config`. A library \
              built for another fastlane is refused (logged) and the server starts without it.",
    },
    Key {
        name: "EXECUTORS",
        section: "Plugins",
        kind: Kind::Json,
        default: Some("[]"),
        doc: "Which executor runs which tasks, as JSON: \
              [{\"match\": \"<task id regex>\", \"executor\": \"local\"}], tried in order \
              (matched at the start of the task id); tasks no entry matches go to `docker`.",
    },
    Key {
        name: "NOTIFIERS",
        section: "Plugins",
        kind: Kind::Json,
        default: Some("[]"),
        doc: "Notifier plugins that hear about every execution of matching tasks, as JSON: \
              [{\"notifier\": \"file-events\", \"match\": \"<task id regex>\", \
              \"events\": [\"starts\", \"finishes\"], \"target\": <any JSON>, \"retries\": 3}]. \
              `events` defaults to all four, `retries` to 0.",
    },
];

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the embedded store and queue.
    pub data_dir: PathBuf,
    /// Base of absolute URLs in responses, without a trailing slash.
    pub public_base_url: Option<String>,
    /// Base of absolute URLs built outside a request (notifications) when
    /// `PUBLIC_BASE_URL` is unset: the address the server listens on. Set at
    /// start-up, not configured.
    pub listen_base_url: Option<String>,
    /// Tasks per page.
    pub pagination_per_page: u32,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Whether to answer CORS requests.
    pub enable_cors: bool,
    /// Origins allowed by CORS; empty means any.
    pub cors_origins: Vec<String>,
    /// Basic-auth credentials every HTTP route asks for, when set.
    pub basic_auth: Option<(String, String)>,
    /// The realm of the basic-auth challenge.
    pub basic_auth_realm: String,
    /// Lower-cased words that mark an env var as secret.
    pub env_blacklisted_words: Vec<String>,
    /// The `DOCKER_HOSTS` farms (or the detected local engine).
    pub docker_hosts: serde_json::Value,
    /// Seconds between background prunes; 0 means none.
    pub prune_interval_seconds: u64,
    /// Finished containers the background pruner keeps per host.
    pub prune_keep_newest: u64,
    /// Finished containers younger than this are kept by the background pruner.
    pub prune_keep_younger_than_seconds: u64,
    /// The cap on (and default of) job timeouts.
    pub hard_execution_timeout_seconds: u64,
    /// SIGTERM-to-SIGKILL grace when stopping containers.
    pub stop_grace_seconds: u64,
    /// First retry delay.
    pub exponential_backoff_min_ms: u64,
    /// Retry delay growth.
    pub exponential_backoff_factor: f64,
    /// Longest retry delay.
    pub exponential_backoff_max_ms: u64,
    /// First webhook retry delay.
    pub webhooks_backoff_min_ms: u64,
    /// Webhook retry delay growth.
    pub webhooks_backoff_factor: f64,
    /// The webhook notifier's own configuration.
    pub webhook_notifier: serde_json::Value,
    /// The e-mail notifier's configuration, when `SMTP_HOST` is set.
    pub email_notifier: Option<serde_json::Value>,
    /// First e-mail retry delay.
    pub smtp_retry_min_ms: u64,
    /// Tries per e-mail.
    pub smtp_max_attempts: u32,
    /// The Sentry DSN, when reporting is on.
    pub sentry_dsn: Option<String>,
    /// The Sentry environment.
    pub sentry_environment: Option<String>,
    /// Executions one worker drives at once.
    pub worker_concurrency: usize,
    /// Queue lease length.
    pub queue_lease_seconds: u64,
    /// Plugin libraries to load.
    pub plugins: Vec<PluginLibrary>,
    /// Executor routing by task id.
    pub executor_routes: Vec<ExecutorRoute>,
    /// Notifier plugins subscribed to tasks.
    pub notifier_subscriptions: Vec<NotifierSubscription>,
}

/// One `PLUGINS` entry.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLibrary {
    /// The library file.
    pub path: PathBuf,
    /// What each of its plugins is built with.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// One `EXECUTORS` entry.
#[derive(Debug, Clone)]
pub struct ExecutorRoute {
    /// Matched at the start of the task id.
    pub pattern: regex::Regex,
    /// The executor's registered name.
    pub executor: String,
}

/// One `NOTIFIERS` entry.
#[derive(Debug, Clone)]
pub struct NotifierSubscription {
    /// The notifier's registered name.
    pub notifier: String,
    /// Matched at the start of the task id.
    pub pattern: regex::Regex,
    /// The events it hears about.
    pub events: Vec<fastlane_sdk::NotificationEvent>,
    /// Handed to the notifier as the delivery's target.
    pub target: serde_json::Value,
    /// Tries after the first.
    pub retries: u32,
}

/// A task-id pattern, anchored at the start as farms' are.
fn task_pattern(key: &'static str, pattern: &str) -> Result<regex::Regex, ConfigError> {
    regex::Regex::new(&format!("^(?:{pattern})")).map_err(|err| ConfigError::Invalid {
        key,
        message: format!("{pattern:?} is not a regular expression: {err}"),
    })
}

/// `PLUGINS`, `EXECUTORS` and `NOTIFIERS`, parsed and checked.
type PluginSettings = (
    Vec<PluginLibrary>,
    Vec<ExecutorRoute>,
    Vec<NotifierSubscription>,
);

fn plugin_config(
    plugins: serde_json::Value,
    executors: serde_json::Value,
    notifiers: serde_json::Value,
) -> Result<PluginSettings, ConfigError> {
    fn parse<T: serde::de::DeserializeOwned>(
        key: &'static str,
        value: serde_json::Value,
    ) -> Result<T, ConfigError> {
        serde_json::from_value(value).map_err(|err| ConfigError::Invalid {
            key,
            message: err.to_string(),
        })
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Route {
        #[serde(rename = "match")]
        pattern: String,
        executor: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Subscription {
        notifier: String,
        #[serde(rename = "match", default)]
        pattern: String,
        events: Option<Vec<fastlane_sdk::NotificationEvent>>,
        #[serde(default)]
        target: serde_json::Value,
        #[serde(default)]
        retries: u32,
    }
    let plugins: Vec<PluginLibrary> = parse("PLUGINS", plugins)?;
    let routes = parse::<Vec<Route>>("EXECUTORS", executors)?
        .into_iter()
        .map(|route| {
            Ok(ExecutorRoute {
                pattern: task_pattern("EXECUTORS", &route.pattern)?,
                executor: route.executor,
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    let subscriptions = parse::<Vec<Subscription>>("NOTIFIERS", notifiers)?
        .into_iter()
        .map(|sub| {
            use fastlane_sdk::NotificationEvent::*;
            Ok(NotifierSubscription {
                pattern: task_pattern("NOTIFIERS", &sub.pattern)?,
                notifier: sub.notifier,
                events: sub
                    .events
                    .unwrap_or_else(|| vec![Starts, Succeeds, Fails, Finishes]),
                target: sub.target,
                retries: sub.retries.min(100),
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok((plugins, routes, subscriptions))
}

/// A value as found: a string from the environment or a TOML value.
enum Raw {
    Env(String),
    File(toml::Value),
    Default(&'static str),
}

fn parse(key: &Key, raw: Raw) -> Result<serde_json::Value, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        key: key.name,
        message,
    };
    let text = match raw {
        Raw::File(value) => match (key.kind, value) {
            (_, toml::Value::String(s)) => s,
            (Kind::Integer, toml::Value::Integer(i)) => return Ok(i.into()),
            (Kind::Bool, toml::Value::Boolean(b)) => return Ok(b.into()),
            (Kind::Float, toml::Value::Integer(i)) => return Ok((i as f64).into()),
            (Kind::Float, toml::Value::Float(f)) => return Ok(f.into()),
            (Kind::Json, value) => {
                return serde_json::to_value(value).map_err(|e| invalid(e.to_string()));
            }
            (_, other) => return Err(invalid(format!("unexpected value {other}"))),
        },
        Raw::Env(s) => s,
        Raw::Default(s) => s.to_owned(),
    };
    let trimmed = text.trim();
    match key.kind {
        Kind::Bool => match trimmed.to_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true.into()),
            "false" | "0" | "no" | "off" => Ok(false.into()),
            _ => Err(invalid(format!(
                "{text:?} is not a boolean (true or false)"
            ))),
        },
        Kind::Text => Ok(text.into()),
        Kind::Integer => trimmed
            .parse::<u64>()
            .map(Into::into)
            .map_err(|_| invalid(format!("{text:?} is not a non-negative whole number"))),
        Kind::Float => trimmed
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Into::into)
            .ok_or_else(|| invalid(format!("{text:?} is not a number"))),
        Kind::Json => serde_json::from_str(trimmed)
            .map_err(|e| invalid(format!("{text:?} is not valid JSON: {e}"))),
    }
}

impl Config {
    /// Reads the file (if any) and the environment, and checks everything.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut from_file = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            from_file = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.message().to_owned(),
                })?;
            if let Some(unknown) = from_file
                .keys()
                .find(|k| !KEYS.iter().any(|key| key.name == *k))
            {
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    key: unknown.clone(),
                });
            }
        }
        let mut values: HashMap<&'static str, serde_json::Value> = HashMap::new();
        for key in KEYS {
            let raw = if let Some(v) = env.get(key.name) {
                Raw::Env(v.clone())
            } else if let Some(v) = from_file.remove(key.name) {
                Raw::File(v)
            } else if let Some(d) = key.default {
                Raw::Default(d)
            } else {
                continue;
            };
            values.insert(key.name, parse(key, raw)?);
        }
        Self::from_values(values, env)
    }

    fn from_values(
        mut values: HashMap<&'static str, serde_json::Value>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut take = |name: &'static str| values.remove(name).unwrap_or_default();
        let int = |name: &'static str, value: serde_json::Value, min: u64| {
            let n = value.as_u64().unwrap_or_default();
            if n < min {
                return Err(ConfigError::Invalid {
                    key: name,
                    message: format!("must be at least {min}"),
                });
            }
            Ok(n)
        };
        let text = |value: serde_json::Value| value.as_str().map(str::to_owned);

        let public_base_url = text(take("PUBLIC_BASE_URL"))
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        if let Some(url) = &public_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "PUBLIC_BASE_URL",
                message: format!("{url:?} must start with http:// or https://"),
            });
        }
        let docker_hosts = match take("DOCKER_HOSTS") {
            serde_json::Value::Null => default_docker_hosts(env),
            value => value,
        };
        let factor = take("EXPONENTIAL_BACKOFF_FACTOR").as_f64().unwrap_or(2.0);
        if factor < 1.0 {
            return Err(ConfigError::Invalid {
                key: "EXPONENTIAL_BACKOFF_FACTOR",
                message: "must be at least 1".to_owned(),
            });
        }
        let basic_auth = match (
            text(take("BASIC_AUTH_USERNAME")),
            text(take("BASIC_AUTH_PASSWORD")),
        ) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "BASIC_AUTH_PASSWORD",
                    message: "BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD go together".to_owned(),
                });
            }
        };
        let webhooks_backoff_factor = take("WEBHOOKS_EXPONENTIAL_BACKOFF_FACTOR")
            .as_f64()
            .unwrap_or(2.0);
        if webhooks_backoff_factor < 1.0 {
            return Err(ConfigError::Invalid {
                key: "WEBHOOKS_EXPONENTIAL_BACKOFF_FACTOR",
                message: "must be at least 1".to_owned(),
            });
        }
        let max_log_bytes = int(
            "NOTIFICATION_MAX_LOG_BYTES",
            take("NOTIFICATION_MAX_LOG_BYTES"),
            1,
        )?;
        let smtp_port = int("SMTP_PORT", take("SMTP_PORT"), 1)?;
        if smtp_port > u64::from(u16::MAX) {
            return Err(ConfigError::Invalid {
                key: "SMTP_PORT",
                message: format!("{smtp_port} is not a port"),
            });
        }
        let email_notifier = match text(take("SMTP_HOST")).filter(|h| !h.trim().is_empty()) {
            None => None,
            Some(host) => {
                let from = text(take("SMTP_FROM")).filter(|f| !f.is_empty()).ok_or(
                    ConfigError::Invalid {
                        key: "SMTP_FROM",
                        message: "is needed when SMTP_HOST is set".to_owned(),
                    },
                )?;
                Some(serde_json::json!({
                    "host": host,
                    "port": smtp_port,
                    "from": from,
                    "user": text(take("SMTP_USER")),
                    "password": text(take("SMTP_PASSWORD")),
                    "startTls": take("SMTP_USE_SSL").as_bool().unwrap_or(false),
                    "implicitTls": take("SMTP_IMPLICIT_TLS").as_bool().unwrap_or(false),
                    "maxLogBytes": max_log_bytes,
                }))
            }
        };
        let webhook_notifier = serde_json::json!({
            "timeoutSeconds": int("WEBHOOKS_TIMEOUT_SECONDS", take("WEBHOOKS_TIMEOUT_SECONDS"), 1)?,
            "verifyTls": take("WEBHOOKS_VERIFY_TLS").as_bool().unwrap_or(true),
            "signingSecret": text(take("WEBHOOKS_SIGNING_SECRET")).filter(|s| !s.is_empty()),
            "maxLogBytes": max_log_bytes,
        });
        let (plugins, executor_routes, notifier_subscriptions) =
            plugin_config(take("PLUGINS"), take("EXECUTORS"), take("NOTIFIERS"))?;
        Ok(Self {
            plugins,
            executor_routes,
            notifier_subscriptions,
            prune_interval_seconds: int(
                "PRUNE_INTERVAL_SECONDS",
                take("PRUNE_INTERVAL_SECONDS"),
                0,
            )?,
            prune_keep_newest: int("PRUNE_KEEP_NEWEST", take("PRUNE_KEEP_NEWEST"), 0)?,
            prune_keep_younger_than_seconds: int(
                "PRUNE_KEEP_YOUNGER_THAN_SECONDS",
                take("PRUNE_KEEP_YOUNGER_THAN_SECONDS"),
                0,
            )?,
            sentry_dsn: text(take("SENTRY_DSN")).filter(|d| !d.trim().is_empty()),
            sentry_environment: text(take("SENTRY_ENVIRONMENT")).filter(|e| !e.is_empty()),
            listen_base_url: None,
            webhooks_backoff_min_ms: int(
                "WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS",
                take("WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS"),
                0,
            )?,
            webhooks_backoff_factor,
            webhook_notifier,
            email_notifier,
            smtp_retry_min_ms: int("SMTP_RETRY_MIN_MS", take("SMTP_RETRY_MIN_MS"), 0)?,
            smtp_max_attempts: int("SMTP_MAX_ATTEMPTS", take("SMTP_MAX_ATTEMPTS"), 1)?.min(1000)
                as u32,
            enable_cors: take("ENABLE_CORS").as_bool().unwrap_or(true),
            cors_origins: text(take("CORS_ORIGINS"))
                .unwrap_or_default()
                .split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty() && o != "*")
                .collect(),
            basic_auth,
            basic_auth_realm: text(take("BASIC_AUTH_REALM")).unwrap_or_default(),
            data_dir: PathBuf::from(text(take("FASTLANE_DATA_DIR")).unwrap_or_default()),
            public_base_url,
            pagination_per_page: int("PAGINATION_PER_PAGE", take("PAGINATION_PER_PAGE"), 1)?
                .min(1000) as u32,
            max_body_bytes: int("MAX_BODY_BYTES", take("MAX_BODY_BYTES"), 1)? as usize,
            env_blacklisted_words: text(take("ENV_BLACKLISTED_WORDS"))
                .unwrap_or_default()
                .split(',')
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
            docker_hosts,
            hard_execution_timeout_seconds: int(
                "HARD_EXECUTION_TIMEOUT_SECONDS",
                take("HARD_EXECUTION_TIMEOUT_SECONDS"),
                1,
            )?,
            stop_grace_seconds: int("STOP_GRACE_SECONDS", take("STOP_GRACE_SECONDS"), 0)?,
            exponential_backoff_min_ms: int(
                "EXPONENTIAL_BACKOFF_MIN_MS",
                take("EXPONENTIAL_BACKOFF_MIN_MS"),
                0,
            )?,
            exponential_backoff_factor: factor,
            exponential_backoff_max_ms: int(
                "EXPONENTIAL_BACKOFF_MAX_MS",
                take("EXPONENTIAL_BACKOFF_MAX_MS"),
                1,
            )?,
            worker_concurrency: int("WORKER_CONCURRENCY", take("WORKER_CONCURRENCY"), 1)? as usize,
            queue_lease_seconds: int("QUEUE_LEASE_SECONDS", take("QUEUE_LEASE_SECONDS"), 5)?,
        })
    }

    /// The annotated defaults, as `fastlane config` prints them: a TOML file
    /// with every key commented out.
    pub fn annotated_defaults() -> String {
        let mut out = String::from(
            "# fastlane configuration. Pass it with `-c FILE`; environment variables of\n\
             # the same names override it.\n",
        );
        let mut section = "";
        for key in KEYS {
            if key.section != section {
                section = key.section;
                let _ = write!(out, "\n################ {section} ################\n");
            }
            let _ = writeln!(out, "\n# {}", key.doc);
            let default = match (key.default, key.kind) {
                (None, _) => "(unset)".to_owned(),
                (Some(d), Kind::Text) => format!("{d:?}"),
                (Some(d), _) => d.to_owned(),
            };
            let _ = writeln!(out, "# Defaults to: {default}");
            let _ = writeln!(out, "# {} = {default}", key.name);
        }
        out
    }
}

/// The local engine, when `DOCKER_HOSTS` is not configured.
fn default_docker_hosts(env: &HashMap<String, String>) -> serde_json::Value {
    let host = env
        .get("DOCKER_HOST")
        .filter(|h| !h.is_empty())
        .cloned()
        .or_else(|| {
            [
                "/var/run/docker.sock",
                "/run/podman/podman.sock",
                "/run/fastlane/podman.sock",
            ]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .map(|p| format!("unix://{p}"))
        })
        .unwrap_or_else(|| "localhost:2375".to_owned());
    serde_json::json!([{"match": "", "hosts": [host], "maxRunning": 10}])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn plugin_settings_are_typed_and_checked_at_load() {
        let config = Config::load(
            None,
            &env(&[
                (
                    "PLUGINS",
                    r#"[{"path": "/opt/p/libx.so", "config": {"a": 1}}]"#,
                ),
                ("EXECUTORS", r#"[{"match": "local-", "executor": "local"}]"#),
                (
                    "NOTIFIERS",
                    r#"[{"notifier": "file-events", "events": ["fails"]}]"#,
                ),
            ]),
        )
        .expect("valid");
        assert_eq!(config.plugins[0].path, PathBuf::from("/opt/p/libx.so"));
        assert!(config.executor_routes[0].pattern.is_match("local-task"));
        assert!(!config.executor_routes[0].pattern.is_match("not-local-task"));
        let subscription = &config.notifier_subscriptions[0];
        assert_eq!(
            subscription.events,
            [fastlane_sdk::NotificationEvent::Fails]
        );
        assert!(subscription.pattern.is_match("anything"));

        for (key, value, needle) in [
            ("PLUGINS", r#"[{"config": {}}]"#, "missing field `path`"),
            (
                "EXECUTORS",
                r#"[{"match": "(", "executor": "x"}]"#,
                "not a regular expression",
            ),
            (
                "NOTIFIERS",
                r#"[{"notifier": "n", "events": ["explodes"]}]"#,
                "unknown variant",
            ),
        ] {
            let err = Config::load(None, &env(&[(key, value)])).expect_err("invalid");
            let text = err.to_string();
            assert!(text.starts_with(&format!("config key {key}: ")), "{text}");
            assert!(text.contains(needle), "{text}");
        }
    }

    #[test]
    fn defaults_load() {
        let config = Config::load(None, &env(&[("DOCKER_HOST", "tcp://d:1")])).expect("defaults");
        assert!(config.enable_cors && config.cors_origins.is_empty());
        assert!(config.basic_auth.is_none());
        assert_eq!(config.hard_execution_timeout_seconds, 1800);
        assert_eq!(config.pagination_per_page, 10);
        assert_eq!(
            config.env_blacklisted_words,
            ["password", "key", "secret", "client_id"]
        );
        assert_eq!(config.docker_hosts[0]["hosts"][0], "tcp://d:1");
    }

    #[test]
    fn numbers_and_json_from_env_strings_work() {
        let config = Config::load(
            None,
            &env(&[
                ("HARD_EXECUTION_TIMEOUT_SECONDS", " 60 "),
                ("EXPONENTIAL_BACKOFF_FACTOR", "1.5"),
                ("DOCKER_HOSTS", r#"{"match": "", "hosts": ["a:1"]}"#),
            ]),
        )
        .expect("valid");
        assert_eq!(config.hard_execution_timeout_seconds, 60);
        assert_eq!(config.exponential_backoff_factor, 1.5);
        assert_eq!(config.docker_hosts["hosts"][0], "a:1");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = Config::load(None, &env(&[("ENABLE_CORS", "maybe")])).expect_err("bad");
        assert!(err.to_string().contains("ENABLE_CORS"), "{err}");
        let err = Config::load(None, &env(&[("BASIC_AUTH_USERNAME", "u")])).expect_err("bad");
        assert!(err.to_string().contains("go together"), "{err}");
        let config = Config::load(None, &env(&[("ENABLE_CORS", "False")])).expect("valid");
        assert!(!config.enable_cors);
        let err = Config::load(None, &env(&[("WORKER_CONCURRENCY", "many")])).expect_err("bad");
        assert!(
            err.to_string()
                .starts_with("config key WORKER_CONCURRENCY:"),
            "{err}"
        );
        let err = Config::load(None, &env(&[("DOCKER_HOSTS", "[{")])).expect_err("bad");
        assert!(err.to_string().contains("DOCKER_HOSTS"), "{err}");
        let err = Config::load(None, &env(&[("PUBLIC_BASE_URL", "example.com")])).expect_err("bad");
        assert!(err.to_string().contains("PUBLIC_BASE_URL"), "{err}");
    }

    #[test]
    fn the_file_is_read_and_the_environment_wins() {
        let dir = std::env::temp_dir().join(format!("fastlane-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("fastlane.toml");
        std::fs::write(
            &path,
            "PAGINATION_PER_PAGE = 3\nSTOP_GRACE_SECONDS = \"4\"\n\
             DOCKER_HOSTS = [{match = \"\", hosts = [\"h:2\"]}]\n",
        )
        .expect("write");
        let config =
            Config::load(Some(&path), &env(&[("PAGINATION_PER_PAGE", "7")])).expect("valid");
        assert_eq!(config.pagination_per_page, 7);
        assert_eq!(config.stop_grace_seconds, 4);
        assert_eq!(config.docker_hosts[0]["hosts"][0], "h:2");

        std::fs::write(&path, "SMTP_HOTS = \"x\"\n").expect("write");
        let err = Config::load(Some(&path), &env(&[])).expect_err("unknown key");
        assert!(err.to_string().contains("unknown key SMTP_HOTS"), "{err}");
    }

    #[test]
    fn the_annotated_defaults_name_every_key_and_parse_as_toml() {
        let text = Config::annotated_defaults();
        for key in KEYS {
            assert!(text.contains(&format!("# {} = ", key.name)), "{}", key.name);
        }
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = ") && !l.contains("(unset)"))
            .map(|l| format!("{l}\n"))
            .collect();
        let table: toml::Table = uncommented.parse().expect("defaults are valid TOML");
        assert!(table.contains_key("HARD_EXECUTION_TIMEOUT_SECONDS"));
    }
}
