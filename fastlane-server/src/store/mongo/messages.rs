//! What the MongoDB store keeps for others: idempotency keys, the outbox's
//! queue messages and the deliveries owed.

use chrono::Utc;
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;

use super::documents::{corrupt, mongo};
use super::schema::{DELIVERIES, IDEMPOTENCY, OUTBOX};

use crate::store::{IdempotencyRecord, Outgoing, StoreError};

use super::{MongoStore, outgoing_of};

pub(super) async fn idempotency(
    store: &MongoStore,
    key: &str,
    now_ms: i64,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let Some(found) = store
        .collection(IDEMPOTENCY)
        .find_one(doc! {"_id": key, "expires_ms": {"$gt": now_ms}})
        .await
        .map_err(mongo)?
    else {
        return Ok(None);
    };
    let read = |name: &str| {
        found
            .get_str(name)
            .map(str::to_owned)
            .map_err(|e| corrupt(format!("idempotency key {key}: {e}")))
    };
    Ok(Some(IdempotencyRecord {
        key: read("_id")?,
        fingerprint: read("fingerprint")?,
        response: read("response")?,
        expires_ms: found
            .get_i64("expires_ms")
            .map_err(|e| corrupt(format!("idempotency key {key}: {e}")))?,
    }))
}

pub(super) async fn forget_expired_keys(
    store: &MongoStore,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let deleted = store
        .collection(IDEMPOTENCY)
        .delete_many(doc! {"expires_ms": {"$lte": now_ms}})
        .await
        .map_err(mongo)?;
    Ok(deleted.deleted_count)
}

pub(super) async fn take_outbox(
    store: &MongoStore,
    limit: usize,
    lease: std::time::Duration,
) -> Result<Vec<Outgoing>, StoreError> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let now = Utc::now().timestamp_millis();
    let outbox = store.collection(OUTBOX);
    let mut taken = Vec::new();
    // One message at a time: each take is atomic on its own.
    while taken.len() < limit {
        let Some(message) = outbox
            .find_one_and_update(
                doc! {"taken_until": {"$lte": now}},
                doc! {"$set": {"taken_until": now.saturating_add(lease_ms)}},
            )
            .sort(doc! {"due_ms": 1, "_id": 1})
            .return_document(ReturnDocument::After)
            .await
            .map_err(mongo)?
        else {
            break;
        };
        taken.push(outgoing_of(&message, "outbox message")?);
    }
    Ok(taken)
}

pub(super) async fn remove_outbox(store: &MongoStore, ids: &[String]) -> Result<(), StoreError> {
    store
        .collection(OUTBOX)
        .delete_many(doc! {"_id": {"$in": ids}})
        .await
        .map_err(mongo)?;
    Ok(())
}

pub(super) async fn owed_deliveries(
    store: &MongoStore,
    after: &str,
    limit: usize,
) -> Result<Vec<Outgoing>, StoreError> {
    let owed: Vec<Document> = store
        .collection(DELIVERIES)
        .find(doc! {"_id": {"$gt": after}})
        .sort(doc! {"_id": 1})
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .await
        .map_err(mongo)?
        .try_collect()
        .await
        .map_err(mongo)?;
    owed.iter()
        .map(|message| outgoing_of(message, "owed delivery"))
        .collect()
}

pub(super) async fn settle_deliveries(
    store: &MongoStore,
    ids: &[String],
) -> Result<(), StoreError> {
    store
        .collection(DELIVERIES)
        .delete_many(doc! {"_id": {"$in": ids}})
        .await
        .map_err(mongo)?;
    Ok(())
}
