//! Container exits as the engine announces them on its event stream, so
//! that a wait ends when the engine says `die` rather than when its `wait`
//! call answers. Podman, measured here, sends the event 10–300 ms after a
//! container's recorded exit, and answers `wait` 350–1,500 ms after it.
//!
//! One subscription per host, opened before the host's first container
//! starts and opened again after it drops (the engine restarted, the
//! connection broke). The engine's `wait` stays the source of truth: an exit
//! whose event is missed (the subscription was down) still ends the wait
//! when `wait` answers; the event only makes it sooner. Exits seen in the
//! last minute are remembered, so a container that exits before its wait
//! begins ends that wait at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tracing::debug;

/// How long an exit is remembered for a wait that has not begun yet.
const REMEMBERED: Duration = Duration::from_secs(60);
/// The pause before subscribing again after the stream ended.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// The exits one host announced, and the waits that want to hear of them.
#[derive(Debug, Default)]
pub struct Exits {
    state: Arc<Mutex<State>>,
    subscribed: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Waits by container id.
    waiting: HashMap<String, Arc<Notify>>,
    /// Exits announced lately, by container id.
    exited: HashMap<String, Instant>,
}

impl State {
    fn exited(&mut self, id: &str) {
        let now = Instant::now();
        self.exited
            .retain(|_, at| now.duration_since(*at) < REMEMBERED);
        self.exited.insert(id.to_owned(), now);
        if let Some(wait) = self.waiting.get(id) {
            wait.notify_one();
        }
    }
}

/// A wait's interest in one container's exit; withdrawn when dropped.
#[derive(Debug)]
pub struct Interest {
    state: Arc<Mutex<State>>,
    id: String,
    exited: Arc<Notify>,
}

impl Interest {
    /// Completes once the engine announced the container's exit (at once
    /// if it did before the interest was taken). Each announcement
    /// completes one call.
    pub async fn exited(&self) {
        self.exited.notified().await;
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.waiting.remove(&self.id);
    }
}

impl Exits {
    /// Subscribes to the host's events through `docker`, unless done
    /// already.
    pub fn subscribe(&self, docker: &Docker) {
        if self.subscribed.swap(true, Ordering::AcqRel) {
            return;
        }
        let docker = docker.clone();
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            loop {
                let options = EventsOptions {
                    filters: Some(HashMap::from([
                        ("type".to_owned(), vec!["container".to_owned()]),
                        // Docker calls it `die`, Podman `died`.
                        (
                            "event".to_owned(),
                            vec!["die".to_owned(), "died".to_owned()],
                        ),
                    ])),
                    ..Default::default()
                };
                let mut events = docker.events(Some(options));
                while let Some(event) = events.next().await {
                    let event = match event {
                        Ok(event) => event,
                        Err(err) => {
                            debug!(error = %err, "the engine's event stream broke");
                            break;
                        }
                    };
                    let died = event
                        .action
                        .as_deref()
                        .is_some_and(|a| a.starts_with("die"));
                    if let (true, Some(id)) = (died, event.actor.and_then(|a| a.id)) {
                        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                        state.exited(&id);
                    }
                }
                tokio::time::sleep(RESUBSCRIBE).await;
            }
        });
    }

    /// Takes an interest in container `id`'s exit.
    pub fn interest(&self, id: &str) -> Interest {
        let exited = Arc::new(Notify::new());
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.exited.contains_key(id) {
            exited.notify_one();
        }
        state.waiting.insert(id.to_owned(), Arc::clone(&exited));
        Interest {
            state: Arc::clone(&self.state),
            id: id.to_owned(),
            exited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_announced_before_or_after_the_interest_reaches_it() {
        let exits = Exits::default();
        exits.state.lock().expect("lock").exited("early");
        let early = exits.interest("early");
        tokio::time::timeout(Duration::from_millis(100), early.exited())
            .await
            .expect("announced before the interest");

        let late = exits.interest("late");
        exits.state.lock().expect("lock").exited("late");
        tokio::time::timeout(Duration::from_millis(100), late.exited())
            .await
            .expect("announced after");
        drop((early, late));
        assert!(exits.state.lock().expect("lock").waiting.is_empty());
    }
}
