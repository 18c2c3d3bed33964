//! The `fastlane` command: `standalone`, `config`, `openapi`, `version`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use fastlane_server::config::Config;

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
    /// Print the OpenAPI document the server serves.
    Openapi,
    /// Print the version.
    Version,
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,fastlane_server=info,fastlane_plugin_docker=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config => {
            print!("{}", Config::annotated_defaults());
            ExitCode::SUCCESS
        }
        Command::Openapi => {
            println!("{}", fastlane_server::api::spec_json());
            ExitCode::SUCCESS
        }
        Command::Prune { config } => {
            init_logging(cli.verbose);
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
        Command::Standalone { host, port, config } => {
            init_logging(cli.verbose);
            match standalone(SocketAddr::new(host, port), config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("fastlane: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn standalone(bind: SocketAddr, file: Option<PathBuf>) -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(file.as_deref(), &env)?;
    tokio::runtime::Runtime::new()?.block_on(fastlane_server::standalone::run(config, bind))
}

/// Prunes defunct containers; false when some host could not be pruned.
fn prune(file: Option<PathBuf>) -> anyhow::Result<bool> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = Config::load(file.as_deref(), &env)?;
    tokio::runtime::Runtime::new()?.block_on(fastlane_server::prune::run(&config))
}
