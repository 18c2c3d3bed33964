//! Following a job's log live: [`Follow`] reads the WebSocket routes
//! (`…/ws?format=json`) and turns their frames into [`Event`]s, resuming at
//! the last byte offset after a dropped connection (a restarted server, a
//! proxy's idle timeout), so no line is lost or shown twice.
//!
//! On a job, it follows the job's executions in turn: when one ends and the
//! job retries, the next one's output follows; it ends when the job's newest
//! execution has ended. On one execution (`Follow::execution`), it ends with
//! that execution.
//!
//! ```no_run
//! # async fn run() -> Result<(), fastlane_client::follow::FollowError> {
//! use fastlane_client::follow::{Event, Follow, Stream};
//!
//! let mut follow = Follow::job("http://localhost:10000", "hello-world", "4b1c…");
//! while let Some(event) = follow.next().await? {
//!     match event {
//!         Event::Output { stream: Stream::Stdout, text } => print!("{text}"),
//!         Event::Output { text, .. } => eprint!("{text}"),
//!         Event::Exited { status, exit_code, .. } => println!("{status} {exit_code:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Which output a piece of log came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
    /// A line fastlane wrote into the log (a cap reached, a host lost).
    Notice,
}

/// What happened in the followed log.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An execution's log starts (or resumes) streaming: `status` is its
    /// status then (`enqueued` and `pulling` mean it has not started).
    Started {
        /// The execution.
        execution_id: String,
        /// Its status when the socket opened.
        status: String,
    },
    /// Output the execution wrote.
    Output {
        /// Where it was written.
        stream: Stream,
        /// The text.
        text: String,
    },
    /// The execution ended.
    Exited {
        /// The execution.
        execution_id: String,
        /// Its final status: `done`, `failed`, `timedout`, `stopped`, `expired`.
        status: String,
        /// Its container's exit code, when it ran.
        exit_code: Option<i64>,
        /// Why it failed, when fastlane knows.
        error: Option<String>,
    },
    /// The connection dropped; the follower reconnects and resumes.
    Reconnecting {
        /// Why it dropped.
        reason: String,
    },
}

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The base URL is not `http://` or `https://`.
    #[error("cannot follow logs at {0}: the server URL must start with http:// or https://")]
    BadUrl(String),
    /// The job (or execution) does not exist.
    #[error("no such job or execution")]
    NotFound,
    /// The server refused the socket (authentication, a bad parameter, too
    /// many sockets) and retrying will not help.
    #[error("the server refused the live log: {0}")]
    Refused(String),
    /// The server could not be reached for longer than the follower waits.
    #[error("lost the server for {waited:?}: {reason}")]
    Lost {
        /// How long it tried.
        waited: Duration,
        /// The last error.
        reason: String,
    },
}

/// One frame of the `format=json` protocol.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Frame {
    Start {
        #[serde(rename = "executionId")]
        execution_id: String,
        status: String,
        from: u64,
    },
    Log {
        next: u64,
        stream: Stream,
        text: String,
    },
    Exit {
        status: String,
        #[serde(rename = "exitCode")]
        exit_code: Option<i64>,
        error: Option<String>,
        next: u64,
    },
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Follows a job's (or one execution's) log; see the module documentation.
#[derive(Debug)]
pub struct Follow {
    /// `ws(s)://…/tasks/<task>/jobs/<job>[/executions/<id>]/ws`.
    socket_url: String,
    /// A fixed execution (it ends with it) rather than the job's newest.
    fixed_execution: bool,
    authorization: Option<HeaderValue>,
    /// How long a lost server is retried before giving up.
    patience: Duration,
    /// How often a job that has not started is asked again.
    poll: Duration,
    socket: Option<Socket>,
    pending: VecDeque<Event>,
    /// The execution being streamed, and the offset reached in its log.
    current: Option<String>,
    from: u64,
    /// The execution whose `exit` frame was seen.
    exited: Option<String>,
    /// The socket now open was opened to check, after an exit, whether the
    /// job moved on: if it shows the same execution, the job has ended.
    checking: bool,
    ended: bool,
    /// Since when the server has not answered.
    lost_since: Option<Instant>,
    /// The status last reported by a [`Event::Started`].
    status: Option<String>,
    /// A base URL that is not HTTP, reported by the first [`Follow::next`].
    bad_url: Option<String>,
    /// The job moved on to another execution while the connection was
    /// down: the rest of the current one is read from its own route first.
    catching_up: bool,
    /// The socket is to be dropped and opened again.
    reconnect: bool,
    /// A connection succeeded once: until then, a wrong address fails fast.
    connected_once: bool,
}

/// How long a socket may stay silent before it is opened again (resuming):
/// a connection that died without a close (a lost network, a sleeping
/// laptop) must not hang the follower.
const SILENCE: Duration = Duration::from_secs(60);
/// How long opening a socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server never reached is retried.
const FIRST_PATIENCE: Duration = Duration::from_secs(10);

impl Follow {
    /// Follows the job's executions, newest first, in turn.
    pub fn job(base_url: &str, task_id: &str, job_id: &str) -> Self {
        let path = format!("/tasks/{}/jobs/{}/ws", segment(task_id), segment(job_id));
        Self::new(base_url, path, false)
    }

    /// Follows one execution of a job, until it ends.
    pub fn execution(base_url: &str, task_id: &str, job_id: &str, execution_id: &str) -> Self {
        let path = format!(
            "/tasks/{}/jobs/{}/executions/{}/ws",
            segment(task_id),
            segment(job_id),
            segment(execution_id)
        );
        Self::new(base_url, path, true)
    }

    fn new(base_url: &str, path: String, fixed_execution: bool) -> Self {
        let base = base_url.trim_end_matches('/');
        let socket_url = if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}{path}")
        } else if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}{path}")
        } else {
            String::new()
        };
        Self {
            bad_url: socket_url.is_empty().then(|| base_url.to_owned()),
            socket_url,
            fixed_execution,
            authorization: None,
            patience: Duration::from_secs(300),
            poll: Duration::from_secs(1),
            socket: None,
            pending: VecDeque::new(),
            current: None,
            from: 0,
            exited: None,
            checking: false,
            ended: false,
            lost_since: None,
            status: None,
            catching_up: false,
            reconnect: false,
            connected_once: false,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every handshake.
    #[must_use]
    pub fn bearer(mut self, token: &str) -> Self {
        self.authorization =
            HeaderValue::from_str(&format!("Bearer {token}"))
                .ok()
                .map(|mut value| {
                    // Kept out of `Debug`.
                    value.set_sensitive(true);
                    value
                });
        self
    }

    /// Sends this `Authorization` header value with every handshake
    /// (`Basic …`, for example).
    #[must_use]
    pub fn authorization(mut self, value: HeaderValue) -> Self {
        self.authorization = Some(value);
        self
    }

    /// How long an unreachable server is retried before [`FollowError::Lost`]
    /// (5 minutes by default).
    #[must_use]
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Resumes an execution's log at a byte offset (a `next` seen before).
    #[must_use]
    pub fn resume(mut self, execution_id: &str, from: u64) -> Self {
        self.current = Some(execution_id.to_owned());
        self.from = from;
        self
    }

    /// The execution being followed, and the offset its log was read to:
    /// what [`Follow::resume`] takes to carry on later.
    pub fn position(&self) -> Option<(&str, u64)> {
        self.current.as_deref().map(|id| (id, self.from))
    }

    /// The next event; `None` once the log has ended.
    pub async fn next(&mut self) -> Result<Option<Event>, FollowError> {
        if let Some(url) = self.bad_url.take() {
            return Err(FollowError::BadUrl(url));
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            if std::mem::take(&mut self.reconnect) {
                self.socket = None;
            }
            let Some(socket) = self.socket.as_mut() else {
                self.connect().await?;
                continue;
            };
            let Ok(message) = tokio::time::timeout(SILENCE, socket.next()).await else {
                // Silent for a minute: open again where the log was left.
                self.socket = None;
                continue;
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    // Patience runs from the last frame, not the last
                    // handshake: a server that accepts and then closes at
                    // once (its store failing) makes no progress.
                    self.lost_since = None;
                    self.frame(text.as_str());
                }
                Some(Ok(Message::Close(close))) => {
                    self.socket = None;
                    self.closed(close).await?;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    self.socket = None;
                    self.lost(err.to_string()).await?;
                }
                None => {
                    self.socket = None;
                    self.lost("the connection closed".to_owned()).await?;
                }
            }
        }
    }

    /// Opens a socket, resuming where the log was left.
    async fn connect(&mut self) -> Result<(), FollowError> {
        let mut url = match (&self.current, self.catching_up) {
            // The rest of an execution the job has moved on from.
            (Some(execution), true) => format!(
                "{}/executions/{}/ws?format=json",
                self.socket_url
                    .strip_suffix("/ws")
                    .unwrap_or(&self.socket_url),
                segment(execution)
            ),
            _ => format!("{}?format=json", self.socket_url),
        };
        if let Some(execution) = &self.current {
            url.push_str(&format!("&from={}", self.from));
            if !self.fixed_execution && !self.catching_up {
                url.push_str(&format!("&execution={}", segment(execution)));
            }
        }
        let mut request = match url.as_str().into_client_request() {
            Ok(request) => request,
            Err(err) => return Err(FollowError::Refused(err.to_string())),
        };
        if let Some(value) = &self.authorization {
            request.headers_mut().insert("authorization", value.clone());
        }
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request));
        let Ok(connected) = connected.await else {
            return self
                .lost("opening the connection timed out".to_owned())
                .await;
        };
        match connected {
            Ok((socket, _)) => {
                self.socket = Some(socket);
                self.connected_once = true;
                Ok(())
            }
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status();
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or(body);
                if status.is_server_error() {
                    self.lost(format!("{status}: {message}")).await
                } else {
                    Err(FollowError::Refused(format!("{status}: {message}")))
                }
            }
            Err(err) => self.lost(err.to_string()).await,
        }
    }

    fn frame(&mut self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            return;
        };
        match frame {
            Frame::Start {
                execution_id,
                status,
                from,
            } => {
                let same = self.current.as_deref() == Some(execution_id.as_str());
                if self.checking && same && self.exited.as_deref() == Some(&execution_id) {
                    // The job has not moved on: its newest execution ended.
                    self.ended = true;
                    self.checking = false;
                    return;
                }
                self.checking = false;
                if !same
                    && !self.fixed_execution
                    && !self.catching_up
                    && self.current.is_some()
                    && self.exited != self.current
                {
                    // The job moved on while we were away: read the end of
                    // the execution we were following before the next one.
                    self.catching_up = true;
                    self.reconnect = true;
                    return;
                }
                self.from = from;
                let fresh = !same || self.status.as_deref() != Some(&status);
                self.current = Some(execution_id.clone());
                self.status = Some(status.clone());
                // A finished execution is told by its `Exited` event.
                if fresh && !is_final(&status) {
                    self.pending.push_back(Event::Started {
                        execution_id,
                        status,
                    });
                }
            }
            Frame::Log { next, stream, text } => {
                if next > self.from {
                    self.from = next;
                    self.pending.push_back(Event::Output { stream, text });
                }
            }
            Frame::Exit {
                status,
                exit_code,
                error,
                next,
            } => {
                self.from = self.from.max(next);
                let Some(execution_id) = self.current.clone() else {
                    return;
                };
                if self.exited.as_deref() != Some(&execution_id) {
                    self.exited = Some(execution_id.clone());
                    self.pending.push_back(Event::Exited {
                        execution_id,
                        status,
                        exit_code,
                        error,
                    });
                }
            }
        }
    }

    async fn closed(&mut self, close: Option<CloseFrame>) -> Result<(), FollowError> {
        let Some(close) = close else {
            return self
                .lost("the server closed without a reason".to_owned())
                .await;
        };
        match (close.code, close.reason.as_str()) {
            (_, "done") => {
                let exited = self.exited.is_some() && self.exited == self.current;
                if self.catching_up {
                    // Back to the job's route, which shows what came next.
                    self.catching_up = false;
                    self.checking = exited;
                } else if self.fixed_execution && exited {
                    self.ended = true;
                } else if exited {
                    // Ask again: a retry may have followed it.
                    self.checking = true;
                }
                Ok(())
            }
            // Nothing more of the execution caught up on: it never started
            // (a replaced job's run) or is gone. Back to the job's route.
            (CloseCode::Normal, "") | (CloseCode::Again, "retry") if self.catching_up => {
                self.catching_up = false;
                Ok(())
            }
            // The server could not read the log: try again, within patience.
            (CloseCode::Error, "retry") => {
                self.lost("the server could not read the log".to_owned())
                    .await
            }
            // Not started yet: ask again shortly.
            (_, "retry") => {
                tokio::time::sleep(self.poll).await;
                Ok(())
            }
            (CloseCode::Normal, "") => Err(FollowError::NotFound),
            (code, reason) => {
                let reason = format!("the server closed the connection ({code}: {reason})");
                self.lost(reason).await
            }
        }
    }

    /// The server went away: waits a little and lets the loop reconnect,
    /// unless it has been gone for longer than the patience.
    async fn lost(&mut self, reason: String) -> Result<(), FollowError> {
        let since = match self.lost_since {
            Some(since) => since,
            None => {
                // Once per outage.
                self.pending.push_back(Event::Reconnecting {
                    reason: reason.clone(),
                });
                *self.lost_since.insert(Instant::now())
            }
        };
        let waited = since.elapsed();
        let patience = if self.connected_once {
            self.patience
        } else {
            self.patience.min(FIRST_PATIENCE)
        };
        if waited > patience {
            return Err(FollowError::Lost { waited, reason });
        }
        let pause = Duration::from_millis(200)
            .max(waited / 4)
            .min(Duration::from_secs(5));
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// Whether `status` is one an execution ends in.
fn is_final(status: &str) -> bool {
    matches!(
        status,
        "done" | "failed" | "timedout" | "stopped" | "expired"
    )
}

/// `text` as one URL path segment.
fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::{Event, Follow, Stream};

    fn follow() -> Follow {
        Follow::job("http://localhost:10000/", "a task", "j")
    }

    #[test]
    fn the_socket_url_is_the_jobs_ws_route_with_its_ids_encoded() {
        assert_eq!(
            follow().socket_url,
            "ws://localhost:10000/tasks/a%20task/jobs/j/ws"
        );
        let secure = Follow::execution("https://fastlane.example", "t", "j", "e");
        assert_eq!(
            secure.socket_url,
            "wss://fastlane.example/tasks/t/jobs/j/executions/e/ws"
        );
    }

    #[test]
    fn output_seen_before_a_reconnection_is_not_shown_twice() {
        let mut follow = follow();
        follow.frame(r#"{"type":"start","executionId":"e1","status":"running","from":0}"#);
        follow.frame(r#"{"type":"log","offset":0,"next":6,"stream":"stdout","text":"one\ntw"}"#);
        // The server resumes at `from`, but a frame it sent twice is skipped.
        follow.frame(r#"{"type":"start","executionId":"e1","status":"running","from":6}"#);
        follow.frame(r#"{"type":"log","offset":0,"next":6,"stream":"stdout","text":"one\ntw"}"#);
        follow.frame(r#"{"type":"log","offset":6,"next":9,"stream":"stderr","text":"o\n!"}"#);
        let events: Vec<Event> = follow.pending.drain(..).collect();
        assert_eq!(
            events,
            vec![
                Event::Started {
                    execution_id: "e1".into(),
                    status: "running".into()
                },
                Event::Output {
                    stream: Stream::Stdout,
                    text: "one\ntw".into()
                },
                Event::Output {
                    stream: Stream::Stderr,
                    text: "o\n!".into()
                },
            ]
        );
        assert_eq!(follow.position(), Some(("e1", 9)));
    }

    #[test]
    fn a_job_that_did_not_move_on_after_an_exit_has_ended() {
        let mut follow = follow();
        follow.frame(r#"{"type":"start","executionId":"e1","status":"running","from":0}"#);
        follow.frame(r#"{"type":"exit","status":"failed","exitCode":3,"error":null,"next":0}"#);
        follow.checking = true;
        follow.frame(r#"{"type":"start","executionId":"e1","status":"failed","from":0}"#);
        assert!(follow.ended);
        let exits = follow
            .pending
            .iter()
            .filter(|e| matches!(e, Event::Exited { .. }))
            .count();
        assert_eq!(exits, 1);
    }

    #[test]
    fn a_job_that_moved_on_unseen_is_caught_up_on_before_the_next_run() {
        let mut follow = follow();
        follow.frame(r#"{"type":"start","executionId":"e1","status":"running","from":0}"#);
        follow.frame(r#"{"type":"log","offset":0,"next":4,"stream":"stdout","text":"one\n"}"#);
        // The connection dropped; e1 failed and e2 was made meanwhile.
        follow.frame(r#"{"type":"start","executionId":"e2","status":"enqueued","from":0}"#);
        assert!(follow.catching_up && follow.reconnect);
        assert_eq!(follow.position(), Some(("e1", 4)), "still at e1's end");
        // e1's own route sends the rest and its end.
        follow.frame(r#"{"type":"start","executionId":"e1","status":"failed","from":4}"#);
        follow.frame(r#"{"type":"log","offset":4,"next":8,"stream":"stdout","text":"two\n"}"#);
        follow.frame(r#"{"type":"exit","status":"failed","exitCode":3,"error":null,"next":8}"#);
        let texts: Vec<String> = follow
            .pending
            .iter()
            .filter_map(|e| match e {
                Event::Output { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["one\n", "two\n"]);
        assert!(follow.pending.iter().any(|e| matches!(
            e,
            Event::Exited {
                exit_code: Some(3),
                ..
            }
        )));
    }

    #[test]
    fn a_retry_after_an_exit_is_followed_from_its_start() {
        let mut follow = follow();
        follow.frame(r#"{"type":"start","executionId":"e1","status":"running","from":0}"#);
        follow.frame(r#"{"type":"exit","status":"failed","exitCode":3,"error":null,"next":4}"#);
        follow.checking = true;
        follow.frame(r#"{"type":"start","executionId":"e2","status":"enqueued","from":0}"#);
        assert!(!follow.ended);
        assert_eq!(follow.position(), Some(("e2", 0)));
    }
}
