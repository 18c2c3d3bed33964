//! The embedded store against the conformance functions, and what only
//! SQLite can spoil: records it cannot read back.

use super::*;

/// A store on a database of its own.
async fn fresh() -> SqliteStore {
    let dir = std::env::temp_dir().join(format!("fastlane-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    SqliteStore::new(Db::open(&dir).expect("open db"))
}

crate::store_conformance!(async { std::sync::Arc::new(fresh().await) });

#[tokio::test]
async fn executions_line_up_on_submit_and_a_pass_lets_them_go() {
    crate::store::conformance::executions_line_up_on_submit_and_a_pass_lets_them_go(
        std::sync::Arc::new(fresh().await),
    )
    .await;
}

/// A job whose metadata nests deeper than a record can be read back
/// (what one accepted request made before its depth was bounded), and
/// an execution with a timestamp that is not one, written with SQL.
#[tokio::test]
async fn unreadable_records_are_skipped_in_listings() {
    let store = fresh().await;
    let db = store.db.clone();
    crate::store::conformance::unreadable_records_are_skipped_in_listings(
        std::sync::Arc::new(store),
        |kind, id| {
            let db = db.clone();
            async move {
                let sql = match kind {
                    "job" => {
                        "UPDATE jobs SET data = json_set(data, '$.spec.custom', json(?1))
                         WHERE job_id = ?2"
                    }
                    _ => {
                        "UPDATE executions SET data = json_set(data, '$.created_at', ?1)
                         WHERE execution_id = ?2"
                    }
                };
                let value = match kind {
                    "job" => crate::store::conformance::nested(200),
                    _ => "not a date".to_owned(),
                };
                let changed = db
                    .write(move |conn| Ok(conn.execute(sql, params![value, id])?))
                    .await
                    .expect("spoil");
                assert_eq!(changed, 1);
            }
        },
    )
    .await;
}
