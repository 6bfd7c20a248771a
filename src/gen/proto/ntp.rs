//! NTPv4 (RFC 5905) client and server packets: 48 bytes, no extensions.

use super::put_u32;
use crate::time::{Timestamp, NANOS_PER_SEC};

/// Seconds between the NTP era (1900) and the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

fn ntp_time(ts: Timestamp) -> u64 {
    let secs = ts.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((ts.as_nanos() % NANOS_PER_SEC) << 32) / NANOS_PER_SEC;
    ((secs & 0xFFFF_FFFF) << 32) | frac
}

fn put_time(out: &mut Vec<u8>, t: u64) {
    out.extend_from_slice(&t.to_be_bytes());
}

/// A client request (mode 3) sent at `sent`; like chrony, the transmit
/// timestamp is the only one set.
pub fn client(out: &mut Vec<u8>, sent: Timestamp) {
    out.extend_from_slice(&[0x23, 0, 6, 0x20]); // LI 0, VN 4, mode 3; poll 6; precision
    put_u32(out, 0); // root delay
    put_u32(out, 0); // root dispersion
    put_u32(out, 0); // reference id
    put_time(out, 0); // reference
    put_time(out, 0); // origin
    put_time(out, 0); // receive
    put_time(out, ntp_time(sent));
}

/// The server's reply (mode 4, stratum 2) to a request sent at `origin`,
/// received at `received` and answered at `sent`.
pub fn server(
    out: &mut Vec<u8>,
    refid: [u8; 4],
    origin: Timestamp,
    received: Timestamp,
    sent: Timestamp,
) {
    out.extend_from_slice(&[0x24, 2, 6, 0xE9]); // mode 4, stratum 2, poll 6, precision -23
    put_u32(out, 0x0000_0A3D); // root delay ~0.04 s
    put_u32(out, 0x0000_0F5C); // root dispersion ~0.06 s
    out.extend_from_slice(&refid);
    put_time(
        out,
        ntp_time(Timestamp::from_secs(received.as_secs().saturating_sub(64))),
    );
    put_time(out, ntp_time(origin));
    put_time(out, ntp_time(received));
    put_time(out, ntp_time(sent));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_48_bytes_with_modes_3_and_4() {
        let t = Timestamp::from_parts(1_700_000_000, 500_000, 1_000_000);
        let mut c = Vec::new();
        client(&mut c, t);
        let mut s = Vec::new();
        server(&mut s, [10, 0, 0, 1], t, t, t);
        assert_eq!((c.len(), s.len()), (48, 48));
        assert_eq!((c[0] & 7, s[0] & 7), (3, 4));
        // transmit timestamp: 1700000000 + 2208988800 seconds, half a second
        let tx = u64::from_be_bytes(c[40..48].try_into().unwrap());
        assert_eq!(tx >> 32, 1_700_000_000 + NTP_UNIX_OFFSET);
        assert_eq!(tx & 0xFFFF_FFFF, 1 << 31);
        assert_eq!(
            &s[24..32],
            &c[40..48],
            "origin echoes the client's transmit time"
        );
    }
}
