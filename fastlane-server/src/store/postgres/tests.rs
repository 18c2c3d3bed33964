//! The PostgreSQL store against the conformance functions, on a fresh
//! schema of the test cluster each, and what only it can spoil.

use super::*;
use crate::store::LogSource;

const DEFAULT_URL: &str = "postgres://fastlane:fastlane@127.0.0.1:5433/fastlane";

/// Test schemas older than this are dropped by later runs.
const STALE_AFTER_SECS: i64 = 3600;

/// A store on a schema of its own (`t_<unix seconds>_<uuid>`) in the
/// test database.
async fn fresh() -> PostgresStore {
    PostgresStore::connect(&fresh_url().await)
        .await
        .expect("connect")
}

/// The test database's URL with a fresh, empty schema as the search
/// path, dropping the schemas of runs long past.
async fn fresh_url() -> String {
    let url = std::env::var("FASTLANE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {url} ({}): start it with \
             `eval \"$(scripts/services.sh | sed 's/^/export /')\"` \
             or point FASTLANE_TEST_POSTGRES_URL at a server",
                fastlane_sdk::text::error_chain(&e)
            )
        });
    tokio::spawn(connection);
    let now = Utc::now().timestamp();
    let schemas = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'",
            &[],
        )
        .await
        .expect("list schemas");
    for row in schemas {
        let name: String = row.get(0);
        let born = name.split('_').nth(1).and_then(|s| s.parse::<i64>().ok());
        if born.is_some_and(|born| now - born > STALE_AFTER_SECS) {
            // Best effort: another run may be dropping it too.
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
    let schema = format!("t_{now}_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

crate::store_conformance!(async { std::sync::Arc::new(fresh().await) });

#[tokio::test]
async fn executions_line_up_on_submit_and_a_pass_lets_them_go() {
    crate::store::conformance::executions_line_up_on_submit_and_a_pass_lets_them_go(
        std::sync::Arc::new(fresh().await),
    )
    .await;
}

/// A new store gets this build's schema version, connecting again
/// changes nothing, and a store a newer fastlane made is refused,
/// naming both versions.
#[tokio::test]
async fn a_store_from_a_newer_fastlane_is_refused() {
    let url = fresh_url().await;
    let store = PostgresStore::connect(&url).await.expect("connect");
    let version = |rows: Vec<Row>| rows.first().map(|r| r.get::<_, i32>(0));
    let read = "SELECT version FROM schema_version";
    assert_eq!(
        version(store.query(read, &[]).await.expect("read")),
        Some(schema::SCHEMA_VERSION)
    );
    drop(PostgresStore::connect(&url).await.expect("again"));
    store
        .execute("UPDATE schema_version SET version = 999", &[])
        .await
        .expect("newer");
    let err = PostgresStore::connect(&url)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("schema version 999")
            && err.contains(&format!("the {} this", schema::SCHEMA_VERSION)),
        "{err}"
    );
}

#[tokio::test]
async fn nul_characters_are_kept_in_logs_and_replaced_in_documents() {
    let store = fresh().await;
    let piece = LogPiece {
        offset: 0,
        source: LogSource::Stdout,
        text: "a\0b".to_owned(),
        raw_len: 3,
    };
    store
        .append_log("e", std::slice::from_ref(&piece))
        .await
        .expect("append");
    assert_eq!(store.read_log("e", 0, 10).await.expect("read"), [piece]);
    let now = Utc::now();
    let job = Job::new(
        "nul",
        "j".to_owned(),
        fastlane_sdk::JobSpec::new("busybox", "true"),
        now,
    );
    let mut execution = Execution::enqueued(&job, "busybox", "true", None, now, "e".to_owned());
    execution.stdout = Some("a\0b".to_owned());
    store
        .submit(Submission {
            executions: std::slice::from_ref(&execution),
            ..Submission::job(&job)
        })
        .await
        .expect("create");
    let kept = store
        .execution("e")
        .await
        .expect("read")
        .expect("execution");
    assert_eq!(kept.stdout.as_deref(), Some("a\u{FFFD}b"));
}

/// A job whose metadata nests deeper than a record can be read back,
/// and an execution with a timestamp that is not one, written with SQL.
#[tokio::test]
async fn unreadable_records_are_skipped_in_listings() {
    let store = fresh().await;
    let raw = store.clone();
    crate::store::conformance::unreadable_records_are_skipped_in_listings(
        std::sync::Arc::new(store),
        |kind, id| {
            let raw = raw.clone();
            async move {
                let (sql, value) = match kind {
                    "job" => (
                        "UPDATE jobs SET data = jsonb_set(data, '{spec,custom}', $1::text::jsonb)
                         WHERE job_id = $2",
                        crate::store::conformance::nested(200),
                    ),
                    _ => (
                        "UPDATE executions SET data = jsonb_set(data, '{created_at}',
                                                              to_jsonb($1::text))
                         WHERE execution_id = $2",
                        "not a date".to_owned(),
                    ),
                };
                assert_eq!(raw.execute(sql, &[&value, &id]).await.expect("spoil"), 1);
            }
        },
    )
    .await;
}

/// Admissions from several processes (here: pools) at once never give
/// out more slots than a gate has, and the rest wait in one line.
#[tokio::test]
async fn concurrent_admissions_keep_the_limit() {
    let url = fresh_url().await;
    let stores = [
        PostgresStore::connect(&url).await.expect("connect"),
        PostgresStore::connect(&url).await.expect("connect"),
    ];
    crate::store::conformance::concurrent_admissions_keep_the_limit([
        std::sync::Arc::new(stores[0].clone()),
        std::sync::Arc::new(stores[1].clone()),
    ])
    .await;
}

/// A pass that lets the last waiter of a class go while another
/// transaction adds one to it (not committed yet, so the pass's trigger
/// cannot see it) leaves the newcomer where the next pass finds it: a class
/// is read from its waiters, not from the first one its count remembers.
#[tokio::test]
async fn a_waiter_joining_while_a_pass_empties_its_class_is_let_go_by_the_next() {
    use crate::store::line::class_key;
    use crate::store::{Gate, Order, Outgoing, Policy, Waiter};
    const FIFO: Policy = Policy {
        order: Order::Fifo,
        aging_seconds: 60,
    };
    fn run(id: &str, _trace: Option<&str>) -> Option<Outgoing> {
        Some(Outgoing {
            queue: "jobs".into(),
            id: id.into(),
            payload: String::new(),
            due_ms: 0,
        })
    }
    let store = std::sync::Arc::new(fresh().await);
    let ask = Ask::plain(vec![vec![Gate::new("pool:p", 10)]], Utc::now());
    let job = Job::new(
        "race",
        "j".to_owned(),
        fastlane_sdk::JobSpec::new("busybox", "true"),
        Utc::now(),
    );
    let run_of =
        |id: &str| Execution::enqueued(&job, "busybox", "true", None, Utc::now(), id.into());
    store
        .submit(Submission {
            executions: &[run_of("first")],
            waiting: &[Waiter {
                execution_id: "first".into(),
                ask: ask.clone(),
                trace: None,
            }],
            ..Submission::job(&job)
        })
        .await
        .expect("submit");
    store
        .insert_execution(&run_of("late"))
        .await
        .expect("insert");

    // Another transaction puts `late` in the class and holds its count.
    let mut client = store.client().await.expect("client");
    let tx = client.transaction().await.expect("begin");
    tx.execute(
        "INSERT INTO admission_line (execution_id, gates, class, since) VALUES ($1, $2, $3, $4)",
        &[
            &"late",
            &rows::document(&ask).expect("ask"),
            &class_key(&ask),
            &ask.since,
        ],
    )
    .await
    .expect("join");
    let pass = tokio::spawn({
        let store = std::sync::Arc::clone(&store);
        async move { store.grant(&FIFO, run).await.expect("pass") }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.expect("commit");
    assert_eq!(pass.await.expect("pass").ids, ["first"]);
    assert_eq!(
        store.grant(&FIFO, run).await.expect("pass").ids,
        ["late"],
        "the next pass finds the waiter that joined meanwhile"
    );
}
