//! The command-line client: `fastlane run`, `logs`, `jobs ls`, `tasks ls`,
//! `job show`, `stop`, `retry`, `status` and `hosts`. Each talks to a
//! server over its HTTP API through the generated `fastlane-client` (never
//! to the store), so it works against any fastlane a person can reach.
//!
//! Shared here: the connection options (`--server`/`FASTLANE_URL`,
//! `--token`/`FASTLANE_TOKEN`, `--output`), the client they make, the API's
//! errors as messages, and the `JOB` argument (a job URL or `TASK/JOB_ID`).
//! Commands print human tables by default and `--output json` for scripts.

/// Writes to stdout like `print!`; see [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(&format!($($arg)*))
    };
}

/// Writes a line to stdout like `println!`; see [`write_stdout`].
macro_rules! outln {
    () => {
        $crate::cli::write_stdout("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod control;
mod listing;
mod run;
mod table;
mod watch;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use fastlane_client::{Client, types};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

pub use run::RunArgs;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns, for people.
    Table,
    /// JSON (the API's own bodies), for scripts.
    Json,
}

/// Where the server is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "FASTLANE_URL",
        default_value = "http://localhost:10000",
        global = true
    )]
    server: String,
    /// An API token (see `fastlane token`), sent as a bearer token.
    #[arg(long, env = "FASTLANE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// How to print results.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    output: Output,
}

/// The client's commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Submit a job and follow it: its output streams to this terminal and
    /// the command exits with the container's exit code.
    Run(Box<RunArgs>),
    /// Print a job's output, or follow it live with -f.
    Logs(run::LogsArgs),
    /// List a task's jobs.
    #[command(subcommand)]
    Jobs(listing::JobsCommand),
    /// List or search tasks.
    #[command(subcommand)]
    Tasks(listing::TasksCommand),
    /// Show one job.
    #[command(subcommand)]
    Job(listing::JobCommand),
    /// Stop a job: its running execution, and any retry or schedule.
    Stop(control::JobArg),
    /// Run a job again, as a new execution.
    Retry(control::JobArg),
    /// Pause a task (or, with --gate, a farm, a concurrency key or any
    /// gate `status` lists): what it submits waits, nothing of it starts.
    Pause(control::GateArg),
    /// Resume a paused task or gate: what waits starts in its order.
    Resume(control::GateArg),
    /// The server's hosts, farms, queues and scheduled jobs.
    Status,
    /// Exit 0 when the server answers its healthcheck, 1 when not (for a
    /// container's HEALTHCHECK or a probe).
    Healthcheck,
    /// Take a Docker host out of rotation, or put it back.
    #[command(subcommand)]
    Hosts(control::HostsCommand),
}

/// Runs `command` against the server `args` name.
pub fn main(command: ClientCommand, args: ClientArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("fastlane: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(command, args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fastlane: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: ClientCommand, args: ClientArgs) -> anyhow::Result<ExitCode> {
    let server = Server::new(&args)?;
    match command {
        ClientCommand::Run(run) => run::run(&server, *run).await,
        ClientCommand::Logs(logs) => run::logs(&server, logs).await,
        ClientCommand::Jobs(jobs) => listing::jobs(&server, jobs).await,
        ClientCommand::Tasks(tasks) => listing::tasks(&server, tasks).await,
        ClientCommand::Job(job) => listing::job(&server, job).await,
        ClientCommand::Stop(job) => control::stop(&server, job).await,
        ClientCommand::Retry(job) => control::retry(&server, job).await,
        ClientCommand::Pause(gate) => control::pause(&server, gate, true).await,
        ClientCommand::Resume(gate) => control::pause(&server, gate, false).await,
        ClientCommand::Status => listing::status(&server).await,
        ClientCommand::Healthcheck => listing::healthcheck(&server).await,
        ClientCommand::Hosts(hosts) => control::hosts(&server, hosts).await,
    }
}

/// A server and the client that talks to it.
#[derive(Debug)]
pub struct Server {
    api: Client,
    base: String,
    token: Option<String>,
    output: Output,
}

impl Server {
    fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let base = args.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!(
                "--server (FASTLANE_URL) must be an http:// or https:// URL, not {:?}",
                args.server
            );
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = &args.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .context("--token (FASTLANE_TOKEN) holds characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            api: Client::new_with_client(&base, http),
            base,
            token: args.token.clone(),
            output: args.output,
        })
    }

    /// The live-log follower of a job, with this server's credentials.
    fn follow(&self, job: &JobRef, execution: Option<&str>) -> fastlane_client::follow::Follow {
        let follow = match execution {
            Some(id) => {
                fastlane_client::follow::Follow::execution(&self.base, &job.task, &job.job, id)
            }
            None => fastlane_client::follow::Follow::job(&self.base, &job.task, &job.job),
        };
        match &self.token {
            Some(token) => follow.bearer(token),
            None => follow,
        }
    }

    /// Prints `value` as JSON (for `--output json`).
    fn print_json<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        outln!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }
}

/// Writes `text` to stdout. A reader that went away (`fastlane … | head`)
/// ends the command quietly, as it ends `ls` or `grep`, instead of the
/// panic `print!` would raise.
pub fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(err) = written {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("fastlane: cannot write to stdout: {err}");
        std::process::exit(1);
    }
}

/// A job named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    task: String,
    job: String,
    /// The execution a pasted URL names (`…/executions/<id>…`).
    execution: Option<String>,
}

impl JobRef {
    /// `TASK/JOB_ID`, or a job URL (`…/tasks/TASK/jobs/JOB_ID[/…]`).
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut execution = None;
        let named = if text.contains("://") {
            text.find("/tasks/").and_then(|at| {
                let path = text[at + "/tasks/".len()..].split(['?', '#']).next()?;
                let mut segments = path.split('/');
                let task = segments.next()?;
                (segments.next()? == "jobs").then_some(())?;
                let job = segments.next()?;
                if segments.next() == Some("executions") {
                    execution = segments.next().filter(|id| !id.is_empty()).map(decode);
                }
                Some((task, job))
            })
        } else {
            text.split_once('/').filter(|(_, job)| !job.contains('/'))
        };
        match named {
            Some((task, job)) if !task.is_empty() && !job.is_empty() => Ok(Self {
                task: decode(task),
                job: decode(job),
                execution,
            }),
            _ => bail!(
                "{text:?} names no job: give TASK/JOB_ID or a job URL (…/tasks/TASK/jobs/JOB_ID)"
            ),
        }
    }
}

/// Percent-decodes a URL path segment.
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// The API's answer to a failed request, as a message that carries the
/// server's own words.
async fn api_error(err: fastlane_client::Error<types::ErrorBody>) -> anyhow::Error {
    use fastlane_client::Error;
    match err {
        Error::ErrorResponse(response) => {
            let status = response.status();
            anyhow::anyhow!("{} ({status})", response.into_inner().error)
        }
        Error::UnexpectedResponse(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            anyhow::anyhow!("{} ({status})", message.trim())
        }
        Error::CommunicationError(err) => {
            anyhow::Error::new(err).context("cannot reach the server")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::JobRef;

    fn job(task: &str, job: &str) -> JobRef {
        JobRef {
            task: task.to_owned(),
            job: job.to_owned(),
            execution: None,
        }
    }

    #[test]
    fn a_job_is_named_by_task_and_id_or_by_its_url() -> anyhow::Result<()> {
        assert_eq!(JobRef::parse("hello/4b1c")?, job("hello", "4b1c"));
        assert_eq!(
            JobRef::parse("http://localhost:10000/tasks/hello/jobs/4b1c")?,
            job("hello", "4b1c")
        );
        assert_eq!(
            JobRef::parse("https://fl.example/base/tasks/a%20b/jobs/4b1c/stdout?x=1")?,
            job("a b", "4b1c")
        );
        let execution = JobRef::parse("http://h:1/tasks/t/jobs/j/executions/e%201/stdout")?;
        assert_eq!(execution.execution.as_deref(), Some("e 1"));
        Ok(())
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_that_work() {
        for bad in ["hello", "/4b1c", "hello/", "http://localhost:10000/status"] {
            let err = JobRef::parse(bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("TASK/JOB_ID")),
                "{bad}: {err:?}"
            );
        }
    }
}
