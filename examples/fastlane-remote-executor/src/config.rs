//! The executor's configuration, checked when it is built: a bad key stops
//! the server's start with an error naming it.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use fastlane_sdk::PluginError;

/// `{"url": "https://…", "token": "…", "maxRunning": 20, "requestTimeoutSeconds": 30}`.
#[derive(Clone)]
pub struct RemoteConfig {
    /// The remote server's base URL, `http://` or `https://`, without a
    /// trailing `/`.
    pub url: String,
    /// A bearer token of the remote server's `API_TOKENS`. It needs the
    /// scopes `read` and `submit:<the tasks routed here>`.
    pub token: Option<String>,
    /// How many executions may run there at once, across every worker of
    /// this server (a pool the admission line keeps); no limit when absent.
    pub max_running: Option<NonZeroU32>,
    /// How long one HTTP request to the remote server may take.
    pub request_timeout_seconds: u64,
}

/// The keys [`RemoteConfig::parse`] knows.
const KEYS: [&str; 4] = ["url", "token", "maxRunning", "requestTimeoutSeconds"];

/// Seconds one request may take unless `requestTimeoutSeconds` says.
const DEFAULT_TIMEOUT: u64 = 30;

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("max_running", &self.max_running)
            .field("request_timeout_seconds", &self.request_timeout_seconds)
            .finish()
    }
}

impl RemoteConfig {
    /// Reads and checks the plugin's section of the server configuration;
    /// an error names the key at fault.
    pub fn parse(config: serde_json::Value) -> Result<Self, PluginError> {
        let bad =
            |key: &str, what: &str| PluginError::invalid_config(format!("remote: `{key}` {what}"));
        let serde_json::Value::Object(config) = config else {
            return Err(PluginError::invalid_config(format!(
                "remote: the configuration must be an object with `url`, not {config}"
            )));
        };
        if let Some(key) = config.keys().find(|key| !KEYS.contains(&key.as_str())) {
            return Err(bad(key, &format!("is not a key; the keys are {KEYS:?}")));
        }
        let url = match config.get("url") {
            Some(serde_json::Value::String(url)) => url.trim_end_matches('/').to_owned(),
            Some(other) => return Err(bad("url", &format!("must be a string, not {other}"))),
            None => return Err(bad("url", "is missing: the remote server's base URL")),
        };
        // Errors name the URL's scheme, never the URL: it may hold a
        // password.
        let parsed =
            reqwest::Url::parse(&url).map_err(|err| bad("url", &format!("is not a URL: {err}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(bad(
                "url",
                &format!(
                    "must be an http:// or https:// address with a host, not a {}: one",
                    parsed.scheme()
                ),
            ));
        }
        // The URL is shown in handles, logs and `/status`: no credentials
        // in it (they go in `token`), and nothing the paths are added to
        // would break.
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "url",
                "must not hold credentials: put the remote server's token in `token`",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("url", "must have no query (`?…`) or fragment (`#…`)"));
        }
        let token = match config.get("token") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(token))
                if !token.is_empty() && !token.chars().any(char::is_control) =>
            {
                Some(token.clone())
            }
            Some(_) => {
                return Err(bad(
                    "token",
                    "must be a non-empty string without control characters",
                ));
            }
        };
        let whole = |key: &str| match config.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(n) => n
                .as_u64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| bad(key, &format!("must be a whole number from 1, not {n}"))),
        };
        let max_running = match whole("maxRunning")? {
            None => None,
            Some(n) => Some(
                u32::try_from(n)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or_else(|| bad("maxRunning", &format!("{n} is too large")))?,
            ),
        };
        Ok(Self {
            url,
            token,
            max_running,
            request_timeout_seconds: whole("requestTimeoutSeconds")?.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    /// [`RemoteConfig::request_timeout_seconds`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(config: serde_json::Value) -> String {
        match RemoteConfig::parse(config) {
            Ok(config) => panic!("accepted {config:?}"),
            Err(err) => err.message().to_owned(),
        }
    }

    #[test]
    fn a_bad_key_is_refused_by_name() {
        assert!(refused(json!({"url": "http://b", "tokn": "x"})).contains("`tokn` is not a key"));
        assert!(refused(json!({})).contains("`url` is missing"));
        assert!(refused(json!({"url": "ftp://b"})).contains("`url` must be an http://"));
        assert!(
            refused(json!({"url": "http://b", "maxRunning": 0})).contains("`maxRunning` must be")
        );
        assert!(refused(json!({"url": "http://b", "token": ""})).contains("`token`"));
        let with_password = refused(json!({"url": "http://u:s3cret@b"}));
        assert!(
            with_password.contains("must not hold credentials"),
            "{with_password}"
        );
        assert!(!with_password.contains("s3cret"), "{with_password}");
        assert!(refused(json!({"url": "http://b/?x=1"})).contains("no query"));
        assert!(
            refused(json!({"url": "http://b", "requestTimeoutSeconds": "5"}))
                .contains("`requestTimeoutSeconds` must be")
        );
    }

    #[test]
    fn the_token_is_never_shown() -> Result<(), PluginError> {
        let config = RemoteConfig::parse(json!({"url": "http://b/", "token": "s3cret"}))?;
        assert_eq!(config.url, "http://b");
        assert!(!format!("{config:?}").contains("s3cret"));
        Ok(())
    }
}
