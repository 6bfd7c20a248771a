//! SOCKS4 and SOCKS4a (the `CONNECT` request and its 8-byte reply) and
//! SOCKS5 (RFC 1928: method negotiation, RFC 1929 username/password,
//! `CONNECT` request and reply). Other commands (BIND, UDP ASSOCIATE) and
//! methods (GSSAPI, which encapsulates) end the handshake as failed: no
//! stream to follow.

use super::{fill, Hop, Progress, Via};
use crate::analyzer::{Dir, Probe};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// SOCKS4 user ids and SOCKS4a host names are at most this long.
const MAX_SOCKS4_FIELD: usize = 255;

/// How long a message is, judged from its first bytes.
enum Need {
    /// At least this many bytes are needed to tell.
    AtLeast(usize),
    /// The message is exactly this long.
    Total(usize),
    Bad,
}

/// Collects one message into `buf`: the bytes of `data` used, and whether
/// the message is complete (`Some(true)`), incomplete (`Some(false)`) or
/// malformed (`None`).
fn collect(buf: &mut Vec<u8>, data: &[u8], len_of: fn(&[u8]) -> Need) -> (usize, Option<bool>) {
    let mut used = 0;
    loop {
        match len_of(buf) {
            Need::Bad => return (used, None),
            Need::Total(n) if buf.len() >= n => return (used, Some(true)),
            Need::AtLeast(n) if n <= buf.len() => return (used, None),
            Need::Total(n) | Need::AtLeast(n) => {
                let rest = data.get(used..).unwrap_or_default();
                if rest.is_empty() {
                    return (used, Some(false));
                }
                used += fill(buf, rest, n);
            }
        }
    }
}

// SOCKS4 / 4a

fn socks4_request_len(b: &[u8]) -> Need {
    if b.len() < 8 {
        return Need::AtLeast(8);
    }
    if b[0] != 4 || b[1] != 1 {
        return Need::Bad;
    }
    let Some(user_end) = b[8..].iter().position(|&c| c == 0).map(|i| 8 + i) else {
        return field_or_bad(b.len() - 8, b.len() + 1);
    };
    if !is_4a(b) {
        return Need::Total(user_end + 1);
    }
    match b[user_end + 1..].iter().position(|&c| c == 0) {
        Some(i) => Need::Total(user_end + 2 + i),
        None => field_or_bad(b.len() - user_end - 1, b.len() + 1),
    }
}

fn field_or_bad(len: usize, next: usize) -> Need {
    if len > MAX_SOCKS4_FIELD {
        Need::Bad
    } else {
        Need::AtLeast(next)
    }
}

/// SOCKS4a: the address is 0.0.0.x with x non-zero; a host name follows.
fn is_4a(b: &[u8]) -> bool {
    b[4..7] == [0, 0, 0] && b[7] != 0
}

/// Claims a SOCKS4/4a CONNECT request.
pub fn probe4(data: &[u8]) -> Probe {
    match data {
        [] => return Probe::NeedMore,
        [4] => return Probe::NeedMore,
        [4, 1, ..] => {}
        _ => return Probe::NoMatch,
    }
    match socks4_request_len(data) {
        Need::Bad => Probe::NoMatch,
        Need::Total(n) if data.len() >= n && printable(&data[8..n - 1]) => Probe::Match,
        Need::Total(_) if data.len() > 8 + 2 * MAX_SOCKS4_FIELD + 2 => Probe::NoMatch,
        Need::Total(n) if data.len() >= n => Probe::NoMatch,
        _ => Probe::NeedMore,
    }
}

/// User ids and host names are text (the NUL between them included).
fn printable(b: &[u8]) -> bool {
    b.iter().all(|&c| c == 0 || (0x20..0x7f).contains(&c))
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum State4 {
    #[default]
    Request,
    Reply,
}

#[derive(Debug)]
pub struct Socks4 {
    pub progress: Progress,
    pub hop: Option<Hop>,
    state: State4,
    buf: Vec<u8>,
}

impl Default for Socks4 {
    fn default() -> Self {
        Socks4 {
            progress: Progress::More,
            hop: None,
            state: State4::Request,
            buf: Vec::new(),
        }
    }
}

impl Socks4 {
    pub fn wants(&self, dir: Dir) -> bool {
        self.progress == Progress::More
            && match self.state {
                State4::Request => dir == Dir::ToServer,
                State4::Reply => dir == Dir::ToClient,
            }
    }

    pub fn feed(&mut self, dir: Dir, data: &[u8]) -> usize {
        if !self.wants(dir) {
            return 0;
        }
        let len_of = match self.state {
            State4::Request => socks4_request_len,
            State4::Reply => eight_bytes,
        };
        let (used, done) = collect(&mut self.buf, data, len_of);
        match done {
            None => self.progress = Progress::Failed,
            Some(false) => {}
            Some(true) => {
                let msg = std::mem::take(&mut self.buf);
                match self.state {
                    State4::Request => {
                        self.hop = Some(socks4_hop(&msg));
                        self.state = State4::Reply;
                    }
                    State4::Reply => {
                        let granted = msg[0] == 0 && msg[1] == 90;
                        self.progress = if granted {
                            Progress::Established
                        } else {
                            Progress::Failed
                        };
                    }
                }
            }
        }
        used
    }
}

fn socks4_hop(msg: &[u8]) -> Hop {
    let port = u16::from_be_bytes([msg[2], msg[3]]);
    if is_4a(msg) {
        let user_end = msg[8..].iter().position(|&c| c == 0).map_or(8, |i| 8 + i);
        let host = msg.get(user_end + 1..msg.len() - 1).unwrap_or_default();
        return Hop::new(Via::Socks4a, &String::from_utf8_lossy(host), port);
    }
    let ip = Ipv4Addr::new(msg[4], msg[5], msg[6], msg[7]);
    Hop::new(Via::Socks4, &ip.to_string(), port)
}

// SOCKS5

fn greeting_len(b: &[u8]) -> Need {
    match b {
        [] | [_] => Need::AtLeast(2),
        [5, n, ..] if *n > 0 => Need::Total(2 + usize::from(*n)),
        _ => Need::Bad,
    }
}

fn auth_len(b: &[u8]) -> Need {
    match b {
        [] | [_] => Need::AtLeast(2),
        [1, ulen, rest @ ..] => {
            let u = usize::from(*ulen);
            match rest.get(u) {
                Some(plen) => Need::Total(3 + u + usize::from(*plen)),
                None => Need::AtLeast(3 + u),
            }
        }
        _ => Need::Bad,
    }
}

/// A request or reply: `05 code 00 atyp addr port`.
fn request_len(b: &[u8]) -> Need {
    if b.len() < 5 {
        return Need::AtLeast(5);
    }
    if b[0] != 5 || b[2] != 0 {
        return Need::Bad;
    }
    match b[3] {
        1 => Need::Total(4 + 4 + 2),
        3 => Need::Total(5 + usize::from(b[4]) + 2),
        4 => Need::Total(4 + 16 + 2),
        _ => Need::Bad,
    }
}

fn eight_bytes(_: &[u8]) -> Need {
    Need::Total(8)
}

fn two_bytes(_: &[u8]) -> Need {
    Need::Total(2)
}

/// Claims a SOCKS5 greeting: version 5, 1 to 16 distinct known methods,
/// alone or followed at once by a CONNECT request.
pub fn probe5(data: &[u8]) -> Probe {
    let n = match data {
        [] | [5] => return Probe::NeedMore,
        [5, n, ..] if (1..=16).contains(n) => usize::from(*n),
        _ => return Probe::NoMatch,
    };
    let Some(methods) = data.get(2..2 + n) else {
        return Probe::NeedMore;
    };
    let known = |m: &u8| matches!(m, 0..=3 | 0x80..=0xfe);
    let distinct = methods
        .iter()
        .enumerate()
        .all(|(i, m)| !methods[..i].contains(m));
    if !methods.iter().all(known) || !distinct {
        return Probe::NoMatch;
    }
    match &data[2 + n..] {
        [] | [5] | [5, 1] | [5, 1, 0] => Probe::Match,
        [5, 1, 0, 1 | 3 | 4, ..] => Probe::Match,
        _ => Probe::NoMatch,
    }
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum State5 {
    #[default]
    Greeting,
    Method,
    Auth,
    AuthReply,
    Request,
    Reply,
}

#[derive(Debug)]
pub struct Socks5 {
    pub progress: Progress,
    pub hop: Option<Hop>,
    state: State5,
    buf: Vec<u8>,
}

impl Default for Socks5 {
    fn default() -> Self {
        Socks5 {
            progress: Progress::More,
            hop: None,
            state: State5::Greeting,
            buf: Vec::new(),
        }
    }
}

impl Socks5 {
    pub fn wants(&self, dir: Dir) -> bool {
        let client = matches!(
            self.state,
            State5::Greeting | State5::Auth | State5::Request
        );
        self.progress == Progress::More && (dir == Dir::ToServer) == client
    }

    pub fn feed(&mut self, dir: Dir, data: &[u8]) -> usize {
        if !self.wants(dir) {
            return 0;
        }
        let len_of = match self.state {
            State5::Greeting => greeting_len,
            State5::Auth => auth_len,
            State5::Request | State5::Reply => request_len,
            State5::Method | State5::AuthReply => two_bytes,
        };
        let (used, done) = collect(&mut self.buf, data, len_of);
        match done {
            None => self.progress = Progress::Failed,
            Some(false) => {}
            Some(true) => {
                let msg = std::mem::take(&mut self.buf);
                self.on_message(&msg);
            }
        }
        used
    }

    fn on_message(&mut self, msg: &[u8]) {
        let fail = Progress::Failed;
        match (self.state, msg) {
            (State5::Greeting, _) => self.state = State5::Method,
            (State5::Method, [5, 0]) => self.state = State5::Request,
            (State5::Method, [5, 2]) => self.state = State5::Auth,
            (State5::Auth, _) => self.state = State5::AuthReply,
            (State5::AuthReply, [_, 0]) => self.state = State5::Request,
            (State5::Request, [5, 1, ..]) => {
                self.hop = socks5_hop(msg);
                self.state = State5::Reply;
            }
            (State5::Reply, [5, 0, ..]) => self.progress = Progress::Established,
            _ => self.progress = fail,
        }
    }
}

fn socks5_hop(msg: &[u8]) -> Option<Hop> {
    let port_at = msg.len().checked_sub(2)?;
    let port = u16::from_be_bytes([*msg.get(port_at)?, *msg.get(port_at + 1)?]);
    let addr = msg.get(4..port_at)?;
    let host = match msg.get(3)? {
        1 => IpAddr::from(<[u8; 4]>::try_from(addr).ok()?).to_string(),
        4 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?)).to_string(),
        _ => String::from_utf8_lossy(addr.get(1..)?).into_owned(),
    };
    Some(Hop::new(Via::Socks5, &host, port))
}
