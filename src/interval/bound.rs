//! Rigorous intervals with dyadic endpoints of bounded precision.
//!
//! An endpoint is an f64 *value*, used as the dyadic rational m·2^e it
//! denotes (53-bit mantissa): comparing two endpoints compares two
//! rationals exactly, so decisions read no rounded number. Every operation
//! rounds outward: IEEE 754 rounds +, −, ·, / correctly, and the rounding
//! error is recovered exactly (TwoSum for sums, an FMA for products and
//! quotients), so an endpoint moves one ulp outward only when the result
//! was inexact. The true real number always lies in [lo, hi]. No libm
//! function is used; e^x is in [`super::exp`], and `Iv` as a
//! [`Scalar`] in [`super::arith`].

use crate::scalar::Rat;
use num_traits::{One, ToPrimitive, Zero};
use std::cmp::Ordering;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// Below this magnitude a product or quotient may be subnormal, where the
/// FMA residual is no longer exact: round outward both ways.
const TINY: f64 = 1e-290;

/// A closed interval [lo, hi] of reals, lo ≤ hi; possibly unbounded
/// (±∞ endpoints) after an overflow, never NaN.
#[derive(Clone, Copy, Debug)]
pub struct Iv {
    lo: f64,
    hi: f64,
}

/// The whole real line: what an operation returns when it cannot bound.
const ALL: Iv = Iv {
    lo: f64::NEG_INFINITY,
    hi: f64::INFINITY,
};

impl Iv {
    /// The interval [lo, hi]; a NaN endpoint or lo > hi gives the whole line.
    pub fn new(lo: f64, hi: f64) -> Iv {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            ALL
        } else {
            Iv { lo, hi }
        }
    }

    /// [lo, hi] from the bit patterns of two doubles, for constants.
    pub const fn from_bits(lo: u64, hi: u64) -> Iv {
        Iv {
            lo: f64::from_bits(lo),
            hi: f64::from_bits(hi),
        }
    }

    /// The exact dyadic x (finite).
    pub fn point(x: f64) -> Iv {
        Iv::new(x, x)
    }

    pub fn lo(&self) -> f64 {
        self.lo
    }

    pub fn hi(&self) -> f64 {
        self.hi
    }

    /// hi − lo, rounded up: how undecided this number is.
    pub fn width(&self) -> f64 {
        up(self.hi - self.lo, sub_err(self.hi, self.lo))
    }

    /// Whether this is one exact number.
    pub fn is_point(&self) -> bool {
        self.lo == self.hi
    }

    /// The smallest interval holding both.
    pub fn hull(&self, other: &Iv) -> Iv {
        Iv::new(self.lo.min(other.lo), self.hi.max(other.hi))
    }

    /// ReLU, endpoint by endpoint (it is monotone).
    pub fn relu_iv(&self) -> Iv {
        Iv::new(self.lo.max(0.0), self.hi.max(0.0))
    }

    /// Enclose a rational: the nearest f64, stepped outward until the
    /// inequalities hold exactly (so the result does not rely on how
    /// `to_f64` rounds). Dyadic weights read from a float file are points.
    pub fn enclose(r: &Rat) -> Iv {
        let Some(x) = r.to_f64().filter(|x| x.is_finite()) else {
            return if r > &Rat::zero() {
                Iv::new(f64::MAX, f64::INFINITY)
            } else {
                Iv::new(f64::NEG_INFINITY, -f64::MAX)
            };
        };
        let exact = |y: f64| Rat::from_float(y).expect("finite");
        let (mut lo, mut hi) = (x, x);
        while exact(lo) > *r {
            lo = lo.next_down();
        }
        while exact(hi) < *r {
            hi = hi.next_up();
        }
        Iv::new(lo, hi)
    }

    /// The endpoints as exact rationals (∞ has none).
    pub fn lo_rat(&self) -> Option<Rat> {
        Rat::from_float(self.lo)
    }

    pub fn hi_rat(&self) -> Option<Rat> {
        Rat::from_float(self.hi)
    }

    /// Certainly above `other` (every value of self exceeds every value of
    /// other).
    pub fn certainly_gt(&self, other: &Iv) -> bool {
        self.lo > other.hi
    }

    /// Certainly at least `other`.
    pub fn certainly_ge(&self, other: &Iv) -> bool {
        self.lo >= other.hi
    }
}

/// The exact error of a + b (TwoSum): a + b = fl(a + b) + err.
fn add_err(a: f64, b: f64) -> f64 {
    let s = a + b;
    if !s.is_finite() {
        return 0.0;
    }
    let bb = s - a;
    (a - (s - bb)) + (b - bb)
}

fn sub_err(a: f64, b: f64) -> f64 {
    add_err(a, -b)
}

/// The lower bound of a true value that is fl + err.
fn down(fl: f64, err: f64) -> f64 {
    if err < 0.0 { fl.next_down() } else { fl }
}

fn up(fl: f64, err: f64) -> f64 {
    if err > 0.0 { fl.next_up() } else { fl }
}

/// a · b rounded down and up.
fn mul_bounds(a: f64, b: f64) -> (f64, f64) {
    if a == 0.0 || b == 0.0 {
        return (0.0, 0.0);
    }
    let p = a * b;
    if p.is_nan() {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    if p.is_infinite() {
        return if p > 0.0 {
            (f64::MAX, f64::INFINITY)
        } else {
            (f64::NEG_INFINITY, -f64::MAX)
        };
    }
    if p.abs() < TINY {
        return (p.next_down(), p.next_up());
    }
    let err = a.mul_add(b, -p);
    (down(p, err), up(p, err))
}

/// a / b rounded down and up; b ≠ 0 and finite.
fn div_bounds(a: f64, b: f64) -> (f64, f64) {
    if a == 0.0 {
        return (0.0, 0.0);
    }
    let q = a / b;
    if q.is_nan() {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    if q.is_infinite() {
        return if q > 0.0 {
            (f64::MAX, f64::INFINITY)
        } else {
            (f64::NEG_INFINITY, -f64::MAX)
        };
    }
    if q.abs() < TINY || a.is_infinite() || b.is_infinite() {
        return (q.next_down(), q.next_up());
    }
    // a = q·b + r exactly; the true quotient is q + r/b.
    let r = (-q).mul_add(b, a);
    let err = if (r > 0.0) == (b > 0.0) {
        r.abs()
    } else {
        -r.abs()
    };
    let err = if r == 0.0 { 0.0 } else { err };
    (down(q, err), up(q, err))
}

impl Add for Iv {
    type Output = Iv;
    fn add(self, o: Iv) -> Iv {
        let lo = self.lo + o.lo;
        let hi = self.hi + o.hi;
        Iv::new(
            down(lo, add_err(self.lo, o.lo)),
            up(hi, add_err(self.hi, o.hi)),
        )
    }
}

impl Neg for Iv {
    type Output = Iv;
    fn neg(self) -> Iv {
        Iv::new(-self.hi, -self.lo)
    }
}

impl Sub for Iv {
    type Output = Iv;
    fn sub(self, o: Iv) -> Iv {
        self + (-o)
    }
}

impl Mul for Iv {
    type Output = Iv;
    fn mul(self, o: Iv) -> Iv {
        // Sign cases first (the common ones: a point times anything, two
        // nonnegative intervals) take two rounded products, not four.
        if self.is_point() && o.is_point() {
            let (lo, hi) = mul_bounds(self.lo, o.lo);
            return Iv::new(lo, hi);
        }
        if self.is_point() || o.is_point() {
            let (a, x) = if self.is_point() {
                (self.lo, o)
            } else {
                (o.lo, self)
            };
            let (lo, hi) = if a >= 0.0 {
                (mul_bounds(a, x.lo).0, mul_bounds(a, x.hi).1)
            } else {
                (mul_bounds(a, x.hi).0, mul_bounds(a, x.lo).1)
            };
            return Iv::new(lo, hi);
        }
        if self.lo >= 0.0 && o.lo >= 0.0 {
            return Iv::new(mul_bounds(self.lo, o.lo).0, mul_bounds(self.hi, o.hi).1);
        }
        let corners = [
            mul_bounds(self.lo, o.lo),
            mul_bounds(self.lo, o.hi),
            mul_bounds(self.hi, o.lo),
            mul_bounds(self.hi, o.hi),
        ];
        let lo = corners.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
        let hi = corners
            .iter()
            .map(|c| c.1)
            .fold(f64::NEG_INFINITY, f64::max);
        Iv::new(lo, hi)
    }
}

impl Div for Iv {
    type Output = Iv;
    fn div(self, o: Iv) -> Iv {
        if o.lo <= 0.0 && o.hi >= 0.0 {
            return ALL;
        }
        if o.lo.is_infinite()
            || o.hi.is_infinite()
            || self.lo.is_infinite()
            || self.hi.is_infinite()
        {
            // Rare (after an overflow): bound through 1/o.
            let r = Iv::new(div_bounds(1.0, o.hi).0, div_bounds(1.0, o.lo).1);
            return if r.lo.is_finite() && r.hi.is_finite() {
                self * r
            } else {
                ALL
            };
        }
        if self.lo >= 0.0 && o.lo > 0.0 {
            // Both nonnegative: [lo / o.hi, hi / o.lo].
            return Iv::new(div_bounds(self.lo, o.hi).0, div_bounds(self.hi, o.lo).1);
        }
        let corners = [
            div_bounds(self.lo, o.lo),
            div_bounds(self.lo, o.hi),
            div_bounds(self.hi, o.lo),
            div_bounds(self.hi, o.hi),
        ];
        let lo = corners.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
        let hi = corners
            .iter()
            .map(|c| c.1)
            .fold(f64::NEG_INFINITY, f64::max);
        Iv::new(lo, hi)
    }
}

/// Equal means certainly equal: both are the same exact number. Two wide
/// intervals with the same endpoints are not equal (the numbers they hold
/// may differ), so equality, like the order, is partial.
impl PartialEq for Iv {
    fn eq(&self, o: &Iv) -> bool {
        self.is_point() && o.is_point() && self.lo == o.lo
    }
}

/// The certain order: a < b when every value of a is below every value of
/// b; None when the intervals cannot tell.
impl PartialOrd for Iv {
    fn partial_cmp(&self, o: &Iv) -> Option<Ordering> {
        if self.hi < o.lo {
            Some(Ordering::Less)
        } else if self.lo > o.hi {
            Some(Ordering::Greater)
        } else if self == o {
            Some(Ordering::Equal)
        } else {
            None
        }
    }
}

impl Zero for Iv {
    fn zero() -> Iv {
        Iv::point(0.0)
    }
    fn is_zero(&self) -> bool {
        self.lo == 0.0 && self.hi == 0.0
    }
}

impl One for Iv {
    fn one() -> Iv {
        Iv::point(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::{int, rat};

    fn contains(iv: &Iv, r: &Rat) -> bool {
        iv.lo_rat().is_none_or(|lo| lo <= *r) && iv.hi_rat().is_none_or(|hi| hi >= *r)
    }

    #[test]
    fn arithmetic_encloses_the_exact_result() {
        let values = [
            rat(1, 3),
            rat(-2, 7),
            int(5),
            rat(1, 1 << 40),
            rat(-10_000_001, 3),
        ];
        for a in &values {
            for b in &values {
                let (x, y) = (Iv::enclose(a), Iv::enclose(b));
                assert!(contains(&(x + y), &(a + b)), "{a} + {b}");
                assert!(contains(&(x - y), &(a - b)), "{a} - {b}");
                assert!(contains(&(x * y), &(a * b)), "{a} * {b}");
                assert!(contains(&(x / y), &(a / b)), "{a} / {b}");
                // Outward by at most a few ulps: the interval is tight.
                let p = x * y;
                assert!(p.width() <= (a * b).to_f64().unwrap().abs() * 1e-15);
            }
        }
    }

    #[test]
    fn exact_operations_stay_points() {
        let a = Iv::point(0.75);
        let b = Iv::point(-3.0);
        assert!((a + b).is_point() && (a + b).lo() == -2.25);
        assert!((a * b).is_point() && (a * b).lo() == -2.25);
        assert!((b / a).is_point() && (b / a).lo() == -4.0);
        // 1/3 is not dyadic: one ulp wide, around it.
        let third = Iv::point(1.0) / Iv::point(3.0);
        assert_eq!(third.hi(), third.lo().next_up());
        assert!(contains(&third, &rat(1, 3)));
        assert!(Iv::enclose(&rat(3, 8)).is_point());
    }

    #[test]
    fn order_is_certain_or_none() {
        let a = Iv::new(1.0, 2.0);
        let b = Iv::new(2.5, 3.0);
        let c = Iv::new(1.5, 2.7);
        assert!(a < b);
        assert_eq!(b.partial_cmp(&a), Some(Ordering::Greater));
        assert_eq!(a.partial_cmp(&c), None);
        assert!(a != a, "a wide interval is not certainly equal to itself");
        assert!(Iv::point(2.0) == Iv::point(2.0));
        assert_eq!(Iv::new(1.0, 0.0).lo(), f64::NEG_INFINITY);
        assert!((Iv::point(1.0) / Iv::new(-1.0, 1.0)).hi().is_infinite());
    }

    #[test]
    fn overflow_gives_unbounded_not_nan() {
        let big = Iv::point(f64::MAX);
        let p = big * big;
        assert_eq!(p.hi(), f64::INFINITY);
        assert_eq!(p.lo(), f64::MAX);
        let q = p * Iv::point(0.0);
        assert!(q.is_zero());
    }
}
