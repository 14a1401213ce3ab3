//! Text, Markdown, CSV and JSON for margins, soft verdicts and T*.

use super::certify::{CertifiedTemperature, SoftVerdict};
use super::deviation::Deviation;
use super::margins::MarginCurve;
use std::fmt::Write;

fn claim(name: &str, c: &crate::verify::ClaimResult) -> String {
    format!(
        "{name} {} ({}/{} prefixes)",
        if c.holds { "holds" } else { "fails" },
        c.checked - c.failures,
        c.checked
    )
}

/// A soft verdict as text.
pub fn verdict_text(v: &SoftVerdict, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "soft gate at T = {} | {} | {} | {}",
        v.temperature,
        claim("R routing (g_top ≥ 1 − η)", &v.routing),
        claim("P probability", &v.probability),
        claim("A retrieval", &v.retrieval)
    );
    let _ = writeln!(
        out,
        "{source}: gate softmax, arithmetic {} ({}), η = {}, ε = {}, largest gate mass off the top expert ≤ {}",
        v.arith,
        if v.certified {
            "certified"
        } else {
            "not certified"
        },
        v.eta,
        v.epsilon,
        v.max_off_top_brief.as_deref().unwrap_or("0")
    );
    for f in &v.failures {
        let _ = writeln!(
            out,
            "  {} fails on \"{}\" ({}): {}",
            f.claim,
            f.prefix,
            f.tasks.join(", "),
            f.reason
        );
    }
    if v.failure_count > v.failures.len() {
        let _ = writeln!(out, "  … {} failures in all", v.failure_count);
    }
    out
}

/// T* as text.
pub fn certified_text(c: &CertifiedTemperature, source: &str) -> String {
    let mut out = String::new();
    let what = if c.verdict.certified {
        "certified temperature"
    } else {
        "temperature (f64, not certified)"
    };
    let headline = if c.temperature == "0" {
        "no positive temperature: some claim fails at every T > 0 (and in the limit T → 0)"
            .to_string()
    } else {
        format!(
            "every claim {} at every T ≤ T*",
            if c.verdict.certified {
                "is proved"
            } else {
                "holds in f64"
            }
        )
    };
    let _ = writeln!(
        out,
        "{what} T* = {}{} (≈ {:.6e}): {headline}{}",
        if c.at_least { "at least " } else { "" },
        c.temperature,
        c.approx,
        c.fails_at.as_ref().map_or_else(String::new, |f| format!(
            "; the certificate fails at {f} (relative precision {})",
            c.relative_precision
        ))
    );
    if let Some(b) = &c.binding {
        let _ = writeln!(
            out,
            "binding prefix \"{}\" ({}), top expert {}, Δ = {}, expert spread {}: {}",
            b.prefix,
            b.tasks.join(", "),
            b.expert,
            b.margin.as_deref().unwrap_or("none"),
            b.spread_brief,
            b.reason
        );
    }
    out.push_str(&verdict_text(&c.verdict, source));
    out
}

/// JSON of any of the reports.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

/// CSV under `header`: a quoted model column, then the fields.
fn csv(header: &str, rows: impl Iterator<Item = (String, Vec<String>)>) -> String {
    let mut out = format!("{header}\n");
    for (model, fields) in rows {
        let _ = writeln!(
            out,
            "\"{}\",{}",
            model.replace('"', "\"\""),
            fields.join(",")
        );
    }
    out
}

/// The margin curves as CSV, one row per (model, distinct Δ).
pub fn margins_csv(curves: &[MarginCurve]) -> String {
    csv(
        "model,arith,delta,delta_approx,one_task,ambiguous,one_task_le,ambiguous_le,all_le,undecided_le,mass,mass_one_task,mass_ambiguous",
        curves.iter().flat_map(|c| {
            c.curve.iter().map(|p| {
                (
                    c.model.clone(),
                    vec![
                        c.arith.clone(),
                        p.delta.clone(),
                        p.approx.to_string(),
                        p.one_task.to_string(),
                        p.ambiguous.to_string(),
                        p.one_task_le.to_string(),
                        p.ambiguous_le.to_string(),
                        p.all_le.to_string(),
                        p.undecided_le.to_string(),
                        p.mass.clone(),
                        p.mass_one_task.clone(),
                        p.mass_ambiguous.clone(),
                    ],
                )
            })
        }),
    )
}

fn md(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The margin curves as Markdown: a summary per model and its curve.
pub fn margins_markdown(curves: &[MarginCurve]) -> String {
    let mut out = String::new();
    for c in curves {
        let _ = writeln!(
            out,
            "### {}\n\n{} prefixes ({} of one task, {} ambiguous), {} experts, {} margins, {} router ties, {} interval margins, {} without a margin; smallest: {}\n",
            md(&c.model),
            c.prefixes,
            c.one_task,
            c.ambiguous,
            c.experts,
            c.arith,
            c.ties,
            c.interval_margins,
            c.without_margin,
            c.smallest
                .iter()
                .map(|s| format!("\"{}\" Δ = {}", md(&s.prefix), s.delta))
                .collect::<Vec<_>>()
                .join(", ")
        );
        out.push_str("| Δ | ≈ | one task at Δ | ambiguous at Δ | Δ(w) ≤ Δ: one task | ambiguous | undecided | m(Δ) |\n|---|---|---|---|---|---|---|---|\n");
        for p in &c.curve {
            let _ = writeln!(
                out,
                "| {} | {:.4e} | {} | {} | {} | {} | {} | {} |",
                p.delta,
                p.approx,
                p.one_task,
                p.ambiguous,
                p.one_task_le,
                p.ambiguous_le,
                p.undecided_le,
                p.mass
            );
        }
        out.push('\n');
    }
    out
}

/// The deviation tables as Markdown.
pub fn deviation_markdown(tables: &[Deviation]) -> String {
    let mut out = String::new();
    for d in tables {
        let _ = writeln!(
            out,
            "### {}: 1 − g_top > δ = {} against T ({} prefixes, K = {}, {})\n",
            md(&d.model),
            d.delta,
            d.prefixes,
            d.experts,
            d.arith
        );
        out.push_str("| T | straying (1 − g_top > δ) | within δ | undecided | fraction straying | w = T·ln((K−1)/δ) | Δ ≤ w | undecided | m(w) |\n|---|---|---|---|---|---|---|---|---|\n");
        for r in &d.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.4e} | {} | {} | {} |",
                r.temperature,
                r.deviating,
                r.within,
                r.undecided,
                r.fraction,
                r.w_approx,
                r.boundary,
                r.boundary_undecided,
                r.boundary_mass
            );
        }
        out.push('\n');
    }
    out
}

/// The deviation tables as CSV.
pub fn deviation_csv(tables: &[Deviation]) -> String {
    csv(
        "model,arith,delta,temperature,deviating,within,undecided,fraction,w_approx,boundary,boundary_undecided,boundary_mass",
        tables.iter().flat_map(|d| {
            d.rows.iter().map(|r| {
                (
                    d.model.clone(),
                    vec![
                        d.arith.clone(),
                        d.delta.clone(),
                        r.temperature.clone(),
                        r.deviating.to_string(),
                        r.within.to_string(),
                        r.undecided.to_string(),
                        r.fraction.clone(),
                        r.w_approx.to_string(),
                        r.boundary.to_string(),
                        r.boundary_undecided.to_string(),
                        r.boundary_mass.clone(),
                    ],
                )
            })
        }),
    )
}
