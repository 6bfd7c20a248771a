//! The per-window session statistic: the encrypted phase is cut into
//! windows of [`WINDOW_UNITS`] SSH messages (or TCP segments where message
//! boundaries are hidden); each window keeps, per direction, message count,
//! bytes, the dominant sizes, keystroke-sized messages, echoed keystrokes
//! and bare ACKs, and gets a class label. Windows form a bounded timeline
//! (consecutive windows of one class are merged). O(1) work per message.

use crate::analyzer::Dir;
use crate::time::Timestamp;
use serde::Serialize;

/// Messages per window.
pub const WINDOW_UNITS: u32 = 64;
/// Timeline entries kept; beyond it the oldest entries after the first
/// quarter are dropped (and counted).
pub const MAX_TIMELINE: usize = 48;

/// Frequent sizes of one direction (Misra-Gries summary, 6 counters: any
/// size with more than 1/7 of the messages is guaranteed to be present).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TopSizes {
    slots: [(u32, u32); 6],
}

impl TopSizes {
    fn add(&mut self, size: u32) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.1 > 0 && s.0 == size) {
            slot.1 = slot.1.saturating_add(1);
        } else if let Some(slot) = self.slots.iter_mut().find(|s| s.1 == 0) {
            *slot = (size, 1);
        } else {
            for slot in &mut self.slots {
                slot.1 -= 1;
            }
        }
    }

    /// The dominant size and its (lower-bound) count; ties go to the
    /// smaller size.
    fn top(&self) -> Option<(u32, u32)> {
        self.slots
            .iter()
            .filter(|s| s.1 > 0)
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .copied()
    }
}

/// One direction of one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirWindow {
    pub units: u32,
    pub bytes: u64,
    pub bare_acks: u32,
    /// Messages of a keystroke size (direct or tunnelled).
    pub keystrokes: u32,
    /// Keystroke-sized messages of this side echoed by the other side.
    pub echoed: u32,
    /// Keepalive-sized messages.
    pub keepalives: u32,
    top: TopSizes,
}

impl DirWindow {
    fn merge(&mut self, o: &DirWindow) {
        self.units = self.units.saturating_add(o.units);
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.bare_acks = self.bare_acks.saturating_add(o.bare_acks);
        self.keystrokes = self.keystrokes.saturating_add(o.keystrokes);
        self.echoed = self.echoed.saturating_add(o.echoed);
        self.keepalives = self.keepalives.saturating_add(o.keepalives);
        if o.top.top().map(|t| t.1) > self.top.top().map(|t| t.1) {
            self.top = o.top;
        }
    }
}

/// One window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub first_pkt: u64,
    pub last_pkt: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub dirs: [DirWindow; 2],
    /// Consecutive windows of the same class folded into this entry.
    pub windows: u32,
}

/// What one message contributes to a window.
#[derive(Copy, Clone, Debug)]
pub struct UnitInfo {
    pub dir: Dir,
    pub size: u32,
    pub idx: u64,
    pub ts: Timestamp,
    pub keystroke: bool,
    /// This message echoes a keystroke of the other side.
    pub echo: bool,
    pub keepalive: bool,
}

/// Session class of a window.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The originator types, the responder echoes: a normal shell.
    InteractiveForward,
    /// The responder types, the originator echoes: a reverse shell.
    InteractiveReverse,
    InteractiveMixed,
    /// Bulk from originator to responder.
    Upload,
    /// Bulk from responder to originator.
    Download,
    BulkBoth,
    Keepalive,
    Mixed,
}

/// Bytes in a window's main direction for it to count as bulk.
pub const BULK_BYTES: u64 = 32 * 1024;

impl Window {
    /// The class label, from echoes, keystrokes, bytes and keepalives.
    pub fn class(&self) -> Class {
        let [o, r] = &self.dirs;
        let units = o.units + r.units;
        let echoes = o.echoed + r.echoed;
        let keys = o.keystrokes + r.keystrokes;
        if echoes >= 4 && keys * 5 >= units * 2 {
            // The typist's keystrokes are echoed; the typist also sends the
            // bare ACKs for the echoes.
            if r.echoed >= 2 * o.echoed.max(1) || (r.echoed > o.echoed && r.bare_acks > o.bare_acks)
            {
                return Class::InteractiveReverse;
            }
            if o.echoed >= 2 * r.echoed.max(1) || (o.echoed > r.echoed && o.bare_acks > r.bare_acks)
            {
                return Class::InteractiveForward;
            }
            return Class::InteractiveMixed;
        }
        let (up, down) = (o.bytes, r.bytes);
        if up >= BULK_BYTES && up >= 8 * down {
            return Class::Upload;
        }
        if down >= BULK_BYTES && down >= 8 * up {
            return Class::Download;
        }
        if up + down >= 2 * BULK_BYTES {
            return Class::BulkBoth;
        }
        if units > 0 && o.keepalives + r.keepalives == units {
            return Class::Keepalive;
        }
        Class::Mixed
    }

    fn is_empty(&self) -> bool {
        self.dirs.iter().all(|d| d.units == 0)
    }
}

/// The running window and the timeline of closed ones.
#[derive(Debug, Default)]
pub struct Timeline {
    current: Window,
    entries: Vec<(Class, Window)>,
    /// Windows closed so far.
    pub closed: u32,
    /// Timeline entries dropped to stay bounded.
    pub dropped: u32,
}

impl Timeline {
    /// Adds one message; returns the class of a window it closed.
    pub fn add(&mut self, u: &UnitInfo) -> Option<(Class, Window)> {
        let w = &mut self.current;
        if w.is_empty() {
            w.first_pkt = u.idx;
            w.start = u.ts;
        }
        w.last_pkt = u.idx;
        w.end = u.ts;
        let d = &mut w.dirs[u.dir.index()];
        d.units = d.units.saturating_add(1);
        d.bytes = d.bytes.saturating_add(u64::from(u.size));
        d.keystrokes = d.keystrokes.saturating_add(u32::from(u.keystroke));
        d.keepalives = d.keepalives.saturating_add(u32::from(u.keepalive));
        d.top.add(u.size);
        if u.echo {
            w.dirs[u.dir.reverse().index()].echoed =
                w.dirs[u.dir.reverse().index()].echoed.saturating_add(1);
        }
        if w.dirs[0].units + w.dirs[1].units >= WINDOW_UNITS {
            return self.close();
        }
        None
    }

    /// Counts a bare ACK (no payload, only the ACK flag).
    pub fn bare_ack(&mut self, dir: Dir) {
        self.current.dirs[dir.index()].bare_acks =
            self.current.dirs[dir.index()].bare_acks.saturating_add(1);
    }

    /// The window being filled.
    pub fn current(&self) -> &Window {
        &self.current
    }

    /// Closes the running window (at flow end, or when full).
    pub fn close(&mut self) -> Option<(Class, Window)> {
        if self.current.is_empty() {
            return None;
        }
        let mut w = std::mem::take(&mut self.current);
        w.windows = 1;
        let class = w.class();
        self.closed = self.closed.saturating_add(1);
        match self.entries.last_mut() {
            Some((c, last)) if *c == class => {
                last.last_pkt = w.last_pkt;
                last.end = w.end;
                last.windows = last.windows.saturating_add(1);
                for (a, b) in last.dirs.iter_mut().zip(w.dirs.iter()) {
                    a.merge(b);
                }
            }
            _ => {
                if self.entries.len() >= MAX_TIMELINE {
                    self.entries.remove(MAX_TIMELINE / 4);
                    self.dropped = self.dropped.saturating_add(1);
                }
                self.entries.push((class, w.clone()));
            }
        }
        Some((class, w))
    }

    pub fn entries(&self) -> &[(Class, Window)] {
        &self.entries
    }

    /// The timeline as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let entries: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|(class, w)| {
                serde_json::json!({
                    "class": class,
                    "first_pkt": w.first_pkt,
                    "last_pkt": w.last_pkt,
                    "start": w.start,
                    "end": w.end,
                    "windows": w.windows,
                    "toserver": dir_json(&w.dirs[0]),
                    "toclient": dir_json(&w.dirs[1]),
                })
            })
            .collect();
        serde_json::Value::Array(entries)
    }
}

fn dir_json(d: &DirWindow) -> serde_json::Value {
    let (top_size, top_count) = d.top.top().unwrap_or((0, 0));
    serde_json::json!({
        "units": d.units,
        "bytes": d.bytes,
        "top_size": top_size,
        "top_count": top_count,
        "keystrokes": d.keystrokes,
        "echoed": d.echoed,
        "keepalives": d.keepalives,
        "bare_acks": d.bare_acks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(dir: Dir, size: u32, idx: u64, keystroke: bool, echo: bool) -> UnitInfo {
        UnitInfo {
            dir,
            size,
            idx,
            ts: Timestamp::from_secs(idx),
            keystroke,
            echo,
            keepalive: false,
        }
    }

    /// Feeds `n` keystroke/echo pairs typed by `typist`, with the typist
    /// acknowledging each echo.
    fn typing(t: &mut Timeline, typist: Dir, size: u32, n: u64) -> Vec<(Class, Window)> {
        let mut closed = Vec::new();
        for i in 0..n {
            closed.extend(t.add(&unit(typist, size, 3 * i, true, false)));
            closed.extend(t.add(&unit(typist.reverse(), size, 3 * i + 1, true, true)));
            t.bare_ack(typist);
        }
        closed
    }

    #[test]
    fn typing_side_by_echoes_and_acks() {
        for (typist, class) in [
            (Dir::ToServer, Class::InteractiveForward),
            (Dir::ToClient, Class::InteractiveReverse),
        ] {
            let mut t = Timeline::default();
            let closed = typing(&mut t, typist, 76, 32);
            assert_eq!(closed.len(), 1);
            let (c, w) = &closed[0];
            assert_eq!(*c, class);
            let d = &w.dirs[typist.index()];
            // The 32nd echo closes the window; its ACK falls into the next.
            assert_eq!(
                (d.units, d.echoed, d.bare_acks, d.top.top()),
                (32, 32, 31, Some((76, 32)))
            );
            assert_eq!(w.dirs[typist.reverse().index()].bare_acks, 0);
        }
    }

    #[test]
    fn bulk_and_keepalive_classes() {
        let mut t = Timeline::default();
        let mut last = None;
        for i in 0..64 {
            let dir = if i % 4 == 0 {
                Dir::ToServer
            } else {
                Dir::ToClient
            };
            let size = if dir == Dir::ToServer { 36 } else { 1448 };
            last = t.add(&unit(dir, size, i, false, false)).or(last);
        }
        assert_eq!(last.unwrap().0, Class::Download);
        for i in 0..20 {
            let mut u = unit(Dir::ToServer, 52, 100 + i, false, false);
            u.keepalive = true;
            t.add(&u);
        }
        assert_eq!(t.close().unwrap().0, Class::Keepalive);
        assert!(t.close().is_none());
        assert_eq!(t.entries().len(), 2);
    }

    #[test]
    fn timeline_merges_and_stays_bounded() {
        let mut t = Timeline::default();
        typing(&mut t, Dir::ToServer, 36, 32 * 3);
        assert_eq!(t.entries().len(), 1);
        assert_eq!(t.entries()[0].1.windows, 3);
        for i in 0..200u64 {
            let typist = if i % 2 == 0 {
                Dir::ToServer
            } else {
                Dir::ToClient
            };
            typing(&mut t, typist, 36, 32);
        }
        assert_eq!(t.entries().len(), MAX_TIMELINE);
        assert!(t.dropped > 0);
        assert_eq!(t.closed, 203);
        let json = t.to_json();
        assert_eq!(json.as_array().unwrap().len(), MAX_TIMELINE);
    }

    #[test]
    fn top_sizes_keeps_the_majority() {
        let mut top = TopSizes::default();
        for i in 0..100u32 {
            top.add(if i % 2 == 0 { 36 } else { 100 + i });
        }
        assert_eq!(top.top().unwrap().0, 36);
    }
}
