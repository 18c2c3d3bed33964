//! The table of known keys (name, section, type, default, documentation)
//! and how a raw value, from the environment, the file or a default, is read
//! as the key's type.

use super::ConfigError;

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Bool,
    Text,
    Integer,
    Float,
    Json,
}

/// One known key: its name, type, default and documentation.
#[derive(Debug)]
pub(super) struct Key {
    pub(super) name: &'static str,
    pub(super) section: &'static str,
    pub(super) kind: Kind,
    pub(super) default: Option<&'static str>,
    pub(super) doc: &'static str,
}

pub(super) const KEYS: &[Key] = &[
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
        name: "WEBHOOKS_MAX_PER_EVENT",
        section: "API",
        kind: Kind::Integer,
        default: Some("20"),
        doc: "Most webhooks a job may carry per event (starts, succeeds, fails, finishes); \
              a job with more is refused with 400.",
    },
    Key {
        name: "NOTIFY_MAX_ADDRESSES",
        section: "API",
        kind: Kind::Integer,
        default: Some("50"),
        doc: "Most e-mail addresses a job's notify lists may hold, all together; a job \
              with more is refused with 400.",
    },
    Key {
        name: "IDEMPOTENCY_TTL_SECONDS",
        section: "API",
        kind: Kind::Integer,
        default: Some("86400"),
        doc: "How long an `Idempotency-Key` stands for the first request it came with: \
              the same key and body answer with the first answer, another body with 409.",
    },
    Key {
        name: "MAX_WEBSOCKET_CONNECTIONS",
        section: "API",
        kind: Kind::Integer,
        default: Some("256"),
        doc: "Most live-log WebSocket connections (…/ws) one API process keeps open at \
              once; one more is answered 503. Sockets following the same execution \
              share one reader of the store.",
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
        default: Some(""),
        doc: "Comma-separated origins (scheme://host[:port]) whose web pages may call the API \
              from a browser. None by default: a page of another origin can neither read \
              answers nor change anything (its POST, PUT, PATCH, DELETE and WebSocket \
              requests are refused with 403). * allows any origin (the original's behaviour), \
              answered as `Access-Control-Allow-Origin: *`, never with credentials.",
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
        name: "API_TOKENS",
        section: "API",
        kind: Kind::Json,
        default: None,
        doc: "Bearer tokens, as JSON: [{\"name\": \"ci\", \"sha256\": \"<hex SHA-256 of the token>\", \
              \"scopes\": [\"read\", \"submit:ci-.*\"]}]. Scopes: admin (everything), read (every \
              GET route), submit:<regex> (submit, replace, stop and retry jobs of the tasks whose \
              whole id matches). Clients send `Authorization: Bearer <token>`. Only the hash is \
              configured: `fastlane token` makes a token and prints its entry. When tokens or \
              basic-auth credentials are set, every route asks for them.",
    },
    Key {
        name: "AUTH_OPEN_ROUTES",
        section: "API",
        kind: Kind::Text,
        default: Some(""),
        doc: "Comma-separated routes that answer without credentials when authentication is on: \
              healthcheck, metrics (for load balancers and Prometheus).",
    },
    Key {
        name: "ENV_BLACKLISTED_WORDS",
        section: "API",
        kind: Kind::Text,
        default: Some(crate::redact::DEFAULT_BLACKLISTED_WORDS),
        doc: "Comma-separated words; an env var whose name contains one of them \
              (case-insensitive) has its value shown as *** wherever fastlane shows it \
              (API, status, notifications), and so has a URL query parameter whose name \
              contains one (webhook URLs). Webhook header values and URL passwords are \
              always masked. The container still gets the real values.",
    },
    Key {
        name: "DOCKER_HOSTS",
        section: "Docker Executor",
        kind: Kind::Json,
        default: None,
        doc: "Farms of Docker API hosts, as JSON: \
              [{\"match\": \"<task id regex>\", \"hosts\": [\"host:port\", \"unix:///path\"], \"maxRunning\": 10}]. \
              When unset: $DOCKER_HOST, else the first of /var/run/docker.sock, \
              /run/podman/podman.sock and /run/fastlane/podman.sock that exists. \
              A farm may also set cpuLimit and memoryLimit (bytes; defaults for jobs that set none), \
              maxCpuLimit and maxMemoryLimit (bytes; a job asking for more is refused at submit), \
              user, readOnlyRootfs (true/false), network (the network mode), capDrop \
              (capabilities to drop, e.g. [\"ALL\"]), logMaxSize (the engine's log driver \
              max-size, default \"100m\"; \"0\" leaves the engine's own default) and fallthrough.",
    },
    Key {
        name: "PIDS_LIMIT",
        section: "Docker Executor",
        kind: Kind::Integer,
        default: Some("4096"),
        doc: "The most processes (and threads) one container may run at once (the engine's \
              pids limit); 0 sets none.",
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
        name: "KUBERNETES_CLUSTERS",
        section: "Kubernetes Executor",
        kind: Kind::Json,
        default: Some("[]"),
        doc: "Clusters the `kubernetes` executor runs Jobs on (tasks reach it through an \
              EXECUTORS route to \"kubernetes\"), as JSON: [{\"name\": \"prod\", \
              \"match\": \"<task id regex>\", \"kubeconfig\": \"/path\", \"context\": \"c\", \
              \"namespace\": \"jobs\", \"maxRunning\": 10}], or \"inCluster\": true instead of \
              kubeconfig. Also serviceAccount, nodeSelector, tolerations, imagePullSecrets, \
              cpuLimit and memoryLimit (defaults for jobs that set none), labels, annotations, \
              ttlSecondsAfterFinished (a backstop: fastlane deletes each Job once its result \
              is stored; default 86400, at least 600), runAsNonRoot, \
              imagePullTimeoutSeconds (default 120), circuitBreakerMaxFails (3) and \
              circuitBreakerResetSeconds (30). Kubernetes merges a pod's stdout and stderr: \
              the whole output is stored as stdout.",
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
        section: "Flow control",
        kind: Kind::Json,
        default: Some("[]"),
        doc: "Limits on how many executions of one task run at once, as JSON: \
              [{\"match\": \"<task id regex>\", \"maxConcurrent\": 2}] (matched at the start \
              of the task id). Every task that matches gets the smallest limit that applies, \
              and a job's own `maxConcurrent` can only lower it; executions over the limit \
              wait their turn. The same as `TASK_FLOW` rules with `maxConcurrent` alone.",
    },
    Key {
        name: "TASK_FLOW",
        section: "Flow control",
        kind: Kind::Json,
        default: Some("[]"),
        doc: "Flow rules by task, as JSON: [{\"match\": \"<task id regex>\", \
              \"maxConcurrent\": 4, \"maxConcurrentPerKey\": 1, \"rate\": 5, \"burst\": 10, \
              \"weight\": 2, \"priority\": 0}], every field but `match` optional. \
              `maxConcurrent`: executions of each matching task at once (the smallest that \
              applies wins). `maxConcurrentPerKey`: of each `concurrencyKey` within the task. \
              `rate`/`burst`: starts a second per task, a token bucket holding `burst` \
              (default: a second's worth), exact across processes. `weight`: the task's share \
              of a farm under `ADMISSION_ORDER=fair` (default 1). `priority`: for jobs that \
              give none (default 0). For the fields but the limits, the first rule that \
              matches and sets it wins.",
    },
    Key {
        name: "KEY_FLOW",
        section: "Flow control",
        kind: Kind::Json,
        default: Some("[]"),
        doc: "Flow rules by a job's `concurrencyKey` (a customer, a tenant), across every \
              task: [{\"match\": \"<key regex>\", \"maxConcurrent\": 2, \"rate\": 1, \
              \"burst\": 5, \"weight\": 1}]. Jobs with a key share slots fairly by key \
              rather than by task.",
    },
    Key {
        name: "ADMISSION_ORDER",
        section: "Flow control",
        kind: Kind::Text,
        default: Some("fair"),
        doc: "Who goes next among waiting executions of the same priority: `fair` (the task, \
              or concurrency key, holding the fewest slots for its weight; first come first \
              within it) or `fifo` (first come first served).",
    },
    Key {
        name: "PRIORITY_AGING_SECONDS",
        section: "Flow control",
        kind: Kind::Integer,
        default: Some("60"),
        doc: "A waiting execution's priority rises by one for every this many seconds it \
              waited, up to the highest priority waiting, so none starves; 0 turns it off.",
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
        name: "WEBHOOKS_ALLOW_LOCAL_NETWORK",
        section: "Notifications",
        kind: Kind::Bool,
        default: Some("false"),
        doc: "Let webhooks call loopback and private addresses (127/8, 10/8, 172.16/12, \
              192.168/16, 100.64/10, 0/8, ::1, fc00::/7, multicast...). Link-local and \
              cloud-metadata addresses (169.254/16, fe80::/10, fd00:ec2::254) are refused \
              even then.",
    },
    Key {
        name: "WEBHOOKS_ALLOWED_HOSTS",
        section: "Notifications",
        kind: Kind::Text,
        default: Some(""),
        doc: "Comma-separated host names, IP addresses and CIDR blocks webhooks may call \
              on the local network without WEBHOOKS_ALLOW_LOCAL_NETWORK (a name allows \
              every address it resolves to).",
    },
    Key {
        name: "NOTIFICATIONS_MAX_IN_FLIGHT_PER_JOB",
        section: "Notifications",
        kind: Kind::Integer,
        default: Some("2"),
        doc: "Deliveries (webhook calls, e-mails) of one job a worker makes at once; \
              the job's others wait their turn, so one job's many or slow hooks never \
              hold up another job's.",
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
              `?wait_replicas=N` to change, 0 for none; `sentinel_username=U&sentinel_password=P` \
              log in to the Sentinels). A Redis Cluster: \
              `redis+cluster://[[user]:password@]host[:port][,host[:port]…]` (keys go in the \
              `{REDIS_KEY_PREFIX}` hash tag). `rediss+sentinel://…` and `rediss+cluster://…` speak \
              TLS to every Sentinel and node, certificates checked as for `rediss://`.",
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
/// A value as found: a string from the environment or a TOML value.
pub(super) enum Raw {
    Env(String),
    File(toml::Value),
    Default(&'static str),
}

pub(super) fn parse(key: &Key, raw: Raw) -> Result<serde_json::Value, ConfigError> {
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
