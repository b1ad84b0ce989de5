//! Access to tierd's two Unix sockets, shared by `[daemon]` and `[client]`: the octal
//! mode string and the group (a name looked up in the group database, or a number).
//!
//! Called by the sections' `validate` (so `tierd --check-config` names a missing group)
//! and by the daemon when it binds each socket at start.

use crate::Invalid;

/// `"0660"` (or `"0o660"`, `"660"`) as permission bits; `key` names the setting in errors.
pub(crate) fn mode_bits(key: &str, text: &str) -> Result<u32, Invalid> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| Invalid::new(key, format!("{text:?} is not an octal mode like \"0660\"")))
}

/// The gid of `spec`: all digits is a numeric gid taken as given (containers map gids
/// that have no entry in the group database); anything else must name a group that
/// exists (getgrnam_r, so NSS groups count).
pub(crate) fn group_gid(key: &str, spec: &str) -> Result<u32, Invalid> {
    if spec.is_empty() {
        return Err(Invalid::new(
            key,
            "empty group name (omit the key for none)",
        ));
    }
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return spec
            .parse::<u32>()
            .ok()
            .filter(|g| *g != u32::MAX)
            .ok_or_else(|| Invalid::new(key, format!("gid {spec} is out of range")));
    }
    match nix::unistd::Group::from_name(spec) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(Invalid::new(
            key,
            format!("no group named {spec:?} on this system (create it, or give a numeric gid)"),
        )),
        Err(e) => Err(Invalid::new(
            key,
            format!("cannot look up group {spec:?}: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_in_octal() {
        assert_eq!(mode_bits("k", "0660").unwrap(), 0o660);
        assert_eq!(mode_bits("k", "0o600").unwrap(), 0o600);
        assert_eq!(mode_bits("k", "777").unwrap(), 0o777);
        for bad in ["0999", "rw-rw----", "01777", ""] {
            let e = mode_bits("daemon.socket_mode", bad).unwrap_err();
            assert_eq!(e.key, "daemon.socket_mode");
        }
    }

    #[test]
    fn groups_resolve_by_name_and_number() {
        // "root" is gid 0 on every Linux system.
        assert_eq!(group_gid("k", "root").unwrap(), 0);
        assert_eq!(group_gid("k", "0").unwrap(), 0);
        assert_eq!(group_gid("k", "4242").unwrap(), 4242);
    }

    #[test]
    fn a_missing_group_is_an_error_naming_the_key() {
        let e = group_gid("client.socket_group", "tierd-no-such-group-x").unwrap_err();
        assert_eq!(e.key, "client.socket_group");
        assert!(e.reason.contains("tierd-no-such-group-x"), "{}", e.reason);
        assert!(group_gid("k", "").is_err());
        assert!(group_gid("k", "99999999999").is_err());
    }
}
