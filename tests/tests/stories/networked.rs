//! fastlane on networked backends, PostgreSQL (`STORE_URL`) and Redis
//! (`REDIS_URL`): a server that dies mid-run leaves nothing behind that
//! another server sharing them cannot finish. The execution is adopted,
//! not run again.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use fastlane_tests::postgres::fresh_store_url;
use fastlane_tests::redis::RedisServer;
use fastlane_tests::{Server, image};

const LIMIT: Duration = Duration::from_secs(90);

/// How many containers (running or not) the engine has for `execution`.
async fn containers_of(execution: &str) -> anyhow::Result<usize> {
    let tcp =
        std::env::var("FASTLANE_TEST_DOCKER_TCP").unwrap_or_else(|_| "127.0.0.1:23750".to_owned());
    let filters = json!({"label": [format!("fastlane.execution={execution}")]});
    let mut url = reqwest::Url::parse(&format!("http://{tcp}/v1.41/containers/json"))?;
    url.query_pairs_mut()
        .append_pair("all", "true")
        .append_pair("filters", &filters.to_string());
    let containers: Vec<Value> = reqwest::get(url).await?.error_for_status()?.json().await?;
    Ok(containers.len())
}

#[tokio::test]
async fn a_server_that_dies_mid_run_has_its_execution_adopted_by_another() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let store = fastlane_tests::postgres::fresh_store_url()?;
    let env = [
        ("STORE_URL", store.as_str()),
        ("REDIS_URL", &redis.url()),
        ("QUEUE_LEASE_SECONDS", "5"),
    ];
    let mut first = Server::start(&env).await?;
    let created = first
        .submit(
            "networked",
            json!({"image": image(), "command": "sh -c 'echo started; sleep 4; echo finished'"}),
        )
        .await?;
    let execution_id = created["executionId"].as_str().context("executionId")?;
    let path = created["executionUrl"]
        .as_str()
        .and_then(|url| url.find("/tasks/").map(|at| url[at..].to_owned()))
        .context("executionUrl")?;
    first
        .wait_for(&first.url(&path), LIMIT, |e| e["status"] == "running")
        .await?;
    first.kill();

    // Another server on the same store and queue (and its own data
    // directory) takes the message once the dead one's lease lapses.
    let second = Server::start(&env).await?;
    let execution = second.wait_finished(&second.url(&path), LIMIT).await?;
    assert_eq!(execution["status"], "done", "{execution}");
    assert_eq!(execution["log"], "started\nfinished\n");
    assert_eq!(execution["executionId"], execution_id);
    assert_eq!(
        containers_of(execution_id).await?,
        1,
        "the run was adopted, not started again"
    );
    Ok(())
}

/// The test cluster's CA (`scripts/services.sh` makes it, with a server
/// certificate for `localhost` only).
fn postgres_ca() -> String {
    std::env::var("FASTLANE_TEST_POSTGRES_CA")
        .unwrap_or_else(|_| "/etc/postgresql/15/fastlane/tls/ca.pem".to_owned())
}

/// A fresh store URL for `fastlane_tls`, the role the test cluster lets in
/// over TLS only, on `host`, with `tls` added to its parameters.
fn tls_store_url(host: &str, tls: &str) -> anyhow::Result<String> {
    let url = fresh_store_url()?;
    let (_, rest) = url
        .split_once('@')
        .context("FASTLANE_TEST_POSTGRES_URL has no user@host")?;
    let (_, rest) = rest.split_once(':').context("no port in the store URL")?;
    Ok(format!(
        "postgres://fastlane_tls:fastlane@{host}:{rest}&{tls}"
    ))
}

/// Asks the test cluster (as `fastlane_tls`, who may see its own
/// sessions) whether the connections named `application` are encrypted:
/// how many there are, and whether all of them are.
fn encrypted_connections(application: &str) -> anyhow::Result<(u32, bool)> {
    let url = tls_store_url("localhost", "sslmode=require")?;
    let output = std::process::Command::new("psql")
        .arg(&url)
        .args(["-X", "-A", "-t", "-F", " ", "-c"])
        .arg(format!(
            "SELECT count(*), coalesce(bool_and(ssl), false) FROM pg_stat_ssl \
             JOIN pg_stat_activity USING (pid) WHERE application_name = '{application}'"
        ))
        .output()?;
    let text = String::from_utf8(output.stdout)?;
    let (count, all) = text.trim().split_once(' ').context("psql's answer")?;
    Ok((count.parse()?, all == "t"))
}

/// `sslmode=verify-full` with the CA that signed the server's certificate:
/// jobs run with their records in PostgreSQL, and the server's view of the
/// store's connections says every one is encrypted. `verify-ca` trusts the
/// same certificate on an address it was not issued for, and `require`
/// any certificate.
#[tokio::test]
async fn a_store_reached_over_verified_tls_runs_jobs_on_encrypted_connections() -> anyhow::Result<()>
{
    let application = format!("fastlane-tls-{}", uuid::Uuid::new_v4().simple());
    let tls = format!(
        "sslmode=verify-full&sslrootcert={}&application_name={application}",
        postgres_ca()
    );
    let store = tls_store_url("localhost", &tls)?;
    let server = Server::start(&[("STORE_URL", &store)]).await?;
    let created = server
        .submit(
            "over-tls",
            json!({"image": image(), "command": "echo sealed"}),
        )
        .await?;
    let url = created["executionUrl"].as_str().context("executionUrl")?;
    let execution = server.wait_finished(url, LIMIT).await?;
    assert_eq!(execution["log"], "sealed\n", "{execution}");
    let (connections, encrypted) = encrypted_connections(&application)?;
    assert!(connections >= 1, "the store's connections are not there");
    assert!(encrypted, "a store connection is not encrypted");

    // The role gets in over TLS only, so a store that answers is one
    // reached over TLS.
    let tls = format!("sslmode=verify-ca&sslrootcert={}", postgres_ca());
    let by_address = Server::start(&[("STORE_URL", &tls_store_url("127.0.0.1", &tls)?)]).await?;
    let (status, health) = by_address.get("/healthcheck").await?;
    assert_eq!((status, &health["store"]), (200, &json!(true)), "{health}");
    // `require` encrypts without checking the certificate, as libpq does.
    let unchecked =
        Server::start(&[("STORE_URL", &tls_store_url("127.0.0.1", "sslmode=require")?)]).await?;
    let (status, health) = unchecked.get("/healthcheck").await?;
    assert_eq!((status, &health["store"]), (200, &json!(true)), "{health}");
    Ok(())
}

/// What TLS cannot promise stops the server at start, saying why: a
/// certificate issued for another name (`verify-full` on an address), one
/// signed by a CA not trusted, a CA file that is not there, and no TLS to a
/// server that demands it.
#[tokio::test]
async fn tls_to_the_store_that_cannot_be_had_stops_the_server_saying_why() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("fastlane-pg-tls-{}", uuid::Uuid::new_v4()));
    let certs = fastlane_tests::engine::Certificates::generate(&dir)?;
    let cases = [
        (
            tls_store_url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={}", postgres_ca()),
            )?,
            "not valid for name",
        ),
        (
            tls_store_url(
                "localhost",
                &format!(
                    "sslmode=verify-full&sslrootcert={}",
                    certs.other_ca.display()
                ),
            )?,
            "UnknownIssuer",
        ),
        (
            tls_store_url(
                "localhost",
                "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            )?,
            "sslrootcert /nonexistent/ca.pem",
        ),
        (
            tls_store_url("localhost", "sslmode=disable")?,
            "no encryption",
        ),
    ];
    for (store, why) in cases {
        let refused = Server::start(&[("STORE_URL", &store)])
            .await
            .expect_err("the server started");
        let told = format!("{refused:#}");
        assert!(told.contains(why), "{store}: expected {why:?} in {told}");
        assert!(
            !told.contains(":fastlane@"),
            "the password is shown: {told}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
