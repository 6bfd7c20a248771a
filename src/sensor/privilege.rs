//! Giving up privileges once the capture handles are open. Capture needs
//! CAP_NET_RAW only to open a packet socket, so after that the process
//! drops every other capability and, started as root with `--user`, becomes
//! that user. CAP_NET_RAW stays *permitted* (never effective) so that a
//! capture thread can reopen an interface that went away, as Suricata keeps
//! it for its capture threads: the main thread gives it up for good once
//! the capture threads have started ([`release_net_raw`]), the workers and
//! the writer start after that without it, and a capture thread raises it
//! only around the open ([`with_net_raw`]).
//!
//! Capabilities are per thread on Linux: this runs before any other thread
//! starts, and every thread inherits what is left.

use caps::CapSet;
use nix::unistd::{Gid, Uid, User};

/// What was given up, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The user switched to, if any.
    pub user: Option<String>,
    /// The bounding set was cleared too (needs CAP_SETPCAP, which root has
    /// and a systemd unit with only CAP_NET_RAW does not).
    pub bounding_cleared: bool,
    /// CAP_NET_RAW is still permitted (not effective), to reopen captures.
    pub kept_net_raw: bool,
}

/// Drops every capability of this thread (and so of threads started
/// later) but a permitted CAP_NET_RAW, and switches to `user` first when
/// given. Fails closed: an error means the sensor must not go on.
pub fn drop_privileges(user: Option<&str>) -> Result<Dropped, String> {
    let target = match user {
        Some(name) => Some(lookup(name)?),
        None => None,
    };
    if target.is_some() && !Uid::effective().is_root() {
        return Err("--user needs the sensor to be started as root".into());
    }
    let bounding_cleared =
        caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false);
    if bounding_cleared {
        caps::clear(None, CapSet::Bounding)
            .map_err(|e| format!("clearing the bounding set: {e}"))?;
    }
    let keep = caps::has_cap(None, CapSet::Permitted, NET_RAW).unwrap_or(false);
    if let Some(u) = &target {
        // Without it, leaving uid 0 empties the permitted set.
        nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("setting keepcaps: {e}"))?;
        switch_user(u)?;
        nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("clearing keepcaps: {e}"))?;
    }
    for set in [CapSet::Ambient, CapSet::Inheritable, CapSet::Effective] {
        caps::clear(None, set).map_err(|e| format!("clearing {set:?} capabilities: {e}"))?;
    }
    let kept: caps::CapsHashSet = keep.then_some(NET_RAW).into_iter().collect();
    caps::set(None, CapSet::Permitted, &kept)
        .map_err(|e| format!("limiting the permitted capabilities: {e}"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("setting no_new_privs: {e}"))?;
    let left = caps::read(None, CapSet::Permitted).map_err(|e| e.to_string())?;
    if left != kept {
        return Err(format!("capabilities still permitted: {left:?}"));
    }
    Ok(Dropped {
        user: target.map(|u| u.name),
        bounding_cleared,
        kept_net_raw: keep,
    })
}

const NET_RAW: caps::Capability = caps::Capability::CAP_NET_RAW;

/// Gives up the permitted CAP_NET_RAW of this thread (and of the threads
/// it starts from now on) for good.
pub fn release_net_raw() -> Result<(), String> {
    caps::clear(None, CapSet::Effective)
        .and_then(|()| caps::clear(None, CapSet::Permitted))
        .map_err(|e| format!("giving up CAP_NET_RAW: {e}"))
}

/// Runs `f` with CAP_NET_RAW effective on this thread when it is
/// permitted (otherwise as it is: the open then fails with a permission
/// error), and lowers it again.
pub fn with_net_raw<T>(f: impl FnOnce() -> T) -> T {
    let raised = caps::raise(None, CapSet::Effective, NET_RAW).is_ok();
    let out = f();
    if raised {
        // Lowering a capability this thread holds cannot fail.
        let _ = caps::drop(None, CapSet::Effective, NET_RAW);
    }
    out
}

/// The user `--user` names.
pub fn lookup(name: &str) -> Result<User, String> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(format!("--user {name}: no such user")),
        Err(e) => Err(format!("--user {name}: {e}")),
    }
}

/// Supplementary groups, then the group, then the user (the other way
/// round the process could no longer change its groups).
fn switch_user(u: &User) -> Result<(), String> {
    let gid: Gid = u.gid;
    nix::unistd::setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(gid).map_err(|e| format!("setgid {gid}: {e}"))?;
    nix::unistd::setuid(u.uid).map_err(|e| format!("setuid {}: {e}", u.uid))?;
    if Uid::effective().is_root() || Uid::current().is_root() {
        return Err(format!("still root after switching to {}", u.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_is_refused_before_anything_changes() {
        let before = caps::read(None, CapSet::Effective).ok();
        let err = drop_privileges(Some("ew-no-such-user-x9")).err();
        assert_eq!(
            err.as_deref(),
            Some("--user ew-no-such-user-x9: no such user")
        );
        assert_eq!(caps::read(None, CapSet::Effective).ok(), before);
    }

    #[test]
    fn net_raw_is_effective_only_inside_with_net_raw() {
        // A thread of its own: the capability sets are per thread.
        std::thread::spawn(|| {
            let permitted = caps::has_cap(None, CapSet::Permitted, NET_RAW).unwrap();
            // Start from "permitted, not effective", as a capture thread.
            if permitted {
                caps::drop(None, CapSet::Effective, NET_RAW).unwrap();
            }
            let inside = with_net_raw(|| caps::has_cap(None, CapSet::Effective, NET_RAW).unwrap());
            assert_eq!(inside, permitted);
            assert!(!caps::has_cap(None, CapSet::Effective, NET_RAW).unwrap());
            release_net_raw().unwrap();
            assert!(caps::read(None, CapSet::Permitted).unwrap().is_empty());
            assert!(!with_net_raw(|| caps::has_cap(
                None,
                CapSet::Effective,
                NET_RAW
            )
            .unwrap()));
        })
        .join()
        .unwrap();
    }
}
