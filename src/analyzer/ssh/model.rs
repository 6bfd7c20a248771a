//! Sizes derived once per flow from the negotiated suites: keystrokes
//! (direct and tunnelled for every plausible inner suite), keepalives, and
//! the inner suites themselves.

use super::sizes::{Suite, INNER_SUITES};
use crate::analyzer::Dir;

/// Number of inner suites considered.
pub const INNER_N: usize = INNER_SUITES.len();

/// One encrypted message (or, where message boundaries are hidden, one TCP
/// segment) of the session.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub dir: Dir,
    pub size: u32,
    /// 1-based input position of the packet that completed it.
    pub idx: u64,
    pub ts: crate::time::Timestamp,
    /// An exact SSH packet size (record walking), not a segment size.
    pub exact: bool,
}

/// The size model of one TCP direction.
#[derive(Clone, Debug)]
pub struct DirModel {
    pub suite: Suite,
    key_direct: u32,
    key_tunnel: [u32; INNER_N],
    ka_req: [u32; 2],
    ka_rep: [u32; 2],
}

/// Clear-text packets (before NEWKEYS): block 8, length included, no MAC.
pub const CLEAR: Suite = Suite {
    block: 8,
    tag: 0,
    len_excluded: false,
    len_clear: true,
};

/// `keepalive@openssh.com` as a global request (1 + 4 + 21 + 1) and as a
/// channel request (1 + 4 + 4 + 21 + 1); replies are REQUEST_SUCCESS/
/// FAILURE (1) or CHANNEL_SUCCESS/FAILURE (5).
const KEEPALIVE_REQ: [u32; 2] = [27, 31];
const KEEPALIVE_REP: [u32; 2] = [1, 5];

impl DirModel {
    pub fn new(suite: Suite, inner: &[Suite; INNER_N]) -> DirModel {
        DirModel {
            suite,
            key_direct: suite.keystroke(),
            key_tunnel: std::array::from_fn(|i| suite.tunnelled(inner[i].keystroke())),
            ka_req: KEEPALIVE_REQ.map(|p| suite.wire(p)),
            ka_rep: KEEPALIVE_REP.map(|p| suite.wire(p)),
        }
    }

    /// Which keystroke kinds `size` can be: bit 0 direct, bit i+1 tunnelled
    /// with inner suite i. Zero if not a keystroke size.
    pub fn key_mask(&self, size: u32) -> u16 {
        let mut mask = u16::from(size == self.key_direct);
        for (i, k) in self.key_tunnel.iter().enumerate() {
            if *k == size {
                mask |= 1 << (i + 1);
            }
        }
        mask
    }

    /// The largest keystroke size, direct or tunnelled.
    pub fn key_max(&self) -> u32 {
        self.key_tunnel
            .iter()
            .copied()
            .fold(self.key_direct, u32::max)
    }

    pub fn key_direct(&self) -> u32 {
        self.key_direct
    }

    /// Distinct tunnelled keystroke sizes, ascending.
    pub fn key_tunnel_sizes(&self) -> Vec<u32> {
        let mut v = self.key_tunnel.to_vec();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn is_keepalive_req(&self, size: u32) -> bool {
        self.ka_req.contains(&size)
    }

    pub fn is_keepalive_rep(&self, size: u32) -> bool {
        self.ka_rep.contains(&size)
    }
}

/// Both directions' models and the inner suites.
#[derive(Clone, Debug)]
pub struct Model {
    /// By [`Dir::index`] (TCP direction).
    pub dirs: [DirModel; 2],
    pub inner: [Suite; INNER_N],
    /// The TCP direction the SSH client sends in.
    pub client: Dir,
}

impl Model {
    /// `suites` by TCP direction; `client` is the SSH client's direction.
    pub fn new(suites: [Suite; 2], client: Dir) -> Model {
        let inner = inner_suites();
        Model {
            dirs: suites.map(|s| DirModel::new(s, &inner)),
            inner,
            client,
        }
    }

    pub fn dir(&self, d: Dir) -> &DirModel {
        &self.dirs[d.index()]
    }

    pub fn suite(&self, d: Dir) -> &Suite {
        &self.dirs[d.index()].suite
    }

    pub fn server(&self) -> Dir {
        self.client.reverse()
    }

    /// Inner suite names of a key mask (bit 0 = direct).
    pub fn mask_names(mask: u16) -> Vec<String> {
        let mut names = Vec::new();
        if mask & 1 != 0 {
            names.push("direct".to_string());
        }
        for (i, (c, m)) in INNER_SUITES.iter().enumerate() {
            if mask & (1 << (i + 1)) != 0 {
                names.push(if m == &"none" {
                    format!("inner {c}")
                } else {
                    format!("inner {c}+{m}")
                });
            }
        }
        names
    }
}

fn inner_suites() -> [Suite; INNER_N] {
    std::array::from_fn(|i| {
        let (c, m) = INNER_SUITES[i];
        Suite::from_names(c, Some(m)).unwrap_or(CLEAR)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystroke_masks() {
        let chacha = Suite::from_names("chacha20-poly1305@openssh.com", None).unwrap();
        let m = Model::new([chacha, chacha], Dir::ToServer);
        let d = m.dir(Dir::ToServer);
        assert_eq!(d.key_mask(36), 1);
        // 76: chacha or gcm inside (and umac-64-etm); 100: ctr + sha2-256.
        let m76 = d.key_mask(76);
        assert!(m76 & 0b110 == 0b110, "{m76:b}");
        assert_eq!(d.key_mask(100) & 0b1000, 0b1000);
        assert_eq!(d.key_mask(37), 0);
        assert!(Model::mask_names(m76).contains(&"inner chacha20-poly1305@openssh.com".to_string()));
        assert!(d.key_tunnel_sizes().contains(&76));
        assert!(d.is_keepalive_req(52) && d.is_keepalive_rep(28));
    }

    #[test]
    fn clear_text_sizes() {
        assert_eq!(CLEAR.wire(1), 16); // NEWKEYS
        assert_eq!(CLEAR.wire(37), 48); // curve25519 ECDH init
        assert_eq!(CLEAR.wire(70), 80); // nistp256
    }
}
