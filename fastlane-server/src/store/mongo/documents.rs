//! Between MongoDB documents and the store's types: records as BSON with
//! their field names escaped, times, counts, and driver errors.
//!
//! A record (a job, an execution, a task) is kept whole under `doc`, as
//! serde writes it, so it reads back exactly: times stay RFC 3339 strings
//! (BSON dates keep milliseconds only), and every number, string (NUL
//! included) and field name survives. Field names come from users too (a
//! job's `envs`, its `custom` metadata, webhook headers), and MongoDB
//! refuses or misreads some: a NUL cannot be in a BSON name at all, and
//! `.` and a leading `$` mean paths and operators in queries and updates.
//! So in every name `%`, `.`, `$` and NUL are written `%25`, `%2E`, `%24`
//! and `%00` (and the empty name, which updates cannot address, `%`); the
//! record's own fields have none of them, so updates can
//! still address `doc.status` and friends. A whole number past `i64::MAX`
//! (possible in `custom`) is kept as `{"%u64": "<digits>"}`, a name no
//! escaped name can be.

use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, Document};
use serde_json::{Map, Number, Value};

use crate::store::StoreError;

/// The name that marks a whole number too large for BSON's `Int64`.
const BIG_UNSIGNED: &str = "%u64";

/// `name` with `%`, `.`, `$` and NUL escaped, and the empty name as `%`.
fn escape(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '.' => out.push_str("%2E"),
            '$' => out.push_str("%24"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out
}

/// The name [`escape`] was given.
fn unescape(name: &str) -> Result<String, StoreError> {
    if !name.contains('%') {
        return Ok(name.to_owned());
    }
    if name == "%" {
        return Ok(String::new());
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        let c = match code {
            Some("25") => '%',
            Some("2E") => '.',
            Some("24") => '$',
            Some("00") => '\0',
            _ => return Err(corrupt(format!("badly escaped field name {name:?}"))),
        };
        out.push(c);
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A JSON value as BSON, names escaped.
fn to_bson(value: Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Bson::Int64(i),
            (None, Some(u), _) => {
                let mut big = Document::new();
                big.insert(BIG_UNSIGNED, u.to_string());
                Bson::Document(big)
            }
            (None, None, Some(f)) => Bson::Double(f),
            (None, None, None) => Bson::Null,
        },
        Value::String(s) => Bson::String(s),
        Value::Array(items) => Bson::Array(items.into_iter().map(to_bson).collect()),
        Value::Object(map) => Bson::Document(
            map.into_iter()
                .map(|(name, value)| (escape(&name), to_bson(value)))
                .collect(),
        ),
    }
}

/// BSON written by [`to_bson`] as JSON again.
fn to_json(value: Bson) -> Result<Value, StoreError> {
    Ok(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::from(i),
        Bson::Int64(i) => Value::from(i),
        Bson::Double(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Bson::String(s) => Value::String(s),
        Bson::Array(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Bson::Document(doc) => {
            if doc.len() == 1
                && let Some(Bson::String(digits)) = doc.get(BIG_UNSIGNED)
            {
                let n: u64 = digits.parse().map_err(corrupt)?;
                return Ok(Value::from(n));
            }
            let mut map = Map::with_capacity(doc.len());
            for (name, value) in doc {
                map.insert(unescape(&name)?, to_json(value)?);
            }
            Value::Object(map)
        }
        other => {
            return Err(corrupt(format!(
                "unexpected {:?} in a record",
                other.element_type()
            )));
        }
    })
}

/// `value` (a serde record) as the JSON object it serializes to.
pub(super) fn json_object<T: serde::Serialize>(
    value: &T,
) -> Result<Map<String, Value>, StoreError> {
    match serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))? {
        Value::Object(map) => Ok(map),
        other => Err(StoreError::Corrupt(format!(
            "a record is not an object: {other}"
        ))),
    }
}

/// A JSON object as a BSON document, names escaped.
pub(super) fn document(map: Map<String, Value>) -> Document {
    match to_bson(Value::Object(map)) {
        Bson::Document(doc) => doc,
        _ => Document::new(),
    }
}

/// `value` (a serde record) as a BSON document, names escaped.
pub(super) fn record<T: serde::Serialize>(value: &T) -> Result<Document, StoreError> {
    json_object(value).map(document)
}

/// Any serde value as BSON, names escaped (for one field of a record).
pub(super) fn field<T: serde::Serialize>(value: &T) -> Result<Bson, StoreError> {
    serde_json::to_value(value)
        .map(to_bson)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// BSON written by [`record`] or [`field`] as a JSON value.
pub(super) fn json(value: Bson) -> Result<Value, StoreError> {
    to_json(value)
}

/// The record kept under `doc` in `stored`.
pub(super) fn from_record<T: serde::de::DeserializeOwned>(
    stored: &Document,
) -> Result<T, StoreError> {
    let doc = stored
        .get("doc")
        .cloned()
        .ok_or_else(|| corrupt("a stored document has no `doc`"))?;
    serde_json::from_value(to_json(doc)?).map_err(corrupt)
}

/// A time as a BSON date, for ordering (milliseconds; the record keeps
/// the exact time).
pub(super) fn date(at: DateTime<Utc>) -> Bson {
    Bson::DateTime(mongodb::bson::DateTime::from_millis(at.timestamp_millis()))
}

/// A time as nanoseconds since 1970, where order must be exact.
pub(super) fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// A count or offset for a BSON `Int64`; past `i64::MAX` means "no limit".
pub(super) fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count or size stored as any BSON number.
pub(super) fn count(value: Option<&Bson>) -> Result<u64, StoreError> {
    let n = match value {
        Some(Bson::Int32(i)) => i64::from(*i),
        Some(Bson::Int64(i)) => *i,
        Some(Bson::Double(f)) if f.fract() == 0.0 => *f as i64,
        None | Some(Bson::Null) => 0,
        Some(other) => return Err(corrupt(format!("{other} is not a count"))),
    };
    u64::try_from(n).map_err(corrupt)
}

/// A string field of `doc`.
pub(super) fn text(doc: &Document, name: &str) -> Result<String, StoreError> {
    doc.get_str(name)
        .map(str::to_owned)
        .map_err(|e| corrupt(format!("field {name}: {e}")))
}

pub(super) fn corrupt(err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("unreadable record: {err}"))
}

/// A driver error as a store error.
pub(super) fn mongo(err: mongodb::error::Error) -> StoreError {
    use mongodb::error::ErrorKind;
    match err.kind.as_ref() {
        ErrorKind::BsonDeserialization(_) => StoreError::Corrupt(format!("mongodb: {err}")),
        _ => StoreError::Unavailable(format!(
            "mongodb: {}",
            fastlane_sdk::text::error_chain(&err)
        )),
    }
}

/// True when `err` says a unique index already had the key.
pub(super) fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    const DUPLICATE_KEY: i32 = 11000;
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => {
            e.write_concern_error.is_none()
                && e.write_errors
                    .as_ref()
                    .is_some_and(|errors| errors.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awkward_names_and_numbers_survive_a_round_trip() {
        let value = serde_json::json!({
            "a.b": 1,
            "$set": {"%25": [u64::MAX, -1, 1.5, null, true]},
            "nul\u{0}name": "nul\u{0}value",
            "%u64": "not a marker",
            "plain": {"nested.dot": "x", "": "empty"},
        });
        let Value::Object(map) = value.clone() else {
            panic!("an object")
        };
        let doc = document(map);
        assert!(doc.contains_key("a%2Eb"));
        assert!(doc.contains_key("%24set"));
        assert!(doc.contains_key("nul%00name"));
        assert_eq!(json(Bson::Document(doc)).expect("back"), value);
    }

    #[test]
    fn a_bad_escape_is_corrupt() {
        let mut doc = Document::new();
        doc.insert("a%2", 1);
        assert!(matches!(
            json(Bson::Document(doc)),
            Err(StoreError::Corrupt(_))
        ));
    }
}
