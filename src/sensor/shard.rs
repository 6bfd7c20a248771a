//! Which worker analyzes a frame: a hash of the flow's canonical key, so
//! both directions of a flow (and the ICMP errors about it) land on the
//! same worker, whose flow table then needs no lock.

use crate::decode::{Packet, Skip};
use crate::flow::key::FlowKey;

/// Maps frames to workers. Every capture thread holds a clone: the hasher's
/// seeds are shared, so all interfaces agree on a flow's worker.
#[derive(Clone, Debug)]
pub struct Sharder {
    hasher: ahash::RandomState,
    workers: usize,
    /// Round robin for frames that do not decode (they are still counted
    /// by whichever worker gets them).
    next_undecodable: usize,
}

impl Sharder {
    /// `hasher` must be the one instance all capture threads clone.
    pub fn new(workers: usize, hasher: ahash::RandomState) -> Sharder {
        Sharder {
            hasher,
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

    /// The worker of a canonical flow key.
    pub fn worker_of_key(&self, key: &FlowKey) -> usize {
        let h = self.hasher.hash_one(key);
        // Multiply-shift onto 0..workers: uses the hash's high bits.
        ((u128::from(h) * self.workers as u128) >> 64) as usize
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
        let hasher = ahash::RandomState::new();
        for workers in [2, 3, 4, 7, 16] {
            let mut a = Sharder::new(workers, hasher.clone());
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
    fn undecodable_frames_go_round_robin() {
        let mut s = Sharder::new(3, ahash::RandomState::new());
        let junk = [0u8; 5];
        let got: Vec<usize> = (0..6)
            .map(|_| s.worker_of(&decode(&frame(&junk))))
            .collect();
        assert_eq!(got, vec![1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn one_worker_takes_everything() {
        let mut s = Sharder::new(0, ahash::RandomState::new());
        assert_eq!(s.workers(), 1);
        let f = tcp_frame([10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
        assert_eq!(s.worker_of(&decode(&frame(&f))), 0);
    }
}
