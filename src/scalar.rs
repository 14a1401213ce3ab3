//! The number types the forward pass runs on.
//!
//! The model is built once in exact rationals ([`Rat`]); evaluation is generic
//! over [`Scalar`], so the same weights run exactly (BigRational) or in f64.
//! Attention scores are stored in units of ln 2, so a softmax weight is
//! 2^score / Σ 2^score: exact whenever scores are integers.

mod fast;
mod single;

pub use fast::FastRat;

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};
use std::fmt::Debug;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// Exact rational numbers, the arithmetic the construction is written in.
pub type Rat = BigRational;

/// Build the rational `n / d`.
pub fn rat(n: i64, d: i64) -> Rat {
    Rat::new(BigInt::from(n), BigInt::from(d))
}

/// Build the integer `n` as a rational.
pub fn int(n: i64) -> Rat {
    Rat::from_integer(BigInt::from(n))
}

/// Why a forward pass could not be computed in a given arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArithError {
    /// Exact mode computes 2^score only for integer scores.
    #[error("attention score {0} is not an integer (in units of ln 2), so 2^score is not rational")]
    NonIntegerScore(String),
    /// The score is too large to raise 2 to it.
    #[error("attention score {0} is out of range")]
    ScoreOutOfRange(String),
    /// e^score of a nonzero rational is irrational: exact mode cannot
    /// compute a natural-exp softmax (rigorous intervals can).
    #[error(
        "attention score {0} uses natural exp, whose value is irrational: exact arithmetic needs interval bounds"
    )]
    IrrationalExp(String),
}

/// A number the forward pass can run on.
pub trait Scalar:
    Clone
    + Send
    + Sync
    + Debug
    + PartialOrd
    + Zero
    + One
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// Name of the arithmetic, as reports print it.
    const NAME: &'static str;
    /// Convert an exact weight into this arithmetic.
    fn from_rat(r: &Rat) -> Self;
    /// 2^self, the unnormalised attention weight of a score in units of ln 2.
    fn exp2(&self) -> Result<Self, ArithError>;
    /// e^self, the unnormalised attention weight of a natural-unit score.
    /// Exact arithmetics have it only at 0 (e^0 = 1).
    fn exp(&self) -> Result<Self, ArithError> {
        if self.is_zero() {
            Ok(Self::one())
        } else {
            Err(ArithError::IrrationalExp(self.show()))
        }
    }
    /// A rendering for reports: exact fractions stay exact.
    fn show(&self) -> String;
    /// A rendering that loses nothing: the exact fraction, or the shortest
    /// decimal that reads back as the same f64. JSON margins use it.
    fn text(&self) -> String {
        self.show()
    }
    /// Σ a·b over the pairs: the inner products of the forward pass.
    fn sum_of_products<'a>(terms: impl Iterator<Item = (&'a Self, &'a Self)>) -> Self
    where
        Self: 'a,
    {
        terms.fold(Self::zero(), |acc, (a, b)| acc + a.clone() * b.clone())
    }
    /// self > 0.
    fn is_positive(&self) -> bool {
        *self > Self::zero()
    }
    /// ReLU.
    fn relu(&self) -> Self {
        if self.is_positive() {
            self.clone()
        } else {
            Self::zero()
        }
    }
}

impl Scalar for Rat {
    const NAME: &'static str = "exact";

    fn from_rat(r: &Rat) -> Self {
        r.clone()
    }

    fn exp2(&self) -> Result<Self, ArithError> {
        if !self.is_integer() {
            return Err(ArithError::NonIntegerScore(self.to_string()));
        }
        let n = self
            .to_integer()
            .to_i32()
            .filter(|n| n.abs() <= 1 << 20)
            .ok_or_else(|| ArithError::ScoreOutOfRange(self.to_string()))?;
        let p = BigInt::one() << n.unsigned_abs();
        Ok(if n >= 0 {
            Rat::from_integer(p)
        } else {
            Rat::new(BigInt::one(), p)
        })
    }

    fn show(&self) -> String {
        self.to_string()
    }

    /// Exact, with one gcd at the end instead of one per term: the sum is
    /// kept as an unreduced fraction (terms that share its denominator add
    /// to the numerator directly), and reduced early only if the
    /// denominator grows past a few hundred bits.
    fn sum_of_products<'a>(terms: impl Iterator<Item = (&'a Rat, &'a Rat)>) -> Rat {
        let mut num = BigInt::zero();
        let mut den = BigInt::one();
        for (a, b) in terms {
            let n = a.numer() * b.numer();
            let d = a.denom() * b.denom();
            if d == den {
                num += n;
            } else {
                num = num * &d + n * &den;
                den *= d;
                if den.bits() > 512 {
                    let r = Rat::new(num, den);
                    num = r.numer().clone();
                    den = r.denom().clone();
                }
            }
        }
        Rat::new(num, den)
    }
}

impl Scalar for f64 {
    const NAME: &'static str = "f64";

    fn from_rat(r: &Rat) -> Self {
        r.to_f64().unwrap_or(if r.is_negative() {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        })
    }

    fn exp2(&self) -> Result<Self, ArithError> {
        Ok(f64::exp2(*self))
    }

    fn exp(&self) -> Result<Self, ArithError> {
        Ok(f64::exp(*self))
    }

    fn show(&self) -> String {
        format!("{self:.6}")
    }

    fn text(&self) -> String {
        // Display is the shortest round-trip decimal but never uses an
        // exponent; switch to one for very small or large magnitudes.
        let a = self.abs();
        if a == 0.0 || (1e-4..1e15).contains(&a) || !a.is_finite() {
            format!("{self}")
        } else {
            format!("{self:e}")
        }
    }
}

/// Parse a decimal, scientific or fractional number into an exact rational:
/// "1e-6", "0.001", "3/4", "2". No float is involved.
pub fn parse_rational(text: &str) -> Option<Rat> {
    let t = text.trim();
    if let Some((n, d)) = t.split_once('/') {
        let n: BigInt = n.trim().parse().ok()?;
        let d: BigInt = d.trim().parse().ok()?;
        return (!d.is_zero()).then(|| Rat::new(n, d));
    }
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(at) => (&t[..at], t[at + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole
        .chars()
        .chain(frac.chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let digits: BigInt = format!("{whole}{frac}").parse().ok()?;
    let scale = exponent - frac.len() as i32;
    if scale.unsigned_abs() > 10_000 {
        return None;
    }
    let ten = BigInt::from(10).pow(scale.unsigned_abs());
    let value = if scale >= 0 {
        Rat::from_integer(digits * ten)
    } else {
        Rat::new(digits, ten)
    };
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_is_exact_for_integer_scores() {
        assert_eq!(int(5).exp2().unwrap(), int(32));
        assert_eq!(int(-3).exp2().unwrap(), rat(1, 8));
        assert_eq!(int(0).exp2().unwrap(), int(1));
        assert!(matches!(
            rat(1, 2).exp2(),
            Err(ArithError::NonIntegerScore(_))
        ));
        assert_eq!(Scalar::exp2(&3.0f64).unwrap(), 8.0);
    }

    #[test]
    fn parses_numbers_exactly() {
        assert_eq!(parse_rational("1e-6"), Some(rat(1, 1_000_000)));
        assert_eq!(parse_rational("0.25"), Some(rat(1, 4)));
        assert_eq!(parse_rational("3/4"), Some(rat(3, 4)));
        assert_eq!(parse_rational("-2.5E1"), Some(int(-25)));
        assert_eq!(parse_rational(".5"), Some(rat(1, 2)));
        assert_eq!(parse_rational("1/0"), None);
        assert_eq!(parse_rational("abc"), None);
        assert_eq!(parse_rational(""), None);
        assert_eq!(parse_rational("1e"), None);
    }

    #[test]
    fn relu_clips_negatives() {
        assert_eq!(rat(-1, 3).relu(), int(0));
        assert_eq!(rat(1, 3).relu(), rat(1, 3));
    }
}
