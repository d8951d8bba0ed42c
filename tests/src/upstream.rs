//! A fake upstream DNS server on loopback: UDP and TCP on one random port, answers from a
//! closure, and a log of every query it received.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

/// Which transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// What the fake does with one query.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send this message (over UDP it is truncated with TC when larger than the query's EDNS size).
    Reply(Message),
    /// Send this message after a delay.
    Delay(Duration, Message),
    /// Send these datagrams or frames, in order, as they are.
    Raw(Vec<Vec<u8>>),
    /// Send nothing.
    Drop,
}

/// One query the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The transport.
    pub via: Via,
    /// Where it came from.
    pub from: SocketAddr,
    /// The query.
    pub message: Message,
}

type Answer = dyn Fn(&Message, Via) -> Action + Send + Sync;

/// A running fake upstream; stops when dropped.
#[derive(Debug)]
pub struct FakeUpstream {
    /// The address it serves UDP and TCP on.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    stop: CancellationToken,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeUpstream {
    /// Starts a fake on 127.0.0.1 with a random port.
    pub async fn start(answer: impl Fn(&Message, Via) -> Action + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1".parse().unwrap(), answer).await
    }

    /// Starts a fake on `ip` with a random port, the same for UDP and TCP.
    pub async fn start_on(
        ip: IpAddr,
        answer: impl Fn(&Message, Via) -> Action + Send + Sync + 'static,
    ) -> Self {
        let (udp, tcp) = bind_pair(ip).await;
        let addr = udp.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let answer: Arc<Answer> = Arc::new(answer);
        tokio::spawn(serve_udp(
            Arc::new(udp),
            answer.clone(),
            log.clone(),
            stop.clone(),
        ));
        tokio::spawn(serve_tcp(tcp, answer, log.clone(), stop.clone()));
        Self { addr, log, stop }
    }

    /// Every query received so far, except those for the root: `. NS` is the daemon's default
    /// health probe, which runs beside whatever a test asks.
    pub fn received(&self) -> Vec<Received> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|r| !is_root_probe(r)).cloned().collect()
    }

    /// How many of the [`received`](Self::received) queries came over `via`.
    pub fn count(&self, via: Via) -> usize {
        self.received().iter().filter(|r| r.via == via).count()
    }

    /// How many [`received`](Self::received) queries came at all.
    pub fn total(&self) -> usize {
        self.received().len()
    }

    /// How many root (`. NS`) health probes came.
    pub fn root_probes(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| is_root_probe(r))
            .count()
    }
}

fn is_root_probe(received: &Received) -> bool {
    received
        .message
        .queries
        .first()
        .is_some_and(|q| q.name().is_root())
}

async fn bind_pair(ip: IpAddr) -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ip, 0)).await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind((ip, port)).await {
            return (udp, tcp);
        }
    }
    panic!("no free port pair on {ip}");
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    answer: Arc<Answer>,
    log: Arc<Mutex<Vec<Received>>>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (len, from) = tokio::select! {
            () = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => continue },
        };
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        log.lock().unwrap().push(Received {
            via: Via::Udp,
            from,
            message: query.clone(),
        });
        let action = answer(&query, Via::Udp);
        let socket = socket.clone();
        tokio::spawn(async move {
            for datagram in render(action, &query, Via::Udp).await {
                let _ = socket.send_to(&datagram, from).await;
            }
        });
    }
}

async fn serve_tcp(
    listener: TcpListener,
    answer: Arc<Answer>,
    log: Arc<Mutex<Vec<Received>>>,
    stop: CancellationToken,
) {
    loop {
        let (stream, from) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r { Ok(r) => r, Err(_) => continue },
        };
        let (answer, log, stop) = (answer.clone(), log.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = serve_connection(stream, from, answer, log) => {}
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    from: SocketAddr,
    answer: Arc<Answer>,
    log: Arc<Mutex<Vec<Received>>>,
) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut buf = vec![0u8; len as usize];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Ok(query) = Message::from_vec(&buf) else {
            return;
        };
        log.lock().unwrap().push(Received {
            via: Via::Tcp,
            from,
            message: query.clone(),
        });
        for frame in render(answer(&query, Via::Tcp), &query, Via::Tcp).await {
            let mut out = (frame.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&frame);
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

async fn render(action: Action, query: &Message, via: Via) -> Vec<Vec<u8>> {
    let message = match action {
        Action::Drop => return Vec::new(),
        Action::Raw(raw) => return raw,
        Action::Reply(message) => message,
        Action::Delay(delay, message) => {
            tokio::time::sleep(delay).await;
            message
        }
    };
    let bytes = message.to_vec().unwrap();
    let limit = query
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().max(512)) as usize;
    if via == Via::Udp && bytes.len() > limit {
        let mut short = message.truncate();
        short.metadata.truncation = true;
        return vec![short.to_vec().unwrap()];
    }
    vec![bytes]
}

/// An authoritative answer to `query` holding `records`, with an OPT record if the query had one.
pub fn reply(query: &Message, records: Vec<Record>) -> Message {
    let mut message = Message::response(query.metadata.id, query.metadata.op_code);
    message.metadata.message_type = MessageType::Response;
    message.metadata.authoritative = true;
    message.metadata.recursion_desired = query.metadata.recursion_desired;
    message.queries = query.queries.clone();
    message.answers = records;
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        message.edns = Some(edns);
    }
    message
}

/// A reply to `query` with only a response code.
pub fn rcode(query: &Message, code: ResponseCode) -> Message {
    let mut message = reply(query, Vec::new());
    message.metadata.response_code = code;
    message.metadata.authoritative = false;
    message
}

/// NXDOMAIN with the zone's SOA in the authority section.
pub fn nxdomain(query: &Message, zone: &str, minimum: u32) -> Message {
    let mut message = rcode(query, ResponseCode::NXDomain);
    message.metadata.authoritative = true;
    let zone = Name::from_ascii(zone).unwrap();
    let soa = SOA::new(
        zone.clone(),
        Name::from_ascii("hostmaster.invalid.").unwrap(),
        1,
        3600,
        600,
        86400,
        minimum,
    );
    message
        .authorities
        .push(Record::from_rdata(zone, minimum, RData::SOA(soa)));
    message
}

/// The question's name of `query`.
pub fn qname(query: &Message) -> Name {
    query.queries[0].name().clone()
}

/// A TXT record for the question's name.
pub fn txt(query: &Message, text: &str) -> Record {
    Record::from_rdata(
        qname(query),
        300,
        RData::TXT(TXT::new(vec![text.to_string()])),
    )
}

/// `n` AAAA records `2001:db8::1`..`n` for the question's name.
pub fn aaaa_records(query: &Message, n: u16) -> Vec<Record> {
    (1..=n)
        .map(|i| {
            let ip = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i);
            Record::from_rdata(qname(query), 300, RData::AAAA(AAAA(ip)))
        })
        .collect()
}

/// An A record for the question's name.
pub fn a_record(query: &Message, ip: std::net::Ipv4Addr, ttl: u32) -> Record {
    Record::from_rdata(qname(query), ttl, RData::A(A(ip)))
}

/// Answers every query with a TXT record naming this server.
pub fn identify(name: &'static str) -> impl Fn(&Message, Via) -> Action + Send + Sync + 'static {
    move |query, _| Action::Reply(reply(query, vec![txt(query, name)]))
}
