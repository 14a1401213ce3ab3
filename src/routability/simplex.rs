//! A small exact simplex: phase 1 over BigRational with Bland's rule.
//!
//! It answers one question, feasibility of a system in standard form,
//!   find x ≥ 0 with A x = b,
//! and always returns a proof: either such an x, or a Farkas vector y with
//! yᵀA ≥ 0 and yᵀb < 0 (then yᵀA x ≥ 0 > yᵀb for every x ≥ 0, so no x
//! solves the system). Every number is an exact rational; Bland's rule
//! (smallest eligible index enters, smallest basic index leaves on ties)
//! cannot cycle, so the loop terminates.
//!
//! Why not a crate: the only exact-rational LP crate on crates.io
//! (simplex-trace 0.3) is a teaching tool that records every tableau of every
//! pivot; nothing here trusts this code anyway, since every router it finds
//! is re-checked by the verifier and every Farkas vector by
//! [`super::certificate`].

use crate::scalar::Rat;
use num_traits::{One, Signed, Zero};

/// A system A x = b with A given by sparse columns.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    pub rows: usize,
    /// columns[j] lists (row, nonzero value) of column j.
    pub columns: Vec<Vec<(usize, Rat)>>,
    pub rhs: Vec<Rat>,
}

/// The answer, with its proof.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// x ≥ 0 with A x = b (one entry per column).
    Feasible(Vec<Rat>),
    /// y with yᵀA ≥ 0 and yᵀb < 0 (one entry per row).
    Infeasible(Vec<Rat>),
}

/// Solve by phase 1: an artificial variable per row, minimise their sum.
/// The sum reaches 0 exactly when the system is feasible; otherwise the
/// final reduced costs of the artificial columns give the Farkas vector.
/// Returns the outcome and the number of pivots.
pub fn solve(problem: &Problem) -> (Outcome, usize) {
    let m = problem.rows;
    let n = problem.columns.len();
    let width = n + m;
    // Flip rows so that b ≥ 0; the flip is undone on the Farkas vector.
    let flip: Vec<bool> = problem.rhs.iter().map(|b| b.is_negative()).collect();
    let mut t = vec![vec![Rat::zero(); width]; m];
    for (j, column) in problem.columns.iter().enumerate() {
        for (i, v) in column {
            let v = if flip[*i] { -v.clone() } else { v.clone() };
            t[*i][j] += v;
        }
    }
    for (i, row) in t.iter_mut().enumerate() {
        row[n + i] = Rat::one();
    }
    let mut rhs: Vec<Rat> = problem.rhs.iter().map(Rat::abs).collect();
    let mut basis: Vec<usize> = (n..width).collect();
    // Costs: 0 on x, 1 on each artificial. Reduced cost r_j = c_j − 1ᵀ A'_j
    // while the artificials are basic; z is the current objective value.
    let mut reduced: Vec<Rat> = (0..width)
        .map(|j| {
            let cost = if j >= n { Rat::one() } else { Rat::zero() };
            t.iter().fold(cost, |acc, row| acc - &row[j])
        })
        .collect();
    let mut z: Rat = rhs.iter().sum();
    let mut pivots = 0;

    // Bland's rule: the smallest column with negative reduced cost enters.
    while let Some(q) = (0..width).find(|&j| reduced[j].is_negative()) {
        // Ratio test; ties go to the smallest basic variable.
        let mut leave: Option<(usize, Rat)> = None;
        for i in 0..m {
            if !t[i][q].is_positive() {
                continue;
            }
            let ratio = &rhs[i] / &t[i][q];
            let better = match &leave {
                None => true,
                Some((p, best)) => ratio < *best || (ratio == *best && basis[i] < basis[*p]),
            };
            if better {
                leave = Some((i, ratio));
            }
        }
        // Phase 1 is bounded below by 0, so an entering column always meets
        // a blocking row.
        let (p, _) = leave.expect("phase 1 is bounded below by 0");
        pivot(&mut t, &mut rhs, &mut reduced, &mut z, p, q);
        basis[p] = q;
        pivots += 1;
    }

    if z.is_zero() {
        let mut x = vec![Rat::zero(); n];
        for (i, &j) in basis.iter().enumerate() {
            if j < n {
                x[j] = rhs[i].clone();
            }
        }
        return (Outcome::Feasible(x), pivots);
    }
    // Duals of the flipped system: y_i = c_i − r_{n+i} = 1 − r_{n+i}. At the
    // optimum yᵀA' ≤ 0 and yᵀb' = z > 0, so −D y is a Farkas vector for A, b.
    let y = (0..m)
        .map(|i| {
            let dual = Rat::one() - &reduced[n + i];
            if flip[i] { dual } else { -dual }
        })
        .collect();
    (Outcome::Infeasible(y), pivots)
}

/// Pivot on (p, q): x_q enters the basis in row p.
fn pivot(
    t: &mut [Vec<Rat>],
    rhs: &mut [Rat],
    reduced: &mut [Rat],
    z: &mut Rat,
    p: usize,
    q: usize,
) {
    let inverse = Rat::one() / &t[p][q];
    let support: Vec<usize> = (0..t[p].len()).filter(|&j| !t[p][j].is_zero()).collect();
    for &j in &support {
        t[p][j] *= &inverse;
    }
    rhs[p] *= &inverse;
    let (pivot_row, pivot_rhs) = (t[p].clone(), rhs[p].clone());
    for (i, row) in t.iter_mut().enumerate() {
        if i == p || row[q].is_zero() {
            continue;
        }
        let factor = row[q].clone();
        for &j in &support {
            row[j] -= &factor * &pivot_row[j];
        }
        rhs[i] -= &factor * &pivot_rhs;
    }
    // z = z0 + Σ r_j x_j over non-basic j; substitute the pivot row for x_q.
    let factor = reduced[q].clone();
    for &j in &support {
        reduced[j] -= &factor * &pivot_row[j];
    }
    *z += &factor * &pivot_rhs;
}

/// Check an outcome against its problem, exactly (for tests and debugging;
/// the routing certificates have their own checker).
pub fn holds(problem: &Problem, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Feasible(x) => {
            if x.len() != problem.columns.len() || x.iter().any(Rat::is_negative) {
                return false;
            }
            let mut ax = vec![Rat::zero(); problem.rows];
            for (j, column) in problem.columns.iter().enumerate() {
                for (i, v) in column {
                    ax[*i] += v * &x[j];
                }
            }
            ax == problem.rhs
        }
        Outcome::Infeasible(y) => {
            y.len() == problem.rows
                && problem
                    .columns
                    .iter()
                    .all(|c| !c.iter().map(|(i, v)| v * &y[*i]).sum::<Rat>().is_negative())
                && problem
                    .rhs
                    .iter()
                    .zip(y)
                    .map(|(b, y)| b * y)
                    .sum::<Rat>()
                    .is_negative()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::{int, rat};

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
    fn finds_the_unique_solution_of_a_square_system() {
        // x + y = 3, x − y = 1 with x, y ≥ 0: x = 2, y = 1.
        let p = dense(&[&[1, 1], &[1, -1]], &[3, 1]);
        let (out, _) = solve(&p);
        assert_eq!(out, Outcome::Feasible(vec![int(2), int(1)]));
        assert!(holds(&p, &out));
    }

    #[test]
    fn handles_fractions_and_negative_right_hand_sides() {
        // 2x + 4y = 3, −3x = −1 → x = 1/3, y = (3 − 2/3)/4 = 7/12.
        let p = dense(&[&[2, 4], &[-3, 0]], &[3, -1]);
        let (out, _) = solve(&p);
        assert_eq!(out, Outcome::Feasible(vec![rat(1, 3), rat(7, 12)]));
        assert!(holds(&p, &out));
    }

    #[test]
    fn proves_a_contradiction_by_farkas() {
        // x + y = 1 and x + y = 2 with x, y ≥ 0: y = (1, −1)·c for c > 0
        // gives yᵀA = 0 and yᵀb = −c < 0.
        let p = dense(&[&[1, 1], &[1, 1]], &[1, 2]);
        let (out, _) = solve(&p);
        let Outcome::Infeasible(y) = &out else {
            panic!("{out:?}")
        };
        assert!(holds(&p, &out));
        assert!(y[0].is_positive() && y[0] == -y[1].clone(), "{y:?}");
    }

    #[test]
    fn proves_infeasibility_from_the_sign_constraints() {
        // x − y = −1, x + y = 0: only x = −1/2, y = 1/2, and x ≥ 0 fails.
        let p = dense(&[&[1, -1], &[1, 1]], &[-1, 0]);
        let (out, _) = solve(&p);
        assert!(matches!(out, Outcome::Infeasible(_)));
        assert!(holds(&p, &out));
    }

    #[test]
    fn survives_redundant_and_degenerate_rows() {
        // Three copies of x + y + z = 1 and the zero row 0 = 0, with
        // x − z = 0: feasible, e.g. x = z = 0, y = 1 or x = z = 1/2.
        let p = dense(
            &[&[1, 1, 1], &[1, 1, 1], &[2, 2, 2], &[0, 0, 0], &[1, 0, -1]],
            &[1, 1, 2, 0, 0],
        );
        let (out, _) = solve(&p);
        assert!(matches!(out, Outcome::Feasible(_)));
        assert!(holds(&p, &out));
        // The same with a contradictory zero row 0 = 1.
        let p = dense(&[&[1, 1, 1], &[0, 0, 0]], &[1, 1]);
        let (out, _) = solve(&p);
        assert_eq!(out, Outcome::Infeasible(vec![int(0), int(-1)]));
    }

    #[test]
    fn xor_has_no_separating_line() {
        // Four points of XOR, one row each: find (w1, w2, b) free with
        // s·(w·p + b) ≥ 1, written as w = w⁺ − w⁻, minus a slack per row.
        // Points (0,0), (1,1) labelled +1 and (1,0), (0,1) labelled −1.
        let points = [((0, 0), 1), ((1, 1), 1), ((1, 0), -1), ((0, 1), -1)];
        let mut columns = vec![Vec::new(); 6 + 4];
        for (i, ((a, b), s)) in points.iter().enumerate() {
            for (j, v) in [a, b, &1].into_iter().enumerate() {
                if *v != 0 {
                    columns[2 * j].push((i, int(s * v)));
                    columns[2 * j + 1].push((i, int(-s * v)));
                }
            }
            columns[6 + i].push((i, int(-1)));
        }
        let p = Problem {
            rows: 4,
            columns,
            rhs: vec![int(1); 4],
        };
        let (out, _) = solve(&p);
        assert!(holds(&p, &out));
        // The only certificate up to scale: all four rows with equal weight.
        let Outcome::Infeasible(y) = out else {
            panic!()
        };
        assert!(y.iter().all(|v| v.is_negative() && *v == y[0]), "{y:?}");
    }

    #[test]
    fn separable_points_get_a_separating_line() {
        // AND: (1,1) positive, the other three negative.
        let points = [((1, 1), 1), ((0, 0), -1), ((1, 0), -1), ((0, 1), -1)];
        let mut columns = vec![Vec::new(); 6 + 4];
        for (i, ((a, b), s)) in points.iter().enumerate() {
            for (j, v) in [a, b, &1].into_iter().enumerate() {
                if *v != 0 {
                    columns[2 * j].push((i, int(s * v)));
                    columns[2 * j + 1].push((i, int(-s * v)));
                }
            }
            columns[6 + i].push((i, int(-1)));
        }
        let p = Problem {
            rows: 4,
            columns,
            rhs: vec![int(1); 4],
        };
        let (out, pivots) = solve(&p);
        assert!(holds(&p, &out));
        assert!(pivots > 0);
        let Outcome::Feasible(x) = out else { panic!() };
        let w = |j: usize| &x[2 * j] - &x[2 * j + 1];
        for ((a, b), s) in points {
            let score = w(0) * int(a) + w(1) * int(b) + w(2);
            assert!(score * int(s) >= int(1));
        }
    }

    #[test]
    fn an_empty_system_is_feasible() {
        let p = Problem {
            rows: 0,
            columns: vec![vec![]],
            rhs: vec![],
        };
        assert_eq!(solve(&p).0, Outcome::Feasible(vec![int(0)]));
    }
}
