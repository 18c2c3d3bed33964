//! The [`Registry`]: the explicit list of plugin factories a server knows.
//!
//! Nothing registers itself. The server calls each plugin crate's
//! `register(&mut Registry)` in one place, so what a binary contains can be
//! read in one file; a name registered twice is an error, not a silent
//! override.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::PluginError;
use crate::error_handler::{ErrorHandler, ErrorHandlerFactory};
use crate::executor::{Executor, ExecutorFactory};
use crate::metrics::{MetricsSink, MetricsSinkFactory};
use crate::notifier::{Notifier, NotifierFactory};

/// Factories by kind, one map per trait.
#[derive(Default)]
pub struct Registry {
    pub(crate) executors: BTreeMap<&'static str, Box<dyn ExecutorFactory>>,
    pub(crate) notifiers: BTreeMap<&'static str, Box<dyn NotifierFactory>>,
    pub(crate) error_handlers: BTreeMap<&'static str, Box<dyn ErrorHandlerFactory>>,
    pub(crate) metrics_sinks: BTreeMap<&'static str, Box<dyn MetricsSinkFactory>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("executors", &self.executors.keys().collect::<Vec<_>>())
            .field("notifiers", &self.notifiers.keys().collect::<Vec<_>>())
            .field(
                "error_handlers",
                &self.error_handlers.keys().collect::<Vec<_>>(),
            )
            .field(
                "metrics_sinks",
                &self.metrics_sinks.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn insert<F: ?Sized>(
    what: &str,
    map: &mut BTreeMap<&'static str, Box<F>>,
    kind: &'static str,
    factory: Box<F>,
) -> Result<(), PluginError> {
    if map.contains_key(kind) {
        return Err(PluginError::invalid_config(format!(
            "{what} {kind:?} is registered twice"
        )));
    }
    map.insert(kind, factory);
    Ok(())
}

fn find<'a, F: ?Sized>(
    what: &str,
    map: &'a BTreeMap<&'static str, Box<F>>,
    kind: &str,
) -> Result<&'a F, PluginError> {
    map.get(kind).map(|f| &**f).ok_or_else(|| {
        let known: Vec<_> = map.keys().copied().collect();
        PluginError::invalid_config(format!(
            "no {what} named {kind:?} is registered (known: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
    })
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an executor factory under its [`ExecutorFactory::kind`].
    pub fn register_executor(
        &mut self,
        factory: Box<dyn ExecutorFactory>,
    ) -> Result<(), PluginError> {
        insert("executor", &mut self.executors, factory.kind(), factory)
    }

    /// Adds a notifier factory.
    pub fn register_notifier(
        &mut self,
        factory: Box<dyn NotifierFactory>,
    ) -> Result<(), PluginError> {
        insert("notifier", &mut self.notifiers, factory.kind(), factory)
    }

    /// Adds an error handler factory.
    pub fn register_error_handler(
        &mut self,
        factory: Box<dyn ErrorHandlerFactory>,
    ) -> Result<(), PluginError> {
        insert(
            "error handler",
            &mut self.error_handlers,
            factory.kind(),
            factory,
        )
    }

    /// Adds a metrics sink factory.
    pub fn register_metrics_sink(
        &mut self,
        factory: Box<dyn MetricsSinkFactory>,
    ) -> Result<(), PluginError> {
        insert(
            "metrics sink",
            &mut self.metrics_sinks,
            factory.kind(),
            factory,
        )
    }

    /// The executor factory registered as `kind` (to run the compliance kit
    /// on a library's factory as the server would build it, for example).
    pub fn executor_factory(&self, kind: &str) -> Result<&dyn ExecutorFactory, PluginError> {
        find("executor", &self.executors, kind)
    }

    /// Builds the executor registered as `kind`.
    pub fn build_executor(
        &self,
        kind: &str,
        config: serde_json::Value,
    ) -> Result<Arc<dyn Executor>, PluginError> {
        find("executor", &self.executors, kind)?.build(config)
    }

    /// Builds the notifier registered as `kind`.
    pub fn build_notifier(
        &self,
        kind: &str,
        config: serde_json::Value,
    ) -> Result<Arc<dyn Notifier>, PluginError> {
        find("notifier", &self.notifiers, kind)?.build(config)
    }

    /// Builds the error handler registered as `kind`.
    pub fn build_error_handler(
        &self,
        kind: &str,
        config: serde_json::Value,
    ) -> Result<Arc<dyn ErrorHandler>, PluginError> {
        find("error handler", &self.error_handlers, kind)?.build(config)
    }

    /// Builds the metrics sink registered as `kind`.
    pub fn build_metrics_sink(
        &self,
        kind: &str,
        config: serde_json::Value,
    ) -> Result<Arc<dyn MetricsSink>, PluginError> {
        find("metrics sink", &self.metrics_sinks, kind)?.build(config)
    }

    /// Moves every factory of `other` into this registry, refusing the whole
    /// of `other` if one of its names is already taken here. Returns what
    /// was added, as `(trait, kind)` pairs such as `("executor", "local")`.
    pub fn merge(
        &mut self,
        other: Registry,
    ) -> Result<Vec<(&'static str, &'static str)>, PluginError> {
        let taken = other
            .executors
            .keys()
            .filter(|k| self.executors.contains_key(*k))
            .map(|k| ("executor", *k))
            .chain(
                other
                    .notifiers
                    .keys()
                    .filter(|k| self.notifiers.contains_key(*k))
                    .map(|k| ("notifier", *k)),
            )
            .chain(
                other
                    .error_handlers
                    .keys()
                    .filter(|k| self.error_handlers.contains_key(*k))
                    .map(|k| ("error handler", *k)),
            )
            .chain(
                other
                    .metrics_sinks
                    .keys()
                    .filter(|k| self.metrics_sinks.contains_key(*k))
                    .map(|k| ("metrics sink", *k)),
            )
            .next();
        if let Some((what, kind)) = taken {
            return Err(PluginError::invalid_config(format!(
                "{what} {kind:?} is registered twice"
            )));
        }
        let mut added = Vec::new();
        added.extend(other.executors.keys().map(|k| ("executor", *k)));
        added.extend(other.notifiers.keys().map(|k| ("notifier", *k)));
        added.extend(other.error_handlers.keys().map(|k| ("error handler", *k)));
        added.extend(other.metrics_sinks.keys().map(|k| ("metrics sink", *k)));
        self.executors.extend(other.executors);
        self.notifiers.extend(other.notifiers);
        self.error_handlers.extend(other.error_handlers);
        self.metrics_sinks.extend(other.metrics_sinks);
        Ok(added)
    }

    /// The notifier kinds registered, sorted.
    pub fn notifier_kinds(&self) -> Vec<&'static str> {
        self.notifiers.keys().copied().collect()
    }

    /// The executor kinds registered, sorted.
    pub fn executor_kinds(&self) -> Vec<&'static str> {
        self.executors.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::metrics::Metric;

    #[derive(Debug)]
    struct Null;

    impl MetricsSink for Null {
        fn name(&self) -> &str {
            "null"
        }
        fn record(&self, _: &Metric) {}
    }

    struct NullFactory;

    impl MetricsSinkFactory for NullFactory {
        fn kind(&self) -> &'static str {
            "null"
        }
        fn build(&self, config: serde_json::Value) -> Result<Arc<dyn MetricsSink>, PluginError> {
            if !config.is_null() {
                return Err(PluginError::invalid_config("null takes no configuration"));
            }
            Ok(Arc::new(Null))
        }
    }

    #[test]
    fn a_registered_factory_builds_and_an_unknown_one_is_named() {
        let mut registry = Registry::new();
        registry
            .register_metrics_sink(Box::new(NullFactory))
            .expect("first registration");
        let sink = registry
            .build_metrics_sink("null", serde_json::Value::Null)
            .expect("builds");
        assert_eq!(sink.name(), "null");

        let err = registry
            .build_metrics_sink("prometheus", serde_json::Value::Null)
            .expect_err("unknown kind");
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("\"prometheus\""), "{err}");
        assert!(err.message().contains("known: null"), "{err}");
    }

    #[test]
    fn registering_a_name_twice_is_refused() {
        let mut registry = Registry::new();
        registry
            .register_metrics_sink(Box::new(NullFactory))
            .expect("first registration");
        let err = registry
            .register_metrics_sink(Box::new(NullFactory))
            .expect_err("second registration");
        assert!(err.message().contains("registered twice"));
    }

    #[test]
    fn a_factory_refuses_bad_config() {
        let mut registry = Registry::new();
        registry
            .register_metrics_sink(Box::new(NullFactory))
            .expect("registers");
        let err = registry
            .build_metrics_sink("null", serde_json::json!({"x": 1}))
            .expect_err("config refused");
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    }
}
