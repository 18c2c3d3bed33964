//! The README's quick start through the generated client: submits
//! `echo it works` as a job, waits for the job's last execution to finish,
//! reads its stdout, and prints the status, the exit code and the stdout:
//!
//! ```console
//! $ fastlane-quickstart http://localhost:10000 busybox
//! done 0
//! it works
//! ```
//!
//! Run with `cargo run -p fastlane-client --bin fastlane-quickstart -- [BASE_URL] [IMAGE]`
//! (defaults: `http://localhost:10000` and `busybox`) while a server runs
//! (`scripts/standalone.sh`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fastlane_client::{Client, types};

/// The task the job is submitted to.
const TASK: &str = "rust-client";
/// How long the job may take, pulling its image included.
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://localhost:10000".to_owned());
    let image = args.next().unwrap_or_else(|| "busybox".to_owned());
    let client = Client::new(base.trim_end_matches('/'));

    let created = client
        .create_job()
        .task_id(TASK)
        .body(
            types::JobRequest::builder()
                .image(image)
                .command("echo it works"),
        )
        .send()
        .await
        .context("submitting the job")?;
    eprintln!("submitted: {}", created.job_url);

    let execution = finished(&client, &created.job_id).await?;
    let stdout = client
        .get_job_stdout()
        .task_id(TASK)
        .job_id(created.job_id.as_str())
        .send()
        .await
        .context("reading the job's stdout")?;
    let stdout = fastlane_client::text(stdout.into_inner())
        .await
        .context("reading the job's stdout")?;

    let exit_code = execution
        .exit_code
        .map_or_else(|| "None".to_owned(), |code| code.to_string());
    println!("{} {exit_code}", execution.status);
    print!("{stdout}");
    Ok(())
}

/// Polls the job until its last execution is no longer enqueued, pulling or
/// running, and returns that execution.
async fn finished(client: &Client, job_id: &str) -> anyhow::Result<types::ExecutionView> {
    use types::StatusView::{Enqueued, Pulling, Running};
    let deadline = Instant::now() + LIMIT;
    loop {
        let details = client
            .get_job()
            .task_id(TASK)
            .job_id(job_id)
            .send()
            .await
            .context("reading the job")?
            .into_inner();
        // Executions come newest first.
        if let Some(last) = details.job.executions.into_iter().next()
            && !matches!(last.status, Enqueued | Pulling | Running)
        {
            return Ok(last);
        }
        if Instant::now() > deadline {
            bail!("job {job_id} did not finish within {LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
