//! Who may call what, checked before any route runs (and so before any body
//! is read):
//!
//! 1. **CORS preflights** (`OPTIONS` with `Origin` and
//!    `Access-Control-Request-Method`) are answered here, before
//!    authentication: 204 for an origin `CORS_ORIGINS` allows, 403 otherwise.
//! 2. **Cross-site writes** are refused with 403: a request that changes
//!    something (any method but `GET`, `HEAD` and `OPTIONS`, and WebSocket
//!    upgrades) carrying a browser's marks of another site (`Origin` that is
//!    neither the server's own nor allowed, `Sec-Fetch-Site: cross-site` or
//!    `same-site`). Requests without them (curl, generated clients) pass.
//! 3. **Authentication**, when `BASIC_AUTH_*` or `API_TOKENS` are set: HTTP
//!    Basic (the whole of the API) or a bearer token with its scopes; 401
//!    without valid credentials, 403 when they do not cover the route. A
//!    browser cannot set headers on a WebSocket, so a WebSocket handshake
//!    may carry them as the subprotocol [`SOCKET_AUTHORIZATION_PREFIX`]
//!    followed by the percent-encoded `Authorization` value (offered beside
//!    `fastlane`, which the server picks), as Kubernetes' API server takes
//!    a token.
//! 4. **CORS headers** on answers to allowed origins; never credentials.

use std::borrow::Cow;

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::web::headers::{Authorization, HeaderMapExt, authorization::Basic};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::config::{ApiToken, Config, CorsOrigins, Scope, sha256};

/// The subprotocol prefix of credentials sent with a WebSocket handshake:
/// the percent-encoded value of an `Authorization` header follows it.
pub const SOCKET_AUTHORIZATION_PREFIX: &str = "fastlane.authorization.";

/// The request headers a preflight may ask for.
const ALLOWED_HEADERS: &str = "authorization, content-type, idempotency-key, x-request-id";
/// The response headers pages of allowed origins may read.
const EXPOSED_HEADERS: &str = "fastlane-exit-code";

/// The checks' settings, taken from the config once.
#[derive(Debug, Clone)]
pub struct Access {
    cors: CorsOrigins,
    /// The origin of `PUBLIC_BASE_URL`, which is the server's own.
    public_origin: Option<String>,
    /// SHA-256 of the basic-auth user name and password.
    basic: Option<([u8; 32], [u8; 32])>,
    realm: String,
    tokens: Vec<ApiToken>,
    open_healthcheck: bool,
    open_metrics: bool,
}

/// What a route needs of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Need {
    /// Nothing: the document, Swagger UI, the admin UI's files, and routes
    /// left open.
    Nothing,
    /// A `read` scope.
    Read,
    /// A `submit:` scope matching this task id.
    Submit(String),
    /// The `admin` scope.
    Admin,
}

/// The `Authorization` value a WebSocket handshake to a `…/ws` route
/// carries as a subprotocol ([`SOCKET_AUTHORIZATION_PREFIX`]), if any.
fn socket_credentials(request: &Request) -> Option<String> {
    let upgrade = request
        .header(header::UPGRADE)
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let socket_route = request.uri().path().trim_end_matches('/').ends_with("/ws");
    if !upgrade || request.method() != Method::GET || !socket_route {
        return None;
    }
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(SOCKET_AUTHORIZATION_PREFIX))
        .and_then(|encoded| {
            percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .ok()
                .map(|value| value.trim().to_owned())
        })
}

/// Who is calling, once their credentials are checked.
enum Caller<'a> {
    /// The basic-auth user: may do everything.
    Basic,
    /// A token, with its scopes.
    Token(&'a ApiToken),
}

impl Access {
    /// The settings of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            cors: config.cors.clone(),
            public_origin: config.public_base_url.as_deref().map(origin_of_url),
            basic: config
                .basic_auth
                .as_ref()
                .map(|(user, password)| (sha256(user.as_bytes()), sha256(password.as_bytes()))),
            realm: config.basic_auth_realm.replace('"', ""),
            tokens: config.api_tokens.clone(),
            open_healthcheck: config.auth_open_routes.healthcheck,
            open_metrics: config.auth_open_routes.metrics,
        }
    }

    /// True when callers must authenticate.
    fn auth_on(&self) -> bool {
        self.basic.is_some() || !self.tokens.is_empty()
    }

    /// Runs the checks around `endpoint`.
    pub async fn guard<E: Endpoint>(
        &self,
        endpoint: E,
        request: Request,
    ) -> poem::Result<Response> {
        let origin = request
            .header(header::ORIGIN)
            .map(str::to_owned)
            .filter(|o| !o.is_empty());
        if request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
            && let Some(origin) = &origin
        {
            return Ok(self.preflight(origin));
        }
        if let Some(refusal) = self.cross_site(&request, origin.as_deref()) {
            return Ok(refusal);
        }
        if let Some(refusal) = self.authorize(&request) {
            return Ok(self.with_cors(refusal, origin.as_deref()));
        }
        let response = endpoint.call(request).await?.into_response();
        Ok(self.with_cors(response, origin.as_deref()))
    }

    /// The answer to a CORS preflight from `origin`.
    fn preflight(&self, origin: &str) -> Response {
        if !self.cors.allows(origin) {
            return refusal(
                StatusCode::FORBIDDEN,
                "cors_preflight",
                format!(
                    "pages of {origin} may not call this API (CORS_ORIGINS lists the origins that may)"
                ),
            );
        }
        let response = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, HEAD, POST, PUT, PATCH, DELETE",
            )
            .header(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS)
            .header(header::ACCESS_CONTROL_MAX_AGE, "600")
            .finish();
        self.with_cors(response, Some(origin))
    }

    /// The 403 for a request that changes something on behalf of a page of
    /// another site, or `None`.
    fn cross_site(&self, request: &Request, origin: Option<&str>) -> Option<Response> {
        let upgrade = request
            .header(header::UPGRADE)
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let changes = !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        ) || upgrade;
        if !changes {
            return None;
        }
        let fetch_site = request.header("sec-fetch-site").unwrap_or_default();
        let from_elsewhere = fetch_site.eq_ignore_ascii_case("cross-site")
            || fetch_site.eq_ignore_ascii_case("same-site");
        let allowed = match origin {
            None => !from_elsewhere,
            Some(origin) => {
                self.cors.allows(origin) || (!from_elsewhere && self.is_own(request, origin))
            }
        };
        if allowed {
            return None;
        }
        let from = origin.unwrap_or("another site");
        tracing::warn!(origin = from, method = %request.method(), path = request.uri().path(), "cross-site request refused");
        Some(refusal(
            StatusCode::FORBIDDEN,
            "cross_site_check",
            format!(
                "cross-site request refused: a page of {from} may not change anything here \
                 (CORS_ORIGINS lists the origins whose pages may)"
            ),
        ))
    }

    /// True when `origin` is the server's own: the request's host, or
    /// `PUBLIC_BASE_URL`'s origin.
    fn is_own(&self, request: &Request, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.public_origin.as_deref() == Some(origin.as_str()) {
            return true;
        }
        let host = request
            .header(header::HOST)
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.to_string()));
        let origin_host = origin.split_once("://").map(|(_, host)| host);
        matches!((host, origin_host), (Some(host), Some(origin_host)) if host.eq_ignore_ascii_case(origin_host))
    }

    /// The 401 or 403 for a caller who may not call this route, or `None`.
    fn authorize(&self, request: &Request) -> Option<Response> {
        if !self.auth_on() {
            return None;
        }
        let need = self.need(request.method(), request.uri().path());
        if need == Need::Nothing {
            return None;
        }
        let Some(caller) = self.caller(request) else {
            return Some(self.unauthorized());
        };
        let token = match caller {
            Caller::Basic => return None,
            Caller::Token(token) => token,
        };
        let allowed = token.scopes.iter().any(|scope| match (scope, &need) {
            (Scope::Admin, _) => true,
            (Scope::Read, Need::Read) => true,
            (Scope::Submit(pattern), Need::Submit(task)) => pattern.is_match(task),
            _ => false,
        });
        if allowed {
            return None;
        }
        let what = match &need {
            Need::Read => "a read scope".to_owned(),
            Need::Submit(task) => format!("a submit scope matching the task {task:?}"),
            Need::Admin | Need::Nothing => "the admin scope".to_owned(),
        };
        tracing::warn!(token = %token.name, method = %request.method(), path = request.uri().path(), "token lacks the scope");
        Some(refusal(
            StatusCode::FORBIDDEN,
            "authorize",
            format!(
                "the token {:?} may not do this: {} {} needs {what}",
                token.name,
                request.method(),
                request.uri().path()
            ),
        ))
    }

    /// The caller the `Authorization` header (or a WebSocket's stand-in
    /// for it) proves, if any.
    fn caller(&self, request: &Request) -> Option<Caller<'_>> {
        let value = match request.header(header::AUTHORIZATION) {
            Some(value) => value.trim().to_owned(),
            None => socket_credentials(request)?,
        };
        let (scheme, credentials) = value.split_once(' ')?;
        if let Some((user, password)) = &self.basic
            && scheme.eq_ignore_ascii_case("basic")
        {
            let mut headers = poem::http::HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&value).ok()?);
            let basic = headers.typed_get::<Authorization<Basic>>()?;
            // Both compared, in constant time, whatever the first says.
            let user_ok = same(&sha256(basic.username().as_bytes()), user);
            let password_ok = same(&sha256(basic.password().as_bytes()), password);
            return (user_ok & password_ok).then_some(Caller::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let presented = sha256(credentials.trim().as_bytes());
        // Every token is compared, so the time taken says nothing of which.
        let mut found = None;
        for token in &self.tokens {
            if same(&presented, &token.sha256) && found.is_none() {
                found = Some(token);
            }
        }
        found.map(Caller::Token)
    }

    /// What `method` on `path` needs.
    fn need(&self, method: &Method, path: &str) -> Need {
        let segments: Vec<Cow<'_, str>> = path
            .trim_matches('/')
            .split('/')
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
            .collect();
        let segments: Vec<&str> = segments.iter().map(AsRef::as_ref).collect();
        let read = matches!(*method, Method::GET | Method::HEAD);
        match (read, segments.as_slice()) {
            (true, ["openapi.json"] | ["docs", ..] | ["ui", ..]) => Need::Nothing,
            (true, ["healthcheck"]) if self.open_healthcheck => Need::Nothing,
            (true, ["metrics"]) if self.open_metrics => Need::Nothing,
            (true, _) => Need::Read,
            (false, ["tasks", task])
            | (false, ["tasks", task, "jobs", _])
            | (false, ["tasks", task, "jobs", _, "stop" | "retry"])
            | (false, ["tasks", task, "pause" | "resume"])
            | (false, ["tasks", task, "jobs", _, "executions", _, "stop"])
                if matches!(*method, Method::POST | Method::PUT) =>
            {
                Need::Submit((*task).to_owned())
            }
            _ => Need::Admin,
        }
    }

    /// 401 with a challenge for each scheme that is on.
    fn unauthorized(&self) -> Response {
        let mut response = refusal(
            StatusCode::UNAUTHORIZED,
            "authenticate",
            "this API needs credentials: HTTP Basic or `Authorization: Bearer <token>`",
        );
        let headers = response.headers_mut();
        if self.basic.is_some()
            && let Ok(value) = HeaderValue::from_str(&format!("Basic realm=\"{}\"", self.realm))
        {
            headers.append(header::WWW_AUTHENTICATE, value);
        }
        if !self.tokens.is_empty() {
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fastlane\""),
            );
        }
        response
    }

    /// `response` with the CORS headers `origin` gets, if any.
    fn with_cors(&self, mut response: Response, origin: Option<&str>) -> Response {
        let Some(origin) = origin else {
            return response;
        };
        let allow = match &self.cors {
            CorsOrigins::None => return response,
            CorsOrigins::Any => HeaderValue::from_static("*"),
            CorsOrigins::Listed(_) if self.cors.allows(origin) => {
                match HeaderValue::from_str(origin) {
                    Ok(value) => value,
                    Err(_) => return response,
                }
            }
            CorsOrigins::Listed(_) => return response,
        };
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
        if matches!(self.cors, CorsOrigins::Listed(_)) {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        response
    }
}

/// A JSON error answer.
fn refusal(status: StatusCode, operation: &str, error: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": error.into(), "operation": operation});
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

/// `scheme://host[:port]` of a URL, lower-cased.
fn origin_of_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}").to_ascii_lowercase()
}

/// Equality of two digests in time that does not depend on where they
/// differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(tokens: serde_json::Value) -> Access {
        let mut env = std::collections::HashMap::new();
        env.insert("DOCKER_HOST".to_owned(), "tcp://d:1".to_owned());
        env.insert("API_TOKENS".to_owned(), tokens.to_string());
        let config = Config::load(None, &env).unwrap_or_else(|e| panic!("{e}"));
        Access::new(&config)
    }

    #[test]
    fn routes_need_what_they_change() {
        let access = access(serde_json::Value::Null);
        let need = |method: Method, path: &str| access.need(&method, path);
        assert_eq!(need(Method::GET, "/openapi.json"), Need::Nothing);
        assert_eq!(need(Method::GET, "/docs/"), Need::Nothing);
        assert_eq!(need(Method::GET, "/healthcheck"), Need::Read);
        assert_eq!(need(Method::GET, "/tasks/a/jobs/b/ws"), Need::Read);
        assert_eq!(
            need(Method::POST, "/tasks/ci-1/"),
            Need::Submit("ci-1".into())
        );
        assert_eq!(
            need(Method::PUT, "/tasks/a%20b/jobs/j"),
            Need::Submit("a b".into())
        );
        assert_eq!(
            need(Method::POST, "/tasks/t/jobs/j/executions/e/stop"),
            Need::Submit("t".into())
        );
        assert_eq!(
            need(Method::POST, "/tasks/t/jobs/j/retry"),
            Need::Submit("t".into())
        );
        assert_eq!(need(Method::DELETE, "/tasks/t"), Need::Admin);
        assert_eq!(
            need(Method::POST, "/docker-executor/blacklist"),
            Need::Admin
        );
    }

    #[test]
    fn a_socket_handshake_may_carry_its_credentials_as_a_subprotocol() {
        let handshake = |method: Method, path: &str, upgrade: bool, protocols: &str| {
            let mut request = Request::builder()
                .method(method)
                .uri(path.parse::<poem::http::Uri>().unwrap_or_default())
                .header(header::SEC_WEBSOCKET_PROTOCOL, protocols);
            if upgrade {
                request = request.header(header::UPGRADE, "websocket");
            }
            socket_credentials(&request.finish())
        };
        let ws = "/tasks/t/jobs/j/ws";
        let offered = "fastlane, fastlane.authorization.Bearer%20a%28b%29%3Dc";
        assert_eq!(
            handshake(Method::GET, ws, true, offered).as_deref(),
            Some("Bearer a(b)=c"),
            "percent-decoded"
        );
        assert_eq!(
            handshake(Method::GET, ws, true, "fastlane.authorization.Basic%20dTpw").as_deref(),
            Some("Basic dTpw")
        );
        assert_eq!(
            handshake(Method::GET, ws, false, offered),
            None,
            "not a handshake"
        );
        assert_eq!(
            handshake(Method::POST, ws, true, offered),
            None,
            "not a GET"
        );
        assert_eq!(
            handshake(Method::GET, "/tasks/t", true, offered),
            None,
            "not a socket route"
        );
        assert_eq!(
            handshake(Method::GET, ws, true, "fastlane"),
            None,
            "none offered"
        );
        assert_eq!(
            handshake(Method::GET, ws, true, "fastlane.authorization.%FF"),
            None,
            "not UTF-8"
        );
    }

    #[test]
    fn digests_compare_equal_only_when_equal() {
        let a = sha256(b"one");
        assert!(same(&a, &sha256(b"one")));
        assert!(!same(&a, &sha256(b"two")));
    }

    #[test]
    fn the_public_base_url_gives_the_own_origin() {
        assert_eq!(
            origin_of_url("https://Fastlane.example.com/base"),
            "https://fastlane.example.com"
        );
        assert_eq!(
            origin_of_url("http://localhost:10000"),
            "http://localhost:10000"
        );
    }
}
