//! The admin UI at `/ui/`: a handful of static files (one page, one
//! stylesheet, ES modules; no build step) compiled into the binary. It is a
//! client of the public API only: everything it shows or does goes through
//! the routes of the OpenAPI document, with the caller's credentials.
//!
//! Every other path under `/ui/` answers the page itself, so that deep links
//! (`/ui/tasks/<taskId>/jobs/<jobId>`) load directly; the script routes
//! them. The files go out with a Content-Security-Policy that lets scripts,
//! styles and connections come from this origin only, so nothing the UI
//! shows (task ids, commands, logs) can run as script whatever it holds.
//! The page needs no credentials to load; the API it calls does.

use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

/// Scripts, styles, sockets and images from this origin only; no plugins,
/// frames, forms posted elsewhere, or `<base>`.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// One file of the UI.
struct Asset {
    /// Its path under `/ui/assets/`.
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its text, compiled in.
    body: &'static str,
}

macro_rules! assets {
    ($($name:literal => $type:expr),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../../ui/", $name)),
        }),*]
    };
}

/// The `Content-Type` of the ES modules.
const JS: &str = "text/javascript; charset=utf-8";

/// The files under `/ui/assets/`.
const ASSETS: &[Asset] = assets![
    "style.css" => "text/css; charset=utf-8",
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "log.js" => JS,
    "overview.js" => JS,
    "charts.js" => JS,
    "tasks.js" => JS,
    "task.js" => JS,
    "job.js" => JS,
    "submit.js" => JS,
];

/// The one page; the script fills it in.
const PAGE: &str = include_str!("../../ui/index.html");

/// Serves `/ui` and everything under it (`GET` and `HEAD` only).
pub struct Ui;

impl Endpoint for Ui {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            let mut response = super::error::framework_error(poem::Error::from_status(
                StatusCode::METHOD_NOT_ALLOWED,
            ));
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return Ok(response);
        }
        let path = request.uri().path();
        let response = match path.strip_prefix("/ui/assets/") {
            Some(name) => match ASSETS.iter().find(|asset| asset.name == name) {
                Some(asset) => file(asset.content_type, asset.body),
                None => {
                    super::error::framework_error(poem::Error::from_status(StatusCode::NOT_FOUND))
                        .into_response()
                }
            },
            None => file("text/html; charset=utf-8", PAGE),
        };
        Ok(response)
    }
}

/// A file of the UI with the headers every one of them carries.
fn file(content_type: &'static str, body: &'static str) -> Response {
    Response::builder()
        .content_type(content_type)
        .header(header::CONTENT_SECURITY_POLICY, POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        // Small files that change with the binary: always revalidated.
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        // Each `import … from "./x.js"` in the modules names a served file.
        for asset in ASSETS {
            for line in asset.body.lines() {
                let Some((_, from)) = line.split_once(" from \"./") else {
                    continue;
                };
                let name = from.trim_end_matches(['"', ';']);
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{} imports {name}, which is not served",
                    asset.name
                );
            }
        }
        assert!(PAGE.contains("/ui/assets/app.js"));
    }
}
