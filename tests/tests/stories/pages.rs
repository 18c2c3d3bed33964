//! The pages a person opens in a browser, checked in a real headless
//! Chromium (`fastlane_tests::browser`): what they render and what their
//! buttons do, read from the DOM.

use std::time::Duration;

use anyhow::Context;

use fastlane_tests::Server;
use fastlane_tests::browser::Browser;
use serde_json::{Value, json};

/// How long a page may take to show something, on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn swagger_ui_renders_and_executes_the_healthcheck() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let browser = Browser::start().await?;

    // Swagger UI renders the operations of the document it embeds.
    browser.goto(&server.url("/docs")).await?;
    let healthcheck = "#operations-Health-healthcheck";
    browser
        .wait_for_text(
            &format!("{healthcheck} .opblock-summary"),
            "/healthcheck",
            PATIENCE,
        )
        .await?;

    // Open the operation, try it out and execute it against this server.
    browser
        .click(&format!("{healthcheck} .opblock-summary-control"))
        .await?;
    browser
        .click(&format!("{healthcheck} .try-out__btn"))
        .await?;
    browser.click(&format!("{healthcheck} .execute")).await?;

    // The live response: the request went here, answered 200 with the health.
    browser
        .wait_for_text(
            &format!("{healthcheck} .live-responses-table .response-col_status"),
            "200",
            PATIENCE,
        )
        .await?;
    let request_url = browser
        .text(&format!("{healthcheck} .request-url pre"))
        .await?;
    assert_eq!(request_url.trim(), server.url("/healthcheck"));
    let body = browser
        .text(&format!(
            "{healthcheck} .live-responses-table .response-col_description pre"
        ))
        .await?;
    let body: Value = serde_json::from_str(&body)?;
    assert_eq!(body, json!({"store": true, "queue": true, "errors": []}));
    Ok(())
}

#[tokio::test]
async fn the_stream_page_shows_a_job_s_lines_as_they_come_then_its_exit_code() -> anyhow::Result<()>
{
    let server = Server::start(&[]).await?;
    // The page is open before the job starts: it hears `retry` and keeps
    // reconnecting until there is something to show.
    let created = server
        .submit(
            "streamed",
            json!({
                "image": fastlane_tests::image(),
                "command": "sh -c 'echo first line; sleep 6; echo second line >&2; exit 3'",
                "startIn": "2s",
            }),
        )
        .await?;
    let job_url = created["jobUrl"].as_str().context("jobUrl")?;
    let browser = Browser::start().await?;
    browser.goto(&format!("{job_url}stream")).await?;
    assert_eq!(
        browser.eval::<String>("document.title").await?,
        format!(
            "streamed - {} - Fastlane",
            created["jobId"].as_str().unwrap_or_default()
        )
    );

    // The first line shows while the job still sleeps before the second.
    let log = browser
        .wait_for_text("#log", "first line", PATIENCE)
        .await?;
    assert!(
        !log.contains("second line"),
        "both lines came at once: {log:?}"
    );
    let (_, job) = server.get(job_url).await?;
    assert_eq!(job["job"]["executions"][0]["status"], "running");

    // Then the second (stderr, marked as such), and the exit status.
    let log = browser
        .wait_for_text("#log", "second line", PATIENCE)
        .await?;
    assert_eq!(log, "first line\nsecond line\n");
    assert_eq!(browser.text("#log .stderr").await?, "second line\n");
    let status = browser
        .wait_for_text("#status", "exit code 3", PATIENCE)
        .await?;
    assert_eq!(status, "failed (exit code 3)");
    Ok(())
}
