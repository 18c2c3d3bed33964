//! What every request leaves behind: its id, an access log line and the
//! `fastlane_http_requests_total` count.
//!
//! The request id is the client's `X-Request-Id` when it is a plain token
//! (1 to 128 letters, digits and `-_.:/+=@`), else a new UUID. It comes
//! back in the response's `X-Request-Id` and is a field of the `request`
//! span every log line of the request is written under (the job ids a
//! submission logs included). After the answer, one line on the
//! `fastlane_server::access` target says method, route template, status,
//! latency and size: a log pipeline can follow a request without parsing
//! paths, and no client can make the route field unbounded.

use std::time::Instant;

use http_body_util::combinators::BoxBody;
use poem::http::HeaderValue;
use poem::http::header::CONTENT_LENGTH;
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::{Instrument, info_span};

use super::labels;
use crate::services::Services;

/// The header that carries a request's id, both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest request id taken from a client.
const MAX_ID: usize = 128;

/// Answers `request` with `endpoint` under its id, then logs and counts it.
pub async fn observe<E: Endpoint>(endpoint: E, request: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let id = request_id(&request);
    let method = labels::method_label(request.method());
    let route = labels::route_of(request.uri().path());
    let metrics = request.data::<Services>().map(|s| s.metrics.clone());
    let span = info_span!("request", request_id = %id, method, route = %route);
    let mut response = match endpoint.call(request).instrument(span.clone()).await {
        Ok(response) => response.into_response(),
        Err(err) => err.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    let bytes = body_size(&mut response);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "fastlane_server::access",
        parent: &span,
        status,
        latency_ms = (latency_ms * 1000.0).round() / 1000.0,
        bytes,
        "request"
    );
    if let Some(metrics) = metrics {
        let status = status.to_string();
        let labels = [
            ("method", method),
            ("route", route.as_str()),
            ("status", status.as_str()),
        ];
        metrics.count("fastlane_http_requests_total", &labels, 1);
    }
    Ok(response)
}

/// The size of the answer's body when it is known before it is sent (not
/// for streams: live logs, compressed bodies).
fn body_size(response: &mut Response) -> Option<u64> {
    if let Some(length) = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Some(length);
    }
    let body: BoxBody<bytes::Bytes, std::io::Error> = response.take_body().into();
    let size = http_body::Body::size_hint(&body).exact();
    response.set_body(poem::Body::from(body));
    size
}

/// The client's id when it is a plain token, else a new one.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| plain(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// 1 to [`MAX_ID`] characters that cannot break a log line or a header.
fn plain(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn a_clients_id_is_kept_only_when_it_is_a_plain_token() {
        assert!(plain("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(plain("req-2026/12/03:1"));
        for bad in ["", "a b", "x\r\nSet-Cookie: y", "é", &"x".repeat(129)] {
            assert!(!plain(bad), "{bad:?}");
        }
    }
}
