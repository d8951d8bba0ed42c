//! The `oqsdns` command: parse the command line, load the configuration, call the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use oqsdns::Daemon;
use oqsdns_config::{Area, Config, Listen, ServerAddr};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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
        /// Listen on this address, or "auto", instead of the configured ones (repeatable).
        #[arg(long, value_name = "ADDR")]
        listen: Vec<Listen>,
    },
    /// Run the guide's step-7 check through the daemon and straight to every upstream, and say
    /// what is wrong: exit 0 when all is well, 1 when not, 2 on a usage or configuration error.
    Check {
        /// Configuration file; without one the built-in defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override the area: east, west, auto or none.
        #[arg(long)]
        area: Option<Area>,
        /// The daemon's address (port 53 when omitted); default: the first listen address, or
        /// loopback for a wildcard.
        #[arg(long, value_name = "ADDR")]
        server: Option<ServerAddr>,
        /// Print the findings and verdicts as JSON.
        #[arg(long)]
        json: bool,
        /// Also write a support bundle to FILE, for the vendor: versions, the effective
        /// configuration, this check's result, the status endpoint's recent changes, the host's
        /// addresses.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// First record that line authentication (回線認証) was redone at
        /// https://www.lineauth.mnw after the IPv6 prefix changed (FAQ Q18): the daemon stops
        /// asking for it. Writes the daemon's state file.
        #[arg(long)]
        confirm_reauth: bool,
    },
    /// Ask the running daemon with this process ID to read its configuration again (SIGHUP): the
    /// unit's ExecReload, so that a reload needs no `kill` binary.
    Reload {
        /// The daemon's process ID ($MAINPID in the unit).
        #[arg(value_parser = clap::value_parser!(i32).range(1..))]
        pid: i32,
    },
    /// Validate or show a configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Put oqsdns behind OpenWrt's dnsmasq in /etc/config/dhcp, or undo it (the init script's
    /// start and stop). Prints "changed" when the file was changed (dnsmasq and odhcpd must then
    /// be restarted), "unchanged" otherwise.
    Openwrt {
        #[command(subcommand)]
        command: OpenwrtCommand,
    },
}

#[derive(Debug, Subcommand)]
enum OpenwrtCommand {
    /// dnsmasq forwards to oqsdns's loopback port and lets the guide's private answers through;
    /// when odhcpd relays, the LAN announces the router as DNS server.
    Setup {
        /// dnsmasq's and odhcpd's UCI file.
        #[arg(long, default_value = "/etc/config/dhcp")]
        dhcp: PathBuf,
        /// oqsdns's UCI file (for its port and routes).
        #[arg(long, default_value = "/etc/config/oqsdns")]
        config: PathBuf,
        /// Where the previous settings are kept for `restore`.
        #[arg(long, default_value = OPENWRT_STATE)]
        state: PathBuf,
        /// The router's address to announce on the LAN in relay mode (repeatable).
        #[arg(long, value_name = "ADDR")]
        announce: Vec<std::net::IpAddr>,
    },
    /// Puts back what `setup` changed, and removes the state file.
    Restore {
        /// dnsmasq's and odhcpd's UCI file.
        #[arg(long, default_value = "/etc/config/dhcp")]
        dhcp: PathBuf,
        /// The state `setup` kept.
        #[arg(long, default_value = OPENWRT_STATE)]
        state: PathBuf,
    },
}

/// Where `oqsdns openwrt setup` keeps what it changed.
const OPENWRT_STATE: &str = "/etc/oqsdns/dhcp.saved";

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

/// Exit status of `run` and `config check` for a configuration that is invalid: retrying cannot
/// help (the unit's `RestartPreventExitStatus=2`).
const EXIT_CONFIG: u8 = 2;

/// Exit status of `run` when a listen address or the status endpoint cannot be opened (taken by
/// another server, or not permitted): distinct from a crash (1), so that it reads as what it is.
const EXIT_LISTEN: u8 = 3;

fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    let loaded = match path {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    loaded.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// How to read the configuration again on SIGHUP: the file and the command line's overrides.
#[derive(Debug, Clone)]
struct Source {
    path: Option<PathBuf>,
    area: Option<Area>,
    listen: Vec<Listen>,
}

impl Source {
    fn load(&self) -> Result<Config, oqsdns_config::ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(area) = self.area {
            config.area = area;
        }
        if !self.listen.is_empty() {
            config.server.listen.clone_from(&self.listen);
        }
        config.validate()?;
        Ok(config)
    }
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
                print!("{}", show(&config));
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
        Command::Check {
            config,
            area,
            server,
            json,
            bundle,
            confirm_reauth,
        } => check(config, area, server, json, bundle, confirm_reauth),
        Command::Reload { pid } => {
            let pid = nix::unistd::Pid::from_raw(pid);
            match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot signal the daemon (process {pid}) to reload: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Openwrt { command } => match openwrt(command) {
            Ok(changed) => {
                println!("{}", if changed { "changed" } else { "unchanged" });
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            config,
            area,
            listen,
        } => {
            let source = Source {
                path: config,
                area,
                listen,
            };
            let config = match source.load() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            oqsdns::logging::init();
            run(config, source)
        }
    }
}

/// Runs `oqsdns openwrt`; whether /etc/config/dhcp changed.
fn openwrt(command: OpenwrtCommand) -> Result<bool, String> {
    match command {
        OpenwrtCommand::Setup {
            dhcp,
            config,
            state,
            announce,
        } => oqsdns::openwrt::setup_files(&dhcp, &config, &state, announce),
        OpenwrtCommand::Restore { dhcp, state } => oqsdns::openwrt::restore_files(&dhcp, &state),
    }
}

/// The effective configuration, after what the daemon would bind; `area = "auto"` is resolved by
/// probing, as the daemon would.
fn show(config: &Config) -> String {
    format!("{}{}", bound(config), show_area(config))
}

/// The addresses the daemon would bind now, as TOML comments: `"auto"` expanded from the
/// interfaces' addresses.
fn bound(config: &Config) -> String {
    let mut text = String::new();
    for listen in &config.server.listen {
        match listen {
            Listen::Addr(addr) => {
                text += &format!("# listen {addr}: bound as written (UDP and TCP)\n")
            }
            Listen::Auto(port) => {
                let interfaces = if config.server.interfaces.is_empty() {
                    "every interface".to_string()
                } else {
                    format!("loopback and {}", config.server.interfaces.join(", "))
                };
                text += &format!(
                    "# listen {listen}: each address of {interfaces} on port {port}, followed as addresses come and go; now:\n"
                );
                let auto = oqsdns::sockets::AutoListen::of(&config.server).unwrap_or_default();
                let now = oqsdns::sockets::would_bind(&auto);
                for addr in now.into_iter().filter(|a| a.port() == *port) {
                    text += &format!("#   {addr}\n");
                }
            }
        }
    }
    text
}

fn show_area(config: &Config) -> String {
    if config.area != Area::Auto {
        return config.to_effective_toml();
    }
    let timeout = config.health.timeout.0;
    let detected = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| rt.block_on(oqsdns_core::probe::detect_area(timeout)));
    match detected {
        Some(area) => format!(
            "# area auto: detected {area}\n{}",
            config.with_area(area).to_effective_toml()
        ),
        None => format!(
            "# area auto: no NW-base DNS answers in either area now; the daemon would use east\n{}",
            config.with_area(Area::East).to_effective_toml()
        ),
    }
}

fn check(
    path: Option<PathBuf>,
    area: Option<Area>,
    server: Option<ServerAddr>,
    json: bool,
    bundle: Option<PathBuf>,
    confirm_reauth: bool,
) -> ExitCode {
    let source = Source {
        path: path.clone(),
        area,
        listen: Vec::new(),
    };
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let server = server.map_or_else(|| oqsdns::check::default_server(&config), |s| s.0);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if confirm_reauth {
        match runtime.block_on(oqsdns::check::confirm_reauth(&config, server)) {
            Ok(done) => eprintln!(
                "回線認証のやり直しを記録しました（{path}）。IPv6 プレフィックス {known} を回線のものとします。\n\
                 Recorded that line authentication was redone ({path}); {known} is now the line's IPv6 prefix.",
                path = done.path.display(),
                known = if done.known.is_empty() { "(none)".to_string() } else { done.known.join(" ") },
            ),
            Err(e) => {
                eprintln!("error: cannot record the line authentication: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let report = runtime.block_on(oqsdns::check::run(&config, server));
    if json {
        print!("{}", oqsdns::check::render::json(&report));
    } else {
        print!("{}", oqsdns::check::render::text(&report));
    }
    if let Some(file) = bundle {
        let text = runtime.block_on(oqsdns::check::bundle::collect(
            &config,
            &report,
            path.as_deref(),
        ));
        if let Err(e) = oqsdns::check::bundle::write(&file, &text) {
            eprintln!("error: cannot write {}: {e}", file.display());
            return ExitCode::from(2);
        }
        eprintln!(
            "サポート用ファイルを書きました / support bundle written: {}",
            file.display()
        );
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(config: Config, source: Source) -> ExitCode {
    let addrs: Vec<SocketAddr> = config.server.addresses();
    let listeners = match oqsdns::bind_all(&addrs) {
        Ok(listeners) => listeners,
        Err(e) => {
            error!(addr = %e.addr, transport = e.transport, error = %e.source, "{e}; not starting");
            return ExitCode::from(EXIT_LISTEN);
        }
    };
    let mut bound: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
    // "system" must not name the daemon itself: the addresses "auto" serves count as its own.
    if let Some(auto) = oqsdns::sockets::AutoListen::of(&config.server) {
        bound.extend(oqsdns::sockets::would_bind(&auto));
    }
    let system = oqsdns::system_for(&config, Path::new(oqsdns::RESOLV_CONF), &bound);
    oqsdns::limits::raise_nofile(&config, &system);
    let status = match config
        .status
        .as_ref()
        .map(|s| oqsdns::status::bind(s.listen))
    {
        Some(Err(e)) => {
            let addr = config.status.as_ref().map(|s| s.listen.to_string());
            let addr = addr.unwrap_or_default();
            error!(%addr, error = %e, "cannot open the status endpoint on {addr}: {e}; not starting");
            return ExitCode::from(EXIT_LISTEN);
        }
        status => status.and_then(Result::ok),
    };
    // One worker thread beside each UDP listener's receive thread: a forwarder's work per query
    // is a few system calls, and a second worker mostly added wake-ups and steals between the
    // two (bench/run.sh, mixed cache miss: 7 % less CPU a query and 1 MiB less memory with one;
    // docs/PERFORMANCE.md). One core forwards some 50,000 cache misses a second.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
        let daemon = Daemon::start(&config, &bound, shutdown.clone()).await;
        tokio::spawn(signals(shutdown.clone(), daemon.clone(), source));
        if let (Some(listener), Some(s)) = (status, &config.status) {
            let serve =
                oqsdns::status::serve(listener, daemon.clone(), s.connections, shutdown.clone());
            tokio::spawn(async move {
                serve
                    .await
                    .inspect_err(|e| error!(error = %e, "status endpoint stopped: {e}"))
            });
        }
        match oqsdns::serve(&config, listeners, daemon.handler(), shutdown).await {
            Ok(()) => {
                info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                error!(error = %e, "{e}; not starting");
                ExitCode::from(EXIT_LISTEN)
            }
            Err(e) => {
                error!(error = %e, "stopped on an error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP reloads the configuration, keeping the running one
/// when the file is broken.
async fn signals(shutdown: CancellationToken, daemon: Arc<Daemon>, source: Source) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install the signal handlers: SIGTERM will not stop the daemon cleanly, SIGHUP will not reload");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&daemon, &source).await,
        }
    }
    info!("shutting down");
    oqsdns::notify::stopping();
    shutdown.cancel();
}

async fn reload(daemon: &Daemon, source: &Source) {
    oqsdns::notify::reloading();
    match source.load() {
        Err(e) => {
            error!(error = %e, "reload failed; the running configuration stays in force: {e}")
        }
        Ok(config) => {
            if config.server != daemon.config().server {
                warn!(
                    "[server] changed: listen addresses and limits take effect at the next restart"
                );
            }
            daemon.apply(&config).await;
            let from = source.path.as_ref().map_or_else(
                || "the built-in defaults".to_owned(),
                |p| p.display().to_string(),
            );
            info!(path = %from, "configuration reloaded from {from}");
        }
    }
    oqsdns::notify::reloaded();
}
