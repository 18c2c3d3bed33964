//! Where plugins come from: the built-in ones, registered in this one
//! place, each behind a Cargo feature; and the libraries `PLUGINS` names,
//! loaded at start-up by `fastlane-loader`.
//!
//! A built-in plugin compiled out still has a name here, so that using it
//! says which feature to enable instead of "unknown": its executor and
//! error handler refuse to be built, its notifier fails every delivery.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::error;

use fastlane_sdk::{
    Delivery, DeliveryReport, ErrorHandler, ErrorHandlerFactory, Executor, ExecutorFactory,
    Notifier, NotifierFactory, PluginError, Registry,
};

use crate::config::PluginLibrary;

/// Stands in for a plugin whose feature was not compiled in.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    all(
        feature = "plugin-docker",
        feature = "plugin-email",
        feature = "plugin-kubernetes",
        feature = "plugin-sentry",
        feature = "plugin-webhook"
    ),
    allow(dead_code)
)]
struct Missing {
    what: &'static str,
    kind: &'static str,
    feature: &'static str,
}

impl Missing {
    fn error(&self) -> PluginError {
        PluginError::invalid_config(format!(
            "this fastlane was built without the {:?} {}; rebuild it with `--features {}`",
            self.kind, self.what, self.feature
        ))
    }
}

impl ExecutorFactory for Missing {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn build(&self, _config: serde_json::Value) -> Result<Arc<dyn Executor>, PluginError> {
        Err(self.error())
    }
}

impl ErrorHandlerFactory for Missing {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn build(&self, _config: serde_json::Value) -> Result<Arc<dyn ErrorHandler>, PluginError> {
        Err(self.error())
    }
}

impl NotifierFactory for Missing {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn build(&self, _config: serde_json::Value) -> Result<Arc<dyn Notifier>, PluginError> {
        Ok(Arc::new(*self))
    }
}

#[async_trait]
impl Notifier for Missing {
    fn name(&self) -> &str {
        self.kind
    }

    async fn deliver(&self, _delivery: &Delivery) -> Result<DeliveryReport, PluginError> {
        Err(PluginError::permanent(self.error().message()))
    }
}

/// Every built-in plugin this binary was compiled with (and a stand-in for
/// each one it was not).
pub fn builtin() -> Result<Registry, PluginError> {
    let mut registry = Registry::new();
    #[cfg(feature = "plugin-docker")]
    fastlane_plugin_docker::register(&mut registry)?;
    #[cfg(not(feature = "plugin-docker"))]
    registry.register_executor(Box::new(Missing {
        what: "executor",
        kind: "docker",
        feature: "plugin-docker",
    }))?;
    #[cfg(feature = "plugin-kubernetes")]
    fastlane_plugin_kubernetes::register(&mut registry)?;
    #[cfg(not(feature = "plugin-kubernetes"))]
    registry.register_executor(Box::new(Missing {
        what: "executor",
        kind: "kubernetes",
        feature: "plugin-kubernetes",
    }))?;
    #[cfg(feature = "plugin-email")]
    fastlane_plugin_email::register(&mut registry)?;
    #[cfg(not(feature = "plugin-email"))]
    registry.register_notifier(Box::new(Missing {
        what: "notifier",
        kind: "email",
        feature: "plugin-email",
    }))?;
    #[cfg(feature = "plugin-webhook")]
    fastlane_plugin_webhook::register(&mut registry)?;
    #[cfg(not(feature = "plugin-webhook"))]
    registry.register_notifier(Box::new(Missing {
        what: "notifier",
        kind: "webhook",
        feature: "plugin-webhook",
    }))?;
    #[cfg(feature = "plugin-sentry")]
    fastlane_plugin_sentry::register(&mut registry)?;
    #[cfg(not(feature = "plugin-sentry"))]
    registry.register_error_handler(Box::new(Missing {
        what: "error handler",
        kind: "sentry",
        feature: "plugin-sentry",
    }))?;
    Ok(registry)
}

/// A `PLUGINS` library after start-up: what it registered, or why not.
#[derive(Debug, Clone)]
pub struct LibraryStatus {
    /// The library as configured.
    pub library: PluginLibrary,
    /// What it registered, as `(trait, kind)` pairs, when it loaded.
    pub registered: Vec<(&'static str, &'static str)>,
    /// Why it was refused.
    pub error: Option<String>,
}

/// Loads every `PLUGINS` library into `registry`. A library that cannot be
/// loaded is logged and left out; the server starts with the others.
pub fn load_libraries(registry: &mut Registry, libraries: &[PluginLibrary]) -> Vec<LibraryStatus> {
    libraries
        .iter()
        .map(
            |library| match fastlane_loader::load(&library.path, registry) {
                Ok(loaded) => LibraryStatus {
                    library: library.clone(),
                    registered: loaded.registered,
                    error: None,
                },
                Err(err) => {
                    error!(path = %library.path.display(), error = %err, "plugin library refused");
                    LibraryStatus {
                        library: library.clone(),
                        registered: Vec::new(),
                        error: Some(err.to_string()),
                    }
                }
            },
        )
        .collect()
}

/// The configuration a plugin of `kind` gets: that of the library that
/// registered it.
pub fn library_config<'a>(
    libraries: &'a [LibraryStatus],
    what: &str,
    kind: &str,
) -> Option<&'a serde_json::Value> {
    libraries
        .iter()
        .find(|l| l.registered.iter().any(|(w, k)| *w == what && *k == kind))
        .map(|l| &l.library.config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiled_out_plugin_names_the_feature_that_enables_it() {
        let missing = Missing {
            what: "executor",
            kind: "docker",
            feature: "plugin-docker",
        };
        let err = ExecutorFactory::build(&missing, serde_json::Value::Null).expect_err("missing");
        assert_eq!(
            err.message(),
            "this fastlane was built without the \"docker\" executor; \
             rebuild it with `--features plugin-docker`"
        );
    }

    #[tokio::test]
    async fn a_library_that_cannot_be_opened_is_left_out_and_the_rest_load() {
        let mut registry = builtin().expect("built-ins");
        let statuses = load_libraries(
            &mut registry,
            &[PluginLibrary {
                path: "/nonexistent/libplugin.so".into(),
                config: serde_json::Value::Null,
            }],
        );
        assert!(
            statuses[0]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("/nonexistent/libplugin.so"),
            "{statuses:?}"
        );
        assert!(registry.executor_kinds().contains(&"docker"));
    }
}
