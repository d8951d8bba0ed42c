//! The end-to-end lab: the connection guide's network built in Linux network namespaces, real
//! knotd servers holding the guide's addresses, the built `oqsdns` binary, and real `dig`.
//!
//! [`Lab::start`] builds everything for one area and returns a guard; dropping it (also when a
//! test panics) kills every process and deletes the namespaces. Nothing here is routed outside
//! the lab's own namespaces.

pub mod beside;
pub mod dig;
pub mod env;
pub mod knot;
pub mod netns;
pub mod openwrt;
pub mod process;
pub mod restart;
pub mod run;
pub mod topology;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use dig::{Answer, Record};
pub use env::{tools_or_skip, Tools};
pub use topology::Host;

use netns::ScratchDir;
use process::{run_bounded, run_ok, Daemon};
use topology::Network;

/// How long oqsdns may take to bind and send READY=1.
const OQSDNS_READY: Duration = Duration::from_secs(20);
/// Extra time a client process gets beyond its own timeout before it is killed.
const CLIENT_SLACK: Duration = Duration::from_secs(5);

/// The NTT area whose preset the daemon runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// NTT East (東日本).
    East,
    /// NTT West (西日本).
    West,
}

impl Area {
    /// The name the configuration uses: `east` or `west`.
    pub fn name(self) -> &'static str {
        match self {
            Self::East => "east",
            Self::West => "west",
        }
    }

    /// The area's NGN domain: `flets-east.jp` or `flets-west.jp`.
    pub fn ngn_domain(self) -> &'static str {
        match self {
            Self::East => "flets-east.jp",
            Self::West => "flets-west.jp",
        }
    }

    /// The NW-base DNS pair, primary first.
    pub fn nw_base(self) -> [IpAddr; 2] {
        match self {
            Self::East => [knot::NW_BASE_EAST_PRIMARY, knot::NW_BASE_EAST_ALTERNATE],
            Self::West => [knot::NW_BASE_WEST_PRIMARY, knot::NW_BASE_WEST_ALTERNATE],
        }
    }

    /// The NGN DNS pair, primary first.
    pub fn ngn(self) -> [IpAddr; 2] {
        match self {
            Self::East => [knot::NGN_EAST_PRIMARY, knot::NGN_EAST_ALTERNATE],
            Self::West => [knot::NGN_WEST_PRIMARY, knot::NGN_WEST_ALTERNATE],
        }
    }
}

/// What a test starts in the oqsdns namespace before oqsdns, given the namespace and the scratch
/// directory.
type Before<'a> = &'a dyn Fn(&netns::Netns, &Path) -> Result<Vec<beside::Program>, String>;

/// What nftables drops on the NGN side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every packet to the addresses.
    All,
    /// DNS over UDP to the addresses; TCP still passes.
    Udp,
    /// DNS over TCP to the addresses; UDP still passes.
    Tcp,
}

/// A running lab. Dropping it stops oqsdns and the knotd servers and deletes the namespaces.
#[derive(Debug)]
pub struct Lab {
    // Field order is drop order: processes first, then namespaces, then their files.
    oqsdns: Daemon,
    beside: Vec<beside::Program>,
    knots: Vec<Daemon>,
    /// TCP listeners on port 443 of the centre's addresses ([`topology::CENTRE`]) on the NGN side.
    centre: Vec<netns::TcpServer>,
    net: Network,
    scratch: ScratchDir,
    tools: Tools,
    area: Area,
}

impl Lab {
    /// Builds the lab with oqsdns running the `area` preset, or returns `None` after saying why
    /// `test` is skipped. Panics when the lab cannot be built although it should.
    pub fn start(test: &str, area: Area) -> Option<Self> {
        Self::start_with(test, area, "")
    }

    /// [`Lab::start`] with `extra` appended to the daemon's configuration (such as a `[health]`
    /// table).
    pub fn start_with(test: &str, area: Area, extra: &str) -> Option<Self> {
        let tools = tools_or_skip(test)?;
        match Self::build(tools, area, extra, &|_, _| Ok(Vec::new())) {
            Ok(lab) => Some(lab),
            Err(e) => panic!("{test}: cannot build the lab: {e}"),
        }
    }

    fn build(tools: Tools, area: Area, extra: &str, before: Before<'_>) -> Result<Self, String> {
        let prefix = netns::unique_prefix();
        let scratch = ScratchDir::create(&prefix)?;
        let server_addrs: Vec<IpAddr> = knot::SERVERS
            .iter()
            .filter(|s| s.host == Host::Ngn)
            .flat_map(|s| s.addrs.iter().copied())
            .chain(topology::CENTRE)
            .collect();
        let net = Network::build(&tools.ip, &prefix, &server_addrs)?;
        let centre = topology::CENTRE
            .iter()
            .map(|ip| net.ns(Host::Ngn).tcp_server((*ip, 443).into()))
            .collect::<Result<Vec<_>, _>>()?;
        let data = data_dir();
        let mut knots = Vec::new();
        for server in &knot::SERVERS {
            let ns = net.ns(server.host);
            knots.push(knot::start(
                &tools.knotd,
                ns,
                server,
                &data,
                scratch.path(),
            )?);
        }
        let beside = before(net.ns(Host::Oqsdns), scratch.path())?;
        let config = scratch.path().join("oqsdns.toml");
        std::fs::write(&config, oqsdns_config(area) + extra).map_err(|e| e.to_string())?;
        let cmd = oqsdns_command(&net, &tools, scratch.path());
        let oqsdns = Daemon::start("oqsdns", cmd, scratch.path(), OQSDNS_READY)?;
        Ok(Self {
            oqsdns,
            beside,
            knots,
            centre,
            net,
            scratch,
            tools,
            area,
        })
    }

    /// Where the NGN side's TCP servers on port 443 of the centre's addresses listen.
    pub fn centre(&self) -> Vec<std::net::SocketAddr> {
        self.centre.iter().map(netns::TcpServer::addr).collect()
    }

    /// The area the daemon runs.
    pub fn area(&self) -> Area {
        self.area
    }

    /// A query from the terminal to oqsdns's LAN IPv6 address over UDP; see [`Query`].
    pub fn query<'a>(&'a self, name: &str, rtype: &str) -> Query<'a> {
        Query {
            lab: self,
            name: name.to_string(),
            rtype: rtype.to_string(),
            server: IpAddr::V6(topology::OQSDNS_LAN6),
            from: Host::Terminal,
            source: None,
            tcp: false,
            options: Vec::new(),
            class: None,
            wait_secs: 3,
        }
    }

    /// Runs `nslookup -type=<rtype> <name> <server>` on the terminal and returns its output.
    pub fn nslookup(&self, name: &str, rtype: &str, server: IpAddr) -> String {
        let mut cmd = self.net.ns(Host::Terminal).command(&self.tools.nslookup);
        cmd.arg(format!("-type={rtype}"))
            .args(["-timeout=3", "-retry=1"])
            .arg(name)
            .arg(server.to_string());
        let out = run_bounded(&mut cmd, Duration::from_secs(3) + CLIENT_SLACK)
            .unwrap_or_else(|e| panic!("cannot run nslookup: {e}"));
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Makes nftables on the NGN side drop `cut` traffic to `servers`, replacing any earlier cut.
    pub fn cut_off(&self, servers: &[IpAddr], cut: Cut) {
        let mut rules = String::new();
        for server in servers {
            let family = if server.is_ipv6() { "ip6" } else { "ip" };
            let what = match cut {
                Cut::All => String::new(),
                Cut::Udp => "udp dport 53 ".to_string(),
                Cut::Tcp => "tcp dport 53 ".to_string(),
            };
            rules.push_str(&format!("    {family} daddr {server} {what}drop\n"));
        }
        let ruleset = format!(
            "flush ruleset\ntable inet oqslab {{\n  chain input {{\n    type filter hook input \
             priority 0; policy accept;\n{rules}  }}\n}}\n"
        );
        self.nft(&ruleset);
    }

    /// Removes every cut.
    pub fn restore(&self) {
        self.nft("flush ruleset\n");
    }

    fn nft(&self, ruleset: &str) {
        let file = self.scratch.path().join("cut.nft");
        std::fs::write(&file, ruleset).expect("write the nftables ruleset");
        let mut cmd = self.net.ns(Host::Ngn).command(&self.tools.nft);
        cmd.arg("-f").arg(&file);
        if let Err(e) = run_ok(&mut cmd, Duration::from_secs(10)) {
            panic!("nft in the NGN namespace failed: {e}\nruleset:\n{ruleset}");
        }
    }

    /// The lab's base configuration of the daemon for its area (without any `extra`).
    pub fn base_config(&self) -> String {
        oqsdns_config(self.area)
    }

    /// Rewrites the daemon's configuration file (the lab's base plus `extra`, or `raw` as it is
    /// when given), sends SIGHUP and waits until the reload is over (RELOADING=1, then READY=1).
    pub fn reload(&mut self, extra: &str, raw: Option<&str>) {
        let text = raw.map_or_else(|| oqsdns_config(self.area) + extra, str::to_string);
        std::fs::write(self.scratch.path().join("oqsdns.toml"), text).expect("config written");
        self.oqsdns
            .signal(nix::sys::signal::SIGHUP)
            .expect("SIGHUP sent");
        let limit = Duration::from_secs(10);
        self.oqsdns
            .wait_for("RELOADING=1", limit)
            .unwrap_or_else(|e| panic!("{e}"));
        self.oqsdns
            .wait_for("READY=1", limit)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// What oqsdns logged so far (at debug level), for assertion messages.
    pub fn oqsdns_log(&self) -> String {
        self.oqsdns.log()
    }

    /// Panics unless oqsdns and every knotd still run.
    pub fn assert_running(&mut self) {
        assert!(
            self.oqsdns.running(),
            "oqsdns exited; its log:\n{}",
            self.oqsdns.log()
        );
        for knot in &mut self.knots {
            assert!(knot.running(), "a knotd exited; its log:\n{}", knot.log());
        }
    }
}

/// `oqsdns run` in the daemon's namespace with the lab's configuration, logging at debug level,
/// its state directory (as systemd's `StateDirectory=` gives it) in the scratch folder.
fn oqsdns_command(net: &Network, tools: &Tools, scratch: &Path) -> std::process::Command {
    let mut cmd = net.ns(Host::Oqsdns).command(&tools.oqsdns);
    cmd.arg("run")
        .arg("--config")
        .arg(scratch.join("oqsdns.toml"));
    cmd.env("RUST_LOG", "debug");
    cmd.env("STATE_DIRECTORY", scratch.join("state"));
    cmd
}

/// The daemon's configuration in the lab: the area preset as a user enables it, and the lab's
/// internet resolver as the default. That resolver is authoritative only, so its health probe
/// asks a name it holds rather than the root (`. NS`, which a real recursive resolver answers).
fn oqsdns_config(area: Area) -> String {
    format!(
        "area = \"{}\"\n\n[forward]\ndefault = [\"{}\", \"{}\"]\ntimeout = \"1s\"\nnames = [\"www.example.com AAAA\"]\n",
        area.name(),
        topology::INTERNET6,
        topology::INTERNET4
    )
}

/// `tests/lab`: zone files and the knotd configuration template.
fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab")
}

/// One dig run, built up from [`Lab::query`].
#[derive(Debug)]
pub struct Query<'a> {
    lab: &'a Lab,
    name: String,
    rtype: String,
    server: IpAddr,
    from: Host,
    source: Option<IpAddr>,
    tcp: bool,
    options: Vec<String>,
    class: Option<String>,
    wait_secs: u64,
}

impl Query<'_> {
    /// Over TCP.
    pub fn tcp(mut self) -> Self {
        self.tcp = true;
        self
    }

    /// To `server` instead of oqsdns's LAN IPv6 address.
    pub fn server(mut self, server: IpAddr) -> Self {
        self.server = server;
        self
    }

    /// From `host`, with `source` as the source address when given.
    pub fn from(mut self, host: Host, source: Option<IpAddr>) -> Self {
        self.from = host;
        self.source = source;
        self
    }

    /// An extra dig option, such as `+ignore`.
    pub fn option(mut self, option: &str) -> Self {
        self.options.push(option.to_string());
        self
    }

    /// Asks in this class (`CH` for the daemon's status) instead of IN.
    pub fn class(mut self, class: &str) -> Self {
        self.class = Some(class.to_string());
        self
    }

    /// dig's `+time=`: how long it waits for the reply, in seconds.
    pub fn wait(mut self, secs: u64) -> Self {
        self.wait_secs = secs;
        self
    }

    /// Runs dig and returns the reply; panics, with dig's output and the daemon's log, when no
    /// reply came.
    pub fn run(self) -> Answer {
        let lab = self.lab;
        let mut cmd = lab.net.ns(self.from).command(&lab.tools.dig);
        cmd.arg(format!("@{}", self.server))
            .args(dig::DIG_OPTIONS)
            .arg(format!("+time={}", self.wait_secs));
        if let Some(source) = self.source {
            cmd.arg("-b").arg(source.to_string());
        }
        if self.tcp {
            cmd.arg("+tcp");
        }
        cmd.args(&self.options).arg(&self.name).arg(&self.rtype);
        if let Some(class) = &self.class {
            cmd.arg(class);
        }
        let line = format!("{cmd:?}");
        let limit = Duration::from_secs(self.wait_secs) + CLIENT_SLACK;
        let out = run_bounded(&mut cmd, limit).unwrap_or_else(|e| panic!("cannot run dig: {e}"));
        match Answer::parse(&out.stdout) {
            Some(answer) => answer,
            None => panic!(
                "no reply to {line} (status {:?}):\n{}{}\n--- oqsdns log ---\n{}",
                out.status,
                out.stdout,
                out.stderr,
                lab.oqsdns_log()
            ),
        }
    }
}
