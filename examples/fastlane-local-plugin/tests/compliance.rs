//! This plugin against the SDK's compliance kit, the way a third party
//! checks their plugin before shipping it.

use fastlane_local_plugin::{FileNotifierFactory, LocalExecutorFactory};
use fastlane_sdk::testing::{ExecutorSubject, NotifierSubject, check_executor, check_notifier};
use serde_json::json;

#[tokio::test]
async fn the_local_executor_keeps_the_executor_contract() {
    let workdir = std::env::temp_dir().join(format!("local-plugin-{}", std::process::id()));
    check_executor(&ExecutorSubject {
        factory: &LocalExecutorFactory,
        config: json!({"workdir": workdir}),
        invalid_config: json!({"workdir": 5}),
        image: "ignored".into(),
        task_id: "compliance".into(),
        merged_streams: false,
    })
    .await;
}

#[tokio::test]
async fn the_file_notifier_writes_one_line_per_delivery() {
    let file =
        std::env::temp_dir().join(format!("local-plugin-events-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let sent = check_notifier(&NotifierSubject {
        factory: &FileNotifierFactory,
        config: json!({"events_file": file}),
        invalid_config: json!({}),
        target: json!("audit"),
    })
    .await;
    let written = std::fs::read_to_string(&file).expect("events file");
    let events: Vec<String> = written
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).expect("one JSON object per line");
            assert_eq!(value["target"], "audit");
            value["event"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    let expected: Vec<String> = sent.iter().map(|d| d.event.as_str().to_owned()).collect();
    assert_eq!(events, expected);
}
