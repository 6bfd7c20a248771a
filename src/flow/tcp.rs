//! TCP connection state as a passive observer sees it: flags per direction,
//! a Zeek-style `history` and `conn_state`, and counts of retransmitted and
//! out-of-order segments.

use crate::analyzer::Dir;
use crate::decode::{TcpFlags, TcpInfo};

/// Per-direction sequence tracking.
#[derive(Copy, Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TcpDir {
    /// Union of the flags this side sent.
    pub flags: u8,
    /// Which of `next_seq` and `isn` hold real values ([`KNOWN_SEQ`],
    /// [`KNOWN_ISN`]).
    known: u8,
    /// One past the highest sequence number this side has sent.
    next_seq: u32,
    /// Sequence number of this side's SYN.
    isn: u32,
    /// The latest hole `[start, end)` left by a segment that jumped ahead.
    hole: (u32, u32),
    pub retransmitted: u32,
    pub out_of_order: u32,
}

/// How far (bytes, either way) from the last sequence number a segment
/// may be and still continue a connection: 16 MiB, more than a capture
/// loses unnoticed in a silent tunnel.
pub const CONTINUE_WINDOW: u32 = 1 << 24;

const KNOWN_SEQ: u8 = 1;
const KNOWN_ISN: u8 = 2;

/// What a segment was, relative to what this side sent before.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// Carries new bytes in order (or no payload).
    InOrder,
    /// All its bytes were sent before.
    Retransmission,
    /// Starts beyond what was sent before: a gap, or reordering.
    OutOfOrder,
}

/// Connection-level TCP state of one flow.
#[derive(Copy, Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TcpState {
    pub dirs: [TcpDir; 2],
    history: History,
}

impl TcpState {
    /// Updates the state with one segment sent in `dir`, returning what the
    /// segment was.
    pub fn update(&mut self, dir: Dir, tcp: &TcpInfo, payload_len: u32) -> SegmentKind {
        let d = &mut self.dirs[dir.index()];
        d.flags |= tcp.flags.0;
        let kind = d.classify(tcp, payload_len);
        match kind {
            SegmentKind::Retransmission => d.retransmitted = d.retransmitted.saturating_add(1),
            SegmentKind::OutOfOrder => d.out_of_order = d.out_of_order.saturating_add(1),
            SegmentKind::InOrder => {}
        }
        self.record_history(dir, tcp.flags, payload_len, kind);
        kind
    }

    fn record_history(&mut self, dir: Dir, flags: TcpFlags, payload_len: u32, kind: SegmentKind) {
        let h = &mut self.history;
        match (flags.syn(), flags.ack()) {
            (true, false) => h.push(dir, b's'),
            (true, true) => h.push(dir, b'h'),
            _ => {}
        }
        if flags.fin() {
            h.push(dir, b'f');
        }
        if flags.rst() {
            h.push(dir, b'r');
        }
        if payload_len > 0 {
            h.push(dir, b'd');
            if kind == SegmentKind::Retransmission {
                h.push(dir, b't');
            }
        } else if flags.ack() && !flags.syn() && !flags.fin() && !flags.rst() {
            h.push(dir, b'a');
        }
    }

    pub fn flags(&self, dir: Dir) -> u8 {
        self.dirs[dir.index()].flags
    }

    pub fn sent(&self, dir: Dir, bit: u8) -> bool {
        self.flags(dir) & bit != 0
    }

    /// Both sides took part in a handshake (or at least both sent ACKs
    /// after a SYN): data can flow.
    pub fn established(&self) -> bool {
        self.sent(Dir::ToServer, TcpFlags::SYN) && self.sent(Dir::ToClient, TcpFlags::SYN)
    }

    /// Whether a segment sent in `dir` may continue this connection: its
    /// sequence number within [`CONTINUE_WINDOW`] of what `dir` sent last
    /// (or `dir`'s sequence numbers were never seen). A new connection on
    /// the same 5-tuple, or a blind guess, is almost never that close.
    pub fn continues(&self, dir: Dir, tcp: &TcpInfo) -> bool {
        let d = &self.dirs[dir.index()];
        if d.known & KNOWN_SEQ == 0 {
            return true;
        }
        let ahead = tcp.seq.wrapping_sub(d.next_seq);
        let behind = d.next_seq.wrapping_sub(tcp.seq);
        ahead.min(behind) <= CONTINUE_WINDOW
    }

    /// Either side sent a FIN or a RST: the connection is closing.
    pub fn sent_fin_or_rst(&self) -> bool {
        [Dir::ToServer, Dir::ToClient]
            .into_iter()
            .any(|d| self.sent(d, TcpFlags::FIN) || self.sent(d, TcpFlags::RST))
    }

    /// Both sides sent FIN, or someone sent RST: nothing more is expected.
    pub fn closed(&self) -> bool {
        let fin = |d| self.sent(d, TcpFlags::FIN);
        let rst = |d| self.sent(d, TcpFlags::RST);
        (fin(Dir::ToServer) && fin(Dir::ToClient)) || rst(Dir::ToServer) || rst(Dir::ToClient)
    }

    /// Sequence number of the first data byte of `dir`, when its SYN was
    /// seen.
    pub fn data_start(&self, dir: Dir) -> Option<u32> {
        let d = &self.dirs[dir.index()];
        (d.known & KNOWN_ISN != 0).then(|| d.isn.wrapping_add(1))
    }

    pub fn history(&self) -> History {
        self.history
    }

    /// Zeek's `conn_state` summary.
    pub fn conn_state(&self) -> &'static str {
        use TcpFlags as F;
        let o = |bit| self.sent(Dir::ToServer, bit);
        let r = |bit| self.sent(Dir::ToClient, bit);
        let (o_syn, r_syn) = (o(F::SYN), r(F::SYN));
        if !o_syn && !r_syn {
            return "OTH";
        }
        if o_syn && !r_syn {
            return match () {
                _ if r(F::RST) => "REJ",
                _ if o(F::RST) => "RSTOS0",
                _ if o(F::FIN) => "SH",
                _ => "S0",
            };
        }
        if !o_syn {
            return match () {
                _ if r(F::RST) => "RSTRH",
                _ if r(F::FIN) => "SHR",
                _ => "OTH",
            };
        }
        match () {
            _ if o(F::RST) => "RSTO",
            _ if r(F::RST) => "RSTR",
            _ if o(F::FIN) && r(F::FIN) => "SF",
            _ if o(F::FIN) => "S2",
            _ if r(F::FIN) => "S3",
            _ => "S1",
        }
    }

    /// Suricata's `tcp.state` vocabulary, as far as a passive observer can
    /// tell it.
    pub fn eve_state(&self) -> &'static str {
        use TcpFlags as F;
        let fins = [Dir::ToServer, Dir::ToClient].map(|d| self.sent(d, F::FIN));
        match () {
            _ if self.closed() => "closed",
            _ if fins[0] || fins[1] => "fin_wait1",
            _ if self.established() => "established",
            _ if self.sent(Dir::ToClient, F::SYN) => "syn_recv",
            _ if self.sent(Dir::ToServer, F::SYN) => "syn_sent",
            _ => "none",
        }
    }
}

impl TcpDir {
    fn classify(&mut self, tcp: &TcpInfo, payload_len: u32) -> SegmentKind {
        // SYN and FIN each occupy one sequence number.
        let span = payload_len
            .wrapping_add(u32::from(tcp.flags.syn()))
            .wrapping_add(u32::from(tcp.flags.fin()));
        let end = tcp.seq.wrapping_add(span);
        if tcp.flags.syn() {
            self.isn = tcp.seq;
            self.known |= KNOWN_ISN;
        }
        if self.known & KNOWN_SEQ == 0 || tcp.flags.syn() {
            self.known |= KNOWN_SEQ;
            self.next_seq = end;
            self.hole = (end, end);
            return SegmentKind::InOrder;
        }
        if span == 0 {
            return SegmentKind::InOrder;
        }
        if seq_le(end, self.next_seq) {
            return self.classify_old(tcp, payload_len, end);
        }
        if seq_lt(self.next_seq, tcp.seq) {
            // Jumped ahead: remember the hole so the segment that fills it
            // counts as reordered, not retransmitted.
            self.hole = (self.next_seq, tcp.seq);
        }
        self.next_seq = end;
        SegmentKind::InOrder
    }

    /// A segment that ends at or below `next_seq`.
    fn classify_old(&mut self, tcp: &TcpInfo, payload_len: u32, end: u32) -> SegmentKind {
        let (hole_start, hole_end) = self.hole;
        if seq_le(hole_start, tcp.seq) && seq_lt(tcp.seq, hole_end) {
            self.hole = if tcp.seq == hole_start && seq_lt(end, hole_end) {
                (end, hole_end)
            } else {
                (hole_end, hole_end)
            };
            return SegmentKind::OutOfOrder;
        }
        // A one-byte segment just below next_seq is a keepalive probe,
        // not a retransmission of data.
        let keepalive = payload_len <= 1 && end == self.next_seq && !tcp.flags.fin();
        if keepalive {
            SegmentKind::InOrder
        } else {
            SegmentKind::Retransmission
        }
    }
}

/// `a < b` in sequence space (RFC 1982 serial arithmetic).
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

pub fn seq_le(a: u32, b: u32) -> bool {
    a == b || seq_lt(a, b)
}

/// Zeek's connection history: each event letter once per direction, in the
/// order first seen, upper case for the originator. Seven letters (s h a d
/// f r t) per direction fit.
#[derive(Copy, Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct History {
    letters: [u8; 14],
    len: u8,
}

impl History {
    fn push(&mut self, dir: Dir, letter: u8) {
        let letter = match dir {
            Dir::ToServer => letter.to_ascii_uppercase(),
            Dir::ToClient => letter,
        };
        let used = &self.letters[..usize::from(self.len)];
        if used.contains(&letter) || usize::from(self.len) == self.letters.len() {
            return;
        }
        self.letters[usize::from(self.len)] = letter;
        self.len += 1;
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever pushed.
        std::str::from_utf8(&self.letters[..usize::from(self.len)]).unwrap_or("")
    }
}

#[cfg(test)]
mod continue_tests {
    use super::*;

    fn seg(flags: u8, seq: u32) -> TcpInfo {
        TcpInfo {
            flags: TcpFlags(flags),
            seq,
            ack: 0,
            window: 0,
        }
    }

    #[test]
    fn a_segment_continues_only_near_the_last_sequence_number() {
        let mut s = TcpState::default();
        assert!(
            s.continues(Dir::ToServer, &seg(TcpFlags::ACK, 5)),
            "unknown"
        );
        s.update(Dir::ToServer, &seg(TcpFlags::ACK, 1_000), 100);
        assert!(s.continues(Dir::ToServer, &seg(TcpFlags::ACK, 1_100)));
        assert!(s.continues(Dir::ToServer, &seg(TcpFlags::ACK, 1_099)));
        assert!(s.continues(Dir::ToServer, &seg(TcpFlags::ACK, 1_100 + CONTINUE_WINDOW)));
        assert!(!s.continues(Dir::ToServer, &seg(TcpFlags::ACK, 1_101 + CONTINUE_WINDOW)));
        assert!(!s.continues(Dir::ToServer, &seg(TcpFlags::ACK, 0x8000_0000)));
        assert!(s.continues(Dir::ToClient, &seg(TcpFlags::ACK, 0x8000_0000)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::TcpFlags as F;

    fn seg(flags: u8, seq: u32) -> TcpInfo {
        TcpInfo {
            flags: TcpFlags(flags),
            seq,
            ack: 0,
            window: 1000,
        }
    }

    fn handshake(t: &mut TcpState) {
        t.update(Dir::ToServer, &seg(F::SYN, 100), 0);
        t.update(Dir::ToClient, &seg(F::SYN | F::ACK, 500), 0);
        t.update(Dir::ToServer, &seg(F::ACK, 101), 0);
    }

    #[test]
    fn full_session_is_sf_with_zeek_history() {
        let mut t = TcpState::default();
        handshake(&mut t);
        t.update(Dir::ToServer, &seg(F::ACK | F::PSH, 101), 10);
        t.update(Dir::ToClient, &seg(F::ACK | F::PSH, 501), 20);
        t.update(Dir::ToServer, &seg(F::FIN | F::ACK, 111), 0);
        t.update(Dir::ToClient, &seg(F::FIN | F::ACK, 521), 0);
        assert_eq!(t.conn_state(), "SF");
        assert_eq!(t.history().as_str(), "ShADdFf");
        assert!(t.closed());
        assert_eq!(t.eve_state(), "closed");
    }

    #[test]
    fn conn_states() {
        let mut s0 = TcpState::default();
        s0.update(Dir::ToServer, &seg(F::SYN, 1), 0);
        assert_eq!(s0.conn_state(), "S0");
        let mut rej = s0;
        rej.update(Dir::ToClient, &seg(F::RST | F::ACK, 0), 0);
        assert_eq!(rej.conn_state(), "REJ");
        let mut s1 = TcpState::default();
        handshake(&mut s1);
        assert_eq!(s1.conn_state(), "S1");
        let mut rsto = s1;
        rsto.update(Dir::ToServer, &seg(F::RST, 101), 0);
        assert_eq!(rsto.conn_state(), "RSTO");
        let mut oth = TcpState::default();
        oth.update(Dir::ToServer, &seg(F::ACK, 7), 5);
        assert_eq!(oth.conn_state(), "OTH");
    }

    #[test]
    fn retransmission_and_reordering_are_counted() {
        let mut t = TcpState::default();
        handshake(&mut t);
        assert_eq!(
            t.update(Dir::ToServer, &seg(F::ACK, 101), 100),
            SegmentKind::InOrder
        );
        assert_eq!(
            t.update(Dir::ToServer, &seg(F::ACK, 101), 100),
            SegmentKind::Retransmission
        );
        assert_eq!(
            t.update(Dir::ToServer, &seg(F::ACK, 301), 100),
            SegmentKind::InOrder
        );
        // The late segment fills the hole left by the one that jumped ahead.
        assert_eq!(
            t.update(Dir::ToServer, &seg(F::ACK, 201), 100),
            SegmentKind::OutOfOrder
        );
        assert_eq!(
            t.update(Dir::ToServer, &seg(F::ACK, 201), 100),
            SegmentKind::Retransmission
        );
        assert_eq!(t.dirs[0].retransmitted, 2);
        assert_eq!(t.dirs[0].out_of_order, 1);
        assert!(t.history().as_str().contains('T'));
    }

    #[test]
    fn keepalive_probe_is_not_a_retransmission() {
        let mut t = TcpState::default();
        handshake(&mut t);
        t.update(Dir::ToServer, &seg(F::ACK, 101), 10);
        assert_eq!(
            t.update(Dir::ToServer, &seg(F::ACK, 110), 1),
            SegmentKind::InOrder
        );
        assert_eq!(t.dirs[0].retransmitted, 0);
    }

    #[test]
    fn sequence_wraps() {
        assert!(seq_lt(u32::MAX - 5, 3));
        assert!(!seq_lt(3, u32::MAX - 5));
        let mut t = TcpState::default();
        t.update(Dir::ToServer, &seg(F::SYN, u32::MAX - 1), 0);
        assert_eq!(
            t.update(Dir::ToServer, &seg(F::ACK, u32::MAX), 10),
            SegmentKind::InOrder
        );
        assert_eq!(
            t.update(Dir::ToServer, &seg(F::ACK, 9), 10),
            SegmentKind::InOrder
        );
    }
}
