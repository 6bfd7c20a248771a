//! The cipher-aware size model: how many bytes an SSH message of a given
//! payload occupies on the wire under the negotiated cipher and MAC
//! (RFC 4253 section 6, with OpenSSH's AEAD and encrypt-then-MAC rules), and
//! the inverse. Every size the inferences look for (keystrokes, replies,
//! tunnelled keystrokes for any inner cipher) is derived here instead of
//! being a constant tuned on one cipher suite.

/// Size parameters of one direction's cipher + MAC.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Suite {
    /// Cipher block size used for padding (at least 8, as OpenSSH does for
    /// stream ciphers).
    pub block: u32,
    /// Bytes after the encrypted packet: AEAD tag or MAC.
    pub tag: u32,
    /// The 4-byte length field is left out of the padding alignment
    /// (AEAD ciphers and encrypt-then-MAC).
    pub len_excluded: bool,
    /// The length field travels in clear text (AES-GCM and `-etm` MACs), so
    /// the encrypted stream can be walked record by record.
    pub len_clear: bool,
}

/// Smallest padding RFC 4253 allows.
const MIN_PAD: u32 = 4;

impl Suite {
    /// The size model of a negotiated cipher and MAC; `None` for names we do
    /// not know (the flow is then marked as having unreliable sizes).
    pub fn from_names(cipher: &str, mac: Option<&str>) -> Option<Suite> {
        let (block, aead) = cipher_params(cipher)?;
        if let Some(tag) = aead {
            let len_clear = cipher != "chacha20-poly1305@openssh.com";
            return Some(Suite {
                block,
                tag,
                len_excluded: true,
                len_clear,
            });
        }
        let (tag, etm) = mac_params(mac.unwrap_or("none"))?;
        Some(Suite {
            block,
            tag,
            len_excluded: etm,
            len_clear: etm,
        })
    }

    /// Bytes of the length field that count toward the padding alignment.
    fn len_part(&self) -> u32 {
        if self.len_excluded {
            0
        } else {
            4
        }
    }

    /// Wire size of a message with `payload` bytes (message code included):
    /// length field + padding length byte + payload + padding + tag, with the
    /// smallest padding of at least 4 bytes that aligns the encrypted part.
    pub fn wire(&self, payload: u32) -> u32 {
        let unpadded = payload.saturating_add(self.len_part() + 1 + MIN_PAD);
        let aligned = unpadded.div_ceil(self.block).saturating_mul(self.block);
        aligned
            .saturating_sub(self.len_part())
            .saturating_add(4 + self.tag)
    }

    /// The payload sizes that produce `wire` bytes, or `None` if no message
    /// has that size under this suite. The range is a block wide because the
    /// padding hides the exact length.
    pub fn payload_range(&self, wire: u32) -> Option<(u32, u32)> {
        let aligned = wire
            .checked_sub(self.tag + 4)?
            .checked_add(self.len_part())?;
        if aligned < self.block || aligned % self.block != 0 {
            return None;
        }
        let hi = aligned.checked_sub(self.len_part() + 1 + MIN_PAD)?;
        let lo = (aligned + 1).saturating_sub(self.block + self.len_part() + 1 + MIN_PAD);
        Some((lo, hi))
    }

    /// Whether `wire` is the size of one message of `payload` bytes.
    pub fn fits(&self, wire: u32, payload: u32) -> bool {
        self.wire(payload) == wire
    }

    /// Whether some payload in `lo..=hi` produces `wire` bytes.
    pub fn fits_any(&self, wire: u32, lo: u32, hi: u32) -> bool {
        match self.payload_range(wire) {
            Some((a, b)) => a <= hi && lo <= b,
            None => false,
        }
    }

    /// Size of one record whose clear-text length field says `len`.
    pub fn record_size(&self, len: u32) -> u32 {
        len.saturating_add(4).saturating_add(self.tag)
    }

    /// Keystroke: `SSH_MSG_CHANNEL_DATA` (1 + 4 + 4) carrying one byte.
    pub fn keystroke(&self) -> u32 {
        self.wire(CHANNEL_DATA_HEADER + 1)
    }

    /// A message of `inner_wire` bytes of another SSH connection carried as
    /// channel data of this one (a tunnelled SSH packet).
    pub fn tunnelled(&self, inner_wire: u32) -> u32 {
        self.wire(CHANNEL_DATA_HEADER + inner_wire)
    }

    /// The inner bytes a channel-data message of `wire` bytes can carry.
    pub fn channel_data_range(&self, wire: u32) -> Option<(u32, u32)> {
        let (lo, hi) = self.payload_range(wire)?;
        let hi = hi.checked_sub(CHANNEL_DATA_HEADER)?;
        Some((lo.saturating_sub(CHANNEL_DATA_HEADER), hi))
    }

    /// Whether single messages can be told from pairs of messages by size
    /// alone: true when one message's size is not a multiple of the block,
    /// e.g. chacha20-poly1305 (every message is 4 mod 8).
    pub fn counts_messages(&self) -> bool {
        !(self.tag + 4 - self.len_part()).is_multiple_of(self.block)
    }

    /// Whether `wire` is the size of exactly one message.
    pub fn is_single(&self, wire: u32) -> bool {
        self.payload_range(wire).is_some()
    }
}

/// `SSH_MSG_CHANNEL_DATA` header: message code, recipient channel, string
/// length.
pub const CHANNEL_DATA_HEADER: u32 = 9;

/// Block size and, for AEAD ciphers, the tag length.
fn cipher_params(name: &str) -> Option<(u32, Option<u32>)> {
    let params = match name {
        "chacha20-poly1305@openssh.com" => (8, Some(16)),
        "aes128-gcm@openssh.com"
        | "aes256-gcm@openssh.com"
        | "AEAD_AES_128_GCM"
        | "AEAD_AES_256_GCM" => (16, Some(16)),
        "aes128-ctr"
        | "aes192-ctr"
        | "aes256-ctr"
        | "aes128-cbc"
        | "aes192-cbc"
        | "aes256-cbc"
        | "rijndael-cbc@lysator.liu.se" => (16, None),
        n if n.starts_with("twofish") || n.starts_with("serpent") => (16, None),
        "3des-cbc" | "3des-ctr" | "blowfish-cbc" | "blowfish-ctr" | "cast128-cbc"
        | "cast128-ctr" | "idea-cbc" | "idea-ctr" | "des-cbc" => (8, None),
        "arcfour" | "arcfour128" | "arcfour256" | "none" => (8, None),
        _ => return None,
    };
    Some(params)
}

/// MAC length and whether it is encrypt-then-MAC.
fn mac_params(name: &str) -> Option<(u32, bool)> {
    let (base, etm) = match name.strip_suffix("-etm@openssh.com") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let len = match base {
        "none" => 0,
        "hmac-sha1" | "hmac-ripemd160" | "hmac-ripemd160@openssh.com" => 20,
        "hmac-sha1-96" | "hmac-md5-96" => 12,
        "hmac-md5" => 16,
        "hmac-sha2-256" | "hmac-sha256@ssh.com" | "hmac-sha2-256@ssh.com" => 32,
        "hmac-sha2-512" | "hmac-sha512@ssh.com" | "hmac-sha2-512@ssh.com" => 64,
        "umac-64" | "umac-64@openssh.com" => 8,
        "umac-128" | "umac-128@openssh.com" => 16,
        _ => return None,
    };
    Some((len, etm))
}

/// Cipher suites an inner (tunnelled) SSH connection plausibly uses: the
/// defaults of OpenSSH, Dropbear, PuTTY, Go and paramiko and the FIPS
/// choices. The outer session's suite says nothing about the inner one.
pub const INNER_SUITES: [(&str, &str); 9] = [
    ("chacha20-poly1305@openssh.com", "none"),
    ("aes128-gcm@openssh.com", "none"),
    ("aes128-ctr", "hmac-sha2-256"),
    ("aes128-ctr", "hmac-sha2-256-etm@openssh.com"),
    ("aes128-ctr", "umac-64-etm@openssh.com"),
    ("aes128-ctr", "hmac-sha1"),
    ("aes128-ctr", "hmac-sha2-512"),
    ("aes128-ctr", "hmac-md5"),
    ("aes128-ctr", "umac-128-etm@openssh.com"),
];

/// The size models of [`INNER_SUITES`].
pub fn inner_suites() -> impl Iterator<Item = Suite> {
    INNER_SUITES
        .iter()
        .filter_map(|(c, m)| Suite::from_names(c, Some(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(c: &str, m: &str) -> Suite {
        Suite::from_names(c, Some(m)).unwrap()
    }

    const CHACHA: (&str, &str) = ("chacha20-poly1305@openssh.com", "none");
    const GCM: (&str, &str) = ("aes256-gcm@openssh.com", "hmac-sha2-256");
    const CTR_SHA2: (&str, &str) = ("aes128-ctr", "hmac-sha2-256");
    const CTR_SHA2_ETM: (&str, &str) = ("aes128-ctr", "hmac-sha2-256-etm@openssh.com");
    const CTR_UMAC64_ETM: (&str, &str) = ("aes256-ctr", "umac-64-etm@openssh.com");
    const CTR_MD5: (&str, &str) = ("aes128-ctr", "hmac-md5");
    const CTR_SHA1: (&str, &str) = ("aes192-ctr", "hmac-sha1");

    /// anchors-detection section c.2: keystroke and tunnelled keystroke
    /// sizes (outer suite × inner suite).
    #[test]
    fn keystroke_table_of_the_research_notes() {
        // (outer, keystroke, chacha inside, gcm inside, ctr+sha2 inside)
        let table = [
            (CHACHA, 36, 76, 76, 100),
            (GCM, 36, 84, 84, 100),
            (CTR_SHA2, 64, 96, 96, 128),
            (CTR_SHA2_ETM, 52, 100, 100, 116),
            (CTR_UMAC64_ETM, 28, 76, 76, 92),
            (CTR_MD5, 48, 80, 80, 112),
            (CTR_SHA1, 52, 84, 84, 116),
        ];
        let chacha = suite(CHACHA.0, CHACHA.1);
        let gcm = suite(GCM.0, GCM.1);
        let ctr = suite(CTR_SHA2.0, CTR_SHA2.1);
        for ((c, m), key, in_chacha, in_gcm, in_ctr) in table {
            let outer = suite(c, m);
            assert_eq!(outer.keystroke(), key, "{c} {m}");
            assert_eq!(outer.tunnelled(chacha.keystroke()), in_chacha, "{c} {m}");
            assert_eq!(outer.tunnelled(gcm.keystroke()), in_gcm, "{c} {m}");
            assert_eq!(outer.tunnelled(ctr.keystroke()), in_ctr, "{c} {m}");
        }
    }

    /// Sizes seen in real OpenSSH 9.2 chacha20 captures: SERVICE_REQUEST 44,
    /// USERAUTH_SUCCESS 28, NEWKEYS-free 52-byte session open.
    #[test]
    fn openssh_message_sizes() {
        let chacha = suite(CHACHA.0, CHACHA.1);
        assert_eq!(chacha.wire(17), 44); // "ssh-userauth" service request
        assert_eq!(chacha.wire(1), 28); // USERAUTH_SUCCESS
        assert_eq!(chacha.wire(24), 52); // CHANNEL_OPEN "session"
        assert_eq!(chacha.wire(34), 60); // no-more-sessions@openssh.com
                                         // Zeek's rule: USERAUTH_SUCCESS = SERVICE_ACCEPT - 16, for 8 and 16
                                         // byte blocks.
        for (c, m) in [CHACHA, GCM, CTR_SHA2, CTR_SHA1] {
            let s = suite(c, m);
            assert_eq!(s.wire(17) - s.wire(1), 16, "{c}");
        }
        // aes-ctr + hmac-sha2-256 (non-EtM): sizes are 16k + 32.
        assert_eq!(suite(CTR_SHA2.0, CTR_SHA2.1).wire(1), 48);
    }

    #[test]
    fn payload_range_inverts_wire() {
        for (c, m) in [
            CHACHA,
            GCM,
            CTR_SHA2,
            CTR_SHA2_ETM,
            CTR_UMAC64_ETM,
            CTR_MD5,
            CTR_SHA1,
            ("3des-cbc", "hmac-sha1-96"),
        ] {
            let s = suite(c, m);
            for p in 0..2000 {
                let w = s.wire(p);
                let (lo, hi) = s.payload_range(w).unwrap();
                assert!(lo <= p && p <= hi, "{c} {m} p={p} w={w} {lo}..{hi}");
                assert_eq!(hi - lo + 1, s.block.min(hi + 1), "{c} {m} p={p}");
                assert_eq!(s.wire(lo), w);
                assert_eq!(s.wire(hi), w);
            }
            // Sizes between two messages are not single messages.
            assert!(s.payload_range(s.wire(10) + 1).is_none());
            assert!(s.payload_range(0).is_none());
        }
    }

    #[test]
    fn aead_ignores_the_mac_and_etm_walks() {
        let gcm = suite("aes128-gcm@openssh.com", "hmac-sha1");
        assert_eq!((gcm.tag, gcm.len_clear), (16, true));
        let chacha = suite(CHACHA.0, "hmac-sha2-512-etm@openssh.com");
        assert_eq!((chacha.tag, chacha.len_clear), (16, false));
        assert!(suite(CTR_SHA2_ETM.0, CTR_SHA2_ETM.1).len_clear);
        assert!(!suite(CTR_SHA2.0, CTR_SHA2.1).len_clear);
        assert!(Suite::from_names("rot13", Some("hmac-sha1")).is_none());
        assert!(Suite::from_names("aes128-ctr", Some("hmac-whirlpool")).is_none());
    }

    #[test]
    fn message_counting_by_parity() {
        let chacha = suite(CHACHA.0, CHACHA.1);
        assert!(chacha.counts_messages());
        assert!(chacha.is_single(44));
        assert!(!chacha.is_single(44 + 28));
        assert!(!suite(CTR_SHA2.0, CTR_SHA2.1).counts_messages());
        assert!(suite(CTR_SHA1.0, CTR_SHA1.1).counts_messages());
    }

    #[test]
    fn channel_data_range_of_tunnelled_keystroke() {
        let chacha = suite(CHACHA.0, CHACHA.1);
        let (lo, hi) = chacha.channel_data_range(76).unwrap();
        assert!(lo <= 36 && 36 <= hi);
        assert!(chacha.channel_data_range(28).is_none());
    }

    #[test]
    fn inner_suites_all_known() {
        assert_eq!(inner_suites().count(), INNER_SUITES.len());
    }
}
