//! The metrics HTTP endpoint: `GET /metrics` on `metrics.listen` (loopback by default).
//!
//! One thread (`tierd-metrics`) serves requests one at a time with `tiny_http`; a scrape
//! renders [`super::metrics::render`] on the spot. Scrapes are rare (every 15-60 s) and
//! the text is small, so a single thread is enough. The thread polls the daemon's
//! shutdown flag between requests (every 500 ms). Started once by [`super::start`];
//! a changed `metrics.listen` takes effect at the next start.

use crate::state::Daemon;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("metrics.listen {listen}: cannot listen: {reason}")]
    Bind { listen: String, reason: String },
    #[error("metrics.listen {listen}: cannot spawn the metrics thread: {source}")]
    Spawn {
        listen: String,
        source: std::io::Error,
    },
}

/// Binds `listen` and serves in a new thread; returns the bound address (the real port
/// when `listen` asked for port 0).
pub fn spawn(d: Arc<Daemon>, listen: &str) -> Result<SocketAddr, HttpError> {
    let server = tiny_http::Server::http(listen).map_err(|e| HttpError::Bind {
        listen: listen.into(),
        reason: e.to_string(),
    })?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| HttpError::Bind {
            listen: listen.into(),
            reason: "not an IP listener".into(),
        })?;
    std::thread::Builder::new()
        .name("tierd-metrics".into())
        .spawn(move || serve(&server, &d))
        .map_err(|source| HttpError::Spawn {
            listen: listen.into(),
            source,
        })?;
    Ok(addr)
}

fn serve(server: &tiny_http::Server, d: &Daemon) {
    while !d.shutdown.load(Ordering::Relaxed) {
        let req = match server.recv_timeout(Duration::from_millis(500)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                continue;
            }
        };
        let path = req.url().split('?').next().unwrap_or("");
        let reply = match (req.method(), path) {
            (tiny_http::Method::Get, "/metrics") => {
                response(200, super::metrics::CONTENT_TYPE, super::metrics::render(d))
            }
            (tiny_http::Method::Get, "/") => response(
                200,
                "text/plain; charset=utf-8",
                "tierd: metrics at /metrics\n".into(),
            ),
            (tiny_http::Method::Get, _) => {
                response(404, "text/plain; charset=utf-8", "not found\n".into())
            }
            _ => response(405, "text/plain; charset=utf-8", "only GET\n".into()),
        };
        if let Err(e) = req.respond(reply) {
            tracing::debug!(error = %e, "metrics endpoint: client went away");
        }
    }
}

fn response(
    code: u16,
    content_type: &str,
    body: String,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut r = tiny_http::Response::from_string(body).with_status_code(code);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        r = r.with_header(h);
    }
    r
}
