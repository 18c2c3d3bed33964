//! # fastlane-local-plugin
//!
//! An example of a fastlane plugin written outside the fastlane repository
//! and loaded from a dynamic library:
//!
//! - [`LocalExecutor`] (`local`) runs an execution's command as a process on
//!   the server's machine: useful where no container engine runs. The image
//!   is ignored. It is only used when the operator loads this library and
//!   routes tasks to it (`EXECUTORS`).
//! - [`FileNotifier`] (`file-events`) appends one JSON line per notification
//!   to a file.
//!
//! Load it with
//!
//! ```toml
//! PLUGINS = [{path = "/opt/fastlane/plugins/libfastlane_local_plugin.so", config = {workdir = "/var/lib/fastlane/local", events_file = "/var/log/fastlane/events.jsonl"}}]
//! EXECUTORS = [{match = "^local-", executor = "local"}]
//! NOTIFIERS = [{notifier = "file-events", match = ""}]
//! ```

mod executor;
mod notifier;

pub use executor::{LocalExecutor, LocalExecutorFactory};
pub use notifier::{FileNotifier, FileNotifierFactory};

use fastlane_sdk::{PluginError, Registry};

/// Registers this library's plugins.
pub fn register(registry: &mut Registry) -> Result<(), PluginError> {
    registry.register_executor(Box::new(LocalExecutorFactory))?;
    registry.register_notifier(Box::new(FileNotifierFactory))?;
    Ok(())
}

fastlane_sdk::declare_plugin!(register);
