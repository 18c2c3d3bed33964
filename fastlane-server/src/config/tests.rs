//! Loading: defaults, the file and the environment, and the errors that
//! name their key.

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn plugin_settings_are_typed_and_checked_at_load() {
    let config = Config::load(
        None,
        &env(&[
            (
                "PLUGINS",
                r#"[{"path": "/opt/p/libx.so", "config": {"a": 1}}]"#,
            ),
            ("EXECUTORS", r#"[{"match": "local-", "executor": "local"}]"#),
            (
                "NOTIFIERS",
                r#"[{"notifier": "file-events", "events": ["fails"]}]"#,
            ),
        ]),
    )
    .expect("valid");
    assert_eq!(config.plugins[0].path, PathBuf::from("/opt/p/libx.so"));
    assert!(config.executor_routes[0].pattern.is_match("local-task"));
    assert!(!config.executor_routes[0].pattern.is_match("not-local-task"));
    let subscription = &config.notifier_subscriptions[0];
    assert_eq!(
        subscription.events,
        [fastlane_sdk::NotificationEvent::Fails]
    );
    assert!(subscription.pattern.is_match("anything"));

    for (key, value, needle) in [
        ("PLUGINS", r#"[{"config": {}}]"#, "missing field `path`"),
        (
            "EXECUTORS",
            r#"[{"match": "(", "executor": "x"}]"#,
            "not a regular expression",
        ),
        (
            "NOTIFIERS",
            r#"[{"notifier": "n", "events": ["explodes"]}]"#,
            "unknown variant",
        ),
    ] {
        let err = Config::load(None, &env(&[(key, value)])).expect_err("invalid");
        let text = err.to_string();
        assert!(text.starts_with(&format!("config key {key}: ")), "{text}");
        assert!(text.contains(needle), "{text}");
    }
}

#[test]
fn defaults_load() {
    let config = Config::load(None, &env(&[("DOCKER_HOST", "tcp://d:1")])).expect("defaults");
    assert_eq!(
        config.cors,
        CorsOrigins::None,
        "no origin is trusted by default"
    );
    assert!(config.basic_auth.is_none() && config.api_tokens.is_empty());
    assert_eq!(config.hard_execution_timeout_seconds, 1800);
    assert_eq!(config.pagination_per_page, 10);
    assert_eq!(
        config.env_blacklisted_words,
        [
            "password",
            "key",
            "secret",
            "client_id",
            "token",
            "pass",
            "credential",
            "auth",
            "private",
            "cookie",
            "session",
            "dsn"
        ]
    );
    assert_eq!(config.docker_hosts[0]["hosts"][0], "tcp://d:1");
}

#[test]
fn numbers_and_json_from_env_strings_work() {
    let config = Config::load(
        None,
        &env(&[
            ("HARD_EXECUTION_TIMEOUT_SECONDS", " 60 "),
            ("EXPONENTIAL_BACKOFF_FACTOR", "1.5"),
            ("DOCKER_HOSTS", r#"{"match": "", "hosts": ["a:1"]}"#),
        ]),
    )
    .expect("valid");
    assert_eq!(config.hard_execution_timeout_seconds, 60);
    assert_eq!(config.exponential_backoff_factor, 1.5);
    assert_eq!(config.docker_hosts["hosts"][0], "a:1");
}

#[test]
fn a_bad_value_names_its_key() {
    let err = Config::load(None, &env(&[("ENABLE_CORS", "maybe")])).expect_err("bad");
    assert!(err.to_string().contains("ENABLE_CORS"), "{err}");
    let err = Config::load(None, &env(&[("BASIC_AUTH_USERNAME", "u")])).expect_err("bad");
    assert!(err.to_string().contains("go together"), "{err}");
    let config = Config::load(
        None,
        &env(&[("ENABLE_CORS", "False"), ("CORS_ORIGINS", "*")]),
    )
    .expect("valid");
    assert_eq!(config.cors, CorsOrigins::None);
    let err = Config::load(None, &env(&[("WORKER_CONCURRENCY", "many")])).expect_err("bad");
    assert!(
        err.to_string()
            .starts_with("config key WORKER_CONCURRENCY:"),
        "{err}"
    );
    let err = Config::load(None, &env(&[("DOCKER_HOSTS", "[{")])).expect_err("bad");
    assert!(err.to_string().contains("DOCKER_HOSTS"), "{err}");
    let err = Config::load(None, &env(&[("PUBLIC_BASE_URL", "example.com")])).expect_err("bad");
    assert!(err.to_string().contains("PUBLIC_BASE_URL"), "{err}");
}

#[test]
fn store_url_selects_postgres_or_mongodb() {
    let store = |url: &str| Config::load(None, &env(&[("STORE_URL", url)])).map(|c| c.store);
    assert_eq!(Config::load(None, &env(&[])).expect("valid").store, None);
    assert_eq!(store("").expect("valid"), None, "empty is unset");
    assert_eq!(
        store("postgresql://u:p@db/x").expect("valid"),
        Some(StoreLocation::Postgres {
            url: "postgresql://u:p@db/x".to_owned()
        })
    );
    let mongo = |url: &str, database: &str| {
        Some(StoreLocation::Mongo {
            url: url.to_owned(),
            database: database.to_owned(),
        })
    };
    for (url, database) in [
        (
            "mongodb://u:p@h1:27017,h2:27017/jobs?replicaSet=rs0",
            "jobs",
        ),
        ("mongodb://localhost:27017", "fastlane"),
        ("mongodb://localhost:27017/", "fastlane"),
        ("mongodb://localhost/?authSource=admin", "fastlane"),
        (
            "mongodb+srv://cluster0.example.net/fast%2Dlane",
            "fast-lane",
        ),
    ] {
        assert_eq!(store(url).expect(url), mongo(url, database), "{url}");
    }
    for (url, needle) in [
        (
            "redis://u:secret@h/0",
            "is not a postgres://, postgresql://, mongodb:// or mongodb+srv:// URL",
        ),
        ("mongodb://u:secret@h/a.b", "is not a MongoDB database name"),
        ("mongodb://u:secret@h/a%2", "badly percent-encoded"),
    ] {
        let err = store(url).expect_err(url).to_string();
        assert!(err.starts_with("config key STORE_URL: "), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("secret"), "the password is hidden: {err}");
    }
    let debug = format!("{:?}", store("mongodb://u:secret@h/x").expect("valid"));
    assert!(!debug.contains("secret"), "{debug}");
}

#[test]
fn mongodb_config_is_read_as_the_original_wrote_it() {
    let config =
        |value: &str| Config::load(None, &env(&[("MONGODB_CONFIG", value)])).map(|c| c.store);
    assert_eq!(
        config(
            r#"{"host": "mongodb://localhost:27017/fastlane", "db": "queue",
                "serverSelectionTimeoutMS": 100, "connect": false}"#
        )
        .expect("valid"),
        Some(StoreLocation::Mongo {
            url: "mongodb://localhost:27017/fastlane".to_owned(),
            database: "queue".to_owned(),
        }),
        "db wins over the URL's database; other keys are ignored"
    );
    assert_eq!(
        config(r#"{"host": "mongodb://h/tasks"}"#).expect("valid"),
        Some(StoreLocation::Mongo {
            url: "mongodb://h/tasks".to_owned(),
            database: "tasks".to_owned(),
        })
    );
    assert_eq!(
        config(r#"{"host": "mongodb+srv://h", "db": null}"#).expect("valid"),
        Some(StoreLocation::Mongo {
            url: "mongodb+srv://h".to_owned(),
            database: "fastlane".to_owned(),
        })
    );
    for (value, needle) in [
        (r#""mongodb://h/x""#, "must be a JSON object"),
        ("[1]", "must be a JSON object"),
        ("{nope", "is not valid JSON"),
        (r#"{"db": "x"}"#, "needs \"host\""),
        (r#"{"host": 27017}"#, "\"host\" must be a string"),
        (
            r#"{"host": "localhost:27017"}"#,
            "is not a mongodb:// or mongodb+srv:// URL",
        ),
        (
            r#"{"host": "mongodb://h", "db": 5}"#,
            "\"db\" must be a string",
        ),
        (
            r#"{"host": "mongodb://h", "db": "a b"}"#,
            "not a MongoDB database name",
        ),
    ] {
        let err = config(value).expect_err(value).to_string();
        assert!(err.starts_with("config key MONGODB_CONFIG: "), "{err}");
        assert!(err.contains(needle), "{value}: {err}");
    }
    let both = Config::load(
        None,
        &env(&[
            ("STORE_URL", "mongodb://h/x"),
            ("MONGODB_CONFIG", r#"{"host": "mongodb://h/x"}"#),
        ]),
    )
    .expect_err("both");
    assert!(both.to_string().contains("set only one"), "{both}");
}

#[test]
fn mongodb_config_may_be_a_table_in_the_file() {
    let dir = std::env::temp_dir().join(format!("fastlane-mongo-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("fastlane.toml");
    std::fs::write(
        &path,
        "MONGODB_CONFIG = { host = \"mongodb://h:1/a\", connect = false }\n",
    )
    .expect("write");
    let config = Config::load(Some(&path), &env(&[])).expect("valid");
    assert_eq!(
        config.store,
        Some(StoreLocation::Mongo {
            url: "mongodb://h:1/a".to_owned(),
            database: "a".to_owned(),
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn redis_urls_are_checked_at_load() {
    for url in [
        "redis://127.0.0.1:6390/0",
        "rediss://:pw@redis.example:6380/1",
        "unix:///run/redis.sock?db=2",
        "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/0",
        "redis+cluster://n1:7000,n2:7001,n3:7002",
        "rediss+sentinel://app:pw@s1,s2/mymaster/0?sentinel_username=w&sentinel_password=x",
        "rediss+cluster://app:pw@n1:7000,n2:7001",
    ] {
        let config = Config::load(None, &env(&[("REDIS_URL", url)])).expect(url);
        assert_eq!(config.redis_url.as_deref(), Some(url));
    }
    let err = Config::load(
        None,
        &env(&[("REDIS_URL", "redis+sentinel://:hunter2@s1:26379,s2:26380")]),
    )
    .expect_err("no service");
    let text = err.to_string();
    assert!(text.starts_with("config key REDIS_URL: "), "{text}");
    assert!(text.contains("service"), "{text}");
    assert!(text.contains("Accepted forms: redis://"), "{text}");
    assert!(text.contains("redis+cluster://"), "{text}");
    assert!(text.contains("rediss+sentinel://"), "{text}");
    assert!(text.contains("rediss+cluster://"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let err = Config::load(None, &env(&[("REDIS_URL", "mongodb://db")])).expect_err("scheme");
    assert!(err.to_string().contains("unknown scheme"), "{err}");

    let err = Config::load(
        None,
        &env(&[
            ("REDIS_URL", "redis+cluster://n1:7000"),
            ("REDIS_KEY_PREFIX", "{fl}"),
        ]),
    )
    .expect_err("braces");
    assert!(err.to_string().contains("REDIS_KEY_PREFIX"), "{err}");
    let config = Config::load(
        None,
        &env(&[("REDIS_URL", "redis://h/0"), ("REDIS_KEY_PREFIX", "{fl}")]),
    )
    .expect("braces are fine off a Cluster");
    assert_eq!(config.redis_key_prefix, "{fl}");
}

#[test]
fn the_file_is_read_and_the_environment_wins() {
    let dir = std::env::temp_dir().join(format!("fastlane-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("fastlane.toml");
    std::fs::write(
        &path,
        "PAGINATION_PER_PAGE = 3\nSTOP_GRACE_SECONDS = \"4\"\n\
         DOCKER_HOSTS = [{match = \"\", hosts = [\"h:2\"]}]\n",
    )
    .expect("write");
    let config = Config::load(Some(&path), &env(&[("PAGINATION_PER_PAGE", "7")])).expect("valid");
    assert_eq!(config.pagination_per_page, 7);
    assert_eq!(config.stop_grace_seconds, 4);
    assert_eq!(config.docker_hosts[0]["hosts"][0], "h:2");

    std::fs::write(&path, "SMTP_HOTS = \"x\"\n").expect("write");
    let err = Config::load(Some(&path), &env(&[])).expect_err("unknown key");
    assert!(err.to_string().contains("unknown key SMTP_HOTS"), "{err}");
}

#[test]
fn the_annotated_defaults_name_every_key_and_parse_as_toml() {
    let text = Config::annotated_defaults();
    for key in KEYS {
        assert!(text.contains(&format!("# {} = ", key.name)), "{}", key.name);
    }
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.contains(" = ") && !l.contains("(unset)"))
        .map(|l| format!("{l}\n"))
        .collect();
    let table: toml::Table = uncommented.parse().expect("defaults are valid TOML");
    assert!(table.contains_key("HARD_EXECUTION_TIMEOUT_SECONDS"));
}
