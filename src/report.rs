//! Stage 6: render verdicts and traces for people (text, Markdown) and
//! programs (JSON).

use crate::eval::Trace;
use crate::hypotheses::Hypotheses;
use crate::model::Model;
use crate::scalar::Scalar;
use crate::taskset::TaskSet;
use crate::verify::{ClaimResult, Verdict, Witness, approx};
use std::fmt::Write;

/// Witnesses printed in text and Markdown (JSON lists all that were kept).
const SHOWN_WITNESSES: usize = 20;

/// Output formats of `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The one-line summary every text report starts with.
pub fn headline(v: &Verdict) -> String {
    let c = &v.claims;
    format!(
        "{} prefixes, {} queries, {} ambiguous | R routing {} | P probability {} | A retrieval {} | S size {}",
        v.prefixes,
        v.queries,
        v.ambiguous,
        status(&c.routing, "prefixes"),
        status(&c.probability, "prefixes"),
        status(&c.retrieval, "prefixes"),
        status(&c.size, "experts"),
    )
}

fn context(v: &Verdict, source: &str) -> String {
    format!(
        "{source}: model {}, arithmetic {}, router {}, ε = {}, L = {}, |V| = {}",
        v.model, v.arith, v.router, v.epsilon, v.max_len, v.vocabulary
    )
}

fn worst(v: &Verdict) -> String {
    let c = &v.claims;
    let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "n/a".into());
    format!(
        "worst cases: routing margin {}, retrieval margin {}, P(invalid) ≤ {}",
        show(&c.routing.worst),
        show(&c.retrieval.worst),
        c.probability
            .worst
            .as_ref()
            .and_then(|w| w.parse().ok())
            .map_or("n/a".into(), |r| approx(&r)),
    )
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

fn rows(v: &Verdict) -> Vec<[String; 7]> {
    v.experts
        .iter()
        .map(|e| {
            [
                e.task.clone(),
                e.templates.to_string(),
                e.template_length_sum.to_string(),
                e.pairs.to_string(),
                e.complexity.to_string(),
                e.bound.to_string(),
                format!("{} ({} + {})", e.neurons, e.syntactic, e.semantic),
            ]
        })
        .collect()
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
    let _ = writeln!(s, "{}", worst(v));
    let _ = writeln!(s);
    let rows = rows(v);
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([COLUMNS[c].chars().count()])
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
    let _ = writeln!(s, "{}", line(COLUMNS.to_vec()));
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
    s
}

fn json(v: &Verdict) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

fn markdown(v: &Verdict, source: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "**{}**\n", headline(v));
    let _ = writeln!(s, "{}\n\n{}\n", context(v, source), worst(v));
    let _ = writeln!(s, "| {} |", COLUMNS.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(COLUMNS.len()));
    for r in rows(v) {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    if v.failure_count > 0 {
        let _ = writeln!(s, "\n### Failures ({})\n", v.failure_count);
        for w in v.failures.iter().take(SHOWN_WITNESSES) {
            let _ = writeln!(
                s,
                "- **{}** `{}` (C(w) = {{{}}}, expert {}): {}",
                w.claim,
                w.prefix,
                w.tasks.join(", "),
                w.expert.as_deref().unwrap_or("-"),
                w.reason
            );
        }
    }
    s
}

/// What the oracle says about an inspected prefix, if it is one.
pub struct OracleFacts {
    pub tasks: Vec<String>,
    pub valid_next: Vec<String>,
    pub is_query: bool,
    /// Certified upper bound on P(invalid).
    pub invalid_bound: String,
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
    match oracle {
        Some(o) => {
            let _ = writeln!(
                s,
                "oracle: tasks C(w) = {{{}}}, valid next V(w) = {{{}}}{}",
                o.tasks.join(", "),
                o.valid_next.join(", "),
                if o.is_query { ", a query" } else { "" }
            );
        }
        None => {
            let _ = writeln!(s, "oracle: not a prefix of any sentence of the spec");
        }
    }
    for (head, out) in model.heads.iter().zip(&trace.heads) {
        let _ = writeln!(s, "{}: {}", head.name, model.describe(out, &head.values));
    }
    let scores: Vec<String> = model
        .experts
        .iter()
        .zip(&trace.router_scores)
        .map(|(e, z)| format!("{}={}", e.name, z.show()))
        .collect();
    let _ = writeln!(s, "router scores: {}", scores.join(", "));
    let _ = writeln!(s, "routed to expert: {}", model.experts[trace.expert].name);
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
        let _ = writeln!(s, "P(valid) ≥ 1 − {} (certified)", o.invalid_bound);
    }
    s
}
