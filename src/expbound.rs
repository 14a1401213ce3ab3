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

/// An upper bound on e^{y} for any rational y. Above 4 it is a power of
/// two, e^y = 2^{y/ln 2} ≤ 2^{⌈1.443·y⌉} (1/ln 2 = 1.44269… < 1.443): cheap,
/// and only ever used where an invalid token already beats every valid one.
pub fn exp_upper(y: &Rat) -> Rat {
    if y.is_negative() || y.is_zero() {
        exp_neg_upper(&-y.clone())
    } else if *y <= int(4) {
        Rat::one() / exp_neg_lower(y)
    } else {
        let bits = (y * int(1443) / int(1000)).ceil().to_integer();
        let bits: usize = bits.try_into().unwrap_or(1 << 24);
        Rat::from_integer(BigInt::one() << bits.min(1 << 24))
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

/// The smallest integer n ≥ 0 with e^n ≥ t, certified by a Taylor lower bound
/// (so the n returned always satisfies e^n ≥ t, though it may be one more
/// than the true minimum).
pub fn ln_ceiling(t: &Rat) -> u32 {
    let mut n = 0u32;
    while exp_lower(&int(n as i64)) < *t {
        n += 1;
    }
    n
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
            let (lo, hi) = (exp_lower(&y), exp_upper(&y));
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
        assert_eq!(ln_ceiling(&int(1)), 0);
        assert_eq!(ln_ceiling(&int(2)), 1);
        assert_eq!(ln_ceiling(&int(8)), 3); // e^2 ≈ 7.39 < 8 ≤ e^3
        let n = ln_ceiling(&int(15_000_000));
        assert_eq!(n, 17); // e^16 ≈ 8.9e6, e^17 ≈ 2.4e7
        assert!(exp_lower(&int(n as i64)) >= int(15_000_000));
    }
}
