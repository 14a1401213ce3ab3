//! The number types the forward pass runs on.
//!
//! The model is built once in exact rationals ([`Rat`]); evaluation is generic
//! over [`Scalar`], so the same weights run exactly (BigRational) or in f64.
//! Attention scores are stored in units of ln 2, so a softmax weight is
//! 2^score / Σ 2^score: exact whenever scores are integers.

mod fast;
pub(crate) mod gcd;
mod pow2;
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
    /// Whether every operation is exact (no rounding), so that sums may be
    /// regrouped without changing their value: the forward pass then sums
    /// a run of neurons' writes from precomputed prefix sums (see
    /// [`crate::eval::Evaluator`]). Rounding arithmetics keep the
    /// neuron-by-neuron order.
    const EXACT: bool = false;
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
    /// A head's output Σ_l w_l·v_l under attention in units of ln 2,
    /// w_l = 2^{s_l} / Σ_m 2^{s_m}, from each position's score and value
    /// entries; the weights themselves only when `weights` (traces for
    /// `inspect` and tests: routing, P and A read the output alone).
    /// The default is the definition ([`softmax_mix`]); an exact arithmetic
    /// may sum over the one denominator instead ([`FastRat`]: one integer
    /// sum per output coordinate).
    fn softmax2_mix(
        scores: &[Self],
        values: &[&[(usize, Self)]],
        weights: bool,
    ) -> Result<Mix<Self>, ArithError> {
        softmax_mix(scores, values, weights, Self::exp2)
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

/// A head's output as (coordinate, value) entries (a coordinate may
/// repeat: the caller sums them) and, when asked, its attention weights
/// over positions (else empty).
#[derive(Debug, Clone)]
pub struct Mix<S> {
    pub entries: Vec<(usize, S)>,
    pub weights: Vec<S>,
}

/// The softmax mix by its definition: shift the scores by their maximum
/// (2^score stays at most 1, and e^score cannot overflow), weights
/// `power(s − max) / Σ power`, then Σ_l w_l·v_l term by term.
pub fn softmax_mix<S: Scalar>(
    scores: &[S],
    values: &[&[(usize, S)]],
    weights: bool,
    power: impl Fn(&S) -> Result<S, ArithError>,
) -> Result<Mix<S>, ArithError> {
    let max = scores
        .iter()
        .cloned()
        .reduce(|a, b| if b > a { b } else { a })
        .unwrap_or_else(S::zero);
    let powers = scores
        .iter()
        .map(|s| power(&(s.clone() - max.clone())))
        .collect::<Result<Vec<S>, _>>()?;
    let total = powers.iter().cloned().fold(S::zero(), |a, b| a + b);
    let w: Vec<S> = powers.into_iter().map(|p| p / total.clone()).collect();
    let entries = w
        .iter()
        .zip(values)
        .flat_map(|(w, v)| v.iter().map(move |(c, x)| (*c, w.clone() * x.clone())))
        .collect();
    Ok(Mix {
        entries,
        weights: if weights { w } else { Vec::new() },
    })
}

impl Scalar for Rat {
    const NAME: &'static str = "exact";
    const EXACT: bool = true;

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
        lazy_sum(
            Rat::zero(),
            terms.map(|(a, b)| (a.numer() * b.numer(), a.denom() * b.denom())),
        )
    }
}

/// `start` + Σ n/d over the terms, exact, with one gcd at the end instead
/// of one per term: the sum is kept as an unreduced fraction (terms whose
/// denominator divides its own add to the numerator directly), and reduced
/// early only if the denominator grows past a few hundred bits. Head 1's
/// weights at i positions have denominators dividing 2^i − 1: once the
/// sum's denominator is that, every further term is one division, not a
/// gcd of i-bit numbers.
pub(crate) fn lazy_sum(start: Rat, terms: impl Iterator<Item = (BigInt, BigInt)>) -> Rat {
    use num_integer::Integer;
    let (mut num, mut den) = start.into_raw();
    for (n, d) in terms {
        if d == den {
            num += n;
            continue;
        }
        let (q, r) = if d.bits() <= den.bits() {
            den.div_rem(&d)
        } else {
            (BigInt::zero(), BigInt::one())
        };
        if r.is_zero() {
            num += n * q;
        } else {
            num = num * &d + n * &den;
            den *= d;
            if den.bits() > 512 {
                let r = gcd::reduced(num, den);
                (num, den) = r.into_raw();
            }
        }
    }
    gcd::reduced(num, den)
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
    if scale.unsigned_abs() > MAX_DECIMAL_SCALE {
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

/// The most decimal digits of scale [`parse_rational`] accepts (|exponent
/// minus fraction digits|): 10^10000 is a 33,220-bit number, and every
/// margin built from such an ε stays far below the bounds' bit limits.
pub const MAX_DECIMAL_SCALE: u32 = 10_000;

/// The longest template the f64 evaluator serves for the dense model.
/// Head 1's positional weights are 2^j / Σ_{l ≤ i} 2^l: at position i the
/// first ones are about 2^{-i}, and the dense gates subtract terms of that
/// size from logits of order β_syn, so once 2^{-L}·β_syn falls below the
/// 53-bit mantissa's resolution f64 reports false failures (issue 15
/// measured `--arith both` disagreements: none at 35 positions, 8 at 40,
/// 176 at 45; the limit keeps a margin below that). Below this
/// length the f64 run is reliable; above it, `--arith f64` on the dense
/// model is refused and `--arith both` (exact decides) is the way.
pub const F64_DENSE_MAX_LEN: usize = 32;

/// Why a `--epsilon` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpsilonError {
    #[error("--epsilon {0}: expected a number strictly between 0 and 1 (e.g. 1e-6 or 1/1000)")]
    OutOfRange(String),
    #[error(
        "--epsilon {0}: the exponent is beyond what the exact arithmetic serves (|exponent| at most {MAX_DECIMAL_SCALE}, i.e. ε ≥ 1e-{MAX_DECIMAL_SCALE})"
    )]
    ExponentLimit(String),
    #[error(
        "--epsilon {0}: ε is below the smallest the exact arithmetic serves, 1e-{MAX_DECIMAL_SCALE} (the margins grow with ln 1/ε)"
    )]
    TooSmall(String),
}

/// Parse the target ε of claim P: a number strictly between 0 and 1, and
/// not below 10^{-[`MAX_DECIMAL_SCALE`]}, the limit that keeps every margin
/// and exp bound representable. Each refusal names its reason.
pub fn parse_epsilon(text: &str) -> Result<Rat, EpsilonError> {
    let t = text.trim();
    // An exponent of digits that is past the limit (however many digits:
    // it need not fit a machine integer to be recognised).
    let exponent_too_large = t.find(['e', 'E']).is_some_and(|at| {
        let e = t[at + 1..].trim_start_matches(['+', '-']);
        let frac = t[..at].split_once('.').map_or(0, |(_, f)| f.len() as u64);
        !e.is_empty()
            && e.chars().all(|c| c.is_ascii_digit())
            && (e.trim_start_matches('0').len() > 12
                || e.parse::<u64>()
                    .is_ok_and(|v| v.abs_diff(frac) > MAX_DECIMAL_SCALE as u64))
    });
    let Some(value) = parse_rational(t) else {
        return Err(if exponent_too_large {
            EpsilonError::ExponentLimit(text.to_string())
        } else {
            EpsilonError::OutOfRange(text.to_string())
        });
    };
    if value <= Rat::zero() || value >= Rat::one() {
        return Err(EpsilonError::OutOfRange(text.to_string()));
    }
    let smallest = Rat::new(BigInt::one(), BigInt::from(10).pow(MAX_DECIMAL_SCALE));
    if value < smallest {
        return Err(EpsilonError::TooSmall(text.to_string()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_limits_are_named() {
        assert_eq!(
            parse_epsilon("1e-300"),
            Ok(Rat::new(BigInt::one(), BigInt::from(10).pow(300u32)))
        );
        assert_eq!(
            parse_epsilon("1e-10000").map(|e| e.denom().bits()),
            Ok(33_220)
        );
        assert!(matches!(
            parse_epsilon("1e-999999999"),
            Err(EpsilonError::ExponentLimit(_))
        ));
        assert!(
            parse_epsilon("1e-999999999")
                .unwrap_err()
                .to_string()
                .contains("1e-10000")
        );
        assert!(matches!(
            parse_epsilon("1e-10001"),
            Err(EpsilonError::ExponentLimit(_))
        ));
        assert!(matches!(
            parse_epsilon("1/1"),
            Err(EpsilonError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_epsilon("0"),
            Err(EpsilonError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_epsilon("abc"),
            Err(EpsilonError::OutOfRange(_))
        ));
        // A fraction can go below the limit without any exponent.
        let tiny = format!("1/1{}", "0".repeat(10_001));
        assert!(matches!(
            parse_epsilon(&tiny),
            Err(EpsilonError::TooSmall(_))
        ));
    }

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
