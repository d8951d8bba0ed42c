//! Configuration tests: every shipped file loads, the presets hold the guide's table, and each kind
//! of bad input is refused with its position and what was expected.

use std::path::{Path, PathBuf};

use oqsdns_config::{Area, Config, DefaultServer, RouteOrigin};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(toml_files(&path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files
}

#[test]
fn every_file_in_config_loads() {
    let files = toml_files(&config_dir());
    assert!(
        files.len() >= 3,
        "config/ should hold the example and both presets: {files:?}"
    );
    for file in files {
        Config::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

#[test]
fn the_example_loads_exactly_as_written() {
    let config = Config::load(&config_dir().join("oqsdns.toml")).unwrap();
    assert_eq!(config.area, Area::East);
    let listen: Vec<String> = config
        .server
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(listen, ["auto"]);
    assert_eq!(config.server.allow.len(), 8);
    assert_eq!(config.forward.default, [DefaultServer::System]);
    assert_eq!(config.forward.timeout.0, std::time::Duration::from_secs(1));
    let route = &config.routes[0];
    assert_eq!(route.domains[0].as_str(), "clinic.example");
    let servers: Vec<String> = route.servers.iter().map(ToString::to_string).collect();
    assert_eq!(servers, ["192.168.1.10:53", "[fd00::10]:5353"]);
}

#[test]
fn presets_hold_the_guides_table_with_primary_first() {
    let table = |area: &str| {
        let config = Config::from_toml(&format!("area = \"{area}\"")).unwrap();
        config
            .routes_effective()
            .into_iter()
            .map(|r| {
                let domains: Vec<String> = r.domains.iter().map(ToString::to_string).collect();
                let servers: Vec<String> = r.servers.iter().map(|s| s.0.ip().to_string()).collect();
                (r.name, domains, servers)
            })
            .collect::<Vec<_>>()
    };
    let nw_base = [
        "onshikaku.org",
        "lineauth.mnw",
        "base.oqs-pdl.org",
        "managedpki.ne.jp",
        "cybertrust.ne.jp",
        "secomtrust.net",
    ]
    .map(String::from)
    .to_vec();
    let east = table("east");
    assert_eq!(east[0].1, ["flets-east.jp"]);
    assert_eq!(east[0].2, ["2404:1a8:7f01:a::3", "2404:1a8:7f01:b::3"]);
    assert_eq!(east[1].1, nw_base);
    assert_eq!(
        east[1].2,
        ["2404:1a8:f583:d00::53:1", "2404:1a8:f583:d00::53:2"]
    );
    let west = table("west");
    assert_eq!(west[0].1, ["flets-west.jp"]);
    assert_eq!(west[0].2, ["2001:a7ff:5f01::a", "2001:a7ff:5f01:1::a"]);
    assert_eq!(west[1].1, nw_base);
    assert_eq!(
        west[1].2,
        ["2001:a7ff:f014:d00::53:1", "2001:a7ff:f014:d00::53:2"]
    );
    assert!(table("none").is_empty());
}

#[test]
fn a_configured_route_adds_to_and_replaces_preset_entries() {
    let config = Config::from_toml(
        r#"
        area = "east"
        [[route]]
        domains = ["oqs-st.onshikaku.org", "Secomtrust.NET."]
        servers = ["fd00::53"]
        "#,
    )
    .unwrap();
    let routes = config.routes_effective();
    let nw_base = routes.iter().find(|r| r.name == "nw-base").unwrap();
    assert!(nw_base
        .domains
        .iter()
        .all(|d| d.as_str() != "secomtrust.net"));
    assert!(nw_base
        .domains
        .iter()
        .any(|d| d.as_str() == "onshikaku.org"));
    let user = routes
        .iter()
        .find(|r| r.origin == RouteOrigin::Config)
        .unwrap();
    assert_eq!(user.name, "oqs-st.onshikaku.org");
    let domains: Vec<&str> = user.domains.iter().map(|d| d.as_str()).collect();
    assert_eq!(domains, ["oqs-st.onshikaku.org", "secomtrust.net"]);
    assert_eq!(user.servers[0].to_string(), "[fd00::53]:53");
}

#[test]
fn config_show_output_loads_back_to_the_same_table() {
    let config = Config::load(&config_dir().join("oqsdns.toml")).unwrap();
    let shown = config.to_effective_toml();
    let again = Config::from_toml(&shown).unwrap_or_else(|e| panic!("{e}\n{shown}"));
    assert_eq!(
        config.routes_effective().len(),
        again.routes_effective().len()
    );
    for (a, b) in config
        .routes_effective()
        .iter()
        .zip(again.routes_effective().iter())
    {
        assert_eq!((&a.domains, &a.servers), (&b.domains, &b.servers));
    }
    assert_eq!(config.server, again.server);
}

#[test]
fn no_file_means_safe_defaults() {
    let config = Config::default();
    assert_eq!(config.area, Area::None);
    assert!(config
        .server
        .allow
        .iter()
        .all(|a| a.to_string() != "0.0.0.0/0" && a.to_string() != "::/0"));
    assert_eq!(Config::from_toml("").unwrap(), config);
}

#[test]
fn abuse_limits_parse_and_rate_zero_turns_the_limit_off() {
    let config = Config::from_toml(
        "[server]\nrate = 0\nburst = 0\ntcp_connections_per_client = 4\ntcp_frame_timeout = \"500ms\"\n",
    )
    .unwrap();
    assert_eq!((config.server.rate, config.server.burst), (0, 0));
    assert_eq!(config.server.tcp_connections_per_client, 4);
    assert_eq!(
        config.server.tcp_frame_timeout.0,
        std::time::Duration::from_millis(500)
    );
    let defaults = Config::default().server;
    assert_eq!((defaults.rate, defaults.burst), (200, 1000));
    assert_eq!(defaults.tcp_connections_per_client, 16);
}

#[test]
fn status_is_off_unless_listen_is_given() {
    assert_eq!(Config::default().status, None);
    let config = Config::from_toml("[status]\nlisten = \"[fd00::1]:9153\"\n").unwrap();
    let status = config.status.clone().expect("[status] given");
    assert_eq!(status.listen, "[fd00::1]:9153".parse().unwrap());
    assert_eq!(status.connections, 16);
    assert!(config.to_effective_toml().contains("[status]"));
    assert!(!Config::default().to_effective_toml().contains("[status]"));
}

/// Each bad input, the position the error must name, and words it must contain.
#[test]
fn bad_inputs_are_refused_with_position_and_reason() {
    let cases: &[(&str, &str, Option<&str>, &[&str])] = &[
        ("syntax", "area = \"east\"\n[server\n", Some("line 2"), &["TOML parse error"]),
        ("unknown top key", "area = \"east\"\nzone = 1\n", Some("line 2"), &["unknown field `zone`"]),
        ("unknown nested key", "[server]\nlisten_on = []\n", Some("line 2"), &["unknown field `listen_on`"]),
        ("bad area", "area = \"north\"\n", Some("line 1"), &["unknown variant `north`"]),
        ("bad listen address", "[server]\nlisten = [\"localhost:53\"]\n", Some("line 2"), &["\"localhost:53\"", "expected an address"]),
        ("bad port", "[server]\nlisten = [\"127.0.0.1:99999\"]\n", Some("line 2"), &["expected an address"]),
        ("bad allow network", "[server]\nallow = [\"10.0.0.0/33\"]\n", Some("line 2"), &["not a network"]),
        ("bad server address", "[[route]]\ndomains = [\"a.example\"]\nservers = [\"dns.example\"]\n", Some("line 3"), &["expected an address"]),
        ("bad domain", "[[route]]\ndomains = [\"bad domain.example\"]\nservers = [\"192.0.2.1\"]\n", Some("line 2"), &["a domain name"]),
        ("empty label", "[[route]]\ndomains = [\"a..example\"]\nservers = [\"192.0.2.1\"]\n", Some("line 2"), &["empty label"]),
        ("empty server list", "[[route]]\ndomains = [\"a.example\"]\nservers = []\n", Some("line 3"), &["at least one"]),
        ("missing servers", "[[route]]\ndomains = [\"a.example\"]\n", Some("line 1"), &["missing field `servers`"]),
        ("empty default", "[forward]\ndefault = []\n", Some("line 2"), &["at least one"]),
        ("bad duration", "[forward]\ntimeout = \"1 second\"\n", Some("line 2"), &["not a duration"]),
        ("zero duration", "[forward]\ntimeout = \"0s\"\n", Some("line 2"), &["longer than zero"]),
        ("duration without unit", "[forward]\ntimeout = \"5\"\n", Some("line 2"), &["not a duration"]),
        ("duplicate route domain", "[[route]]\ndomains = [\"a.example\"]\nservers = [\"192.0.2.1\"]\n[[route]]\ndomains = [\"A.example.\"]\nservers = [\"192.0.2.2\"]\n", None, &["a.example is in more than one"]),
        ("duplicate listen", "[server]\nlisten = [\"127.0.0.1\", \"127.0.0.1:53\"]\n", None, &["twice"]),
        ("empty allow", "[server]\nallow = []\n", None, &["no client could be served"]),
        ("udp payload", "[server]\nudp_payload = 100\n", None, &["512 to 4096"]),
        ("zero burst", "[server]\nrate = 50\nburst = 0\n", None, &["server.burst is 0"]),
        ("negative rate", "[server]\nrate = -1\n", Some("line 2"), &["rate"]),
        ("zero per-client connections", "[server]\ntcp_connections_per_client = 0\n", None, &["tcp_connections_per_client must be at least 1"]),
        ("zero frame timeout", "[server]\ntcp_frame_timeout = \"0ms\"\n", Some("line 2"), &["longer than zero"]),
        ("status without listen", "[status]\nconnections = 4\n", Some("line 1"), &["missing field `listen`"]),
        ("status unknown key", "[status]\nlisten = \"127.0.0.1:9153\"\nport = 1\n", Some("line 3"), &["unknown field `port`"]),
        ("status bad address", "[status]\nlisten = \"127.0.0.1\"\n", Some("line 2"), &["invalid socket address"]),
        ("status port 0", "[status]\nlisten = \"127.0.0.1:0\"\n", None, &["status.listen 127.0.0.1:0 has no port"]),
        ("status on a DNS address", "[server]\nlisten = [\"127.0.0.1:5353\"]\n[status]\nlisten = \"127.0.0.1:5353\"\n", None, &["also in server.listen"]),
        ("auto port 0", "[server]\nlisten = [\"auto:0\"]\n", Some("line 2"), &["\"auto\" with an optional port"]),
        ("auto misspelt", "[server]\nlisten = [\"automatic\"]\n", Some("line 2"), &["or \"auto\""]),
        ("auto beside a wildcard", "[server]\nlisten = [\"auto\", \"[::]:53\"]\n", None, &["both [::]:53 and \"auto\" on port 53"]),
        ("interfaces without auto", "[server]\nlisten = [\"127.0.0.1\"]\ninterfaces = [\"br-lan\"]\n", None, &["no \"auto\" entry"]),
        ("status on an auto port", "[server]\nlisten = [\"auto:9153\"]\n[status]\nlisten = \"127.0.0.1:9153\"\n", None, &["also in server.listen"]),
        ("bad forwarder", "[server]\nforwarders = [\"router.lan\"]\n", Some("line 2"), &["forwarders"]),
        ("zero forwarder burst", "[server]\nforwarder_burst = 0\n", None, &["server.forwarder_burst is 0"]),
        ("status zero connections", "[status]\nlisten = \"[::1]:9153\"\nconnections = 0\n", None, &["status.connections must be at least 1"]),
    ];
    let dir = std::env::temp_dir().join(format!("oqsdns-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text, position, words) in cases {
        let path = dir.join(format!("{}.toml", name.replace(' ', "-")));
        std::fs::write(&path, text).unwrap();
        let error = Config::load(&path).expect_err(name).to_string();
        assert!(
            error.starts_with(&path.display().to_string()),
            "{name}: no file name in {error}"
        );
        if let Some(position) = position {
            assert!(
                error.contains(position),
                "{name}: no {position:?} in {error}"
            );
        }
        for word in *words {
            assert!(error.contains(word), "{name}: no {word:?} in {error}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn auto_listen_round_trips_beside_explicit_addresses() {
    let text = "[server]\nlisten = [\"auto\", \"auto:5353\", \"192.0.2.1\"]\ninterfaces = [\"br-lan\"]\nforwarders = [\"192.168.1.1\"]\n";
    let config = Config::from_toml(text).unwrap();
    assert_eq!(config.server.auto_ports(), [53, 5353]);
    assert_eq!(
        config.server.addresses(),
        ["192.0.2.1:53".parse::<std::net::SocketAddr>().unwrap()]
    );
    assert!(
        !config.server.rate_loopback,
        "loopback is not limited by default"
    );
    let again = Config::from_toml(&config.to_effective_toml()).unwrap();
    assert_eq!(again.server, config.server);
}

#[test]
fn a_missing_file_is_named() {
    let error = Config::load(Path::new("/nonexistent/oqsdns.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/nonexistent/oqsdns.toml") && error.contains("cannot read"),
        "{error}"
    );
}
