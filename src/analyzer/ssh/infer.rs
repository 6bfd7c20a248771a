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
/// Inner-connection candidates followed at once.
const MAX_CANDIDATES: usize = 4;
/// Compressed keepalive messages stay below this payload.
const COMPRESSED_KEEPALIVE_MAX: u32 = 48;
/// Quiet time for new candidates after an inner handshake was found.
const COOLDOWN_NANOS: u64 = 10 * NANOS_PER_SEC;
/// Silence before a server-opened channel for it to count as an incoming
/// forwarded connection.
const ISOLATED_NANOS: u64 = 50_000_000;

pub struct Inference {
    pub model: Model,
    /// Capture problems: no size-based inference any more.
    unreliable: bool,
    delayed_compression: bool,
    /// Payloads are compressed: exact sizes are gone, only structure
    /// (ordering, pairs, large versus small) is left.
    compressed: bool,
    auth: Auth,
    setup: Option<Setup>,
    opens: Opens,
    /// Inner-connection candidates (a few may overlap: the open, the
    /// banners and other open-sized messages each start one).
    candidates: Vec<Candidate>,
    /// No new candidates before this time (after a verdict: the inner
    /// session's own messages are not a new handshake), unless a channel
    /// open is confirmed.
    cooldown: Option<Timestamp>,
    inner_auth: Option<(InnerAuth, bool)>,
    /// Inner sessions found: reverse, nested.
    pub inner_sessions: [u32; 2],
    pub nested_login: AuthOutcome,
    typing: Typing,
    keepalive: Keepalive,
    pub timeline: Timeline,
    units: u32,
    /// Time of the previous message.
    last_unit_ts: Option<Timestamp>,
    post_auth_bytes: [u64; 2],
    pub bare_acks: [u32; 2],
    /// Picked up mid-stream: the login (if any) is long past, so no login
    /// is looked for and channels are believed from the first message.
    midstream: bool,
}

impl Inference {
    pub fn new(model: Model, delayed_compression: bool) -> Inference {
        Inference {
            model,
            unreliable: false,
            delayed_compression,
            compressed: false,
            auth: Auth::default(),
            setup: None,
            opens: Opens::default(),
            candidates: Vec::new(),
            cooldown: None,
            inner_auth: None,
            inner_sessions: [0; 2],
            nested_login: AuthOutcome::Unknown,
            typing: Typing::default(),
            keepalive: Keepalive::default(),
            timeline: Timeline::default(),
            units: 0,
            last_unit_ts: None,
            post_auth_bytes: [0; 2],
            bare_acks: [0; 2],
            midstream: false,
        }
    }

    /// Channel opens confirmed by the other side, by opener direction.
    pub fn confirmed_opens(&self) -> [u32; 2] {
        self.opens.count
    }

    /// The session was picked up mid-stream: its login is long past, so
    /// none is looked for (a mid-session message of a login-reply size is
    /// no login) and the post-login inferences run from the first message.
    pub fn set_midstream(&mut self) {
        self.midstream = true;
    }

    /// Sizes are no longer trustworthy: size-based inferences stop.
    pub fn set_unreliable(&mut self) {
        self.unreliable = true;
    }

    /// Payloads are compressed from now on (`zlib`).
    pub fn set_compressed(&mut self) {
        self.compressed = true;
        self.typing.compressed = true;
        self.keepalive.compressed = true;
    }

    pub fn bare_ack(&mut self, dir: Dir) {
        self.bare_acks[dir.index()] = self.bare_acks[dir.index()].saturating_add(1);
        self.timeline.bare_ack(dir);
        self.typing.bare_ack(dir);
    }

    /// Feeds one encrypted message; returns whether `f` changed. Sets
    /// `compression` when delayed compression starts.
    pub fn on_unit(&mut self, u: Unit, f: &mut SshFacts) -> Changes {
        let mut ch = Changes::default();
        self.units = self.units.saturating_add(1);
        let ch_out = self.on_unit_inner(&u, f, &mut ch);
        self.last_unit_ts = Some(u.ts);
        ch_out
    }

    fn on_unit_inner(&mut self, u: &Unit, f: &mut SshFacts, ch: &mut Changes) -> Changes {
        let u = *u;
        if !self.midstream {
            self.login(&u, f, ch);
        }
        // Exact sizes for the size-model inferences; structure only for
        // typing side and inner handshakes (also under compression).
        let exact_ok = !self.unreliable && !self.compressed;
        let structure_ok = !self.unreliable;
        if self.auth.success.is_some() {
            self.post_auth_bytes[u.dir.index()] =
                self.post_auth_bytes[u.dir.index()].saturating_add(u64::from(u.size));
        }
        ch.facts |= self.remote_forward(&u, f, exact_ok);
        if self.after_login() {
            ch.facts |= self.inner_sessions(&u, f, exact_ok, structure_ok);
        }
        let m = &self.model;
        let (keystroke, echo) = self.typing.on_unit(&u, m);
        let dm = m.dir(u.dir);
        let keepalive = dm.is_keepalive_req(u.size) || dm.is_keepalive_rep(u.size);
        let setup_done = self.setup.as_ref().is_some_and(|s| s.done);
        if setup_done || (self.auth.success.is_none() && self.after_login()) {
            let pause = self.last_unit_ts.map_or(u64::MAX, |t| u.ts.since(t));
            self.keepalive.on_unit(&u, m, pause);
            ch.facts |= self.keepalive.update(f, structure_ok);
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
        if echo && structure_ok {
            ch.facts |= self.typing.verdicts(f, &self.model);
        }
        *ch
    }

    /// The outer login, from the sizes of the first messages.
    fn login(&mut self, u: &Unit, f: &mut SshFacts, ch: &mut Changes) {
        let exact_ok = !self.unreliable && !self.compressed;
        let m = &self.model;
        if u.dir == m.client {
            self.auth.on_client(u, m.suite(u.dir));
        } else if let Some(ev) = self.auth.on_server(u, m.suite(u.dir)) {
            if exact_ok {
                f.auth = AuthOutcome::Success;
                f.auth_evidence = Some(ev);
                ch.facts = true;
            }
            self.setup = Some(Setup::new(u.ts));
            if self.delayed_compression {
                ch.compression_started = true;
                self.set_compressed();
            }
        }
    }

    /// Channels exist only after login; without an isolated success
    /// message, assume login after this many messages.
    fn after_login(&self) -> bool {
        self.midstream || self.auth.success.is_some() || self.units > NO_LOGIN_SEEN
    }

    fn remote_forward(&mut self, u: &Unit, f: &mut SshFacts, trusted: bool) -> bool {
        let Some(setup) = self.setup.as_mut() else {
            return false;
        };
        match setup.on_unit(u, &self.model) {
            Some(ev) if trusted && f.remote_forward.is_none() => {
                f.remote_forward = Some(ev);
                true
            }
            _ => false,
        }
    }

    /// Whether the login's setup burst is over (server-opened channels are
    /// only believed after it: the server's own post-login messages have
    /// channel-open sizes).
    fn setup_done(&self) -> bool {
        self.setup.as_ref().is_none_or(|s| s.done)
    }

    fn inner_sessions(
        &mut self,
        u: &Unit,
        f: &mut SshFacts,
        exact_ok: bool,
        structure_ok: bool,
    ) -> bool {
        let mut changed = false;
        let m = &self.model;
        let allow = u.dir == m.client || self.setup_done();
        let pause = self.last_unit_ts.map_or(u64::MAX, |t| u.ts.since(t));
        let opened = self.opens.on_unit(u, m, allow, pause);
        // A new channel ends whatever was being followed, unless a
        // handshake is under way (its NEWKEYS can have the size of a
        // confirmation).
        let fresh = opened.is_some() && !self.candidates.iter().any(|c| c.in_progress(u.ts));
        if let (true, Some(o)) = (fresh, &opened) {
            self.cooldown = None;
            self.candidates.clear();
            self.candidates.push(Candidate::from_open(o));
        }
        if let Some(o) = opened {
            let (lo, hi) = o.payload;
            let forwarded = lo >= inner::FORWARDED_TCPIP.0 && hi <= inner::FORWARDED_TCPIP.1;
            // An incoming connection on a -R listener is unsolicited: the
            // open does not ride in a burst of other messages.
            let isolated = o.pause_before >= ISOLATED_NANOS;
            if o.opener == m.server()
                && forwarded
                && isolated
                && exact_ok
                && f.remote_forward.is_none()
            {
                let summary = format!(
                    "the SSH server opened a channel of forwarded-tcpip size ({} bytes, payload \
                     {lo}..{hi}), confirmed by the client ({} bytes): a connection arrived on a \
                     remote (-R) forward",
                    m.suite(o.opener).wire(hi),
                    m.suite(o.opener.reverse()).wire(17),
                );
                f.remote_forward = Some(Evidence::new(
                    summary,
                    &[o.open.0, o.confirm.0],
                    o.open.1,
                    o.confirm.1,
                ));
                changed = true;
            }
        }
        let mut verdict = None;
        self.candidates.retain_mut(|c| {
            fresh
                || match c.on_unit(u, m, self.compressed) {
                    Step::Continue => true,
                    Step::Expired => false,
                    Step::Decided(v) => {
                        verdict.get_or_insert(v);
                        false
                    }
                }
        });
        if let Some(v) = verdict {
            self.candidates.clear();
            self.cooldown = Some(u.ts.add_nanos(COOLDOWN_NANOS));
            changed |= self.on_verdict(v, f, structure_ok);
            return changed;
        }
        let cooling = self.cooldown.is_some_and(|c| u.ts < c);
        if allow && !cooling && inner::open_sized(u, m).is_some() {
            if self.candidates.len() >= MAX_CANDIDATES {
                match self.candidates.iter().position(|c| !c.in_progress(u.ts)) {
                    Some(i) => {
                        self.candidates.remove(i);
                    }
                    None => return changed,
                }
            }
            self.candidates.push(Candidate::new(u, m));
        }
        if let Some((ia, reverse)) = self.inner_auth.as_mut() {
            if let Some(ev) = ia.on_unit(u, &self.model, self.compressed) {
                if !*reverse {
                    self.nested_login = AuthOutcome::Success;
                } else if exact_ok && f.reverse_login == AuthOutcome::Unknown {
                    f.reverse_login = AuthOutcome::Success;
                    if let Some(rs) = f.reverse_session.as_mut() {
                        rs.summary.push_str("; inner login succeeded: ");
                        rs.summary.push_str(&ev.summary);
                    }
                    changed = true;
                }
            }
        }
        changed
    }

    fn on_verdict(&mut self, v: Verdict, f: &mut SshFacts, trusted: bool) -> bool {
        let reverse = v.inner_server == Dir::ToServer;
        self.inner_sessions[usize::from(!reverse)] =
            self.inner_sessions[usize::from(!reverse)].saturating_add(1);
        self.inner_auth = Some((InnerAuth::new(&v, v.evidence.first_ts), reverse));
        if !trusted {
            return false;
        }
        let slot = if reverse {
            &mut f.reverse_session
        } else {
            &mut f.nested_forward
        };
        if slot.is_some() {
            return false;
        }
        if reverse && f.remote_forward.is_none() {
            let mut ev = v.evidence.clone();
            ev.summary = format!(
                "implied by the reverse session (an SSH connection came back through a \
                 server-side listener): {}",
                ev.summary
            );
            f.remote_forward = Some(ev);
        }
        *slot = Some(v.evidence);
        true
    }

    /// Port forwarding shows as several client-opened channels or any
    /// server-opened one; bulk data then is not a file transfer.
    fn forwarding(&self) -> bool {
        let m = &self.model;
        if self.opens.count[m.server().index()] >= 1 {
            return true;
        }
        match self.setup.as_ref().and_then(|s| s.session(m)) {
            Some(session) => !session,
            None => self.opens.count[m.client.index()] >= 3,
        }
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
        let trusted = !self.unreliable && !self.compressed;
        // "Then stayed silent" needs the silence seen: a flow that ends (or
        // a capture cut) right after the burst says nothing of it.
        let quiet = |s: &&mut Setup| last.since(s.last) >= SETUP_PAUSE;
        if let Some(setup) = self.setup.as_mut().filter(quiet) {
            if let Some(ev) = setup.conclude(&self.model) {
                if trusted && f.remote_forward.is_none() {
                    f.remote_forward = Some(ev);
                }
            }
        }
        if f.auth == AuthOutcome::Unknown && !self.midstream {
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
        // Typing through the reverse session means its login worked.
        if f.reverse_session.is_some()
            && f.reverse_login == AuthOutcome::Unknown
            && f.reverse_interactive.is_some()
        {
            f.reverse_login = AuthOutcome::Success;
        }
        if let Some((ia, reverse)) = self.inner_auth.as_mut() {
            if let Some(ev) = ia.finish(last) {
                if *reverse && !self.unreliable && f.reverse_login == AuthOutcome::Unknown {
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
        if !self.unreliable && f.keepalive_only.is_none() {
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
        self.client_units = self.client_units.saturating_add(1);
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
        self.requests = self.requests.saturating_add(1);
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
                    self.failures = self.failures.saturating_add(1);
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
/// requests first, then its session open, then `no-more-sessions`, all in
/// one go (the "burst"); replies come back after that.
#[derive(Debug)]
struct Setup {
    last: Timestamp,
    client_units: u32,
    server_units: u32,
    /// First client message after login: index, time, size, exact.
    first: Option<(u64, Timestamp, u32, bool)>,
    burst_bytes: u32,
    burst_units: u32,
    /// Client messages after the burst, during setup.
    after_burst: u32,
    /// First small server message after the burst.
    reply: Option<(u64, Timestamp, u32)>,
    /// An exact-size session open was among the burst's messages.
    burst_open: bool,
    reported: bool,
    done: bool,
}

/// The setup phase ends at the first pause this long, or after this many
/// messages.
const SETUP_PAUSE: u64 = NANOS_PER_SEC;
const SETUP_CLIENT_UNITS: u32 = 8;
const SETUP_SERVER_UNITS: u32 = 12;
/// Client messages this close to the first one belong to its burst.
const BURST_NANOS: u64 = 20_000_000;

impl Setup {
    fn new(ts: Timestamp) -> Setup {
        Setup {
            last: ts,
            client_units: 0,
            server_units: 0,
            first: None,
            burst_bytes: 0,
            burst_units: 0,
            after_burst: 0,
            reply: None,
            burst_open: false,
            reported: false,
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
            return self.conclude(m);
        }
        self.last = u.ts;
        if u.dir == m.client {
            self.client_units = self.client_units.saturating_add(1);
            let in_burst = match self.first {
                None => true,
                Some((_, ts, _, _)) => self.after_burst == 0 && u.ts.since(ts) <= BURST_NANOS,
            };
            self.burst_open |= in_burst && u.exact && u.size == m.suite(u.dir).wire(SESSION_OPEN);
            match self.first {
                None => {
                    self.first = Some((u.idx, u.ts, u.size, u.exact));
                    self.burst_bytes = u.size;
                    self.burst_units = 1;
                }
                Some((_, ts, _, _)) if self.after_burst == 0 && u.ts.since(ts) <= BURST_NANOS => {
                    self.burst_bytes = self.burst_bytes.saturating_add(u.size);
                    self.burst_units = self.burst_units.saturating_add(1);
                }
                Some(_) => self.after_burst += 1,
            }
            return None;
        }
        self.server_units = self.server_units.saturating_add(1);
        let (idx, ts, size, exact) = self.first?;
        let s = m.suite(u.dir);
        if self.reply.is_some() || u.size > s.wire(20) {
            return None; // host keys push and other large messages: not a reply
        }
        self.reply = Some((u.idx, u.ts, u.size));
        let success = REQUEST_SUCCESS.iter().any(|&p| s.wire(p) == u.size)
            && u.size != s.wire(CHANNEL_OPEN_CONFIRMATION);
        let request = if exact {
            forward_request_exact(size, m.suite(m.client))
        } else {
            burst_needs_forward(self.burst_bytes, m.suite(m.client)) == Burst::Forward
        };
        if !(success && request) {
            return None;
        }
        self.reported = true;
        let summary = format!(
            "first message{} after login ({} bytes) fit{} GLOBAL_REQUEST tcpip-forward (ssh -R), \
             answered by a {}-byte REQUEST_SUCCESS",
            if exact { "" } else { "s" },
            if exact { size } else { self.burst_bytes },
            if exact { "s" } else { "" },
            u.size
        );
        Some(Evidence::new(summary, &[idx, u.idx], ts, u.ts))
    }

    /// Whether the client opened a session channel at login (`None`:
    /// cannot tell). `ssh -N` sessions carry only forwarded channels.
    fn session(&self, m: &Model) -> Option<bool> {
        let (_, _, _, exact) = self.first?;
        if exact {
            return Some(self.burst_open);
        }
        match burst_needs_forward(self.burst_bytes, m.suite(m.client)) {
            Burst::Plain => Some(false),
            _ => Some(self.after_burst > 0),
        }
    }

    /// At the end of setup, for segment sizes: a burst that needs a
    /// forwarding request (or a session open nobody used) and a client that
    /// then stays silent is an idle `ssh -N -R`.
    fn conclude(&mut self, m: &Model) -> Option<Evidence> {
        let (idx, ts, _, exact) = self.first?;
        if self.reported || exact || self.after_burst > 0 {
            return None;
        }
        let confirm = m.suite(m.server()).wire(CHANNEL_OPEN_CONFIRMATION);
        if self.reply.is_some_and(|r| r.2 == confirm) {
            return None; // a channel was opened and confirmed
        }
        let why = match burst_needs_forward(self.burst_bytes, m.suite(m.client)) {
            Burst::Forward => "need a tcpip-forward request",
            Burst::SessionOrForward => {
                "fit a session open (or a tcpip-forward of the same size) plus no-more-sessions, \
                 but no session request followed"
            }
            Burst::Plain | Burst::Unknown => return None,
        };
        self.reported = true;
        let summary = format!(
            "the client's first messages after login ({} bytes in {} segment(s)) {why}; the \
             client then stayed silent: an idle remote (ssh -N -R) forward",
            self.burst_bytes, self.burst_units
        );
        Some(Evidence::new(summary, &[idx], ts, self.last))
    }
}

/// What a burst of client messages after login can be.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Burst {
    /// `no-more-sessions` alone.
    Plain,
    /// A session open (+ `no-more-sessions`), sizes equal to a forward.
    SessionOrForward,
    /// Not explained without a forwarding request.
    Forward,
    Unknown,
}

/// Whether an exact message size fits a forwarding request.
fn forward_request_exact(size: u32, s: &Suite) -> bool {
    s.fits_any(size, TCPIP_FORWARD.0, TCPIP_FORWARD.1)
        || s.fits_any(size, STREAMLOCAL_FORWARD.0, STREAMLOCAL_FORWARD.1)
}

/// Explains the bytes of a burst by OpenSSH's session open and
/// `no-more-sessions` and up to two forwarding requests.
fn burst_needs_forward(bytes: u32, s: &Suite) -> Burst {
    let (open, nms) = (s.wire(SESSION_OPEN), s.wire(NO_MORE_SESSIONS));
    if bytes == nms {
        return Burst::Plain;
    }
    if bytes == open || bytes == open + nms {
        return Burst::SessionOrForward;
    }
    let one = |w: u32| forward_request_exact(w, s);
    let two = |w: u32| {
        let mut x = s.wire(TCPIP_FORWARD.0);
        while x <= s.wire(TCPIP_FORWARD.1) {
            if w > x && one(w - x) {
                return true;
            }
            x = x.saturating_add(s.block);
        }
        false
    };
    let forward = [0, open, nms, open + nms]
        .iter()
        .filter_map(|k| bytes.checked_sub(*k))
        .any(|rest| rest > 0 && (one(rest) || two(rest)));
    if forward {
        Burst::Forward
    } else {
        Burst::Unknown
    }
}

/// Keystroke/echo pairs and runs of them. A pair is a keystroke-sized
/// message answered by one of the other side within [`ECHO_NANOS`] and
/// faster than the pause before the keystroke (an echo is quick, the next
/// keystroke waits for the human): that fixes which of two alternating
/// sides types.
#[derive(Debug, Default)]
struct Typing {
    /// Compressed payloads: any small message counts as keystroke-sized.
    compressed: bool,
    last_unit: Option<Timestamp>,
    /// Candidate keystroke: side, kinds, time, index, pause before it.
    last_key: Option<(Dir, u16, Timestamp, u64, u64)>,
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
    fn key_mask(&self, u: &Unit, m: &Model) -> u16 {
        let d = m.dir(u.dir);
        if self.compressed {
            u16::from(u.size <= d.key_max() + 2 * d.suite.block)
        } else {
            d.key_mask(u.size)
        }
    }

    /// Returns (keystroke-sized, echo of the other side's keystroke).
    fn on_unit(&mut self, u: &Unit, m: &Model) -> (bool, bool) {
        let prev_echo = self.last_was_echo.take();
        let pause = self.last_unit.map_or(u64::MAX, |t| u.ts.since(t));
        self.last_unit = Some(u.ts);
        let mask = self.key_mask(u, m);
        if mask == 0 {
            if self.last_key.is_some_and(|k| k.0 != u.dir) {
                self.last_key = None;
            }
            self.run = 0;
            return (false, false);
        }
        if let Some((kdir, kmask, kts, kidx, kpause)) = self.last_key {
            let took = u.ts.since(kts);
            if kdir != u.dir && kmask & mask != 0 && took <= ECHO_NANOS && took <= kpause {
                self.pair(kdir, kmask & mask, u, kidx);
                return (true, true);
            }
        }
        self.key_continues = prev_echo == Some(u.dir);
        self.last_key = Some((u.dir, mask, u.ts, u.idx, pause));
        (true, false)
    }

    fn pair(&mut self, typist: Dir, mask: u16, echo: &Unit, key_idx: u64) {
        let t = typist.index();
        self.pairs[t] = self.pairs[t].saturating_add(1);
        if self.key_continues && self.run_typist == Some(typist) && self.run > 0 {
            self.run = self.run.saturating_add(1);
        } else {
            self.run = 1;
            self.run_typist = Some(typist);
        }
        if self.run == RUN_MIN {
            self.runs[t] = self.runs[t].saturating_add(1);
            self.in_runs[t] = self.in_runs[t].saturating_add(RUN_MIN);
        } else if self.run > RUN_MIN {
            self.in_runs[t] = self.in_runs[t].saturating_add(1);
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
            self.acked_echoes[dir.index()] = self.acked_echoes[dir.index()].saturating_add(1);
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
            let kinds = if self.compressed {
                "compressed session, sizes approximate".to_string()
            } else {
                Model::mask_names(self.masks[t]).join(", ")
            };
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
    compressed: bool,
    pending: Option<(Dir, u64, Timestamp)>,
    pairs: u32,
    other: u32,
    pkts: Vec<u64>,
    first: Option<Timestamp>,
    last: Timestamp,
}

impl Keepalive {
    /// `pause`: silence before this message. Compressed payloads: a small
    /// message after a pause is a request, a small answer the reply.
    fn on_unit(&mut self, u: &Unit, m: &Model, pause: u64) {
        let d = m.dir(u.dir);
        let (req, rep) = if self.compressed {
            let small = u.size <= d.suite.wire(COMPRESSED_KEEPALIVE_MAX);
            (small && pause >= NANOS_PER_SEC, small)
        } else {
            (d.is_keepalive_req(u.size), d.is_keepalive_rep(u.size))
        };
        if req {
            if self.pending.is_some() {
                self.other = self.other.saturating_add(1);
            }
            self.pending = Some((u.dir, u.idx, u.ts));
            return;
        }
        if rep {
            if let Some((dir, idx, ts)) = self.pending {
                if dir != u.dir && u.ts.since(ts) <= 10 * NANOS_PER_SEC {
                    self.pairs = self.pairs.saturating_add(1);
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
        self.other = self.other.saturating_add(1);
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
