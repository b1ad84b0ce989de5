//! Field offsets of a tracepoint's record, from tracefs
//! (`/sys/kernel/tracing/events/CATEGORY/EVENT/format`), read once when a backend
//! loads and handed to its BPF program as `const volatile` globals.
//!
//! Why not CO-RE: some kernels' BTF lacks the `trace_event_raw_*` struct of a
//! tracepoint (the CI host's has `damon_aggregated` but not `x86_exceptions`), while
//! the format file is always there where the tracepoint is, and aya needs tracefs to
//! attach a tracepoint anyway.

use std::path::{Path, PathBuf};

pub const ROOT: &str = "/sys/kernel/tracing";

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no field {field}")]
    Missing { path: PathBuf, field: String },
    #[error("{path}: field {field} is {size} bytes, expected {expected}")]
    Size {
        path: PathBuf,
        field: String,
        size: u32,
        expected: u32,
    },
}

/// Offsets of `fields` (name, expected size in bytes) in the event's record.
pub fn offsets(
    root: &Path,
    category: &str,
    event: &str,
    fields: &[(&str, u32)],
) -> Result<Vec<u32>, FormatError> {
    let path = root.join(format!("events/{category}/{event}/format"));
    let text = std::fs::read_to_string(&path).map_err(|source| FormatError::Read {
        path: path.clone(),
        source,
    })?;
    let parsed = parse(&text);
    fields
        .iter()
        .map(|&(name, expected)| {
            let &(_, off, size) =
                parsed
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .ok_or_else(|| FormatError::Missing {
                        path: path.clone(),
                        field: name.into(),
                    })?;
            if size != expected {
                return Err(FormatError::Size {
                    path: path.clone(),
                    field: name.into(),
                    size,
                    expected,
                });
            }
            Ok(off)
        })
        .collect()
}

/// `(name, offset, size)` of each `field:TYPE NAME; offset:N; size:N;` line.
fn parse(text: &str) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut name = None;
        let (mut off, mut size) = (None, None);
        for part in line.split(';') {
            let part = part.trim();
            if let Some(decl) = part.strip_prefix("field:") {
                // The name is the last word, without an array suffix.
                name = decl
                    .split_whitespace()
                    .last()
                    .map(|n| n.split('[').next().unwrap_or(n).to_string());
            } else if let Some(v) = part.strip_prefix("offset:") {
                off = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        if let (Some(n), Some(o), Some(s)) = (name, off, size) {
            out.push((n, o, s));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAMON: &str = "name: damon_aggregated\nID: 767\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:unsigned long target_id;\toffset:8;\tsize:8;\tsigned:0;\n\
\tfield:unsigned int nr_regions;\toffset:16;\tsize:4;\tsigned:0;\n\
\tfield:unsigned long start;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:unsigned long end;\toffset:32;\tsize:8;\tsigned:0;\n\
\tfield:unsigned int nr_accesses;\toffset:40;\tsize:4;\tsigned:0;\n\n\
print fmt: \"target_id=%lu\", REC->target_id\n";

    fn root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("events/damon/damon_aggregated");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("format"), DAMON).unwrap();
        t
    }

    #[test]
    fn finds_offsets_of_named_fields() {
        let t = root();
        let o = offsets(
            t.path(),
            "damon",
            "damon_aggregated",
            &[("nr_accesses", 4), ("start", 8), ("target_id", 8)],
        )
        .unwrap();
        assert_eq!(o, vec![40, 24, 8]);
    }

    #[test]
    fn missing_fields_and_size_changes_are_errors() {
        let t = root();
        let e = offsets(t.path(), "damon", "damon_aggregated", &[("age", 4)]).unwrap_err();
        assert!(e.to_string().contains("no field age"), "{e}");
        let e = offsets(t.path(), "damon", "damon_aggregated", &[("start", 4)]).unwrap_err();
        assert!(e.to_string().contains("is 8 bytes"), "{e}");
        assert!(offsets(t.path(), "damon", "nope", &[]).is_err());
    }
}
