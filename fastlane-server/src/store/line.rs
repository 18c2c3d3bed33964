//! Who starts next: the admission line decided in memory, the same way by
//! every store.
//!
//! A store loads the [`LineState`] inside its own serialised step (SQLite's
//! single writer, PostgreSQL's table lock, MongoDB's compare-and-swap),
//! asks [`plan`] (an execution asking for slots) or [`decide`] (who may go
//! now), and writes back what the answer says. Nothing here touches a
//! store, so the rules are tested once, below. Waiters that asked the same
//! are one [`Class`]: a store reads each class's count and only as many of
//! its first waiters as could go now ([`room`]), so deciding costs the
//! number of distinct asks, not the length of the line.
//!
//! The rules, in the order they apply:
//! - **Paused gates** hold back every choice that goes through them.
//! - **Priority bands:** waiters are considered highest effective priority
//!   first. A waiter's effective priority is its own plus one for every
//!   `aging` it has waited, capped at the highest priority in line, so a
//!   low priority catches up with the top band and is then served in turn,
//!   while waiters of equal priority are never reordered by age alone.
//! - **Within a band**, first come first served ([`Order::Fifo`]), or
//!   ([`Order::Fair`]) the flow (a task, or a concurrency key) holding the
//!   fewest slots for its weight goes next, first come first within it.
//! - **Gates:** a waiter takes a slot of every gate of its first choice
//!   that has room under every limit, a token of every rate limit of that
//!   choice, and passes no paused gate. One that does not fit never holds
//!   back others whose gates differ.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod grant;
pub use grant::grants;

/// A limit an execution must fit under before it is placed: at most
/// `limit` executions holding `key` at once (a farm's `maxRunning`, a
/// task's `maxConcurrent`), and, with a `rate`, at most that many starts a
/// second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// What is limited: `pool:<executor>:<pool>`, `task:<task id>`,
    /// `taskkey:<task id>/<key>` or `key:<concurrency key>`.
    pub key: String,
    /// How many may hold it at once.
    pub limit: u32,
    /// How fast executions may pass it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

impl Gate {
    /// A gate of `limit` slots and no rate.
    pub fn new(key: impl Into<String>, limit: u32) -> Self {
        Self {
            key: key.into(),
            limit,
            rate: None,
        }
    }
}

/// A token bucket: `per_second` tokens a second, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Tokens added a second.
    pub per_second: f64,
    /// The most tokens kept (and the starts that may happen at once).
    pub burst: u32,
}

/// What an execution may pass: one of several sets of gates (a farm's
/// pool with the task's limit, or the next farm's when work may fall
/// through), preferred first.
pub type Choices = Vec<Vec<Gate>>;

/// What an execution asks of the line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ask {
    /// Its choices of gates.
    pub choices: Choices,
    /// Higher goes first.
    pub priority: i32,
    /// Whose share it counts against under [`Order::Fair`]: the key of one
    /// of its gates (its task's, or its concurrency key's), so slots held
    /// are counted by the gate.
    pub flow: String,
    /// The flow's weight: twice the weight, twice the slots.
    pub weight: u32,
    /// When it first asked.
    pub since: DateTime<Utc>,
}

impl Ask {
    /// An ask with these choices and nothing else (priority 0, weight 1).
    pub fn plain(choices: Choices, since: DateTime<Utc>) -> Self {
        let flow = choices
            .first()
            .and_then(|gates| gates.last())
            .map(|g| g.key.clone())
            .unwrap_or_default();
        Self {
            choices,
            priority: 0,
            flow,
            weight: 1,
            since,
        }
    }

    /// True when nothing limits it.
    pub fn unlimited(&self) -> bool {
        self.choices.is_empty() || self.choices.iter().any(Vec::is_empty)
    }
}

impl<'de> Deserialize<'de> for Ask {
    /// Reads an ask, or a line entry stored before flow control (its
    /// choices alone).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            choices: Choices,
            #[serde(default)]
            priority: i32,
            #[serde(default)]
            flow: String,
            #[serde(default = "one")]
            weight: u32,
            since: Option<DateTime<Utc>>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Choices(Choices),
            Full(Full),
        }
        fn one() -> u32 {
            1
        }
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Full(full) => Self {
                choices: full.choices,
                priority: full.priority,
                flow: full.flow,
                weight: full.weight.max(1),
                since: full.since.unwrap_or(epoch),
            },
            Stored::Choices(choices) => Self::plain(choices, epoch),
        })
    }
}

/// The order within a priority band.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// First come first served.
    Fifo,
    /// The flow with the fewest slots for its weight first.
    #[default]
    Fair,
}

/// How the line is ordered (from the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The order within a band.
    pub order: Order,
    /// A waiter's priority rises by one for every this many seconds it
    /// waited (up to the highest in line); 0 turns ageing off.
    pub aging_seconds: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            order: Order::Fair,
            aging_seconds: 60,
        }
    }
}

/// A rate limit's tokens when last spent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Tokens left then.
    pub tokens: f64,
    /// When.
    pub at: DateTime<Utc>,
}

impl Bucket {
    /// The tokens at `now` under `rate` (full when never spent).
    fn tokens_at(bucket: Option<&Self>, rate: Rate, now: DateTime<Utc>) -> f64 {
        let burst = f64::from(rate.burst.max(1));
        match bucket {
            None => burst,
            Some(b) => {
                let elapsed = (now - b.at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
                (b.tokens + elapsed.max(0.0) * rate.per_second).min(burst)
            }
        }
    }
}

/// Waiters that asked exactly the same (gates, priority, flow, weight):
/// they go in the order they came, and one that does not fit means none
/// of the others fits either, so the line is decided a class at a time and
/// a burst of 100,000 identical jobs costs what one does.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    /// What they asked; `since` is the first one's.
    pub ask: Ask,
    /// How many wait.
    pub count: u64,
    /// The place in line of the first of them.
    pub first: i64,
    /// The first of them in line order: at least as many as [`room`] says
    /// could go now (a store reads no more than that).
    pub members: Vec<Member>,
}

/// One waiter of a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its place in the whole line (lower came first).
    pub seq: i64,
    /// The execution.
    pub execution_id: String,
    /// When it first asked: its priority ages from then.
    pub since: DateTime<Utc>,
}

/// The class key of `ask`: a digest of everything but when it asked (it
/// is indexed with every waiter, so it is kept short).
pub fn class_key(ask: &Ask) -> String {
    use sha2::{Digest, Sha256};
    #[derive(Serialize)]
    struct Key<'a> {
        choices: &'a Choices,
        priority: i32,
        flow: &'a str,
        weight: u32,
    }
    let text = serde_json::to_string(&Key {
        choices: &ask.choices,
        priority: ask.priority,
        flow: &ask.flow,
        weight: ask.weight,
    })
    .unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything a decision reads: slots held by gate, who waits (by class),
/// the paused gates and the rate limits' buckets.
#[derive(Debug, Clone, Default)]
pub struct LineState {
    /// Slots held, by gate.
    pub held: HashMap<String, u32>,
    /// Who waits.
    pub classes: Vec<Class>,
    /// Gates nothing may pass now.
    pub paused: HashSet<String>,
    /// The rate limits' buckets, by gate.
    pub buckets: HashMap<String, Bucket>,
}

impl LineState {
    /// A state with these waiters (one class per distinct ask), in the
    /// order given: how a store that holds the line in memory builds it.
    pub fn with_waiters(mut self, waiters: impl IntoIterator<Item = (String, Ask)>) -> Self {
        let mut index: HashMap<String, usize> = HashMap::new();
        for (seq, (execution_id, ask)) in waiters.into_iter().enumerate() {
            let key = class_key(&ask);
            let at = *index.entry(key).or_insert_with(|| {
                self.classes.push(Class {
                    ask: ask.clone(),
                    count: 0,
                    first: i64::try_from(seq).unwrap_or(i64::MAX),
                    members: Vec::new(),
                });
                self.classes.len() - 1
            });
            let class = &mut self.classes[at];
            class.count += 1;
            class.members.push(Member {
                seq: i64::try_from(seq).unwrap_or(i64::MAX),
                execution_id,
                since: ask.since,
            });
        }
        self
    }
}

/// Who may go now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// `(class, member, choice)` indexes, in the order they go.
    pub admitted: Vec<(usize, usize, usize)>,
    /// When a waiter held back only by a rate limit gets its token: the
    /// line is worth deciding again then.
    pub retry_in: Option<std::time::Duration>,
}

impl Decision {
    /// The executions that go, in order.
    pub fn ids(&self, state: &LineState) -> Vec<String> {
        self.admitted
            .iter()
            .filter_map(|(c, m, _)| {
                let class = state.classes.get(*c)?;
                Some(class.members.get(*m)?.execution_id.clone())
            })
            .collect()
    }
}

/// What the store does for an execution asking for slots.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Take a slot of each of `gates`, leave the line, and store the
    /// `buckets` it spent a token of.
    Take {
        /// The gates' keys.
        gates: Vec<String>,
        /// Buckets after spending.
        buckets: Vec<(String, Bucket)>,
    },
    /// Wait in line.
    Wait {
        /// Waiters that go before it.
        ahead: u64,
    },
}

/// Why one waiter waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// The gate that holds it back.
    pub gate: String,
    /// `paused`, `full` or `rate`; `turn` when the gates have room but
    /// waiters before it take it.
    pub reason: &'static str,
    /// Waiters that go before it and want the same gate.
    pub ahead: u64,
}

/// The working copy of the state a decision changes.
struct Sim<'a> {
    state: &'a LineState,
    held: HashMap<String, u32>,
    tokens: HashMap<String, f64>,
    now: DateTime<Utc>,
}

impl<'a> Sim<'a> {
    fn new(state: &'a LineState, now: DateTime<Utc>) -> Self {
        Self {
            state,
            held: state.held.clone(),
            tokens: HashMap::new(),
            now,
        }
    }

    fn tokens(&mut self, gate: &Gate, rate: Rate) -> f64 {
        let (state, now) = (self.state, self.now);
        *self
            .tokens
            .entry(gate.key.clone())
            .or_insert_with(|| Bucket::tokens_at(state.buckets.get(&gate.key), rate, now))
    }

    /// The first gate of `gates` that holds an execution back, and why.
    fn obstacle(&mut self, gates: &[Gate]) -> Option<(String, &'static str)> {
        for gate in gates {
            if self.state.paused.contains(&gate.key) {
                return Some((gate.key.clone(), "paused"));
            }
        }
        for gate in gates {
            if self.held.get(&gate.key).copied().unwrap_or(0) >= gate.limit {
                return Some((gate.key.clone(), "full"));
            }
        }
        for gate in gates {
            if let Some(rate) = gate.rate
                && self.tokens(gate, rate) < 1.0
            {
                return Some((gate.key.clone(), "rate"));
            }
        }
        None
    }

    /// How many more could pass `gates` now.
    fn room_in(&mut self, gates: &[Gate]) -> u64 {
        let mut room = u64::MAX;
        for gate in gates {
            if self.state.paused.contains(&gate.key) {
                return 0;
            }
            let held = self.held.get(&gate.key).copied().unwrap_or(0);
            room = room.min(u64::from(gate.limit.saturating_sub(held)));
            if let Some(rate) = gate.rate {
                room = room.min(self.tokens(gate, rate).max(0.0).floor() as u64);
            }
        }
        room
    }

    /// The first of `choices` that fits now.
    fn fitting(&mut self, choices: &Choices) -> Option<usize> {
        choices
            .iter()
            .position(|gates| self.obstacle(gates).is_none())
    }

    fn take(&mut self, gates: &[Gate]) {
        for gate in gates {
            *self.held.entry(gate.key.clone()).or_insert(0) += 1;
            if let Some(rate) = gate.rate {
                let left = self.tokens(gate, rate) - 1.0;
                self.tokens.insert(gate.key.clone(), left);
            }
        }
    }
}

/// The most waiters of one class a store reads for a decision, unless the
/// one asking stands further in: a class with room for more (no limit but
/// its rate, say) goes this many at a time, woken again as they leave.
pub const MAX_LOADED: u64 = 1000;

/// How many of a class's first waiters a store reads: as many as could go
/// now (`room`), at most [`MAX_LOADED`], but always up to the one asking
/// (`focus_rank`: waiters of its class before it) when it could go.
pub fn loaded(room: u64, focus_rank: Option<u64>) -> u64 {
    let mut limit = room.min(MAX_LOADED);
    if let Some(rank) = focus_rank
        && rank < room
    {
        limit = limit.max(rank + 1);
    }
    limit
}

/// How many of the waiters asking `ask` could go now at most: what a store
/// reads of a class. (Between choices, as many as all their rooms.)
pub fn room(state: &LineState, ask: &Ask, now: DateTime<Utc>) -> u64 {
    let mut sim = Sim::new(state, now);
    ask.choices
        .iter()
        .map(|gates| sim.room_in(gates))
        .fold(0_u64, u64::saturating_add)
}

/// A waiter's effective priority: its own, plus one for every
/// `aging_seconds` it waited since `since`, capped at `top` (the highest
/// priority in line) unless its own is higher.
fn effective(
    priority: i32,
    since: DateTime<Utc>,
    top: i32,
    policy: &Policy,
    now: DateTime<Utc>,
) -> i64 {
    let own = i64::from(priority);
    if policy.aging_seconds == 0 {
        return own;
    }
    let waited = (now - since).num_seconds().max(0);
    let aging = i64::try_from(policy.aging_seconds).unwrap_or(i64::MAX);
    own.saturating_add(waited / aging)
        .min(i64::from(top).max(own))
}

/// The highest priority in line.
fn top(state: &LineState) -> i32 {
    state
        .classes
        .iter()
        .map(|c| c.ask.priority)
        .max()
        .unwrap_or(0)
}

/// Who may go now, and in which order. Each turn looks at the next waiter
/// of every class: the highest effective priority goes first; among
/// equals, under [`Order::Fair`] the flow holding the fewest slots for its
/// weight, then (and under [`Order::Fifo`]) the one that came first. It
/// takes its slots if it fits; if not, its class is done for this
/// decision (its other waiters ask the same, and taking slots never makes
/// room).
pub fn decide(state: &LineState, policy: &Policy, now: DateTime<Utc>) -> Decision {
    let mut sim = Sim::new(state, now);
    let top = top(state);
    let mut admitted = Vec::new();
    let mut next = vec![0_usize; state.classes.len()];
    loop {
        let mut best: Option<(usize, i64, f64, i64)> = None;
        for (index, class) in state.classes.iter().enumerate() {
            let Some(member) = class.members.get(next[index]) else {
                continue;
            };
            let eff = effective(class.ask.priority, member.since, top, policy, now);
            let share = match policy.order {
                Order::Fifo => 0.0,
                Order::Fair => {
                    let held = sim.held.get(&class.ask.flow).copied().unwrap_or(0);
                    f64::from(held) / f64::from(class.ask.weight.max(1))
                }
            };
            let better = best.is_none_or(|(_, e, sh, seq)| {
                eff.cmp(&e)
                    .then(sh.total_cmp(&share))
                    .then(seq.cmp(&member.seq))
                    .is_gt()
            });
            if better {
                best = Some((index, eff, share, member.seq));
            }
        }
        let Some((index, ..)) = best else {
            break;
        };
        let choices = &state.classes[index].ask.choices;
        match sim.fitting(choices) {
            Some(choice) => {
                sim.take(&choices[choice]);
                admitted.push((index, next[index], choice));
                next[index] += 1;
            }
            None => next[index] = usize::MAX,
        }
    }
    let retry_in = retry_in(&mut sim, state, &next);
    Decision { admitted, retry_in }
}

/// How long until a class held back by a rate limit alone has its token.
fn retry_in(sim: &mut Sim<'_>, state: &LineState, next: &[usize]) -> Option<std::time::Duration> {
    let mut soonest: Option<f64> = None;
    for (index, class) in state.classes.iter().enumerate() {
        let left = usize::try_from(class.count).unwrap_or(usize::MAX);
        if next[index] != usize::MAX && next[index] >= left {
            continue;
        }
        for gates in &class.ask.choices {
            let Some((key, "rate")) = sim.obstacle(gates) else {
                continue;
            };
            let Some(gate) = gates.iter().find(|g| g.key == key) else {
                continue;
            };
            let Some(rate) = gate.rate.filter(|r| r.per_second > 0.0) else {
                continue;
            };
            let wait = (1.0 - sim.tokens(gate, rate)).max(0.0) / rate.per_second;
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
    }
    soonest.map(|s| std::time::Duration::from_secs_f64(s.min(3600.0)))
}

/// What `execution_id` (a member of `state`'s class `class`, `rank`
/// waiters of its class before it) does now: take the slots of the choice
/// [`decide`] gives it, or wait.
pub fn plan(
    state: &LineState,
    class: usize,
    rank: u64,
    execution_id: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Plan {
    let decision = decide(state, policy, now);
    let choice = decision.admitted.iter().find_map(|(c, m, choice)| {
        let member = state.classes.get(*c)?.members.get(*m)?;
        (*c == class && member.execution_id == execution_id).then_some(*choice)
    });
    let ask = state.classes.get(class).map(|c| &c.ask);
    let Some(gates) = choice.and_then(|c| ask?.choices.get(c)) else {
        let ahead =
            hold_after(state, &decision, class, rank, policy, now).map_or(rank, |h| h.ahead);
        return Plan::Wait { ahead };
    };
    let buckets = grant::after_spending(state, gates.iter().map(|gate| (gate, 1)), now);
    Plan::Take {
        gates: gates.iter().map(|g| g.key.clone()).collect(),
        buckets,
    }
}

/// Why a waiter of class `class` (`rank` of its class before it) waits
/// (`None` if it may go now): the gate of its preferred choice that holds
/// it back once the waiters that may go have gone, and how many waiters
/// want that gate before it (those of classes considered first, then of
/// its own class).
pub fn why(
    state: &LineState,
    class: usize,
    rank: u64,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<Hold> {
    hold_after(state, &decide(state, policy, now), class, rank, policy, now)
}

/// [`why`], given the decision already made from `state`.
fn hold_after(
    state: &LineState,
    decision: &Decision,
    class: usize,
    rank: u64,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<Hold> {
    let went = decision
        .admitted
        .iter()
        .filter(|(c, _, _)| *c == class)
        .count() as u64;
    if rank < went {
        return None;
    }
    let mut sim = Sim::new(state, now);
    for (c, _, choice) in &decision.admitted {
        sim.take(&state.classes[*c].ask.choices[*choice]);
    }
    let mine = state.classes.get(class)?;
    let preferred = mine
        .ask
        .choices
        .first()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (gate, reason) = sim.obstacle(preferred).unwrap_or_else(|| {
        let gate = preferred.first().map(|g| g.key.clone()).unwrap_or_default();
        (gate, "turn")
    });
    // Waiters of classes considered before it (a higher effective
    // priority, or the same and an earlier first waiter) that want the gate
    // too: all of each such class, so at most this many.
    let top = top(state);
    let head = |c: &Class| {
        let since = c.members.first().map_or(c.ask.since, |m| m.since);
        (
            effective(c.ask.priority, since, top, policy, now),
            std::cmp::Reverse(c.first),
        )
    };
    let own = head(mine);
    let mut ahead = rank;
    for (c, other) in state.classes.iter().enumerate() {
        if c != class
            && head(other) > own
            && other.ask.choices.iter().flatten().any(|g| g.key == gate)
        {
            ahead += other.count;
        }
    }
    Some(Hold {
        gate,
        reason,
        ahead,
    })
}

/// How full one gate is, for `/status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateUsage {
    /// The gate's key.
    pub key: String,
    /// Executions holding a slot.
    pub running: u64,
    /// Executions waiting for one.
    pub waiting: u64,
    /// When the longest waiting of them asked.
    pub oldest: Option<DateTime<Utc>>,
    /// Paused: nothing passes it.
    pub paused: bool,
}

/// How full every gate is: a waiter counts once for each gate it could
/// take. Paused gates are listed even when nothing holds or wants them.
pub fn usage_of(state: &LineState) -> Vec<GateUsage> {
    let mut usage: std::collections::BTreeMap<String, GateUsage> = Default::default();
    let blank = |key: &str| GateUsage {
        key: key.to_owned(),
        running: 0,
        waiting: 0,
        oldest: None,
        paused: state.paused.contains(key),
    };
    for (key, running) in &state.held {
        usage
            .entry(key.clone())
            .or_insert_with(|| blank(key))
            .running = u64::from(*running);
    }
    for key in &state.paused {
        usage.entry(key.clone()).or_insert_with(|| blank(key));
    }
    for class in &state.classes {
        let mut keys: Vec<&str> = class
            .ask
            .choices
            .iter()
            .flatten()
            .map(|g| g.key.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let entry = usage.entry(key.to_owned()).or_insert_with(|| blank(key));
            entry.waiting += class.count;
            let since = class.ask.since;
            entry.oldest = Some(entry.oldest.map_or(since, |o| o.min(since)));
        }
    }
    usage.into_values().collect()
}

#[cfg(test)]
mod tests;
