//! The daemon stopped and started again with the same configuration and state directory (a
//! reboot, as far as oqsdns can tell), HTTP requests to its status endpoint from inside the
//! lab's namespaces, and a name the internet resolver is silent for over UDP.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::process::Daemon;
use super::{oqsdns_command, Host, Lab, OQSDNS_READY};

impl Lab {
    /// Stops oqsdns and starts it again, as after a reboot: the same configuration file and
    /// state directory, a new process. Between the two, `between` runs (to change the host's
    /// addresses while the daemon is off).
    pub fn restart(&mut self, between: impl FnOnce(&Lab)) {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        self.oqsdns.stop();
        between(self);
        let name = format!("oqsdns-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let cmd = oqsdns_command(&self.net, &self.tools, self.scratch.path());
        self.oqsdns = Daemon::start(&name, cmd, self.scratch.path(), OQSDNS_READY)
            .unwrap_or_else(|e| panic!("oqsdns did not start again: {e}"));
    }

    /// The daemon's state file (in its `$STATE_DIRECTORY`).
    pub fn state_file(&self) -> PathBuf {
        self.scratch.path().join("state").join("state")
    }

    /// Makes nftables on the NGN side drop, on their way to the internet side, the DNS queries
    /// over UDP whose name begins with the label `label` (at most 8 bytes): to the daemon, a
    /// name its default servers are slow for. Replaces any earlier cut.
    pub fn drop_udp_names_starting(&self, label: &str) {
        assert!(label.len() <= 8 && !label.is_empty());
        let mut hex = format!("{:02x}", label.len());
        for b in label.bytes() {
            hex.push_str(&format!("{b:02x}"));
        }
        // The name begins after the UDP header (8 bytes) and the DNS header (12).
        let bits = (label.len() + 1) * 8;
        let ruleset = format!(
            "flush ruleset\ntable inet oqslab {{\n  chain forward {{\n    type filter hook forward \
             priority 0; policy accept;\n    udp dport 53 @th,160,{bits} 0x{hex} drop\n  }}\n}}\n"
        );
        self.nft(&ruleset);
    }

    /// The NGN side's nftables ruleset now, for assertion messages.
    pub fn nft_list(&self) -> String {
        let mut cmd = self.net.ns(Host::Ngn).command(&self.tools.nft);
        cmd.args(["list", "ruleset"]);
        super::process::run_ok(&mut cmd, Duration::from_secs(10)).unwrap_or_else(|e| e)
    }
}
