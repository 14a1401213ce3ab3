//! Interval verdicts ([`crate::verify::interval`]) for people and programs:
//! proved, refuted and undecided counted apart on every line.

use crate::verify::interval::{IntervalClaim, IntervalVerdict};
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
            if c.isolated { "isolated" } else { "not proved isolated" }
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
