//! Generated clients work: the README quick start through the Python client
//! that openapi-python-client generates from the committed document
//! (`scripts/test.sh` generates it into `target/python-client`).

use std::process::Command;

use fastlane_tests::{Server, image};

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
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "done 0\nit works\n"
    );
    Ok(())
}
