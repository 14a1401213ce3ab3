//! The seed paper's statement measured on our models: at temperature T, how
//! many prefixes' soft gates put more than δ off the top expert
//! (1 − g_top > δ, the total-variation distance between the soft gate and
//! the hard one-hot gate), beside the boundary mass at w = T·ln((K−1)/δ).
//! Since 1 − g_top ≤ (K−1)·e^{−Δ/T}, a prefix that strays has Δ < w: the
//! first count never exceeds the second. Both are decided with exact exp
//! bounds; prefixes too close to call (or whose router intervals leave the
//! top expert open) are counted as undecided. A prefix with Δ > w is within
//! δ by the same bound, so only the prefixes at or near the boundary need
//! their gate bounded expert by expert.

use super::gate::{GateArith, at_most_t_ln, off_top_lower, off_top_upper};
use super::margins::RouterView;
use crate::scalar::{Rat, int};
use serde::Serialize;

/// One temperature's row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviationRow {
    pub temperature: String,
    pub approx: f64,
    /// Prefixes proved to have 1 − g_top > δ, proved ≤ δ, and undecided.
    pub deviating: usize,
    pub within: usize,
    pub undecided: usize,
    /// deviating / prefixes, exact.
    pub fraction: String,
    /// w = T·ln((K−1)/δ), for reading.
    pub w_approx: f64,
    /// Prefixes proved to have Δ ≤ w, and undecided against w.
    pub boundary: usize,
    pub boundary_undecided: usize,
    /// boundary / prefixes, exact.
    pub boundary_mass: String,
}

/// The table over temperatures, for one model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Deviation {
    pub model: String,
    pub arith: String,
    pub delta: String,
    pub experts: usize,
    pub prefixes: usize,
    pub rows: Vec<DeviationRow>,
}

/// The table from per-prefix router views (see [`super::margins`]).
pub fn deviation<S: GateArith>(
    label: &str,
    arith: &str,
    views: &[Result<RouterView<S>, String>],
    experts: usize,
    delta: &Rat,
    temperatures: &[Rat],
) -> Deviation {
    let d = S::from_rat(delta);
    let c = S::from_rat(&(int(experts.saturating_sub(1) as i64) / delta.clone()));
    let prefixes = views.len();
    let rows = temperatures
        .iter()
        .map(|t| {
            let ts = S::from_rat(t);
            let (mut deviating, mut within, mut undecided) = (0, 0, 0);
            let (mut boundary, mut boundary_undecided) = (0, 0);
            for v in views {
                let Some((lo, hi)) = v.as_ref().ok().and_then(|v| v.margin.as_ref()) else {
                    if v.as_ref()
                        .is_ok_and(|v| v.gaps.as_ref().is_some_and(|g| g.0.is_empty()))
                    {
                        // One expert: the gate is 1 on it at every T.
                        within += 1;
                    } else {
                        undecided += 1;
                        boundary_undecided += 1;
                    }
                    continue;
                };
                // Δ ≤ w: proved from Δ's upper end, refuted from its lower.
                let above = at_most_t_ln(lo, &ts, &c) == Some(false);
                if above {
                    // Δ > T·ln((K−1)/δ): 1 − g_top ≤ (K−1)e^{−Δ/T} < δ.
                    within += 1;
                    continue;
                }
                if at_most_t_ln(hi, &ts, &c) == Some(true) {
                    boundary += 1;
                } else {
                    boundary_undecided += 1;
                }
                match v.as_ref().ok().and_then(|v| v.gaps.as_ref()) {
                    Some((_, high)) if off_top_lower(high, &ts) > d => deviating += 1,
                    Some((low, _)) if off_top_upper(low, &ts) <= d => within += 1,
                    _ => undecided += 1,
                }
            }
            let w = S::from_rat(t).approx() * c.approx().ln();
            DeviationRow {
                temperature: t.to_string(),
                approx: S::from_rat(t).approx(),
                deviating,
                within,
                undecided,
                fraction: (int(deviating as i64) / int(prefixes.max(1) as i64)).to_string(),
                w_approx: w,
                boundary,
                boundary_undecided,
                boundary_mass: (int(boundary as i64) / int(prefixes.max(1) as i64)).to_string(),
            }
        })
        .collect();
    Deviation {
        model: label.to_string(),
        arith: arith.to_string(),
        delta: delta.to_string(),
        experts,
        prefixes,
        rows,
    }
}
