//! The body of `POST /tasks/{taskId}`: its documented schema
//! ([`JobRequest`]) and the validation that turns raw JSON into a
//! [`JobSpec`], naming the field at fault when it cannot.
//!
//! Validation is done by hand rather than by a derive so that every
//! message says which field is wrong and why, and so that a body sent
//! without a JSON content type (`curl -d`) is still read.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use serde_json::{Map, Value};

use fastlane_sdk::{
    Backoff, ConcurrencyPolicy, JobSpec, NotifyTargets, Schedule, Webhook, WebhookTargets,
};

use crate::schedule::{CronSchedule, parse_start_at, parse_start_in};

/// Who to e-mail about an execution's end.
#[derive(Debug, Object)]
#[allow(dead_code)] // documents the schema; bodies are read by `parse`
pub struct NotifyRequest {
    /// Addresses told when an execution ends `done`.
    succeeds: Option<Vec<String>>,
    /// Addresses told when an execution ends `failed`.
    fails: Option<Vec<String>>,
    /// Addresses told whenever an execution ends.
    finishes: Option<Vec<String>>,
}

/// An HTTP endpoint to call about an execution.
#[derive(Debug, Object)]
#[allow(dead_code)] // documents the schema; bodies are read by `parse`
pub struct WebhookRequest {
    /// `http://` or `https://` URL.
    url: String,
    /// Extra request headers.
    headers: Option<BTreeMap<String, String>>,
    /// How many more times to try after a failed delivery.
    retries: Option<u32>,
    /// `POST` (default), `PUT`, `PATCH`, `GET` or `DELETE`.
    method: Option<String>,
}

/// Webhooks by event.
#[derive(Debug, Object)]
#[allow(dead_code)] // documents the schema; bodies are read by `parse`
pub struct WebhooksRequest {
    /// Called when an execution's container starts.
    starts: Option<Vec<WebhookRequest>>,
    /// Called when an execution ends `done`.
    succeeds: Option<Vec<WebhookRequest>>,
    /// Called when an execution ends `failed`.
    fails: Option<Vec<WebhookRequest>>,
    /// Called whenever an execution ends.
    finishes: Option<Vec<WebhookRequest>>,
}

/// Per-job retry delays: `minMs × factor^n`, at most `maxMs`, spread by ±`jitter`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
#[allow(dead_code)] // documents the schema; bodies are read by `parse`
pub struct BackoffRequest {
    /// Delay before the first retry, in milliseconds.
    min_ms: Option<u64>,
    /// Growth per retry (at least 1).
    factor: Option<f64>,
    /// The longest delay, in milliseconds.
    max_ms: Option<u64>,
    /// Random spread, a fraction from 0 to 1.
    jitter: Option<f64>,
}

/// A job to run.
#[derive(Debug, Object)]
#[oai(example)]
#[allow(dead_code)] // documents the schema; bodies are read by `parse`
pub struct JobRequest {
    /// Container image, `name[:tag]`, `registry:port/name:tag` or `name@digest`.
    image: String,
    /// The command, split shell-style into words; not run through a shell
    /// (use `sh -c '…'` for pipes and variables).
    command: String,
    /// Environment variables of the container. Values under names containing
    /// a blacklisted word are shown as `***` in responses.
    envs: Option<BTreeMap<String, String>>,
    /// Your own data, kept with the job and shown as `metadata.custom`.
    metadata: Option<BTreeMap<String, Value>>,
    /// How many more times to run the job after a non-zero exit (0–100).
    retries: Option<u32>,
    /// Seconds an execution may run before it is stopped as `timedout`;
    /// capped by `HARD_EXECUTION_TIMEOUT_SECONDS`, which is also the default.
    timeout: Option<f64>,
    /// Unix time (seconds, UTC) after which the job must not start; a run
    /// due later ends `expired`.
    expiration: Option<i64>,
    /// E-mail addresses to notify.
    notify: Option<NotifyRequest>,
    /// Webhooks to call.
    webhooks: Option<WebhooksRequest>,
    /// Extra `hostname → IP` entries for the container's `/etc/hosts`.
    #[oai(rename = "additionalDNSEntries")]
    additional_dns_entries: Option<BTreeMap<String, String>>,
    /// Run after this delay: `10s`, `2m30s`, `4h30m25s`, `240h`, `1d`.
    #[oai(rename = "startIn")]
    start_in: Option<String>,
    /// Run at this unix time (seconds, UTC); a past time runs now.
    #[oai(rename = "startAt")]
    start_at: Option<i64>,
    /// Run on this cron expression: 5 fields (or 6 with leading seconds) or
    /// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. At most one of
    /// `startIn`, `startAt` and `cron`.
    cron: Option<String>,
    /// The IANA time zone `cron` is read in; UTC by default.
    #[oai(rename = "cronTimezone")]
    cron_timezone: Option<String>,
    /// For cron jobs, what a slot does while the previous run is live:
    /// `Allow` (default), `Forbid` (skip it) or `Replace` (stop the old run).
    #[oai(rename = "concurrencyPolicy")]
    concurrency_policy: Option<String>,
    /// Retry delays for this job; the server's defaults when absent.
    backoff: Option<BackoffRequest>,
    /// CPUs the container may use (`0.5`, `2`); the farm's default when absent.
    #[oai(rename = "cpuLimit")]
    cpu_limit: Option<f64>,
    /// Memory the container may use: bytes, or a size like `256m` or `1g`;
    /// the farm's default when absent.
    #[oai(rename = "memoryLimit")]
    memory_limit: Option<String>,
    /// At most this many executions of this task run at once (every job of
    /// the task counts); the others wait in order. No limit when absent
    /// (but see `TASK_CONCURRENCY`).
    #[oai(rename = "maxConcurrent")]
    max_concurrent: Option<u32>,
}

impl poem_openapi::types::Example for JobRequest {
    fn example() -> Self {
        Self {
            image: "busybox:latest".to_owned(),
            command: "echo 'it works'".to_owned(),
            envs: Some(BTreeMap::from([(
                "GREETING".to_owned(),
                "hello".to_owned(),
            )])),
            metadata: None,
            retries: Some(0),
            timeout: Some(60.0),
            expiration: None,
            notify: None,
            webhooks: None,
            additional_dns_entries: None,
            start_in: None,
            start_at: None,
            cron: None,
            cron_timezone: None,
            concurrency_policy: None,
            backoff: None,
            cpu_limit: None,
            memory_limit: None,
            max_concurrent: None,
        }
    }
}

const FIELDS: &[&str] = &[
    "image",
    "command",
    "envs",
    "metadata",
    "retries",
    "timeout",
    "expiration",
    "notify",
    "webhooks",
    "additionalDNSEntries",
    "startIn",
    "startAt",
    "cron",
    "cronTimezone",
    "concurrencyPolicy",
    "backoff",
    "cpuLimit",
    "memoryLimit",
    "maxConcurrent",
];
const OUTCOMES: &[&str] = &["succeeds", "fails", "finishes"];
const WEBHOOK_EVENTS: &[&str] = &["starts", "succeeds", "fails", "finishes"];
const MAX_RETRIES: u64 = 100;

/// The largest task id accepted, in bytes.
pub const MAX_TASK_ID: usize = 256;

/// Reads a job request received at `now`, or says what is wrong with it.
pub fn parse(body: &Value, hard_timeout: u64, now: DateTime<Utc>) -> Result<JobSpec, String> {
    let Value::Object(body) = body else {
        return Err("the request body must be a JSON object".to_owned());
    };
    if let Some(field) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {field:?} (the fields are: {})",
            FIELDS.join(", ")
        ));
    }
    let present = |name: &str| body.get(name).filter(|v| !v.is_null());
    let (Some(image), Some(command)) = (present("image"), present("command")) else {
        return Err("image and command must be filled in the request.".to_owned());
    };
    let image = non_empty_string("image", image)?;
    if image.contains(char::is_whitespace) {
        return Err("image must not contain white space".to_owned());
    }
    let command = non_empty_string("command", command)?;
    if shlex::split(&command).is_none_or(|words| words.is_empty()) {
        return Err(
            "command cannot be split into words: check for an unclosed quote or a trailing backslash"
                .to_owned(),
        );
    }
    let timeout_seconds = match present("timeout") {
        None => hard_timeout,
        Some(v) => {
            let seconds = v
                .as_f64()
                .filter(|s| *s > 0.0 && s.is_finite())
                .ok_or("timeout must be a positive number of seconds")?;
            (seconds.ceil() as u64).min(hard_timeout)
        }
    };
    let schedule = schedule(&present, now)?;
    let concurrency_policy = match present("concurrencyPolicy").map(|v| v.as_str()) {
        None => ConcurrencyPolicy::Allow,
        Some(Some("Allow")) => ConcurrencyPolicy::Allow,
        Some(Some("Forbid")) => ConcurrencyPolicy::Forbid,
        Some(Some("Replace")) => ConcurrencyPolicy::Replace,
        Some(_) => return Err("concurrencyPolicy must be Allow, Forbid or Replace".to_owned()),
    };
    Ok(JobSpec {
        cpu_limit: present("cpuLimit").map(cpu_limit).transpose()?,
        memory_limit: present("memoryLimit").map(memory_limit).transpose()?,
        max_concurrent: present("maxConcurrent").map(max_concurrent).transpose()?,
        schedule,
        concurrency_policy,
        backoff: present("backoff").map(backoff).transpose()?,
        image,
        command,
        envs: present("envs").map(envs).transpose()?.unwrap_or_default(),
        custom: present("metadata").map(custom).transpose()?.flatten(),
        retries: present("retries").map(retries).transpose()?.unwrap_or(0),
        timeout_seconds,
        expiration: present("expiration").map(expiration).transpose()?,
        notify: present("notify")
            .map(notify)
            .transpose()?
            .unwrap_or_default(),
        webhooks: present("webhooks")
            .map(webhooks)
            .transpose()?
            .unwrap_or_default(),
        additional_dns_entries: present("additionalDNSEntries")
            .map(dns_entries)
            .transpose()?
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
    if let Some(value) = present("startIn") {
        let text = value
            .as_str()
            .ok_or("startIn must be a string like 5m or 1h30m")?;
        let delay = parse_start_in(text)?;
        let delay = chrono::Duration::from_std(delay).map_err(|e| e.to_string())?;
        return Ok(Schedule::At { at: now + delay });
    }
    if let Some(value) = present("startAt") {
        return Ok(Schedule::At {
            at: parse_start_at(value)?.max(now),
        });
    }
    if let Some(value) = present("cron") {
        let expression = value
            .as_str()
            .ok_or("cron must be a string")?
            .trim()
            .to_owned();
        let timezone = match present("cronTimezone") {
            None => None,
            Some(tz) => Some(
                tz.as_str()
                    .ok_or("cronTimezone must be a string")?
                    .to_owned(),
            ),
        };
        CronSchedule::parse(&expression, timezone.as_deref())?;
        return Ok(Schedule::Cron {
            expression,
            timezone,
        });
    }
    Ok(Schedule::Now)
}

fn max_concurrent(value: &Value) -> Result<u32, String> {
    value
        .as_u64()
        .filter(|n| *n >= 1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            format!("maxConcurrent must be a whole number of executions, at least 1 (got {value})")
        })
}

fn cpu_limit(value: &Value) -> Result<f64, String> {
    value
        .as_f64()
        .filter(|c| *c >= 0.01 && *c <= 1024.0)
        .ok_or_else(|| "cpuLimit must be a number of CPUs from 0.01 to 1024".to_owned())
}

/// Bytes, from a number or a string with a `k`, `m` or `g` suffix (1024-based).
fn memory_limit(value: &Value) -> Result<u64, String> {
    const MIN: u64 = 6 * 1024 * 1024;
    let error = || {
        format!("memoryLimit must be at least 6m: bytes, or a size like 256m or 1g (got {value})")
    };
    let bytes = match value {
        Value::Number(n) => n.as_u64().ok_or_else(error)?,
        Value::String(text) => {
            let text = text.trim().to_lowercase();
            let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
                Some((i, _)) => text.split_at(i),
                None => (text.as_str(), ""),
            };
            let multiplier: u64 = match unit.trim_end_matches('b') {
                "" => 1,
                "k" => 1024,
                "m" => 1024 * 1024,
                "g" => 1024 * 1024 * 1024,
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
    if bytes < MIN {
        return Err(error());
    }
    Ok(bytes)
}

fn backoff(value: &Value) -> Result<Backoff, String> {
    let map = object("backoff", value)?;
    if let Some(key) = map
        .keys()
        .find(|k| !["minMs", "factor", "maxMs", "jitter"].contains(&k.as_str()))
    {
        return Err(format!("backoff: unknown key {key:?}"));
    }
    let get = |k: &str| map.get(k).filter(|v| !v.is_null());
    let min_ms = match get("minMs") {
        None => 1000,
        Some(v) => v
            .as_u64()
            .ok_or("backoff.minMs must be a whole number of milliseconds")?,
    };
    let factor = match get("factor") {
        None => 2.0,
        Some(v) => v
            .as_f64()
            .filter(|f| (1.0..=100.0).contains(f))
            .ok_or("backoff.factor must be a number from 1 to 100")?,
    };
    let max_ms = match get("maxMs") {
        None => 3_600_000,
        Some(v) => v
            .as_u64()
            .filter(|m| *m >= min_ms)
            .ok_or("backoff.maxMs must be a whole number of milliseconds, at least minMs")?,
    };
    let jitter = match get("jitter") {
        None => 0.0,
        Some(v) => v
            .as_f64()
            .filter(|j| (0.0..=1.0).contains(j))
            .ok_or("backoff.jitter must be a number from 0 to 1")?,
    };
    Ok(Backoff {
        min_ms,
        factor,
        max_ms,
        jitter,
    })
}

fn non_empty_string(field: &str, value: &Value) -> Result<String, String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{field} must be a string"))?;
    if text.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    Ok(text.to_owned())
}

fn object<'a>(field: &str, value: &'a Value) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{field} must be a JSON object"))
}

fn envs(value: &Value) -> Result<BTreeMap<String, String>, String> {
    object("envs", value)?
        .iter()
        .map(|(name, v)| {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!("envs: {name:?} is not a valid variable name"));
            }
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(format!("envs.{name} must be a string, number or boolean")),
            };
            Ok((name.clone(), text))
        })
        .collect()
}

fn custom(value: &Value) -> Result<Option<Map<String, Value>>, String> {
    let map = object("metadata", value)?;
    Ok((!map.is_empty()).then(|| map.clone()))
}

fn retries(value: &Value) -> Result<u32, String> {
    value
        .as_u64()
        .filter(|n| *n <= MAX_RETRIES)
        .map(|n| n as u32)
        .ok_or_else(|| format!("retries must be a whole number from 0 to {MAX_RETRIES}"))
}

fn expiration(value: &Value) -> Result<DateTime<Utc>, String> {
    value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i64)
        })
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .ok_or_else(|| "expiration must be a unix timestamp in whole seconds".to_owned())
}

fn outcome_lists<'a>(
    field: &str,
    value: &'a Value,
    outcomes: &[&'static str],
) -> Result<Vec<(&'static str, &'a Vec<Value>)>, String> {
    let map = object(field, value)?;
    if let Some(key) = map.keys().find(|k| !outcomes.contains(&k.as_str())) {
        return Err(format!(
            "{field}: unknown key {key:?} (expected {})",
            outcomes.join(", ")
        ));
    }
    outcomes
        .iter()
        .filter_map(|outcome| {
            map.get(*outcome)
                .filter(|v| !v.is_null())
                .map(|v| (*outcome, v))
        })
        .map(|(outcome, v)| {
            v.as_array()
                .map(|list| (outcome, list))
                .ok_or_else(|| format!("{field}.{outcome} must be a list"))
        })
        .collect()
}

fn notify(value: &Value) -> Result<NotifyTargets, String> {
    let mut targets = NotifyTargets::default();
    for (outcome, list) in outcome_lists("notify", value, OUTCOMES)? {
        let addresses = list
            .iter()
            .map(|v| {
                v.as_str()
                    .filter(|a| a.contains('@') && !a.contains(char::is_whitespace))
                    .map(str::to_owned)
                    .ok_or_else(|| format!("notify.{outcome}: {v} is not an e-mail address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match outcome {
            "succeeds" => targets.succeeds = addresses,
            "fails" => targets.fails = addresses,
            _ => targets.finishes = addresses,
        }
    }
    Ok(targets)
}

fn webhook(place: &str, value: &Value) -> Result<Webhook, String> {
    let map = object(place, value)?;
    if let Some(key) = map
        .keys()
        .find(|k| !["url", "headers", "retries", "method"].contains(&k.as_str()))
    {
        return Err(format!("{place}: unknown key {key:?}"));
    }
    let url = map
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| format!("{place}.url must be an http:// or https:// URL"))?
        .to_owned();
    let headers = match map.get("headers").filter(|v| !v.is_null()) {
        None => BTreeMap::new(),
        Some(h) => object(&format!("{place}.headers"), h)?
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_owned()))
                    .ok_or_else(|| format!("{place}.headers.{k} must be a string"))
            })
            .collect::<Result<_, _>>()?,
    };
    let retries = match map.get("retries").filter(|v| !v.is_null()) {
        None => 0,
        Some(r) => retries(r).map_err(|e| format!("{place}.{e}"))?,
    };
    let method = match map.get("method").filter(|v| !v.is_null()) {
        None => None,
        Some(m) => Some(
            m.as_str()
                .map(str::to_uppercase)
                .filter(|m| ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.as_str()))
                .ok_or_else(|| {
                    format!("{place}.method must be one of GET, POST, PUT, PATCH, DELETE")
                })?,
        ),
    };
    Ok(Webhook {
        url,
        headers,
        retries,
        method,
    })
}

fn webhooks(value: &Value) -> Result<WebhookTargets, String> {
    let mut targets = WebhookTargets::default();
    for (outcome, list) in outcome_lists("webhooks", value, WEBHOOK_EVENTS)? {
        let hooks = list
            .iter()
            .enumerate()
            .map(|(i, v)| webhook(&format!("webhooks.{outcome}[{i}]"), v))
            .collect::<Result<Vec<_>, _>>()?;
        match outcome {
            "starts" => targets.starts = hooks,
            "succeeds" => targets.succeeds = hooks,
            "fails" => targets.fails = hooks,
            _ => targets.finishes = hooks,
        }
    }
    Ok(targets)
}

fn dns_entries(value: &Value) -> Result<Vec<(String, String)>, String> {
    object("additionalDNSEntries", value)?
        .iter()
        .map(|(host, ip)| {
            let ip = ip
                .as_str()
                .filter(|ip| ip.parse::<IpAddr>().is_ok())
                .ok_or_else(|| format!("additionalDNSEntries.{host} must be an IP address"))?;
            if host.is_empty() || host.contains(char::is_whitespace) || host.contains(':') {
                return Err(format!("additionalDNSEntries: {host:?} is not a host name"));
            }
            Ok((host.clone(), ip.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(body: Value) -> String {
        parse(&body, 1800, Utc::now()).expect_err("invalid")
    }

    #[test]
    fn a_full_request_is_read() {
        let spec = parse(
            &json!({
                "image": "busybox:1.36", "command": "sh -c 'echo hi'",
                "envs": {"A": "x", "N": 3, "B": true},
                "metadata": {"who": "me"}, "retries": 2, "timeout": 5000, "expiration": 2000000000,
                "notify": {"fails": ["ops@example.com"]},
                "webhooks": {"finishes": [{"url": "http://h/x", "method": "put", "retries": 1}]},
                "additionalDNSEntries": {"db": "10.0.0.1"}
            }),
            1800,
            Utc::now(),
        )
        .expect("valid");
        assert_eq!(spec.envs["N"], "3");
        assert_eq!(spec.envs["B"], "true");
        assert_eq!(spec.timeout_seconds, 1800, "capped by the hard limit");
        assert_eq!(spec.retries, 2);
        assert_eq!(spec.notify.fails, ["ops@example.com"]);
        assert_eq!(spec.webhooks.finishes[0].method.as_deref(), Some("PUT"));
        assert_eq!(
            spec.additional_dns_entries,
            [("db".to_owned(), "10.0.0.1".to_owned())]
        );
        assert_eq!(spec.custom.expect("custom")["who"], "me");
    }

    #[test]
    fn every_bad_field_is_named() {
        let base = || json!({"image": "busybox", "command": "true"});
        let with = |field: &str, value: Value| {
            let mut body = base();
            body[field] = value;
            body
        };
        let cases = [
            (json!([1, 2]), "must be a JSON object"),
            (
                json!({}),
                "image and command must be filled in the request.",
            ),
            (
                json!({"image": "busybox"}),
                "image and command must be filled",
            ),
            (
                json!({"image": 3, "command": "x"}),
                "image must be a string",
            ),
            (
                json!({"image": " ", "command": "x"}),
                "image must not be empty",
            ),
            (
                with("command", json!("echo 'open")),
                "command cannot be split",
            ),
            (with("comand", json!("x")), "unknown field \"comand\""),
            (with("envs", json!({"A": {"b": 1}})), "envs.A must be"),
            (with("envs", json!("A=1")), "envs must be a JSON object"),
            (
                with("metadata", json!("qwe")),
                "metadata must be a JSON object",
            ),
            (with("retries", json!(-1)), "retries must be"),
            (with("retries", json!("3")), "retries must be"),
            (
                with("timeout", json!("abc")),
                "timeout must be a positive number",
            ),
            (
                with("timeout", json!(0)),
                "timeout must be a positive number",
            ),
            (with("expiration", json!("tomorrow")), "expiration must be"),
            (with("notify", json!({"fails": ["nobody"]})), "notify.fails"),
            (with("notify", json!({"fail": []})), "unknown key \"fail\""),
            (
                with("webhooks", json!({"fails": [{"url": "ftp://x"}]})),
                "webhooks.fails[0].url",
            ),
            (
                with(
                    "webhooks",
                    json!({"fails": [{"url": "http://x", "method": "TRACE"}]}),
                ),
                "method",
            ),
            (
                with("additionalDNSEntries", json!({"db": "nope"})),
                "additionalDNSEntries.db",
            ),
            (with("startIn", json!("5")), "startIn \"5\" is not a delay"),
            (with("startIn", json!(5)), "startIn must be a string"),
            (with("startAt", json!("noon")), "startAt"),
            (with("cron", json!("* * *")), "must have 5 fields"),
            (
                with("cron", json!("61 * * * *")),
                "is not a valid cron expression",
            ),
            (
                with("cronTimezone", json!("UTC")),
                "cronTimezone only goes with cron",
            ),
            (
                with("concurrencyPolicy", json!("Sometimes")),
                "concurrencyPolicy",
            ),
            (with("backoff", json!({"factor": 0.5})), "backoff.factor"),
            (
                with("backoff", json!({"minMs": 10, "maxMs": 5})),
                "backoff.maxMs",
            ),
            (with("cpuLimit", json!(0)), "cpuLimit"),
            (with("memoryLimit", json!("lots")), "memoryLimit"),
            (with("memoryLimit", json!("1k")), "at least 6m"),
        ];
        for (body, expected) in cases {
            let message = error(body.clone());
            assert!(message.contains(expected), "{body}: {message}");
        }
    }

    #[test]
    fn one_schedule_at_most_and_each_form_is_read() {
        let now = Utc::now();
        let job = |extra: Value| {
            let mut body = json!({"image": "busybox", "command": "true"});
            for (k, v) in extra.as_object().expect("object") {
                body[k] = v.clone();
            }
            parse(&body, 1800, now)
        };
        let both = job(json!({"startIn": "5m", "cron": "* * * * *"})).expect_err("two");
        assert_eq!(
            both,
            "Only ONE of 'startAt', 'startIn' and 'cron' should be in the request."
        );
        assert_eq!(
            job(json!({"startIn": "2m30s"})).expect("valid").schedule,
            Schedule::At {
                at: now + chrono::Duration::seconds(150)
            }
        );
        assert_eq!(
            job(json!({"startAt": 1})).expect("valid").schedule,
            Schedule::At { at: now },
            "a past startAt means now"
        );
        let cron = job(json!({"cron": "*/5 * * * *", "cronTimezone": "Europe/Paris", "concurrencyPolicy": "Forbid"}))
            .expect("valid");
        assert_eq!(
            cron.schedule,
            Schedule::Cron {
                expression: "*/5 * * * *".into(),
                timezone: Some("Europe/Paris".into())
            }
        );
        assert_eq!(cron.concurrency_policy, ConcurrencyPolicy::Forbid);
    }

    #[test]
    fn nulls_mean_absent() {
        let spec = parse(
            &json!({"image": "busybox", "command": "true", "envs": null, "timeout": null}),
            1800,
            Utc::now(),
        )
        .expect("valid");
        assert!(spec.envs.is_empty());
        assert_eq!(spec.timeout_seconds, 1800);
        assert!(spec.custom.is_none());
    }
}
