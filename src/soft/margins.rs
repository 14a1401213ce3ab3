//! The top-two router margin Δ(w) = a_(1)(w) − a_(2)(w) of every prefix,
//! exact, and the boundary-mass curve m(w) = #{prefixes with Δ ≤ w} /
//! #prefixes at every distinct Δ, split into prefixes of one task and
//! ambiguous ones. Router scores come from the forward pass on the weights.

use super::gate::GateArith;
use super::prefix::{model_tokens, top_two_margin};
use crate::eval::Evaluator;
use crate::model::Model;
use crate::scalar::{Rat, Scalar, int};
use crate::taskset::TaskSet;
use crate::verify::logits::token_map;
use rayon::prelude::*;
use serde::Serialize;

/// Per prefix: the gaps G_{e*} − G_e to every other expert (e* the top-1
/// expert), or why the forward pass failed.
pub fn router_gaps<S: GateArith>(ts: &TaskSet, model: &Model<S>) -> Vec<Result<Vec<S>, String>> {
    let engine = Evaluator::new(model).without_preactivations();
    let tokens = token_map(ts, model);
    ts.prefixes
        .par_iter()
        .map(|p| {
            let input = model_tokens(p, &tokens)?;
            let trace = engine.run(&input).map_err(|e| e.to_string())?;
            let s = &trace.router_scores;
            Ok((0..s.len())
                .filter(|&e| e != trace.expert)
                .map(|e| s[trace.expert].clone() - s[e].clone())
                .collect())
        })
        .collect()
}

/// Per prefix: Δ(w), None with one expert or a failed forward pass.
pub fn prefix_margins<S: GateArith>(ts: &TaskSet, model: &Model<S>) -> Vec<Option<S>> {
    let engine = Evaluator::new(model).without_preactivations();
    let tokens = token_map(ts, model);
    ts.prefixes
        .par_iter()
        .map(|p| {
            let input = model_tokens(p, &tokens).ok()?;
            top_two_margin(&engine.run(&input).ok()?.router_scores)
        })
        .collect()
}

/// Per prefix: Δ(w) as exact text (f64 text with `--arith f64`), for
/// verify's JSON.
pub fn margin_texts(
    ts: &TaskSet,
    model: &Model<Rat>,
    arith: crate::verify::Arith,
) -> Vec<Option<String>> {
    match arith {
        crate::verify::Arith::F64 => prefix_margins(ts, &model.to_f64())
            .into_iter()
            .map(|m| m.map(|m| m.text()))
            .collect(),
        _ => prefix_margins(ts, &model.map(crate::scalar::FastRat::from_rat))
            .into_iter()
            .map(|m| m.map(|m| m.text()))
            .collect(),
    }
}

/// m(w) at one distinct margin w = Δ.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MarginPoint {
    /// Δ, exact.
    pub delta: String,
    pub approx: f64,
    /// Prefixes with exactly this Δ: of one task, ambiguous.
    pub one_task: usize,
    pub ambiguous: usize,
    /// Prefixes with Δ ≤ this one: of one task, ambiguous, all.
    pub one_task_le: usize,
    pub ambiguous_le: usize,
    pub all_le: usize,
    /// m(w) = all_le / prefixes, and per group over the group's size (exact).
    pub mass: String,
    pub mass_one_task: String,
    pub mass_ambiguous: String,
}

/// A prefix with one of the smallest margins.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SmallMargin {
    pub prefix: String,
    pub tasks: Vec<String>,
    pub delta: String,
}

/// The margin distribution of one model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MarginCurve {
    /// What the line is: a spec and its flags, or a model file.
    pub model: String,
    /// "exact" or "f64".
    pub arith: String,
    pub experts: usize,
    pub prefixes: usize,
    pub one_task: usize,
    pub ambiguous: usize,
    /// Prefixes without a margin (one expert, or the forward pass failed).
    pub without_margin: usize,
    /// Router ties (Δ = 0), where soft routing stays soft at every T.
    pub ties: usize,
    /// The smallest margins, smallest first.
    pub smallest: Vec<SmallMargin>,
    pub curve: Vec<MarginPoint>,
}

/// Prefixes listed as the smallest margins.
const SMALLEST: usize = 5;

fn fraction(n: usize, d: usize) -> String {
    if d == 0 {
        "0".into()
    } else {
        (int(n as i64) / int(d as i64)).to_string()
    }
}

/// The curve of one model over a task set.
pub fn curve<S: GateArith>(label: &str, ts: &TaskSet, model: &Model<S>) -> MarginCurve {
    let margins = prefix_margins(ts, model);
    from_margins(label, ts, model.experts.len(), S::NAME, &margins)
}

/// The curve from per-prefix margins (in task-set order).
pub fn from_margins<S: GateArith>(
    label: &str,
    ts: &TaskSet,
    experts: usize,
    arith: &str,
    margins: &[Option<S>],
) -> MarginCurve {
    let mut known: Vec<(S, bool, usize)> = margins
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.clone().map(|m| (m, ts.prefixes[i].is_ambiguous(), i)))
        .collect();
    known.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let prefixes = ts.prefixes.len();
    let ambiguous = ts.prefixes.iter().filter(|p| p.is_ambiguous()).count();
    let one_task = prefixes - ambiguous;
    let mut curve: Vec<MarginPoint> = Vec::new();
    let (mut one_le, mut amb_le) = (0, 0);
    let mut k = 0;
    while k < known.len() {
        let delta = known[k].0.clone();
        let (mut one, mut amb) = (0, 0);
        while k < known.len() && known[k].0 == delta {
            if known[k].1 {
                amb += 1;
            } else {
                one += 1;
            }
            k += 1;
        }
        one_le += one;
        amb_le += amb;
        curve.push(MarginPoint {
            delta: delta.text(),
            approx: delta.approx(),
            one_task: one,
            ambiguous: amb,
            one_task_le: one_le,
            ambiguous_le: amb_le,
            all_le: one_le + amb_le,
            mass: fraction(one_le + amb_le, prefixes),
            mass_one_task: fraction(one_le, one_task),
            mass_ambiguous: fraction(amb_le, ambiguous),
        });
    }
    let ties = known.iter().filter(|(m, _, _)| !m.is_positive()).count();
    let smallest = known
        .iter()
        .take(SMALLEST)
        .map(|(m, _, i)| SmallMargin {
            prefix: ts.render(&ts.prefixes[*i].tokens),
            tasks: ts.prefixes[*i]
                .tasks
                .iter()
                .map(|&t| ts.tasks[t].name.clone())
                .collect(),
            delta: m.text(),
        })
        .collect();
    MarginCurve {
        model: label.to_string(),
        arith: arith.to_string(),
        experts,
        prefixes,
        one_task,
        ambiguous,
        without_margin: prefixes - known.len(),
        ties,
        smallest,
        curve,
    }
}

/// m(w) at an arbitrary w: the last point at or below w (exact).
pub fn mass_at(curve: &MarginCurve, w: &Rat) -> usize {
    curve
        .curve
        .iter()
        .take_while(|p| crate::scalar::parse_rational(&p.delta).is_some_and(|d| d <= *w))
        .last()
        .map_or(0, |p| p.all_le)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::{ModelKind, Options};
    use crate::scalar::FastRat;
    use crate::soft::deviation::deviation;
    use std::path::Path;

    #[test]
    fn curve_counts_every_prefix_and_bounds_the_straying_ones() {
        let path = format!(
            "{}/constructions/shared_keys.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let ts = TaskSet::from_spec(&crate::spec::load(Path::new(&path)).unwrap());
        let m = crate::construct::build(&ts, &Options::default(), ModelKind::Moe)
            .map(FastRat::from_rat);
        let c = curve("shared_keys", &ts, &m);
        let last = c.curve.last().unwrap();
        assert_eq!(last.all_le, ts.prefixes.len());
        assert_eq!(last.mass, "1");
        assert_eq!(
            (last.one_task_le, last.ambiguous_le),
            (c.one_task, c.ambiguous)
        );
        // The 7 ties are the 7 ambiguous prefixes (a shared key before any
        // template word): the curve starts at Δ = 0 with exactly them.
        assert_eq!(c.curve[0].delta, "0");
        assert_eq!((c.curve[0].one_task, c.curve[0].ambiguous), (0, 7));
        assert_eq!(c.ties, 7);
        assert!(c.curve.windows(2).all(|w| w[0].approx < w[1].approx));
        // The seed paper's bound: a prefix whose gate strays by more than δ
        // has Δ < T·ln((K−1)/δ).
        let gaps = router_gaps(&ts, &m);
        let temps: Vec<Rat> = [1, 10, 100, 1000]
            .iter()
            .map(|d| int(1) / int(*d))
            .collect();
        let d = deviation(
            "shared_keys",
            &gaps,
            2,
            &Rat::new(1.into(), 100.into()),
            &temps,
        );
        for r in &d.rows {
            assert!(r.deviating <= r.boundary + r.boundary_undecided, "{r:?}");
            assert_eq!(r.deviating + r.within + r.undecided, ts.prefixes.len());
            // Ties stray at every temperature (half the gate is off the top).
            assert!(r.deviating >= 7);
        }
        assert_eq!(mass_at(&c, &int(0)), 7);
    }
}
