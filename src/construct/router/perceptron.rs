//! The integer multiclass perceptron that trains the router: scores, the
//! pocket perceptron with prefix dropping ([`fit`]), and synthesis by key
//! decomposition ([`solve`]), all in a checked integer type `T` that
//! reports overflow instead of wrapping (the caller widens and retries).

use num_traits::{CheckedAdd, CheckedDiv, CheckedMul, CheckedSub, One, Zero};
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};

/// Epochs without a better pocket before synthesis stops early.
const PATIENCE: usize = 200;
/// Prefixes synthesis may give up on, one at a time, to escape a conflict.
const MAX_DROPS: usize = 32;
/// Retrains in a row without a better router before giving up dropping.
const MAX_FRUITLESS_DROPS: usize = 4;

/// One training example: integer features (column, value), the tasks it may
/// go to, and how many prefixes share this exact router input.
#[derive(Clone)]
pub(super) struct Sample<T> {
    pub(super) x: Vec<(usize, T)>,
    pub(super) tasks: BTreeSet<usize>,
    pub(super) weight: usize,
}

/// The integer arithmetic the perceptron runs in.
pub(super) trait Int:
    Clone + Ord + Zero + One + CheckedAdd + CheckedSub + CheckedMul + CheckedDiv + Send + Sync
{
}
impl<T> Int for T where
    T: Clone + Ord + Zero + One + CheckedAdd + CheckedSub + CheckedMul + CheckedDiv + Send + Sync
{
}

pub(super) struct Trained<T> {
    pub(super) weights: Vec<Vec<T>>,
    pub(super) converged: bool,
    pub(super) epochs: usize,
    pub(super) misrouted: usize,
}

pub(super) fn scores<T: Int>(w: &[Vec<T>], x: &[(usize, T)]) -> Option<Vec<T>> {
    w.iter()
        .map(|we| {
            x.iter().try_fold(T::zero(), |acc, (f, v)| {
                acc.checked_add(&we[*f].checked_mul(v)?)
            })
        })
        .collect()
}

/// The best task inside C(w) and the best outside, by score (first on ties).
pub(super) fn contest<T: Int>(s: &[T], tasks: &BTreeSet<usize>) -> (usize, Option<usize>) {
    let best = |inside: bool| {
        (0..s.len())
            .filter(|e| tasks.contains(e) == inside)
            .reduce(|a, b| if s[b] > s[a] { b } else { a })
    };
    (best(true).unwrap_or(0), best(false))
}

/// Fixed router weights stored by feature: each column's nonzero (expert,
/// weight). A pass over every prefix with fixed weights (counting misroutes,
/// sizing the key weight, securing) then touches only nonzero weights; most
/// are zero (a key column is nonzero for its owners only).
pub(super) struct ByFeature<T> {
    columns: Vec<Vec<(usize, T)>>,
    experts: usize,
}

impl<T: Int> ByFeature<T> {
    pub(super) fn new(w: &[Vec<T>]) -> ByFeature<T> {
        let dim = w.first().map_or(0, Vec::len);
        let mut columns = vec![Vec::new(); dim];
        for (e, row) in w.iter().enumerate() {
            for (f, v) in row.iter().enumerate() {
                if !v.is_zero() {
                    columns[f].push((e, v.clone()));
                }
            }
        }
        ByFeature {
            columns,
            experts: w.len(),
        }
    }

    /// The same numbers as [`scores`].
    pub(super) fn scores(&self, x: &[(usize, T)]) -> Option<Vec<T>> {
        let mut out = vec![T::zero(); self.experts];
        for (f, v) in x {
            for (e, w) in &self.columns[*f] {
                out[*e] = out[*e].checked_add(&w.checked_mul(v)?)?;
            }
        }
        Some(out)
    }
}

/// Count prefixes whose best compatible task does not strictly win.
pub(super) fn misrouted<T: Int>(w: &[Vec<T>], samples: &[Sample<T>]) -> Option<usize> {
    let w = ByFeature::new(w);
    samples
        .par_iter()
        .map(|s| {
            let sc = w.scores(&s.x)?;
            Some(match contest(&sc, &s.tasks) {
                (inside, Some(outside)) if sc[inside] <= sc[outside] => s.weight,
                _ => 0,
            })
        })
        .sum()
}

/// The perceptron on the `active` samples; the pocket keeps the weights
/// that misroute the fewest prefixes over all samples. None if the integer
/// type overflowed.
pub(super) fn train<T: Int>(
    samples: &[Sample<T>],
    active: &[bool],
    init: &[Vec<T>],
    max_epochs: usize,
) -> Option<(Trained<T>, Vec<usize>)> {
    let mut w = init.to_vec();
    let mut pocket = (w.clone(), usize::MAX);
    let mut since_better = 0;
    let mut blame = vec![0usize; samples.len()];
    let mut epochs = 0;
    for _ in 0..max_epochs {
        epochs += 1;
        let mut mistakes = 0;
        for (i, s) in samples.iter().enumerate().filter(|(i, _)| active[*i]) {
            let sc = scores(&w, &s.x)?;
            let (inside, Some(outside)) = contest(&sc, &s.tasks) else {
                continue;
            };
            // Margin 1 on integer scores.
            if sc[inside] < sc[outside].checked_add(&T::one())? {
                mistakes += 1;
                blame[i] += 1;
                for (f, v) in &s.x {
                    w[inside][*f] = w[inside][*f].checked_add(v)?;
                    w[outside][*f] = w[outside][*f].checked_sub(v)?;
                }
            }
        }
        // Counting misroutes costs a pass; only do it when this epoch's
        // margin violations suggest the pocket could improve.
        let wrong = if mistakes == 0 || mistakes <= pocket.1.saturating_mul(2) {
            misrouted(&w, samples)?
        } else {
            usize::MAX
        };
        if wrong < pocket.1 {
            pocket = (w.clone(), wrong);
            since_better = 0;
        } else {
            since_better += 1;
        }
        if mistakes == 0 || since_better >= PATIENCE {
            break;
        }
    }
    let trained = Trained {
        weights: pocket.0,
        converged: pocket.1 == 0,
        epochs,
        misrouted: pocket.1,
    };
    Some((trained, blame))
}

/// Train; while the router is imperfect, give up the prefix the perceptron
/// blamed most and train again (bounded), keeping the best router seen.
/// This finds a router that fails only where it must on small conflicts
/// such as XOR-like templates, where a plain pocket perceptron does not.
pub(super) fn fit<T: Int>(
    samples: &[Sample<T>],
    init: &[Vec<T>],
    max_epochs: usize,
) -> Option<Trained<T>> {
    let mut active = vec![true; samples.len()];
    let (mut best, mut blame) = train(samples, &active, init, max_epochs)?;
    let mut epochs = best.epochs;
    let mut fruitless = 0;
    for _ in 0..MAX_DROPS {
        if best.converged || fruitless >= MAX_FRUITLESS_DROPS {
            break;
        }
        let Some(worst) = (0..samples.len())
            .filter(|&i| active[i])
            .max_by_key(|&i| (blame[i], std::cmp::Reverse(i)))
        else {
            break;
        };
        if blame[worst] == 0 {
            break;
        }
        active[worst] = false;
        let (next, next_blame) = train(samples, &active, init, max_epochs)?;
        epochs += next.epochs;
        blame = next_blame;
        if next.misrouted < best.misrouted {
            best = next;
            fruitless = 0;
        } else {
            fruitless += 1;
        }
    }
    best.epochs = epochs;
    Some(best)
}

/// Which tasks own each key column (h2:a → tasks with a as a key).
pub(super) type KeyOwners = HashMap<usize, Vec<usize>>;

/// Synthesis by decomposition. A prefix whose entities are keys of one task
/// only, a task it belongs to, is decided by its key: it needs no training,
/// only a key weight M large enough. So: train on the other prefixes (those
/// before the key, shared keys, values that are keys elsewhere), then add
/// the least integer M on every key's h2 weight toward its owners that gives
/// every key-decided prefix margin 1 (exact), then re-check everything. If
/// the key weights disturb a trained prefix, train on all prefixes starting
/// from these weights.
pub(super) fn solve<T: Int>(
    samples: &[Sample<T>],
    owners: &KeyOwners,
    experts: usize,
    dim: usize,
    max_epochs: usize,
) -> Option<Trained<T>> {
    let decided_by = |s: &Sample<T>| {
        let mut tasks: Vec<usize> =
            s.x.iter()
                .filter_map(|(c, _)| owners.get(c))
                .flatten()
                .copied()
                .collect();
        tasks.sort_unstable();
        tasks.dedup();
        match tasks.as_slice() {
            [t] if s.tasks.contains(t) => Some(*t),
            _ => None,
        }
    };
    let decided: Vec<Option<usize>> = samples.iter().map(decided_by).collect();
    let hard: Vec<Sample<T>> = samples
        .iter()
        .zip(&decided)
        .filter(|(_, d)| d.is_none())
        .map(|(s, _)| Sample {
            x: s.x.clone(),
            tasks: s.tasks.clone(),
            weight: s.weight,
        })
        .collect();
    let zero = vec![vec![T::zero(); dim]; experts];
    let mut trained = fit(&hard, &zero, max_epochs)?;
    let w = ByFeature::new(&trained.weights);
    // The least M over all key-decided samples (None: overflow).
    let need = |s: &Sample<T>, t: usize| -> Option<T> {
        let sc = w.scores(&s.x)?;
        let Some(rival) = (0..experts).filter(|&j| j != t).map(|j| &sc[j]).max() else {
            return Some(T::one());
        };
        // Need m·key ≥ rival − s_t + 1, with key = Σ of t's key features.
        let gap = rival.checked_sub(&sc[t])?.checked_add(&T::one())?;
        let key =
            s.x.iter()
                .filter(|(c, _)| owners.get(c).is_some_and(|o| o.contains(&t)))
                .try_fold(T::zero(), |a, (_, v)| a.checked_add(v))?;
        if gap > T::zero() && key > T::zero() {
            gap.checked_add(&key)?
                .checked_sub(&T::one())?
                .checked_div(&key)
        } else {
            Some(T::one())
        }
    };
    let m = samples
        .par_iter()
        .zip(&decided)
        .filter_map(|(s, d)| d.map(|t| need(s, t)))
        .try_reduce(T::one, |a, b| Some(a.max(b)))?;
    for (c, tasks) in owners {
        for &t in tasks {
            trained.weights[t][*c] = trained.weights[t][*c].checked_add(&m)?;
        }
    }
    let wrong = misrouted(&trained.weights, samples)?;
    if wrong == trained.misrouted {
        trained.misrouted = wrong;
        return Some(trained);
    }
    let epochs = trained.epochs;
    let mut again = fit(samples, &trained.weights, max_epochs)?;
    again.epochs += epochs;
    Some(again)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(x: &[(usize, i128)], tasks: &BTreeSet<usize>) -> Sample<i128> {
        Sample {
            x: x.to_vec(),
            tasks: tasks.clone(),
            weight: 1,
        }
    }

    #[test]
    fn perceptron_separates_separable_data() {
        // Feature 0 marks task 0, feature 1 task 1; feature 2 is the bias.
        let a = BTreeSet::from([0]);
        let b = BTreeSet::from([1]);
        let both = BTreeSet::from([0, 1]);
        let samples = vec![
            sample(&[(0, 1), (2, 1)], &a),
            sample(&[(1, 1), (2, 1)], &b),
            sample(&[(0, 1), (1, 1), (2, 1)], &both),
        ];
        let t = fit(&samples, &vec![vec![0; 3]; 2], 100).unwrap();
        assert!(t.converged);
        assert_eq!(misrouted(&t.weights, &samples), Some(0));
        let s = scores(&t.weights, &samples[0].x).unwrap();
        assert!(s[0] > s[1]);
    }

    #[test]
    fn perceptron_reports_xor_as_not_converged() {
        // XOR: features (x, y) one-hot pairs; task 0 on (0,0),(1,1), task 1 on (0,1),(1,0).
        let a = BTreeSet::from([0]);
        let b = BTreeSet::from([1]);
        let samples = vec![
            sample(&[(0, 1), (2, 1), (4, 1)], &a),
            sample(&[(1, 1), (3, 1), (4, 1)], &a),
            sample(&[(0, 1), (3, 1), (4, 1)], &b),
            sample(&[(1, 1), (2, 1), (4, 1)], &b),
        ];
        let zero = vec![vec![0; 5]; 2];
        let (t, _) = train(&samples, &[true; 4], &zero, 300).unwrap();
        assert!(!t.converged);
        assert!(t.misrouted >= 1);
        // Giving up on one prefix leaves a separable rest: exactly one fails.
        let t = fit(&samples, &zero, 300).unwrap();
        assert_eq!(t.misrouted, 1);
    }

    #[test]
    fn keys_decide_their_prefixes_without_training() {
        // Columns 0, 1: words before the key; 2, 3: keys of tasks 0 and 1;
        // 4: bias. Two pre-key prefixes to train, two decided by their key,
        // where the trained word weights point the wrong way (word 0 is task
        // 1's opening but precedes task 0's key here).
        let s = |x: &[(usize, i128)], t: usize| sample(x, &BTreeSet::from([t]));
        let samples = vec![
            s(&[(0, 1), (4, 1)], 1),
            s(&[(1, 1), (4, 1)], 0),
            s(&[(0, 3), (2, 1), (4, 1)], 0),
            s(&[(1, 3), (3, 1), (4, 1)], 1),
        ];
        let owners = KeyOwners::from([(2, vec![0]), (3, vec![1])]);
        let t = solve(&samples, &owners, 2, 5, 100).unwrap();
        assert!(t.converged);
        assert_eq!(misrouted(&t.weights, &samples), Some(0));
        // The key weight is the least integer that gives margin 1.
        for (i, key) in [(2, 2), (3, 3)] {
            let sc = scores(&t.weights, &samples[i].x).unwrap();
            let (own, other) = if key == 2 { (0, 1) } else { (1, 0) };
            assert!(sc[own] > sc[other]);
        }
        assert_eq!(t.weights[0][2], t.weights[1][3]);
    }

    #[test]
    fn overflow_is_detected_not_wrapped() {
        let a = BTreeSet::from([0]);
        let b = BTreeSet::from([1]);
        let huge = i128::MAX / 2;
        let samples = vec![sample(&[(0, huge)], &a), sample(&[(0, huge)], &b)];
        assert!(fit(&samples, &vec![vec![0; 1]; 2], 10).is_none());
    }
}
