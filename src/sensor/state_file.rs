//! Reading and writing the state file (`--state-file`; the format is
//! [`crate::state`]). A missing, unreadable or damaged file is logged and
//! ignored: the sensor then starts as if for the first time. The file is
//! written whole next to its place and renamed over it, so a crash while
//! writing leaves the old file.

use crate::state::{self, State, MAX_BYTES};
use std::io::{Read, Write};
use std::path::Path;

/// The state in `path`, or `None` (logged) when there is none to take.
pub fn load(path: &Path) -> Option<State> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no state file yet; starting afresh");
            return None;
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the state file; starting afresh");
            return None;
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_BYTES + 1).read_to_end(&mut bytes) {
        tracing::warn!(path = %path.display(), error = %e, "cannot read the state file; starting afresh");
        return None;
    }
    match state::decode(&bytes) {
        Ok(s) => {
            tracing::info!(path = %path.display(), flows = s.flows.len(), names = s.names.len(), "state file read");
            Some(s)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "state file ignored; starting afresh");
            None
        }
    }
}

/// Writes `state` to `path` (mode 0600), replacing the file whole.
pub fn save(path: &Path, state: &State) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&state::encode(state))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// [`save`], logged: a state file that cannot be written costs the next
/// start its memory, not this stop its records.
pub fn save_logged(path: &Path, state: &State) {
    match save(path, state) {
        Ok(()) => {
            tracing::info!(path = %path.display(), flows = state.flows.len(), names = state.names.len(), "state file written")
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot write the state file")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn a_written_state_loads_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        assert!(load(&path).is_none(), "missing");
        let state = State {
            saved_at: Timestamp::from_secs(42),
            ..State::default()
        };
        save(&path, &state).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(&path).unwrap().saved_at, state.saved_at);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&path, bytes).unwrap();
        assert!(load(&path).is_none(), "truncated");
        assert!(load(dir.path()).is_none(), "a directory");
    }
}
