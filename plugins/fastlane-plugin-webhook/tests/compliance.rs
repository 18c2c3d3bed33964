//! The SDK's compliance kit against the webhook notifier, delivering to a
//! real HTTP listener on loopback that records what it receives (so the
//! notifier is configured to allow the local network).

use std::sync::{Arc, Mutex};

use fastlane_plugin_webhook::WebhookNotifierFactory;
use fastlane_sdk::testing::{NotifierSubject, check_notifier};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers every request 200 and keeps its JSON body.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            // Read the head, then as much body as Content-Length says.
            let body = loop {
                let Ok(n) = stream.read(&mut buf).await else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    continue;
                };
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break Some(body.to_owned());
                }
            };
            if let Some(body) = body.and_then(|b| serde_json::from_str(&b).ok()) {
                kept.lock().expect("lock").push(body);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (url, bodies)
}

#[tokio::test]
async fn the_webhook_notifier_keeps_the_notifier_contract() {
    let (url, bodies) = receiver().await;
    let sent = check_notifier(&NotifierSubject {
        factory: &WebhookNotifierFactory,
        config: json!({"timeoutSeconds": 5, "allowLocalNetwork": true}),
        invalid_config: json!({"timeoutSeconds": "soon"}),
        target: json!({"url": url}),
    })
    .await;
    let received: Vec<String> = bodies
        .lock()
        .expect("lock")
        .iter()
        .map(|body| body["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = sent.iter().map(|d| d.event.as_str().to_owned()).collect();
    assert_eq!(received, expected);
}
