//! Where tasks, jobs and executions are kept: the [`Store`] trait.
//!
//! The embedded implementation ([`sqlite::SqliteStore`]) serves standalone
//! mode; networked stores implement the same trait.

pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use fastlane_sdk::{Execution, Job, Task};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A record could not be read back.
    #[error("a stored record is unreadable: {0}")]
    Corrupt(String),
}

/// A task with its job count, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSummary {
    /// The task.
    pub task: Task,
    /// How many jobs it has.
    pub jobs_count: u64,
}

/// A job's id and creation time, for task details.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    /// The job id.
    pub job_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// The words of a task id, lower-cased, as search matches them.
pub fn task_words(task_id: &str) -> Vec<String> {
    task_id
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Persistent state of tasks, jobs and executions.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Creates `job` (and its task, if new) together with its first
    /// execution, atomically.
    async fn create_job(&self, job: &Job, execution: Option<&Execution>) -> Result<(), StoreError>;

    /// Saves a changed job.
    async fn save_job(&self, job: &Job) -> Result<(), StoreError>;

    /// The job `job_id`, whatever its task.
    async fn find_job(&self, job_id: &str) -> Result<Option<Job>, StoreError>;

    /// The job `job_id` of task `task_id`.
    async fn job(&self, task_id: &str, job_id: &str) -> Result<Option<Job>, StoreError>;

    /// A page of tasks in creation order, and the total number of tasks.
    async fn tasks(&self, offset: u64, limit: u64) -> Result<(Vec<TaskSummary>, u64), StoreError>;

    /// A task and its jobs, most recently changed first.
    async fn task(&self, task_id: &str) -> Result<Option<(Task, Vec<JobSummary>)>, StoreError>;

    /// A job's newest executions (at most `limit`, newest first) and how
    /// many it has in all.
    async fn executions(
        &self,
        job_id: &str,
        limit: u64,
    ) -> Result<(Vec<Execution>, u64), StoreError>;

    /// One execution.
    async fn execution(&self, execution_id: &str) -> Result<Option<Execution>, StoreError>;

    /// Saves an execution's new state; with `retry`, also adds the retry's
    /// execution and counts one more retry on the job, in one transaction.
    async fn save_execution(
        &self,
        execution: &Execution,
        retry: Option<&Execution>,
    ) -> Result<(), StoreError>;

    /// Marks a live execution `stopped` at `at` with `reason` and returns
    /// it; `None` when it had already reached a final status. Once stopped,
    /// an execution stays stopped: later saves may add its output but not
    /// change its status.
    async fn mark_stopped(
        &self,
        execution_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Execution>, StoreError>;

    /// Adds a notification attempt to an execution's record. Attempts are
    /// only ever added this way: saving an execution keeps them.
    async fn append_dispatch(
        &self,
        execution_id: &str,
        record: &fastlane_sdk::DispatchRecord,
    ) -> Result<(), StoreError>;

    /// Adds an execution unless one with its id exists; true when added.
    async fn insert_execution(&self, execution: &Execution) -> Result<bool, StoreError>;

    /// Records a job's next scheduled firing, unless the job has moved on to
    /// another `generation` (was replaced or stopped); true when recorded.
    async fn set_next_run(
        &self,
        job_id: &str,
        generation: u32,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;

    /// A job's executions that have not reached a final status.
    async fn live_executions(&self, job_id: &str) -> Result<Vec<Execution>, StoreError>;

    /// Jobs that will fire again (delayed or cron, not stopped).
    async fn scheduled_jobs(&self) -> Result<Vec<Job>, StoreError>;

    /// Tasks whose id contains `word` as a whole word (ids split at
    /// characters other than letters and digits), case-insensitive.
    async fn search_tasks(
        &self,
        word: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<TaskSummary>, u64), StoreError>;

    /// Executions that have not reached a final status.
    async fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError>;

    /// The Docker hosts an operator took out of rotation.
    async fn blacklist(&self) -> Result<Vec<String>, StoreError>;

    /// Adds `host` to the blacklist (`true`) or removes it (`false`).
    async fn set_blacklisted(&self, host: &str, blacklisted: bool) -> Result<(), StoreError>;

    /// How many tasks and jobs there are.
    async fn counts(&self) -> Result<(u64, u64), StoreError>;

    /// Checks the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}
