//! `--capture-method af-packet`: a worker that captures for itself. It holds
//! one socket of every interface's fanout group ([`FanoutSocket`]), and
//! decodes and analyses each frame where the kernel put it, so no thread
//! or queue sits between the ring and the engine. The kernel's fanout
//! program shards as [`crate::flow::shard::Sharder`] does.
//!
//! A member whose socket fails (the interface went away) reopens it with
//! back-off, as a capture thread does; while an interface's group is not
//! whole, its other members take nothing (a group shards by its member
//! count, so they would get flows another worker holds).

use super::capture::{Backoff, MAX_BACKOFF};
use super::privilege;
use super::worker::{ChannelSink, Published, Saved};
use crate::decode::decode;
use crate::engine::Engine;
use crate::event::Event;
use crate::metrics::{CaptureCounters, Metrics};
use crate::source::afpacket::{accept_all, FanoutSocket, SocketOptions};
use crate::source::bpf;
use crate::source::live::{capture_clock, LiveOptions};
use crate::source::{LinkType, SourceError};
use crossbeam_channel::Sender;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Blocks taken from one socket before the next socket's turn.
const BLOCK_BUDGET: usize = 4;
/// How long to wait for a block when every ring is empty.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How often the engine gets the capture clock (idle flows expire).
const TICK_EVERY: Duration = Duration::from_millis(250);
/// How often the engine's counters and the kernel's drops are published.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// One interface's fanout group: how many members it has, how many are in.
struct Group {
    pub interface: String,
    pub members: usize,
    pub joined: AtomicUsize,
    pub options: SocketOptions,
    pub counters: CaptureCounters,
}

impl Group {
    fn whole(&self) -> bool {
        self.joined.load(Ordering::Relaxed) == self.members
    }
}

/// This worker's socket of one group.
struct Member {
    group: Arc<Group>,
    socket: Option<FanoutSocket>,
    backoff: Backoff,
    retry_at: Instant,
    opened_at: Instant,
    last_error: String,
    /// Counted since the last publish.
    packets: u64,
    bytes: u64,
    drops: u64,
}

impl Member {
    /// A member around a socket already in the group (counted in `joined`).
    fn new(group: Arc<Group>, socket: FanoutSocket) -> Member {
        let now = Instant::now();
        Member {
            group,
            socket: Some(socket),
            backoff: Backoff::default(),
            retry_at: now,
            opened_at: now,
            last_error: String::new(),
            packets: 0,
            bytes: 0,
            drops: 0,
        }
    }

    /// Arms the socket once its group is whole, disarms it while not.
    fn follow_group(&mut self) -> Result<(), SourceError> {
        let whole = self.group.whole();
        match &mut self.socket {
            Some(s) if whole && !s.armed() => {
                s.arm()?;
                self.group.counters.up.set(1);
            }
            Some(s) if !whole && s.armed() => s.disarm()?,
            _ => {}
        }
        Ok(())
    }

    /// Drops a socket that failed. The interface's loss is logged (and its
    /// reopening counted) once, by the first member to lose it.
    fn lose(&mut self, e: &SourceError) {
        self.last_error = e.to_string();
        self.publish();
        self.socket = None;
        let g = &self.group;
        if g.joined.fetch_sub(1, Ordering::Relaxed) == g.members {
            tracing::warn!(interface = %g.interface, error = %e,
                "capture lost; reopening it with back-off");
        }
        g.counters.up.set(0);
        if self.opened_at.elapsed() >= MAX_BACKOFF {
            self.backoff = Backoff::default();
        }
        self.retry_at = Instant::now() + self.backoff.next_wait();
    }

    fn reopen(&mut self) {
        if self.socket.is_some() || Instant::now() < self.retry_at {
            return;
        }
        let g = &self.group;
        match privilege::with_net_raw(|| FanoutSocket::open(&g.interface, &g.options)) {
            Ok(s) => {
                if g.joined.fetch_add(1, Ordering::Relaxed) + 1 == g.members {
                    tracing::info!(interface = %g.interface, "capture reopened");
                    g.counters.restarts.inc();
                }
                self.socket = Some(s);
                self.opened_at = Instant::now();
            }
            Err(e) => {
                // Once per kind of failure, not once per retry.
                let e = e.to_string();
                if e != self.last_error {
                    tracing::warn!(interface = %g.interface, error = %e,
                        "cannot reopen the capture; retrying");
                    self.last_error = e;
                }
                self.retry_at = Instant::now() + self.backoff.next_wait();
            }
        }
    }

    fn publish(&mut self) {
        let c = &self.group.counters;
        c.received_packets.inc_by(std::mem::take(&mut self.packets));
        c.received_bytes.inc_by(std::mem::take(&mut self.bytes));
        if let Some(total) = self.socket.as_mut().and_then(|s| s.drops().ok()) {
            c.dropped_kernel.inc_by(total.saturating_sub(self.drops));
            self.drops = total;
        }
    }
}

struct AfWorker {
    engine: Engine,
    members: Vec<Member>,
    events: ChannelSink,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
    /// How long the kernel holds a partly filled block.
    block_timeout: Duration,
}

impl AfWorker {
    /// Captures and analyses until stopped (then drains what the rings
    /// still hold), then ends every open flow.
    fn run(mut self) -> Saved {
        let mut published = Published::default();
        let mut index = 0u64;
        let mut next_tick = Instant::now() + TICK_EVERY;
        let mut next_publish = Instant::now() + PUBLISH_EVERY;
        let mut drain_until: Option<Instant> = None;
        loop {
            let n = self.read_all(&mut index);
            let now = Instant::now();
            if now >= next_tick {
                self.engine.advance(capture_clock(), &mut self.events);
                next_tick = now + TICK_EVERY;
            }
            if now >= next_publish {
                self.members.iter_mut().for_each(Member::publish);
                published.publish(&self.engine, &self.metrics);
                // A socket that failed while others kept this one busy.
                self.wait(Duration::ZERO);
                self.members.iter_mut().for_each(Member::reopen);
                next_publish = now + PUBLISH_EVERY;
            }
            if drain_until.is_none() && self.stop.load(Ordering::Relaxed) {
                // A block the kernel has not retired yet shows up within
                // its timeout.
                drain_until = Some(now + self.block_timeout * 2 + Duration::from_millis(20));
            }
            match drain_until {
                Some(t) if now >= t => break,
                _ if n == 0 => self.wait(if drain_until.is_some() {
                    Duration::from_millis(10)
                } else {
                    IDLE_WAIT
                }),
                _ => {}
            }
        }
        for m in &mut self.members {
            m.publish();
            m.group.counters.up.set(0);
        }
        self.engine.finish(&mut self.events);
        published.publish(&self.engine, &self.metrics);
        self.engine.take_saved()
    }

    /// One turn over every socket; returns the frames read.
    fn read_all(&mut self, index: &mut u64) -> usize {
        let mut frames = 0;
        for (i, m) in self.members.iter_mut().enumerate() {
            if let Err(e) = m.follow_group() {
                m.lose(&e);
                continue;
            }
            let Some(socket) = m.socket.as_mut() else {
                continue;
            };
            self.engine.set_input(u16::try_from(i).unwrap_or(u16::MAX));
            let (engine, events) = (&mut self.engine, &mut self.events);
            let (packets, bytes) = (&mut m.packets, &mut m.bytes);
            frames += socket.dispatch(BLOCK_BUDGET, |frame| {
                *index += 1;
                *packets += 1;
                *bytes += u64::from(frame.orig_len);
                engine.process_decoded(frame, decode(frame), *index, events);
            });
        }
        frames
    }

    /// Waits for a block on any socket; a socket that failed is dropped
    /// for reopening.
    fn wait(&mut self, timeout: Duration) {
        let open: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].socket.is_some())
            .collect();
        if open.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        let failed = {
            let fds: Vec<_> = open
                .iter()
                .filter_map(|&i| self.members[i].socket.as_ref().map(AsFd::as_fd))
                .collect();
            FanoutSocket::wait(&fds, timeout)
        };
        if let Err((k, e)) = failed {
            if let Some(&i) = open.get(k) {
                self.members[i].lose(&e);
            }
        }
    }
}

/// An interface's sockets, one per worker, each in the group and disarmed.
pub struct Interface {
    pub name: String,
    pub options: SocketOptions,
    pub sockets: Vec<FanoutSocket>,
}

/// Opens `workers` sockets on each interface (needs CAP_NET_RAW). The
/// ring given per interface is shared among its sockets.
pub fn open(
    interfaces: &[String],
    live: &LiveOptions,
    workers: usize,
    seed: u32,
) -> Result<Vec<Interface>, SourceError> {
    let filter = match &live.filter {
        Some(expr) => bpf::socket_filter(expr, LinkType::Ethernet, live.snaplen)?,
        None => accept_all(live.snaplen),
    };
    let fanout = crate::flow::shard::fanout::program(seed);
    let group_base = std::process::id() as u16;
    interfaces
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let options = SocketOptions {
                ring_bytes: live.buffer_bytes as usize / workers.max(1),
                block_timeout_ms: if live.immediate {
                    1
                } else {
                    live.read_timeout_ms
                },
                promiscuous: live.promiscuous,
                group: group_base.wrapping_add(i as u16),
                fanout: fanout.clone(),
                filter: filter.clone(),
            };
            // In worker order: the group's member i is worker i's socket,
            // as `Sharder::worker_of_key` (the state file) expects.
            let sockets = (0..workers)
                .map(|_| FanoutSocket::open(name, &options))
                .collect::<Result<_, _>>()?;
            Ok(Interface {
                name: name.clone(),
                options,
                sockets,
            })
        })
        .collect()
}

/// What the af-packet workers start from.
pub struct Start {
    pub interfaces: Vec<Interface>,
    /// By interface.
    pub counters: Vec<CaptureCounters>,
    pub engines: Vec<Engine>,
    pub events: Sender<Event>,
    pub metrics: Metrics,
    pub stop: Arc<AtomicBool>,
    pub block_timeout: Duration,
}

/// Starts one worker per engine, worker `w` with socket `w` of every
/// interface.
pub fn spawn(start: Start) -> Vec<JoinHandle<Saved>> {
    let mut members: Vec<Vec<Member>> = start.engines.iter().map(|_| Vec::new()).collect();
    for (iface, counters) in start.interfaces.into_iter().zip(start.counters) {
        let group = Arc::new(Group {
            interface: iface.name,
            members: iface.sockets.len(),
            joined: AtomicUsize::new(iface.sockets.len()),
            options: iface.options,
            counters,
        });
        for (w, socket) in iface.sockets.into_iter().enumerate() {
            if let Some(m) = members.get_mut(w) {
                m.push(Member::new(group.clone(), socket));
            }
        }
    }
    start
        .engines
        .into_iter()
        .zip(members)
        .enumerate()
        .map(|(w, (engine, members))| {
            let worker = AfWorker {
                engine,
                members,
                events: ChannelSink(start.events.clone()),
                metrics: start.metrics.clone(),
                stop: start.stop.clone(),
                block_timeout: start.block_timeout,
            };
            super::spawn(&format!("ew-worker-{w}"), move || worker.run())
        })
        .collect()
}
