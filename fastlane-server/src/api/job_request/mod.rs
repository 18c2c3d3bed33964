//! The body of `POST /tasks/{taskId}` and `PUT /tasks/{taskId}/jobs/{jobId}`:
//! one table of fields ([`fields::JOB_REQUEST`]) is both its OpenAPI schema
//! ([`JobRequest`], through [`schema`]) and the rules [`parse`] checks
//! ([`check`]) before it turns the body into a [`JobSpec`], naming the
//! field at fault when it cannot.
//!
//! What a schema cannot say (a command that splits into words, a cron
//! expression that fires, a time zone that exists, the cross-field rules)
//! is checked here after the table's rules, and said in the descriptions.
//! A body sent without a JSON content type (`curl -d`) is still read
//! ([`super::body`]).

mod check;
pub mod fields;
#[cfg(test)]
mod generated;
pub mod schema;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde_json::Value;

use fastlane_sdk::{
    Backoff, ConcurrencyPolicy, JobSpec, MissedRuns, NotifyTargets, PullPolicy, Schedule, Webhook,
    WebhookTargets,
};

use crate::schedule::{CronSchedule, parse_start_at, parse_start_in};
use check::whole;
use fields::{JOB_REQUEST, MIN_MEMORY_BYTES};
pub use schema::Limits;

/// The job request as the document describes it: its schema is the table
/// [`fields::JOB_REQUEST`]; bodies are read by [`parse`].
#[derive(Debug)]
pub struct JobRequest;

impl Type for JobRequest {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        Cow::Borrowed(JOB_REQUEST.name)
    }

    fn schema_ref() -> MetaSchemaRef {
        JOB_REQUEST.reference()
    }

    fn register(registry: &mut Registry) {
        JOB_REQUEST.register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

/// The most jobs one batch submission holds.
pub const MAX_BATCH: usize = 1000;

/// A batch of job requests (`POST /tasks/{taskId}/batch`):
/// `{"jobs": [JobRequest, …]}`, 1 to [`MAX_BATCH`] of them.
#[derive(Debug)]
pub struct BatchRequest;

impl Type for BatchRequest {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        Cow::Borrowed("BatchRequest")
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut jobs = MetaSchema::new("array");
        jobs.items = Some(Box::new(JOB_REQUEST.reference()));
        jobs.min_items = Some(1);
        jobs.max_items = Some(MAX_BATCH);
        jobs.description = Some("The jobs, each as `POST /tasks/{taskId}` takes it.");
        let mut batch = MetaSchema::new("object");
        batch.properties = vec![("jobs", MetaSchemaRef::Inline(Box::new(jobs)))];
        batch.required = vec!["jobs"];
        batch.description = Some("A batch of jobs of one task; no other key is accepted.");
        MetaSchemaRef::Inline(Box::new(batch))
    }

    fn register(registry: &mut Registry) {
        JOB_REQUEST.register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

/// The job requests of a batch body, or the 400 message saying its shape.
pub fn batch(body: &Value) -> Result<&[Value], String> {
    let shape = || {
        format!(
            "the body must be {{\"jobs\": [...]}}: an array of 1 to {MAX_BATCH} job requests, and no other key"
        )
    };
    let object = body.as_object().ok_or_else(shape)?;
    if object.keys().any(|key| key != "jobs") {
        return Err(shape());
    }
    let jobs = object
        .get("jobs")
        .and_then(Value::as_array)
        .ok_or_else(shape)?;
    if jobs.is_empty() || jobs.len() > MAX_BATCH {
        return Err(format!(
            "jobs holds {} job requests: from 1 to {MAX_BATCH} are accepted",
            jobs.len()
        ));
    }
    Ok(jobs)
}

/// The OpenAPI document `spec` (JSON text, as poem writes it) with what
/// poem's schemas cannot hold added, key order kept (see
/// [`schema::finish_document`]); `spec` itself if it is not JSON.
pub fn finish_document(spec: String) -> String {
    let Ok(mut document) = serde_json::from_str::<super::ordered::Ordered>(&spec) else {
        return spec;
    };
    schema::finish_document(&mut document, &JOB_REQUEST);
    serde_json::to_string_pretty(&document).unwrap_or(spec)
}

/// The task id rule: 1 to 256 characters among letters, digits, `-`, `_`,
/// `.`, `:` and `@`, not starting with a dot (so no `/`, no white space, no
/// control character).
pub const TASK_ID_PATTERN: &str = r"^[A-Za-z0-9_:@-][A-Za-z0-9._:@-]{0,255}$";

/// The largest task id accepted, in bytes.
pub const MAX_TASK_ID: usize = 256;

/// Checks a task id given to a route that creates (POST, PUT).
pub fn task_id(id: &str) -> Result<(), String> {
    let valid = (1..=MAX_TASK_ID).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "taskId {:?} is not a valid task id: use 1 to {MAX_TASK_ID} letters, digits, \
             '-', '_', '.', ':' or '@', not starting with '.'",
            id.chars().take(80).collect::<String>()
        ))
    }
}

/// The field of the request a [`parse`] or [`task_id`] error is about, when
/// it names one first, as they all do (`cron "x" is not a valid…`,
/// `envs.PATH must be…`, `webhooks.succeeds[0].url must be…`): a form can
/// show the error beside that field.
pub fn field_at_fault(message: &str) -> Option<String> {
    let path: String = message
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_' | '-'))
        .collect();
    let top = path.split(['.', '[']).next()?;
    (top == "taskId" || JOB_REQUEST.field(top).is_some()).then_some(path)
}

/// Reads a job request received at `now`, or says what is wrong with it:
/// first the table's rules, then what the table cannot say.
pub fn parse(
    body: &Value,
    limits: &Limits,
    hard_timeout: u64,
    now: DateTime<Utc>,
) -> Result<JobSpec, String> {
    check::object("", &JOB_REQUEST, body, limits)?;
    let Value::Object(body) = body else {
        return Err("the request body must be a JSON object".to_owned());
    };
    let present = |name: &str| body.get(name).filter(|v| !v.is_null());
    let text = |name: &str| present(name).and_then(Value::as_str);
    let image = text("image").unwrap_or_default().to_owned();
    let command = text("command").unwrap_or_default().to_owned();
    if shlex::split(&command).is_none_or(|words| words.is_empty()) {
        return Err(
            "command cannot be split into words: check for an unclosed quote or a trailing backslash"
                .to_owned(),
        );
    }
    let timeout_seconds = match present("timeout").and_then(Value::as_f64) {
        None => hard_timeout,
        Some(seconds) => (seconds.ceil() as u64).min(hard_timeout),
    };
    let schedule = schedule(&present, now)?;
    let concurrency_policy = match text("concurrencyPolicy") {
        Some("Forbid") => ConcurrencyPolicy::Forbid,
        Some("Replace") => ConcurrencyPolicy::Replace,
        _ => ConcurrencyPolicy::Allow,
    };
    let notify = present("notify").map(notify).unwrap_or_default();
    let addresses = notify.succeeds.len() + notify.fails.len() + notify.finishes.len();
    if addresses > limits.addresses {
        return Err(format!(
            "notify has {addresses} e-mail addresses: at most {} are allowed (NOTIFY_MAX_ADDRESSES)",
            limits.addresses
        ));
    }
    Ok(JobSpec {
        cpu_limit: present("cpuLimit").and_then(Value::as_f64),
        memory_limit: present("memoryLimit").map(memory_limit).transpose()?,
        max_concurrent: present("maxConcurrent")
            .and_then(whole)
            .and_then(|n| u32::try_from(n).ok()),
        priority: present("priority")
            .and_then(whole)
            .and_then(|n| i32::try_from(n).ok()),
        concurrency_key: text("concurrencyKey").map(str::to_owned),
        max_concurrent_per_key: present("maxConcurrentPerKey")
            .and_then(whole)
            .and_then(|n| u32::try_from(n).ok()),
        schedule,
        concurrency_policy,
        missed_runs: match text("missedRuns") {
            Some("latest") => MissedRuns::Latest,
            Some("all") => MissedRuns::All,
            _ => MissedRuns::Skip,
        },
        pull_policy: match text("pullPolicy") {
            Some("always") => Some(PullPolicy::Always),
            Some("never") => Some(PullPolicy::Never),
            Some("ifNotPresent") => Some(PullPolicy::IfNotPresent),
            _ => None,
        },
        max_missed_runs: present("maxMissedRuns")
            .and_then(whole)
            .and_then(|n| u32::try_from(n).ok()),
        backoff: present("backoff").map(backoff).transpose()?,
        image,
        command,
        envs: present("envs").map(envs).unwrap_or_default(),
        custom: present("metadata")
            .and_then(Value::as_object)
            .filter(|map| !map.is_empty())
            .cloned(),
        retries: present("retries").map_or(0, retries),
        timeout_seconds,
        expiration: present("expiration")
            .and_then(whole)
            .and_then(|secs| DateTime::from_timestamp(secs, 0)),
        notify,
        webhooks: present("webhooks")
            .map(webhooks)
            .transpose()?
            .unwrap_or_default(),
        additional_dns_entries: present("additionalDNSEntries")
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .map(|(host, ip)| (host.clone(), ip.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn schedule<'a>(
    present: &impl Fn(&str) -> Option<&'a Value>,
    now: DateTime<Utc>,
) -> Result<Schedule, String> {
    let given: Vec<&str> = ["startIn", "startAt", "cron"]
        .into_iter()
        .filter(|f| present(f).is_some())
        .collect();
    if given.len() > 1 {
        return Err(
            "Only ONE of 'startAt', 'startIn' and 'cron' should be in the request.".to_owned(),
        );
    }
    if present("cronTimezone").is_some() && present("cron").is_none() {
        return Err("cronTimezone only goes with cron".to_owned());
    }
    if let Some(text) = present("startIn").and_then(Value::as_str) {
        let delay = parse_start_in(text)?;
        let delay = chrono::Duration::from_std(delay).map_err(|e| format!("startIn: {e}"))?;
        let at = now
            .checked_add_signed(delay)
            .ok_or_else(|| format!("startIn {text:?} is too far in the future"))?;
        return Ok(Schedule::At { at });
    }
    if let Some(value) = present("startAt") {
        return Ok(Schedule::At {
            at: parse_start_at(value)?.max(now),
        });
    }
    if let Some(expression) = present("cron").and_then(Value::as_str) {
        let expression = expression.trim().to_owned();
        let timezone = present("cronTimezone")
            .and_then(Value::as_str)
            .map(str::to_owned);
        CronSchedule::parse(&expression, timezone.as_deref())?;
        return Ok(Schedule::Cron {
            expression,
            timezone,
        });
    }
    Ok(Schedule::Now)
}

/// Bytes, from a number or a string with a `k`, `m` or `g` suffix (1024-based).
fn memory_limit(value: &Value) -> Result<u64, String> {
    let error = || {
        format!("memoryLimit must be at least 6m: bytes, or a size like 256m or 1g (got {value})")
    };
    let bytes = match value {
        Value::Number(n) => n.as_u64().ok_or_else(error)?,
        Value::String(text) => {
            let text = text.to_lowercase();
            let digits = text.trim_end_matches(['k', 'm', 'g', 'b']);
            let multiplier: u64 = match &text[digits.len()..] {
                "" | "b" => 1,
                "k" | "kb" => 1024,
                "m" | "mb" => 1024 * 1024,
                "g" | "gb" => 1024 * 1024 * 1024,
                _ => return Err(error()),
            };
            digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(multiplier))
                .ok_or_else(error)?
        }
        _ => return Err(error()),
    };
    if bytes < MIN_MEMORY_BYTES {
        return Err(error());
    }
    Ok(bytes)
}

fn backoff(value: &Value) -> Result<Backoff, String> {
    let get = |k: &str| value.get(k).filter(|v| !v.is_null());
    let ms = |k: &str, default: u64| {
        get(k)
            .and_then(whole)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(default)
    };
    let min_ms = ms("minMs", 1000);
    let max_ms = ms("maxMs", 3_600_000);
    if max_ms < min_ms {
        return Err(format!(
            "backoff.maxMs must be a whole number of milliseconds, at least minMs ({min_ms}); got {max_ms}"
        ));
    }
    Ok(Backoff {
        min_ms,
        factor: get("factor").and_then(Value::as_f64).unwrap_or(2.0),
        max_ms,
        jitter: get("jitter").and_then(Value::as_f64).unwrap_or(0.0),
    })
}

fn envs(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect()
}

fn retries(value: &Value) -> u32 {
    whole(value)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or_default()
}

/// The lists of `value` (an object already checked), by key.
fn lists<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn notify(value: &Value) -> NotifyTargets {
    let addresses = |key| {
        lists(value, key)
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect()
    };
    NotifyTargets {
        succeeds: addresses("succeeds"),
        fails: addresses("fails"),
        finishes: addresses("finishes"),
    }
}

/// One hook (its form already checked by the table), found at `place`.
fn webhook(place: &str, value: &Value) -> Result<Webhook, String> {
    let get = |key: &str| value.get(key).filter(|v| !v.is_null());
    let url = get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{place}.url must be an http:// or https:// URL"))?
        .to_owned();
    // Where the URL may point is the egress policy's business: `submit`
    // checks every hook against it (`crate::egress::check_webhooks`).
    Ok(Webhook {
        url,
        headers: get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
        retries: get("retries").map_or(0, retries),
        method: get("method").and_then(Value::as_str).map(str::to_uppercase),
    })
}

fn webhooks(value: &Value) -> Result<WebhookTargets, String> {
    let hooks = |event: &str| {
        lists(value, event)
            .iter()
            .enumerate()
            .map(|(i, hook)| webhook(&format!("webhooks.{event}[{i}]"), hook))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(WebhookTargets {
        starts: hooks("starts")?,
        succeeds: hooks("succeeds")?,
        fails: hooks("fails")?,
        finishes: hooks("finishes")?,
    })
}
