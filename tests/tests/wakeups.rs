//! Forwarded queries under load set their timers (a timeout, a hedge) without waking the runtime
//! for each: counted as the process's write system calls (`syscw` in /proc/self/io), which the
//! query path makes none of (datagrams go out with send/sendmmsg) but tokio's wake-up of its
//! poller makes one each (a write to its eventfd). One test in its own binary, so that no other
//! test writes meanwhile.

use hickory_proto::rr::RecordType;
use oqsdns_tests::client::{self, query};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::upstream::{self as fake, Action, FakeUpstream};

/// Write system calls the process has made.
fn writes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("procfs");
    io.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a syscw line")
}

const WAVES: usize = 20;
const WAVE: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[cfg(target_os = "linux")]
async fn waves_of_forwarded_queries_do_not_wake_the_runtime_per_query() {
    let up = FakeUpstream::start(|q, _| {
        Action::Reply(fake::reply(
            q,
            vec![fake::a_record(q, "192.0.2.7".parse().unwrap(), 300)],
        ))
    })
    .await;
    let daemon = Daemon::start(config_with_default(&[up.addr])).await;
    let server = daemon.addr();
    let ask = |n: usize| async move {
        let name = format!("w{n}.miss.example.");
        client::udp(server, &query(&name, RecordType::A, Some(1232))).await
    };
    // Warmed up: the sockets, the health of the server, the runtime's threads.
    ask(0).await;
    let before = writes();
    for wave in 0..WAVES {
        // A wave of unique names (so every one goes upstream), each answered before the next.
        let mut asked = tokio::task::JoinSet::new();
        for i in 0..WAVE {
            asked.spawn(ask(1 + wave * WAVE + i));
        }
        while let Some(answer) = asked.join_next().await {
            assert_eq!(answer.unwrap().answers.len(), 1);
        }
    }
    let made = writes() - before;
    let queries = (WAVES * WAVE) as u64;
    eprintln!("{made} write system calls for {queries} forwarded queries");
    // Without the UDP listener's anchor timer (`TIMER_ANCHOR` in server/udp.rs), the timers of a
    // wave (the daemon's timeout and hedge of each query, the client's timeout) woke the poller:
    // 658 and 677 writes for 1,000 queries in two runs; with it, 45 and 126.
    assert!(
        made * 4 < queries,
        "{made} write system calls for {queries} forwarded queries"
    );
    daemon.stop().await;
}
