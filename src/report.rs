//! Stage 6: render verdicts and traces for people (text, Markdown) and
//! programs (JSON).

use crate::construct::ModelKind;
use crate::eval::Trace;
use crate::hypotheses::Hypotheses;
use crate::model::Model;
use crate::scalar::Scalar;
use crate::taskset::TaskSet;
use crate::verify::{Arith, ClaimResult, Number, OracleFacts, Verdict, Witness, approx};
use std::fmt::Write;

pub mod interval;
pub mod markdown;
pub mod neuron;
pub mod routability;

/// Witnesses printed in text and Markdown (JSON lists all that were kept).
const SHOWN_WITNESSES: usize = 20;

/// Output formats of `verify` and `routability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

pub fn render(v: &Verdict, source: &str, format: Format) -> String {
    match format {
        Format::Text => text(v, source),
        Format::Json => json(v),
        Format::Markdown => markdown(v, source),
    }
}

/// `render`, with what the hypotheses of docs/hypotheses.md say: a line
/// (text), a paragraph (Markdown) or a `hypotheses` key (JSON), and every
/// witness's reason followed by whether H-R covers its prefix.
pub fn render_with_hypotheses(
    v: &Verdict,
    h: &Hypotheses,
    ts: &TaskSet,
    source: &str,
    format: Format,
) -> String {
    let index: std::collections::HashMap<String, usize> = ts
        .prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| (ts.render(&p.tokens), i))
        .collect();
    let mut v = v.clone();
    for w in &mut v.failures {
        if let Some(&i) = index.get(&w.prefix) {
            let note = if h.routing[i].covered() {
                format!(
                    "H-R covers this prefix ({}), so this failure contradicts {}",
                    h.explain(ts, i),
                    crate::hypotheses::DOCUMENT
                )
            } else {
                h.explain(ts, i)
            };
            w.reason = format!("{} [{note}]", w.reason);
        }
    }
    match format {
        Format::Json => {
            let mut value = serde_json::to_value(&v).unwrap_or_default();
            if let (Some(map), Ok(summary)) =
                (value.as_object_mut(), serde_json::to_value(h.summary(ts)))
            {
                map.insert("hypotheses".into(), summary);
            }
            serde_json::to_string_pretty(&value)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
                + "\n"
        }
        Format::Text | Format::Markdown => {
            let body = render(&v, source, format);
            let line = h.line(ts);
            // After the header lines (headline, context, worst cases).
            match body.find("\n\n") {
                Some(at) if format == Format::Text => {
                    format!("{}\n{line}{}", &body[..at], &body[at..])
                }
                Some(at) => format!("{}\n\n{line}{}", &body[..at], &body[at..]),
                None => format!("{body}{line}\n"),
            }
        }
    }
}

fn status(c: &ClaimResult, unit: &str) -> String {
    if c.holds {
        format!("holds ({}/{} {unit})", c.checked, c.checked)
    } else {
        format!("FAILS ({} of {} {unit})", c.failures, c.checked)
    }
}

/// The one-line summary every text report starts with. f64 verdicts say
/// so up front; the dense model has no router (R) and an isolation claim
/// (I).
pub fn headline(v: &Verdict) -> String {
    let c = &v.claims;
    let dense = v.model == ModelKind::Dense;
    let routing = if dense {
        "R routing n/a (dense: no router)".to_string()
    } else {
        format!("R routing {}", status(&c.routing, "prefixes"))
    };
    let mut line = format!(
        "{} prefixes, {} queries, {} ambiguous | {routing} | P probability {} | A retrieval {} | S size {}",
        v.prefixes,
        v.queries,
        v.ambiguous,
        status(&c.probability, "prefixes"),
        status(&c.retrieval, "prefixes"),
        status(&c.size, if dense { "circuits" } else { "experts" }),
    );
    if let Some(i) = &c.isolation {
        line.push_str(&format!(" | I isolation {}", status(i, "task prefixes")));
    }
    if v.arith == Arith::F64 {
        line = format!("[f64, not certified] {line}");
    }
    if let Some(x) = &v.cross_check {
        line.push_str(&format!(
            " | f64 cross-check: {} disagreement(s)",
            x.disagreements.len()
        ));
    }
    line
}

fn arithmetic(v: &Verdict) -> &'static str {
    match v.arith {
        Arith::F64 => "f64 (nalgebra; floating point, not a certificate)",
        Arith::Both => "exact, cross-checked in f64",
        Arith::Exact => "exact",
    }
}

fn context(v: &Verdict, source: &str) -> String {
    format!(
        "{source}: model {}, arithmetic {}, router {}, ε = {}, L = {}, |V| = {}",
        v.model,
        arithmetic(v),
        v.router_name(),
        v.epsilon,
        v.max_len,
        v.vocabulary
    )
}

/// A margin or probability for people: exact when short, else rounded.
fn short(x: &Option<Number>) -> String {
    match x {
        None => "n/a".into(),
        Some(Number::Exact(r)) => approx(r),
        // An integral f64 prints as an integer, which reads as exact.
        Some(Number::Float(f)) => match f.text().parse::<crate::scalar::Rat>() {
            Ok(r) => approx(&r),
            Err(_) => format!("{f:.6e}"),
        },
    }
}

/// The smallest margin of every claim.
fn margins(v: &Verdict) -> String {
    let c = &v.claims;
    let relation = if v.arith == Arith::F64 { "≈" } else { "≤" };
    let mut line = String::from("smallest margins:");
    if v.model != ModelKind::Dense {
        line.push_str(&format!(" routing {},", short(&c.routing.min_margin)));
    }
    line.push_str(&format!(
        " probability ε − P(invalid) = {} (P(invalid) {relation} {}), retrieval {}, size {}",
        short(&c.probability.min_margin),
        short(&c.probability.worst),
        short(&c.retrieval.min_margin),
        short(&c.size.min_margin),
    ));
    if let Some(i) = &c.isolation {
        line.push_str(&format!(", isolation {}", short(&i.min_margin)));
    }
    line
}

const COLUMNS: [&str; 7] = [
    "task",
    "templates",
    "Σ|τ|",
    "|Δk|",
    "c(k)",
    "L·|T(k)|+|Δk|",
    "neurons (syn + sem)",
];

/// The size table's header: the dense model adds whether each circuit is
/// isolated.
fn columns(v: &Verdict) -> Vec<&'static str> {
    let mut c = COLUMNS.to_vec();
    if v.circuits.is_some() {
        c.push("isolated");
    }
    c
}

fn rows(v: &Verdict) -> Vec<Vec<String>> {
    v.experts
        .iter()
        .map(|e| {
            let mut row = vec![
                e.task.clone(),
                e.templates.to_string(),
                e.template_length_sum.to_string(),
                e.pairs.to_string(),
                e.complexity.to_string(),
                e.bound.to_string(),
                format!("{} ({} + {})", e.neurons, e.syntactic, e.semantic),
            ];
            if let Some(circuits) = &v.circuits {
                row.push(
                    circuits
                        .iter()
                        .find(|c| c.task == e.task)
                        .map_or_else(|| "n/a".into(), isolated),
                );
            }
            row
        })
        .collect()
}

fn isolated(c: &crate::verify::isolation::CircuitReport) -> String {
    if c.isolated {
        return "yes".into();
    }
    let mut why = Vec::new();
    if c.changed_verdicts > 0 {
        why.push(format!("masking changes {} verdict(s)", c.changed_verdicts));
    }
    if c.off_task_firings > 0 {
        why.push(format!(
            "off-task neurons fire on {} prefix(es)",
            c.off_task_firings
        ));
    }
    if c.shared_neurons > 0 {
        why.push(format!("{} shared neuron(s)", c.shared_neurons));
    }
    format!("NO: {}", why.join(", "))
}

/// `--arith both`: the disagreements between exact and f64.
fn cross_check_text(v: &Verdict, bullet: &str) -> String {
    let Some(x) = &v.cross_check else {
        return String::new();
    };
    let mut s = format!(
        "\nf64 cross-check: {} decisions compared, {} disagreement(s) (exact decides)\n",
        x.decisions,
        x.disagreements.len()
    );
    for d in x.disagreements.iter().take(SHOWN_WITNESSES) {
        let _ = writeln!(
            s,
            "{bullet}{} on \"{}\": exact {}, f64 {}",
            d.claim, d.subject, d.exact, d.f64
        );
    }
    if x.disagreements.len() > SHOWN_WITNESSES {
        let _ = writeln!(
            s,
            "{bullet}… and {} more (--format json lists them all)",
            x.disagreements.len() - SHOWN_WITNESSES
        );
    }
    s
}

fn witness_text(w: &Witness) -> String {
    let mut s = String::new();
    if w.prefix.is_empty() {
        let _ = writeln!(s, "  {}: task {}", w.claim, w.tasks.join(", "));
    } else {
        let _ = writeln!(
            s,
            "  {}: \"{}\"  tasks C(w) = {{{}}}  expert {}",
            w.claim,
            w.prefix,
            w.tasks.join(", "),
            w.expert.as_deref().unwrap_or("-")
        );
    }
    if !w.top_logits.is_empty() {
        let top: Vec<String> = w
            .top_logits
            .iter()
            .map(|(t, z)| format!("{t}={z}"))
            .collect();
        let _ = writeln!(s, "    top logits: {}", top.join(", "));
    }
    let _ = writeln!(s, "    reason: {}", w.reason);
    s
}

fn text(v: &Verdict, source: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", headline(v));
    let _ = writeln!(s, "{}", context(v, source));
    let _ = writeln!(s, "{}", margins(v));
    let _ = writeln!(s);
    let rows = rows(v);
    let columns = columns(v);
    let widths: Vec<usize> = (0..columns.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([columns[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(s, "{}", line(columns.clone()));
    for r in &rows {
        let _ = writeln!(s, "{}", line(r.iter().map(String::as_str).collect()));
    }
    if v.failure_count > 0 {
        let _ = writeln!(s, "\nfailures ({}):", v.failure_count);
        for w in v.failures.iter().take(SHOWN_WITNESSES) {
            s.push_str(&witness_text(w));
        }
        if v.failure_count > SHOWN_WITNESSES {
            let _ = writeln!(
                s,
                "  … and {} more (--format json lists up to {})",
                v.failure_count - SHOWN_WITNESSES,
                crate::verify::MAX_WITNESSES
            );
        }
    }
    s.push_str(&cross_check_text(v, "  "));
    s
}

fn json(v: &Verdict) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

fn markdown(v: &Verdict, source: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "**{}**\n", headline(v));
    let _ = writeln!(s, "{}\n\n{}\n", context(v, source), margins(v));
    let columns = columns(v);
    let _ = writeln!(s, "{}", markdown::row(&columns));
    let _ = writeln!(s, "|{}", "---|".repeat(columns.len()));
    for r in rows(v) {
        let _ = writeln!(s, "{}", markdown::row(&r));
    }
    if v.failure_count > 0 {
        let _ = writeln!(s, "\n### Failures ({})\n", v.failure_count);
        for w in v.failures.iter().take(SHOWN_WITNESSES) {
            let _ = writeln!(
                s,
                "- **{}** `{}` (C(w) = {{{}}}, expert {}): {}",
                w.claim,
                markdown::escape(&w.prefix),
                markdown::escape(&w.tasks.join(", ")),
                markdown::escape(w.expert.as_deref().unwrap_or("-")),
                markdown::escape(&w.reason)
            );
        }
    }
    s.push_str(&cross_check_text(v, "- "));
    s
}

/// A P(invalid) for people: exact when short, else rounded.
fn probability(n: &Number) -> String {
    match n {
        Number::Exact(r) => approx(r),
        Number::Float(f) => {
            let t = f.text();
            t.parse::<crate::scalar::Rat>().map_or(t, |r| approx(&r))
        }
    }
}

/// The oracle's line of a trace: the prefix's tasks C(w), its valid next
/// tokens V(w) and whether it is a query (from the spec, never the weights).
pub(crate) fn oracle_line(s: &mut String, facts: Option<(&[String], &[String], bool)>) {
    match facts {
        Some((tasks, valid_next, is_query)) => {
            let _ = writeln!(
                s,
                "oracle: tasks C(w) = {{{}}}, valid next V(w) = {{{}}}{}",
                tasks.join(", "),
                valid_next.join(", "),
                if is_query { ", a query" } else { "" }
            );
        }
        None => {
            let _ = writeln!(s, "oracle: not a prefix of any sentence of the spec");
        }
    }
}

/// The trace of one prefix, by name.
pub fn inspect<S: Scalar>(
    model: &Model<S>,
    prefix: &str,
    trace: &Trace<S>,
    oracle: Option<&OracleFacts>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "prefix: \"{prefix}\"");
    oracle_line(
        &mut s,
        oracle.map(|o| (o.tasks.as_slice(), o.valid_next.as_slice(), o.is_query)),
    );
    for (head, out) in model.heads.iter().zip(&trace.heads) {
        let _ = writeln!(s, "{}: {}", head.name, model.describe(out, &head.values));
    }
    if model.circuits.is_empty() {
        let scores: Vec<String> = model
            .experts
            .iter()
            .zip(&trace.router_scores)
            .map(|(e, z)| format!("{}={}", e.name, z.show()))
            .collect();
        let _ = writeln!(s, "router scores: {}", scores.join(", "));
        let _ = writeln!(s, "routed to expert: {}", model.experts[trace.expert].name);
    } else {
        s.push_str(&circuits_text(model, trace));
    }
    let _ = writeln!(s, "firing neurons ({}):", trace.firing.len());
    for (n, act) in &trace.firing {
        let neuron = &model.experts[trace.expert].neurons[*n];
        let _ = writeln!(
            s,
            "  [{n}] {} = {}  writes {}",
            neuron.name,
            act.show(),
            model.describe(&neuron.write, &model.residual)
        );
    }
    let top = crate::verify::top_logits(model, trace, 8);
    let top: Vec<String> = top.iter().map(|(t, z)| format!("{t}={z}")).collect();
    let _ = writeln!(s, "top logits: {}", top.join(", "));
    if let Some(o) = oracle {
        if o.certified {
            let _ = writeln!(
                s,
                "P(valid) ≥ 1 − {} (certified)",
                probability(&o.invalid_bound)
            );
        } else {
            let _ = writeln!(
                s,
                "P(valid) ≈ 1 − {} (f64, not certified)",
                probability(&o.invalid_bound)
            );
        }
    }
    s
}

/// The dense model on one prefix: each circuit's gate Γ_k and how many of
/// its neurons fire.
fn circuits_text<S: Scalar>(model: &Model<S>, trace: &Trace<S>) -> String {
    let mut firing_in = vec![0usize; model.circuits.len()];
    for (n, _) in &trace.firing {
        if let Some(c) = model.circuit_of(*n) {
            firing_in[c] += 1;
        }
    }
    let fired: Vec<String> = model
        .circuits
        .iter()
        .zip(&firing_in)
        .filter(|(_, f)| **f > 0)
        .map(|(c, f)| format!("{} ({f} of {} neurons)", c.name, c.neurons.len()))
        .collect();
    let gates: Vec<String> = model
        .circuits
        .iter()
        .map(|c| {
            let g = c.gate.dot(&trace.hidden);
            let state = if g.is_zero() {
                "open"
            } else {
                "closed at ≥ 1"
            };
            format!("{}={} ({state})", c.name, g.show())
        })
        .collect();
    format!(
        "dense model: one FFN, no router\ngates Γ_k: {}\ncircuits firing: {}\n",
        gates.join(", "),
        if fired.is_empty() {
            "none".to_string()
        } else {
            fired.join(", ")
        }
    )
}

/// `inspect --arith both`: the f64 pass on the same prefix, in one line.
pub fn inspect_f64_line(
    model: &Model<f64>,
    trace: &Trace<f64>,
    oracle: Option<&OracleFacts>,
) -> String {
    let top = crate::verify::top_logits(model, trace, 3);
    let top: Vec<String> = top.iter().map(|(t, z)| format!("{t}={z}")).collect();
    let routed = if model.circuits.is_empty() {
        format!("routed to {}, ", model.experts[trace.expert].name)
    } else {
        String::new()
    };
    format!(
        "f64 cross-check: {routed}{} neurons fire, top logits {}{}\n",
        trace.firing.len(),
        top.join(", "),
        oracle.map_or_else(String::new, |o| format!(
            ", P(invalid) ≈ {}",
            probability(&o.invalid_bound)
        ))
    )
}
