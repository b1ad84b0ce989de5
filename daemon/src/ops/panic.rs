//! The panic hook: a panic in any thread of tierd ends the process.
//!
//! Without it a panicking thread unwinds and dies alone: the tiering loop or the
//! migration worker gone, the sockets still answering and `status` still saying
//! "tiering". The hook logs the panic (thread, location, message) through tracing and
//! on stderr, then aborts; systemd (`Restart=on-failure`) starts tierd again, which
//! restores what the dead one left ([`crate::persist`]). main installs it first thing.
//!
//! The release profile keeps `panic = "unwind"` on purpose: profiles are per
//! workspace, and `libtierd` (clients/c) promises C callers that a panic inside the
//! library is caught and returned as `-EIO` rather than aborting their process. The
//! hook runs before any unwinding, so for tierd the result is the same as
//! `panic = "abort"`. Unit tests do not install it: they still see panics as unwinds.

use std::panic::PanicHookInfo;

/// What is logged about a panic, in one line.
pub fn describe(info: &PanicHookInfo<'_>) -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let location = info
        .location()
        .map_or_else(|| "<unknown>".to_string(), |l| l.to_string());
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string payload>");
    format!("thread '{name}' panicked at {location}: {message}")
}

/// Installs the hook: log, then `abort()` (SIGABRT; a core dump where enabled).
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let what = describe(info);
        let backtrace = std::backtrace::Backtrace::force_capture();
        tracing::error!(panic = %what, "tierd panicked; aborting so that it is restarted");
        // tracing may not be set up yet, or may be what panicked: stderr always works.
        eprintln!("tierd: {what}; aborting\n{backtrace}");
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_description_names_thread_location_and_message() {
        let seen = Arc::new(Mutex::new(String::new()));
        let s = seen.clone();
        // A hook that only records, on a named thread (the real one aborts).
        let t = std::thread::Builder::new()
            .name("tierd-test-panics".into())
            .spawn(move || {
                let prev = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    if std::thread::current().name() == Some("tierd-test-panics") {
                        *s.lock().unwrap() = describe(info);
                    } else {
                        prev(info);
                    }
                }));
                let r = std::panic::catch_unwind(|| panic!("boom {}", 42));
                let _ = std::panic::take_hook();
                r.is_err()
            })
            .unwrap();
        assert!(t.join().unwrap());
        let d = seen.lock().unwrap().clone();
        assert!(
            d.starts_with("thread 'tierd-test-panics' panicked at "),
            "{d}"
        );
        assert!(d.contains("panic.rs:"), "{d}");
        assert!(d.ends_with(": boom 42"), "{d}");
    }
}
