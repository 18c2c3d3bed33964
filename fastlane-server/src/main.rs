//! The `fastlane` command: the server (`standalone`, `api`, `worker`,
//! `prune`), its tools (`config`, `token`, `openapi`, `version`,
//! `completions`) and the client of a running server (`run`, `logs`,
//! `jobs`, `tasks`, `job`, `stop`, `retry`, `status`, `hosts`; see [`cli`]).

mod cli;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use fastlane_server::telemetry::Traces;

use fastlane_server::config::Config;
use fastlane_server::roles::WorkerRoles;

/// A container job queue: POST a command and an image, and fastlane runs it
/// in a container and keeps its status, exit code and output.
#[derive(Debug, Parser)]
#[command(name = "fastlane", version)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: cli::ClientArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API, worker and scheduler in one process, on an embedded store and
    /// queue in FASTLANE_DATA_DIR.
    Standalone {
        /// Address to listen on.
        #[arg(short = 'b', long = "host", default_value = "0.0.0.0")]
        host: IpAddr,
        /// Port to listen on (0 picks a free one and prints it).
        #[arg(short, long, default_value_t = 10000)]
        port: u16,
        /// A TOML configuration file (see `fastlane config`).
        #[arg(short, long = "config-file")]
        config: Option<PathBuf>,
    },
    /// The HTTP API alone, on the shared queue (REDIS_URL) and store
    /// (STORE_URL); run any number of them next to `fastlane worker`s.
    Api {
        /// Address to listen on.
        #[arg(short = 'b', long = "host", default_value = "0.0.0.0")]
        host: IpAddr,
        /// Port to listen on (0 picks a free one and prints it).
        #[arg(short, long, default_value_t = 10000)]
        port: u16,
        /// A TOML configuration file (see `fastlane config`).
        #[arg(short, long = "config-file")]
        config: Option<PathBuf>,
    },
    /// Runs jobs, fires scheduled ones and sends notifications, from the
    /// shared queue (REDIS_URL) and store (STORE_URL); run any number.
    Worker {
        /// Names this worker in its logs (default: <hostname>-<pid>).
        #[arg(short = 'i', long = "id")]
        id: Option<String>,
        /// Don't run jobs (the `jobs` queue).
        #[arg(long)]
        no_jobs: bool,
        /// Don't fire delayed and cron jobs, reconcile or prune.
        #[arg(long)]
        no_monitor: bool,
        /// Don't send e-mail and plugin notifications.
        #[arg(long)]
        no_notify: bool,
        /// Don't deliver webhooks.
        #[arg(long)]
        no_webhooks: bool,
        /// A TOML configuration file (see `fastlane config`).
        #[arg(short, long = "config-file")]
        config: Option<PathBuf>,
    },
    /// Remove the containers of finished executions
    /// (`defunct-fastlane-job-…`) from every configured Docker host, printing
    /// one JSON line per container removed.
    Prune {
        /// A TOML configuration file (see `fastlane config`).
        #[arg(short, long = "config-file")]
        config: Option<PathBuf>,
    },
    /// Print the annotated default configuration.
    Config,
    /// Make an API token: prints the token (give it to the client; it is
    /// shown once) and its `API_TOKENS` entry (only its SHA-256).
    Token {
        /// The token's name, for logs and errors.
        #[arg(long, default_value = "default")]
        name: String,
        /// Its scopes: admin, read, submit:<task id regex> (repeatable).
        #[arg(long = "scope", default_value = "read")]
        scopes: Vec<String>,
    },
    /// Print the OpenAPI document the server serves.
    Openapi,
    /// Print the version.
    Version,
    /// Print a shell completion script (`fastlane completions bash >
    /// /etc/bash_completion.d/fastlane`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(cli::ClientCommand),
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    /// Lines for people (the default).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, the
    /// event's fields (`message` among them), and `span` and `spans` with
    /// the fields of the spans it happened in (`request_id`, `execution`…).
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT` from the environment: `text` (default) or `json`.
    fn from_env() -> Result<Self, String> {
        match std::env::var("LOG_FORMAT").as_deref() {
            Err(_) | Ok("" | "text") => Ok(Self::Text),
            Ok("json") => Ok(Self::Json),
            Ok(other) => Err(format!("LOG_FORMAT is text or json, not {other:?}")),
        }
    }
}

/// Sets up logging on stderr, and the export of traces when the
/// environment asks for it (see [`fastlane_server::telemetry`]); `None`
/// (after saying why) when a setting is wrong. Keep what it returns until
/// the end: dropping it sends the traces still batched.
fn init_logging(verbose: u8) -> Option<Option<Traces>> {
    let settings = LogFormat::from_env()
        .and_then(|format| fastlane_server::telemetry::from_env().map(|traces| (format, traces)));
    let (format, traces) = match settings {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("fastlane: {err}");
            return None;
        }
    };
    let default = match verbose {
        0 => "warn,fastlane_server=info,fastlane_plugin_docker=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let spans = traces
        .as_ref()
        .map(|traces| tracing_opentelemetry::layer().with_tracer(traces.tracer()));
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(spans)
        .init();
    Some(traces)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config => {
            print!("{}", Config::annotated_defaults());
            ExitCode::SUCCESS
        }
        Command::Token { name, scopes } => {
            let token = format!(
                "fl_{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            let hash =
                fastlane_server::config::hex(&fastlane_server::config::sha256(token.as_bytes()));
            let entry = serde_json::json!({"name": name, "sha256": hash, "scopes": scopes});
            println!("token: {token}");
            println!("API_TOKENS entry: {entry}");
            ExitCode::SUCCESS
        }
        Command::Openapi => {
            println!("{}", fastlane_server::api::spec_json());
            ExitCode::SUCCESS
        }
        Command::Prune { config } => {
            let Some(_traces) = init_logging(cli.verbose) else {
                return ExitCode::FAILURE;
            };
            match prune(config) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(err) => {
                    eprintln!("fastlane: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Version => {
            println!("fastlane {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "fastlane",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Client(command) => {
            let Some(_traces) = init_logging(cli.verbose) else {
                return ExitCode::FAILURE;
            };
            cli::main(command, cli.client)
        }
        Command::Standalone { host, port, config } => {
            let Some(_traces) = init_logging(cli.verbose) else {
                return ExitCode::FAILURE;
            };
            exit(run(config, |config| {
                fastlane_server::commands::standalone(config, SocketAddr::new(host, port))
            }))
        }
        Command::Api { host, port, config } => {
            let Some(_traces) = init_logging(cli.verbose) else {
                return ExitCode::FAILURE;
            };
            exit(run(config, |config| {
                fastlane_server::commands::api(config, SocketAddr::new(host, port))
            }))
        }
        Command::Worker {
            id,
            no_jobs,
            no_monitor,
            no_notify,
            no_webhooks,
            config,
        } => {
            let Some(_traces) = init_logging(cli.verbose) else {
                return ExitCode::FAILURE;
            };
            let roles = WorkerRoles {
                jobs: !no_jobs,
                monitor: !no_monitor,
                notify: !no_notify,
                webhooks: !no_webhooks,
            };
            if roles == WorkerRoles::NONE {
                eprintln!("fastlane: a worker with every role switched off would do nothing");
                return ExitCode::FAILURE;
            }
            let id = id.unwrap_or_else(fastlane_server::commands::default_id);
            exit(run(config, |config| {
                fastlane_server::commands::worker(config, id, roles)
            }))
        }
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fastlane: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration (`file`, then the environment) and runs
/// `command` with it on a multi-threaded runtime.
fn run<F, Fut>(file: Option<PathBuf>, command: F) -> anyhow::Result<()>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(file.as_deref(), &env)?;
    tokio::runtime::Runtime::new()?.block_on(command(config))
}

/// Prunes defunct containers; false when some host could not be pruned.
fn prune(file: Option<PathBuf>) -> anyhow::Result<bool> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(file.as_deref(), &env)?;
    tokio::runtime::Runtime::new()?.block_on(fastlane_server::prune::run(&config))
}
