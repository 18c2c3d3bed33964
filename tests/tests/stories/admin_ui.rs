//! The admin UI at `/ui/`, used as an operator would, in a real headless
//! Chromium (`fastlane_tests::browser`) against a real server and engine:
//! submitting a job from the form and watching its output arrive, stopping
//! and retrying, blacklisting a host, pausing a task and seeing why its job
//! waits, a refused field shown beside itself, and signing in with a token.
//!
//! Each page is checked with axe-core (`FASTLANE_TEST_AXE`, the npm package
//! `scripts/test.sh` installs) for serious and critical violations, and
//! photographed at a phone's width (390 px) and a desktop's into
//! `target/tmp/ui-screenshots/` for a reviewer to look at.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::Digest;

use fastlane_tests::browser::Browser;
use fastlane_tests::{Server, image};

/// How long a page may take to show something, on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn task(name: &str) -> String {
    format!(
        "ui-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The axe-core script, read from the npm package.
fn axe_source() -> anyhow::Result<String> {
    let path = std::env::var("FASTLANE_TEST_AXE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/npm-tools/node_modules/axe-core/axe.min.js"
        )
        .to_owned()
    });
    std::fs::read_to_string(&path)
        .with_context(|| format!("reading axe-core from {path} (scripts/test.sh installs it)"))
}

/// Runs axe-core on the page and fails on any serious or critical violation.
async fn accessible(browser: &Browser, page: &str) -> anyhow::Result<()> {
    let script = format!(
        "{}\nconst result = await axe.run(document, {{ resultTypes: ['violations'] }});\n\
         if (result.passes.length + result.violations.length < 10) return ['axe-core checked almost nothing: ' + JSON.stringify(result.testEngine)];\n\
         return result.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')\n\
           .map(v => v.id + ': ' + v.help + ' (' + v.nodes.map(n => n.target.join(' ')).join(', ') + ')');",
        axe_source()?
    );
    let violations: Vec<String> = browser.eval_async(&script).await?;
    if !violations.is_empty() {
        bail!(
            "axe-core finds on the {page} page:\n{}",
            violations.join("\n")
        );
    }
    Ok(())
}

/// Photographs the whole page at a phone's width and a desktop's.
async fn photograph(browser: &Browser, page: &str) -> anyhow::Result<()> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    for (width, height, name) in [(390, 844, "phone"), (1280, 900, "desktop")] {
        browser.set_window_size(width, height).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let whole: u32 = browser
            .eval("document.documentElement.scrollHeight")
            .await?;
        browser
            .set_window_size(width, whole.clamp(height, 6000))
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser
            .screenshot(&dir.join(format!("{page}-{name}.png")))
            .await?;
    }
    Ok(())
}

/// Clicks `button`, then the confirmation dialog's Confirm.
async fn click_and_confirm(browser: &Browser, button: &str) -> anyhow::Result<()> {
    browser.click(button).await?;
    browser
        .wait_for("document.getElementById('confirm').open", PATIENCE)
        .await?;
    browser.click("#confirm-ok").await
}

/// A JavaScript expression for the button whose text is `text`.
fn button_named(text: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('button')).find(b => b.textContent.trim() === {})",
        json!(text)
    )
}

/// Clicks the button whose text is `text`, then the confirmation dialog's
/// Confirm.
async fn click_button(browser: &Browser, text: &str) -> anyhow::Result<()> {
    let button = button_named(text);
    browser
        .wait_for(&format!("{button} && !{button}.disabled"), PATIENCE)
        .await?;
    browser.eval::<Value>(&format!("{button}.click()")).await?;
    browser
        .wait_for("document.getElementById('confirm').open", PATIENCE)
        .await?;
    browser.click("#confirm-ok").await
}

#[tokio::test]
async fn a_job_submitted_from_the_form_shows_its_output_live_and_ends_done() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let browser = Browser::start().await?;
    let task = task("submit");

    browser.goto(&server.url("/ui/submit")).await?;
    browser.wait_for_element("#submit-form", PATIENCE).await?;
    accessible(&browser, "submit").await?;
    photograph(&browser, "submit").await?;
    browser.type_into("#field-taskId", &task).await?;
    browser.type_into("#field-image", &image()).await?;
    browser
        .type_into(
            "#field-command",
            "sh -c 'echo first; sleep 8; echo second; echo oops >&2'",
        )
        .await?;
    browser.type_into("#field-envs", "GREETING=hello").await?;
    browser.click("#submit-form button[type=submit]").await?;

    // The job's page, its output followed while it runs: the first line
    // shows before the second is written.
    browser
        .wait_for_text("#log-stdout", "first", PATIENCE)
        .await?;
    let stdout = browser.text("#log-stdout").await?;
    assert!(
        !stdout.contains("second"),
        "the first line showed while the job still ran: {stdout:?}"
    );
    browser
        .wait_for_text("#log-state", "Ended done, exit code 0", PATIENCE)
        .await?;
    browser
        .wait_for_text("#log-stdout", "second", PATIENCE)
        .await?;
    browser
        .wait_for_text("#log-stderr", "oops", PATIENCE)
        .await?;
    let job_url: String = browser.eval("location.pathname").await?;
    let job_id = job_url.rsplit('/').next().unwrap_or_default().to_owned();

    // What the page shows is what the API says.
    let (code, job) = server.get(&format!("/tasks/{task}/jobs/{job_id}")).await?;
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["job"]["executions"][0]["status"], "done");
    assert_eq!(job["job"]["metadata"]["envs"]["GREETING"], "hello");
    browser.wait_for_text("table", "✓ done", PATIENCE).await?;
    browser
        .wait_for_text("table", "GREETING\thello", PATIENCE)
        .await?;
    accessible(&browser, "job").await?;
    photograph(&browser, "job").await?;

    // The task's page lists the job; the tasks page lists the task.
    browser.click("a[href^='/ui/tasks/ui-submit']").await?;
    browser.wait_for_text("table", &job_id, PATIENCE).await?;
    browser.wait_for_text("table", "✓ done", PATIENCE).await?;
    accessible(&browser, "task").await?;
    photograph(&browser, "task").await?;
    // Narrowed to failed jobs, the task shows none.
    browser
        .eval::<Value>(
            "(() => { const s = document.getElementById('status-filter'); \
             s.value = 'failed'; s.dispatchEvent(new Event('change')); })()",
        )
        .await?;
    browser
        .wait_for_text("main", "No job of this task is failed.", PATIENCE)
        .await?;
    // The tasks page lists the task with its last run.
    browser.goto(&server.url("/ui/tasks")).await?;
    browser.wait_for_text("table", &task, PATIENCE).await?;
    let row = browser
        .wait_for_text("tbody tr", "✓ done", PATIENCE)
        .await?;
    assert!(row.contains(&task), "the task's row says done: {row:?}");
    accessible(&browser, "tasks").await?;
    photograph(&browser, "tasks").await?;
    // The overview counts the execution that ended, in words and in the
    // chart of the last hour.
    browser.goto(&server.url("/ui/")).await?;
    browser.wait_for_text("table", "Hosts", PATIENCE).await?;
    browser
        .wait_for_text("#activity-summary", "Ended: 1 done, 0 failed", PATIENCE)
        .await?;
    let bar: String = browser
        .eval("document.querySelector('#overview svg rect.bar-done title').textContent")
        .await?;
    assert!(bar.ends_with(": 1 done"), "one bar of one done: {bar:?}");
    browser
        .wait_for_text("caption", "Latest failures: none", PATIENCE)
        .await?;
    // The numbers behind the charts, opened, stay open as the page refreshes.
    browser.click("details.numbers summary").await?;
    browser
        .wait_for_text("details.numbers table", "1", PATIENCE)
        .await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let open: bool = browser
        .eval("document.querySelector('details.numbers').open")
        .await?;
    assert!(open, "the table stayed open through a refresh");
    accessible(&browser, "overview").await?;
    photograph(&browser, "overview").await?;
    Ok(())
}

#[tokio::test]
async fn a_bad_cron_expression_is_shown_beside_its_field_and_nothing_is_created()
-> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let browser = Browser::start().await?;
    let task = task("cron");

    browser
        .goto(&server.url(&format!("/ui/submit?task={task}")))
        .await?;
    browser.wait_for_element("#field-cron", PATIENCE).await?;
    browser.type_into("#field-image", &image()).await?;
    browser.type_into("#field-command", "echo never").await?;
    browser.type_into("#field-cron", "every tuesday").await?;
    browser.click("#submit-form button[type=submit]").await?;

    let error = browser
        .wait_for_text("#field-cron-error", "every tuesday", PATIENCE)
        .await?;
    assert!(
        error.starts_with("cron "),
        "the server's own words: {error}"
    );
    let invalid: Option<String> = browser
        .eval("document.getElementById('field-cron').getAttribute('aria-invalid')")
        .await?;
    assert_eq!(invalid.as_deref(), Some("true"));
    let (code, body) = server.get(&format!("/tasks/{task}")).await?;
    assert_eq!(code, 404, "nothing was created: {body}");

    // Corrected, the job is created; its page and its task's page show the
    // schedule and the next run the API computed.
    browser.type_into("#field-cron", "0 3 * * *").await?;
    browser.click("#submit-form button[type=submit]").await?;
    browser.wait_for_text("dl", "0 3 * * *", PATIENCE).await?;
    let (code, page) = server.get(&format!("/tasks/{task}/jobs")).await?;
    assert_eq!(code, 200, "{page}");
    let job = &page["items"][0];
    assert_eq!(job["cron"], "0 3 * * *", "{page}");
    let next = job["nextRunAt"].as_str().context("a next run")?;
    assert!(next.contains("T03:00:00"), "the next 03:00: {next}");
    browser
        .goto(&server.url(&format!("/ui/tasks/{task}")))
        .await?;
    let row = browser
        .wait_for_text("tbody tr", "0 3 * * *", PATIENCE)
        .await?;
    let shown: String = browser
        .eval("document.querySelector('tbody tr time').getAttribute('datetime')")
        .await?;
    assert_eq!(
        shown.parse::<chrono::DateTime<chrono::Utc>>()?,
        next.parse::<chrono::DateTime<chrono::Utc>>()?,
        "the row's next run is the API's: {row:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_running_job_stopped_from_the_ui_ends_stopped_and_a_failed_one_retried_runs_again()
-> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let browser = Browser::start().await?;
    let task = task("actions");

    let sleeper = server
        .submit(&task, json!({"image": image(), "command": "sleep 120"}))
        .await?;
    let sleeper_url = sleeper["executionUrl"].as_str().context("executionUrl")?;
    server
        .wait_for(sleeper_url, PATIENCE, |e| e["status"] == "running")
        .await?;
    let job_id = sleeper["jobId"].as_str().context("jobId")?;
    browser
        .goto(&server.url(&format!("/ui/tasks/{task}/jobs/{job_id}")))
        .await?;
    browser
        .wait_for_text("#log-state", "Following live", PATIENCE)
        .await?;
    click_button(&browser, "Stop the job").await?;
    let stopped = server
        .wait_finished(sleeper_url, Duration::from_secs(60))
        .await?;
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    browser
        .wait_for_text("table", "■ stopped", PATIENCE)
        .await?;

    let failing = server
        .submit(
            &task,
            json!({"image": image(), "command": "sh -c 'exit 3'"}),
        )
        .await?;
    let failing_url = failing["executionUrl"].as_str().context("executionUrl")?;
    let failed = server
        .wait_finished(failing_url, Duration::from_secs(60))
        .await?;
    assert_eq!(failed["status"], "failed", "{failed}");
    let job_id = failing["jobId"].as_str().context("jobId")?;
    // The overview lists it among the latest failures, with its exit code.
    browser.goto(&server.url("/ui/")).await?;
    let failure = browser
        .wait_for_text("tbody tr", &job_id[..8], PATIENCE)
        .await?;
    assert!(
        failure.contains("✗ failed") && failure.contains("\t3\t"),
        "{failure:?}"
    );
    browser
        .goto(&server.url(&format!("/ui/tasks/{task}/jobs/{job_id}")))
        .await?;
    browser.wait_for_text("table", "✗ failed", PATIENCE).await?;
    click_button(&browser, "Retry the job").await?;
    let job_path = format!("/tasks/{task}/jobs/{job_id}");
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (_, job) = server.get(&job_path).await?;
        if job["job"]["executionCount"] == 2 {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("the retry made no new execution: {job}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser
        .wait_for_text("caption", "Executions (2 in all", PATIENCE)
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_host_blacklisted_from_the_ui_is_blacklisted_in_status() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let browser = Browser::start().await?;
    let (_, status) = server.get("/status").await?;
    let host = status["hosts"][0]["host"]
        .as_str()
        .context("a host in /status")?
        .to_owned();

    browser.goto(&server.url("/ui/")).await?;
    let button = format!("button[data-host={}]", json!(host));
    browser
        .wait_for_text(&button, "Blacklist", PATIENCE)
        .await?;
    click_and_confirm(&browser, &button).await?;
    browser
        .wait_for_text("#host-action", "blacklisted", PATIENCE)
        .await?;
    browser.wait_for_text(&button, "Restore", PATIENCE).await?;
    let (_, status) = server.get("/status").await?;
    let shown = status["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == host.as_str()))
        .context("the host in /status")?;
    assert_eq!(shown["blacklisted"], true, "{status}");

    click_and_confirm(&browser, &button).await?;
    browser
        .wait_for_text(&button, "Blacklist", PATIENCE)
        .await?;
    let (_, status) = server.get("/status").await?;
    let shown = status["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == host.as_str()))
        .context("the host in /status")?;
    assert_eq!(shown["blacklisted"], false, "{status}");
    Ok(())
}

#[tokio::test]
async fn a_task_paused_from_its_page_holds_its_new_job_which_says_why_until_resumed()
-> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let browser = Browser::start().await?;
    let name = task("pause");
    let first = server
        .submit(&name, json!({"image": image(), "command": "true"}))
        .await?;
    let first = first["executionUrl"].as_str().context("url")?;
    server.wait_finished(first, PATIENCE).await?;

    let page = server.url(&format!("/ui/tasks/{name}"));
    browser.goto(&page).await?;
    click_button(&browser, "Pause the task").await?;
    browser
        .wait_for_text("main", "This task is paused", PATIENCE)
        .await?;
    let (_, status) = server.get("/status").await?;
    let gate = format!("task:{name}");
    let paused = status["limits"]
        .as_array()
        .and_then(|limits| limits.iter().find(|l| l["gate"] == gate.as_str()))
        .with_context(|| format!("{gate} in /status: {status}"))?;
    assert_eq!(paused["paused"], true, "{paused}");

    let held = server
        .submit(&name, json!({"image": image(), "command": "echo resumed"}))
        .await?;
    let job_page = server.url(&format!(
        "/ui/tasks/{name}/jobs/{}",
        held["jobId"].as_str().context("jobId")?
    ));
    browser.goto(&job_page).await?;
    browser
        .wait_for_text("main", &format!("Waiting: {gate} is paused"), PATIENCE)
        .await?;
    accessible(&browser, "job waiting").await?;
    photograph(&browser, "job-waiting").await?;

    browser.goto(&page).await?;
    click_button(&browser, "Resume the task").await?;
    let done = server
        .wait_finished(held["executionUrl"].as_str().context("url")?, PATIENCE)
        .await?;
    assert_eq!(done["status"], "done", "{done}");
    browser.goto(&page).await?;
    browser
        .wait_for_text("main", "Pause the task", PATIENCE)
        .await?;
    Ok(())
}

#[tokio::test]
async fn with_a_token_configured_the_ui_asks_for_it_and_follows_logs_with_it() -> anyhow::Result<()>
{
    let token = "ui-story-token-(with)-odd=chars";
    let entry = json!([{
        "name": "operator",
        "sha256": hex::encode(sha2::Sha256::digest(token.as_bytes())),
        "scopes": ["admin"],
    }])
    .to_string();
    let server = Server::start(&[("API_TOKENS", entry.as_str())]).await?;
    let browser = Browser::start().await?;
    let task = task("token");

    // The page itself loads; the API it calls asks for the token.
    browser.goto(&server.url("/ui/tasks")).await?;
    browser
        .wait_for("document.getElementById('login').open", PATIENCE)
        .await?;
    accessible(&browser, "sign-in").await?;
    photograph(&browser, "sign-in").await?;
    browser.type_into("#login-token", "wrong").await?;
    browser.click("#login-form button[type=submit]").await?;
    browser
        .wait_for_text("#login-why", "refused", PATIENCE)
        .await?;
    browser.type_into("#login-token", token).await?;
    browser.click("#login-form button[type=submit]").await?;
    browser
        .wait_for_text("main", "No task yet", PATIENCE)
        .await?;

    // A job followed live: the socket carries the token too.
    let created = server
        .client()
        .post(server.url(&format!("/tasks/{task}")))
        .bearer_auth(token)
        .json(&json!({"image": image(), "command": "sh -c 'echo hi; sleep 8; echo bye'"}))
        .send()
        .await?
        .error_for_status()?
        .json::<Value>()
        .await?;
    let job_id = created["jobId"].as_str().context("jobId")?;
    browser
        .goto(&server.url(&format!("/ui/tasks/{task}/jobs/{job_id}")))
        .await?;
    browser
        .wait_for_text("#log-state", "Ended done, exit code 0", PATIENCE)
        .await?;
    // The state shows at once; the last lines join the log at the next frame.
    let stdout = browser
        .wait_for_text("#log-stdout", "bye", PATIENCE)
        .await?;
    assert_eq!(stdout.trim_end(), "hi\nbye");
    Ok(())
}

#[tokio::test]
async fn with_basic_credentials_the_ui_signs_in_submits_and_follows_logs_with_them()
-> anyhow::Result<()> {
    // Past ASCII, and with a colon: only the first colon ends the user.
    let password = "pässwörd:with colon";
    let server = Server::start(&[
        ("BASIC_AUTH_USERNAME", "operator"),
        ("BASIC_AUTH_PASSWORD", password),
    ])
    .await?;
    let browser = Browser::start().await?;
    let task = task("basic");

    browser.goto(&server.url("/ui/")).await?;
    browser
        .wait_for("document.getElementById('login').open", PATIENCE)
        .await?;
    browser.type_into("#login-user", "operator").await?;
    browser.type_into("#login-password", password).await?;
    browser.click("#login-form button[type=submit]").await?;
    browser.wait_for_text("table", "Hosts", PATIENCE).await?;

    // Signed in for the tab: the form submits and the log socket follows.
    browser
        .goto(&server.url(&format!("/ui/submit?task={task}")))
        .await?;
    browser.wait_for_element("#submit-form", PATIENCE).await?;
    browser.type_into("#field-image", &image()).await?;
    browser
        .type_into("#field-command", "sh -c 'echo hello; sleep 8; echo bye'")
        .await?;
    browser.click("#submit-form button[type=submit]").await?;
    browser
        .wait_for_text("#log-state", "Ended done, exit code 0", PATIENCE)
        .await?;
    let stdout = browser
        .wait_for_text("#log-stdout", "bye", PATIENCE)
        .await?;
    assert_eq!(stdout.trim_end(), "hello\nbye");

    let listed = server
        .client()
        .get(server.url(&format!("/tasks/{task}/jobs")))
        .basic_auth("operator", Some(password))
        .send()
        .await?;
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await?;
    assert_eq!(listed["items"][0]["newest"]["status"], "done", "{listed}");
    Ok(())
}
