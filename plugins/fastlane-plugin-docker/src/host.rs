//! One Docker API endpoint: how its address is written and how to reach it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bollard::{API_DEFAULT_VERSION, Docker};
use tokio::sync::OnceCell;

use fastlane_sdk::PluginError;
use fastlane_sdk::text::error_chain;

use crate::circuit::{Circuit, CircuitSettings};
use crate::config::TlsFiles;
use crate::exits::Exits;
use crate::load::Load;

/// Where a Docker API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAddr {
    /// HTTP over TCP, `host:port` (the original's only form),
    /// `tcp://host:port` or `http://host:port`; `https://host:port` is TLS.
    Tcp {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
        /// True for `https://`: always TLS.
        https: bool,
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
        let https = text.starts_with("https://");
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("tcp://"))
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
            https,
        })
    }

    /// True when fastlane speaks TLS to it: `https://` hosts, and TCP
    /// hosts when `DOCKER_TLS_VERIFY` is on.
    pub fn uses_tls(&self, verify: bool) -> bool {
        match self {
            Self::Tcp { https, .. } => *https || verify,
            Self::Unix { .. } => false,
        }
    }
}

/// A configured host and its client, connected on first use.
#[derive(Debug)]
pub struct Host {
    /// The host exactly as configured; this is its name everywhere.
    pub name: String,
    addr: HostAddr,
    /// The certificates, when fastlane speaks TLS to it.
    tls: Option<TlsFiles>,
    timeout_seconds: u64,
    client: OnceCell<Docker>,
    /// Whether the host is given up on.
    pub circuit: Circuit,
    /// How many executions run on it, as placement counts them.
    pub load: Load,
    /// The images it was last seen to hold, with when.
    images: Mutex<HashMap<String, Instant>>,
    /// The exits its event stream announces.
    pub exits: Exits,
}

/// How long an image a host was seen to hold is taken on trust.
const IMAGE_TRUST: Duration = Duration::from_secs(60);

impl Host {
    /// A host whose address already parsed.
    pub fn new(
        name: &str,
        addr: HostAddr,
        tls: Option<TlsFiles>,
        timeout_seconds: u64,
        circuit: CircuitSettings,
    ) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            tls,
            timeout_seconds,
            client: OnceCell::new(),
            circuit: Circuit::new(circuit),
            load: Load::default(),
            images: Mutex::new(HashMap::new()),
            exits: Exits::default(),
        }
    }

    /// The client, negotiating the API version on first use. A host that is
    /// down is tried again on the next call.
    pub async fn client(&self) -> Result<&Docker, PluginError> {
        self.client
            .get_or_try_init(|| async {
                let docker = match (&self.addr, &self.tls) {
                    (HostAddr::Unix { path }, _) => {
                        Docker::connect_with_unix(path, self.timeout_seconds, API_DEFAULT_VERSION)
                    }
                    (HostAddr::Tcp { host, port, .. }, Some(tls)) => Docker::connect_with_ssl(
                        &format!("{host}:{port}"),
                        &tls.key,
                        &tls.cert,
                        &tls.ca_cert,
                        self.timeout_seconds,
                        API_DEFAULT_VERSION,
                    ),
                    (HostAddr::Tcp { host, port, .. }, None) => Docker::connect_with_http(
                        &format!("tcp://{host}:{port}"),
                        self.timeout_seconds,
                        API_DEFAULT_VERSION,
                    ),
                }
                .map_err(|e| self.unavailable(&error_chain(&e)))?;
                docker
                    .negotiate_version()
                    .await
                    .map_err(|e| self.unavailable(&error_chain(&e)))
            })
            .await
    }

    /// An [`fastlane_sdk::ErrorKind::Unavailable`] error naming this host,
    /// counted against its circuit.
    pub fn unavailable(&self, err: &dyn std::fmt::Display) -> PluginError {
        let message = format!("connection to docker host {} failed: {err}", self.name);
        self.circuit.failed(&message);
        PluginError::unavailable(message)
    }

    /// The host answered: its circuit closes.
    pub fn answered(&self) {
        self.circuit.succeeded();
    }

    /// Whether the host held `image` a moment ago (within [`IMAGE_TRUST`]).
    pub fn holds_image(&self, image: &str) -> bool {
        let images = self.images.lock().unwrap_or_else(PoisonError::into_inner);
        images
            .get(image)
            .is_some_and(|seen| seen.elapsed() < IMAGE_TRUST)
    }

    /// The host holds `image` now; or, with `false`, no longer does.
    pub fn saw_image(&self, image: &str, held: bool) {
        let mut images = self.images.lock().unwrap_or_else(PoisonError::into_inner);
        if held {
            images.insert(image.to_owned(), Instant::now());
        } else {
            images.remove(image);
        }
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
            https: false,
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
            HostAddr::parse("https://secure:2376"),
            Ok(HostAddr::Tcp {
                host: "secure".into(),
                port: 2376,
                https: true
            })
        );
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
            "https://secure",
        ] {
            assert!(HostAddr::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
