//! Repair on the proposal's support: when a float proposal fails the exact
//! check ([`super::exact`]), it is usually *almost* right — it names the
//! few columns a feasible point uses, or the few rows a Farkas vector
//! combines, and only the values are off (an ill-conditioned basis, a
//! tolerance in the wrong place). So the exact simplex is run first on the
//! problem restricted to that support, which is far smaller than the whole
//! (a shared-keys dense set: 449 pivots instead of 5682), and its answer is
//! lifted to the full problem:
//!
//! - a feasible point of A_S x_S = b (only the support's columns) is,
//!   padded with zeros, a feasible point of A x = b;
//! - a Farkas vector of the rows R (yᵀA_R ≥ 0, yᵀb_R < 0) is, padded with
//!   zeros on the other rows, a Farkas vector of the whole system.
//!
//! Either lift is exact and is checked again against the whole problem
//! ([`simplex::holds`]); when the restricted problem gives the other
//! answer (the support was wrong), nothing is concluded and the caller
//! falls back to the full exact simplex.

use super::float::Proposal;
use super::{Outcome, Problem, simplex};
use crate::scalar::Rat;
use num_traits::Zero;
use std::time::Instant;

/// A float entry is in the support above this fraction of the largest.
const SUPPORT: f64 = 1e-9;

/// The indices whose |v| exceeds [`SUPPORT`] times the largest |v|.
fn support_of(v: &[f64]) -> Vec<usize> {
    let top = v
        .iter()
        .filter(|x| x.is_finite())
        .fold(0.0f64, |a, x| a.max(x.abs()));
    (0..v.len())
        .filter(|&j| v[j].is_finite() && v[j].abs() > SUPPORT * top)
        .collect()
}

/// The exact outcome of `problem` from the exact simplex on the proposal's
/// support, checked against the whole problem; None if the support gives
/// no answer for the whole (or the deadline passed). Also returns the
/// pivots made.
pub fn on_support(
    problem: &Problem,
    proposal: &Proposal,
    deadline: Option<Instant>,
) -> (Option<Outcome>, usize) {
    let (lifted, pivots) = match proposal {
        Proposal::Feasible(x) => on_columns(problem, &support_of(x), deadline),
        Proposal::Infeasible(y) => on_rows(problem, &support_of(y), deadline),
    };
    (
        lifted.filter(|outcome| simplex::holds(problem, outcome)),
        pivots,
    )
}

/// A x = b with only the columns `keep`: a feasible point, padded.
fn on_columns(
    problem: &Problem,
    keep: &[usize],
    deadline: Option<Instant>,
) -> (Option<Outcome>, usize) {
    if keep.len() == problem.columns.len() {
        // Not smaller: the full simplex is the caller's fallback.
        return (None, 0);
    }
    let restricted = Problem {
        rows: problem.rows,
        columns: keep.iter().map(|&j| problem.columns[j].clone()).collect(),
        rhs: problem.rhs.clone(),
    };
    let (outcome, pivots) = simplex::solve_within(&restricted, deadline, None);
    let lifted = match outcome {
        Some(Outcome::Feasible(z)) => {
            let mut x = vec![Rat::zero(); problem.columns.len()];
            for (k, &j) in keep.iter().enumerate() {
                x[j] = z[k].clone();
            }
            Some(Outcome::Feasible(x))
        }
        // Infeasible without the other columns says nothing of the whole.
        _ => None,
    };
    (lifted, pivots)
}

/// A x = b with only the rows `keep`: a Farkas vector, padded.
fn on_rows(
    problem: &Problem,
    keep: &[usize],
    deadline: Option<Instant>,
) -> (Option<Outcome>, usize) {
    if keep.is_empty() || keep.len() == problem.rows {
        return (None, 0);
    }
    let mut index = vec![None; problem.rows];
    for (k, &i) in keep.iter().enumerate() {
        index[i] = Some(k);
    }
    let restricted = Problem {
        rows: keep.len(),
        columns: problem
            .columns
            .iter()
            .map(|column| {
                column
                    .iter()
                    .filter_map(|(i, v)| index[*i].map(|k| (k, v.clone())))
                    .collect()
            })
            .collect(),
        rhs: keep.iter().map(|&i| problem.rhs[i].clone()).collect(),
    };
    let (outcome, pivots) = simplex::solve_within(&restricted, deadline, None);
    let lifted = match outcome {
        Some(Outcome::Infeasible(z)) => {
            let mut y = vec![Rat::zero(); problem.rows];
            for (k, &i) in keep.iter().enumerate() {
                y[i] = z[k].clone();
            }
            Some(Outcome::Infeasible(y))
        }
        // Feasible on fewer rows says nothing of the whole.
        _ => None,
    };
    (lifted, pivots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lp::exact;
    use crate::scalar::int;

    /// A problem from dense rows.
    fn dense(rows: &[&[i64]], rhs: &[i64]) -> Problem {
        let n = rows[0].len();
        Problem {
            rows: rows.len(),
            columns: (0..n)
                .map(|j| {
                    rows.iter()
                        .enumerate()
                        .filter(|(_, r)| r[j] != 0)
                        .map(|(i, r)| (i, int(r[j])))
                        .collect()
                })
                .collect(),
            rhs: rhs.iter().map(|&b| int(b)).collect(),
        }
    }

    #[test]
    fn a_perturbed_feasible_proposal_is_repaired_on_its_columns() {
        // x0 + x1 = 1 and x2 = 0 with x ≥ 0. The float point (1e-3, 1.001,
        // 0) is off by 2e-3: the exact check solves x0 from x1 = 1.001 and
        // gets x0 = −1/1000 < 0, at every activity threshold, so it is
        // rejected. On its support {0, 1} the exact simplex finds a vertex,
        // which lifted (x2 = 0) satisfies the whole problem exactly.
        let p = dense(&[&[1, 1, 0], &[0, 0, 1]], &[1, 0]);
        let proposal = Proposal::Feasible(vec![1e-3, 1.001, 0.0]);
        assert_eq!(exact::confirm(&p, &proposal), None);
        let (out, pivots) = on_support(&p, &proposal, None);
        let out = out.expect("repaired");
        assert!(simplex::holds(&p, &out));
        assert!(pivots > 0);
        let Outcome::Feasible(x) = &out else {
            panic!("{out:?}")
        };
        assert_eq!(&x[0] + &x[1], int(1));
        assert!(x[2].is_zero());
        // Dantzig's tie-break enters x0 first: the vertex (1, 0, 0).
        assert_eq!(x, &vec![int(1), int(0), int(0)]);
    }

    #[test]
    fn a_perturbed_farkas_proposal_is_repaired_on_its_rows() {
        // Rows 0 and 1 contradict (x0 + x1 = 1 and x0 + x1 = 2); rows 2, 3
        // are satisfiable on their own. The float y (1, −0.999, 0, 1e-14)
        // is not a Farkas vector (yᵀA_0 ≈ 1e-3 > 0 leaves column 0 slack,
        // and the exact solve then gives yᵀA_0 = −1/1000 < 0): rejected.
        // On the rows {0, 1} the simplex proves infeasibility, and the
        // lift y = (c, −c, 0, 0), c > 0, holds for the whole problem.
        let p = dense(
            &[&[1, 1, 0, 0], &[1, 1, 0, 0], &[0, 0, 1, 1], &[0, 1, 0, 1]],
            &[1, 2, 3, 1],
        );
        let proposal = Proposal::Infeasible(vec![1.0, -0.999, 0.0, 1e-14]);
        assert_eq!(exact::confirm(&p, &proposal), None);
        let (out, _) = on_support(&p, &proposal, None);
        let out = out.expect("repaired");
        let Outcome::Infeasible(y) = &out else {
            panic!("{out:?}")
        };
        assert!(simplex::holds(&p, &out));
        assert!(y[0] > int(0) && y[1] == -y[0].clone(), "{y:?}");
        assert!(y[2].is_zero() && y[3].is_zero(), "{y:?}");
    }

    #[test]
    fn a_wrong_support_concludes_nothing() {
        // Feasible only with x1 > 0 (x0 + x1 = 1, x0 + 2·x1 = 2 gives
        // x = (0, 1)): the proposal's support {0} asks x0 = 1 and x0 = 2,
        // infeasible, so nothing is lifted and the caller falls back.
        let p = dense(&[&[1, 1], &[1, 2]], &[1, 2]);
        let proposal = Proposal::Feasible(vec![1.0, 0.0]);
        assert_eq!(on_support(&p, &proposal, None).0, None);
        // A Farkas proposal on a feasible problem: its rows {0} are
        // feasible, nothing is lifted.
        let proposal = Proposal::Infeasible(vec![1.0, 0.0]);
        assert_eq!(on_support(&p, &proposal, None).0, None);
    }
}
