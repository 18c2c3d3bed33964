//! The job-request schema the server serves is the one it enforces: the
//! document's own example is accepted, and every object the document
//! closes (`additionalProperties: false`) refuses an unknown key with a
//! 400 naming it, leaving nothing behind. (The exhaustive check, requests
//! generated from the committed document against the parser, is the
//! proptest in `fastlane-server/src/api/job_request/generated.rs`.)

use fastlane_tests::{Server, image};
use serde_json::{Value, json};

#[tokio::test]
async fn the_served_request_schema_is_what_the_server_enforces() -> anyhow::Result<()> {
    let server = Server::start(&[]).await?;
    let (status, document) = server.get("/openapi.json").await?;
    assert_eq!(status, 200);
    let schemas = &document["components"]["schemas"];
    let post = &document["paths"]["/tasks/{taskId}"]["post"];
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/JobRequest"
    );

    // Every object of the request is closed.
    for name in [
        "JobRequest",
        "NotifyRequest",
        "WebhooksRequest",
        "WebhookRequest",
        "BackoffRequest",
    ] {
        assert_eq!(
            schemas[name]["additionalProperties"], false,
            "{name} refuses unknown keys"
        );
    }

    // The document's example, with the local image, is accepted.
    let mut example = schemas["JobRequest"]["example"].clone();
    assert!(example.is_object(), "JobRequest has an example");
    example["image"] = json!(image());
    let created = server.submit("schema-example", example).await?;
    let (status, _) = server
        .get(created["jobUrl"].as_str().expect("jobUrl"))
        .await?;
    assert_eq!(status, 200);

    // An unknown key at each level is a 400 naming it.
    let base = json!({"image": image(), "command": "true"});
    let hook = json!({"url": "http://hooks.example.com/x"});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"extra": 1}), "unknown field \"extra\""),
        (
            json!({"notify": {"extra": []}}),
            "notify: unknown key \"extra\"",
        ),
        (
            json!({"webhooks": {"extra": []}}),
            "webhooks: unknown key \"extra\"",
        ),
        (
            json!({"webhooks": {"fails": [{"url": hook["url"], "extra": 1}]}}),
            "webhooks.fails[0]: unknown key \"extra\"",
        ),
        (
            json!({"backoff": {"extra": 1}}),
            "backoff: unknown key \"extra\"",
        ),
    ];
    for (extra, expected) in cases {
        let mut body = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, error) = server.post_raw("schema-closed", body.to_string()).await?;
        let message = error["error"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{body}: {message}");
        assert!(message.contains(expected), "{body}: {message}");
    }
    let (status, _) = server.get("/tasks/schema-closed").await?;
    assert_eq!(status, 404, "nothing was created");
    Ok(())
}
