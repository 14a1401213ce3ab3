//! Rigorous rational bounds on exp, by truncated Taylor series.
//!
//! For x ≥ 0 every term of e^x = Σ x^j/j! is nonnegative, so a partial sum
//! T_n(x) is a lower bound on e^x and 1/T_n(x) an upper bound on e^{-x}. For
//! the alternating series of e^{-x} with 0 ≤ x ≤ 1, stopping after a negative
//! term (n odd) gives a lower bound. No float is involved anywhere.

use crate::scalar::{Rat, int};
use num_bigint::BigInt;
use num_traits::{One, Signed, Zero};

/// Above this gap the upper bound on e^{-x} is a power of two (cheap), not
/// a Taylor sum with hundreds of terms.
const TAIL: i64 = 32;

/// T_n(x) = Σ_{j=0}^{n} x^j / j!.
pub fn taylor(x: &Rat, n: u32) -> Rat {
    let mut term = Rat::one();
    let mut sum = Rat::one();
    for j in 1..=n {
        term = term * x / int(j as i64);
        sum += &term;
    }
    sum
}

/// Number of Taylor terms that make 1/T_n(x) within a factor of about 2 of
/// e^{-x}: the tail after n terms is tiny once n ≥ 2x + 10.
fn terms_for(x: &Rat) -> u32 {
    let whole = x.ceil().to_integer();
    let whole: u32 = whole.try_into().unwrap_or(u32::MAX / 4);
    2 * whole.min(1 << 20) + 10
}

/// Arguments are rounded to multiples of 1/GRID before a Taylor sum: down
/// for upper bounds on e^{-x}, up for lower bounds (exp is monotone), so the
/// bound loosens by at most e^{1/GRID} while denominators stay small (a gap
/// like 57071/281 would otherwise make every Taylor term a huge fraction).
const GRID: i64 = 64;

fn round_down(x: &Rat) -> Rat {
    (x * int(GRID)).floor() / int(GRID)
}

fn round_up(x: &Rat) -> Rat {
    (x * int(GRID)).ceil() / int(GRID)
}

/// An upper bound on e^{-x}; x must be ≥ 0.
pub fn exp_neg_upper(x: &Rat) -> Rat {
    assert!(!x.is_negative(), "exp_neg_upper needs x >= 0");
    let x = &round_down(x);
    if x.is_zero() {
        return Rat::one();
    }
    if *x >= int(TAIL) {
        // e^{-x} = 2^{-x/ln 2} ≤ 2^{-⌊36x/25⌋}, as 1/ln 2 = 1.4427… > 36/25.
        let bits = (x * int(36) / int(25)).floor().to_integer();
        let bits: usize = bits.try_into().unwrap_or(usize::MAX >> 40);
        return Rat::new(BigInt::one(), BigInt::one() << bits.min(1 << 24));
    }
    Rat::one() / taylor(x, terms_for(x))
}

/// An upper bound on `exp_neg_upper(y)` for every y ≥ x ≥ 0: what the
/// probability certificate can charge a token whose logit gap is at least x.
///
/// `exp_neg_upper` is nonincreasing on [0, TAIL) (the argument is rounded
/// down, and both the Taylor sum T_n(x) and its degree n = 2⌈x⌉ + 10 grow
/// with x) and on [TAIL, ∞) (a power of two with a nonincreasing exponent),
/// but it jumps up at TAIL, where the power of two takes over from the
/// tighter Taylor bound. So the supremum over y ≥ x is the larger of the
/// values at x and at TAIL.
pub fn exp_neg_upper_sup(x: &Rat) -> Rat {
    let at_x = exp_neg_upper(x);
    if *x >= int(TAIL) {
        return at_x;
    }
    at_x.max(exp_neg_upper(&int(TAIL)))
}

/// A lower bound on e^{-x} for x ≥ 0: the odd-degree Taylor polynomial for
/// x ≤ 1, and (e^{-x/2})² above (a product of positive lower bounds).
pub fn exp_neg_lower(x: &Rat) -> Rat {
    assert!(!x.is_negative(), "exp_neg_lower needs x >= 0");
    let x = round_up(x);
    if x.is_zero() {
        return Rat::one();
    }
    // x = m / GRID; halve until x ≤ 1, then square back up.
    let mut halvings = 0;
    let mut y = x;
    while y > Rat::one() {
        y /= int(2);
        halvings += 1;
    }
    let mut bound = taylor(&-y, 11);
    for _ in 0..halvings {
        bound = &bound * &bound;
    }
    bound
}

/// Above this many bits a power-of-two bound on e^y is not built: the
/// number would take 2 MiB, and nothing the construction emits needs it
/// (a gap that large already makes the invalid token win outright).
pub const MAX_POWER_BITS: usize = 1 << 24;

/// An upper bound on e^{y} for any rational y, or `None` when the bound
/// would need more than [`MAX_POWER_BITS`] bits: the caller must then fall
/// back to a trivial bound (for a probability, 1), never to a smaller
/// number. Above 4 it is a power of two, e^y = 2^{y/ln 2} ≤ 2^{⌈1.443·y⌉}
/// (1/ln 2 = 1.44269… < 1.443): cheap, and only ever used where an invalid
/// token already beats every valid one.
pub fn exp_upper(y: &Rat) -> Option<Rat> {
    if y.is_negative() || y.is_zero() {
        Some(exp_neg_upper(&-y.clone()))
    } else if *y <= int(4) {
        Some(Rat::one() / exp_neg_lower(y))
    } else {
        let bits = (y * int(1443) / int(1000)).ceil().to_integer();
        let bits: usize = bits.try_into().ok().filter(|&b| b <= MAX_POWER_BITS)?;
        Some(Rat::from_integer(BigInt::one() << bits))
    }
}

/// A lower bound on e^{y} for any rational y.
pub fn exp_lower(y: &Rat) -> Rat {
    if y.is_negative() || y.is_zero() {
        exp_neg_lower(&-y.clone())
    } else {
        taylor(y, terms_for(y))
    }
}

/// A lower bound on e: T_30(1) = Σ_{j ≤ 30} 1/j!, below e by less than
/// 2/31! ≈ 2.4·10^{-34} (relative 10^{-34}), so e_lo^n is within a factor
/// 1 − n·10^{-34} of e^n for every n this crate meets.
fn e_lower() -> Rat {
    taylor(&int(1), 30)
}

/// e_lo^n, a certified lower bound on e^n for an integer n ≥ 0: repeated
/// squaring, so the cost is a few multiplications of numbers with O(n)
/// digits (quasi-linear), not the O(n) Taylor terms of `exp_lower(n)`.
fn e_pow_lower(n: u32) -> Rat {
    num_traits::pow::Pow::pow(e_lower(), n)
}

/// A float guess at ln t for a positive rational (never decides anything:
/// [`ln_ceiling`] certifies around it). Works for any size of t, as it
/// reads only the leading bits of numerator and denominator.
fn ln_guess(t: &Rat) -> f64 {
    fn ln_big(x: &BigInt) -> f64 {
        let bits = x.bits();
        let shift = bits.saturating_sub(60);
        let top = (x >> shift).to_string().parse::<f64>().unwrap_or(1.0);
        top.ln() + shift as f64 * std::f64::consts::LN_2
    }
    ln_big(t.numer()) - ln_big(t.denom())
}

/// The largest t whose ln-ceiling is computed: e^n must stay a number the
/// margins can be built from (β_sem = n + 1, β_syn = 2·L·β_sem + 1, and
/// power-of-two bounds on e^{±β} of a few times n bits below
/// [`MAX_POWER_BITS`]). n ≤ 10^6 is far beyond any ε anyone asks for
/// (ε = 10^{-300} gives n ≈ 700).
pub const MAX_LN_CEILING: u32 = 1_000_000;

/// The smallest integer n ≥ 0 with e_lo^n ≥ t, where e_lo < e is a
/// certified rational lower bound on e (so the n returned always satisfies
/// e^n ≥ t, and it is the true minimum unless t lies within a relative
/// 10^{-34}·n of e^{n−1}). `None` when n would exceed [`MAX_LN_CEILING`].
///
/// A float guess of ln t starts the search and exact comparisons settle it,
/// so the cost is a handful of exact powers, quasi-linear in the digits of
/// t. Results are memoised: the construction and the hypotheses both ask
/// for the same t, and it is computed once.
pub fn ln_ceiling(t: &Rat) -> Option<u32> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static MEMO: OnceLock<Mutex<HashMap<Rat, Option<u32>>>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    if let Some(hit) = memo.lock().ok().and_then(|m| m.get(t).copied()) {
        return hit;
    }
    let found = ln_ceiling_uncached(t);
    if let Ok(mut m) = memo.lock() {
        m.insert(t.clone(), found);
    }
    found
}

fn ln_ceiling_uncached(t: &Rat) -> Option<u32> {
    if *t <= Rat::one() {
        return Some(0);
    }
    let guess = ln_guess(t).ceil();
    if !guess.is_finite() || guess > MAX_LN_CEILING as f64 + 2.0 {
        return None;
    }
    let mut n = (guess as u32).saturating_sub(1);
    // Down while n − 1 still certifies, up while n does not: with a good
    // guess each loop runs at most a couple of times.
    while n > 0 && e_pow_lower(n - 1) >= *t {
        n -= 1;
    }
    while e_pow_lower(n) < *t {
        n += 1;
        if n > MAX_LN_CEILING {
            return None;
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::rat;
    use num_traits::ToPrimitive;

    fn f(r: &Rat) -> f64 {
        r.to_f64().unwrap()
    }

    #[test]
    fn bounds_bracket_exp() {
        for (n, d) in [
            (0, 1),
            (1, 3),
            (1, 1),
            (5, 2),
            (20, 1),
            (37, 3),
            (-7, 4),
            (3, 1000),
        ] {
            let y = rat(n, d);
            let e = (n as f64 / d as f64).exp();
            let (lo, hi) = (exp_lower(&y), exp_upper(&y).unwrap());
            assert!(lo <= hi, "{y}: {lo} > {hi}");
            assert!(
                f(&lo) <= e * (1.0 + 1e-12),
                "{y}: lower {} above e^y {}",
                f(&lo),
                e
            );
            assert!(
                f(&hi) >= e * (1.0 - 1e-12),
                "{y}: upper {} below e^y {}",
                f(&hi),
                e
            );
            // Tight enough to be useful: the 1/64 grid costs at most
            // e^{1/64} on each side, so hi/lo < e^{2/64} plus Taylor slack.
            // Above 4, e^y's upper bound is a power of two: within 2^{1.0003}.
            let slack = if y > int(4) { 2.01 } else { 1.035 };
            assert!(f(&hi) / f(&lo) < slack, "{y}: {} .. {}", f(&lo), f(&hi));
        }
    }

    #[test]
    fn large_gaps_use_a_power_of_two() {
        // e^{-100} ≈ 3.72e-44; 2^{-144} ≈ 4.48e-44 is above it and close.
        let hi = exp_neg_upper(&int(100));
        assert_eq!(hi, Rat::new(BigInt::one(), BigInt::one() << 144));
        assert!(f(&hi) >= (-100f64).exp() && f(&hi) < 1.3 * (-100f64).exp());
        // At the switch the Taylor bound and the power of two agree to 20%.
        let x = int(TAIL);
        let taylor_bound = Rat::one() / taylor(&x, terms_for(&x));
        assert!(f(&exp_neg_upper(&x)) / f(&taylor_bound) < 1.2);
    }

    #[test]
    fn the_supremum_bounds_every_larger_gap() {
        // Just below the switch the Taylor bound is tighter than the power
        // of two at the switch: the function is not monotone there.
        let below = exp_neg_upper(&(int(TAIL) - rat(1, 64)));
        assert!(below < exp_neg_upper(&int(TAIL)));
        for x in [
            rat(0, 1),
            rat(1, 3),
            int(18),
            rat(2047, 64),
            int(TAIL),
            int(40),
        ] {
            let sup = exp_neg_upper_sup(&x);
            let mut y = x.clone();
            while y < int(70) {
                assert!(exp_neg_upper(&y) <= sup, "x = {x}, y = {y}");
                y += rat(1, 8);
            }
            assert!(sup >= exp_neg_upper(&x));
        }
        // Above the switch it is the bound at x itself.
        assert_eq!(exp_neg_upper_sup(&int(40)), exp_neg_upper(&int(40)));
    }

    #[test]
    fn taylor_partial_sums_are_exact() {
        // T_3(1) = 1 + 1 + 1/2 + 1/6 = 8/3.
        assert_eq!(taylor(&int(1), 3), rat(8, 3));
        // T_1(-1/2) = 1/2, a lower bound of e^{-1/2} (odd degree).
        assert_eq!(taylor(&rat(-1, 2), 1), rat(1, 2));
    }

    #[test]
    fn ln_ceiling_is_certified() {
        assert_eq!(ln_ceiling(&int(1)), Some(0));
        assert_eq!(ln_ceiling(&int(2)), Some(1));
        assert_eq!(ln_ceiling(&int(8)), Some(3)); // e^2 ≈ 7.39 < 8 ≤ e^3
        let n = ln_ceiling(&int(15_000_000)).unwrap();
        assert_eq!(n, 17); // e^16 ≈ 8.9e6, e^17 ≈ 2.4e7
        assert!(exp_lower(&int(n as i64)) >= int(15_000_000));
        // Just above and below e^5 = 148.413…: 148 needs 5, 149 needs 6.
        assert_eq!(ln_ceiling(&int(148)), Some(5));
        assert_eq!(ln_ceiling(&int(149)), Some(6));
        assert_eq!(ln_ceiling(&rat(1, 3)), Some(0));
    }

    #[test]
    fn ln_ceiling_agrees_with_the_taylor_search_it_replaced() {
        // The old definition: the smallest n with T_{2n+10}(n) ≥ t.
        let old = |t: &Rat| (0u32..).find(|&n| exp_lower(&int(n as i64)) >= *t).unwrap();
        for t in [
            int(3),
            int(20),
            int(1000),
            rat(15, 1) / rat(1, 1_000_000),
            rat(7, 3),
        ] {
            assert_eq!(ln_ceiling(&t), Some(old(&t)), "t = {t}");
        }
    }

    #[test]
    fn ln_ceiling_is_fast_for_tiny_epsilon_and_bounded_beyond_the_limit() {
        // ε = 10^{-300}: ln(15·10^300) = 693.5…, so n = 694, certified.
        let t = int(15) * Rat::from_integer(BigInt::from(10).pow(300u32));
        let n = ln_ceiling(&t).unwrap();
        assert_eq!(n, 694);
        assert!(e_pow_lower(n) >= t && e_pow_lower(n - 1) < t);
        // Past the limit: refused, not computed.
        let huge = Rat::from_integer(BigInt::one() << (2 * MAX_LN_CEILING as usize));
        assert_eq!(ln_ceiling(&huge), None);
    }
}
