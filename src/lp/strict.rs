//! Strict homogeneous systems a_r·w ≥ 1 (w free), the form a separating
//! functional takes: a positive multiple of any w with every a_r·w > 0
//! meets them all. That homogeneity makes the exact confirmation of a float
//! answer trivial: round the float w to short rationals, compute the least
//! margin μ = min_r a_r·w exactly, and if μ > 0 scale w by a power of two
//! at least 1/μ. No equation is solved and no tolerance decides anything:
//! the exact margins do.
//!
//! Only the "feasible" side is confirmed here; when no w is found (the float
//! solve fails, or its rounding leaves a margin ≤ 0) the caller asks
//! [`super::feasibility`] for the Farkas alternative, which decides either
//! way.

use super::float::near;
use crate::scalar::{Rat, Scalar};
use microlp::{ComparisonOp, OptimizationDirection, Problem as FloatLp};
use num_bigint::BigInt;
use num_traits::{One, Signed, Zero};

/// 2^e as an exact rational.
fn pow2(e: i32) -> Rat {
    let p = BigInt::one() << e.unsigned_abs();
    if e >= 0 {
        Rat::from_integer(p)
    } else {
        Rat::new(BigInt::one(), p)
    }
}

/// The power of two nearest 1/v (v > 0), as its exponent.
fn inverse_exponent(v: f64) -> i32 {
    (-v.log2()).round().clamp(-1000.0, 1000.0) as i32
}

/// A w over `vars` unknowns with a_r·w ≥ 1 for every row (rows as sparse
/// (unknown, value)), checked exactly; None if the float proposal does not
/// survive the check. Records the call in the LP log.
pub fn separate(rows: &[Vec<(usize, Rat)>], vars: usize) -> Option<Vec<Rat>> {
    separate_within(rows, vars, None)
}

/// [`separate`], the float solve stopped after `limit`.
pub fn separate_within(
    rows: &[Vec<(usize, Rat)>],
    vars: usize,
    limit: Option<std::time::Duration>,
) -> Option<Vec<Rat>> {
    let start = std::time::Instant::now();
    let w = propose(rows, vars, limit).and_then(|w| confirm(rows, w));
    super::record(super::Call {
        rows: rows.len(),
        columns: vars,
        seconds: start.elapsed().as_secs_f64(),
        route: if w.is_some() {
            super::Route::Confirmed
        } else {
            super::Route::Rejected
        },
        pivots: 0,
    });
    w
}

/// The float w, in exact power-of-two column units: w_j = near(w'_j)·2^{e_j}.
fn propose(
    rows: &[Vec<(usize, Rat)>],
    vars: usize,
    limit: Option<std::time::Duration>,
) -> Option<Vec<Rat>> {
    if rows.is_empty() {
        return Some(vec![Rat::zero(); vars]);
    }
    // Rows to unit maximum (the right-hand side stays 1: homogeneous).
    let mut f: Vec<Vec<(usize, f64)>> = Vec::with_capacity(rows.len());
    for row in rows {
        let r: Vec<(usize, f64)> = row.iter().map(|(j, v)| (*j, f64::from_rat(v))).collect();
        let top = r.iter().map(|(_, v)| v.abs()).fold(0.0f64, f64::max);
        if top == 0.0 || !top.is_finite() {
            return None;
        }
        f.push(r.into_iter().map(|(j, v)| (j, v / top)).collect());
    }
    // Columns to about unit maximum, by exact powers of two.
    let mut top = vec![0.0f64; vars];
    for r in &f {
        for (j, v) in r {
            top[*j] = top[*j].max(v.abs());
        }
    }
    let exponent: Vec<i32> = top
        .iter()
        .map(|&t| if t > 0.0 { inverse_exponent(t) } else { 0 })
        .collect();
    let mut lp = FloatLp::new(OptimizationDirection::Minimize);
    if let Some(limit) = limit {
        lp.set_time_limit(limit);
    }
    let w: Vec<_> = (0..vars)
        .map(|_| lp.add_var(0.0, (f64::NEG_INFINITY, f64::INFINITY)))
        .collect();
    for r in &f {
        let terms: Vec<_> = r
            .iter()
            .map(|(j, v)| (w[*j], v * 2f64.powi(exponent[*j])))
            .collect();
        lp.add_constraint(terms.as_slice(), ComparisonOp::Ge, 1.0);
    }
    let solution = lp.solve().ok()?.into_solution().ok()?;
    Some(
        (0..vars)
            .map(|j| near(solution.var_value(w[j])) * pow2(exponent[j]))
            .collect(),
    )
}

/// Exact margins; scale so the least is at least 1.
fn confirm(rows: &[Vec<(usize, Rat)>], w: Vec<Rat>) -> Option<Vec<Rat>> {
    let margin = |row: &Vec<(usize, Rat)>| -> Rat { row.iter().map(|(j, v)| v * &w[*j]).sum() };
    let least = rows.iter().map(margin).min()?;
    if !Signed::is_positive(&least) {
        return None;
    }
    if least >= Rat::one() {
        return Some(w);
    }
    let e = inverse_exponent(f64::from_rat(&least)) + 1;
    let scale = pow2(e.max(1));
    let scaled: Vec<Rat> = w.iter().map(|v| v * &scale).collect();
    let again = rows
        .iter()
        .map(|row| row.iter().map(|(j, v)| v * &scaled[*j]).sum::<Rat>())
        .min()?;
    if again >= Rat::one() {
        Some(scaled)
    } else {
        let s = Rat::one() / least;
        Some(w.iter().map(|v| v * &s).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::int;

    #[test]
    fn a_separable_system_gets_an_exact_solution_with_margin_one() {
        // w0 − w1 ≥ 1, 2^-40·w1 ≥ 1 (a tiny feature), w0 + w1 ≥ 1.
        let tiny = Rat::new(BigInt::one(), BigInt::one() << 40u32);
        let rows = vec![
            vec![(0, int(1)), (1, int(-1))],
            vec![(1, tiny)],
            vec![(0, int(1)), (1, int(1))],
        ];
        let w = separate(&rows, 2).expect("separable");
        for row in &rows {
            let m: Rat = row.iter().map(|(j, v)| v * &w[*j]).sum();
            assert!(m >= Rat::one(), "margin {m}");
        }
    }

    #[test]
    fn an_inseparable_system_is_not_confirmed() {
        // w0 ≥ 1 and −w0 ≥ 1.
        let rows = vec![vec![(0, int(1))], vec![(0, int(-1))]];
        assert_eq!(separate(&rows, 1), None);
    }
}
