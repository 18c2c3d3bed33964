//! An execution's status detail while its executor prepares it: what the
//! executor's [`Progress`] reports (a pull's layers) goes to the store, the
//! newest at most every [`EVERY`], for as long as preparing lasts. The
//! store keeps a detail only while the execution is `pulling`, and the
//! save that moves it on clears it.

use std::sync::Arc;
use std::time::Duration;

use fastlane_sdk::Progress;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::store::Store;

/// How often the newest detail is written at most, and how long after the
/// first report the first write waits.
const EVERY: Duration = Duration::from_millis(250);

/// The [`Progress`] handed to `prepare`; it stops writing when dropped.
#[derive(Debug)]
pub struct Detail {
    newest: watch::Sender<Option<String>>,
    writer: JoinHandle<()>,
}

impl Detail {
    /// Starts writing what is reported of `execution_id` to `store`.
    pub fn start(store: Arc<dyn Store>, execution_id: String) -> Self {
        let (newest, mut reported) = watch::channel(None::<String>);
        let writer = tokio::spawn(async move {
            while reported.changed().await.is_ok() {
                // A prepare that ends within this wait (an image already
                // there, a quick pull) costs no write.
                tokio::time::sleep(EVERY).await;
                let detail = reported.borrow_and_update().clone();
                if let Some(detail) = detail
                    && let Err(err) = store.set_detail(&execution_id, &detail).await
                {
                    debug!(execution = %execution_id, error = %err, "status detail not stored");
                }
            }
        });
        Self { newest, writer }
    }
}

impl Progress for Detail {
    fn report(&self, detail: &str) {
        self.newest.send_replace(Some(detail.to_owned()));
    }
}

impl Drop for Detail {
    fn drop(&mut self) {
        // A write under way may still land; the store keeps it only while
        // the execution is `pulling`, which the next save ends.
        self.writer.abort();
    }
}
