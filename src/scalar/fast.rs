//! [`FastRat`]: exact rationals that stay in machine words while they fit.
//!
//! The forward pass of a construction mostly meets small fractions: head 1's
//! weights are 2^j / (2^{i+1} − 2), head 2's are 1/i, weights are integers or
//! interpolation slopes with small denominators. A BigRational allocates on
//! every operation; a `Ratio<i64>` does not. So every value is a reduced
//! `Ratio<i64>` whenever it fits, else a `Ratio<i128>` whenever that fits
//! (head 1's weights at L up to about 125 positions, where the i64 tier ends
//! at about 61), else a BigRational, and every operation on two
//! machine-word values uses num-rational's *checked* arithmetic: on overflow
//! it is redone in the next tier up. Nothing is rounded, ever: a `FastRat`
//! is the same number the BigRational path computes, only held more
//! cheaply.

use super::gcd::gcd;
use super::{ArithError, Rat, Scalar};
use num_bigint::BigInt;
use num_rational::Ratio;
use num_traits::{CheckedAdd, CheckedDiv, CheckedMul, CheckedSub, One, ToPrimitive, Zero};
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::ops::{Add, Div, Mul, Neg, Sub};

/// An exact rational in the smallest of three tiers that holds it: a
/// reduced `Ratio<i64>`, a reduced `Ratio<i128>` (boxed, so that a
/// `FastRat` stays three words), or a BigRational. Numerators are never the
/// tier's minimum, so negation cannot overflow. The representation is
/// canonical: a value is always in the lowest tier that holds it, so equal
/// values have equal representations (and hashes).
#[derive(Clone, Debug)]
pub enum FastRat {
    Small(Ratio<i64>),
    Wide(Box<Ratio<i128>>),
    Big(Box<Rat>),
}

/// Which tier holds a value (for tests and measurements).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    I64,
    I128,
    BigInt,
}

impl FastRat {
    /// The canonical form of an exact rational.
    pub fn from_big(r: Rat) -> FastRat {
        match (r.numer().to_i128(), r.denom().to_i128()) {
            (Some(n), Some(d)) => FastRat::from_wide(Ratio::new_raw(n, d)),
            _ => FastRat::Big(Box::new(r)),
        }
    }

    /// The canonical form of a reduced `Ratio<i128>`.
    fn from_wide(q: Ratio<i128>) -> FastRat {
        let (n, d) = (*q.numer(), *q.denom());
        match (i64::try_from(n), i64::try_from(d)) {
            (Ok(n), Ok(d)) if n != i64::MIN => FastRat::Small(Ratio::new_raw(n, d)),
            _ if n != i128::MIN => FastRat::Wide(Box::new(q)),
            _ => FastRat::Big(Box::new(Rat::new_raw(BigInt::from(n), BigInt::from(d)))),
        }
    }

    /// Bytes this value holds on the heap (its box and, in the big tier,
    /// the limbs of numerator and denominator), for memory estimates.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let limbs = |b: &BigInt| b.bits().div_ceil(64) as usize * 8;
        match self {
            FastRat::Small(_) => 0,
            FastRat::Wide(_) => size_of::<Ratio<i128>>(),
            FastRat::Big(r) => size_of::<Rat>() + limbs(r.numer()) + limbs(r.denom()),
        }
    }

    /// The same value as a BigRational.
    pub fn to_rat(&self) -> Rat {
        match self {
            FastRat::Small(q) => Rat::new_raw(BigInt::from(*q.numer()), BigInt::from(*q.denom())),
            FastRat::Wide(q) => Rat::new_raw(BigInt::from(*q.numer()), BigInt::from(*q.denom())),
            FastRat::Big(r) => (**r).clone(),
        }
    }

    /// The value as a `Ratio<i128>`, if it is in a machine-word tier.
    fn wide(&self) -> Option<Ratio<i128>> {
        match self {
            FastRat::Small(q) => Some(Ratio::new_raw(
                i128::from(*q.numer()),
                i128::from(*q.denom()),
            )),
            FastRat::Wide(q) => Some(**q),
            FastRat::Big(_) => None,
        }
    }

    fn small(q: Option<Ratio<i64>>) -> Option<FastRat> {
        q.filter(|q| *q.numer() != i64::MIN).map(FastRat::Small)
    }

    /// Whether the value is in the i64 tier.
    pub fn is_small(&self) -> bool {
        matches!(self, FastRat::Small(_))
    }

    pub fn tier(&self) -> Tier {
        match self {
            FastRat::Small(_) => Tier::I64,
            FastRat::Wide(_) => Tier::I128,
            FastRat::Big(_) => Tier::BigInt,
        }
    }
}

/// Shortcuts for the sums and products the forward pass meets most: a zero
/// operand, and two integers (no gcd needed: the result is an integer).
/// `None` means "take the general path".
impl FastRat {
    fn integers(&self, rhs: &FastRat) -> Option<(i64, i64)> {
        match (self, rhs) {
            (FastRat::Small(a), FastRat::Small(b)) if a.is_integer() && b.is_integer() => {
                Some((*a.numer(), *b.numer()))
            }
            _ => None,
        }
    }

    fn integer(n: Option<i64>) -> Option<FastRat> {
        n.filter(|n| *n != i64::MIN)
            .map(|n| FastRat::Small(Ratio::from_integer(n)))
    }

    fn quick_add(&self, rhs: &FastRat) -> Option<FastRat> {
        if rhs.is_zero() {
            return Some(self.clone());
        }
        if self.is_zero() {
            return Some(rhs.clone());
        }
        let (a, b) = self.integers(rhs)?;
        FastRat::integer(a.checked_add(b))
    }

    fn quick_sub(&self, rhs: &FastRat) -> Option<FastRat> {
        if rhs.is_zero() {
            return Some(self.clone());
        }
        let (a, b) = self.integers(rhs)?;
        FastRat::integer(a.checked_sub(b))
    }

    fn quick_mul(&self, rhs: &FastRat) -> Option<FastRat> {
        if self.is_zero() || rhs.is_zero() {
            return Some(FastRat::zero());
        }
        if self.is_one() {
            return Some(rhs.clone());
        }
        if rhs.is_one() {
            return Some(self.clone());
        }
        let (a, b) = self.integers(rhs)?;
        FastRat::integer(a.checked_mul(b))
    }

    fn quick_div(&self, _: &FastRat) -> Option<FastRat> {
        None
    }
}

/// One arithmetic operator: a shortcut if one applies, else checked
/// arithmetic on two i64 values, else checked arithmetic on two i128
/// values, else BigInt numerators and denominators (either is big or both
/// checked results overflowed), with as few and as small gcds as the
/// operation allows ([`big_add`], [`big_mul`]).
macro_rules! operator {
    ($trait:ident, $method:ident, $checked:ident, $quick:ident, $big:ident) => {
        impl $trait for FastRat {
            type Output = FastRat;
            fn $method(self, rhs: FastRat) -> FastRat {
                if let Some(q) = self.$quick(&rhs) {
                    return q;
                }
                if let (FastRat::Small(a), FastRat::Small(b)) = (&self, &rhs)
                    && let Some(q) = FastRat::small(a.$checked(b))
                {
                    return q;
                }
                if let (Some(a), Some(b)) = (self.wide(), rhs.wide())
                    && let Some(q) = a.$checked(&b)
                {
                    return FastRat::from_wide(q);
                }
                $big(&self, &rhs)
            }
        }
    };
}

operator!(Add, add, checked_add, quick_add, big_add);
operator!(Sub, sub, checked_sub, quick_sub, big_sub);
operator!(Mul, mul, checked_mul, quick_mul, big_mul);
operator!(Div, div, checked_div, quick_div, big_div);

/// The numerator and denominator of a value as BigInts (the denominator
/// positive, the pair reduced: every tier is canonical).
fn parts(x: &FastRat) -> (BigInt, BigInt) {
    match x {
        FastRat::Small(q) => (BigInt::from(*q.numer()), BigInt::from(*q.denom())),
        FastRat::Wide(q) => (BigInt::from(*q.numer()), BigInt::from(*q.denom())),
        FastRat::Big(r) => (r.numer().clone(), r.denom().clone()),
    }
}

/// x / g, skipping the division when g = 1 (the usual case).
fn exact_div(x: BigInt, g: &BigInt) -> BigInt {
    if g.is_one() { x } else { x / g }
}

/// a·b for reduced a = p/q, b = r/s: with g = gcd(p, s) and h = gcd(r, q)
/// the product (p/g · r/h) / (q/h · s/g) is already reduced, so no gcd of
/// the (larger) product is taken (BigRational's `*` takes these two and
/// then reduces the product once more).
fn big_mul(a: &FastRat, b: &FastRat) -> FastRat {
    if a.is_zero() || b.is_zero() {
        return FastRat::zero();
    }
    let ((p, q), (r, s)) = (parts(a), parts(b));
    let (g, h) = (gcd(&p, &s), gcd(&r, &q));
    let numer = exact_div(p, &g) * exact_div(r, &h);
    let denom = exact_div(q, &h) * exact_div(s, &g);
    FastRat::from_big(Rat::new_raw(numer, denom))
}

/// a + b for reduced a = p/q, b = r/s (Knuth, TAOCP 4.5.1): with
/// g = gcd(q, s), t = p·(s/g) + r·(q/g) is prime to q/g and to s/g, so the
/// sum is (t/h) / ((q/g)·(s/h)) with h = gcd(t, g): one gcd with g (small
/// when either denominator is) instead of BigRational's lcm and a gcd of
/// the full sum.
fn big_add(a: &FastRat, b: &FastRat) -> FastRat {
    let ((p, q), (r, s)) = (parts(a), parts(b));
    let g = gcd(&q, &s);
    let t = if g.is_one() {
        p * &s + r * &q
    } else {
        p * (&s / &g) + r * (&q / &g)
    };
    if t.is_zero() {
        return FastRat::zero();
    }
    let h = gcd(&t, &g);
    let denom = exact_div(q, &g) * exact_div(s, &h);
    FastRat::from_big(Rat::new_raw(exact_div(t, &h), denom))
}

fn big_sub(a: &FastRat, b: &FastRat) -> FastRat {
    big_add(a, &-b.clone())
}

fn big_div(a: &FastRat, b: &FastRat) -> FastRat {
    FastRat::from_big(a.to_rat() / b.to_rat())
}

impl Neg for FastRat {
    type Output = FastRat;
    fn neg(self) -> FastRat {
        match self {
            // The numerator is never i64::MIN, so −n fits.
            FastRat::Small(q) => FastRat::Small(-q),
            // Likewise for the i128 tier.
            FastRat::Wide(q) => FastRat::Wide(Box::new(-*q)),
            FastRat::Big(r) => FastRat::from_big(-*r),
        }
    }
}

impl Zero for FastRat {
    fn zero() -> FastRat {
        FastRat::Small(Ratio::zero())
    }
    fn is_zero(&self) -> bool {
        matches!(self, FastRat::Small(q) if q.is_zero())
    }
}

impl One for FastRat {
    fn one() -> FastRat {
        FastRat::Small(Ratio::one())
    }
}

impl PartialEq for FastRat {
    fn eq(&self, other: &FastRat) -> bool {
        match (self, other) {
            (FastRat::Small(a), FastRat::Small(b)) => a == b,
            (FastRat::Wide(a), FastRat::Wide(b)) => a == b,
            (FastRat::Big(a), FastRat::Big(b)) => a == b,
            // Canonical forms: values in different tiers differ.
            _ => false,
        }
    }
}

impl Eq for FastRat {}

impl Hash for FastRat {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            FastRat::Small(q) => (0u8, *q.numer(), *q.denom()).hash(state),
            FastRat::Wide(q) => (2u8, *q.numer(), *q.denom()).hash(state),
            FastRat::Big(r) => (1u8, r.numer(), r.denom()).hash(state),
        }
    }
}

impl PartialOrd for FastRat {
    fn partial_cmp(&self, other: &FastRat) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FastRat {
    fn cmp(&self, other: &FastRat) -> Ordering {
        match (self, other) {
            // Ratio's Ord compares by continued fractions: no overflow.
            (FastRat::Small(a), FastRat::Small(b)) => a.cmp(b),
            // Big values compared in place (P bounds are big, and the
            // verdict's worst case is kept by comparing them).
            (FastRat::Big(a), FastRat::Big(b)) => a.cmp(b),
            (FastRat::Big(a), _) => (**a).cmp(&other.to_rat()),
            (_, FastRat::Big(b)) => self.to_rat().cmp(b),
            _ => match (self.wide(), other.wide()) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => self.to_rat().cmp(&other.to_rat()),
            },
        }
    }
}

impl Scalar for FastRat {
    const NAME: &'static str = "exact";
    const EXACT: bool = true;

    fn from_rat(r: &Rat) -> FastRat {
        FastRat::from_big(r.clone())
    }

    fn exp2(&self) -> Result<FastRat, ArithError> {
        if let FastRat::Small(q) = self
            && q.is_integer()
            && q.numer().abs() < 126
        {
            let p = 1i128 << q.numer().unsigned_abs();
            return Ok(FastRat::from_wide(if *q.numer() >= 0 {
                Ratio::from_integer(p)
            } else {
                Ratio::new_raw(1, p)
            }));
        }
        self.to_rat().exp2().map(FastRat::from_big)
    }

    /// In machine words while every operand and partial sum fits (the
    /// checked operations); from the first big operand or result on, the
    /// rest is summed as one unreduced BigInt fraction and reduced once
    /// ([`crate::scalar::lazy_sum`]): a gcd per term of numbers of
    /// hundreds of bits was most of the cost of long templates' router
    /// scores.
    fn sum_of_products<'a>(terms: impl Iterator<Item = (&'a FastRat, &'a FastRat)>) -> FastRat {
        let mut acc = FastRat::zero();
        let mut terms = terms.peekable();
        while let Some((a, b)) = terms.peek() {
            if matches!(a, FastRat::Big(_)) || matches!(b, FastRat::Big(_)) {
                break;
            }
            let next = acc.clone() + (*a).clone() * (*b).clone();
            if matches!(next, FastRat::Big(_)) {
                break;
            }
            acc = next;
            terms.next();
        }
        if terms.peek().is_none() {
            return acc;
        }
        let parts = |x: &FastRat| -> (BigInt, BigInt) {
            match x {
                FastRat::Small(q) => (BigInt::from(*q.numer()), BigInt::from(*q.denom())),
                FastRat::Wide(q) => (BigInt::from(*q.numer()), BigInt::from(*q.denom())),
                FastRat::Big(r) => (r.numer().clone(), r.denom().clone()),
            }
        };
        FastRat::from_big(crate::scalar::lazy_sum(
            acc.to_rat(),
            terms.map(|(a, b)| {
                let ((an, ad), (bn, bd)) = (parts(a), parts(b));
                (an * bn, ad * bd)
            }),
        ))
    }

    /// Over the one denominator Σ 2^{e_l} ([`super::pow2`]) once the score
    /// range passes 62 bits, where the generic path's weights leave the
    /// i64 tier and each product and sum needs a gcd of big numbers;
    /// below it, and where the scores or values are not integers, the
    /// generic path. The weights, when asked, come from the generic path.
    fn softmax2_mix(
        scores: &[FastRat],
        values: &[&[(usize, FastRat)]],
        weights: bool,
    ) -> Result<super::Mix<FastRat>, ArithError> {
        let wide = |x: &FastRat| match x {
            FastRat::Small(q) => Some(*q.numer()),
            _ => None,
        };
        let range = scores
            .iter()
            .map(wide)
            .try_fold((i64::MAX, i64::MIN), |(lo, hi), s| {
                s.map(|s| (lo.min(s), hi.max(s)))
            });
        let long = range.is_some_and(|(lo, hi)| (hi as i128 - lo as i128) > 62);
        if long
            && !weights
            && let Some(entries) = super::pow2::mix(scores, values)
        {
            return Ok(super::Mix {
                entries,
                weights: Vec::new(),
            });
        }
        super::softmax_mix(scores, values, weights, FastRat::exp2)
    }

    fn is_positive(&self) -> bool {
        match self {
            FastRat::Small(q) => *q.numer() > 0,
            FastRat::Wide(q) => *q.numer() > 0,
            FastRat::Big(r) => r.numer().sign() == num_bigint::Sign::Plus,
        }
    }

    fn show(&self) -> String {
        match self {
            FastRat::Small(q) => q.to_string(),
            FastRat::Wide(q) => q.to_string(),
            FastRat::Big(r) => r.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::{int, rat};

    fn f(n: i64, d: i64) -> FastRat {
        FastRat::from_rat(&rat(n, d))
    }

    #[test]
    fn small_values_stay_small_and_agree_with_bigrational() {
        let (a, b) = (f(3, 8), f(-5, 12));
        assert!(a.is_small() && b.is_small());
        assert_eq!((a.clone() + b.clone()).to_rat(), rat(3, 8) + rat(-5, 12));
        assert_eq!((a.clone() - b.clone()).to_rat(), rat(3, 8) - rat(-5, 12));
        assert_eq!((a.clone() * b.clone()).to_rat(), rat(-15, 96));
        assert_eq!((a.clone() / b.clone()).to_rat(), rat(-9, 10));
        assert_eq!((-a.clone()).to_rat(), rat(-3, 8));
        assert!(b < a);
    }

    #[test]
    fn overflow_goes_big_and_comes_back_small() {
        let big = f(i64::MAX, 1);
        let sum = big.clone() + big.clone();
        assert!(!sum.is_small());
        assert_eq!(sum.to_rat(), int(i64::MAX) + int(i64::MAX));
        // Back in range: the canonical form is small again.
        let back = sum - big.clone();
        assert!(back.is_small());
        assert_eq!(back, big);
        // i64::MIN is kept big so that negation cannot overflow.
        let min = FastRat::from_rat(&int(i64::MIN));
        assert!(!min.is_small());
        assert_eq!((-min).to_rat(), -int(i64::MIN));
        // Products of large denominators.
        let tiny = f(1, i64::MAX) * f(1, i64::MAX - 1);
        assert!(!tiny.is_small());
        assert!(tiny > FastRat::zero() && tiny < f(1, i64::MAX));
    }

    #[test]
    fn equal_values_hash_alike() {
        use std::collections::HashSet;
        let through_big = (f(i64::MAX, 1) + f(4, 1)) - f(i64::MAX, 1);
        let set: HashSet<FastRat> = [f(4, 1), through_big].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn exp2_matches_the_bigrational_path() {
        for n in [-70, -61, -3, 0, 5, 61, 70] {
            let e = f(n, 1).exp2().unwrap();
            assert_eq!(e.to_rat(), int(n).exp2().unwrap(), "2^{n}");
        }
        assert!(f(1, 2).exp2().is_err());
    }

    /// The tier a BigRational belongs in, computed from the BigRational.
    fn canonical_tier(r: &Rat) -> Tier {
        let fits64 =
            r.numer().to_i64().is_some_and(|n| n != i64::MIN) && r.denom().to_i64().is_some();
        let fits128 =
            r.numer().to_i128().is_some_and(|n| n != i128::MIN) && r.denom().to_i128().is_some();
        match (fits64, fits128) {
            (true, _) => Tier::I64,
            (false, true) => Tier::I128,
            _ => Tier::BigInt,
        }
    }

    /// Rationals spread over the three tiers: a random 64-bit numerator and
    /// denominator, each shifted left by 0 to 100 bits, and the tiers'
    /// edges (i64::MAX, i64::MIN, i128::MAX, i128::MIN) as numerators.
    fn any_rat() -> impl proptest::strategy::Strategy<Value = Rat> {
        use proptest::prelude::*;
        let edge = prop_oneof![
            Just(BigInt::from(i64::MAX)),
            Just(BigInt::from(i64::MIN)),
            Just(BigInt::from(i128::MAX)),
            Just(BigInt::from(i128::MIN)),
            Just(BigInt::from(0)),
        ];
        let shifted = (any::<i64>(), 0u32..=100).prop_map(|(n, k)| BigInt::from(n) << k);
        let numer = prop_oneof![4 => shifted, 1 => edge];
        let denom = (1i64..=i64::MAX, 0u32..=100).prop_map(|(d, k)| BigInt::from(d) << k);
        (numer, denom).prop_map(|(n, d)| Rat::new(n, d))
    }

    /// Head 1's kind of value: n / ((2^k − 1)·m) with k up to 400 bits
    /// and small n, m sharing factors with each other and with 2^k − 1
    /// (so the gcds of the big tier are not all 1).
    fn long_rat() -> impl proptest::strategy::Strategy<Value = Rat> {
        use proptest::prelude::*;
        (-40i64..40, 0u32..400, 1i64..40, 0u32..3).prop_map(|(n, k, m, s)| {
            let d = ((BigInt::from(1u8) << k) - 1u8).max(BigInt::from(1u8)) * m;
            Rat::new(BigInt::from(n) << (k * s / 2), d)
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 1000,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(15),
            ..proptest::test_runner::Config::default()
        })]

        /// Sums, differences and products of big-tier values with shared
        /// factors (the reduced forms [`big_add`] and [`big_mul`] build
        /// without a gcd of the result) are BigRational's, in the canonical
        /// tier.
        #[test]
        fn big_tier_sums_and_products_are_reduced(
            a in long_rat(),
            b in proptest::prop_oneof![long_rat(), any_rat()],
        ) {
            let (x, y) = (FastRat::from_rat(&a), FastRat::from_rat(&b));
            for (got, want) in [
                (x.clone() + y.clone(), &a + &b),
                (y.clone() + x.clone(), &b + &a),
                (x.clone() - y.clone(), &a - &b),
                (x.clone() * y.clone(), &a * &b),
                (y.clone() * x.clone(), &b * &a),
            ] {
                proptest::prop_assert_eq!(got.tier(), canonical_tier(&want));
                proptest::prop_assert_eq!(got.to_rat(), want);
            }
        }
    }

    proptest::proptest! {
        // A fixed seed and no persistence file: every run tries the same
        // 3000 cases (a few seconds at most, far less in practice).
        #![proptest_config(proptest::test_runner::Config {
            cases: 3000,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(15),
            ..proptest::test_runner::Config::default()
        })]

        /// Every operation of the i64, i128 and BigInt tiers gives exactly
        /// the BigRational result, in its canonical tier, and comparisons,
        /// equality and hashes agree with BigRational's.
        #[test]
        fn tiers_agree_with_bigrational(a in any_rat(), b in any_rat()) {
            use std::collections::hash_map::DefaultHasher;
            let (x, y) = (FastRat::from_rat(&a), FastRat::from_rat(&b));
            proptest::prop_assert_eq!(x.tier(), canonical_tier(&a));
            proptest::prop_assert_eq!(x.to_rat(), a.clone());
            let mut results = vec![
                (x.clone() + y.clone(), &a + &b),
                (x.clone() - y.clone(), &a - &b),
                (x.clone() * y.clone(), &a * &b),
                (-x.clone(), -a.clone()),
            ];
            if !b.is_zero() {
                results.push((x.clone() / y.clone(), &a / &b));
            }
            for (fast, exact) in results {
                proptest::prop_assert_eq!(fast.to_rat(), exact.clone());
                proptest::prop_assert_eq!(fast.tier(), canonical_tier(&exact));
            }
            proptest::prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            proptest::prop_assert_eq!(x == y, a == b);
            proptest::prop_assert_eq!(x.is_positive(), a > Rat::zero());
            proptest::prop_assert_eq!(x.show(), a.to_string());
            let through = (x.clone() + y.clone()) - y.clone();
            let hash = |v: &FastRat| {
                let mut h = DefaultHasher::new();
                v.hash(&mut h);
                h.finish()
            };
            proptest::prop_assert_eq!(hash(&through), hash(&x));
            proptest::prop_assert!(through == x);
        }

        /// `sum_of_products` (machine words, then one unreduced BigInt
        /// fraction) is exactly the term-by-term BigRational sum, in its
        /// canonical tier, whichever tier the terms start and end in.
        #[test]
        fn sum_of_products_agrees_with_bigrational(
            terms in proptest::collection::vec((any_rat(), any_rat()), 0..12)
        ) {
            let fast: Vec<(FastRat, FastRat)> = terms
                .iter()
                .map(|(a, b)| (FastRat::from_rat(a), FastRat::from_rat(b)))
                .collect();
            let sum = FastRat::sum_of_products(fast.iter().map(|(a, b)| (a, b)));
            let exact = terms.iter().fold(Rat::zero(), |acc, (a, b)| acc + a * b);
            proptest::prop_assert_eq!(sum.to_rat(), exact.clone());
            proptest::prop_assert_eq!(sum.tier(), canonical_tier(&exact));
        }
    }

    #[test]
    fn each_tier_is_reached() {
        // 2^70 is past i64 but within i128; 2^130 is past both.
        let wide = FastRat::from_rat(&(int(1) * Rat::from_integer(BigInt::from(1u8) << 70)));
        assert_eq!(wide.tier(), Tier::I128);
        let big = wide.clone() * wide.clone();
        assert_eq!(big.tier(), Tier::BigInt);
        assert_eq!(big.to_rat(), Rat::from_integer(BigInt::from(1u8) << 140));
        assert_eq!((big / wide.clone()).tier(), Tier::I128);
        assert_eq!((wide.clone() - wide).tier(), Tier::I64);
        // Head 1's weights at 100 positions stay in machine words.
        let w = f(1, 1).exp2().unwrap() * f(-100, 1).exp2().unwrap();
        assert_eq!(w.tier(), Tier::I128);
        assert_eq!(w.to_rat(), int(-99).exp2().unwrap());
        assert_eq!(f(-130, 1).exp2().unwrap().tier(), Tier::BigInt);
    }

    #[test]
    fn renders_like_bigrational() {
        for (n, d) in [(3, 4), (-7, 1), (0, 1), (10, -4)] {
            assert_eq!(f(n, d).show(), rat(n, d).to_string());
        }
    }
}
