//! Configuration: a table of known keys, read from a TOML file and from
//! environment variables of the same names, typed and checked at start-up.
//!
//! The environment wins over the file, the file over the defaults. Every
//! value may be given as a string (as environment variables always are):
//! `"30"` is a fine number and `"false"` a fine boolean. A bad value stops
//! the server with an error that names the key.
//!
//! - `keys.rs`: the table of known keys and how a raw value is read;
//! - `store.rs`: where the store and the queue are (`STORE_URL`,
//!   `MONGODB_CONFIG`, `REDIS_URL`);
//! - `plugins.rs`: `PLUGINS`, `EXECUTORS`, `NOTIFIERS`;
//! - `flow.rs`: flow control (`TASK_FLOW`, `TASK_CONCURRENCY`, `KEY_FLOW`,
//!   `ADMISSION_ORDER`, `PRIORITY_AGING_SECONDS`);
//! - `access.rs`: who may call the API (`CORS_ORIGINS`, `API_TOKENS`,
//!   `AUTH_OPEN_ROUTES`).

mod access;
mod flow;
mod keys;
mod plugins;
mod store;
#[cfg(test)]
mod tests;

pub use access::{ApiToken, CorsOrigins, OpenRoutes, Scope, hex, sha256};
pub use flow::{FlowRule, FlowSettings, MAX_PRIORITY};
pub use plugins::{ExecutorRoute, NotifierSubscription, PluginLibrary};
pub use store::StoreLocation;

use keys::{KEYS, Kind, Raw, parse};
use plugins::plugin_config;
use store::{redis_url, store_location};

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
    /// The browser origins whose pages may call the API (`ENABLE_CORS`,
    /// `CORS_ORIGINS`).
    pub cors: CorsOrigins,
    /// `API_TOKENS`.
    pub api_tokens: Vec<ApiToken>,
    /// `AUTH_OPEN_ROUTES`.
    pub auth_open_routes: OpenRoutes,
    /// `WEBHOOKS_MAX_PER_EVENT`: most webhooks per event of one job.
    pub webhooks_max_per_event: usize,
    /// `NOTIFY_MAX_ADDRESSES`: most e-mail addresses of one job.
    pub notify_max_addresses: usize,
    /// `IDEMPOTENCY_TTL_SECONDS`: how long an `Idempotency-Key` is kept.
    pub idempotency_ttl_seconds: u64,
    /// `MAX_WEBSOCKET_CONNECTIONS`: live-log sockets open at once, at most.
    pub max_websocket_connections: usize,
    /// Basic-auth credentials every HTTP route asks for, when set.
    pub basic_auth: Option<(String, String)>,
    /// The realm of the basic-auth challenge.
    pub basic_auth_realm: String,
    /// Lower-cased words that mark an env var as secret.
    pub env_blacklisted_words: Vec<String>,
    /// The `DOCKER_HOSTS` farms (or the detected local engine).
    pub docker_hosts: serde_json::Value,
    /// `KUBERNETES_CLUSTERS`: the Kubernetes executor's clusters.
    pub kubernetes_clusters: serde_json::Value,
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
    /// Flow control: limits, rates, weights and priorities by task and by
    /// concurrency key, and the admission line's order.
    pub flow: FlowSettings,
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
    /// Where webhooks may go (`WEBHOOKS_ALLOW_LOCAL_NETWORK`,
    /// `WEBHOOKS_ALLOWED_HOSTS`), checked at submission.
    pub webhook_egress: crate::egress::EgressPolicy,
    /// Deliveries of one job in flight at once per worker.
    pub notifications_max_in_flight_per_job: usize,
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
impl Config {
    /// The Docker executor's configuration: the farms, the circuit
    /// breaker and TLS.
    pub fn docker_executor(&self) -> serde_json::Value {
        let mut config = self.docker_settings.clone();
        config["farms"] = self.docker_hosts.clone();
        config
    }

    /// The configuration of the built-in executor `kind` that has keys of
    /// its own (`docker`, `kubernetes`); `None` for the others.
    pub fn builtin_executor(&self, kind: &str) -> Option<serde_json::Value> {
        match kind {
            "docker" => Some(self.docker_executor()),
            "kubernetes" => Some(self.kubernetes_clusters.clone()),
            _ => None,
        }
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
            "pidsLimit": int("PIDS_LIMIT", take("PIDS_LIMIT"), 0)?,
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
        let allow_local_network = take("WEBHOOKS_ALLOW_LOCAL_NETWORK")
            .as_bool()
            .unwrap_or(false);
        let allowed_hosts = crate::egress::EgressPolicy::split_list(
            &text(take("WEBHOOKS_ALLOWED_HOSTS")).unwrap_or_default(),
        );
        let webhook_egress = crate::egress::EgressPolicy::new(allow_local_network, &allowed_hosts)
            .map_err(|e| ConfigError::Invalid {
                key: "WEBHOOKS_ALLOWED_HOSTS",
                message: e.to_string(),
            })?;
        let webhook_notifier = serde_json::json!({
            "timeoutSeconds": int("WEBHOOKS_TIMEOUT_SECONDS", take("WEBHOOKS_TIMEOUT_SECONDS"), 1)?,
            "verifyTls": take("WEBHOOKS_VERIFY_TLS").as_bool().unwrap_or(true),
            "signingSecret": text(take("WEBHOOKS_SIGNING_SECRET")).filter(|s| !s.is_empty()),
            "maxLogBytes": max_log_bytes,
            "allowLocalNetwork": allow_local_network,
            "allowedHosts": allowed_hosts,
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
            webhook_egress,
            notifications_max_in_flight_per_job: int(
                "NOTIFICATIONS_MAX_IN_FLIGHT_PER_JOB",
                take("NOTIFICATIONS_MAX_IN_FLIGHT_PER_JOB"),
                1,
            )? as usize,
            email_notifier,
            smtp_retry_min_ms: int("SMTP_RETRY_MIN_MS", take("SMTP_RETRY_MIN_MS"), 0)?,
            smtp_max_attempts: int("SMTP_MAX_ATTEMPTS", take("SMTP_MAX_ATTEMPTS"), 1)?.min(1000)
                as u32,
            cors: access::cors_origins(
                take("ENABLE_CORS").as_bool().unwrap_or(true),
                &text(take("CORS_ORIGINS")).unwrap_or_default(),
            )?,
            api_tokens: access::api_tokens(take("API_TOKENS"))?,
            auth_open_routes: access::open_routes(
                &text(take("AUTH_OPEN_ROUTES")).unwrap_or_default(),
            )?,
            basic_auth,
            basic_auth_realm: text(take("BASIC_AUTH_REALM")).unwrap_or_default(),
            data_dir: PathBuf::from(text(take("FASTLANE_DATA_DIR")).unwrap_or_default()),
            public_base_url,
            pagination_per_page: int("PAGINATION_PER_PAGE", take("PAGINATION_PER_PAGE"), 1)?
                .min(1000) as u32,
            max_body_bytes: int("MAX_BODY_BYTES", take("MAX_BODY_BYTES"), 1)? as usize,
            webhooks_max_per_event: int(
                "WEBHOOKS_MAX_PER_EVENT",
                take("WEBHOOKS_MAX_PER_EVENT"),
                0,
            )?
            .min(10_000) as usize,
            notify_max_addresses: int("NOTIFY_MAX_ADDRESSES", take("NOTIFY_MAX_ADDRESSES"), 0)?
                .min(10_000) as usize,
            idempotency_ttl_seconds: int(
                "IDEMPOTENCY_TTL_SECONDS",
                take("IDEMPOTENCY_TTL_SECONDS"),
                1,
            )?
            .min(366 * 86_400),
            max_websocket_connections: usize::try_from(int(
                "MAX_WEBSOCKET_CONNECTIONS",
                take("MAX_WEBSOCKET_CONNECTIONS"),
                1,
            )?)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS),
            env_blacklisted_words: text(take("ENV_BLACKLISTED_WORDS"))
                .unwrap_or_default()
                .split(',')
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
            docker_hosts,
            kubernetes_clusters: take("KUBERNETES_CLUSTERS"),
            docker_settings,
            hard_execution_timeout_seconds: int(
                "HARD_EXECUTION_TIMEOUT_SECONDS",
                take("HARD_EXECUTION_TIMEOUT_SECONDS"),
                1,
            )?,
            stop_grace_seconds: int("STOP_GRACE_SECONDS", take("STOP_GRACE_SECONDS"), 0)?,
            flow: flow::flow_settings(
                take("TASK_CONCURRENCY"),
                take("TASK_FLOW"),
                take("KEY_FLOW"),
                text(take("ADMISSION_ORDER")),
                int("PRIORITY_AGING_SECONDS", take("PRIORITY_AGING_SECONDS"), 0)?,
            )?,
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
