//! `--bpf EXPR`: BPF filters compiled by libpcap, so an expression means
//! exactly what it means to tcpdump.
//!
//! libpcap compiles the expression (through the `pcap` crate, once per link
//! type: a pcapng file can mix link types). The compiled program runs here,
//! in a small interpreter that follows libpcap's `pcap_filter()`
//! instruction for instruction. Why not `pcap::BpfProgram::filter`: it passes
//! the captured length as the wire length, so `greater`, `less` and `len`
//! would see the snap length on cut frames; `pcap_offline_filter` itself is
//! given both lengths, and so is this interpreter. A test runs both side by
//! side on full-length frames to keep them in agreement.
//!
//! Programs are compiled as for `tcpdump -r` (on a capture-file handle). One
//! difference remains: on BSD loopback (LINKTYPE_NULL) libpcap compares the
//! 4-byte address family in the byte order of the file being read, and a
//! [`Frame`] does not carry that order, so we compile as for a file in this
//! host's byte order. A NULL capture written on a machine of the other byte
//! order would match `ip`/`ip6` there and not here.

use super::{Frame, LinkType, PacketSource, SelectSource, SourceError};

/// libpcap could not compile the expression for a link type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--bpf {expr:?}: libpcap cannot compile it for link type {link}: {message}")]
pub struct BpfError {
    /// The filter expression as given.
    pub expr: String,
    /// The link type it was compiled for, as libpcap names it.
    pub link: String,
    /// libpcap's message.
    pub message: String,
}

/// One classic-BPF instruction, laid out as `struct bpf_insn` (the
/// kernel's `sock_filter`).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A compiled filter expression, with one program per link type seen.
pub struct BpfFilter {
    expr: String,
    programs: Vec<(LinkType, Vec<Op>)>,
}

impl BpfFilter {
    /// Compiles `expr` for Ethernet at once, so a syntax error is reported
    /// before any packet is read; other link types compile when their
    /// first frame arrives.
    pub fn new(expr: &str) -> Result<BpfFilter, BpfError> {
        let mut filter = BpfFilter {
            expr: expr.to_string(),
            programs: Vec::new(),
        };
        filter.program(LinkType::Ethernet)?;
        Ok(filter)
    }

    /// The expression as given.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// Whether libpcap's filter accepts the frame, judged on its captured
    /// bytes and its wire length (`frame.orig_len`).
    pub fn matches(&mut self, frame: &Frame<'_>) -> Result<bool, BpfError> {
        let program = self.program(frame.link)?;
        Ok(run(program, frame.data, frame.orig_len) != 0)
    }

    /// The program for `link`, compiling it on first use.
    fn program(&mut self, link: LinkType) -> Result<&[Op], BpfError> {
        let index = match self.programs.iter().position(|(l, _)| *l == link) {
            Some(i) => i,
            None => {
                let program = compile(&self.expr, link)?;
                self.programs.push((link, program));
                self.programs.len() - 1
            }
        };
        Ok(self
            .programs
            .get(index)
            .map(|(_, p)| p.as_slice())
            .unwrap_or_default())
    }
}

/// The DLT value for a dead handle (DLT and LINKTYPE numbers differ for
/// raw IP).
fn dlt(link: LinkType) -> i32 {
    match link {
        LinkType::RawIp => 12, // DLT_RAW on Linux
        other => other.to_linktype() as i32,
    }
}

/// Compiles `expr` as `tcpdump -r` would. libpcap compiles some
/// expressions differently for a capture file than for a dead handle (on
/// BSD loopback, `ip6` then matches all three BSD AF_INET6 values instead
/// of this host's), so the program comes from a handle opened on a
/// header-only capture file of the link type. If no temporary file can be
/// written, a dead handle is used instead.
fn compile(expr: &str, link: LinkType) -> Result<Vec<Op>, BpfError> {
    Ok(instructions(expr, link)?.into_iter().map(decode).collect())
}

/// `expr` compiled for `link` as [`compile`] does, as the instructions a
/// kernel socket filter takes; its accepting returns cut frames to
/// `snaplen`.
pub fn socket_filter(expr: &str, link: LinkType, snaplen: u32) -> Result<Vec<Insn>, BpfError> {
    let mut program = instructions(expr, link)?;
    for insn in &mut program {
        if insn.code == RET | K && insn.k != 0 {
            insn.k = insn.k.min(snaplen);
        }
    }
    Ok(program)
}

fn instructions(expr: &str, link: LinkType) -> Result<Vec<Insn>, BpfError> {
    let dlt = pcap::Linktype(dlt(link));
    let error = |message: String| BpfError {
        expr: expr.to_string(),
        link: dlt
            .get_name()
            .map(|name| format!("{name} ({})", dlt.0))
            .unwrap_or_else(|_| dlt.0.to_string()),
        message,
    };
    let compiled = match savefile_handle(link) {
        Some(handle) => handle.compile(expr, true),
        None => pcap::Capture::dead(dlt).and_then(|h| h.compile(expr, true)),
    };
    let program = compiled.map_err(|e| error(e.to_string()))?;
    // The pcap crate keeps `bpf_insn`'s fields private but prints them as
    // "code jt jf k".
    program
        .get_instructions()
        .iter()
        .map(|insn| parse_insn(&insn.to_string()))
        .collect::<Option<Vec<Insn>>>()
        .ok_or_else(|| error("unreadable compiled instruction".to_string()))
}

/// An offline handle on an empty capture file of `link`, written in this
/// host's byte order.
fn savefile_handle(link: LinkType) -> Option<pcap::Capture<pcap::Offline>> {
    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
    header.extend_from_slice(&2u16.to_ne_bytes());
    header.extend_from_slice(&4u16.to_ne_bytes());
    header.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    header.extend_from_slice(&262_144u32.to_ne_bytes());
    header.extend_from_slice(&link.to_linktype().to_ne_bytes());
    let mut file = tempfile::NamedTempFile::new().ok()?;
    std::io::Write::write_all(&mut file, &header).ok()?;
    pcap::Capture::from_file(file.path()).ok()
}

fn parse_insn(text: &str) -> Option<Insn> {
    let mut fields = text.split_whitespace();
    let insn = Insn {
        code: fields.next()?.parse().ok()?,
        jt: fields.next()?.parse().ok()?,
        jf: fields.next()?.parse().ok()?,
        k: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(insn)
}

/// Instruction classes, sizes, modes and operations (<pcap/bpf.h>).
pub mod code {
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;
    pub const MUL: u16 = 0x20;
    pub const AND: u16 = 0x50;
    pub const RSH: u16 = 0x70;
    pub const XOR: u16 = 0xa0;
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JSET: u16 = 0x40;
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    /// `RET | RET_A` returns the accumulator.
    pub const RET_A: u16 = 0x10;
    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;
}
use code::*;
const SCRATCH: u32 = 16;

/// The second operand of an ALU or jump instruction.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Operand {
    K(u32),
    X,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Or,
    And,
    Xor,
    Lsh,
    Rsh,
}

/// An instruction decoded once at compile time, so the per-packet loop
/// dispatches once per instruction (loads and jumps are flat variants) and
/// never re-checks operands (scratch indexes and constant divisors are
/// validated here).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Op {
    Ret(u32),
    RetA,
    LdW(u32),
    LdH(u32),
    LdB(u32),
    LdIndW(u32),
    LdIndH(u32),
    LdIndB(u32),
    LdImm(u32),
    LdLen,
    LdMem(u32),
    LdxImm(u32),
    LdxLen,
    LdxMem(u32),
    /// `X = 4 * (P[k] & 0xf)`: an IPv4 header length.
    LdxMsh(u32),
    St(u32),
    Stx(u32),
    Alu(AluOp, Operand),
    Neg,
    Ja(u32),
    JeqK(u32, u8, u8),
    JgtK(u32, u8, u8),
    JgeK(u32, u8, u8),
    JsetK(u32, u8, u8),
    JeqX(u8, u8),
    JgtX(u8, u8),
    JgeX(u8, u8),
    JsetX(u8, u8),
    Tax,
    Txa,
    /// Anything libpcap's interpreter would not run: rejects when reached.
    Invalid,
}

fn decode(insn: Insn) -> Op {
    let k = insn.k;
    let operand = if insn.code & X != 0 {
        Operand::X
    } else {
        Operand::K(k)
    };
    let scratch = |op: fn(u32) -> Op| if k < SCRATCH { op(k) } else { Op::Invalid };
    match (insn.code & 0x07, insn.code & 0xe0) {
        (RET, _) if insn.code & 0x18 == RET_A => Op::RetA,
        (RET, _) => Op::Ret(k),
        (LD, ABS | IND) => decode_load(insn.code, k),
        (LD, IMM) => Op::LdImm(k),
        (LD, LEN) => Op::LdLen,
        (LD, MEM) => scratch(Op::LdMem),
        (LDX, IMM) => Op::LdxImm(k),
        (LDX, LEN) => Op::LdxLen,
        (LDX, MEM) => scratch(Op::LdxMem),
        (LDX, MSH) => Op::LdxMsh(k),
        (ST, _) => scratch(Op::St),
        (STX, _) => scratch(Op::Stx),
        (ALU, _) => decode_alu(insn.code & 0xf0, operand),
        (JMP, _) => decode_jump(insn, operand),
        (MISC, _) if insn.code == MISC => Op::Tax,
        (MISC, _) if insn.code == MISC | TXA => Op::Txa,
        _ => Op::Invalid,
    }
}

fn decode_load(code: u16, k: u32) -> Op {
    match (code & 0xe0 == IND, code & 0x18) {
        (false, W) => Op::LdW(k),
        (false, H) => Op::LdH(k),
        (false, B) => Op::LdB(k),
        (true, W) => Op::LdIndW(k),
        (true, H) => Op::LdIndH(k),
        (true, B) => Op::LdIndB(k),
        _ => Op::Invalid,
    }
}

fn decode_jump(insn: Insn, operand: Operand) -> Op {
    let (jt, jf) = (insn.jt, insn.jf);
    match (insn.code & 0xf0, operand) {
        (0x00, _) => Op::Ja(insn.k),
        (0x10, Operand::K(k)) => Op::JeqK(k, jt, jf),
        (0x20, Operand::K(k)) => Op::JgtK(k, jt, jf),
        (0x30, Operand::K(k)) => Op::JgeK(k, jt, jf),
        (0x40, Operand::K(k)) => Op::JsetK(k, jt, jf),
        (0x10, Operand::X) => Op::JeqX(jt, jf),
        (0x20, Operand::X) => Op::JgtX(jt, jf),
        (0x30, Operand::X) => Op::JgeX(jt, jf),
        (0x40, Operand::X) => Op::JsetX(jt, jf),
        _ => Op::Invalid,
    }
}

fn decode_alu(op: u16, operand: Operand) -> Op {
    let op = match op {
        0x00 => AluOp::Add,
        0x10 => AluOp::Sub,
        0x20 => AluOp::Mul,
        0x30 => AluOp::Div,
        0x40 => AluOp::Or,
        0x50 => AluOp::And,
        0x60 => AluOp::Lsh,
        0x70 => AluOp::Rsh,
        0x80 => return Op::Neg,
        0x90 => AluOp::Mod,
        0xa0 => AluOp::Xor,
        _ => return Op::Invalid,
    };
    match (op, operand) {
        (AluOp::Div | AluOp::Mod, Operand::K(0)) => Op::Invalid,
        _ => Op::Alu(op, operand),
    }
}

/// Runs a program as libpcap's `pcap_filter()` does: the return value is
/// the number of bytes to keep, 0 to reject. A load beyond the captured
/// bytes, a division by zero or an invalid instruction rejects.
fn run(program: &[Op], packet: &[u8], wire_len: u32) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; SCRATCH as usize];
    let mut pc = 0usize;
    loop {
        let Some(&op) = program.get(pc) else {
            return 0;
        };
        pc += 1;
        match op {
            Op::Ret(k) => return k,
            Op::RetA => return a,
            Op::LdW(k) => match word(packet, k as usize) {
                Some(v) => a = v,
                None => return 0,
            },
            Op::LdH(k) => match half(packet, k as usize) {
                Some(v) => a = v,
                None => return 0,
            },
            Op::LdB(k) => match packet.get(k as usize) {
                Some(&v) => a = u32::from(v),
                None => return 0,
            },
            Op::LdIndW(k) => match x.checked_add(k).and_then(|at| word(packet, at as usize)) {
                Some(v) => a = v,
                None => return 0,
            },
            Op::LdIndH(k) => match x.checked_add(k).and_then(|at| half(packet, at as usize)) {
                Some(v) => a = v,
                None => return 0,
            },
            Op::LdIndB(k) => match x.checked_add(k).and_then(|at| packet.get(at as usize)) {
                Some(&v) => a = u32::from(v),
                None => return 0,
            },
            Op::LdImm(k) => a = k,
            Op::LdLen => a = wire_len,
            Op::LdMem(i) => a = scratch(&mem, i),
            Op::LdxImm(k) => x = k,
            Op::LdxLen => x = wire_len,
            Op::LdxMem(i) => x = scratch(&mem, i),
            Op::LdxMsh(k) => match packet.get(k as usize) {
                Some(&byte) => x = u32::from(byte & 0x0f) << 2,
                None => return 0,
            },
            Op::St(i) => store(&mut mem, i, a),
            Op::Stx(i) => store(&mut mem, i, x),
            Op::Alu(op, operand) => match alu(op, a, value(operand, x)) {
                Some(v) => a = v,
                None => return 0,
            },
            Op::Neg => a = a.wrapping_neg(),
            Op::Ja(k) => pc = pc.saturating_add(k as usize),
            Op::JeqK(k, jt, jf) => pc += branch(a == k, jt, jf),
            Op::JgtK(k, jt, jf) => pc += branch(a > k, jt, jf),
            Op::JgeK(k, jt, jf) => pc += branch(a >= k, jt, jf),
            Op::JsetK(k, jt, jf) => pc += branch(a & k != 0, jt, jf),
            Op::JeqX(jt, jf) => pc += branch(a == x, jt, jf),
            Op::JgtX(jt, jf) => pc += branch(a > x, jt, jf),
            Op::JgeX(jt, jf) => pc += branch(a >= x, jt, jf),
            Op::JsetX(jt, jf) => pc += branch(a & x != 0, jt, jf),
            Op::Tax => x = a,
            Op::Txa => a = x,
            Op::Invalid => return 0,
        }
    }
}

#[inline]
fn value(operand: Operand, x: u32) -> u32 {
    match operand {
        Operand::K(k) => k,
        Operand::X => x,
    }
}

fn scratch(mem: &[u32; SCRATCH as usize], i: u32) -> u32 {
    mem.get(i as usize).copied().unwrap_or(0)
}

fn store(mem: &mut [u32; SCRATCH as usize], i: u32, v: u32) {
    if let Some(slot) = mem.get_mut(i as usize) {
        *slot = v;
    }
}

#[inline]
fn branch(taken: bool, jt: u8, jf: u8) -> usize {
    usize::from(if taken { jt } else { jf })
}

/// Big-endian loads; `None` (reject) past the captured bytes.
#[inline]
fn word(packet: &[u8], at: usize) -> Option<u32> {
    packet
        .get(at..at.checked_add(4)?)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
}

#[inline]
fn half(packet: &[u8], at: usize) -> Option<u32> {
    packet
        .get(at..at.checked_add(2)?)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(|b| u32::from(u16::from_be_bytes(b)))
}

/// An ALU operation on A; `None` (reject) on division by zero.
#[inline]
fn alu(op: AluOp, a: u32, v: u32) -> Option<u32> {
    Some(match op {
        AluOp::Add => a.wrapping_add(v),
        AluOp::Sub => a.wrapping_sub(v),
        AluOp::Mul => a.wrapping_mul(v),
        AluOp::Div => a.checked_div(v)?,
        AluOp::Mod => a.checked_rem(v)?,
        AluOp::Or => a | v,
        AluOp::And => a & v,
        AluOp::Xor => a ^ v,
        AluOp::Lsh => a.checked_shl(v).unwrap_or(0),
        AluOp::Rsh => a.checked_shr(v).unwrap_or(0),
    })
}

/// A source with a BPF filter in front: frames the filter rejects are
/// skipped and counted.
pub struct Filtered<S> {
    source: S,
    filter: BpfFilter,
    rejected: u64,
}

impl<S> Filtered<S> {
    pub fn new(source: S, filter: BpfFilter) -> Filtered<S> {
        Filtered {
            source,
            filter,
            rejected: 0,
        }
    }

    /// Frames the filter rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The filtered source (e.g. for its frame count).
    pub fn inner(&self) -> &S {
        &self.source
    }

    pub fn into_inner(self) -> S {
        self.source
    }
}

impl<S: SelectSource> PacketSource for Filtered<S> {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SourceError> {
        let Filtered {
            source,
            filter,
            rejected,
        } = self;
        source.next_frame_where(|frame| {
            let keep = filter.matches(frame)?;
            if !keep {
                *rejected += 1;
            }
            Ok(keep)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_filters_cut_what_they_accept_to_the_snap_length() {
        let program = socket_filter("tcp", LinkType::Ethernet, 96).unwrap();
        let returns: Vec<u32> = program
            .iter()
            .filter(|i| i.code == RET | K)
            .map(|i| i.k)
            .collect();
        assert!(returns.contains(&96), "{returns:?}");
        assert!(returns.iter().all(|&k| k == 0 || k == 96), "{returns:?}");
        assert!(socket_filter("tcp and", LinkType::Ethernet, 96).is_err());
    }
    use crate::source::file::CaptureReader;
    use crate::time::Timestamp;
    use etherparse::{PacketBuilder, VlanId};
    use proptest::prelude::*;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const IP_A: [u8; 4] = [10, 0, 0, 1];
    const IP_B: [u8; 4] = [198, 51, 100, 7];

    fn tcp4(dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(IP_A, IP_B, 64)
            .tcp(40_000, dport, 1, 1024)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn vlan_tcp4(dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(VlanId::try_new(100).unwrap())
            .ipv4(IP_A, IP_B, 64)
            .tcp(40_000, dport, 1, 1024);
        let mut out = Vec::new();
        b.write(&mut out, b"x").unwrap();
        out
    }

    fn udp6(dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6([0xfd; 16], [0x20; 16], 64)
            .udp(5353, dport);
        let mut out = Vec::new();
        b.write(&mut out, b"query").unwrap();
        out
    }

    fn udp4(dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(IP_A, IP_B, 64)
            .udp(5353, dport);
        let mut out = Vec::new();
        b.write(&mut out, b"query").unwrap();
        out
    }

    fn raw_tcp4(dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv4(IP_A, IP_B, 64).tcp(40_000, dport, 1, 1024);
        let mut out = Vec::new();
        b.write(&mut out, b"x").unwrap();
        out
    }

    fn frame(link: LinkType, data: &[u8]) -> Frame<'_> {
        Frame {
            ts: Timestamp::default(),
            link,
            data,
            orig_len: data.len() as u32,
            input: 0,
        }
    }

    #[test]
    fn accepts_and_rejects_as_libpcap() {
        let tcp22 = tcp4(22, b"SSH-2.0-x\r\n");
        let tcp80 = tcp4(80, b"GET / HTTP/1.1\r\n");
        let vlan22 = vlan_tcp4(22);
        let v6udp = udp6(53);
        let v4udp = udp4(53);
        let frames = [&tcp22, &tcp80, &vlan22, &v6udp, &v4udp];
        // One column per frame above.
        let cases = [
            ("tcp port 22", [true, false, false, false, false]),
            ("vlan and tcp", [false, false, true, false, false]),
            (
                "vlan 100 and tcp port 22",
                [false, false, true, false, false],
            ),
            ("ip6", [false, false, false, true, false]),
            ("udp", [false, false, false, true, true]),
            ("udp port 53 and ip", [false, false, false, false, true]),
            (
                "tcp[tcpflags] & tcp-syn != 0",
                [true, true, false, false, false],
            ),
            (
                "host 198.51.100.7 and not port 80",
                [true, false, false, false, true],
            ),
        ];
        for (expr, want) in cases {
            let mut filter = BpfFilter::new(expr).unwrap();
            for (data, want) in frames.iter().zip(want) {
                let got = filter.matches(&frame(LinkType::Ethernet, data)).unwrap();
                assert_eq!(got, want, "{expr} on {:02x?}", &data[12..14]);
            }
        }
    }

    #[test]
    fn compiles_per_link_type() {
        let mut filter = BpfFilter::new("tcp port 22").unwrap();
        assert!(filter
            .matches(&frame(LinkType::RawIp, &raw_tcp4(22)))
            .unwrap());
        assert!(!filter
            .matches(&frame(LinkType::RawIp, &raw_tcp4(23)))
            .unwrap());
        assert!(filter
            .matches(&frame(LinkType::Ethernet, &tcp4(22, b"")))
            .unwrap());
        // The raw-IP bytes are not an Ethernet frame.
        assert!(!filter
            .matches(&frame(LinkType::Ethernet, &raw_tcp4(22)))
            .unwrap());
        assert_eq!(filter.programs.len(), 2);
    }

    /// BSD loopback: `tcpdump -r` matches `ip6` on the BSD AF_INET6 values
    /// (24, 28, 30), not on Linux's 10.
    #[test]
    fn bsd_loopback_follows_savefile_semantics() {
        let mut ip6 = Vec::new();
        PacketBuilder::ipv6([0; 16], [0; 16], 64)
            .udp(1, 2)
            .write(&mut ip6, b"x")
            .unwrap();
        let mut filter = BpfFilter::new("ip6 and udp").unwrap();
        for (af, want) in [(24u32, true), (28, true), (30, true), (10, false)] {
            let data = [af.to_ne_bytes().as_slice(), &ip6].concat();
            assert_eq!(
                filter.matches(&frame(LinkType::Null, &data)).unwrap(),
                want,
                "AF {af}"
            );
        }
    }

    #[test]
    fn compile_errors_name_the_expression_and_link_type() {
        let err = BpfFilter::new("tcp port").err().unwrap();
        assert_eq!(err.expr, "tcp port");
        assert!(err.link.starts_with("EN10MB"), "{err}");
        assert!(!err.message.is_empty());
        assert!(err
            .to_string()
            .starts_with("--bpf \"tcp port\": libpcap cannot compile it"));

        // Valid for Ethernet, not for raw IP: reported at the first such frame.
        let mut filter = BpfFilter::new("ether host 02:00:00:00:00:01").unwrap();
        let err = filter
            .matches(&frame(LinkType::RawIp, &raw_tcp4(22)))
            .err()
            .unwrap();
        assert!(err.link.starts_with("RAW"), "{err}");
        let source_err = SourceError::from(err);
        assert_eq!(source_err.exit_code(), 64);
    }

    #[test]
    fn length_tests_use_the_wire_length() {
        let full = tcp4(443, &[0; 1400]);
        let cut = &full[..96];
        let snapped = Frame {
            orig_len: full.len() as u32,
            input: 0,
            ..frame(LinkType::Ethernet, cut)
        };
        let mut greater = BpfFilter::new("greater 1000").unwrap();
        let mut less = BpfFilter::new("less 200").unwrap();
        assert!(greater.matches(&snapped).unwrap());
        assert!(!less.matches(&snapped).unwrap());
        // A load past the captured bytes rejects, as in libpcap.
        let mut payload = BpfFilter::new("tcp[100] = 0").unwrap();
        assert!(!payload.matches(&snapped).unwrap());
        assert!(payload.matches(&frame(LinkType::Ethernet, &full)).unwrap());
    }

    #[test]
    fn interpreter_edge_cases() {
        let insn = |code, jt, jf, k| Insn { code, jt, jf, k };
        let cases: Vec<(&str, Vec<Insn>, u32)> = vec![
            ("empty program rejects", vec![], 0),
            ("ret k", vec![insn(RET, 0, 0, 7)], 7),
            (
                "running off the end rejects",
                vec![insn(LD | IMM, 0, 0, 1)],
                0,
            ),
            (
                "division by zero rejects",
                vec![
                    insn(LD | IMM, 0, 0, 1),
                    insn(ALU | 0x30 | X, 0, 0, 0),
                    insn(RET, 0, 0, 1),
                ],
                0,
            ),
            (
                "modulo by zero rejects",
                vec![insn(ALU | 0x90, 0, 0, 0), insn(RET, 0, 0, 1)],
                0,
            ),
            (
                "scratch index out of range rejects",
                vec![insn(ST, 0, 0, 16), insn(RET, 0, 0, 1)],
                0,
            ),
            (
                "jump past the end rejects",
                vec![insn(JMP, 0, 0, 5), insn(RET, 0, 0, 1)],
                0,
            ),
            (
                "shift by 32 gives 0",
                vec![
                    insn(LD | IMM, 0, 0, 1),
                    insn(ALU | 0x60, 0, 0, 32),
                    insn(RET | RET_A, 0, 0, 0),
                ],
                0,
            ),
            (
                "msh loads the IP header length",
                vec![
                    insn(LDX | MSH | B, 0, 0, 0),
                    insn(MISC | TXA, 0, 0, 0),
                    insn(RET | RET_A, 0, 0, 0),
                ],
                20,
            ),
            (
                "indexed load overflow rejects",
                vec![
                    insn(LDX | IMM, 0, 0, u32::MAX),
                    insn(LD | IND | B, 0, 0, 1),
                    insn(RET, 0, 0, 1),
                ],
                0,
            ),
            (
                "len is the wire length",
                vec![insn(LD | LEN, 0, 0, 0), insn(RET | RET_A, 0, 0, 0)],
                1500,
            ),
            (
                "neg wraps",
                vec![
                    insn(LD | IMM, 0, 0, 1),
                    insn(ALU | 0x80, 0, 0, 0),
                    insn(RET | RET_A, 0, 0, 0),
                ],
                u32::MAX,
            ),
            (
                "unknown opcode rejects",
                vec![insn(0xff, 0, 0, 0), insn(RET, 0, 0, 1)],
                0,
            ),
        ];
        let packet = [0x45u8, 0, 0, 20];
        for (what, program, want) in cases {
            let program: Vec<Op> = program.into_iter().map(decode).collect();
            assert_eq!(run(&program, &packet, 1500), want, "{what}");
        }
        assert_eq!(parse_insn("40 0 0 12"), Some(insn(40, 0, 0, 12)));
        assert_eq!(parse_insn("40 0 0"), None);
        assert_eq!(parse_insn("40 0 0 12 9"), None);
    }

    fn pcap_le(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (i, data) in frames.iter().enumerate() {
            for v in [i as u32, 0, data.len() as u32, data.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn filtered_source_skips_and_counts() {
        let frames = vec![
            tcp4(22, b"a"),
            udp4(53),
            tcp4(80, b"b"),
            tcp4(22, b"c"),
            udp6(53),
        ];
        let bytes = pcap_le(&frames);
        let reader = CaptureReader::new("f.pcap", bytes.as_slice()).unwrap();
        let mut src = Filtered::new(reader, BpfFilter::new("tcp port 22").unwrap());
        let mut seen = Vec::new();
        while let Some(f) = src.next_frame().unwrap() {
            seen.push(f.ts.as_secs());
        }
        assert_eq!(seen, [0, 3]);
        assert_eq!(src.rejected(), 3);
        assert_eq!(src.inner().packets(), 5);

        // A link type the expression cannot compile for ends the source
        // with the typed error.
        let raw = [
            0xa1b2_c3d4u32.to_le_bytes(),
            0x0004_0002u32.to_le_bytes(),
            [0; 4],
            [0; 4],
            65_535u32.to_le_bytes(),
            101u32.to_le_bytes(),
        ]
        .concat();
        let mut raw = raw;
        let packet = raw_tcp4(22);
        for v in [0u32, 0, packet.len() as u32, packet.len() as u32] {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        raw.extend_from_slice(&packet);
        let reader = CaptureReader::new("raw.pcap", raw.as_slice()).unwrap();
        let filter = BpfFilter::new("ether src 02:00:00:00:00:01").unwrap();
        let mut src = Filtered::new(reader, filter);
        assert!(matches!(src.next_frame(), Err(SourceError::Filter(_))));
    }

    /// Expressions that exercise every instruction class libpcap emits.
    const EXPRS: &[&str] = &[
        "tcp port 22",
        "vlan and tcp",
        "ip6 and udp port 53",
        "icmp or icmp6",
        "net 10.0.0.0/8 and portrange 1000-50000",
        "ip[6:2] & 0x1fff = 0",
        "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x5353482d",
        "len > 100 and len <= 1514",
        "ip[2:2] - ((ip[0] & 0xf) * 4) > 40",
        "ether[12:2] % 3 = 1 or ether[13] ^ 0xff = 0x77",
        "vlan 100 and host 198.51.100.7",
        "ip6 protochain 17",
    ];

    fn icmp4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(IP_A, IP_B, 64)
            .icmpv4_echo_request(1, 2);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn template(kind: u8, port: u16, payload: &[u8]) -> Vec<u8> {
        match kind % 6 {
            0 => tcp4(port, payload),
            1 => vlan_tcp4(port),
            2 => udp6(port),
            3 => udp4(port),
            4 => icmp4(payload),
            _ => payload.to_vec(),
        }
    }

    proptest! {
        /// The interpreter and libpcap's `pcap_offline_filter` (through
        /// `BpfProgram::filter`, which sets wire length = captured length)
        /// agree on every frame.
        #[test]
        fn interpreter_agrees_with_libpcap(
            kind in any::<u8>(),
            port in prop_oneof![Just(22u16), Just(53), any::<u16>()],
            payload in prop_oneof![
                Just(b"SSH-2.0-OpenSSH_9.2p1\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..200),
            ],
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut data = template(kind, port, &payload);
            for (at, v) in flips {
                if !data.is_empty() {
                    let i = at.index(data.len());
                    data[i] = v;
                }
            }
            data.truncate(cut.index(data.len() + 1));
            let dead = pcap::Capture::dead(pcap::Linktype(1)).unwrap();
            for expr in EXPRS {
                let oracle = dead.compile(expr, true).unwrap();
                let program = compile(expr, LinkType::Ethernet).unwrap();
                let ours = run(&program, &data, data.len() as u32) != 0;
                prop_assert_eq!(ours, oracle.filter(&data), "{} on {:02x?}", expr, data);
            }
        }
    }
}
