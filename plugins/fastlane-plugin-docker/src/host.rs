//! One Docker API endpoint: its client (connected on first use), circuit
//! breaker, running count and exit events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bollard::{API_DEFAULT_VERSION, Docker};
use tokio::sync::OnceCell;

use fastlane_sdk::PluginError;
use fastlane_sdk::text::error_chain;

use crate::addr::HostAddr;
use crate::circuit::{Circuit, CircuitSettings};
use crate::config::TlsFiles;
use crate::events::Events;
use crate::load::Load;

/// A configured host and its client, connected on first use.
#[derive(Debug)]
pub struct Host {
    /// The host exactly as configured; this is its name everywhere.
    pub name: String,
    addr: HostAddr,
    /// The certificates, when fastlane speaks TLS to it.
    tls: Option<TlsFiles>,
    timeout_seconds: u64,
    client: OnceCell<Docker>,
    /// Whether the host is given up on.
    pub circuit: Arc<Circuit>,
    /// How many executions run on it, as placement counts them.
    pub load: Load,
    /// The images it was last seen to hold, with when.
    images: Mutex<HashMap<String, Instant>>,
    /// What its event stream announces: exits, and the containers running.
    pub events: Events,
}

/// How long an image a host was seen to hold is taken on trust.
const IMAGE_TRUST: Duration = Duration::from_secs(60);

impl Host {
    /// A host whose address already parsed.
    pub fn new(
        name: &str,
        addr: HostAddr,
        tls: Option<TlsFiles>,
        timeout_seconds: u64,
        circuit: CircuitSettings,
    ) -> Self {
        Self {
            name: name.to_owned(),
            addr,
            tls,
            timeout_seconds,
            client: OnceCell::new(),
            circuit: Arc::new(Circuit::new(circuit)),
            load: Load::default(),
            images: Mutex::new(HashMap::new()),
            events: Events::default(),
        }
    }

    /// The client, negotiating the API version on first use. A host that is
    /// down is tried again on the next call.
    pub async fn client(&self) -> Result<&Docker, PluginError> {
        self.client
            .get_or_try_init(|| async {
                let docker = match (&self.addr, &self.tls) {
                    (HostAddr::Unix { path }, _) => {
                        Docker::connect_with_unix(path, self.timeout_seconds, API_DEFAULT_VERSION)
                    }
                    (HostAddr::Tcp { host, port, .. }, Some(tls)) => Docker::connect_with_ssl(
                        &format!("{host}:{port}"),
                        &tls.key,
                        &tls.cert,
                        &tls.ca_cert,
                        self.timeout_seconds,
                        API_DEFAULT_VERSION,
                    ),
                    (HostAddr::Tcp { host, port, .. }, None) => Docker::connect_with_http(
                        &format!("tcp://{host}:{port}"),
                        self.timeout_seconds,
                        API_DEFAULT_VERSION,
                    ),
                }
                .map_err(|e| self.unavailable(&error_chain(&e)))?;
                docker
                    .negotiate_version()
                    .await
                    .map_err(|e| self.unavailable(&error_chain(&e)))
            })
            .await
    }

    /// An [`fastlane_sdk::ErrorKind::Unavailable`] error naming this host,
    /// counted against its circuit.
    pub fn unavailable(&self, err: &dyn std::fmt::Display) -> PluginError {
        let message = format!("connection to docker host {} failed: {err}", self.name);
        self.circuit.failed(&message);
        PluginError::unavailable(message)
    }

    /// Reads the host's event stream through `docker` from now on (once).
    pub fn watch_events(&self, docker: &Docker) {
        self.events.subscribe(docker, Arc::clone(&self.circuit));
    }

    /// The host answered: its circuit closes.
    pub fn answered(&self) {
        self.circuit.succeeded();
    }

    /// Whether the host held `image` a moment ago (within [`IMAGE_TRUST`]).
    pub fn holds_image(&self, image: &str) -> bool {
        let images = self.images.lock().unwrap_or_else(PoisonError::into_inner);
        images
            .get(image)
            .is_some_and(|seen| seen.elapsed() < IMAGE_TRUST)
    }

    /// The host holds `image` now; or, with `false`, no longer does.
    pub fn saw_image(&self, image: &str, held: bool) {
        let mut images = self.images.lock().unwrap_or_else(PoisonError::into_inner);
        if held {
            images.insert(image.to_owned(), Instant::now());
        } else {
            images.remove(image);
        }
    }
}
