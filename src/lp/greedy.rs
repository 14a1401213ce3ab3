//! Which soft constraints to give up, decided by feasibility alone.
//!
//! Callers with more soft constraints than any solution meets (the dense
//! gates' lookalikes, the projections' open lookalikes) keep as many as
//! they can, greedily. The greedy choice must not depend on *which*
//! feasible point or Farkas vector an LP solver returns (a float-first
//! solver and the exact simplex return different ones), so it is a
//! function of the constraint set only: constraints are taken in index
//! order, and constraint i is given up exactly when it cannot be met
//! together with the ones kept before it. The result is the
//! lexicographically first maximal set of constraints that can be met
//! together. A constraint not kept may still count in a weaker form that
//! the caller chooses (dropped, or ψ ≥ 0 instead of ψ ≥ 1): every check
//! holds every constraint not in its kept set to that weaker form, so the
//! weaker forms alone must be feasible, and the answer stays feasible
//! whatever is given up later.
//!
//! Each step asks only "is this set feasible?": after one check of every
//! constraint at once (the common case on which nothing is given up), the
//! first constraint that breaks feasibility is found by galloping and then
//! bisection over the pending ones, so giving up one constraint after a
//! run of g kept ones costs about 2·log₂ g feasibility checks.

/// One feasibility check: a point meeting the set, or an obstacle (a Farkas
/// vector, in the caller's terms) that shows it cannot be met.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe<P, F> {
    Feasible(P),
    Infeasible(F),
    /// No answer within the caller's limits, and why.
    Undecided(String),
}

/// The greedy result: the constraints kept (index order), those given up,
/// each with the obstacle of the first set it broke, and a point meeting
/// the kept ones (with the given-up ones in their weaker form) — or, if a
/// check stayed undecided, why; `kept` and `given_up` then hold what was
/// decided before, and the constraints in neither were not decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Greedy<P, F> {
    pub kept: Vec<usize>,
    pub given_up: Vec<(usize, F)>,
    pub end: Result<P, String>,
}

/// Run the greedy over the constraints `order` (in that order).
/// `probe(kept)` decides whether the constraints `kept` can all be met
/// while every other one is in its weaker form.
pub fn in_order<P, F>(
    order: &[usize],
    mut probe: impl FnMut(&[usize]) -> Probe<P, F>,
) -> Greedy<P, F> {
    let mut kept: Vec<usize> = Vec::new();
    let mut given_up: Vec<(usize, F)> = Vec::new();
    let mut pending: &[usize] = order;
    let undecided = |kept: Vec<usize>, given_up: Vec<(usize, F)>, why: String| Greedy {
        kept,
        given_up,
        end: Err(why),
    };
    loop {
        let with = |n: usize| -> Vec<usize> { kept.iter().chain(&pending[..n]).copied().collect() };
        // Everything still pending at once.
        let mut last = match probe(&with(pending.len())) {
            Probe::Feasible(p) => {
                kept.extend_from_slice(pending);
                return Greedy {
                    kept,
                    given_up,
                    end: Ok(p),
                };
            }
            Probe::Infeasible(_) if pending.is_empty() => {
                let why =
                    "the constraints kept (or the weaker forms) cannot be met together".into();
                return undecided(kept, given_up, why);
            }
            Probe::Infeasible(f) => f,
            Probe::Undecided(why) => return undecided(kept, given_up, why),
        };
        // The smallest t with kept + pending[..t] infeasible: kept alone is
        // feasible (t > 0), all of pending is not (t ≤ len).
        let (mut lo, mut hi) = (0usize, pending.len());
        let mut step = 1usize;
        let mut galloping = true;
        while hi - lo > 1 {
            let mid = if galloping {
                (lo + step).min(hi - 1)
            } else {
                lo + (hi - lo) / 2
            };
            match probe(&with(mid)) {
                Probe::Feasible(_) => {
                    lo = mid;
                    step *= 2;
                }
                Probe::Infeasible(f) => {
                    hi = mid;
                    last = f;
                    galloping = false;
                }
                Probe::Undecided(why) => return undecided(kept, given_up, why),
            }
        }
        kept.extend_from_slice(&pending[..lo]);
        given_up.push((pending[lo], last));
        pending = &pending[lo + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Constraints x ≥ lower_i (kept) or nothing (given up), and x ≤ 10.
    fn bounds(lower: &[i32]) -> Greedy<i32, Vec<usize>> {
        let order: Vec<usize> = (0..lower.len()).collect();
        in_order(&order, |kept| {
            let need = kept.iter().map(|&i| lower[i]).max().unwrap_or(0);
            if need <= 10 {
                Probe::Feasible(need)
            } else {
                Probe::Infeasible(kept.to_vec())
            }
        })
    }

    #[test]
    fn nothing_is_given_up_when_all_fit() {
        let g = bounds(&[1, 5, 10, 3]);
        assert_eq!(g.kept, [0, 1, 2, 3]);
        assert!(g.given_up.is_empty());
        assert_eq!(g.end, Ok(10));
    }

    #[test]
    fn each_constraint_that_breaks_the_earlier_ones_is_given_up_in_order() {
        // 11 and 12 cannot be met with anything; the rest can.
        let g = bounds(&[1, 11, 2, 3, 4, 5, 12, 6, 7]);
        assert_eq!(g.kept, [0, 2, 3, 4, 5, 7, 8]);
        let gone: Vec<usize> = g.given_up.iter().map(|(i, _)| *i).collect();
        assert_eq!(gone, [1, 6]);
        // The obstacle of each is the first infeasible set found, which
        // contains it.
        for (i, obstacle) in &g.given_up {
            assert!(obstacle.contains(i));
        }
        assert_eq!(g.end, Ok(7));
    }

    #[test]
    fn the_result_is_the_sequential_greedy_whatever_the_probe_returns() {
        // Pairwise conflicts: i and j cannot both be kept if i + j == 9.
        let order: Vec<usize> = (0..10).collect();
        let g = in_order(&order, |kept| {
            let clash = kept
                .iter()
                .flat_map(|&a| kept.iter().map(move |&b| (a, b)))
                .find(|(a, b)| a + b == 9);
            match clash {
                None => Probe::Feasible(()),
                Some(pair) => Probe::Infeasible(pair),
            }
        });
        assert_eq!(g.kept, [0, 1, 2, 3, 4]);
        let gone: Vec<usize> = g.given_up.iter().map(|(i, _)| *i).collect();
        assert_eq!(gone, [5, 6, 7, 8, 9]);
    }

    #[test]
    fn an_undecided_check_stops_with_what_was_decided() {
        let order: Vec<usize> = (0..4).collect();
        let g: Greedy<(), ()> = in_order(&order, |kept| {
            if kept.len() > 2 {
                Probe::Undecided("too big".into())
            } else {
                Probe::Feasible(())
            }
        });
        assert_eq!(g.end, Err("too big".into()));
        assert!(g.given_up.is_empty());
    }
}
