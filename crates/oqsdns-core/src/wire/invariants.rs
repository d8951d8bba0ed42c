//! The request path's invariants on arbitrary bytes, and a seeded maker of malformed messages: one
//! check shared by the fuzz target (`fuzz/`), the property test below and the garbage test.

use super::{
    build_query, check_reply, name_to_wire, Rcode, Rejected, Request, CD, HEADER_LEN, OPCODE, QR,
    RD, TC, UPSTREAM_PAYLOAD,
};

/// Runs `data` through the request path and panics when an invariant fails.
///
/// The first two bytes give the length of the client's query that follows (modulo what is
/// there); the rest is an upstream reply. The query is parsed; when it parses, the upstream query,
/// our own replies and the answer built from the reply (as is, and with the query's ID and
/// question put in, so the fuzzer gets past [`check_reply`]) must all be well-formed, and an
/// answer never exceeds its size limit. Returns how many answers were built from the reply.
pub fn exercise(data: &[u8]) -> usize {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return 0;
    };
    let at = usize::from(u16::from_be_bytes(*len)) % (rest.len() + 1);
    let (query, tail) = rest.split_at(at);
    let request = match Request::parse(query) {
        Ok(request) => request,
        Err(Rejected::Drop) => {
            assert!(
                query.len() < HEADER_LEN || query[2] & 0x80 != 0,
                "dropped a query"
            );
            return 0;
        }
        Err(Rejected::Reply(reply)) => {
            assert!(query.len() >= HEADER_LEN);
            assert_header(&reply, query);
            return 0;
        }
    };
    assert!(request.question().len() <= 255 + 4);

    let upstream = request.upstream_query(0xBEEF);
    let again = Request::parse(&upstream).expect("our upstream query parses");
    assert_eq!(again.id, 0xBEEF);
    assert_eq!(again.question(), request.question());
    assert_eq!(again.edns.map(|e| e.payload), Some(UPSTREAM_PAYLOAD));
    assert_eq!(again.dnssec_ok(), request.dnssec_ok());

    for rcode in [
        Rcode::NoError,
        Rcode::FormErr,
        Rcode::ServFail,
        Rcode::NxDomain,
        Rcode::NotImp,
        Rcode::Refused,
        Rcode::BadVers,
    ] {
        let ours = request.reply(rcode, 0, 1232);
        let info = check_reply(&ours, request.id, request.question()).expect("our reply checks");
        assert_eq!(info.rcode, rcode as u8 & 0xF);
        assert!(!info.truncated);
    }
    let short = request.reply(Rcode::NoError, TC, 1232);
    assert!(check_reply(&short, request.id, request.question()).is_ok_and(|i| i.truncated));

    let mut answers = 0;
    for reply in [tail.to_vec(), spliced(&request, tail)] {
        if check_reply(&reply, request.id, request.question()).is_err() {
            continue;
        }
        for limit in [512, request.udp_limit(1232), 65_535] {
            let Some(answer) = request.answer_from(&reply, limit, 1232) else {
                continue;
            };
            assert!(answer.len() <= limit, "{} > {limit}", answer.len());
            check_reply(&answer, request.id, request.question()).expect("our answer checks");
            let flags = u16::from_be_bytes([answer[2], answer[3]]);
            assert_eq!(
                flags & (RD | CD),
                request.flags & (RD | CD),
                "RD and CD are the query's"
            );
            assert_eq!(flags & OPCODE, 0, "the query's opcode");
            assert!(
                super::answer_records(&answer).is_some(),
                "answer section walks"
            );
            answers += 1;
        }
    }
    answers
}

/// Our header-only reply to `query`: long enough, QR set, the query's ID.
fn assert_header(reply: &[u8], query: &[u8]) {
    assert!(reply.len() >= HEADER_LEN);
    assert!(u16::from_be_bytes([reply[2], reply[3]]) & QR != 0);
    assert_eq!(reply[..2], query[..2]);
}

/// `tail` made to answer `request`: its ID, QR, one question, the request's question.
fn spliced(request: &Request<'_>, tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tail.len() + request.question().len() + HEADER_LEN);
    let mut header = [0u8; HEADER_LEN];
    let n = tail.len().min(HEADER_LEN);
    header[..n].copy_from_slice(&tail[..n]);
    header[..2].copy_from_slice(&request.id.to_be_bytes());
    header[2] |= 0x80;
    header[4..6].copy_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(request.question());
    out.extend_from_slice(tail.get(HEADER_LEN..).unwrap_or_default());
    out
}

/// A small deterministic generator (SplitMix64): the same seed gives the same messages.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// The seed of a randomized test: `OQSDNS_SEED` from the environment, or `fixed`.
pub fn seed(fixed: u64) -> u64 {
    std::env::var("OQSDNS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(fixed)
}

/// A well-formed query for a random name and type, with or without EDNS.
pub fn valid_query(rng: &mut Prng) -> Vec<u8> {
    const NAMES: [&str; 5] = [
        "hweb.oqs.onshikaku.org",
        "www.example.com",
        "a.b.c.d.e.f.example",
        "x",
        ".",
    ];
    let name = name_to_wire(NAMES[rng.below(NAMES.len())]);
    let qtype = [1, 28, 16, 255, 41, 65][rng.below(6)];
    let mut query = build_query(rng.next_u64() as u16, &name, qtype);
    if rng.below(3) == 0 {
        query.truncate(query.len() - 11); // no OPT record
        query[11] = 0;
    }
    query
}

/// A malformed or mutated query of one of the kinds a resolver meets: cut short, bad counts, a
/// compression loop, two OPT records, bit flips, random bytes.
pub fn garbage_query(rng: &mut Prng) -> Vec<u8> {
    let mut q = valid_query(rng);
    match rng.below(12) {
        0 => q.truncate(rng.below(HEADER_LEN)),   // a short header
        1 => q.truncate(rng.below(q.len())),      // cut anywhere
        2 => q[5] = [0, 2, 3, 255][rng.below(4)], // QDCOUNT 0, 2, ...
        3 => {
            // A question name that points at itself, or two names pointing at each other.
            q.truncate(HEADER_LEN);
            q[11] = 0;
            q.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
            if rng.below(2) == 0 {
                q[5] = 2;
                q.extend_from_slice(&[0xC0, 18, 0, 1, 0, 1]);
            }
        }
        4 => {
            // Two OPT records.
            let opt = [0u8, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0];
            q.extend_from_slice(&opt);
            q.extend_from_slice(&opt);
            q[11] = q[11].wrapping_add(2);
        }
        5 => {
            // Counts that promise more records than there are.
            q[7] = rng.byte();
            q[9] = rng.byte();
            q[11] = rng.byte();
        }
        6 => {
            // A label longer than what follows, or an extended label type.
            q[HEADER_LEN] = [63, 64, 0x80, 0xFF][rng.below(4)];
        }
        7 => {
            // An OPT with a bad version, a bad owner, or a huge RDLENGTH.
            if q[11] == 1 {
                let opt = q.len() - 11;
                match rng.below(3) {
                    0 => q[opt + 6] = 1 + rng.byte() % 255,
                    1 => q[opt] = 1,
                    _ => q[opt + 9] = 0xFF,
                }
            }
        }
        8 => {
            let n = rng.below(600);
            q = rng.bytes(n);
        }
        9 => {
            // Trailing junk.
            let n = rng.below(64);
            q.extend(rng.bytes(n));
        }
        _ => {
            // Random bit flips.
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(q.len());
                q[at] ^= 1 << rng.below(8);
            }
        }
    }
    q
}

/// An upstream reply to `query`, well-formed or mutated, for [`exercise`].
pub fn garbage_reply(rng: &mut Prng, query: &[u8]) -> Vec<u8> {
    let mut reply = query.to_vec();
    if reply.len() >= HEADER_LEN {
        reply[2] |= 0x80;
        let opt_at = (reply[11] == 1 && reply.len() >= HEADER_LEN + 11).then(|| reply.len() - 11);
        let opt = opt_at.map(|at| reply.split_off(at));
        let answers = rng.below(40);
        for _ in 0..answers {
            // An A record whose owner points at the question.
            reply.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4]);
            reply.extend(rng.bytes(4));
        }
        reply[6..8].copy_from_slice(&(answers as u16).to_be_bytes());
        if let Some(mut opt) = opt {
            opt[5] = rng.byte(); // the extended rcode
            reply.extend_from_slice(&opt);
        }
    }
    if rng.below(3) == 0 {
        for _ in 0..1 + rng.below(4) {
            if !reply.is_empty() {
                let at = rng.below(reply.len());
                reply[at] ^= 1 << rng.below(8);
            }
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_path_holds_its_invariants_on_thousands_of_inputs() {
        let seed = seed(0x0A5D_2024);
        let mut rng = Prng::new(seed);
        let mut answers = 0;
        for i in 0..5000 {
            let query = if rng.below(4) == 0 {
                valid_query(&mut rng)
            } else {
                garbage_query(&mut rng)
            };
            let reply = garbage_reply(&mut rng, &query);
            let mut input = (query.len() as u16).to_be_bytes().to_vec();
            input.extend_from_slice(&query);
            input.extend_from_slice(&reply);
            let outcome = std::panic::catch_unwind(|| exercise(&input));
            let Ok(built) = outcome else {
                panic!("input {i} of seed {seed} (OQSDNS_SEED={seed} reproduces): {input:02x?}");
            };
            answers += built;
        }
        // Not vacuous: a good share of the inputs get as far as an answer.
        assert!(answers >= 2000, "only {answers} answers built");
    }

    #[test]
    fn valid_queries_parse() {
        let mut rng = Prng::new(1);
        let parsed = (0..200)
            .filter(|_| Request::parse(&valid_query(&mut rng)).is_ok())
            .count();
        assert_eq!(parsed, 200);
    }
}
