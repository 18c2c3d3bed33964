//! Pausing and resuming: a task (`POST /tasks/{taskId}/pause`, `…/resume`)
//! or any gate `/status` lists, a farm's among them (`POST /gates/pause`,
//! `…/resume`). While paused, submissions are accepted and stored, and
//! nothing passing the gate starts; cron slots of a paused task pass
//! unfired, and on resume fire as the job's `missedRuns` says. Kept in
//! the store, so a pause outlives restarts and holds in every process.

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::body::JsonBody;
use super::error::ApiError;
use crate::services::Services;

/// A gate after a pause or a resume.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct PauseState {
    /// The gate: `task:<taskId>`, `pool:<executor>:<pool>` (a farm),
    /// `key:<concurrencyKey>` or `taskkey:<taskId>/<concurrencyKey>`.
    pub gate: String,
    /// True while nothing passes it.
    pub paused: bool,
    /// False when it already was as asked.
    pub changed: bool,
    /// Executions waiting for it now.
    pub waiting: u64,
    /// Every paused gate.
    pub all_paused: Vec<String>,
}

impl poem_openapi::types::Example for PauseState {
    fn example() -> Self {
        Self {
            gate: "task:nightly-reports".to_owned(),
            paused: true,
            changed: true,
            waiting: 12,
            all_paused: vec!["task:nightly-reports".to_owned()],
        }
    }
}

/// `{"gate": "pool:docker:farm \"\""}`.
#[derive(Debug, Object)]
#[oai(example)]
#[allow(dead_code)] // documents the schema; bodies are read by `gate_of`
pub struct GateRequest {
    /// A gate as `/status` lists it under `limits`.
    gate: String,
}

impl poem_openapi::types::Example for GateRequest {
    fn example() -> Self {
        Self {
            gate: "pool:docker:farm \"\"".to_owned(),
        }
    }
}

/// The kinds of gate keys.
const GATE_KINDS: [&str; 4] = ["pool:", "task:", "key:", "taskkey:"];

/// The longest gate key accepted.
const MAX_GATE: usize = 600;

/// Reads `{"gate": "…"}`.
fn gate_of(body: JsonBody<GateRequest>, operation: &str) -> Result<String, ApiError> {
    let body = body.0.map_err(|_| {
        ApiError::bad_request(operation, "the body must be JSON: {\"gate\": \"…\"}")
    })?;
    let Some(gate) = body.get("gate").and_then(|g| g.as_str()) else {
        return Err(ApiError::bad_request(
            operation,
            "gate is missing: give a gate as /status lists it under limits",
        ));
    };
    let known = GATE_KINDS
        .iter()
        .any(|kind| gate.len() > kind.len() && gate.starts_with(kind));
    if !known || gate.len() > MAX_GATE || gate.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            operation,
            format!(
                "gate {:?} is not a gate: use one /status lists under limits, starting with \
                 pool:, task:, key: or taskkey:",
                gate.chars().take(80).collect::<String>()
            ),
        ));
    }
    Ok(gate.to_owned())
}

/// Pauses or resumes `gate`; on resume, wakes what waits for it and fires
/// the task's passed cron slots.
async fn set(
    services: &Services,
    gate: String,
    paused: bool,
    operation: &'static str,
) -> Result<Json<PauseState>, ApiError> {
    let store = &services.store;
    let changed = store
        .set_paused(&gate, paused)
        .await
        .map_err(ApiError::store(operation))?;
    tracing::info!(%gate, paused, changed, "gate paused or resumed");
    // Also when it was not paused: a resume whose firings failed to queue
    // is completed by asking again.
    if !paused {
        crate::admission::wake(services).await;
        if let Some(task_id) = gate.strip_prefix("task:") {
            crate::scheduler::resume_task(services, task_id)
                .await
                .map_err(|e| ApiError::unavailable(operation, e.to_string()))?;
        }
    }
    let usage = store
        .gate_usage()
        .await
        .map_err(ApiError::store(operation))?;
    let waiting = usage
        .iter()
        .find(|u| u.key == gate)
        .map_or(0, |u| u.waiting);
    Ok(Json(PauseState {
        all_paused: usage
            .into_iter()
            .filter(|u| u.paused)
            .map(|u| u.key)
            .collect(),
        gate,
        paused,
        changed,
        waiting,
    }))
}

/// The pause routes.
#[derive(Debug)]
pub struct FlowApi;

#[OpenApi]
impl FlowApi {
    /// Pause a task
    ///
    /// Nothing of the task starts until it is resumed: submissions are
    /// accepted and wait, running executions go on, cron slots pass unfired
    /// (on resume they fire as each job's `missedRuns` says). Kept across
    /// restarts. Any valid task id may be paused, also before its first job.
    #[oai(
        path = "/tasks/:taskId/pause",
        method = "post",
        operation_id = "pauseTask",
        tag = "ApiTags::Tasks"
    )]
    async fn pause_task(
        &self,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
    ) -> Result<Json<PauseState>, ApiError> {
        const OP: &str = "pause_task";
        super::job_request::task_id(&task_id).map_err(|e| ApiError::bad_request(OP, e))?;
        set(&services, crate::admission::task_key(&task_id), true, OP).await
    }

    /// Resume a task
    ///
    /// Its waiting executions start in their order, as slots allow.
    #[oai(
        path = "/tasks/:taskId/resume",
        method = "post",
        operation_id = "resumeTask",
        tag = "ApiTags::Tasks"
    )]
    async fn resume_task(
        &self,
        services: Data<&Services>,
        #[oai(name = "taskId")] task_id: Path<String>,
    ) -> Result<Json<PauseState>, ApiError> {
        const OP: &str = "resume_task";
        super::job_request::task_id(&task_id).map_err(|e| ApiError::bad_request(OP, e))?;
        set(&services, crate::admission::task_key(&task_id), false, OP).await
    }

    /// Pause a gate
    ///
    /// A farm (`pool:docker:farm "<match>"`), a concurrency key
    /// (`key:<key>`) or any gate `/status` lists under `limits`: nothing
    /// passing it starts until it is resumed. Needs the admin scope.
    #[oai(
        path = "/gates/pause",
        method = "post",
        operation_id = "pauseGate",
        tag = "ApiTags::Health"
    )]
    async fn pause_gate(
        &self,
        services: Data<&Services>,
        body: JsonBody<GateRequest>,
    ) -> Result<Json<PauseState>, ApiError> {
        const OP: &str = "pause_gate";
        set(&services, gate_of(body, OP)?, true, OP).await
    }

    /// Resume a gate
    #[oai(
        path = "/gates/resume",
        method = "post",
        operation_id = "resumeGate",
        tag = "ApiTags::Health"
    )]
    async fn resume_gate(
        &self,
        services: Data<&Services>,
        body: JsonBody<GateRequest>,
    ) -> Result<Json<PauseState>, ApiError> {
        const OP: &str = "resume_gate";
        set(&services, gate_of(body, OP)?, false, OP).await
    }
}
