//! Reading request lines with two deadlines: the idle one (no request started) and the
//! request one (a line begun must end in time), so a caller that sends half a line and
//! stalls is cut after `daemon.request_timeout_ms`, not held for the idle timeout.
//!
//! Used by each control connection's thread ([`super::server`]); the socket's
//! `SO_RCVTIMEO` is set to the time left before every read.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Why no line came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer closed (or the socket failed).
    Closed,
    /// No request began within the idle timeout.
    Idle,
    /// A request began but did not end within the request timeout.
    Slow,
    /// The line is longer than the limit.
    TooLong,
}

/// The deadlines and the size limit of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle: Duration,
    pub request: Duration,
    pub max_bytes: usize,
}

/// Bytes received and not yet returned as a line.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    /// The next line (with its `\n`), read from `s` within `limits`.
    pub fn next(&mut self, s: &UnixStream, limits: &Limits) -> Result<Vec<u8>, End> {
        let start = Instant::now();
        // Bytes already buffered belong to a request that has begun.
        let mut begun = (!self.buf.is_empty()).then_some(start);
        let mut scanned = 0;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|b| *b == b'\n') {
                let end = scanned + i + 1;
                if end > limits.max_bytes {
                    return Err(End::TooLong);
                }
                return Ok(self.buf.drain(..end).collect());
            }
            scanned = self.buf.len();
            if self.buf.len() > limits.max_bytes {
                return Err(End::TooLong);
            }
            let deadline = match begun {
                Some(t) => t + limits.request,
                None => start + limits.idle,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(if begun.is_some() {
                    End::Slow
                } else {
                    End::Idle
                });
            }
            if s.set_read_timeout(Some(left)).is_err() {
                return Err(End::Closed);
            }
            match (&mut &*s).read(&mut chunk) {
                Ok(0) => return Err(End::Closed),
                Ok(n) => {
                    begun.get_or_insert_with(Instant::now);
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(End::Closed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const L: Limits = Limits {
        idle: Duration::from_millis(400),
        request: Duration::from_millis(150),
        max_bytes: 32,
    };

    #[test]
    fn lines_split_and_pipeline() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"one\ntwo\nthr").unwrap();
        let mut r = LineReader::default();
        assert_eq!(r.next(&a, &L).unwrap(), b"one\n");
        assert_eq!(r.next(&a, &L).unwrap(), b"two\n");
        b.write_all(b"ee\n").unwrap();
        assert_eq!(r.next(&a, &L).unwrap(), b"three\n");
        drop(b);
        assert_eq!(r.next(&a, &L), Err(End::Closed));
    }

    #[test]
    fn half_a_line_is_cut_at_the_request_timeout_not_the_idle_one() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"{\"cmd\":").unwrap();
        let t = Instant::now();
        assert_eq!(LineReader::default().next(&a, &L), Err(End::Slow));
        let took = t.elapsed();
        assert!(took >= L.request && took < L.idle, "{took:?}");
    }

    #[test]
    fn a_line_trickled_slowly_is_cut_too() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            for _ in 0..20 {
                if b.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let t = Instant::now();
        assert_eq!(LineReader::default().next(&a, &L), Err(End::Slow));
        assert!(t.elapsed() < L.idle, "{:?}", t.elapsed());
        drop(a);
        writer.join().unwrap();
    }

    #[test]
    fn silence_is_idle_and_long_lines_are_refused() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let t = Instant::now();
        assert_eq!(LineReader::default().next(&a, &L), Err(End::Idle));
        assert!(t.elapsed() >= L.idle);
        b.write_all(&[b'a'; 40]).unwrap();
        assert_eq!(LineReader::default().next(&a, &L), Err(End::TooLong));
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(&[b'a'; 33]).unwrap();
        b.write_all(b"\n").unwrap();
        assert_eq!(LineReader::default().next(&a, &L), Err(End::TooLong));
    }
}
