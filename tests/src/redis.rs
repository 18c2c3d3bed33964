//! A Redis server of a test's own, that the test can kill, pause and start
//! again on the same port and data (the shared test Redis of
//! `scripts/services.sh` must stay up for everyone else). Data servers keep
//! an append-only file synced on every write; the same type runs the
//! Sentinels and Cluster nodes of [`crate::redis_topologies`], in the clear
//! or, with [`Secure`], over TLS only and behind an ACL user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::engine::Certificates;

/// A `redis-server` child, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1 (its TLS port for [`RedisServer::start_tls`];
    /// 0 for [`RedisServer::start_unix`]).
    pub port: u16,
    dir: PathBuf,
    /// `redis-server`'s arguments.
    args: Vec<String>,
    /// How `redis-cli` reaches it.
    cli: Vec<String>,
}

/// TLS on every port and one ACL user for a set-up's processes: each
/// listens only on a TLS port (replication, the cluster bus and Sentinel's
/// own links included) with a certificate for 127.0.0.1 and localhost made
/// here by a CA of its own (and shows the client certificate when it
/// connects to another), and the `default` user is off, so nothing gets
/// in without [`Secure::USER`] and [`Secure::PASSWORD`]. The certificates
/// are deleted when it is dropped.
#[derive(Debug)]
pub struct Secure {
    /// The certificates (`ca` is the one to trust).
    pub certs: Certificates,
}

impl Secure {
    /// The ACL user every process lets in.
    pub const USER: &'static str = "fastlane";
    /// Its password.
    pub const PASSWORD: &'static str = "secret";

    /// Makes the certificates, with `openssl`, in a temporary directory.
    pub fn generate() -> anyhow::Result<Self> {
        let certs = Certificates::generate(&temp_dir("redis-tls")?)?;
        Ok(Self { certs })
    }

    /// `redis-server`'s TLS and ACL settings (for a data server on no plain
    /// port), as `(name, value…)` lines.
    fn settings(&self, tls_port: u16) -> Vec<Vec<String>> {
        let path = |p: &Path| p.display().to_string();
        let user = format!("{} on >{} ~* &* +@all", Self::USER, Self::PASSWORD);
        [
            format!("tls-port {tls_port}"),
            format!("tls-cert-file {}", path(&self.certs.server_cert)),
            format!("tls-key-file {}", path(&self.certs.server_key)),
            format!("tls-ca-cert-file {}", path(&self.certs.ca)),
            "tls-auth-clients no".to_owned(),
            // Shown when it connects to another (a master, a Sentinel, a
            // node's cluster bus, which always asks for one).
            format!("tls-client-cert-file {}", path(&self.certs.client_cert)),
            format!("tls-client-key-file {}", path(&self.certs.client_key)),
            "tls-replication yes".to_owned(),
            format!("user {user}"),
            "user default off".to_owned(),
        ]
        .iter()
        .map(|line| line.split(' ').map(str::to_owned).collect())
        .collect()
    }

    /// How `redis-cli` reaches a process of this set-up on `port`.
    fn cli(&self, port: u16) -> Vec<String> {
        [
            "-p",
            &port.to_string(),
            "--tls",
            "--cacert",
            &self.certs.ca.display().to_string(),
            "--user",
            Self::USER,
            "--pass",
            Self::PASSWORD,
            "--no-auth-warning",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

impl Drop for Secure {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.certs.dir);
    }
}

/// A fresh temporary directory.
fn temp_dir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fastlane-{what}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The arguments of a data server on `port`: persistence on, every write
/// synced, files in `dir`; a replica that needs a full copy gets it at once
/// (Redis otherwise waits five seconds for other replicas to share it).
fn data_server_args(port: u16, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--repl-diskless-sync-delay",
        "0",
    ]
    .map(String::from)
    .to_vec();
    args.push("--dir".to_owned());
    args.push(dir.display().to_string());
    args
}

impl RedisServer {
    /// Starts one with an append-only file synced on every write.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts a data server with `extra` arguments after the usual ones
    /// (`--replicaof …`, `--cluster-enabled yes`, …).
    pub async fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_secured(extra, None).await
    }

    /// [`RedisServer::start_with`], over TLS only and behind `secure`'s
    /// ACL user when there is one (then it also logs in to a master it
    /// replicates as that user, and speaks TLS on the cluster bus).
    pub async fn start_secured(extra: &[&str], secure: Option<&Secure>) -> anyhow::Result<Self> {
        let dir = temp_dir("redis")?;
        let port = crate::smtp::free_port()?;
        let (mut args, cli) = match secure {
            None => (
                data_server_args(port, &dir),
                vec!["-p".to_owned(), port.to_string()],
            ),
            Some(secure) => {
                let mut args = data_server_args(0, &dir);
                for line in secure.settings(port) {
                    args.push(format!("--{}", line[0]));
                    args.extend(line[1..].iter().cloned());
                }
                args.extend(
                    [
                        "--tls-cluster",
                        "yes",
                        "--masteruser",
                        Secure::USER,
                        "--masterauth",
                        Secure::PASSWORD,
                    ]
                    .map(str::to_owned),
                );
                (args, secure.cli(port))
            }
        };
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Self::spawn(port, dir, args, cli).await
    }

    /// Starts one that listens only on a Unix socket, `redis.sock` in its
    /// directory ([`RedisServer::socket`]).
    pub async fn start_unix() -> anyhow::Result<Self> {
        let dir = temp_dir("redis")?;
        let socket = dir.join("redis.sock").display().to_string();
        let mut args = data_server_args(0, &dir);
        args.extend(["--unixsocket".to_owned(), socket.clone()]);
        Self::spawn(0, dir, args, vec!["-s".to_owned(), socket]).await
    }

    /// Starts one that speaks only TLS, with `certs`' server certificate
    /// (clients need not show one).
    pub async fn start_tls(certs: &Certificates) -> anyhow::Result<Self> {
        let dir = temp_dir("redis")?;
        let port = crate::smtp::free_port()?;
        let mut args = data_server_args(0, &dir);
        let path = |p: &Path| p.display().to_string();
        args.extend([
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&certs.server_cert),
            "--tls-key-file".to_owned(),
            path(&certs.server_key),
            "--tls-ca-cert-file".to_owned(),
            path(&certs.ca),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ]);
        let cli = vec![
            "-p".to_owned(),
            port.to_string(),
            "--tls".to_owned(),
            "--cacert".to_owned(),
            path(&certs.ca),
        ];
        Self::spawn(port, dir, args, cli).await
    }

    /// Starts a Sentinel on a free port with this configuration (the port,
    /// bind address and directory lines are added).
    pub async fn start_sentinel(config: &str) -> anyhow::Result<Self> {
        Self::start_secured_sentinel(config, None).await
    }

    /// [`RedisServer::start_sentinel`], over TLS only and behind
    /// `secure`'s ACL user when there is one (then it also logs in to the
    /// other Sentinels as that user; `config` says how to log in to the
    /// servers it watches).
    pub async fn start_secured_sentinel(
        config: &str,
        secure: Option<&Secure>,
    ) -> anyhow::Result<Self> {
        let dir = temp_dir("sentinel")?;
        let port = crate::smtp::free_port()?;
        let file = dir.join("sentinel.conf");
        let (own, cli) = match secure {
            None => (
                format!("port {port}\n"),
                vec!["-p".to_owned(), port.to_string()],
            ),
            Some(secure) => {
                let mut own = "port 0\n".to_owned();
                for line in secure.settings(port) {
                    own.push_str(&line.join(" "));
                    own.push('\n');
                }
                own.push_str(&format!(
                    "sentinel sentinel-user {}\nsentinel sentinel-pass {}\n",
                    Secure::USER,
                    Secure::PASSWORD
                ));
                (own, secure.cli(port))
            }
        };
        std::fs::write(
            &file,
            format!("{own}bind 127.0.0.1\ndir {}\n{config}", dir.display()),
        )?;
        let args = vec![file.display().to_string(), "--sentinel".to_owned()];
        Self::spawn(port, dir, args, cli).await
    }

    async fn spawn(
        port: u16,
        dir: PathBuf,
        args: Vec<String>,
        cli: Vec<String>,
    ) -> anyhow::Result<Self> {
        let mut server = Self {
            child: None,
            port,
            dir,
            args,
            cli,
        };
        server.restart().await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its Unix socket (for [`RedisServer::start_unix`]).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// Starts it (again) on the same port and data, and waits until it
    /// answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(&self.args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.cli(&["ping"]).is_ok_and(|answer| answer == "PONG") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("redis-server {:?} did not answer", self.args);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How `redis-cli` reaches it (`-p PORT`, and the TLS and login
    /// options of a [`Secure`] one), for commands [`RedisServer::cli`]
    /// does not run.
    pub fn cli_args(&self) -> &[String] {
        &self.cli
    }

    /// Runs `redis-cli` against it; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("redis-cli")
            .args(&self.cli)
            .args(args)
            .output()
            .context("running redis-cli")?;
        if !output.status.success() {
            bail!(
                "redis-cli {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The value of `field` in `INFO <section>` (`role`, `connected_slaves`…).
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        let info = self.cli(&["info", section]).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .map(|value| value.trim().to_owned())
    }

    /// Kills it outright, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): it keeps its connections but answers nothing,
    /// as a hung or cut-off server would.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("not running")?;
        let status = Command::new("kill")
            .args(["-s", signal, &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -s {signal} failed");
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
