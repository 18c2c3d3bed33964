//! A pool of Docker hosts an operator can trust: a host that stops
//! answering is given up on (its circuit opens) and work goes to the
//! others; it is taken back when it answers again; a run lost with its host
//! fails naming it, and its retry runs elsewhere; TLS hosts work with the
//! right CA and fail clearly with a wrong one.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use fastlane_tests::engine::{Certificates, Listener, engine_socket};
use fastlane_tests::{Server, image};

const LIMIT: Duration = Duration::from_secs(90);

/// One farm of `hosts`.
fn farm(hosts: &[String]) -> String {
    json!([{"match": "", "hosts": hosts, "maxRunning": 10}]).to_string()
}

fn main_host() -> String {
    format!("unix://{}", engine_socket())
}

/// The `/status` entry of `host`.
async fn host_status(server: &Server, host: &str) -> anyhow::Result<Value> {
    let (_, status) = server.get("/status").await?;
    status["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == host))
        .cloned()
        .with_context(|| format!("{host} not in /status: {status}"))
}

/// Polls `/status` until `host` is in `circuit` state.
async fn wait_circuit(server: &Server, host: &str, circuit: &str) -> anyhow::Result<Value> {
    wait_host(server, host, &format!("circuit {circuit}"), |s| {
        s["circuit"] == circuit
    })
    .await
}

/// Polls `/status` until `host`'s entry satisfies `wanted`.
async fn wait_host(
    server: &Server,
    host: &str,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let status = host_status(server, host).await?;
        if wanted(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("{host} never got {what}: {status}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `count` quick jobs; returns the host each ran on.
async fn run_jobs(server: &Server, task: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let mut urls = Vec::new();
    for _ in 0..count {
        let created = server
            .submit(task, json!({"image": image(), "command": "echo hi"}))
            .await?;
        urls.push(created["executionUrl"].as_str().context("url")?.to_owned());
    }
    let mut hosts = Vec::new();
    for url in urls {
        let execution = server.wait_finished(&url, LIMIT).await?;
        assert_eq!(execution["status"], "done", "{execution}");
        hosts.push(
            execution["metadata"]["docker_host"]
                .as_str()
                .context("docker_host")?
                .to_owned(),
        );
    }
    Ok(hosts)
}

#[tokio::test]
async fn a_host_that_stops_answering_is_given_up_and_taken_back_when_it_answers()
-> anyhow::Result<()> {
    let mut flaky = Listener::podman().await?;
    let hosts = [flaky.address(), main_host()];
    let server = Server::start(&[
        ("DOCKER_HOSTS", &farm(&hosts)),
        ("DOCKER_CIRCUIT_BREAKER_MAX_FAILS", "2"),
        ("DOCKER_CIRCUIT_BREAKER_RESET_TIMEOUT_SECONDS", "2"),
    ])
    .await?;
    assert_eq!(host_status(&server, &hosts[0]).await?["circuit"], "closed");

    flaky.kill();
    let ran_on = run_jobs(&server, "pool-failover", 4).await?;
    assert!(
        ran_on.iter().all(|h| *h == hosts[1]),
        "every job ran on the host that answers: {ran_on:?}"
    );
    let down = wait_circuit(&server, &hosts[0], "open").await?;
    assert_eq!(down["available"], false);
    assert!(
        down["error"]
            .as_str()
            .is_some_and(|e| e.contains(&hosts[0])),
        "{down}"
    );

    flaky.restart().await?;
    // Closed first, then answering its `/_ping` again: on a loaded machine
    // the first ping after the restart can outlast its 5 s.
    wait_circuit(&server, &hosts[0], "closed").await?;
    wait_host(&server, &hosts[0], "available", |s| s["available"] == true).await?;
    let ran_on = run_jobs(&server, "pool-failover", 3).await?;
    assert!(
        ran_on.contains(&hosts[0]),
        "the host that came back takes work again: {ran_on:?}"
    );
    Ok(())
}

/// Takes a host out of rotation (POST) or puts it back (DELETE).
async fn set_blacklisted(
    server: &Server,
    method: reqwest::Method,
    body: &str,
) -> anyhow::Result<()> {
    let response = server
        .client()
        .request(method, server.url("/docker-executor/blacklist"))
        .body(body.to_owned())
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "blacklist: {}", response.status());
    Ok(())
}

#[tokio::test]
async fn a_run_lost_with_its_host_fails_naming_the_host_and_its_retry_runs_elsewhere()
-> anyhow::Result<()> {
    let mut doomed = Listener::podman().await?;
    let hosts = [doomed.address(), main_host()];
    let server = Server::start(&[
        ("DOCKER_HOSTS", &farm(&hosts)),
        ("DOCKER_CIRCUIT_BREAKER_MAX_FAILS", "2"),
        ("DOCKER_CIRCUIT_BREAKER_RESET_TIMEOUT_SECONDS", "600"),
    ])
    .await?;
    // The first run goes to the doomed host: the other is out of rotation
    // until it runs (the hosts share one engine, so their loads are no
    // guide while other tests start containers on it).
    let main = json!({"host": hosts[1]}).to_string();
    set_blacklisted(&server, reqwest::Method::POST, &main).await?;
    let created = server
        .submit(
            "host-death",
            // Still running when its host dies, however slow the machine.
            json!({"image": image(), "command": "sleep 12", "retries": 1}),
        )
        .await?;
    let first_url = created["executionUrl"].as_str().context("url")?;
    let running = server
        .wait_for(first_url, LIMIT, |e| e["status"] == "running")
        .await?;
    assert_eq!(running["metadata"]["docker_host"], hosts[0].as_str());
    set_blacklisted(&server, reqwest::Method::DELETE, &main).await?;

    doomed.kill();
    let lost = server.wait_finished(first_url, LIMIT).await?;
    assert_eq!(lost["status"], "failed", "{lost}");
    let error = lost["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&hosts[0]) && error.contains("stopped answering"),
        "{error}"
    );

    let job_url = created["jobUrl"].as_str().context("jobUrl")?;
    let deadline = Instant::now() + LIMIT;
    let retry = loop {
        let (_, job) = server.get(job_url).await?;
        let newest = job["job"]["executions"][0].clone();
        if job["job"]["executionCount"] == 2 && newest["status"] == "done" {
            break newest;
        }
        if Instant::now() > deadline {
            bail!("the retry did not finish: {job}\n{}", server.log());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(retry["metadata"]["docker_host"], hosts[1].as_str());
    Ok(())
}

#[tokio::test]
async fn a_tls_host_runs_jobs_and_a_wrong_ca_fails_with_a_clear_error() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("fastlane-tls-{}", uuid::Uuid::new_v4()));
    let certs = Certificates::generate(&dir)?;
    let front = Listener::tls(&certs).await?;
    let host = format!("https://{}", front.address());
    let hosts = farm(std::slice::from_ref(&host));
    let (cert, key) = (
        certs.client_cert.display().to_string(),
        certs.client_key.display().to_string(),
    );
    let server_trusting = |ca: String| {
        let env = [
            ("DOCKER_HOSTS", hosts.clone()),
            ("DOCKER_TLS_CA_CERT", ca),
            ("DOCKER_TLS_CERT", cert.clone()),
            ("DOCKER_TLS_KEY", key.clone()),
        ];
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Server::start(&env).await
        }
    };

    let server = server_trusting(certs.ca.display().to_string()).await?;
    let ran_on = run_jobs(&server, "over-tls", 1).await?;
    assert_eq!(ran_on, std::slice::from_ref(&host));
    drop(server);

    // A CA that did not sign the host's certificate.
    let server = server_trusting(certs.other_ca.display().to_string()).await?;
    let created = server
        .submit("over-tls", json!({"image": image(), "command": "echo hi"}))
        .await?;
    let status = host_status(&server, &host).await?;
    assert_eq!(status["available"], false, "{status}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&host) && error.to_lowercase().contains("certificate"),
        "the error says the certificate is not trusted: {error}"
    );
    // The job is not lost: it waits for the host.
    let (_, execution) = server
        .get(created["executionUrl"].as_str().context("url")?)
        .await?;
    assert!(
        matches!(
            execution["execution"]["status"].as_str(),
            Some("enqueued" | "pulling")
        ),
        "{execution}"
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// `/status` (which the admin UI asks every 3 s) and placement read the
/// containers running on a host from its event stream, not by listing the
/// host each time: counted at proxies in front of the engine's socket, 30
/// calls of `/status` and 5 jobs on two hosts add no listing once the
/// streams are up (but their refresh, once a minute), and
/// `/status` still shows a job's container while it runs and drops it when
/// it ends.
#[tokio::test]
async fn status_and_placement_follow_the_event_stream_instead_of_listing_the_host()
-> anyhow::Result<()> {
    // Two hosts (two proxies to the one engine), so that placement has a
    // choice to make.
    let dir = std::env::temp_dir().join(format!("fastlane-listings-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let mut hosts = Vec::new();
    let mut counters = Vec::new();
    for name in ["a", "b"] {
        let socket = dir.join(format!("{name}.sock"));
        let (proxy, seen) = fastlane_tests::proxy::counting_proxy(
            &socket,
            std::path::Path::new(&engine_socket()),
            "/containers/json",
        )
        .await?;
        hosts.push(format!("unix://{}", socket.display()));
        counters.push((proxy, seen));
    }
    let server = Server::start(&[("DOCKER_HOSTS", farm(&hosts).as_str())]).await?;
    let listings = || {
        counters
            .iter()
            .map(|(_, seen)| seen.matching.load(std::sync::atomic::Ordering::Relaxed))
            .sum::<usize>()
    };

    let created = server
        .submit("watched", json!({"image": image(), "command": "sleep 8"}))
        .await?;
    let url = created["executionUrl"].as_str().context("executionUrl")?;
    let id = created["executionId"].as_str().context("executionId")?;
    server
        .wait_for(url, LIMIT, |e| e["status"] == "running")
        .await?;
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, status) = server.get("/status").await?;
        if status.to_string().contains(id) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "/status never listed {id}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.wait_finished(url, LIMIT).await?;
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, status) = server.get("/status").await?;
        if !status.to_string().contains(id) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "/status still lists {id}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Before each host's stream opened: its own listing, and the callers'
    // that could not wait for it (how many depends on timing).
    let opening = listings();
    let opened = Instant::now();
    for _ in 0..30 {
        let (code, _) = server.get("/status").await?;
        assert_eq!(code, 200);
    }
    let ids = run_jobs(&server, "placed", 5).await?;
    assert_eq!(ids.len(), 5);
    // Each stream is made afresh (with a listing) every minute; before it
    // read the stream, `/status` alone listed both hosts at each call.
    let refreshes = 2 * (opened.elapsed().as_secs() / 60 + 1) as usize;
    let since = listings() - opening;
    assert!(
        since <= refreshes,
        "{since} listings reached the engine once the streams were up"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
