//! `sockline PATH < input`: writes stdin to a Unix stream socket, half-closes, prints
//! whatever comes back (for VM scenarios that send raw, malformed or oversized lines to
//! tierd's sockets; busybox nc has no Unix-socket mode).

use anyhow::Context;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: sockline SOCKET < input")?;
    let mut s = UnixStream::connect(&path).with_context(|| format!("connecting {path}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    // The daemon may close early on an oversized line: a broken pipe is an answer too.
    let _ = s.write_all(&input);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    std::io::stdout().write_all(&out)?;
    Ok(())
}
