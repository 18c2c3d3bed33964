//! `GET /tasks/{taskId}/jobs`: a task's jobs a page at a time, each with
//! its newest execution, optionally only those whose newest execution has
//! a status. The admin UI's task page reads it; unlike `GET /tasks/{taskId}`
//! it stays fast for a task with 100,000 jobs.

use chrono::{DateTime, Utc};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::{Object, OpenApi, payload::Json};

use fastlane_sdk::{Execution, ExecutionStatus, Job};

use super::ApiTags;
use super::error::ApiError;
use super::params::Page;
use super::views::{StatusView, cron_of, next_run_of};
use crate::services::Services;
use crate::urls::Urls;

/// A job on a task's page.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobItem {
    /// The job id.
    pub job_id: String,
    /// Its URL.
    pub url: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub last_modified_at: DateTime<Utc>,
    /// The image it runs.
    pub image: String,
    /// The command it runs.
    pub command: String,
    /// The cron expression of a cron job.
    #[oai(skip_serializing_if_is_none)]
    pub cron: Option<String>,
    /// When it runs next: a delayed or cron job that is not stopped.
    #[oai(skip_serializing_if_is_none)]
    pub next_run_at: Option<DateTime<Utc>>,
    /// Its newest execution, once it has one.
    #[oai(skip_serializing_if_is_none)]
    pub newest: Option<NewestExecution>,
}

/// The newest execution of a job, in brief.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct NewestExecution {
    /// The execution id.
    pub execution_id: String,
    /// Its URL.
    pub url: String,
    /// Where it is in its life.
    pub status: StatusView,
    /// Its exit code, once it exited.
    #[oai(skip_serializing_if_is_none)]
    pub exit_code: Option<i64>,
    /// When its container started.
    #[oai(skip_serializing_if_is_none)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its final status.
    #[oai(skip_serializing_if_is_none)]
    pub finished_at: Option<DateTime<Utc>>,
}

/// One page of a task's jobs.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct JobPage {
    /// The jobs on this page, the most recently changed first.
    pub items: Vec<JobItem>,
    /// How many jobs match.
    pub total: u64,
    /// This page's number, from 1.
    pub page: u64,
    /// How many pages there are.
    pub pages: u64,
    /// Jobs per page (`PAGINATION_PER_PAGE`).
    pub per_page: u64,
    /// The next page's URL, when there is one.
    #[oai(skip_serializing_if_is_none)]
    pub next_url: Option<String>,
    /// The previous page's URL, when there is one.
    #[oai(skip_serializing_if_is_none)]
    pub prev_url: Option<String>,
    /// True while the task is paused (`POST /tasks/{taskId}/pause`):
    /// nothing of it starts.
    pub paused: bool,
}

/// The route.
#[derive(Debug)]
pub struct TaskJobsApi;

#[OpenApi]
impl TaskJobsApi {
    /// List a task's jobs
    ///
    /// A page of the task's jobs, the most recently changed first, each
    /// with its newest execution; with `status`, only the jobs whose newest
    /// execution has that status. 404 for an unknown task.
    #[oai(
        path = "/tasks/:taskId/jobs",
        method = "get",
        operation_id = "listTaskJobs",
        tag = "ApiTags::Tasks"
    )]
    async fn list_task_jobs(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        /// Page number, from 1.
        page: Query<Option<Page>>,
        /// Only jobs whose newest execution has this status.
        status: Query<Option<StatusView>>,
    ) -> Result<Json<JobPage>, ApiError> {
        const OP: &str = "list_task_jobs";
        let page = Page::number(page.0.as_ref(), OP)?;
        let per_page = u64::from(services.config.pagination_per_page);
        let wanted = status.0.map(ExecutionStatus::from);
        let (jobs, total) = services
            .store
            .task_jobs(
                &task_id.0,
                wanted,
                (page - 1).saturating_mul(per_page),
                per_page,
            )
            .await
            .map_err(ApiError::store(OP))?
            .ok_or_else(|| ApiError::not_found(OP, format!("Task ({}) not found.", task_id.0)))?;
        let pages = total.div_ceil(per_page).max(1);
        if page > pages {
            return Err(ApiError::not_found(
                OP,
                format!("page {page} does not exist: there are {pages} pages"),
            ));
        }
        let paused = services
            .store
            .paused()
            .await
            .map_err(ApiError::store(OP))?
            .contains(&crate::admission::task_key(&task_id));
        let urls = super::urls_for(request, &services);
        let link = |n: u64| {
            let mut url = format!("{}jobs?page={n}", urls.task(&task_id.0));
            if let Some(status) = status.0 {
                url.push_str(&format!(
                    "&status={}",
                    ExecutionStatus::from(status).as_str()
                ));
            }
            url
        };
        Ok(Json(JobPage {
            items: jobs
                .into_iter()
                .map(|(job, newest)| item(job, newest, &urls))
                .collect(),
            total,
            page,
            pages,
            per_page,
            paused,
            next_url: (page < pages).then(|| link(page + 1)),
            prev_url: (page > 1).then(|| link(page - 1)),
        }))
    }
}

fn item(job: Job, newest: Option<Execution>, urls: &Urls) -> JobItem {
    let newest = newest.map(|e| NewestExecution {
        url: urls.execution(&job.task_id, &job.job_id, &e.execution_id),
        execution_id: e.execution_id,
        status: e.status.into(),
        exit_code: e.exit_code,
        started_at: e.started_at,
        finished_at: e.finished_at,
    });
    JobItem {
        url: urls.job(&job.task_id, &job.job_id),
        cron: cron_of(&job).0,
        next_run_at: next_run_of(&job),
        created_at: job.created_at,
        last_modified_at: job.last_modified_at,
        image: job.spec.image,
        command: job.spec.command,
        job_id: job.job_id,
        newest,
    }
}
