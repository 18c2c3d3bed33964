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
        name: "DOCKER_CIRCUIT_BREAKER_MAX_FAILS",
        section: "Docker Executor",
        kind: Kind::Integer,
        default: Some("5"),
        doc: "After this many connection failures in a row a host's circuit opens: it gets no \
              new work, and executions running there fail (and are retried elsewhere, if they \
              have retries left).",
    },
    Key {
        name: "DOCKER_CIRCUIT_BREAKER_RESET_TIMEOUT_SECONDS",
        section: "Docker Executor",
        kind: Kind::Integer,
        default: Some("60"),
        doc: "How long an open circuit stays open; then one probe (half-open) decides \
              whether the host is back.",
    },
    Key {
        name: "DOCKER_TLS_CA_CERT",
        section: "Docker Executor",
        kind: Kind::Text,
        default: None,
        doc: "PEM file of the CA that signed the Docker hosts' certificates, for \
              `https://host:port` hosts (and `tcp://` ones when DOCKER_TLS_VERIFY is on).",
    },
    Key {
        name: "DOCKER_TLS_CERT",
        section: "Docker Executor",
        kind: Kind::Text,
        default: None,
        doc: "PEM file of the client certificate fastlane presents to TLS Docker hosts.",
    },
    Key {
        name: "DOCKER_TLS_KEY",
        section: "Docker Executor",
        kind: Kind::Text,
        default: None,
        doc: "PEM file of the client certificate's private key.",
    },
    Key {
        name: "DOCKER_TLS_VERIFY",
        section: "Docker Executor",
        kind: Kind::Bool,
        default: Some("false"),
        doc: "Speak TLS to `tcp://` and `host:port` hosts too (as Docker's own \
              DOCKER_TLS_VERIFY does); `https://` hosts always do.",
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
        name: "TASK_CONCURRENCY",
        section: "Worker",
        kind: Kind::Json,
        default: Some("[]"),
        doc: "Limits on how many executions of one task run at once, as JSON: \
              [{\"match\": \"<task id regex>\", \"maxConcurrent\": 2}] (matched at the start \
              of the task id). Every task that matches gets the smallest limit that applies, \
              and a job's own `maxConcurrent` can only lower it; executions over the limit \
              wait in order.",
    },
    Key {
        name: "EXECUTION_LOG_MAX_BYTES",
        section: "Worker",
        kind: Kind::Integer,
        default: Some("10485760"),
        doc: "The most an execution's stdout, and its stderr, keep each (the live log \
              keeps this much of both together); what goes past is cut, and the cut is marked.",
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
        name: "STORE_URL",
        section: "Worker",
        kind: Kind::Text,
        default: None,
        doc: "Keep tasks, jobs and executions in PostgreSQL (`postgres://user:password@host:port/db`) \
              or MongoDB (`mongodb://user:password@host:port/db`, `mongodb+srv://…`; the database \
              defaults to `fastlane`) instead of the embedded store.",
    },
    Key {
        name: "MONGODB_CONFIG",
        section: "Worker",
        kind: Kind::Json,
        default: None,
        doc: "Keep tasks, jobs and executions in MongoDB, as the original fastlane's setting did: \
              {\"host\": \"mongodb://host:port/fastlane\", \"db\": \"fastlane\"}. `host` is the \
              connection URL (driver options go in its query string), `db` the database (else the \
              URL's, else `fastlane`); other keys (`serverSelectionTimeoutMS`, `connect`, …) are \
              ignored. The same as STORE_URL with a mongodb:// URL; set one or the other.",
    },
    Key {
        name: "REDIS_URL",
        section: "Worker",
        kind: Kind::Text,
        default: None,
        doc: "Keep the queue in Redis instead of the embedded one. One server: \
              `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS, certificate \
              checked against the system roots or SSL_CERT_FILE), `unix:///path/redis.sock[?db=N]`. \
              A master behind Sentinels, followed across failovers: \
              `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]` \
              (Sentinel port 26379 by default; each queue write waits for one replica to have it, \
              `?wait_replicas=N` to change, 0 for none). A Redis Cluster: \
              `redis+cluster://[[user]:password@]host[:port][,host[:port]…]` (keys go in the \
              `{REDIS_KEY_PREFIX}` hash tag).",
    },
    Key {
        name: "REDIS_KEY_PREFIX",
        section: "Worker",
        kind: Kind::Text,
        default: Some("fastlane"),
        doc: "Every Redis key fastlane writes starts with this, so several fastlanes can \
              share one Redis.",
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
    /// The Docker executor's settings besides its farms: the circuit
    /// breaker and TLS.
    pub docker_settings: serde_json::Value,
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
    /// The most an execution's stdout, stderr (each) and live log keep.
    pub execution_log_max_bytes: u64,
    /// `TASK_CONCURRENCY`: limits on executions of one task at once.
    pub task_limits: Vec<TaskLimit>,
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
    /// `REDIS_URL`: the queue is in Redis when set.
    pub redis_url: Option<String>,
    /// `STORE_URL` or `MONGODB_CONFIG`: where the store is, when not
    /// embedded.
    pub store: Option<StoreLocation>,
    /// `REDIS_KEY_PREFIX`.
    pub redis_key_prefix: String,
    /// Plugin libraries to load.
    pub plugins: Vec<PluginLibrary>,
    /// Executor routing by task id.
    pub executor_routes: Vec<ExecutorRoute>,
    /// Notifier plugins subscribed to tasks.
    pub notifier_subscriptions: Vec<NotifierSubscription>,
}

/// Where the store is when it is not the embedded one (`STORE_URL`,
/// `MONGODB_CONFIG`). Its `Debug` hides passwords.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A PostgreSQL database.
    Postgres {
        /// `postgres://…` or `postgresql://…`.
        url: String,
    },
    /// A MongoDB database.
    Mongo {
        /// `mongodb://…` or `mongodb+srv://…`.
        url: String,
        /// The database's name.
        database: String,
    },
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &crate::redact::url_without_password(url))
                .finish(),
            Self::Mongo { url, database } => f
                .debug_struct("Mongo")
                .field("url", &crate::redact::url_without_password(url))
                .field("database", database)
                .finish(),
        }
    }
}

/// The URL schemes `STORE_URL` takes.
const STORE_SCHEMES: &str = "postgres://, postgresql://, mongodb:// or mongodb+srv://";

/// The store `STORE_URL` or `MONGODB_CONFIG` names, checked.
fn store_location(
    store_url: Option<String>,
    mongodb_config: serde_json::Value,
) -> Result<Option<StoreLocation>, ConfigError> {
    let is_mongo = |url: &str| url.starts_with("mongodb://") || url.starts_with("mongodb+srv://");
    match (store_url, mongodb_config) {
        (None, serde_json::Value::Null) => Ok(None),
        (Some(_), config) if !config.is_null() => Err(ConfigError::Invalid {
            key: "MONGODB_CONFIG",
            message: "STORE_URL is set too; set only one of them".to_owned(),
        }),
        (Some(url), _) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Some(StoreLocation::Postgres { url }))
        }
        (Some(url), _) if is_mongo(&url) => {
            let database = database_in_url("STORE_URL", &url)?;
            Ok(Some(StoreLocation::Mongo {
                url,
                database: database.unwrap_or_else(|| "fastlane".to_owned()),
            }))
        }
        (Some(url), _) => Err(ConfigError::Invalid {
            key: "STORE_URL",
            message: format!(
                "{:?} is not a {STORE_SCHEMES} URL",
                crate::redact::url_without_password(&url)
            ),
        }),
        (None, config) => {
            let invalid = |message: String| ConfigError::Invalid {
                key: "MONGODB_CONFIG",
                message,
            };
            let serde_json::Value::Object(config) = config else {
                return Err(invalid(format!(
                    "must be a JSON object such as {{\"host\": \"mongodb://localhost:27017/fastlane\", \
                     \"db\": \"fastlane\"}}, not {config}"
                )));
            };
            let url = match config.get("host") {
                Some(serde_json::Value::String(url)) if is_mongo(url) => url.clone(),
                Some(serde_json::Value::String(url)) => {
                    return Err(invalid(format!(
                        "\"host\" {:?} is not a mongodb:// or mongodb+srv:// URL",
                        crate::redact::url_without_password(url)
                    )));
                }
                Some(_) => {
                    return Err(invalid(
                        "\"host\" must be a string (a mongodb:// URL)".to_owned(),
                    ));
                }
                None => {
                    return Err(invalid(
                        "needs \"host\", the server's URL (mongodb://host:port/db)".to_owned(),
                    ));
                }
            };
            let database = match config.get("db") {
                None | Some(serde_json::Value::Null) => database_in_url("MONGODB_CONFIG", &url)?
                    .unwrap_or_else(|| "fastlane".to_owned()),
                Some(serde_json::Value::String(db)) => {
                    check_database("MONGODB_CONFIG", db)?;
                    db.clone()
                }
                Some(_) => return Err(invalid("\"db\" must be a string".to_owned())),
            };
            Ok(Some(StoreLocation::Mongo { url, database }))
        }
    }
}

/// The database a `mongodb://` URL names in its path, if any.
fn database_in_url(key: &'static str, url: &str) -> Result<Option<String>, ConfigError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let Some((_, path)) = rest.split_once('/') else {
        return Ok(None);
    };
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if path.is_empty() {
        return Ok(None);
    }
    let invalid = || ConfigError::Invalid {
        key,
        message: format!(
            "{:?}: the database name is badly percent-encoded",
            crate::redact::url_without_password(url)
        ),
    };
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2).ok_or_else(invalid)?;
            let hex = std::str::from_utf8(hex).map_err(|_| invalid())?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let database = String::from_utf8(bytes).map_err(|_| invalid())?;
    check_database(key, &database)?;
    Ok(Some(database))
}

/// Refuses a name MongoDB would refuse for a database.
fn check_database(key: &'static str, name: &str) -> Result<(), ConfigError> {
    let bad =
        name.is_empty() || name.len() >= 64 || name.contains(['/', '\\', '.', ' ', '"', '$', '\0']);
    if bad {
        return Err(ConfigError::Invalid {
            key,
            message: format!(
                "{name:?} is not a MongoDB database name (1 to 63 bytes, none of / \\ . space \" $)"
            ),
        });
    }
    Ok(())
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

/// One `TASK_CONCURRENCY` entry.
#[derive(Debug, Clone)]
pub struct TaskLimit {
    /// Matched at the start of the task id.
    pub pattern: regex::Regex,
    /// How many executions of each matching task run at once.
    pub max_concurrent: u32,
}

/// `TASK_CONCURRENCY`, parsed and checked.
fn task_limits(value: serde_json::Value) -> Result<Vec<TaskLimit>, ConfigError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        #[serde(rename = "match", default)]
        pattern: String,
        #[serde(rename = "maxConcurrent")]
        max_concurrent: u32,
    }
    let raw: Vec<Raw> = serde_json::from_value(value).map_err(|err| ConfigError::Invalid {
        key: "TASK_CONCURRENCY",
        message: err.to_string(),
    })?;
    raw.into_iter()
        .map(|limit| {
            if limit.max_concurrent == 0 {
                return Err(ConfigError::Invalid {
                    key: "TASK_CONCURRENCY",
                    message: format!("maxConcurrent of {:?} must be at least 1", limit.pattern),
                });
            }
            Ok(TaskLimit {
                pattern: task_pattern("TASK_CONCURRENCY", &limit.pattern)?,
                max_concurrent: limit.max_concurrent,
            })
        })
        .collect()
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
    /// The Docker executor's configuration: the farms, the circuit
    /// breaker and TLS.
    pub fn docker_executor(&self) -> serde_json::Value {
        let mut config = self.docker_settings.clone();
        config["farms"] = self.docker_hosts.clone();
        config
    }

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
        let docker_settings = serde_json::json!({
            "circuitBreaker": {
                "maxFails": int(
                    "DOCKER_CIRCUIT_BREAKER_MAX_FAILS",
                    take("DOCKER_CIRCUIT_BREAKER_MAX_FAILS"),
                    1,
                )?,
                "resetTimeoutSeconds": int(
                    "DOCKER_CIRCUIT_BREAKER_RESET_TIMEOUT_SECONDS",
                    take("DOCKER_CIRCUIT_BREAKER_RESET_TIMEOUT_SECONDS"),
                    0,
                )?,
            },
            "tls": {
                "caCert": text(take("DOCKER_TLS_CA_CERT")),
                "cert": text(take("DOCKER_TLS_CERT")),
                "key": text(take("DOCKER_TLS_KEY")),
                "verify": take("DOCKER_TLS_VERIFY").as_bool().unwrap_or(false),
            },
        });
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
        Self {
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
            docker_settings,
            hard_execution_timeout_seconds: int(
                "HARD_EXECUTION_TIMEOUT_SECONDS",
                take("HARD_EXECUTION_TIMEOUT_SECONDS"),
                1,
            )?,
            stop_grace_seconds: int("STOP_GRACE_SECONDS", take("STOP_GRACE_SECONDS"), 0)?,
            task_limits: task_limits(take("TASK_CONCURRENCY"))?,
            execution_log_max_bytes: int(
                "EXECUTION_LOG_MAX_BYTES",
                take("EXECUTION_LOG_MAX_BYTES"),
                1,
            )?,
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
            redis_url: match text(take("REDIS_URL")).filter(|url| !url.trim().is_empty()) {
                Some(url) => Some(redis_url(&url)?),
                None => None,
            },
            store: store_location(
                text(take("STORE_URL")).filter(|url| !url.is_empty()),
                take("MONGODB_CONFIG"),
            )?,
            redis_key_prefix: text(take("REDIS_KEY_PREFIX"))
                .filter(|prefix| !prefix.is_empty())
                .unwrap_or_else(|| "fastlane".to_owned()),
        }
        .checked()
    }

    /// Checks that go across keys.
    fn checked(self) -> Result<Self, ConfigError> {
        let cluster = self.redis_url.as_deref().is_some_and(|url| {
            crate::queue::redis::url::RedisUrl::parse(url).is_ok_and(|u| u.is_cluster())
        });
        if cluster && self.redis_key_prefix.contains(['{', '}']) {
            return Err(ConfigError::Invalid {
                key: "REDIS_KEY_PREFIX",
                message: format!(
                    "{:?}: on a Redis Cluster fastlane puts the prefix in a hash tag, \
                     `{{prefix}}`, so it cannot contain braces",
                    self.redis_key_prefix
                ),
            });
        }
        Ok(self)
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

/// `REDIS_URL`, checked: one of the forms [`crate::queue::redis::url`]
/// reads. The error names the accepted forms and never the password.
fn redis_url(url: &str) -> Result<String, ConfigError> {
    match crate::queue::redis::url::RedisUrl::parse(url) {
        Ok(_) => Ok(url.trim().to_owned()),
        Err(err) => Err(ConfigError::Invalid {
            key: "REDIS_URL",
            message: format!(
                "{:?}: {err}. Accepted forms: {}",
                crate::redact::url_without_password(url.trim()),
                crate::queue::redis::url::FORMS
            ),
        }),
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
    fn store_url_selects_postgres_or_mongodb() {
        let store = |url: &str| Config::load(None, &env(&[("STORE_URL", url)])).map(|c| c.store);
        assert_eq!(Config::load(None, &env(&[])).expect("valid").store, None);
        assert_eq!(store("").expect("valid"), None, "empty is unset");
        assert_eq!(
            store("postgresql://u:p@db/x").expect("valid"),
            Some(StoreLocation::Postgres {
                url: "postgresql://u:p@db/x".to_owned()
            })
        );
        let mongo = |url: &str, database: &str| {
            Some(StoreLocation::Mongo {
                url: url.to_owned(),
                database: database.to_owned(),
            })
        };
        for (url, database) in [
            (
                "mongodb://u:p@h1:27017,h2:27017/jobs?replicaSet=rs0",
                "jobs",
            ),
            ("mongodb://localhost:27017", "fastlane"),
            ("mongodb://localhost:27017/", "fastlane"),
            ("mongodb://localhost/?authSource=admin", "fastlane"),
            (
                "mongodb+srv://cluster0.example.net/fast%2Dlane",
                "fast-lane",
            ),
        ] {
            assert_eq!(store(url).expect(url), mongo(url, database), "{url}");
        }
        for (url, needle) in [
            (
                "redis://u:secret@h/0",
                "is not a postgres://, postgresql://, mongodb:// or mongodb+srv:// URL",
            ),
            ("mongodb://u:secret@h/a.b", "is not a MongoDB database name"),
            ("mongodb://u:secret@h/a%2", "badly percent-encoded"),
        ] {
            let err = store(url).expect_err(url).to_string();
            assert!(err.starts_with("config key STORE_URL: "), "{err}");
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("secret"), "the password is hidden: {err}");
        }
        let debug = format!("{:?}", store("mongodb://u:secret@h/x").expect("valid"));
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn mongodb_config_is_read_as_the_original_wrote_it() {
        let config =
            |value: &str| Config::load(None, &env(&[("MONGODB_CONFIG", value)])).map(|c| c.store);
        assert_eq!(
            config(
                r#"{"host": "mongodb://localhost:27017/fastlane", "db": "queue",
                    "serverSelectionTimeoutMS": 100, "connect": false}"#
            )
            .expect("valid"),
            Some(StoreLocation::Mongo {
                url: "mongodb://localhost:27017/fastlane".to_owned(),
                database: "queue".to_owned(),
            }),
            "db wins over the URL's database; other keys are ignored"
        );
        assert_eq!(
            config(r#"{"host": "mongodb://h/tasks"}"#).expect("valid"),
            Some(StoreLocation::Mongo {
                url: "mongodb://h/tasks".to_owned(),
                database: "tasks".to_owned(),
            })
        );
        assert_eq!(
            config(r#"{"host": "mongodb+srv://h", "db": null}"#).expect("valid"),
            Some(StoreLocation::Mongo {
                url: "mongodb+srv://h".to_owned(),
                database: "fastlane".to_owned(),
            })
        );
        for (value, needle) in [
            (r#""mongodb://h/x""#, "must be a JSON object"),
            ("[1]", "must be a JSON object"),
            ("{nope", "is not valid JSON"),
            (r#"{"db": "x"}"#, "needs \"host\""),
            (r#"{"host": 27017}"#, "\"host\" must be a string"),
            (
                r#"{"host": "localhost:27017"}"#,
                "is not a mongodb:// or mongodb+srv:// URL",
            ),
            (
                r#"{"host": "mongodb://h", "db": 5}"#,
                "\"db\" must be a string",
            ),
            (
                r#"{"host": "mongodb://h", "db": "a b"}"#,
                "not a MongoDB database name",
            ),
        ] {
            let err = config(value).expect_err(value).to_string();
            assert!(err.starts_with("config key MONGODB_CONFIG: "), "{err}");
            assert!(err.contains(needle), "{value}: {err}");
        }
        let both = Config::load(
            None,
            &env(&[
                ("STORE_URL", "mongodb://h/x"),
                ("MONGODB_CONFIG", r#"{"host": "mongodb://h/x"}"#),
            ]),
        )
        .expect_err("both");
        assert!(both.to_string().contains("set only one"), "{both}");
    }

    #[test]
    fn mongodb_config_may_be_a_table_in_the_file() {
        let dir =
            std::env::temp_dir().join(format!("fastlane-mongo-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("fastlane.toml");
        std::fs::write(
            &path,
            "MONGODB_CONFIG = { host = \"mongodb://h:1/a\", connect = false }\n",
        )
        .expect("write");
        let config = Config::load(Some(&path), &env(&[])).expect("valid");
        assert_eq!(
            config.store,
            Some(StoreLocation::Mongo {
                url: "mongodb://h:1/a".to_owned(),
                database: "a".to_owned(),
            })
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn redis_urls_are_checked_at_load() {
        for url in [
            "redis://127.0.0.1:6390/0",
            "rediss://:pw@redis.example:6380/1",
            "unix:///run/redis.sock?db=2",
            "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/0",
            "redis+cluster://n1:7000,n2:7001,n3:7002",
        ] {
            let config = Config::load(None, &env(&[("REDIS_URL", url)])).expect(url);
            assert_eq!(config.redis_url.as_deref(), Some(url));
        }
        let err = Config::load(
            None,
            &env(&[("REDIS_URL", "redis+sentinel://:hunter2@s1:26379,s2:26380")]),
        )
        .expect_err("no service");
        let text = err.to_string();
        assert!(text.starts_with("config key REDIS_URL: "), "{text}");
        assert!(text.contains("service"), "{text}");
        assert!(text.contains("Accepted forms: redis://"), "{text}");
        assert!(text.contains("redis+cluster://"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let err = Config::load(None, &env(&[("REDIS_URL", "mongodb://db")])).expect_err("scheme");
        assert!(err.to_string().contains("unknown scheme"), "{err}");

        let err = Config::load(
            None,
            &env(&[
                ("REDIS_URL", "redis+cluster://n1:7000"),
                ("REDIS_KEY_PREFIX", "{fl}"),
            ]),
        )
        .expect_err("braces");
        assert!(err.to_string().contains("REDIS_KEY_PREFIX"), "{err}");
        let config = Config::load(
            None,
            &env(&[("REDIS_URL", "redis://h/0"), ("REDIS_KEY_PREFIX", "{fl}")]),
        )
        .expect("braces are fine off a Cluster");
        assert_eq!(config.redis_key_prefix, "{fl}");
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
