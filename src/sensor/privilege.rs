//! Giving up privileges once the capture handles are open: capture needs
//! CAP_NET_RAW only to open the packet socket, so after that the process
//! drops every capability and, started as root with `--user`, becomes that
//! user. Capabilities are per thread on Linux: this runs before any other
//! thread starts, and every thread inherits the empty sets.

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
}

/// Drops every capability of this thread (and so of threads started
/// later), and switches to `user` first when given. Fails closed: an error
/// means the sensor must not go on.
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
    if let Some(u) = &target {
        switch_user(u)?;
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| format!("clearing {set:?} capabilities: {e}"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("setting no_new_privs: {e}"))?;
    let left = caps::read(None, CapSet::Permitted).map_err(|e| e.to_string())?;
    if !left.is_empty() {
        return Err(format!("capabilities still permitted: {left:?}"));
    }
    Ok(Dropped {
        user: target.map(|u| u.name),
        bounding_cleared,
    })
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
}
