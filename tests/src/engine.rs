//! Extra Docker API hosts a test can kill and bring back: each is another
//! listener of the Podman engine `scripts/services.sh` runs (a
//! `podman system service` on a loopback port), or a TLS-terminating
//! `stunnel` in front of its socket. All of them reach the same engine, so a
//! container started through one is visible through every other. And
//! [`EngineApi`], a client of that engine's Docker API for tests that check
//! what fastlane did on it.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The engine's Unix socket, as `scripts/services.sh` starts it.
pub fn engine_socket() -> String {
    std::env::var("FASTLANE_TEST_DOCKER_UNIX")
        .unwrap_or_else(|_| "unix:///run/fastlane/podman.sock".to_owned())
        .trim_start_matches("unix://")
        .to_owned()
}

/// A listener process, killed (with its children) when dropped.
#[derive(Debug)]
pub struct Listener {
    child: Option<Child>,
    /// Its loopback port.
    pub port: u16,
    command: Vec<String>,
}

impl Listener {
    /// A plain-HTTP Docker API on a free loopback port.
    pub async fn podman() -> anyhow::Result<Self> {
        let port = crate::smtp::free_port()?;
        let command = vec![
            "podman".to_owned(),
            "system".to_owned(),
            "service".to_owned(),
            "--time=0".to_owned(),
            format!("tcp:127.0.0.1:{port}"),
        ];
        Self::run(port, command).await
    }

    /// A TLS Docker API on a free loopback port: `stunnel` presents the
    /// server certificate, demands a client certificate signed by the CA,
    /// and forwards to the engine's socket. (socat cannot stand in: its
    /// OpenSSL server refuses the session resumption rustls clients try.)
    pub async fn tls(certs: &Certificates) -> anyhow::Result<Self> {
        let port = crate::smtp::free_port()?;
        let config = certs.dir.join(format!("stunnel-{port}.conf"));
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\n[docker]\naccept = 127.0.0.1:{port}\n\
                 connect = {}\ncert = {}\nkey = {}\nCAfile = {}\nverify = 2\n",
                engine_socket(),
                certs.server_cert.display(),
                certs.server_key.display(),
                certs.ca.display()
            ),
        )?;
        let command = vec!["stunnel".to_owned(), config.display().to_string()];
        Self::run(port, command).await
    }

    /// Starts `command`, which listens on `port`.
    async fn run(port: u16, command: Vec<String>) -> anyhow::Result<Self> {
        let mut listener = Self {
            child: None,
            port,
            command,
        };
        listener.restart().await?;
        Ok(listener)
    }

    /// `host:port` of the listener.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process (again) on the same port and waits until it
    /// accepts connections.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.command[0]))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("{} did not listen on {}", self.command[0], self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Kills the listener and whatever it forked, as a host dying would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole process group, whatever the listener forked.
            // `--` matters: without it `kill` reads the negative group id
            // as an option and signals every process on the machine.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.kill();
    }
}

/// PEM files for a TLS test: a CA, a server certificate for 127.0.0.1 and
/// a client certificate, both signed by that CA, and a second CA that
/// signed neither.
#[derive(Debug, Clone)]
pub struct Certificates {
    /// Where they are.
    pub dir: PathBuf,
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// The client's certificate.
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
}

impl Certificates {
    /// Makes them in `dir` with the `openssl` command.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| -> anyhow::Result<()> {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()?;
            if !output.status.success() {
                bail!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(())
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=fastlane test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ])?;
        }
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )?;
        std::fs::write(path("client.ext"), "extendedKeyUsage=clientAuth\n")?;
        for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=fastlane")] {
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ])?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ])?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            ca: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            client_cert: path("client.pem"),
            client_key: path("client.key"),
            other_ca: path("other-ca.pem"),
        })
    }
}

/// The engine's Docker API, over the TCP listener `scripts/services.sh`
/// starts beside the socket (the same engine the servers use).
#[derive(Debug)]
pub struct EngineApi {
    client: reqwest::Client,
    base: String,
}

impl Default for EngineApi {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineApi {
    /// The API at `FASTLANE_TEST_DOCKER_TCP` (or the services' default).
    pub fn new() -> Self {
        let tcp = std::env::var("FASTLANE_TEST_DOCKER_TCP")
            .unwrap_or_else(|_| "127.0.0.1:23750".to_owned());
        Self {
            client: reqwest::Client::new(),
            base: format!("http://{tcp}"),
        }
    }

    /// GET `path` (with its API version), as JSON; a failure status is an error.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self.client.get(&url).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("GET {url}: {status} {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("GET {url}: {text}"))
    }

    /// Every container, running or not, of fastlane task `task`.
    pub async fn containers_of(&self, task: &str) -> anyhow::Result<Vec<Value>> {
        self.list(json!({"label": [format!("fastlane.task={task}")]}), true)
            .await
    }

    /// The container of execution `execution_id`, inspected (Docker's
    /// form).
    pub async fn inspect_execution(&self, execution_id: &str) -> anyhow::Result<Value> {
        let listed = self
            .list(
                json!({"label": [format!("fastlane.execution={execution_id}")]}),
                true,
            )
            .await?;
        let id = listed
            .first()
            .and_then(|c| c["Id"].as_str())
            .with_context(|| format!("no container for execution {execution_id}"))?;
        self.get(&format!("/v1.41/containers/{id}/json")).await
    }

    /// The log size limit the engine gives container `id`: Docker keeps
    /// it in `LogConfig.Config["max-size"]`; Podman's compatible inspect
    /// leaves `Config` empty and shows it in its own inspect (`Size`,
    /// `"0B"` for none).
    pub async fn log_size_limit(&self, inspect: &Value) -> anyhow::Result<Option<String>> {
        if let Some(size) = inspect["HostConfig"]["LogConfig"]["Config"]["max-size"].as_str() {
            return Ok(Some(size.to_owned()));
        }
        let id = inspect["Id"].as_str().context("Id")?;
        let native = self
            .get(&format!("/v4.0.0/libpod/containers/{id}/json"))
            .await?;
        Ok(native["HostConfig"]["LogConfig"]["Size"]
            .as_str()
            .filter(|size| *size != "0B")
            .map(str::to_owned))
    }

    /// How many bytes of stdout the engine kept of container `id`.
    pub async fn kept_log_bytes(&self, id: &str) -> anyhow::Result<usize> {
        let url = format!("{}/v1.41/containers/{id}/logs?stdout=1", self.base);
        Ok(self.client.get(url).send().await?.bytes().await?.len())
    }

    /// How many containers of fastlane task `task` are running.
    pub async fn running(&self, task: &str) -> anyhow::Result<usize> {
        self.running_of(&[task]).await
    }

    /// How many containers of any of `tasks` are running at one instant:
    /// one listing, so a container that exits between two listings is
    /// never counted together with the one that replaced it.
    pub async fn running_of(&self, tasks: &[&str]) -> anyhow::Result<usize> {
        let containers = self
            .list(
                json!({"label": ["fastlane.task"], "status": ["running"]}),
                false,
            )
            .await?;
        Ok(containers
            .iter()
            .filter(|c| {
                c["Labels"]["fastlane.task"]
                    .as_str()
                    .is_some_and(|task| tasks.contains(&task))
            })
            .count())
    }

    /// The containers matching `filters` (running ones only unless `all`).
    async fn list(&self, filters: Value, all: bool) -> anyhow::Result<Vec<Value>> {
        let mut url = reqwest::Url::parse(&format!("{}/v1.41/containers/json", self.base))?;
        url.query_pairs_mut()
            .append_pair("all", if all { "true" } else { "false" })
            .append_pair("filters", &filters.to_string());
        Ok(self
            .client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}
