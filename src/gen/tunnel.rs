//! The idle tunnel: `ssh -N -R 2222:localhost:22` from the demo's node to
//! its relay with no ServerAliveInterval, silent for hours at a time (TCP
//! holds the connection; nothing is sent), used now and then from the
//! outside. The gaps stretch the session past the `ssh-long-lived`
//! thresholds (1, 4, 8 and 12 h) with no keepalive in between; the longest
//! is over 2 hours, four times the generic `tcp-established` timeout.

use super::demo::{enc, ssh_clear_prelude, ssh_pubkey_auth, DEMO_START_SECS, NODE, RELAY};
use super::demo::{TUNNEL_CLIENT_PORT, TUNNEL_PORT};
use super::proto::ssh::msg;
use super::{Capture, Rng, Scenario};
use crate::time::Timestamp;
use std::time::Duration;

/// Minutes after the start at which the tunnel is used: after a silent
/// gap over 10 minutes, then on either side of each long-lived threshold.
pub const IDLE_TUNNEL_USES_MIN: [u64; 8] = [15, 65, 180, 245, 360, 485, 600, 725];

/// The capture; `seed` varies the encrypted bytes only.
pub fn idle_tunnel(seed: u64) -> Capture {
    let mut s = Scenario::with_seed(Timestamp::from_secs(DEMO_START_SECS), seed);
    let mut rng = Rng::new(seed);
    let (node, relay) = (s.host(NODE), s.remote(RELAY));
    {
        let mut t = s.tcp(node, TUNNEL_CLIENT_PORT, relay, TUNNEL_PORT);
        t.label("ssh_idle_tunnel")
            .rtt(Duration::from_millis(80))
            .handshake();
        ssh_clear_prelude(&mut t, &mut rng);
        ssh_pubkey_auth(&mut t, &mut rng, "tunnel");
        t.send(&enc(&mut rng, &[msg::tcpip_forward("localhost")]));
        t.send(&enc(&mut rng, &[msg::NO_MORE_SESSIONS]));
        t.recv(&enc(&mut rng, &[msg::HOSTKEYS_PUSH]));
        t.recv(&enc(&mut rng, &[msg::REQUEST_SUCCESS]));
        for minute in IDLE_TUNNEL_USES_MIN {
            t.at(Duration::from_secs(minute * 60));
            // Someone at the relay connects through the forward: a few
            // records each way, then quiet again.
            t.recv(&enc(&mut rng, &[msg::channel_data(21)]));
            t.send(&enc(&mut rng, &[msg::channel_data(40)]));
            t.recv(&enc(&mut rng, &[msg::channel_data(1_024)]));
            t.send(&enc(&mut rng, &[msg::channel_data(640)]));
        }
        // Still open when the capture ends.
    }
    s.finish()
}
