//! `tierctl heatmap --pid PID --out FILE.png`: address × time heat of a managed
//! process, drawn from the daemon's heat history (one snapshot a second).
//!
//! The address axis is compressed to the ranges that were ever hot: the gaps of a
//! sparse 47-bit address space are cut out, so a 32 MiB hot set in a 512 MiB mapping
//! stays visible. Labels need a TrueType font (DejaVu Sans, from the Debian
//! package fonts-dejavu-core); without one the picture is drawn unlabelled.

use crate::client::{call, Failure};
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use tierd_api::{HeatReply, HeatSnapshot, Request};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pid: i32,
    /// PNG file to write.
    #[arg(long)]
    out: PathBuf,
    /// Image width, pixels.
    #[arg(long, default_value_t = 1200)]
    width: u32,
    /// Image height, pixels.
    #[arg(long, default_value_t = 800)]
    height: u32,
}

const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
];

pub fn run(socket: &Path, json: bool, a: Args) -> Result<(), Failure> {
    let (h, v): (HeatReply, _) = call(
        socket,
        &Request::Heat {
            pid: a.pid,
            top_bytes: None,
            history: true,
        },
    )?;
    if h.history.is_empty() {
        return Err(Failure::Other(format!(
            "no heat history for pid {} yet (a snapshot is kept every second)",
            a.pid
        )));
    }
    let labels = register_font();
    draw(&h, &a.out, (a.width, a.height), labels)
        .map_err(|e| Failure::Other(format!("drawing {}: {e}", a.out.display())))?;
    if json {
        return super::print_json(&v);
    }
    println!(
        "wrote {} ({} snapshots, {} KiB of address space seen)",
        a.out.display(),
        h.history.len(),
        AddrAxis::new(&h.history).total >> 10
    );
    Ok(())
}

/// Registers the first font found for labels; false when there is none.
fn register_font() -> bool {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            // The font must outlive every chart: leak it once per process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Address ranges ever seen, laid end to end: `(start, end, offset on the axis)`.
pub struct AddrAxis {
    spans: Vec<(u64, u64, u64)>,
    pub total: u64,
}

impl AddrAxis {
    pub fn new(history: &[HeatSnapshot]) -> AddrAxis {
        let mut ranges: Vec<(u64, u64)> = history
            .iter()
            .flat_map(|s| s.regions.iter().map(|r| (r.start, r.end)))
            .filter(|(s, e)| e > s)
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let mut total = 0;
        let spans = merged
            .into_iter()
            .map(|(s, e)| {
                let off = total;
                total += e - s;
                (s, e, off)
            })
            .collect();
        AddrAxis { spans, total }
    }

    /// Position of `addr` on the compressed axis (`addr` must be in a seen range or
    /// at its end).
    pub fn pos(&self, addr: u64) -> u64 {
        let i = self.spans.partition_point(|&(_, e, _)| e < addr);
        match self.spans.get(i) {
            Some(&(s, _, off)) if addr >= s => off + (addr - s),
            Some(&(_, _, off)) => off,
            None => self.total,
        }
    }

    /// The address at axis position `p`, for labels.
    pub fn addr(&self, p: u64) -> u64 {
        let i = self
            .spans
            .partition_point(|&(s, e, off)| off + (e - s) <= p);
        match self.spans.get(i) {
            Some(&(s, _, off)) => s + (p - off),
            None => self.spans.last().map_or(0, |&(_, e, _)| e),
        }
    }
}

/// Heat 0..1 to a dark-blue → red → yellow ramp.
fn color(x: f64) -> RGBColor {
    let x = x.clamp(0.0, 1.0);
    let (r, g, b) = if x < 0.5 {
        let t = x * 2.0;
        (40.0 + 200.0 * t, 20.0 + 20.0 * t, 90.0 - 60.0 * t)
    } else {
        let t = (x - 0.5) * 2.0;
        (240.0 + 15.0 * t, 40.0 + 200.0 * t, 30.0 + 60.0 * t)
    };
    RGBColor(r as u8, g as u8, b as u8)
}

fn draw(
    h: &HeatReply,
    out: &Path,
    size: (u32, u32),
    labels: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let axis = AddrAxis::new(&h.history);
    let hist = &h.history;
    let t0 = hist.first().map_or(0.0, |s| s.t_s);
    let step = if hist.len() > 1 {
        (hist[hist.len() - 1].t_s - t0) / (hist.len() - 1) as f64
    } else {
        1.0
    };
    let t1 = hist.last().map_or(1.0, |s| s.t_s) + step;
    let max_heat = hist
        .iter()
        .flat_map(|s| s.regions.iter().map(|r| r.heat))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let root = BitMapBackend::new(out, size).into_drawing_area();
    root.fill(&BLACK)?;
    let mut builder = ChartBuilder::on(&root);
    if labels {
        builder
            .caption(
                format!("pid {}: heat (max {max_heat:.2}), address × time", h.pid),
                ("sans-serif", 20).into_font().color(&WHITE),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(130);
    }
    let mut chart = builder.build_cartesian_2d(t0..t1, 0u64..axis.total.max(1))?;
    if labels {
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("time, s")
            .y_desc("address (hot ranges only)")
            .axis_style(WHITE)
            .label_style(("sans-serif", 13).into_font().color(&WHITE))
            .y_label_formatter(&|p| format!("{:#x}", axis.addr(*p)))
            .draw()?;
    }
    for (i, snap) in hist.iter().enumerate() {
        let x0 = snap.t_s;
        let x1 = hist.get(i + 1).map_or(x0 + step, |n| n.t_s);
        chart.draw_series(snap.regions.iter().map(|r| {
            let c = color(r.heat / max_heat);
            Rectangle::new([(x0, axis.pos(r.start)), (x1, axis.pos(r.end))], c.filled())
        }))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierd_api::HeatRegion;

    fn snap(t_s: f64, ranges: &[(u64, u64, f64)]) -> HeatSnapshot {
        HeatSnapshot {
            t_s,
            regions: ranges
                .iter()
                .map(|&(start, end, heat)| HeatRegion {
                    start,
                    end,
                    heat,
                    node: None,
                })
                .collect(),
        }
    }

    #[test]
    fn axis_cuts_out_gaps() {
        let h = [
            snap(0.0, &[(100, 200, 1.0)]),
            snap(1.0, &[(150, 250, 1.0), (1000, 1100, 2.0)]),
        ];
        let a = AddrAxis::new(&h);
        assert_eq!(a.total, 250);
        assert_eq!(a.pos(100), 0);
        assert_eq!(a.pos(250), 150);
        assert_eq!(a.pos(1000), 150);
        assert_eq!(a.pos(1100), 250);
        assert_eq!(a.addr(160), 1010);
    }

    #[test]
    fn draws_a_png() {
        let h = HeatReply {
            pid: 1,
            regions: vec![],
            history: (0..30u64)
                .map(|i| {
                    let hot = (i / 10) * (8 << 20);
                    snap(
                        i as f64,
                        &[
                            (hot, hot + (4 << 20), 5.0),
                            (64 << 20, 96 << 20, 0.2 + (i % 3) as f64 * 0.1),
                        ],
                    )
                })
                .collect(),
        };
        let dir = tempfile::tempdir().unwrap();
        // TIERD_HEATMAP_OUT keeps the picture for a look.
        let out = std::env::var_os("TIERD_HEATMAP_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.path().join("h.png"));
        draw(&h, &out, (600, 400), register_font()).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
