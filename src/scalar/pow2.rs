//! A head's output under power-of-two attention, summed exactly over its
//! one denominator.
//!
//! Scores in units of ln 2 that are integers give the weights
//! w_l = 2^{e_l} / D, with e_l = s_l − min_m s_m ≥ 0 and D = Σ_l 2^{e_l}, so
//! output coordinate c is N_c / D with N_c = Σ_l 2^{e_l}·v_{l,c}. When every
//! value is an integer, N_c is an integer: each v is added, shifted left by
//! e_l, into a fixed-point accumulator of 64-bit limbs, and one fraction is
//! formed (one gcd) per output coordinate. The generic path forms L weights,
//! each a reduced fraction of L-bit numbers, and then L products and sums of
//! such fractions, each with its own gcd: about L³ word operations a prefix
//! for head 1 at L positions (9 ms a prefix at 200 words, no answer at 400).
//! Nothing is rounded: the result is the same number, in the same
//! canonical [`FastRat`] form, as the generic path's.

use super::FastRat;
use num_bigint::{BigInt, BigUint};
use num_traits::{ToPrimitive, Zero};

/// The widest score range 2^score is taken over (as [`super::Scalar::exp2`]
/// on BigRational): past it the generic path reports the error.
const MAX_RANGE: i64 = 1 << 20;

/// A non-negative integer as 64-bit limbs, least significant first, to which
/// shifted 64-bit magnitudes are added with carry.
struct Limbs(Vec<u64>);

impl Limbs {
    /// Room for sums of up to 2^64 terms below 2^{bits}.
    fn with_bits(bits: u64) -> Limbs {
        Limbs(vec![0; (bits / 64) as usize + 3])
    }

    /// self += m · 2^shift.
    fn add_shifted(&mut self, m: u64, shift: u64) {
        let (at, bit) = ((shift / 64) as usize, (shift % 64) as u32);
        let wide = u128::from(m) << bit;
        self.add_at(at, wide as u64);
        self.add_at(at + 1, (wide >> 64) as u64);
    }

    fn add_at(&mut self, mut at: usize, mut v: u64) {
        while v != 0 {
            let (sum, carry) = self.0[at].overflowing_add(v);
            self.0[at] = sum;
            v = u64::from(carry);
            at += 1;
        }
    }

    fn into_big(self) -> BigInt {
        let digits: Vec<u32> = self
            .0
            .iter()
            .flat_map(|&l| [l as u32, (l >> 32) as u32])
            .collect();
        BigInt::from(BigUint::new(digits))
    }
}

/// One output coordinate's numerator: positive and negative parts apart.
struct Numerator {
    plus: Limbs,
    minus: Option<Limbs>,
}

/// Σ_l w_l·v_l as (coordinate, value) entries, one per coordinate some
/// position's value names (in order of first appearance; zero values are
/// kept), with w_l = 2^{s_l} / Σ_m 2^{s_m}. None when this path does not
/// apply: a score that is not an i64 integer, a score range past 2^20, or a
/// value that is not an i64 integer; the caller then takes the generic
/// path, which computes the same value or reports the error.
pub(crate) fn mix(
    scores: &[FastRat],
    values: &[&[(usize, FastRat)]],
) -> Option<Vec<(usize, FastRat)>> {
    let ints: Vec<i64> = scores.iter().map(integer).collect::<Option<_>>()?;
    let (&lo, &hi) = (ints.iter().min()?, ints.iter().max()?);
    let range = hi.checked_sub(lo).filter(|r| *r <= MAX_RANGE)? as u64;
    // Every term below 2^{range + 64}; at most 2^64 of them.
    let bits = range + 64;
    let mut total = Limbs::with_bits(bits);
    let mut coords: Vec<usize> = Vec::new();
    let mut numerators: Vec<Numerator> = Vec::new();
    let mut slot: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (s, entries) in ints.iter().zip(values) {
        let e = (s - lo) as u64;
        total.add_shifted(1, e);
        for (c, v) in entries.iter() {
            let v = integer(v)?;
            let k = *slot.entry(*c).or_insert_with(|| {
                coords.push(*c);
                numerators.push(Numerator {
                    plus: Limbs::with_bits(bits),
                    minus: None,
                });
                numerators.len() - 1
            });
            let n = &mut numerators[k];
            if v >= 0 {
                n.plus.add_shifted(v as u64, e);
            } else {
                n.minus
                    .get_or_insert_with(|| Limbs::with_bits(bits))
                    .add_shifted(v.unsigned_abs(), e);
            }
        }
    }
    let total = total.into_big();
    Some(
        coords
            .into_iter()
            .zip(numerators)
            .map(|(c, n)| {
                let mut num = n.plus.into_big();
                if let Some(minus) = n.minus {
                    num -= minus.into_big();
                }
                let value = if num.is_zero() {
                    FastRat::zero()
                } else {
                    FastRat::from_big(super::gcd::reduced(num, total.clone()))
                };
                (c, value)
            })
            .collect(),
    )
}

/// The value as an i64, if it is an integer in the i64 tier.
fn integer(x: &FastRat) -> Option<i64> {
    match x {
        FastRat::Small(q) if q.is_integer() => q.numer().to_i64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::{Scalar, int, softmax_mix};

    fn f(n: i64) -> FastRat {
        FastRat::from_rat(&int(n))
    }

    /// The generic path (the definition: weights, then products and sums).
    fn generic(scores: &[FastRat], values: &[&[(usize, FastRat)]]) -> Vec<(usize, FastRat)> {
        let mix = softmax_mix(scores, values, false, |s: &FastRat| s.exp2()).unwrap();
        collect(mix.entries)
    }

    /// Entries summed per coordinate, zeros dropped, sorted.
    fn collect(entries: Vec<(usize, FastRat)>) -> Vec<(usize, FastRat)> {
        let mut by: std::collections::BTreeMap<usize, FastRat> = Default::default();
        for (c, v) in entries {
            let acc = by.remove(&c).unwrap_or_else(FastRat::zero);
            by.insert(c, acc + v);
        }
        by.into_iter().filter(|(_, v)| !v.is_zero()).collect()
    }

    #[test]
    fn head_one_at_three_positions() {
        // Scores 0, 1, 2 (head 1 at i = 3): weights 1/7, 2/7, 4/7; symbol 0
        // at positions 1 and 3, symbol 1 at position 2.
        let scores = [f(0), f(1), f(2)];
        let (a, b) = (vec![(0, f(1))], vec![(1, f(1))]);
        let values: Vec<&[(usize, FastRat)]> = vec![&a, &b, &a];
        let out = collect(mix(&scores, &values).unwrap());
        assert_eq!(
            out,
            vec![
                (0, FastRat::from_rat(&crate::scalar::rat(5, 7))),
                (1, FastRat::from_rat(&crate::scalar::rat(2, 7)))
            ]
        );
        assert_eq!(out, generic(&scores, &values));
    }

    #[test]
    fn declines_what_it_cannot_sum_as_integers() {
        let half = FastRat::from_rat(&crate::scalar::rat(1, 2));
        let one = vec![(0, f(1))];
        assert!(mix(std::slice::from_ref(&half), &[&one]).is_none());
        assert!(mix(&[f(0)], &[&[(0, half)][..]]).is_none());
        assert!(mix(&[f(0), f(MAX_RANGE + 1)], &[&one, &one]).is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 200,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(15),
            ..proptest::test_runner::Config::default()
        })]

        /// The limb sum is exactly the generic exact path, in the same
        /// canonical tier, for score ranges from a few bits to past i128
        /// and values of either sign up to i64's edges.
        #[test]
        fn pow2_sum_equals_the_generic_exact_path(
            positions in proptest::collection::vec(
                (
                    -300i64..300,
                    proptest::collection::vec(
                        (0usize..6, proptest::prop_oneof![
                            -5i64..6,
                            proptest::prelude::Just(i64::MAX),
                            proptest::prelude::Just(i64::MIN + 1),
                        ]),
                        0..4,
                    ),
                ),
                1..40,
            )
        ) {
            let scores: Vec<FastRat> = positions.iter().map(|(s, _)| f(*s)).collect();
            let values: Vec<Vec<(usize, FastRat)>> = positions
                .iter()
                .map(|(_, v)| v.iter().map(|(c, x)| (*c, f(*x))).collect())
                .collect();
            let refs: Vec<&[(usize, FastRat)]> = values.iter().map(|v| &v[..]).collect();
            let fast = collect(mix(&scores, &refs).unwrap());
            let slow = generic(&scores, &refs);
            proptest::prop_assert_eq!(fast.len(), slow.len());
            for ((c, x), (d, y)) in fast.iter().zip(&slow) {
                proptest::prop_assert_eq!(c, d);
                proptest::prop_assert_eq!(x.tier(), y.tier());
                proptest::prop_assert_eq!(x.to_rat(), y.to_rat());
            }
        }
    }
}
