//! Which engine analyzes a frame, and the order engines take when they
//! touch the one thing they share per packet (the DNS name cache).
//!
//! [`Sharder`]: a hash of the flow's two addresses ([`pair_hash`]), the
//! same whichever is the source, so both directions of a flow (and the
//! ICMP errors about it) land on the same engine, whose flow table then
//! needs no lock. Ports are left out on purpose: every flow between two
//! hosts meets on one engine, so per-pair state (the policy's suppression
//! window: an autossh loop reconnecting from a new port each minute) is the
//! same however many engines there are, and IP fragments, which carry no
//! ports, stay with their flow. [`fanout`] is the same function as a
//! classic BPF program, for the kernel to spread live capture over
//! AF_PACKET sockets exactly as a [`Sharder`] would.
//!
//! [`Turns`]: engines that share a [`crate::analyzer::names::NameCache`]
//! take turns by position in the input, so the cache sees its reads and
//! writes in the order one engine would have made them.

pub mod fanout;

use crate::decode::{Packet, Skip};
use crate::flow::key::FlowKey;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Maps frames to workers. Every capture thread holds a clone: the seed is
/// shared, so all interfaces agree on a flow's worker.
#[derive(Clone, Debug)]
pub struct Sharder {
    seed: u32,
    workers: usize,
    /// Round robin for frames that do not decode (they are still counted
    /// by whichever worker gets them).
    next_undecodable: usize,
}

impl Sharder {
    /// `seed` must be the one all capture threads (and the kernel's fanout
    /// program, [`fanout::program`]) use.
    pub fn new(workers: usize, seed: u32) -> Sharder {
        Sharder {
            seed,
            workers: workers.max(1),
            next_undecodable: 0,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The worker of a frame's flow, from the frame's decoding.
    pub fn worker_of(&mut self, decoded: &Result<Packet<'_>, Skip>) -> usize {
        if self.workers == 1 {
            return 0;
        }
        match decoded {
            Ok(pkt) => {
                let key = match pkt.icmp_inner {
                    // An ICMP error counts toward the flow it quotes.
                    Some((src, dst, proto)) => FlowKey::new(src, dst, proto, false).0,
                    None => pkt.flow_key().0,
                };
                self.worker_of_key(&key)
            }
            Err(_) => {
                self.next_undecodable = (self.next_undecodable + 1) % self.workers;
                self.next_undecodable
            }
        }
    }

    /// The worker of a canonical flow key: of its two addresses, reduced
    /// as the kernel reduces a fanout program's result (`% workers`).
    pub fn worker_of_key(&self, key: &FlowKey) -> usize {
        let h = pair_hash(key.lo.addr, key.hi.addr, self.seed);
        (h as usize) % self.workers
    }
}

/// The hash of two addresses, symmetric: the XOR of all their 32-bit words
/// (big-endian, as BPF loads them) and the seed, mixed by MurmurHash3's
/// 32-bit finalizer so every input bit reaches the low bits `% workers`
/// keeps. Two pairs whose words XOR to the same value share a worker; the
/// seed (random per sensor) keeps an outsider from choosing which.
pub fn pair_hash(a: IpAddr, b: IpAddr, seed: u32) -> u32 {
    fmix32(fold(a) ^ fold(b) ^ seed)
}

fn fold(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => a
            .octets()
            .chunks_exact(4)
            .fold(0, |h, w| h ^ u32::from_be_bytes([w[0], w[1], w[2], w[3]])),
    }
}

/// MurmurHash3's finalizer.
pub const FMIX_MULTIPLIERS: [u32; 2] = [0x85eb_ca6b, 0xc2b2_ae35];
/// Its shifts, before, between and after the multiplications.
pub const FMIX_SHIFTS: [u32; 3] = [16, 13, 16];

fn fmix32(mut h: u32) -> u32 {
    h ^= h >> FMIX_SHIFTS[0];
    h = h.wrapping_mul(FMIX_MULTIPLIERS[0]);
    h ^= h >> FMIX_SHIFTS[1];
    h = h.wrapping_mul(FMIX_MULTIPLIERS[1]);
    h ^ (h >> FMIX_SHIFTS[2])
}

/// Where each engine is in the input, as a step: engines sharing state
/// act on it in step order. Frame `k` (1-based) has one step per engine
/// for its sweep of idle flows and one after them for the engine that owns
/// the frame; the end of input has one step per engine, then [`Turns::DONE`].
#[derive(Debug)]
pub struct Turns {
    steps: Box<[Step]>,
}

/// One engine's step on a cache line of its own: written by that engine
/// only, read by the others only while they wait.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Step(AtomicU64);

impl Turns {
    /// Past every step: an engine that has ended.
    pub const DONE: u64 = u64::MAX;

    pub fn new(engines: usize) -> Turns {
        Turns {
            steps: (0..engines.max(1)).map(|_| Step::default()).collect(),
        }
    }

    pub fn engines(&self) -> usize {
        self.steps.len()
    }

    /// The step of engine `me`'s sweep at frame `index`.
    pub fn sweep(&self, index: u64, me: usize) -> u64 {
        self.frame(index).saturating_add(me as u64)
    }

    /// The step of frame `index`'s own packet (after every sweep).
    pub fn packet(&self, index: u64) -> u64 {
        self.frame(index).saturating_add(self.steps.len() as u64)
    }

    /// The step of engine `me` ending its flows at the end of input.
    pub fn finish(&self, me: usize) -> u64 {
        Self::DONE - 1 - (self.steps.len() - me) as u64
    }

    fn frame(&self, index: u64) -> u64 {
        index.saturating_mul(self.steps.len() as u64 + 1)
    }

    /// Engine `me` is at `step`: everything it does at earlier steps is done.
    pub fn set(&self, me: usize, step: u64) {
        if let Some(s) = self.steps.get(me) {
            s.0.store(step, Ordering::Release);
        }
    }

    /// Engine `me` is [`Turns::DONE`] once the guard drops, however its
    /// thread ends: an engine that panics does not leave the others
    /// waiting for it.
    pub fn done_on_drop(&self, me: usize) -> DoneOnDrop<'_> {
        DoneOnDrop { turns: self, me }
    }

    /// Waits until every other engine has passed engine `me`'s step. The
    /// engine at the lowest step never waits, so this always ends.
    pub fn wait(&self, me: usize) {
        let Some(mine) = self.steps.get(me).map(|s| s.0.load(Ordering::Relaxed)) else {
            return;
        };
        for (other, step) in self.steps.iter().enumerate() {
            let mut spins = 0u32;
            while other != me && step.0.load(Ordering::Acquire) < mine {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// See [`Turns::done_on_drop`].
#[derive(Debug)]
pub struct DoneOnDrop<'a> {
    turns: &'a Turns,
    me: usize,
}

impl Drop for DoneOnDrop<'_> {
    fn drop(&mut self) {
        self.turns.set(self.me, Turns::DONE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::source::Frame;
    use crate::source::LinkType;
    use crate::time::Timestamp;

    /// An Ethernet/IPv4/TCP frame (checksums zero: decode does not check them).
    fn tcp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    fn frame(data: &[u8]) -> Frame<'_> {
        Frame {
            ts: Timestamp::from_secs(1),
            link: LinkType::Ethernet,
            data,
            orig_len: data.len() as u32,
            input: 0,
        }
    }

    #[test]
    fn both_directions_go_to_the_same_worker() {
        for workers in [2, 3, 4, 7, 16] {
            let mut a = Sharder::new(workers, 0x5eed);
            // A second capture thread (another interface) with a clone.
            let mut b = a.clone();
            let mut seen = vec![0u32; workers];
            for i in 0..500u32 {
                let src = [10, 10, (i >> 8) as u8, i as u8];
                let dst = [198, 51, 100, (i % 7) as u8];
                let sport = 40_000 + (i % 1000) as u16;
                let dport = [22, 443, 2222][i as usize % 3];
                let out = tcp_frame(src, sport, dst, dport);
                let back = tcp_frame(dst, dport, src, sport);
                let w = a.worker_of(&decode(&frame(&out)));
                assert!(w < workers);
                assert_eq!(
                    w,
                    b.worker_of(&decode(&frame(&back))),
                    "flow {i}, {workers} workers"
                );
                seen[w] += 1;
            }
            // The hash spreads flows: every worker gets some.
            assert!(seen.iter().all(|&n| n > 0), "{workers} workers: {seen:?}");
        }
    }

    #[test]
    fn every_flow_between_two_hosts_goes_to_one_worker() {
        let s = Sharder::new(4, 7);
        let a = [10, 0, 0, 7];
        let b = [203, 0, 113, 9];
        let want = s.worker_of_key(
            &decode(&frame(&tcp_frame(a, 40_000, b, 22)))
                .unwrap()
                .flow_key()
                .0,
        );
        for port in [40_001, 51_234, 1_024] {
            for f in [tcp_frame(a, port, b, 22), tcp_frame(b, 443, a, port)] {
                let key = decode(&frame(&f)).unwrap().flow_key().0;
                assert_eq!(s.worker_of_key(&key), want, "port {port}");
            }
        }
    }

    #[test]
    fn steps_order_sweeps_before_the_packet_and_frames_in_order() {
        let t = Turns::new(3);
        assert!(t.sweep(5, 0) < t.sweep(5, 2));
        assert!(t.sweep(5, 2) < t.packet(5));
        assert!(t.packet(5) < t.sweep(6, 0));
        assert!(t.packet(u64::from(u32::MAX)) < t.finish(0));
        assert!(t.finish(0) < t.finish(2));
        assert!(t.finish(2) < Turns::DONE);
    }

    #[test]
    fn a_wait_ends_once_the_others_pass() {
        let t = std::sync::Arc::new(Turns::new(2));
        t.set(0, 10);
        t.set(1, 3);
        let waiter = {
            let t = t.clone();
            std::thread::spawn(move || t.wait(0))
        };
        t.set(1, 11);
        waiter.join().unwrap();
        t.set(1, Turns::DONE);
        t.wait(0);
        // The lowest engine never waits.
        t.set(0, 20);
        t.set(1, 25);
        t.wait(0);
    }

    #[test]
    fn an_engine_that_panics_leaves_no_one_waiting() {
        let t = Turns::new(2);
        t.set(0, 10);
        std::thread::scope(|scope| {
            let dead = scope.spawn(|| {
                let _done = t.done_on_drop(1);
                t.set(1, 3);
                panic!("an engine bug");
            });
            assert!(dead.join().is_err());
        });
        t.wait(0);
    }

    #[test]
    fn undecodable_frames_go_round_robin() {
        let mut s = Sharder::new(3, 1);
        let junk = [0u8; 5];
        let got: Vec<usize> = (0..6)
            .map(|_| s.worker_of(&decode(&frame(&junk))))
            .collect();
        assert_eq!(got, vec![1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn one_worker_takes_everything() {
        let mut s = Sharder::new(0, 1);
        assert_eq!(s.workers(), 1);
        let f = tcp_frame([10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
        assert_eq!(s.worker_of(&decode(&frame(&f))), 0);
    }
}
