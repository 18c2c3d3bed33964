//! A host's event stream, read once per host, for two things:
//!
//! - **Exits**, so that a wait ends when the engine says `die` rather than
//!   when its `wait` call answers. Podman, measured here, sends the event
//!   10–300 ms after a container's recorded exit, and answers `wait`
//!   350–1,500 ms after it. The engine's `wait` stays the source of truth:
//!   an exit whose event is missed (the stream was down) still ends the
//!   wait when `wait` answers; the event only makes it sooner. Exits seen
//!   in the last minute are remembered, so a container that exits before
//!   its wait begins ends that wait at once.
//! - **The fastlane containers running there**, so that placement and
//!   `/status` (which the admin UI asks every 3 s, and `/metrics` at every
//!   scrape) read them without listing the host. Each subscription starts
//!   from one listing and replays the events of the seconds before it
//!   ([`REPLAY`], by the engine's clock), applied in order after the
//!   listing, so a container that started or died around the listing is
//!   counted right; `die`, `destroy` and `remove` take a container out. A
//!   subscription is made afresh every [`REFRESH`] (a new listing replaces
//!   the set), so an event the engine dropped, or a connection that went
//!   quiet without closing, misleads for a minute at most. While the stream
//!   is down the set is not trusted ([`Events::running`] is `None`) and
//!   callers list the host as before. Each listing that answers counts as
//!   the host answering (its circuit).
//!
//! The subscription opens with the host's first use and opens again after
//! it drops (the engine restarted, the connection broke). API processes
//! keep one open per host too, once `/status` asked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::circuit::Circuit;

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tracing::debug;

use crate::executor::LABEL_EXECUTION;

/// How long an exit is remembered for a wait that has not begun yet.
const REMEMBERED: Duration = Duration::from_secs(60);
/// The pause before subscribing again after the stream ended.
const RESUBSCRIBE: Duration = Duration::from_secs(1);
/// How far before its listing a subscription starts replaying events, by
/// the engine's clock.
const REPLAY: Duration = Duration::from_secs(10);
/// How long one subscription is read before it is made afresh.
const REFRESH: Duration = Duration::from_secs(60);

/// What one host's event stream said: the exits, the waits that want to
/// hear of them, and the fastlane containers running there.
#[derive(Debug, Default)]
pub struct Events {
    state: Arc<Mutex<State>>,
    subscribed: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Waits by container id.
    waiting: HashMap<String, Arc<Notify>>,
    /// Exits announced lately, by container id.
    exited: HashMap<String, Instant>,
    /// The fastlane containers running, by container id, with their
    /// execution ids; `None` while the stream is not up.
    running: Option<HashMap<String, String>>,
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
        if let Some(running) = &mut self.running {
            running.remove(id);
        }
    }

    /// Takes one event of the stream.
    fn take(&mut self, event: EventMessage) {
        let Some(actor) = event.actor else {
            return;
        };
        let Some(id) = actor.id else {
            return;
        };
        match event.action.as_deref() {
            // Docker calls it `die`, older Podmans `died`.
            Some(action) if action.starts_with("die") => self.exited(&id),
            // Removed (Docker says `destroy`, Podman `remove`), perhaps
            // without a `die` the stream delivered.
            Some("destroy" | "remove") => {
                if let Some(running) = &mut self.running {
                    running.remove(&id);
                }
            }
            Some("start") => {
                let execution = actor
                    .attributes
                    .and_then(|mut attributes| attributes.remove(LABEL_EXECUTION));
                if let (Some(running), Some(execution)) = (&mut self.running, execution) {
                    running.insert(id, execution);
                }
            }
            _ => {}
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

impl Events {
    /// The fastlane containers running on the host, `(container id,
    /// execution id)`, as the event stream keeps them; `None` while it is
    /// not up (list the host instead).
    pub fn running(&self) -> Option<Vec<(String, String)>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.running.as_ref().map(|running| {
            running
                .iter()
                .map(|(id, execution)| (id.clone(), execution.clone()))
                .collect()
        })
    }

    /// Subscribes to the host's events through `docker`, unless done
    /// already.
    pub fn subscribe(&self, docker: &Docker, circuit: Arc<Circuit>) {
        if self.subscribed.swap(true, Ordering::AcqRel) {
            return;
        }
        let docker = docker.clone();
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            loop {
                if follow(&docker, &state, &circuit).await == Ended::Refresh {
                    continue;
                }
                state.lock().unwrap_or_else(PoisonError::into_inner).running = None;
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

/// Why [`follow`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// It read the stream for [`REFRESH`]: subscribe afresh at once,
    /// keeping the set meanwhile.
    Refresh,
    /// The host did not answer, or the stream broke.
    Broke,
}

/// Reads the host's event stream for [`REFRESH`] at most: from a listing
/// of the running fastlane containers, with the events since a little
/// before it.
async fn follow(docker: &Docker, state: &Mutex<State>, circuit: &Circuit) -> Ended {
    let since = engine_time(docker)
        .await
        .checked_sub(REPLAY)
        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map(|at| at.as_secs().to_string());
    let listing = ListContainersOptions {
        filters: Some(HashMap::from([
            ("label".to_owned(), vec![LABEL_EXECUTION.to_owned()]),
            ("status".to_owned(), vec!["running".to_owned()]),
        ])),
        ..Default::default()
    };
    let running: HashMap<String, String> = match docker.list_containers(Some(listing)).await {
        Ok(containers) => containers
            .into_iter()
            .filter_map(|c| {
                let execution = c.labels?.remove(LABEL_EXECUTION)?;
                Some((c.id?, execution))
            })
            .collect(),
        Err(err) => {
            debug!(error = %err, "cannot list the host for its event stream");
            return Ended::Broke;
        }
    };
    circuit.succeeded();
    let options = EventsOptions {
        since,
        filters: Some(HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "event".to_owned(),
                ["start", "die", "died", "destroy", "remove"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        ])),
        ..Default::default()
    };
    let mut events = docker.events(Some(options));
    state.lock().unwrap_or_else(PoisonError::into_inner).running = Some(running);
    let until = tokio::time::Instant::now() + REFRESH;
    loop {
        match tokio::time::timeout_at(until, events.next()).await {
            Err(_) => return Ended::Refresh,
            Ok(Some(Ok(event))) => state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(event),
            Ok(Some(Err(err))) => {
                debug!(error = %err, "the engine's event stream broke");
                return Ended::Broke;
            }
            Ok(None) => return Ended::Broke,
        }
    }
}

/// The engine's clock (`/info`'s `SystemTime`), so that replaying from a
/// little before now works whatever this machine's clock says; this
/// machine's when the engine does not say.
async fn engine_time(docker: &Docker) -> SystemTime {
    let said = docker.info().await.ok().and_then(|info| info.system_time);
    said.and_then(|text| chrono::DateTime::parse_from_rfc3339(&text).ok())
        .map(SystemTime::from)
        .unwrap_or_else(SystemTime::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_announced_before_or_after_the_interest_reaches_it() {
        let exits = Events::default();
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

    fn event(action: &str, id: &str, execution: Option<&str>) -> EventMessage {
        EventMessage {
            action: Some(action.into()),
            actor: Some(bollard::models::EventActor {
                id: Some(id.into()),
                attributes: execution
                    .map(|e| HashMap::from([(LABEL_EXECUTION.to_owned(), e.to_owned())])),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn events_after_the_listing_keep_the_running_set() {
        let events = Events::default();
        assert_eq!(events.running(), None, "not trusted before a listing");
        let mut state = events.state.lock().expect("lock");
        state.running = Some(HashMap::from([("old".to_owned(), "e-old".to_owned())]));
        // Replayed: one that started and died around the listing, one that
        // died after it, one not fastlane's.
        for e in [
            event("start", "brief", Some("e-brief")),
            event("die", "brief", Some("e-brief")),
            event("die", "old", Some("e-old")),
            event("start", "new", Some("e-new")),
            event("start", "other", None),
        ] {
            state.take(e);
        }
        drop(state);
        assert_eq!(
            events.running(),
            Some(vec![("new".to_owned(), "e-new".to_owned())])
        );
    }
}
