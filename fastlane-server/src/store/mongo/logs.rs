//! The MongoDB store's live logs: pieces appended once each at their byte
//! offset, read from any offset, and totalled.

use futures_util::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Document, doc};

use super::documents::{big, corrupt, count, is_duplicate_key, mongo, text};
use super::schema::LOGS;

use crate::store::{LogPiece, LogSource, LogTotals, StoreError};

use super::MongoStore;

pub(super) async fn append_log(
    store: &MongoStore,
    execution_id: &str,
    pieces: &[LogPiece],
) -> Result<(), StoreError> {
    if pieces.is_empty() {
        return Ok(());
    }
    let docs = pieces.iter().map(|piece| {
        doc! {
            "execution_id": execution_id,
            "start": big(piece.offset),
            "end": big(piece.end()),
            "source": piece.source.as_str(),
            "text": Binary {
                subtype: BinarySubtype::Generic,
                bytes: piece.text.as_bytes().to_vec(),
            },
            "raw_len": big(piece.raw_len),
        }
    });
    // Unordered: every new piece goes in, whatever pieces are kept already.
    match store
        .collection(LOGS)
        .insert_many(docs)
        .ordered(false)
        .await
    {
        Err(err) if !is_duplicate_key(&err) => Err(mongo(err)),
        _ => Ok(()),
    }
}

pub(super) async fn read_log(
    store: &MongoStore,
    execution_id: &str,
    from: u64,
    limit: u32,
) -> Result<Vec<LogPiece>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let logs = store.collection(LOGS);
    let first = logs
        .find_one(doc! {"execution_id": execution_id, "start": {"$lte": big(from)}})
        .sort(doc! {"start": -1})
        .projection(doc! {"start": 1})
        .await
        .map_err(mongo)?;
    let start = first.as_ref().and_then(|p| p.get("start")).cloned();
    let stored: Vec<Document> = logs
        .find(doc! {
            "execution_id": execution_id,
            "start": {"$gte": start.unwrap_or(Bson::Int64(0))},
        })
        .sort(doc! {"start": 1})
        .limit(i64::from(limit))
        .await
        .map_err(mongo)?
        .try_collect()
        .await
        .map_err(mongo)?;
    let mut pieces = Vec::with_capacity(stored.len());
    for piece in &stored {
        let source = text(piece, "source")?;
        let source = LogSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown log source {source:?}")))?;
        let bytes = piece
            .get_binary_generic("text")
            .map_err(|e| corrupt(format!("log text: {e}")))?;
        pieces.push(LogPiece {
            offset: count(piece.get("start"))?,
            source,
            text: String::from_utf8(bytes.clone()).map_err(corrupt)?,
            raw_len: count(piece.get("raw_len"))?,
        });
    }
    Ok(crate::store::log_from(pieces, from))
}

pub(super) async fn log_totals(
    store: &MongoStore,
    execution_id: &str,
) -> Result<LogTotals, StoreError> {
    let of = |source: &str, value: Bson| doc! {"$cond": [{"$eq": ["$source", source]}, value, 0]};
    let totals: Vec<Document> = store
        .collection(LOGS)
        .aggregate([
            doc! {"$match": {"execution_id": execution_id}},
            doc! {"$group": {
                "_id": Bson::Null,
                "bytes": {"$max": "$end"},
                "stdout": {"$sum": of("stdout", Bson::String("$raw_len".to_owned()))},
                "stderr": {"$sum": of("stderr", Bson::String("$raw_len".to_owned()))},
                "notices": {"$sum": of("notice", Bson::Int32(1))},
            }},
        ])
        .await
        .map_err(mongo)?
        .try_collect()
        .await
        .map_err(mongo)?;
    let Some(totals) = totals.first() else {
        return Ok(LogTotals::default());
    };
    Ok(LogTotals {
        bytes: count(totals.get("bytes"))?,
        stdout: count(totals.get("stdout"))?,
        stderr: count(totals.get("stderr"))?,
        cut: count(totals.get("notices"))? > 0,
    })
}
