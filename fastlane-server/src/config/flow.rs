//! Flow control settings: who runs next and how fast. `TASK_FLOW` (rules
//! by task-id pattern; `TASK_CONCURRENCY` is its older subset with only
//! `maxConcurrent`), `KEY_FLOW` (rules by concurrency-key pattern),
//! `ADMISSION_ORDER` and `PRIORITY_AGING_SECONDS`.

use crate::store::{Order, Policy, Rate};

use super::ConfigError;
use super::plugins::task_pattern;

/// The most a priority (a job's, or a rule's) may be, either way.
pub const MAX_PRIORITY: i32 = 1000;

/// The largest weight.
const MAX_WEIGHT: u32 = 1000;

/// The fastest rate, in starts a second.
const MAX_RATE: f64 = 1_000_000.0;

/// One `TASK_FLOW` or `KEY_FLOW` rule.
#[derive(Debug, Clone)]
pub struct FlowRule {
    /// Matched at the start of the task id, or of the concurrency key.
    pub pattern: regex::Regex,
    /// At most this many executions at once: of each matching task, or
    /// of each matching key (across tasks).
    pub max_concurrent: Option<u32>,
    /// `TASK_FLOW` only: at most this many of each concurrency key within
    /// each matching task.
    pub max_concurrent_per_key: Option<u32>,
    /// Starts a second (each matching task's, or key's), with a burst.
    pub rate: Option<Rate>,
    /// The share of slots under `ADMISSION_ORDER=fair`.
    pub weight: Option<u32>,
    /// `TASK_FLOW` only: the priority of jobs that do not give one.
    pub priority: Option<i32>,
}

/// Every flow-control setting.
#[derive(Debug, Clone, Default)]
pub struct FlowSettings {
    /// `TASK_CONCURRENCY` then `TASK_FLOW` rules.
    pub tasks: Vec<FlowRule>,
    /// `KEY_FLOW` rules.
    pub keys: Vec<FlowRule>,
    /// The line's order and ageing.
    pub policy: Policy,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    #[serde(rename = "match", default)]
    pattern: String,
    max_concurrent: Option<u32>,
    max_concurrent_per_key: Option<u32>,
    rate: Option<f64>,
    burst: Option<u32>,
    weight: Option<u32>,
    priority: Option<i32>,
}

/// Reads the flow settings from their keys' values.
pub(super) fn flow_settings(
    task_concurrency: serde_json::Value,
    task_flow: serde_json::Value,
    key_flow: serde_json::Value,
    order: Option<String>,
    aging_seconds: u64,
) -> Result<FlowSettings, ConfigError> {
    let mut tasks = rules("TASK_CONCURRENCY", task_concurrency, &["maxConcurrent"])?;
    tasks.extend(rules(
        "TASK_FLOW",
        task_flow,
        &[
            "maxConcurrent",
            "maxConcurrentPerKey",
            "rate",
            "burst",
            "weight",
            "priority",
        ],
    )?);
    let keys = rules(
        "KEY_FLOW",
        key_flow,
        &["maxConcurrent", "rate", "burst", "weight"],
    )?;
    let order = match order.as_deref().map(str::trim) {
        None | Some("" | "fair") => Order::Fair,
        Some("fifo") => Order::Fifo,
        Some(other) => {
            return Err(ConfigError::Invalid {
                key: "ADMISSION_ORDER",
                message: format!("{other:?} is neither \"fair\" nor \"fifo\""),
            });
        }
    };
    Ok(FlowSettings {
        tasks,
        keys,
        policy: Policy {
            order,
            aging_seconds,
        },
    })
}

/// The rules of `key`, each using only the `allowed` fields.
fn rules(
    key: &'static str,
    value: serde_json::Value,
    allowed: &[&str],
) -> Result<Vec<FlowRule>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { key, message };
    let raw: Vec<RawRule> = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
    raw.into_iter()
        .map(|rule| {
            let given = [
                ("maxConcurrent", rule.max_concurrent.is_some()),
                ("maxConcurrentPerKey", rule.max_concurrent_per_key.is_some()),
                ("rate", rule.rate.is_some()),
                ("burst", rule.burst.is_some()),
                ("weight", rule.weight.is_some()),
                ("priority", rule.priority.is_some()),
            ];
            let of = |what: &str| format!("{what} of {:?}", rule.pattern);
            if let Some((field, _)) = given
                .iter()
                .find(|(field, set)| *set && !allowed.contains(field))
            {
                return Err(invalid(format!("{} is not a field of {key}", of(field))));
            }
            if !given.iter().any(|(_, set)| *set) {
                return Err(invalid(format!(
                    "the rule for {:?} sets nothing: give one of {}",
                    rule.pattern,
                    allowed.join(", ")
                )));
            }
            for (field, value) in [
                ("maxConcurrent", rule.max_concurrent),
                ("maxConcurrentPerKey", rule.max_concurrent_per_key),
            ] {
                if value == Some(0) {
                    return Err(invalid(format!(
                        "{} must be at least 1 (to stop a task, pause it)",
                        of(field)
                    )));
                }
            }
            if rule.weight.is_some_and(|w| !(1..=MAX_WEIGHT).contains(&w)) {
                return Err(invalid(format!(
                    "{} must be from 1 to {MAX_WEIGHT}",
                    of("weight")
                )));
            }
            if rule.priority.is_some_and(|p| p.abs() > MAX_PRIORITY) {
                return Err(invalid(format!(
                    "{} must be from -{MAX_PRIORITY} to {MAX_PRIORITY}",
                    of("priority")
                )));
            }
            let rate = match (rule.rate, rule.burst) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(invalid(format!("{} needs a rate", of("burst"))));
                }
                (Some(rate), burst) => {
                    if !(rate > 0.0 && rate <= MAX_RATE) {
                        return Err(invalid(format!(
                            "{} must be more than 0 starts a second, at most {MAX_RATE}",
                            of("rate")
                        )));
                    }
                    if burst == Some(0) {
                        return Err(invalid(format!("{} must be at least 1", of("burst"))));
                    }
                    Some(Rate {
                        per_second: rate,
                        burst: burst.unwrap_or_else(|| rate.ceil() as u32).max(1),
                    })
                }
            };
            Ok(FlowRule {
                pattern: task_pattern(key, &rule.pattern)?,
                max_concurrent: rule.max_concurrent,
                max_concurrent_per_key: rule.max_concurrent_per_key,
                rate,
                weight: rule.weight,
                priority: rule.priority,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(task_flow: &str, key_flow: &str) -> Result<FlowSettings, String> {
        let json = |s: &str| serde_json::from_str(s).unwrap_or_default();
        flow_settings(json("[]"), json(task_flow), json(key_flow), None, 60)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn rules_read_with_their_defaults() {
        let flow = settings(
            r#"[{"match": "reports-", "rate": 2.5, "weight": 3, "priority": -2}]"#,
            r#"[{"match": "acme", "maxConcurrent": 4}]"#,
        )
        .expect("valid");
        let rule = &flow.tasks[0];
        assert!(rule.pattern.is_match("reports-daily") && !rule.pattern.is_match("x-reports-"));
        let rate = rule.rate.expect("a rate");
        assert_eq!(
            (rate.per_second, rate.burst),
            (2.5, 3),
            "burst defaults to a second's worth"
        );
        assert_eq!((rule.weight, rule.priority), (Some(3), Some(-2)));
        assert_eq!(flow.keys[0].max_concurrent, Some(4));
        assert_eq!(flow.policy, Policy::default());
    }

    #[test]
    fn bad_rules_are_refused_naming_the_key_and_field() {
        for (task_flow, key_flow, expected) in [
            (
                r#"[{"match": "a", "maxConcurrent": 0}]"#,
                "[]",
                "TASK_FLOW: maxConcurrent of \"a\" must be at least 1",
            ),
            (
                r#"[{"match": "a", "rate": 0}]"#,
                "[]",
                "rate of \"a\" must be more than 0",
            ),
            (
                r#"[{"match": "a", "burst": 3}]"#,
                "[]",
                "burst of \"a\" needs a rate",
            ),
            (
                r#"[{"match": "a", "weight": 0}]"#,
                "[]",
                "weight of \"a\" must be from 1",
            ),
            (
                r#"[{"match": "a", "priority": 5000}]"#,
                "[]",
                "priority of \"a\" must be from -1000",
            ),
            (r#"[{"match": "a"}]"#, "[]", "sets nothing"),
            (
                "[]",
                r#"[{"match": "a", "priority": 1}]"#,
                "KEY_FLOW: priority of \"a\" is not a field",
            ),
            (
                "[]",
                r#"[{"match": "(", "maxConcurrent": 1}]"#,
                "not a regular expression",
            ),
            (
                r#"[{"match": "a", "rate": 1, "sped": 2}]"#,
                "[]",
                "unknown field `sped`",
            ),
        ] {
            let err = settings(task_flow, key_flow).expect_err(expected);
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
        let json = |s: &str| serde_json::from_str(s).unwrap_or_default();
        let err = flow_settings(json("[]"), json("[]"), json("[]"), Some("lifo".into()), 60)
            .expect_err("unknown order");
        assert!(err.to_string().contains("ADMISSION_ORDER"), "{err}");
    }
}
