//! SVG plots: the boundary mass m(w) against a log-scaled w, one line per
//! model (step curves through the exact points), and the straying fraction
//! against T beside the boundary mass at w = T·ln((K−1)/δ).

use super::deviation::Deviation;
use super::margins::MarginCurve;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

const SIZE: (u32, u32) = (960, 640);

type Error = Box<dyn std::error::Error>;
type LogChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, RangedCoordf64>>;

/// A chart with a log x axis over `x` and a fraction (0 to 1) on y.
fn log_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    font: u32,
    x: (f64, f64),
    x_desc: &str,
    y_desc: &str,
) -> Result<LogChart<'a, 'b>, Error> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", font))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((x.0..x.1).log_scale(), 0.0..1.05)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.2e}"))
        .draw()?;
    Ok(chart)
}

/// The legend, and the file finished.
fn finish<'a, 'b>(
    mut chart: LogChart<'a, 'b>,
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
) -> Result<(), Error> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A legend entry: a short line in the series' colour.
fn swatch(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], colour.stroke_width(2))
}

fn colour(i: usize, n: usize) -> RGBColor {
    ViridisRGB::get_color(if n > 1 {
        0.85 * i as f64 / (n - 1) as f64
    } else {
        0.0
    })
}

/// Positive range of some values, widened a little for a log axis.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if hi <= 0.0 {
        (0.1, 10.0)
    } else {
        (lo / 2.0, hi * 2.0)
    }
}

/// m(w) of every model, as SVG text. Ties (Δ = 0) cannot sit on a log axis:
/// they are the curve's value at its left end, as the legend says.
pub fn margins_svg(curves: &[MarginCurve]) -> Result<String, String> {
    let mut out = String::new();
    draw_margins(curves, &mut out).map_err(|e| format!("cannot draw the plot: {e}"))?;
    Ok(out)
}

fn draw_margins(curves: &[MarginCurve], out: &mut String) -> Result<(), Error> {
    let (lo, hi) = log_range(curves.iter().flat_map(|c| c.curve.iter().map(|p| p.approx)));
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    let mut chart = log_chart(
        &root,
        "Boundary mass m(w) = #{Δ(x) ≤ w} / #prefixes",
        20,
        (lo, hi),
        "w (top-two router margin, log scale)",
        "m(w)",
    )?;
    let n = curves.len();
    for (i, c) in curves.iter().enumerate() {
        let colour = colour(i, n);
        let total = c.prefixes.max(1) as f64;
        let ties = c.ties as f64 / total;
        let mut points = vec![(lo, ties)];
        let mut last = ties;
        for p in c.curve.iter().filter(|p| p.approx > 0.0) {
            points.push((p.approx, last));
            last = p.all_le as f64 / total;
            points.push((p.approx, last));
        }
        points.push((hi, last));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(format!(
                "{} ({} prefixes, {} ties)",
                c.model, c.prefixes, c.ties
            ))
            .legend(swatch(colour));
    }
    finish(chart, &root)
}

/// The straying fraction (solid) and m(T·ln((K−1)/δ)) (dashed) against T.
pub fn deviation_svg(tables: &[Deviation]) -> Result<String, String> {
    let mut out = String::new();
    draw_deviation(tables, &mut out).map_err(|e| format!("cannot draw the plot: {e}"))?;
    Ok(out)
}

fn draw_deviation(tables: &[Deviation], out: &mut String) -> Result<(), Error> {
    let (lo, hi) = log_range(tables.iter().flat_map(|d| d.rows.iter().map(|r| r.approx)));
    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    let delta = tables.first().map_or_else(String::new, |d| d.delta.clone());
    let mut chart = log_chart(
        &root,
        &format!(
            "Prefixes with 1 − g_top > δ = {delta} (solid) and the boundary mass at T·ln((K−1)/δ) (dashed)"
        ),
        18,
        (lo, hi),
        "temperature T (log scale)",
        "fraction of prefixes",
    )?;
    let n = tables.len();
    for (i, d) in tables.iter().enumerate() {
        let colour = colour(i, n);
        let total = d.prefixes.max(1) as f64;
        let straying: Vec<(f64, f64)> = d
            .rows
            .iter()
            .map(|r| (r.approx, r.deviating as f64 / total))
            .collect();
        let mass: Vec<(f64, f64)> = d
            .rows
            .iter()
            .map(|r| (r.approx, r.boundary as f64 / total))
            .collect();
        chart
            .draw_series(LineSeries::new(straying, colour.stroke_width(2)))?
            .label(d.model.clone())
            .legend(swatch(colour));
        chart.draw_series(DashedLineSeries::new(mass, 6, 4, colour.stroke_width(1)))?;
    }
    finish(chart, &root)
}
