//! The report's plots: the fast node's share of one workload's memory over time, one
//! line per arm, as a PNG (plotters' bitmap backend). Labels need a TrueType font
//! (DejaVu Sans, Debian's fonts-dejavu-core, which bench/run.sh installs); without one
//! the lines are drawn unlabelled and the caller says so.

use plotters::prelude::*;
use std::path::Path;

const FONTS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
];

/// Picture size, pixels.
pub const SIZE: (u32, u32) = (960, 480);

/// One arm's line.
pub struct Line {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// Registers the first font found for labels; false when there is none.
pub fn register_font() -> bool {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            // The font must outlive every chart: leaked once per process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// The y axis' top: the highest point plus a margin, in steps of 0.1, at most 1.
fn y_top(lines: &[Line]) -> f64 {
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    ((max * 1.15 * 10.0).ceil() / 10.0).clamp(0.1, 1.0)
}

/// Draws `lines` into the PNG `out`; with no lines, an empty frame that says so in
/// its caption (a plot of an earlier run must not stay behind).
pub fn draw(out: &Path, title: &str, lines: &[Line], labels: bool) -> anyhow::Result<()> {
    let x_end = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .ceil();
    let root = BitMapBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(12);
    if labels {
        let caption = if lines.is_empty() {
            format!("{title} (not run)")
        } else {
            title.to_string()
        };
        builder
            .caption(caption, ("sans-serif", 20))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(0f64..x_end, 0f64..y_top(lines))?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("seconds since the workload was released")
            .y_desc("share of its memory on the fast node")
            .label_style(("sans-serif", 14))
            .draw()?;
    }
    for l in lines {
        let style = l.color.stroke_width(2);
        let series = chart.draw_series(LineSeries::new(l.points.iter().copied(), style))?;
        if labels {
            let c = l.color;
            series.label(l.label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
            });
        }
    }
    if labels && !lines.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn y_axis_fits_the_data() {
        let l = |y: f64| Line {
            label: String::new(),
            color: BLACK,
            points: vec![(0.0, 0.0), (1.0, y)],
        };
        assert_eq!(y_top(&[]), 0.1);
        assert_eq!(y_top(&[l(0.35)]), 0.5);
        assert_eq!(y_top(&[l(0.05), l(0.92)]), 1.0);
    }
}
