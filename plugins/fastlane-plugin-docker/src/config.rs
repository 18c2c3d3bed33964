//! What the operator configures: farms of hosts, routed by task id.

use serde::Deserialize;

use fastlane_sdk::PluginError;

use crate::host::HostAddr;

/// One farm: hosts that run the tasks whose id matches `match`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Farm {
    /// A regular expression matched at the start of the task id; empty
    /// matches every task.
    #[serde(rename = "match", default)]
    pub pattern: String,
    /// The farm's Docker API hosts: `host:port`, `tcp://host:port`,
    /// `http://host:port` or `unix:///path/to/socket`.
    pub hosts: Vec<String>,
    /// How many executions the farm runs at once.
    #[serde(rename = "maxRunning", default = "default_max_running")]
    pub max_running: u32,
    /// CPUs a container may use when its job sets no `cpuLimit`.
    #[serde(rename = "cpuLimit", default)]
    pub cpu_limit: Option<f64>,
    /// Bytes of memory a container may use when its job sets no `memoryLimit`.
    #[serde(rename = "memoryLimit", default)]
    pub memory_limit: Option<u64>,
    /// When the farm is full or has no host to offer, its tasks may run on
    /// the next farm whose `match` fits them too.
    #[serde(default)]
    pub fallthrough: bool,
}

fn default_max_running() -> u32 {
    10
}

/// The executor's configuration: the `DOCKER_HOSTS` farms and a few knobs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DockerExecutorConfig {
    /// The farms, in the order they are matched.
    pub farms: Vec<Farm>,
    /// Seconds to wait for a Docker API response's headers.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// When hosts are given up on.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// Certificates for TLS hosts.
    #[serde(default)]
    pub tls: TlsConfig,
}

/// `DOCKER_CIRCUIT_BREAKER_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CircuitBreakerConfig {
    /// Connection failures in a row that open a host's circuit.
    pub max_fails: u32,
    /// Seconds an open circuit waits before a probe.
    pub reset_timeout_seconds: u64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            max_fails: 5,
            reset_timeout_seconds: 60,
        }
    }
}

/// `DOCKER_TLS_*`: PEM files for hosts spoken to over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsConfig {
    /// The CA that signed the hosts' certificates.
    pub ca_cert: Option<String>,
    /// The client certificate.
    pub cert: Option<String>,
    /// Its private key.
    pub key: Option<String>,
    /// Speak TLS to `tcp://` and `host:port` hosts too.
    #[serde(default)]
    pub verify: bool,
}

/// The three files a TLS host needs, all given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca_cert: std::path::PathBuf,
    /// The client certificate.
    pub cert: std::path::PathBuf,
    /// Its key.
    pub key: std::path::PathBuf,
}

impl TlsConfig {
    /// The files, checked to exist, or which setting is missing.
    pub fn files(&self) -> Result<TlsFiles, PluginError> {
        let file = |value: &Option<String>, key: &str| {
            let path = value.as_deref().filter(|p| !p.is_empty()).ok_or_else(|| {
                PluginError::invalid_config(format!(
                    "{key} must name a PEM file: DOCKER_HOSTS has a TLS host"
                ))
            })?;
            let path = std::path::PathBuf::from(path);
            if !path.is_file() {
                return Err(PluginError::invalid_config(format!(
                    "{key}: {} is not a readable file",
                    path.display()
                )));
            }
            Ok(path)
        };
        Ok(TlsFiles {
            ca_cert: file(&self.ca_cert, "DOCKER_TLS_CA_CERT")?,
            cert: file(&self.cert, "DOCKER_TLS_CERT")?,
            key: file(&self.key, "DOCKER_TLS_KEY")?,
        })
    }
}

fn default_request_timeout() -> u64 {
    120
}

impl DockerExecutorConfig {
    /// Reads and checks a configuration: every pattern compiles, every host
    /// parses, every farm has a host.
    pub fn from_json(value: serde_json::Value) -> Result<Self, PluginError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct Raw {
            /// `DOCKER_HOSTS`: one farm or a list of them.
            farms: serde_json::Value,
            #[serde(default = "default_request_timeout")]
            request_timeout_seconds: u64,
            #[serde(default)]
            circuit_breaker: CircuitBreakerConfig,
            #[serde(default)]
            tls: TlsConfig,
        }
        let raw: Raw = serde_json::from_value(value)
            .map_err(|e| PluginError::invalid_config(format!("docker executor: {e}")))?;
        let farms = match raw.farms {
            one @ serde_json::Value::Object(_) => serde_json::Value::Array(vec![one]),
            many => many,
        };
        let farms: Vec<Farm> = serde_json::from_value(farms)
            .map_err(|e| PluginError::invalid_config(format!("DOCKER_HOSTS: {e}")))?;
        let config = Self {
            farms,
            request_timeout_seconds: raw.request_timeout_seconds,
            circuit_breaker: raw.circuit_breaker,
            tls: raw.tls,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), PluginError> {
        if self.farms.is_empty() {
            return Err(PluginError::invalid_config(
                "DOCKER_HOSTS: at least one farm is needed",
            ));
        }
        for (i, farm) in self.farms.iter().enumerate() {
            regex::Regex::new(&farm.pattern).map_err(|e| {
                PluginError::invalid_config(format!(
                    "DOCKER_HOSTS[{i}].match {:?} is not a valid regular expression: {e}",
                    farm.pattern
                ))
            })?;
            if farm.hosts.is_empty() {
                return Err(PluginError::invalid_config(format!(
                    "DOCKER_HOSTS[{i}].hosts is empty"
                )));
            }
            if farm.max_running == 0 {
                return Err(PluginError::invalid_config(format!(
                    "DOCKER_HOSTS[{i}].maxRunning must be at least 1"
                )));
            }
            for host in &farm.hosts {
                let addr = HostAddr::parse(host).map_err(|e| {
                    PluginError::invalid_config(format!("DOCKER_HOSTS[{i}].hosts: {e}"))
                })?;
                if addr.uses_tls(self.tls.verify) {
                    self.tls.files()?;
                }
            }
            if self.circuit_breaker.max_fails == 0 {
                return Err(PluginError::invalid_config(
                    "DOCKER_CIRCUIT_BREAKER_MAX_FAILS must be at least 1",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_single_farm_object_is_a_list_of_one() {
        let config = DockerExecutorConfig::from_json(json!({
            "farms": {"match": "", "hosts": ["localhost:2375"], "maxRunning": 2}
        }))
        .expect("valid");
        assert_eq!(config.farms.len(), 1);
        assert_eq!(config.farms[0].max_running, 2);
    }

    #[test]
    fn max_running_defaults_to_ten() {
        let config = DockerExecutorConfig::from_json(json!({
            "farms": [{"hosts": ["unix:///run/docker.sock"]}]
        }))
        .expect("valid");
        assert_eq!(config.farms[0].max_running, 10);
        assert_eq!(config.farms[0].pattern, "");
    }

    #[test]
    fn bad_farms_are_refused_with_the_place_named() {
        let cases = [
            (json!({"farms": []}), "at least one farm"),
            (
                json!({"farms": [{"match": "(", "hosts": ["a:1"]}]}),
                "DOCKER_HOSTS[0].match",
            ),
            (
                json!({"farms": [{"hosts": []}]}),
                "DOCKER_HOSTS[0].hosts is empty",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"]}, {"hosts": ["a:b"]}]}),
                "DOCKER_HOSTS[1].hosts",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "maxRunning": 0}]}),
                "maxRunning",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "max": 3}]}),
                "unknown field",
            ),
        ];
        for (value, expected) in cases {
            let err = DockerExecutorConfig::from_json(value.clone()).expect_err("invalid");
            assert!(err.message().contains(expected), "{value}: {err}");
        }
    }
}
