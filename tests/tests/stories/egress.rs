//! The webhook egress policy, against real receivers on loopback: literal
//! metadata, link-local and loopback addresses are refused at submission
//! unless allowed; a name resolving to loopback is refused when called; a
//! redirect to a refused address is not followed; a huge answer is not
//! read whole; and one job's dead hooks do not hold up another job's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use fastlane_tests::receiver::Receiver;
use fastlane_tests::{Server, image};

const LIMIT: Duration = Duration::from_secs(60);

/// Lets webhooks call the loopback receivers.
const LOCAL: (&str, &str) = ("WEBHOOKS_ALLOW_LOCAL_NETWORK", "true");

/// A job whose only run is an hour away, so submitting it runs nothing.
fn later_job(hook_url: &str) -> Value {
    json!({"image": image(), "command": "true", "startIn": "1h",
           "webhooks": {"finishes": [{"url": hook_url}]}})
}

/// Polls the execution until it has at least `count` webhook attempts;
/// returns them.
async fn wait_dispatches(server: &Server, execution_url: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let dispatches = match server.get(execution_url).await {
            Ok((_, body)) => body["execution"]["metadata"]["webhookDispatch"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if dispatches.len() >= count || Instant::now() > deadline {
            return dispatches;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads one request's head (and drops its body) from `stream`.
async fn read_head(reader: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            anyhow::bail!("closed");
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
        let end = line.trim_end().is_empty();
        head.push_str(&line);
        if end {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(head)
}

#[tokio::test]
async fn literal_metadata_link_local_and_loopback_hooks_are_refused_at_submission_unless_allowed()
-> anyhow::Result<()> {
    let closed = Server::start(&[]).await?;
    for (url, address) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
        ),
        ("http://[fe80::1]/", "fe80::1"),
        ("http://127.0.0.1:9/hook", "127.0.0.1"),
        ("http://[::ffff:169.254.169.254]/", "169.254.169.254"),
    ] {
        let (status, body) = closed
            .post_raw("egress-refused", later_job(url).to_string())
            .await?;
        assert_eq!(status, 400, "{url}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("webhooks.finishes[0].url") && error.contains(address),
            "{url}: {body}"
        );
        assert!(body["operation"].is_string(), "{body}");
    }
    let (status, body) = closed
        .post_raw(
            "egress-refused",
            later_job("http://127.0.0.1:9/").to_string(),
        )
        .await?;
    assert_eq!(status, 400);
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("WEBHOOKS_ALLOW_LOCAL_NETWORK=true")
            && error.contains("WEBHOOKS_ALLOWED_HOSTS"),
        "the error says how to allow it: {error}"
    );
    let (status, _) = closed.get("/tasks/egress-refused/").await?;
    assert_eq!(status, 404, "nothing was created");
    // A public name is accepted: it is checked when called.
    closed
        .submit("egress-names", later_job("http://localhost:9/"))
        .await?;

    let open = Server::start(&[LOCAL]).await?;
    open.submit("egress-open", later_job("http://127.0.0.1:9/"))
        .await?;
    open.submit("egress-open", later_job("http://10.1.2.3/"))
        .await?;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
    ] {
        let (status, body) = open
            .post_raw("egress-open", later_job(url).to_string())
            .await?;
        assert_eq!(status, 400, "{url} stays refused: {body}");
    }

    let listed = Server::start(&[("WEBHOOKS_ALLOWED_HOSTS", "127.0.0.1, 10.9.0.0/16")]).await?;
    listed
        .submit("egress-listed", later_job("http://127.0.0.1:9/"))
        .await?;
    listed
        .submit("egress-listed", later_job("http://10.9.8.7/"))
        .await?;
    let (status, _) = listed
        .post_raw(
            "egress-listed",
            later_job("http://127.0.0.2:9/").to_string(),
        )
        .await?;
    assert_eq!(status, 400, "only what is listed");
    Ok(())
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_when_called() -> anyhow::Result<()> {
    let server = Server::start(&[("WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS", "100")]).await?;
    let receiver = Receiver::start(vec![200]).await?;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let created = server
        .submit(
            "egress-dns",
            json!({"image": image(), "command": "true", "webhooks": {"finishes": [
                {"url": format!("http://localhost:{port}/hook"), "retries": 3}
            ]}}),
        )
        .await?;
    let url = created["executionUrl"].as_str().unwrap_or_default();
    server.wait_finished(url, LIMIT).await?;
    let dispatches = wait_dispatches(&server, url, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // no retry may come
    let dispatches_after = wait_dispatches(&server, url, 1).await;
    assert_eq!(dispatches.len(), 1, "{dispatches:?}");
    assert_eq!(
        dispatches_after.len(),
        1,
        "a refusal is not retried: {dispatches_after:?}"
    );
    let error = dispatches[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("(of localhost)") && error.contains("WEBHOOKS_ALLOW_LOCAL_NETWORK"),
        "the attempt names the policy: {error}"
    );
    assert!(dispatches[0]["statusCode"].is_null());
    assert!(receiver.received().is_empty(), "the receiver got nothing");
    Ok(())
}

/// A receiver on loopback that answers every request with a 307 to
/// `location`, counting requests.
async fn redirector(location: String) -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            let location = location.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                while read_head(&mut reader).await.is_ok() {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let answer = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n"
                    );
                    if reader.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, hits))
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_not_followed() -> anyhow::Result<()> {
    // `localhost` is allowed by name; 127.0.0.1 itself is not.
    let server = Server::start(&[("WEBHOOKS_ALLOWED_HOSTS", "localhost")]).await?;
    let target = Receiver::start(vec![200]).await?;
    let target_port = target.url.rsplit(':').next().unwrap_or_default().to_owned();
    let (refused_port, refused_hits) =
        redirector(format!("http://127.0.0.1:{target_port}/stolen")).await?;
    let (allowed_port, allowed_hits) =
        redirector(format!("http://localhost:{target_port}/followed")).await?;
    let created = server
        .submit(
            "egress-redirect",
            json!({"image": image(), "command": "true", "webhooks": {
                "succeeds": [{"url": format!("http://localhost:{allowed_port}/start")}],
                "finishes": [{"url": format!("http://localhost:{refused_port}/start"), "retries": 2}]
            }}),
        )
        .await?;
    let url = created["executionUrl"].as_str().unwrap_or_default();
    server.wait_finished(url, LIMIT).await?;
    let dispatches = wait_dispatches(&server, url, 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The allowed redirect was followed: the mechanism works.
    let received = target.received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/followed"], "{dispatches:?}");
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);

    // The refused one was not, and the attempt says why.
    assert_eq!(
        refused_hits.load(Ordering::SeqCst),
        1,
        "asked once, not retried"
    );
    let refused = dispatches
        .iter()
        .find(|d| d["event"] == "finishes")
        .cloned()
        .unwrap_or_default();
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("127.0.0.1") && error.contains("WEBHOOKS_ALLOWED_HOSTS"),
        "{dispatches:?}"
    );
    let succeeded = dispatches
        .iter()
        .find(|d| d["event"] == "succeeds")
        .cloned()
        .unwrap_or_default();
    assert_eq!(succeeded["statusCode"], 200, "{dispatches:?}");
    Ok(())
}

/// The largest memory the process ever held (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM"))?;
    let kib: u64 = line.split_whitespace().nth(1).unwrap_or_default().parse()?;
    Ok(kib * 1024)
}

#[tokio::test]
async fn a_receiver_answering_gigabytes_is_read_only_a_little() -> anyhow::Result<()> {
    let server = Server::start(&[LOCAL, ("WEBHOOKS_TIMEOUT_SECONDS", "60")]).await?;
    // Announces 4 GiB and sends as fast as the client reads.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let sent = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                if read_head(&mut reader).await.is_err() {
                    return;
                }
                let stream = reader.get_mut();
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 4294967296\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 1 << 20];
                while stream.write_all(&chunk).await.is_ok() {
                    counted.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            });
        }
    });
    let created = server
        .submit(
            "egress-huge",
            json!({"image": image(), "command": "true", "webhooks": {"finishes": [
                {"url": format!("http://127.0.0.1:{port}/huge")}
            ]}}),
        )
        .await?;
    let url = created["executionUrl"].as_str().unwrap_or_default();
    server.wait_finished(url, LIMIT).await?;
    let started = Instant::now();
    let dispatches = wait_dispatches(&server, url, 1).await;
    assert_eq!(dispatches.len(), 1, "{dispatches:?}");
    assert_eq!(dispatches[0]["statusCode"], 200, "{dispatches:?}");
    assert!(dispatches[0]["error"].is_null(), "{dispatches:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the call ended without waiting for the whole body"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < 64 << 20,
        "the server stopped reading early (socket buffers aside): {sent} bytes sent"
    );
    let peak = peak_rss(server.pid().unwrap_or_default())?;
    assert!(peak < 250 << 20, "peak RSS {peak} bytes");
    Ok(())
}

/// A port that accepts connections and never answers; counts them.
async fn dead_receiver() -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    Ok((url, accepted))
}

#[tokio::test]
async fn one_jobs_dead_hooks_do_not_hold_up_another_jobs_hook() -> anyhow::Result<()> {
    let server = Server::start(&[
        LOCAL,
        ("WEBHOOKS_TIMEOUT_SECONDS", "10"),
        ("WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS", "200"),
    ])
    .await?;
    let (dead, accepted) = dead_receiver().await?;
    let live = Receiver::start(vec![200]).await?;
    // 40 deliveries (20 hooks on each of two events), 3 tries each, every
    // try held 10 s: without fairness they fill every slot for a minute.
    let hooks: Vec<Value> = (0..20)
        .map(|i| json!({"url": format!("{dead}/dead-{i}"), "retries": 2}))
        .collect();
    let greedy = server
        .submit(
            "egress-greedy",
            json!({"image": image(), "command": "true",
                   "webhooks": {"succeeds": hooks, "finishes": hooks}}),
        )
        .await?;
    server
        .wait_finished(greedy["executionUrl"].as_str().unwrap_or_default(), LIMIT)
        .await?;
    let deadline = Instant::now() + LIMIT;
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the dead hooks were never called"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let modest = server
        .submit(
            "egress-modest",
            json!({"image": image(), "command": "true",
                   "webhooks": {"finishes": [{"url": format!("{}/live", live.url)}]}}),
        )
        .await?;
    server
        .wait_finished(modest["executionUrl"].as_str().unwrap_or_default(), LIMIT)
        .await?;
    // Behind the dead ones it would wait their 10 s; 8 s leave a busy
    // machine room without hiding that.
    let finished = Instant::now();
    while live.received().is_empty() {
        assert!(
            finished.elapsed() < Duration::from_secs(8),
            "the other job's hook waited behind the dead ones ({} dead calls so far)",
            accepted.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the dead hooks were being called meanwhile"
    );
    Ok(())
}
