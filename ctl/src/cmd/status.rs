//! `tierctl status`.

use crate::client::{call, Failure};
use crate::output::{bytes, table};
use std::path::Path;
use tierd_api::{Request, StatusReply};

/// What tierd moved per direction and cause, then the kernel's migration counters
/// since tierd started (non-zero ones), so the two can be compared.
fn print_moves(s: &StatusReply) {
    if s.moves.is_empty() {
        println!("moved: nothing yet");
    } else {
        println!("moved since start (tier -> tier, cause):");
        let rows: Vec<Vec<String>> = s
            .moves
            .iter()
            .map(|m| {
                vec![
                    format!("{} -> {}", m.from_tier, m.to_tier),
                    m.cause.as_str().to_string(),
                    m.pages.to_string(),
                    bytes(m.bytes),
                ]
            })
            .collect();
        table(&["TIERS", "CAUSE", "PAGES", "BYTES"], &rows);
        let total: u64 = s.moves.iter().map(|m| m.pages).sum();
        println!("  total {total} pages");
    }
    let kernel: Vec<String> = s
        .kernel_vmstat
        .iter()
        .filter(|(_, &v)| v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !s.kernel_vmstat.is_empty() {
        println!(
            "kernel since start (all movers): {}",
            if kernel.is_empty() {
                "no migrations".to_string()
            } else {
                kernel.join(" ")
            }
        );
    }
}

pub fn run(socket: &Path, json: bool) -> Result<(), Failure> {
    let (s, v): (StatusReply, _) = call(socket, &Request::Status)?;
    if json {
        return super::print_json(&v);
    }
    println!("tierd {}  mode: {} ({})", s.version, s.mode, s.mode_reason);
    println!(
        "nodes: {}  tiers: {}  uptime: {:.0}s  clients: {}",
        s.nodes, s.tiers, s.uptime_s, s.clients
    );
    println!(
        "config: {}",
        s.config_path.as_deref().unwrap_or("(built-in defaults)")
    );
    println!(
        "kernel: numa_balancing={} demotion_enabled={}",
        s.kernel
            .numa_balancing
            .map_or("?".into(), |v| v.to_string()),
        s.kernel
            .demotion_enabled
            .map_or("?".into(), |v| v.to_string())
    );
    let psi = &s.psi;
    println!(
        "migration: rate factor {:.2} (memory pressure {} vs threshold {}), cap {}",
        psi.rate_factor,
        psi.memory_some_avg10_pct
            .map_or("?".into(), |p| format!("{p:.1}%")),
        if psi.threshold_pct > 0.0 {
            format!("{:.1}%", psi.threshold_pct)
        } else {
            "off".into()
        },
        if psi.rate_limit_mbps == 0 {
            "none".into()
        } else {
            format!("{} MB/s", psi.rate_limit_mbps)
        }
    );
    println!(
        "sampling: interval {} ms, overhead {:.2}% CPU (budget {:.1}%/GiB)",
        s.sampling.interval_ms, s.sampling.overhead_pct, s.sampling.budget_pct_per_gb
    );
    for b in &s.sampling.backends {
        println!(
            "  {:<10} {:<4} {}",
            b.name,
            if b.active { "on" } else { "off" },
            b.detail
        );
    }
    print_moves(&s);
    print_scopes(&s.scopes);
    if s.managed.is_empty() {
        println!("no managed processes");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = s
        .managed
        .iter()
        .map(|p| {
            vec![
                p.pid.to_string(),
                p.comm.clone(),
                p.policy.clone(),
                p.priority.to_string(),
                bytes(p.fast_bytes),
                bytes(p.slow_bytes),
                format!("{:.0}%", p.fast_share * 100.0),
                format!("{:.0}", p.promotions_per_s),
                format!("{:.0}", p.demotions_per_s),
                p.pingpong_pages.to_string(),
                if p.kernel_tiering_active {
                    "yes".into()
                } else {
                    "no".into()
                },
                if p.sampled {
                    "sampling".into()
                } else {
                    "hints".into()
                },
            ]
        })
        .collect();
    table(
        &[
            "PID",
            "COMM",
            "POLICY",
            "PRIO",
            "FAST",
            "SLOW",
            "FAST%",
            "PROM/S",
            "DEM/S",
            "PINGPONG",
            "KERNEL_TIERING",
            "SIGNAL",
        ],
        &rows,
    );
    Ok(())
}

/// The scopes, one line each, with their processes.
fn print_scopes(scopes: &[tierd_api::ScopeStatus]) {
    if scopes.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = scopes
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                format!("{} {}", c.kind, c.selector),
                c.origin.clone(),
                c.policy.clone(),
                c.priority.to_string(),
                bytes(c.fast_bytes),
                crate::output::opt(c.fast_budget_bytes.map(bytes)),
                crate::output::opt(c.fast_min_bytes.map(bytes)),
                match (&c.problem, c.pids.is_empty()) {
                    (Some(p), true) => p.clone(),
                    (_, true) => "-".into(),
                    _ => c
                        .pids
                        .iter()
                        .map(i32::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                },
            ]
        })
        .collect();
    table(
        &[
            "SCOPE", "SELECTS", "ORIGIN", "POLICY", "PRIO", "FAST", "BUDGET", "MIN", "PIDS",
        ],
        &rows,
    );
    // A scope's GPU placement and its own PSI backoff, when it has them.
    for c in scopes {
        let mut notes = Vec::new();
        if let Some(g) = &c.gpu {
            let nodes: Vec<String> = c.gpu_nodes.iter().map(u32::to_string).collect();
            notes.push(match nodes.is_empty() {
                true => format!("gpu {g}: not found, whole fast tier"),
                false => format!("gpu {g}: fast node(s) {}", nodes.join(" ")),
            });
        }
        if c.psi_rate_factor < 1.0 {
            notes.push(format!(
                "memory.pressure {}%: promotions at {:.2} of the rate",
                crate::output::opt(c.memory_pressure_some_avg10_pct),
                c.psi_rate_factor
            ));
        }
        if !notes.is_empty() {
            println!("  scope {}: {}", c.name, notes.join("; "));
        }
    }
}
