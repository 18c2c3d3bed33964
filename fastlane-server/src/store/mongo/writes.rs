//! The MongoDB store's writes of jobs and executions: a submission in one
//! transaction (tried again while the server says a retry may work), and
//! the upserts it shares with saves.

use chrono::Utc;
use mongodb::ClientSession;
use mongodb::bson::{Bson, Document, doc};

use fastlane_sdk::{Execution, Job};

use super::MongoStore;
use super::documents::{self, date, field, is_duplicate_key, json_object, mongo, record};
use super::schema::{DELIVERIES, EXECUTIONS, IDEMPOTENCY, JOBS, OUTBOX, TASKS};
use crate::store::{StoreError, Submission, task_words};

/// An execution as stored: the fields beside the record, and the record
/// without its dispatches.
pub(super) struct StoredExecution {
    pub(super) id: String,
    pub(super) job_id: String,
    created_at: Bson,
    pub(super) status: &'static str,
    pub(super) doc: Document,
    dispatches: Bson,
}

impl StoredExecution {
    pub(super) fn new(execution: &Execution) -> Result<Self, StoreError> {
        let mut map = json_object(execution)?;
        map.remove("dispatches");
        Ok(Self {
            id: execution.execution_id.clone(),
            job_id: execution.job_id.clone(),
            created_at: date(execution.created_at),
            status: execution.status.as_str(),
            doc: documents::document(map),
            dispatches: field(&execution.dispatches)?,
        })
    }

    /// The whole document, for inserting.
    pub(super) fn full(&self, seq: i64) -> Document {
        doc! {
            "_id": &self.id,
            "job_id": &self.job_id,
            "seq": seq,
            "created_at": self.created_at.clone(),
            "status": self.status,
            "doc": self.doc.clone(),
            "dispatches": self.dispatches.clone(),
        }
    }
}

impl MongoStore {
    /// Notes a change to `job`'s task, creating the task if it is new.
    pub(super) async fn upsert_task(
        &self,
        session: &mut ClientSession,
        job: &Job,
        modified: &Bson,
    ) -> mongodb::error::Result<()> {
        let tasks = self.collection(TASKS);
        for _ in 0..2 {
            let touched = tasks
                .update_one(
                    doc! {"_id": &job.task_id},
                    doc! {"$set": {"doc.last_modified_at": modified.clone()}},
                )
                .session(&mut *session)
                .await?;
            if touched.matched_count > 0 {
                return Ok(());
            }
            let seq = self.next_seq(TASKS).await?;
            let words = task_words(&job.task_id);
            let words_text = format!(" {} ", words.join(" "));
            let task = doc! {
                "_id": &job.task_id,
                "seq": seq,
                "words": words,
                "words_text": words_text,
                "doc": {
                    "task_id": &job.task_id,
                    "created_at": modified.clone(),
                    "last_modified_at": modified.clone(),
                },
            };
            match tasks.insert_one(task).session(&mut *session).await {
                Ok(_) => return Ok(()),
                // Created by someone else since: note the change on theirs.
                Err(err) if is_duplicate_key(&err) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Saves `job` (its record and the fields beside it).
    pub(super) async fn upsert_job(
        &self,
        session: &mut ClientSession,
        job: &Job,
        record: &Document,
    ) -> mongodb::error::Result<()> {
        self.collection(JOBS)
            .update_one(
                doc! {"_id": &job.job_id},
                doc! {
                    "$set": {
                        "last_modified_at": date(job.last_modified_at),
                        "next_run_at": job.next_run_at.map_or(Bson::Null, date),
                        "stopped": job.stopped,
                        "doc": record.clone(),
                    },
                    "$setOnInsert": {"task_id": &job.task_id},
                },
            )
            .upsert(true)
            .session(session)
            .await?;
        Ok(())
    }

    /// Saves an execution, keeping its stored dispatches, unless it is
    /// stopped and the save is not.
    pub(super) async fn upsert_execution(
        &self,
        session: &mut ClientSession,
        execution: &StoredExecution,
    ) -> mongodb::error::Result<()> {
        let executions = self.collection(EXECUTIONS);
        let filter = if execution.status == "stopped" {
            doc! {"_id": &execution.id}
        } else {
            doc! {"_id": &execution.id, "status": {"$ne": "stopped"}}
        };
        let update = doc! {"$set": {"status": execution.status, "doc": execution.doc.clone()}};
        for _ in 0..2 {
            let saved = executions
                .update_one(filter.clone(), update.clone())
                .session(&mut *session)
                .await?;
            if saved.matched_count > 0 {
                return Ok(());
            }
            let kept = executions
                .find_one(doc! {"_id": &execution.id})
                .projection(doc! {"_id": 1})
                .session(&mut *session)
                .await?;
            if kept.is_some() {
                // It is stopped, and this save is not: ignored.
                return Ok(());
            }
            let seq = self.next_seq(EXECUTIONS).await?;
            match executions
                .insert_one(execution.full(seq))
                .session(&mut *session)
                .await
            {
                Ok(_) => return Ok(()),
                // Someone else added it since: save over theirs.
                Err(err) if is_duplicate_key(&err) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// Writes `submission` in one transaction; false when its idempotency key
/// holds a live record (nothing is written).
pub(super) async fn submit(
    store: &MongoStore,
    submission: Submission<'_>,
) -> Result<bool, StoreError> {
    let Submission {
        jobs,
        executions,
        outgoing,
        owed,
        idempotency,
        keep_existing,
        // MongoDB does not line up on submit: none.
        waiting: _,
    } = submission;
    let jobs = jobs
        .iter()
        .map(|job| Ok::<_, StoreError>((job, field(&job.last_modified_at)?, record(job)?)))
        .collect::<Result<Vec<_>, _>>()?;
    let executions = executions
        .iter()
        .map(StoredExecution::new)
        .collect::<Result<Vec<_>, _>>()?;
    let mut session = store.client.start_session().await.map_err(mongo)?;
    let mut tries = 0;
    loop {
        store.begin(&mut session).await?;
        let outcome = async {
            if let Some(record) = idempotency {
                // Only an expired record is replaced; a live one makes
                // the upsert insert a second `_id`, a duplicate key.
                store.collection(IDEMPOTENCY)
                    .update_one(
                        doc! {"_id": &record.key, "expires_ms": {"$lte": Utc::now().timestamp_millis()}},
                        doc! {"$set": {
                            "fingerprint": &record.fingerprint,
                            "response": &record.response,
                            "expires_ms": record.expires_ms,
                        }},
                    )
                    .upsert(true)
                    .session(&mut session)
                    .await?;
            }
            for (job, modified, job_record) in &jobs {
                store.upsert_task(&mut session, job, modified).await?;
                store.upsert_job(&mut session, job, job_record).await?;
            }
            for execution in &executions {
                if keep_existing {
                    // Inserted only where absent: a duplicate key
                    // would abort the transaction.
                    let mut full = execution.full(store.next_seq(EXECUTIONS).await?);
                    full.remove("_id");
                    store.collection(EXECUTIONS)
                        .update_one(doc! {"_id": &execution.id}, doc! {"$setOnInsert": full})
                        .upsert(true)
                        .session(&mut session)
                        .await?;
                } else {
                    store.upsert_execution(&mut session, execution).await?;
                }
            }
            for message in owed {
                store.collection(DELIVERIES)
                    .update_one(
                        doc! {"_id": &message.id},
                        doc! {"$setOnInsert": {
                            "queue": &message.queue,
                            "payload": &message.payload,
                            "due_ms": message.due_ms,
                        }},
                    )
                    .upsert(true)
                    .session(&mut session)
                    .await?;
            }
            for message in outgoing.iter().chain(owed) {
                // An upsert, not an insert: a duplicate key would abort
                // the transaction.
                store.collection(OUTBOX)
                    .update_one(
                        doc! {"_id": &message.id},
                        doc! {"$setOnInsert": {
                            "queue": &message.queue,
                            "payload": &message.payload,
                            "due_ms": message.due_ms,
                            "taken_until": 0_i64,
                        }},
                    )
                    .upsert(true)
                    .session(&mut session)
                    .await?;
            }
            Ok(())
        }
        .await;
        if let Err(err) = &outcome
            && idempotency.is_some()
            && is_duplicate_key(err)
        {
            if store.transactions {
                let _ = session.abort_transaction().await;
            }
            return Ok(false);
        }
        if store.settle(&mut session, outcome, &mut tries).await? {
            return Ok(true);
        }
    }
}
