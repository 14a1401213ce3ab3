//! Claim P as a certificate: Σ_{u ∈ V(w)} P(u | w) > 1 − ε, decided in
//! rationals (and, labelled as such, estimated in f64).
//!
//! With m the largest valid logit, P(invalid) = I / (I + V) where
//! I = Σ_{t invalid} e^{z_t − m} and V = Σ_{u valid} e^{z_u − m} ≥ 1.
//! x / (x + y) grows with x and falls with y, so an upper bound on I and a
//! lower bound on V give an upper bound on P(invalid). Both come from
//! [`crate::expbound`], so no float decides the claim.

use crate::expbound::{exp_neg_lower, exp_upper};
use crate::scalar::{Rat, int};
use num_traits::{One, Zero};
use std::collections::HashMap;

/// Valid logits further than this below the best valid one are bounded
/// below by 0 (sound, and their share is negligible).
const LOWER_CUTOFF: i64 = 40;

/// Caches exp bounds by argument: logit gaps repeat across prefixes.
#[derive(Debug, Default)]
pub struct ExpCache {
    upper: HashMap<Rat, Option<Rat>>,
    lower: HashMap<Rat, Rat>,
}

impl ExpCache {
    /// An upper bound on e^y, or `None` when none is representable.
    fn upper(&mut self, y: &Rat) -> Option<Rat> {
        self.upper
            .entry(y.clone())
            .or_insert_with(|| exp_upper(y))
            .clone()
    }

    fn lower_neg(&mut self, x: &Rat) -> Rat {
        if *x > int(LOWER_CUTOFF) {
            return Rat::zero();
        }
        self.lower
            .entry(x.clone())
            .or_insert_with(|| exp_neg_lower(x))
            .clone()
    }
}

/// An upper bound on P(invalid | w), from logit histograms (value, count) of
/// the valid and the invalid tokens. When an invalid token's e^{z − m} has
/// no representable upper bound (see [`exp_upper`]) the bound is the
/// trivial one, 1: sound, and the claim then fails rather than holds.
pub fn invalid_mass_bound(
    valid: &[(Rat, usize)],
    invalid: &[(Rat, usize)],
    cache: &mut ExpCache,
) -> Rat {
    let Some(best) = valid.iter().map(|(z, _)| z).max() else {
        return Rat::one();
    };
    let mut upper_invalid = Rat::zero();
    for (z, count) in invalid {
        let Some(term) = cache.upper(&(z - best)) else {
            return Rat::one();
        };
        upper_invalid += term * int(*count as i64);
    }
    let mut lower_valid = Rat::zero();
    for (z, count) in valid {
        lower_valid += cache.lower_neg(&(best - z)) * int(*count as i64);
    }
    if upper_invalid.is_zero() {
        return Rat::zero();
    }
    &upper_invalid / (&upper_invalid + lower_valid)
}

/// P(invalid | w) in f64, from logit histograms: the softmax shifted by the
/// largest logit m, I / (I + V) with I = Σ_{invalid} e^{z − m} and
/// V = Σ_{valid} e^{z − m}. Every term is at most its count and the largest
/// is 1, so nothing overflows however large the logits; terms that
/// underflow are below 1e-308 of the total. An estimate, not a bound.
pub fn invalid_mass_f64(valid: &[(f64, usize)], invalid: &[(f64, usize)]) -> f64 {
    if valid.is_empty() {
        return 1.0;
    }
    let m = valid
        .iter()
        .chain(invalid)
        .map(|(z, _)| *z)
        .fold(f64::NEG_INFINITY, f64::max);
    let mass =
        |h: &[(f64, usize)]| -> f64 { h.iter().map(|(z, c)| *c as f64 * (z - m).exp()).sum() };
    let (i, v) = (mass(invalid), mass(valid));
    i / (i + v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::rat;
    use num_traits::ToPrimitive;

    #[test]
    fn bound_is_above_the_true_mass_and_close_to_it() {
        // One valid token at 20, three invalid at 0, one valid at 19:
        // P(invalid) = 3 / (3 + e^20 + e^19).
        let valid = [(int(20), 1), (int(19), 1)];
        let invalid = [(int(0), 3)];
        let b = invalid_mass_bound(&valid, &invalid, &mut ExpCache::default());
        let truth = 3.0 / (3.0 + 20f64.exp() + 19f64.exp());
        let b = b.to_f64().unwrap();
        assert!(b >= truth && b < truth * 1.01, "{b} vs {truth}");
    }

    #[test]
    fn an_invalid_token_on_top_gives_a_large_bound() {
        let valid = [(int(0), 1)];
        let invalid = [(int(5), 1)];
        let b = invalid_mass_bound(&valid, &invalid, &mut ExpCache::default());
        // e^5 / (e^5 + 1) ≈ 0.9933.
        assert!(b > rat(99, 100));
        assert!(b < int(1));
    }

    #[test]
    fn f64_mass_is_stable_for_logits_in_the_hundreds() {
        // e^900 overflows f64; the shifted softmax does not.
        let p = invalid_mass_f64(&[(900.0, 1)], &[(880.0, 2), (0.0, 10)]);
        let truth = 2.0 * (-20f64).exp() / (1.0 + 2.0 * (-20f64).exp());
        assert!((p - truth).abs() < 1e-20, "{p} vs {truth}");
        // An invalid token on top.
        let p = invalid_mass_f64(&[(0.0, 1)], &[(700.0, 1)]);
        assert!(p > 0.999_999 && p <= 1.0);
        assert_eq!(invalid_mass_f64(&[(3.0, 2)], &[]), 0.0);
        assert_eq!(invalid_mass_f64(&[], &[(3.0, 2)]), 1.0);
    }

    #[test]
    fn no_invalid_tokens_means_zero_mass() {
        let b = invalid_mass_bound(&[(int(3), 2)], &[], &mut ExpCache::default());
        assert_eq!(b, int(0));
    }
}
