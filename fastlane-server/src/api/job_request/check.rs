//! Checks a JSON value against a [`Schema`] of the table: types, bounds,
//! patterns, unknown fields, sizes and depth, with a message naming the
//! field at fault (`webhooks.fails[0].url must be …`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use super::schema::{Kind, Limits, Object, Schema, Str};

/// Checks the fields of `value` as `object` (at `path`, `""` for the body).
pub fn object(
    path: &str,
    object: &'static Object,
    value: &Value,
    limits: &Limits,
) -> Result<(), String> {
    let Value::Object(map) = value else {
        return Err(if path.is_empty() {
            "the request body must be a JSON object".to_owned()
        } else {
            format!("{path} must be a JSON object")
        });
    };
    if let Some(key) = map.keys().find(|k| object.field(k).is_none()) {
        return Err(if path.is_empty() {
            format!("unknown field {key:?} (the fields are: {})", object.names())
        } else {
            format!("{path}: unknown key {key:?} (expected {})", object.names())
        });
    }
    let present = |name: &str| map.get(name).filter(|v| !v.is_null());
    let required = || {
        object
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(" and ")
    };
    if let Some(missing) = object
        .fields
        .iter()
        .find(|f| f.required && present(f.name).is_none())
    {
        // The original's message at the top level, which names them all.
        return Err(if path.is_empty() {
            format!("{} must be filled in the request.", required())
        } else {
            format!("{path}.{} must be given", missing.name)
        });
    }
    for field in object.fields {
        if let Some(v) = present(field.name) {
            value_at(&join(path, field.name), &field.schema, v, limits)?;
        }
    }
    Ok(())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// A value's text for messages, cut short.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// Checks `value` (found at `path`) against `schema`.
pub fn value_at(
    path: &str,
    schema: &'static Schema,
    value: &Value,
    limits: &Limits,
) -> Result<(), String> {
    let bad = || format!("{path} must be {} (got {})", schema.must(), shown(value));
    match &schema.kind {
        Kind::Str(rules) => {
            let text = value.as_str().ok_or_else(bad)?;
            if rules.non_blank && text.trim().is_empty() {
                return Err(format!("{path} must not be empty"));
            }
            string(rules, text).then_some(()).ok_or_else(bad)
        }
        Kind::Int { min, max } => whole(value)
            .filter(|n| (*min..=*max).contains(n))
            .map(|_| ())
            .ok_or_else(bad),
        Kind::Num {
            min,
            exclusive_min,
            max,
        } => value
            .as_f64()
            .filter(|n| n.is_finite() && *n <= *max)
            .filter(|n| if *exclusive_min { n > min } else { n >= min })
            .map(|_| ())
            .ok_or_else(bad),
        Kind::Enum(values) => value
            .as_str()
            .filter(|v| values.contains(v))
            .map(|_| ())
            .ok_or_else(bad),
        Kind::Bool => value.as_bool().map(|_| ()).ok_or_else(bad),
        Kind::List { items, max } => {
            let list = value
                .as_array()
                .ok_or_else(|| format!("{path} must be a list"))?;
            let max = max.resolve(limits);
            if list.len() > max {
                return Err(format!(
                    "{path} has {} items: at most {max} are allowed",
                    list.len()
                ));
            }
            for (i, item) in list.iter().enumerate() {
                value_at(&format!("{path}[{i}]"), items, item, limits)?;
            }
            Ok(())
        }
        Kind::Map { keys, values, max } => {
            let map = json_object(path, value)?;
            if map.len() > *max {
                return Err(format!(
                    "{path} has {} entries: at most {max} are allowed",
                    map.len()
                ));
            }
            for (key, v) in map {
                if !string(keys, key) {
                    return Err(format!("{path}: {key:?} is not a valid name here"));
                }
                value_at(&format!("{path}.{key}"), values, v, limits)?;
            }
            Ok(())
        }
        Kind::Object(nested) => object(path, nested, value, limits),
        Kind::AnyOf(schemas) => schemas
            .iter()
            .any(|s| value_at(path, s, value, limits).is_ok())
            .then_some(())
            .ok_or_else(bad),
        Kind::Free { depth, bytes } => {
            json_object(path, value)?;
            if nesting(value) > *depth {
                return Err(format!("{path} is nested more than {depth} levels deep"));
            }
            let size = value.to_string().len();
            if size > *bytes {
                return Err(format!(
                    "{path} is {size} bytes as JSON: at most {bytes} are allowed"
                ));
            }
            Ok(())
        }
    }
}

fn json_object<'a>(path: &str, value: &'a Value) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{path} must be a JSON object"))
}

/// A whole number: an integer, or a float without a fraction.
pub fn whole(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
            .map(|f| f as i64)
    })
}

/// How deep `value` nests objects and lists (a scalar is 0).
pub fn nesting(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        Value::Array(list) => 1 + list.iter().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether `text` keeps the rules of a string.
fn string(rules: &Str, text: &str) -> bool {
    let chars = text.chars().count();
    if chars < rules.min || chars > rules.max {
        return false;
    }
    let formatted = match rules.format {
        Some("ipv4") => text.parse::<Ipv4Addr>().is_ok(),
        Some("ipv6") => text.parse::<Ipv6Addr>().is_ok(),
        _ => true,
    };
    formatted && rules.pattern.is_none_or(|p| matches(p, text))
}

/// Whether `text` matches `pattern`, each pattern compiled once.
fn matches(pattern: &'static str, text: &str) -> bool {
    static COMPILED: OnceLock<Mutex<HashMap<&'static str, Regex>>> = OnceLock::new();
    let mut compiled = COMPILED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let regex = compiled.entry(pattern).or_insert_with(|| {
        // The table's patterns are constants, each compiled by a unit test.
        Regex::new(pattern).unwrap_or_else(|_| Regex::new("$^").expect("a valid regex"))
    });
    regex.is_match(text)
}
