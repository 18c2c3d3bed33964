//! Proxies in front of real servers: a TCP proxy that slows what comes
//! back (a slow link to the test registry, so that what happens while a
//! transfer is under way can be watched; TLS passes through it untouched),
//! and a Unix-socket proxy that counts an engine's API requests of one kind.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Proxies `listen` to `upstream`, the upstream's answers at most
/// `bytes_per_second`, until the handle is aborted or dropped with the
/// test's runtime.
pub async fn slow_proxy(
    listen: &str,
    upstream: &str,
    bytes_per_second: u64,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(listen).await?;
    let upstream = upstream.to_owned();
    Ok(tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(&upstream).await {
                    relay(client, server, bytes_per_second).await;
                }
            });
        }
    }))
}

/// Copies both ways until either side closes, the server's side slowly.
async fn relay(client: TcpStream, server: TcpStream, bytes_per_second: u64) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match server_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client_write.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        let pause = Duration::from_secs_f64(n as f64 / bytes_per_second.max(1) as f64);
        tokio::time::sleep(pause).await;
    }
    let _ = client_write.shutdown().await;
    up.abort();
}

/// What a [`counting_proxy`] saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Requests whose path contains the needle.
    pub matching: std::sync::atomic::AtomicUsize,
}

/// Proxies the Unix socket `listen` to the Unix socket `upstream` (a
/// container engine's API), counting the requests whose target contains
/// `needle` (`/containers/json`: the listings).
pub async fn counting_proxy(
    listen: &std::path::Path,
    upstream: &std::path::Path,
    needle: &'static str,
) -> anyhow::Result<(JoinHandle<()>, std::sync::Arc<Seen>)> {
    use tokio::net::{UnixListener, UnixStream};

    let _ = std::fs::remove_file(listen);
    let listener = UnixListener::bind(listen)?;
    let upstream = upstream.to_owned();
    let seen = std::sync::Arc::new(Seen::default());
    let counted = std::sync::Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, seen) = (upstream.clone(), std::sync::Arc::clone(&counted));
            tokio::spawn(async move {
                let Ok(server) = UnixStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                // Requests go up; each starts with `METHOD TARGET HTTP/1.1`.
                let mut buffer = vec![0u8; 16 * 1024];
                loop {
                    let n = match client_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let text = String::from_utf8_lossy(&buffer[..n]);
                    let requests = text
                        .lines()
                        .filter(|line| line.ends_with("HTTP/1.1") && line.contains(needle))
                        .count();
                    seen.matching
                        .fetch_add(requests, std::sync::atomic::Ordering::Relaxed);
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    Ok((task, seen))
}
