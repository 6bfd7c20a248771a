//! The SSH identification line (RFC 4253 section 4.2):
//! `SSH-protoversion-softwareversion SP comments CR LF`, and the cheap probe
//! that claims a flow by it on any port.

use crate::analyzer::{Dir, Probe};

/// A parsed identification line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Banner {
    /// The whole line without CR LF, e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2`.
    pub line: String,
    /// `2.0`, `1.99` or `1.5`.
    pub proto_version: String,
    /// Everything after the second dash, comments included, as Suricata
    /// logs it (`OpenSSH_9.2p1 Debian-2`).
    pub software_version: String,
}

impl Banner {
    /// SSH-2 or the `1.99` compatibility version: binary packets follow.
    pub fn speaks_ssh2(&self) -> bool {
        self.proto_version == "2.0" || self.proto_version == "1.99"
    }
}

/// The identification line is at most 255 bytes (RFC 4253); real servers
/// exceed it a little, so lines up to this length are still accepted.
pub const MAX_LINE: usize = 1024;

/// Parses one line (CR LF or LF already removed). `None` unless it is an
/// identification line.
pub fn parse(line: &[u8]) -> Option<Banner> {
    let rest = line.strip_prefix(b"SSH-")?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let proto = rest.get(..dash)?;
    let software = rest.get(dash + 1..)?;
    if proto.is_empty() || !proto.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return None;
    }
    let software = trim_cr(software);
    Some(Banner {
        line: lossy(trim_cr(line)),
        proto_version: lossy(proto),
        software_version: lossy(software),
    })
}

fn trim_cr(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\r").unwrap_or(s)
}

/// Printable form of untrusted bytes: non-printing bytes become `\xNN`.
pub fn lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Whether `data`, the first bytes of `dir`, begin an SSH conversation.
/// The identification line may come from either side (role-reversed SSH);
/// only the responder may send other lines before it (RFC 4253 4.2). Any
/// other first bytes answer `NoMatch` at once.
pub fn probe(dir: Dir, data: &[u8]) -> Probe {
    const MAGIC: &[u8] = b"SSH-";
    if data.starts_with(MAGIC) {
        return Probe::Match;
    }
    if data.is_empty() || (data.len() < MAGIC.len() && MAGIC.starts_with(data)) {
        return Probe::NeedMore;
    }
    if dir == Dir::ToClient && is_text(data) {
        if data
            .windows(MAGIC.len() + 1)
            .any(|w| w[0] == b'\n' && &w[1..] == MAGIC)
        {
            return Probe::Match;
        }
        return Probe::NeedMore;
    }
    Probe::NoMatch
}

/// Pre-banner lines are text; binary first bytes are another protocol.
fn is_text(data: &[u8]) -> bool {
    data.len() <= 8 * MAX_LINE
        && data
            .iter()
            .all(|&b| b == b'\r' || b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Collects the lines a side sends before its binary packets.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Lines before the identification line.
    pub pre_banner_lines: u32,
    /// Bytes consumed so far.
    consumed: usize,
}

/// What [`LineReader::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineResult {
    /// The identification line, and how many bytes of the input it used.
    Banner(Banner, usize),
    /// All input used, no identification line yet.
    More,
    /// Too many bytes without an identification line: not SSH after all.
    Abandon,
}

/// Lines and bytes a side may send before its identification line.
const MAX_PRE_LINES: u32 = 64;
const MAX_PRE_BYTES: usize = 16 * 1024;

impl LineReader {
    /// Feeds in-order bytes; returns once the identification line is
    /// complete (with the count of input bytes it used) or the input is
    /// exhausted.
    pub fn push(&mut self, data: &[u8]) -> LineResult {
        let mut used = 0;
        while used < data.len() {
            let rest = data.get(used..).unwrap_or_default();
            let (line_part, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => (rest.get(..nl).unwrap_or_default(), true),
                None => (rest, false),
            };
            used = used.saturating_add(line_part.len() + usize::from(ended));
            self.consumed = self
                .consumed
                .saturating_add(line_part.len() + usize::from(ended));
            if self.buf.len() + line_part.len() > MAX_LINE {
                // An over-long line: keep only its start, it cannot be ours.
                let room = MAX_LINE.saturating_sub(self.buf.len());
                self.buf
                    .extend_from_slice(line_part.get(..room).unwrap_or_default());
            } else {
                self.buf.extend_from_slice(line_part);
            }
            if !ended {
                break;
            }
            let line = std::mem::take(&mut self.buf);
            if let Some(banner) = parse(&line).or_else(|| parse_cut(&line)) {
                return LineResult::Banner(banner, used);
            }
            self.pre_banner_lines = self.pre_banner_lines.saturating_add(1);
            if self.pre_banner_lines > MAX_PRE_LINES {
                return LineResult::Abandon;
            }
        }
        if self.consumed > MAX_PRE_BYTES {
            return LineResult::Abandon;
        }
        LineResult::More
    }
}

/// An identification line whose first bytes were consumed by a probe that
/// asked for more (`SS` + `H-2.0-...`): accept the tail of `SSH-` followed
/// by a version.
fn parse_cut(line: &[u8]) -> Option<Banner> {
    for cut in 1..4 {
        let tail = b"SSH-".get(cut..)?;
        if line.starts_with(tail) {
            let mut whole = b"SSH-".to_vec();
            whole.extend_from_slice(line.get(tail.len()..)?);
            return parse(&whole);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        type Case<'a> = (&'a [u8], Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            (
                b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r",
                Some(("2.0", "OpenSSH_9.2p1 Debian-2+deb12u10")),
            ),
            (
                b"SSH-2.0-dropbear_2018.76",
                Some(("2.0", "dropbear_2018.76")),
            ),
            (b"SSH-1.99-Cisco-1.25", Some(("1.99", "Cisco-1.25"))),
            (b"SSH-1.5-OpenSSH_3.4p1", Some(("1.5", "OpenSSH_3.4p1"))),
            (b"SSH-2.0-", Some(("2.0", ""))),
            (b"SSH-2.0", None),
            (b"SSH--foo", None),
            (b"SSH-x.0-foo", None),
            (b"ssh-2.0-lower", None),
            (b"220 smtp ready", None),
            (b"", None),
        ];
        for (line, want) in cases {
            let got = parse(line).map(|b| (b.proto_version, b.software_version));
            let want = want.map(|(p, s)| (p.to_string(), s.to_string()));
            assert_eq!(got, want, "{}", lossy(line));
        }
        let b = parse(b"SSH-2.0-X\x01y\r").unwrap();
        assert_eq!(b.line, "SSH-2.0-X\\x01y");
        assert!(b.speaks_ssh2());
        assert!(!parse(b"SSH-1.5-x").unwrap().speaks_ssh2());
        assert!(parse(b"SSH-1.99-x").unwrap().speaks_ssh2());
    }

    #[test]
    fn probe_table() {
        use Dir::*;
        let cases: &[(Dir, &[u8], Probe)] = &[
            (ToServer, b"SSH-2.0-OpenSSH_9.2\r\n", Probe::Match),
            (ToClient, b"SSH-2.0-AsyncSSH_2.8.1\r\n", Probe::Match),
            (ToServer, b"SSH", Probe::NeedMore),
            (ToServer, b"", Probe::NeedMore),
            (ToServer, b"GET / HTTP/1.1\r\n", Probe::NoMatch),
            (ToServer, b"\x16\x03\x01\x02\x00", Probe::NoMatch),
            (ToServer, b"hello\r\n", Probe::NoMatch),
            (ToClient, b"Welcome\r\nSSH-2.0-x\r\n", Probe::Match),
            (ToClient, b"Welcome to the server\r\n", Probe::NeedMore),
            (ToClient, b"\x00\x00\x01\x00binary", Probe::NoMatch),
            (ToClient, b"HTTP/1.1 200 OK\r\n\r\n\x89PNG", Probe::NoMatch),
        ];
        for (dir, data, want) in cases {
            assert_eq!(probe(*dir, data), *want, "{dir:?} {}", lossy(data));
        }
    }

    #[test]
    fn line_reader_handles_pre_banner_lines_and_splits() {
        let mut r = LineReader::default();
        assert_eq!(
            r.push(b"Hello, this is a\r\nbanner line\r\nSSH-2."),
            LineResult::More
        );
        assert_eq!(r.pre_banner_lines, 2);
        let tail = b"0-OpenSSH_8.0\r\n\x00\x00\x01\x0c";
        match r.push(tail) {
            LineResult::Banner(b, used) => {
                assert_eq!(b.software_version, "OpenSSH_8.0");
                assert_eq!(used, tail.len() - 4);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn line_reader_accepts_a_banner_cut_by_the_probe() {
        let mut r = LineReader::default();
        match r.push(b"H-2.0-x\r\n") {
            LineResult::Banner(b, 9) => assert_eq!(b.line, "SSH-2.0-x"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn line_reader_gives_up_on_endless_text() {
        let mut r = LineReader::default();
        let line = b"not ssh at all\n";
        let mut last = LineResult::More;
        for _ in 0..100 {
            last = r.push(line);
            if last != LineResult::More {
                break;
            }
        }
        assert_eq!(last, LineResult::Abandon);
        let mut r = LineReader::default();
        let blob = vec![b'a'; 20_000];
        assert_eq!(r.push(&blob), LineResult::Abandon);
    }
}
