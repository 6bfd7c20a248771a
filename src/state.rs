//! The state file: what a sensor keeps across a restart or an upgrade.
//! At stop it holds the identified tunnels still open ([`SavedFlow`]:
//! identity, facts, alert state, age) and the DNS name cache; at start they
//! are read back, so a tunnel that outlives the restart is still known as
//! SSH, keeps its age for the long-lived thresholds and is not alerted on
//! twice.
//!
//! The format: one header line `egresswatch-state <version> <sha256>\n`
//! (the SHA-256 of the body in hex), then the body, JSON. Bounded: at most
//! [`MAX_BYTES`] read, [`MAX_FLOWS`] flows and [`MAX_NAMES`] names taken.
//! Decoding is pure; reading and writing the file is the caller's.

use crate::analyzer::names::SavedName;
use crate::engine::SavedFlow;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format this build writes and reads.
pub const VERSION: u32 = 1;
/// Largest file read.
pub const MAX_BYTES: u64 = 256 << 20;
/// Flows taken back (the memory of ended flows of every worker holds
/// fewer; the oldest beyond it are dropped and counted there).
pub const MAX_FLOWS: usize = 65_536;
/// Names taken back (the name cache's own bound applies too).
pub const MAX_NAMES: usize = 1 << 20;

const MAGIC: &str = "egresswatch-state";

/// What the state file holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// The latest packet time the sensor had seen: names are taken back
    /// as of then.
    #[serde(with = "crate::time::nanos")]
    pub saved_at: Timestamp,
    pub flows: Vec<SavedFlow>,
    pub names: Vec<SavedName>,
}

/// Why a state file was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("not an egresswatch state file (no `{MAGIC}` header)")]
    NotState,
    #[error("state file version {0}, this build reads version {VERSION}")]
    Version(String),
    #[error("state file checksum does not match its contents (truncated or changed)")]
    Checksum,
    #[error("state file is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("state file body: {0}")]
    Body(String),
}

/// The file's bytes.
pub fn encode(state: &State) -> Vec<u8> {
    let body = serde_json::to_vec(state).unwrap_or_default();
    let mut out = format!("{MAGIC} {VERSION} {}\n", hex(&Sha256::digest(&body))).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// The state in `bytes`, checked (header, version, checksum) and cut to
/// the bounds.
pub fn decode(bytes: &[u8]) -> Result<State, StateError> {
    if bytes.len() as u64 > MAX_BYTES {
        return Err(StateError::TooLarge);
    }
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(StateError::NotState)?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| StateError::NotState)?;
    let mut fields = header.split(' ');
    if fields.next() != Some(MAGIC) {
        return Err(StateError::NotState);
    }
    let version = fields.next().unwrap_or("");
    if version != VERSION.to_string() {
        return Err(StateError::Version(version.chars().take(16).collect()));
    }
    let body = &bytes[newline + 1..];
    if fields.next() != Some(hex(&Sha256::digest(body)).as_str()) {
        return Err(StateError::Checksum);
    }
    let mut state: State =
        serde_json::from_slice(body).map_err(|e| StateError::Body(e.to_string()))?;
    state.flows.truncate(MAX_FLOWS);
    state.names.truncate(MAX_NAMES);
    Ok(state)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn state() -> State {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        State {
            saved_at: Timestamp::from_nanos(1_700_000_000_123_456_789),
            flows: Vec::new(),
            names: vec![SavedName {
                client: ip("10.0.0.5"),
                addr: ip("2001:db8::1"),
                name: "pool.example".into(),
                expires: Timestamp::from_secs(1_700_000_300),
            }],
        }
    }

    #[test]
    fn a_state_reads_back_exactly() {
        let bytes = encode(&state());
        let back = decode(&bytes).unwrap();
        assert_eq!(back.saved_at, state().saved_at);
        assert_eq!(back.names, state().names);
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_reason() {
        let bytes = encode(&state());
        let mut changed = bytes.clone();
        let last = changed.len() - 2;
        changed[last] ^= 1;
        assert_eq!(decode(&changed).unwrap_err(), StateError::Checksum);
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]).unwrap_err(),
            StateError::Checksum
        );
        assert_eq!(decode(b"").unwrap_err(), StateError::NotState);
        assert_eq!(decode(b"{}\n{}").unwrap_err(), StateError::NotState);
        let newer = String::from_utf8(bytes.clone())
            .unwrap()
            .replacen(" 1 ", " 2 ", 1);
        assert_eq!(
            decode(newer.as_bytes()).unwrap_err(),
            StateError::Version("2".into())
        );
        let body = b"[1,2]";
        let bad = format!("{MAGIC} {VERSION} {}\n", hex(&Sha256::digest(body)));
        let bad = [bad.as_bytes(), body].concat();
        assert!(matches!(decode(&bad), Err(StateError::Body(_))));
    }
}
