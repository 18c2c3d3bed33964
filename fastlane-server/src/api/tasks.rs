//! Task and job routes: list tasks, read a task, submit a job, read a job.

use chrono::Utc;
use poem::Request;
use poem::web::Data;
use poem_openapi::{
    OpenApi,
    param::{Path, Query},
    payload::Json,
};

use fastlane_sdk::{Execution, Job};

use super::body::{BodyError, JobBody};
use super::error::ApiError;
use super::job_request::{self, MAX_TASK_ID};
use super::urls::Urls;
use super::views::{
    JobCreated, JobDetails, JobView, Link, TaskDetails, TaskItem, TaskJob, TaskPage,
    execution_view, job_metadata,
};
use super::{ApiTags, client_ip};
use crate::queue::{JOBS, Work};
use crate::services::Services;

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
        page: Query<Option<String>>,
    ) -> Result<Json<TaskPage>, ApiError> {
        const OP: &str = "get_tasks";
        let page = match page.0.as_deref() {
            None | Some("") => 1,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        OP,
                        "Tasks pagination page param should be a positive integer.",
                    )
                })?,
        };
        let per_page = u64::from(services.config.pagination_per_page);
        let (tasks, total) = services
            .store
            .tasks((page - 1).saturating_mul(per_page), per_page)
            .await
            .map_err(ApiError::store(OP))?;
        let pages = total.div_ceil(per_page);
        if page > pages && page != 1 {
            return Err(ApiError::not_found(
                OP,
                format!("page {page} does not exist: there are {pages} pages"),
            ));
        }
        let urls = Urls::new(request, services.config.public_base_url.as_deref());
        Ok(Json(TaskPage {
            items: tasks
                .into_iter()
                .map(|t| TaskItem {
                    url: urls.task(&t.task.task_id),
                    task_id: t.task.task_id,
                    created_at: t.task.created_at,
                    last_modified_at: t.task.last_modified_at,
                    jobs_count: t.jobs_count,
                })
                .collect(),
            total,
            page,
            pages,
            per_page,
            has_next: page < pages,
            has_prev: page > 1,
            next_url: (page < pages).then(|| urls.tasks_page(page + 1)),
            prev_url: (page > 1).then(|| urls.tasks_page(page - 1)),
        }))
    }

    /// Read a task
    ///
    /// The task's jobs, most recently changed first.
    #[oai(
        path = "/tasks/:task_id",
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
        let urls = Urls::new(request, services.config.public_base_url.as_deref());
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
        path = "/tasks/:task_id",
        method = "post",
        operation_id = "createJob",
        tag = "ApiTags::Jobs"
    )]
    async fn create_job(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        body: JobBody,
    ) -> Result<Json<JobCreated>, ApiError> {
        const OP: &str = "create_job";
        let body = match body.0 {
            Ok(body) => body,
            Err(BodyError::TooLarge(limit)) => return Err(ApiError::too_large(OP, limit)),
            Err(BodyError::Unparseable) => {
                return Err(ApiError::bad_request(
                    OP,
                    "Failed to enqueue task because JSON body could not be parsed.",
                ));
            }
        };
        if task_id.trim().is_empty() || task_id.len() > MAX_TASK_ID {
            return Err(ApiError::bad_request(
                OP,
                format!("taskId must be 1 to {MAX_TASK_ID} bytes long"),
            ));
        }
        let spec = job_request::parse(&body, services.config.hard_execution_timeout_seconds)
            .map_err(|message| ApiError::bad_request(OP, message))?;

        let now = Utc::now();
        let ip = client_ip(request);
        let job = Job {
            job_id: uuid::Uuid::new_v4().to_string(),
            task_id: task_id.0.clone(),
            created_at: now,
            last_modified_at: now,
            request_ip: ip.clone(),
            retry_count: 0,
            spec,
        };
        let execution = Execution::enqueued(
            &job,
            &job.spec.image,
            &job.spec.command,
            ip,
            now,
            uuid::Uuid::new_v4().to_string(),
        );
        services
            .store
            .create_job(&job, Some(&execution))
            .await
            .map_err(ApiError::store(OP))?;
        let work = Work::RunExecution {
            execution_id: execution.execution_id.clone(),
        };
        services
            .queue
            .enqueue(JOBS, &work, None)
            .await
            .map_err(ApiError::queue(OP))?;
        tracing::info!(task = %job.task_id, job = %job.job_id, execution = %execution.execution_id, "job submitted");

        let urls = Urls::new(request, services.config.public_base_url.as_deref());
        Ok(Json(JobCreated {
            execution_url: Some(urls.execution(&job.task_id, &job.job_id, &execution.execution_id)),
            queue_job_id: Some(work.message_id()),
            execution_id: Some(execution.execution_id),
            job_url: urls.job(&job.task_id, &job.job_id),
            task_url: urls.task(&job.task_id),
            task_id: job.task_id,
            job_id: job.job_id,
        }))
    }

    /// Read a job
    ///
    /// The job, its metadata (secret env values masked) and its 20 newest
    /// executions, newest first.
    #[oai(
        path = "/tasks/:task_id/jobs/:job_id",
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
        let job = services
            .store
            .job(&task_id, &job_id)
            .await
            .map_err(ApiError::store(OP))?
            .ok_or_else(|| ApiError::not_found(OP, "Job not found in task."))?;
        let (executions, execution_count) = services
            .store
            .executions(&job.job_id, EXECUTIONS_SHOWN)
            .await
            .map_err(ApiError::store(OP))?;
        let urls = Urls::new(request, services.config.public_base_url.as_deref());
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
                scheduled: false,
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
