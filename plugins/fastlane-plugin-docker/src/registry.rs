//! Private registries: the logins a farm pulls with (its `registryAuth`,
//! and the `auths` of a Docker `config.json` named by `dockerConfig`), the
//! registry an image comes from. When a farm pulls is its `pullPolicy`
//! ([`PullPolicy`], which a job may override).

use std::collections::BTreeMap;

use base64::Engine;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

use fastlane_sdk::PluginError;
pub use fastlane_sdk::PullPolicy;

/// A login to one registry. Its `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RegistryLogin {
    /// The login as the engine takes it with a pull from `registry`.
    pub fn credentials(&self, registry: &str) -> DockerCredentials {
        DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            serveraddress: Some(registry.to_owned()),
            ..Default::default()
        }
    }
}

/// The registry an image reference names: its first path component when
/// that is a host (it has a `.` or a `:`, or is `localhost`), else Docker
/// Hub (`docker.io`).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => normalized(first),
        _ => "docker.io",
    }
}

/// A registry as configured (`https://index.docker.io/v1/`, `ghcr.io`,
/// `127.0.0.1:5000`) as [`registry_of`] names it.
pub fn normalized(registry: &str) -> &str {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        other => other,
    }
}

/// The logins of a Docker `config.json` (its `auths`: `auth` is base64 of
/// `user:password`), by registry. `what` names the file in errors.
pub fn logins_of_docker_config(
    text: &str,
    what: &str,
) -> Result<BTreeMap<String, RegistryLogin>, PluginError> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    let bad = |why: String| PluginError::invalid_config(format!("{what}: {why}"));
    let file: File = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut logins = BTreeMap::new();
    for (registry, entry) in file.auths {
        let login = match (entry.auth, entry.username, entry.password) {
            (Some(auth), _, _) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| bad(format!("auths.{registry}.auth is not base64 text")))?;
                let (username, password) = decoded.split_once(':').ok_or_else(|| {
                    bad(format!(
                        "auths.{registry}.auth is not base64 of user:password"
                    ))
                })?;
                RegistryLogin {
                    username: username.to_owned(),
                    password: password.to_owned(),
                }
            }
            (None, Some(username), Some(password)) => RegistryLogin { username, password },
            // A credential helper's entry holds nothing to send.
            _ => continue,
        };
        logins.insert(normalized(&registry).to_owned(), login);
    }
    Ok(logins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_registry_is_its_first_component_when_that_is_a_host() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("ghcr.io/team/app:2"), "ghcr.io");
        assert_eq!(
            registry_of("127.0.0.1:5050/private/busybox:1"),
            "127.0.0.1:5050"
        );
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("docker.io/library/busybox"), "docker.io");
        assert_eq!(normalized("https://index.docker.io/v1/"), "docker.io");
    }

    #[test]
    fn a_docker_config_gives_its_logins_and_names_what_is_wrong() {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "reg.example:5000": {"username": "a", "password": "b:c"},
            "helper.example": {}
        }}"#;
        let logins = logins_of_docker_config(text, "DOCKER_CONFIG").expect("valid");
        assert_eq!(logins["docker.io"].username, "u");
        assert_eq!(logins["docker.io"].password, "p");
        assert_eq!(logins["reg.example:5000"].password, "b:c");
        assert!(!logins.contains_key("helper.example"));
        let wrong = logins_of_docker_config(r#"{"auths": {"r": {"auth": "!!"}}}"#, "f.json");
        let message = wrong.expect_err("not base64").to_string();
        assert!(
            message.contains("f.json") && message.contains("auths.r.auth"),
            "{message}"
        );
        let login = RegistryLogin {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{login:?}").contains("secret"));
    }
}
