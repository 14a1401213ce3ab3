//! Interval verdicts ([`crate::verify::interval`]) for people and programs:
//! proved, refuted and undecided counted apart on every line.

use crate::interval::Iv;
use crate::interval::forward::{Firing, IntervalTrace};
use crate::model::Model;
use crate::scalar::Scalar;
use crate::verify::Witness;
use crate::verify::interval::{IntervalClaim, IntervalVerdict, Outcome, PrefixOutcome};
use std::fmt::Write;

/// Witnesses printed per list in text (JSON lists all that were kept).
const SHOWN: usize = 20;

fn status(c: &IntervalClaim, what: &str) -> String {
    let word = if c.holds {
        "PROVED"
    } else if c.refuted > 0 {
        "REFUTED"
    } else {
        "UNDECIDED"
    };
    format!(
        "{word} ({} proved, {} refuted, {} undecided of {} {what})",
        c.proved, c.refuted, c.undecided, c.checked
    )
}

/// One line per claim, the precision, then the witnesses.
pub fn text(v: &IntervalVerdict, source: &str) -> String {
    let c = &v.claims;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{source}: model {}, arithmetic interval ({}; e^x: {} Taylor terms), attention {} exp, ε = {}, L = {}, |V| = {}",
        v.model,
        v.precision.endpoints,
        v.precision.exp_terms,
        v.score_unit,
        v.epsilon,
        v.max_len,
        v.vocabulary
    );
    let _ = writeln!(
        out,
        "{} prefixes, {} queries, {} ambiguous",
        v.prefixes, v.queries, v.ambiguous
    );
    if v.precision.refined > 0 {
        let bits: Vec<String> = v.precision.refine_bits.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "refinement: {} prefixes' routing undecided at 53 bits, recomputed at {} bits: {} decided, {} still undecided",
            v.precision.refined,
            bits.join(", "),
            v.precision.refined_decided,
            v.precision.refined - v.precision.refined_decided
        );
    }
    if v.model == "dense" {
        let _ = writeln!(out, "R routing n/a (dense: no router)");
    } else {
        let _ = writeln!(out, "R routing {}", status(&c.routing, "prefixes"));
    }
    let _ = writeln!(out, "P probability {}", status(&c.probability, "prefixes"));
    let _ = writeln!(out, "A retrieval {}", status(&c.retrieval, "prefixes"));
    let unit = if v.model == "dense" {
        "circuits"
    } else {
        "experts"
    };
    let _ = writeln!(out, "S size {}", status(&c.size, unit));
    if let Some(i) = &c.isolation {
        let _ = writeln!(
            out,
            "I isolation {}, silence margin ≥ {}",
            status(i, "checks"),
            i.min_margin.as_deref().unwrap_or("n/a")
        );
        if let Some((refined, decided)) = v.precision.silence_refined
            && refined > 0
        {
            let _ = writeln!(
                out,
                "refinement: {refined} isolation checks with a neuron straddling 0 at 53 bits: {decided} decided, {} still undecided",
                refined - decided
            );
        }
    }
    let _ = writeln!(
        out,
        "smallest margins (rigorous lower bounds): routing {}, probability ε − P(invalid) {}, retrieval {}, size {}",
        c.routing.min_margin.as_deref().unwrap_or("n/a"),
        c.probability.min_margin.as_deref().unwrap_or("n/a"),
        c.retrieval.min_margin.as_deref().unwrap_or("n/a"),
        c.size.min_margin.as_deref().unwrap_or("n/a"),
    );
    for e in &v.experts {
        let _ = writeln!(
            out,
            "  {}: {} of {} neurons fire on its prefixes ({} more may), bound {}: {:?}",
            e.unit.as_deref().unwrap_or("(none)"),
            e.firing,
            e.neurons,
            e.undecided,
            e.bound,
            e.outcome
        );
    }
    for c in v.circuits.iter().flatten() {
        let _ = writeln!(
            out,
            "  C({}): {} neurons, {} prefixes ({} proved, {} refuted, {} undecided), masking changed {} verdicts, off-task neurons fire on {} (may on {} more), {} shared neurons, silence margin ≥ {}: {}",
            c.task,
            c.neurons,
            c.prefixes,
            c.proved,
            c.refuted,
            c.undecided,
            c.changed_verdicts,
            c.off_task_firings,
            c.off_task_maybe,
            c.shared_neurons,
            c.silence_margin.as_deref().unwrap_or("n/a"),
            if c.isolated {
                "isolated"
            } else {
                "not proved isolated"
            }
        );
    }
    for (title, count, list) in [
        ("refuted", v.failure_count, &v.failures),
        ("undecided", v.undecided_count, &v.undecided),
    ] {
        if count == 0 {
            continue;
        }
        let _ = writeln!(out, "{count} {title}:");
        for w in list.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  [{}] \"{}\" ({}) expert {}: {}",
                w.claim,
                w.prefix,
                w.tasks.join(", "),
                w.expert.as_deref().unwrap_or("-"),
                w.reason
            );
        }
        if count > SHOWN {
            let _ = writeln!(out, "  … {} more", count - SHOWN);
        }
    }
    out
}

/// The verdict as JSON.
pub fn json(v: &IntervalVerdict) -> String {
    serde_json::to_string_pretty(v).expect("verdicts serialise")
}

/// What the spec and the intervals say of one prefix of the spec.
pub struct IntervalOracle {
    pub tasks: Vec<String>,
    pub valid_next: Vec<String>,
    pub is_query: bool,
    pub outcome: PrefixOutcome,
    /// Claims not proved there, with their witnesses.
    pub open: Vec<(Outcome, Witness)>,
}

/// Neurons listed by `inspect` on float weights.
const NEURONS_SHOWN: usize = 40;

/// `inspect --weights` on float weights: the interval trace of one prefix
/// (every number a rigorous enclosure), and, for a prefix of the spec,
/// what the intervals decide there with the oracle's C(w) and V(w).
pub fn inspect(
    model: &Model<Iv>,
    prefix: &str,
    trace: &IntervalTrace,
    oracle: Option<&IntervalOracle>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "prefix: \"{prefix}\"");
    let _ = writeln!(
        s,
        "arithmetic: interval (float weights, natural-exp attention; every number below is a rigorous enclosure [lo, hi], a point where exact)"
    );
    super::oracle_line(
        &mut s,
        oracle.map(|o| (o.tasks.as_slice(), o.valid_next.as_slice(), o.is_query)),
    );
    for (head, w) in model.heads.iter().zip(&trace.attention) {
        let weights: Vec<String> = w
            .iter()
            .enumerate()
            .map(|(j, x)| format!("{}:{}", j + 1, x.show()))
            .collect();
        let _ = writeln!(s, "{} attention: {}", head.name, weights.join(", "));
    }
    let _ = writeln!(s, "A': {}", model.describe(&trace.hidden, &model.residual));
    if model.circuits.is_empty() {
        let scores: Vec<String> = model
            .experts
            .iter()
            .zip(&trace.router_scores)
            .map(|(e, z)| format!("{}={}", e.name, z.show()))
            .collect();
        let _ = writeln!(s, "router scores: {}", scores.join(", "));
        let names: Vec<&str> = trace
            .candidates
            .iter()
            .map(|&e| model.experts[e].name.as_str())
            .collect();
        let _ = writeln!(
            s,
            "routed to expert: {}{}",
            names.join(" or "),
            if names.len() > 1 {
                " (the intervals do not decide the top-1)"
            } else {
                ""
            }
        );
    } else {
        let _ = writeln!(s, "dense model: one FFN, no router");
    }
    for (&e, f) in trace.candidates.iter().zip(&trace.ffn) {
        let expert = &model.experts[e];
        let surely = f
            .firing
            .iter()
            .filter(|(_, x)| *x == Firing::Surely)
            .count();
        let _ = writeln!(
            s,
            "firing neurons of {} ({surely} surely, {} may):",
            expert.name,
            f.firing.len() - surely
        );
        for ((n, how), act) in f.firing.iter().zip(&f.activation).take(NEURONS_SHOWN) {
            let neuron = &expert.neurons[*n];
            let circuit = model
                .circuit_of(*n)
                .map_or_else(String::new, |c| format!(" [C({})]", model.circuits[c].name));
            let _ = writeln!(
                s,
                "  [{n}] {}{circuit} = {}{}",
                neuron.name,
                act.show(),
                if *how == Firing::Maybe {
                    " (may fire: its pre-activation straddles 0)"
                } else {
                    ""
                }
            );
        }
        if f.firing.len() > NEURONS_SHOWN {
            let _ = writeln!(s, "  … {} more", f.firing.len() - NEURONS_SHOWN);
        }
    }
    let mut top: Vec<&(usize, Iv)> = trace.logits.entries().iter().collect();
    top.sort_by(|a, b| b.1.hi().total_cmp(&a.1.hi()));
    let top: Vec<String> = top
        .iter()
        .take(8)
        .map(|(t, z)| format!("{}={}", model.vocab[*t], z.show()))
        .collect();
    let _ = writeln!(
        s,
        "top logits: {}{}",
        top.join(", "),
        if trace.logits.nnz() < trace.vocab_size {
            format!(
                " ({} other tokens at 0)",
                trace.vocab_size - trace.logits.nnz()
            )
        } else {
            String::new()
        }
    );
    if let Some(IntervalOracle {
        outcome: out, open, ..
    }) = oracle
    {
        let line = |name: &str, o: &(Outcome, Option<f64>)| {
            format!(
                "{name} {:?}{}",
                o.0,
                o.1.map_or_else(String::new, |m| format!(
                    " (margin ≥ {})",
                    Iv::point(m).text()
                ))
            )
        };
        let mut parts = Vec::new();
        if let Some(r) = &out.routing {
            parts.push(line("R routing", r));
        }
        parts.push(line("P probability", &out.probability));
        parts.push(line("A retrieval", &out.retrieval));
        let _ = writeln!(s, "decided by the intervals: {}", parts.join(", "));
        for (o, w) in open {
            let _ = writeln!(s, "  {:?} [{}]: {}", o, w.claim, w.reason);
        }
    }
    s
}
