//! The built-in plugins, registered in this one place. Each sits behind a
//! Cargo feature; an executor compiled out still has a name here, so that
//! configuring it says which feature to enable instead of "unknown".

use std::sync::Arc;

use fastlane_sdk::{Executor, ExecutorFactory, PluginError, Registry};

/// Stands in for an executor whose feature was not compiled in.
#[cfg_attr(feature = "plugin-docker", allow(dead_code))]
struct Missing {
    kind: &'static str,
    feature: &'static str,
}

impl ExecutorFactory for Missing {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn build(&self, _config: serde_json::Value) -> Result<Arc<dyn Executor>, PluginError> {
        Err(PluginError::invalid_config(format!(
            "this fastlane was built without the {:?} executor; rebuild with `--features {}`",
            self.kind, self.feature
        )))
    }
}

/// Every built-in plugin this binary was compiled with.
pub fn builtin() -> Result<Registry, PluginError> {
    let mut registry = Registry::new();
    #[cfg(feature = "plugin-docker")]
    fastlane_plugin_docker::register(&mut registry)?;
    #[cfg(feature = "plugin-email")]
    fastlane_plugin_email::register(&mut registry)?;
    #[cfg(feature = "plugin-sentry")]
    fastlane_plugin_sentry::register(&mut registry)?;
    #[cfg(feature = "plugin-webhook")]
    fastlane_plugin_webhook::register(&mut registry)?;
    #[cfg(not(feature = "plugin-docker"))]
    registry.register_executor(Box::new(Missing {
        kind: "docker",
        feature: "plugin-docker",
    }))?;
    Ok(registry)
}
