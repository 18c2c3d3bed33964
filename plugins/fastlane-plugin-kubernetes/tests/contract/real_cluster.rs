//! The same story on a real cluster: the compliance kit, then a timeout,
//! a stop and a wait from a second executor (a restarted fastlane). It
//! needs a cluster, so it is ignored unless asked for:
//!
//! ```sh
//! FASTLANE_TEST_KUBECONFIG=~/.kube/config FASTLANE_TEST_KUBE_NAMESPACE=fastlane-test \
//!   cargo nextest run -p fastlane-plugin-kubernetes --run-ignored only
//! ```
//!
//! The namespace must exist and the kubeconfig's user must be allowed what
//! `deploy/kubernetes/rbac.yaml` grants fastlane there; the image is
//! `FASTLANE_TEST_IMAGE` (default `busybox`, pulled by the cluster).

use std::time::Duration;

use fastlane_sdk::ErrorKind;
use fastlane_sdk::testing::{check_executor, spec, start};
use serde_json::json;

use super::{executor, subject, wait};

#[tokio::test]
#[ignore = "needs a real cluster: set FASTLANE_TEST_KUBECONFIG and run the ignored tests"]
async fn on_a_real_cluster_runs_exit_output_timeout_stop_and_adoption() {
    let Ok(kubeconfig) = std::env::var("FASTLANE_TEST_KUBECONFIG") else {
        panic!("FASTLANE_TEST_KUBECONFIG must name a kubeconfig to run this test");
    };
    let namespace =
        std::env::var("FASTLANE_TEST_KUBE_NAMESPACE").unwrap_or_else(|_| "fastlane-test".into());
    let config = json!([{"name": "real", "kubeconfig": kubeconfig, "namespace": namespace,
                         "ttlSecondsAfterFinished": 300, "imagePullTimeoutSeconds": 300}]);
    check_executor(&subject(config.clone())).await;

    let executor = executor(config.clone());
    let timed = fastlane_sdk::ExecutionSpec {
        timeout: Some(Duration::from_secs(5)),
        ..spec(&subject(config.clone()), "sleep 120")
    };
    let handle = start(&executor, &timed).await;
    let err = wait(&executor, &handle).await.expect_err("timed out");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");

    let stopped = spec(&subject(config.clone()), "sleep 300");
    let handle = start(&executor, &stopped).await;
    executor
        .stop(&handle, Duration::from_secs(2))
        .await
        .expect("stopped");
    assert_ne!(wait(&executor, &handle).await.expect("ended").code, 0);

    let adopted = spec(&subject(config.clone()), "sleep 3; exit 7");
    let handle = start(&executor, &adopted).await;
    drop(executor);
    let restarted = super::executor(config);
    assert_eq!(wait(&restarted, &handle).await.expect("exited").code, 7);
}
