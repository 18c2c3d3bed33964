//! Admission in the order messages came off the queue.
//!
//! A worker handles several messages at once, so two executions taken off
//! the queue one after the other could reach admission (see
//! [`crate::admission`]) in the other order, and the later one take the
//! last free slot. Each message gets a [`Ticket`] when it is taken, in
//! queue order; an execution waits for its turn before it asks for a slot,
//! and a ticket is done as soon as its execution has been admitted, parked,
//! or turns out not to need admission (it was placed before a restart).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Hands out tickets and serves them in order.
#[derive(Debug)]
pub struct Turnstile {
    state: Mutex<State>,
    /// The ticket being served.
    serving: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    serving: u64,
    /// Tickets done before their turn came.
    done_early: BTreeSet<u64>,
}

impl Turnstile {
    /// A turnstile serving its first ticket.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            serving: watch::Sender::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next ticket.
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        let mut state = self.state();
        let number = state.next;
        state.next += 1;
        Ticket {
            number,
            turnstile: Arc::clone(self),
        }
    }

    fn done(&self, number: u64) {
        let mut state = self.state();
        state.done_early.insert(number);
        loop {
            let serving = state.serving;
            if !state.done_early.remove(&serving) {
                break;
            }
            state.serving = serving + 1;
        }
        self.serving.send_replace(state.serving);
    }
}

/// A place in line; done when dropped.
#[derive(Debug)]
pub struct Ticket {
    number: u64,
    turnstile: Arc<Turnstile>,
}

impl Ticket {
    /// Waits until every earlier ticket is done.
    pub async fn wait(&self) {
        let mut serving = self.turnstile.serving.subscribe();
        let _ = serving.wait_for(|now| *now >= self.number).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.turnstile.done(self.number);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn tickets_are_served_in_order_whenever_they_are_done() {
        let turnstile = Turnstile::new();
        let (first, second, third) = (turnstile.ticket(), turnstile.ticket(), turnstile.ticket());
        let waiting = tokio::spawn(async move {
            third.wait().await;
        });
        // The second is done before its turn; the third still waits for
        // the first.
        drop(second);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("served once the first is done")
            .expect("task");
    }
}
