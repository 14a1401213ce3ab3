//! The size-versus-complexity picture: expert neurons against c(k), one
//! colour per sweep value, with the line neurons = c(k) that the construction
//! stays under and, per row, a grey dash at the paper's bound
//! L·|T(k)| + |Δk|.
//!
//! Rings shrink with the sweep value, so a task whose expert keeps its size
//! along the sweep shows as concentric rings; a row whose construction failed
//! a claim is drawn as a cross instead of a ring.

use crate::table::{Row, Table};
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const SIZE: (u32, u32) = (960, 640);

/// Ring radius (pixels) of the i-th of n sweep values: largest first.
fn radius(i: usize, n: usize) -> f64 {
    let step = if n > 1 {
        (12.0 / (n - 1) as f64).min(2.0)
    } else {
        0.0
    };
    3.0 + step * (n - 1 - i) as f64
}

/// Colour of the i-th of n sweep values (viridis, stopping short of its
/// pale yellow end, which vanishes on white).
fn colour(i: usize, n: usize) -> RGBColor {
    let h = if n > 1 {
        0.85 * i as f64 / (n - 1) as f64
    } else {
        0.0
    };
    ViridisRGB::get_color(h)
}

/// The rows of each sweep value, in the order the points ran.
fn groups(table: &Table) -> Vec<(String, Vec<&Row>)> {
    table
        .points
        .iter()
        .map(|p| {
            let rows = table.rows.iter().filter(|r| r.value == p.value).collect();
            (p.value.clone(), rows)
        })
        .collect()
}

/// The plot as SVG text.
pub fn svg(table: &Table) -> Result<String, String> {
    let mut out = String::new();
    draw(table, &mut out).map_err(|e| format!("cannot draw the plot: {e}"))?;
    Ok(out)
}

fn draw(table: &Table, out: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let rows: Vec<&Row> = table
        .rows
        .iter()
        .filter(|r| r.moe_neurons.is_some())
        .collect();
    let x_max = rows.iter().map(|r| r.complexity).max().unwrap_or(1) as f64 * 1.08 + 1.0;
    let y_max = rows
        .iter()
        .map(|r| r.bound.max(r.moe_neurons.unwrap_or(0)))
        .max()
        .unwrap_or(1) as f64
        * 1.08
        + 1.0;

    let root = SVGBackend::with_string(out, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let verified = table.points.iter().filter(|p| p.verified).count();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Expert size against complexity, sweep \"{}\" ({verified} of {} constructions verified)",
                table.sweep,
                table.points.len()
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("c(k) = Σ|τ| + |Δk|")
        .y_desc("neurons of expert k (MoE)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let top = x_max.min(y_max);
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (top, top)],
            BLACK.stroke_width(2),
        ))?
        .label("neurons = c(k)")
        .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], BLACK.stroke_width(2)));

    // The paper's bound, per row: a short grey dash above the point.
    let grey = RGBColor(150, 150, 150);
    let dash = x_max / 160.0;
    chart
        .draw_series(rows.iter().map(|r| {
            let (x, y) = (r.complexity as f64, r.bound as f64);
            PathElement::new(vec![(x - dash, y), (x + dash, y)], grey.stroke_width(2))
        }))?
        .label("L·|T(k)| + |Δk|, the paper bound")
        .legend(move |(x, y)| PathElement::new(vec![(x - 6, y), (x + 6, y)], grey.stroke_width(2)));

    let groups = groups(table);
    let n = groups.len();
    let mut failed_label = false;
    for (i, (value, group)) in groups.iter().enumerate() {
        let c = colour(i, n);
        let r = radius(i, n);
        let at = |row: &Row| {
            (
                row.complexity as f64,
                row.moe_neurons.unwrap_or_default() as f64,
            )
        };
        chart
            .draw_series(
                group
                    .iter()
                    .filter(|row| row.verified && row.moe_neurons.is_some())
                    .map(|row| Circle::new(at(row), r, c.stroke_width(2))),
            )?
            .label(format!("{} = {value}", table.sweep))
            .legend(move |(x, y)| Circle::new((x, y), 5, c.filled()));
        let failing: Vec<&&Row> = group
            .iter()
            .filter(|row| !row.verified && row.moe_neurons.is_some())
            .collect();
        if !failing.is_empty() {
            let series = chart.draw_series(
                failing
                    .iter()
                    .map(|row| Cross::new(at(row), 6, c.stroke_width(2))),
            )?;
            if !failed_label {
                failed_label = true;
                series
                    .label("× construction failed a claim")
                    .legend(|(x, y)| Cross::new((x, y), 5, BLACK.stroke_width(2)));
            }
        }
    }
    if let Some(p) = &table.prediction {
        // Below the legend's corner, bottom right of the plot area.
        let text = format!(
            "paper: {}; on these rows: {}",
            p.predicted,
            if p.holds { "holds" } else { "does not hold" }
        );
        root.draw(&Text::new(
            text,
            (SIZE.0 as i32 - 24, SIZE.1 as i32 - 100),
            ("sans-serif", 14)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Bottom)),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Point;

    fn row(value: &str, task: &str, c: usize, bound: usize, n: usize, verified: bool) -> Row {
        Row {
            sweep: "pairs".into(),
            value: value.into(),
            task: task.into(),
            templates: 1,
            template_length_sum: 3,
            pairs: c - 3,
            complexity: c,
            bound,
            patterns: 3,
            moe_neurons: Some(n),
            moe_syntactic: Some(2),
            moe_semantic: Some(n - 2),
            dense_neurons: None,
            dense_syntactic: None,
            dense_semantic: None,
            verified,
            failed: String::new(),
            build_seconds: 0.0,
            verify_seconds: 0.0,
        }
    }

    fn point(value: &str, verified: bool) -> Point {
        Point {
            sweep: "pairs".into(),
            value: value.into(),
            tasks: 1,
            prefixes: 1,
            queries: 1,
            ambiguous: 0,
            vocabulary: 1,
            max_len: 3,
            verified,
            failed: String::new(),
            build_seconds: 0.0,
            verify_seconds: 0.0,
        }
    }

    #[test]
    fn draws_rings_crosses_the_line_and_a_legend() {
        let table = Table {
            sweep: "pairs".into(),
            points: vec![point("1", true), point("2", false)],
            prediction: None,
            rows: vec![
                row("1", "a", 4, 4, 3, true),
                row("1", "b", 5, 5, 4, true),
                row("2", "a", 5, 5, 4, false),
            ],
        };
        let svg = svg(&table).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Two rings for the verified rows (and one legend disc per value).
        let circles = svg.matches("<circle").count();
        assert_eq!(circles, 2 + 2, "{svg}");
        for text in [
            "pairs = 1",
            "pairs = 2",
            "neurons = c(k)",
            "× construction failed a claim",
            "1 of 2 constructions verified",
            "L·|T(k)| + |Δk|, the paper bound",
        ] {
            assert!(svg.contains(text), "{text}: {svg}");
        }
    }

    #[test]
    fn rings_shrink_and_colours_differ_along_the_sweep() {
        assert_eq!(radius(0, 1), 3.0);
        assert!(radius(0, 7) > radius(6, 7));
        assert_eq!(radius(6, 7), 3.0);
        assert!(radius(0, 50) <= 15.0);
        assert_ne!(colour(0, 3), colour(2, 3));
    }
}
