//! The SDK's compliance kit, run on the remote executor as the server uses
//! it: the built library loaded by fastlane's loader (so reqwest and tokio
//! run inside the library, on its own runtime), forwarding to a real
//! fastlane server that runs the commands in containers on the test engine.

use std::path::PathBuf;

use anyhow::Context;
use fastlane_sdk::Registry;
use fastlane_sdk::testing::{ExecutorSubject, check_executor};
use fastlane_tests::Server;
use serde_json::json;

/// The library Cargo built with this test: in the test binary's own
/// folder (`target/<profile>/deps/`), fresh whenever the test is.
fn library() -> anyhow::Result<PathBuf> {
    let test = std::env::current_exe()?;
    let deps = test.parent().context("the test binary has no folder")?;
    Ok(deps.join("libfastlane_remote_executor.so"))
}

#[tokio::test]
async fn the_loaded_remote_executor_keeps_the_contract() -> anyhow::Result<()> {
    let remote = Server::start(&[]).await?;
    let mut registry = Registry::new();
    fastlane_loader::load(&library()?, &mut registry)?;
    let factory = registry.executor_factory("remote")?;
    check_executor(&ExecutorSubject {
        factory,
        config: json!({"url": remote.base}),
        invalid_config: json!({"url": remote.base, "maxRunnning": 3}),
        image: fastlane_tests::image(),
        task_id: "compliance".into(),
        merged_streams: false,
    })
    .await;
    Ok(())
}
