//! Execution routes: an execution's details, and the stdout, stderr and
//! combined logs of a job's last execution or of any one execution.

use poem::Request;
use poem::web::Data;
use poem_openapi::{ApiResponse, OpenApi, param::Path, payload::Json, payload::PlainText};

use fastlane_sdk::Execution;

use super::error::ApiError;
use super::views::{ExecutionDetails, Link, WaitingView, error_text, execution_view};
use super::{ApiTags, find_job, task_or_job_not_found};
use crate::services::Services;

const OP: &str = "retrieve_execution_details";

/// Output of an execution as text.
#[derive(Debug, ApiResponse)]
pub enum TextResponse {
    /// The text (empty until the execution finished).
    #[oai(status = 200)]
    Ok(
        PlainText<String>,
        /// The exit code, or `None` while there is none.
        #[oai(header = "Fastlane-Exit-Code")]
        String,
    ),
}

/// Which output a text route returns.
#[derive(Debug, Clone, Copy)]
enum Output {
    Stdout,
    Stderr,
    Logs,
}

fn text(execution: &Execution, output: Output) -> TextResponse {
    let stdout = execution.stdout.clone().unwrap_or_default();
    let stderr = error_text(execution).unwrap_or_default();
    let body = match output {
        Output::Stdout => stdout,
        Output::Stderr => stderr,
        Output::Logs => format!("{stdout}\n-=-\n{stderr}"),
    };
    let exit_code = execution
        .exit_code
        .map_or_else(|| "None".to_owned(), |c| c.to_string());
    TextResponse::Ok(PlainText(body), exit_code)
}

async fn last_execution(
    services: &Services,
    task_id: &str,
    job_id: &str,
) -> Result<Execution, ApiError> {
    find_job(services, task_id, job_id, OP, || {
        task_or_job_not_found(task_id, job_id)
    })
    .await?;
    let (mut newest, _) = services
        .store
        .executions(job_id, 1)
        .await
        .map_err(ApiError::store(OP))?;
    newest
        .pop()
        .ok_or_else(|| ApiError::bad_request(OP, format!("No executions found in job ({job_id}).")))
}

async fn one_execution(
    services: &Services,
    operation: &'static str,
    task_id: &str,
    job_id: &str,
    execution_id: &str,
) -> Result<Execution, ApiError> {
    find_job(services, task_id, job_id, operation, || {
        task_or_job_not_found(task_id, job_id)
    })
    .await?;
    services
        .store
        .execution(execution_id)
        .await
        .map_err(ApiError::store(operation))?
        .filter(|e| e.job_id == job_id)
        .ok_or_else(|| {
            ApiError::not_found(
                operation,
                format!("Job Execution ({execution_id}) not found in job ({job_id})."),
            )
        })
}

/// Execution routes.
#[derive(Debug)]
pub struct ExecutionsApi;

#[OpenApi]
impl ExecutionsApi {
    /// Read an execution
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/executions/:executionId",
        method = "get",
        operation_id = "getExecution",
        tag = "ApiTags::Executions"
    )]
    async fn get_execution(
        &self,
        request: &Request,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        #[oai(name = "executionId")] execution_id: Path<String>,
    ) -> Result<Json<ExecutionDetails>, ApiError> {
        let execution = one_execution(
            &services,
            "get_job_execution",
            &task_id,
            &job_id,
            &execution_id,
        )
        .await?;
        let urls = super::urls_for(request, &services);
        let waiting = if execution.status == fastlane_sdk::ExecutionStatus::Enqueued {
            services
                .store
                .hold(&execution.execution_id, &services.config.flow.policy)
                .await
                .map_err(ApiError::store("get_job_execution"))?
                .map(|hold| WaitingView {
                    gate: hold.gate,
                    reason: hold.reason.to_owned(),
                    ahead: hold.ahead,
                })
        } else {
            None
        };
        Ok(Json(ExecutionDetails {
            task: Link {
                id: task_id.0.clone(),
                url: urls.task(&task_id),
            },
            job: Link {
                id: job_id.0.clone(),
                url: urls.job(&task_id, &job_id),
            },
            execution: execution_view(&execution, &urls),
            waiting,
        }))
    }

    /// Standard output of a job's last execution
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/stdout",
        method = "get",
        operation_id = "getJobStdout",
        tag = "ApiTags::Executions"
    )]
    async fn job_stdout(
        &self,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
    ) -> Result<TextResponse, ApiError> {
        Ok(text(
            &last_execution(&services, &task_id, &job_id).await?,
            Output::Stdout,
        ))
    }

    /// Standard error of a job's last execution
    /// (empty for the `kubernetes` executor: Kubernetes merges stderr into
    /// the one log, served as stdout)
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/stderr",
        method = "get",
        operation_id = "getJobStderr",
        tag = "ApiTags::Executions"
    )]
    async fn job_stderr(
        &self,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
    ) -> Result<TextResponse, ApiError> {
        Ok(text(
            &last_execution(&services, &task_id, &job_id).await?,
            Output::Stderr,
        ))
    }

    /// Stdout, `-=-`, then stderr of a job's last execution
    /// (for the `kubernetes` executor, stdout holds both streams and
    /// stderr is empty: Kubernetes merges them)
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/logs",
        method = "get",
        operation_id = "getJobLogs",
        tag = "ApiTags::Executions"
    )]
    async fn job_logs(
        &self,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
    ) -> Result<TextResponse, ApiError> {
        Ok(text(
            &last_execution(&services, &task_id, &job_id).await?,
            Output::Logs,
        ))
    }

    /// Standard output of an execution
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/executions/:executionId/stdout",
        method = "get",
        operation_id = "getExecutionStdout",
        tag = "ApiTags::Executions"
    )]
    async fn execution_stdout(
        &self,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        #[oai(name = "executionId")] execution_id: Path<String>,
    ) -> Result<TextResponse, ApiError> {
        let execution = one_execution(&services, OP, &task_id, &job_id, &execution_id).await?;
        Ok(text(&execution, Output::Stdout))
    }

    /// Standard error of an execution
    /// (empty for the `kubernetes` executor: Kubernetes merges stderr into
    /// the one log, served as stdout)
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/executions/:executionId/stderr",
        method = "get",
        operation_id = "getExecutionStderr",
        tag = "ApiTags::Executions"
    )]
    async fn execution_stderr(
        &self,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        #[oai(name = "executionId")] execution_id: Path<String>,
    ) -> Result<TextResponse, ApiError> {
        let execution = one_execution(&services, OP, &task_id, &job_id, &execution_id).await?;
        Ok(text(&execution, Output::Stderr))
    }

    /// Stdout, `-=-`, then stderr of an execution
    /// (for the `kubernetes` executor, stdout holds both streams and
    /// stderr is empty: Kubernetes merges them)
    #[oai(
        path = "/tasks/:taskId/jobs/:jobId/executions/:executionId/logs",
        method = "get",
        operation_id = "getExecutionLogs",
        tag = "ApiTags::Executions"
    )]
    async fn execution_logs(
        &self,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
        #[oai(name = "jobId")] job_id: Path<String>,
        #[oai(name = "executionId")] execution_id: Path<String>,
    ) -> Result<TextResponse, ApiError> {
        let execution = one_execution(&services, OP, &task_id, &job_id, &execution_id).await?;
        Ok(text(&execution, Output::Logs))
    }
}
