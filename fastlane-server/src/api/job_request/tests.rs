//! The parser's unit tests: what it reads, and the message of each refusal.

use super::*;
use serde_json::json;

fn error(body: Value) -> String {
    parse(&body, &Limits::default(), 1800, Utc::now()).expect_err("invalid")
}

#[test]
fn a_full_request_is_read() {
    let spec = parse(
        &json!({
            "image": "busybox:1.36", "command": "sh -c 'echo hi'",
            "envs": {"A": "x", "N": 3, "B": true},
            "metadata": {"who": "me"}, "retries": 2, "timeout": 5000, "expiration": 2000000000,
            "notify": {"fails": ["ops@example.com"]},
            "webhooks": {"finishes": [{"url": "http://h/x", "method": "put", "retries": 1}]},
            "additionalDNSEntries": {"db": "10.0.0.1"}
        }),
        &Limits::default(),
        1800,
        Utc::now(),
    )
    .expect("valid");
    assert_eq!(spec.envs["N"], "3");
    assert_eq!(spec.envs["B"], "true");
    assert_eq!(spec.timeout_seconds, 1800, "capped by the hard limit");
    assert_eq!(spec.retries, 2);
    assert_eq!(spec.notify.fails, ["ops@example.com"]);
    assert_eq!(spec.webhooks.finishes[0].method.as_deref(), Some("PUT"));
    assert_eq!(
        spec.additional_dns_entries,
        [("db".to_owned(), "10.0.0.1".to_owned())]
    );
    assert_eq!(spec.custom.expect("custom")["who"], "me");
}

#[test]
fn every_bad_field_is_named() {
    let base = || json!({"image": "busybox", "command": "true"});
    let with = |field: &str, value: Value| {
        let mut body = base();
        body[field] = value;
        body
    };
    let cases = [
        (json!([1, 2]), "must be a JSON object"),
        (
            json!({}),
            "image and command must be filled in the request.",
        ),
        (
            json!({"image": "busybox"}),
            "image and command must be filled",
        ),
        (
            json!({"image": 3, "command": "x"}),
            "image must be a string",
        ),
        (
            json!({"image": " ", "command": "x"}),
            "image must not be empty",
        ),
        (
            with("command", json!("echo 'open")),
            "command cannot be split",
        ),
        (with("comand", json!("x")), "unknown field \"comand\""),
        (with("envs", json!({"A": {"b": 1}})), "envs.A must be"),
        (with("envs", json!("A=1")), "envs must be a JSON object"),
        (
            with("metadata", json!("qwe")),
            "metadata must be a JSON object",
        ),
        (with("retries", json!(-1)), "retries must be"),
        (with("retries", json!("3")), "retries must be"),
        (
            with("timeout", json!("abc")),
            "timeout must be a positive number",
        ),
        (
            with("timeout", json!(0)),
            "timeout must be a positive number",
        ),
        (with("expiration", json!("tomorrow")), "expiration must be"),
        (with("notify", json!({"fails": ["nobody"]})), "notify.fails"),
        (with("notify", json!({"fail": []})), "unknown key \"fail\""),
        (
            with("webhooks", json!({"fails": [{"url": "ftp://x"}]})),
            "webhooks.fails[0].url",
        ),
        (
            with(
                "webhooks",
                json!({"fails": [{"url": "http://x", "method": "TRACE"}]}),
            ),
            "method",
        ),
        (
            with("additionalDNSEntries", json!({"db": "nope"})),
            "additionalDNSEntries.db",
        ),
        (
            with("startIn", json!("5")),
            "startIn must be a string like 10s",
        ),
        (with("startIn", json!(5)), "startIn must be a string"),
        (with("startAt", json!("noon")), "startAt"),
        (with("cron", json!("* * *")), "must have 5 fields"),
        (
            with("cron", json!("61 * * * *")),
            "is not a valid cron expression",
        ),
        (
            with("cronTimezone", json!("UTC")),
            "cronTimezone only goes with cron",
        ),
        (
            with("concurrencyPolicy", json!("Sometimes")),
            "concurrencyPolicy",
        ),
        (with("backoff", json!({"factor": 0.5})), "backoff.factor"),
        (
            with("backoff", json!({"minMs": 10, "maxMs": 5})),
            "backoff.maxMs",
        ),
        (with("cpuLimit", json!(0)), "cpuLimit"),
        (with("memoryLimit", json!("lots")), "memoryLimit"),
        (with("memoryLimit", json!("1k")), "at least 6m"),
    ];
    for (body, expected) in cases {
        let message = error(body.clone());
        assert!(message.contains(expected), "{body}: {message}");
    }
}

#[test]
fn one_schedule_at_most_and_each_form_is_read() {
    let now = Utc::now();
    let job = |extra: Value| {
        let mut body = json!({"image": "busybox", "command": "true"});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        parse(&body, &Limits::default(), 1800, now)
    };
    let both = job(json!({"startIn": "5m", "cron": "* * * * *"})).expect_err("two");
    assert_eq!(
        both,
        "Only ONE of 'startAt', 'startIn' and 'cron' should be in the request."
    );
    assert_eq!(
        job(json!({"startIn": "2m30s"})).expect("valid").schedule,
        Schedule::At {
            at: now + chrono::Duration::seconds(150)
        }
    );
    assert_eq!(
        job(json!({"startAt": 1})).expect("valid").schedule,
        Schedule::At { at: now },
        "a past startAt means now"
    );
    let cron = job(json!({"cron": "*/5 * * * *", "cronTimezone": "Europe/Paris", "concurrencyPolicy": "Forbid"}))
            .expect("valid");
    assert_eq!(
        cron.schedule,
        Schedule::Cron {
            expression: "*/5 * * * *".into(),
            timezone: Some("Europe/Paris".into())
        }
    );
    assert_eq!(cron.concurrency_policy, ConcurrencyPolicy::Forbid);
}

#[test]
fn nulls_mean_absent() {
    let spec = parse(
        &json!({"image": "busybox", "command": "true", "envs": null, "timeout": null}),
        &Limits::default(),
        1800,
        Utc::now(),
    )
    .expect("valid");
    assert!(spec.envs.is_empty());
    assert_eq!(spec.timeout_seconds, 1800);
    assert!(spec.custom.is_none());
}

#[test]
fn bounds_are_refused_naming_the_field() {
    let with = |field: &str, value: Value| {
        let mut body = json!({"image": "busybox", "command": "true"});
        body[field] = value;
        body
    };
    let mut deep = json!(1);
    for _ in 0..33 {
        deep = json!({"d": deep});
    }
    let many_envs: serde_json::Map<String, Value> =
        (0..257).map(|i| (format!("E{i}"), json!("x"))).collect();
    let hooks: Vec<Value> = (0..21).map(|_| json!({"url": "http://h/x"})).collect();
    let addresses: Vec<Value> = (0..30)
        .map(|i| json!(format!("u{i}@example.com")))
        .collect();
    let dns: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("h{i}"), json!("10.0.0.1")))
        .collect();
    let cases = [
        (
            with("metadata", deep),
            "metadata is nested more than 32 levels deep",
        ),
        (
            with("metadata", json!({"pad": "x".repeat(64 * 1024)})),
            "metadata is 65546 bytes as JSON: at most 65536",
        ),
        (
            with("envs", Value::Object(many_envs)),
            "envs has 257 entries: at most 256",
        ),
        (
            with("envs", json!({"A=B": "x"})),
            "envs: \"A=B\" is not a valid name",
        ),
        (
            with("envs", json!({"A": "x".repeat(40_000)})),
            "envs.A must be a string (at most 32768 characters)",
        ),
        (
            with("webhooks", json!({"fails": hooks})),
            "webhooks.fails has 21 items: at most 20",
        ),
        (
            with(
                "notify",
                json!({"fails": addresses.clone(), "succeeds": addresses}),
            ),
            "notify has 60 e-mail addresses: at most 50",
        ),
        (
            with("additionalDNSEntries", Value::Object(dns)),
            "additionalDNSEntries has 65 entries: at most 64",
        ),
        (
            with("additionalDNSEntries", json!({"a b": "10.0.0.1"})),
            "additionalDNSEntries: \"a b\" is not a valid name",
        ),
        (
            with("retries", json!(101)),
            "retries must be a whole number from 0 to 100",
        ),
        (
            with("concurrencyPolicy", json!("allow")),
            "concurrencyPolicy must be Allow, Forbid or Replace",
        ),
        (
            with(
                "webhooks",
                json!({"fails": [{"url": "http://h", "headers": {"X": "a\r\nB: c"}}]}),
            ),
            "webhooks.fails[0].headers.X must be a string without line breaks",
        ),
        (
            with("webhooks", json!({"fails": [{}]})),
            "webhooks.fails[0].url must be given",
        ),
        (with("startIn", json!("1000d")), "startIn must be"),
    ];
    for (body, expected) in cases {
        let message = error(body.clone());
        assert!(message.contains(expected), "{expected:?}: {message}");
    }
}

#[test]
fn limits_come_from_the_configuration() {
    let hooks: Vec<Value> = (0..25).map(|_| json!({"url": "http://h/x"})).collect();
    let body = json!({"image": "busybox", "command": "true", "webhooks": {"fails": hooks}});
    let roomy = Limits {
        hooks_per_event: 30,
        addresses: 50,
    };
    assert!(parse(&body, &roomy, 1800, Utc::now()).is_ok());
    let strict = Limits {
        hooks_per_event: 20,
        addresses: 1,
    };
    let message = parse(&body, &strict, 1800, Utc::now()).expect_err("too many hooks");
    assert!(message.contains("at most 20"), "{message}");
    let two = json!({"image": "busybox", "command": "true",
        "notify": {"fails": ["a@b.c"], "finishes": ["d@e.f"]}});
    let message = parse(&two, &strict, 1800, Utc::now()).expect_err("too many addresses");
    assert!(message.contains("at most 1 are allowed"), "{message}");
}

#[test]
fn task_ids_keep_to_their_rule() {
    for good in [
        "hello-world",
        "a",
        "reports.daily:v2@eu_1",
        &"x".repeat(256),
    ] {
        assert!(task_id(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "a\nb",
        "a b",
        "tab\t",
        "é",
        &"x".repeat(257),
    ] {
        let message = task_id(bad).expect_err(bad);
        assert!(message.contains("is not a valid task id"), "{message}");
    }
    let pattern = regex::Regex::new(TASK_ID_PATTERN).expect("pattern");
    for id in [
        "hello-world",
        ".x",
        "a/b",
        "a\nb",
        "ok:1@2",
        &"y".repeat(257),
    ] {
        assert_eq!(pattern.is_match(id), task_id(id).is_ok(), "{id:?}");
    }
}

/// Every pattern of the table compiles, and each field's message says the
/// bounds the table holds.
#[test]
fn the_table_is_consistent() {
    use schema::{Kind, Object, Schema};
    fn visit(object: &'static Object) {
        for field in object.fields {
            schema_ok(field.name, &field.schema);
        }
    }
    fn schema_ok(name: &str, schema: &'static Schema) {
        match &schema.kind {
            Kind::Str(rules) => {
                if let Some(p) = rules.pattern {
                    assert!(p.starts_with('^') && p.ends_with('$'), "{name}: {p}");
                    regex::Regex::new(p).expect("pattern compiles");
                }
            }
            Kind::Int { min, max } if *max < 1_000_000_000_000 => {
                let must = schema.must();
                assert!(must.contains(&max.to_string()), "{name}: {must}");
                assert!(
                    *min == 0 || *min == 1 || must.contains(&min.to_string()),
                    "{name}: {must}"
                );
            }
            Kind::List { items, .. } => schema_ok(name, items),
            Kind::Map { keys, values, .. } => {
                if let Some(p) = keys.pattern {
                    regex::Regex::new(p).expect("pattern compiles");
                }
                schema_ok(name, values);
            }
            Kind::Object(object) => visit(object),
            Kind::AnyOf(schemas) => schemas.iter().for_each(|s| schema_ok(name, s)),
            _ => {}
        }
    }
    visit(&fields::JOB_REQUEST);
}

#[test]
fn a_refusal_names_the_field_at_fault_for_a_form_to_show() {
    let field = |body| field_at_fault(&error(body));
    assert_eq!(
        field(json!({"image": "b", "command": "x", "cron": "not a cron"})),
        Some("cron".to_owned())
    );
    assert_eq!(
        field(json!({"image": "b", "command": "x", "timeout": "soon"})),
        Some("timeout".to_owned())
    );
    assert_eq!(
        field(json!({"image": "b", "command": "x", "envs": {"A": [1]}})),
        Some("envs.A".to_owned())
    );
    assert_eq!(
        field(json!({"image": "b", "command": "x", "memoryLimit": "1k"})),
        Some("memoryLimit".to_owned())
    );
    assert_eq!(field(json!({"command": "x"})).as_deref(), Some("image"));
    // Not about one field of the request.
    assert_eq!(
        field(json!({"image": "b", "command": "x", "colour": 1})),
        None
    );
    assert_eq!(field_at_fault("the store is down"), None);
}
