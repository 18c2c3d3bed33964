//! The SDK's compliance kit, run against the Docker executor on both real
//! engines `scripts/services.sh` starts: Podman's Docker API
//! (`FASTLANE_TEST_DOCKER_UNIX`) and Docker Engine
//! (`FASTLANE_TEST_DOCKERD_UNIX`).

use fastlane_plugin_docker::DockerExecutorFactory;
use fastlane_sdk::testing::{ExecutorSubject, check_executor};
use serde_json::json;

async fn check_on(engine: String) {
    check_executor(&ExecutorSubject {
        factory: &DockerExecutorFactory,
        config: json!({"farms": [{"match": "", "hosts": [engine]}]}),
        invalid_config: json!({"farms": [{"match": "(", "hosts": ["a:1"]}]}),
        image: std::env::var("FASTLANE_TEST_IMAGE").unwrap_or_else(|_| "busybox".to_owned()),
        task_id: "compliance".to_owned(),
        merged_streams: false,
    })
    .await;
}

#[tokio::test]
async fn the_docker_executor_keeps_the_executor_contract_on_podman() {
    check_on(
        std::env::var("FASTLANE_TEST_DOCKER_UNIX")
            .unwrap_or_else(|_| "unix:///run/fastlane/podman.sock".to_owned()),
    )
    .await;
}

#[tokio::test]
async fn the_docker_executor_keeps_the_executor_contract_on_docker_engine() {
    check_on(
        std::env::var("FASTLANE_TEST_DOCKERD_UNIX")
            .unwrap_or_else(|_| "unix:///run/fastlane/docker.sock".to_owned()),
    )
    .await;
}
