//! A submission as the server reads it: a task id and a body of any bytes.
//! The first byte of the input is the task id's length, the id follows and
//! the rest is the body. Whatever they hold, reading them must not panic,
//! must not take unbounded time or memory (libFuzzer's own limits), and
//! must either refuse them with a short message or give a job that keeps
//! the API's limits.

#![no_main]

use chrono::{TimeZone, Utc};
use fastlane_server::api::fuzzing::{HARD_TIMEOUT, read_submission};
use libfuzzer_sys::fuzz_target;

/// The longest message a refusal may carry: quoted values are cut short.
const MAX_MESSAGE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&length, rest)) = data.split_first() else {
        return;
    };
    let (task, body) = rest.split_at(usize::from(length).min(rest.len()));
    let task = String::from_utf8_lossy(task);
    let now = Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).single().expect("a valid time");
    match read_submission(&task, body, now) {
        Err(message) => {
            assert!(!message.is_empty(), "a refusal says why");
            assert!(message.len() <= MAX_MESSAGE, "a refusal of {} bytes", message.len());
        }
        Ok(spec) => {
            assert!(!task.chars().any(char::is_control), "task id {task:?} accepted");
            assert!(!spec.image.is_empty(), "a job without an image");
            let words = shlex::split(&spec.command).unwrap_or_default();
            assert!(!words.is_empty(), "command {:?} has no words", spec.command);
            assert!(spec.envs.len() <= 256, "{} envs", spec.envs.len());
            assert!((1..=HARD_TIMEOUT).contains(&spec.timeout_seconds), "timeout {}", spec.timeout_seconds);
            let hooks = &spec.webhooks;
            for list in [&hooks.starts, &hooks.succeeds, &hooks.fails, &hooks.finishes] {
                assert!(list.len() <= 20, "{} hooks for one event", list.len());
            }
            let notify = &spec.notify;
            let addresses = notify.succeeds.len() + notify.fails.len() + notify.finishes.len();
            assert!(addresses <= 50, "{addresses} addresses");
        }
    }
});
