//! A small exact simplex: phase 1 on a fraction-free integer tableau.
//!
//! It answers one question, feasibility of a system in standard form,
//!   find x ≥ 0 with A x = b,
//! and always returns a proof: either such an x, or a Farkas vector y with
//! yᵀA ≥ 0 and yᵀb < 0 (then yᵀA x ≥ 0 > yᵀb for every x ≥ 0, so no x
//! solves the system).
//!
//! Exact and integer: each row is first scaled by the lcm of its
//! denominators (which changes neither the solutions nor, after scaling back,
//! the Farkas vectors), and pivoting is fraction-free (Bareiss): every
//! tableau entry is an integer over one common denominator d, the previous
//! pivot, and the update (a·E − E_q·P)/d divides exactly. This avoids the
//! gcd of every rational operation, which dominated the cost.
//!
//! Pivot rule: Dantzig's (most negative reduced cost) for speed, switching
//! to Bland's (smallest eligible index enters, smallest basic index leaves)
//! whenever the objective has not decreased for a while. Bland's rule cannot
//! cycle, and each switch back needs a strict decrease of the objective, so
//! the loop terminates.
//!
//! Its numbers grow with every pivot, so it is the repair path of
//! [`super::feasibility`], not the hot path: it runs only when the float
//! proposal fails the exact check, and under a deadline. Why not a crate:
//! the only exact-rational LP crate on crates.io (simplex-trace 0.3) is a
//! teaching tool that records every tableau of every pivot; nothing here
//! trusts this code anyway, since every router it finds is re-checked by the
//! verifier and every Farkas vector by `routability::certificate`.

use crate::scalar::Rat;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};
use std::time::Instant;

/// Degenerate pivots in a row before Bland's rule takes over.
const PATIENCE: usize = 32;

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

/// The tableau: m constraint rows and the objective row, each with its
/// right-hand side last; true values are entries / d.
struct Tableau {
    rows: Vec<Vec<BigInt>>,
    /// The objective row: reduced costs, then −z.
    objective: Vec<BigInt>,
    d: BigInt,
    basis: Vec<usize>,
}

impl Tableau {
    fn width(&self) -> usize {
        self.objective.len() - 1
    }

    /// Pivot on (p, q): x_q enters in row p. Every other row E becomes
    /// (a·E − E_q·P)/d with a = P_q the pivot element and P row p; row p
    /// stays and the common denominator becomes a.
    ///
    /// On a large tableau one pivot is itself long (a 716 × 10286 tableau of
    /// a 12-task router LP: seconds), so the deadline is checked after each
    /// row; false if it passed (the tableau is then half-updated and is
    /// dropped by the caller).
    fn pivot(&mut self, p: usize, q: usize, deadline: Option<Instant>) -> bool {
        let a = self.rows[p][q].clone();
        let pivot_row = self.rows[p].clone();
        let support: Vec<usize> = (0..pivot_row.len())
            .filter(|&j| !pivot_row[j].is_zero())
            .collect();
        let d = self.d.clone();
        let update = |row: &mut Vec<BigInt>| {
            let factor = row[q].clone();
            if factor.is_zero() {
                // (a·E − 0)/d on every entry.
                if a != d {
                    for e in row.iter_mut().filter(|e| !e.is_zero()) {
                        *e = &*e * &a / &d;
                    }
                }
                return;
            }
            for (j, e) in row.iter_mut().enumerate() {
                let mut v = &*e * &a;
                if support.binary_search(&j).is_ok() {
                    v -= &factor * &pivot_row[j];
                }
                *e = v / &d;
            }
        };
        for (i, row) in self.rows.iter_mut().enumerate() {
            if i != p {
                update(row);
                if past(deadline) {
                    return false;
                }
            }
        }
        update(&mut self.objective);
        self.d = a;
        self.basis[p] = q;
        true
    }
}

/// Whether `deadline` has passed.
fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| super::clock::now() > d)
}

/// Solve by phase 1 without a time limit (the tests' reference); returns
/// the outcome and the number of pivots.
pub fn solve(problem: &Problem) -> (Outcome, usize) {
    let (outcome, pivots) = solve_within(problem, None, None);
    (outcome.expect("no deadline"), pivots)
}

/// Solve by phase 1: an artificial variable per row, minimise their sum.
/// The sum reaches 0 exactly when the system is feasible; otherwise the
/// final reduced costs of the artificial columns give the Farkas vector.
/// Returns the outcome (None if `deadline` passed, or `max_pivots` pivots
/// were made, first) and the number of pivots.
pub fn solve_within(
    problem: &Problem,
    deadline: Option<Instant>,
    max_pivots: Option<usize>,
) -> (Option<Outcome>, usize) {
    let m = problem.rows;
    let n = problem.columns.len();
    let width = n + m;
    // Row i scaled by s_i > 0 (clearing its denominators) and by −1 where
    // b_i < 0, so that every entry is an integer and b ≥ 0.
    let mut dense = vec![vec![Rat::zero(); n]; m];
    for (j, column) in problem.columns.iter().enumerate() {
        for (i, v) in column {
            dense[*i][j] += v;
        }
    }
    let mut scale = Vec::with_capacity(m);
    let mut rows = Vec::with_capacity(m);
    for (i, row) in dense.iter().enumerate() {
        let lcm = row
            .iter()
            .chain([&problem.rhs[i]])
            .fold(BigInt::one(), |l, v| l.lcm(v.denom()));
        let s = if problem.rhs[i].is_negative() {
            -lcm
        } else {
            lcm
        };
        let int = |v: &Rat| (v * Rat::from_integer(s.clone())).to_integer();
        let mut r: Vec<BigInt> = row.iter().map(int).collect();
        r.extend((0..m).map(|k| {
            if k == i {
                BigInt::one()
            } else {
                BigInt::zero()
            }
        }));
        r.push(int(&problem.rhs[i]));
        rows.push(r);
        scale.push(s);
        // Building a large tableau takes seconds too.
        if past(deadline) {
            return (None, 0);
        }
    }
    // Costs: 0 on x, 1 on each artificial; reduced cost c_j − Σ_i T_ij
    // while the artificials are basic, and −z = −Σ b_i.
    let objective: Vec<BigInt> = (0..=width)
        .map(|j| {
            let cost = if (n..width).contains(&j) {
                BigInt::one()
            } else {
                BigInt::zero()
            };
            rows.iter().fold(cost, |acc, r| acc - &r[j])
        })
        .collect();
    if past(deadline) {
        return (None, 0);
    }
    let mut t = Tableau {
        rows,
        objective,
        d: BigInt::one(),
        basis: (n..width).collect(),
    };
    let mut pivots = 0;
    let mut stalled = 0;
    loop {
        let w = t.width();
        let entering = if stalled < PATIENCE {
            // Dantzig: the most negative reduced cost (all share d > 0).
            (0..w)
                .filter(|&j| t.objective[j].is_negative())
                .min_by(|&a, &b| t.objective[a].cmp(&t.objective[b]).then(a.cmp(&b)))
        } else {
            // Bland: the first negative reduced cost.
            (0..w).find(|&j| t.objective[j].is_negative())
        };
        let Some(q) = entering else { break };
        if past(deadline) || max_pivots.is_some_and(|m| pivots >= m) {
            return (None, pivots);
        }
        // Ratio test over rows with T_iq > 0: the smallest rhs_i / T_iq,
        // ties to the smallest basic variable (compared crosswise).
        let mut leave: Option<usize> = None;
        for i in 0..m {
            if !t.rows[i][q].is_positive() {
                continue;
            }
            let better = match leave {
                None => true,
                Some(p) => {
                    let lhs = &t.rows[i][w] * &t.rows[p][q];
                    let rhs = &t.rows[p][w] * &t.rows[i][q];
                    lhs < rhs || (lhs == rhs && t.basis[i] < t.basis[p])
                }
            };
            if better {
                leave = Some(i);
            }
        }
        // Phase 1 is bounded below by 0, so an entering column always meets
        // a blocking row.
        let p = leave.expect("phase 1 is bounded below by 0");
        let degenerate = t.rows[p][w].is_zero();
        if !t.pivot(p, q, deadline) {
            return (None, pivots);
        }
        pivots += 1;
        stalled = if degenerate { stalled + 1 } else { 0 };
    }

    let w = t.width();
    if t.objective[w].is_zero() {
        let mut x = vec![Rat::zero(); n];
        for (i, &j) in t.basis.iter().enumerate() {
            if j < n {
                x[j] = Rat::new(t.rows[i][w].clone(), t.d.clone());
            }
        }
        return (Some(Outcome::Feasible(x)), pivots);
    }
    // Duals of the scaled system: y_i = c_{n+i} − r_{n+i} = 1 − R_{n+i}/d.
    // At the optimum yᵀA' ≤ 0 and yᵀb' = z > 0 with A' = S A, b' = S b, so
    // −S y is a Farkas vector for A, b (scaled here by d > 0).
    let y = (0..m)
        .map(|i| {
            let dual = &t.d - &t.objective[n + i];
            Rat::from_integer(-(&scale[i] * dual))
        })
        .collect();
    (Some(Outcome::Infeasible(y)), pivots)
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
