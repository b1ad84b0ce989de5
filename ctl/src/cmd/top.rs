//! `tierctl top`: a live terminal view of tierd, refreshed every second: tiers with
//! used/free memory, promotion/demotion rates, and the managed processes sorted by
//! their fast-tier share.
//!
//! Each refresh sends `status` and `tiers` over the control socket. The tier-wide
//! rates are deltas of the per-process promoted/demoted page counters over a sliding
//! window (`--window-s`, 5 s): the tiering worker adds a batch's pages when the batch
//! completes, so a one-refresh delta would flicker between zero and a spike.
//! The screen is drawn with `crossterm` on the alternate screen in raw mode (restored
//! on exit, also on error); `q`, `Esc` or `Ctrl-C` quit. `--once` prints one frame to
//! stdout without touching the terminal, for scripts and tests.

use crate::client::{call, Failure};
use crate::output::bytes;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyModifiers};
use crossterm::{cursor, execute, queue, style, terminal};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use tierd_api::{Request, StatusReply, TiersReply};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Refresh period, ms.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    pub interval_ms: u64,
    /// Window of the promotion/demotion rates, seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub window_s: u64,
    /// Print one frame (rates over one interval) and exit.
    #[arg(long)]
    pub once: bool,
}

/// One refresh: what the daemon said and when.
struct Sample {
    status: StatusReply,
    tiers: TiersReply,
    at: Instant,
}

fn fetch(socket: &Path) -> Result<Sample, Failure> {
    let (status, _) = call(socket, &Request::Status)?;
    let (tiers, _) = call(socket, &Request::Tiers)?;
    Ok(Sample {
        status,
        tiers,
        at: Instant::now(),
    })
}

pub fn run(socket: &Path, json: bool, a: Args) -> Result<(), Failure> {
    if json {
        return Err(Failure::Other(
            "top is interactive; use `tierctl status --json` and `tierctl tiers --json`".into(),
        ));
    }
    let period = Duration::from_millis(a.interval_ms);
    let prev = fetch(socket)?;
    if a.once {
        std::thread::sleep(period);
        let cur = fetch(socket)?;
        for l in frame(&cur, Some(&prev), usize::MAX) {
            println!("{l}");
        }
        return Ok(());
    }
    let window = Duration::from_secs(a.window_s);
    let _screen = Screen::enter()?;
    // Samples within the rate window, oldest first; the newest is the one shown.
    let mut hist: VecDeque<Sample> = VecDeque::from([prev]);
    loop {
        let (_, rows) = terminal::size().unwrap_or((80, 24));
        if let Some(cur) = hist.back() {
            let oldest = hist.front().filter(|_| hist.len() > 1);
            draw(&frame(cur, oldest, rows as usize))?;
        }
        let deadline = Instant::now() + period;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if event::poll(left).map_err(term_err)? {
                if let Event::Key(k) = event::read().map_err(term_err)? {
                    if quits(&k) {
                        return Ok(());
                    }
                }
            }
        }
        hist.push_back(fetch(socket)?);
        while hist.len() > 2 && hist[1].at.elapsed() >= window {
            hist.pop_front();
        }
    }
}

fn quits(k: &KeyEvent) -> bool {
    matches!(
        k.code,
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc
    ) || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL))
}

fn term_err(e: std::io::Error) -> Failure {
    Failure::Other(format!("terminal: {e}"))
}

/// Raw mode + alternate screen for the life of the value.
struct Screen;

impl Screen {
    fn enter() -> Result<Screen, Failure> {
        terminal::enable_raw_mode().map_err(term_err)?;
        let s = Screen;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .map_err(term_err)?;
        Ok(s)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

fn draw(lines: &[String]) -> Result<(), Failure> {
    let mut out = std::io::stdout();
    queue!(
        out,
        cursor::MoveTo(0, 0),
        terminal::Clear(terminal::ClearType::All)
    )
    .map_err(term_err)?;
    for (i, l) in lines.iter().enumerate() {
        // Raw mode: no newline translation, so position each line.
        queue!(out, cursor::MoveTo(0, i as u16), style::Print(l)).map_err(term_err)?;
    }
    out.flush().map_err(term_err)
}

fn duration(s: f64) -> String {
    let s = s as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `[#####.....]` for `used` of `total`.
fn bar(used: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((used as f64 / total as f64) * width as f64).round() as usize
    };
    let filled = filled.min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// The lines of one frame; `prev` (an earlier sample) gives the rates. At most
/// `max_rows` lines: processes are cut first.
fn frame(cur: &Sample, prev: Option<&Sample>, max_rows: usize) -> Vec<String> {
    let s = &cur.status;
    let mut out = Vec::new();
    out.push(format!(
        "tierd {}  mode: {} ({})  uptime {}  clients {}",
        s.version,
        s.mode,
        s.mode_reason,
        duration(s.uptime_s),
        s.clients
    ));
    let active: Vec<&str> = s
        .sampling
        .backends
        .iter()
        .filter(|b| b.active)
        .map(|b| b.name.as_str())
        .collect();
    out.push(format!(
        "sampling: {}  interval {} ms  overhead {:.2}% CPU",
        if active.is_empty() {
            "none active".to_string()
        } else {
            active.join(",")
        },
        s.sampling.interval_ms,
        s.sampling.overhead_pct
    ));
    out.push(String::new());

    // Tiers.
    let mut tiers: BTreeMap<u32, (Vec<String>, u64, u64)> = BTreeMap::new();
    for n in &cur.tiers.nodes {
        let t = tiers.entry(n.tier).or_default();
        t.0.push(n.node.to_string());
        t.1 += n.total_bytes;
        t.2 += n.free_bytes;
    }
    out.push(format!(
        "{:<5} {:<8} {:>10} {:>10} {:>10}  USED",
        "TIER", "NODES", "TOTAL", "USED", "FREE"
    ));
    for (t, (nodes, total, free)) in &tiers {
        let used = total.saturating_sub(*free);
        out.push(format!(
            "{:<5} {:<8} {:>10} {:>10} {:>10}  {} {:.0}%",
            t,
            nodes.join(","),
            bytes(*total),
            bytes(used),
            bytes(*free),
            bar(used, *total, 20),
            if *total == 0 {
                0.0
            } else {
                used as f64 * 100.0 / *total as f64
            }
        ));
    }
    out.push(String::new());

    // Rates: page counter deltas of processes present in both samples.
    let page = tierd_api::page_size();
    let (mut prom, mut dem, mut secs) = (0u64, 0u64, 0.0);
    if let Some(p) = prev {
        secs = cur.at.duration_since(p.at).as_secs_f64();
        let before: BTreeMap<i32, (u64, u64)> = p
            .status
            .managed
            .iter()
            .map(|m| (m.pid, (m.promoted_pages, m.demoted_pages)))
            .collect();
        for m in &s.managed {
            if let Some((bp, bd)) = before.get(&m.pid) {
                prom += m.promoted_pages.saturating_sub(*bp);
                dem += m.demoted_pages.saturating_sub(*bd);
            }
        }
    }
    if secs > 0.0 {
        let rate = |pages: u64| {
            let pps = pages as f64 / secs;
            format!("{pps:.0} pages/s ({}/s)", bytes((pps * page as f64) as u64))
        };
        out.push(format!(
            "promotions {}   demotions {}   over {:.1}s",
            rate(prom),
            rate(dem),
            secs
        ));
    } else {
        out.push("promotions -   demotions -   (rates after the next refresh)".into());
    }
    out.push(String::new());

    // Processes by fast share.
    let mut procs = s.managed.clone();
    procs.sort_by(|a, b| {
        b.fast_share
            .total_cmp(&a.fast_share)
            .then(a.pid.cmp(&b.pid))
    });
    out.push(format!(
        "{:<8} {:<15} {:<10} {:>10} {:>10} {:>6} {:>8} {:>8} {:>9}",
        "PID", "COMM", "POLICY", "FAST", "SLOW", "FAST%", "PROM/S", "DEM/S", "PINGPONG"
    ));
    if procs.is_empty() {
        out.push("(no managed processes: tierctl manage --pid PID)".into());
    }
    let footer = "q: quit";
    let room = max_rows.saturating_sub(out.len() + 2);
    let shown = procs.len().min(room);
    for m in &procs[..shown] {
        out.push(format!(
            "{:<8} {:<15} {:<10} {:>10} {:>10} {:>5.0}% {:>8.0} {:>8.0} {:>9}",
            m.pid,
            m.comm.chars().take(15).collect::<String>(),
            m.policy,
            bytes(m.fast_bytes),
            bytes(m.slow_bytes),
            m.fast_share * 100.0,
            m.promotions_per_s,
            m.demotions_per_s,
            m.pingpong_pages
        ));
    }
    if shown < procs.len() {
        out.push(format!("... {} more", procs.len() - shown));
    }
    out.push(String::new());
    out.push(footer.into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierd_api::{ManagedProc, NodeInfo};

    fn node(id: u32, tier: u32, total: u64, free: u64) -> NodeInfo {
        NodeInfo {
            tier_source: "kernel".into(),
            devices: vec![],
            node: id,
            tier,
            memory_tier: None,
            cpus: vec![],
            total_bytes: total,
            free_bytes: free,
            read_latency_ns: None,
            read_bandwidth_mbps: None,
            write_latency_ns: None,
            write_bandwidth_mbps: None,
            distances: vec![],
        }
    }

    fn sample(promoted: u64, at: Instant) -> Sample {
        let mp = |pid, share| ManagedProc {
            pid,
            comm: format!("p{pid}"),
            policy: "tpp".into(),
            fast_share: share,
            promoted_pages: promoted,
            ..Default::default()
        };
        Sample {
            status: StatusReply {
                mode: "tiering".into(),
                managed: vec![mp(1, 0.2), mp(2, 0.9)],
                ..Default::default()
            },
            tiers: TiersReply {
                nodes: vec![node(0, 0, 1 << 30, 1 << 29), node(1, 1, 2 << 30, 2 << 30)],
            },
            at,
        }
    }

    #[test]
    fn frame_shows_tiers_rates_and_sorts_by_fast_share() {
        let t0 = Instant::now();
        let a = sample(0, t0);
        let b = sample(500, t0 + Duration::from_secs(2));
        let lines = frame(&b, Some(&a), 100);
        let text = lines.join("\n");
        let t0_line = lines.iter().find(|l| l.starts_with("0 ")).unwrap();
        assert!(
            t0_line.contains("512 MiB") && t0_line.contains("50%"),
            "{t0_line}"
        );
        // Two processes, +500 pages each, over 2 s.
        assert!(text.contains("promotions 500 pages/s"), "{text}");
        let p2 = text.find(" p2 ").unwrap();
        let p1 = text.find(" p1 ").unwrap();
        assert!(p2 < p1, "higher fast share first:\n{text}");
        assert!(frame(&b, Some(&a), 13).iter().any(|l| l.contains("1 more")));
    }

    #[test]
    fn bar_is_proportional() {
        assert_eq!(bar(1, 4, 8), "[##......]");
        assert_eq!(bar(0, 0, 4), "[....]");
    }
}
