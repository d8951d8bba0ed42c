//! The `oqsdns` command: parse the command line, load the configuration, call the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oqsdns_config::{Area, Config, ServerAddr};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A DNS forwarder for the Online Qualification Confirmation network (オンライン資格確認).
#[derive(Debug, Parser)]
#[command(name = "oqsdns", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run {
        /// Configuration file; without one the built-in defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override the area: east, west or none.
        #[arg(long)]
        area: Option<Area>,
        /// Listen on this address instead of the configured ones (repeatable).
        #[arg(long, value_name = "ADDR")]
        listen: Vec<ServerAddr>,
    },
    /// Validate or show a configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file: exit 0 if it is valid, print the errors and exit 2 if not.
    Check {
        /// The file to check.
        path: PathBuf,
    },
    /// Print the effective configuration, the area's table expanded.
    Show {
        /// Configuration file; without one the built-in defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Translate an OpenWrt UCI file (/etc/config/oqsdns) into TOML on stdout; exit 2 if invalid.
    FromUci {
        /// The UCI file.
        path: PathBuf,
    },
}

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    let loaded = match path {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    loaded.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { path },
        } => match load(Some(&path)) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Config {
            command: ConfigCommand::Show { config },
        } => match load(config.as_ref()) {
            Ok(config) => {
                print!("{}", config.to_effective_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Config {
            command: ConfigCommand::FromUci { path },
        } => {
            let translated = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    oqsdns::uci::from_uci(&text, &|p| std::fs::read_to_string(p))
                        .map_err(|e| e.to_string())
                });
            match translated {
                Ok(config) => {
                    print!(
                        "{}",
                        oqsdns::uci::to_toml(&config, &path.display().to_string())
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            config,
            area,
            listen,
        } => {
            let mut config = match load(config.as_ref()) {
                Ok(config) => config,
                Err(code) => return code,
            };
            if let Some(area) = area {
                config.area = area;
            }
            if !listen.is_empty() {
                config.server.listen = listen;
            }
            if let Err(e) = config.validate() {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            oqsdns::logging::init();
            run(config)
        }
    }
}

fn run(config: Config) -> ExitCode {
    let addrs: Vec<SocketAddr> = config.server.listen.iter().map(|a| a.0).collect();
    let listeners = match oqsdns::bind_all(&addrs) {
        Ok(listeners) => listeners,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        match oqsdns::run(&config, listeners, shutdown).await {
            Ok(()) => {
                info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    info!("shutting down");
    oqsdns::notify::stopping();
    shutdown.cancel();
}
