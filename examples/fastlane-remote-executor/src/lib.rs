//! # fastlane-remote-executor
//!
//! An example of a fastlane plugin that does its own network I/O from
//! inside a dynamic library: the `remote` executor runs each execution on
//! another fastlane server, through that server's HTTP API.
//!
//! - **start** submits a job of one run (`retries: 0`: this server keeps
//!   its own retries) to `POST /tasks/<task id>` on the remote server, with
//!   the execution id as its `Idempotency-Key`, so a start repeated after a
//!   crash finds the job the first one made;
//! - **follow** reads the remote execution's live log over its WebSocket
//!   (`fastlane_client::follow`, which resumes after a dropped connection);
//! - **wait** follows the same socket to the remote execution's end;
//! - **output** reads the remote `…/stdout` and `…/stderr`, up to the limit;
//! - **stop** stops the remote execution.
//!
//! Everything the executor needs to find a run again is in its
//! [`RunHandle`](fastlane_sdk::RunHandle) (`<task>/<job>/<execution>` on the
//! remote server), which the server stores: after a restart, runs are
//! adopted where they left off.
//!
//! reqwest, hyper and tokio-tungstenite run on the tokio runtime the SDK
//! starts for the library; nothing here knows it is in a library.
//!
//! Load it with
//!
//! ```toml
//! PLUGINS = [{path = "/opt/fastlane/plugins/libfastlane_remote_executor.so", config = {url = "https://fastlane-b.internal:10000", token = "…"}}]
//! EXECUTORS = [{match = "^gpu-", executor = "remote"}]
//! ```

mod client;
mod config;
mod executor;

pub use config::RemoteConfig;
pub use executor::{RemoteExecutor, RemoteExecutorFactory};

use fastlane_sdk::{PluginError, Registry};

/// Registers this library's executor.
pub fn register(registry: &mut Registry) -> Result<(), PluginError> {
    registry.register_executor(Box::new(RemoteExecutorFactory))
}

fastlane_sdk::declare_plugin!(register);
