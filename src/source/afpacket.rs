//! Live capture from an AF_PACKET TPACKET_V3 ring (`--capture-method
//! af-packet`): one socket per worker, all of an interface's sockets in one
//! fanout group whose classic BPF program picks each frame's socket, so
//! every worker reads, decodes and analyses its own share with no thread
//! in between (Suricata's workers mode).
//!
//! The kernel fills blocks of frames in a ring mapped into the process;
//! [`FanoutSocket::dispatch`] hands frames over in place and gives each
//! block back once read. A block is retired after the read timeout even if
//! it is not full, so a quiet link still delivers.
//!
//! A group shards by its member count, so a frame must not be taken while
//! the group is still forming (a flow's first packets would go to another
//! worker than the rest): every socket starts with a filter that accepts
//! nothing, and [`FanoutSocket::arm`] puts the real filter on once all have
//! joined.
//!
//! Linux only; ring and fanout need CAP_NET_RAW. With `source::mapped`,
//! the crate's only `unsafe` code: the socket calls, and reading a ring the
//! kernel writes (each block's status word is the hand-over, read with
//! acquire and written back with release ordering).
#![allow(unsafe_code)]

use super::bpf::Insn;
use super::{Frame, LinkType, SourceError};
use crate::time::Timestamp;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// The size of one ring block: a power of two of pages, large enough for
/// any frame (64 KiB) with its header.
pub const BLOCK_BYTES: usize = 1 << 20;
/// The slot size TPACKET_V3 asks for (frames are packed, not slotted).
const FRAME_BYTES: u32 = 2048;
/// Blocks in the smallest ring.
const MIN_BLOCKS: usize = 4;
/// Room for the largest frame with its 802.1Q tag put back.
const SCRATCH_BYTES: usize = 65_535 + 4;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

/// How one socket of a fanout group is opened.
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// The ring's size; rounded down to whole blocks, at least four.
    pub ring_bytes: usize,
    /// How long the kernel holds a partly filled block.
    pub block_timeout_ms: u32,
    pub promiscuous: bool,
    /// The fanout group id (unique per interface on the host).
    pub group: u16,
    /// The group's program ([`crate::flow::shard::fanout`]).
    pub fanout: Vec<Insn>,
    /// The socket filter once armed: the compiled expression, or one that
    /// accepts every frame cut to the snap length.
    pub filter: Vec<Insn>,
}

/// One member of an interface's fanout group, with its mapped ring.
pub struct FanoutSocket {
    interface: String,
    fd: OwnedFd,
    ring: *mut u8,
    blocks: usize,
    /// The block to read next.
    next: usize,
    /// Frames on a loopback device are seen leaving and arriving: the
    /// leaving copy is skipped, as libpcap does.
    loopback: bool,
    filter: Vec<Insn>,
    armed: bool,
    /// Where a frame whose VLAN tag the kernel took off is put back
    /// together (allocated once).
    scratch: Vec<u8>,
    kernel_drops: u64,
}

// The ring is owned by this socket alone; only the kernel shares it.
unsafe impl Send for FanoutSocket {}

impl FanoutSocket {
    /// Opens a socket on `interface`, maps its ring and joins the group.
    /// It takes no frame until [`FanoutSocket::arm`].
    pub fn open(interface: &str, opts: &SocketOptions) -> Result<FanoutSocket, SourceError> {
        let err = |what: &str| {
            let e = std::io::Error::last_os_error();
            SourceError::Live(format!("{interface}: af-packet: {what}: {e}"))
        };
        let name = std::ffi::CString::new(interface)
            .map_err(|_| SourceError::Live(format!("{interface:?}: not an interface name")))?;
        // SAFETY: plain libc calls on values we own.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(err("no such device"));
        }
        // Protocol 0: nothing arrives before the filter and the ring are set.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(err("socket"));
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as i32),
        )
        .map_err(|_| err("TPACKET_V3"))?;
        attach(&fd, &[accept_none()]).map_err(|_| err("socket filter"))?;
        let blocks = (opts.ring_bytes / BLOCK_BYTES).max(MIN_BLOCKS);
        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_BYTES as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: FRAME_BYTES,
            tp_frame_nr: (blocks * BLOCK_BYTES) as u32 / FRAME_BYTES,
            tp_retire_blk_tov: opts.block_timeout_ms.max(1),
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req).map_err(|_| err("ring"))?;
        let ring = map(&fd, blocks * BLOCK_BYTES).ok_or_else(|| err("mapping the ring"))?;
        let mut socket = FanoutSocket {
            interface: interface.to_string(),
            fd,
            ring,
            blocks,
            next: 0,
            loopback: false,
            filter: opts.filter.clone(),
            armed: false,
            scratch: vec![0; SCRATCH_BYTES],
            kernel_drops: 0,
        };
        socket.bind(ifindex, opts).map_err(err)?;
        Ok(socket)
    }

    fn bind(&mut self, ifindex: u32, opts: &SocketOptions) -> Result<(), &'static str> {
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        let fd = self.fd.as_raw_fd();
        // SAFETY: `addr` outlives the call and `len` is its size.
        if unsafe { libc::bind(fd, (&raw const addr).cast(), len) } < 0 {
            return Err("bind");
        }
        let mut bound = addr;
        let mut bound_len = len;
        // SAFETY: as above, for the kernel to write into.
        if unsafe { libc::getsockname(fd, (&raw mut bound).cast(), &mut bound_len) } < 0 {
            return Err("getsockname");
        }
        match bound.sll_hatype {
            ARPHRD_ETHER => {}
            ARPHRD_LOOPBACK => self.loopback = true,
            _ => return Err("not an Ethernet interface (use --capture-method pcap)"),
        }
        if opts.promiscuous {
            // SAFETY: packet_mreq is plain data.
            let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mreq.mr_ifindex = ifindex as i32;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            set(
                &self.fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
            )
            .map_err(|_| "promiscuous mode")?;
        }
        let fanout = u32::from(opts.group) | (libc::PACKET_FANOUT_CBPF << 16);
        set(&self.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &fanout)
            .map_err(|_| "joining the fanout group")?;
        let program = sock_fprog(&opts.fanout);
        set(
            &self.fd,
            libc::SOL_PACKET,
            libc::PACKET_FANOUT_DATA,
            &program,
        )
        .map_err(|_| "the fanout program")?;
        Ok(())
    }

    /// Puts the real filter on: from now on the socket takes its share.
    pub fn arm(&mut self) -> Result<(), SourceError> {
        self.filter_with(true)
    }

    /// Back to taking nothing (while the group is not whole).
    pub fn disarm(&mut self) -> Result<(), SourceError> {
        self.filter_with(false)
    }

    pub fn armed(&self) -> bool {
        self.armed
    }

    fn filter_with(&mut self, armed: bool) -> Result<(), SourceError> {
        let none = [accept_none()];
        let program = if armed { &self.filter[..] } else { &none[..] };
        attach(&self.fd, program).map_err(|e| {
            SourceError::Live(format!("{}: af-packet: socket filter: {e}", self.interface))
        })?;
        self.armed = armed;
        Ok(())
    }

    /// Hands the frames of up to `max_blocks` filled blocks to `each`, each
    /// block given back to the kernel once read; returns how many frames.
    /// Never blocks.
    pub fn dispatch<F>(&mut self, max_blocks: usize, mut each: F) -> usize
    where
        F: FnMut(&Frame<'_>),
    {
        let mut frames = 0;
        for _ in 0..max_blocks {
            let block = self.block(self.next);
            let status = block_status(block);
            if status.load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                break;
            }
            frames += self.read_block(block, &mut each);
            status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.next = (self.next + 1) % self.blocks;
        }
        frames
    }

    fn block(&self, i: usize) -> *mut u8 {
        // SAFETY: i < blocks, inside the mapping.
        unsafe { self.ring.add(i * BLOCK_BYTES) }
    }

    /// The frames of one block the kernel handed over. Offsets come from
    /// the kernel; each is still checked against the block.
    fn read_block<F: FnMut(&Frame<'_>)>(&mut self, block: *mut u8, each: &mut F) -> usize {
        // SAFETY: the block is ours until its status goes back to the kernel.
        let bytes = unsafe { std::slice::from_raw_parts(block.cast_const(), BLOCK_BYTES) };
        let (count, mut offset) = (read_u32(bytes, 12), read_u32(bytes, 16) as usize);
        let mut delivered = 0;
        for _ in 0..count {
            let Some(hdr) = FrameHeader::parse(bytes, offset) else {
                break;
            };
            if !(self.loopback && hdr.outgoing) {
                if let Some(frame) = self.frame(bytes, offset, &hdr) {
                    each(&frame);
                    delivered += 1;
                }
            }
            if hdr.next == 0 {
                break;
            }
            offset += hdr.next as usize;
        }
        delivered
    }

    /// The frame `hdr` describes, its VLAN tag put back if the kernel had
    /// taken it off.
    fn frame<'a>(&'a mut self, block: &'a [u8], at: usize, hdr: &FrameHeader) -> Option<Frame<'a>> {
        let start = at + usize::from(hdr.mac);
        let data = block.get(start..start + hdr.snaplen as usize)?;
        let ts = Timestamp::from_parts(u64::from(hdr.sec), u64::from(hdr.nsec), 1_000_000_000);
        let Some((tpid, tci)) = hdr.vlan else {
            return Some(Frame {
                ts,
                link: LinkType::Ethernet,
                data,
                orig_len: hdr.len,
                input: 0,
            });
        };
        let n = data.len().min(SCRATCH_BYTES - 4);
        if n < 12 {
            return None;
        }
        let out = &mut self.scratch;
        out[..12].copy_from_slice(&data[..12]);
        out[12..14].copy_from_slice(&tpid.to_be_bytes());
        out[14..16].copy_from_slice(&tci.to_be_bytes());
        out[16..n + 4].copy_from_slice(&data[12..n]);
        Some(Frame {
            ts,
            link: LinkType::Ethernet,
            data: &self.scratch[..n + 4],
            orig_len: hdr.len + 4,
            input: 0,
        })
    }

    /// Waits until a block is ready on one of `fds` or `timeout` passes;
    /// `Err((i, why))` if socket `i` failed (its interface went away).
    pub fn wait(
        fds: &[BorrowedFd<'_>],
        timeout: std::time::Duration,
    ) -> Result<(), (usize, SourceError)> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut polled: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        if let Err(e) = poll(&mut polled, PollTimeout::from(ms)) {
            if e != nix::errno::Errno::EINTR {
                return Err((0, SourceError::Live(format!("af-packet: poll: {e}"))));
            }
        }
        let bad = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
        match polled
            .iter()
            .position(|p| p.revents().is_some_and(|r| r.intersects(bad)))
        {
            Some(i) => Err((
                i,
                SourceError::Live(format!("af-packet: read: {}", socket_error(&fds[i]))),
            )),
            None => Ok(()),
        }
    }

    /// Frames the kernel dropped for want of ring room since the socket
    /// opened (reading the kernel's counters resets them; they are
    /// accumulated here).
    pub fn drops(&mut self) -> Result<u64, SourceError> {
        let mut stats = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as u32;
        // SAFETY: `stats` is the size the kernel writes for TPACKET_V3.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            return Err(SourceError::Live(format!(
                "{}: af-packet: statistics: {e}",
                self.interface
            )));
        }
        self.kernel_drops += u64::from(stats.tp_drops);
        Ok(self.kernel_drops)
    }
}

impl AsFd for FanoutSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for FanoutSocket {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `open` with this length.
        unsafe { libc::munmap(self.ring.cast(), self.blocks * BLOCK_BYTES) };
    }
}

/// What a TPACKET_V3 frame header says (`struct tpacket3_hdr` and the
/// `sockaddr_ll` after it).
struct FrameHeader {
    next: u32,
    sec: u32,
    nsec: u32,
    snaplen: u32,
    len: u32,
    mac: u16,
    /// The tag the kernel took off: (TPID, TCI).
    vlan: Option<(u16, u16)>,
    outgoing: bool,
}

impl FrameHeader {
    fn parse(block: &[u8], at: usize) -> Option<FrameHeader> {
        let h = block.get(at..at + TPACKET3_HDRLEN)?;
        let status = read_u32(h, 20);
        let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = match status & libc::TP_STATUS_VLAN_TPID_VALID {
                0 => 0x8100,
                _ => read_u16(h, 36),
            };
            (tpid, read_u32(h, 32) as u16)
        });
        Some(FrameHeader {
            next: read_u32(h, 0),
            sec: read_u32(h, 4),
            nsec: read_u32(h, 8),
            snaplen: read_u32(h, 12),
            len: read_u32(h, 16),
            mac: read_u16(h, 24),
            vlan,
            // sockaddr_ll follows the aligned header; sll_pkttype at 10.
            outgoing: h.get(SLL_AT + 10) == Some(&libc::PACKET_OUTGOING),
        })
    }
}

/// Where the `sockaddr_ll` starts after a frame header (TPACKET_ALIGN).
const SLL_AT: usize = std::mem::size_of::<libc::tpacket3_hdr>().next_multiple_of(16);
const TPACKET3_HDRLEN: usize = SLL_AT + std::mem::size_of::<libc::sockaddr_ll>();

fn read_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]))
}

/// The block's status word, shared with the kernel.
fn block_status<'a>(block: *mut u8) -> &'a AtomicU32 {
    // SAFETY: `tpacket_block_desc.hdr.bh1.block_status` sits at offset 8,
    // 4-byte aligned in a page-aligned block, for as long as the mapping.
    unsafe { AtomicU32::from_ptr(block.add(8).cast()) }
}

/// The program that accepts no frame.
fn accept_none() -> Insn {
    Insn {
        code: super::bpf::code::RET,
        jt: 0,
        jf: 0,
        k: 0,
    }
}

/// A socket filter that takes every frame, cut to `snaplen`.
pub fn accept_all(snaplen: u32) -> Vec<Insn> {
    vec![Insn {
        code: super::bpf::code::RET,
        jt: 0,
        jf: 0,
        k: snaplen.max(1),
    }]
}

fn sock_fprog(program: &[Insn]) -> libc::sock_fprog {
    libc::sock_fprog {
        len: program.len() as u16,
        // `Insn` is laid out as `sock_filter`; the kernel copies it.
        filter: program.as_ptr().cast_mut().cast(),
    }
}

fn attach(fd: &OwnedFd, program: &[Insn]) -> std::io::Result<()> {
    set(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &sock_fprog(program),
    )
}

fn set<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> std::io::Result<()> {
    let len = std::mem::size_of::<T>() as u32;
    // SAFETY: `value` is a live `T` of `len` bytes.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn map(fd: &OwnedFd, len: usize) -> Option<*mut u8> {
    // SAFETY: a fresh shared mapping of the socket's ring.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p.cast())
}

/// The pending error of a socket (`SO_ERROR`), as text.
fn socket_error(fd: &BorrowedFd<'_>) -> String {
    let mut code: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as u32;
    // SAFETY: `code` is an int the kernel writes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut code).cast(),
            &mut len,
        )
    };
    if rc < 0 || code == 0 {
        return "the interface went away".to_string();
    }
    std::io::Error::from_raw_os_error(code).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_the_kernel() {
        assert_eq!(std::mem::size_of::<libc::tpacket3_hdr>(), 48);
        assert_eq!(SLL_AT, 48);
        assert_eq!(TPACKET3_HDRLEN, 68);
        assert_eq!(
            std::mem::size_of::<Insn>(),
            std::mem::size_of::<libc::sock_filter>()
        );
    }

    #[test]
    fn a_vlan_frame_header_gives_its_tag_back() {
        let mut h = vec![0u8; TPACKET3_HDRLEN];
        h[12..16].copy_from_slice(&60u32.to_ne_bytes()); // snaplen
        h[16..20].copy_from_slice(&60u32.to_ne_bytes()); // len
        let status = libc::TP_STATUS_USER | libc::TP_STATUS_VLAN_VALID;
        h[20..24].copy_from_slice(&status.to_ne_bytes());
        h[24..26].copy_from_slice(&80u16.to_ne_bytes()); // mac
        h[32..36].copy_from_slice(&0x0064u32.to_ne_bytes()); // TCI: VLAN 100
        let hdr = FrameHeader::parse(&h, 0).unwrap();
        assert_eq!(hdr.vlan, Some((0x8100, 100)));
        assert_eq!((hdr.snaplen, hdr.mac), (60, 80));
        assert!(!hdr.outgoing);
        // Cut short: no header.
        assert!(FrameHeader::parse(&h[..40], 0).is_none());
    }

    #[test]
    fn a_missing_interface_is_a_live_error() {
        let opts = SocketOptions {
            ring_bytes: 0,
            block_timeout_ms: 10,
            promiscuous: false,
            group: 1,
            fanout: accept_all(1),
            filter: accept_all(65_535),
        };
        let e = FanoutSocket::open("ew-no-such-if0", &opts)
            .err()
            .map(|e| e.exit_code());
        assert_eq!(e, Some(69));
    }
}
