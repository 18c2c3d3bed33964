//! Who may call the API: pages of other sites cannot change anything, CORS
//! answers only the origins the operator lists, and with credentials
//! configured every route asks for them, tokens within their scopes.

use std::time::Duration;

use fastlane_tests::{Server, image, make_token};
use reqwest::Method;
use serde_json::{Value, json};

/// A job that waits an hour before running: submitting it starts nothing.
fn later() -> Value {
    json!({"image": image(), "command": "echo hi", "startIn": "1h"})
}

/// Sends `method path` with `headers` and `body`; returns status, headers
/// and the body (JSON when it is JSON, else a string).
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    let mut request = server.client().request(method, server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, headers, body))
}

#[tokio::test]
async fn a_page_of_another_site_cannot_start_containers() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let evil = [
        ("origin", "https://evil.example"),
        ("content-type", "text/plain"),
    ];
    // The classic "simple request" a page can send without a preflight.
    let (status, headers, body) = send(
        &server,
        Method::POST,
        "/tasks/victim",
        &evil,
        Some(later().to_string()),
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["operation"], "cross_site_check");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("https://evil.example") && e.contains("CORS_ORIGINS")),
        "{body}"
    );
    assert!(headers.get("access-control-allow-origin").is_none());
    let (status, _) = server.get("/tasks/victim").await?;
    assert_eq!(status, 404, "nothing was created");

    // Every way of changing something is refused, WebSocket upgrades too;
    // so is a browser that says cross-site without an Origin.
    for (method, path, extra) in [
        (
            Method::PUT,
            "/tasks/victim/jobs/0b6a1a3e-9ad4-4b7e-8d5e-1f0e9c0c2f11",
            None,
        ),
        (Method::POST, "/docker-executor/blacklist", None),
        (Method::DELETE, "/docker-executor/blacklist", None),
        (
            Method::GET,
            "/tasks/t/jobs/j/ws",
            Some(("upgrade", "websocket")),
        ),
    ] {
        let mut headers = vec![("origin", "https://evil.example")];
        headers.extend(extra);
        let (status, _, body) =
            send(&server, method.clone(), path, &headers, Some("{}".into())).await?;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    let (status, _, _) = send(
        &server,
        Method::POST,
        "/tasks/victim",
        &[("sec-fetch-site", "cross-site")],
        Some(later().to_string()),
    )
    .await?;
    assert_eq!(status, 403);
    let (status, _, _) = send(
        &server,
        Method::POST,
        "/tasks/victim",
        &[("origin", "null")],
        Some(later().to_string()),
    )
    .await?;
    assert_eq!(status, 403, "an opaque origin is another site");

    // Reading is not changing: a GET from elsewhere is answered, but
    // without CORS headers the browser keeps the answer from the page.
    let (status, headers, _) = send(
        &server,
        Method::GET,
        "/tasks/",
        &[("origin", "https://evil.example")],
        None,
    )
    .await?;
    assert_eq!(status, 200);
    assert!(headers.get("access-control-allow-origin").is_none());

    // The server's own pages, and clients that are not browsers, submit.
    let own = server.base.clone();
    let (status, _, body) = send(
        &server,
        Method::POST,
        "/tasks/mine",
        &[("origin", own.as_str()), ("sec-fetch-site", "same-origin")],
        Some(later().to_string()),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    server.submit("curl", later()).await?;
    let (status, body) = server.get("/status").await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

#[tokio::test]
async fn cors_answers_only_the_origins_the_operator_lists() -> anyhow::Result<()> {
    let server = Server::start(&[("CORS_ORIGINS", "https://ui.example.com")]).await?;
    let ui = [("origin", "https://ui.example.com")];
    let (status, headers, _) = send(&server, Method::GET, "/tasks/", &ui, None).await?;
    assert_eq!(status, 200);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://ui.example.com"
    );
    assert!(headers.get_all("vary").iter().any(|v| v == "Origin"));
    assert!(headers.get("access-control-allow-credentials").is_none());

    let (status, headers, _) = preflight(&server, "https://ui.example.com").await?;
    assert_eq!(status, 204);
    assert!(
        headers["access-control-allow-methods"]
            .to_str()?
            .contains("POST")
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()?
            .contains("authorization")
    );
    let (status, headers, body) = preflight(&server, "https://evil.example").await?;
    assert_eq!(status, 403, "{body}");
    assert!(headers.get("access-control-allow-origin").is_none());

    // A listed origin's page may submit, even cross-site.
    let (status, headers, body) = send(
        &server,
        Method::POST,
        "/tasks/from-ui",
        &[
            ("origin", "https://ui.example.com"),
            ("sec-fetch-site", "cross-site"),
            ("content-type", "application/json"),
        ],
        Some(later().to_string()),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://ui.example.com"
    );

    // `*` is the original's behaviour, chosen explicitly: any origin, sent
    // as `*`, never with credentials.
    let open = Server::start(&[("CORS_ORIGINS", "*")]).await?;
    let (status, headers, _) = send(
        &open,
        Method::POST,
        "/tasks/anyone",
        &[("origin", "https://elsewhere.example")],
        Some(later().to_string()),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers.get("access-control-allow-credentials").is_none());
    Ok(())
}

/// A CORS preflight of a POST from `origin`.
async fn preflight(
    server: &Server,
    origin: &str,
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, Value)> {
    send(
        server,
        Method::OPTIONS,
        "/tasks/x",
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type, authorization",
            ),
        ],
        None,
    )
    .await
}

#[tokio::test]
async fn tokens_do_what_their_scopes_say_and_nothing_else() -> anyhow::Result<()> {
    let (reader, reader_entry) = make_token("dashboard", &["read"])?;
    let (ci, ci_entry) = make_token("ci", &["submit:ci-.*"])?;
    let (admin, admin_entry) = make_token("ops", &["admin"])?;
    let tokens = json!([reader_entry, ci_entry, admin_entry]).to_string();
    let server = Server::start(&[
        ("API_TOKENS", tokens.as_str()),
        ("BASIC_AUTH_USERNAME", "root"),
        ("BASIC_AUTH_PASSWORD", "hunter2"),
        ("AUTH_OPEN_ROUTES", "healthcheck"),
        ("CORS_ORIGINS", "https://ui.example.com"),
    ])
    .await?;
    let bearer = |token: &str| format!("Bearer {token}");
    let job = later().to_string();

    // Without credentials: 401 JSON with a challenge per scheme.
    let (status, headers, body) = send(&server, Method::GET, "/tasks/", &[], None).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["operation"], "authenticate");
    let challenges: Vec<_> = headers.get_all("www-authenticate").iter().collect();
    assert!(
        challenges
            .iter()
            .any(|c| c.to_str().is_ok_and(|c| c.starts_with("Basic")))
    );
    assert!(
        challenges
            .iter()
            .any(|c| c.to_str().is_ok_and(|c| c.starts_with("Bearer")))
    );
    let wrong = bearer("fl_not-a-token");
    let (status, _, _) = send(
        &server,
        Method::GET,
        "/tasks/",
        &[("authorization", wrong.as_str())],
        None,
    )
    .await?;
    assert_eq!(status, 401);
    let (status, _, body) =
        send(&server, Method::POST, "/tasks/ci-1", &[], Some(job.clone())).await?;
    assert_eq!(status, 401, "{body}");

    // Left open by configuration, and preflights are answered before auth.
    let (status, _, _) = send(&server, Method::GET, "/healthcheck", &[], None).await?;
    assert_eq!(status, 200);
    let (status, _, _) = send(&server, Method::GET, "/status", &[], None).await?;
    assert_eq!(status, 401);
    let (status, _, _) = send(
        &server,
        Method::OPTIONS,
        "/tasks/ci-1",
        &[
            ("origin", "https://ui.example.com"),
            ("access-control-request-method", "POST"),
        ],
        None,
    )
    .await?;
    assert_eq!(status, 204);

    // read: reads, changes nothing.
    let auth = bearer(&reader);
    let read = [("authorization", auth.as_str())];
    let (status, _, _) = send(&server, Method::GET, "/tasks/", &read, None).await?;
    assert_eq!(status, 200);
    let (status, _, body) = send(
        &server,
        Method::POST,
        "/tasks/ci-1",
        &read,
        Some(job.clone()),
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["operation"], "authorize");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("dashboard")),
        "{body}"
    );

    // submit:ci-.*: submits, stops and retries in ci- tasks only.
    let auth = bearer(&ci);
    let ci_auth = [("authorization", auth.as_str())];
    let (status, _, created) = send(
        &server,
        Method::POST,
        "/tasks/ci-1",
        &ci_auth,
        Some(job.clone()),
    )
    .await?;
    assert_eq!(status, 200, "{created}");
    let job_path = format!(
        "/tasks/ci-1/jobs/{}",
        created["jobId"].as_str().unwrap_or_default()
    );
    let (status, _, body) = send(
        &server,
        Method::POST,
        &format!("{job_path}/stop"),
        &ci_auth,
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    for (method, path) in [
        (Method::POST, "/tasks/prod-1"),
        (Method::POST, "/tasks/prod-ci-1"),
        (Method::GET, "/tasks/ci-1"),
        (Method::POST, "/docker-executor/blacklist"),
    ] {
        let (status, _, body) =
            send(&server, method.clone(), path, &ci_auth, Some(job.clone())).await?;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }

    // admin and the basic-auth user may do everything.
    let auth = bearer(&admin);
    let blacklist = json!({"host": "203.0.113.9:2375"}).to_string();
    for credentials in [
        ("authorization", auth.as_str()),
        ("authorization", "Basic cm9vdDpodW50ZXIy"),
    ] {
        let (status, _, body) = send(
            &server,
            Method::POST,
            "/docker-executor/blacklist",
            &[credentials],
            Some(blacklist.clone()),
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        let (status, _, _) = send(&server, Method::GET, &job_path, &[credentials], None).await?;
        assert_eq!(status, 200);
    }

    // Tokens are never written to the log.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log();
    for token in [&reader, &ci, &admin] {
        assert!(
            !log.contains(token.as_str()),
            "a token is in the server's log"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_document_declares_both_schemes_and_their_answers() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let (status, spec) = server.get("/openapi.json").await?;
    assert_eq!(status, 200);
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["basicAuth"]["scheme"], "basic");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            operations += 1;
            assert!(operation["security"].is_array(), "{method} {path}");
            if path == "/healthcheck" || path == "/" {
                // Its failures answer its own shape (one error type per
                // operation, for client generators).
                continue;
            }
            for status in ["401", "403"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
    assert!(operations > 20);
    let docs = server
        .client()
        .get(server.url("/docs"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        docs.contains("bearerAuth"),
        "Swagger UI shows the completed document"
    );
    Ok(())
}
