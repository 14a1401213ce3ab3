//! The seed paper's statement measured on our models: at temperature T, how
//! many prefixes' soft gates put more than δ off the top expert
//! (1 − g_top > δ, the total-variation distance between the soft gate and
//! the hard one-hot gate), beside the boundary mass at w = T·ln((K−1)/δ).
//! Since 1 − g_top ≤ (K−1)·e^{−Δ/T}, a prefix that strays has Δ < w: the
//! first count never exceeds the second. Both are decided with exact exp
//! bounds; prefixes too close to call are counted as undecided.

use super::gate::{GateArith, at_most_t_ln, off_top_lower, off_top_upper};
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

/// The table from per-prefix router gaps (see [`super::margins::router_gaps`]).
pub fn deviation<S: GateArith>(
    label: &str,
    gaps: &[Result<Vec<S>, String>],
    experts: usize,
    delta: &Rat,
    temperatures: &[Rat],
) -> Deviation {
    let d = S::from_rat(delta);
    let c = S::from_rat(&(int(experts.saturating_sub(1) as i64) / delta.clone()));
    let prefixes = gaps.len();
    let rows = temperatures
        .iter()
        .map(|t| {
            let ts = S::from_rat(t);
            let (mut deviating, mut within, mut undecided) = (0, 0, 0);
            let (mut boundary, mut boundary_undecided) = (0, 0);
            for g in gaps {
                let Ok(g) = g else {
                    undecided += 1;
                    boundary_undecided += 1;
                    continue;
                };
                if off_top_lower(g, &ts) > d {
                    deviating += 1;
                } else if off_top_upper(g, &ts) <= d {
                    within += 1;
                } else {
                    undecided += 1;
                }
                let margin = g.iter().cloned().reduce(|a, b| if b < a { b } else { a });
                match margin.map(|m| at_most_t_ln(&m, &ts, &c)) {
                    Some(Some(true)) => boundary += 1,
                    Some(None) => boundary_undecided += 1,
                    _ => {}
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
        arith: S::NAME.to_string(),
        delta: delta.to_string(),
        experts,
        prefixes,
        rows,
    }
}
