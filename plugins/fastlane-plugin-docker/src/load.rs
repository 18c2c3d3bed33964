//! A host's running count as placement sees it, without asking the engine at
//! every placement.
//!
//! The count is what the last listing of the host found, plus the executions
//! this process placed there since, minus those it saw end. A listing older
//! than [`LISTING_TTL`] no longer counts: placement lists the host again, so
//! the work other processes put on it shows within that time. Listing at
//! every placement cost a busy Podman engine about a second per host per job
//! (BENCHMARKS.md, "fastlane api and workers"). While the host's event
//! stream is up, that "listing" is the running set the stream keeps
//! (`events`), which costs the engine nothing.
//!
//! The count only steers placement towards the least-loaded host. It is never
//! what enforces a limit: `maxRunning` and per-task limits are counted in the
//! store, exactly, across every process.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a listing of a host stands for its running count.
pub const LISTING_TTL: Duration = Duration::from_secs(5);

/// One host's running count.
#[derive(Debug, Default)]
pub struct Load {
    inner: Mutex<Counted>,
}

#[derive(Debug, Default)]
struct Counted {
    listed_at: Option<Instant>,
    running: usize,
}

impl Load {
    /// The running count, or `None` when no listing younger than
    /// [`LISTING_TTL`] backs it (the host must be listed first).
    pub fn current(&self, now: Instant) -> Option<usize> {
        let counted = self.inner.lock().ok()?;
        let listed_at = counted.listed_at?;
        (now.saturating_duration_since(listed_at) < LISTING_TTL).then_some(counted.running)
    }

    /// A listing at `at` found `running` containers running.
    pub fn listed(&self, running: usize, at: Instant) {
        if let Ok(mut counted) = self.inner.lock() {
            counted.listed_at = Some(at);
            counted.running = running;
        }
    }

    /// This process placed an execution on the host.
    pub fn placed(&self) {
        if let Ok(mut counted) = self.inner.lock() {
            counted.running += 1;
        }
    }

    /// An execution on the host stopped running. A listing taken between its
    /// placement and its start missed it, so the count never goes below zero;
    /// the next listing corrects it either way.
    pub fn ended(&self) {
        if let Ok(mut counted) = self.inner.lock() {
            counted.running = counted.running.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_never_listed_has_to_be_listed() {
        let load = Load::default();
        load.placed();
        assert_eq!(load.current(Instant::now()), None);
    }

    #[test]
    fn placements_and_ends_move_the_listed_count() {
        let load = Load::default();
        let at = Instant::now();
        load.listed(3, at);
        load.placed();
        load.placed();
        load.ended();
        assert_eq!(load.current(at), Some(4));
    }

    #[test]
    fn the_count_does_not_go_below_zero() {
        let load = Load::default();
        let at = Instant::now();
        load.listed(0, at);
        load.ended();
        assert_eq!(load.current(at), Some(0));
        load.placed();
        assert_eq!(load.current(at), Some(1));
    }

    #[test]
    fn an_old_listing_no_longer_counts_and_a_new_one_replaces_the_count() {
        let load = Load::default();
        let at = Instant::now();
        load.listed(2, at);
        load.placed();
        assert_eq!(
            load.current(at + LISTING_TTL - Duration::from_millis(1)),
            Some(3)
        );
        assert_eq!(load.current(at + LISTING_TTL), None);

        load.listed(1, at + LISTING_TTL);
        assert_eq!(load.current(at + LISTING_TTL), Some(1));
    }
}
