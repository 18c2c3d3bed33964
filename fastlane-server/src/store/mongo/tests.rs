//! The MongoDB store against the conformance functions and what only it
//! needs checked. Skipped (`#[ignore]`) without `FASTLANE_TEST_MONGO_URL`:
//! no MongoDB server can run on the build machine.

use std::sync::Arc;

use super::*;
use crate::store::LogSource;

/// Test databases are named `fastlane_t_<unix seconds>_<uuid>`.
const TEST_PREFIX: &str = "fastlane_t_";

/// Test databases older than this are dropped by later runs (a test that
/// failed did not drop its own).
const STALE_AFTER_SECS: i64 = 3600;

/// The server under test (`FASTLANE_TEST_MONGO_URL`). The tests that
/// need it are compiled `#[ignore]`d unless it was set when they were
/// built (`build.rs`), so without one they are reported skipped.
fn server() -> String {
    match std::env::var("FASTLANE_TEST_MONGO_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "FASTLANE_TEST_MONGO_URL is not set: point it at a MongoDB server, e.g. \
             mongodb://127.0.0.1:27017/?serverSelectionTimeoutMS=2000, and build the \
             tests again"
        ),
    }
}

/// A fresh database's name on the server at `url`, after dropping the
/// test databases of runs long past.
async fn fresh_database(url: &str) -> String {
    let client = Client::with_uri_str(url).await.unwrap_or_else(|e| {
        panic!(
            "FASTLANE_TEST_MONGO_URL {} is not usable: {e}",
            crate::redact::url_without_password(url)
        )
    });
    let now = Utc::now().timestamp();
    let names = client.list_database_names().await.unwrap_or_else(|e| {
        panic!(
            "MongoDB at {} does not answer: {}",
            crate::redact::url_without_password(url),
            fastlane_sdk::text::error_chain(&e)
        )
    });
    for name in names {
        let born = name
            .strip_prefix(TEST_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse::<i64>().ok());
        if born.is_some_and(|born| now - born > STALE_AFTER_SECS) {
            // Best effort: another run may be dropping it too.
            let _ = client.database(&name).drop().await;
        }
    }
    format!("{TEST_PREFIX}{now}_{}", uuid::Uuid::new_v4().simple())
}

/// A store on a fresh database of the server under test.
async fn fresh() -> MongoStore {
    let url = server();
    let database = fresh_database(&url).await;
    MongoStore::connect(&url, &database).await.expect("connect")
}

crate::store_conformance!(with_cleanup #[cfg_attr(
    not(fastlane_mongo_tests),
    ignore = "needs FASTLANE_TEST_MONGO_URL: no MongoDB server can be installed on this machine"
)] async {
    let store = fresh().await;
    let owner = store.clone();
    let cleanup = async move {
        let _ = owner.drop_database().await;
    };
    (Arc::new(store) as Arc<dyn Store>, cleanup)
});

#[tokio::test]
#[cfg_attr(
    not(fastlane_mongo_tests),
    ignore = "needs FASTLANE_TEST_MONGO_URL: no MongoDB server can be installed on this machine"
)]
async fn log_text_and_awkward_records_are_kept_exactly() {
    let store = fresh().await;
    let piece = LogPiece {
        offset: 0,
        source: LogSource::Stdout,
        text: "a\0b é".to_owned(),
        raw_len: 6,
    };
    store
        .append_log("e", std::slice::from_ref(&piece))
        .await
        .expect("append");
    assert_eq!(store.read_log("e", 0, 10).await.expect("read"), [piece]);
    let now = Utc::now();
    let mut spec = fastlane_sdk::JobSpec::new("busybox", "true");
    spec.envs.insert("A.B$C\0".to_owned(), "v\0".to_owned());
    spec.custom = Some(
        serde_json::json!({"$where": {"x.y": u64::MAX}, "%": 1.5})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let job = Job::new("awkward", "j".to_owned(), spec, now);
    let mut execution = Execution::enqueued(&job, "busybox", "true", None, now, "e".to_owned());
    execution.stdout = Some("a\0b".to_owned());
    store
        .submit(Submission {
            executions: std::slice::from_ref(&execution),
            ..Submission::job(&job)
        })
        .await
        .expect("create");
    assert_eq!(store.find_job("j").await.expect("read"), Some(job));
    assert_eq!(store.execution("e").await.expect("read"), Some(execution));
    store.drop_database().await.expect("drop");
}

/// A job and an execution whose stored timestamps are not timestamps,
/// written behind the store's back (MongoDB itself refuses documents
/// nested past 100 levels, so the depth case cannot be stored here).
#[tokio::test]
#[cfg_attr(
    not(fastlane_mongo_tests),
    ignore = "needs FASTLANE_TEST_MONGO_URL: no MongoDB server can be installed on this machine"
)]
async fn unreadable_records_are_skipped_in_listings() {
    let store = fresh().await;
    let raw = store.clone();
    crate::store::conformance::unreadable_records_are_skipped_in_listings(
        Arc::new(store.clone()),
        |kind, id| {
            let raw = raw.clone();
            async move {
                let collection = if kind == "job" { JOBS } else { EXECUTIONS };
                let changed = raw
                    .collection(collection)
                    .update_one(
                        doc! {"_id": id},
                        doc! {"$set": {"doc.created_at": "not a date"}},
                    )
                    .await
                    .expect("spoil");
                assert_eq!(changed.matched_count, 1);
            }
        },
    )
    .await;
    store.drop_database().await.expect("drop");
}

/// Admissions from several processes (here: clients) at once never
/// give out more slots than a gate has, and the rest wait in one line.
#[tokio::test]
#[cfg_attr(
    not(fastlane_mongo_tests),
    ignore = "needs FASTLANE_TEST_MONGO_URL: no MongoDB server can be installed on this machine"
)]
async fn concurrent_admissions_keep_the_limit() {
    let url = server();
    let database = fresh_database(&url).await;
    let stores = [
        MongoStore::connect(&url, &database).await.expect("connect"),
        MongoStore::connect(&url, &database).await.expect("connect"),
    ];
    crate::store::conformance::concurrent_admissions_keep_the_limit([
        Arc::new(stores[0].clone()),
        Arc::new(stores[1].clone()),
    ])
    .await;
    stores[0].drop_database().await.expect("drop");
}

#[test]
fn an_execution_reads_back_from_what_is_stored() {
    let now = Utc::now();
    let job = Job::new(
        "t",
        "j".to_owned(),
        fastlane_sdk::JobSpec::new("busybox", "true"),
        now,
    );
    let mut execution = Execution::enqueued(&job, "busybox", "true", None, now, "e".to_owned());
    execution.dispatches.push(fastlane_sdk::DispatchRecord {
        timestamp: now,
        notifier: "webhook".to_owned(),
        event: "finishes".to_owned(),
        target: "http://receiver.invalid/".to_owned(),
        attempt: 1,
        status_code: None,
        error: Some("refused".to_owned()),
    });
    let stored = StoredExecution::new(&execution).expect("store");
    assert!(!stored.doc.contains_key("dispatches"), "kept beside doc");
    let full = stored.full(7);
    assert_eq!(full.get_i64("seq").ok(), Some(7));
    assert_eq!(full.get_str("status").ok(), Some("enqueued"));
    assert_eq!(execution_from(&full).expect("read"), execution);
}

#[test]
fn search_looks_words_up_and_matches_anything_else_as_like_would() {
    assert_eq!(
        search_filter("alpha"),
        Some(doc! {"words": {"$all": ["alpha"]}})
    );
    assert_eq!(
        search_filter("al%ph_a"),
        Some(doc! {"words": {"$all": ["alpha"]}}),
        "LIKE's wildcards are taken out, as search_pattern does"
    );
    assert_eq!(
        search_filter("a.b c"),
        Some(doc! {"words_text": {"$regex": " a\\.b c "}})
    );
    assert_eq!(
        search_filter(""),
        Some(doc! {"words_text": {"$regex": "  "}}),
        "like '%  %': only tasks without words"
    );
    assert_eq!(search_filter("a\0"), None);
}
