//! A real SMTP server on loopback for e-mail tests: `tests/smtp_sink.py`
//! (aiosmtpd), which stores every message it receives as a file.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// A free TCP port on loopback (free when this returns).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The SMTP sink; stopped when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    child: Child,
    dir: PathBuf,
}

/// One received message, as the sink parsed it: `subject`, `from`, `to`,
/// `rcptTos`, `contentType` and the decoded `text` and `html` parts.
pub type Mail = serde_json::Value;

impl SmtpSink {
    /// Starts the sink on `port`.
    pub fn start(port: u16) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("fastlane-smtp-{}", uuid::Uuid::new_v4()));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting tests/smtp_sink.py (needs aiosmtpd: scripts/test.sh installs it)")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the SMTP sink did not start: {line:?}");
        }
        Ok(Self { child, dir })
    }

    /// The messages received so far.
    pub fn mails(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
