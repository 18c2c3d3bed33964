//! The master a set of Redis Sentinels names, followed across failovers.
//!
//! [`Master`] asks the Sentinels which server is the master of the service
//! (the redis crate's resolver: `SENTINEL MASTERS` on each Sentinel in turn,
//! then `ROLE` on the server named, which must say `master`), and keeps one
//! multiplexed connection to it. A request that fails in a way a failover
//! explains — the connection refused, dropped (the Sentinels kill the old
//! master's clients when they demote it) or timed out, a `READONLY` reply
//! (the server is a replica now), `MASTERDOWN`, `LOADING` — drops that
//! connection, asks the Sentinels again, and sends the request again, with a
//! growing pause, for up to [`PATIENCE`]. Then it fails, and the queue
//! reports itself unavailable (the API answers 503).
//!
//! **Acknowledged writes survive a failover.** Replication is asynchronous:
//! a master killed right after a write can take the write with it. So,
//! unless the URL says `wait_replicas=0`, every script call is followed, in
//! the same pipeline on the same connection, by `WAIT <wait_replicas>`; a
//! write that fewer replicas confirm within [`WAIT`] is not counted as done
//! but sent again, through the Sentinels, like a failed one. Sentinel
//! promotes the replica with the most data, so with one replica (the usual
//! set-up) everything fastlane acknowledged is on the new master. The price:
//! with no replica up, queue writes fail (503) until one is back. A `PING`
//! (the API's check before it stores a job, and `/healthcheck`'s) is
//! followed by `WAIT` too, so it fails when a write could not be
//! acknowledged, and the API refuses a job before it writes anything.
//!
//! **Sending a request again is safe** because each queue operation is one
//! script or one read:
//! - enqueue is a no-op for an id already queued (it then reports "already
//!   queued", which callers only count);
//! - extend and give-back move the message to the same score again, and only
//!   for the same lease token; ack deletes a message only once;
//! - a lease sent again takes the next due message. If the first one did
//!   take one and its answer was lost, that message stays leased to nobody
//!   until its lease lapses and is then delivered again — what happens when
//!   a consumer dies holding it (delivery is at least once, and counted in
//!   `attempts`).
//!
//! **TLS** (`rediss+sentinel://`): the Sentinels are reached over TLS, and
//! so is every server they name (the crate's `TlsMode::Secure` for the
//! nodes), each certificate checked against the system's roots or
//! `SSL_CERT_FILE`, as for `rediss://`. The URL's user and password log in
//! to the master; `sentinel_username` / `sentinel_password`, when given, to
//! the Sentinels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    Pipeline, RedisConnectionInfo, RedisError, RedisFuture, RedisResult, ServerErrorKind, TlsMode,
    Value,
};
use tracing::{debug, info, warn};

use super::url::{Credentials, SentinelUrl};

/// How long a request keeps trying through a failover before it fails.
/// Sentinel's own failover takes about a second once it starts; this also
/// covers its detection of a dead master for `down-after-milliseconds` up to
/// several seconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long a write waits for its replicas (Redis `WAIT` timeout).
pub const WAIT: Duration = Duration::from_secs(1);

/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A connection attempt to the master gives up after this.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An answer slower than this counts as a failure. Longer than [`WAIT`],
/// which holds a write's answer back on purpose.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The master of one Sentinel-monitored service.
#[derive(Clone)]
pub struct Master {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    db: i64,
    wait_replicas: u32,
    /// The resolver, behind an async lock: one resolution at a time.
    sentinels: tokio::sync::Mutex<Sentinel>,
    /// How to log in to the master.
    node: SentinelNodeConnectionInfo,
    /// The connection in use, if any.
    current: Mutex<Option<Current>>,
    generation: AtomicU64,
}

#[derive(Clone)]
struct Current {
    generation: u64,
    connection: MultiplexedConnection,
    address: String,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master")
            .field("service", &self.inner.service)
            .field("db", &self.inner.db)
            .field("wait_replicas", &self.inner.wait_replicas)
            .finish_non_exhaustive()
    }
}

/// Why one try failed.
enum Failure {
    /// Redis (or the way to it) failed.
    Redis(RedisError),
    /// The write is on the master but fewer replicas than asked confirmed it.
    Unconfirmed { confirmed: i64 },
}

impl Master {
    /// Asks the Sentinels for the master and connects to it, trying for up
    /// to [`PATIENCE`].
    pub async fn connect(url: &SentinelUrl) -> RedisResult<Self> {
        let sentinels = url
            .sentinels
            .iter()
            .map(|(host, port)| {
                let info = address(host, *port, url.tls).into_connection_info()?;
                let redis = logged_in(RedisConnectionInfo::default(), &url.sentinel_credentials);
                Ok(info.set_redis_settings(redis))
            })
            .collect::<RedisResult<Vec<ConnectionInfo>>>()?;
        let redis = logged_in(
            RedisConnectionInfo::default().set_db(url.db),
            &url.credentials,
        );
        let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(redis);
        if url.tls {
            node = node.set_tls_mode(TlsMode::Secure);
        }
        let master = Self {
            inner: Arc::new(Inner {
                service: url.service.clone(),
                db: url.db,
                wait_replicas: url.wait_replicas,
                sentinels: tokio::sync::Mutex::new(Sentinel::build(sentinels)?),
                node,
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
            }),
        };
        master
            .run(|_| async { Ok::<_, Failure>(()) }, "connect")
            .await?;
        Ok(master)
    }

    fn current(&self) -> Option<Current> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The connection in use, or a new one to the master the Sentinels name.
    async fn connection(&self) -> RedisResult<Current> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let mut sentinels = self.inner.sentinels.lock().await;
        // Someone else may have resolved it while this waited for the lock.
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let client = sentinels
            .async_master_for(&self.inner.service, Some(&self.inner.node))
            .await?;
        let address = client.get_connection_info().addr().to_string();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let current = Current {
            generation: self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1,
            connection,
            address,
        };
        info!(
            service = %self.inner.service,
            master = %current.address,
            "connected to the master the sentinels name"
        );
        *self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(current.clone());
        Ok(current)
    }

    /// Drops the connection of `generation` (unless a newer one replaced
    /// it already), so the next try asks the Sentinels again.
    fn forget(&self, generation: u64, why: &str) {
        let mut current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = current.as_ref().filter(|c| c.generation == generation) {
            warn!(
                service = %self.inner.service,
                master = %old.address,
                error = why,
                "lost the master; asking the sentinels again"
            );
            *current = None;
        }
    }

    /// Runs `request` on the master, again through a failover (see the
    /// module header), for up to [`PATIENCE`].
    async fn run<T, F, Fut>(&self, request: F, what: &str) -> RedisResult<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let (generation, failure) = match self.connection().await {
                Ok(current) => match request(current.connection).await {
                    Ok(answer) => return Ok(answer),
                    Err(failure) => (Some(current.generation), failure),
                },
                Err(err) => (None, Failure::Redis(err)),
            };
            let err = match failure {
                Failure::Redis(err) if !failover_explains(&err) => return Err(err),
                Failure::Redis(err) => err,
                Failure::Unconfirmed { confirmed } => {
                    unconfirmed(confirmed, self.inner.wait_replicas)
                }
            };
            if let Some(generation) = generation {
                self.forget(generation, &err.to_string());
            }
            if started.elapsed() + pause > PATIENCE {
                warn!(
                    service = %self.inner.service,
                    request = what,
                    error = %err,
                    "no master answered in time"
                );
                return Err(err);
            }
            debug!(service = %self.inner.service, request = what, error = %err, "trying again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Sends `cmd`; a script call (a write) or a `PING` is followed by
    /// `WAIT`.
    async fn send(
        &self,
        mut connection: MultiplexedConnection,
        cmd: &Cmd,
    ) -> Result<Value, Failure> {
        let wanted = self.inner.wait_replicas;
        if wanted == 0 || !waits_for_replicas(cmd) {
            // A server's error comes back as a value; as an error, a
            // `READONLY` or `LOADING` reply is seen and sent again.
            return connection
                .req_packed_command(cmd)
                .await
                .and_then(Value::extract_error)
                .map_err(Failure::Redis);
        }
        let mut pipeline = Pipeline::with_capacity(2);
        pipeline
            .add_command(cmd.clone())
            .cmd("WAIT")
            .arg(wanted)
            .arg(u64::try_from(WAIT.as_millis()).unwrap_or(u64::MAX));
        let mut answers = connection
            .req_packed_commands(&pipeline, 0, 2)
            .await
            .map_err(Failure::Redis)?;
        let (Some(confirmed), Some(answer), None) = (answers.pop(), answers.pop(), answers.pop())
        else {
            return Err(Failure::Redis(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "a command and WAIT did not give two answers",
            ))));
        };
        // The script's own error (NOSCRIPT included) goes back as it is.
        let answer = answer.extract_error().map_err(Failure::Redis)?;
        match confirmed {
            Value::Int(confirmed) if confirmed >= i64::from(wanted) => Ok(answer),
            Value::Int(confirmed) => Err(Failure::Unconfirmed { confirmed }),
            other => Err(Failure::Redis(other.extract_error().err().unwrap_or_else(
                || RedisError::from((ErrorKind::UnexpectedReturnType, "WAIT")),
            ))),
        }
    }
}

/// `host:port`, over TLS (certificates checked) when `tls`.
pub(super) fn address(host: &str, port: u16, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    }
}

/// `redis` logging in with `credentials`.
fn logged_in(mut redis: RedisConnectionInfo, credentials: &Credentials) -> RedisConnectionInfo {
    if let Some(username) = &credentials.username {
        redis = redis.set_username(username);
    }
    if let Some(password) = &credentials.password {
        redis = redis.set_password(password);
    }
    redis
}

/// Whether `cmd` runs a script (every queue write is one) or is a `PING`.
fn waits_for_replicas(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => ["EVALSHA", "EVAL", "PING"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes())),
        _ => false,
    }
}

/// Whether a failover can explain `err`, so that asking the Sentinels again
/// may help.
fn failover_explains(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
            ) | ErrorKind::MasterNameNotFoundBySentinel
        )
}

/// The error for a write (or ping) fewer replicas confirmed than asked: a
/// timeout.
fn unconfirmed(confirmed: i64, wanted: u32) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "{confirmed} of the {wanted} replica(s) a write must reach confirmed \
             within {WAIT:?}"
        ),
    ))
}

impl ConnectionLike for Master {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let this = self.clone();
        Box::pin(async move {
            this.run(|connection| this.send(connection, cmd), "command")
                .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let this = self.clone();
        Box::pin(async move {
            this.run(
                |mut connection| async move {
                    let answers = connection
                        .req_packed_commands(pipeline, offset, count)
                        .await
                        .map_err(Failure::Redis)?;
                    // Sent again if a failover explains one of the errors.
                    for answer in &answers {
                        if let Value::ServerError(err) = answer {
                            let err = RedisError::from(err.clone());
                            if failover_explains(&err) {
                                return Err(Failure::Redis(err));
                            }
                        }
                    }
                    Ok(answers)
                },
                "pipeline",
            )
            .await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}
