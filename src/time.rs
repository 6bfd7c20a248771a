//! Packet time. The core never reads a clock: every instant it sees is the
//! timestamp of a captured packet, so a replay and a live capture of the same
//! packets behave identically.

use std::fmt;

/// Nanoseconds since the Unix epoch, taken from a capture record.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// A span of packet time in nanoseconds.
pub type Nanos = u64;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;

impl Timestamp {
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// From a seconds field and a sub-second fraction counted in units of
    /// `units_per_sec` (1e6 for classic pcap, 1e9 for nanosecond pcap).
    pub fn from_parts(secs: u64, frac: u64, units_per_sec: u64) -> Self {
        let frac_nanos = if units_per_sec == 0 {
            0
        } else {
            (u128::from(frac) * u128::from(NANOS_PER_SEC) / u128::from(units_per_sec)) as u64
        };
        Self(
            secs.saturating_mul(NANOS_PER_SEC)
                .saturating_add(frac_nanos),
        )
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub const fn as_secs(self) -> u64 {
        self.0 / NANOS_PER_SEC
    }

    /// Packet time elapsed since `earlier`, zero if `earlier` is later
    /// (captures are not always in order).
    pub const fn since(self, earlier: Timestamp) -> Nanos {
        self.0.saturating_sub(earlier.0)
    }

    pub const fn add_nanos(self, nanos: Nanos) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Seconds as a float, for EVE's `age` style fields and human output.
    pub fn secs_f64(nanos: Nanos) -> f64 {
        nanos as f64 / NANOS_PER_SEC as f64
    }

    /// RFC 3339 in UTC with microseconds and an explicit offset, the form
    /// Suricata writes in EVE (`2024-01-02T03:04:05.123456+0000`).
    pub fn eve(self) -> EveTime {
        EveTime(self)
    }
}

/// Display adapter for [`Timestamp::eve`]; formats without allocating.
pub struct EveTime(Timestamp);

impl EveTime {
    /// The formatted bytes, built without the formatting machinery (this
    /// runs for every field of every EVE record).
    pub fn bytes(&self) -> [u8; 31] {
        let nanos = self.0.as_nanos();
        let secs = nanos / NANOS_PER_SEC;
        let micros = (nanos % NANOS_PER_SEC) / 1_000;
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        let mut out = *b"0000-00-00T00:00:00.000000+0000";
        put_digits(&mut out[0..4], year.clamp(0, 9999) as u64);
        put_digits(&mut out[5..7], u64::from(month));
        put_digits(&mut out[8..10], u64::from(day));
        put_digits(&mut out[11..13], rem / 3600);
        put_digits(&mut out[14..16], (rem / 60) % 60);
        put_digits(&mut out[17..19], rem % 60);
        put_digits(&mut out[20..26], micros);
        out
    }
}

/// Writes `value` as zero-padded decimal filling `out`.
fn put_digits(out: &mut [u8], mut value: u64) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl fmt::Display for EveTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.bytes();
        // Only ASCII digits and separators are written.
        f.write_str(std::str::from_utf8(&bytes).unwrap_or(""))
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.eve().bytes();
        s.serialize_str(std::str::from_utf8(&bytes).unwrap_or(""))
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    /// The EVE form [`Timestamp::eve`] writes (to the microsecond).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_eve(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an EVE time: {text:?}")))
    }
}

impl Timestamp {
    /// Reads the form [`Timestamp::eve`] writes, `YYYY-MM-DDTHH:MM:SS.ffffff+0000`.
    pub fn parse_eve(text: &str) -> Option<Timestamp> {
        let b = text.as_bytes();
        if b.len() != 31 || &b[26..] != b"+0000" {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u64> {
            let s = text.get(r)?;
            s.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| s.parse().ok())?
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, m, s, micros) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
            return None;
        }
        let days = u64::try_from(days_from_civil(year as i64, month as u32, day as u32)).ok()?;
        let secs = days * 86_400 + h * 3600 + m * 60 + s;
        Some(Timestamp(
            secs.checked_mul(NANOS_PER_SEC)?
                .checked_add(micros * 1_000)?,
        ))
    }
}

/// The inverse of [`civil_from_days`] (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Serde for a [`Timestamp`] as its nanoseconds, exact (the EVE form keeps
/// microseconds): `#[serde(with = "crate::time::nanos")]`.
pub mod nanos {
    use super::Timestamp;

    pub fn serialize<S: serde::Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(ts.as_nanos())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Timestamp::from_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eve_times_read_back() {
        for nanos in [
            0,
            1_700_000_000_123_456_000,
            951_782_400_000_001_000,
            4_102_444_799_999_999_000,
        ] {
            let ts = Timestamp::from_nanos(nanos);
            assert_eq!(Timestamp::parse_eve(&ts.eve().to_string()), Some(ts));
        }
        for bad in [
            "",
            "2024-13-01T00:00:00.000000+0000",
            "2024-01-01T00:00:00.000000+0100",
            "2024-01-01T00:00:0x.000000+0000",
        ] {
            assert_eq!(Timestamp::parse_eve(bad), None, "{bad}");
        }
    }

    #[test]
    fn eve_format_matches_suricata() {
        let ts = Timestamp::from_parts(1_700_000_000, 123_456, 1_000_000);
        assert_eq!(ts.eve().to_string(), "2023-11-14T22:13:20.123456+0000");
        assert_eq!(
            Timestamp::default().eve().to_string(),
            "1970-01-01T00:00:00.000000+0000"
        );
        let leap = Timestamp::from_secs(951_782_400); // 2000-02-29
        assert_eq!(leap.eve().to_string(), "2000-02-29T00:00:00.000000+0000");
    }

    #[test]
    fn nanosecond_fractions_are_kept() {
        let ts = Timestamp::from_parts(1, 5, 1_000_000_000);
        assert_eq!(ts.as_nanos(), 1_000_000_005);
        assert_eq!(Timestamp::from_parts(1, 5, 0).as_nanos(), 1_000_000_000);
    }

    #[test]
    fn since_saturates_on_reordered_packets() {
        let a = Timestamp::from_secs(10);
        let b = Timestamp::from_secs(12);
        assert_eq!(b.since(a), 2 * NANOS_PER_SEC);
        assert_eq!(a.since(b), 0);
    }
}
