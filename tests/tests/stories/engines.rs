//! What users run: the same lifecycle on both container engines
//! `scripts/services.sh` starts, Podman's Docker API
//! (`FASTLANE_TEST_DOCKER_UNIX`) and Docker Engine
//! (`FASTLANE_TEST_DOCKERD_UNIX`). Each case below runs once per engine
//! (`engines::podman::…` and `engines::docker_engine::…`); the rest of the
//! suite runs on Podman.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use fastlane_tests::{Server, binary, image};

const LIMIT: Duration = Duration::from_secs(60);

/// A container engine, by the socket its Docker API listens on.
#[derive(Debug, Clone, Copy)]
enum Engine {
    Podman,
    DockerEngine,
}

impl Engine {
    fn socket(self) -> String {
        let (variable, default) = match self {
            Engine::Podman => (
                "FASTLANE_TEST_DOCKER_UNIX",
                "unix:///run/fastlane/podman.sock",
            ),
            Engine::DockerEngine => (
                "FASTLANE_TEST_DOCKERD_UNIX",
                "unix:///run/fastlane/docker.sock",
            ),
        };
        std::env::var(variable).unwrap_or_else(|_| default.to_owned())
    }

    /// A standalone server whose one farm is this engine.
    async fn server(self) -> anyhow::Result<Server> {
        let hosts = json!([{"match": "", "hosts": [self.socket()], "maxRunning": 10}]);
        Server::start(&[("DOCKER_HOSTS", &hosts.to_string())]).await
    }
}

/// Submits `job` to `task` and waits for its first execution to end.
async fn run(server: &Server, task: &str, job: Value) -> anyhow::Result<Value> {
    let created = server.submit(task, job).await?;
    let url = created["executionUrl"].as_str().context("executionUrl")?;
    server.wait_finished(url, LIMIT).await
}

async fn a_job_runs_with_its_envs_and_keeps_its_unicode_output(
    engine: Engine,
) -> anyhow::Result<()> {
    let server = engine.server().await?;
    let script = r#"sh -c 'echo "$GREETING π ✓"; echo "ошибка" >&2'"#;
    let ended = run(
        &server,
        "envs",
        json!({"image": image(), "command": script, "envs": {"GREETING": "héllo"}}),
    )
    .await?;
    assert_eq!(ended["status"], "done", "{ended}");
    assert_eq!(ended["exitCode"], 0);
    let (_, stdout) = text(&server, &ended, "stdout").await?;
    assert_eq!(stdout, "héllo π ✓\n");
    let (_, stderr) = text(&server, &ended, "stderr").await?;
    assert_eq!(stderr, "ошибка\n");
    Ok(())
}

async fn failures_keep_their_exit_code_or_say_what_failed(engine: Engine) -> anyhow::Result<()> {
    let server = engine.server().await?;
    let (exited, missing_command, missing_image) = tokio::try_join!(
        run(
            &server,
            "codes",
            json!({"image": image(), "command": "sh -c 'exit 3'"})
        ),
        run(
            &server,
            "codes",
            json!({"image": image(), "command": "no-such-command"})
        ),
        run(
            &server,
            "codes",
            json!({"image": "localhost/fastlane-no-such-image:1", "command": "true"})
        ),
    )?;
    assert_eq!(exited["status"], "failed");
    assert_eq!(exited["exitCode"], 3);
    assert_eq!(missing_command["status"], "failed");
    let error = missing_command["error"].as_str().unwrap_or_default();
    assert!(error.contains("no-such-command"), "{missing_command}");
    assert_eq!(missing_image["status"], "failed");
    let error = missing_image["error"].as_str().unwrap_or_default();
    assert!(error.contains("fastlane-no-such-image"), "{missing_image}");
    Ok(())
}

async fn large_output_is_kept_whole(engine: Engine) -> anyhow::Result<()> {
    let server = engine.server().await?;
    let ended = run(
        &server,
        "large",
        json!({"image": image(), "command": "seq 1 100000"}),
    )
    .await?;
    assert_eq!(ended["status"], "done", "{ended}");
    let (_, stdout) = text(&server, &ended, "stdout").await?;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 100_000);
    assert_eq!(lines.last(), Some(&"100000"));
    Ok(())
}

async fn a_timeout_and_a_stop_end_the_container(engine: Engine) -> anyhow::Result<()> {
    let server = engine.server().await?;
    let forever = "sh -c 'trap \"exit 0\" TERM; sleep 60 & wait'";
    let timed = server
        .submit(
            "ends",
            json!({"image": image(), "command": forever, "timeout": 1}),
        )
        .await?;
    let stopped = server
        .submit("ends", json!({"image": image(), "command": forever}))
        .await?;
    let stopped_url = stopped["executionUrl"].as_str().context("executionUrl")?;
    server
        .wait_for(stopped_url, LIMIT, |e| e["status"] == "running")
        .await?;
    let stop = server
        .client()
        .post(format!(
            "{}stop",
            stopped["jobUrl"].as_str().context("jobUrl")?
        ))
        .send()
        .await?;
    assert_eq!(stop.status(), 200);

    let timed_url = timed["executionUrl"].as_str().context("executionUrl")?;
    let timed = server.wait_finished(timed_url, LIMIT).await?;
    assert_eq!(timed["status"], "timedout", "{timed}");
    let stopped = server.wait_finished(stopped_url, LIMIT).await?;
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    Ok(())
}

async fn a_restarted_server_adopts_the_running_container(engine: Engine) -> anyhow::Result<()> {
    let mut server = engine.server().await?;
    let created = server
        .submit(
            "adopted",
            json!({"image": image(), "command": "sh -c 'echo before; sleep 3; echo after'"}),
        )
        .await?;
    let url = created["executionUrl"].as_str().context("executionUrl")?;
    server
        .wait_for(url, LIMIT, |e| e["status"] == "running")
        .await?;
    server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.respawn_on_same_port()?;
    let ended = server.wait_finished(url, LIMIT).await?;
    assert_eq!(ended["status"], "done", "{ended}");
    assert_eq!(ended["log"], "before\nafter\n");
    Ok(())
}

async fn live_logs_arrive_while_the_container_runs(engine: Engine) -> anyhow::Result<()> {
    let server = engine.server().await?;
    let mut follow = tokio::process::Command::new(binary())
        .args([
            "run",
            "-f",
            &image(),
            "--",
            "sh",
            "-c",
            "echo first; sleep 6; echo second",
        ])
        .env("FASTLANE_URL", &server.base)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(follow.stdout.take().context("stdout")?).lines();
    let first = tokio::time::timeout(LIMIT, lines.next_line()).await??;
    assert_eq!(first.as_deref(), Some("first"));
    assert!(
        follow.try_wait()?.is_none(),
        "the first line came before the end"
    );
    let second = tokio::time::timeout(LIMIT, lines.next_line()).await??;
    assert_eq!(second.as_deref(), Some("second"));
    let status = tokio::time::timeout(LIMIT, follow.wait()).await??;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

/// The private registry `scripts/services.sh` runs: htpasswd logins over
/// TLS, `private/busybox:1` pushed to it.
fn registry() -> String {
    std::env::var("FASTLANE_TEST_REGISTRY")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "127.0.0.1:5050".to_owned())
}

async fn a_private_registrys_image_is_pulled_with_the_farms_login(
    engine: Engine,
) -> anyhow::Result<()> {
    let registry = registry();
    // One farm logs in from a Docker config.json, one with a wrong
    // password, one never pulls; the first two pull before every run.
    let dir = std::env::temp_dir().join(format!("fastlane-registry-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.json");
    let auth = base64_of("fastlane:fastlane");
    std::fs::write(
        &config,
        json!({"auths": {&registry: {"auth": auth}}}).to_string(),
    )?;
    let socket = engine.socket();
    let farms = json!([
        {"match": "private-ok", "hosts": [&socket], "pullPolicy": "always",
         "dockerConfig": config.to_string_lossy()},
        {"match": "private-wrong", "hosts": [&socket], "pullPolicy": "always",
         "registryAuth": {&registry: {"username": "fastlane", "password": "wrong"}}},
        {"match": "private-never", "hosts": [&socket], "pullPolicy": "never"},
    ]);
    let server = Server::start(&[("DOCKER_HOSTS", &farms.to_string())]).await?;
    let image = format!("{registry}/private/busybox:1");
    let job = |image: &str| json!({"image": image, "command": "echo pulled"});
    let unpulled = format!("{registry}/private/busybox:2");
    let missing_tag = format!("{registry}/private/busybox:missing");
    // A job's own policy wins over its farm's.
    let never_by_job = json!({"image": &unpulled, "command": "true", "pullPolicy": "never"});
    let (pulled, refused, missing, never, never_by_job) = tokio::try_join!(
        run(&server, "private-ok", job(&image)),
        run(&server, "private-wrong", job(&image)),
        run(&server, "private-ok", job(&missing_tag)),
        run(&server, "private-never", job(&unpulled)),
        run(&server, "private-ok", never_by_job),
    )?;
    assert_eq!(pulled["status"], "done", "{pulled}");
    assert_eq!(text(&server, &pulled, "stdout").await?.1, "pulled\n");
    for (ended, says) in [
        (&refused, &["unauthorized", "authentication required"][..]),
        (&missing, &["not found", "manifest unknown"][..]),
        (&never, &["pullPolicy is never"][..]),
        (&never_by_job, &["pullPolicy is never"][..]),
    ] {
        assert_eq!(ended["status"], "failed", "{ended}");
        let error = ended["error"].as_str().unwrap_or_default();
        assert!(says.iter().any(|s| error.contains(s)), "{error}");
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A pull that takes seconds (an 8 MB layer through a proxy passing 2 MB/s)
/// shows its progress in the execution's `statusDetail` while it is
/// `pulling`, layer by layer, and the detail is gone once it runs.
async fn a_slow_pulls_progress_is_the_status_detail(engine: Engine) -> anyhow::Result<()> {
    // One port per engine (both run at once), trusted by the engines as
    // the registry itself is (`scripts/services.sh`).
    let slow = match engine {
        Engine::Podman => "127.0.0.1:5051",
        Engine::DockerEngine => "127.0.0.1:5052",
    };
    let _proxy = fastlane_tests::proxy::slow_proxy(slow, &registry(), 2_000_000).await?;
    let image = format!("{slow}/private/bulky:1");
    // Gone from the engine (with the containers earlier runs left, which
    // would keep its layer), so that its layer comes down again.
    let socket = engine.socket();
    let docker = |args: &[&str]| {
        Command::new("docker")
            .arg("-H")
            .arg(&socket)
            .args(args)
            .output()
            .context("the docker CLI (Debian's docker.io)")
    };
    let filter = format!("ancestor={image}");
    let left = docker(&["ps", "-aq", "--filter", &filter])?;
    anyhow::ensure!(left.status.success(), "docker ps: {left:?}");
    for id in String::from_utf8_lossy(&left.stdout).split_whitespace() {
        let removed = docker(&["rm", "-f", id])?;
        anyhow::ensure!(removed.status.success(), "docker rm: {removed:?}");
    }
    let removed = docker(&["rmi", "-f", &image])?;
    let said = String::from_utf8_lossy(&removed.stderr);
    anyhow::ensure!(
        removed.status.success()
            || said.contains("No such image")
            || said.contains("image not known"),
        "docker rmi: {said}"
    );
    let farms = json!([{"match": "", "hosts": [&socket], "pullPolicy": "always",
        "registryAuth": {slow: {"username": "fastlane", "password": "fastlane"}}}]);
    let server = Server::start(&[("DOCKER_HOSTS", &farms.to_string())]).await?;
    let created = server
        .submit("bulky", json!({"image": &image, "command": "echo pulled"}))
        .await?;
    let url = created["executionUrl"].as_str().context("executionUrl")?;

    let mut details = Vec::new();
    let deadline = std::time::Instant::now() + LIMIT;
    let ended = loop {
        let (_, body) = server.get(url).await?;
        let execution = &body["execution"];
        match execution["status"].as_str() {
            Some("enqueued" | "pulling") => {
                if let Some(detail) = execution["statusDetail"].as_str()
                    && details.last().is_none_or(|last: &String| last != detail)
                {
                    details.push(detail.to_owned());
                }
            }
            Some("running") => assert!(
                execution.get("statusDetail").is_none(),
                "no detail once it runs: {execution}"
            ),
            _ => break execution.clone(),
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "still {execution}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ended["status"], "done", "{ended}");
    assert!(ended.get("statusDetail").is_none(), "{ended}");
    let prefix = format!("pulling {image}: ");
    let layers: Vec<&String> = details.iter().filter(|d| d.starts_with(&prefix)).collect();
    assert!(
        layers.iter().any(|d| d.contains("layers downloaded")),
        "the layers were counted while it pulled: {details:?}"
    );
    // `… downloaded, 1.8 of 8.0 MB`: seen while the layer came down.
    let midway = layers.iter().any(|d| {
        let Some((_, bytes)) = d.rsplit_once(", ") else {
            return false;
        };
        let mut numbers = bytes
            .trim_end_matches(" MB")
            .split(" of ")
            .filter_map(|n| n.parse::<f64>().ok());
        matches!((numbers.next(), numbers.next()), (Some(done), Some(all)) if done < all)
    });
    assert!(
        midway,
        "a detail came while the layer came down: {details:?}"
    );
    Ok(())
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// An execution's `stdout` or `stderr`, with its HTTP status.
async fn text(server: &Server, execution: &Value, which: &str) -> anyhow::Result<(u16, String)> {
    let url = execution["url"].as_str().context("url")?;
    let response = server
        .client()
        .get(format!("{}{which}", url))
        .send()
        .await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// One test per case and engine.
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod podman {
            $(
                #[tokio::test]
                async fn $case() -> anyhow::Result<()> {
                    super::$case(super::Engine::Podman).await
                }
            )*
        }
        mod docker_engine {
            $(
                #[tokio::test]
                async fn $case() -> anyhow::Result<()> {
                    super::$case(super::Engine::DockerEngine).await
                }
            )*
        }
    };
}

on_both_engines!(
    a_job_runs_with_its_envs_and_keeps_its_unicode_output,
    failures_keep_their_exit_code_or_say_what_failed,
    large_output_is_kept_whole,
    a_timeout_and_a_stop_end_the_container,
    a_restarted_server_adopts_the_running_container,
    live_logs_arrive_while_the_container_runs,
    a_private_registrys_image_is_pulled_with_the_farms_login,
    a_slow_pulls_progress_is_the_status_detail,
);
