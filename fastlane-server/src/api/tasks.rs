//! Task and job routes: list tasks, read a task, submit a job, read a job.

use chrono::Utc;
use poem::Request;
use poem::web::Data;
use poem_openapi::{
    OpenApi,
    param::{Header, Path, Query},
    payload::Json,
};

use super::body::{BatchBody, BodyError, JobBody, JsonBody};
use super::error::ApiError;
use super::idempotency::Idempotency;
use super::params::{NewTaskId, Page};
use super::submit::{self, Asked};
use super::views::{
    BatchCreated, JobCreated, JobDetails, JobView, Link, TaskDetails, TaskItem, TaskJob, TaskPage,
    cron_of, execution_view, job_metadata, next_run_of,
};
use super::{ApiTags, JOB_NOT_FOUND, client_ip, find_job};
use crate::services::Services;
use crate::urls::Urls;

/// How many executions job details show.
const EXECUTIONS_SHOWN: u64 = 20;

/// Task and job routes.
#[derive(Debug)]
pub struct TasksApi;

#[OpenApi]
impl TasksApi {
    /// List tasks
    ///
    /// Tasks in creation order, a page at a time.
    #[oai(
        path = "/tasks",
        method = "get",
        operation_id = "listTasks",
        tag = "ApiTags::Tasks"
    )]
    async fn list_tasks(
        &self,
        request: &Request,
        services: Data<&Services>,
        /// Page number, from 1.
        page: Query<Option<Page>>,
    ) -> Result<Json<TaskPage>, ApiError> {
        const OP: &str = "get_tasks";
        let page = Page::number(page.0.as_ref(), OP)?;
        let per_page = u64::from(services.config.pagination_per_page);
        let (tasks, total) = services
            .store
            .tasks((page - 1).saturating_mul(per_page), per_page)
            .await
            .map_err(ApiError::store(OP))?;
        let urls = super::urls_for(request, &services);
        let link = |n: u64| urls.tasks_page(n);
        task_page(tasks, total, page, per_page, &urls, link, OP).map(Json)
    }

    /// Read a task
    ///
    /// The task's jobs, most recently changed first.
    #[oai(
        path = "/tasks/:taskId",
        method = "get",
        operation_id = "getTask",
        tag = "ApiTags::Tasks"
    )]
    async fn get_task(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
    ) -> Result<Json<TaskDetails>, ApiError> {
        const OP: &str = "get_task";
        let (task, jobs) = services
            .store
            .task(&task_id)
            .await
            .map_err(ApiError::store(OP))?
            .ok_or_else(|| ApiError::not_found(OP, "Task not found."))?;
        let urls = super::urls_for(request, &services);
        Ok(Json(TaskDetails {
            jobs: jobs
                .into_iter()
                .map(|j| TaskJob {
                    url: urls.job(&task.task_id, &j.job_id),
                    id: j.job_id,
                    created_at: j.created_at,
                })
                .collect(),
            task_id: task.task_id,
        }))
    }

    /// Submit a job
    ///
    /// Stores a job in the task (creating the task if needed) and queues its
    /// first execution. The body is read as JSON whatever its content type.
    /// A bad body gets a 400 naming the field, and nothing is stored.
    #[oai(
        path = "/tasks/:taskId",
        method = "post",
        operation_id = "createJob",
        tag = "ApiTags::Jobs"
    )]
    async fn create_job(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<NewTaskId>,
        /// Makes the request safe to send again: the same key with the same
        /// request answers with the first answer (nothing is created twice)
        /// for `IDEMPOTENCY_TTL_SECONDS`; with another request, 409.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: JobBody,
    ) -> Result<Json<JobCreated>, ApiError> {
        const OP: &str = "create_job";
        let task_id = task_id.checked(OP)?;
        let body = read_body(body, OP)?;
        let idempotency = Idempotency::of(
            idempotency_key.as_deref(),
            &format!("POST /tasks/{task_id}"),
            &body,
            OP,
        )?;
        let asked = Asked {
            task_id,
            job_id: uuid::Uuid::new_v4().to_string(),
            existing: None,
            body: &body,
            ip: client_ip(request),
        };
        submit_one(&services, request, asked, idempotency, OP)
            .await
            .map(Json)
    }

    /// Submit a batch of jobs
    ///
    /// Up to 1,000 jobs of one task in one request (`{"jobs": [...]}`, each
    /// job as `POST /tasks/{taskId}` takes it, the whole body within
    /// `MAX_BODY_BYTES`), written in one transaction: every job is checked
    /// first, and one bad job refuses the batch with a 400 naming it
    /// (`jobs[3]: …`) and nothing stored. Answers with one entry per job,
    /// in the order sent.
    #[oai(
        path = "/tasks/:taskId/batch",
        method = "post",
        operation_id = "createJobs",
        tag = "ApiTags::Jobs"
    )]
    async fn create_jobs(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<NewTaskId>,
        /// As on `POST /tasks/{taskId}`, for the whole batch.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: BatchBody,
    ) -> Result<Json<BatchCreated>, ApiError> {
        const OP: &str = "create_jobs";
        let task_id = task_id.checked(OP)?;
        let body = read_body(body, OP)?;
        let idempotency = Idempotency::of(
            idempotency_key.as_deref(),
            &format!("POST /tasks/{task_id}/batch"),
            &body,
            OP,
        )?;
        let now = Utc::now();
        if let Some(earlier) = submit::replayed(&services, idempotency.as_ref(), now, OP).await? {
            return Ok(Json(earlier));
        }
        let jobs = super::job_request::batch(&body)
            .map_err(|message| ApiError::bad_request(OP, message))?;
        let urls = super::urls_for(request, &services);
        let ip = client_ip(request);
        let prepared = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let asked = Asked {
                    task_id,
                    job_id: uuid::Uuid::new_v4().to_string(),
                    existing: None,
                    body: job,
                    ip: ip.clone(),
                };
                submit::prepare(&services, &urls, asked, now)
                    .map_err(|message| ApiError::bad_request(OP, format!("jobs[{i}]: {message}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let answer = BatchCreated {
            jobs: prepared.iter().map(|p| p.created.clone()).collect(),
        };
        submit::write(&services, prepared, idempotency.as_ref(), answer, now, OP)
            .await
            .map(Json)
    }

    /// Create or replace a job
    ///
    /// Like submitting a job, with a job id of your choosing (a UUID). When
    /// the job exists, its spec and schedule are replaced: firings of the
    /// old schedule never happen, and its retry count starts again from 0.
    /// Executions already made are kept.
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId",
        method = "put",
        operation_id = "putJob",
        tag = "ApiTags::Jobs"
    )]
    async fn put_job(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<NewTaskId>,
        #[oai(name = "jobId")] job_id: Path<String>,
        /// As on `POST /tasks/{taskId}`.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: JobBody,
    ) -> Result<Json<JobCreated>, ApiError> {
        const OP: &str = "create_or_update_job";
        let Ok(uuid) = uuid::Uuid::parse_str(&job_id) else {
            return Err(ApiError::bad_request(
                OP,
                format!(
                    "The job_id {} is not a valid UUID4. All job IDs must be UUID4.",
                    job_id.0
                ),
            ));
        };
        let task_id = task_id.checked(OP)?;
        let body = read_body(body, OP)?;
        let job_id = uuid.hyphenated().to_string();
        let idempotency = Idempotency::of(
            idempotency_key.as_deref(),
            &format!("PUT /tasks/{task_id}/jobs/{job_id}"),
            &body,
            OP,
        )?;
        let existing = services
            .store
            .find_job(&job_id)
            .await
            .map_err(ApiError::store(OP))?;
        if let Some(job) = &existing
            && job.task_id != task_id
        {
            return Err(ApiError::bad_request(
                OP,
                format!("job {job_id} belongs to task {:?}", job.task_id),
            ));
        }
        let asked = Asked {
            task_id,
            job_id,
            existing,
            body: &body,
            ip: client_ip(request),
        };
        submit_one(&services, request, asked, idempotency, OP)
            .await
            .map(Json)
    }

    /// Search tasks
    ///
    /// Tasks whose id contains `query` as a whole word (ids are split into
    /// words at characters other than letters and digits), case-insensitive;
    /// paginated like `GET /tasks`.
    #[oai(
        path = "/search",
        method = "get",
        operation_id = "searchTasks",
        tag = "ApiTags::Tasks"
    )]
    async fn search_tasks(
        &self,
        request: &Request,
        services: Data<&Services>,
        /// The word to look for.
        query: Query<Option<String>>,
        /// Page number, from 1.
        page: Query<Option<Page>>,
    ) -> Result<Json<TaskPage>, ApiError> {
        const OP: &str = "search_tasks";
        let words = crate::store::task_words(query.0.as_deref().unwrap_or_default());
        let Some(word) = words.first() else {
            return Err(ApiError::bad_request(OP, "The query param is required."));
        };
        let page = Page::number(page.0.as_ref(), OP)?;
        let per_page = u64::from(services.config.pagination_per_page);
        let (tasks, total) = services
            .store
            .search_tasks(word, (page - 1).saturating_mul(per_page), per_page)
            .await
            .map_err(ApiError::store(OP))?;
        let urls = super::urls_for(request, &services);
        let link = |n: u64| urls.search_page(word, n);
        task_page(tasks, total, page, per_page, &urls, link, OP).map(Json)
    }

    /// Read a job
    ///
    /// The job, its metadata (secret env values masked) and its 20 newest
    /// executions, newest first.
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId",
        method = "get",
        operation_id = "getJob",
        tag = "ApiTags::Jobs"
    )]
    async fn get_job(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
    ) -> Result<Json<JobDetails>, ApiError> {
        const OP: &str = "get_job";
        let job = find_job(&services, &task_id, &job_id, OP, || JOB_NOT_FOUND.into()).await?;
        let (executions, execution_count) = services
            .store
            .executions(&job.job_id, EXECUTIONS_SHOWN)
            .await
            .map_err(ApiError::store(OP))?;
        let urls = super::urls_for(request, &services);
        let (cron, cron_timezone) = cron_of(&job);
        Ok(Json(JobDetails {
            task: Link {
                id: job.task_id.clone(),
                url: urls.task(&job.task_id),
            },
            job: JobView {
                url: urls.job(&job.task_id, &job.job_id),
                metadata: job_metadata(&job, &services.config.env_blacklisted_words),
                executions: executions
                    .iter()
                    .map(|e| execution_view(e, &urls))
                    .collect(),
                execution_count,
                scheduled: next_run_of(&job).is_some(),
                cron,
                cron_timezone,
                next_run_at: next_run_of(&job),
                image: job.spec.image,
                command: job.spec.command,
                created_at: job.created_at,
                last_modified_at: job.last_modified_at,
                request_ip_address: job.request_ip,
                job_id: job.job_id,
                task_id: job.task_id,
            },
        }))
    }
}

/// The body as JSON, or the 400/413 that says why not.
fn read_body<S>(body: JsonBody<S>, operation: &str) -> Result<serde_json::Value, ApiError> {
    match body.0 {
        Ok(body) => Ok(body),
        Err(BodyError::TooLarge(limit)) => Err(ApiError::too_large(operation, limit)),
        Err(err) => Err(ApiError::bad_request(operation, err.message())),
    }
}

/// Checks and writes one job; with an idempotency key already used,
/// answers as the first time instead (or 409).
async fn submit_one(
    services: &Services,
    request: &Request,
    asked: Asked<'_>,
    idempotency: Option<Idempotency>,
    operation: &'static str,
) -> Result<JobCreated, ApiError> {
    let now = Utc::now();
    if let Some(earlier) = submit::replayed(services, idempotency.as_ref(), now, operation).await? {
        return Ok(earlier);
    }
    let urls = super::urls_for(request, services);
    let prepared = submit::prepare(services, &urls, asked, now)
        .map_err(|message| ApiError::bad_job_request(operation, message))?;
    let answer = prepared.created.clone();
    submit::write(
        services,
        vec![prepared],
        idempotency.as_ref(),
        answer,
        now,
        operation,
    )
    .await
}

/// One page of a task listing, with links to its neighbours.
fn task_page(
    tasks: Vec<crate::store::TaskSummary>,
    total: u64,
    page: u64,
    per_page: u64,
    urls: &Urls,
    link: impl Fn(u64) -> String,
    operation: &str,
) -> Result<TaskPage, ApiError> {
    let pages = total.div_ceil(per_page);
    if page > pages && page != 1 {
        return Err(ApiError::not_found(
            operation,
            format!("page {page} does not exist: there are {pages} pages"),
        ));
    }
    Ok(TaskPage {
        items: tasks
            .into_iter()
            .map(|t| TaskItem {
                url: urls.task(&t.task.task_id),
                task_id: t.task.task_id,
                created_at: t.task.created_at,
                last_modified_at: t.task.last_modified_at,
                jobs_count: t.jobs_count,
                last_status: t.last_status.map(super::views::StatusView::from),
            })
            .collect(),
        total,
        page,
        pages,
        per_page,
        has_next: page < pages,
        has_prev: page > 1,
        next_url: (page < pages).then(|| link(page + 1)),
        prev_url: (page > 1).then(|| link(page - 1)),
    })
}
