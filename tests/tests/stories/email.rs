//! E-mail notifications reach a real SMTP server on loopback (aiosmtpd):
//! the right messages, once each, with the original's subjects, a text and
//! an HTML part; and an SMTP outage delays mail without losing it.

use std::time::{Duration, Instant};

use fastlane_tests::smtp::{Mail, SmtpSink, free_port};
use fastlane_tests::{Server, image};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

async fn wait_mails(sink: &SmtpSink, count: usize, limit: Duration) -> Vec<Mail> {
    let deadline = Instant::now() + limit;
    loop {
        let mails = sink.mails();
        if mails.len() >= count || Instant::now() > deadline {
            return mails;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn smtp_env(port: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SMTP_HOST", "127.0.0.1".to_owned()),
        ("SMTP_PORT", port.to_owned()),
        ("SMTP_FROM", "fastlane@example.com".to_owned()),
        ("SMTP_RETRY_MIN_MS", "200".to_owned()),
        ("STOP_GRACE_SECONDS", "1".to_owned()),
    ]
}

async fn start(port: u16) -> anyhow::Result<Server> {
    let port = port.to_string();
    let env = smtp_env(&port);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(&env).await
}

fn subjects(mails: &[Mail]) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = mails
        .iter()
        .map(|m| {
            (
                m["to"].as_str().unwrap_or_default().to_owned(),
                m["subject"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

#[tokio::test]
async fn success_failure_and_timeout_each_send_the_right_mails_once() -> anyhow::Result<()> {
    let port = free_port()?;
    let sink = SmtpSink::start(port)?;
    let server = start(port).await?;
    let notify = json!({"succeeds": ["ok@example.com"], "fails": ["ko@example.com"], "finishes": ["all@example.com"]});
    let ok = server
        .submit("mail", json!({"image": image(), "command": "echo mailed", "notify": notify, "envs": {"SECRET_TOKEN": "hunter2"}}))
        .await?;
    let ko = server
        .submit(
            "mail",
            json!({"image": image(), "command": "sh -c 'exit 3'", "notify": notify}),
        )
        .await?;
    let slow = server
        .submit(
            "mail",
            json!({"image": image(), "command": "sleep 30", "timeout": 1, "notify": notify}),
        )
        .await?;
    for created in [&ok, &ko, &slow] {
        server
            .wait_finished(created["executionUrl"].as_str().expect("url"), LIMIT)
            .await?;
    }
    wait_mails(&sink, 5, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails = sink.mails();
    let job = |c: &serde_json::Value| format!("mail/{}", c["jobId"].as_str().unwrap_or_default());
    let mut expected = vec![
        (
            "ok@example.com".to_owned(),
            format!("[Fastlane] Job {} succeeded!", job(&ok)),
        ),
        (
            "all@example.com".to_owned(),
            format!("[Fastlane] Job {} finished with exit code 0!", job(&ok)),
        ),
        (
            "ko@example.com".to_owned(),
            format!("[Fastlane] Job {} failed with exit code 3!", job(&ko)),
        ),
        (
            "all@example.com".to_owned(),
            format!("[Fastlane] Job {} finished with exit code 3!", job(&ko)),
        ),
        (
            "all@example.com".to_owned(),
            format!(
                "[Fastlane] Job {} finished with status timedout!",
                job(&slow)
            ),
        ),
    ];
    expected.sort();
    assert_eq!(subjects(&mails), expected);

    let success = mails
        .iter()
        .find(|m| m["to"] == "ok@example.com")
        .expect("the success mail");
    assert_eq!(success["from"], "fastlane@example.com");
    assert_eq!(success["contentType"], "multipart/alternative");
    let text = success["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Please do not reply") && text.contains("mailed"),
        "{text}"
    );
    assert!(
        text.contains(ok["jobUrl"].as_str().unwrap_or_default()),
        "{text}"
    );
    let html = success["html"].as_str().unwrap_or_default();
    assert!(
        html.contains("[View Job Details]") && html.contains("<pre>"),
        "{html}"
    );
    assert!(!text.contains("hunter2") && !html.contains("hunter2"));

    // Each delivery is recorded once the server has it: wait for both.
    let (execution, dispatch) = server
        .wait_dispatches(
            ok["executionUrl"].as_str().expect("url"),
            "emailDispatch",
            2,
        )
        .await?;
    assert_eq!(dispatch.len(), 2, "{execution}");
    assert!(dispatch.iter().all(|d| d["error"].is_null()));
    Ok(())
}

#[tokio::test]
async fn an_smtp_outage_delays_mail_and_recovery_delivers_it() -> anyhow::Result<()> {
    let port = free_port()?;
    let server = start(port).await?;
    let created = server
        .submit(
            "mail-outage",
            json!({"image": image(), "command": "echo late", "notify": {"finishes": ["ops@example.com"]}}),
        )
        .await?;
    let url = created["executionUrl"].as_str().expect("url");
    server.wait_finished(url, LIMIT).await?;
    // Nothing listens on the SMTP port yet: attempts fail and are recorded.
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, execution) = server.get(url).await?;
        let failed = execution["execution"]["metadata"]["emailDispatch"]
            .as_array()
            .map_or(0, |d| d.iter().filter(|d| d["error"].is_string()).count());
        if failed >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempt recorded: {execution}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sink = SmtpSink::start(port)?;
    let mails = wait_mails(&sink, 1, LIMIT).await;
    assert_eq!(mails.len(), 1, "the mail arrives once the server is back");
    assert_eq!(
        mails[0]["subject"],
        format!(
            "[Fastlane] Job mail-outage/{} finished with exit code 0!",
            created["jobId"].as_str().unwrap_or_default()
        )
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.mails().len(), 1, "and only once");
    Ok(())
}
