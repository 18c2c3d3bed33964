//! One Docker API endpoint: how its address is written and how to reach it.

use bollard::{API_DEFAULT_VERSION, Docker};
use tokio::sync::OnceCell;

use fastlane_sdk::PluginError;

/// Where a Docker API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAddr {
    /// Plain HTTP over TCP, `host:port` (the original's only form),
    /// `tcp://host:port` or `http://host:port`.
    Tcp {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix socket, `unix:///path`.
    Unix {
        /// The socket's path.
        path: String,
    },
}

impl HostAddr {
    /// Parses one of the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!("{text:?}: a unix socket path must be absolute"));
            }
            return Ok(Self::Unix {
                path: path.to_owned(),
            });
        }
        if text.starts_with("https://") {
            return Err(format!("{text:?}: TLS Docker hosts are not supported yet"));
        }
        let rest = text
            .strip_prefix("tcp://")
            .or_else(|| text.strip_prefix("http://"))
            .unwrap_or(text)
            .trim_end_matches('/');
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(format!("{text:?} is not host:port"));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return Err(format!("{text:?} has no valid host name"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{text:?} has no valid port"))?;
        Ok(Self::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

/// A configured host and its client, connected on first use.
#[derive(Debug)]
pub struct Host {
    /// The host exactly as configured; this is its name everywhere.
    pub name: String,
    addr: HostAddr,
    timeout_seconds: u64,
    client: OnceCell<Docker>,
}

impl Host {
    /// A host whose address already parsed.
    pub fn new(name: &str, addr: HostAddr, timeout_seconds: u64) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            timeout_seconds,
            client: OnceCell::new(),
        }
    }

    /// The client, negotiating the API version on first use. A host that is
    /// down is tried again on the next call.
    pub async fn client(&self) -> Result<&Docker, PluginError> {
        self.client
            .get_or_try_init(|| async {
                let docker = match &self.addr {
                    HostAddr::Unix { path } => {
                        Docker::connect_with_unix(path, self.timeout_seconds, API_DEFAULT_VERSION)
                    }
                    HostAddr::Tcp { host, port } => Docker::connect_with_http(
                        &format!("tcp://{host}:{port}"),
                        self.timeout_seconds,
                        API_DEFAULT_VERSION,
                    ),
                }
                .map_err(|e| self.unavailable(&e))?;
                docker
                    .negotiate_version()
                    .await
                    .map_err(|e| self.unavailable(&e))
            })
            .await
    }

    /// An [`fastlane_sdk::ErrorKind::Unavailable`] error naming this host.
    pub fn unavailable(&self, err: &dyn std::fmt::Display) -> PluginError {
        PluginError::unavailable(format!(
            "connection to docker host {} failed: {err}",
            self.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_parses() {
        let tcp = |h: &str, p| HostAddr::Tcp {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            HostAddr::parse("localhost:2375"),
            Ok(tcp("localhost", 2375))
        );
        assert_eq!(
            HostAddr::parse("docker-host:2375"),
            Ok(tcp("docker-host", 2375))
        );
        assert_eq!(HostAddr::parse("10.0.0.1:2375"), Ok(tcp("10.0.0.1", 2375)));
        assert_eq!(
            HostAddr::parse("tcp://d.example.com:1"),
            Ok(tcp("d.example.com", 1))
        );
        assert_eq!(HostAddr::parse("http://d:2/"), Ok(tcp("d", 2)));
        assert_eq!(HostAddr::parse("[::1]:2375"), Ok(tcp("::1", 2375)));
        assert_eq!(
            HostAddr::parse("unix:///run/podman.sock"),
            Ok(HostAddr::Unix {
                path: "/run/podman.sock".into()
            })
        );
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for bad in [
            "example.com",
            "example.com/",
            "example.com:abcd",
            ":2375",
            "a:0",
            "a:70000",
            "unix://relative.sock",
            "https://secure:2376",
        ] {
            assert!(HostAddr::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
