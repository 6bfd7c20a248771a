//! [`super::pair_hash`] as a classic BPF program, for the kernel: an
//! AF_PACKET fanout group of type `PACKET_FANOUT_CBPF` runs it on every
//! frame and gives the frame to member `result % members`, so live capture
//! is sharded in the kernel the way a [`super::Sharder`] shards replay.
//!
//! The program reads the network header through `SKF_NET_OFF` and the
//! EtherType through the `protocol` ancillary field, so it is the same on
//! received and sent frames and on VLAN-tagged ones (the kernel has taken
//! the tag off by then). For IPv4 and IPv6 it hashes the two addresses; for
//! an ICMP error that quotes a TCP, UDP or SCTP packet, the quoted packet's
//! addresses, as [`crate::decode`] does. Where the two differ the error
//! lands on its own pair's worker and is counted as a flow of its own:
//! IPv6 extension headers before an ICMPv6 error or in the quoted packet,
//! and quotes too short to hold their ports. Anything else (ARP, a frame
//! cut inside its header: a failed load returns 0) goes to member 0.

use crate::source::bpf::code::*;
use crate::source::bpf::Insn;

/// Where loads relative to the network header start (`SKF_NET_OFF`).
pub const NET: u32 = (-0x10_0000i32) as u32;
/// The ancillary load of the frame's EtherType (`SKF_AD_OFF + SKF_AD_PROTOCOL`).
pub const PROTOCOL: u32 = (-0x1000i32) as u32;

const IPV4: u32 = 0x0800;
const IPV6: u32 = 0x86dd;
/// Transports whose ports an ICMP error's quote gives ([`crate::decode`]).
const QUOTED: [u32; 3] = [6, 17, 132];
const ICMP4_ERRORS: [u32; 5] = [3, 4, 5, 11, 12];

/// Jump targets, resolved when the program is assembled.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Label {
    /// Past the next `n` instructions (0: the next one).
    Skip(u8),
    V6,
    V4Plain,
    V6Plain,
    Mix,
    Zero,
}

enum Step {
    Op(u16, u32),
    Jump(u16, u32, Label, Label),
    At(Label),
}

use Label::*;
use Step::{At, Jump, Op};

const NEXT: Label = Skip(0);

/// The fanout program of `seed`.
pub fn program(seed: u32) -> Vec<Insn> {
    let mut s = vec![
        Op(LD | W | ABS, PROTOCOL),
        Jump(JMP | JEQ | K, IPV4, NEXT, V6),
    ];
    s.extend(v4());
    s.extend(v6());
    s.push(At(Mix));
    s.extend(mix(seed));
    s.push(At(Zero));
    s.push(Op(RET | K, 0));
    assemble(&s)
}

fn v4() -> Vec<Step> {
    let mut s = vec![
        Op(LD | B | ABS, NET + 9),
        Jump(JMP | JEQ | K, 1, NEXT, V4Plain),
        // A later fragment carries no ICMP header.
        Op(LD | H | ABS, NET + 6),
        Jump(JMP | JSET | K, 0x1fff, V4Plain, NEXT),
        Op(LDX | B | MSH, NET),
        Op(LD | B | IND, NET),
    ];
    s.extend(any_of(&ICMP4_ERRORS, V4Plain));
    s.extend([
        Op(LD | B | IND, NET + 8),
        Op(ALU | AND | K, 0xf0),
        Jump(JMP | JEQ | K, 0x40, NEXT, V4Plain),
        Op(LD | B | IND, NET + 8 + 9),
    ]);
    s.extend(any_of(&QUOTED, V4Plain));
    s.extend([
        // X holds the header length: keep one address in M[0].
        Op(LD | W | IND, NET + 8 + 12),
        Op(ST, 0),
        Op(LD | W | IND, NET + 8 + 16),
        Op(LDX | W | MEM, 0),
        Op(ALU | XOR | X, 0),
        Jump(JMP | JA, 0, Mix, Mix),
        At(V4Plain),
    ]);
    s.extend(xor_words(NET + 12, 2));
    s.push(Jump(JMP | JA, 0, Mix, Mix));
    s
}

fn v6() -> Vec<Step> {
    let mut s = vec![
        At(V6),
        Jump(JMP | JEQ | K, IPV6, NEXT, Zero),
        Op(LD | B | ABS, NET + 6),
        Jump(JMP | JEQ | K, 58, NEXT, V6Plain),
        // ICMPv6 errors are types 1 to 4.
        Op(LD | B | ABS, NET + 40),
        Jump(JMP | JGT | K, 4, V6Plain, NEXT),
        Jump(JMP | JEQ | K, 0, V6Plain, NEXT),
        Op(LD | B | ABS, NET + 48),
        Op(ALU | AND | K, 0xf0),
        Jump(JMP | JEQ | K, 0x60, NEXT, V6Plain),
        Op(LD | B | ABS, NET + 48 + 6),
    ];
    s.extend(any_of(&QUOTED, V6Plain));
    s.extend(xor_words(NET + 48 + 8, 8));
    s.push(Jump(JMP | JA, 0, Mix, Mix));
    s.push(At(V6Plain));
    s.extend(xor_words(NET + 8, 8));
    s
}

/// Falls through if A is one of `values`, else jumps to `otherwise`.
fn any_of(values: &[u32], otherwise: Label) -> Vec<Step> {
    let n = values.len();
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let remaining = (n - 1 - i) as u8;
            if remaining == 0 {
                Jump(JMP | JEQ | K, v, NEXT, otherwise)
            } else {
                Jump(JMP | JEQ | K, v, Skip(remaining), NEXT)
            }
        })
        .collect()
}

/// A = the XOR of `count` 32-bit words from `at` (clobbers X).
fn xor_words(at: u32, count: u32) -> Vec<Step> {
    let mut s = vec![Op(LD | W | ABS, at)];
    for i in 1..count {
        s.push(Op(MISC | TAX, 0));
        s.push(Op(LD | W | ABS, at + 4 * i));
        s.push(Op(ALU | XOR | X, 0));
    }
    s
}

/// A = fmix32(A ^ seed), then return it ([`super::pair_hash`]).
fn mix(seed: u32) -> Vec<Step> {
    let shift = |by| {
        [
            Op(MISC | TAX, 0),
            Op(ALU | RSH | K, by),
            Op(ALU | XOR | X, 0),
        ]
    };
    let [s0, s1, s2] = super::FMIX_SHIFTS;
    let [m0, m1] = super::FMIX_MULTIPLIERS;
    let mut s = vec![Op(ALU | XOR | K, seed)];
    s.extend(shift(s0));
    s.push(Op(ALU | MUL | K, m0));
    s.extend(shift(s1));
    s.push(Op(ALU | MUL | K, m1));
    s.extend(shift(s2));
    s.push(Op(RET | RET_A, 0));
    s
}

/// Lays the steps out and resolves every jump to a forward offset.
fn assemble(steps: &[Step]) -> Vec<Insn> {
    let mut at = Vec::new();
    let mut pc = 0usize;
    for step in steps {
        match step {
            At(label) => at.push((*label, pc)),
            _ => pc += 1,
        }
    }
    let target = |label: Label, pc: usize| -> u8 {
        let to = match label {
            Skip(n) => pc + 1 + usize::from(n),
            named => at
                .iter()
                .find(|(l, _)| *l == named)
                .map(|&(_, t)| t)
                .expect("a placed label"),
        };
        u8::try_from(to - pc - 1).expect("a short forward jump")
    };
    let mut out = Vec::new();
    for step in steps {
        let pc = out.len();
        match *step {
            Op(code, k) => out.push(Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Jump(code, _, to, _) if code == JMP | JA => out.push(Insn {
                code,
                jt: 0,
                jf: 0,
                k: u32::from(target(to, pc)),
            }),
            Jump(code, k, t, f) => out.push(Insn {
                code,
                jt: target(t, pc),
                jf: target(f, pc),
                k,
            }),
            At(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::flow::shard::Sharder;
    use crate::source::{Frame, LinkType};
    use crate::time::Timestamp;
    use proptest::prelude::*;
    use std::net::IpAddr;

    /// Runs `prog` as the kernel would on a frame of `ethertype` whose
    /// network header starts `net`: a failed load returns 0.
    fn run(prog: &[Insn], ethertype: u16, net: &[u8]) -> u32 {
        let load = |off: u32, size: usize| -> Option<u32> {
            if off == PROTOCOL {
                return Some(u32::from(ethertype));
            }
            let at = usize::try_from(off.checked_sub(NET)?).ok()?;
            let bytes = net.get(at..at + size)?;
            Some(bytes.iter().fold(0, |v, &b| v << 8 | u32::from(b)))
        };
        let (mut a, mut x, mut m) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0;
        loop {
            let i = prog[pc];
            pc += 1;
            let size = match i.code & 0x18 {
                W => 4,
                H => 2,
                _ => 1,
            };
            let src = if i.code & X != 0 { x } else { i.k };
            match (i.code & 7, i.code & 0xe0) {
                (LD, ABS) => match load(i.k, size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                (LD, IND) => match load(x.wrapping_add(i.k), size) {
                    Some(v) => a = v,
                    None => return 0,
                },
                (LDX, MSH) => match load(i.k, 1) {
                    Some(v) => x = (v & 0xf) * 4,
                    None => return 0,
                },
                (LDX, MEM) => x = m[i.k as usize],
                (ST, _) => m[i.k as usize] = a,
                (ALU, _) => {
                    a = match i.code & 0xf0 {
                        MUL => a.wrapping_mul(src),
                        AND => a & src,
                        RSH => a >> src,
                        XOR => a ^ src,
                        op => panic!("ALU op {op:#x}"),
                    }
                }
                (JMP, _) if i.code & 0xf0 == JA => pc += i.k as usize,
                (JMP, _) => {
                    let taken = match i.code & 0xf0 {
                        JEQ => a == i.k,
                        JGT => a > i.k,
                        JSET => a & i.k != 0,
                        op => panic!("jump {op:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                (RET, _) => return if i.code & RET_A != 0 { a } else { i.k },
                (MISC, _) => x = a,
                _ => panic!("instruction {i:?}"),
            }
        }
    }

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], frag: u16, payload: &[u8]) -> Vec<u8> {
        let len = (20 + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend(len.to_be_bytes());
        p.extend([0, 1]);
        p.extend(frag.to_be_bytes());
        p.extend([64, proto, 0, 0]);
        p.extend(src);
        p.extend(dst);
        p.extend(payload);
        p
    }

    fn ipv6(next: u8, src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend((payload.len() as u16).to_be_bytes());
        p.extend([next, 64]);
        p.extend(src);
        p.extend(dst);
        p.extend(payload);
        p
    }

    fn ports(sport: u16, dport: u16, len: usize) -> Vec<u8> {
        let mut t = sport.to_be_bytes().to_vec();
        t.extend(dport.to_be_bytes());
        t.resize(len, 0);
        if len >= 20 {
            t[12] = 0x50; // a TCP header of 20 bytes
            t[13] = 0x02;
        }
        t
    }

    fn icmp(ty: u8, quote: &[u8]) -> Vec<u8> {
        let mut p = vec![ty, 0, 0, 0, 0, 0, 0, 0];
        p.extend(quote);
        p
    }

    /// Both shardings of the IP packet `net`: the kernel's (the program)
    /// and the replay's (a Sharder on the decoded frame). The decoder skips
    /// later fragments (counted, not analysed): the kernel's choice is then
    /// compared with the fragment's pair.
    fn both(net: &[u8], ethertype: u16, workers: usize, seed: u32) -> (usize, usize) {
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        frame.extend(ethertype.to_be_bytes());
        frame.extend(net);
        let f = Frame {
            ts: Timestamp::from_secs(1),
            link: LinkType::Ethernet,
            data: &frame,
            orig_len: frame.len() as u32,
            input: 0,
        };
        let kernel = run(&program(seed), ethertype, net) as usize % workers;
        let sharder = Sharder::new(workers, seed);
        match decode(&f) {
            Err(crate::decode::Skip::Fragment) => {
                let (src, dst) = (&net[12..16], &net[16..20]);
                let addr = |b: &[u8]| IpAddr::from([b[0], b[1], b[2], b[3]]);
                let h = crate::flow::shard::pair_hash(addr(src), addr(dst), seed);
                (kernel, h as usize % workers)
            }
            decoded => {
                assert!(decoded.is_ok(), "{decoded:?}");
                (kernel, { sharder }.worker_of(&decoded))
            }
        }
    }

    fn v6addr(tail: u32, head: u16) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..2].copy_from_slice(&head.to_be_bytes());
        a[12..].copy_from_slice(&tail.to_be_bytes());
        a
    }

    proptest! {
        #[test]
        fn the_kernel_program_shards_as_the_sharder_does(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            s6 in any::<u32>(), d6 in any::<u32>(), head in any::<u16>(),
            sport in any::<u16>(), dport in any::<u16>(),
            seed in any::<u32>(), workers in 2usize..9,
        ) {
            let (s16, d16) = (v6addr(s6, head), v6addr(d6, 0x2001));
            let tcp = ports(sport, dport, 20);
            let udp = ports(sport, dport, 8);
            let cases = [
                (ipv4(6, src, dst, 0x4000, &tcp), IPV4),
                (ipv4(17, dst, src, 0, &udp), IPV4),
                // A later fragment: no ports, the same pair.
                (ipv4(6, src, dst, 0x0010, &tcp), IPV4),
                (ipv4(1, src, dst, 0, &icmp(8, &[0; 8])), IPV4),
                (ipv4(1, [192, 0, 2, 1], src, 0, &icmp(3, &ipv4(6, src, dst, 0, &tcp))), IPV4),
                (ipv4(1, [192, 0, 2, 1], dst, 0, &icmp(11, &ipv4(17, dst, src, 0, &udp[..4]))), IPV4),
                (ipv6(6, s16, d16, &tcp), IPV6),
                (ipv6(58, d16, s16, &icmp(128, &[0; 8])), IPV6),
                (ipv6(58, v6addr(1, 0xfe80), s16, &icmp(1, &ipv6(17, s16, d16, &udp))), IPV6),
            ];
            for (i, (net, ethertype)) in cases.iter().enumerate() {
                let (kernel, sharder) = both(net, *ethertype as u16, workers, seed);
                prop_assert_eq!(kernel, sharder, "case {}", i);
            }
        }
    }

    #[test]
    fn non_ip_goes_to_member_zero() {
        assert_eq!(run(&program(7), 0x0806, &[0; 28]), 0);
        // Cut inside the IPv4 header: the failed load returns 0.
        assert_eq!(
            run(&program(7), 0x0800, &[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6]),
            0
        );
    }

    #[test]
    fn the_program_fits_the_kernel_limits() {
        let p = program(u32::MAX);
        // BPF_MAXINSNS, and the last instruction returns.
        assert!(p.len() <= 4096, "{}", p.len());
        assert_eq!(p.last().map(|i| i.code & 7), Some(RET));
    }
}
