//! Live logs: the WebSocket routes (`…/ws`) that stream an execution's log
//! as the run writes it, and the HTML pages (`…/stream`) that show it.
//!
//! The sockets read the log the worker keeps in the store (see
//! [`crate::logs`]), so any API process can serve any execution, and a log
//! outlives its container. The protocol is the original's, with its
//! documented close reasons: a running execution streams its output and
//! closes with `done`; a finished one sends `EXIT CODE: <n>`, stdout, `-=-`
//! and stderr, then `done`; one that has not started closes with `retry`;
//! an unknown job or execution closes normally with no reason.
//!
//! Two additions, both opt-in through the query string: `from=<offset>`
//! resumes the log at a byte offset (so a client that dropped loses no
//! line), and `format=json` sends every frame as JSON carrying its offsets:
//!
//! | frame | fields |
//! |---|---|
//! | `start` | `executionId`, `status`, `from` (the offset streaming starts at) |
//! | `log` | `offset`, `next` (where the text starts and ends), `stream` (`stdout`, `stderr`, `notice`), `text` |
//! | `exit` | `status`, `exitCode`, `error`, `next` |
//!
//! Sockets are bounded: at most `MAX_WEBSOCKET_CONNECTIONS` are open at once
//! in a process (one more is answered 503), and every socket following one
//! running execution shares one poller of the store ([`hub`]).

mod hub;

use futures_util::{SinkExt, StreamExt};
use poem::web::Data;
use poem::web::websocket::{BoxWebSocketUpgraded, CloseCode, Message, WebSocket, WebSocketStream};
use poem_openapi::payload::{Html, Json};
use poem_openapi::{ApiResponse, Enum, OpenApi, param::Path, param::Query};
use serde_json::json;

use fastlane_sdk::ExecutionStatus;

use super::ApiTags;
use super::error::ErrorBody;
use super::views::error_text;
use crate::services::Services;
use crate::store::LogPiece;
pub use hub::{LiveLogs, READS_METRIC};
use hub::{News, count_read};

/// How the frames of a socket are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum LogFormat {
    /// Plain text frames, as the original sent them.
    #[default]
    Text,
    /// JSON frames carrying offsets (see the module documentation).
    Json,
}

/// Why a socket could not be opened.
#[derive(Debug, ApiResponse)]
pub enum SocketError {
    /// A query parameter is malformed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The request is not a WebSocket handshake.
    #[oai(status = 426)]
    UpgradeRequired(Json<ErrorBody>),
    /// `MAX_WEBSOCKET_CONNECTIONS` sockets are open already; try later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl SocketError {
    fn upgrade_required(operation: &str) -> Self {
        Self::UpgradeRequired(Json(ErrorBody {
            error: "this route speaks WebSocket: open it with a WebSocket client \
                    (Connection: Upgrade, Upgrade: websocket)"
                .to_owned(),
            operation: operation.to_owned(),
            field: None,
        }))
    }
}

/// A stream page.
#[derive(Debug, ApiResponse)]
pub enum PageResponse {
    /// The page; it follows the log over the WebSocket route.
    #[oai(status = 200)]
    Ok(Html<String>),
}

/// Which log a socket streams.
#[derive(Debug, Clone)]
struct Target {
    task_id: String,
    job_id: String,
    /// `None` on the job routes: the job's newest execution.
    execution_id: Option<String>,
}

/// What the client asked for in the query string.
#[derive(Debug, Clone)]
struct Resume {
    /// The offset to start at, when resuming.
    from: Option<u64>,
    format: LogFormat,
    /// On job routes, the execution `from` belongs to: when the job has
    /// moved on to another execution, streaming starts at its beginning.
    execution: Option<String>,
}

/// How a socket ends.
type Close = Option<(CloseCode, String)>;

fn done() -> Close {
    Some((CloseCode::Normal, "done".to_owned()))
}

fn retry(code: CloseCode) -> Close {
    Some((code, "retry".to_owned()))
}

/// The socket's sending half.
type Sender = futures_util::stream::SplitSink<WebSocketStream, Message>;

/// The client went away.
struct Gone;

/// Sends `frame`, as text.
async fn send(sender: &mut Sender, frame: String) -> Result<(), Gone> {
    sender.send(Message::Text(frame)).await.map_err(|_| Gone)
}

fn upgrade(
    websocket: Option<WebSocket>,
    operation: &'static str,
    (services, live): (&Services, &LiveLogs),
    target: Target,
    resume: Resume,
) -> Result<BoxWebSocketUpgraded, SocketError> {
    let websocket = websocket.ok_or_else(|| SocketError::upgrade_required(operation))?;
    let Some(place) = live.admit() else {
        tracing::warn!(
            operation,
            max = live.max(),
            "live-log socket refused: too many open"
        );
        return Err(SocketError::Unavailable(Json(ErrorBody {
            error: format!(
                "too many live-log sockets are open (MAX_WEBSOCKET_CONNECTIONS = {}); \
                 try again later",
                live.max()
            ),
            operation: operation.to_owned(),
            field: None,
        })));
    };
    let services = services.clone();
    let live = live.clone();
    // A browser that sent its token as a subprotocol (`super::access`) also
    // offers `fastlane`, and must be answered with one it offered.
    Ok(websocket
        .protocols(["fastlane"])
        .on_upgrade(move |socket| async move {
            serve(socket, services, live, target, resume).await;
            drop(place);
        })
        .boxed())
}

/// Talks to one client until the log is done, the client leaves, or there
/// is nothing to stream yet.
async fn serve(
    socket: WebSocketStream,
    services: Services,
    live: LiveLogs,
    target: Target,
    resume: Resume,
) {
    let (mut sender, mut receiver) = socket.split();
    // The server never reads what clients say, but it notices them leave.
    let gone = async {
        while let Some(message) = receiver.next().await {
            if matches!(message, Ok(Message::Close(_)) | Err(_)) {
                break;
            }
        }
    };
    tokio::select! {
        () = gone => {}
        close = talk(&mut sender, &services, &live, &target, resume) => {
            if let Ok(close) = close {
                let _ = sender.send(Message::Close(close)).await;
            }
            let _ = sender.close().await;
        }
    }
}

/// The frames of one socket; returns how to close it.
async fn talk(
    sender: &mut Sender,
    services: &Services,
    live: &LiveLogs,
    target: &Target,
    resume: Resume,
) -> Result<Close, Gone> {
    let store = &services.store;
    count_read(services);
    let job = match store.job(&target.task_id, &target.job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => return Ok(Some((CloseCode::Normal, String::new()))),
        Err(_) => return Ok(retry(CloseCode::Error)),
    };
    count_read(services);
    let found = match &target.execution_id {
        Some(id) => store
            .execution(id)
            .await
            .map(|e| e.filter(|e| e.job_id == job.job_id)),
        None => store
            .executions(&job.job_id, 1)
            .await
            .map(|(mut newest, _)| newest.pop()),
    };
    let execution = match found {
        Ok(Some(execution)) => execution,
        Ok(None) if target.execution_id.is_some() => {
            return Ok(Some((CloseCode::Normal, String::new())));
        }
        Ok(None) => return Ok(retry(CloseCode::Again)),
        Err(_) => return Ok(retry(CloseCode::Error)),
    };
    let json = resume.format == LogFormat::Json;
    let other_execution = resume
        .execution
        .as_deref()
        .is_some_and(|id| id != execution.execution_id);
    let mut from = resume.from.filter(|_| !other_execution).unwrap_or(0);
    if json {
        let start = json!({
            "type": "start",
            "executionId": execution.execution_id,
            "status": execution.status.as_str(),
            "from": from,
        });
        send(sender, start.to_string()).await?;
    }
    if matches!(
        execution.status,
        ExecutionStatus::Enqueued | ExecutionStatus::Pulling
    ) {
        return Ok(retry(CloseCode::Again));
    }
    if execution.status.is_final() && !json && resume.from.is_none() {
        // The original's answer for a finished execution.
        let exit_code = execution
            .exit_code
            .map_or_else(|| "None".to_owned(), |c| c.to_string());
        for frame in [
            format!("EXIT CODE: {exit_code}\n"),
            execution.stdout.clone().unwrap_or_default(),
            "\n-=-\n".to_owned(),
            error_text(&execution).unwrap_or_default(),
        ] {
            send(sender, frame).await?;
        }
        return Ok(done());
    }
    if execution.status.is_final() {
        // Resuming a finished log: the kept log from `from`, then the end.
        if !catch_up(sender, services, &execution.execution_id, &mut from, json).await? {
            return Ok(retry(CloseCode::Error));
        }
        return finish(sender, &execution, from, json).await;
    }
    // Running: what is kept from `from`, then the news of the shared poller,
    // and what was written while joining it (in the store before joining,
    // or in the news after; what comes twice is skipped by offset).
    let id = &execution.execution_id;
    if !catch_up(sender, services, id, &mut from, json).await? {
        return Ok(retry(CloseCode::Error));
    }
    let mut news = live.follow(services, id, from);
    if !catch_up(sender, services, id, &mut from, json).await? {
        return Ok(retry(CloseCode::Error));
    }
    loop {
        match news.recv().await {
            Ok(News::Pieces(pieces)) => {
                if pieces.first().is_some_and(|p| p.offset > from)
                    && !catch_up(sender, services, &execution.execution_id, &mut from, json).await?
                {
                    return Ok(retry(CloseCode::Error));
                }
                for piece in crate::store::log_from(pieces.to_vec(), from) {
                    send(sender, log_frame(&piece, json)).await?;
                    from = piece.end();
                }
            }
            Ok(News::Finished(execution)) => {
                return finish(sender, &execution, from, json).await;
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "live-log socket fell behind: catching up");
                if !catch_up(sender, services, &execution.execution_id, &mut from, json).await? {
                    return Ok(retry(CloseCode::Error));
                }
            }
            Ok(News::Failed) | Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return Ok(retry(CloseCode::Error));
            }
        }
    }
}

/// Sends the kept log of `execution_id` from `from` on, moving `from`
/// past it; false when the store failed.
async fn catch_up(
    sender: &mut Sender,
    services: &Services,
    execution_id: &str,
    from: &mut u64,
    json: bool,
) -> Result<bool, Gone> {
    loop {
        count_read(services);
        let Ok(pieces) = services
            .store
            .read_log(execution_id, *from, crate::logs::READ_LIMIT)
            .await
        else {
            return Ok(false);
        };
        let Some(last) = pieces.last() else {
            return Ok(true);
        };
        *from = last.end();
        for piece in &pieces {
            send(sender, log_frame(piece, json)).await?;
        }
    }
}

/// The end of a finished execution's log: its `exit` frame (JSON), and
/// the `done` close.
async fn finish(
    sender: &mut Sender,
    execution: &fastlane_sdk::Execution,
    next: u64,
    json: bool,
) -> Result<Close, Gone> {
    if json {
        let exit = json!({
            "type": "exit",
            "status": execution.status.as_str(),
            "exitCode": execution.exit_code,
            "error": execution.error,
            "next": next,
        });
        send(sender, exit.to_string()).await?;
    }
    Ok(done())
}

fn log_frame(piece: &LogPiece, json: bool) -> String {
    if !json {
        return piece.text.clone();
    }
    json!({
        "type": "log",
        "offset": piece.offset,
        "next": piece.end(),
        "stream": piece.source.as_str(),
        "text": piece.text,
    })
    .to_string()
}

/// The stream page of a job or an execution.
fn page(target: &Target) -> PageResponse {
    let mut ids = vec![target.task_id.as_str(), target.job_id.as_str()];
    let mut socket = format!(
        "/tasks/{}/jobs/{}",
        encode(&target.task_id),
        encode(&target.job_id)
    );
    if let Some(execution_id) = &target.execution_id {
        ids.push(execution_id);
        socket.push_str(&format!("/executions/{}", encode(execution_id)));
    }
    socket.push_str("/ws");
    let title = format!("{} - Fastlane", ids.join(" - "));
    // As a JS string literal that cannot end the script element.
    let socket = serde_json::to_string(&socket)
        .unwrap_or_default()
        .replace("</", "<\\/");
    PageResponse::Ok(Html(
        include_str!("stream.html")
            .replace("{{title}}", &escape_html(&title))
            .replace("{{socket}}", &socket),
    ))
}

/// `text` as one URL path segment.
fn encode(text: &str) -> String {
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

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Live log routes.
#[derive(Debug)]
pub struct LogsApi;

#[OpenApi]
impl LogsApi {
    /// Stream the log of a job's newest execution (WebSocket)
    ///
    /// A WebSocket. A running execution streams what it writes (stdout and
    /// stderr together, as written) and closes with reason `done`; a
    /// finished one sends `EXIT CODE: <n>`, stdout, `-=-` and stderr, then
    /// `done`; one that has not started closes with `retry` (reconnect
    /// later); an unknown job closes normally with no reason. `from`
    /// resumes at a byte offset of the log, and `format=json` sends frames
    /// with their offsets (`start`, `log`, `exit`). A browser, which cannot
    /// set `Authorization` on a WebSocket, may offer the subprotocol
    /// `fastlane.authorization.<the header's value, percent-encoded>` beside
    /// `fastlane`, which the server then picks.
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/ws",
        method = "get",
        operation_id = "streamJobLog",
        tag = "ApiTags::Jobs"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn job_socket(
        &self,
        services: Data<&Services>,
        live: Data<&LiveLogs>,
        websocket: Option<WebSocket>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        /// Resume the log at this byte offset (from a `next` of a JSON frame).
        from: Query<Option<u64>>,
        /// `text` (default) or `json` frames.
        format: Query<Option<LogFormat>>,
        /// The execution `from` belongs to; when the job's newest execution
        /// is another one, streaming starts at its beginning.
        execution: Query<Option<String>>,
    ) -> Result<BoxWebSocketUpgraded, SocketError> {
        let target = Target {
            task_id: task_id.0,
            job_id: job_id.0,
            execution_id: None,
        };
        let resume = Resume {
            from: from.0,
            format: format.0.unwrap_or_default(),
            execution: execution.0,
        };
        upgrade(
            websocket,
            "stream_job",
            (services.0, live.0),
            target,
            resume,
        )
    }

    /// Stream the log of an execution (WebSocket)
    ///
    /// As `streamJobLog`, for one execution; an unknown execution closes
    /// normally with no reason.
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/executions/:executionId/ws",
        method = "get",
        operation_id = "streamExecutionLog",
        tag = "ApiTags::Executions"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn execution_socket(
        &self,
        services: Data<&Services>,
        live: Data<&LiveLogs>,
        websocket: Option<WebSocket>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        #[oai(name = "executionId")] execution_id: Path<String>,
        /// Resume the log at this byte offset (from a `next` of a JSON frame).
        from: Query<Option<u64>>,
        /// `text` (default) or `json` frames.
        format: Query<Option<LogFormat>>,
    ) -> Result<BoxWebSocketUpgraded, SocketError> {
        let target = Target {
            task_id: task_id.0,
            job_id: job_id.0,
            execution_id: Some(execution_id.0),
        };
        let resume = Resume {
            from: from.0,
            format: format.0.unwrap_or_default(),
            execution: None,
        };
        upgrade(
            websocket,
            "stream_job_execution",
            (services.0, live.0),
            target,
            resume,
        )
    }

    /// A page showing a job's log live
    ///
    /// An HTML page that follows `streamJobLog`: it shows the log as it is
    /// written, reconnects (resuming where it was) while the job waits or
    /// runs, and shows the exit status at the end.
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/stream",
        method = "get",
        operation_id = "jobStreamPage",
        tag = "ApiTags::Jobs"
    )]
    async fn job_page(
        &self,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
    ) -> PageResponse {
        page(&Target {
            task_id: task_id.0,
            job_id: job_id.0,
            execution_id: None,
        })
    }

    /// A page showing an execution's log live
    ///
    /// As `jobStreamPage`, for one execution.
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/executions/:executionId/stream",
        method = "get",
        operation_id = "executionStreamPage",
        tag = "ApiTags::Executions"
    )]
    async fn execution_page(
        &self,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        #[oai(name = "executionId")] execution_id: Path<String>,
    ) -> PageResponse {
        page(&Target {
            task_id: task_id.0,
            job_id: job_id.0,
            execution_id: Some(execution_id.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_socket_safely() {
        let html = page(&Target {
            task_id: "a</script>".to_owned(),
            job_id: "j 1".to_owned(),
            execution_id: None,
        });
        let PageResponse::Ok(Html(html)) = html;
        assert!(html.contains("<title>a&lt;/script&gt; - j 1 - Fastlane</title>"));
        assert!(html.contains(r#""/tasks/a%3C%2Fscript%3E/jobs/j%201/ws""#));
        assert!(!html.contains("a</script>"));
    }
}
