//! Capture files read through bounded windows of a read-only memory
//! mapping instead of `read(2)`: the kernel's page cache is the buffer, so
//! no byte is copied into user space, and frames handed to the engine (in
//! [`super::batch::Batch`]es) point into the shared window.
//!
//! Only a window of the file is mapped at a time (normally [`WINDOW`]
//! bytes, more for a record larger than that); a batch keeps the window
//! its frames lie in alive through an [`Arc`], and a window is unmapped
//! when the reader has moved past it and the last batch referring to it
//! was cleared. The resident file pages (which count in the process's RSS)
//! are thus bounded by the windows in flight, whatever the file's size.
//!
//! This is one of the two modules with `unsafe` code (with
//! `source::afpacket`): mapping a file
//! is unsafe because another process may change or truncate it while it
//! is mapped. Replay reads finished capture files; a file truncated while
//! being replayed ends the process with SIGBUS (a file that grows, as one
//! tcpdump is still writing, is followed as with reads).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::Arc;

use memmap2::{Advice, Mmap, MmapOptions};

/// Bytes mapped per window (a record larger than this gets a window of
/// its own size).
pub const WINDOW: usize = 2 << 20;

/// One mapped window of a capture file, shared by the reader and every
/// batch holding frames from it.
#[derive(Clone, Debug)]
pub struct Mapping(pub(super) Arc<Mmap>);

impl Mapping {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `self` and `other` are the same window.
    pub fn same(&self, other: &Mapping) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Where `data` starts in this window, if it lies wholly inside it.
    pub fn offset_of(&self, data: &[u8]) -> Option<usize> {
        let base = self.0.as_ptr() as usize;
        let at = (data.as_ptr() as usize).checked_sub(base)?;
        (at.checked_add(data.len())? <= self.0.len()).then_some(at)
    }
}

/// Maps `len` bytes of `file` from `offset` (any offset: memmap2 aligns it
/// to a page) and advises sequential access.
fn map_window(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
    // SAFETY: the mapping is read-only and private to this process; the
    // bytes are only read through `&[u8]`. Another process changing the
    // file changes what we read (as `read(2)` would); one truncating it
    // makes a later access fault (SIGBUS), which the module doc states.
    let map = unsafe { MmapOptions::new().offset(offset).len(len).map(file)? };
    // Read-ahead hint only: failing to give it changes nothing.
    let _ = map.advise(Advice::Sequential);
    Ok(Mapping(Arc::new(map)))
}

/// A capture file seen through a moving window: `bytes()[start..]` are the
/// unread bytes of the current window.
#[derive(Debug)]
pub struct MapBuf {
    file: File,
    /// The file's length as last seen (re-read at the end, for a file that
    /// is still growing).
    file_len: u64,
    window: Option<Mapping>,
    /// File offset of the window's first byte.
    window_at: u64,
    start: usize,
}

impl MapBuf {
    /// Prepares `file` for mapped reading: it must be a non-empty regular
    /// file whose first window maps. Otherwise the file comes back (to be
    /// read instead) with the reason.
    pub fn open(file: File) -> Result<MapBuf, (File, io::Error)> {
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(e) => return Err((file, e)),
        };
        if !meta.is_file() || meta.len() == 0 {
            let why = io::Error::other("not a non-empty regular file");
            return Err((file, why));
        }
        let len = window_len(meta.len(), 0, 0);
        match map_window(&file, 0, len) {
            Ok(window) => Ok(MapBuf {
                file,
                file_len: meta.len(),
                window: Some(window),
                window_at: 0,
                start: 0,
            }),
            Err(e) => Err((file, e)),
        }
    }

    /// The current window (the one every record located since the last
    /// `fill` lies in).
    pub fn window(&self) -> Option<&Mapping> {
        self.window.as_ref()
    }

    fn bytes(&self) -> &[u8] {
        self.window.as_ref().map(Mapping::bytes).unwrap_or_default()
    }

    pub fn data(&self) -> &[u8] {
        self.bytes().get(self.start..).unwrap_or_default()
    }

    pub fn available(&self) -> usize {
        self.bytes().len().saturating_sub(self.start)
    }

    /// Position of the first unread byte in the window.
    pub fn position(&self) -> usize {
        self.start
    }

    /// `len` bytes of the window from `start`.
    pub fn slice(&self, start: usize, len: usize) -> &[u8] {
        self.bytes()
            .get(start..start.saturating_add(len))
            .unwrap_or_default()
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.bytes().len());
    }

    /// Makes at least `need` unread bytes available, mapping the next
    /// window when the current one ends first; `Ok(false)` if the file
    /// ends first. `need` is bounded by the caller (`MAX_RECORD`).
    #[inline]
    pub fn fill(&mut self, need: usize) -> io::Result<bool> {
        if self.available() >= need {
            return Ok(true);
        }
        self.remap(need)
    }

    #[inline(never)]
    fn remap(&mut self, need: usize) -> io::Result<bool> {
        let at = self.window_at + self.start as u64;
        if at + need as u64 > self.file_len {
            // Perhaps the file grew since it was opened.
            self.file_len = self.file.metadata()?.len();
        }
        let len = window_len(self.file_len, at, need);
        if len <= self.available() {
            return Ok(false);
        }
        // The old window is dropped first: its pages leave the RSS once
        // the batches still holding it are cleared too.
        self.window = None;
        self.window = Some(map_window(&self.file, at, len)?);
        self.window_at = at;
        self.start = 0;
        Ok(len >= need)
    }
}

/// Length of a window at file offset `at` that holds at least `need`
/// bytes where the file has them.
fn window_len(file_len: u64, at: u64, need: usize) -> usize {
    let left = usize::try_from(file_len.saturating_sub(at)).unwrap_or(usize::MAX);
    WINDOW.max(need).min(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn empty_files_and_pipes_are_not_mapped() {
        assert!(MapBuf::open(file_of(b"")).is_err());
        assert!(MapBuf::open(file_of(b"tiny")).is_ok());
        let (read, _write) = nix::unistd::pipe().unwrap();
        assert!(MapBuf::open(File::from(read)).is_err());
    }

    #[test]
    fn windows_move_over_the_whole_file() {
        let bytes: Vec<u8> = (0..WINDOW * 2 + 1000).map(|i| (i % 251) as u8).collect();
        let mut m = MapBuf::open(file_of(&bytes)).unwrap();
        let mut seen = Vec::new();
        let step = 100_003;
        while m.fill(step).unwrap() {
            seen.extend_from_slice(m.slice(m.position(), step));
            m.consume(step);
        }
        // The tail shorter than a step is there but not enough.
        let tail = m.available();
        seen.extend_from_slice(m.data());
        assert_eq!(seen.len(), bytes.len());
        assert!(tail < step);
        assert_eq!(seen, bytes);
    }

    #[test]
    fn a_window_holds_a_record_larger_than_window() {
        let bytes = vec![7u8; WINDOW + 5000];
        let mut m = MapBuf::open(file_of(&bytes)).unwrap();
        m.consume(10);
        assert!(m.fill(WINDOW + 4990).unwrap());
        assert_eq!(m.data().len(), WINDOW + 4990);
        assert!(!m.fill(WINDOW + 4991).unwrap());
    }

    #[test]
    fn offsets_are_found_only_inside_the_window() {
        let m = MapBuf::open(file_of(&vec![1u8; 100_000])).unwrap();
        let w = m.window().unwrap();
        assert_eq!(w.offset_of(&w.bytes()[500..600]), Some(500));
        assert_eq!(w.offset_of(&w.bytes()[99_990..]), Some(99_990));
        assert_eq!(w.offset_of(b"elsewhere"), None);
    }

    #[test]
    fn a_growing_file_is_followed() {
        let mut f = file_of(&vec![3u8; 70_000]);
        let mut m = MapBuf::open(f.try_clone().unwrap()).unwrap();
        m.consume(69_990);
        assert!(!m.fill(20).unwrap());
        f.write_all(&[4u8; 30]).unwrap();
        assert!(m.fill(20).unwrap());
        assert_eq!(&m.data()[8..12], &[3, 3, 4, 4]);
    }
}
