//! Everything a submission goes through before anything is stored, as one
//! function of its task id and body bytes, for the fuzz target in `fuzz/`:
//! the body's nesting cap and JSON parse ([`super::body`]), the task id's
//! rules, the job request's table and cross-field rules
//! ([`super::job_request`]) and the webhooks' egress policy, each with its
//! default settings.

use chrono::{DateTime, Utc};
use fastlane_sdk::JobSpec;

use super::body::read_json;
use super::job_request::{self, Limits};
use crate::egress::{EgressPolicy, check_webhooks};

/// `HARD_EXECUTION_TIMEOUT_SECONDS`' default: the longest timeout an
/// accepted job gets.
pub const HARD_TIMEOUT: u64 = 1800;

/// Reads a submission of `body` to task `task_id` received at `now`: the
/// job it stores, or the message of the 400 that refuses it.
pub fn read_submission(task_id: &str, body: &[u8], now: DateTime<Utc>) -> Result<JobSpec, String> {
    job_request::task_id(task_id)?;
    let body = read_json(body).map_err(|err| err.message())?;
    let spec = job_request::parse(&body, &Limits::default(), HARD_TIMEOUT, now)?;
    check_webhooks(&spec.webhooks, &EgressPolicy::default())?;
    Ok(spec)
}
