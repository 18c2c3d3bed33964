//! `fastlane run IMAGE -- COMMAND…` (submit a job, then follow it when
//! stdout is a terminal or `--follow` is given) and `fastlane logs JOB`
//! (print a job's output, or follow it with `-f`).
//!
//! The job is sent as the JSON the API documents, so every check is the
//! server's and its message comes back as it wrote it, naming the field.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use fastlane_client::{ClientInfo, types};
use serde_json::{Map, Value, json};

use super::watch::{self, OnInterrupt, Streams};
use super::{JobRef, Output, Server, api_error};

/// `fastlane run`'s options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The task to add the job to (default: the image's name, without
    /// registry and tag).
    #[arg(long)]
    task: Option<String>,
    /// An environment variable of the container (repeatable).
    #[arg(short, long = "env", value_name = "NAME=VALUE")]
    envs: Vec<String>,
    /// A file of NAME=VALUE lines (`#` comments and blank lines skipped).
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Runs again after a non-zero exit, up to this many times.
    #[arg(long)]
    retries: Option<u32>,
    /// Seconds an execution may run before it is stopped as `timedout`.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Run after this delay (`30s`, `5m`, `1h30m`, `2d`).
    #[arg(long = "in", value_name = "DELAY", conflicts_with_all = ["at", "cron"])]
    start_in: Option<String>,
    /// Run at this time: RFC 3339 (`2026-12-24T18:00:00Z`) or unix seconds.
    #[arg(long, value_name = "TIME", conflicts_with = "cron")]
    at: Option<String>,
    /// Run on this cron schedule (5 or 6 fields); not followed by default.
    #[arg(long, value_name = "EXPR")]
    cron: Option<String>,
    /// CPUs the container may use (`0.5`, `2`).
    #[arg(long, value_name = "CPUS")]
    cpu: Option<f64>,
    /// Memory the container may use (`256m`, `1g`).
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// An URL called when an execution ends (repeatable).
    #[arg(long, value_name = "URL")]
    webhook: Vec<String>,
    /// An address e-mailed when an execution ends (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    notify: Vec<String>,
    /// Follow the job: stream its output and exit with its exit code
    /// (the default when stdout is a terminal).
    #[arg(short, long, conflicts_with = "detach")]
    follow: bool,
    /// Print the job's URL and return at once.
    #[arg(short, long)]
    detach: bool,
    /// On Ctrl-C, stop the job (instead of detaching from it).
    #[arg(long)]
    stop_on_interrupt: bool,
    /// The container image.
    image: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `fastlane logs`'s options.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The job: TASK/JOB_ID or its URL.
    job: String,
    /// Follow the log as it is written, until the job ends.
    #[arg(short, long)]
    follow: bool,
    /// One execution of the job (default: its newest).
    #[arg(long, value_name = "ID")]
    execution: Option<String>,
    /// Print stderr only.
    #[arg(long)]
    stderr: bool,
}

/// Submits the job and follows it, or prints where it is.
pub async fn run(server: &Server, args: RunArgs) -> anyhow::Result<ExitCode> {
    let task = match &args.task {
        Some(task) => task.clone(),
        None => task_of(&args.image),
    };
    let follow = if args.follow {
        true
    } else {
        !args.detach
            && args.cron.is_none()
            && server.output == Output::Table
            && std::io::stdout().is_terminal()
    };
    let body = job_request(&args)?;
    let created = create(server, &task, &body).await?;
    let job = JobRef {
        task: created.task_id.clone(),
        job: created.job_id.clone(),
        execution: None,
    };
    if !follow {
        match server.output {
            Output::Json => server.print_json(&created)?,
            Output::Table => outln!("{}", created.job_url),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if server.output == Output::Json {
        let created = serde_json::to_value(&created)?;
        outln!("{}", json!({"type": "created", "job": created}));
    } else {
        eprintln!("fastlane: {}", created.job_url);
    }
    let on_interrupt = if args.stop_on_interrupt {
        OnInterrupt::StopJob
    } else {
        OnInterrupt::Detach
    };
    watch::follow(server, &job, None, Streams::Both, on_interrupt).await
}

/// Prints the job's output, or follows it.
pub async fn logs(server: &Server, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let job = JobRef::parse(&args.job)?;
    // `--execution`, else the one a pasted execution URL names.
    let execution = args.execution.clone().or_else(|| job.execution.clone());
    let streams = if args.stderr {
        Streams::StderrOnly
    } else {
        Streams::Both
    };
    if args.follow {
        let execution = execution.as_deref();
        return watch::follow(server, &job, execution, streams, OnInterrupt::Detach).await;
    }
    let api = &server.api;
    let (task, id) = (job.task.as_str(), job.job.as_str());
    // stderr first, then stdout only when it is printed (it can be large).
    let stderr = match &execution {
        Some(execution) => {
            api.get_execution_stderr()
                .task_id(task)
                .job_id(id)
                .execution_id(execution.as_str())
                .send()
                .await
        }
        None => api.get_job_stderr().task_id(task).job_id(id).send().await,
    };
    let stderr = match stderr {
        Ok(body) => fastlane_client::text(body.into_inner()).await?,
        Err(err) => return Err(api_error(err).await),
    };
    if args.stderr {
        out!("{stderr}");
        return Ok(ExitCode::SUCCESS);
    }
    let stdout = match &execution {
        Some(execution) => {
            api.get_execution_stdout()
                .task_id(task)
                .job_id(id)
                .execution_id(execution.as_str())
                .send()
                .await
        }
        None => api.get_job_stdout().task_id(task).job_id(id).send().await,
    };
    let stdout = match stdout {
        Ok(body) => fastlane_client::text(body.into_inner()).await?,
        Err(err) => return Err(api_error(err).await),
    };
    out!("{stdout}");
    eprint!("{stderr}");
    Ok(ExitCode::SUCCESS)
}

/// POSTs the job as JSON, so the server's validation speaks for itself.
async fn create(server: &Server, task: &str, body: &Value) -> anyhow::Result<types::JobCreated> {
    let url = format!("{}/tasks/{}", server.api.baseurl(), segment(task));
    let response = server
        .api
        .client()
        .post(&url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {}", server.base))?;
    let status = response.status();
    let text = response.text().await.context("reading the answer")?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("the job was not created: {} ({status})", message.trim());
    }
    serde_json::from_str(&text).context("the server's answer is not a created job")
}

/// The JSON body of the job `args` describe.
fn job_request(args: &RunArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert("image".into(), json!(args.image));
    let command = shlex::try_join(args.command.iter().map(String::as_str))
        .context("the command holds a NUL byte")?;
    body.insert("command".into(), json!(command));
    let envs = envs(args)?;
    if !envs.is_empty() {
        body.insert("envs".into(), Value::Object(envs));
    }
    if let Some(retries) = args.retries {
        body.insert("retries".into(), json!(retries));
    }
    if let Some(timeout) = args.timeout {
        body.insert("timeout".into(), json!(timeout));
    }
    if let Some(delay) = &args.start_in {
        body.insert("startIn".into(), json!(delay));
    }
    if let Some(at) = &args.at {
        body.insert("startAt".into(), json!(unix_time(at)?));
    }
    if let Some(cron) = &args.cron {
        body.insert("cron".into(), json!(cron));
    }
    if let Some(cpu) = args.cpu {
        body.insert("cpuLimit".into(), json!(cpu));
    }
    if let Some(memory) = &args.memory {
        body.insert("memoryLimit".into(), json!(memory));
    }
    if !args.webhook.is_empty() {
        let hooks: Vec<Value> = args.webhook.iter().map(|url| json!({"url": url})).collect();
        body.insert("webhooks".into(), json!({"finishes": hooks}));
    }
    if !args.notify.is_empty() {
        body.insert("notify".into(), json!({"finishes": args.notify}));
    }
    Ok(Value::Object(body))
}

/// `--env` and `--env-file` as the job's `envs` (`--env` wins).
fn envs(args: &RunArgs) -> anyhow::Result<Map<String, Value>> {
    let mut envs = Map::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --env-file {}", file.display()))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = pair(line).with_context(|| {
                format!("{} line {}: not NAME=VALUE", file.display(), number + 1)
            })?;
            envs.insert(name, json!(value));
        }
    }
    for env in &args.envs {
        let (name, value) = pair(env).with_context(|| format!("--env {env:?}: not NAME=VALUE"))?;
        envs.insert(name, json!(value));
    }
    Ok(envs)
}

fn pair(text: &str) -> Option<(String, String)> {
    let (name, value) = text.split_once('=')?;
    (!name.is_empty()).then(|| (name.to_owned(), value.to_owned()))
}

/// `--at`: RFC 3339 or unix seconds.
fn unix_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp())
        .with_context(|| {
            format!("--at {text:?}: give a time as RFC 3339 (2026-12-24T18:00:00Z) or unix seconds")
        })
}

/// The task a job goes to when `--task` is not given: the image's name
/// without registry, path, tag or digest (`registry:5000/team/app:1.2` is
/// `app`), with characters a task id cannot hold made `-`.
fn task_of(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    let name = name.rsplit('/').next().unwrap_or(name);
    let name = name.split(':').next().unwrap_or(name);
    let task: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    match task.trim_start_matches('.') {
        "" => "run".to_owned(),
        task => task.to_owned(),
    }
}

/// `text` as one URL path segment.
fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::{task_of, unix_time};

    #[test]
    fn the_default_task_is_the_images_name() {
        assert_eq!(task_of("busybox"), "busybox");
        assert_eq!(task_of("busybox:1.36"), "busybox");
        assert_eq!(task_of("localhost:5000/team/app:1.2"), "app");
        assert_eq!(task_of("ghcr.io/org/tool@sha256:abcd"), "tool");
    }

    #[test]
    fn a_start_time_is_rfc_3339_or_unix_seconds() -> anyhow::Result<()> {
        assert_eq!(unix_time("1800000000")?, 1_800_000_000);
        assert_eq!(unix_time("2027-01-15T08:00:00Z")?, 1_800_000_000);
        assert!(unix_time("tomorrow").is_err());
        Ok(())
    }
}
