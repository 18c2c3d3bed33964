//! How a Docker host's address is written (`host:port`, `tcp://`,
//! `http://`, `https://`, `unix:///path`), parsed once at load.

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
