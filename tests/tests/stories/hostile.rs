//! Hostile input, as a table: each row is a request someone could send to
//! turn fastlane against its hosts or its users, the status it must get,
//! and what its error must name. After every row nothing was created and
//! the server still answers `/status` and `/healthcheck`.

use fastlane_tests::{Server, image};
use reqwest::Method;
use serde_json::{Value, json};

/// One hostile request.
struct Row {
    /// What it tries.
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    /// The status it must get.
    status: u16,
    /// A word the JSON error must contain (case-insensitive).
    names: &'static str,
}

/// A job that would run now.
fn job() -> Value {
    json!({"image": image(), "command": "echo hi"})
}

/// `job()` with `field` set to `value`.
fn with(field: &str, value: Value) -> Value {
    let mut job = job();
    job[field] = value;
    job
}

/// A POST of `body` to `/tasks/hostile`.
fn submit(name: &'static str, body: Value, status: u16, names: &'static str) -> Row {
    Row {
        name,
        method: Method::POST,
        path: "/tasks/hostile".to_owned(),
        headers: Vec::new(),
        body: Some(body.to_string()),
        status,
        names,
    }
}

/// A request other than a submission.
fn request(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    body: Option<String>,
    status: u16,
    names: &'static str,
) -> Row {
    Row {
        name,
        method,
        path: path.into(),
        headers: Vec::new(),
        body,
        status,
        names,
    }
}

/// `metadata` nested `depth` levels deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!("bottom"), |inner, _| json!({ "a": inner }))
}

fn hooks(count: usize, url: &str) -> Value {
    json!({"finishes": (0..count).map(|_| json!({"url": url})).collect::<Vec<_>>()})
}

fn rows() -> Vec<Row> {
    let mut rows = vec![
        // The body itself.
        submit("a body that is not JSON", json!("{not json"), 400, "JSON"),
        submit(
            "an array instead of an object",
            json!([1, 2]),
            400,
            "object",
        ),
        submit("no image", json!({"command": "echo"}), 400, "image"),
        submit("no command", json!({"image": image()}), 400, "command"),
        submit("an empty image", with("image", json!("")), 400, "image"),
        submit(
            "an image with a space",
            with("image", json!("busybox; rm -rf /")),
            400,
            "image",
        ),
        submit(
            "a command with an unclosed quote",
            with("command", json!("echo 'hi")),
            400,
            "command",
        ),
        submit(
            "a command that is a number",
            with("command", json!(42)),
            400,
            "command",
        ),
        // Fields that would reach the host's privileges.
        submit(
            "privileged",
            with("privileged", json!(true)),
            400,
            "privileged",
        ),
        submit(
            "host binds",
            with("binds", json!(["/:/host"])),
            400,
            "binds",
        ),
        submit(
            "volumes",
            with("volumes", json!({"/host": {}})),
            400,
            "volumes",
        ),
        submit(
            "mounts",
            with("mounts", json!([{"Source": "/"}])),
            400,
            "mounts",
        ),
        submit(
            "a raw host config",
            with("hostConfig", json!({"Privileged": true})),
            400,
            "hostConfig",
        ),
        submit(
            "capabilities",
            with("capAdd", json!(["SYS_ADMIN"])),
            400,
            "capAdd",
        ),
        submit(
            "the host's network",
            with("networkMode", json!("host")),
            400,
            "networkMode",
        ),
        submit(
            "the host's pid namespace",
            with("pidMode", json!("host")),
            400,
            "pidMode",
        ),
        // Sizes and depths.
        submit(
            "metadata 33 levels deep",
            with("metadata", nested(33)),
            400,
            "metadata",
        ),
        submit(
            "metadata 200 levels deep",
            with("metadata", nested(200)),
            400,
            "nested",
        ),
        submit(
            "metadata over 64 KiB",
            with("metadata", json!({"blob": "x".repeat(70 * 1024)})),
            400,
            "metadata",
        ),
        submit(
            "257 envs",
            with(
                "envs",
                (0..257).map(|i| (format!("E{i}"), json!("v"))).collect(),
            ),
            400,
            "envs",
        ),
        submit(
            "an env name with =",
            with("envs", json!({"A=B": "c"})),
            400,
            "envs",
        ),
        submit(
            "an empty env name",
            with("envs", json!({"": "c"})),
            400,
            "envs",
        ),
        submit(
            "an env value that is an object",
            with("envs", json!({"A": {"b": 1}})),
            400,
            "envs",
        ),
        submit(
            "21 hooks for one event",
            with("webhooks", hooks(21, "https://hooks.example.com/x")),
            400,
            "webhooks",
        ),
        submit(
            "51 e-mail addresses",
            with(
                "notify",
                json!({"finishes": (0..51).map(|i| format!("u{i}@example.com")).collect::<Vec<_>>()}),
            ),
            400,
            "notify",
        ),
        submit(
            "a bad e-mail address",
            with("notify", json!({"fails": ["nobody"]})),
            400,
            "notify",
        ),
        // Numbers out of range.
        submit("101 retries", with("retries", json!(101)), 400, "retries"),
        submit(
            "negative retries",
            with("retries", json!(-1)),
            400,
            "retries",
        ),
        submit("a zero timeout", with("timeout", json!(0)), 400, "timeout"),
        submit(
            "a timeout that is text",
            with("timeout", json!("long")),
            400,
            "timeout",
        ),
        submit(
            "an expiration that is text",
            with("expiration", json!("soon")),
            400,
            "expiration",
        ),
        submit(
            "1,024 and more CPUs",
            with("cpuLimit", json!(2048)),
            400,
            "cpuLimit",
        ),
        submit("no CPU at all", with("cpuLimit", json!(0)), 400, "cpuLimit"),
        submit(
            "a terabyte of memory",
            with("memoryLimit", json!("1t")),
            400,
            "memoryLimit",
        ),
        submit(
            "one byte of memory",
            with("memoryLimit", json!(1)),
            400,
            "memoryLimit",
        ),
        submit(
            "maxConcurrent 0",
            with("maxConcurrent", json!(0)),
            400,
            "maxConcurrent",
        ),
        submit(
            "a backoff that shrinks",
            with("backoff", json!({"factor": 0.5})),
            400,
            "backoff",
        ),
        submit(
            "a jitter above 1",
            with("backoff", json!({"jitter": 2})),
            400,
            "backoff",
        ),
        submit(
            "an unknown backoff key",
            with("backoff", json!({"base": 1})),
            400,
            "backoff",
        ),
        // Schedules.
        submit(
            "a delay that is not one",
            with("startIn", json!("whenever")),
            400,
            "startIn",
        ),
        submit(
            "a bad cron expression",
            with("cron", json!("61 * * * *")),
            400,
            "cron",
        ),
        submit(
            "a time zone that is not one",
            {
                let mut job = with("cron", json!("* * * * *"));
                job["cronTimezone"] = json!("Mars/Olympus_Mons");
                job
            },
            400,
            "Mars",
        ),
        submit(
            "two schedules",
            {
                let mut job = with("cron", json!("* * * * *"));
                job["startIn"] = json!("5m");
                job
            },
            400,
            "ONE",
        ),
        submit(
            "a policy that is not one",
            with("concurrencyPolicy", json!("Sometimes")),
            400,
            "concurrencyPolicy",
        ),
        // Webhooks aimed inside.
        submit(
            "a webhook to the cloud's metadata service",
            with(
                "webhooks",
                hooks(1, "http://169.254.169.254/latest/meta-data/"),
            ),
            400,
            "169.254.169.254",
        ),
        submit(
            "a webhook to a link-local IPv6 address",
            with("webhooks", hooks(1, "http://[fe80::1]/")),
            400,
            "fe80::1",
        ),
        submit(
            "a webhook to the server's own loopback",
            with("webhooks", hooks(1, "http://127.0.0.1:10000/tasks/x")),
            400,
            "127.0.0.1",
        ),
        submit(
            "a webhook to a private network",
            with("webhooks", hooks(1, "http://10.0.0.5/")),
            400,
            "10.0.0.5",
        ),
        submit(
            "a webhook that is not HTTP",
            with("webhooks", hooks(1, "file:///etc/passwd")),
            400,
            "url",
        ),
        submit(
            "a webhook method that is not one",
            with(
                "webhooks",
                json!({"finishes": [{"url": "https://h.example.com", "method": "TRACE"}]}),
            ),
            400,
            "method",
        ),
        submit(
            "a DNS entry that is not an address",
            with("additionalDNSEntries", json!({"db": "not-an-ip"})),
            400,
            "additionalDNSEntries",
        ),
    ];
    // Task ids that would forge log lines or paths.
    for (name, task) in [
        ("a task id with a newline", "log%0Aforged"),
        ("a task id with a carriage return", "log%0Dforged"),
        ("a task id with a control character", "a%01b"),
        ("a task id with a slash", "a%2Fb"),
        ("a task id of 300 bytes", &*"t".repeat(300)),
    ] {
        rows.push(Row {
            path: format!("/tasks/{task}"),
            ..submit(name, job(), 400, "task")
        });
    }
    rows.push(Row {
        method: Method::PUT,
        path: "/tasks/hostile/jobs/not-a-uuid".to_owned(),
        ..submit("a job id that is not a UUID", job(), 400, "UUID")
    });
    // Pages out of range.
    for (route, page) in [
        ("/tasks/", "0"),
        ("/tasks/", "-1"),
        ("/tasks/", "many"),
        ("/tasks/", "18446744073709551615"),
        ("/tasks/", "99999999999999999999999"),
        ("/search/", "0"),
        ("/search/", "18446744073709551615"),
    ] {
        let query = if route == "/search/" { "query=x&" } else { "" };
        rows.push(request(
            "a page out of range",
            Method::GET,
            format!("{route}?{query}page={page}"),
            None,
            400,
            "page",
        ));
    }
    // The blacklist.
    rows.push(request(
        "a blacklist entry that is not a host",
        Method::POST,
        "/docker-executor/blacklist",
        Some(json!({"host": "not a host"}).to_string()),
        400,
        "host",
    ));
    // Pages of other sites.
    for (method, path) in [
        (Method::POST, "/tasks/hostile"),
        (
            Method::PUT,
            "/tasks/hostile/jobs/0b6a1a3e-9ad4-4b7e-8d5e-1f0e9c0c2f11",
        ),
        (Method::POST, "/docker-executor/blacklist"),
        (Method::DELETE, "/docker-executor/blacklist"),
    ] {
        rows.push(Row {
            headers: vec![
                ("origin", "https://evil.example".to_owned()),
                ("content-type", "text/plain".to_owned()),
            ],
            ..request(
                "a write from another site",
                method,
                path,
                Some(job().to_string()),
                403,
                "cross-site",
            )
        });
    }
    rows.push(Row {
        headers: vec![("sec-fetch-site", "cross-site".to_owned())],
        ..submit("a browser saying cross-site", job(), 403, "cross-site")
    });
    rows.push(Row {
        headers: vec![
            ("origin", "https://evil.example".to_owned()),
            ("upgrade", "websocket".to_owned()),
            ("connection", "upgrade".to_owned()),
        ],
        ..request(
            "a WebSocket from another site",
            Method::GET,
            "/tasks/t/jobs/j/ws",
            None,
            403,
            "cross-site",
        )
    });
    rows
}

/// How many tasks the server has.
async fn task_count(server: &Server) -> anyhow::Result<u64> {
    let (status, page) = server.get("/tasks/").await?;
    anyhow::ensure!(status == 200, "GET /tasks/ answered {status}: {page}");
    page["total"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no total in {page}"))
}

#[tokio::test]
async fn hostile_requests_are_refused_and_leave_nothing_behind() -> anyhow::Result<()> {
    let server = Server::start(&[("MAX_BODY_BYTES", "262144")]).await?;
    let rows = rows();
    assert!(rows.len() >= 60, "{} rows", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let mut request = server
            .client()
            .request(row.method.clone(), server.url(&row.path));
        for (name, value) in &row.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &row.body {
            request = request.body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error = body["error"].as_str().unwrap_or_default().to_lowercase();
        if status != row.status || !error.contains(&row.names.to_lowercase()) {
            failures.push(format!(
                "{}: {} {} answered {status} {text:.300} (expected {} naming {:?})",
                row.name, row.method, row.path, row.status, row.names
            ));
        }
        let count = task_count(&server).await?;
        if count != 0 {
            failures.push(format!("{}: a task was created", row.name));
            break;
        }
        for health in ["/status", "/healthcheck"] {
            let (status, body) = server.get(health).await?;
            if status != 200 {
                failures.push(format!("{}: {health} answered {status} {body}", row.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_the_server_stays_up() -> anyhow::Result<()> {
    let server = Server::start(&[("MAX_BODY_BYTES", "4096")]).await?;
    let (status, body) = server
        .post_raw(
            "big",
            with("metadata", json!({"blob": "x".repeat(8192)})).to_string(),
        )
        .await?;
    assert_eq!(status, 413, "{body}");
    assert_eq!(task_count(&server).await?, 0);
    let (status, _) = server.get("/status").await?;
    assert_eq!(status, 200);
    Ok(())
}
