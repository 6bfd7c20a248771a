//! Live capture from a network interface through libpcap.
//!
//! The handle is non-blocking: libpcap's TPACKET_V3 path waits forever on
//! an idle ring (its read timeout only retires partly filled blocks), so a
//! blocking read would never return on a quiet span port and idle flows
//! would never expire. Instead [`LiveCapture::dispatch`] hands over what
//! the ring holds and returns at once, and [`LiveCapture::wait`] polls the
//! socket with a timeout of our choosing.
//!
//! This is the one place that reads the wall clock ([`capture_clock`]), and
//! only to stand in for packet time when no packet arrives.
//!
//! A BPF filter runs in the kernel. On a trunked span port a plain `tcp`
//! misses 802.1Q-tagged frames: write `tcp or (vlan and tcp)`.

use super::{Frame, LinkType, SourceError};
use crate::time::Timestamp;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a capture handle is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveOptions {
    /// Bytes kept of each frame.
    pub snaplen: u32,
    pub promiscuous: bool,
    /// The kernel ring's size in bytes. 64 MiB absorbs the scheduling
    /// jitter of a busy host; 2-8 MiB rings were measured to drop ~0.5%.
    pub buffer_bytes: u32,
    /// Deliver every frame at once (TPACKET_V2) instead of in blocks
    /// (TPACKET_V3, retired after `read_timeout_ms`): lower latency, more
    /// wake-ups.
    pub immediate: bool,
    /// How long the kernel holds a partly filled block (block mode only).
    pub read_timeout_ms: u32,
    /// A libpcap filter expression, compiled for the interface.
    pub filter: Option<String>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            snaplen: 65_535,
            promiscuous: true,
            buffer_bytes: 64 << 20,
            immediate: false,
            read_timeout_ms: 50,
            filter: None,
        }
    }
}

/// An open, non-blocking capture on one interface.
pub struct LiveCapture {
    interface: String,
    cap: pcap::Capture<pcap::Active>,
    link: LinkType,
    kernel: WrappingCounter,
    interface_drops: WrappingCounter,
}

/// Cumulative drop counts of one capture since it was opened.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureDrops {
    /// Dropped because the kernel ring was full (`ps_drop`).
    pub kernel: u64,
    /// Dropped by the interface or its driver (`ps_ifdrop`).
    pub interface: u64,
}

impl LiveCapture {
    /// Opens `interface` (needs CAP_NET_RAW) and applies the filter.
    pub fn open(interface: &str, opts: &LiveOptions) -> Result<LiveCapture, SourceError> {
        let err =
            |what: &str, e: pcap::Error| SourceError::Live(format!("{interface}: {what}: {e}"));
        let inactive = pcap::Capture::from_device(interface)
            .map_err(|e| err("no such device", e))?
            .snaplen(clamp_i32(opts.snaplen))
            .promisc(opts.promiscuous)
            .buffer_size(clamp_i32(opts.buffer_bytes))
            .immediate_mode(opts.immediate)
            .timeout(clamp_i32(opts.read_timeout_ms.max(1)))
            .precision(pcap::Precision::Nano);
        let mut cap = inactive
            .open()
            .map_err(|e| err("cannot open capture", e))?
            .setnonblock()
            .map_err(|e| err("cannot make capture non-blocking", e))?;
        if let Some(expr) = &opts.filter {
            cap.filter(expr, true)
                .map_err(|e| err(&format!("filter {expr:?}"), e))?;
        }
        let dlt = cap.get_datalink().0;
        let link = LinkType::from_linktype(u32::try_from(dlt).unwrap_or(u32::MAX));
        Ok(LiveCapture {
            interface: interface.to_string(),
            cap,
            link,
            kernel: WrappingCounter::default(),
            interface_drops: WrappingCounter::default(),
        })
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Hands up to `max` frames the ring holds now to `each` and returns
    /// how many; 0 when the ring is empty. Never blocks.
    pub fn dispatch<F>(&mut self, max: usize, mut each: F) -> Result<usize, SourceError>
    where
        F: FnMut(&Frame<'_>),
    {
        let link = self.link;
        let interface = &self.interface;
        self.cap
            .dispatch(Some(max.max(1)), |p| {
                let ts = Timestamp::from_parts(
                    u64::try_from(p.header.ts.tv_sec).unwrap_or(0),
                    u64::try_from(p.header.ts.tv_usec).unwrap_or(0),
                    1_000_000_000,
                );
                each(&Frame {
                    ts,
                    link,
                    data: p.data,
                    orig_len: p.header.len,
                    input: 0,
                });
            })
            .map_err(|e| SourceError::Live(format!("{interface}: read: {e}")))
    }

    /// Waits until the capture socket is readable or `timeout` passes;
    /// true if it became readable. Interrupted waits count as timeouts.
    pub fn wait(&self, timeout: Duration) -> Result<bool, SourceError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.cap.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(SourceError::Live(format!("{}: poll: {e}", self.interface))),
        }
    }

    /// libpcap's drop counters, accumulated past their 32-bit wraparound.
    /// Call it at least once per 2^32 drops (every few seconds is plenty).
    pub fn drops(&mut self) -> Result<CaptureDrops, SourceError> {
        let stat = self
            .cap
            .stats()
            .map_err(|e| SourceError::Live(format!("{}: stats: {e}", self.interface)))?;
        self.kernel.update(stat.dropped);
        self.interface_drops.update(stat.if_dropped);
        Ok(CaptureDrops {
            kernel: self.kernel.total(),
            interface: self.interface_drops.total(),
        })
    }
}

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Wall-clock time as packet time, for driving flow expiry while no packet
/// arrives. Only live capture reads it.
pub fn capture_clock() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// A cumulative 64-bit count kept from a 32-bit counter that wraps
/// (libpcap's `pcap_stat` fields are `u_int`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct WrappingCounter {
    last: Option<u32>,
    total: u64,
}

impl WrappingCounter {
    /// Takes a new reading of the 32-bit counter and returns how much it
    /// grew since the last one (counting one wrap between readings). The
    /// first reading counts in full: the counter started at zero.
    pub fn update(&mut self, raw: u32) -> u64 {
        let delta = match self.last {
            None => u64::from(raw),
            Some(last) => u64::from(raw.wrapping_sub(last)),
        };
        self.last = Some(raw);
        self.total = self.total.saturating_add(delta);
        delta
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_accumulates_across_wraparound() {
        // (reading, expected delta, expected total)
        let steps: &[(u32, u64, u64)] = &[
            (10, 10, 10),
            (10, 0, 10),
            (4_000_000_000, 3_999_999_990, 4_000_000_000),
            (u32::MAX, 294_967_295, 4_294_967_295),
            (0, 1, 4_294_967_296),
            (5, 5, 4_294_967_301),
            // A jump across the wrap between two readings.
            (4_294_967_000, 4_294_966_995, 8_589_934_296),
            (100, 396, 8_589_934_692),
        ];
        let mut c = WrappingCounter::default();
        for (i, &(raw, delta, total)) in steps.iter().enumerate() {
            assert_eq!(c.update(raw), delta, "step {i} delta");
            assert_eq!(c.total(), total, "step {i} total");
        }
    }

    #[test]
    fn counter_first_reading_counts_from_zero() {
        let mut c = WrappingCounter::default();
        assert_eq!(c.update(0), 0);
        assert_eq!(c.update(7), 7);
        assert_eq!(c.total(), 7);
    }

    #[test]
    fn open_missing_interface_is_a_live_error() {
        let e = LiveCapture::open("ew-no-such-if0", &LiveOptions::default())
            .err()
            .map(|e| e.exit_code());
        assert_eq!(e, Some(69));
    }

    #[test]
    fn capture_clock_is_after_2020() {
        assert!(capture_clock().as_secs() > 1_577_836_800);
    }
}
