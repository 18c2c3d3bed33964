//! Plugins from dynamic libraries: the example third-party plugin
//! (`examples/fastlane-local-plugin`) runs jobs and writes notifications; a
//! library built against another SDK is refused with both fingerprints
//! named, and the server starts without it; a plugin that panics fails its
//! execution and the server goes on serving.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fastlane_tests::{Server, binary};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

/// A library the workspace build produced (`target/debug/lib<name>.so`).
fn library(name: &str) -> PathBuf {
    binary()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join(format!("lib{name}.so"))
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fastlane-plugins-{name}-{}", uuid::Uuid::new_v4()))
}

/// The environment of a server that loads `libraries` (with the example's
/// configuration), routes tasks by `routes` (`[(prefix, executor)]`) and
/// writes the events of `local-…` tasks to `events`.
fn plugin_env(
    libraries: &[PathBuf],
    routes: &[(&str, &str)],
    events: &Path,
    workdir: &Path,
) -> Vec<(String, String)> {
    let plugins: Vec<Value> = libraries
        .iter()
        .map(|path| json!({"path": path, "config": {"workdir": workdir, "events_file": events}}))
        .collect();
    vec![
        ("PLUGINS".into(), Value::from(plugins).to_string()),
        (
            "EXECUTORS".into(),
            Value::from(
                routes
                    .iter()
                    .map(|(prefix, executor)| json!({"match": prefix, "executor": executor}))
                    .collect::<Vec<_>>(),
            )
            .to_string(),
        ),
        (
            "NOTIFIERS".into(),
            json!([{"notifier": "file-events", "match": "local-", "target": "audit-log"}])
                .to_string(),
        ),
    ]
}

async fn start(env: &[(String, String)]) -> anyhow::Result<Server> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(&env).await
}

async fn run(server: &Server, task: &str, command: &str) -> anyhow::Result<Value> {
    let created = server
        .submit(
            task,
            json!({"image": "ignored-by-the-local-executor", "command": command}),
        )
        .await?;
    let url = created["executionUrl"].as_str().context("executionUrl")?;
    server.wait_finished(url, LIMIT).await
}

async fn events(path: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let lines: Vec<Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_example_plugin_runs_a_job_as_a_local_process_and_records_its_events()
-> anyhow::Result<()> {
    let (events_file, workdir) = (scratch("events.jsonl"), scratch("work"));
    let server = start(&plugin_env(
        &[library("fastlane_local_plugin")],
        &[("local-", "local")],
        &events_file,
        &workdir,
    ))
    .await?;

    let execution = run(
        &server,
        "local-hello",
        "sh -c 'echo hello from $0; echo warning >&2; exit 3' local",
    )
    .await?;
    assert_eq!(execution["status"], "failed", "{execution}");
    assert_eq!(execution["exitCode"], 3);
    assert_eq!(execution["log"], "hello from local\n");
    assert_eq!(execution["error"], "warning\n");
    assert!(
        server
            .log()
            .lines()
            .any(|line| line.contains("fastlane_local_plugin::executor")
                && line.contains("local run started")),
        "the plugin logs through the server's tracing:\n{}",
        server.log()
    );

    let events = events(&events_file, 3).await;
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["fails", "finishes", "starts"], "{events:?}");
    for event in &events {
        assert_eq!(event["taskId"], "local-hello");
        assert_eq!(event["target"], "audit-log");
    }
    let (_, status) = server.get("/status").await?;
    assert_eq!(status["fastlane"]["executor"], "docker,local", "{status}");

    // Tasks no route names still run in containers.
    let created = server
        .submit(
            "docker-task",
            json!({"image": fastlane_tests::image(), "command": "echo in a container"}),
        )
        .await?;
    let execution = server
        .wait_finished(created["executionUrl"].as_str().context("url")?, LIMIT)
        .await?;
    assert_eq!(execution["log"], "in a container\n", "{execution}");
    Ok(())
}

#[tokio::test]
async fn a_panicking_plugin_fails_the_execution_and_the_server_keeps_serving() -> anyhow::Result<()>
{
    let (events_file, workdir) = (scratch("events.jsonl"), scratch("work"));
    let server = start(&plugin_env(
        &[
            library("fastlane_local_plugin"),
            library("fastlane_panicking_plugin"),
        ],
        &[("local-", "local"), ("panicky-", "panicky")],
        &events_file,
        &workdir,
    ))
    .await?;

    let execution = run(&server, "panicky-job", "true").await?;
    assert_eq!(execution["status"], "failed", "{execution}");
    let error = execution["error"].as_str().unwrap_or_default();
    assert!(error.contains("the plugin panicked"), "{execution}");
    assert!(error.contains("panicky refuses to run"), "{execution}");

    let (status, health) = server.get("/healthcheck").await?;
    assert_eq!(status, 200, "{health}");
    let execution = run(&server, "local-after-the-panic", "echo still here").await?;
    assert_eq!(execution["log"], "still here\n", "{execution}");
    assert!(
        server.log().contains("a plugin panicked"),
        "the panic is logged through the server"
    );
    Ok(())
}

/// The SDK version of the mismatched plugin: same major and minor as ours
/// (so Cargo accepts it), another patch.
fn mismatched_version() -> anyhow::Result<String> {
    let version = sdk_version()?;
    let (minor, _patch) = version.rsplit_once('.').context("the SDK's version")?;
    Ok(format!("{minor}.99"))
}

/// The SDK's version, from its manifest.
fn sdk_version() -> anyhow::Result<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fastlane-sdk/Cargo.toml");
    let text = std::fs::read_to_string(manifest)?;
    text.lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .map(str::to_owned)
        .context("the SDK's manifest names no version of its own")
}

/// Builds the example plugin against a copy of the SDK whose version is
/// [`mismatched_version`], as a plugin author with another fastlane would.
fn build_mismatched_plugin() -> anyhow::Result<PathBuf> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("workspace")?;
    let root = scratch("mismatched-workspace");
    std::fs::create_dir_all(root.join("examples"))?;
    for (from, to) in [
        ("fastlane-sdk", "fastlane-sdk"),
        (
            "examples/fastlane-local-plugin",
            "examples/fastlane-local-plugin",
        ),
    ] {
        let status = Command::new("cp")
            .args(["-r"])
            .arg(workspace.join(from))
            .arg(root.join(to))
            .status()?;
        if !status.success() {
            bail!("cannot copy {from}");
        }
    }
    std::fs::copy(workspace.join("Cargo.lock"), root.join("Cargo.lock"))?;
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml"))?;
    let members_start = manifest.find("members = [").context("members")?;
    let members_end = members_start
        + manifest[members_start..]
            .find("default-members")
            .context("default-members")?;
    let manifest = format!(
        "{}members = [\"fastlane-sdk\", \"examples/fastlane-local-plugin\"]\n{}",
        &manifest[..members_start],
        &manifest[members_end..]
            .split_once('\n')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
    );
    std::fs::write(root.join("Cargo.toml"), manifest)?;
    let sdk_manifest = root.join("fastlane-sdk/Cargo.toml");
    let sdk = std::fs::read_to_string(&sdk_manifest)?;
    let version = format!("version = \"{}\"", sdk_version()?);
    std::fs::write(
        &sdk_manifest,
        sdk.replacen(
            &version,
            &format!("version = \"{}\"", mismatched_version()?),
            1,
        ),
    )?;

    let target = workspace.join("target").join("mismatched-plugin");
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--offline", "--lib", "-p", "fastlane-local-plugin"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .output()?;
    if !output.status.success() {
        bail!(
            "building the mismatched plugin failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(target.join("debug").join("libfastlane_local_plugin.so"))
}

#[tokio::test]
async fn a_library_built_for_another_sdk_is_refused_and_the_server_starts_with_the_others()
-> anyhow::Result<()> {
    let mismatched = build_mismatched_plugin()?;
    let not_a_plugin = PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6");
    let (events_file, workdir) = (scratch("events.jsonl"), scratch("work"));
    let env = plugin_env(
        &[
            mismatched.clone(),
            not_a_plugin.clone(),
            library("fastlane_local_plugin"),
        ],
        &[("local-", "local")],
        &events_file,
        &workdir,
    );
    // Both refused libraries come first: the good one still loads after them.
    let server = start(&env).await?;

    let log = server.log();
    let refusal = log
        .lines()
        .find(|line| {
            line.contains("plugin library refused") && line.contains(&*mismatched.to_string_lossy())
        })
        .with_context(|| format!("no refusal of the mismatched library in the log:\n{log}"))?;
    assert!(
        refusal.contains(&format!(
            "was built as `fastlane-sdk {}; abi 1; rustc",
            mismatched_version()?
        )),
        "{refusal}"
    );
    assert!(
        refusal.contains(&format!(
            "but this server is `fastlane-sdk {}; abi 1; rustc",
            sdk_version()?
        )),
        "{refusal}"
    );
    assert!(
        log.lines()
            .any(|line| line.contains("is not a fastlane plugin")
                && line.contains(&*not_a_plugin.to_string_lossy())),
        "{log}"
    );

    let (_, status) = server.get("/status").await?;
    let plugins = status["plugins"].as_array().context("plugins in /status")?;
    assert_eq!(plugins.len(), 3, "{status}");
    assert_eq!(plugins[0]["loaded"], false);
    assert!(
        plugins[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&mismatched_version()?),
        "{status}"
    );
    assert_eq!(plugins[1]["loaded"], false);
    assert_eq!(plugins[2]["loaded"], true);
    assert_eq!(
        plugins[2]["registered"],
        json!(["executor local", "notifier file-events"])
    );

    let execution = run(&server, "local-after-refusals", "echo loaded").await?;
    assert_eq!(execution["log"], "loaded\n", "{execution}");
    Ok(())
}
