//! Request traces: Mooncake `conversation_trace.jsonl` (`timestamp` ms, `input_length`,
//! `output_length`, `hash_ids` = 512-token prefix block hashes, equal ids = reusable
//! block) and Azure `AzureLLMInferenceTrace_conv.csv` (`TIMESTAMP`, `ContextTokens`,
//! `GeneratedTokens`; no prefix information, so every block is unique). See
//! ../shared/traces/README.md for sources and licenses; the traces are never copied
//! into this repository.

use anyhow::{bail, Context};
use std::path::Path;

/// Tokens per block in both traces (Mooncake's hash_ids are per 512 tokens).
pub const TRACE_BLOCK_TOKENS: u64 = 512;

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Arrival, ms after the trace's first request.
    pub arrival_ms: f64,
    /// One entry per prompt block: Some(hash) if reusable across requests.
    pub prompt_blocks: Vec<Option<u64>>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Loads a trace, choosing the format by extension (`.jsonl` Mooncake, `.csv` Azure).
pub fn load(path: &Path) -> anyhow::Result<Vec<Request>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let r = match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => parse_mooncake(&text),
        Some("csv") => parse_azure(&text),
        _ => bail!(
            "{}: expected a .jsonl (Mooncake) or .csv (Azure) trace",
            path.display()
        ),
    };
    r.with_context(|| format!("parsing {}", path.display()))
}

#[derive(serde::Deserialize)]
struct MooncakeRow {
    timestamp: f64,
    input_length: u64,
    output_length: u64,
    hash_ids: Vec<u64>,
}

pub fn parse_mooncake(text: &str) -> anyhow::Result<Vec<Request>> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let r: MooncakeRow =
            serde_json::from_str(line).with_context(|| format!("line {}", i + 1))?;
        out.push(Request {
            arrival_ms: r.timestamp,
            prompt_blocks: r.hash_ids.into_iter().map(Some).collect(),
            input_tokens: r.input_length,
            output_tokens: r.output_length,
        });
    }
    rebase(&mut out);
    Ok(out)
}

pub fn parse_azure(text: &str) -> anyhow::Result<Vec<Request>> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split(',').collect();
        let [ts, ctx, gen] = f[..] else {
            bail!(
                "line {}: expected TIMESTAMP,ContextTokens,GeneratedTokens",
                i + 1
            )
        };
        let ctx: u64 = ctx
            .trim()
            .parse()
            .with_context(|| format!("line {}: ContextTokens", i + 1))?;
        out.push(Request {
            arrival_ms: timestamp_ms(ts.trim())
                .with_context(|| format!("line {}: TIMESTAMP {ts:?}", i + 1))?,
            prompt_blocks: vec![None; ctx.div_ceil(TRACE_BLOCK_TOKENS) as usize],
            input_tokens: ctx,
            output_tokens: gen
                .trim()
                .parse()
                .with_context(|| format!("line {}: GeneratedTokens", i + 1))?,
        });
    }
    rebase(&mut out);
    Ok(out)
}

/// Sorts by arrival and makes the first arrival time 0.
fn rebase(r: &mut [Request]) {
    r.sort_by(|a, b| a.arrival_ms.total_cmp(&b.arrival_ms));
    if let Some(t0) = r.first().map(|x| x.arrival_ms) {
        for x in r.iter_mut() {
            x.arrival_ms -= t0;
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS[.frac]` → ms since 1970-01-01 (UTC, proleptic Gregorian).
fn timestamp_ms(s: &str) -> anyhow::Result<f64> {
    let (date, time) = s
        .split_once(' ')
        .context("no space between date and time")?;
    let d: Vec<i64> = date.split('-').map(str::parse).collect::<Result<_, _>>()?;
    let [y, m, day] = d[..] else {
        bail!("date is not Y-M-D")
    };
    let t: Vec<&str> = time.split(':').collect();
    let [hh, mm, ss] = t[..] else {
        bail!("time is not H:M:S")
    };
    let secs = hh.parse::<f64>()? * 3600.0 + mm.parse::<f64>()? * 60.0 + ss.parse::<f64>()?;
    Ok((days_from_civil(y, m, day) as f64 * 86400.0 + secs) * 1000.0)
}

/// Days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mooncake_rows() {
        let t = "{\"timestamp\": 5, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [0, 7]}\n\
                 {\"timestamp\": 2, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [0]}\n";
        let r = parse_mooncake(t).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].arrival_ms, 0.0);
        assert_eq!(r[1].arrival_ms, 3.0);
        assert_eq!(r[1].prompt_blocks, vec![Some(0), Some(7)]);
    }

    #[test]
    fn azure_rows() {
        let t = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
                 2023-11-16 23:59:59.5000000,1025,44\n2023-11-17 00:00:00.2500000,512,1\n";
        let r = parse_azure(t).unwrap();
        assert_eq!(r[0].prompt_blocks.len(), 3);
        assert_eq!(r[1].prompt_blocks, vec![None]);
        assert!(
            (r[1].arrival_ms - 750.0).abs() < 1e-6,
            "{}",
            r[1].arrival_ms
        );
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
