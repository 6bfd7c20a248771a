//! The message scripts of TCP flows: TLS, HTTP, internal bulk, keep-alive
//! and SSH in its interactive, scp and reverse-tunnel patterns.

use super::hosts::name_id;
use super::secs;
use super::tcp::{pick_close, Body, Close, Msg, TcpScript};
use crate::gen::proto::ssh::{self, msg, Role, Suite};
use crate::gen::proto::tls;
use crate::gen::rng::Rng;

// ------------------------------------------------------------------ behaviours

pub(super) fn app(n: u64) -> Body {
    Body::Records(n.max(tls::MIN_RECORD as u64) as u32)
}

pub(super) fn msg(dir: u8, think: f64, body: Body) -> Msg {
    Msg {
        dir,
        think_us: (secs(think) / 1000).min(u64::from(u32::MAX)) as u32,
        body,
    }
}

/// A TLS handshake's opening messages (ClientHello, server flight, the
/// client's Finished).
pub(super) fn tls_opening(rng: &mut Rng, name: u32, rtt: f64, msgs: &mut Vec<Msg>) {
    msgs.push(msg(0, 0.0, Body::ClientHello { name }));
    msgs.push(msg(
        1,
        rtt * 0.5,
        Body::ServerFlight(rng.range(2000, 4600) as u32),
    ));
    msgs.push(msg(0, rtt * 0.5, app(80)));
}

pub(super) fn tls_flow(rng: &mut Rng, v6: bool, midstream: bool) -> TcpScript {
    let rtt = rng.uniform(0.004, 0.12);
    let rate_gap = *rng.pick(&[0.00002, 0.00008, 0.0003, 0.001]);
    let mut msgs = Vec::new();
    if !midstream {
        let name = name_id(rng);
        tls_opening(rng, name, rtt, &mut msgs);
    }
    for _ in 0..1 + rng.pareto(1.5, 1.0, 40.0) as u32 {
        msgs.push(msg(0, rng.exp(0.6), app(rng.range(90, 900))));
        msgs.push(msg(
            1,
            rtt * 0.5 + 0.002,
            app(rng.pareto(1.1, 1200.0, 6e6) as u64),
        ));
    }
    let close = pick_close(rng);
    TcpScript::new(rng, v6, msgs, rtt, rate_gap, close, !midstream)
}

pub(super) fn http_flow(rng: &mut Rng, v6: bool) -> TcpScript {
    let rtt = rng.uniform(0.004, 0.12);
    let name = name_id(rng);
    let mut msgs = Vec::new();
    for _ in 0..1 + rng.pareto(1.6, 1.0, 20.0) as u32 {
        msgs.push(msg(0, rng.exp(0.4), Body::HttpRequest { name }));
        msgs.push(msg(
            1,
            rtt * 0.5 + 0.003,
            Body::HttpResponse(rng.pareto(1.2, 400.0, 3e6) as u32),
        ));
    }
    let rate_gap = *rng.pick(&[0.00003, 0.0002, 0.001]);
    let close = pick_close(rng);
    TcpScript::new(rng, v6, msgs, rtt, rate_gap, close, true)
}

pub(super) fn bulk_flow(rng: &mut Rng, v6: bool) -> TcpScript {
    let rtt = rng.uniform(0.0002, 0.002);
    let mut msgs = Vec::new();
    for _ in 0..1 + rng.pareto(1.3, 1.0, 50.0) as u32 {
        msgs.push(msg(
            0,
            rng.exp(0.2),
            Body::Random(rng.range(60, 700) as u32),
        ));
        msgs.push(msg(
            1,
            0.0005,
            Body::Random(rng.pareto(1.1, 300.0, 8e6) as u32),
        ));
    }
    let rate_gap = *rng.pick(&[0.000012, 0.00005, 0.0002]);
    let close = pick_close(rng);
    TcpScript::new(rng, v6, msgs, rtt, rate_gap, close, true)
}

/// Long-lived, low-rate TCP (push channels, websockets, MQTT over TLS).
pub(super) fn keepalive_flow(rng: &mut Rng, v6: bool, midstream: bool) -> TcpScript {
    let rtt = rng.uniform(0.01, 0.15);
    let mut msgs = Vec::new();
    if !midstream {
        let name = name_id(rng);
        tls_opening(rng, name, rtt, &mut msgs);
    }
    let period = rng.uniform(4.0, 30.0);
    for _ in 0..rng.range(4, 40) {
        let dir = rng.below(2) as u8;
        let think = rng.uniform(0.5, 1.5) * period;
        msgs.push(msg(dir, think, app(rng.range(31, 140))));
    }
    let close = pick_close(rng);
    TcpScript::new(rng, v6, msgs, rtt, 0.001, close, !midstream)
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum SshPattern {
    Interactive,
    Scp,
    Reverse,
}

pub(super) const C: Suite = Suite::CHACHA20_POLY1305;

pub(super) fn wire(payload: usize) -> Body {
    Body::SshWire(C.wire_len(payload) as u32)
}

/// An SSH connection: OpenSSH's clear-text opening (client banner first),
/// public-key login, a session channel, then the pattern's traffic.
pub(super) fn ssh_flow(rng: &mut Rng, v6: bool, pattern: SshPattern) -> TcpScript {
    let rtt = rng.uniform(0.01, 0.15);
    let h = rtt * 0.5;
    let client = if rng.chance(0.5) {
        0
    } else {
        1 + rng.below(ssh::OTHER_CLIENTS.len() as u64) as u8
    };
    let user = *rng.pick(&["root", "ubuntu", "git", "deploy", "tunnel"]);
    let mut m = vec![
        msg(0, 0.0, Body::SshBanner(client)),
        msg(1, h, Body::SshBanner(0)),
        msg(0, 0.0003, Body::SshKexInit(Role::Client)),
        msg(1, h, Body::SshKexInit(Role::Server)),
        msg(0, h, Body::SshEcdhInit),
        msg(1, h + 0.003, Body::SshKexBurst),
        msg(0, h, Body::SshNewKeys),
        msg(0, 0.0002, wire(msg::service_request("ssh-userauth"))),
        msg(1, h, wire(msg::service_accept("ssh-userauth"))),
        msg(0, h, wire(msg::userauth_none(user))),
        msg(1, h, wire(msg::userauth_failure("publickey"))),
        msg(0, h, wire(msg::userauth_pk_query(user))),
        msg(1, h, wire(msg::userauth_pk_ok())),
        msg(0, h, wire(msg::userauth_pk_signed(user))),
        msg(1, h, wire(msg::USERAUTH_SUCCESS)),
    ];
    let keystroke = C.wire_len(msg::channel_data(1));
    let close = match pattern {
        SshPattern::Interactive => {
            m.push(msg(0, h, wire(msg::channel_open_session())));
            m.push(msg(1, h, wire(msg::HOSTKEYS_PUSH)));
            m.push(msg(1, 0.0001, wire(msg::CHANNEL_OPEN_CONFIRMATION)));
            for _ in 0..rng.range(20, 400) {
                m.push(msg(0, rng.exp(0.35), wire(msg::channel_data(1))));
                let reply = *rng.pick(&[1usize, 1, 33, 185, 1385]);
                m.push(msg(1, h, wire(msg::channel_data(reply))));
            }
            pick_close(rng)
        }
        SshPattern::Scp => {
            m.push(msg(0, h, wire(msg::channel_open_session())));
            m.push(msg(1, h, wire(msg::CHANNEL_OPEN_CONFIRMATION)));
            for _ in 0..rng.range(1, 6) {
                m.push(msg(
                    0,
                    rng.exp(0.5),
                    wire(msg::channel_data(rng.range(32, 64) as usize)),
                ));
                m.push(msg(
                    0,
                    0.001,
                    Body::Random(rng.pareto(1.1, 20_000.0, 2e7) as u32),
                ));
            }
            pick_close(rng)
        }
        SshPattern::Reverse => {
            // `ssh -N -R`: the forward request and its grant, then
            // keep-alives and bursts driven from the remote side: keys of
            // an inner chacha20 session (76 bytes) arrive from the server
            // and the inside host echoes or answers.
            m.push(msg(0, h, wire(msg::tcpip_forward("localhost"))));
            m.push(msg(1, h, wire(msg::HOSTKEYS_PUSH)));
            m.push(msg(1, 0.0002, wire(msg::REQUEST_SUCCESS)));
            let tunnelled = C.wire_len(msg::channel_data(keystroke));
            for _ in 0..rng.range(8, 60) {
                if rng.chance(0.6) {
                    m.push(msg(0, rng.uniform(10.0, 30.0), wire(msg::KEEPALIVE)));
                    m.push(msg(1, h, wire(msg::REQUEST_FAILURE)));
                } else {
                    m.push(msg(
                        1,
                        rng.uniform(1.0, 20.0),
                        wire(*rng.pick(&[71usize, 111])),
                    ));
                    for _ in 0..rng.range(3, 40) {
                        m.push(msg(1, rng.exp(0.3), Body::SshWire(tunnelled as u32)));
                        let answer = *rng.pick(&[tunnelled, tunnelled, 340, 1400]);
                        m.push(msg(0, h, Body::SshWire(answer as u32)));
                    }
                }
            }
            if rng.chance(0.7) {
                Close::Open
            } else {
                Close::Fin
            }
        }
    };
    TcpScript::new(rng, v6, m, rtt, 0.0002, close, true)
}
