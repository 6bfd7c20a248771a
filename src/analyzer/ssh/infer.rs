//! Inferences from the sizes and timing of encrypted messages: login
//! outcome, remote-forward request, reverse and nested sessions, typing
//! side, file transfer and keepalive-only tunnels. Each lands in
//! [`SshFacts`] with the packets it rests on. All work is O(1) per message.

use super::inner::{self, Candidate, InnerAuth, Opens, Step, Verdict};
use super::model::{Model, Unit};
use super::sizes::Suite;
use super::window::{Class, Timeline, UnitInfo, Window};
use crate::analyzer::{AuthOutcome, Dir, Evidence, SshFacts};
use crate::time::{Timestamp, NANOS_PER_SEC};

/// Payloads of `USERAUTH_SUCCESS`, `SERVICE_REQUEST`, `CHANNEL_OPEN
/// "session"`, `no-more-sessions@openssh.com`.
const USERAUTH_SUCCESS: u32 = 1;
const SERVICE_REQUEST: u32 = 17;
const SESSION_OPEN: u32 = 24;
const NO_MORE_SESSIONS: u32 = 34;
/// `GLOBAL_REQUEST "tcpip-forward"`: 1 + 4+13 + 1 + 4+addr + 4.
const TCPIP_FORWARD: (u32, u32) = (27, 27 + 255);
/// `streamlocal-forward@openssh.com`: 1 + 4+31 + 1 + 4+path.
const STREAMLOCAL_FORWARD: (u32, u32) = (41, 41 + 108);
/// REQUEST_SUCCESS without and with the allocated port.
const REQUEST_SUCCESS: [u32; 2] = [1, 5];
const CHANNEL_OPEN_CONFIRMATION: u32 = 17;

/// Keystroke/echo pairs in a row that make a typing run, and pairs in runs
/// needed for an interactive verdict.
const RUN_MIN: u32 = 4;
const TYPING_PAIRS: u32 = 8;
/// An echo comes within this time of its keystroke.
const ECHO_NANOS: u64 = 1_500_000_000;
/// Messages after which the login is assumed done when no success message
/// was isolated.
const NO_LOGIN_SEEN: u32 = 40;

pub struct Inference {
    pub model: Model,
    unreliable: bool,
    delayed_compression: bool,
    auth: Auth,
    setup: Option<Setup>,
    opens: Opens,
    candidate: Option<Candidate>,
    inner_auth: Option<(InnerAuth, bool)>,
    /// Inner sessions found: reverse, nested.
    pub inner_sessions: [u32; 2],
    pub nested_login: AuthOutcome,
    typing: Typing,
    keepalive: Keepalive,
    pub timeline: Timeline,
    units: u32,
    post_auth_bytes: [u64; 2],
    pub bare_acks: [u32; 2],
}

impl Inference {
    pub fn new(model: Model, delayed_compression: bool) -> Inference {
        Inference {
            model,
            unreliable: false,
            delayed_compression,
            auth: Auth::default(),
            setup: None,
            opens: Opens::default(),
            candidate: None,
            inner_auth: None,
            inner_sessions: [0; 2],
            nested_login: AuthOutcome::Unknown,
            typing: Typing::default(),
            keepalive: Keepalive::default(),
            timeline: Timeline::default(),
            units: 0,
            post_auth_bytes: [0; 2],
            bare_acks: [0; 2],
        }
    }

    /// Sizes are no longer trustworthy: size-based inferences stop.
    pub fn set_unreliable(&mut self) {
        self.unreliable = true;
    }

    pub fn bare_ack(&mut self, dir: Dir) {
        self.bare_acks[dir.index()] += 1;
        self.timeline.bare_ack(dir);
        self.typing.bare_ack(dir);
    }

    /// Feeds one encrypted message; returns whether `f` changed. Sets
    /// `compression` when delayed compression starts.
    pub fn on_unit(&mut self, u: Unit, f: &mut SshFacts) -> Changes {
        let mut ch = Changes::default();
        self.units += 1;
        let trusted = !self.unreliable;
        let m = &self.model;
        if u.dir == m.client {
            self.auth.on_client(&u, m.suite(u.dir));
        } else if let Some(ev) = self.auth.on_server(&u, m.suite(u.dir)) {
            if trusted {
                f.auth = AuthOutcome::Success;
                f.auth_evidence = Some(ev);
                ch.facts = true;
            }
            self.setup = Some(Setup::new(u.ts));
            if self.delayed_compression {
                ch.compression_started = true;
                self.unreliable = true;
            }
        }
        let trusted = !self.unreliable;
        if self.auth.success.is_some() {
            self.post_auth_bytes[u.dir.index()] += u64::from(u.size);
        }
        ch.facts |= self.remote_forward(&u, f, trusted);
        if self.after_login() {
            ch.facts |= self.inner_sessions(&u, f, trusted);
        }
        let m = &self.model;
        let (keystroke, echo) = self.typing.on_unit(&u, m);
        let dm = m.dir(u.dir);
        let keepalive = dm.is_keepalive_req(u.size) || dm.is_keepalive_rep(u.size);
        if self.setup.as_ref().is_some_and(|s| s.done)
            || (self.auth.success.is_none() && self.units > NO_LOGIN_SEEN)
        {
            self.keepalive.on_unit(&u, m);
            ch.facts |= self.keepalive.update(f, trusted);
        }
        let info = UnitInfo {
            dir: u.dir,
            size: u.size,
            idx: u.idx,
            ts: u.ts,
            keystroke,
            echo,
            keepalive,
        };
        if let Some((class, w)) = self.timeline.add(&info) {
            ch.facts |= self.on_window(class, &w, f);
        }
        if echo && trusted {
            ch.facts |= self.typing.verdicts(f, &self.model);
        }
        ch
    }

    /// Channels exist only after login; without an isolated success
    /// message, assume login after this many messages.
    fn after_login(&self) -> bool {
        self.auth.success.is_some() || self.units > NO_LOGIN_SEEN
    }

    fn remote_forward(&mut self, u: &Unit, f: &mut SshFacts, trusted: bool) -> bool {
        let mut changed = false;
        if let Some(setup) = self.setup.as_mut() {
            if let Some(ev) = setup.on_unit(u, &self.model) {
                if trusted && f.remote_forward.is_none() {
                    f.remote_forward = Some(ev);
                    changed = true;
                }
            }
        }
        changed
    }

    fn inner_sessions(&mut self, u: &Unit, f: &mut SshFacts, trusted: bool) -> bool {
        let m = &self.model;
        let mut changed = false;
        if let Some(o) = self.opens.on_unit(u, m) {
            if o.opener == m.server()
                && o.payload_hi >= inner::FORWARDED_TCPIP_MIN
                && trusted
                && f.remote_forward.is_none()
            {
                let summary = format!(
                    "the SSH server opened a forwarded-tcpip-sized channel ({} bytes, confirmed by \
                     the client): a connection arrived on a remote (-R) forward",
                    self.model.suite(o.opener).wire(o.payload_hi)
                );
                f.remote_forward = Some(Evidence::new(
                    summary,
                    &[o.open.0, o.confirm.0],
                    o.open.1,
                    o.confirm.1,
                ));
                changed = true;
            }
            self.candidate = Some(Candidate::new(o));
            return changed;
        }
        if let Some(c) = self.candidate.as_mut() {
            match c.on_unit(u, m) {
                Step::Continue => {}
                Step::Expired => self.candidate = None,
                Step::Decided(v) => {
                    self.candidate = None;
                    changed |= self.on_verdict(v, f, trusted);
                    return changed;
                }
            }
        }
        if let Some((ia, reverse)) = self.inner_auth.as_mut() {
            if let Some(ev) = ia.on_unit(u, &self.model) {
                if *reverse {
                    if trusted && f.reverse_login == AuthOutcome::Unknown {
                        f.reverse_login = AuthOutcome::Success;
                        if let Some(rs) = f.reverse_session.as_mut() {
                            rs.summary.push_str("; inner login succeeded: ");
                            rs.summary.push_str(&ev.summary);
                        }
                        changed = true;
                    }
                } else {
                    self.nested_login = AuthOutcome::Success;
                }
            }
        }
        changed
    }

    fn on_verdict(&mut self, v: Verdict, f: &mut SshFacts, trusted: bool) -> bool {
        let reverse = v.inner_server == Dir::ToServer;
        self.inner_sessions[usize::from(!reverse)] += 1;
        self.inner_auth = Some((InnerAuth::new(&v, v.evidence.first_ts), reverse));
        if !trusted {
            return false;
        }
        let slot = if reverse {
            &mut f.reverse_session
        } else {
            &mut f.nested_forward
        };
        if slot.is_none() {
            *slot = Some(v.evidence);
            return true;
        }
        false
    }

    /// Port forwarding shows as several client-opened channels or any
    /// server-opened one; bulk data then is not a file transfer.
    fn forwarding(&self) -> bool {
        let m = &self.model;
        self.opens.count[m.client.index()] >= 2 || self.opens.count[m.server().index()] >= 1
    }

    fn on_window(&mut self, class: Class, w: &Window, f: &mut SshFacts) -> bool {
        if f.file_transfer.is_some() || self.forwarding() {
            return false;
        }
        let (dir, name) = match class {
            Class::Upload => (Dir::ToServer, "upload (originator to responder)"),
            Class::Download => (Dir::ToClient, "download (responder to originator)"),
            _ => return false,
        };
        let d = &w.dirs[dir.index()];
        let o = &w.dirs[dir.reverse().index()];
        let summary = format!(
            "{name}: {} bytes in {} messages against {} bytes back, in a window of packets {}..{}, \
             no port-forward channels",
            d.bytes, d.units, o.bytes, w.first_pkt, w.last_pkt
        );
        f.file_transfer = Some(Evidence::new(
            summary,
            &[w.first_pkt, w.last_pkt],
            w.start,
            w.end,
        ));
        true
    }

    /// The flow ended: close the window and settle outcomes that need the
    /// whole session.
    pub fn finish(&mut self, last: Timestamp, f: &mut SshFacts) {
        if let Some((class, w)) = self.timeline.close() {
            self.on_window(class, &w, f);
        }
        let trusted = !self.unreliable;
        if f.auth == AuthOutcome::Unknown {
            let implied = f.remote_forward.is_some()
                || f.reverse_session.is_some()
                || f.nested_forward.is_some()
                || f.forward_interactive.is_some()
                || f.reverse_interactive.is_some();
            if let Some((outcome, ev)) = self.auth.finish(last, self.units, implied) {
                f.auth = outcome;
                f.auth_evidence = Some(ev);
            }
        }
        if let Some((ia, reverse)) = self.inner_auth.as_mut() {
            if let Some(ev) = ia.finish(last) {
                if *reverse && trusted && f.reverse_login == AuthOutcome::Unknown {
                    f.reverse_login = AuthOutcome::Failure;
                    if let Some(rs) = f.reverse_session.as_mut() {
                        rs.summary.push_str("; ");
                        rs.summary.push_str(&ev.summary);
                    }
                } else if !*reverse {
                    self.nested_login = AuthOutcome::Failure;
                }
            }
        }
        if f.reverse_session.is_some()
            && f.reverse_login == AuthOutcome::Unknown
            && f.reverse_interactive.is_some()
        {
            f.reverse_login = AuthOutcome::Success;
        }
        if trusted && f.keepalive_only.is_none() {
            self.keepalive.finish(f);
        }
        self.file_transfer_at_end(f);
    }

    fn file_transfer_at_end(&self, f: &mut SshFacts) {
        if f.file_transfer.is_some()
            || self.forwarding()
            || f.forward_interactive.is_some()
            || f.reverse_interactive.is_some()
        {
            return;
        }
        let [up, down] = self.post_auth_bytes;
        let (name, big, small) = if up >= down {
            ("upload (originator to responder)", up, down)
        } else {
            ("download (responder to originator)", down, up)
        };
        if big >= 8 * 1024 && 2 * big >= 3 * small {
            let summary = format!(
                "{name}: {big} bytes against {small} bytes after login, no typing, no \
                 port-forward channels"
            );
            let (first, last) = (self.auth.success.unwrap_or_default(), self.timeline_end());
            f.file_transfer = Some(Evidence::new(summary, &[first.0, last.0], first.1, last.1));
        }
    }

    fn timeline_end(&self) -> (u64, Timestamp) {
        self.timeline
            .entries()
            .last()
            .map(|(_, w)| (w.last_pkt, w.end))
            .unwrap_or_default()
    }

    /// Extra detail for the EVE record.
    pub fn to_json(&self) -> serde_json::Value {
        let m = &self.model;
        let keys = |d: Dir| {
            serde_json::json!({
                "direct": m.dir(d).key_direct(),
                "tunnelled": m.dir(d).key_tunnel_sizes(),
            })
        };
        serde_json::json!({
            "keystroke_sizes": {"toserver": keys(Dir::ToServer), "toclient": keys(Dir::ToClient)},
            "typing_pairs": {"toserver": self.typing.pairs[0], "toclient": self.typing.pairs[1]},
            "typing_runs": {"toserver": self.typing.runs[0], "toclient": self.typing.runs[1]},
            "bare_acks": {"toserver": self.bare_acks[0], "toclient": self.bare_acks[1]},
            "channel_opens": {"toserver": self.opens.count[0], "toclient": self.opens.count[1]},
            "inner_sessions": {"reverse": self.inner_sessions[0], "nested": self.inner_sessions[1]},
            "nested_login": self.nested_login,
            "auth_requests": self.auth.requests,
            "auth_failures": self.auth.failures,
            "keepalive_pairs": self.keepalive.pairs,
            "encrypted_units": self.units,
            "windows": self.timeline.closed,
            "timeline_dropped": self.timeline.dropped,
            "timeline": self.timeline.to_json(),
        })
    }
}

/// What one message changed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// The facts changed (bump the revision).
    pub facts: bool,
    /// Delayed (`zlib@openssh.com`) compression started with the login.
    pub compression_started: bool,
}

/// The outer login, from the server's replies to the client's requests.
#[derive(Debug, Default)]
struct Auth {
    client_units: u32,
    requests: u32,
    awaiting: bool,
    first: Option<(u64, Timestamp)>,
    last_request: Option<(u64, Timestamp)>,
    fail_size: Option<u32>,
    failures: u32,
    pkts: Vec<u64>,
    success: Option<(u64, Timestamp)>,
    accept_seen: bool,
}

impl Auth {
    fn on_client(&mut self, u: &Unit, s: &Suite) {
        self.client_units += 1;
        if self.success.is_some() {
            return;
        }
        if self.client_units == 1 {
            self.first = Some((u.idx, u.ts));
            self.push(u.idx);
            // SERVICE_REQUEST alone, or with the first request in one segment.
            if u.exact || u.size <= s.wire(SERVICE_REQUEST) {
                return;
            }
        }
        self.requests += 1;
        self.awaiting = true;
        self.last_request = Some((u.idx, u.ts));
    }

    fn on_server(&mut self, u: &Unit, s: &Suite) -> Option<Evidence> {
        if self.success.is_some() {
            return None;
        }
        if self.requests == 0 {
            self.accept_seen |= u.size == s.wire(SERVICE_REQUEST);
            return None;
        }
        let ok = s.wire(USERAUTH_SUCCESS);
        let coalesced = !u.exact
            && s.counts_messages()
            && self.fail_size.is_some_and(|f| f != u.size)
            && !s.is_single(u.size)
            && u.size
                .checked_sub(ok)
                .and_then(|rest| s.payload_range(rest))
                .is_some_and(|(_, hi)| hi >= 8);
        if u.size == ok || coalesced {
            self.success = Some((u.idx, u.ts));
            if let Some((idx, _)) = self.last_request {
                self.push(idx);
            }
            self.push(u.idx);
            let how = if coalesced {
                format!(
                    "a {}-byte server message holding USERAUTH_SUCCESS ({ok}) and one more message",
                    u.size
                )
            } else {
                format!("USERAUTH_SUCCESS ({ok} bytes)")
            };
            let summary = format!(
                "{how} after {} authentication request(s) and {} method-list failure(s)",
                self.requests, self.failures
            );
            let first = self.first.map_or(u.ts, |f| f.1);
            return Some(Evidence::new(summary, &self.pkts, first, u.ts));
        }
        if self.awaiting {
            let accept = s.wire(SERVICE_REQUEST);
            match self.fail_size {
                // A SERVICE_ACCEPT that arrived after a pipelined request.
                None if u.size == accept && !self.accept_seen => self.accept_seen = true,
                None if u.size <= s.wire(SERVICE_REQUEST + 256) => {
                    self.fail_size = Some(u.size);
                    self.failures = 1;
                    self.push(u.idx);
                }
                Some(fs) if fs == u.size => {
                    self.failures += 1;
                    self.push(u.idx);
                }
                _ => {}
            }
        }
        self.accept_seen |= u.size == s.wire(SERVICE_REQUEST);
        self.awaiting = false;
        None
    }

    /// The outcome at flow end when no success was seen.
    fn finish(
        &self,
        last: Timestamp,
        units: u32,
        implied: bool,
    ) -> Option<(AuthOutcome, Evidence)> {
        if self.success.is_some() || self.requests == 0 {
            return None;
        }
        let first = self.first.map_or(last, |f| f.1);
        if implied || units >= 60 {
            let summary = format!(
                "no isolated USERAUTH_SUCCESS, but the session went on ({units} encrypted messages{})",
                if implied { ", channel activity" } else { "" }
            );
            return Some((
                AuthOutcome::Success,
                Evidence::new(summary, &self.pkts, first, last),
            ));
        }
        if self.failures >= 2 || (self.failures >= 1 && self.requests >= 2) {
            let summary = format!(
                "{} authentication request(s), {} replies of the method-list size {}, no success \
                 before the connection ended",
                self.requests,
                self.failures,
                self.fail_size.unwrap_or(0)
            );
            return Some((
                AuthOutcome::Failure,
                Evidence::new(summary, &self.pkts, first, last),
            ));
        }
        None
    }

    fn push(&mut self, idx: u64) {
        if self.pkts.len() < Evidence::MAX_PACKETS {
            self.pkts.push(idx);
        }
    }
}

/// The messages right after login, where OpenSSH sends its forwarding
/// requests before anything else.
#[derive(Debug)]
struct Setup {
    last: Timestamp,
    client_units: u32,
    server_units: u32,
    first: Option<(u64, Timestamp, u32)>,
    candidate: bool,
    judged: bool,
    done: bool,
}

/// The setup phase ends at the first pause this long, or after this many
/// messages.
const SETUP_PAUSE: u64 = 2 * NANOS_PER_SEC;
const SETUP_CLIENT_UNITS: u32 = 8;
const SETUP_SERVER_UNITS: u32 = 12;

impl Setup {
    fn new(ts: Timestamp) -> Setup {
        Setup {
            last: ts,
            client_units: 0,
            server_units: 0,
            first: None,
            candidate: false,
            judged: false,
            done: false,
        }
    }

    fn on_unit(&mut self, u: &Unit, m: &Model) -> Option<Evidence> {
        if self.done {
            return None;
        }
        if u.ts.since(self.last) > SETUP_PAUSE
            || self.client_units >= SETUP_CLIENT_UNITS
            || self.server_units >= SETUP_SERVER_UNITS
        {
            self.done = true;
            return None;
        }
        self.last = u.ts;
        if u.dir == m.client {
            self.client_units += 1;
            if self.first.is_none() {
                self.first = Some((u.idx, u.ts, u.size));
                self.candidate = forward_request(u, m.suite(u.dir));
            }
            return None;
        }
        self.server_units += 1;
        let (idx, ts, size) = self.first?;
        if !self.candidate || self.judged {
            return None;
        }
        let s = m.suite(u.dir);
        if u.size > s.wire(20) {
            return None; // host keys push, EXT_INFO: not a reply
        }
        self.judged = true;
        let success = REQUEST_SUCCESS.iter().any(|&p| s.wire(p) == u.size)
            && u.size != s.wire(CHANNEL_OPEN_CONFIRMATION);
        success.then(|| {
            let summary = format!(
                "first message after login ({size} bytes) fits GLOBAL_REQUEST tcpip-forward \
                 (ssh -R), answered by a {}-byte REQUEST_SUCCESS",
                u.size
            );
            Evidence::new(summary, &[idx, u.idx], ts, u.ts)
        })
    }
}

/// Whether the client's first message after login can be (or, for a
/// segment, can contain) a forwarding request. A segment fully explained by
/// OpenSSH's session open and `no-more-sessions` is not one.
fn forward_request(u: &Unit, s: &Suite) -> bool {
    let fits = |w: u32| {
        s.fits_any(w, TCPIP_FORWARD.0, TCPIP_FORWARD.1)
            || s.fits_any(w, STREAMLOCAL_FORWARD.0, STREAMLOCAL_FORWARD.1)
    };
    if u.exact {
        return fits(u.size);
    }
    let (a, b) = (s.wire(SESSION_OPEN), s.wire(NO_MORE_SESSIONS));
    let known = [0, a, b, a + b];
    if known[1..].contains(&u.size) {
        return false;
    }
    let two = |w: u32| {
        let mut x = s.wire(TCPIP_FORWARD.0);
        while x <= s.wire(TCPIP_FORWARD.1) {
            if w > x && fits(w - x) {
                return true;
            }
            x += s.block;
        }
        false
    };
    known
        .iter()
        .filter_map(|k| u.size.checked_sub(*k))
        .any(|rest| rest > 0 && (fits(rest) || two(rest)))
}

/// Keystroke/echo pairs and runs of them.
#[derive(Debug, Default)]
struct Typing {
    last_key: Option<(Dir, u16, Timestamp, u64)>,
    /// The key in `last_key` came right after an echo of the same typist.
    key_continues: bool,
    last_was_echo: Option<Dir>,
    run: u32,
    run_typist: Option<Dir>,
    pairs: [u32; 2],
    runs: [u32; 2],
    in_runs: [u32; 2],
    masks: [u16; 2],
    sizes: [u32; 2],
    pkts: [Vec<u64>; 2],
    first: [Option<Timestamp>; 2],
    last: [Timestamp; 2],
    /// Bare ACKs sent right after an echo, by the typist.
    acked_echoes: [u32; 2],
}

impl Typing {
    /// Returns (keystroke-sized, echo of the other side's keystroke).
    fn on_unit(&mut self, u: &Unit, m: &Model) -> (bool, bool) {
        let prev_echo = self.last_was_echo.take();
        let mask = m.dir(u.dir).key_mask(u.size);
        if mask == 0 {
            if self.last_key.is_some_and(|k| k.0 != u.dir) {
                self.last_key = None;
            }
            self.run = 0;
            return (false, false);
        }
        if let Some((kdir, kmask, kts, kidx)) = self.last_key {
            if kdir != u.dir && kmask & mask != 0 && u.ts.since(kts) <= ECHO_NANOS {
                self.pair(kdir, kmask & mask, u, kidx);
                return (true, true);
            }
        }
        self.key_continues = prev_echo == Some(u.dir);
        self.last_key = Some((u.dir, mask, u.ts, u.idx));
        (true, false)
    }

    fn pair(&mut self, typist: Dir, mask: u16, echo: &Unit, key_idx: u64) {
        let t = typist.index();
        self.pairs[t] += 1;
        if self.key_continues && self.run_typist == Some(typist) && self.run > 0 {
            self.run += 1;
        } else {
            self.run = 1;
            self.run_typist = Some(typist);
        }
        if self.run == RUN_MIN {
            self.runs[t] += 1;
            self.in_runs[t] += RUN_MIN;
        } else if self.run > RUN_MIN {
            self.in_runs[t] += 1;
        }
        self.masks[t] |= mask;
        self.sizes[t] = echo.size;
        if self.pkts[t].len() + 2 <= Evidence::MAX_PACKETS {
            self.pkts[t].extend([key_idx, echo.idx]);
        }
        self.first[t].get_or_insert(echo.ts);
        self.last[t] = echo.ts;
        self.last_key = None;
        self.last_was_echo = Some(typist);
    }

    fn bare_ack(&mut self, dir: Dir) {
        if self.last_was_echo == Some(dir) {
            self.acked_echoes[dir.index()] += 1;
        }
    }

    /// Sets the typing-side verdicts once enough typing runs were seen.
    fn verdicts(&self, f: &mut SshFacts, m: &Model) -> bool {
        let mut changed = false;
        for typist in [Dir::ToClient, Dir::ToServer] {
            let t = typist.index();
            let o = typist.reverse().index();
            if self.in_runs[t] < TYPING_PAIRS || self.in_runs[t] < 2 * self.in_runs[o] {
                continue;
            }
            let slot = match typist {
                Dir::ToClient => &mut f.reverse_interactive,
                Dir::ToServer => &mut f.forward_interactive,
            };
            if slot.is_some() {
                continue;
            }
            let kinds = Model::mask_names(self.masks[t]).join(", ");
            let summary = format!(
                "{} keystroke-sized messages ({} bytes: {kinds}) from the {} echoed by the {}, {} \
                 of them in {} typing run(s); {} echoes acknowledged by a bare ACK from the typist; \
                 keystroke sizes here: direct {}, tunnelled {:?}",
                self.pairs[t],
                self.sizes[t],
                inner::side(typist),
                inner::side(typist.reverse()),
                self.in_runs[t],
                self.runs[t],
                self.acked_echoes[t],
                m.dir(typist).key_direct(),
                m.dir(typist).key_tunnel_sizes(),
            );
            let first = self.first[t].unwrap_or(self.last[t]);
            *slot = Some(Evidence::new(summary, &self.pkts[t], first, self.last[t]));
            changed = true;
        }
        changed
    }
}

/// Keepalive request/reply pairs against everything else after setup.
#[derive(Debug, Default)]
struct Keepalive {
    pending: Option<(Dir, u64, Timestamp)>,
    pairs: u32,
    other: u32,
    pkts: Vec<u64>,
    first: Option<Timestamp>,
    last: Timestamp,
}

impl Keepalive {
    fn on_unit(&mut self, u: &Unit, m: &Model) {
        let d = m.dir(u.dir);
        if d.is_keepalive_req(u.size) {
            if self.pending.is_some() {
                self.other += 1;
            }
            self.pending = Some((u.dir, u.idx, u.ts));
            return;
        }
        if d.is_keepalive_rep(u.size) {
            if let Some((dir, idx, ts)) = self.pending {
                if dir != u.dir && u.ts.since(ts) <= 10 * NANOS_PER_SEC {
                    self.pairs += 1;
                    if self.pkts.len() + 2 <= Evidence::MAX_PACKETS {
                        self.pkts.extend([idx, u.idx]);
                    }
                    self.first.get_or_insert(ts);
                    self.last = u.ts;
                    self.pending = None;
                    return;
                }
            }
        }
        self.pending = None;
        self.other += 1;
    }

    /// Sets keepalive-only after 3 clean pairs, withdraws it when other
    /// traffic shows up.
    fn update(&self, f: &mut SshFacts, trusted: bool) -> bool {
        if f.keepalive_only.is_some() && self.other > 2 {
            f.keepalive_only = None;
            return true;
        }
        if trusted && f.keepalive_only.is_none() && self.pairs >= 3 && self.other == 0 {
            f.keepalive_only = Some(self.evidence());
            return true;
        }
        false
    }

    fn finish(&self, f: &mut SshFacts) {
        if self.pairs >= 2 && self.other <= 2 {
            f.keepalive_only = Some(self.evidence());
        }
    }

    fn evidence(&self) -> Evidence {
        let summary = format!(
            "after login only keepalive request/reply pairs ({} pairs, {} other messages)",
            self.pairs, self.other
        );
        Evidence::new(
            summary,
            &self.pkts,
            self.first.unwrap_or(self.last),
            self.last,
        )
    }
}

#[cfg(test)]
#[path = "infer_tests.rs"]
mod tests;
