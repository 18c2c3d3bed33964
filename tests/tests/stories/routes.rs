//! The HTTP surface a client relies on: trailing slashes, JSON errors,
//! pagination, task details, health and status, and the OpenAPI document.

use std::time::Duration;

use fastlane_tests::{Server, binary, image};
use serde_json::{Value, json};

#[tokio::test]
async fn routes_answer_with_and_without_a_trailing_slash_and_errors_are_json() -> anyhow::Result<()>
{
    let server = Server::start(&[]).await?;
    for path in [
        "/healthcheck",
        "/healthcheck/",
        "/",
        "/status",
        "/status/",
        "/tasks",
        "/tasks/",
    ] {
        let (status, _) = server.get(path).await?;
        assert_eq!(status, 200, "{path}");
    }
    let response = server
        .client()
        .get(server.url("/no/such/route"))
        .send()
        .await?;
    assert_eq!(response.status(), 404);
    assert!(
        response.headers()["content-type"]
            .to_str()?
            .starts_with("application/json")
    );
    let body: Value = response.json().await?;
    assert!(
        body["error"].is_string() && body["operation"].is_string(),
        "{body}"
    );

    let response = server.client().delete(server.url("/tasks/")).send().await?;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    let other = server
        .client()
        .delete(server.url("/tasks/t/jobs/j"))
        .send()
        .await?;
    assert_eq!(other.headers()["allow"], "GET, PUT");
    let body: Value = response.json().await?;
    assert!(body["error"].is_string(), "{body}");

    let (status, body) = server.get("/tasks/nope/").await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("Task not found."))
    );
    let (status, body) = server.get("/tasks/nope/jobs/nope/stdout").await?;
    assert_eq!(status, 404);
    assert_eq!(body["operation"], "retrieve_execution_details");
    Ok(())
}

#[tokio::test]
async fn tasks_are_listed_a_page_at_a_time() -> anyhow::Result<()> {
    let server = Server::start(&[("PAGINATION_PER_PAGE", "2")]).await?;
    for task in ["alpha", "beta", "gamma"] {
        server
            .submit(task, json!({"image": image(), "command": "echo hi"}))
            .await?;
    }
    let (status, page) = server.get("/tasks/?page=2").await?;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 3);
    assert_eq!(page["pages"], 2);
    assert_eq!(page["perPage"], 2);
    assert_eq!(page["hasPrev"], true);
    assert_eq!(page["hasNext"], false);
    assert_eq!(page["prevUrl"], server.url("/tasks/?page=1"));
    assert!(page["nextUrl"].is_null());
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["taskId"], "gamma");
    assert_eq!(items[0]["jobsCount"], 1);
    assert_eq!(items[0]["url"], server.url("/tasks/gamma/"));

    for bad in ["0", "-1", "abc"] {
        let (status, body) = server.get(&format!("/tasks/?page={bad}")).await?;
        assert_eq!(status, 400, "page={bad}");
        // The original's words, then the range.
        assert!(
            body["error"].as_str().is_some_and(
                |e| e.starts_with("Tasks pagination page param should be a positive integer")
            ),
            "{body}"
        );
    }
    let (status, _) = server.get("/tasks/?page=3").await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn task_and_job_details_link_everything_absolutely() -> anyhow::Result<()> {
    let server = Server::start(&[("PUBLIC_BASE_URL", "https://fastlane.example.com/")]).await?;
    let created = server
        .submit(
            "details",
            json!({"image": image(), "command": "echo hi", "metadata": {"team": "core"}, "retries": 0}),
        )
        .await?;
    let job_id = created["jobId"].as_str().expect("jobId");
    assert_eq!(
        created["jobUrl"],
        format!("https://fastlane.example.com/tasks/details/jobs/{job_id}/")
    );
    let (status, task) = server.get("/tasks/details").await?;
    assert_eq!(status, 200);
    assert_eq!(task["taskId"], "details");
    assert_eq!(task["jobs"][0]["id"], job_id);

    let (status, job) = server.get(&format!("/tasks/details/jobs/{job_id}")).await?;
    assert_eq!(status, 200);
    assert_eq!(
        job["task"]["url"],
        "https://fastlane.example.com/tasks/details/"
    );
    assert_eq!(job["job"]["executionCount"], 1);
    assert_eq!(job["job"]["metadata"]["custom"]["team"], "core");
    assert_eq!(job["job"]["metadata"]["timeout"], 1800);
    assert_eq!(
        job["job"]["executions"][0]["executionId"],
        created["executionId"]
    );
    Ok(())
}

#[tokio::test]
async fn status_shows_the_hosts_the_queue_and_the_counts() -> anyhow::Result<()> {
    let server = Server::start(&[("STOP_GRACE_SECONDS", "0")]).await?;
    // Long enough to be running whatever the machine's load; stopped below.
    let created = server
        .submit("status", json!({"image": image(), "command": "sleep 60"}))
        .await?;
    let url = created["executionUrl"].as_str().expect("url");
    let running = server
        .wait_for(url, Duration::from_secs(60), |e| e["status"] == "running")
        .await?;
    let container = running["metadata"]["container_id"]
        .as_str()
        .expect("container id");

    // `/status` lists containers from the host's event stream: the start
    // event may come a moment after the run shows `running`.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let (status, body) = server.get("/status").await?;
        let listed = body["containers"]["running"]
            .as_array()
            .is_some_and(|running| running.iter().any(|c| c["id"] == container));
        if listed || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200);
    assert_eq!(body["tasks"]["count"], 1);
    assert_eq!(body["jobs"]["count"], 1);
    assert_eq!(body["hosts"][0]["available"], true, "{body}");
    assert_eq!(body["fastlane"]["executor"], "docker");
    let ours: Vec<&Value> = body["containers"]["running"]
        .as_array()
        .expect("running")
        .iter()
        .filter(|c| c["executionId"] == created["executionId"])
        .collect();
    assert_eq!(ours.len(), 1, "{body}");
    assert_eq!(ours[0]["id"], container);

    let (status, health) = server.get("/healthcheck").await?;
    assert_eq!(status, 200);
    assert_eq!(health, json!({"store": true, "queue": true, "errors": []}));
    let stop = server
        .client()
        .post(format!("{}stop", created["jobUrl"].as_str().expect("url")))
        .send()
        .await?;
    assert_eq!(stop.status(), 200);
    Ok(())
}

#[tokio::test]
async fn the_committed_openapi_document_is_what_the_server_serves() -> anyhow::Result<()> {
    let committed_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/fastlane.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&committed_path)?)?;

    let server = Server::start(&[]).await?;
    let (status, served) = server.get("/openapi.json").await?;
    assert_eq!(status, 200);
    let printed = std::process::Command::new(binary())
        .arg("openapi")
        .output()?;
    let printed: Value = serde_json::from_slice(&printed.stdout)?;

    assert!(
        served == committed && printed == committed,
        "openapi/fastlane.json is stale: regenerate it with `scripts/openapi.sh`"
    );
    // The Rust client builds from its own copy (its build reads nothing
    // outside its crate): the same document, byte for byte.
    let client_copy = committed_path.with_file_name("../fastlane-client/openapi.json");
    assert!(
        std::fs::read(&client_copy)? == std::fs::read(&committed_path)?,
        "fastlane-client/openapi.json differs from openapi/fastlane.json: run `scripts/openapi.sh`"
    );
    for (path, item) in committed["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            assert!(
                operation["operationId"].is_string(),
                "{method} {path} has no operationId"
            );
        }
    }

    let docs = server.client().get(server.url("/docs")).send().await?;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await?.contains("swagger"));
    Ok(())
}

#[tokio::test]
async fn listed_origins_get_cors_headers_and_clients_get_gzip() -> anyhow::Result<()> {
    let server = Server::start(&[("CORS_ORIGINS", "http://ui.example.com")]).await?;
    let response = server
        .client()
        .get(server.url("/tasks/"))
        .header("origin", "http://ui.example.com")
        .header("accept-encoding", "gzip")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://ui.example.com"
    );
    assert_eq!(response.headers()["content-encoding"], "gzip");

    let response = server
        .client()
        .get(server.url("/tasks/"))
        .header("origin", "http://other.example.com")
        .send()
        .await?;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    Ok(())
}

#[tokio::test]
async fn with_basic_auth_configured_every_route_asks_for_credentials() -> anyhow::Result<()> {
    let server = Server::start(&[
        ("BASIC_AUTH_USERNAME", "test"),
        ("BASIC_AUTH_PASSWORD", "auth"),
        ("BASIC_AUTH_REALM", "fastlane"),
    ])
    .await?;
    for path in ["/healthcheck", "/tasks/", "/status"] {
        let response = server.client().get(server.url(path)).send().await?;
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic realm=\"fastlane\""
        );
        let wrong = server
            .client()
            .get(server.url(path))
            .basic_auth("test", Some("nope"))
            .send()
            .await?;
        assert_eq!(wrong.status(), 401, "{path}");
    }
    let response = server
        .client()
        .get(server.url("/tasks/"))
        .header("authorization", "Basic dGVzdDphdXRo")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(())
}
