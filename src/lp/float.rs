//! The floating-point proposal: microlp (pure Rust, revised simplex on
//! sparse LU) solves the problem in f64 and says where the answer lies —
//! which columns a feasible point uses, or which columns a Farkas vector
//! leaves tight. Nothing here is trusted: [`super::exact`] turns the
//! proposal into an exact answer or rejects it.
//!
//! Rows and then columns are scaled to unit maximum before the solve
//! (microlp asks for coefficients within six orders of magnitude, and the
//! router inputs span 2^−S·level to 1); scaling by positive factors keeps
//! both the support of a feasible point and the tight set of a Farkas
//! vector, and the proposal is mapped back to the unscaled problem.

use super::Problem;
use crate::scalar::{Rat, Scalar};
use microlp::{ComparisonOp, OptimizationDirection, Problem as FloatLp};
use std::time::Duration;

/// Where the float solve says the answer is, in the unscaled problem.
#[derive(Debug, Clone, PartialEq)]
pub enum Proposal {
    /// x ≥ 0 with A x ≈ b.
    Feasible(Vec<f64>),
    /// y with yᵀA ≳ 0 and yᵀb = −1.
    Infeasible(Vec<f64>),
}

/// The problem in f64, scaled: a[i] lists (column, value) of row i.
struct Scaled {
    rows: Vec<Vec<(usize, f64)>>,
    rhs: Vec<f64>,
    /// Row i was multiplied by row_scale[i], column j by column_scale[j].
    row_scale: Vec<f64>,
    column_scale: Vec<f64>,
}

fn scaled(problem: &Problem) -> Option<Scaled> {
    let m = problem.rows;
    let n = problem.columns.len();
    let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); m];
    for (j, column) in problem.columns.iter().enumerate() {
        for (i, v) in column {
            let v = f64::from_rat(v);
            if !v.is_finite() {
                return None;
            }
            if v != 0.0 {
                rows[*i].push((j, v));
            }
        }
    }
    let mut rhs: Vec<f64> = problem.rhs.iter().map(f64::from_rat).collect();
    if rhs.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut row_scale = vec![1.0; m];
    for (i, row) in rows.iter_mut().enumerate() {
        let top = row.iter().map(|(_, v)| v.abs()).fold(0.0, f64::max);
        if top > 0.0 {
            row_scale[i] = 1.0 / top;
            row.iter_mut().for_each(|(_, v)| *v *= row_scale[i]);
            rhs[i] *= row_scale[i];
        }
    }
    let mut top = vec![0.0f64; n];
    for row in &rows {
        for (j, v) in row {
            top[*j] = top[*j].max(v.abs());
        }
    }
    let column_scale: Vec<f64> = top
        .iter()
        .map(|&t| if t > 0.0 { 1.0 / t } else { 1.0 })
        .collect();
    for row in rows.iter_mut() {
        row.iter_mut().for_each(|(j, v)| *v *= column_scale[*j]);
    }
    Some(Scaled {
        rows,
        rhs,
        row_scale,
        column_scale,
    })
}

/// Solve in f64: first the problem itself (minimising Σx, which lands on a
/// vertex with small entries); if microlp finds it infeasible, the Farkas
/// alternative yᵀA ≥ 0, yᵀb = −1. None if microlp fails on both.
pub fn propose(problem: &Problem) -> Option<Proposal> {
    propose_within(problem, None)
}

/// [`propose`], each float solve stopped after `limit` (None then).
pub fn propose_within(problem: &Problem, limit: Option<Duration>) -> Option<Proposal> {
    let s = scaled(problem)?;
    let n = problem.columns.len();
    let mut lp = FloatLp::new(OptimizationDirection::Minimize);
    if let Some(limit) = limit {
        lp.set_time_limit(limit);
    }
    let x: Vec<_> = (0..n)
        .map(|_| lp.add_var(1.0, (0.0, f64::INFINITY)))
        .collect();
    for (row, b) in s.rows.iter().zip(&s.rhs) {
        let terms: Vec<_> = row.iter().map(|(j, v)| (x[*j], *v)).collect();
        lp.add_constraint(terms.as_slice(), ComparisonOp::Eq, *b);
    }
    match lp.solve() {
        Ok(outcome) => {
            let solution = outcome.into_solution().ok()?;
            Some(Proposal::Feasible(
                (0..n)
                    .map(|j| solution.var_value(x[j]) * s.column_scale[j])
                    .collect(),
            ))
        }
        // microlp gives up on some ill-conditioned problems (the dense
        // gates' nullspace projections span many orders of magnitude) with
        // an internal error rather than an answer: the Farkas side is then
        // worth a try, since whatever it proposes is checked exactly.
        Err(_) => farkas(&s, n, limit).map(Proposal::Infeasible),
    }
}

/// yᵀA' ≥ 0 (one constraint per column) and yᵀb' = −1, y free, in the
/// scaled problem; returned as the unscaled y (y_i · row_scale_i).
fn farkas(s: &Scaled, n: usize, limit: Option<Duration>) -> Option<Vec<f64>> {
    let m = s.rows.len();
    let mut lp = FloatLp::new(OptimizationDirection::Minimize);
    if let Some(limit) = limit {
        lp.set_time_limit(limit);
    }
    let y: Vec<_> = (0..m)
        .map(|_| lp.add_var(0.0, (f64::NEG_INFINITY, f64::INFINITY)))
        .collect();
    let mut columns: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (i, row) in s.rows.iter().enumerate() {
        for (j, v) in row {
            columns[*j].push((i, *v));
        }
    }
    for column in columns.iter().filter(|c| !c.is_empty()) {
        let terms: Vec<_> = column.iter().map(|(i, v)| (y[*i], *v)).collect();
        lp.add_constraint(terms.as_slice(), ComparisonOp::Ge, 0.0);
    }
    let normal: Vec<_> = s
        .rhs
        .iter()
        .enumerate()
        .filter(|(_, b)| **b != 0.0)
        .map(|(i, b)| (y[i], *b))
        .collect();
    if normal.is_empty() {
        return None;
    }
    lp.add_constraint(normal.as_slice(), ComparisonOp::Eq, -1.0);
    let solution = lp.solve().ok()?.into_solution().ok()?;
    Some(
        (0..m)
            .map(|i| solution.var_value(y[i]) * s.row_scale[i])
            .collect(),
    )
}

/// An exact rational near v, with a short binary expansion (free unknowns
/// of the exact solve take these values).
pub fn near(v: f64) -> Rat {
    const BITS: i32 = 30;
    if !v.is_finite() || v.abs() < 1e-12 {
        return Rat::from_integer(0.into());
    }
    let scale = 2f64.powi(BITS);
    let scaled = (v * scale).round();
    if scaled.abs() < 9.0e15 {
        Rat::new(
            num_bigint::BigInt::from(scaled as i64),
            num_bigint::BigInt::from(1i64 << BITS),
        )
    } else {
        Rat::from_float(v).unwrap_or_else(|| Rat::from_integer(0.into()))
    }
}
