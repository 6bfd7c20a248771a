//! Capture writers: classic pcap (microsecond or nanosecond timestamps) and
//! a minimal pcapng (one section header, one Ethernet interface, enhanced
//! packet blocks). Both write little-endian and LINKTYPE_ETHERNET, and both
//! stream: nothing but the writer's own buffer is held.

use crate::time::{Timestamp, NANOS_PER_SEC};
use std::io::{self, Write};

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// The snap length written in headers; generated frames are never cut.
pub const SNAPLEN: u32 = 262_144;

/// Timestamp resolution of a capture file.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum TsPrecision {
    #[default]
    Micro,
    Nano,
}

impl TsPrecision {
    fn units_per_sec(self) -> u64 {
        match self {
            TsPrecision::Micro => 1_000_000,
            TsPrecision::Nano => NANOS_PER_SEC,
        }
    }

    /// A timestamp in this resolution's units (sub-unit nanoseconds are
    /// truncated, as a capture tool does).
    fn split(self, ts: Timestamp) -> (u64, u64) {
        let nanos = ts.as_nanos();
        let per_unit = NANOS_PER_SEC / self.units_per_sec();
        (nanos / NANOS_PER_SEC, (nanos % NANOS_PER_SEC) / per_unit)
    }
}

/// One generated frame with its capture time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenPacket {
    pub ts: Timestamp,
    pub data: Vec<u8>,
}

impl GenPacket {
    /// The packet as a captured Ethernet frame, whole.
    pub fn frame(&self) -> crate::source::Frame<'_> {
        crate::source::Frame {
            ts: self.ts,
            link: crate::source::LinkType::Ethernet,
            data: &self.data,
            orig_len: self.data.len() as u32,
            input: 0,
        }
    }
}

/// Where generated frames go: a capture writer or a test's collector.
pub trait FrameSink {
    fn frame(&mut self, ts: Timestamp, data: &[u8]) -> io::Result<()>;
}

impl FrameSink for Vec<GenPacket> {
    fn frame(&mut self, ts: Timestamp, data: &[u8]) -> io::Result<()> {
        self.push(GenPacket {
            ts,
            data: data.to_vec(),
        });
        Ok(())
    }
}

/// Classic libpcap file writer.
pub struct PcapWriter<W: Write> {
    out: W,
    prec: TsPrecision,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W, prec: TsPrecision) -> io::Result<Self> {
        let magic: u32 = match prec {
            TsPrecision::Micro => 0xA1B2_C3D4,
            TsPrecision::Nano => 0xA1B2_3C4D,
        };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, prec })
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> FrameSink for PcapWriter<W> {
    fn frame(&mut self, ts: Timestamp, data: &[u8]) -> io::Result<()> {
        let (secs, frac) = self.prec.split(ts);
        let len = data.len() as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(secs as u32).to_le_bytes());
        h[4..8].copy_from_slice(&(frac as u32).to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }
}

/// Minimal pcapng writer: SHB, one IDB, then EPBs.
pub struct PcapngWriter<W: Write> {
    out: W,
    prec: TsPrecision,
}

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const IF_TSRESOL: u16 = 9;

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header and the interface description.
    pub fn new(mut out: W, prec: TsPrecision) -> io::Result<Self> {
        // Section header block: type, length, byte-order magic, version
        // 1.0, section length unknown (-1), no options, length again.
        let mut shb = Vec::with_capacity(28);
        shb.extend_from_slice(&SHB.to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        shb.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        out.write_all(&shb)?;

        // Interface description block; nanosecond files say so with
        // if_tsresol = 9 (the default without the option is 10^-6).
        let mut opts = Vec::new();
        if prec == TsPrecision::Nano {
            opts.extend_from_slice(&IF_TSRESOL.to_le_bytes());
            opts.extend_from_slice(&1u16.to_le_bytes());
            opts.extend_from_slice(&[9, 0, 0, 0]);
            opts.extend_from_slice(&OPT_END.to_le_bytes());
            opts.extend_from_slice(&0u16.to_le_bytes());
        }
        let len = 20 + opts.len() as u32;
        let mut idb = Vec::with_capacity(len as usize);
        idb.extend_from_slice(&IDB.to_le_bytes());
        idb.extend_from_slice(&len.to_le_bytes());
        idb.extend_from_slice(&(LINKTYPE_ETHERNET as u16).to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&SNAPLEN.to_le_bytes());
        idb.extend_from_slice(&opts);
        idb.extend_from_slice(&len.to_le_bytes());
        out.write_all(&idb)?;
        Ok(PcapngWriter { out, prec })
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> FrameSink for PcapngWriter<W> {
    fn frame(&mut self, ts: Timestamp, data: &[u8]) -> io::Result<()> {
        let (secs, frac) = self.prec.split(ts);
        let units = secs * self.prec.units_per_sec() + frac;
        let padded = data.len().div_ceil(4) * 4;
        let total = (32 + padded) as u32;
        let mut h = [0u8; 28];
        h[0..4].copy_from_slice(&EPB.to_le_bytes());
        h[4..8].copy_from_slice(&total.to_le_bytes());
        // interface id 0 stays zero
        h[12..16].copy_from_slice(&((units >> 32) as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(units as u32).to_le_bytes());
        h[20..24].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[24..28].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)?;
        self.out.write_all(&[0u8; 3][..padded - data.len()])?;
        self.out.write_all(&total.to_le_bytes())
    }
}

/// Writes `packets` as a classic pcap file.
pub fn write_pcap<W: Write>(out: W, packets: &[GenPacket], prec: TsPrecision) -> io::Result<W> {
    let mut w = PcapWriter::new(out, prec)?;
    for p in packets {
        w.frame(p.ts, &p.data)?;
    }
    Ok(w.into_inner())
}

/// Writes `packets` as a pcapng file.
pub fn write_pcapng<W: Write>(out: W, packets: &[GenPacket], prec: TsPrecision) -> io::Result<W> {
    let mut w = PcapngWriter::new(out, prec)?;
    for p in packets {
        w.frame(p.ts, &p.data)?;
    }
    Ok(w.into_inner())
}

/// File format of a generated capture.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CaptureFormat {
    Pcap(TsPrecision),
    Pcapng(TsPrecision),
}

impl Default for CaptureFormat {
    fn default() -> Self {
        CaptureFormat::Pcap(TsPrecision::Micro)
    }
}

/// A capture writer of either format behind one type.
pub enum CaptureWriter<W: Write> {
    Pcap(PcapWriter<W>),
    Pcapng(PcapngWriter<W>),
}

impl<W: Write> CaptureWriter<W> {
    pub fn new(out: W, format: CaptureFormat) -> io::Result<Self> {
        Ok(match format {
            CaptureFormat::Pcap(p) => CaptureWriter::Pcap(PcapWriter::new(out, p)?),
            CaptureFormat::Pcapng(p) => CaptureWriter::Pcapng(PcapngWriter::new(out, p)?),
        })
    }

    pub fn into_inner(self) -> W {
        match self {
            CaptureWriter::Pcap(w) => w.into_inner(),
            CaptureWriter::Pcapng(w) => w.into_inner(),
        }
    }
}

impl<W: Write> FrameSink for CaptureWriter<W> {
    fn frame(&mut self, ts: Timestamp, data: &[u8]) -> io::Result<()> {
        match self {
            CaptureWriter::Pcap(w) => w.frame(ts, data),
            CaptureWriter::Pcapng(w) => w.frame(ts, data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_parser::{PcapBlockOwned, PcapError};

    fn sample() -> Vec<GenPacket> {
        vec![
            GenPacket {
                ts: Timestamp::from_nanos(1_700_000_000_123_456_789),
                data: (0u8..60).collect(),
            },
            GenPacket {
                ts: Timestamp::from_nanos(1_700_000_001_000_000_001),
                data: (0u8..63).collect(),
            },
        ]
    }

    /// Reads frames back with pcap-parser, an independent reader: (secs,
    /// fraction) for pcap, (0, timestamp units) for pcapng.
    fn read_all(bytes: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        let mut reader = pcap_parser::create_reader(65536, bytes).expect("a capture");
        let mut out = Vec::new();
        loop {
            match reader.next() {
                Ok((offset, block)) => {
                    match block {
                        PcapBlockOwned::Legacy(b) => {
                            out.push((b.ts_sec.into(), b.ts_usec.into(), b.data.to_vec()))
                        }
                        PcapBlockOwned::NG(pcap_parser::Block::EnhancedPacket(b)) => {
                            let units = (u64::from(b.ts_high) << 32) | u64::from(b.ts_low);
                            out.push((0, units, b.data[..b.caplen as usize].to_vec()));
                        }
                        _ => {}
                    }
                    reader.consume(offset);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => reader.refill().expect("refill"),
                Err(e) => panic!("parse error {e:?}"),
            }
        }
        out
    }

    #[test]
    fn pcap_micro_and_nano_round_trip() {
        let pkts = sample();
        let micro = write_pcap(Vec::new(), &pkts, TsPrecision::Micro).unwrap();
        let nano = write_pcap(Vec::new(), &pkts, TsPrecision::Nano).unwrap();
        assert_eq!(&micro[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&nano[..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        let m = read_all(&micro);
        let n = read_all(&nano);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].0, m[0].1), (1_700_000_000, 123_456));
        assert_eq!((n[0].0, n[0].1), (1_700_000_000, 123_456_789));
        assert_eq!((n[1].0, n[1].1), (1_700_000_001, 1));
        assert_eq!(m[1].2, pkts[1].data);
    }

    #[test]
    fn pcapng_blocks_parse_and_pad() {
        let pkts = sample();
        for prec in [TsPrecision::Micro, TsPrecision::Nano] {
            let bytes = write_pcapng(Vec::new(), &pkts, prec).unwrap();
            assert_eq!(bytes.len() % 4, 0);
            let got = read_all(&bytes);
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].2, pkts[1].data, "63-byte frame keeps its length");
            let units = match prec {
                TsPrecision::Micro => 1_700_000_000_123_456u64,
                TsPrecision::Nano => 1_700_000_000_123_456_789u64,
            };
            assert_eq!(got[0].1, units);
        }
    }
}
