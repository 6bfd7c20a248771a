//! `SSH_MSG_KEXINIT` (RFC 4253 section 7.1): parsing, HASSH / HASSHServer
//! fingerprints (Salesforce's definition: MD5 of the kex, cipher, MAC and
//! compression lists as sent, joined by `;`), the negotiated algorithms, and
//! the pseudo-algorithms that betray which side is the SSH client.

pub use crate::analyzer::md5_hex;
use thiserror::Error;

/// `SSH_MSG_KEXINIT`.
pub const MSG_KEXINIT: u8 = 20;

/// The name-lists of one KEXINIT, kept exactly as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KexInit {
    pub kex: String,
    pub host_key: String,
    pub enc_c2s: String,
    pub enc_s2c: String,
    pub mac_c2s: String,
    pub mac_s2c: String,
    pub comp_c2s: String,
    pub comp_s2c: String,
    pub first_kex_follows: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KexError {
    #[error("not a KEXINIT message (code {0})")]
    NotKexInit(u8),
    #[error("KEXINIT truncated")]
    Truncated,
}

/// Which SSH role a KEXINIT's pseudo-algorithms claim.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RoleHint {
    Client,
    Server,
}

/// Kex-list entries that are signals, not algorithms.
const CLIENT_ONLY: [&str; 2] = ["ext-info-c", "kex-strict-c-v00@openssh.com"];
const SERVER_ONLY: [&str; 2] = ["ext-info-s", "kex-strict-s-v00@openssh.com"];

fn is_pseudo(name: &str) -> bool {
    name.starts_with("ext-info-")
        || name.starts_with("kex-strict-")
        || name.starts_with("kexguess2@")
}

/// Parses a KEXINIT payload (starting with its message code).
pub fn parse(payload: &[u8]) -> Result<KexInit, KexError> {
    let mut r = Reader { data: payload };
    let code = r.byte()?;
    if code != MSG_KEXINIT {
        return Err(KexError::NotKexInit(code));
    }
    r.skip(16)?; // cookie
    let mut lists: [String; 10] = Default::default();
    for list in lists.iter_mut() {
        *list = r.name_list()?;
    }
    let first_kex_follows = r.byte()? != 0;
    let [kex, host_key, enc_c2s, enc_s2c, mac_c2s, mac_s2c, comp_c2s, comp_s2c, _, _] = lists;
    Ok(KexInit {
        kex,
        host_key,
        enc_c2s,
        enc_s2c,
        mac_c2s,
        mac_s2c,
        comp_c2s,
        comp_s2c,
        first_kex_follows,
    })
}

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, KexError> {
        let (&b, rest) = self.data.split_first().ok_or(KexError::Truncated)?;
        self.data = rest;
        Ok(b)
    }
    fn skip(&mut self, n: usize) -> Result<(), KexError> {
        self.data = self.data.get(n..).ok_or(KexError::Truncated)?;
        Ok(())
    }
    fn name_list(&mut self) -> Result<String, KexError> {
        let len = self.data.get(..4).ok_or(KexError::Truncated)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        self.skip(4)?;
        let bytes = self.data.get(..len).ok_or(KexError::Truncated)?;
        self.skip(len)?;
        Ok(super::banner::lossy(bytes))
    }
}

impl KexInit {
    /// The HASSH input of a client: `kex;enc_c2s;mac_c2s;comp_c2s`.
    pub fn hassh_string(&self) -> String {
        format!(
            "{};{};{};{}",
            self.kex, self.enc_c2s, self.mac_c2s, self.comp_c2s
        )
    }

    /// The HASSHServer input of a server: `kex;enc_s2c;mac_s2c;comp_s2c`.
    pub fn hassh_server_string(&self) -> String {
        format!(
            "{};{};{};{}",
            self.kex, self.enc_s2c, self.mac_s2c, self.comp_s2c
        )
    }

    /// The role claimed by client-only or server-only pseudo-algorithms
    /// (`ext-info-c`, `kex-strict-c-v00@openssh.com` and their `-s` forms).
    pub fn role_hint(&self) -> Option<RoleHint> {
        let names: Vec<&str> = self.kex.split(',').collect();
        let client = names.iter().any(|n| CLIENT_ONLY.contains(n));
        let server = names.iter().any(|n| SERVER_ONLY.contains(n));
        match (client, server) {
            (true, false) => Some(RoleHint::Client),
            (false, true) => Some(RoleHint::Server),
            _ => None,
        }
    }

    /// The pseudo-algorithm names found, for evidence.
    pub fn pseudo_names(&self) -> Vec<&str> {
        self.kex
            .split(',')
            .filter(|n| CLIENT_ONLY.contains(n) || SERVER_ONLY.contains(n))
            .collect()
    }
}

/// Algorithms in force for one direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirAlgs {
    pub cipher: Option<String>,
    /// `None` for AEAD ciphers, whose MAC choice is ignored.
    pub mac: Option<String>,
    pub compression: Option<String>,
}

/// The outcome of algorithm negotiation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    pub kex: Option<String>,
    pub host_key: Option<String>,
    pub c2s: DirAlgs,
    pub s2c: DirAlgs,
}

/// RFC 4253 7.1: for each list, the first algorithm of the client that the
/// server also offers. Pseudo-algorithms never match.
pub fn negotiate(client: &KexInit, server: &KexInit) -> Negotiated {
    Negotiated {
        kex: first_common(&client.kex, &server.kex),
        host_key: first_common(&client.host_key, &server.host_key),
        c2s: dir_algs(
            (&client.enc_c2s, &server.enc_c2s),
            (&client.mac_c2s, &server.mac_c2s),
            (&client.comp_c2s, &server.comp_c2s),
        ),
        s2c: dir_algs(
            (&client.enc_s2c, &server.enc_s2c),
            (&client.mac_s2c, &server.mac_s2c),
            (&client.comp_s2c, &server.comp_s2c),
        ),
    }
}

fn dir_algs(enc: (&str, &str), mac: (&str, &str), comp: (&str, &str)) -> DirAlgs {
    let cipher = first_common(enc.0, enc.1);
    let aead = cipher.as_deref().is_some_and(is_aead);
    DirAlgs {
        mac: if aead {
            None
        } else {
            first_common(mac.0, mac.1)
        },
        cipher,
        compression: first_common(comp.0, comp.1),
    }
}

/// Ciphers that authenticate themselves; the MAC is not used.
pub fn is_aead(cipher: &str) -> bool {
    cipher == "chacha20-poly1305@openssh.com"
        || cipher.contains("-gcm")
        || cipher.starts_with("AEAD_")
}

fn first_common(client: &str, server: &str) -> Option<String> {
    client
        .split(',')
        .filter(|n| !n.is_empty() && !is_pseudo(n))
        .find(|n| server.split(',').any(|s| s == *n))
        .map(str::to_string)
}

/// Whether a compression name compresses (`zlib`, `zlib@openssh.com`).
pub fn compresses(name: Option<&str>) -> bool {
    name.is_some_and(|n| n != "none")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decodes a testdata hex dump.
    pub fn hex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        s.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// Strips the binary packet framing of one clear-text packet (and an
    /// identification line before it, if any).
    pub fn packet_payload(bytes: &[u8]) -> Vec<u8> {
        let start = match bytes.windows(2).position(|w| w == b"\r\n") {
            Some(p) if bytes.starts_with(b"SSH-") => p + 2,
            _ => 0,
        };
        let p = &bytes[start..];
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        let pad = p[4] as usize;
        p[5..4 + len - pad].to_vec()
    }

    // Real KEXINITs from public captures (see testdata/README.md).
    pub const DROPBEAR: &str = include_str!("testdata/dropbear_2018_76_banner_kexinit.hex");
    pub const ASYNCSSH: &str = include_str!("testdata/asyncssh_2_8_1_kexinit.hex");
    pub const OPENSSH_CLIENT: &str = include_str!("testdata/openssh_client_gex_kexinit.hex");
    pub const OPENSSH_SERVER: &str = include_str!("testdata/openssh_server_kexinit.hex");

    fn kexinit(hexdump: &str) -> KexInit {
        parse(&packet_payload(&hex(hexdump))).unwrap()
    }

    #[test]
    fn hassh_reference_vectors_of_the_hassh_readme() {
        // Cyberduck 6.7.1 and its OpenSSH 5.3 server, from the salesforce/
        // hassh README.
        let cyberduck = KexInit {
            kex: "curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256,ecdh-sha2-nistp521,ecdh-sha2-nistp384,ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,diffie-hellman-group15-sha512,diffie-hellman-group16-sha512,diffie-hellman-group17-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256@ssh.com,diffie-hellman-group15-sha256,diffie-hellman-group15-sha256@ssh.com,diffie-hellman-group15-sha384@ssh.com,diffie-hellman-group16-sha256,diffie-hellman-group16-sha384@ssh.com,diffie-hellman-group16-sha512@ssh.com,diffie-hellman-group18-sha512@ssh.com".into(),
            enc_c2s: "aes128-cbc,aes128-ctr,aes192-cbc,aes192-ctr,aes256-cbc,aes256-ctr,blowfish-cbc,blowfish-ctr,cast128-cbc,cast128-ctr,idea-cbc,idea-ctr,serpent128-cbc,serpent128-ctr,serpent192-cbc,serpent192-ctr,serpent256-cbc,serpent256-ctr,3des-cbc,3des-ctr,twofish128-cbc,twofish128-ctr,twofish192-cbc,twofish192-ctr,twofish256-cbc,twofish256-ctr,twofish-cbc,arcfour,arcfour128,arcfour256".into(),
            mac_c2s: "hmac-sha1,hmac-sha1-96,hmac-md5,hmac-md5-96,hmac-sha2-256,hmac-sha2-512".into(),
            comp_c2s: "zlib@openssh.com,zlib,none".into(),
            ..KexInit::default()
        };
        assert_eq!(
            md5_hex(&cyberduck.hassh_string()),
            "8a8ae540028bf433cd68356c1b9e8d5b"
        );
        let openssh53 = KexInit {
            kex: "diffie-hellman-group-exchange-sha256,diffie-hellman-group-exchange-sha1,diffie-hellman-group14-sha1,diffie-hellman-group1-sha1".into(),
            enc_s2c: "aes128-ctr,aes192-ctr,aes256-ctr,arcfour256,arcfour128,aes128-cbc,3des-cbc,blowfish-cbc,cast128-cbc,aes192-cbc,aes256-cbc,arcfour,rijndael-cbc@lysator.liu.se".into(),
            mac_s2c: "hmac-md5,hmac-sha1,umac-64@openssh.com,hmac-ripemd160,hmac-ripemd160@openssh.com,hmac-sha1-96,hmac-md5-96".into(),
            comp_s2c: "none,zlib@openssh.com".into(),
            ..KexInit::default()
        };
        assert_eq!(
            md5_hex(&openssh53.hassh_server_string()),
            "b1c6c0d56317555b85c7005a3de29325"
        );
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    /// HASSH values of real KEXINITs, checked against tshark 4.0's
    /// `ssh.kex.hassh` / `ssh.kex.hasshserver` fields.
    #[test]
    fn hassh_of_real_kexinits_matches_tshark() {
        let cases = [
            (DROPBEAR, "413e646031ea5204c5ec2fe2d5b7946e", None),
            (ASYNCSSH, "", Some("18f369389d126cfeecade20e1ea5ff9b")),
            (OPENSSH_CLIENT, "953757c11fbb1d6ba5d5b3d40269a16b", None),
            (OPENSSH_SERVER, "", Some("8cc1fefeb6ee94a1d6c81bc3ee13c62c")),
        ];
        for (dump, client, server) in cases {
            let k = kexinit(dump);
            if !client.is_empty() {
                assert_eq!(md5_hex(&k.hassh_string()), client);
            }
            if let Some(server) = server {
                assert_eq!(md5_hex(&k.hassh_server_string()), server);
            }
        }
    }

    #[test]
    fn parses_real_lists() {
        let k = kexinit(DROPBEAR);
        assert!(k
            .kex
            .starts_with("curve25519-sha256,curve25519-sha256@libssh.org"));
        assert!(k.kex.ends_with("kexguess2@matt.ucc.asn.au"));
        assert_eq!(k.comp_c2s, "zlib@openssh.com,none");
        assert_eq!(k.role_hint(), None);
        let c = kexinit(OPENSSH_CLIENT);
        assert_eq!(c.role_hint(), Some(RoleHint::Client));
        assert_eq!(c.pseudo_names(), vec!["ext-info-c"]);
        assert!(!c.first_kex_follows);
    }

    #[test]
    fn negotiation_follows_the_client_order() {
        let client = kexinit(OPENSSH_CLIENT);
        let server = kexinit(OPENSSH_SERVER);
        let n = negotiate(&client, &server);
        assert_eq!(
            n.kex.as_deref(),
            Some("diffie-hellman-group-exchange-sha256")
        );
        assert_eq!(
            n.c2s.cipher.as_deref(),
            Some("chacha20-poly1305@openssh.com")
        );
        assert_eq!(n.c2s.mac, None, "AEAD cipher: MAC ignored");
        assert_eq!(n.s2c.compression.as_deref(), Some("none"));

        // Role-reversed pair of the Zeek capture: AsyncSSH is the client,
        // Dropbear the server.
        let n = negotiate(&kexinit(ASYNCSSH), &kexinit(DROPBEAR));
        assert_eq!(n.kex.as_deref(), Some("curve25519-sha256"));
        assert_eq!(n.host_key.as_deref(), Some("ssh-rsa"));
        // AsyncSSH prefers aes256-ctr over aes128-ctr; Dropbear offers both.
        assert_eq!(n.c2s.cipher.as_deref(), Some("aes256-ctr"));
        assert_eq!(n.c2s.mac.as_deref(), Some("hmac-sha2-256"));
    }

    #[test]
    fn negotiation_table() {
        let mk = |enc: &str, mac: &str| KexInit {
            kex: "ext-info-c,kexguess2@matt.ucc.asn.au,curve25519-sha256".into(),
            enc_c2s: enc.into(),
            enc_s2c: enc.into(),
            mac_c2s: mac.into(),
            mac_s2c: mac.into(),
            comp_c2s: "none".into(),
            comp_s2c: "none".into(),
            ..KexInit::default()
        };
        let cases = [
            // (client enc, server enc, client mac, server mac) -> (cipher, mac)
            (
                "aes128-gcm@openssh.com,aes128-ctr",
                "aes128-ctr,aes128-gcm@openssh.com",
                "hmac-sha1",
                "hmac-sha1",
                Some("aes128-gcm@openssh.com"),
                None,
            ),
            (
                "aes128-ctr",
                "aes256-ctr,aes128-ctr",
                "umac-64-etm@openssh.com,hmac-sha1",
                "hmac-sha1,umac-64-etm@openssh.com",
                Some("aes128-ctr"),
                Some("umac-64-etm@openssh.com"),
            ),
            (
                "aes128-ctr",
                "aes256-ctr",
                "hmac-sha1",
                "hmac-sha1",
                None,
                Some("hmac-sha1"),
            ),
        ];
        for (ce, se, cm, sm, cipher, mac) in cases {
            let n = negotiate(&mk(ce, cm), &mk(se, sm));
            assert_eq!(n.c2s.cipher.as_deref(), cipher);
            assert_eq!(n.c2s.mac.as_deref(), mac);
            assert_eq!(
                n.kex.as_deref(),
                Some("curve25519-sha256"),
                "pseudo names skipped"
            );
        }
    }

    #[test]
    fn rejects_truncated_and_foreign_messages() {
        let payload = packet_payload(&hex(OPENSSH_CLIENT));
        for cut in [0, 1, 17, 21, 100, payload.len() - 5] {
            assert!(parse(&payload[..cut]).is_err(), "cut {cut}");
        }
        assert_eq!(parse(&[21]), Err(KexError::NotKexInit(21)));
    }
}
