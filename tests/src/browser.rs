//! A real, headless Chromium for tests of the pages fastlane serves.
//!
//! [`Browser::start`] runs its own `chromedriver` on a free port with a fresh
//! Chromium profile, so tests can run in parallel, and drives it through the
//! W3C WebDriver HTTP API with plain `reqwest` and `serde_json`. Dropping the
//! `Browser` ends the session (which closes Chromium), kills chromedriver and
//! removes the profile.
//!
//! ```no_run
//! # async fn story(base: &str) -> anyhow::Result<()> {
//! use std::time::Duration;
//! let browser = fastlane_tests::browser::Browser::start().await?;
//! browser.goto(&format!("{base}/docs")).await?;
//! browser.click("#operations-Health-healthcheck .opblock-summary-control").await?;
//! browser.wait_for_text(".opblock-body", "Try it out", Duration::from_secs(10)).await?;
//! let title: String = browser.eval("document.title").await?;
//! # Ok(()) }
//! ```
//!
//! Environment:
//! - `FASTLANE_TEST_CHROMIUM`: the browser (default `/usr/bin/chromium`).
//! - `FASTLANE_TEST_CHROMEDRIVER`: its driver (default `/usr/bin/chromedriver`).
//!
//! Both come from Debian's `chromium` and `chromium-driver` packages, which
//! `scripts/services.sh` installs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How long [`Browser::click`] waits for its element to become clickable.
const CLICK_PATIENCE: Duration = Duration::from_secs(15);

/// How often the `wait_for*` methods look again.
const POLL: Duration = Duration::from_millis(100);

/// Chromium's flags: headless, as root in a container, and quiet on a
/// machine without a network (the background services would otherwise keep
/// trying to reach Google and fill the log with refused connections).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--window-size=1280,1024",
];

/// The Chromium binary the tests drive.
pub fn chromium() -> PathBuf {
    std::env::var_os("FASTLANE_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// The chromedriver binary that drives it.
pub fn chromedriver() -> PathBuf {
    std::env::var_os("FASTLANE_TEST_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from)
}

/// A command chromedriver answered with an error.
#[derive(Debug)]
pub struct WebDriverError {
    /// The command, as `METHOD /path`.
    pub command: String,
    /// The W3C error code, such as `no such element`.
    pub code: String,
    /// chromedriver's explanation.
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.command, self.code, self.message)
    }
}

impl std::error::Error for WebDriverError {}

/// chromedriver stopped before it was ready (say, because its port was
/// taken after all).
#[derive(Debug)]
struct DriverExited(String);

impl std::fmt::Display for DriverExited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DriverExited {}

/// A headless Chromium with one open tab, closed when dropped.
#[derive(Debug)]
pub struct Browser {
    /// chromedriver, leader of its own process group so that Chromium can be
    /// killed with it if the session cannot be ended politely.
    driver: Child,
    /// chromedriver's port on 127.0.0.1.
    port: u16,
    /// The session's id, part of every command's path.
    session: String,
    /// Holds the Chromium profile and chromedriver's log; removed on drop.
    dir: PathBuf,
    /// Talks to chromedriver.
    http: reqwest::Client,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn start() -> anyhow::Result<Self> {
        // The free port is only free until someone else takes it: a parallel
        // test can win the race, so a driver that cannot listen is tried
        // again on another port.
        let mut attempt = 1;
        loop {
            match Self::launch().await {
                Err(err) if attempt < 3 && err.downcast_ref::<DriverExited>().is_some() => {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One attempt at [`Browser::start`].
    async fn launch() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("fastlane-browser-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("profile"))?;
        let port = free_port()?;
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (scripts/services.sh installs it)",
                    chromedriver().display()
                )
            })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        // From here on, dropping `browser` cleans up.
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
            dir,
            http,
        };
        browser.await_driver().await?;
        browser.session = browser.new_session().await?;
        Ok(browser)
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("/url", json!({ "url": url })).await?;
        Ok(())
    }

    /// The value of the JavaScript expression `expression` in the page (no
    /// trailing semicolon; wrap statements in `(() => { … })()`).
    pub async fn eval<T: DeserializeOwned>(&self, expression: &str) -> anyhow::Result<T> {
        let script = format!("return ({expression});");
        let value = self
            .post("/execute/sync", json!({ "script": script, "args": [] }))
            .await?;
        serde_json::from_value(value.clone())
            .with_context(|| format!("{expression} evaluated to {value}"))
    }

    /// Clicks the first element matching the CSS selector `css`, waiting for
    /// it to appear and to take clicks (not covered, not disabled).
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + CLICK_PATIENCE;
        loop {
            match self.try_click(css).await {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() < deadline && not_yet(&err) => {
                    tokio::time::sleep(POLL).await;
                }
                Err(err) => {
                    return Err(err.context(format!(
                        "clicking {css}; the page says:\n{}",
                        self.page_text().await
                    )));
                }
            }
        }
    }

    /// Waits until the JavaScript expression `condition` is truthy, and
    /// returns its value. An expression that throws counts as not yet.
    pub async fn wait_for(&self, condition: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.eval::<Value>(condition).await {
                Ok(value) if truthy(&value) => return Ok(value),
                Ok(value) => format!("last value {value}"),
                Err(err) => format!("last error {err:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "gave up after {timeout:?} waiting for {condition} ({last}) on {}; the page says:\n{}",
                    self.eval::<String>("location.href")
                        .await
                        .unwrap_or_default(),
                    self.page_text().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until an element matches the CSS selector `css`.
    pub async fn wait_for_element(&self, css: &str, timeout: Duration) -> anyhow::Result<()> {
        let condition = format!("document.querySelector({}) !== null", json!(css));
        self.wait_for(&condition, timeout).await?;
        Ok(())
    }

    /// Waits until the visible text of an element matching `css` contains
    /// `text`, and returns that element's whole text.
    pub async fn wait_for_text(
        &self,
        css: &str,
        text: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let condition = format!(
            "Array.from(document.querySelectorAll({})).map(e => e.innerText).find(t => t.includes({}))",
            json!(css),
            json!(text),
        );
        let found = self.wait_for(&condition, timeout).await?;
        Ok(found.as_str().unwrap_or_default().to_owned())
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let expression = format!("document.querySelector({}).innerText", json!(css));
        self.eval(&expression)
            .await
            .with_context(|| format!("reading the text of {css}"))
    }

    /// The start of the page's visible text, for error messages.
    async fn page_text(&self) -> String {
        self.eval::<String>("document.body ? document.body.innerText.slice(0, 2000) : ''")
            .await
            .unwrap_or_else(|err| format!("(could not read the page: {err:#})"))
    }

    /// Replaces what the input or text area matching `css` holds with
    /// `text`, typed as a person would (key events included).
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let id = self.find(css).await?;
        self.post(&format!("/element/{id}/clear"), json!({}))
            .await?;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await
            .with_context(|| format!("typing into {css}"))?;
        Ok(())
    }

    /// Resizes the window to `width` × `height` CSS pixels.
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await?;
        Ok(())
    }

    /// Saves a PNG of the visible page to `file`.
    pub async fn screenshot(&self, file: &Path) -> anyhow::Result<()> {
        use base64::Engine as _;
        let url = format!(
            "http://127.0.0.1:{}/session/{}/screenshot",
            self.port, self.session
        );
        let png = self.send("GET /screenshot", self.http.get(&url)).await?;
        let png = base64::engine::general_purpose::STANDARD.decode(
            png.as_str()
                .context("a screenshot that is not base64 text")?,
        )?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(file, png).with_context(|| format!("writing {}", file.display()))
    }

    /// Runs `body`, the body of an async function whose value it awaits
    /// (`return await something()`), and returns that value.
    pub async fn eval_async<T: DeserializeOwned>(&self, body: &str) -> anyhow::Result<T> {
        let script = format!(
            "const done = arguments[arguments.length - 1]; \
             (async () => {{ {body} }})().then(done, (e) => done({{ thrown: String(e) }}));"
        );
        let value = self
            .post("/execute/async", json!({ "script": script, "args": [] }))
            .await?;
        if let Some(thrown) = value.get("thrown") {
            bail!("the script threw {thrown}");
        }
        serde_json::from_value(value.clone())
            .with_context(|| format!("the script answered {value}"))
    }

    /// The W3C reference of the first element matching `css`.
    async fn find(&self, css: &str) -> anyhow::Result<String> {
        let found = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await?;
        // A W3C element reference is an object with this one well-known key.
        found
            .get("element-6066-11e4-a52e-4f735466cecf")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| {
                format!("chromedriver found {css} as {found}, which is not an element")
            })
    }

    /// One attempt at [`Browser::click`].
    async fn try_click(&self, css: &str) -> anyhow::Result<()> {
        let id = self.find(css).await?;
        self.post(&format!("/element/{id}/click"), json!({}))
            .await?;
        Ok(())
    }

    /// Polls chromedriver's `/status` until it is ready, or says why not.
    async fn await_driver(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://127.0.0.1:{}/status", self.port);
        loop {
            if let Some(status) = self.driver.try_wait()? {
                return Err(DriverExited(format!(
                    "chromedriver exited with {status} before it was ready; its log:\n{}",
                    self.driver_log()
                ))
                .into());
            }
            if let Ok(response) = self.http.get(&url).send().await
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "chromedriver did not get ready on port {}; its log:\n{}",
                    self.port,
                    self.driver_log()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Launches Chromium; returns the session id.
    async fn new_session(&self) -> anyhow::Result<String> {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            self.dir.join("profile").display()
        ));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "timeouts": { "pageLoad": 30_000, "script": 10_000 },
                    "goog:chromeOptions": { "binary": chromium(), "args": args },
                }
            }
        });
        let url = format!("http://127.0.0.1:{}/session", self.port);
        let value = self
            .send("POST /session", self.http.post(&url).json(&capabilities))
            .await
            .with_context(|| {
                format!(
                    "starting {}; chromedriver's log:\n{}",
                    chromium().display(),
                    self.driver_log()
                )
            })?;
        value["sessionId"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("chromedriver answered a new session with {value}"))
    }

    /// Sends one command (all those used here are POSTs) to this session and
    /// returns its `value`.
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!(
            "http://127.0.0.1:{}/session/{}{path}",
            self.port, self.session
        );
        let request = self.http.post(&url).json(&body);
        self.send(&format!("POST {path}"), request).await
    }

    /// Sends a request to chromedriver and unwraps the W3C `{"value": …}`
    /// answer into the value or a [`WebDriverError`].
    async fn send(&self, command: &str, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("{command}: chromedriver did not answer"))?;
        let status = response.status();
        let text = response.text().await?;
        let mut answer: Value = serde_json::from_str(&text)
            .with_context(|| format!("{command}: chromedriver answered {status} with {text:?}"))?;
        let value = answer["value"].take();
        if status.is_success() {
            return Ok(value);
        }
        Err(WebDriverError {
            command: command.to_owned(),
            code: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            message: value["message"].as_str().unwrap_or_default().to_owned(),
        }
        .into())
    }

    /// The end of chromedriver's log, for error messages.
    fn driver_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(start);
        log[start..].to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Drop cannot await, so the session is ended over a plain socket;
        // ending it makes chromedriver close Chromium.
        if !self.session.is_empty() {
            let _ = delete_session(self.port, &self.session);
        }
        // Then the whole process group: chromedriver, and Chromium if it is
        // still there.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
        if !std::thread::panicking() {
            remove_dir(&self.dir);
        }
    }
}

/// Removes `dir`, trying again for a moment: Chromium's last processes can
/// still be writing to the profile right after the session ended, which
/// makes a removal fail with "directory not empty".
fn remove_dir(dir: &Path) {
    for _ in 0..20 {
        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `DELETE /session/<id>` with a blocking socket. chromedriver answers once
/// Chromium has quit, so the first bytes of the answer are all it waits for
/// (chromedriver keeps the connection open after answering).
fn delete_session(port: u16, session: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut answer = [0; 64];
    let _ = stream.read(&mut answer)?;
    Ok(())
}

/// A port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// True for the errors a click meets while the page is still rendering.
fn not_yet(err: &anyhow::Error) -> bool {
    err.downcast_ref::<WebDriverError>().is_some_and(|e| {
        matches!(
            e.code.as_str(),
            "no such element"
                | "element not interactable"
                | "element click intercepted"
                | "stale element reference"
        )
    })
}

/// JavaScript's truthiness, for a value that came back as JSON.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
