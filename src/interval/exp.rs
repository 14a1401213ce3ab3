//! Rigorous bounds on e^x in interval arithmetic, with no libm call.
//!
//! e^x = (e^{x/2^s})^{2^s}: halve |x| (exactly, a power of two) until
//! y ≤ 1/2, sum the Taylor series of e^y to [`TERMS`] terms by Horner on
//! enclosed coefficients 1/k! in outward-rounded intervals, add the
//! remainder bound, square back s times, and take the reciprocal for x < 0.
//! Each squaring doubles the relative width, so for |x| ≤ 1000 (s ≤ 11) the
//! bound is within about 1e-11 of e^x relatively: far below any margin a
//! construction has, and the reason an attention score off the ln 2 grid is
//! decided, not undecided.

use super::bound::Iv;
use num_traits::{One, Zero};
use std::sync::OnceLock;

/// Taylor terms of e^y for |y| ≤ 1/2.
pub const TERMS: u32 = 18;

/// Σ_{k>TERMS} y^k/k! ≤ y^{19}/19! · e^{1/2} < 2.6e-23 for 0 ≤ y ≤ 1/2;
/// 2^-70 ≈ 8.5e-22 is above it.
const REMAINDER: f64 = 8.470329472543003e-22;

/// ln 2 between two adjacent doubles (0x3FE62E42FEFA39EF is just below it;
/// the test checks both against rational Taylor bounds).
pub const LN2: Iv = Iv::from_bits(0x3FE6_2E42_FEFA_39EF, 0x3FE6_2E42_FEFA_39F0);

/// 1/k! for k = 0..=TERMS, each enclosed by outward-rounded division
/// (computed once).
fn coefficients() -> &'static [Iv; TERMS as usize + 1] {
    static C: OnceLock<[Iv; TERMS as usize + 1]> = OnceLock::new();
    C.get_or_init(|| {
        let mut c = [Iv::one(); TERMS as usize + 1];
        for k in 1..=TERMS as usize {
            c[k] = c[k - 1] / Iv::point(k as f64);
        }
        c
    })
}

/// e^y for a dyadic 0 ≤ y ≤ 1/2: Horner on the enclosed coefficients
/// (every quantity nonnegative, so each product takes two rounded
/// products), plus the remainder above.
fn exp_small(y: f64) -> Iv {
    let c = coefficients();
    let y = Iv::point(y);
    let mut p = c[TERMS as usize];
    for k in (0..TERMS as usize).rev() {
        p = p * y + c[k];
    }
    p + Iv::new(0.0, REMAINDER)
}

/// e^x for one dyadic x, as an interval.
pub(crate) fn exp_point(x: f64) -> Iv {
    if x == 0.0 {
        return Iv::one();
    }
    if x > 709.0 {
        // Beyond f64: unbounded above, and at least e^709.
        return Iv::new(exp_point(709.0).lo(), f64::INFINITY);
    }
    if x < -745.0 {
        // Below the smallest subnormal: (0, e^-745].
        return Iv::new(0.0, exp_point(-745.0).hi());
    }
    if x < -704.0 {
        // e^|x| would overflow: e^x = (e^{x/2})².
        let h = exp_point(x * 0.5);
        return Iv::new((h * h).lo().max(0.0), (h * h).hi());
    }
    let mut y = x.abs();
    let mut halvings = 0;
    while y > 0.5 {
        y *= 0.5; // exact: y > 1/2 is far from subnormal
        halvings += 1;
    }
    let mut r = exp_small(y);
    for _ in 0..halvings {
        r = r * r;
    }
    if x < 0.0 {
        // e^x = 1 / e^|x|.
        r = Iv::one() / r;
    }
    // e^x > 0 always.
    Iv::new(r.lo().max(0.0), r.hi())
}

/// 2^n for an integer n, exactly when it is a double; below the smallest
/// subnormal `below` (0 for a lower bound, 2^-1074 for an upper one), above
/// the largest double ∞.
fn pow2(n: f64, below: f64) -> f64 {
    if n > 1023.0 {
        f64::INFINITY
    } else if n >= -1022.0 {
        f64::from_bits(((n as i64 + 1023) as u64) << 52)
    } else if n >= -1074.0 {
        f64::from_bits(1u64 << (n as i64 + 1074) as u64)
    } else {
        below
    }
}

/// e^x within a factor 2 either side, from powers of two: e^t = 2^{t/ln 2}
/// with t/ln 2 bounded through the enclosure of ln 2 and rounded to an
/// integer outward. A few operations, no series: for terms far too small
/// to matter to a decision, where [`exp`] would be wasted work.
pub fn exp_coarse(x: &Iv) -> Iv {
    let log2 = |t: f64| {
        let t = Iv::point(t);
        if t.lo() >= 0.0 {
            Iv::new(
                (t / Iv::point(LN2.hi())).lo(),
                (t / Iv::point(LN2.lo())).hi(),
            )
        } else {
            Iv::new(
                (t / Iv::point(LN2.lo())).lo(),
                (t / Iv::point(LN2.hi())).hi(),
            )
        }
    };
    let lo = if x.lo() == f64::NEG_INFINITY {
        0.0
    } else {
        pow2(log2(x.lo()).lo().floor(), 0.0)
    };
    let hi = if x.hi() == f64::INFINITY {
        f64::INFINITY
    } else {
        pow2(log2(x.hi()).hi().ceil(), f64::from_bits(1))
    };
    Iv::new(lo, hi)
}

/// e^x for every x in the interval: exp is increasing, so the bounds at the
/// endpoints.
pub fn exp(x: &Iv) -> Iv {
    if x.is_zero() {
        return Iv::one();
    }
    if x.lo() == f64::NEG_INFINITY && x.hi() == f64::INFINITY {
        return Iv::new(0.0, f64::INFINITY);
    }
    let lo = if x.lo() == f64::NEG_INFINITY {
        0.0
    } else {
        exp_point(x.lo()).lo()
    };
    let hi = if x.hi() == f64::INFINITY {
        f64::INFINITY
    } else {
        exp_point(x.hi()).hi()
    };
    Iv::new(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expbound;
    use crate::scalar::{Rat, int};

    #[test]
    fn brackets_the_rational_taylor_bounds() {
        // expbound's bounds are rigorous rationals; ours must bracket e^x
        // too, so each of our lower bounds sits below their upper bound and
        // each of our upper bounds above their lower bound.
        for x in [
            -700.0, -40.5, -3.25, -1.0, -0.001, 0.125, 1.0, 2.5, 20.0, 300.0,
        ] {
            let iv = exp(&Iv::point(x));
            let r = Rat::from_float(x).unwrap();
            let lo = iv.lo_rat().unwrap();
            let hi = iv.hi_rat().unwrap();
            assert!(
                lo <= expbound::exp_upper(&r).unwrap(),
                "{x}: lower too high"
            );
            assert!(hi >= expbound::exp_lower(&r), "{x}: upper too low");
            // Tight: relative width below 1e-11 (about 2^-36) up to |x| = 700.
            assert!(iv.width() <= iv.lo() * 1e-11, "{x}: {iv:?}");
        }
    }

    #[test]
    fn ln2_is_enclosed() {
        let lo = Rat::from_float(LN2.lo()).unwrap();
        let hi = Rat::from_float(LN2.hi()).unwrap();
        // e^lo < 2 < e^hi, certified by rational Taylor bounds (the 1/64
        // grid of expbound is too coarse here, so sum the series directly:
        // T_n(x) ≤ e^x ≤ T_n(x) + 2·x^{n+1}/(n+1)! for 0 < x < 1).
        let n = 30;
        let tail = |x: &Rat| {
            let mut t = int(2);
            for j in 1..=(n + 1) {
                t = t * x / int(j as i64);
            }
            t
        };
        assert!(expbound::taylor(&lo, n) + tail(&lo) < int(2));
        assert!(expbound::taylor(&hi, n) > int(2));
        assert_eq!(LN2.hi(), LN2.lo().next_up());
    }

    #[test]
    fn coarse_bounds_bracket_within_a_factor_two() {
        for x in [
            -800.0, -745.5, -700.25, -40.5, -1.0, -1e-9, 0.0, 0.3, 2.5, 300.0,
        ] {
            let fine = exp(&Iv::point(x));
            let coarse = exp_coarse(&Iv::point(x));
            // Both hold e^x, so they overlap; where the series is
            // accurate the coarse bound contains it (below the subnormals
            // either may be the tighter).
            assert!(coarse.lo() <= fine.hi() && fine.lo() <= coarse.hi(), "{x}");
            if x > -700.0 {
                assert!(coarse.lo() <= fine.lo() && coarse.hi() >= fine.hi(), "{x}");
                assert!(
                    coarse.hi() <= 2.0 * fine.hi() && coarse.lo() >= 0.5 * fine.lo() * 0.999_999,
                    "{x}: {coarse:?}"
                );
            }
        }
        assert_eq!(exp_coarse(&Iv::point(-2000.0)).lo(), 0.0);
        assert!(exp_coarse(&Iv::point(-2000.0)).hi() > 0.0);
        assert_eq!(exp_coarse(&Iv::point(2000.0)).hi(), f64::INFINITY);
    }

    #[test]
    fn intervals_and_extremes() {
        let e = exp(&Iv::new(-1.0, 1.0));
        let e1 = std::f64::consts::E;
        assert!(e.lo() <= 1.0 / e1 && e.lo() > 1.0 / e1 - 1e-12);
        assert!(e.hi() >= e1 && e.hi() < e1 + 1e-12);
        assert_eq!(exp(&Iv::point(800.0)).hi(), f64::INFINITY);
        let tiny = exp(&Iv::point(-1e6));
        assert!(tiny.lo() == 0.0 && tiny.hi() > 0.0 && tiny.hi() < 1e-300);
        assert!(exp(&Iv::zero()).is_point());
    }
}
