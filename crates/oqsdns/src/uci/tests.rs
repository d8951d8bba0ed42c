//! The sample UCI files of `packaging/openwrt/` and the errors of bad ones.

use std::io;
use std::path::Path;

use oqsdns_config::{AllowEntry, Area, Config, DefaultServer};

use super::*;

fn no_file(_: &Path) -> io::Result<String> {
    Err(io::ErrorKind::NotFound.into())
}

fn load(text: &str) -> Result<Config, UciError> {
    from_uci(text, &no_file)
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

#[test]
fn shipped_config_gives_the_default_server_settings() {
    let config = load(include_str!(
        "../../../../packaging/openwrt/oqsdns/files/oqsdns.config"
    ))
    .expect("the shipped /etc/config/oqsdns is valid");
    let defaults = Config::default();
    assert_eq!(config.area, Area::East);
    // Behind dnsmasq: every loopback address on the side port, the rest as the defaults.
    assert_eq!(strings(&config.server.listen), ["auto:5353"]);
    assert_eq!(config.server.interfaces, ["lo"]);
    let server = oqsdns_config::ServerConfig {
        listen: defaults.server.listen.clone(),
        interfaces: Vec::new(),
        ..config.server.clone()
    };
    assert_eq!(server, defaults.server);
    assert_eq!(config.forward, defaults.forward);
    assert!(
        config.routes.is_empty(),
        "the example route is commented out"
    );
}

#[test]
fn listen_interfaces_and_forwarders_translate() {
    let text = "config oqsdns 'main'\n\tlist listen 'auto'\n\tlist listen '192.0.2.1'\n\tlist interface 'br-lan'\n\tlist interface 'eth0'\n\tlist forwarder '192.168.1.1'\n\toption forwarder_rate '0'\n\toption rate_loopback '1'\n";
    let config = load(text).unwrap();
    assert_eq!(strings(&config.server.listen), ["auto", "192.0.2.1:53"]);
    assert_eq!(config.server.interfaces, ["br-lan", "eth0"]);
    assert_eq!(strings(&config.server.forwarders), ["192.168.1.1"]);
    assert_eq!(config.server.forwarder_rate, 0);
    assert!(config.server.rate_loopback);
}

#[test]
fn openwrt_networks_become_their_devices() {
    let network = "config interface 'loopback'\n\toption device 'lo'\n\nconfig device\n\toption name 'br-lan'\n\toption type 'bridge'\n\tlist ports 'lan1'\n\nconfig interface 'lan'\n\toption device 'br-lan'\n\toption proto 'static'\n\nconfig interface 'guest'\n\toption type 'bridge'\n\toption ifname 'eth0.3'\n\nconfig interface 'wan'\n\toption ifname 'eth1'\n\nconfig interface 'wan6'\n\toption device '@wan'\n";
    let read = |path: &Path| {
        assert_eq!(path, Path::new(NETWORK));
        Ok(network.to_string())
    };
    let text = "config oqsdns 'main'\n\tlist listen 'auto'\n\tlist interface 'lan'\n\tlist interface 'guest'\n\tlist interface 'wan'\n\tlist interface 'wan6'\n\tlist interface 'eth9'\n\tlist interface 'br-lan'\n";
    let config = from_uci(text, &read).unwrap();
    assert_eq!(
        config.server.interfaces,
        ["br-lan", "br-guest", "eth1", "eth9"]
    );
    // Without the network file the names stay as written.
    assert_eq!(load(text).unwrap().server.interfaces.len(), 6);
}

#[test]
fn vendor_file_sets_every_key() {
    let config = load(include_str!("../../../../packaging/openwrt/tests/east.uci")).unwrap();
    assert_eq!(config.area, Area::East);
    assert_eq!(
        strings(&config.server.listen),
        ["[::]:53", "192.168.1.1:53"]
    );
    assert_eq!(config.server.allow[0], AllowEntry::Local);
    assert_eq!(strings(&config.server.allow), ["local", "192.168.1.0/24"]);
    assert_eq!(
        strings(&config.forward.default),
        ["[2001:db8::53]:53", "system"]
    );
    assert_eq!(config.forward.timeout.to_string(), "500ms");
    assert_eq!(config.server.max_inflight, 512);
    assert_eq!(config.server.tcp_connections, 64);
    assert_eq!(config.server.tcp_idle_timeout.to_string(), "5s");
    assert_eq!(config.server.udp_payload, 1400);
    assert_eq!((config.server.rate, config.server.burst), (500, 2000));
    assert_eq!(config.server.tcp_connections_per_client, 8);
    assert_eq!(config.server.tcp_frame_timeout.to_string(), "1s");
    // The disabled route is left out; the unnamed one takes its `option name`.
    let routes: Vec<(Option<&str>, Vec<String>, Vec<String>)> = config
        .routes
        .iter()
        .map(|r| (r.name.as_deref(), strings(&r.domains), strings(&r.servers)))
        .collect();
    assert_eq!(
        routes,
        [
            (
                Some("clinic"),
                vec!["clinic.example".into(), "ehr.clinic.example".into()],
                vec!["192.168.1.10:53".into(), "[fd00::10]:5353".into()],
            ),
            (
                Some("lab partner"),
                vec!["lab.example".into()],
                vec!["10.1.2.3:53".into()],
            ),
        ]
    );
}

#[test]
fn translation_loads_back_as_toml() {
    for text in [
        include_str!("../../../../packaging/openwrt/tests/east.uci"),
        include_str!("../../../../packaging/openwrt/tests/west-minimal.uci"),
        include_str!("../../../../packaging/openwrt/oqsdns/files/oqsdns.config"),
    ] {
        let config = load(text).unwrap();
        let toml = to_toml(&config, "/etc/config/oqsdns");
        assert_eq!(Config::from_toml(&toml).unwrap(), config, "{toml}");
    }
}

#[test]
fn minimal_file_keeps_the_defaults() {
    let config = load(include_str!(
        "../../../../packaging/openwrt/tests/west-minimal.uci"
    ))
    .unwrap();
    assert_eq!(
        config,
        Config {
            area: Area::West,
            ..Config::default()
        }
    );
}

#[test]
fn system_is_expanded_from_the_resolvfile() {
    let text = "config oqsdns\n\tlist default 'system'\n\tlist default '192.0.2.53'\n\toption resolvfile '/tmp/resolv.conf.d/resolv.conf.auto'\n";
    let read = |path: &Path| -> io::Result<String> {
        assert_eq!(path, Path::new("/tmp/resolv.conf.d/resolv.conf.auto"));
        Ok(
            "# Interface wan6\nnameserver 2404:1a8:7f01:a::3\nnameserver 2404:1a8:7f01:b::3\n"
                .into(),
        )
    };
    let config = from_uci(text, &read).unwrap();
    assert_eq!(
        strings(&config.forward.default),
        [
            "[2404:1a8:7f01:a::3]:53",
            "[2404:1a8:7f01:b::3]:53",
            "192.0.2.53:53"
        ]
    );
    // Unreadable or empty: "system" stays for the daemon to resolve.
    let config = from_uci(text, &no_file).unwrap();
    assert_eq!(config.forward.default[0], DefaultServer::System);
    let config = from_uci(text, &|_| Ok("# nothing yet\n".into())).unwrap();
    assert_eq!(config.forward.default[0], DefaultServer::System);
}

#[test]
fn quoting_and_comments() {
    let sections = parse(
        "# comment\npackage oqsdns\nconfig route \"r1\" # trailing\n\toption name 'a b'\"c\\\"d\"\n\tlist server 10.0.0.1#x\n",
    )
    .unwrap();
    assert_eq!(sections.len(), 1);
    assert_eq!(sections[0].kind, "route");
    assert_eq!(sections[0].name.as_deref(), Some("r1"));
    assert_eq!(sections[0].line, 3);
    let values: Vec<(&str, &str, bool, usize)> = sections[0]
        .statements
        .iter()
        .map(|s| (s.key.as_str(), s.value.as_str(), s.list, s.line))
        .collect();
    assert_eq!(
        values,
        [
            ("name", "a bc\"d", false, 4),
            ("server", "10.0.0.1#x", true, 5)
        ]
    );
}

#[test]
fn option_overrides_and_words() {
    let config = load(
        "config oqsdns\n\toption listen '127.0.0.1:53 [::1]:53'\n\toption timeout 1s\n\toption timeout 2s\n",
    )
    .unwrap();
    assert_eq!(strings(&config.server.listen), ["127.0.0.1:53", "[::1]:53"]);
    assert_eq!(config.forward.timeout.to_string(), "2s");
}

#[test]
fn status_listen_turns_the_status_endpoint_on() {
    assert_eq!(load("config oqsdns\n").unwrap().status, None);
    let config = load("config oqsdns\n\toption status_listen '192.168.1.1:9153'\n").unwrap();
    let status = config.status.expect("[status] set");
    assert_eq!(status.listen, "192.168.1.1:9153".parse().unwrap());
    let error = load("config oqsdns\n\toption status_listen '192.168.1.1'\n").unwrap_err();
    assert!(error.to_string().contains("status_listen"), "{error}");
}

#[test]
fn status_clients_turns_the_per_terminal_list_off() {
    let listen = "\toption status_listen '192.168.1.1:9153'\n";
    let on = load(&format!("config oqsdns\n{listen}")).unwrap();
    assert!(on.status.expect("[status] set").clients, "on by default");
    for text in [
        format!("config oqsdns\n{listen}\toption status_clients '0'\n"),
        format!("config oqsdns\n\toption status_clients '0'\n{listen}"),
    ] {
        let status = load(&text).unwrap().status.expect("[status] set");
        assert!(!status.clients, "{text}");
    }
    let again = load(&format!(
        "config oqsdns\n{listen}\toption status_clients '1'\n"
    ))
    .unwrap();
    assert!(again.status.expect("[status] set").clients);
    let error = load("config oqsdns\n\toption status_clients 'maybe'\n").unwrap_err();
    assert!(error.to_string().starts_with("line 2: "), "{error}");
}

/// Each bad file or text, the line the error names, and words the message must contain.
#[test]
fn errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            include_str!("../../../../packaging/openwrt/tests/bad-quote.uci"),
            3,
            "unterminated single quote",
        ),
        (
            include_str!("../../../../packaging/openwrt/tests/bad-option.uci"),
            6,
            "unknown option \"servers\" in a route section",
        ),
        (
            include_str!("../../../../packaging/openwrt/tests/bad-server.uci"),
            7,
            "server: \"fd00::10:5353:x\" is not an IP address",
        ),
        (
            "config oqsdns\n\toption area north\n",
            2,
            "\"north\" is not an area",
        ),
        (
            "\toption area east\n",
            1,
            "option before any config section",
        ),
        (
            "config oqsdns\nconfig oqsdns\n",
            2,
            "a second oqsdns section; the first is on line 1",
        ),
        ("config dnsmasq\n", 1, "unknown section type \"dnsmasq\""),
        (
            "config oqsdns\n\tlist area east\n",
            2,
            "area takes one value",
        ),
        (
            "config oqsdns\n\toption allow local\n\tlist allow ::1\n",
            3,
            "allow is used both as option and as list (line 2)",
        ),
        (
            "config oqsdns\n\toption udp_payload lots\n",
            2,
            "udp_payload: invalid digit",
        ),
        (
            "config oqsdns\n\toption enabled maybe\n",
            2,
            "enabled must be",
        ),
        ("config oqsdns\n\tlist listen ''\n", 2, "listen is empty"),
        (
            "config route 'r'\n\tlist domain 'a.example'\n",
            1,
            "this route has no server",
        ),
        (
            "config route 'bad name'\n",
            1,
            "not a valid section type or name",
        ),
        (
            "config oqsdns\n\toption area\n",
            2,
            "expected: option KEY 'VALUE'",
        ),
        (
            "config oqsdns\n\tset area east\n",
            2,
            "unknown statement \"set\"",
        ),
        (
            "config oqsdns\n\toption area \"east\n",
            2,
            "unterminated double quote",
        ),
    ];
    for &(text, line, words) in cases {
        match load(text) {
            Err(UciError::Line { line: got, message }) => {
                assert_eq!(got, line, "{text:?}: {message}");
                assert!(
                    message.contains(words),
                    "{text:?}: {message:?} lacks {words:?}"
                );
            }
            other => panic!("{text:?}: expected an error on line {line}, got {other:?}"),
        }
    }
}

#[test]
fn invalid_combination_is_a_config_error() {
    let text = "config route 'a'\n\tlist domain 'x.example'\n\tlist server '10.0.0.1'\nconfig route 'b'\n\tlist domain 'x.example'\n\tlist server '10.0.0.2'\n";
    let error = load(text).unwrap_err();
    assert!(matches!(error, UciError::Config(_)), "{error:?}");
    assert!(
        error.to_string().contains("more than one [[route]]"),
        "{error}"
    );
}

#[test]
fn health_cache_and_probe_options() {
    let config = load(
        "config oqsdns 'main'\n\
         \toption area 'auto'\n\
         \tlist default '192.0.2.53'\n\
         \tlist probe 'www.example.com A'\n\
         \tlist probe '. NS'\n\
         \toption rebind_protection '0'\n\
         \toption health_interval '10s'\n\
         \toption cache_entries '2000'\n\
         \toption serve_stale '12h'\n\
         \toption serve_stale_default 'off'\n\
         config route 'clinic'\n\
         \tlist domain 'clinic.example'\n\
         \tlist server '192.168.1.10'\n\
         \tlist probe 'pc.clinic.example A NXDOMAIN'\n",
    )
    .unwrap();
    assert_eq!(config.area, oqsdns_config::Area::Auto);
    assert_eq!(
        strings(&config.forward.names),
        ["www.example.com A", ". NS"]
    );
    assert!(!config.forward.rebind_protection);
    assert_eq!(config.health.interval.to_string(), "10s");
    assert_eq!(config.cache.entries, 2000);
    assert_eq!(config.cache.serve_stale.to_string(), "12h");
    assert_eq!(config.cache.serve_stale_default.to_string(), "off");
    assert_eq!(
        strings(&config.routes[0].names),
        ["pc.clinic.example A NXDOMAIN"]
    );
}
