//! What the operator configures: farms of hosts, routed by task id.

use std::collections::BTreeMap;

use serde::Deserialize;

use fastlane_sdk::PluginError;

use crate::addr::HostAddr;
use crate::registry::{self, PullPolicy, RegistryLogin};

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
    /// The most CPUs a job of the farm may ask for (`cpuLimit`); a job
    /// asking for more is refused when it is submitted.
    #[serde(rename = "maxCpuLimit", default)]
    pub max_cpu_limit: Option<f64>,
    /// The most bytes of memory a job of the farm may ask for
    /// (`memoryLimit`); a job asking for more is refused when submitted.
    #[serde(rename = "maxMemoryLimit", default)]
    pub max_memory_limit: Option<u64>,
    /// The user (`name`, `uid` or `uid:gid`) containers run as, instead of
    /// the image's.
    #[serde(default)]
    pub user: Option<String>,
    /// Containers get a read-only root file system.
    #[serde(rename = "readOnlyRootfs", default)]
    pub read_only_rootfs: bool,
    /// The network mode containers get (`none`, `bridge`, a network's
    /// name), instead of the engine's default.
    #[serde(default)]
    pub network: Option<String>,
    /// Capabilities taken from containers (`ALL`, `NET_RAW`, …).
    #[serde(rename = "capDrop", default)]
    pub cap_drop: Vec<String>,
    /// The engine's own cap on a container's log (the log driver's
    /// `max-size`, as `<n>[k|m|g]`); `"0"` leaves the engine's default.
    #[serde(rename = "logMaxSize", default = "default_log_max_size")]
    pub log_max_size: String,
    /// When images are pulled before a run.
    #[serde(rename = "pullPolicy", default)]
    pub pull_policy: PullPolicy,
    /// Logins to private registries, by registry (`host[:port]`).
    #[serde(rename = "registryAuth", default)]
    pub registry_auth: BTreeMap<String, RegistryLogin>,
    /// A Docker `config.json` whose `auths` are logins too
    /// (`registryAuth` wins where both name a registry).
    #[serde(rename = "dockerConfig", default)]
    pub docker_config: Option<String>,
    /// Every login, by registry as [`registry::registry_of`] names it:
    /// made at load from the two above.
    #[serde(skip)]
    pub logins: BTreeMap<String, RegistryLogin>,
}

fn default_max_running() -> u32 {
    10
}

fn default_log_max_size() -> String {
    "100m".to_owned()
}

/// The JSON types of the farm keys checked before the farm is read, so that
/// a value of the wrong type is refused naming its key.
const FARM_KEY_TYPES: &[(&str, &str)] = &[
    ("maxCpuLimit", "a number"),
    ("maxMemoryLimit", "a number"),
    ("cpuLimit", "a number"),
    ("memoryLimit", "a number"),
    ("user", "a string"),
    ("readOnlyRootfs", "a boolean"),
    ("network", "a string"),
    ("capDrop", "an array"),
    ("logMaxSize", "a string"),
    ("pullPolicy", "a string"),
    ("registryAuth", "an object"),
    ("dockerConfig", "a string"),
];

/// Checks the types of a farm's keys (`farm` is the JSON object of farm
/// `index`), naming the first one that is wrong.
fn check_farm_types(index: usize, farm: &serde_json::Value) -> Result<(), PluginError> {
    for (key, expected) in FARM_KEY_TYPES {
        let Some(value) = farm.get(*key) else {
            continue;
        };
        let fits = match *expected {
            "a number" => value.is_number(),
            "a string" => value.is_string(),
            "a boolean" => value.is_boolean(),
            "an array" => value.is_array(),
            "an object" => value.is_object(),
            _ => true,
        };
        if !fits && !value.is_null() {
            return Err(PluginError::invalid_config(format!(
                "DOCKER_HOSTS[{index}].{key} must be {expected} (got {value})"
            )));
        }
    }
    Ok(())
}

impl Farm {
    /// Reads the farm's logins (farm `index`): its `dockerConfig` file's,
    /// then its `registryAuth`.
    fn load_logins(&mut self, index: usize) -> Result<(), PluginError> {
        let mut logins = BTreeMap::new();
        if let Some(path) = self.docker_config.as_deref() {
            let what = format!("DOCKER_HOSTS[{index}].dockerConfig {path:?}");
            let text = std::fs::read_to_string(path)
                .map_err(|e| PluginError::invalid_config(format!("{what}: {e}")))?;
            logins = registry::logins_of_docker_config(&text, &what)?;
        }
        for (name, login) in &self.registry_auth {
            logins.insert(registry::normalized(name).to_owned(), login.clone());
        }
        self.logins = logins;
        Ok(())
    }

    /// The pull policy of a job that says `job` (if anything): the job's,
    /// else the farm's.
    pub fn pull_policy_for(&self, job: Option<PullPolicy>) -> PullPolicy {
        job.unwrap_or(self.pull_policy)
    }

    /// The registry `image` comes from, with the farm's login to it if any.
    pub fn login_for<'a>(&'a self, image: &'a str) -> (&'a str, Option<&'a RegistryLogin>) {
        let registry = registry::registry_of(image);
        (registry, self.logins.get(registry))
    }

    /// Checks the farm's hardening and limit settings; `index` names the
    /// farm in errors.
    fn validate_hardening(&self, index: usize) -> Result<(), PluginError> {
        let bad = |key: &str, why: String| {
            PluginError::invalid_config(format!("DOCKER_HOSTS[{index}].{key} {why}"))
        };
        if let Some(max) = self.max_cpu_limit {
            if !(max.is_finite() && max > 0.0) {
                return Err(bad(
                    "maxCpuLimit",
                    format!("must be a positive number of CPUs (got {max})"),
                ));
            }
            if let Some(default) = self.cpu_limit.filter(|d| *d > max) {
                return Err(bad(
                    "cpuLimit",
                    format!("{default} is above the farm's maxCpuLimit of {max}"),
                ));
            }
        }
        if let Some(max) = self.max_memory_limit {
            if max == 0 {
                return Err(bad(
                    "maxMemoryLimit",
                    "must be a positive number of bytes".to_owned(),
                ));
            }
            if let Some(default) = self.memory_limit.filter(|d| *d > max) {
                return Err(bad(
                    "memoryLimit",
                    format!("{default} is above the farm's maxMemoryLimit of {max}"),
                ));
            }
        }
        let word = |text: &str| {
            !text.is_empty() && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if let Some(user) = &self.user
            && !word(user)
        {
            return Err(bad(
                "user",
                format!("must be a user name, uid or uid:gid (got {user:?})"),
            ));
        }
        if let Some(network) = &self.network
            && !word(network)
        {
            return Err(bad(
                "network",
                format!("must name a network mode (got {network:?})"),
            ));
        }
        if let Some(cap) = self
            .cap_drop
            .iter()
            .find(|c| c.is_empty() || !c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(bad(
                "capDrop",
                format!(
                    "holds {cap:?}, which is not a capability name (like \"ALL\" or \"NET_RAW\")"
                ),
            ));
        }
        if parse_size(&self.log_max_size).is_none() {
            return Err(bad(
                "logMaxSize",
                format!(
                    "must be a size like \"100m\" (<n>[k|m|g]), or \"0\" for the engine's default (got {:?})",
                    self.log_max_size
                ),
            ));
        }
        Ok(())
    }

    /// The engine's log `max-size`, when the farm sets one.
    pub fn log_max_size(&self) -> Option<&str> {
        match parse_size(&self.log_max_size) {
            Some(0) | None => None,
            Some(_) => Some(self.log_max_size.trim()),
        }
    }
}

/// The bytes in a size like `100m` (`k`, `m`, `g`: 1024-based), or `None`
/// when it is not one.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let (digits, multiplier) = match text.chars().last()? {
        'k' => (&text[..text.len() - 1], 1024),
        'm' => (&text[..text.len() - 1], 1024 * 1024),
        'g' => (&text[..text.len() - 1], 1024 * 1024 * 1024),
        _ => (text.as_str(), 1),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
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
    /// `PIDS_LIMIT`: the most processes one container may run; 0 sets
    /// none.
    #[serde(default = "default_pids_limit")]
    pub pids_limit: u64,
}

fn default_pids_limit() -> u64 {
    4096
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
            #[serde(default = "default_pids_limit")]
            pids_limit: u64,
        }
        let raw: Raw = serde_json::from_value(value)
            .map_err(|e| PluginError::invalid_config(format!("docker executor: {e}")))?;
        let farms = match raw.farms {
            one @ serde_json::Value::Object(_) => serde_json::Value::Array(vec![one]),
            many => many,
        };
        if let serde_json::Value::Array(list) = &farms {
            for (index, farm) in list.iter().enumerate() {
                check_farm_types(index, farm)?;
            }
        }
        let mut farms: Vec<Farm> = serde_json::from_value(farms)
            .map_err(|e| PluginError::invalid_config(format!("DOCKER_HOSTS: {e}")))?;
        for (index, farm) in farms.iter_mut().enumerate() {
            farm.load_logins(index)?;
        }
        let config = Self {
            farms,
            request_timeout_seconds: raw.request_timeout_seconds,
            circuit_breaker: raw.circuit_breaker,
            tls: raw.tls,
            pids_limit: raw.pids_limit,
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
            farm.validate_hardening(i)?;
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
    fn hardening_defaults_and_farm_settings_are_read() {
        let config = DockerExecutorConfig::from_json(json!({
            "farms": [
                {"hosts": ["a:1"]},
                {"hosts": ["a:1"], "user": "1000:1000", "readOnlyRootfs": true,
                 "network": "none", "capDrop": ["ALL"], "logMaxSize": "0",
                 "maxCpuLimit": 2, "maxMemoryLimit": 1073741824}
            ]
        }))
        .expect("valid");
        assert_eq!(config.pids_limit, 4096);
        assert_eq!(config.farms[0].log_max_size(), Some("100m"));
        assert_eq!(config.farms[1].log_max_size(), None);
        assert_eq!(config.farms[1].max_cpu_limit, Some(2.0));
        assert_eq!(config.farms[1].cap_drop, ["ALL"]);
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("m"), None);
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
            (
                json!({"farms": [{"hosts": ["a:1"], "maxCpuLimit": 0}]}),
                "DOCKER_HOSTS[0].maxCpuLimit must be a positive number",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "maxCpuLimit": "2"}]}),
                "DOCKER_HOSTS[0].maxCpuLimit must be a number",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "maxMemoryLimit": 0}]}),
                "DOCKER_HOSTS[0].maxMemoryLimit",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "cpuLimit": 4, "maxCpuLimit": 2}]}),
                "DOCKER_HOSTS[0].cpuLimit 4 is above the farm's maxCpuLimit of 2",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "memoryLimit": 2048, "maxMemoryLimit": 1024}]}),
                "DOCKER_HOSTS[0].memoryLimit",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "user": "a b"}]}),
                "DOCKER_HOSTS[0].user",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "network": ""}]}),
                "DOCKER_HOSTS[0].network",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "capDrop": ["ALL", "NET RAW"]}]}),
                "DOCKER_HOSTS[0].capDrop",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "capDrop": "ALL"}]}),
                "DOCKER_HOSTS[0].capDrop must be an array",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"], "readOnlyRootfs": "yes"}]}),
                "DOCKER_HOSTS[0].readOnlyRootfs must be a boolean",
            ),
            (
                json!({"farms": [{"hosts": ["a:1"]}, {"hosts": ["a:1"], "logMaxSize": "100x"}]}),
                "DOCKER_HOSTS[1].logMaxSize",
            ),
        ];
        for (value, expected) in cases {
            let err = DockerExecutorConfig::from_json(value.clone()).expect_err("invalid");
            assert!(err.message().contains(expected), "{value}: {err}");
        }
    }
}
