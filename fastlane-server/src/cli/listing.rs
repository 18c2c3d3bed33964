//! The commands that read: `tasks ls`, `jobs ls`, `job show` and `status`.
//! Tables for people; `--output json` prints what the API answered.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use fastlane_client::types;
use futures_util::{StreamExt, TryStreamExt};

use super::table::Table;
use super::{JobRef, Output, Server, api_error};

/// `fastlane tasks …`.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks, oldest first, a page at a time.
    Ls {
        /// Only tasks whose id holds this word.
        #[arg(long, value_name = "WORD")]
        search: Option<String>,
        /// The page, from 1.
        #[arg(long, default_value_t = 1)]
        page: u64,
    },
}

/// `fastlane jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List a task's jobs, most recently changed first, with the status of
    /// each one's newest execution.
    Ls(JobsLs),
}

/// `fastlane jobs ls`'s options.
#[derive(Debug, Args)]
pub struct JobsLs {
    /// The task.
    task: String,
    /// Only jobs whose newest execution has this status (`enqueued`,
    /// `running`, `done`, `failed`, `timedout`, `stopped`, `expired`).
    #[arg(long)]
    status: Option<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

/// `fastlane job …`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// A job's spec and its executions.
    Show {
        /// The job: TASK/JOB_ID or its URL.
        job: String,
    },
}

/// Requests in flight at once when a listing reads each job.
const READ_AHEAD: usize = 8;

/// `fastlane tasks ls`.
pub async fn tasks(server: &Server, command: TasksCommand) -> anyhow::Result<ExitCode> {
    let TasksCommand::Ls { search, page } = command;
    let page =
        std::num::NonZeroU64::new(page).ok_or_else(|| anyhow::anyhow!("--page counts from 1"))?;
    let answer = match &search {
        Some(word) => {
            let search = server.api.search_tasks().query(word.as_str());
            search.page(page).send().await
        }
        None => server.api.list_tasks().page(page).send().await,
    };
    let page = match answer {
        Ok(page) => page.into_inner(),
        Err(err) => return Err(api_error(err).await),
    };
    if server.output == Output::Json {
        server.print_json(&page)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["TASK", "JOBS", "CREATED", "LAST CHANGED"]);
    for task in &page.items {
        table.row([
            task.task_id.clone(),
            task.jobs_count.to_string(),
            time(&task.created_at),
            time(&task.last_modified_at),
        ]);
    }
    table.print();
    if page.pages > 1 {
        eprintln!(
            "page {} of {} ({} tasks); see others with --page",
            page.page, page.pages, page.total
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `fastlane jobs ls`.
pub async fn jobs(server: &Server, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let JobsCommand::Ls(args) = command;
    let task = server
        .api
        .get_task()
        .task_id(args.task.as_str())
        .send()
        .await;
    let task = match task {
        Ok(task) => task.into_inner(),
        Err(err) => return Err(api_error(err).await),
    };
    // The task lists ids; each job's view has its newest execution.
    let wanted = args.status.as_deref();
    let task_id = args.task.as_str();
    let jobs: Vec<types::JobView> = futures_util::stream::iter(&task.jobs)
        .map(|listed| async move {
            let job = server
                .api
                .get_job()
                .task_id(task_id)
                .job_id(listed.id.as_str())
                .send()
                .await;
            match job {
                Ok(job) => Ok(Some(job.into_inner().job)),
                Err(err) if err.status().is_some_and(|s| s == 404) => Ok(None),
                Err(err) => Err(api_error(err).await),
            }
        })
        .buffered(READ_AHEAD)
        .try_filter_map(|job| async move { Ok(job) })
        .try_filter(|job| {
            let keep = wanted.is_none_or(|status| newest_status(job) == status);
            async move { keep }
        })
        .take(args.limit)
        .try_collect()
        .await?;
    if server.output == Output::Json {
        server.print_json(&jobs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        "JOB", "STATUS", "EXIT", "RUNS", "CREATED", "IMAGE", "COMMAND",
    ]);
    for job in &jobs {
        let newest = job.executions.first();
        table.row([
            job.job_id.clone(),
            newest_status(job).to_owned(),
            newest
                .and_then(|e| e.exit_code)
                .map_or_else(String::new, |c| c.to_string()),
            job.execution_count.to_string(),
            time(&job.created_at),
            job.image.clone(),
            job.command.clone(),
        ]);
    }
    table.print();
    Ok(ExitCode::SUCCESS)
}

/// The status of a job's newest execution (`scheduled` before its first).
fn newest_status(job: &types::JobView) -> &str {
    match job.executions.first() {
        Some(execution) => status_word(execution.status),
        None if job.scheduled => "scheduled",
        None => "none",
    }
}

fn status_word(status: types::StatusView) -> &'static str {
    use types::StatusView as S;
    match status {
        S::Enqueued => "enqueued",
        S::Pulling => "pulling",
        S::Running => "running",
        S::Done => "done",
        S::Failed => "failed",
        S::Timedout => "timedout",
        S::Expired => "expired",
        S::Stopped => "stopped",
    }
}

/// `fastlane job show`.
pub async fn job(server: &Server, command: JobCommand) -> anyhow::Result<ExitCode> {
    let JobCommand::Show { job } = command;
    let job = JobRef::parse(&job)?;
    let details = server
        .api
        .get_job()
        .task_id(job.task.as_str())
        .job_id(job.job.as_str())
        .send()
        .await;
    let job = match details {
        Ok(details) => details.into_inner().job,
        Err(err) => return Err(api_error(err).await),
    };
    if server.output == Output::Json {
        server.print_json(&job)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut about = Table::new(&["JOB", &job.job_id]);
    about.row(["task", job.task_id.as_str()]);
    about.row(["url", job.url.as_str()]);
    about.row(["image", job.image.as_str()]);
    about.row(["command", job.command.as_str()]);
    about.row(["created", time(&job.created_at).as_str()]);
    if let Some(envs) = job.metadata["envs"].as_object().filter(|e| !e.is_empty()) {
        let envs: Vec<String> = envs
            .iter()
            .map(|(name, value)| format!("{name}={}", value.as_str().unwrap_or_default()))
            .collect();
        about.row(["envs", envs.join(" ").as_str()]);
    }
    for field in ["retries", "timeout", "cron"] {
        if let Some(value) = job.metadata.get(field).filter(|v| !v.is_null()) {
            about.row([
                field.to_owned(),
                value.to_string().trim_matches('"').to_owned(),
            ]);
        }
    }
    about.print();
    outln!();
    let mut runs = Table::new(&[
        "EXECUTION",
        "STATUS",
        "EXIT",
        "HOST",
        "STARTED",
        "TOOK",
        "ERROR",
    ]);
    for execution in &job.executions {
        let took = match (execution.started_at, execution.finished_at) {
            (Some(start), Some(end)) => {
                format!("{:.1} s", (end - start).num_milliseconds() as f64 / 1000.0)
            }
            _ => String::new(),
        };
        runs.row([
            execution.execution_id.clone(),
            status_word(execution.status).to_owned(),
            execution
                .exit_code
                .map_or_else(String::new, |c| c.to_string()),
            execution.metadata["docker_host"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            execution.started_at.as_ref().map(time).unwrap_or_default(),
            took,
            execution.error.clone().unwrap_or_default(),
        ]);
    }
    runs.print();
    Ok(ExitCode::SUCCESS)
}

/// `fastlane healthcheck`.
pub async fn healthcheck(server: &Server) -> anyhow::Result<ExitCode> {
    match server.api.healthcheck().send().await {
        Ok(_) => {
            outln!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Err(fastlane_client::Error::ErrorResponse(answer)) => {
            anyhow::bail!("the server is not healthy ({})", answer.status())
        }
        Err(err) => Err(anyhow::Error::new(err).context("the server is not healthy")),
    }
}

/// `fastlane status`.
pub async fn status(server: &Server) -> anyhow::Result<ExitCode> {
    let status = match server.api.status().send().await {
        Ok(status) => status.into_inner(),
        Err(err) => return Err(api_error(err).await),
    };
    if server.output == Output::Json {
        server.print_json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "fastlane {} ({} executor): tasks {}, jobs {}, running containers {}",
        status.fastlane.version,
        status.fastlane.executor,
        status.tasks.count,
        status.jobs.count,
        status.containers.running.len()
    );
    outln!();
    let mut hosts = Table::new(&["HOST", "FARM", "STATE", "CIRCUIT", "RUNNING", "ERROR"]);
    for host in &status.hosts {
        let state = if host.blacklisted {
            "blacklisted"
        } else if host.available {
            "available"
        } else {
            "unavailable"
        };
        hosts.row([
            host.host.clone(),
            host.farm.clone(),
            state.to_owned(),
            host.circuit.clone(),
            host.running.to_string(),
            host.error.clone().unwrap_or_default(),
        ]);
    }
    hosts.print();
    outln!();
    let mut queues = Table::new(&["QUEUE", "LENGTH"]);
    let mut names: Vec<&String> = status.queues.keys().collect();
    names.sort();
    for name in names {
        queues.row([name.clone(), status.queues[name].length.to_string()]);
    }
    for limit in &status.limits {
        queues.row([
            limit.gate.clone(),
            format!("{} running, {} waiting", limit.running, limit.waiting),
        ]);
    }
    queues.print();
    if !status.jobs.scheduled.is_empty() {
        outln!();
        let mut scheduled = Table::new(&["SCHEDULED JOB", "TASK", "NEXT RUN", "CRON", "COMMAND"]);
        for job in &status.jobs.scheduled {
            scheduled.row([
                job.job_id.clone(),
                job.task.id.clone(),
                time(&job.next_scheduled_at),
                job.cron.clone().unwrap_or_default(),
                job.command.clone(),
            ]);
        }
        scheduled.print();
    }
    Ok(ExitCode::SUCCESS)
}

/// A time for people: UTC, to the second.
fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}
