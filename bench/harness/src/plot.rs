//! PNG bar charts of throughput and P99 latency per workload, one panel each.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::results::Results;
use crate::workloads::ALL;

/// Debian's fonts-dejavu-core; plotters draws text with it.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

pub fn register_font() -> Result<()> {
    let bytes = std::fs::read(FONT)
        .with_context(|| format!("reading {FONT} (Debian package fonts-dejavu-core)"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| anyhow!("{FONT} is not a usable font"))
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(140, 86, 75),
];

/// One PNG with a panel per workload: the median of `metric` per contender, min-max whiskers.
pub fn bars(r: &Results, metric: &str, title: &str, unit: &str, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 26))?;
    let panels = root.split_evenly((2, 2));
    for (panel, w) in panels.iter().zip(ALL) {
        let bars: Vec<(usize, &str, f64, f64, f64)> = r
            .contenders
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let s = r.get(&c.name, w.name(), metric)?;
                Some((i, c.name.as_str(), s.median, s.min, s.max))
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        let top = bars.iter().map(|b| b.4).fold(0.0, f64::max) * 1.15;
        let names: Vec<&str> = bars.iter().map(|b| b.1).collect();
        let mut chart = ChartBuilder::on(panel)
            .caption(w.name(), ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (0..bars.len()).into_segmented(),
                0.0..top.max(f64::MIN_POSITIVE),
            )?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(unit)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => {
                    names.get(*i).map(|s| s.to_string()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .label_style(("sans-serif", 14))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(slot, b)| {
            let colour = COLOURS[b.0 % COLOURS.len()];
            let mut rect = Rectangle::new(
                [
                    (SegmentValue::Exact(slot), 0.0),
                    (SegmentValue::Exact(slot + 1), b.2),
                ],
                colour.filled(),
            );
            rect.set_margin(0, 0, 12, 12);
            rect
        }))?;
        chart.draw_series(bars.iter().enumerate().map(|(slot, b)| {
            ErrorBar::new_vertical(
                SegmentValue::CenterOf(slot),
                b.3,
                b.2,
                b.4,
                BLACK.filled(),
                10,
            )
        }))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Collector;

    #[test]
    fn draws_a_png() {
        register_font().unwrap();
        let mut c = Collector::default();
        for v in [100.0, 120.0, 110.0] {
            c.add("native", "hello", "rps", v);
            c.add("node", "json", "rps", v / 2.0);
        }
        let r = Results::for_test(&["native", "node"], c);
        let path =
            std::env::temp_dir().join(format!("wedge-bench-plot-{}.png", std::process::id()));
        bars(&r, "rps", "throughput", "req/s", &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000,
            "{} bytes",
            png.len()
        );
        std::fs::remove_file(path).unwrap();
    }
}
