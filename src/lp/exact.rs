//! The exact side of the LP service: a float proposal names an active set
//! (the columns a feasible point uses, or the columns a Farkas vector keeps
//! at zero); that set's equations are solved once in rationals, by sparse
//! Gaussian elimination, and the result is checked exactly against the
//! whole problem. A proposal that fails the check is rejected, never
//! rounded into an answer.

use super::float::{Proposal, near};
use super::{Outcome, Problem, simplex};
use crate::scalar::Rat;
use num_traits::{One, Signed, Zero};

/// Activity thresholds tried in turn, on the scaled float values: a column
/// is in the support (or a Farkas column is slack) above the threshold.
const THRESHOLDS: [f64; 3] = [1e-9, 1e-6, 1e-12];

/// Turn a proposal into an exact, checked outcome, if it holds up.
pub fn confirm(problem: &Problem, proposal: &Proposal) -> Option<Outcome> {
    THRESHOLDS.iter().find_map(|&t| {
        let outcome = match proposal {
            Proposal::Feasible(x) => point(problem, x, t),
            Proposal::Infeasible(y) => farkas(problem, y, t),
        }?;
        simplex::holds(problem, &outcome).then_some(outcome)
    })
}

/// x supported on {j : x_j > t·scale}: solve A_S x_S = b exactly.
fn point(problem: &Problem, x: &[f64], t: f64) -> Option<Outcome> {
    let top = x.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1.0);
    let support: Vec<usize> = (0..x.len()).filter(|&j| x[j] > t * top).collect();
    let mut rows: Vec<Vec<(usize, Rat)>> = vec![Vec::new(); problem.rows];
    for (k, &j) in support.iter().enumerate() {
        for (i, v) in &problem.columns[j] {
            rows[*i].push((k, v.clone()));
        }
    }
    let guess: Vec<f64> = support.iter().map(|&j| x[j]).collect();
    let z = solve(rows, problem.rhs.clone(), &guess)?;
    if z.iter().any(Signed::is_negative) {
        return None;
    }
    let mut full = vec![Rat::zero(); problem.columns.len()];
    for (k, &j) in support.iter().enumerate() {
        full[j] = z[k].clone();
    }
    Some(Outcome::Feasible(full))
}

/// y with yᵀA_j = 0 on the columns the proposal leaves tight and yᵀb = −1.
fn farkas(problem: &Problem, y: &[f64], t: f64) -> Option<Outcome> {
    let mut rows: Vec<Vec<(usize, Rat)>> = Vec::new();
    for column in &problem.columns {
        let scale = column
            .iter()
            .map(|(i, v)| (y[*i] * v.to_f64_lossy()).abs())
            .fold(0.0f64, f64::max);
        let value: f64 = column.iter().map(|(i, v)| y[*i] * v.to_f64_lossy()).sum();
        if value.abs() <= t * scale.max(1e-300) || scale == 0.0 {
            let mut row = column.clone();
            row.sort_by_key(|(i, _)| *i);
            if !row.is_empty() {
                rows.push(row);
            }
        }
    }
    let mut rhs = vec![Rat::zero(); rows.len()];
    rows.push(
        problem
            .rhs
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_zero())
            .map(|(i, b)| (i, b.clone()))
            .collect(),
    );
    rhs.push(-Rat::one());
    let y = solve(rows, rhs, y)?;
    Some(Outcome::Infeasible(y))
}

/// f64 of a rational, for activity tests only.
trait Lossy {
    fn to_f64_lossy(&self) -> f64;
}

impl Lossy for Rat {
    fn to_f64_lossy(&self) -> f64 {
        use crate::scalar::Scalar;
        f64::from_rat(self)
    }
}

/// An eliminated equation: its pivot unknown, the sparse row (1 at the
/// pivot, 0 at earlier pivots) and its right-hand side.
type Pivot = (usize, Vec<(usize, Rat)>, Rat);

/// Solve Σ_k rows[r][k]·z_k = rhs[r] for z (one unknown per entry of
/// `guess`), exactly: sparse Gaussian elimination to row echelon form, the
/// free unknowns set to rationals near their guesses, the pivot unknowns by
/// back substitution. None if the equations are inconsistent.
pub fn solve(rows: Vec<Vec<(usize, Rat)>>, rhs: Vec<Rat>, guess: &[f64]) -> Option<Vec<Rat>> {
    let n = guess.len();
    // (pivot unknown, row with a 1 there and 0 at earlier pivots, rhs).
    let mut pivots: Vec<Pivot> = Vec::new();
    let mut pivot_of: Vec<Option<usize>> = vec![None; n];
    for (mut row, mut b) in rows.into_iter().zip(rhs) {
        row.retain(|(_, v)| !v.is_zero());
        row.sort_by_key(|(k, _)| *k);
        // Reduce by each pivot it touches, in the order pivots were made
        // (a pivot row is zero at every earlier pivot's unknown).
        loop {
            let hit = row.iter().filter_map(|(k, _)| pivot_of[*k]).min();
            let Some(p) = hit else { break };
            let (unknown, prow, pb) = &pivots[p];
            let at = row.binary_search_by_key(unknown, |(k, _)| *k).ok()?;
            let f = row[at].1.clone();
            row = axpy(&row, &-f.clone(), prow);
            b -= &f * pb;
        }
        let Some((lead, value)) = row.first().cloned() else {
            if b.is_zero() {
                continue;
            }
            return None;
        };
        for (_, v) in row.iter_mut() {
            *v /= &value;
        }
        b /= &value;
        pivot_of[lead] = Some(pivots.len());
        pivots.push((lead, row, b));
        if pivots.len() == n {
            // Full rank: the rest is decided by the exact check.
            break;
        }
    }
    let mut z: Vec<Option<Rat>> = vec![None; n];
    for k in 0..n {
        if pivot_of[k].is_none() {
            z[k] = Some(near(guess[k]));
        }
    }
    for (unknown, row, b) in pivots.iter().rev() {
        let mut v = b.clone();
        for (k, a) in row.iter().filter(|(k, _)| k != unknown) {
            v -= a * z[*k].as_ref()?;
        }
        z[*unknown] = Some(v);
    }
    z.into_iter().collect()
}

/// a + f·b on sorted sparse rows.
fn axpy(a: &[(usize, Rat)], f: &Rat, b: &[(usize, Rat)]) -> Vec<(usize, Rat)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ka = a.get(i).map_or(usize::MAX, |e| e.0);
        let kb = b.get(j).map_or(usize::MAX, |e| e.0);
        if ka < kb {
            out.push(a[i].clone());
            i += 1;
        } else if kb < ka {
            out.push((kb, f * &b[j].1));
            j += 1;
        } else {
            let v = &a[i].1 + f * &b[j].1;
            if !v.is_zero() {
                out.push((ka, v));
            }
            i += 1;
            j += 1;
        }
    }
    out
}
