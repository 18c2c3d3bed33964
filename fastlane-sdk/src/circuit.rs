//! A host's circuit breaker, for executors that run work on hosts (a
//! Docker engine, a Kubernetes API server): after `max_fails` connection failures in a
//! row the circuit opens and the host gets no new work; once
//! `reset_timeout` has passed it is half-open, and the next call is a probe
//! whose outcome closes it again or opens it for another `reset_timeout`.
//! Any answer from the host (even an error status) counts as the host
//! being up; only failing to talk to it counts against it.
//!
//! Each change of state is stamped with the wall-clock time, so that the
//! server can share it with other processes ([`Circuit::report`]) and each
//! process can adopt the newest one ([`Circuit::adopt`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::executor::HostHealth;
use chrono::{DateTime, Utc};

/// When a circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Connection failures in a row that open the circuit.
    pub max_fails: u32,
    /// How long it stays open before a probe is allowed.
    pub reset_timeout: Duration,
}

/// Where a circuit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// The host takes work.
    Closed,
    /// The host failed too often; no work until the reset timeout passes.
    Open,
    /// The reset timeout passed; the next call decides.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half-open`, as `/status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Connection failures in a row.
    fails: u32,
    /// When the circuit last opened, while it is not closed.
    opened_at: Option<Instant>,
    /// The last failure, while it is not closed.
    last_error: Option<String>,
    /// When it last opened or closed (wall clock), once it ever did.
    changed_at: Option<DateTime<Utc>>,
}

/// One host's circuit.
#[derive(Debug)]
pub struct Circuit {
    settings: CircuitSettings,
    inner: Mutex<Inner>,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(settings: CircuitSettings) -> Self {
        Self {
            settings,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state stays consistent whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state now.
    pub fn state(&self) -> CircuitState {
        match self.inner().opened_at {
            None => CircuitState::Closed,
            Some(at) if at.elapsed() < self.settings.reset_timeout => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// The failure that opened (or keeps open) the circuit.
    pub fn last_error(&self) -> Option<String> {
        self.inner().last_error.clone()
    }

    /// How many connection failures in a row were seen.
    pub fn fails(&self) -> u32 {
        self.inner().fails
    }

    /// The host answered.
    pub fn succeeded(&self) {
        let mut inner = self.inner();
        let changed_at = if inner.opened_at.is_some() {
            tracing::info!("host answers again; circuit closed");
            Some(Utc::now())
        } else {
            inner.changed_at
        };
        *inner = Inner {
            changed_at,
            ..Inner::default()
        };
    }

    /// The state of `host` to share (`None` while it never changed).
    pub fn report(&self, host: &str) -> Option<HostHealth> {
        let inner = self.inner();
        let since = inner.changed_at?;
        let open_until = inner.opened_at.map(|at| {
            let left = self.settings.reset_timeout.saturating_sub(at.elapsed());
            Utc::now() + chrono::Duration::from_std(left).unwrap_or_default()
        });
        Some(HostHealth {
            host: host.to_owned(),
            since,
            open_until,
            error: inner.last_error.clone(),
        })
    }

    /// Takes another process's state of this host if it is newer: open
    /// until its `open_until`, or closed.
    pub fn adopt(&self, shared: &HostHealth) {
        let (since, open_until) = (shared.since, shared.open_until);
        let error = shared.error.as_deref();
        let mut inner = self.inner();
        if inner.changed_at.is_some_and(|known| known >= since) {
            return;
        }
        *inner = match open_until {
            Some(until) => {
                // Open for what is left of the other process's timeout.
                let left = (until - Utc::now()).to_std().unwrap_or_default();
                let open_for = self.settings.reset_timeout.saturating_sub(left);
                Inner {
                    fails: self.settings.max_fails,
                    opened_at: Some(
                        Instant::now()
                            .checked_sub(open_for)
                            .unwrap_or_else(Instant::now),
                    ),
                    last_error: error.map(str::to_owned),
                    changed_at: Some(since),
                }
            }
            None => Inner {
                changed_at: Some(since),
                ..Inner::default()
            },
        };
    }

    /// Talking to the host failed with `error`.
    pub fn failed(&self, error: &str) {
        let mut inner = self.inner();
        inner.fails = inner.fails.saturating_add(1);
        inner.last_error = Some(error.to_owned());
        let half_open = inner
            .opened_at
            .is_some_and(|at| at.elapsed() >= self.settings.reset_timeout);
        if inner.fails >= self.settings.max_fails && (inner.opened_at.is_none() || half_open) {
            // Opens, or a failed probe opens it again for another timeout.
            inner.opened_at = Some(Instant::now());
            inner.changed_at = Some(Utc::now());
            tracing::warn!(fails = inner.fails, error, "host circuit opened");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit(reset_ms: u64) -> Circuit {
        Circuit::new(CircuitSettings {
            max_fails: 3,
            reset_timeout: Duration::from_millis(reset_ms),
        })
    }

    #[test]
    fn it_opens_after_max_fails_in_a_row_and_an_answer_resets_the_count() {
        let c = circuit(60_000);
        c.failed("refused");
        c.failed("refused");
        c.succeeded();
        c.failed("refused");
        c.failed("refused");
        assert_eq!(c.state(), CircuitState::Closed);
        c.failed("refused");
        assert_eq!(c.state(), CircuitState::Open);
        assert_eq!(c.last_error().as_deref(), Some("refused"));
    }

    #[test]
    fn after_the_reset_timeout_a_probe_closes_it_or_opens_it_again() {
        let c = circuit(20);
        for _ in 0..3 {
            c.failed("refused");
        }
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(c.state(), CircuitState::HalfOpen);
        c.failed("still refused");
        assert_eq!(c.state(), CircuitState::Open, "a failed probe reopens it");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(c.state(), CircuitState::HalfOpen);
        c.succeeded();
        assert_eq!(c.state(), CircuitState::Closed);
        assert_eq!(c.fails(), 0);
    }

    #[test]
    fn a_newer_state_from_another_process_is_adopted_and_an_older_one_is_not() {
        let here = circuit(60_000);
        let there = circuit(60_000);
        for _ in 0..3 {
            there.failed("refused");
        }
        let opened = there.report("h").expect("it changed");
        assert!(opened.open_until.is_some());
        here.adopt(&opened);
        assert_eq!(here.state(), CircuitState::Open);
        assert_eq!(here.last_error().as_deref(), Some("refused"));

        // The host answers this process again: that is newer than what the
        // other said, which no longer applies here.
        std::thread::sleep(Duration::from_millis(5));
        here.succeeded();
        here.adopt(&opened);
        assert_eq!(here.state(), CircuitState::Closed);
        let closed = here.report("h").expect("it changed");
        assert_eq!(closed.open_until, None);
        there.adopt(&closed);
        assert_eq!(
            there.state(),
            CircuitState::Closed,
            "the other process takes it back too"
        );
    }
}
