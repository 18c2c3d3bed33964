//! `REDIS_URL`: the forms fastlane accepts, read and checked when the
//! configuration loads, so a typo stops the server at start with an error
//! that names the variable and the accepted forms.
//!
//! | form | what fastlane connects to |
//! |---|---|
//! | `redis://[[user]:password@]host[:port][/db]` | one server (port 6379, database 0 by default) |
//! | `rediss://…` | the same over TLS; the certificate is checked against the system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` name others) |
//! | `unix:///path/to.sock[?db=N]`, `redis+unix://…` | one server on a Unix socket |
//! | `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db][?wait_replicas=N][&sentinel_username=U][&sentinel_password=P]` | the master the Sentinels (port 26379 by default) name for `service`, followed across failovers |
//! | `rediss+sentinel://…` | the same with every connection (to the Sentinels, the master, and the servers Sentinel names after a failover) over TLS |
//! | `redis+cluster://[[user]:password@]host[:port][,host[:port]…]` | a Redis Cluster, through any of the nodes listed |
//! | `rediss+cluster://…` | the same with every connection (to the nodes listed and those the cluster names) over TLS |
//!
//! The three one-server forms are read by the redis crate exactly as before
//! (fastlane never changed how it reads them). In the Sentinel and Cluster
//! forms the user and password are the data nodes' (every cluster node's,
//! the master's behind Sentinels); a bare `password@`, without a colon, is
//! read as a password too. The Sentinels themselves are asked without one
//! unless `sentinel_password` (and `sentinel_username`, for an ACL user)
//! name theirs. Percent-encode any of `@ : / , ? & =` in a user name or a
//! password. Over TLS (`rediss…`) every certificate is checked as for
//! `rediss://`: against the system's roots, or the CA file `SSL_CERT_FILE`
//! names; `#insecure` is refused in every form.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

/// The forms, for error messages.
pub const FORMS: &str = "redis://[[user]:password@]host[:port][/db], \
     rediss://… (TLS), unix:///path/to.sock[?db=N], \
     redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]\
     [?wait_replicas=N][&sentinel_username=U][&sentinel_password=P], \
     rediss+sentinel://… (TLS), \
     redis+cluster://[[user]:password@]host[:port][,host[:port]…], \
     rediss+cluster://… (TLS)";

/// The Sentinels' port when a host has none.
const SENTINEL_PORT: u16 = 26379;
/// A cluster node's port when a host has none.
const REDIS_PORT: u16 = 6379;

/// Why a `REDIS_URL` was refused. The messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    /// No `scheme://`.
    #[error("not a URL (no scheme://)")]
    NotAUrl,
    /// Not one of the schemes fastlane knows.
    #[error("unknown scheme {0:?}")]
    Scheme(String),
    /// The redis crate refused a one-server URL.
    #[error("{0}")]
    Server(String),
    /// `rediss://…#insecure`.
    #[error(
        "`#insecure` would turn certificate checks off; fastlane always checks them \
         (name your CA with SSL_CERT_FILE)"
    )]
    Insecure,
    /// A `#fragment` other than `#insecure` on a Sentinel or Cluster URL.
    #[error("unexpected #{0} (a Sentinel or Cluster URL takes no fragment)")]
    Fragment(String),
    /// No host in a Sentinel or Cluster URL, or an empty entry in its list.
    #[error("an empty host in the host list")]
    NoHost,
    /// A host's port is not a port number.
    #[error("{0:?} is not a port number")]
    Port(String),
    /// A Sentinel URL without the master's service name.
    #[error("the path must name the master's service: …/<service>[/<db>]")]
    NoService,
    /// A path that is not a database number where one is expected.
    #[error("{0:?} is not a database number")]
    Db(String),
    /// A Cluster URL with a database other than 0.
    #[error("Redis Cluster has only database 0")]
    ClusterDb,
    /// A query parameter fastlane does not know.
    #[error(
        "unknown parameter {0:?} (a Sentinel URL takes wait_replicas=N, sentinel_username \
         and sentinel_password; a Cluster URL takes none)"
    )]
    Parameter(String),
    /// `wait_replicas` that is not a whole number.
    #[error("wait_replicas={0:?} is not a whole number")]
    WaitReplicas(String),
    /// Percent-encoding that does not decode to UTF-8.
    #[error("a percent-encoded part is not UTF-8")]
    Encoding,
}

/// Who fastlane logs in as (on the data nodes, or on the Sentinels).
#[derive(Clone, Default)]
pub struct Credentials {
    /// The ACL user, when not `default`.
    pub username: Option<String>,
    /// The password.
    pub password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A `redis+sentinel://` or `rediss+sentinel://` URL.
#[derive(Debug, Clone)]
pub struct SentinelUrl {
    /// Whether every connection speaks TLS (`rediss+sentinel://`).
    pub tls: bool,
    /// The Sentinels, `(host, port)`.
    pub sentinels: Vec<(String, u16)>,
    /// The name the Sentinels monitor the master under.
    pub service: String,
    /// The database.
    pub db: i64,
    /// The data nodes' credentials.
    pub credentials: Credentials,
    /// The Sentinels' own credentials (`sentinel_username`,
    /// `sentinel_password`); none by default.
    pub sentinel_credentials: Credentials,
    /// How many replicas must confirm each queue write (Redis `WAIT`)
    /// before fastlane counts it as done; 0 for none.
    pub wait_replicas: u32,
}

/// A `redis+cluster://` or `rediss+cluster://` URL.
#[derive(Debug, Clone)]
pub struct ClusterUrl {
    /// Whether every connection speaks TLS (`rediss+cluster://`).
    pub tls: bool,
    /// The nodes to discover the cluster from, `(host, port)`.
    pub nodes: Vec<(String, u16)>,
    /// The nodes' credentials.
    pub credentials: Credentials,
}

/// What a `REDIS_URL` points at.
#[derive(Debug, Clone)]
pub enum Target {
    /// One server (`redis://`, `rediss://`, `unix://`, `redis+unix://`).
    Server(ConnectionInfo),
    /// A master behind Sentinels.
    Sentinel(SentinelUrl),
    /// A Redis Cluster.
    Cluster(ClusterUrl),
}

/// A checked `REDIS_URL`. Shown (`Display`, `Debug`) with its password
/// masked.
#[derive(Clone)]
pub struct RedisUrl {
    /// What it points at.
    pub target: Target,
    shown: String,
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.shown).finish()
    }
}

impl RedisUrl {
    /// Reads `url`.
    pub fn parse(url: &str) -> Result<Self, RedisUrlError> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or(RedisUrlError::NotAUrl)?;
        let target = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "rediss" | "unix" | "redis+unix" => server(url)?,
            "redis+sentinel" => Target::Sentinel(sentinel(rest, false)?),
            "rediss+sentinel" => Target::Sentinel(sentinel(rest, true)?),
            "redis+cluster" => Target::Cluster(cluster(rest, false)?),
            "rediss+cluster" => Target::Cluster(cluster(rest, true)?),
            other => return Err(RedisUrlError::Scheme(other.to_owned())),
        };
        Ok(Self {
            target,
            shown: crate::redact::url_without_password(url),
        })
    }

    /// Whether it names a Redis Cluster (whose keys need a hash tag).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }
}

/// A one-server URL, as the redis crate reads it.
fn server(url: &str) -> Result<Target, RedisUrlError> {
    let info = url
        .into_connection_info()
        .map_err(|e| RedisUrlError::Server(e.to_string()))?;
    if matches!(info.addr(), ConnectionAddr::TcpTls { insecure: true, .. }) {
        return Err(RedisUrlError::Insecure);
    }
    Ok(Target::Server(info))
}

/// `[[user]:password@]hosts[/path][?query]` split into its parts.
struct Parts<'a> {
    credentials: Credentials,
    hosts: &'a str,
    path: &'a str,
    query: &'a str,
}

fn parts(rest: &str) -> Result<Parts<'_>, RedisUrlError> {
    let rest = match rest.split_once('#') {
        None => rest,
        Some((_, "insecure")) => return Err(RedisUrlError::Insecure),
        Some((_, fragment)) => return Err(RedisUrlError::Fragment(fragment.to_owned())),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user_info, hosts) = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => (Some(user_info), hosts),
        None => (None, authority),
    };
    let credentials = match user_info {
        None => Credentials::default(),
        Some(info) => {
            let (user, password) = info.split_once(':').unwrap_or(("", info));
            Credentials {
                username: Some(decode(user)?).filter(|u| !u.is_empty()),
                password: Some(decode(password)?).filter(|p| !p.is_empty()),
            }
        }
    };
    Ok(Parts {
        credentials,
        hosts,
        path,
        query,
    })
}

fn decode(text: &str) -> Result<String, RedisUrlError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| RedisUrlError::Encoding)
}

/// `host[:port],…`, IPv6 addresses in brackets.
fn hosts(list: &str, default_port: u16) -> Result<Vec<(String, u16)>, RedisUrlError> {
    list.split(',')
        .map(|entry| {
            let entry = entry.trim();
            let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
                let (host, after) = v6.split_once(']').ok_or(RedisUrlError::NoHost)?;
                (host, after.strip_prefix(':'))
            } else {
                match entry.rsplit_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (entry, None),
                }
            };
            if host.is_empty() {
                return Err(RedisUrlError::NoHost);
            }
            let port = match port {
                None => default_port,
                Some(port) => port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| RedisUrlError::Port(port.to_owned()))?,
            };
            Ok((host.to_owned(), port))
        })
        .collect()
}

fn database(text: &str) -> Result<i64, RedisUrlError> {
    text.parse::<i64>()
        .ok()
        .filter(|db| *db >= 0)
        .ok_or_else(|| RedisUrlError::Db(text.to_owned()))
}

fn sentinel(rest: &str, tls: bool) -> Result<SentinelUrl, RedisUrlError> {
    let parts = parts(rest)?;
    let sentinels = hosts(parts.hosts, SENTINEL_PORT)?;
    let mut segments = parts.path.split('/').filter(|s| !s.is_empty());
    let service = decode(segments.next().ok_or(RedisUrlError::NoService)?)?;
    let db = segments.next().map(database).transpose()?.unwrap_or(0);
    if let Some(extra) = segments.next() {
        return Err(RedisUrlError::Db(extra.to_owned()));
    }
    let mut wait_replicas = 1;
    let mut sentinel_credentials = Credentials::default();
    for pair in parts.query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "wait_replicas" => {
                wait_replicas = value
                    .parse()
                    .map_err(|_| RedisUrlError::WaitReplicas(value.to_owned()))?;
            }
            "sentinel_username" => {
                sentinel_credentials.username = Some(decode(value)?).filter(|u| !u.is_empty());
            }
            "sentinel_password" => {
                sentinel_credentials.password = Some(decode(value)?).filter(|p| !p.is_empty());
            }
            other => return Err(RedisUrlError::Parameter(other.to_owned())),
        }
    }
    Ok(SentinelUrl {
        tls,
        sentinels,
        service,
        db,
        credentials: parts.credentials,
        sentinel_credentials,
        wait_replicas,
    })
}

fn cluster(rest: &str, tls: bool) -> Result<ClusterUrl, RedisUrlError> {
    let parts = parts(rest)?;
    let nodes = hosts(parts.hosts, REDIS_PORT)?;
    match parts.path.trim_matches('/') {
        "" | "0" => {}
        db if database(db).is_ok() => return Err(RedisUrlError::ClusterDb),
        other => return Err(RedisUrlError::Db(other.to_owned())),
    }
    if let Some(pair) = parts.query.split('&').find(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        return Err(RedisUrlError::Parameter(name.to_owned()));
    }
    Ok(ClusterUrl {
        tls,
        nodes,
        credentials: parts.credentials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel_of(url: &str) -> SentinelUrl {
        match RedisUrl::parse(url).expect("valid").target {
            Target::Sentinel(s) => s,
            other => panic!("not a sentinel URL: {other:?}"),
        }
    }

    #[test]
    fn one_server_forms_are_read_as_the_redis_crate_reads_them() {
        for url in [
            "redis://127.0.0.1:6390/0",
            "redis://:secret@db/3",
            "redis://user:secret@db:6380",
            "rediss://db.example:6380/0",
            "unix:///run/redis.sock?db=2",
            "redis+unix:///run/redis.sock",
        ] {
            let parsed = RedisUrl::parse(url).expect(url);
            assert!(matches!(parsed.target, Target::Server(_)), "{url}");
            assert!(!parsed.to_string().contains("secret"), "{parsed}");
        }
        let Target::Server(info) = RedisUrl::parse("redis://:pw@db:6380/3")
            .expect("valid")
            .target
        else {
            panic!("one server");
        };
        assert_eq!(info.addr().to_string(), "db:6380");
        assert_eq!(info.redis_settings().db(), 3);
    }

    #[test]
    fn sentinel_urls_name_sentinels_service_database_and_password() {
        let s = sentinel_of("redis+sentinel://:p%40ss@10.0.0.1:26380,[::1],s3/mymaster/2");
        assert_eq!(
            s.sentinels,
            [
                ("10.0.0.1".to_owned(), 26380),
                ("::1".to_owned(), 26379),
                ("s3".to_owned(), 26379)
            ]
        );
        assert_eq!((s.service.as_str(), s.db), ("mymaster", 2));
        assert_eq!(s.credentials.password.as_deref(), Some("p@ss"));
        assert_eq!(s.credentials.username, None);
        assert_eq!(s.wait_replicas, 1, "writes wait for one replica by default");

        let s = sentinel_of("redis+sentinel://bare@h:1/svc?wait_replicas=0");
        assert_eq!(s.credentials.password.as_deref(), Some("bare"));
        assert_eq!((s.db, s.wait_replicas), (0, 0));
        let s = sentinel_of("redis+sentinel://app:pw@h:1/svc/");
        assert_eq!(s.credentials.username.as_deref(), Some("app"));
    }

    #[test]
    fn tls_forms_say_tls_and_take_the_same_syntax() {
        let s = sentinel_of(
            "rediss+sentinel://fastlane:s%26cret@h1:1,h2/svc/1\
             ?sentinel_username=watch&sentinel_password=p%40%26w&wait_replicas=2",
        );
        assert!(s.tls);
        assert_eq!(s.credentials.username.as_deref(), Some("fastlane"));
        assert_eq!(s.credentials.password.as_deref(), Some("s&cret"));
        assert_eq!(s.sentinel_credentials.username.as_deref(), Some("watch"));
        assert_eq!(s.sentinel_credentials.password.as_deref(), Some("p@&w"));
        assert_eq!((s.db, s.wait_replicas, s.sentinels.len()), (1, 2, 2));
        let plain = sentinel_of("redis+sentinel://h1/svc");
        assert!(!plain.tls);
        assert!(plain.sentinel_credentials.password.is_none());

        let Target::Cluster(c) = RedisUrl::parse("RediSS+Cluster://fastlane:secret@a:7000,b")
            .expect("valid")
            .target
        else {
            panic!("a cluster");
        };
        assert!(c.tls);
        assert_eq!(c.credentials.username.as_deref(), Some("fastlane"));
        assert_eq!(c.nodes[1], ("b".to_owned(), 6379));

        let shown = RedisUrl::parse(
            "rediss+sentinel://u:secret@h/svc?sentinel_username=w&sentinel_password=secret2",
        )
        .expect("valid")
        .to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("sentinel_username=w"), "{shown}");
    }

    #[test]
    fn cluster_urls_list_nodes() {
        let Target::Cluster(c) = RedisUrl::parse("redis+cluster://:pw@a:7000,b:7001,c")
            .expect("valid")
            .target
        else {
            panic!("a cluster");
        };
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.nodes[2], ("c".to_owned(), 6379));
        assert_eq!(c.credentials.password.as_deref(), Some("pw"));
        assert!(RedisUrl::parse("redis+cluster://a:1/0").is_ok());
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_the_password() {
        for (url, needle) in [
            ("http://h:1", "unknown scheme \"http\""),
            ("localhost:6379", "not a URL"),
            ("redis://:secret@h:notaport/0", "did not parse"),
            ("rediss://:secret@h:1/0#insecure", "#insecure"),
            ("redis+sentinel://:secret@h1:1,h2:2", "service"),
            (
                "redis+sentinel://:secret@h1:1/svc/x",
                "\"x\" is not a database",
            ),
            (
                "redis+sentinel://:secret@h1:1/svc/0/9",
                "\"9\" is not a database",
            ),
            ("redis+sentinel://:secret@h1:1,,h2/svc", "empty host"),
            (
                "redis+sentinel://:secret@h1:99999/svc",
                "\"99999\" is not a port",
            ),
            (
                "redis+sentinel://:secret@h1/svc?client_type=slave",
                "client_type",
            ),
            (
                "redis+sentinel://:secret@h1/svc?wait_replicas=all",
                "wait_replicas",
            ),
            ("redis+cluster://:secret@a:1/2", "only database 0"),
            ("redis+cluster://:secret@a:1?x=1", "unknown parameter"),
            ("redis+cluster://:secret@", "empty host"),
            ("rediss+cluster://:secret@a:1#insecure", "#insecure"),
            ("rediss+sentinel://:secret@a:1/svc#insecure", "#insecure"),
            ("rediss+cluster://:secret@a:1#x", "unexpected #x"),
            (
                "rediss+sentinel://:secret@h1/svc?sentinel_pass=secret",
                "sentinel_pass",
            ),
            ("rediss+cluster://:secret@a:1/3", "only database 0"),
            ("redis+tls://:secret@a:1", "unknown scheme"),
        ] {
            let err = RedisUrl::parse(url).expect_err(url).to_string();
            assert!(err.contains(needle), "{url}: {err}");
            assert!(!err.contains("secret"), "{url}: {err}");
        }
    }
}
