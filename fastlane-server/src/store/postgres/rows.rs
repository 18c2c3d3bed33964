//! Between PostgreSQL rows and the store's types: driver errors, columns,
//! numbers, and documents as JSONB.

use serde_json::Value;
use tokio_postgres::Row;

use crate::store::StoreError;

/// A driver error as a store error, with the server's message when it sent
/// one.
pub(super) fn pg(err: tokio_postgres::Error) -> StoreError {
    match err.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("postgres: {db}")),
        None => StoreError::Unavailable(format!(
            "postgres: {}",
            fastlane_sdk::text::error_chain(&err)
        )),
    }
}

pub(super) fn corrupt(err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("unreadable record: {err}"))
}

/// Column `index` of `row`, or why it cannot be read.
pub(super) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(corrupt)
}

/// A count or size read from a `BIGINT` column.
pub(super) fn count(row: &Row, index: usize) -> Result<u64, StoreError> {
    u64::try_from(col::<i64>(row, index)?).map_err(corrupt)
}

/// A number for a `BIGINT` parameter (past `i64::MAX` means "no limit").
pub(super) fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `value` as a JSONB document: strings cannot hold NUL in JSONB, so each
/// becomes U+FFFD.
pub(super) fn document<T: serde::Serialize>(value: &T) -> Result<Value, StoreError> {
    fn scrub(value: &mut Value) {
        match value {
            Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
            Value::Array(items) => items.iter_mut().for_each(scrub),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v))
                        .collect();
                }
                map.values_mut().for_each(scrub);
            }
            _ => {}
        }
    }
    let mut value = serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    scrub(&mut value);
    Ok(value)
}

/// The document in column `index` of `row`.
pub(super) fn from_doc<T: serde::de::DeserializeOwned>(
    row: &Row,
    index: usize,
) -> Result<T, StoreError> {
    serde_json::from_value(col::<Value>(row, index)?).map_err(corrupt)
}

/// Every row's document in column 0.
pub(super) fn docs<T: serde::de::DeserializeOwned>(rows: &[Row]) -> Result<Vec<T>, StoreError> {
    rows.iter().map(|row| from_doc(row, 0)).collect()
}

/// The documents in column 0 of the rows that can be read, each row
/// naming its record in column 1; the others are skipped with a warning
/// (see [`crate::store::readable`]).
pub(super) fn listed<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    rows: &[Row],
) -> Result<Vec<T>, StoreError> {
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = col(row, 1)?;
        records.extend(crate::store::readable(kind, &id, from_doc(row, 0))?);
    }
    Ok(records)
}

/// The document in column 0 of the first row, if any: the record `id`,
/// an unreadable one an error naming it.
pub(super) fn one<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    id: &str,
    rows: &[Row],
) -> Result<Option<T>, StoreError> {
    rows.first()
        .map(|row| crate::store::named(kind, id, from_doc(row, 0)))
        .transpose()
}
