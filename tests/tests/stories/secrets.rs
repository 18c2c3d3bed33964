//! Secrets stay secret: a canary planted in a job's envs, in a webhook's
//! headers and in a webhook's URL (user info and query) shows up in none of
//! what fastlane itself shows (the API, `/status`, the live log socket,
//! webhook payloads, e-mails, Sentry events, the server's log, `/metrics`),
//! while the hook is still sent its own headers.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use fastlane_tests::receiver::{Received, Receiver};
use fastlane_tests::smtp::{SmtpSink, free_port};
use fastlane_tests::{Server, image};

const LIMIT: Duration = Duration::from_secs(90);

/// Waits until `done()` holds or the limit passes.
async fn eventually(what: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Everything one WebSocket sent until it closed.
async fn socket_text(url: &str) -> anyhow::Result<String> {
    let url = url.replacen("http://", "ws://", 1);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut seen = String::new();
    while let Some(message) = tokio::time::timeout(LIMIT, socket.next()).await? {
        match message? {
            Message::Text(text) => seen.push_str(&text),
            Message::Close(frame) => {
                if let Some(frame) = frame {
                    seen.push_str(&frame.reason);
                }
                break;
            }
            _ => {}
        }
    }
    Ok(seen)
}

/// What a receiver saw, but for what the user wrote for it themselves
/// (the request line, and the `Authorization` header the URL's or the
/// hook's credentials make).
fn shown_to(received: &[Received]) -> String {
    received
        .iter()
        .map(|r| {
            let headers: Vec<String> = r
                .headers
                .iter()
                .filter(|(name, _)| name != "authorization")
                .map(|(name, value)| format!("{name}: {value}"))
                .collect();
            format!(
                "{}\n{}",
                headers.join("\n"),
                String::from_utf8_lossy(&r.body)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_canary_secret_is_shown_nowhere_fastlane_speaks() -> anyhow::Result<()> {
    let canary = format!("canary{}", uuid::Uuid::new_v4().simple());
    let own = Receiver::start(vec![200]).await?;
    let with_credentials = Receiver::start(vec![500]).await?;
    let sentry = Receiver::start(vec![200]).await?;
    let smtp_port = free_port()?;
    let smtp = SmtpSink::start(smtp_port)?;
    let dsn = format!("{}/42", sentry.url.replace("http://", "http://public@"));
    let smtp_port = smtp_port.to_string();
    let server = Server::start(&[
        ("WEBHOOKS_ALLOW_LOCAL_NETWORK", "true"),
        ("WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS", "100"),
        ("SENTRY_DSN", &dsn),
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", &smtp_port),
        ("SMTP_FROM", "fastlane@example.com"),
        ("SMTP_RETRY_MIN_MS", "200"),
        (
            "RUST_LOG",
            "info,fastlane=debug,fastlane_server=debug,fastlane_plugin_webhook=debug,\
             fastlane_plugin_email=debug,fastlane_plugin_sentry=debug,fastlane_plugin_docker=debug",
        ),
    ])
    .await?;

    let envs = json!({
        "GITHUB_TOKEN": canary, "DB_PASSWORD": canary, "DB_PASSWD": canary,
        "SESSION_COOKIE": canary, "AWS_SECRET_ACCESS_KEY": canary,
        "GOOGLE_APPLICATION_CREDENTIALS": canary, "AUTH_HEADER": canary,
        "PRIVATE_KEY": canary, "APP_DSN": canary, "OAUTH_CLIENT_ID": canary,
        "GREETING": "hello"
    });
    let creds_url = format!(
        "{}/creds?token={canary}&id=7",
        with_credentials
            .url
            .replace("http://", &format!("http://bot:{canary}@"))
    );
    let hooks = json!({
        "fails": [{"url": format!("{}/own", own.url),
                   "headers": {"Authorization": format!("Bearer {canary}"), "X-Team": "core"}}],
        "finishes": [{"url": creds_url, "retries": 0}]
    });
    // Runs and fails (a webhook, an e-mail, a given-up hook reported to
    // Sentry); it never prints its envs.
    let ran = server
        .submit(
            "secrets",
            json!({"image": image(), "command": "sh -c 'echo working; exit 3'",
                   "envs": envs, "webhooks": hooks, "notify": {"fails": ["ops@example.com"]}}),
        )
        .await?;
    // Cannot start (reported to Sentry as `running`).
    let missing = server
        .submit(
            "secrets",
            json!({"image": "fastlane-test/missing:1", "command": "true", "envs": envs}),
        )
        .await?;
    // A cron job, listed by `/status`.
    server
        .submit(
            "secrets",
            json!({"image": image(), "command": "true", "cron": "0 0 1 1 *",
                   "envs": envs, "webhooks": hooks}),
        )
        .await?;

    let ran_url = ran["executionUrl"].as_str().unwrap_or_default();
    let execution = server.wait_finished(ran_url, LIMIT).await?;
    assert_eq!(execution["status"], "failed", "{execution}");
    let missing_url = missing["executionUrl"].as_str().unwrap_or_default();
    server.wait_finished(missing_url, LIMIT).await?;
    eventually("the hooks", || {
        !own.received().is_empty() && !with_credentials.received().is_empty()
    })
    .await?;
    eventually("the e-mail", || !smtp.mails().is_empty()).await?;
    eventually("two Sentry events", || {
        sentry
            .received()
            .iter()
            .filter(|r| r.path.contains("/envelope"))
            .count()
            >= 2
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await; // whatever else comes

    // The hooks were sent as written.
    let own_calls = own.received();
    assert_eq!(
        own_calls[0].header("authorization"),
        Some(format!("Bearer {canary}").as_str()),
        "the hook gets its own header"
    );
    assert_eq!(own_calls[0].header("x-team"), Some("core"));
    let credential_calls = with_credentials.received();
    assert!(
        credential_calls[0].path.contains(&canary),
        "the receiver gets its URL as written"
    );
    assert!(
        credential_calls[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic ")),
        "the URL's user info is sent"
    );

    // What fastlane shows.
    let mut shown: Vec<(String, String)> = Vec::new();
    let job_url = ran["jobUrl"].as_str().unwrap_or_default().to_owned();
    let (_, job) = server.get(&job_url).await?;
    let metadata = &job["job"]["metadata"];
    assert_eq!(metadata["envs"]["GITHUB_TOKEN"], "***", "{job}");
    assert_eq!(metadata["envs"]["GREETING"], "hello");
    assert_eq!(
        metadata["webhooks"]["fails"][0]["headers"]["Authorization"],
        "***"
    );
    let shown_url = metadata["webhooks"]["finishes"][0]["url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        shown_url.contains("bot:***@") && shown_url.contains("token=***&id=7"),
        "{shown_url}"
    );
    shown.push(("the job".into(), job.to_string()));
    for url in [
        ran_url.to_owned(),
        missing_url.to_owned(),
        missing["jobUrl"].as_str().unwrap_or_default().to_owned(),
        server.url("/tasks/secrets/"),
        server.url("/tasks/"),
        server.url("/status"),
    ] {
        let text = server.client().get(&url).send().await?.text().await?;
        shown.push((url, text));
    }
    let (_, status) = server.get("/status").await?;
    assert!(
        status.to_string().contains("0 0 1 1 *"),
        "/status lists the cron job: {status}"
    );
    let metrics = server
        .client()
        .get(server.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    shown.push(("/metrics".into(), metrics));
    shown.push((
        "the job's live log".into(),
        socket_text(&format!("{job_url}ws")).await?,
    ));
    shown.push((
        "the execution's live log".into(),
        socket_text(&format!("{ran_url}ws")).await?,
    ));
    shown.push(("the webhook calls".into(), shown_to(&own_calls)));
    shown.push((
        "the webhook calls with credentials".into(),
        shown_to(&credential_calls),
    ));
    shown.push(("the e-mails".into(), serde_json::to_string(&smtp.mails())?));
    let envelopes: Vec<String> = sentry
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    let envelopes = envelopes.join("\n");
    assert!(
        envelopes.contains("gave up notifying") && envelopes.contains("bot:***@"),
        "the given-up hook was reported, masked: {envelopes}"
    );
    shown.push(("Sentry".into(), envelopes));
    shown.push(("the server's log".into(), server.log()));

    for (place, text) in &shown {
        assert!(
            !text.contains(&canary),
            "the canary shows in {place}:\n{text}"
        );
    }
    Ok(())
}
