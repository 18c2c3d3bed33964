//! Live logs over WebSocket (`…/ws`): a user watches a job's output as the
//! container writes it, reconnects without losing lines, and still reads
//! the log after the container is gone.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use fastlane_tests::{Server, image};

const LIMIT: Duration = Duration::from_secs(60);

/// What a client saw on one socket.
#[derive(Debug)]
struct Seen {
    /// Text frames, with when they arrived.
    frames: Vec<(Instant, String)>,
    /// The close frame's code and reason (`None`: closed without one).
    close: Option<(u16, String)>,
}

impl Seen {
    fn texts(&self) -> Vec<&str> {
        self.frames.iter().map(|(_, t)| t.as_str()).collect()
    }

    fn reason(&self) -> Option<&str> {
        self.close.as_ref().map(|(_, reason)| reason.as_str())
    }

    /// The JSON frames.
    fn json(&self) -> anyhow::Result<Vec<Value>> {
        self.frames
            .iter()
            .map(|(_, t)| serde_json::from_str(t).with_context(|| format!("frame {t:?}")))
            .collect()
    }
}

/// The `ws://` form of an `http://` URL.
fn ws(url: &str) -> String {
    url.replacen("http://", "ws://", 1)
}

/// Opens `url` and reads until the server closes, or `frames` frames came.
async fn listen(url: &str, frames: Option<usize>) -> anyhow::Result<Seen> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut seen = Seen {
        frames: Vec::new(),
        close: None,
    };
    let deadline = Instant::now() + LIMIT;
    while frames.is_none_or(|n| seen.frames.len() < n) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = tokio::time::timeout(left, socket.next())
            .await
            .with_context(|| format!("no close from {url} within {LIMIT:?}: {seen:?}"))?
        else {
            break;
        };
        match message? {
            Message::Text(text) => seen.frames.push((Instant::now(), text.to_string())),
            Message::Close(frame) => {
                seen.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                break;
            }
            _ => {}
        }
    }
    Ok(seen)
}

async fn submit(server: &Server, task: &str, command: &str) -> anyhow::Result<Value> {
    server
        .submit(task, json!({"image": image(), "command": command}))
        .await
}

fn field<'a>(value: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    value[name]
        .as_str()
        .with_context(|| format!("no {name} in {value}"))
}

#[tokio::test]
async fn a_running_job_streams_its_output_as_it_is_written_then_closes_with_done()
-> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = submit(
        &server,
        "live",
        "sh -c 'echo one; sleep 4; echo two >&2; sleep 1; echo three'",
    )
    .await?;
    let execution_url = field(&created, "executionUrl")?;
    server
        .wait_for(execution_url, LIMIT, |e| e["status"] == "running")
        .await?;

    let seen = listen(&ws(&format!("{}ws", field(&created, "jobUrl")?)), None).await?;

    assert_eq!(seen.texts().concat(), "one\ntwo\nthree\n", "{seen:?}");
    assert_eq!(seen.reason(), Some("done"), "{seen:?}");
    // Live: `one` arrived while the job was still sleeping (5 s to the
    // end; 2.5 s leave room for a socket opened late on a busy machine).
    let first = seen.frames.first().map(|(at, _)| *at).context("frames")?;
    let last = seen.frames.last().map(|(at, _)| *at).context("frames")?;
    assert!(
        last - first >= Duration::from_millis(2500),
        "frames came together, not as written: {seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_finished_execution_sends_its_exit_code_stdout_and_stderr_then_done() -> anyhow::Result<()>
{
    let server = Server::start(&[]).await?;
    let created = submit(
        &server,
        "finished",
        "sh -c 'echo out; echo err >&2; exit 3'",
    )
    .await?;
    let execution_url = field(&created, "executionUrl")?;
    server.wait_finished(execution_url, LIMIT).await?;

    let seen = listen(&ws(&format!("{execution_url}ws")), None).await?;

    assert_eq!(
        seen.texts(),
        ["EXIT CODE: 3\n", "out\n", "\n-=-\n", "err\n"],
        "{seen:?}"
    );
    assert_eq!(seen.close, Some((1000, "done".to_owned())));
    Ok(())
}

#[tokio::test]
async fn a_job_that_has_not_started_says_retry_and_unknown_ones_close_normally()
-> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let later = server
        .submit(
            "not-yet",
            json!({"image": image(), "command": "echo later", "startIn": "1h"}),
        )
        .await?;
    let job_url = field(&later, "jobUrl")?;

    let waiting = listen(&ws(&format!("{job_url}ws")), None).await?;
    assert!(waiting.frames.is_empty(), "{waiting:?}");
    assert_eq!(waiting.reason(), Some("retry"));

    let unknown_job = listen(&ws(&server.url("/tasks/not-yet/jobs/nope/ws")), None).await?;
    assert!(unknown_job.frames.is_empty());
    assert_eq!(unknown_job.close, Some((1000, String::new())));
    let unknown_execution = listen(&ws(&format!("{job_url}executions/nope/ws")), None).await?;
    assert_eq!(unknown_execution.close, Some((1000, String::new())));

    // A plain GET is told what the route is.
    let plain = server.client().get(format!("{job_url}ws")).send().await?;
    assert_eq!(plain.status().as_u16(), 426);
    let body: Value = plain.json().await?;
    assert!(field(&body, "error")?.contains("WebSocket"), "{body}");
    Ok(())
}

#[tokio::test]
async fn a_client_that_drops_mid_stream_resumes_at_its_offset_without_losing_a_line()
-> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = submit(
        &server,
        "resume",
        "sh -c 'for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done'",
    )
    .await?;
    let execution_id = field(&created, "executionId")?;
    let socket = ws(&format!("{}ws", field(&created, "jobUrl")?));
    server
        .wait_for(field(&created, "executionUrl")?, LIMIT, |e| {
            e["status"] == "running"
        })
        .await?;

    // The start frame and the first piece of the log, then the client drops.
    let before = listen(&format!("{socket}?format=json"), Some(2)).await?;
    let before = before.json()?;
    assert_eq!(before[0]["type"], "start");
    assert_eq!(before[0]["executionId"], execution_id);
    assert_eq!(before[1]["type"], "log");
    assert_eq!(before[1]["offset"], 0);
    let next = before[1]["next"].as_u64().context("next")?;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let after = listen(
        &format!("{socket}?format=json&from={next}&execution={execution_id}"),
        None,
    )
    .await?;
    assert_eq!(after.reason(), Some("done"), "{after:?}");
    let after = after.json()?;
    assert_eq!(after[0]["type"], "start");
    assert_eq!(after[0]["from"], next);
    let mut log = field(&before[1], "text")?.to_owned();
    let mut expected_offset = next;
    for frame in &after[1..after.len() - 1] {
        assert_eq!(frame["type"], "log", "{frame}");
        assert_eq!(
            frame["offset"], expected_offset,
            "a gap or an overlap: {frame}"
        );
        expected_offset = frame["next"].as_u64().context("next")?;
        log.push_str(field(frame, "text")?);
    }
    assert_eq!(log, "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n");
    let exit = after.last().context("exit frame")?;
    assert_eq!(exit["type"], "exit");
    assert_eq!(exit["status"], "done");
    assert_eq!(exit["exitCode"], 0);
    assert_eq!(exit["next"], expected_offset);
    Ok(())
}

#[tokio::test]
async fn the_log_outlives_its_container_and_is_cut_at_the_configured_cap() -> anyhow::Result<()> {
    let server = Server::start(&[("EXECUTION_LOG_MAX_BYTES", "64")]).await?;
    let created = submit(
        &server,
        "chatty",
        "sh -c 'i=0; while [ $i -lt 20 ]; do echo 0123456789; i=$((i+1)); done'",
    )
    .await?;
    let execution_url = field(&created, "executionUrl")?;
    let execution_id = field(&created, "executionId")?;
    server.wait_finished(execution_url, LIMIT).await?;

    // The container goes, as `fastlane prune` would remove it.
    let removed = tokio::process::Command::new("podman")
        .args(["rm", "-f", &format!("defunct-fastlane-job-{execution_id}")])
        .output()
        .await?;
    if !removed.status.success() {
        bail!("podman rm: {}", String::from_utf8_lossy(&removed.stderr));
    }

    let seen = listen(&ws(&format!("{execution_url}ws?format=json")), None).await?;
    assert_eq!(seen.reason(), Some("done"), "{seen:?}");
    let frames = seen.json()?;
    let text: String = frames
        .iter()
        .filter(|f| f["type"] == "log" && f["stream"] == "stdout")
        .filter_map(|f| f["text"].as_str())
        .collect();
    assert_eq!(text, "0123456789\n".repeat(6)[..64]);
    let notice = frames
        .iter()
        .find(|f| f["stream"] == "notice")
        .context("no notice of the cut")?;
    assert!(
        field(notice, "text")?.contains("cut here, at its cap of 64 bytes"),
        "{notice}"
    );

    // The stored stdout is cut too, and says by how much.
    let stdout = server
        .client()
        .get(format!("{execution_url}stdout"))
        .send()
        .await?
        .text()
        .await?;
    assert!(stdout.starts_with(&"0123456789\n".repeat(5)), "{stdout}");
    assert!(stdout.contains("[truncated: "), "{stdout}");
    Ok(())
}
