//! A person at a terminal: `fastlane run`, `logs`, `jobs ls`, `tasks ls`,
//! `job show`, `stop`, `retry`, `pause`, `resume`, `status`, `hosts` and
//! `completions`, run as the `fastlane` binary against a real server and
//! engine.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use fastlane_tests::{Server, binary, image};

/// `fastlane <args…>` talking to `server`, with no token unless given.
fn fastlane(server: &Server, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("FASTLANE_URL", &server.base)
        .env_remove("FASTLANE_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `fastlane <args…>` to its end (at most a minute).
async fn output(server: &Server, args: &[&str]) -> anyhow::Result<Output> {
    let run = fastlane(server, args).output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .with_context(|| format!("fastlane {args:?} did not end within a minute"))?
        .context("cannot run fastlane")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `fastlane run -d …`: the job's URL it printed.
async fn submit(server: &Server, task: &str, command: &[&str]) -> anyhow::Result<String> {
    let image = image();
    let mut args = vec!["run", "-d", "--task", task, image.as_str(), "--"];
    args.extend_from_slice(command);
    let submitted = output(server, &args).await?;
    if !submitted.status.success() {
        bail!("fastlane run failed: {}", stderr(&submitted));
    }
    Ok(stdout(&submitted).trim().to_owned())
}

#[tokio::test]
async fn run_follow_streams_output_while_the_container_runs_and_exits_with_its_code()
-> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let image = image();
    let script = "echo first; echo oops >&2; sleep 6; echo second; exit 3";
    let mut run = fastlane(
        &server,
        &["run", "--follow", &image, "--", "sh", "-c", script],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let mut lines = BufReader::new(run.stdout.take().context("stdout")?).lines();

    // The first line arrives while the container still runs: the command
    // has not exited, and the second line is six seconds away.
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await??;
    assert_eq!(first.as_deref(), Some("first"));
    assert!(
        run.try_wait()?.is_none(),
        "fastlane run ended before the job"
    );

    let second = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
    assert_eq!(second.as_deref(), Some("second"));
    assert_eq!(lines.next_line().await?, None);
    let status = tokio::time::timeout(Duration::from_secs(30), run.wait()).await??;
    assert_eq!(status.code(), Some(3), "the container exited with 3");

    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut run.stderr.take().context("stderr")?, &mut err)
        .await?;
    assert!(
        err.contains("oops\n"),
        "the container's stderr goes to stderr: {err}"
    );
    assert!(
        err.contains("/tasks/busybox/jobs/"),
        "the job's URL, its task from the image: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn run_exits_with_the_containers_code_or_the_shells_for_a_missing_command()
-> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let image = image();
    let timed = ["--timeout", "1", "--", "sleep", "30"];
    let cases: [(&[&str], i32); 4] = [
        (&["--", "true"], 0),
        (&["--", "sh", "-c", "exit 3"], 3),
        (&["--", "no-such-command"], 127),
        // A timeout has its own code, as with timeout(1).
        (&timed, 124),
    ];
    let runs = cases.iter().map(|(rest, _)| {
        let mut args = vec!["run", "-f", "--task", "codes", image.as_str()];
        args.extend_from_slice(rest);
        let server = &server;
        async move { output(server, &args).await }
    });
    let ran = futures_util::future::try_join_all(runs).await?;
    for ((rest, expected), ran) in cases.iter().zip(&ran) {
        assert_eq!(
            ran.status.code(),
            Some(*expected),
            "{rest:?}: {}",
            stderr(ran)
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_followed_job_survives_a_server_restart_without_repeating_a_line() -> anyhow::Result<()> {
    let mut server = Server::start(&[]).await?;
    let image = image();
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 1; done";
    let mut run = fastlane(&server, &["run", "-f", &image, "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(run.stdout.take().context("stdout")?).lines();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await??;
        seen.push(line.context("fastlane run ended early")?);
    }

    // The server stops mid-run and comes back on the same address.
    server.terminate(Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.respawn_on_same_port()?;

    while let Some(line) =
        tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await??
    {
        seen.push(line);
    }
    let expected: Vec<String> = (1..=10).map(|i| format!("line {i}")).collect();
    assert_eq!(seen, expected, "every line once, in order");
    let status = tokio::time::timeout(Duration::from_secs(30), run.wait()).await??;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

#[tokio::test]
async fn logs_prints_a_finished_jobs_output_once_with_or_without_follow() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let job = submit(&server, "logs", &["sh", "-c", "echo out; echo err >&2"]).await?;
    // Followed, a finished job's log is printed whole, then the command
    // exits with the job's code.
    let deadline = Instant::now() + Duration::from_secs(60);
    let followed = loop {
        let followed = output(&server, &["logs", "-f", &job]).await?;
        if followed.status.success() || Instant::now() > deadline {
            break followed;
        }
    };
    assert_eq!(stdout(&followed), "out\n");
    assert_eq!(stderr(&followed), "err\n");
    assert_eq!(followed.status.code(), Some(0));

    let printed = output(&server, &["logs", &job]).await?;
    assert_eq!(stdout(&printed), "out\n");
    assert_eq!(stderr(&printed), "err\n");
    let only_stderr = output(&server, &["logs", "--stderr", &job]).await?;
    assert_eq!(stdout(&only_stderr), "err\n");

    // For scripts: one JSON event a line, and `--stderr` keeps to stderr.
    let events = output(&server, &["logs", "-f", "--stderr", "-o", "json", &job]).await?;
    let texts: Vec<(String, String)> = stdout(&events)
        .lines()
        .map(serde_json::from_str::<serde_json::Value>)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|event| event["type"] == "log")
        .map(|event| (event["stream"].to_string(), event["text"].to_string()))
        .collect();
    assert_eq!(texts, [(r#""stderr""#.to_owned(), r#""err\n""#.to_owned())]);
    Ok(())
}

#[tokio::test]
async fn listings_show_what_the_store_holds_as_tables_and_as_json() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let image = image();
    let failed = output(
        &server,
        &["run", "-f", "--task", "reports", &image, "--", "false"],
    )
    .await?;
    assert_eq!(failed.status.code(), Some(1));
    let done = output(
        &server,
        &["run", "-f", "--task", "reports", &image, "--", "echo", "ok"],
    )
    .await?;
    assert_eq!(done.status.code(), Some(0));

    let tasks = output(&server, &["tasks", "ls"]).await?;
    let table = stdout(&tasks);
    let row = table
        .lines()
        .find(|l| l.starts_with("reports"))
        .context("no reports row")?;
    assert_eq!(
        row.split_whitespace().nth(1),
        Some("2"),
        "two jobs: {table}"
    );

    let jobs = output(&server, &["jobs", "ls", "reports", "--status", "failed"]).await?;
    let table = stdout(&jobs);
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{table}");
    assert!(
        rows[0].contains("failed") && rows[0].contains("false"),
        "{table}"
    );

    // Scripts get the API's JSON.
    let listed = output(&server, &["--output", "json", "jobs", "ls", "reports"]).await?;
    let listed: Value = serde_json::from_slice(&listed.stdout)?;
    let jobs = listed.as_array().context("an array of jobs")?;
    assert_eq!(jobs.len(), 2);
    let job = format!("reports/{}", jobs[0]["jobId"].as_str().context("jobId")?);
    let shown = output(&server, &["-o", "json", "job", "show", &job]).await?;
    let shown: Value = serde_json::from_slice(&shown.stdout)?;
    assert_eq!(shown["taskId"], "reports");
    assert_eq!(shown["executions"].as_array().map(Vec::len), Some(1));
    for args in [
        &["-o", "json", "tasks", "ls"][..],
        &["-o", "json", "status"],
    ] {
        let printed = output(&server, args).await?;
        let parsed = serde_json::from_slice::<Value>(&printed.stdout);
        assert!(parsed.is_ok(), "{args:?} printed {}", stdout(&printed));
    }
    let detached = output(
        &server,
        &[
            "-o", "json", "run", "--task", "reports", &image, "--", "true",
        ],
    )
    .await?;
    let created: Value = serde_json::from_slice(&detached.stdout)?;
    assert!(
        created["jobUrl"]
            .as_str()
            .is_some_and(|u| u.contains("/tasks/reports/jobs/"))
    );
    Ok(())
}

#[tokio::test]
async fn stop_retry_and_hosts_act_on_the_server() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let job = submit(&server, "control", &["sleep", "60"]).await?;
    let (_, body) = server.get(&job).await?;
    let execution = body["job"]["executions"][0]["url"]
        .as_str()
        .context("execution")?
        .to_owned();
    server
        .wait_for(&execution, Duration::from_secs(60), |e| {
            e["status"] == "running"
        })
        .await?;

    let stopped = output(&server, &["stop", &job]).await?;
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let ended = server
        .wait_finished(&execution, Duration::from_secs(60))
        .await?;
    assert_eq!(ended["status"], "stopped");
    // Following a stopped job exits 143, as a shell reports SIGTERM.
    assert_eq!(
        output(&server, &["logs", "-f", &job]).await?.status.code(),
        Some(143)
    );

    let retried = output(&server, &["retry", &job]).await?;
    assert!(
        stdout(&retried).contains("new execution"),
        "{}",
        stderr(&retried)
    );
    let (_, body) = server.get(&job).await?;
    assert_eq!(body["job"]["executionCount"], 2);

    // The host as the server names it.
    let (_, status) = server.get("/status").await?;
    let host = status["hosts"][0]["host"]
        .as_str()
        .context("a host")?
        .to_owned();
    let blacklisted = output(&server, &["hosts", "blacklist", &host]).await?;
    assert!(blacklisted.status.success(), "{}", stderr(&blacklisted));
    let (_, status) = server.get("/status").await?;
    let shown = status["hosts"].as_array().context("hosts")?;
    assert!(
        shown
            .iter()
            .any(|h| h["host"] == host.as_str() && h["blacklisted"] == true)
    );
    let table = stdout(&output(&server, &["status"]).await?);
    assert!(table.contains("blacklisted"), "{table}");
    output(&server, &["hosts", "restore", &host]).await?;
    let (_, status) = server.get("/status").await?;
    assert!(status["hosts"][0]["blacklisted"] == false);
    output(&server, &["stop", &job]).await?;
    Ok(())
}

#[tokio::test]
async fn pause_holds_a_task_until_resume_and_a_bad_gate_is_refused() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let task = format!("cli-pause-{}", uuid::Uuid::new_v4().simple());
    let paused = output(&server, &["pause", &task]).await?;
    assert!(paused.status.success(), "{}", stderr(&paused));
    assert!(
        stdout(&paused).contains(&format!("paused task:{task}")),
        "{}",
        stdout(&paused)
    );
    let job = submit(&server, &task, &["echo", "held"]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = stdout(&output(&server, &["job", "show", &job]).await?);
    assert!(
        shown.contains("enqueued"),
        "the job waits while paused: {shown}"
    );
    let again = output(&server, &["pause", &task, "-o", "json"]).await?;
    let again: Value = serde_json::from_slice(&again.stdout)?;
    assert_eq!(
        (&again["paused"], &again["changed"]),
        (&Value::Bool(true), &Value::Bool(false))
    );

    let resumed = output(&server, &["resume", &task]).await?;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let printed = output(&server, &["logs", "-f", &job]).await?;
    assert_eq!(stdout(&printed), "held\n");

    let refused = output(&server, &["pause", "--gate", "nonsense"]).await?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("is not a gate"),
        "{}",
        stderr(&refused)
    );
    Ok(())
}

#[tokio::test]
async fn the_apis_errors_reach_the_terminal_and_nothing_is_created() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let image = image();
    let args = [
        "run",
        "--task",
        "bad",
        "--cron",
        "every day",
        &image,
        "--",
        "true",
    ];
    let refused = output(&server, &args).await?;
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(
        message.contains("cron") && message.contains("400"),
        "{message}"
    );
    let (status, _) = server.get("/tasks/bad").await?;
    assert_eq!(status, 404, "no task was created");

    let missing = output(&server, &["logs", "bad/no-such-job"]).await?;
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
    let malformed = output(&server, &["stop", "just-a-word"]).await?;
    assert!(
        stderr(&malformed).contains("TASK/JOB_ID"),
        "{}",
        stderr(&malformed)
    );
    Ok(())
}

#[tokio::test]
async fn with_tokens_configured_the_client_needs_one_and_works_with_it() -> anyhow::Result<()> {
    // The operator makes a token with `fastlane token` and configures its entry.
    let made = Command::new(binary())
        .args(["token", "--name", "cli", "--scope", "admin"])
        .output()
        .await?;
    let made = stdout(&made);
    let token = made
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .context("no token printed")?;
    let entry = made
        .lines()
        .find_map(|l| l.strip_prefix("API_TOKENS entry: "))
        .context("no entry printed")?;
    let tokens = format!("[{entry}]");
    let server = Server::start(&[("API_TOKENS", &tokens)]).await?;
    let image = image();

    let refused = output(&server, &["tasks", "ls"]).await?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("401"), "{}", stderr(&refused));

    let ran = fastlane(&server, &["run", "-f", &image, "--", "echo", "allowed"])
        .env("FASTLANE_TOKEN", token)
        .output()
        .await?;
    assert_eq!(stdout(&ran), "allowed\n", "{}", stderr(&ran));
    assert_eq!(ran.status.code(), Some(0));
    Ok(())
}

#[tokio::test]
async fn completions_are_generated_for_bash_zsh_and_fish() -> anyhow::Result<()> {
    let completions = |shell: &str| Command::new(binary()).args(["completions", shell]).output();
    for shell in ["bash", "zsh", "fish"] {
        let script = completions(shell).await?;
        assert!(script.status.success());
        let text = stdout(&script);
        assert!(
            text.contains("fastlane") && text.contains("logs") && text.contains("follow"),
            "{shell}: {text}"
        );
    }
    let bash = stdout(&completions("bash").await?);
    let checked = Command::new("bash")
        .arg("-n")
        .arg("-c")
        .arg(&bash)
        .status()
        .await?;
    assert!(checked.success(), "the bash script parses");
    Ok(())
}

/// Sends SIGINT to `child`, as Ctrl-C at a terminal does.
fn interrupt(child: &tokio::process::Child) -> anyhow::Result<()> {
    let pid = child.id().context("the process has ended")?;
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    anyhow::ensure!(sent.success(), "kill -INT failed");
    Ok(())
}

/// Starts `fastlane run -f … sleep 30` and waits until its job runs;
/// returns the process and the job's URL.
async fn running_follow(
    server: &Server,
    extra: &[&str],
) -> anyhow::Result<(tokio::process::Child, String)> {
    let image = image();
    let mut args = vec!["run", "-f", "--task", "interrupted"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[image.as_str(), "--", "sleep", "30"]);
    let mut run = fastlane(server, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = BufReader::new(run.stderr.take().context("stderr")?).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), stderr.next_line())
        .await??
        .context("no job URL")?;
    let job = first
        .strip_prefix("fastlane: ")
        .context("the job's URL first")?
        .to_owned();
    let (_, body) = server.get(&job).await?;
    let execution = body["job"]["executions"][0]["url"]
        .as_str()
        .context("execution")?
        .to_owned();
    server
        .wait_for(&execution, Duration::from_secs(60), |e| {
            e["status"] == "running"
        })
        .await?;
    // The rest of stderr is read by the caller through `wait_with_output`.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    Ok((run, job))
}

#[tokio::test]
async fn ctrl_c_detaches_from_a_job_or_stops_it_when_asked() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;

    let (run, job) = running_follow(&server, &[]).await?;
    interrupt(&run)?;
    let detached = tokio::time::timeout(Duration::from_secs(30), run.wait_with_output()).await??;
    assert_eq!(detached.status.code(), Some(130));
    let (_, body) = server.get(&job).await?;
    assert_eq!(
        body["job"]["executions"][0]["status"], "running",
        "detaching leaves the job running"
    );
    output(&server, &["stop", &job]).await?;

    let (run, job) = running_follow(&server, &["--stop-on-interrupt"]).await?;
    interrupt(&run)?;
    let stopped = tokio::time::timeout(Duration::from_secs(60), run.wait_with_output()).await??;
    assert_eq!(
        stopped.status.code(),
        Some(143),
        "it followed the job to `stopped`"
    );
    let (_, body) = server.get(&job).await?;
    assert_eq!(body["job"]["executions"][0]["status"], "stopped");
    Ok(())
}
