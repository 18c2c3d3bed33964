//! [`LiveLogs`]: the live-log sockets of one API process. It caps how many
//! are open at once (`MAX_WEBSOCKET_CONNECTIONS`), and it follows each
//! running execution with one poller, however many sockets watch it.
//!
//! A poller reads the store every [`POLL`] (the execution, then the log
//! past what it has read) and broadcasts what it finds: new pieces, then
//! the execution once it is final. It stops when its execution is final,
//! when the store fails (its sockets close with `retry`), or when its last
//! socket leaves. Sockets read the store themselves only to catch up:
//! from their `?from=` offset when they join, and after falling behind the
//! broadcast (a slow client) or a gap before the first piece they hear of.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

use fastlane_sdk::Execution;

use crate::services::Services;
use crate::store::LogPiece;

/// How often a poller looks for more of a running execution's log.
pub const POLL: Duration = Duration::from_millis(200);

/// How many pieces of news a socket may fall behind before it catches up
/// from the store.
const BACKLOG: usize = 256;

/// The counter of store reads made for live logs (pollers and sockets).
pub const READS_METRIC: &str = "fastlane_live_log_store_reads_total";

/// What a poller tells the sockets following its execution.
#[derive(Debug, Clone)]
pub enum News {
    /// Pieces of the log, in order, as the store gave them.
    Pieces(Arc<Vec<LogPiece>>),
    /// The execution reached a final status; the log is complete.
    Finished(Arc<Execution>),
    /// The store failed, or the execution vanished: the poller stopped.
    Failed,
}

/// The live-log sockets of one API process.
#[derive(Debug, Clone)]
pub struct LiveLogs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One permit per open socket.
    sockets: Arc<Semaphore>,
    /// The most sockets open at once.
    max: usize,
    /// The poller of each followed execution, by execution id.
    followers: Mutex<HashMap<String, broadcast::Sender<News>>>,
}

impl LiveLogs {
    /// At most `max` sockets at once.
    pub fn new(max: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                sockets: Arc::new(Semaphore::new(max)),
                max,
                followers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The most sockets open at once.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// A place for one more socket, held until dropped; `None` when every
    /// place is taken.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.inner.sockets).try_acquire_owned().ok()
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.inner.max - self.inner.sockets.available_permits()
    }

    /// The news of `execution_id`, from now on: joins its poller, or starts
    /// one reading the log from byte `from` (where the first socket's
    /// catching up ended, so that it hears of the next piece at once).
    pub fn follow(
        &self,
        services: &Services,
        execution_id: &str,
        from: u64,
    ) -> broadcast::Receiver<News> {
        let Ok(mut followers) = self.inner.followers.lock() else {
            // A poisoned registry: a channel that is already closed, so
            // the socket closes with `retry`.
            return broadcast::channel(1).1;
        };
        if let Some(news) = followers.get(execution_id) {
            return news.subscribe();
        }
        let (news, receiver) = broadcast::channel(BACKLOG);
        followers.insert(execution_id.to_owned(), news.clone());
        tracing::debug!(execution = %execution_id, "following a live log");
        tokio::spawn(poll(
            self.clone(),
            services.clone(),
            execution_id.to_owned(),
            news,
            from,
        ));
        receiver
    }

    /// Stops following `execution_id` if nobody listens any more, or
    /// unconditionally with `always`; true when it was stopped.
    fn leave(&self, execution_id: &str, news: &broadcast::Sender<News>, always: bool) -> bool {
        let Ok(mut followers) = self.inner.followers.lock() else {
            return true;
        };
        // Sockets subscribe under this lock, so nobody joins in between.
        if always || news.receiver_count() == 0 {
            followers.remove(execution_id);
            return true;
        }
        false
    }
}

/// Counts one store read made for live logs.
pub fn count_read(services: &Services) {
    services.metrics.count(READS_METRIC, &[], 1);
}

/// Follows `execution_id` in the store until it is final, the store fails,
/// or nobody listens.
async fn poll(
    hub: LiveLogs,
    services: Services,
    execution_id: String,
    news: broadcast::Sender<News>,
    mut next: u64,
) {
    let store = &services.store;
    loop {
        if hub.leave(&execution_id, &news, false) {
            tracing::debug!(execution = %execution_id, "live log: nobody follows any more");
            return;
        }
        count_read(&services);
        let execution = match store.execution(&execution_id).await {
            Ok(Some(execution)) => execution,
            Ok(None) | Err(_) => {
                hub.leave(&execution_id, &news, true);
                let _ = news.send(News::Failed);
                return;
            }
        };
        // Everything kept so far (all of it, once the run has finished).
        loop {
            count_read(&services);
            let pieces = match store
                .read_log(&execution_id, next, crate::logs::READ_LIMIT)
                .await
            {
                Ok(pieces) => pieces,
                Err(err) => {
                    tracing::warn!(execution = %execution_id, error = %err, "live log: store failure");
                    hub.leave(&execution_id, &news, true);
                    let _ = news.send(News::Failed);
                    return;
                }
            };
            let Some(last) = pieces.last() else { break };
            next = last.end();
            // Nobody listening is noticed at the top of the loop.
            let _ = news.send(News::Pieces(Arc::new(pieces)));
        }
        if execution.status.is_final() {
            // Those who join from now on start a poller of their own,
            // which finds the execution final at once.
            hub.leave(&execution_id, &news, true);
            let _ = news.send(News::Finished(Arc::new(execution)));
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}
