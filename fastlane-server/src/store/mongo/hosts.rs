//! Host state the MongoDB store keeps for every process: the blacklist and
//! the newest health report of each host.

use mongodb::bson::{Document, doc};

use super::documents::{from_record, is_duplicate_key, mongo, nanos, record, text};
use super::schema::{BLACKLIST, HOST_HEALTH};

use crate::store::StoreError;

use super::MongoStore;

pub(super) async fn blacklist(store: &MongoStore) -> Result<Vec<String>, StoreError> {
    store
        .all(BLACKLIST, Document::new(), doc! {"_id": 1})
        .await?
        .iter()
        .map(|host| text(host, "_id"))
        .collect()
}

pub(super) async fn set_blacklisted(
    store: &MongoStore,
    host: &str,
    blacklisted: bool,
) -> Result<(), StoreError> {
    let blacklist = store.collection(BLACKLIST);
    if !blacklisted {
        blacklist
            .delete_one(doc! {"_id": host})
            .await
            .map_err(mongo)?;
        return Ok(());
    }
    match blacklist.insert_one(doc! {"_id": host}).await {
        Err(err) if !is_duplicate_key(&err) => Err(mongo(err)),
        _ => Ok(()),
    }
}

pub(super) async fn share_host_health(
    store: &MongoStore,
    reports: &[fastlane_sdk::HostHealth],
) -> Result<Vec<fastlane_sdk::HostHealth>, StoreError> {
    let health = store.collection(HOST_HEALTH);
    for report in reports {
        let since = nanos(report.since);
        let kept = health
            .update_one(
                doc! {"_id": &report.host, "since_ns": {"$lt": since}},
                doc! {"$set": {"since_ns": since, "doc": record(report)?}},
            )
            .upsert(true)
            .await;
        match kept {
            // A report as new or newer is kept already.
            Err(err) if !is_duplicate_key(&err) => return Err(mongo(err)),
            _ => {}
        }
    }
    store
        .all(HOST_HEALTH, Document::new(), doc! {"_id": 1})
        .await?
        .iter()
        .map(from_record)
        .collect()
}
