//! Following a job from the terminal (`run --follow`, `logs -f`): the
//! container's stdout and stderr go to this process's stdout and stderr as
//! they are written, a one-line progress state goes to stderr when it is a
//! terminal (`enqueued`, `running on <host>`, `done in 0.8 s`), and the
//! command's exit code is the container's.
//!
//! Exit codes, when the job's last execution ended:
//!
//! | ended | exit code |
//! |---|---|
//! | `done`, `failed` with an exit code | the container's (0–255) |
//! | `failed` to start: the command is not in the image | 127 |
//! | `failed` to start: the command cannot be executed | 126 |
//! | `failed` before the command ran (unknown image, engine error) | 125 |
//! | `timedout` | 124 |
//! | `stopped` | 143 (128 + SIGTERM) |
//! | `expired` (never started in time) | 75 (`EX_TEMPFAIL`) |
//! | detached with Ctrl-C | 130 |

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use tokio::signal::unix::SignalKind;

use fastlane_client::follow::{Event, Stream};
use fastlane_client::types;

use anyhow::Context;

use super::{JobRef, Output, Server, control};

/// Exit code of a run that timed out (as `timeout(1)`).
pub const TIMEDOUT: u8 = 124;
/// Exit code of a run that failed before its command ran (as `docker run`).
pub const NOT_RUN: u8 = 125;
/// Exit code of a run whose command is not in the image (as a shell).
pub const COMMAND_NOT_FOUND: u8 = 127;
/// Exit code of a run whose command cannot be executed (as a shell).
pub const COMMAND_NOT_EXECUTABLE: u8 = 126;
/// Exit code of a stopped run: 128 + SIGTERM, as a shell reports it.
pub const STOPPED: u8 = 143;
/// Exit code of a run that expired before it started (`EX_TEMPFAIL`).
pub const EXPIRED: u8 = 75;
/// Exit code after detaching with Ctrl-C (128 + SIGINT).
pub const DETACHED: u8 = 130;

/// What `fastlane` exits with for a run that ended `status`.
pub fn exit_code(status: &str, exit_code: Option<i64>) -> u8 {
    match (status, exit_code) {
        ("done", _) => 0,
        ("timedout", _) => TIMEDOUT,
        ("stopped", _) => STOPPED,
        ("expired", _) => EXPIRED,
        (_, Some(code)) => u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1),
        (_, None) => NOT_RUN,
    }
}

/// The exit code of a run that failed to start, as `docker run` reports
/// it: 127 when the command is not in the image, 126 when it cannot be
/// executed, 125 otherwise.
pub fn start_failure(error: Option<&str>) -> u8 {
    let error = error.unwrap_or_default();
    if error.contains("executable file not found") || error.contains("no such file or directory") {
        COMMAND_NOT_FOUND
    } else if error.contains("permission denied") {
        COMMAND_NOT_EXECUTABLE
    } else {
        NOT_RUN
    }
}

/// What to do on Ctrl-C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Stop following; the job runs on.
    Detach,
    /// Stop the job, then follow it to its end.
    StopJob,
}

/// Which streams are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    /// stdout to stdout, stderr to stderr.
    Both,
    /// Only stderr, on stdout.
    StderrOnly,
}

/// Follows `job` (or one `execution` of it) until its log ends.
pub async fn follow(
    server: &Server,
    job: &JobRef,
    execution: Option<&str>,
    streams: Streams,
    on_interrupt: OnInterrupt,
) -> anyhow::Result<ExitCode> {
    let mut follow = server.follow(job, execution);
    let mut progress = Progress::new(server.output);
    let mut last_exit = None;
    let mut interrupted = false;
    // One listener for the whole follow: a Ctrl-C pressed while an event is
    // handled waits here instead of being lost.
    let mut interrupts = tokio::signal::unix::signal(SignalKind::interrupt())
        .map_err(|err| anyhow::anyhow!("cannot listen for Ctrl-C: {err}"))?;
    let reattach = format!("fastlane logs -f {}/{}", job.task, job.job);
    loop {
        let event = tokio::select! {
            event = follow.next() => event?,
            _ = interrupts.recv() => {
                if interrupted {
                    // A second Ctrl-C: leave at once, whatever the job does.
                    progress.clear();
                    eprintln!("fastlane: detached. Follow the job again with: {reattach}");
                    return Ok(ExitCode::from(DETACHED));
                }
                interrupted = true;
                match on_interrupt {
                    OnInterrupt::Detach => {
                        progress.clear();
                        eprintln!(
                            "fastlane: detached; the job runs on. Follow it again with: {reattach}"
                        );
                        return Ok(ExitCode::from(DETACHED));
                    }
                    OnInterrupt::StopJob => {
                        progress.say("stopping the job");
                        control::stop_job(server, job)
                            .await
                            .context("cannot stop the job")?;
                        continue;
                    }
                }
            }
        };
        let Some(event) = event else { break };
        let unwanted = matches!(
            (&event, streams),
            (
                Event::Output {
                    stream: Stream::Stdout | Stream::Notice,
                    ..
                },
                Streams::StderrOnly
            )
        );
        if server.output == Output::Json && !unwanted {
            print_json_event(&event);
        }
        match event {
            Event::Started {
                execution_id,
                status,
            } => {
                let host = if status == "running" {
                    host_of(server, job, &execution_id).await
                } else {
                    None
                };
                progress.say(&match host {
                    Some(host) => format!("{status} on {host}"),
                    None => status,
                });
            }
            Event::Output { stream, text } if server.output == Output::Table => {
                progress.clear();
                write_output(stream, streams, &text);
            }
            Event::Output { .. } => {}
            Event::Exited {
                execution_id,
                status,
                exit_code: code,
                error,
            } => {
                last_exit = Some(match code {
                    None if status == "failed" => start_failure(error.as_deref()),
                    _ => exit_code(&status, code),
                });
                let mut line = status.clone();
                if let Some(code) = code {
                    line.push_str(&format!(" (exit {code})"));
                }
                if let Some(took) = took(server, job, &execution_id).await {
                    line.push_str(&format!(" in {took}"));
                }
                if let Some(error) = error.filter(|_| status != "done") {
                    line.push_str(&format!(": {error}"));
                }
                progress.done(&line);
            }
            Event::Reconnecting { reason } => progress.say(&format!("reconnecting ({reason})")),
        }
    }
    Ok(ExitCode::from(last_exit.unwrap_or(NOT_RUN)))
}

fn write_output(stream: Stream, streams: Streams, text: &str) {
    let result = match (stream, streams) {
        (Stream::Stdout, Streams::Both) | (Stream::Stderr, Streams::StderrOnly) => {
            super::write_stdout(text);
            Ok(())
        }
        (Stream::Stderr | Stream::Notice, Streams::Both) => {
            let mut err = std::io::stderr().lock();
            err.write_all(text.as_bytes()).and_then(|()| err.flush())
        }
        (Stream::Stdout | Stream::Notice, Streams::StderrOnly) => Ok(()),
    };
    // stderr closed: nothing is left to tell.
    drop(result);
}

/// `--output json --follow`: each event as one JSON line.
fn print_json_event(event: &Event) {
    let value = match event {
        Event::Started {
            execution_id,
            status,
        } => serde_json::json!({"type": "start", "executionId": execution_id, "status": status}),
        Event::Output { stream, text } => {
            let stream = match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
                Stream::Notice => "notice",
            };
            serde_json::json!({"type": "log", "stream": stream, "text": text})
        }
        Event::Exited {
            execution_id,
            status,
            exit_code,
            error,
        } => serde_json::json!({
            "type": "exit", "executionId": execution_id, "status": status,
            "exitCode": exit_code, "error": error,
        }),
        Event::Reconnecting { reason } => {
            serde_json::json!({"type": "reconnecting", "reason": reason})
        }
    };
    outln!("{value}");
}

async fn execution(server: &Server, job: &JobRef, id: &str) -> Option<types::ExecutionDetails> {
    server
        .api
        .get_execution()
        .task_id(job.task.as_str())
        .job_id(job.job.as_str())
        .execution_id(id)
        .send()
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// The Docker host an execution runs on.
async fn host_of(server: &Server, job: &JobRef, id: &str) -> Option<String> {
    let details = execution(server, job, id).await?;
    details.execution.metadata["docker_host"]
        .as_str()
        .map(str::to_owned)
}

/// How long an execution ran, as `0.8 s` or `2 min 5 s`.
async fn took(server: &Server, job: &JobRef, id: &str) -> Option<String> {
    let details = execution(server, job, id).await?;
    let execution = details.execution;
    let millis = (execution.finished_at? - execution.started_at?).num_milliseconds();
    Some(if millis < 60_000 {
        format!("{:.1} s", millis as f64 / 1000.0)
    } else {
        format!("{} min {} s", millis / 60_000, (millis % 60_000) / 1000)
    })
}

/// The progress line on stderr, when stderr is a terminal and the output
/// is for people.
#[derive(Debug)]
struct Progress {
    shown: bool,
    /// A line is on screen that the next output overwrites.
    pending: bool,
}

impl Progress {
    fn new(output: Output) -> Self {
        Self {
            shown: output == Output::Table && std::io::stderr().is_terminal(),
            pending: false,
        }
    }

    /// Shows `state` in place of the last one.
    fn say(&mut self, state: &str) {
        if self.shown {
            eprint!("\r\x1b[2K⏵ {state}");
            self.pending = true;
        }
    }

    /// Removes the progress line before output is written.
    fn clear(&mut self) {
        if self.shown && self.pending {
            eprint!("\r\x1b[2K");
            self.pending = false;
        }
    }

    /// Shows how a run ended, on a line of its own.
    fn done(&mut self, line: &str) {
        if self.shown {
            self.clear();
            eprintln!("⏵ {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{EXPIRED, NOT_RUN, STOPPED, TIMEDOUT, exit_code, start_failure};

    #[test]
    fn the_command_exits_as_the_container_did() {
        assert_eq!(exit_code("done", Some(0)), 0);
        assert_eq!(exit_code("failed", Some(3)), 3);
        assert_eq!(exit_code("failed", Some(127)), 127);
        assert_eq!(exit_code("failed", Some(300)), 1);
    }

    #[test]
    fn runs_that_did_not_exit_have_their_own_codes() {
        assert_eq!(exit_code("timedout", Some(137)), TIMEDOUT);
        assert_eq!(exit_code("stopped", Some(143)), STOPPED);
        assert_eq!(exit_code("expired", None), EXPIRED);
        assert_eq!(exit_code("failed", None), NOT_RUN);
    }

    #[test]
    fn a_run_that_could_not_start_exits_as_docker_run_does() {
        let missing = "exec: \"nosuchcmd\": executable file not found in $PATH";
        assert_eq!(start_failure(Some(missing)), 127);
        assert_eq!(
            start_failure(Some("exec: \"/etc\": permission denied")),
            126
        );
        assert_eq!(start_failure(Some("no such image")), NOT_RUN);
        assert_eq!(start_failure(None), NOT_RUN);
    }
}
