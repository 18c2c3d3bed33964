//! The OpenAPI document checked by outside tools: it is valid OpenAPI, and
//! Schemathesis, generating requests from it against a live server, finds no
//! 5xx and no response that breaks its schema. Both tools come from PyPI
//! (`scripts/test.sh` installs them).

use std::process::Command;

use fastlane_tests::Server;

fn document() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/fastlane.json")
}

#[test]
fn the_committed_document_is_valid_openapi() {
    let output = Command::new("openapi-spec-validator")
        .arg(document())
        .output()
        .expect("openapi-spec-validator is installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains(": OK"),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_response_off_schema() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("schemathesis")
            .args(["run", &document().to_string_lossy(), "--url", &base])
            // Every check but one: bodies the schema cannot describe as
            // invalid (an unclosed quote in `command`) are refused on purpose.
            .args(["--checks", "all"])
            .args(["--exclude-checks", "positive_data_acceptance"])
            // Valid and invalid data (the request schema says what the
            // server refuses: negative data must get a 4xx), and the
            // stateful phase, which follows links between operations
            // (inferred from the schemas: createJob's taskId and jobId
            // feed getTask, getJob, stopJob, retryJob, …).
            .args(["--mode", "all"])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--max-examples", "25", "--seed", "20261123"])
            .env("NO_COLOR", "1")
            .output()
    })
    .await?
    .expect("schemathesis is installed (scripts/test.sh installs it)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    Ok(())
}

#[test]
fn redocly_finds_no_error_under_its_recommended_rules() {
    let output = Command::new("redocly")
        .args(["lint", "--format=stylish"])
        .arg(document())
        .env("REDOCLY_TELEMETRY", "off")
        .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true")
        .output()
        .expect("redocly is installed (scripts/test.sh installs @redocly/cli from npm)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}");
    assert!(!report.contains(" error "), "{report}");
    // Examples that contradict their own schemas mislead generated clients.
    assert!(!report.contains("no-invalid-schema-examples"), "{report}");
}
