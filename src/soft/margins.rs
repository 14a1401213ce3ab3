//! The top-two router margin Δ(w) = a_(1)(w) − a_(2)(w) of every prefix and
//! the boundary-mass curve m(w) = #{prefixes with Δ ≤ w} / #prefixes at
//! every distinct Δ, split into prefixes of one task and ambiguous ones.
//! Router scores come from the router-only part of the forward pass on the
//! weights (no expert, no unembedding): exact or f64 from
//! [`crate::eval::Evaluator::route`], or rigorous intervals from
//! [`crate::interval::forward`] for float weights in natural units, where
//! every margin is an interval and counts that an interval leaves open are
//! reported as undecided.

use super::gate::GateArith;
use super::prefix::{margin_bounds, model_tokens};
use crate::eval::Evaluator;
use crate::interval::Iv;
use crate::interval::forward::IntervalEvaluator;
use crate::model::Model;
use crate::scalar::{Rat, Scalar, int};
use crate::taskset::TaskSet;
use crate::verify::logits::token_map;
use rayon::prelude::*;
use serde::Serialize;

/// One prefix as the router sees it: its margin and its gaps, exact
/// (lo = hi) or as rigorous bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterView<S> {
    /// Δ ∈ [margin.0, margin.1] (None with one expert).
    pub margin: Option<(S, S)>,
    /// G_{e*} − G_e for every e ≠ e*, each in [gaps.0[k], gaps.1[k]] (≥ 0),
    /// when the top expert e* is decided; None when the intervals leave two
    /// or more experts possibly on top, and when the view was made without
    /// gaps.
    pub gaps: Option<(Vec<S>, Vec<S>)>,
}

fn exact_view<S: Scalar>(scores: &[S], top: usize, with_gaps: bool) -> RouterView<S> {
    let gaps = with_gaps.then(|| {
        let gaps: Vec<S> = (0..scores.len())
            .filter(|&e| e != top)
            .map(|e| scores[top].clone() - scores[e].clone())
            .collect();
        (gaps.clone(), gaps)
    });
    RouterView {
        margin: margin_bounds(scores, scores),
        gaps,
    }
}

/// Every prefix's router view from exact or f64 weights (ln 2 units, or
/// natural units in f64). The gaps are kept only `with_gaps` (the
/// deviation table needs them; the margin curve does not, and at K experts
/// they are 2(K − 1) numbers a prefix).
pub fn router_views<S: GateArith>(
    ts: &TaskSet,
    model: &Model<S>,
    with_gaps: bool,
) -> Vec<Result<RouterView<S>, String>> {
    per_prefix_scores(ts, model, |scores| {
        let mut top = 0;
        for (e, s) in scores.iter().enumerate() {
            if *s > scores[top] {
                top = e;
            }
        }
        exact_view(scores, top, with_gaps)
    })
}

/// `f` of every prefix's exact or f64 router scores (router-only passes,
/// in parallel); only what `f` keeps stays in memory, not the scores.
fn per_prefix_scores<S: GateArith, T: Send>(
    ts: &TaskSet,
    model: &Model<S>,
    f: impl Fn(&[S]) -> T + Sync,
) -> Vec<Result<T, String>> {
    let engine = Evaluator::new(model).without_preactivations();
    let tokens = token_map(ts, model);
    ts.prefixes
        .par_iter()
        .map(|p| {
            let input = model_tokens(p, &tokens)?;
            let (_, scores) = engine.route(&input).map_err(|e| e.to_string())?;
            Ok(f(&scores))
        })
        .collect()
}

/// Every prefix's router view from rigorous intervals (float weights in
/// natural units), endpoints as the exact dyadics they are.
pub fn interval_views(
    ts: &TaskSet,
    model: &Model<Rat>,
    with_gaps: bool,
) -> Vec<Result<RouterView<Rat>, String>> {
    let ivs = model.map(Iv::enclose);
    let engine = IntervalEvaluator::new(&ivs);
    let tokens = token_map(ts, &ivs);
    ts.prefixes
        .par_iter()
        .map(|p| {
            let input = model_tokens(p, &tokens)?;
            let trace = engine.run(&input).map_err(|e| e.to_string())?;
            let unbounded = || "a router score is unbounded (the weights overflow)".to_string();
            let lo: Vec<Rat> = trace
                .router_scores
                .iter()
                .map(|s| s.lo_rat().ok_or_else(unbounded))
                .collect::<Result<_, _>>()?;
            let hi: Vec<Rat> = trace
                .router_scores
                .iter()
                .map(|s| s.hi_rat().ok_or_else(unbounded))
                .collect::<Result<_, _>>()?;
            let gaps = match trace.candidates.as_slice() {
                // e* is the argmax, so every true gap is ≥ 0.
                &[top] if with_gaps => {
                    let others = (0..lo.len()).filter(|&e| e != top);
                    let low = others
                        .clone()
                        .map(|e| {
                            let g = lo[top].clone() - hi[e].clone();
                            if g.is_positive() { g } else { int(0) }
                        })
                        .collect();
                    let high = others.map(|e| hi[top].clone() - lo[e].clone()).collect();
                    Some((low, high))
                }
                _ => None,
            };
            Ok(RouterView {
                margin: margin_bounds(&lo, &hi),
                gaps,
            })
        })
        .collect()
}

/// Per prefix: Δ(w) as exact text (f64 text with `--arith f64`), for
/// verify's JSON (router-only passes).
pub fn margin_texts(
    ts: &TaskSet,
    model: &Model<Rat>,
    arith: crate::verify::Arith,
) -> Vec<Option<String>> {
    // Only the margin's text is kept per prefix (the gaps of a full
    // router view would be K − 1 numbers more for every prefix).
    fn texts<S: GateArith>(ts: &TaskSet, model: &Model<S>) -> Vec<Option<String>> {
        per_prefix_scores(ts, model, |scores| {
            margin_bounds(scores, scores).map(|m| m.0.text())
        })
        .into_iter()
        .map(|t| t.ok().flatten())
        .collect()
    }
    match arith {
        crate::verify::Arith::F64 => texts(ts, &model.to_f64()),
        _ => texts(ts, &model.map(crate::scalar::FastRat::from_rat)),
    }
}

/// m(w) at one distinct margin w = Δ.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MarginPoint {
    /// Δ, exact.
    pub delta: String,
    pub approx: f64,
    /// Prefixes with exactly this Δ (interval margins: whose upper end is
    /// this Δ): of one task, ambiguous.
    pub one_task: usize,
    pub ambiguous: usize,
    /// Prefixes with Δ ≤ this one (proved, with interval margins): of one
    /// task, ambiguous, all.
    pub one_task_le: usize,
    pub ambiguous_le: usize,
    pub all_le: usize,
    /// Prefixes whose margin interval holds this Δ (Δ ≤ it neither proved
    /// nor refuted); 0 with exact margins.
    pub undecided_le: usize,
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
    /// "exact", "f64" or "interval".
    pub arith: String,
    pub experts: usize,
    pub prefixes: usize,
    pub one_task: usize,
    pub ambiguous: usize,
    /// Prefixes without a margin (one expert, or the forward pass failed).
    pub without_margin: usize,
    /// Router ties (Δ = 0), where soft routing stays soft at every T.
    pub ties: usize,
    /// Prefixes whose margin is an interval, not one number (float weights
    /// in natural units); 0 with exact margins.
    pub interval_margins: usize,
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

/// The curve from per-prefix router views (in task-set order).
pub fn curve<S: GateArith>(
    label: &str,
    ts: &TaskSet,
    experts: usize,
    arith: &str,
    views: &[Result<RouterView<S>, String>],
) -> MarginCurve {
    let margins: Vec<Option<(S, S)>> = views
        .iter()
        .map(|v| v.as_ref().ok().and_then(|v| v.margin.clone()))
        .collect();
    from_margins(label, ts, experts, arith, &margins)
}

/// The curve from per-prefix margins Δ ∈ [lo, hi] (in task-set order).
pub fn from_margins<S: GateArith>(
    label: &str,
    ts: &TaskSet,
    experts: usize,
    arith: &str,
    margins: &[Option<(S, S)>],
) -> MarginCurve {
    let order = |a: &S, b: &S| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal);
    // (hi, lo, ambiguous, prefix), by upper end.
    let mut known: Vec<(S, S, bool, usize)> = margins
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            m.clone()
                .map(|(lo, hi)| (hi, lo, ts.prefixes[i].is_ambiguous(), i))
        })
        .collect();
    known.sort_by(|a, b| order(&a.0, &b.0).then(order(&a.1, &b.1)));
    let mut lows: Vec<S> = known.iter().map(|k| k.1.clone()).collect();
    lows.sort_by(order);
    let mut points: Vec<S> = known
        .iter()
        .map(|k| k.0.clone())
        .chain(lows.iter().cloned())
        .collect();
    points.sort_by(order);
    points.dedup_by(|a, b| a == b);
    let prefixes = ts.prefixes.len();
    let ambiguous = ts.prefixes.iter().filter(|p| p.is_ambiguous()).count();
    let one_task = prefixes - ambiguous;
    let mut curve: Vec<MarginPoint> = Vec::new();
    let (mut one_le, mut amb_le) = (0, 0);
    let (mut k, mut l) = (0, 0);
    for delta in points {
        let (mut one, mut amb) = (0, 0);
        while k < known.len() && known[k].0 <= delta {
            if known[k].2 {
                amb += 1;
            } else {
                one += 1;
            }
            k += 1;
        }
        while l < lows.len() && lows[l] <= delta {
            l += 1;
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
            undecided_le: l - (one_le + amb_le),
            mass: fraction(one_le + amb_le, prefixes),
            mass_one_task: fraction(one_le, one_task),
            mass_ambiguous: fraction(amb_le, ambiguous),
        });
    }
    let ties = known.iter().filter(|k| !k.0.is_positive()).count();
    let interval_margins = known.iter().filter(|k| k.0 != k.1).count();
    let smallest = known
        .iter()
        .take(SMALLEST)
        .map(|(hi, lo, _, i)| SmallMargin {
            prefix: ts.render(&ts.prefixes[*i].tokens),
            tasks: ts.prefixes[*i]
                .tasks
                .iter()
                .map(|&t| ts.tasks[t].name.clone())
                .collect(),
            delta: if hi == lo {
                hi.text()
            } else {
                format!("[{}, {}]", lo.text(), hi.text())
            },
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
        interval_margins,
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
        let views = router_views(&ts, &m, true);
        let c = curve("shared_keys", &ts, m.experts.len(), "exact", &views);
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
        let temps: Vec<Rat> = [1, 10, 100, 1000]
            .iter()
            .map(|d| int(1) / int(*d))
            .collect();
        let d = deviation(
            "shared_keys",
            "exact",
            &views,
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

    #[test]
    fn margin_bounds_are_exact_on_points_and_enclose_on_intervals() {
        // Exact scores: the exact margin, twice.
        assert_eq!(
            margin_bounds(&[int(1), int(5), int(3)], &[int(1), int(5), int(3)]),
            Some((int(2), int(2)))
        );
        // Scores in [4, 6], [3, 5], [0, 1]: a_(1) ∈ [4, 6], a_(2) ∈ [3, 5],
        // so Δ ∈ [0, 3] (clamped at 0: the first two may tie).
        assert_eq!(
            margin_bounds(&[int(4), int(3), int(0)], &[int(6), int(5), int(1)]),
            Some((int(0), int(3)))
        );
        // Scores in [10, 11] and [2, 3]: Δ ∈ [7, 9].
        assert_eq!(
            margin_bounds(&[int(10), int(2)], &[int(11), int(3)]),
            Some((int(7), int(9)))
        );
    }

    #[test]
    fn interval_margins_count_open_prefixes_as_undecided() {
        // Three prefixes: Δ = 1 exactly, Δ ∈ [1/2, 2], Δ ∈ [3, 4].
        let path = format!(
            "{}/constructions/running_example.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let ts = TaskSet::from_spec(&crate::spec::load(Path::new(&path)).unwrap());
        let mut margins: Vec<Option<(Rat, Rat)>> = vec![None; ts.prefixes.len()];
        margins[0] = Some((int(1), int(1)));
        margins[1] = Some((crate::scalar::rat(1, 2), int(2)));
        margins[2] = Some((int(3), int(4)));
        let c = from_margins("x", &ts, 2, "interval", &margins);
        let at = |d: &str| c.curve.iter().find(|p| p.delta == d).unwrap();
        // At 1/2 only the open one may be below; at 1 one is proved and
        // one still open; at 2 both; at 3 the third opens; at 4 all three.
        assert_eq!((at("1/2").all_le, at("1/2").undecided_le), (0, 1));
        assert_eq!((at("1").all_le, at("1").undecided_le), (1, 1));
        assert_eq!((at("2").all_le, at("2").undecided_le), (2, 0));
        assert_eq!((at("3").all_le, at("3").undecided_le), (2, 1));
        assert_eq!((at("4").all_le, at("4").undecided_le), (3, 0));
        assert_eq!(c.interval_margins, 2);
        assert_eq!(c.without_margin, ts.prefixes.len() - 3);
        assert_eq!(c.smallest[0].delta, "1");
        assert_eq!(c.smallest[1].delta, "[1/2, 2]");
    }

    #[test]
    fn float_weights_give_intervals_around_the_exact_margins() {
        let path = format!(
            "{}/constructions/running_example.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let ts = TaskSet::from_spec(&crate::spec::load(Path::new(&path)).unwrap());
        let exact = crate::construct::build(&ts, &Options::default(), ModelKind::Moe);
        let float = crate::interval::float_image::float_image(&exact);
        let views = router_views(&ts, &exact.map(FastRat::from_rat), true);
        let ivs = interval_views(&ts, &float, true);
        let mut widths = 0;
        for (e, v) in views.iter().zip(&ivs) {
            let (d, _) = e.as_ref().unwrap().margin.clone().unwrap();
            let d = d.to_rat();
            let (lo, hi) = v.as_ref().unwrap().margin.clone().unwrap();
            // W_Q·ln 2 rounded to f64 moves the attention weights, and so
            // the margin, by ~1e-16 relative: the intervals sit on the
            // exact margin to well within 1e-6, and are that tight.
            let tol = crate::scalar::rat(1, 1_000_000);
            assert!(
                lo.clone() - tol.clone() <= d && d <= hi.clone() + tol,
                "{lo} {d} {hi}"
            );
            assert!(hi.clone() - lo.clone() < crate::scalar::rat(1, 1_000_000));
            if lo != hi {
                widths += 1;
            }
            assert!(v.as_ref().unwrap().gaps.is_some());
        }
        let c = curve("float", &ts, 2, "interval", &ivs);
        assert_eq!(c.interval_margins, widths);
        assert_eq!(c.curve.last().unwrap().all_le, ts.prefixes.len());
    }
}
