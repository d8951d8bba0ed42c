//! Reloading in process: the cache survives except for names whose route changed, a new route
//! applies at once, and no query is lost while configurations are swapped under load.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use oqsdns_config::{Config, RouteConfig, ServerAddr};
use oqsdns_tests::client::{self, query, txt_of};
use oqsdns_tests::daemon::{config_with_default, Daemon};
use oqsdns_tests::upstream::{self as fake, FakeUpstream};

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test finished within 60 s")
}

fn with_route(mut config: Config, domain: &str, server: SocketAddr) -> Config {
    config.routes.push(RouteConfig {
        name: None,
        domains: vec![domain.parse().unwrap()],
        servers: vec![ServerAddr(server)],
        names: Vec::new(),
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_survives_a_reload_except_where_the_route_changed() {
    within(async {
        let internet = FakeUpstream::start(fake::identify("internet")).await;
        let old = FakeUpstream::start(fake::identify("old nw-base")).await;
        let new = FakeUpstream::start(fake::identify("new nw-base")).await;
        let first = with_route(
            config_with_default(&[internet.addr]),
            "onshikaku.org",
            old.addr,
        );
        let daemon = Daemon::start(first.clone()).await;
        let ask = |name: &'static str| {
            let addr = daemon.addr();
            async move { txt_of(&client::udp(addr, &query(name, RecordType::TXT, None)).await) }
        };
        assert_eq!(ask("www.example.com").await, ["internet"]);
        assert_eq!(ask("hweb.oqs.onshikaku.org").await, ["old nw-base"]);
        assert_eq!(ask("pc.clinic.example").await, ["internet"]);

        let second = with_route(
            with_route(
                config_with_default(&[internet.addr]),
                "onshikaku.org",
                new.addr,
            ),
            "clinic.example",
            new.addr,
        );
        let pool = || daemon.daemon.handler().shared().sockets.servers();
        assert!(pool().contains(&old.addr), "{:?}", pool());
        daemon.daemon.apply(&second).await;
        assert!(
            !pool().contains(&old.addr),
            "no socket kept to a server no longer configured: {:?}",
            pool()
        );
        assert_eq!(ask("www.example.com").await, ["internet"]);
        assert_eq!(
            internet.total(),
            2,
            "www.example.com came from the cache after the reload"
        );
        assert_eq!(
            ask("hweb.oqs.onshikaku.org").await,
            ["new nw-base"],
            "its route changed"
        );
        assert_eq!(
            ask("pc.clinic.example").await,
            ["new nw-base"],
            "a new route applies at once"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_query_is_lost_while_configurations_are_swapped_under_load() {
    within(async {
        let a = FakeUpstream::start(fake::identify("a")).await;
        let b = FakeUpstream::start(fake::identify("b")).await;
        // One address sends it all: the per-client rate limit would refuse part of the load.
        let unlimited = |mut config: Config| {
            config.server.rate = 0;
            config
        };
        let configs = [
            unlimited(config_with_default(&[a.addr])),
            unlimited(config_with_default(&[b.addr])),
        ];
        let daemon = Daemon::start(configs[0].clone()).await;
        let addr = daemon.addr();
        let answered = Arc::new(AtomicUsize::new(0));
        let (progress, mut watch) = tokio::sync::watch::channel(0usize);
        let progress = Arc::new(progress);
        let mut clients = Vec::new();
        for c in 0..20 {
            let (answered, progress) = (answered.clone(), progress.clone());
            clients.push(tokio::spawn(async move {
                for i in 0..100 {
                    let answer = client::udp(
                        addr,
                        &query(&format!("q{c}-{i}.example"), RecordType::TXT, None),
                    )
                    .await;
                    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
                    answered.fetch_add(1, Ordering::Relaxed);
                    progress.send_modify(|n| *n += 1);
                }
            }));
        }
        // A reload after every 100 answers, while the 20 clients keep asking.
        for round in 1..20 {
            watch.wait_for(|n| *n >= round * 100).await.unwrap();
            daemon.daemon.apply(&configs[round % 2]).await;
        }
        for client in clients {
            client.await.unwrap();
        }
        assert_eq!(answered.load(Ordering::Relaxed), 2000);
        assert!(a.total() > 0 && b.total() > 0, "both configurations served");
    })
    .await;
}
