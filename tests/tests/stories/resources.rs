//! Bounded server resources, as an operator would check them: `/metrics`
//! does not grow with what scanners send, live-log sockets are capped and
//! share one reader of the store per execution, the embedded database is
//! for its owner only, and a stored record that cannot be read takes down
//! only itself, never the listings or `/status`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

use fastlane_tests::{Server, image};

const LIMIT: Duration = Duration::from_secs(60);

/// `/metrics` as text.
async fn metrics(server: &Server) -> anyhow::Result<String> {
    let response = server.client().get(server.url("/metrics")).send().await?;
    anyhow::ensure!(
        response.status() == 200,
        "GET /metrics: {}",
        response.status()
    );
    Ok(response.text().await?)
}

/// The samples of `name` (whatever their labels) in `/metrics` text.
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

/// The sum of the samples of `name`.
fn total(text: &str, name: &str) -> f64 {
    samples(text, name)
        .iter()
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A job printing a numbered line every 100 ms, `lines` of them; returns
/// the execution's URL once it runs.
async fn running_job(server: &Server, task: &str, lines: u32) -> anyhow::Result<String> {
    let command = format!(
        "sh -c 'i=1; while [ $i -le {lines} ]; do echo line $i; i=$((i+1)); sleep 0.1; done'"
    );
    let created = server
        .submit(task, json!({"image": image(), "command": command}))
        .await?;
    let url = created["executionUrl"]
        .as_str()
        .context("no executionUrl")?
        .to_owned();
    server
        .wait_for(&url, LIMIT, |e| e["status"] == "running")
        .await?;
    Ok(url)
}

/// The `ws://` socket URL of an execution URL.
fn socket_of(execution_url: &str) -> String {
    format!(
        "{}/ws",
        execution_url
            .trim_end_matches('/')
            .replacen("http://", "ws://", 1)
    )
}

/// Reads a socket until the server closes it; returns the text frames
/// joined and the close reason.
async fn read_all(url: String) -> anyhow::Result<(String, String)> {
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut text = String::new();
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = tokio::time::timeout(left, socket.next())
            .await
            .context("the socket stayed open too long")?
        else {
            bail!("closed without a close frame");
        };
        match message? {
            Message::Text(frame) => text.push_str(&frame),
            Message::Close(frame) => {
                return Ok((
                    text,
                    frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                ));
            }
            _ => {}
        }
    }
}

/// A thousand requests to paths no route has, with ids in routes' places,
/// and with methods nobody standardised, add a handful of series to
/// `fastlane_http_requests_total`, not a thousand.
#[tokio::test]
async fn scanners_do_not_grow_the_metrics() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let client = server.client().clone();
    let before = samples(&metrics(&server).await?, "fastlane_http_requests_total").len();
    let requests = (0..1000).map(|i| {
        let (method, path) = match i % 4 {
            0 => ("GET".to_owned(), format!("/scan-{i}/wp-login.php")),
            1 => ("GET".to_owned(), format!("/tasks/t{i}/jobs/j{i}/nope{i}")),
            2 => (format!("X-SCAN-{i}"), format!("/tasks/t{i}")),
            _ => ("PROPFIND".to_owned(), format!("/tasks/t{i}/jobs/j{i}")),
        };
        let client = client.clone();
        let url = server.url(&path);
        async move {
            let method = reqwest::Method::from_bytes(method.as_bytes())?;
            let status = client.request(method, url).send().await?.status();
            anyhow::ensure!(status.is_client_error(), "answered {status}");
            anyhow::Ok(())
        }
    });
    let results: Vec<_> = futures_util::stream::iter(requests)
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let text = metrics(&server).await?;
    let after = samples(&text, "fastlane_http_requests_total");
    assert!(
        after.len() <= before + 8,
        "1000 odd requests added {} series:\n{}",
        after.len() - before,
        after.join("\n")
    );
    assert!(
        after
            .iter()
            .any(|s| s.contains(r#"route="unmatched""#) && s.contains(r#"method="GET""#)),
        "{after:?}"
    );
    assert!(
        after.iter().any(|s| s.contains(r#"method="other""#)),
        "{after:?}"
    );
    assert!(total(&text, "fastlane_http_requests_total") >= 1000.0);
    Ok(())
}

/// With `MAX_WEBSOCKET_CONNECTIONS=3`, a fourth socket is refused with a
/// 503 JSON error while three are open, and admitted once one leaves.
#[tokio::test]
async fn websocket_connections_are_capped() -> anyhow::Result<()> {
    let server = Server::start(&[("MAX_WEBSOCKET_CONNECTIONS", "3")]).await?;
    let url = socket_of(&running_job(&server, "capped", 300).await?);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tokio_tungstenite::connect_async(&url).await?.0);
    }
    match tokio_tungstenite::connect_async(&url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or(&[]))
                .context("a JSON error body")?;
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.contains("MAX_WEBSOCKET_CONNECTIONS"), "{body}");
            assert_eq!(body["operation"], "stream_job_execution");
        }
        Err(other) => bail!("the fourth socket failed otherwise: {other}"),
        Ok(_) => bail!("a fourth socket was admitted past the cap of 3"),
    }
    let text = metrics(&server).await?;
    assert_eq!(total(&text, "fastlane_websocket_connections"), 3.0);
    // One leaves: its place is free again.
    let mut leaving = open.pop().context("a socket")?;
    leaving.close(None).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while leaving.next().await.is_some() {}
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => {
                open.push(socket);
                break;
            }
            Err(err) if Instant::now() < deadline => {
                eprintln!("not yet: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => bail!("the freed place was never given again: {err}"),
        }
    }
    for mut socket in open {
        let _ = socket.close(None).await;
    }
    Ok(())
}

/// Twenty sockets on one running execution read the store about as often
/// as one does (one poller per execution), and each of them still gets
/// the whole log.
#[tokio::test]
async fn sockets_on_one_execution_share_one_reader() -> anyhow::Result<()> {
    const READS: &str = "fastlane_live_log_store_reads_total";
    const LINES: u32 = 120;
    let server = Server::start(&[]).await?;
    let url = socket_of(&running_job(&server, "shared", LINES).await?);
    let reads_over = |window: Duration| {
        let server = &server;
        async move {
            let start = total(&metrics(server).await?, READS);
            tokio::time::sleep(window).await;
            anyhow::Ok(total(&metrics(server).await?, READS) - start)
        }
    };
    let mut readers = vec![tokio::spawn(read_all(url.clone()))];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alone = reads_over(Duration::from_secs(2)).await?;
    for _ in 0..19 {
        readers.push(tokio::spawn(read_all(url.clone())));
    }
    // Each newcomer catches up from the store once; then only the poller reads.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let together = reads_over(Duration::from_secs(2)).await?;
    eprintln!("store reads in 2 s: {alone} with one socket, {together} with twenty");
    assert!(alone > 0.0, "the poller reads the store");
    assert!(
        together <= alone * 2.0 + 5.0,
        "twenty sockets made {together} store reads in 2 s, one made {alone}"
    );
    let expected: String = (1..=LINES).map(|i| format!("line {i}\n")).collect();
    for reader in readers {
        let (text, reason) = reader.await??;
        assert_eq!(reason, "done");
        assert_eq!(text, expected, "every socket gets the whole log, once");
    }
    Ok(())
}

/// The embedded database, its WAL and shared-memory files and the data
/// directory fastlane creates are for their owner only.
#[cfg(unix)]
#[tokio::test]
async fn the_embedded_database_is_for_its_owner_only() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let holder = Server::start(&[]).await?;
    let dir = holder.data_dir.join("private");
    let dir_text = dir.display().to_string();
    let server = Server::start(&[("FASTLANE_DATA_DIR", dir_text.as_str())]).await?;
    // A job, so the store and the queue have written to the WAL.
    let created = server
        .submit("private", json!({"image": image(), "command": "echo hi"}))
        .await?;
    server
        .wait_finished(created["executionUrl"].as_str().unwrap_or_default(), LIMIT)
        .await?;
    let mode = |path: std::path::PathBuf| -> anyhow::Result<u32> {
        let meta = std::fs::metadata(&path).with_context(|| path.display().to_string())?;
        Ok(meta.permissions().mode() & 0o777)
    };
    assert_eq!(mode(dir.clone())?, 0o700, "the data directory");
    for name in [
        "fastlane.db",
        "fastlane.db-wal",
        "fastlane.db-shm",
        "fastlane.lock",
    ] {
        assert_eq!(mode(dir.join(name))?, 0o600, "{name}");
    }
    drop(server);
    drop(holder);
    Ok(())
}

/// A stored job that cannot be read back (metadata nested past what the
/// reader takes, written behind the server's back as an older server
/// accepted it) is left out of the task page and `/status` with a metric,
/// while reading that job answers an error naming it; and a page number
/// far past the end is not a server error.
#[tokio::test]
async fn an_unreadable_record_takes_down_only_itself() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let later = json!({"image": image(), "command": "echo later", "startIn": "1h"});
    let bad = server.submit("spoilt", later.clone()).await?;
    let good = server.submit("spoilt", later).await?;
    let bad_id = bad["jobId"].as_str().context("jobId")?.to_owned();
    let nested = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    let sql = format!(
        "UPDATE jobs SET data = json_set(data, '$.spec.custom', json('{nested}')) \
         WHERE job_id = '{bad_id}';"
    );
    let db = server.data_dir.join("fastlane.db");
    let output = std::process::Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(&db)
        .arg(&sql)
        .output()
        .context("running sqlite3")?;
    anyhow::ensure!(
        output.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let (status, body) = server.get("/status").await?;
    assert_eq!(status, 200, "{body}");
    let scheduled: Vec<&str> = body["jobs"]["scheduled"]
        .as_array()
        .context("scheduled jobs")?
        .iter()
        .filter_map(|j| j["jobId"].as_str())
        .collect();
    assert_eq!(scheduled, [good["jobId"].as_str().unwrap_or_default()]);
    let (status, body) = server.get("/tasks/spoilt").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(1), "{body}");
    let (status, body) = server.get("/tasks/").await?;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/search?query=spoilt").await?;
    assert_eq!(status, 200, "{body}");

    // A 500, not a 503: trying again will not make it readable.
    let (status, body) = server.get(&format!("/tasks/spoilt/jobs/{bad_id}")).await?;
    assert_eq!(status, 500, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&bad_id) && error.contains("unreadable"),
        "{body}"
    );
    let (status, _) = server
        .get(&format!(
            "/tasks/spoilt/jobs/{}",
            good["jobId"].as_str().unwrap_or_default()
        ))
        .await?;
    assert_eq!(status, 200, "the other job of the task still reads");

    let text = metrics(&server).await?;
    assert!(
        total(&text, "fastlane_unreadable_records_total") >= 2.0,
        "{text}"
    );
    assert!(
        server
            .log()
            .contains("skipping a stored record that cannot be read"),
        "a warning names the record"
    );

    for path in [
        "/tasks/?page=18446744073709551615",
        "/search?query=spoilt&page=18446744073709551615",
    ] {
        let (status, body) = server.get(path).await?;
        assert!((400..500).contains(&status), "{path}: {status} {body}");
    }
    Ok(())
}
