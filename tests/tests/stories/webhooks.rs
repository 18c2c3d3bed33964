//! Webhooks reach a real HTTP receiver on loopback: the right events, once
//! each, with the documented payload, retried when the receiver fails, and
//! every attempt visible on the execution. The receivers are on loopback,
//! so these servers allow the local network (`LOCAL`).

use std::time::{Duration, Instant};

use fastlane_tests::receiver::{Received, Receiver};
use fastlane_tests::{Server, image};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

/// Lets webhooks call the loopback receivers.
const LOCAL: (&str, &str) = ("WEBHOOKS_ALLOW_LOCAL_NETWORK", "true");

async fn wait_received(receiver: &Receiver, count: usize) -> Vec<Received> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let received = receiver.received();
        if received.len() >= count || Instant::now() > deadline {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hook(receiver: &Receiver, name: &str) -> Value {
    json!({"url": format!("{}/{name}", receiver.url), "headers": {"X-Team": "core"}})
}

#[tokio::test]
async fn a_successful_job_calls_its_starts_succeeds_and_finishes_hooks_once_each()
-> anyhow::Result<()> {
    let secret = "s3cr3t";
    let server = Server::start(&[LOCAL, ("WEBHOOKS_SIGNING_SECRET", secret)]).await?;
    let receiver = Receiver::start(vec![200]).await?;
    let created = server
        .submit(
            "hooks-ok",
            json!({
                "image": image(), "command": "echo hooked", "metadata": {"ticket": 42},
                "envs": {"API_KEY": "hunter2"},
                "webhooks": {
                    "starts": [hook(&receiver, "starts")],
                    "succeeds": [hook(&receiver, "succeeds")],
                    "fails": [hook(&receiver, "fails")],
                    "finishes": [hook(&receiver, "finishes")]
                }
            }),
        )
        .await?;
    server
        .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    wait_received(&receiver, 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // nothing more may come
    let received = receiver.received();
    let mut paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/finishes", "/starts", "/succeeds"]);

    let finishes = received
        .iter()
        .find(|r| r.path == "/finishes")
        .expect("finishes");
    assert_eq!(finishes.method, "POST");
    assert_eq!(finishes.header("content-type"), Some("application/json"));
    assert_eq!(finishes.header("x-team"), Some("core"));
    assert_eq!(finishes.header("fastlane-event"), Some("finishes"));
    let body = finishes.json();
    assert_eq!(body["executionId"], created["executionId"]);
    assert_eq!(body["job_id"], created["jobId"]);
    assert_eq!(body["jobUrl"], created["jobUrl"]);
    assert_eq!(body["status"], "done");
    assert_eq!(body["exitCode"], 0);
    assert_eq!(body["log"], "hooked\n");
    assert_eq!(body["metadata"]["custom"]["ticket"], 42);
    assert!(!String::from_utf8_lossy(&finishes.body).contains("hunter2"));

    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(&finishes.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        finishes.header("fastlane-signature"),
        Some(expected.as_str())
    );

    // Each call is recorded once the receiver has answered: wait for all.
    let (execution, dispatch) = server
        .wait_dispatches(
            created["executionUrl"].as_str().expect("url"),
            "webhookDispatch",
            3,
        )
        .await?;
    assert_eq!(dispatch.len(), 3, "{execution}");
    assert!(
        dispatch
            .iter()
            .all(|d| d["statusCode"] == 200 && d["error"].is_null())
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_job_calls_fails_and_finishes_and_a_timeout_only_finishes() -> anyhow::Result<()>
{
    let server = Server::start(&[LOCAL, ("STOP_GRACE_SECONDS", "1")]).await?;
    let receiver = Receiver::start(vec![200]).await?;
    let hooks = |tag: &str| {
        json!({
            "succeeds": [hook(&receiver, &format!("{tag}-succeeds"))],
            "fails": [hook(&receiver, &format!("{tag}-fails"))],
            "finishes": [hook(&receiver, &format!("{tag}-finishes"))]
        })
    };
    let failing = server
        .submit(
            "hooks-fail",
            json!({"image": image(), "command": "sh -c 'exit 4'", "webhooks": hooks("failed")}),
        )
        .await?;
    let slow = server
        .submit(
            "hooks-timeout",
            json!({"image": image(), "command": "sleep 30", "timeout": 1, "webhooks": hooks("timedout")}),
        )
        .await?;
    for created in [&failing, &slow] {
        server
            .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
            .await?;
    }
    wait_received(&receiver, 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = receiver.received();
    let mut paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["/failed-fails", "/failed-finishes", "/timedout-finishes"]
    );
    let timeout = received
        .iter()
        .find(|r| r.path == "/timedout-finishes")
        .expect("timeout hook");
    let body = timeout.json();
    assert_eq!(body["status"], "timedout");
    assert!(body["exitCode"].is_null());
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out")
    );
    let failed = received
        .iter()
        .find(|r| r.path == "/failed-fails")
        .expect("fails hook");
    assert_eq!(failed.json()["exitCode"], 4);
    Ok(())
}

#[tokio::test]
async fn a_receiver_answering_500_gets_retries_plus_one_attempts_all_recorded() -> anyhow::Result<()>
{
    let server = Server::start(&[
        LOCAL,
        ("WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS", "200"),
        ("WEBHOOKS_EXPONENTIAL_BACKOFF_FACTOR", "2"),
    ])
    .await?;
    let receiver = Receiver::start(vec![500]).await?;
    let created = server
        .submit(
            "hooks-500",
            json!({"image": image(), "command": "true", "webhooks": {"finishes": [
                {"url": format!("{}/flaky", receiver.url), "retries": 2, "method": "PUT"}
            ]}}),
        )
        .await?;
    let url = created["executionUrl"].as_str().expect("url");
    server.wait_finished(url, LIMIT).await?;
    let received = wait_received(&receiver, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 3, "{received:?}");
    assert!(received.iter().all(|r| r.method == "PUT"));

    let (execution, dispatch) = server.wait_dispatches(url, "webhookDispatch", 3).await?;
    assert_eq!(dispatch.len(), 3, "{execution}");
    let attempts: Vec<&Value> = dispatch.iter().map(|d| &d["attempt"]).collect();
    assert_eq!(attempts, [&json!(1), &json!(2), &json!(3)]);
    assert!(
        dispatch
            .iter()
            .all(|d| d["statusCode"] == 500 && d["error"].is_string())
    );
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_recovers_gets_the_notification() -> anyhow::Result<()> {
    let server = Server::start(&[LOCAL, ("WEBHOOKS_EXPONENTIAL_BACKOFF_MIN_MS", "200")]).await?;
    let receiver = Receiver::start(vec![503, 503, 200]).await?;
    let created = server
        .submit(
            "hooks-recover",
            json!({"image": image(), "command": "true", "webhooks": {"succeeds": [
                {"url": format!("{}/recovering", receiver.url), "retries": 5}
            ]}}),
        )
        .await?;
    server
        .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
        .await?;
    wait_received(&receiver, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 3, "stops once delivered");
    Ok(())
}
