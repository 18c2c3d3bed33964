//! Safe by default, as an operator checks it on the engine: what a job
//! prints cannot grow the server's memory, every container is created
//! hardened (checked by inspecting it through the engine's Docker API, and
//! from inside), a farm's maximums refuse a greedy job at submit, and
//! nothing a job sends makes a container privileged or mounts host paths.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use fastlane_tests::engine::EngineApi;
use fastlane_tests::{Server, docker_hosts, image};

const LIMIT: Duration = Duration::from_secs(90);

/// `DOCKER_HOSTS` made of the test engine's first farm with `settings`
/// added.
fn farm_with(settings: Value) -> anyhow::Result<String> {
    let farms: Value = serde_json::from_str(&docker_hosts())?;
    let mut farm = match farms {
        Value::Array(mut farms) if !farms.is_empty() => farms.remove(0),
        Value::Object(_) => farms,
        other => bail!("unexpected DOCKER_HOSTS {other}"),
    };
    farm["match"] = json!("");
    for (key, value) in settings.as_object().context("settings")? {
        farm[key] = value.clone();
    }
    Ok(json!([farm]).to_string())
}

/// A task id no other test (or engineer) uses.
fn task(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

fn field<'a>(value: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    value[name]
        .as_str()
        .with_context(|| format!("no {name} in {value}"))
}

/// A kernel figure from `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in bytes.
fn proc_status_bytes(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("no number")?
        .parse()?;
    Ok(kib * 1024)
}

/// The JSON frames of the live log socket of `execution_url` from byte
/// `from`, until the server closes it.
async fn live_log(execution_url: &str, from: u64) -> anyhow::Result<Vec<Value>> {
    let url = format!(
        "{}ws?format=json&from={from}",
        execution_url.replacen("http://", "ws://", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut frames = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while let Some(message) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        socket.next(),
    )
    .await
    .with_context(|| format!("{url} did not close within {LIMIT:?}"))?
    {
        match message? {
            Message::Text(text) => frames.push(serde_json::from_str(&text)?),
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(frames)
}

/// A job printing 4 GB ends `done`, its stored stdout and live log cut at
/// `EXECUTION_LOG_MAX_BYTES` and marked, while the server's peak memory
/// stays small. The farm lifts the engine's own log limit (`logMaxSize`
/// "0"), so the engine keeps and serves all 4 GB: only the server's own
/// cap bounds what it reads. Lines of 4 KiB keep the engine's log file near
/// 4 GB (its per-line overhead makes 17-byte lines a 14 GB file) and the
/// run near two and a half minutes here.
#[tokio::test]
async fn a_job_printing_4_gb_ends_done_with_its_log_cut_and_the_server_stays_small()
-> anyhow::Result<()> {
    const OUTPUT: u64 = 4_000_000_000;
    const PEAK: u64 = 250 * 1024 * 1024;
    const CAP: u64 = 10 * 1024 * 1024;
    let began = Instant::now();
    let hosts = farm_with(json!({"logMaxSize": "0"}))?;
    let server = Server::start(&[
        ("DOCKER_HOSTS", hosts.as_str()),
        ("EXECUTION_LOG_MAX_BYTES", &CAP.to_string()),
    ])
    .await?;
    let pid = server.pid().context("no pid")?;
    let created = server
        .submit(
            &task("gigabytes"),
            json!({
                "image": image(),
                "command": format!(
                    "sh -c 'l=0123456789abcdef; for i in 1 2 3 4 5 6 7 8; do l=$l$l; done; \
                     yes $l | head -c {OUTPUT}'"
                ),
            }),
        )
        .await?;
    let execution_url = field(&created, "executionUrl")?;
    let execution_id = field(&created, "executionId")?;

    let engine = EngineApi::new();
    let running = server
        .wait_for(execution_url, LIMIT, |e| {
            e["status"] != "enqueued" && e["status"] != "pulling"
        })
        .await?;
    let inspect = engine.inspect_execution(execution_id).await?;
    assert_eq!(
        engine.log_size_limit(&inspect).await?,
        None,
        "the farm lifts the engine's log limit, so the whole output reaches the engine's log \
         ({running})"
    );

    let execution = server
        .wait_finished(execution_url, Duration::from_secs(900))
        .await?;
    let peak = proc_status_bytes(pid, "VmHWM")?;
    eprintln!(
        "4 GB job: {:?} in all, server peak RSS {} MiB",
        began.elapsed(),
        peak / (1024 * 1024)
    );
    assert_eq!(execution["status"], "done", "{execution}");
    assert_eq!(execution["exitCode"], 0);
    assert!(
        peak < PEAK,
        "the server's peak RSS was {} MiB (limit {} MiB)",
        peak / (1024 * 1024),
        PEAK / (1024 * 1024)
    );

    // The stored stdout: its first 10 MiB, then the mark of the cut.
    let stdout = field(&execution, "log")?;
    let (kept, mark) = stdout
        .rsplit_once("\n[truncated: ")
        .with_context(|| format!("stdout is not marked truncated: ...{}", tail(stdout)))?;
    assert_eq!(kept.len() as u64, CAP);
    assert!(kept.starts_with("0123456789abcdef"), "{}", &kept[..64]);
    assert!(mark.ends_with(" more bytes]"), "{mark}");

    // The live log: cut at the cap with its notice.
    let frames = live_log(execution_url, CAP - 100).await?;
    let notice = frames
        .iter()
        .find(|f| f["stream"] == "notice")
        .with_context(|| format!("no notice of the cut in {frames:?}"))?;
    assert_eq!(notice["offset"], CAP, "{notice}");
    assert!(
        field(notice, "text")?.contains(&format!("cut here, at its cap of {CAP} bytes")),
        "{notice}"
    );
    eprintln!("4 GB job test took {:?}", began.elapsed());
    Ok(())
}

fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(200);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// With default settings every container gets `no-new-privileges`, the
/// pids limit and the engine's log size limit; the job sees the first two
/// from inside, and the engine holds it to the third.
#[tokio::test]
async fn every_container_gets_no_new_privileges_a_pids_limit_and_a_log_size_limit()
-> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let created = server
        .submit(
            &task("hardened"),
            json!({
                "image": image(),
                "command": "sh -c 'grep NoNewPrivs /proc/self/status; \
                            cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max'",
            }),
        )
        .await?;
    let execution = server
        .wait_finished(field(&created, "executionUrl")?, LIMIT)
        .await?;
    assert_eq!(execution["status"], "done", "{execution}");
    let stdout = field(&execution, "log")?;
    assert!(stdout.contains("NoNewPrivs:\t1"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "4096"), "{stdout}");

    let engine = EngineApi::new();
    let inspect = engine
        .inspect_execution(field(&created, "executionId")?)
        .await?;
    let host = &inspect["HostConfig"];
    let security: Vec<&str> = host["SecurityOpt"]
        .as_array()
        .context("SecurityOpt")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        security.iter().any(|o| o.starts_with("no-new-privileges")),
        "{security:?}"
    );
    assert_eq!(host["PidsLimit"], 4096);
    let size = engine.log_size_limit(&inspect).await?;
    assert!(
        matches!(size.as_deref(), Some("100m" | "100MB")),
        "the engine's log limit is {size:?}"
    );
    assert_eq!(host["Privileged"], false);

    // PIDS_LIMIT sets another limit, and 0 none (where the engine's own
    // default would otherwise apply: Podman's is 2048).
    for (limit, inside) in [("64", "64"), ("0", "max")] {
        let server = Server::start(&[("PIDS_LIMIT", limit)]).await?;
        let created = server
            .submit(
                &task("pids"),
                json!({
                    "image": image(),
                    "command": "sh -c 'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max'",
                }),
            )
            .await?;
        let execution = server
            .wait_finished(field(&created, "executionUrl")?, LIMIT)
            .await?;
        assert_eq!(
            execution["log"],
            format!("{inside}\n"),
            "PIDS_LIMIT={limit}"
        );
        let inspect = engine
            .inspect_execution(field(&created, "executionId")?)
            .await?;
        let pids = inspect["HostConfig"]["PidsLimit"].as_i64().unwrap_or(0);
        if limit == "0" {
            assert!(
                pids <= 0,
                "PIDS_LIMIT=0 gave the container a limit of {pids}"
            );
        } else {
            assert_eq!(pids, 64);
        }
    }
    Ok(())
}

/// The engine holds a container to its farm's `logMaxSize`: of 5 MB
/// printed with a 1m limit, it keeps less than 2 MB (Podman's conmon
/// starts the log file over once it reaches the size).
#[tokio::test]
async fn the_engine_holds_a_container_to_its_farms_log_size_limit() -> anyhow::Result<()> {
    let hosts = farm_with(json!({"logMaxSize": "1m"}))?;
    let server = Server::start(&[("DOCKER_HOSTS", hosts.as_str())]).await?;
    let created = server
        .submit(
            &task("log-limit"),
            json!({"image": image(), "command": "sh -c 'yes 0123456789abcdef | head -c 5000000'"}),
        )
        .await?;
    let execution = server
        .wait_finished(field(&created, "executionUrl")?, LIMIT)
        .await?;
    assert_eq!(execution["status"], "done", "{execution}");
    let engine = EngineApi::new();
    let inspect = engine
        .inspect_execution(field(&created, "executionId")?)
        .await?;
    let size = engine.log_size_limit(&inspect).await?;
    assert!(
        matches!(size.as_deref(), Some("1m" | "1MB")),
        "the engine's log limit is {size:?}"
    );
    let kept = engine
        .kept_log_bytes(inspect["Id"].as_str().context("Id")?)
        .await?;
    assert!(
        kept < 2_000_000,
        "the engine kept {kept} bytes of the container's 5 MB log"
    );
    Ok(())
}

/// A farm's `user`, `readOnlyRootfs`, `network` and `capDrop` reach the
/// container, as the engine shows it and as the job sees it.
#[tokio::test]
async fn a_farm_runs_its_containers_as_its_user_read_only_without_network_or_capabilities()
-> anyhow::Result<()> {
    let hosts = farm_with(json!({
        "user": "1000:1000",
        "readOnlyRootfs": true,
        "network": "none",
        "capDrop": ["ALL"],
    }))?;
    let server = Server::start(&[("DOCKER_HOSTS", hosts.as_str())]).await?;
    let created = server
        .submit(
            &task("locked-down"),
            json!({
                "image": image(),
                "command": "sh -c 'id -u; touch /probe 2>/dev/null && echo root-writable || echo root-read-only; \
                            grep CapEff /proc/self/status; ls /sys/class/net'",
            }),
        )
        .await?;
    let execution = server
        .wait_finished(field(&created, "executionUrl")?, LIMIT)
        .await?;
    assert_eq!(execution["status"], "done", "{execution}");
    let stdout = field(&execution, "log")?;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"1000"), "{stdout}");
    assert!(lines.contains(&"root-read-only"), "{stdout}");
    assert!(lines.contains(&"CapEff:\t0000000000000000"), "{stdout}");
    assert!(
        !lines.iter().any(|l| l.starts_with("eth")),
        "the container has a network interface: {stdout}"
    );

    let inspect = EngineApi::new()
        .inspect_execution(field(&created, "executionId")?)
        .await?;
    assert_eq!(inspect["Config"]["User"], "1000:1000");
    let host = &inspect["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["NetworkMode"], "none");
    // Docker shows `["ALL"]`; Podman expands it to every capability it
    // dropped, the default set included.
    let dropped: Vec<&str> = host["CapDrop"]
        .as_array()
        .context("CapDrop")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        dropped.contains(&"ALL")
            || ["CHOWN", "NET_RAW", "SETUID"]
                .iter()
                .all(|c| dropped.contains(c)),
        "{dropped:?}"
    );
    Ok(())
}

/// A job asking for more CPUs or memory than its farm's `maxCpuLimit` or
/// `maxMemoryLimit` is a 400 naming the limit and the farm, and nothing is
/// stored or started; a job within them runs.
#[tokio::test]
async fn a_job_above_its_farms_maximums_is_refused_at_submit_and_nothing_is_created()
-> anyhow::Result<()> {
    let hosts = farm_with(json!({"maxCpuLimit": 1, "maxMemoryLimit": 268_435_456}))?;
    let server = Server::start(&[("DOCKER_HOSTS", hosts.as_str())]).await?;
    let engine = EngineApi::new();
    let task = task("greedy");
    for (asked, limit) in [
        (json!({"cpuLimit": 2}), "maxCpuLimit of 1"),
        (json!({"memoryLimit": "1g"}), "maxMemoryLimit of 268435456"),
        (
            json!({"cpuLimit": 1024, "memoryLimit": "100g"}),
            "maxCpuLimit",
        ),
    ] {
        let mut body = json!({"image": image(), "command": "true"});
        for (key, value) in asked.as_object().context("asked")? {
            body[key] = value.clone();
        }
        let (status, answer) = server.post_raw(&task, body.to_string()).await?;
        assert_eq!(status, 400, "{asked}: {answer}");
        let error = field(&answer, "error")?;
        assert!(error.contains(limit), "{asked}: {error}");
        assert!(error.contains("farm"), "{asked}: {error}");
        assert!(answer["operation"].is_string(), "{answer}");
    }
    let (status, listed) = server.get(&format!("/tasks/{task}/")).await?;
    assert!(
        status == 404 || listed["jobs"].as_array().is_some_and(Vec::is_empty),
        "a refused job was stored: {status} {listed}"
    );
    assert!(engine.containers_of(&task).await?.is_empty());

    let created = server
        .submit(
            &task,
            json!({"image": image(), "command": "true", "cpuLimit": 1, "memoryLimit": "256m"}),
        )
        .await?;
    let execution = server
        .wait_finished(field(&created, "executionUrl")?, LIMIT)
        .await?;
    assert_eq!(execution["status"], "done", "{execution}");
    Ok(())
}

/// Nothing a job sends makes a container privileged or mounts host
/// paths: fields asking for it are refused with a 400 before anything is
/// stored or started, and the containers jobs get have neither.
#[tokio::test]
async fn a_job_cannot_ask_for_a_privileged_container_or_host_mounts() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let engine = EngineApi::new();
    let task = task("escape");
    let attempts = [
        ("privileged", json!(true)),
        ("binds", json!(["/:/host"])),
        ("volumes", json!({"/host": {}})),
        (
            "mounts",
            json!([{"Type": "bind", "Source": "/", "Target": "/host"}]),
        ),
        (
            "hostConfig",
            json!({"Privileged": true, "Binds": ["/:/host"]}),
        ),
        ("HostConfig", json!({"Privileged": true})),
        ("capAdd", json!(["SYS_ADMIN"])),
        ("devices", json!(["/dev/mem"])),
        ("securityOpt", json!(["seccomp=unconfined"])),
    ];
    for (key, value) in &attempts {
        let mut body = json!({"image": image(), "command": "cat /host/etc/shadow"});
        body[*key] = value.clone();
        let (status, answer) = server.post_raw(&task, body.to_string()).await?;
        assert_eq!(status, 400, "{key}: {answer}");
        let error = field(&answer, "error")?;
        assert!(error.contains(key), "{key}: {error}");
    }
    assert!(engine.containers_of(&task).await?.is_empty());

    let created = server
        .submit(
            &task,
            json!({"image": image(), "command": "sh -c 'cat /proc/self/mountinfo'"}),
        )
        .await?;
    let execution = server
        .wait_finished(field(&created, "executionUrl")?, LIMIT)
        .await?;
    assert_eq!(execution["status"], "done", "{execution}");
    let containers = engine.containers_of(&task).await?;
    assert_eq!(containers.len(), 1, "{containers:?}");
    let inspect = engine
        .inspect_execution(field(&created, "executionId")?)
        .await?;
    assert_eq!(inspect["HostConfig"]["Privileged"], false);
    let binds = inspect["HostConfig"]["Binds"].as_array();
    assert!(binds.is_none_or(Vec::is_empty), "{inspect}");
    let mounts = inspect["Mounts"].as_array();
    assert!(mounts.is_none_or(Vec::is_empty), "{}", inspect["Mounts"]);
    Ok(())
}
