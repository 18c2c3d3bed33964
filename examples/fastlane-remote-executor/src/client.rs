//! The remote server's HTTP API as the executor uses it: submit a job,
//! stop an execution, read its output, ask after its health, follow its
//! log. Every answer that is not a success becomes a [`PluginError`] of the
//! kind the server acts on: the remote server down or overloaded is
//! `Unavailable`, a 5xx is `Retryable`, a 404 is `NotFound`, another 4xx
//! `Permanent` with the remote server's own message.

use std::fmt;
use std::time::Duration;

use fastlane_client::follow::{Follow, FollowError};
use fastlane_sdk::PluginError;
use reqwest::{Response, StatusCode, header};

use crate::config::RemoteConfig;

/// The most of a remote error answer kept in an error message.
const ERROR_BYTES: usize = 4096;

/// How long opening a connection to the remote server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the live-log follower keeps trying a remote server it lost
/// before `wait` and `follow` give up (and the server tries them again).
const FOLLOW_PATIENCE: Duration = Duration::from_secs(60);

/// A run on the remote server: its task, job and execution ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRun {
    pub task: String,
    pub job: String,
    pub execution: String,
}

impl RemoteRun {
    /// The id stored in the run's handle: `<task>/<job>/<execution>` (task
    /// ids and UUIDs hold no `/`).
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.task, self.job, self.execution)
    }

    /// The run a handle's id names; `NotFound` for one this executor never
    /// made.
    pub fn parse(id: &str) -> Result<Self, PluginError> {
        let mut parts = id.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(task), Some(job), Some(execution), None)
                if [task, job, execution].iter().all(|p| !p.is_empty()) =>
            {
                Ok(Self {
                    task: task.to_owned(),
                    job: job.to_owned(),
                    execution: execution.to_owned(),
                })
            }
            _ => Err(PluginError::not_found(format!(
                "{id:?} is not a run of the remote executor (<task>/<job>/<execution>)"
            ))),
        }
    }
}

/// The remote server.
pub struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What a submission answers, in part.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    task_id: String,
    job_id: String,
    execution_id: String,
}

impl Remote {
    /// A client of the server `config` names.
    pub fn new(config: &RemoteConfig) -> Result<Self, PluginError> {
        let mut headers = header::HeaderMap::new();
        if let Some(token) = &config.token {
            let mut value =
                header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    PluginError::invalid_config("remote: `token` is not a header value")
                })?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(config.request_timeout())
            .build()
            .map_err(|err| {
                PluginError::invalid_config(format!("remote: cannot build an HTTP client: {err}"))
            })?;
        Ok(Self {
            base: config.url.clone(),
            token: config.token.clone(),
            http,
        })
    }

    fn url(&self, run: &RemoteRun, tail: &str) -> String {
        format!(
            "{}/tasks/{}/jobs/{}/executions/{}{tail}",
            self.base, run.task, run.job, run.execution
        )
    }

    /// Submits `job` to `task`, keyed by `key`: the same key finds the job
    /// the first submission made.
    pub async fn submit(
        &self,
        task: &str,
        key: &str,
        job: &serde_json::Value,
    ) -> Result<RemoteRun, PluginError> {
        let url = format!("{}/tasks/{task}", self.base);
        let sent = self
            .http
            .post(&url)
            .header("Idempotency-Key", key)
            .json(job)
            .send()
            .await;
        let created: Created = self
            .answer("submitting the job", sent)
            .await?
            .json()
            .await
            .map_err(|err| transport("reading the submission's answer", &err))?;
        Ok(RemoteRun {
            task: created.task_id,
            job: created.job_id,
            execution: created.execution_id,
        })
    }

    /// Stops the remote execution (the remote server's own grace applies).
    pub async fn stop(&self, run: &RemoteRun) -> Result<(), PluginError> {
        let sent = self.http.post(self.url(run, "/stop")).send().await;
        self.answer("stopping the execution", sent).await?;
        Ok(())
    }

    /// Whether the remote server answers its health check.
    pub async fn health(&self) -> Result<(), String> {
        let sent = self
            .http
            .get(format!("{}/healthcheck", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match self.answer("checking its health", sent).await {
            Ok(_) => Ok(()),
            Err(err) => Err(err.message().to_owned()),
        }
    }

    /// A follower of the remote execution's live log, from its first byte.
    pub fn follow(&self, run: &RemoteRun) -> Follow {
        let follow = Follow::execution(&self.base, &run.task, &run.job, &run.execution)
            .patience(FOLLOW_PATIENCE);
        match &self.token {
            Some(token) => follow.bearer(token),
            None => follow,
        }
    }

    /// The response of a request that succeeded, or the error its answer
    /// (or its failure) means.
    async fn answer(
        &self,
        what: &str,
        sent: Result<Response, reqwest::Error>,
    ) -> Result<Response, PluginError> {
        let response = sent.map_err(|err| transport(what, &err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // The remote server's errors are JSON with an `error` field; what
        // is kept of an answer is bounded.
        let body = response.text().await.unwrap_or_default();
        let said = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        let (said, _) = fastlane_sdk::text::truncate(&said, ERROR_BYTES);
        let message = format!("{} answered {status} {what}: {said}", self.base);
        Err(match status {
            StatusCode::NOT_FOUND => PluginError::not_found(message),
            // Credentials the remote server no longer takes: work waits
            // for an operator instead of failing.
            StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::TOO_MANY_REQUESTS
            | StatusCode::SERVICE_UNAVAILABLE => PluginError::unavailable(message),
            // An idempotency key whose first answer has just expired: the
            // request may be sent again.
            StatusCode::CONFLICT if said.contains("send the request again") => {
                PluginError::retryable(message)
            }
            s if s.is_server_error() => PluginError::retryable(message),
            _ => PluginError::permanent(message),
        })
    }
}

/// The error of a request that got no answer: `Unavailable` when the
/// remote server could not be reached (work waits for it), `Retryable`
/// otherwise (a timeout, a connection cut halfway).
fn transport(what: &str, err: &reqwest::Error) -> PluginError {
    let message = format!("{what}: {err}");
    if err.is_connect() {
        PluginError::unavailable(message)
    } else {
        PluginError::retryable(message)
    }
}

/// The error of a follower that stopped.
pub fn followed(err: FollowError) -> PluginError {
    let message = err.to_string();
    match err {
        FollowError::NotFound => PluginError::not_found(message),
        // A refused socket (credentials taken back, too many sockets open
        // there) and a lost server both mean: wait, and ask again. A run
        // going on there is not given up on for it.
        FollowError::Refused(_) | FollowError::Lost { .. } => PluginError::unavailable(message),
        FollowError::BadUrl(_) => PluginError::permanent(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_round_trips_and_a_foreign_one_is_not_found() -> Result<(), PluginError> {
        let run = RemoteRun {
            task: "gpu-train".into(),
            job: "0b9e".into(),
            execution: "77f1".into(),
        };
        assert_eq!(RemoteRun::parse(&run.id())?, run);
        for foreign in ["compliance-1", "a/b", "a/b/c/d", "a//c"] {
            let err = RemoteRun::parse(foreign).expect_err(foreign);
            assert_eq!(err.kind(), fastlane_sdk::ErrorKind::NotFound, "{foreign}");
        }
        Ok(())
    }
}
