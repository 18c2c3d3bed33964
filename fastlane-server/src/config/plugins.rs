//! Plugin settings: `PLUGINS` libraries, `EXECUTORS` routes, `NOTIFIERS`
//! subscriptions, and the task-id patterns they (and the flow rules)
//! match with.

use std::path::PathBuf;

use super::ConfigError;

/// One `PLUGINS` entry.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLibrary {
    /// The library file.
    pub path: PathBuf,
    /// What each of its plugins is built with.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// One `EXECUTORS` entry.
#[derive(Debug, Clone)]
pub struct ExecutorRoute {
    /// Matched at the start of the task id.
    pub pattern: regex::Regex,
    /// The executor's registered name.
    pub executor: String,
}

/// One `NOTIFIERS` entry.
#[derive(Debug, Clone)]
pub struct NotifierSubscription {
    /// The notifier's registered name.
    pub notifier: String,
    /// Matched at the start of the task id.
    pub pattern: regex::Regex,
    /// The events it hears about.
    pub events: Vec<fastlane_sdk::NotificationEvent>,
    /// Handed to the notifier as the delivery's target.
    pub target: serde_json::Value,
    /// Tries after the first.
    pub retries: u32,
}

/// A task-id pattern, anchored at the start as farms' are.
pub(super) fn task_pattern(key: &'static str, pattern: &str) -> Result<regex::Regex, ConfigError> {
    regex::Regex::new(&format!("^(?:{pattern})")).map_err(|err| ConfigError::Invalid {
        key,
        message: format!("{pattern:?} is not a regular expression: {err}"),
    })
}

/// `PLUGINS`, `EXECUTORS` and `NOTIFIERS`, parsed and checked.
type PluginSettings = (
    Vec<PluginLibrary>,
    Vec<ExecutorRoute>,
    Vec<NotifierSubscription>,
);

pub(super) fn plugin_config(
    plugins: serde_json::Value,
    executors: serde_json::Value,
    notifiers: serde_json::Value,
) -> Result<PluginSettings, ConfigError> {
    fn parse<T: serde::de::DeserializeOwned>(
        key: &'static str,
        value: serde_json::Value,
    ) -> Result<T, ConfigError> {
        serde_json::from_value(value).map_err(|err| ConfigError::Invalid {
            key,
            message: err.to_string(),
        })
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Route {
        #[serde(rename = "match")]
        pattern: String,
        executor: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Subscription {
        notifier: String,
        #[serde(rename = "match", default)]
        pattern: String,
        events: Option<Vec<fastlane_sdk::NotificationEvent>>,
        #[serde(default)]
        target: serde_json::Value,
        #[serde(default)]
        retries: u32,
    }
    let plugins: Vec<PluginLibrary> = parse("PLUGINS", plugins)?;
    let routes = parse::<Vec<Route>>("EXECUTORS", executors)?
        .into_iter()
        .map(|route| {
            Ok(ExecutorRoute {
                pattern: task_pattern("EXECUTORS", &route.pattern)?,
                executor: route.executor,
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    let subscriptions = parse::<Vec<Subscription>>("NOTIFIERS", notifiers)?
        .into_iter()
        .map(|sub| {
            use fastlane_sdk::NotificationEvent::*;
            Ok(NotifierSubscription {
                pattern: task_pattern("NOTIFIERS", &sub.pattern)?,
                notifier: sub.notifier,
                events: sub
                    .events
                    .unwrap_or_else(|| vec![Starts, Succeeds, Fails, Finishes]),
                target: sub.target,
                retries: sub.retries.min(100),
            })
        })
        .collect::<Result<_, ConfigError>>()?;
    Ok((plugins, routes, subscriptions))
}
