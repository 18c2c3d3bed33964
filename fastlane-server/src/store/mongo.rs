//! A networked [`Store`] on MongoDB (the official `mongodb` driver), for
//! processes that share one store, as the original fastlane kept its state.
//!
//! It keeps what the PostgreSQL store keeps, with the same answers (the
//! same conformance suite runs against both):
//!
//! - **Records.** Each job, execution and task is one document: the record
//!   whole under `doc`, exactly as serde writes it (see `documents.rs` for
//!   how awkward field names and numbers are kept), and beside it the fields
//!   queries filter and sort on (`schema.rs` lists them). An execution's
//!   notification attempts are a `dispatches` array beside `doc`: saving an
//!   execution replaces `doc` and never touches them, and `append_dispatch`
//!   only `$push`es. Log text is BSON binary, so offsets stay byte-exact.
//! - **Search.** A task keeps `words`, its id's words as [`task_words`]
//!   gives them, in a multikey index; search looks a word up there. A
//!   `$text` index (what the original used) would not give the same
//!   answers: it stems English or, with language `none`, still splits at its
//!   own delimiters and folds diacritics and case its own way. Anything that
//!   is not a single word (the API never sends one) is matched as the other
//!   stores' `LIKE` pattern would, against `words_text` (` word word `).
//! - **Admission** is one document changed by compare-and-swap on a version
//!   (`admission.rs`): exact across processes, without transactions.
//! - **Several documents at once.** `submit` (task, job, first
//!   execution) and `save_execution` with a retry (the execution, the
//!   retry's execution and the job's retry count) run in a transaction
//!   when the server is a replica set member or a `mongos`, retried on
//!   transient errors. A standalone `mongod` has no transactions; there the
//!   same writes are made one after the other in that order, each atomic on
//!   its own, so a crash in between leaves a task without its job, a job
//!   without its first execution (the submission was not acknowledged), or
//!   a final execution whose retry is missing — never a retry run twice.
//!   The outbox messages of `submit` come last, so without
//!   transactions a crash before them leaves an unacknowledged execution
//!   that the start-up reconciliation runs.
//!   Every other change is one document, as atomic on both.
//! - **Order.** Tasks list in the order they were created and executions
//!   tie-break on a `seq` taken from a counter document (`$inc`), the
//!   stand-in for PostgreSQL's `BIGSERIAL`. Times to sort on are BSON dates
//!   (milliseconds; the record keeps the exact time); host health compares
//!   reports in nanoseconds.
//!
//! [`task_words`]: super::task_words

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::options::{ClientOptions, ReturnDocument};
use mongodb::{Client, ClientSession, Collection, Database};
use serde_json::Value;

use fastlane_sdk::{Execution, ExecutionStatus, Job, Task};

mod admission;
mod documents;
mod hosts;
mod listing;
mod logs;
mod messages;
mod schema;
mod writes;

use documents::{big, corrupt, date, field, from_record, is_duplicate_key, json, mongo};
use schema::{COUNTERS, EXECUTIONS, JOBS, TASKS};
use writes::StoredExecution;

use super::{
    Admission, Ask, Ended, IdempotencyRecord, JobSummary, LineState, LogPiece, LogTotals, Outgoing,
    Policy, Store, StoreError, Submission, TaskSummary,
};

/// Statuses of executions that have not reached a final status.
const LIVE: [&str; 3] = ["enqueued", "pulling", "running"];

/// How many times a transaction is tried when the server says trying again
/// may work.
const TRANSACTION_TRIES: u32 = 5;

/// The MongoDB store: a client (its own connection pool) and a database.
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    db: Database,
    /// Whether the server runs multi-document transactions (replica sets
    /// and sharded clusters do, a standalone `mongod` does not).
    transactions: bool,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.db.name())
            .field("transactions", &self.transactions)
            .finish()
    }
}

/// The execution in a stored document.
fn execution_from(stored: &Document) -> Result<Execution, StoreError> {
    let Value::Object(mut map) = json(
        stored
            .get("doc")
            .cloned()
            .ok_or_else(|| corrupt("an execution has no `doc`"))?,
    )?
    else {
        return Err(corrupt("an execution's `doc` is not a document"));
    };
    let dispatches = stored
        .get("dispatches")
        .cloned()
        .unwrap_or(Bson::Array(Vec::new()));
    map.insert("dispatches".to_owned(), json(dispatches)?);
    serde_json::from_value(Value::Object(map)).map_err(corrupt)
}

/// The records of `stored` that `read` can read; the others are skipped
/// with a warning naming them (see [`crate::store::readable`]).
fn listed<T>(
    kind: &'static str,
    stored: &[Document],
    read: impl Fn(&Document) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut records = Vec::with_capacity(stored.len());
    for document in stored {
        let id = document.get_str("_id").unwrap_or("(no id)");
        records.extend(crate::store::readable(kind, id, read(document))?);
    }
    Ok(records)
}

/// The record `id` read by `read` from `stored`, if found; an unreadable
/// one is an error naming it.
fn one<T>(
    kind: &'static str,
    id: &str,
    stored: Option<Document>,
    read: impl Fn(&Document) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    stored
        .as_ref()
        .map(|document| crate::store::named(kind, id, read(document)))
        .transpose()
}

/// The query that finds the tasks having `word` (already lower-cased):
/// the same tasks as the other stores' `LIKE` on [`super::search_pattern`].
fn search_filter(word: &str) -> Option<Document> {
    let word = word.replace(['%', '_'], "");
    if word.contains('\0') {
        // A regular expression cannot hold NUL, and no task word does.
        return None;
    }
    if !word.is_empty() && !word.contains(' ') {
        // `$all` of one word: equality with an element, using the index.
        return Some(doc! {"words": {"$all": [word]}});
    }
    let mut pattern = String::new();
    for c in format!(" {word} ").chars() {
        if c.is_ascii_punctuation() {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    Some(doc! {"words_text": {"$regex": pattern}})
}

impl MongoStore {
    /// Connects to the server at `url` (`mongodb://…` or `mongodb+srv://…`)
    /// and creates the indexes `database` lacks.
    pub async fn connect(url: &str, database: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| StoreError::Unavailable(format!("mongodb url: {e}")))?;
        options
            .app_name
            .get_or_insert_with(|| "fastlane".to_owned());
        options
            .server_selection_timeout
            .get_or_insert(std::time::Duration::from_secs(10));
        let client = Client::with_options(options).map_err(mongo)?;
        let db = client.database(database);
        let hello = match db.run_command(doc! {"hello": 1}).await {
            Ok(hello) => hello,
            // Servers before 4.4.2 know it by its old name.
            Err(_) => db.run_command(doc! {"isMaster": 1}).await.map_err(mongo)?,
        };
        let transactions =
            hello.contains_key("setName") || hello.get_str("msg").ok() == Some("isdbgrid");
        schema::create_indexes(&db).await.map_err(mongo)?;
        admission::create(&db).await?;
        Ok(Self {
            client,
            db,
            transactions,
        })
    }

    /// Deletes the database with everything in it.
    #[cfg(test)]
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        self.db.drop().await.map_err(mongo)
    }

    fn collection(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// The next number of sequence `name` (1, 2, …; gaps when a number
    /// taken is not used).
    async fn next_seq(&self, name: &str) -> mongodb::error::Result<i64> {
        let counters = self.collection(COUNTERS);
        let mut tries = 0;
        loop {
            let taken = counters
                .find_one_and_update(doc! {"_id": name}, doc! {"$inc": {"n": 1_i64}})
                .upsert(true)
                .return_document(ReturnDocument::After)
                .await;
            match taken {
                Ok(counter) => {
                    return Ok(counter
                        .and_then(|c| c.get("n").and_then(Bson::as_i64))
                        .unwrap_or(0));
                }
                // Two first numbers taken at once: the loser's upsert finds
                // the counter the winner created next time.
                Err(err) if is_duplicate_key(&err) && tries < 3 => tries += 1,
                Err(err) => return Err(err),
            }
        }
    }

    /// Every document `find` finds, in its order.
    async fn all(
        &self,
        name: &str,
        filter: Document,
        sort: Document,
    ) -> Result<Vec<Document>, StoreError> {
        self.collection(name)
            .find(filter)
            .sort(sort)
            .await
            .map_err(mongo)?
            .try_collect()
            .await
            .map_err(mongo)
    }

    /// Starts a transaction on `session` where the server has them.
    async fn begin(&self, session: &mut ClientSession) -> Result<(), StoreError> {
        if self.transactions {
            session.start_transaction().await.map_err(mongo)?;
        }
        Ok(())
    }

    /// Ends what [`Self::begin`] started: commits `outcome`'s writes, or
    /// aborts them. `Ok(false)` means the server asks for the whole
    /// transaction again.
    async fn settle(
        &self,
        session: &mut ClientSession,
        outcome: mongodb::error::Result<()>,
        tries: &mut u32,
    ) -> Result<bool, StoreError> {
        if !self.transactions {
            return outcome.map(|()| true).map_err(mongo);
        }
        *tries += 1;
        let err = match outcome {
            Ok(()) => loop {
                match session.commit_transaction().await {
                    Ok(()) => return Ok(true),
                    Err(err)
                        if err.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                            && *tries < TRANSACTION_TRIES =>
                    {
                        *tries += 1;
                    }
                    Err(err) => break err,
                }
            },
            Err(err) => {
                // Best effort: the server may have aborted it already.
                let _ = session.abort_transaction().await;
                err
            }
        };
        if err.contains_label(TRANSIENT_TRANSACTION_ERROR) && *tries < TRANSACTION_TRIES {
            return Ok(false);
        }
        Err(mongo(err))
    }
}

/// The queue message a document of `outbox` or `deliveries` holds; errors
/// say which (`what`).
fn outgoing_of(message: &Document, what: &str) -> Result<Outgoing, StoreError> {
    let read = |key: &str| {
        message
            .get_str(key)
            .map(str::to_owned)
            .map_err(|e| corrupt(format!("{what}: {e}")))
    };
    Ok(Outgoing {
        id: read("_id")?,
        queue: read("queue")?,
        payload: read("payload")?,
        due_ms: message
            .get_i64("due_ms")
            .map_err(|e| corrupt(format!("{what}: {e}")))?,
    })
}

#[async_trait]
impl Store for MongoStore {
    async fn submit(&self, submission: Submission<'_>) -> Result<bool, StoreError> {
        writes::submit(self, submission).await
    }

    async fn idempotency(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        messages::idempotency(self, key, now_ms).await
    }

    async fn forget_expired_keys(&self, now_ms: i64) -> Result<u64, StoreError> {
        messages::forget_expired_keys(self, now_ms).await
    }

    async fn take_outbox(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<Outgoing>, StoreError> {
        messages::take_outbox(self, limit, lease).await
    }

    async fn remove_outbox(&self, ids: &[String]) -> Result<(), StoreError> {
        messages::remove_outbox(self, ids).await
    }

    async fn owed_deliveries(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Outgoing>, StoreError> {
        messages::owed_deliveries(self, after, limit).await
    }

    async fn settle_deliveries(&self, ids: &[String]) -> Result<(), StoreError> {
        messages::settle_deliveries(self, ids).await
    }

    async fn save_job(&self, job: &Job) -> Result<(), StoreError> {
        self.submit(Submission::job(job)).await?;
        Ok(())
    }

    async fn find_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let stored = self
            .collection(JOBS)
            .find_one(doc! {"_id": job_id})
            .await
            .map_err(mongo)?;
        one("job", job_id, stored, from_record)
    }

    async fn job(&self, task_id: &str, job_id: &str) -> Result<Option<Job>, StoreError> {
        let stored = self
            .collection(JOBS)
            .find_one(doc! {"_id": job_id, "task_id": task_id})
            .await
            .map_err(mongo)?;
        one("job", job_id, stored, from_record)
    }

    async fn tasks(&self, offset: u64, limit: u64) -> Result<(Vec<TaskSummary>, u64), StoreError> {
        listing::task_page(self, None, offset, limit).await
    }

    async fn task(&self, task_id: &str) -> Result<Option<(Task, Vec<JobSummary>)>, StoreError> {
        let Some(stored) = self
            .collection(TASKS)
            .find_one(doc! {"_id": task_id})
            .await
            .map_err(mongo)?
        else {
            return Ok(None);
        };
        let task: Task = crate::store::named("task", task_id, from_record(&stored))?;
        let stored = self
            .all(
                JOBS,
                doc! {"task_id": task_id},
                doc! {"last_modified_at": -1},
            )
            .await?;
        let jobs = listed("job", &stored, from_record::<Job>)?
            .into_iter()
            .map(JobSummary::from)
            .collect();
        Ok(Some((task, jobs)))
    }

    async fn executions(
        &self,
        job_id: &str,
        limit: u64,
    ) -> Result<(Vec<Execution>, u64), StoreError> {
        let executions = self.collection(EXECUTIONS);
        let total = executions
            .count_documents(doc! {"job_id": job_id})
            .await
            .map_err(mongo)?;
        if limit == 0 {
            return Ok((Vec::new(), total));
        }
        let newest: Vec<Document> = executions
            .find(doc! {"job_id": job_id})
            .sort(doc! {"created_at": -1, "seq": -1})
            .limit(big(limit))
            .await
            .map_err(mongo)?
            .try_collect()
            .await
            .map_err(mongo)?;
        Ok((listed("execution", &newest, execution_from)?, total))
    }

    async fn ended_since(
        &self,
        since: DateTime<Utc>,
        statuses: &[ExecutionStatus],
        limit: u64,
    ) -> Result<Vec<Ended>, StoreError> {
        listing::ended_since(self, since, statuses, limit).await
    }

    async fn execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError> {
        let stored = self
            .collection(EXECUTIONS)
            .find_one(doc! {"_id": execution_id})
            .await
            .map_err(mongo)?;
        one("execution", execution_id, stored, execution_from)
    }

    async fn save_execution(
        &self,
        execution: &Execution,
        retry: Option<&Execution>,
    ) -> Result<(), StoreError> {
        let saved = StoredExecution::new(execution)?;
        let retry = retry.map(StoredExecution::new).transpose()?;
        let mut session = self.client.start_session().await.map_err(mongo)?;
        let mut tries = 0;
        loop {
            self.begin(&mut session).await?;
            let outcome = async {
                self.upsert_execution(&mut session, &saved).await?;
                if let Some(next) = &retry {
                    self.upsert_execution(&mut session, next).await?;
                    self.collection(JOBS)
                        .update_one(
                            doc! {"_id": &next.job_id},
                            doc! {"$inc": {"doc.retry_count": 1_i64}},
                        )
                        .session(&mut session)
                        .await?;
                }
                Ok(())
            }
            .await;
            if self.settle(&mut session, outcome, &mut tries).await? {
                return Ok(());
            }
        }
    }

    async fn mark_stopped(
        &self,
        execution_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Execution>, StoreError> {
        let stored = self
            .collection(EXECUTIONS)
            .find_one_and_update(
                doc! {"_id": execution_id, "status": {"$in": LIVE.to_vec()}},
                doc! {"$set": {
                    "status": "stopped",
                    "doc.status": "stopped",
                    "doc.finished_at": field(&at)?,
                    "doc.error": reason,
                }},
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(mongo)?;
        one("execution", execution_id, stored, execution_from)
    }

    async fn append_dispatch(
        &self,
        execution_id: &str,
        record: &fastlane_sdk::DispatchRecord,
    ) -> Result<(), StoreError> {
        self.collection(EXECUTIONS)
            .update_one(
                doc! {"_id": execution_id},
                doc! {"$push": {"dispatches": field(record)?}},
            )
            .await
            .map_err(mongo)?;
        Ok(())
    }

    async fn set_detail(&self, execution_id: &str, detail: &str) -> Result<(), StoreError> {
        self.collection(EXECUTIONS)
            .update_one(
                doc! {"_id": execution_id, "status": "pulling"},
                doc! {"$set": {"doc.detail": detail}},
            )
            .await
            .map_err(mongo)?;
        Ok(())
    }

    async fn insert_execution(&self, execution: &Execution) -> Result<bool, StoreError> {
        let stored = StoredExecution::new(execution)?;
        let seq = self.next_seq(EXECUTIONS).await.map_err(mongo)?;
        match self
            .collection(EXECUTIONS)
            .insert_one(stored.full(seq))
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if is_duplicate_key(&err) => Ok(false),
            Err(err) => Err(mongo(err)),
        }
    }

    async fn set_next_run(
        &self,
        job_id: &str,
        generation: u32,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let updated = self
            .collection(JOBS)
            .update_one(
                doc! {"_id": job_id, "doc.generation": i64::from(generation)},
                doc! {"$set": {
                    "doc.next_run_at": field(&next_run_at)?,
                    "next_run_at": next_run_at.map_or(Bson::Null, date),
                }},
            )
            .await
            .map_err(mongo)?;
        Ok(updated.matched_count > 0)
    }

    async fn live_executions(&self, job_id: &str) -> Result<Vec<Execution>, StoreError> {
        let stored = self
            .all(
                EXECUTIONS,
                doc! {"job_id": job_id, "status": {"$in": LIVE.to_vec()}},
                doc! {"created_at": 1, "seq": 1},
            )
            .await?;
        listed("execution", &stored, execution_from)
    }

    async fn scheduled_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let stored = self
            .all(
                JOBS,
                doc! {"next_run_at": {"$ne": Bson::Null}, "stopped": {"$ne": true}},
                doc! {"next_run_at": 1},
            )
            .await?;
        listed("job", &stored, from_record)
    }

    async fn search_tasks(
        &self,
        word: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<TaskSummary>, u64), StoreError> {
        listing::task_page(self, Some(&word.to_lowercase()), offset, limit).await
    }

    async fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError> {
        let stored = self
            .all(
                EXECUTIONS,
                doc! {"status": {"$in": LIVE.to_vec()}},
                doc! {"created_at": 1, "seq": 1},
            )
            .await?;
        listed("execution", &stored, execution_from)
    }

    async fn blacklist(&self) -> Result<Vec<String>, StoreError> {
        hosts::blacklist(self).await
    }

    async fn set_blacklisted(&self, host: &str, blacklisted: bool) -> Result<(), StoreError> {
        hosts::set_blacklisted(self, host, blacklisted).await
    }

    async fn share_host_health(
        &self,
        reports: &[fastlane_sdk::HostHealth],
    ) -> Result<Vec<fastlane_sdk::HostHealth>, StoreError> {
        hosts::share_host_health(self, reports).await
    }

    async fn counts(&self) -> Result<(u64, u64), StoreError> {
        let tasks = self
            .collection(TASKS)
            .count_documents(Document::new())
            .await
            .map_err(mongo)?;
        let jobs = self
            .collection(JOBS)
            .count_documents(Document::new())
            .await
            .map_err(mongo)?;
        Ok((tasks, jobs))
    }

    async fn append_log(&self, execution_id: &str, pieces: &[LogPiece]) -> Result<(), StoreError> {
        logs::append_log(self, execution_id, pieces).await
    }

    async fn read_log(
        &self,
        execution_id: &str,
        from: u64,
        limit: u32,
    ) -> Result<Vec<LogPiece>, StoreError> {
        logs::read_log(self, execution_id, from, limit).await
    }

    async fn log_totals(&self, execution_id: &str) -> Result<LogTotals, StoreError> {
        logs::log_totals(self, execution_id).await
    }

    async fn admit(
        &self,
        execution_id: &str,
        ask: &Ask,
        policy: &Policy,
    ) -> Result<Admission, StoreError> {
        admission::admit(&self.db, execution_id, ask, policy).await
    }

    async fn line(
        &self,
        focus: Option<&str>,
    ) -> Result<(LineState, Option<(usize, u64)>), StoreError> {
        let paused = admission::paused(&self.db).await?;
        admission::change(&self.db, |line| line.state(&paused, focus)).await
    }

    async fn waiting(&self) -> Result<Vec<String>, StoreError> {
        admission::change(&self.db, |line| {
            line.waiting
                .iter()
                .map(|w| w.execution_id.clone())
                .collect()
        })
        .await
    }

    async fn set_paused(&self, key: &str, paused: bool) -> Result<bool, StoreError> {
        admission::set_paused(&self.db, key, paused).await
    }

    async fn paused(&self) -> Result<Vec<String>, StoreError> {
        let mut paused: Vec<String> = admission::paused(&self.db).await?.into_iter().collect();
        paused.sort();
        Ok(paused)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.run_command(doc! {"ping": 1}).await.map_err(mongo)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
