//! SIGHUP on the real binary: a broken file is reported and the running configuration keeps
//! serving; a good one is put in force.

mod common;

use common::{Running, Scratch, Upstream};

fn config(default: std::net::SocketAddr, route: Option<std::net::SocketAddr>) -> String {
    let mut text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[forward]\ndefault = [\"{default}\"]\n[cache]\nentries = 0\n"
    );
    if let Some(server) = route {
        text += &format!("[[route]]\ndomains = [\"clinic.example\"]\nservers = [\"{server}\"]\n");
    }
    text
}

fn rcode_for(daemon: &Running, name: &str) -> u8 {
    common::ask(daemon.addr, &common::query(name))[3] & 0x0F
}

#[test]
fn a_broken_file_keeps_the_old_table_and_a_good_one_applies() {
    let scratch = Scratch::new("reload");
    let internet = Upstream::start(3); // NXDOMAIN
    let clinic = Upstream::start(0); // NOERROR
    let mut daemon = Running::start(&scratch, &config(internet.addr, None));
    assert_eq!(
        rcode_for(&daemon, "pc.clinic.example"),
        3,
        "no route yet: the internet answers"
    );

    std::fs::write(&daemon.config, "[[route]]\ndomains = [\"clinic.example\"\n").unwrap();
    daemon.reload();
    assert_eq!(
        rcode_for(&daemon, "pc.clinic.example"),
        3,
        "the broken file changed nothing"
    );

    std::fs::write(&daemon.config, config(internet.addr, Some(clinic.addr))).unwrap();
    daemon.reload();
    assert_eq!(
        rcode_for(&daemon, "pc.clinic.example"),
        0,
        "the new route answers at once"
    );
    assert_eq!(rcode_for(&daemon, "www.example.com"), 3);

    let (status, stderr) = daemon.stop();
    assert!(status.success());
    assert!(
        stderr.contains("reload failed") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
}
