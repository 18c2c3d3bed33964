//! The commands that act: `stop`, `retry`, `pause`, `resume` and
//! `hosts blacklist|restore`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use fastlane_client::types;

use super::{JobRef, Output, Server, api_error};

/// A command's job argument.
#[derive(Debug, Args)]
pub struct JobArg {
    /// The job: TASK/JOB_ID or its URL.
    job: String,
}

/// What `pause` and `resume` act on: a task, or a gate.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GateArg {
    /// The task id.
    task: Option<String>,
    /// A gate as `fastlane status` lists it under limits, e.g.
    /// 'pool:docker:farm ""' or key:customer-42.
    #[arg(long)]
    gate: Option<String>,
}

/// `fastlane pause` (`pause`) and `fastlane resume`.
pub async fn pause(server: &Server, arg: GateArg, pause: bool) -> anyhow::Result<ExitCode> {
    let done = if pause { "paused" } else { "resumed" };
    let answer = match (&arg.task, &arg.gate, pause) {
        (Some(task), _, true) => server.api.pause_task().task_id(task).send().await,
        (Some(task), _, false) => server.api.resume_task().task_id(task).send().await,
        (None, Some(gate), true) => {
            let body = types::GateRequest { gate: gate.clone() };
            server.api.pause_gate().body(body).send().await
        }
        (None, Some(gate), false) => {
            let body = types::GateRequest { gate: gate.clone() };
            server.api.resume_gate().body(body).send().await
        }
        (None, None, _) => anyhow::bail!("name a task, or a gate with --gate"),
    };
    let state = match answer {
        Ok(state) => state.into_inner(),
        Err(err) => return Err(api_error(err).await.context(format!("nothing was {done}"))),
    };
    match server.output {
        Output::Json => server.print_json(&state)?,
        Output::Table => {
            let already = if state.changed {
                ""
            } else {
                " (it already was)"
            };
            outln!("{done} {}{already}: {} waiting", state.gate, state.waiting);
            if state.all_paused.is_empty() {
                outln!("nothing is paused");
            } else {
                outln!("paused: {}", state.all_paused.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `fastlane hosts …`.
#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Take a host out of rotation: nothing new starts on it.
    Blacklist {
        /// The host as the server's DOCKER_HOSTS names it.
        host: String,
    },
    /// Put a blacklisted host back in rotation.
    Restore {
        /// The host as the server's DOCKER_HOSTS names it.
        host: String,
    },
}

/// `fastlane stop`.
pub async fn stop(server: &Server, arg: JobArg) -> anyhow::Result<ExitCode> {
    let job = JobRef::parse(&arg.job)?;
    let stopped = stop_job(server, &job)
        .await
        .context("the job was not stopped")?;
    controlled(server, "stopped", &stopped)
}

/// Asks the server to stop `job`, with the API's message on refusal.
pub async fn stop_job(server: &Server, job: &JobRef) -> anyhow::Result<types::JobControlled> {
    let stopped = server
        .api
        .stop_job()
        .task_id(job.task.as_str())
        .job_id(job.job.as_str())
        .send()
        .await;
    match stopped {
        Ok(stopped) => Ok(stopped.into_inner()),
        Err(err) => Err(api_error(err).await),
    }
}

/// `fastlane retry`.
pub async fn retry(server: &Server, arg: JobArg) -> anyhow::Result<ExitCode> {
    let job = JobRef::parse(&arg.job)?;
    let retried = server
        .api
        .retry_job()
        .task_id(job.task.as_str())
        .job_id(job.job.as_str())
        .send()
        .await;
    match retried {
        Ok(retried) => controlled(server, "retried", &retried.into_inner()),
        Err(err) => Err(api_error(err).await.context("the job was not retried")),
    }
}

fn controlled(server: &Server, done: &str, job: &types::JobControlled) -> anyhow::Result<ExitCode> {
    match server.output {
        Output::Json => server.print_json(job)?,
        Output::Table => match &job.execution_url {
            Some(execution) => outln!("{done} {}: new execution {execution}", job.job_url),
            None => outln!("{done} {}", job.job_url),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// `fastlane hosts`.
pub async fn hosts(server: &Server, command: HostsCommand) -> anyhow::Result<ExitCode> {
    let (answer, done) = match &command {
        HostsCommand::Blacklist { host } => {
            let body = types::HostRequest { host: host.clone() };
            let answer = server.api.blacklist_host().body(body).send().await;
            (answer, "blacklisted")
        }
        HostsCommand::Restore { host } => {
            let body = types::HostRequest { host: host.clone() };
            let answer = server.api.unblacklist_host().body(body).send().await;
            (answer, "restored")
        }
    };
    let blacklist = match answer {
        Ok(blacklist) => blacklist.into_inner(),
        Err(err) => {
            return Err(api_error(err)
                .await
                .context(format!("the host was not {done}")));
        }
    };
    match server.output {
        Output::Json => server.print_json(&blacklist)?,
        Output::Table => {
            outln!("{done} {}", blacklist.host);
            if blacklist.blacklisted.is_empty() {
                outln!("no host is blacklisted");
            } else {
                outln!("blacklisted: {}", blacklist.blacklisted.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
