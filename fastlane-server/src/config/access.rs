//! Who may call the API: the browser origins allowed to (`CORS_ORIGINS`),
//! the HTTP Basic credentials (`BASIC_AUTH_*`), the bearer tokens with their
//! scopes (`API_TOKENS`) and the routes left open (`AUTH_OPEN_ROUTES`),
//! checked at load.
//!
//! Tokens are configured by the SHA-256 of their text, never the text
//! itself: `fastlane token` makes one and prints both.

use std::fmt;

use sha2::{Digest, Sha256};

use super::ConfigError;

/// The browser origins whose pages may call the API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// None (the default): only pages of the server's own origin.
    #[default]
    None,
    /// `*`: any page, answered with `Access-Control-Allow-Origin: *` and never
    /// with credentials (the original's behaviour, chosen explicitly).
    Any,
    /// These origins (`scheme://host[:port]`), exactly.
    Listed(Vec<String>),
}

impl CorsOrigins {
    /// True when a page of `origin` may call the API.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Self::None => false,
            Self::Any => true,
            Self::Listed(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// `CORS_ORIGINS`: `*`, or origins separated by commas.
pub(super) fn cors_origins(enabled: bool, text: &str) -> Result<CorsOrigins, ConfigError> {
    let listed: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if !enabled || listed.is_empty() {
        return Ok(CorsOrigins::None);
    }
    if listed == ["*"] {
        return Ok(CorsOrigins::Any);
    }
    listed
        .into_iter()
        .map(|origin| {
            let origin = origin.trim_end_matches('/');
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin["https://".len().min(origin.len())..].contains(['/', '*', ' ']);
            if valid {
                Ok(origin.to_ascii_lowercase())
            } else {
                Err(ConfigError::Invalid {
                    key: "CORS_ORIGINS",
                    message: format!(
                        "{origin:?} is not an origin: write scheme://host[:port] (no path), \
                         or * alone for any origin"
                    ),
                })
            }
        })
        .collect::<Result<_, _>>()
        .map(CorsOrigins::Listed)
}

/// What a token may do.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Everything.
    Admin,
    /// Every read (GET) route, live logs included.
    Read,
    /// Submit, replace, stop and retry jobs of the tasks whose whole id
    /// matches the pattern.
    Submit(regex::Regex),
}

impl Scope {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "admin" => Ok(Self::Admin),
            "read" => Ok(Self::Read),
            other => match other.strip_prefix("submit:") {
                Some(pattern) => regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map(Self::Submit)
                    .map_err(|err| format!("{pattern:?} is not a regular expression: {err}")),
                None => Err(format!(
                    "unknown scope {other:?} (scopes are admin, read and submit:<task id regex>)"
                )),
            },
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Admin => f.write_str("admin"),
            Self::Read => f.write_str("read"),
            Self::Submit(pattern) => {
                let text = pattern.as_str();
                let inner = text
                    .strip_prefix("^(?:")
                    .and_then(|t| t.strip_suffix(")$"))
                    .unwrap_or(text);
                write!(f, "submit:{inner}")
            }
        }
    }
}

/// One configured API token. Its `Debug` shows the name and scopes only.
#[derive(Clone)]
pub struct ApiToken {
    /// A name for logs and errors (`ci`, `dashboard`).
    pub name: String,
    /// SHA-256 of the token's text.
    pub sha256: [u8; 32],
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// `API_TOKENS`: `[{"name", "sha256", "scopes"}]`.
pub(super) fn api_tokens(value: serde_json::Value) -> Result<Vec<ApiToken>, ConfigError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        name: String,
        sha256: String,
        scopes: Vec<String>,
    }
    let invalid = |message: String| ConfigError::Invalid {
        key: "API_TOKENS",
        message,
    };
    if value.is_null() {
        return Ok(Vec::new());
    }
    let raw: Vec<Raw> = serde_json::from_value(value).map_err(|err| {
        invalid(format!(
            "{err}; write [{{\"name\": \"ci\", \"sha256\": \"<64 hex digits>\", \"scopes\": [\"read\"]}}] \
             (`fastlane token` makes a token and prints its entry)"
        ))
    })?;
    let mut tokens: Vec<ApiToken> = Vec::with_capacity(raw.len());
    for token in raw {
        if token.name.trim().is_empty() {
            return Err(invalid("a token needs a name".to_owned()));
        }
        let sha256 = hex_digest(&token.sha256).ok_or_else(|| {
            invalid(format!(
                "token {:?}: sha256 must be the 64 hex digits of the token's SHA-256",
                token.name
            ))
        })?;
        if tokens.iter().any(|t| t.name == token.name) {
            return Err(invalid(format!("two tokens are named {:?}", token.name)));
        }
        if token.scopes.is_empty() {
            return Err(invalid(format!("token {:?} has no scopes", token.name)));
        }
        let scopes = token
            .scopes
            .iter()
            .map(|s| Scope::parse(s).map_err(|e| invalid(format!("token {:?}: {e}", token.name))))
            .collect::<Result<_, _>>()?;
        tokens.push(ApiToken {
            name: token.name,
            sha256,
            scopes,
        });
    }
    Ok(tokens)
}

fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of `text`.
pub fn sha256(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Routes that answer without credentials even when authentication is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenRoutes {
    /// `GET /healthcheck`.
    pub healthcheck: bool,
    /// `GET /metrics`.
    pub metrics: bool,
}

/// `AUTH_OPEN_ROUTES`: `healthcheck`, `metrics`, separated by commas.
pub(super) fn open_routes(text: &str) -> Result<OpenRoutes, ConfigError> {
    let mut open = OpenRoutes::default();
    for route in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match route.trim_start_matches('/') {
            "healthcheck" => open.healthcheck = true,
            "metrics" => open.metrics = true,
            other => {
                return Err(ConfigError::Invalid {
                    key: "AUTH_OPEN_ROUTES",
                    message: format!(
                        "{other:?} cannot be left open (only healthcheck and metrics)"
                    ),
                });
            }
        }
    }
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_none_by_default_any_with_a_star_or_listed() {
        assert_eq!(cors_origins(true, "").ok(), Some(CorsOrigins::None));
        assert_eq!(cors_origins(true, " * ").ok(), Some(CorsOrigins::Any));
        assert_eq!(cors_origins(false, "*").ok(), Some(CorsOrigins::None));
        let listed = cors_origins(true, "https://ui.example.com, http://localhost:3000/").ok();
        assert_eq!(
            listed,
            Some(CorsOrigins::Listed(vec![
                "https://ui.example.com".to_owned(),
                "http://localhost:3000".to_owned()
            ]))
        );
        let listed = listed.unwrap_or_default();
        assert!(listed.allows("https://UI.example.com"));
        assert!(!listed.allows("https://evil.example"));
        assert!(!CorsOrigins::None.allows("https://ui.example.com"));
        for bad in [
            "ui.example.com",
            "https://ui.example.com/path",
            "https://*.example.com",
        ] {
            let err = cors_origins(true, bad).err().map(|e| e.to_string());
            assert!(err.is_some_and(|e| e.contains("CORS_ORIGINS")), "{bad}");
        }
    }

    #[test]
    fn tokens_are_hashes_with_scopes() {
        let hash = hex(&sha256(b"fl_secret"));
        let tokens = api_tokens(serde_json::json!([
            {"name": "ci", "sha256": hash, "scopes": ["read", "submit:ci-.*"]}
        ]))
        .unwrap_or_default();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].sha256, sha256(b"fl_secret"));
        assert_eq!(tokens[0].scopes[1].to_string(), "submit:ci-.*");
        let Scope::Submit(pattern) = &tokens[0].scopes[1] else {
            panic!("not a submit scope");
        };
        assert!(pattern.is_match("ci-nightly"));
        assert!(
            !pattern.is_match("prod-ci-nightly"),
            "the whole id must match"
        );
        assert!(
            !format!("{tokens:?}").contains(&hash),
            "Debug never shows the hash"
        );
        for (bad, says) in [
            (
                serde_json::json!([{"name": "x", "sha256": "abc", "scopes": ["read"]}]),
                "64 hex",
            ),
            (
                serde_json::json!([{"name": "x", "sha256": hash, "scopes": ["write"]}]),
                "unknown scope",
            ),
            (
                serde_json::json!([{"name": "x", "sha256": hash, "scopes": []}]),
                "no scopes",
            ),
            (
                serde_json::json!([{"name": "x", "sha256": hash, "scopes": ["submit:("]}]),
                "regular expression",
            ),
            (serde_json::json!({"name": "x"}), "API_TOKENS"),
        ] {
            let err = api_tokens(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(says) && err.contains("API_TOKENS"), "{err}");
        }
    }

    #[test]
    fn only_healthcheck_and_metrics_can_be_left_open() {
        let open = open_routes("healthcheck, /metrics").ok();
        assert_eq!(
            open,
            Some(OpenRoutes {
                healthcheck: true,
                metrics: true
            })
        );
        assert!(open_routes("tasks").is_err());
    }
}
