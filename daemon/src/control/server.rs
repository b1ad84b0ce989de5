//! Socket plumbing: bind, accept, per-connection line loop with peer credentials.

use super::caller::Caller;
use super::handlers::handle;
use crate::state::Daemon;
use anyhow::Context;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tierd_api::{ErrorKind, Request, Response, MAX_REQUEST_BYTES};

/// Binds a Unix socket at `path` (removing a stale one) with `mode` permissions.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use: is another tierd running?", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, path.display()))?;
    Ok(l)
}

/// Accepts connections until the daemon shuts down.
pub fn serve(listener: UnixListener, daemon: Arc<Daemon>) {
    for conn in listener.incoming() {
        if daemon.shutdown.load(Ordering::Relaxed) {
            break;
        }
        match conn {
            Ok(stream) => {
                let d = daemon.clone();
                let spawned = std::thread::Builder::new()
                    .name("tierd-ctl-conn".into())
                    .spawn(move || connection(stream, d));
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot spawn control connection thread");
                }
            }
            Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
        }
    }
}

fn connection(stream: UnixStream, daemon: Arc<Daemon>) {
    let caller = match Caller::from_socket(&stream) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot identify the peer; dropping control connection");
            return;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (resp, fatal) = if n > MAX_REQUEST_BYTES {
            (
                Response::error(
                    ErrorKind::BadRequest,
                    format!("request longer than {MAX_REQUEST_BYTES} bytes"),
                ),
                true,
            )
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(req) => (handle(&daemon, &caller, req), false),
                Err(e) => (
                    Response::error(ErrorKind::BadRequest, format!("malformed request: {e}")),
                    false,
                ),
            }
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        out.push(b'\n');
        if writer.write_all(&out).is_err() || fatal {
            return;
        }
    }
}
