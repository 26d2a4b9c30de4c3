//! The bar chart of the ratios: one bar per metric from the 1.0 line to its
//! ratio, log scale, drawn with `plotters` into a PNG. The font is Debian's
//! DejaVu Sans (`fonts-dejavu-core`, installed by `./fsdax`), loaded at run
//! time and handed to plotters' built-in TrueType rasteriser.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::report::Row;

/// Where Debian's fonts-dejavu-core puts the font.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn load_font() -> Result<()> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT_PATH).map_err(|e| {
                format!(
                    "{FONT_PATH}: {e}: install it with `apt-get install --no-install-recommends fonts-dejavu-core` \
                     (`./fsdax` does it)"
                )
            })?;
            // The font lives as long as the process: plotters keeps a 'static reference.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| format!("{FONT_PATH} is not a font"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Draws the ratios of `rows` into `path` (PNG): one horizontal bar per
/// metric, first metric on top. Metrics without a ratio keep their row with
/// no bar; `note` goes under the title.
pub fn ratios_png(rows: &[Row], title: &str, note: &str, path: &Path) -> Result<()> {
    load_font()?;
    let n = rows.len().max(1);
    let height = (150 + 30 * n) as u32;
    let root = BitMapBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (lo, hi) =
        rows.iter().filter_map(|r| r.ratio).fold((0.1f64, 10.0f64), |(lo, hi), x| (lo.min(x / 2.0), hi.max(x * 2.0)));
    let root = root.titled(title, ("sans-serif", 24))?;
    let (note_area, chart_area) = root.split_vertically(26);
    note_area.draw(&Text::new(
        note.to_string(),
        (20, 2),
        ("sans-serif", 15).into_font().color(&RGBColor(90, 90, 90)),
    ))?;
    // Row i from the top is rows[i]; the y axis counts from the bottom.
    let label = |i: usize| n.checked_sub(i + 1).and_then(|k| rows.get(k)).map(|r| r.metric.clone()).unwrap_or_default();
    let mut chart = ChartBuilder::on(&chart_area)
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(230)
        .build_cartesian_2d((lo..hi).log_scale(), (0..n - 1).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => label(*i),
            _ => String::new(),
        })
        .x_desc("fsdax vs Linux: x better (log scale; right of 1.0: fsdax better)")
        .x_label_formatter(&|x| if *x >= 1.0 { format!("{x:.0}x") } else { format!("{x}x") })
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    let better = RGBColor(46, 125, 50);
    let worse = RGBColor(198, 40, 40);
    chart.draw_series(rows.iter().enumerate().filter_map(|(k, r)| {
        let ratio = r.ratio?;
        let i = n - 1 - k;
        let color = if ratio >= 1.0 { better } else { worse };
        let mut bar =
            Rectangle::new([(1.0, SegmentValue::Exact(i)), (ratio, SegmentValue::Exact(i + 1))], color.filled());
        bar.set_margin(5, 5, 0, 0);
        Some(bar)
    }))?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
        BLACK.stroke_width(2),
    )))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::report::{Stats, Unit};
    use super::*;

    #[test]
    fn draws_a_png_with_and_without_ratios() {
        let s = Some(Stats { median: 1.0, spread_pct: 0.0, n: 1 });
        let rows = [
            Row {
                metric: "append_4k".into(),
                unit: Unit::OpsPerSec,
                fsdax: s,
                linux: s,
                ratio: Some(5.2),
                reference: false,
            },
            Row { metric: "ficlone".into(), unit: Unit::Secs, fsdax: s, linux: s, ratio: Some(0.5), reference: false },
            Row { metric: "cow_mmap".into(), unit: Unit::Secs, fsdax: None, linux: s, ratio: None, reference: false },
        ];
        let dir = std::env::temp_dir().join(format!("fsdax-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, rows) in [("some.png", &rows[..]), ("none.png", &rows[2..])] {
            let path = dir.join(name);
            ratios_png(rows, "test", "a note", &path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
