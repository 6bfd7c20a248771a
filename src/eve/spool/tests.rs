use super::fault::{event, ids, Disk};
use super::*;

fn spool_of<T: Target>(out: T, records: std::ops::Range<u64>) -> Spool<T> {
    let mut spool = Spool::new(out, 0);
    for n in records {
        spool.push(&event(n));
    }
    spool
}

fn is_enospc(e: &io::Error) -> bool {
    e.raw_os_error() == Some(28)
}

#[test]
fn a_full_file_ends_at_its_last_whole_record_and_takes_the_rest_later() {
    let mut spool = spool_of(Disk::file(1000), 0..20);
    let e = spool.write_pending().unwrap_err();
    assert!(is_enospc(&e), "{e}");
    let disk = spool.get_mut();
    assert!(disk.data.ends_with(b"\n"), "cut mid-record");
    let written = disk.records().len() as u64;
    assert!(written > 0 && written < 20, "{written} written");
    assert_eq!(spool.pending_records(), 20 - written);

    // Still full: nothing changes, nothing is cut in two.
    assert!(spool.write_pending().is_err());
    assert_eq!(spool.get_mut().records().len() as u64, written);

    spool.push(&event(20));
    spool.get_mut().space = usize::MAX;
    spool.write_pending().unwrap();
    assert_eq!(spool.pending_records(), 0);
    assert_eq!(ids(&spool.get_mut().records()), (0..21).collect::<Vec<_>>());
}

#[test]
fn a_stream_gets_the_rest_of_its_started_record_before_anything_else() {
    let mut spool = spool_of(Disk::stream(1000), 0..20);
    assert!(spool.write_pending().is_err());
    let complete = spool.get_mut().data.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(
        !spool.get_mut().data.ends_with(b"\n"),
        "the test wants a cut record"
    );
    // The started record counts as pending until its rest is written.
    assert_eq!(spool.pending_records(), 20 - complete);

    spool.push(&event(20));
    spool.get_mut().space = usize::MAX;
    spool.write_pending().unwrap();
    assert_eq!(ids(&spool.get_mut().records()), (0..21).collect::<Vec<_>>());
}

#[test]
fn a_file_that_cannot_be_cut_is_finished_as_a_stream() {
    let mut disk = Disk::file(1000);
    disk.cut_fails = true;
    let mut spool = spool_of(disk, 0..20);
    assert!(spool.write_pending().is_err());
    assert!(!spool.get_mut().data.ends_with(b"\n"));
    spool.get_mut().space = usize::MAX;
    spool.write_pending().unwrap();
    assert_eq!(ids(&spool.get_mut().records()), (0..20).collect::<Vec<_>>());
}

#[test]
fn a_new_output_begins_with_a_whole_record() {
    let mut spool = spool_of(Disk::stream(1000), 0..20);
    assert!(spool.write_pending().is_err());
    let old = spool.get_mut().data.iter().filter(|&&b| b == b'\n').count() as u64;
    *spool.get_mut() = Disk::file(usize::MAX);
    assert_eq!(spool.reopened(), 1, "the started record is lost");
    spool.write_pending().unwrap();
    let new = ids(&spool.get_mut().records());
    assert_eq!(new.first(), Some(&(old + 1)));
    assert_eq!(new.last(), Some(&19));
}

#[test]
fn discard_counts_what_it_drops() {
    let mut spool = spool_of(Disk::file(1000), 0..20);
    assert!(spool.write_pending().is_err());
    let written = spool.get_mut().records().len() as u64;
    assert_eq!(spool.discard(), 20 - written);
    assert_eq!((spool.pending_records(), spool.pending_bytes()), (0, 0));
}

#[test]
fn many_small_failures_still_leave_only_whole_records() {
    // Space comes back a little at a time: every write is short.
    for file in [true, false] {
        let mut spool = spool_of(if file { Disk::file(0) } else { Disk::stream(0) }, 0..50);
        let mut n = 50;
        while spool.write_pending().is_err() {
            spool.get_mut().space += 500;
            if file {
                assert!(spool.get_mut().data.is_empty() || spool.get_mut().data.ends_with(b"\n"));
                spool.get_mut().records();
            }
            spool.push(&event(n));
            n += 1;
            assert!(n < 10_000, "never finished");
        }
        assert_eq!(
            ids(&spool.get_mut().records()),
            (0..n).collect::<Vec<_>>(),
            "file {file}"
        );
    }
}

/// A real file on a disk of `space` bytes.
struct Small {
    file: File,
    space: u64,
}

impl Write for Small {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = self.file.metadata()?.len();
        let room = self.space.saturating_sub(len) as usize;
        if room == 0 {
            return Err(io::Error::from_raw_os_error(28));
        }
        self.file.write(&buf[..room.min(buf.len())])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Target for Small {
    fn end(&mut self) -> Option<u64> {
        self.file.end()
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        self.file.cut(len)
    }
}

#[test]
fn a_real_file_is_cut_back_and_continued_without_a_hole() {
    for append in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eve.json");
        std::fs::write(&path, "").unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .append(append)
            .open(&path)
            .unwrap();
        let mut spool = spool_of(Small { file, space: 1000 }, 0..20);
        assert!(spool.write_pending().is_err());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n') && text.len() < 1000, "{text:?}");
        spool.get_mut().space = u64::MAX;
        spool.write_pending().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        assert_eq!(
            ids(&records),
            (0..20).collect::<Vec<_>>(),
            "append {append}"
        );
    }
}
