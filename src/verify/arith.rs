//! The number types claims are decided in ([`ClaimArith`]): exact
//! rationals (BigRational, or [`FastRat`] in machine words while they fit)
//! and f64. Each says whether its verdict is a proof, how it bounds
//! P(invalid), and how its values enter the verdict as [`Number`]s.

use super::probability::{ExpCache, invalid_mass_bound, invalid_mass_f64};
use super::verdict::Number;
use crate::scalar::{FastRat, Rat};
use std::collections::HashMap;
use std::hash::Hash;

/// A number type the claims can be decided in.
pub trait ClaimArith: crate::eval::dense::ExactValue {
    /// Reused work across prefixes (exact: bounds on exp by argument).
    type Cache: Default + Send;
    /// A hashable image of a value, to find prefixes with identical router
    /// inputs.
    type Key: Hash + Eq + Send;
    /// Whether a verdict in this arithmetic is a proof.
    const CERTIFIED: bool;
    /// P(invalid | w) from logit histograms (value, count) of the valid and
    /// invalid tokens: a certified upper bound (exact) or an estimate (f64).
    fn invalid_mass(
        valid: &[(Self, usize)],
        invalid: &[(Self, usize)],
        cache: &mut Self::Cache,
    ) -> Self;
    fn key(&self) -> Self::Key;
    /// The value as the verdict holds it.
    fn number(&self) -> Number;
}

impl ClaimArith for Rat {
    type Cache = ExpCache;
    type Key = Rat;
    const CERTIFIED: bool = true;

    fn invalid_mass(valid: &[(Rat, usize)], invalid: &[(Rat, usize)], cache: &mut ExpCache) -> Rat {
        invalid_mass_bound(valid, invalid, cache)
    }

    fn key(&self) -> Rat {
        self.clone()
    }

    fn number(&self) -> Number {
        Number::Exact(self.clone())
    }
}

/// Logit values with how many tokens carry each.
type Histogram = Vec<(FastRat, usize)>;

/// The exact certificate's memory: bounds on e^x by argument, and whole
/// certificates by the shape of the logits they were computed from.
#[derive(Debug, Default)]
pub struct FastCache {
    exp: ExpCache,
    /// Key: the valid and invalid histograms as (logit − best valid logit,
    /// count). The bound depends on nothing else (softmax is invariant
    /// under a common shift, and `invalid_mass_bound` only ever uses the
    /// differences), and most prefixes share a handful of shapes.
    bounds: HashMap<(Histogram, Histogram), FastRat>,
}

impl ClaimArith for FastRat {
    type Cache = FastCache;
    type Key = FastRat;
    const CERTIFIED: bool = true;

    /// The certificate is computed on BigRational (its bounds on e^x are
    /// fractions far beyond 64 bits).
    fn invalid_mass(
        valid: &[(FastRat, usize)],
        invalid: &[(FastRat, usize)],
        cache: &mut FastCache,
    ) -> FastRat {
        let Some(best) = valid.iter().map(|(z, _)| z).max() else {
            return num_traits::One::one();
        };
        let shape = |h: &[(FastRat, usize)]| -> Vec<(FastRat, usize)> {
            h.iter()
                .map(|(z, c)| (z.clone() - best.clone(), *c))
                .collect()
        };
        let key = (shape(valid), shape(invalid));
        if let Some(bound) = cache.bounds.get(&key) {
            return bound.clone();
        }
        let big = |h: &[(FastRat, usize)]| -> Vec<(Rat, usize)> {
            h.iter().map(|(z, c)| (z.to_rat(), *c)).collect()
        };
        let bound = FastRat::from_big(invalid_mass_bound(
            &big(&key.0),
            &big(&key.1),
            &mut cache.exp,
        ));
        cache.bounds.insert(key, bound.clone());
        bound
    }

    fn key(&self) -> FastRat {
        self.clone()
    }

    fn number(&self) -> Number {
        Number::Exact(self.to_rat())
    }
}

impl ClaimArith for f64 {
    type Cache = ();
    type Key = u64;
    const CERTIFIED: bool = false;

    fn invalid_mass(valid: &[(f64, usize)], invalid: &[(f64, usize)], _: &mut ()) -> f64 {
        invalid_mass_f64(valid, invalid)
    }

    fn key(&self) -> u64 {
        // +0.0 and −0.0 are the same input.
        (self + 0.0).to_bits()
    }

    fn number(&self) -> Number {
        Number::Float(*self)
    }
}
