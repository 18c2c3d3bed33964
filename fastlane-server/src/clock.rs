//! The current time, for the scheduler and the queues.
//!
//! In the server this is the system clock. In this crate's unit tests it
//! follows tokio's clock from an anchor taken on first use, so that tests
//! running with `tokio::time::pause()` move fastlane's time too and can check
//! a scheduler's timing to the millisecond without waiting.

use chrono::{DateTime, Utc};

/// Now.
pub fn now() -> DateTime<Utc> {
    #[cfg(not(test))]
    {
        Utc::now()
    }
    #[cfg(test)]
    {
        paused::now()
    }
}

#[cfg(test)]
mod paused {
    use std::cell::Cell;

    use chrono::{DateTime, Utc};

    thread_local! {
        static ANCHOR: Cell<Option<(DateTime<Utc>, tokio::time::Instant)>> = const { Cell::new(None) };
    }

    pub fn now() -> DateTime<Utc> {
        ANCHOR.with(|anchor| {
            let (wall, instant) = anchor.get().unwrap_or_else(|| {
                let fresh = (Utc::now(), tokio::time::Instant::now());
                anchor.set(Some(fresh));
                fresh
            });
            let elapsed = tokio::time::Instant::now() - instant;
            wall + chrono::Duration::from_std(elapsed).unwrap_or_default()
        })
    }
}
