//! Packet sources: where frames come from. This is the only layer that
//! touches capture files or libpcap; everything after it sees [`Frame`]s.
//! Live capture and replay differ only in the source.

pub mod afpacket;
pub mod batch;
pub mod bpf;
pub mod file;
pub mod live;
pub mod mapped;

use crate::time::Timestamp;

/// The link layer of a frame, from the capture's DLT/LINKTYPE value.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1), with optional 802.1Q / 802.1ad tags.
    Ethernet,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): BSD loopback, a 4-byte
    /// address family (host byte order for NULL, network for LOOP).
    Null,
    Loop,
    /// LINKTYPE_RAW (101), DLT_RAW (12 / 14 on some systems), IPV4 (228),
    /// IPV6 (229): the frame starts with an IP header.
    RawIp,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2.
    LinuxSll2,
    /// Anything else; frames of this type are counted and skipped.
    Other(u32),
}

impl LinkType {
    pub fn from_linktype(value: u32) -> LinkType {
        match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// The LINKTYPE_ value to write in a capture header (and to compile BPF
    /// programs for).
    pub fn to_linktype(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::RawIp => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Other(v) => v,
        }
    }
}

/// One captured frame, borrowed from the source's buffer.
#[derive(Copy, Clone, Debug)]
pub struct Frame<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    /// The captured bytes (at most the snap length).
    pub data: &'a [u8],
    /// The length of the frame on the wire.
    pub orig_len: u32,
    /// Which input it came from, by position: the file of a replay of
    /// several (EVE's `pcap_filename`); live capture marks its interfaces
    /// on the batch instead.
    pub input: u16,
}

/// A producer of frames. A lending iterator: each frame borrows the
/// source until the next call.
pub trait PacketSource {
    /// The next frame, `Ok(None)` at the end, or an error that ends the
    /// source (everything returned before it stays valid).
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SourceError>;

    /// [`PacketSource::next_frame`], with the file mapping window the
    /// frame's bytes lie in where the source maps its input, so a batch
    /// can refer to them instead of copying them.
    fn next_frame_shared(
        &mut self,
    ) -> Result<Option<(Frame<'_>, Option<&mapped::Mapping>)>, SourceError> {
        Ok(self.next_frame()?.map(|frame| (frame, None)))
    }
}

/// A source that can skip frames without handing them out, so a filter
/// can sit in front of it. (A lending iterator cannot return a frame from
/// inside a loop that skips others: the borrow checker ties every
/// iteration's borrow to the returned one. A source that locates records
/// by offset can decide first and borrow only for the frame it returns.)
pub trait SelectSource: PacketSource {
    /// The next frame for which `keep` returns `Ok(true)`; frames it
    /// rejects are skipped. An error from `keep` ends the source.
    fn next_frame_where<F>(&mut self, keep: F) -> Result<Option<Frame<'_>>, SourceError>
    where
        F: FnMut(&Frame<'_>) -> Result<bool, SourceError>;
}

/// Why a source stopped early. Each variant names the input and, where it
/// applies, the 1-based packet number, so the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot start a replay thread")]
    Thread(#[source] std::io::Error),
    #[error("{path}: cannot open")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: is a directory; give capture files, not a directory")]
    IsDirectory { path: String },
    #[error("{path}: empty file; expected a pcap or pcapng capture")]
    Empty { path: String },
    #[error("{path}: not a pcap or pcapng capture ({detail})")]
    NotCapture { path: String, detail: String },
    #[error("{path}: truncated after packet {packet}: {detail}")]
    Truncated {
        path: String,
        packet: u64,
        detail: String,
    },
    #[error("{path}: corrupt at packet {packet}: {detail}")]
    Corrupt {
        path: String,
        packet: u64,
        detail: String,
    },
    #[error("{path}: read error at packet {packet}")]
    Read {
        path: String,
        packet: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("live capture: {0}")]
    Live(String),
    #[error(transparent)]
    Filter(#[from] bpf::BpfError),
}

impl SourceError {
    /// The process exit code this error maps to (documented in the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            SourceError::Open { .. } | SourceError::IsDirectory { .. } => 66, // EX_NOINPUT
            SourceError::Empty { .. } | SourceError::NotCapture { .. } => 65, // EX_DATAERR
            SourceError::Truncated { .. } | SourceError::Corrupt { .. } => 65,
            SourceError::Read { .. } => 74, // EX_IOERR
            SourceError::Live(_) => 69,     // EX_UNAVAILABLE
            SourceError::Thread(_) => 71,   // EX_OSERR
            SourceError::Filter(_) => 64,   // EX_USAGE
        }
    }
}
