//! The closed-form router of hypothesis H-R (docs/hypotheses.md) and
//! securing a trained router with it: add the least multiple of the
//! closed form that routes every prefix H-R covers without losing any the
//! trained router already routes.

use super::inputs::columns;
use super::perceptron::{ByFeature, Int, Sample, Trained, misrouted};
use crate::construct::residual::Residual;
use crate::taskset::{TaskSet, TokenKind};
use num_bigint::BigInt;
use num_traits::{One, Zero};
use rayon::prelude::*;

/// The closed-form router of docs/hypotheses.md (hypothesis H-R), as
/// integer rows over the columns of `reads` plus the bias (zero): expert k
/// scores Σ h1:u over the template words u of task k and Σ h2:e over the
/// entities e of Δk, as far as the router reads them. On a prefix w only
/// w's own tokens have nonzero h1/h2 coordinates, so the top score is taken
/// exactly by the tasks that contain every (readable) token of w, and every
/// task lacking one of them scores strictly less.
pub(super) fn vocabulary_router(ts: &TaskSet, r: &Residual, reads: &[usize]) -> Vec<Vec<BigInt>> {
    let column = columns(reads);
    let mut rows = vec![vec![BigInt::zero(); reads.len() + 1]; ts.tasks.len()];
    for (k, task) in ts.tasks.iter().enumerate() {
        let words = task.templates.iter().flat_map(|t| {
            t.slots.iter().filter_map(|s| match s {
                crate::taskset::Slot::Word(w) => Some(*w),
                _ => None,
            })
        });
        let entities = task.pairs.iter().flat_map(|&(a, b)| [a, b]);
        for t in words.chain(entities) {
            let dir = match ts.vocab.kind(t) {
                TokenKind::Word => Some(r.h1[t]),
                TokenKind::Entity => r.entity(t),
                TokenKind::Eos => None,
            };
            if let Some(&c) = dir.and_then(|d| column.get(&d)) {
                rows[k][c] = BigInt::one();
            }
        }
    }
    rows
}

/// Make the router route every prefix that H-R covers, without losing any
/// prefix it already routes: add M times the closed-form router, for the
/// smallest M ≥ 0 such that on every sample the closed form's top tier
/// (the tasks tied at its top score, a superset of C(w)) wins, led by the
/// trained router's favourite in the tier. Within the tier the trained
/// router's order is unchanged, so a sample it routed stays routed; a
/// covered prefix's tier is C(w) itself, so it is now routed. M = 0 (no
/// change) whenever the trained router already does this.
pub(super) fn secure<T: Int>(
    trained: Trained<T>,
    closed: &[Vec<T>],
    samples: &[Sample<T>],
) -> Option<Trained<T>> {
    let (by_trained, by_closed) = (ByFeature::new(&trained.weights), ByFeature::new(closed));
    // The least M this sample needs (None: overflow).
    let need = |s: &Sample<T>| -> Option<T> {
        let w = by_trained.scores(&s.x)?;
        let c = by_closed.scores(&s.x)?;
        let mut m = T::zero();
        let Some(top) = c.iter().max() else {
            return Some(m);
        };
        let tier = |k: usize| c[k] == *top;
        let lead = (0..w.len())
            .filter(|&k| tier(k))
            .reduce(|a, b| if w[b] > w[a] { b } else { a })
            .unwrap_or(0);
        for k in (0..w.len()).filter(|&k| !tier(k)) {
            // Need M·(top − c_k) > w_k − w_lead, with top − c_k ≥ 1: the
            // least such M is ⌊(w_k − w_lead)/(top − c_k)⌋ + 1 (both ≥ 0,
            // so truncating division is the floor).
            if w[k] >= w[lead] {
                let need = w[k]
                    .checked_sub(&w[lead])?
                    .checked_div(&top.checked_sub(&c[k])?)?
                    .checked_add(&T::one())?;
                m = m.max(need);
            }
        }
        Some(m)
    };
    let m = samples
        .par_iter()
        .map(need)
        .try_reduce(T::zero, |a, b| Some(a.max(b)))?;
    if m.is_zero() {
        return Some(trained);
    }
    let weights: Vec<Vec<T>> = trained
        .weights
        .iter()
        .zip(closed)
        .map(|(row, c)| {
            row.iter()
                .zip(c)
                .map(|(w, c)| w.checked_add(&m.checked_mul(c)?))
                .collect::<Option<Vec<T>>>()
        })
        .collect::<Option<_>>()?;
    let misrouted = misrouted(&weights, samples)?;
    Some(Trained {
        weights,
        converged: trained.converged || misrouted == 0,
        epochs: trained.epochs,
        misrouted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn securing_routes_covered_samples_and_keeps_the_others() {
        // Columns: a word only task 0 has, a word only task 1 has, a word
        // both have, the bias.
        let big = |x: &[(usize, i64)], k: usize| Sample {
            x: x.iter().map(|&(c, v)| (c, BigInt::from(v))).collect(),
            tasks: BTreeSet::from([k]),
            weight: 1,
        };
        let samples = vec![
            big(&[(0, 1), (3, 1)], 0),
            big(&[(1, 1), (3, 1)], 1),
            // Only the shared word: not covered, routed by the trained router.
            big(&[(2, 1), (3, 1)], 0),
        ];
        let row = |v: [i64; 4]| v.map(BigInt::from).to_vec();
        // A trained router that misroutes the first sample to task 1.
        let trained = Trained {
            weights: vec![row([0, 0, 5, 0]), row([0, 0, 0, 3])],
            converged: false,
            epochs: 7,
            misrouted: 1,
        };
        let closed = vec![row([1, 0, 1, 0]), row([0, 1, 1, 0])];
        let secured = secure(trained, &closed, &samples).unwrap();
        // M = 4 is the smallest that lifts task 0 above 3 on the first sample.
        assert_eq!(secured.weights, vec![row([4, 0, 9, 0]), row([0, 4, 4, 3])]);
        assert_eq!(secured.misrouted, 0);
        assert!(secured.converged);
        assert_eq!(misrouted(&secured.weights, &samples), Some(0));
        // A router that already routes everything is left alone.
        let good = Trained {
            weights: secured.weights.clone(),
            converged: true,
            epochs: 1,
            misrouted: 0,
        };
        assert_eq!(
            secure(good, &closed, &samples).unwrap().weights,
            secured.weights
        );
    }
}
