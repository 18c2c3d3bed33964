//! The admission line in one document, changed by compare-and-swap.
//!
//! Who holds slots of which gates and who waits, in order, is one
//! document (`admission`, `_id: "line"`) with a `version`. A change reads
//! it, gives back the slots and places of executions that are final or
//! gone, decides in memory (with [`crate::store::line`], as every store),
//! and writes the result back only if `version` is still the one
//! it read, bumping it. MongoDB changes one document atomically, so of two
//! processes deciding from the same version one write matches and the
//! other matches nothing and starts again from the new version: every
//! admission is decided from the line as the last one left it, exactly as
//! PostgreSQL's table lock gives, with no transaction, so a standalone
//! `mongod` does it as well as a replica set. Nothing is held while
//! deciding, so a process that dies mid-way blocks nobody.
//!
//! The cost is one document holding the whole line: each waiter takes a
//! hundred bytes or so, so the 16 MiB document limit is some 100,000
//! waiting executions, and each admission rewrites the line.
//! The rate limits' buckets live in the same document; the paused gates
//! in a collection of their own (`paused_gates`), read before deciding.

use std::collections::{HashMap, HashSet};

use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use serde::{Deserialize, Serialize};

use super::LIVE;
use super::documents::{corrupt, field, json, mongo};
use super::schema::{ADMISSION, EXECUTIONS, PAUSED};
use crate::store::line::{Ask, Bucket, LineState, Plan, Policy};
use crate::store::{Admission, StoreError};

/// The `_id` of the admission document.
const LINE: &str = "line";

/// How many times a change is tried before the store gives up (each try
/// lost to another process's change, which did go through).
const MAX_TRIES: u32 = 200;

/// The slots held and the executions waiting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Line {
    /// Executions holding slots, with the gates they hold.
    pub slots: Vec<Holder>,
    /// Executions waiting, first come first.
    pub waiting: Vec<Waiter>,
    /// The rate limits' buckets, by gate.
    #[serde(default)]
    pub buckets: Vec<(String, Bucket)>,
}

/// An execution holding a slot of each of `gates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Holder {
    pub execution_id: String,
    pub gates: Vec<String>,
}

/// An execution waiting, with what it asked (a line written before flow
/// control has its choices alone, under `choices`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Waiter {
    pub execution_id: String,
    #[serde(alias = "choices")]
    pub ask: Ask,
}

impl Line {
    /// Slots held, by gate.
    pub fn held(&self) -> HashMap<String, u32> {
        let mut held = HashMap::new();
        for holder in &self.slots {
            for gate in &holder.gates {
                *held.entry(gate.clone()).or_insert(0) += 1;
            }
        }
        held
    }

    /// What deciding reads, with the gates `paused`, and the class and
    /// rank of `focus` if it waits.
    pub fn state(
        &self,
        paused: &HashSet<String>,
        focus: Option<&str>,
    ) -> (LineState, Option<(usize, u64)>) {
        let state = LineState {
            held: self.held(),
            paused: paused.clone(),
            buckets: self.buckets.iter().cloned().collect(),
            ..Default::default()
        }
        .with_waiters(
            self.waiting
                .iter()
                .map(|w| (w.execution_id.clone(), w.ask.clone())),
        );
        let place = focus.and_then(|id| {
            state.classes.iter().enumerate().find_map(|(c, class)| {
                let rank = class.members.iter().position(|m| m.execution_id == id)?;
                Some((c, rank as u64))
            })
        });
        (state, place)
    }
}

/// Lets `execution_id` take its slots, or puts it in line
/// ([`crate::store::Store::admit`]).
pub(super) async fn admit(
    db: &Database,
    execution_id: &str,
    ask: &Ask,
    policy: &Policy,
) -> Result<Admission, StoreError> {
    let paused = paused(db).await?;
    change(db, |line| {
        // Each try decides at its own time: a retried one must not write
        // a bucket older than the one it lost to.
        let now = chrono::Utc::now();
        if let Some(holder) = line.slots.iter().find(|h| h.execution_id == execution_id) {
            let mut gates = holder.gates.clone();
            gates.sort();
            return Admission::Admitted { gates };
        }
        if ask.unlimited() {
            return Admission::Admitted { gates: Vec::new() };
        }
        match line
            .waiting
            .iter_mut()
            .find(|w| w.execution_id == execution_id)
        {
            // It keeps its place and the time it first asked.
            Some(waiter) => {
                let since = waiter.ask.since;
                waiter.ask = ask.clone();
                if since.timestamp() > 0 {
                    waiter.ask.since = since;
                }
            }
            None => line.waiting.push(Waiter {
                execution_id: execution_id.to_owned(),
                ask: ask.clone(),
            }),
        }
        let (state, place) = line.state(&paused, Some(execution_id));
        let Some((class, rank)) = place else {
            return Admission::Waiting { ahead: 0 };
        };
        match crate::store::line::plan(&state, class, rank, execution_id, policy, now) {
            Plan::Wait { ahead } => Admission::Waiting { ahead },
            Plan::Take { gates, buckets } => {
                let mut held = gates.clone();
                held.sort();
                held.dedup();
                line.waiting.retain(|w| w.execution_id != execution_id);
                line.slots.push(Holder {
                    execution_id: execution_id.to_owned(),
                    gates: held,
                });
                for (gate, bucket) in buckets {
                    line.buckets.retain(|(g, _)| *g != gate);
                    line.buckets.push((gate, bucket));
                }
                Admission::Admitted { gates }
            }
        }
    })
    .await
}

/// The paused gates.
pub(super) async fn paused(db: &Database) -> Result<HashSet<String>, StoreError> {
    let mut paused = HashSet::new();
    let mut cursor = db
        .collection::<Document>(PAUSED)
        .find(doc! {})
        .await
        .map_err(mongo)?;
    while cursor.advance().await.map_err(mongo)? {
        let current = cursor.deserialize_current().map_err(mongo)?;
        if let Ok(id) = current.get_str("_id") {
            paused.insert(id.to_owned());
        }
    }
    Ok(paused)
}

/// Pauses or resumes `key`; whether this changed it.
pub(super) async fn set_paused(db: &Database, key: &str, pause: bool) -> Result<bool, StoreError> {
    let paused = db.collection::<Document>(PAUSED);
    if pause {
        let at = mongodb::bson::DateTime::now();
        let written = paused
            .update_one(doc! {"_id": key}, doc! {"$setOnInsert": {"at": at}})
            .upsert(true)
            .await
            .map_err(mongo)?;
        Ok(written.upserted_id.is_some())
    } else {
        let deleted = paused.delete_one(doc! {"_id": key}).await.map_err(mongo)?;
        Ok(deleted.deleted_count > 0)
    }
}

/// Reads the line, gives back what final executions held, lets `decide`
/// change it, and stores the change unless another process changed the
/// line meanwhile, in which case all of it is done again.
pub(super) async fn change<T>(
    db: &Database,
    mut decide: impl FnMut(&mut Line) -> T,
) -> Result<T, StoreError> {
    let admission = db.collection::<Document>(ADMISSION);
    for attempt in 0..MAX_TRIES {
        let Some(stored) = admission
            .find_one(doc! {"_id": LINE})
            .await
            .map_err(mongo)?
        else {
            create(db).await?;
            continue;
        };
        let version = stored.get("version").cloned().unwrap_or(Bson::Int64(0));
        let read: Line = match stored.get("state") {
            Some(state) => serde_json::from_value(json(state.clone())?).map_err(corrupt)?,
            None => Line::default(),
        };
        let mut line = give_back_finished(db, read.clone()).await?;
        let answer = decide(&mut line);
        if line == read {
            return Ok(answer);
        }
        let written = admission
            .update_one(
                doc! {"_id": LINE, "version": version},
                doc! {"$set": {"state": field(&line)?}, "$inc": {"version": 1_i64}},
            )
            .await
            .map_err(mongo)?;
        if written.matched_count == 1 {
            return Ok(answer);
        }
        // Another process changed the line first: wait a little (longer as
        // tries pile up, with jitter so the losers do not collide again).
        let ceiling_us = 500_u128 << attempt.min(6);
        let pause = uuid::Uuid::new_v4().as_u128() % ceiling_us;
        tokio::time::sleep(std::time::Duration::from_micros(pause as u64)).await;
    }
    Err(StoreError::Unavailable(format!(
        "mongodb: the admission line changed under {MAX_TRIES} tries in a row"
    )))
}

/// Creates the empty line unless it exists.
pub(super) async fn create(db: &Database) -> Result<(), StoreError> {
    let result = db
        .collection::<Document>(ADMISSION)
        .update_one(
            doc! {"_id": LINE},
            doc! {"$setOnInsert": {"version": 0_i64, "state": field(&Line::default())?}},
        )
        .upsert(true)
        .await;
    match result {
        Ok(_) => Ok(()),
        // Another process created it at the same moment.
        Err(err) if super::documents::is_duplicate_key(&err) => Ok(()),
        Err(err) => Err(mongo(err)),
    }
}

/// `line` without the slots and places of executions that are final or
/// no longer exist.
async fn give_back_finished(db: &Database, mut line: Line) -> Result<Line, StoreError> {
    let ids: Vec<&str> = line
        .slots
        .iter()
        .map(|h| h.execution_id.as_str())
        .chain(line.waiting.iter().map(|w| w.execution_id.as_str()))
        .collect();
    if ids.is_empty() {
        return Ok(line);
    }
    let mut live = HashSet::new();
    let mut cursor = db
        .collection::<Document>(EXECUTIONS)
        .find(doc! {"_id": {"$in": ids}, "status": {"$in": LIVE.to_vec()}})
        .projection(doc! {"_id": 1})
        .await
        .map_err(mongo)?;
    while cursor.advance().await.map_err(mongo)? {
        let current = cursor.deserialize_current().map_err(mongo)?;
        if let Ok(id) = current.get_str("_id") {
            live.insert(id.to_owned());
        }
    }
    line.slots.retain(|h| live.contains(&h.execution_id));
    line.waiting.retain(|w| live.contains(&w.execution_id));
    Ok(line)
}
