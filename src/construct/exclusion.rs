//! Exact exclusion of lookalikes, for the gates of the dense model.
//!
//! Given a task's hidden states (the *zero rows*, on which a gate must
//! vanish) and some prefixes of other tasks (the *targets*, on which it must
//! be at least 1), find a linear functional ψ doing both, or prove that none
//! exists. Both answers are exact:
//!
//! - ψ vanishes on the zero rows iff it lies in their nullspace, so ψ is
//!   written through the free coordinates z of that nullspace (exact
//!   Gauss–Jordan elimination), and ψ(x_q) = u_q·z with u_q the projection
//!   of target q. What is left is the LP  u_q·z ≥ 1 for every target,
//!   solved by the exact LP service of [`crate::lp`].
//! - If the LP is infeasible its Farkas vector gives λ ≥ 0, not all 0, with
//!   Σ λ_q u_q = 0: the combination Σ λ_q x_q lies in the span of the task's
//!   own states, Σ λ_q x_q = Σ ν_w x_w, so every functional that vanishes on
//!   the task sums to 0 over the λ-weighted targets and cannot be positive
//!   on all of them. That identity is the witness (on the XOR-like set:
//!   x(red big) + x(blue small) = x(red small) + x(blue big)).
//!
//! Greedy, by feasibility alone: the targets are taken in reverse index
//! order, and a target is given up exactly when it cannot be met together
//! with the ones kept before it while every other target is held to its
//! weaker form — dropped, or relaxed to ψ ≥ 0 (the circuit gate keeps
//! ψ ≥ 0 on what it gives up, so that a neuron's own correction can close
//! it there) — see [`crate::lp::greedy`]. So which targets are given up
//! depends on the constraint set only, never on which point or Farkas
//! vector an LP solver returns, and every LP may go float-first. Each
//! given-up target keeps the identity of the first set it broke (one valid
//! identity; which one may depend on the solver). Targets
//! may also carry other bounds ψ(x) ≥ b, hard or soft: the per-neuron
//! corrections of [`super::gate`] use that.

pub use crate::lp::Nullspace;
use crate::lp::{self, Answer, Outcome, Problem};
use crate::scalar::Rat;
use num_traits::{One, Signed, Zero};

/// One inequality ψ(x) ≥ `at_least`, and what to do with it when the LP
/// cannot meet it together with the others.
#[derive(Debug, Clone)]
pub struct Bound {
    pub x: Vec<Rat>,
    pub at_least: Rat,
    pub give_up: GiveUp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GiveUp {
    /// A hard constraint: the hard constraints together must be feasible
    /// (then every Farkas vector leans on a soft one).
    Never,
    /// Drop the constraint.
    Drop,
    /// Keep ψ(x) ≥ this bound instead (at most 0).
    Relax(Rat),
}

/// Why a bound was given up: Σ λ_i x_i = Σ ν_r z_r with λ ≥ 0 over bounds
/// (this one among them) and r over the zero rows, while Σ λ_i·at_least_i
/// > 0: every ψ vanishing on the zero rows has Σ λ_i ψ(x_i) = 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// (bound, λ_i > 0).
    pub bounds: Vec<(usize, Rat)>,
    /// (zero row, ν_r ≠ 0).
    pub rows: Vec<(usize, Rat)>,
}

/// The answer: ψ (over the `dims` coordinates) with ψ = 0 on every zero row
/// and every bound met, except those in `given_up` (relaxed or dropped),
/// each with the identity that ruled it out.
#[derive(Debug, Clone)]
pub struct Exclusion {
    pub psi: Vec<Rat>,
    pub given_up: Vec<(usize, Identity)>,
}

/// Meet `bounds` with a functional vanishing on `zero`, as far as any can.
pub fn exclude(zero: &[Vec<Rat>], bounds: &[Bound], dims: usize) -> Exclusion {
    let null = Nullspace::new(zero, dims);
    let u: Vec<Vec<Rat>> = bounds.iter().map(|b| null.project(&b.x)).collect();
    let mut given_up: Vec<(usize, Identity)> = Vec::new();
    // Bounds in the span first: ψ(x) = 0 for every ψ, ruled out alone (λ =
    // 1). The hard bounds are met first, then the soft ones in index order.
    let mut hard: Vec<usize> = Vec::new();
    let mut soft: Vec<usize> = Vec::new();
    let mut weak: Vec<usize> = Vec::new();
    for (i, b) in bounds.iter().enumerate() {
        let inside = u[i].iter().all(Zero::is_zero);
        if inside && b.at_least.is_positive() {
            given_up.push((
                i,
                Identity {
                    bounds: vec![(i, Rat::one())],
                    rows: null.express(&b.x),
                },
            ));
            weak.push(i);
        } else if b.give_up == GiveUp::Never {
            hard.push(i);
        } else {
            soft.push(i);
        }
    }
    let r = null.free.len();
    // The bound on ψ(x_i): its own, or its weaker form once given up.
    let weaker = |i: usize| -> Option<Rat> {
        match &bounds[i].give_up {
            GiveUp::Relax(v) => Some(v.clone()),
            GiveUp::Drop => None,
            GiveUp::Never => None,
        }
    };
    // Is there a ψ meeting `kept` in full and every other bound in its
    // weaker form?
    let probe = |kept: &[usize]| -> lp::greedy::Probe<Vec<Rat>, Vec<(usize, Rat)>> {
        let mut is_kept = vec![false; bounds.len()];
        kept.iter().for_each(|&i| is_kept[i] = true);
        let live: Vec<(usize, Rat)> = hard
            .iter()
            .chain(kept)
            .map(|&i| (i, bounds[i].at_least.clone()))
            .chain(
                weak.iter()
                    .chain(soft.iter().filter(|&&i| !is_kept[i]))
                    .filter_map(|&i| weaker(i).map(|v| (i, v))),
            )
            .collect();
        probe_lp(&u, r, &live)
    };
    let order: Vec<usize> = soft.iter().rev().copied().collect();
    let found = lp::greedy::in_order(&order, probe);
    match found.end {
        Ok(mut z) => {
            // A dropped bound may be met in ψ ≥ 0 form after all (then Γ_k
            // is 0 there rather than negative): one more check, kept only
            // if feasible. (Each was dropped because ψ > 0 there is out of
            // reach, so ψ = 0 on it then, whatever point the LP returns.)
            let dropped: Vec<usize> = found
                .given_up
                .iter()
                .map(|(i, _)| *i)
                .chain(weak.iter().copied())
                .filter(|&i| bounds[i].give_up == GiveUp::Drop)
                .collect();
            if !dropped.is_empty() {
                let mut live: Vec<(usize, Rat)> = hard
                    .iter()
                    .chain(&found.kept)
                    .map(|&i| (i, bounds[i].at_least.clone()))
                    .collect();
                live.extend(dropped.iter().map(|&i| (i, Rat::zero())));
                if let lp::greedy::Probe::Feasible(tidy) = probe_lp(&u, r, &live) {
                    z = tidy;
                }
            }
            given_up.extend(found.given_up.into_iter().map(|(i, lambda)| {
                let mut sum = vec![Rat::zero(); dims];
                for (j, l) in &lambda {
                    for (s, x) in sum.iter_mut().zip(&bounds[*j].x) {
                        if !x.is_zero() {
                            *s += l * x;
                        }
                    }
                }
                (
                    i,
                    Identity {
                        bounds: lambda,
                        rows: null.express(&sum),
                    },
                )
            }));
            given_up.sort_by_key(|(i, _)| *i);
            Exclusion {
                psi: if r == 0 {
                    vec![Rat::zero(); dims]
                } else {
                    null.complete(&z)
                },
                given_up,
            }
        }
        // Past the LP's limit: give up every soft bound (ψ = 0 meets none
        // of them), with no identity (the verifier reports what stays open).
        Err(_) => {
            let listed: Vec<usize> = given_up.iter().map(|(i, _)| *i).collect();
            given_up.extend(soft.iter().filter(|i| !listed.contains(i)).map(|&i| {
                (
                    i,
                    Identity {
                        bounds: vec![],
                        rows: vec![],
                    },
                )
            }));
            given_up.sort_by_key(|(i, _)| *i);
            Exclusion {
                psi: vec![Rat::zero(); dims],
                given_up,
            }
        }
    }
}

/// One exact feasibility check: z with u_i·z ≥ v_i for every (i, v_i) of
/// `live`; the point z, or λ ≥ 0 over the bounds with Σ λ_i u_i = 0 and
/// Σ λ_i v_i > 0.
fn probe_lp(
    u: &[Vec<Rat>],
    r: usize,
    live: &[(usize, Rat)],
) -> lp::greedy::Probe<Vec<Rat>, Vec<(usize, Rat)>> {
    use lp::greedy::Probe;
    // Bounds the functional meets for free (0 ≥ bound with u = 0) need no
    // row; one with u = 0 and a positive bound is infeasible alone.
    let rows: Vec<&(usize, Rat)> = live
        .iter()
        .filter(|(i, v)| v.is_positive() || u[*i].iter().any(|x| !x.is_zero()))
        .collect();
    if let Some((i, _)) = rows
        .iter()
        .find(|(i, v)| v.is_positive() && u[*i].iter().all(Zero::is_zero))
    {
        return Probe::Infeasible(vec![(*i, Rat::one())]);
    }
    if r == 0 || rows.is_empty() {
        return Probe::Feasible(vec![Rat::zero(); r]);
    }
    // Columns z⁺_f, z⁻_f, then one surplus per row: u_i·(z⁺ − z⁻) − s_i = b_i.
    let mut columns: Vec<Vec<(usize, Rat)>> = Vec::with_capacity(2 * r + rows.len());
    let live_u: Vec<&Vec<Rat>> = rows.iter().map(|(i, _)| &u[*i]).collect();
    for f in 0..r {
        let plus: Vec<(usize, Rat)> = live_u
            .iter()
            .enumerate()
            .filter(|(_, ui)| !ui[f].is_zero())
            .map(|(row, ui)| (row, ui[f].clone()))
            .collect();
        let minus = plus.iter().map(|(i, v)| (*i, -v.clone())).collect();
        columns.push(plus);
        columns.push(minus);
    }
    columns.extend((0..rows.len()).map(|i| vec![(i, -Rat::one())]));
    let problem = Problem {
        rows: rows.len(),
        columns,
        rhs: rows.iter().map(|(_, v)| v.clone()).collect(),
    };
    match lp::feasibility(&problem).0 {
        Answer::Decided(Outcome::Feasible(x)) => {
            Probe::Feasible((0..r).map(|f| &x[2 * f] - &x[2 * f + 1]).collect())
        }
        // λ = −y ≥ 0 on the surplus columns, Σ λ_i u_i = 0.
        Answer::Decided(Outcome::Infeasible(y)) => Probe::Infeasible(
            rows.iter()
                .zip(&y)
                .filter(|(_, v)| v.is_negative())
                .map(|((i, _), v)| (*i, -v.clone()))
                .collect(),
        ),
        Answer::Undecided(why) => Probe::Undecided(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::int;

    fn v(x: &[i64]) -> Vec<Rat> {
        x.iter().map(|&a| int(a)).collect()
    }

    /// ψ ≥ 1 on each, relaxed to ψ ≥ 0 when out of reach (the circuit gate).
    fn soft(targets: &[Vec<Rat>]) -> Vec<Bound> {
        targets
            .iter()
            .map(|x| Bound {
                x: x.clone(),
                at_least: Rat::one(),
                give_up: GiveUp::Relax(Rat::zero()),
            })
            .collect()
    }

    #[test]
    fn a_separable_target_gets_a_functional_vanishing_on_the_rows() {
        // Rows span {(1, 0, 0), (0, 1, 0)}; the target (1, 1, 1) is outside.
        let rows = [v(&[1, 0, 0]), v(&[1, 1, 0])];
        let e = exclude(&rows, &soft(&[v(&[1, 1, 1]), v(&[0, 0, 2])]), 3);
        assert!(e.given_up.is_empty());
        let dot = |a: &[Rat], b: &[Rat]| a.iter().zip(b).map(|(x, y)| x * y).sum::<Rat>();
        for row in &rows {
            assert!(dot(&e.psi, row).is_zero());
        }
        assert!(dot(&e.psi, &v(&[1, 1, 1])) >= Rat::one());
        assert!(dot(&e.psi, &v(&[0, 0, 2])) >= Rat::one());
    }

    #[test]
    fn xor_targets_are_ruled_out_by_an_identity() {
        // Coordinates (one, red, blue, small, big): the task has "red small"
        // and "blue big", the targets "red big" and "blue small".
        let rows = [v(&[1, 1, 0, 1, 0]), v(&[1, 0, 1, 0, 1])];
        let targets = [v(&[1, 1, 0, 0, 1]), v(&[1, 0, 1, 1, 0])];
        let e = exclude(&rows, &soft(&targets), 5);
        // One target is given up (relaxed to ψ ≥ 0), and then the other
        // must be 0 too: both are given up.
        assert_eq!(e.given_up.len(), 2);
        let (_, id) = &e.given_up[0];
        // x(red big) + x(blue small) = x(red small) + x(blue big).
        let lambda: Vec<usize> = id.bounds.iter().map(|(q, _)| *q).collect();
        assert_eq!(lambda, [0, 1]);
        assert_eq!(id.bounds[0].1, id.bounds[1].1);
        let scale = id.bounds[0].1.clone();
        assert_eq!(id.rows, [(0, scale.clone()), (1, scale)]);
        // Dropped instead, the other target is excluded alone.
        let dropped: Vec<Bound> = targets
            .iter()
            .map(|x| Bound {
                x: x.clone(),
                at_least: Rat::one(),
                give_up: GiveUp::Drop,
            })
            .collect();
        let e = exclude(&rows, &dropped, 5);
        assert_eq!(e.given_up.len(), 1);
        let kept = 1 - e.given_up[0].0;
        let dot = |a: &[Rat], b: &[Rat]| a.iter().zip(b).map(|(x, y)| x * y).sum::<Rat>();
        assert!(dot(&e.psi, &targets[kept]) >= Rat::one());
    }

    #[test]
    fn a_target_in_the_span_is_ruled_out_alone() {
        let rows = [v(&[1, 0]), v(&[0, 1])];
        let e = exclude(&rows, &soft(&[v(&[2, 3])]), 2);
        assert_eq!(
            e.given_up,
            vec![(
                0,
                Identity {
                    bounds: vec![(0, Rat::one())],
                    rows: vec![(0, int(2)), (1, int(3))],
                }
            )]
        );
    }
}
