//! HTTP `CONNECT host:port` (RFC 9110 §9.3.6): the request head, then the
//! proxy's response head. A 2xx response establishes the tunnel; any other
//! final response ends the attempt, and the client may try again on the
//! same connection (a 407 answered with credentials), up to
//! [`MAX_ATTEMPTS`]. Each attempt becomes one EVE `http` record.

use super::{Hop, Progress, Via};
use crate::analyzer::http::{head_end, split_host_port};
use crate::analyzer::{Dir, Probe};

/// Longest request or response head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// CONNECT attempts on one connection.
pub const MAX_ATTEMPTS: u8 = 4;
/// Longest string field kept in the record.
const MAX_FIELD: usize = 1024;

/// Claims `CONNECT <authority> HTTP/1.x`.
pub fn probe(data: &[u8]) -> Probe {
    const TOKEN: &[u8] = b"CONNECT ";
    let n = TOKEN.len().min(data.len());
    if data[..n] != TOKEN[..n] {
        return Probe::NoMatch;
    }
    if data.len() < TOKEN.len() {
        return Probe::NeedMore;
    }
    match data.iter().position(|&b| b == b'\n') {
        Some(end) if request_line(&data[..end]).is_some() => Probe::Match,
        Some(_) => Probe::NoMatch,
        None if data.len() > MAX_HEAD => Probe::NoMatch,
        None => Probe::NeedMore,
    }
}

/// `CONNECT authority HTTP/1.x` → (authority, protocol).
fn request_line(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let authority = parts.next()?;
    let protocol = parts.next()?;
    let ok = method == "CONNECT"
        && parts.next().is_none()
        && protocol.starts_with("HTTP/1.")
        && !authority.is_empty();
    ok.then_some((authority, protocol))
}

/// One CONNECT attempt, for the EVE `http` record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    pub authority: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub protocol: String,
    pub user_agent: Option<String>,
    pub status: Option<u16>,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Request,
    Response,
    /// Body of a refusal still to skip.
    Body(u64),
}

/// The CONNECT handshake of one connection.
#[derive(Debug)]
pub struct Connect {
    pub progress: Progress,
    pub hop: Option<Hop>,
    /// The target of the latest request.
    pub requested: Option<Hop>,
    /// Finished attempts not yet written.
    pub done: Vec<Transaction>,
    /// The attempt waiting for its response.
    pub open: Option<Transaction>,
    state: State,
    buf: Vec<u8>,
    attempts: u8,
}

impl Default for Connect {
    fn default() -> Self {
        Connect {
            progress: Progress::More,
            hop: None,
            requested: None,
            done: Vec::new(),
            open: None,
            state: State::Request,
            buf: Vec::new(),
            attempts: 0,
        }
    }
}

impl Connect {
    pub fn wants(&self, dir: Dir) -> bool {
        self.progress == Progress::More
            && match self.state {
                State::Request => dir == Dir::ToServer,
                State::Response | State::Body(_) => dir == Dir::ToClient,
            }
    }

    pub fn feed(&mut self, dir: Dir, data: &[u8]) -> usize {
        if !self.wants(dir) {
            return 0;
        }
        if let State::Body(left) = self.state {
            let take = left.min(data.len() as u64);
            self.state = if take == left {
                State::Request
            } else {
                State::Body(left - take)
            };
            return take as usize;
        }
        let (used, head) = self.read_head(data);
        if let Some(head) = head {
            match self.state {
                State::Request => self.on_request(&head),
                _ => self.on_response(&head),
            }
        }
        used
    }

    /// Collects a head up to its blank line; returns the bytes used and
    /// the head once complete.
    fn read_head(&mut self, data: &[u8]) -> (usize, Option<Vec<u8>>) {
        let from = self.buf.len().saturating_sub(3);
        let room = MAX_HEAD.saturating_sub(self.buf.len());
        let take = data.len().min(room);
        self.buf.extend_from_slice(&data[..take]);
        match head_end(&self.buf, from) {
            Some(end) => {
                let used = take - (self.buf.len() - end);
                self.buf.truncate(end);
                (used, Some(std::mem::take(&mut self.buf)))
            }
            None if self.buf.len() >= MAX_HEAD => {
                self.progress = Progress::Failed;
                (take, None)
            }
            None => (take, None),
        }
    }

    fn on_request(&mut self, head: &[u8]) {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split('\n');
        let first = lines.next().unwrap_or_default();
        let Some((authority, protocol)) = request_line(first.as_bytes()) else {
            self.progress = Progress::Failed;
            return;
        };
        let (host, port) = split_host_port(authority);
        let user_agent = header(&text, "user-agent");
        if let Some(h) = &host {
            self.requested = Some(Hop::new(Via::HttpConnect, h, port.unwrap_or(0)));
        }
        self.attempts += 1;
        self.open = Some(Transaction {
            authority: cut(authority),
            host: host.map(|h| cut(&h)),
            port,
            protocol: cut(protocol),
            user_agent,
            status: None,
        });
        self.state = State::Response;
    }

    fn on_response(&mut self, head: &[u8]) {
        let text = String::from_utf8_lossy(head);
        let status = status_code(&text);
        let Some(status) = status else {
            self.finish_attempt(None);
            self.progress = Progress::Failed;
            return;
        };
        if status < 200 {
            return; // interim: the final response follows
        }
        self.finish_attempt(Some(status));
        if status < 300 {
            self.progress = Progress::Established;
            return;
        }
        let body = header(&text, "content-length").and_then(|v| v.parse::<u64>().ok());
        self.state = match body {
            Some(n) if n > 0 => State::Body(n),
            _ => State::Request,
        };
        if self.attempts >= MAX_ATTEMPTS {
            self.progress = Progress::Failed;
        }
    }

    fn finish_attempt(&mut self, status: Option<u16>) {
        let Some(mut tx) = self.open.take() else {
            return;
        };
        tx.status = status;
        if status.is_some_and(|s| (200..300).contains(&s)) {
            if let (Some(host), Some(port)) = (&tx.host, tx.port) {
                self.hop = Some(Hop::new(Via::HttpConnect, host, port));
            }
        }
        self.done.push(tx);
    }
}

/// `HTTP/1.x NNN ...` → NNN.
fn status_code(head: &str) -> Option<u16> {
    let line = head.split('\n').next()?;
    let mut parts = line.split(' ');
    let protocol = parts.next()?;
    let code = parts.next()?.trim();
    if !protocol.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// The value of the first header `name` (lower case).
fn header(head: &str, name: &str) -> Option<String> {
    head.split('\n').skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| cut(v.trim()))
    })
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
