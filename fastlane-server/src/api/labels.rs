//! The labels of `fastlane_http_requests_total`: a request's route as the
//! OpenAPI document's template and its method, each from a bounded set so
//! that no client can grow the number of series.

/// The route label of a request path: the template of the OpenAPI route it
/// matches (ids as placeholders, so one series per route, not per task),
/// `/docs` and `/openapi.json` for the documentation, and `unmatched` for
/// anything else (scanners must not grow the series without bound).
pub fn route_of(path: &str) -> String {
    if let Some(template) = super::route_template(path) {
        return template.to_owned();
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed == "/openapi.json" {
        "/openapi.json".to_owned()
    } else if trimmed == "/docs" || trimmed.starts_with("/docs/") {
        "/docs".to_owned()
    } else if trimmed == "/ui" || trimmed.starts_with("/ui/") {
        "/ui".to_owned()
    } else {
        UNMATCHED.to_owned()
    }
}

/// The route label of paths no route matches.
pub const UNMATCHED: &str = "unmatched";

/// The method label of a request: the method when it is a standard one,
/// else `other` (any token is a valid method, and each would be a series).
pub fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    STANDARD
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_the_documents_templates() {
        assert_eq!(
            route_of("/tasks/a/jobs/b/executions/c/stdout/"),
            "/tasks/{taskId}/jobs/{jobId}/executions/{executionId}/stdout"
        );
        assert_eq!(route_of("/tasks/"), "/tasks");
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/docs/index.css"), "/docs");
        assert_eq!(route_of("/ui/tasks/a/jobs/b"), "/ui");
        for unknown in [
            "/wp-admin/x.php",
            "/tasks/a/nope",
            "/tasks/a/jobs/b/c/d/e/f/g",
        ] {
            assert_eq!(route_of(unknown), UNMATCHED, "{unknown}");
        }
    }

    #[test]
    fn odd_methods_are_other() {
        let odd = poem::http::Method::from_bytes(b"PROPFIND").expect("a token");
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&poem::http::Method::DELETE), "DELETE");
    }
}
