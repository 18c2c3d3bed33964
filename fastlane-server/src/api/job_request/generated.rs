//! Requests generated from the committed OpenAPI document (the request
//! schema of `createJob` in `openapi/fastlane.json`), checked against the
//! parser: every instance of the schema is accepted, unless it breaks one
//! of the rules the descriptions state (at most one of `startIn`,
//! `startAt` and `cron`; `cronTimezone` only with `cron`; `backoff.maxMs`
//! at least `minMs`; a `memoryLimit` size of at least 6m); and every
//! instance made invalid (a wrong type, a value out of its bounds, an
//! unknown field, too deep, too many items) is refused with a message
//! naming the field.
//!
//! This is the project's fuzzing of request parsing: `cargo fuzz` needs a
//! nightly toolchain and `cargo-fuzz`, which the test command does not
//! have; proptest runs in every `cargo test`.

use chrono::Utc;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use super::{Limits, parse};

/// The committed document.
fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/fastlane.json");
    let text = std::fs::read_to_string(path).expect("openapi/fastlane.json is readable");
    serde_json::from_str(&text).expect("openapi/fastlane.json is JSON")
}

/// The request schema of `createJob`.
fn request_schema(document: &Value) -> Value {
    let operation = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .find(|op| op["operationId"] == "createJob")
        .expect("createJob");
    operation["requestBody"]["content"]["application/json"]["schema"].clone()
}

/// The schema `schema` stands for, `$ref`s and single `allOf`s followed,
/// with the description of the outer one.
fn resolve(document: &Value, schema: &Value) -> Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return resolve(document, &document["components"]["schemas"][name]);
    }
    if let Some([only]) = schema["allOf"].as_array().map(Vec::as_slice) {
        return resolve(document, only);
    }
    schema.clone()
}

fn usize_of(schema: &Value, key: &str, default: usize) -> usize {
    schema[key]
        .as_u64()
        .map_or(default, |n| usize::try_from(n).unwrap_or(default))
}

/// Keys of maps: OpenAPI 3.0 cannot describe them; these suit every map
/// of the request (env names, host names, header names).
fn key() -> BoxedStrategy<String> {
    "[a-z][a-z0-9_]{0,7}".boxed()
}

/// A free-form object at most `depth` levels deep.
fn free(depth: usize) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::from),
        Just(Value::Null),
    ];
    let nested = leaf.prop_recursive(depth.saturating_sub(1) as u32, 24, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map(key(), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    proptest::collection::btree_map(key(), nested, 0..3)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed()
}

/// Instances of `schema`.
fn valid(document: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let schema = resolve(document, schema);
    if let Some(options) = schema["anyOf"].as_array() {
        let strategies: Vec<_> = options.iter().map(|o| valid(document, o)).collect();
        return proptest::strategy::Union::new(strategies).boxed();
    }
    if let Some(values) = schema["enum"].as_array() {
        return proptest::sample::select(values.clone()).boxed();
    }
    match schema["type"].as_str().unwrap_or_default() {
        "string" => string(&schema),
        "integer" => {
            let min = schema["minimum"].as_f64().unwrap_or(i64::MIN as f64) as i64;
            let max = schema["maximum"].as_f64().map_or(i64::MAX, |m| m as i64);
            prop_oneof![Just(min), Just(max), min..=max]
                .prop_map(Value::from)
                .boxed()
        }
        "number" => {
            let min = schema["minimum"].as_f64().unwrap_or(-1e9);
            let max = schema["maximum"].as_f64().unwrap_or(1e9);
            let exclusive = schema["exclusiveMinimum"] == true;
            let low = if exclusive { min + 1e-6 } else { min };
            prop_oneof![Just(max), low..=max]
                .prop_filter("exclusive minimum", move |n| !exclusive || *n > min)
                .prop_map(Value::from)
                .boxed()
        }
        "boolean" => any::<bool>().prop_map(Value::from).boxed(),
        "array" => {
            let items = valid(document, &schema["items"]);
            let max = usize_of(&schema, "maxItems", 3).min(3);
            proptest::collection::vec(items, 0..=max)
                .prop_map(Value::from)
                .boxed()
        }
        "object" if schema.get("x-maxDepth").is_some() => {
            free(usize_of(&schema, "x-maxDepth", 3).min(4))
        }
        "object" if schema.get("properties").is_some() => object(document, &schema),
        "object" => {
            let values = valid(document, &schema["additionalProperties"]);
            let max = usize_of(&schema, "maxProperties", 3).min(3);
            proptest::collection::btree_map(key(), values, 0..=max)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
                .boxed()
        }
        other => panic!("the generator does not know type {other:?}: {schema}"),
    }
}

fn string(schema: &Value) -> BoxedStrategy<Value> {
    let min = usize_of(schema, "minLength", 0);
    let max = usize_of(schema, "maxLength", 64);
    let fits = move |s: &String| (min..=max).contains(&s.chars().count());
    let strategy = match (schema["format"].as_str(), schema["pattern"].as_str()) {
        (Some("ipv4"), _) => any::<std::net::Ipv4Addr>()
            .prop_map(|ip| ip.to_string())
            .boxed(),
        (Some("ipv6"), _) => any::<std::net::Ipv6Addr>()
            .prop_map(|ip| ip.to_string())
            .boxed(),
        (_, Some(pattern)) => {
            // proptest generates from a regex without anchors; the
            // document's patterns are anchored at both ends.
            let bare = pattern.trim_start_matches('^').trim_end_matches('$');
            proptest::string::string_regex(&format!("(?:{bare})"))
                .unwrap_or_else(|e| panic!("pattern {pattern:?}: {e}"))
                .boxed()
        }
        // A string checked beyond its schema (a command, a cron
        // expression, a time zone): the document's example.
        _ => match schema["example"].as_str() {
            Some(example) => Just(example.to_owned()).boxed(),
            None => "[a-zA-Z0-9 ]{0,16}".boxed(),
        },
    };
    strategy
        .prop_filter("length", fits)
        .prop_map(Value::from)
        .boxed()
}

fn object(document: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let required: Vec<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = schema["properties"]
        .as_object()
        .expect("properties")
        .iter()
        .map(|(name, property)| {
            let name = name.clone();
            let value = valid(document, property);
            if required.contains(&name) {
                value.prop_map(move |v| Some((name.clone(), v))).boxed()
            } else {
                proptest::option::of(value.prop_map(move |v| (name.clone(), v))).boxed()
            }
        })
        .collect();
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect()))
        .boxed()
}

/// Why the descriptions say a schema instance is refused, if they do
/// (any of the rules it breaks may be the one reported).
fn described_refusals(body: &Value) -> Vec<&'static str> {
    let mut broken = Vec::new();
    let schedules = ["startIn", "startAt", "cron"]
        .iter()
        .filter(|f| body.get(**f).is_some())
        .count();
    if schedules > 1 {
        broken.push("Only ONE of");
    }
    if body.get("cronTimezone").is_some() && body.get("cron").is_none() {
        broken.push("cronTimezone only goes with cron");
    }
    if let Some(backoff) = body.get("backoff") {
        let ms = |k: &str, default: i64| backoff.get(k).and_then(Value::as_i64).unwrap_or(default);
        if ms("maxMs", 3_600_000) < ms("minMs", 1000) {
            broken.push("backoff.maxMs");
        }
    }
    if let Some(size) = body.get("memoryLimit").and_then(Value::as_str) {
        let lower = size.to_lowercase();
        let digits = lower.trim_end_matches(['k', 'm', 'g', 'b']);
        let unit: u128 = match lower[digits.len()..].chars().next() {
            Some('k') => 1 << 10,
            Some('m') => 1 << 20,
            Some('g') => 1 << 30,
            _ => 1,
        };
        let bytes = digits.parse::<u128>().unwrap_or(0) * unit;
        if bytes < 6 << 20 || bytes > u128::from(u64::MAX) {
            broken.push("memoryLimit");
        }
    }
    broken
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_global_rejects: 1_000_000,
        ..Config::default()
    })
}

#[test]
fn every_instance_of_the_document_schema_is_accepted_unless_a_described_rule_refuses_it() {
    let document = document();
    let strategy = valid(&document, &request_schema(&document));
    runner(512)
        .run(&strategy, |body| {
            let result = parse(&body, &Limits::default(), 1800, Utc::now());
            let broken = described_refusals(&body);
            match result {
                Ok(_) => prop_assert!(
                    broken.is_empty(),
                    "accepted {body}, which breaks {broken:?}"
                ),
                Err(message) => prop_assert!(
                    broken.iter().any(|rule| message.contains(rule)),
                    "refused {body}: {message}"
                ),
            }
            Ok(())
        })
        .expect("the parser agrees with the document");
}

/// A way to break an instance: where, and what the message must name.
#[derive(Debug, Clone)]
struct Broken {
    body: Value,
    names: String,
}

/// The places of `body` described by `schema`: (JSON pointer, the field
/// name the message must contain, the resolved schema).
fn places(
    document: &Value,
    schema: &Value,
    value: &Value,
    pointer: &str,
    name: &str,
    out: &mut Vec<(String, String, Value)>,
) {
    let schema = resolve(document, schema);
    out.push((pointer.to_owned(), name.to_owned(), schema.clone()));
    match value {
        Value::Object(map) if schema.get("properties").is_some() => {
            for (key, v) in map {
                let property = &schema["properties"][key];
                places(document, property, v, &format!("{pointer}/{key}"), key, out);
            }
        }
        Value::Object(map) if schema.get("x-maxDepth").is_none() => {
            for (key, v) in map {
                let values = &schema["additionalProperties"];
                places(document, values, v, &format!("{pointer}/{key}"), name, out);
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                places(
                    document,
                    &schema["items"],
                    v,
                    &format!("{pointer}/{i}"),
                    name,
                    out,
                );
            }
        }
        _ => {}
    }
}

/// The JSON types `schema` allows.
fn types(schema: &Value) -> Vec<String> {
    if let Some(options) = schema["anyOf"].as_array() {
        return options.iter().flat_map(types).collect();
    }
    if schema.get("enum").is_some() {
        return vec!["string".to_owned()];
    }
    vec![schema["type"].as_str().unwrap_or_default().to_owned()]
}

/// `value` made invalid at one of its places, by `choice`.
fn broken(
    document: &Value,
    schema: &Value,
    body: &Value,
    choice: (usize, usize),
) -> Option<Broken> {
    let mut found = Vec::new();
    places(document, schema, body, "", "body", &mut found);
    // The body itself is the first place ("body"); the others name their field.
    let (pointer, name, schema) = found.get(choice.0 % found.len())?.clone();
    let types = types(&schema);
    let mut body = body.clone();
    let target = body.pointer_mut(&pointer)?;
    let mut names = name.clone();
    match choice.1 % 4 {
        // A wrong type.
        0 => {
            *target = if !types.iter().any(|t| t == "string") {
                json!("surely-wrong")
            } else if !types.iter().any(|t| t == "object") {
                json!({"wrong": ["type"]})
            } else {
                json!([true])
            };
        }
        // Out of its bounds.
        1 => {
            if let (Some(max), true) = (schema["maximum"].as_f64(), types == ["integer"]) {
                *target = json!((max as i64).checked_add(1)?);
            } else if let (Some(min), true) = (schema["minimum"].as_f64(), types == ["number"]) {
                *target = json!(min - 1.0);
            } else if let Some(max) = schema["maxLength"]
                .as_u64()
                .filter(|_| types == ["string"] && schema.get("enum").is_none())
            {
                let first = target.as_str()?.chars().next().unwrap_or('1');
                *target = json!(std::iter::repeat_n(first, max as usize + 1).collect::<String>());
            } else if let (Some(max), Some(list)) =
                (schema["maxItems"].as_u64(), target.as_array_mut())
            {
                let item = list.first()?.clone();
                list.resize(max as usize + 1, item);
            } else if let Some(max) = schema["maxProperties"].as_u64() {
                let map = target.as_object_mut()?;
                let item = map.values().next()?.clone();
                for i in 0..=max {
                    map.insert(format!("k{i}"), item.clone());
                }
            } else if schema.get("enum").is_some() {
                *target = json!("NotOneOfThem");
            } else {
                return None;
            }
        }
        // An unknown field.
        2 => {
            if schema["additionalProperties"] != false {
                return None;
            }
            target
                .as_object_mut()?
                .insert("zzUnknown".to_owned(), json!(1));
            names = "zzUnknown".to_owned();
        }
        // Too deep or too large.
        _ => {
            let depth = usize_of(&schema, "x-maxDepth", 0);
            if depth == 0 {
                return None;
            }
            let mut deep = json!(1);
            for _ in 0..=depth {
                deep = json!({"d": deep});
            }
            *target = if choice.0.is_multiple_of(2) {
                deep
            } else {
                json!({"pad": "x".repeat(usize_of(&schema, "x-maxBytes", 0))})
            };
        }
    }
    Some(Broken { body, names })
}

#[test]
fn every_instance_made_invalid_is_refused_naming_the_field() {
    let document = document();
    let schema = request_schema(&document);
    let bodies = valid(&document, &schema);
    let strategy =
        (bodies, any::<(usize, usize)>()).prop_filter_map("a place that can be broken that way", {
            let document = document.clone();
            let schema = schema.clone();
            move |(body, choice)| broken(&document, &schema, &body, choice)
        });
    runner(1024)
        .run(&strategy, |broken| {
            let result = parse(&broken.body, &Limits::default(), 1800, Utc::now());
            let message = match result {
                Ok(_) => return Err(TestCaseError::fail(format!("accepted {}", broken.body))),
                Err(message) => message,
            };
            prop_assert!(
                message.contains(&broken.names),
                "{}: {message:?} does not name {:?}",
                broken.body,
                broken.names
            );
            Ok(())
        })
        .expect("the parser refuses what the document refuses");
}

#[test]
fn the_document_says_what_the_parser_checks() {
    let document = document();
    let schema = resolve(&document, &request_schema(&document));
    assert_eq!(schema["additionalProperties"], false);
    let property = |name: &str| resolve(&document, &schema["properties"][name]);
    assert_eq!(property("retries")["maximum"], 100.0);
    assert_eq!(property("metadata")["x-maxDepth"], 32);
    assert_eq!(property("metadata")["x-maxBytes"], 65536);
    assert_eq!(property("envs")["maxProperties"], 256);
    assert_eq!(
        property("concurrencyPolicy")["enum"],
        json!(["Allow", "Forbid", "Replace"])
    );
    let memory: Vec<Value> = property("memoryLimit")["anyOf"]
        .as_array()
        .expect("anyOf")
        .iter()
        .map(|s| s["type"].clone())
        .collect();
    assert_eq!(memory, [json!("integer"), json!("string")]);
    let envs = types(&resolve(
        &document,
        &property("envs")["additionalProperties"],
    ));
    assert_eq!(envs, ["string", "number", "boolean"]);
    let webhooks = resolve(&document, &property("webhooks"));
    assert_eq!(webhooks["additionalProperties"], false);
    assert_eq!(
        resolve(&document, &webhooks["properties"]["fails"])["maxItems"],
        20
    );
}
