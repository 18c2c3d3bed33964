//! What one pass over the line hands out: the slots of every waiter a
//! [`decide`](super::decide) lets go and the tokens they spend, for a store
//! to write in the transaction that read the line.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Bucket, Decision, Gate, LineState, Rate};

/// A waiter let go: it takes a slot of each of `gates` and leaves the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    /// The execution.
    pub execution_id: String,
    /// The keys of the gates of the choice it got.
    pub gates: Vec<String>,
}

/// What a pass writes: the waiters that go, in the order they go, and the
/// rate limits' buckets after their tokens are spent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// The waiters that go.
    pub takes: Vec<Take>,
    /// Buckets after spending, by gate.
    pub buckets: Vec<(String, Bucket)>,
}

/// The slots and tokens `decision` (made from `state` at `now`) hands out.
pub fn grants(state: &LineState, decision: &Decision, now: DateTime<Utc>) -> Grants {
    let mut takes = Vec::with_capacity(decision.admitted.len());
    let mut spent: Vec<(&Gate, u32)> = Vec::new();
    for (c, m, choice) in &decision.admitted {
        let Some(class) = state.classes.get(*c) else {
            continue;
        };
        let (Some(member), Some(gates)) = (class.members.get(*m), class.ask.choices.get(*choice))
        else {
            continue;
        };
        spent.extend(gates.iter().map(|gate| (gate, 1)));
        takes.push(Take {
            execution_id: member.execution_id.clone(),
            gates: gates.iter().map(|g| g.key.clone()).collect(),
        });
    }
    Grants {
        takes,
        buckets: after_spending(state, spent, now),
    }
}

/// The buckets of the rated gates among `spent` (each with the tokens it
/// gives), after spending at `now`.
pub(super) fn after_spending<'a>(
    state: &LineState,
    spent: impl IntoIterator<Item = (&'a Gate, u32)>,
    now: DateTime<Utc>,
) -> Vec<(String, Bucket)> {
    let mut by_gate: BTreeMap<&str, (Rate, u32)> = BTreeMap::new();
    for (gate, tokens) in spent {
        if let Some(rate) = gate.rate {
            by_gate.entry(&gate.key).or_insert((rate, 0)).1 += tokens;
        }
    }
    by_gate
        .into_iter()
        .map(|(key, (rate, tokens))| {
            let last = state.buckets.get(key);
            let left = Bucket::tokens_at(last, rate, now) - f64::from(tokens);
            // Never back in time (another process's clock, or a decision
            // that waited to be written), which would mint tokens.
            let at = last.map_or(now, |b| b.at.max(now));
            (
                key.to_owned(),
                Bucket {
                    tokens: left.max(0.0),
                    at,
                },
            )
        })
        .collect()
}
