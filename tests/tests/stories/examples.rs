//! The examples in `examples/` work against a live server.

use std::process::Command;

use fastlane_tests::{Server, image};

#[tokio::test]
async fn the_quickstart_script_prints_the_jobs_output_and_exit_code() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.sh");
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .arg(base)
            .arg(image())
            .output()
    })
    .await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "it works\n");
    assert!(stderr.contains("status: done"), "{stderr}");
    assert!(stderr.contains("exit code: 0"), "{stderr}");
    Ok(())
}
