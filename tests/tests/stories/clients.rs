//! Generated clients work: the README quick start through the Python client
//! that openapi-python-client generates from the committed document
//! (`scripts/test.sh` generates it into `target/python-client`), and through
//! the Rust client progenitor generates from it (`fastlane-client`, whose
//! `fastlane-quickstart` binary the workspace build puts next to `fastlane`).

use std::process::Command;

use anyhow::Context;
use fastlane_tests::{Server, binary, image};

#[tokio::test]
async fn the_generated_python_client_runs_the_quick_start() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let client = std::env::var("FASTLANE_PYTHON_CLIENT").unwrap_or_else(|_| {
        manifest
            .join("../target/python-client")
            .display()
            .to_string()
    });
    let script = manifest.join("python_quickstart.py");
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(base)
            .arg(image())
            .env("PYTHONPATH", client)
            .output()
    })
    .await??;
    assert_ran_the_quick_start(&output);
    Ok(())
}

#[tokio::test]
async fn the_generated_rust_client_runs_the_quick_start() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let quickstart = binary().with_file_name("fastlane-quickstart");
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&quickstart)
            .arg(base)
            .arg(image())
            .output()
            .with_context(|| {
                format!(
                    "running {} (built by `cargo build --workspace --all-targets`)",
                    quickstart.display()
                )
            })
    })
    .await??;
    assert_ran_the_quick_start(&output);
    Ok(())
}

/// The quick start ended well: the job is `done`, exit code 0, and its
/// stdout was read back.
fn assert_ran_the_quick_start(output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "done 0\nit works\n"
    );
}
