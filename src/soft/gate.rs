//! Rigorous bounds on the soft gate's mass off the top expert.
//!
//! At temperature T the gate is g = softmax(G(x)/T). With e* the top-1
//! expert and gap_e = G_{e*} − G_e ≥ 0, the mass off e* is
//! 1 − g_{e*} = s/(1 + s), s = Σ_{e≠e*} e^{−gap_e/T}. It is nondecreasing in
//! T (each term is), which is what makes a certificate at T* hold at every
//! T ≤ T* (docs/soft-routing.md). In exact arithmetic s is bounded by the
//! Taylor bounds of [`crate::expbound`]; in f64 it is the float value, and
//! nothing decided from it is a proof.

use crate::expbound;
use crate::interval::Iv;
use crate::scalar::{FastRat, Rat};
use crate::verify::ClaimArith;
use num_traits::ToPrimitive;

/// An arithmetic the soft gate can be bounded in.
pub trait GateArith: ClaimArith {
    /// An upper bound on e^{−x} for x ≥ 0 (f64: the float value).
    fn exp_neg_upper(x: &Self) -> Self;
    /// A lower bound on e^{−x} for x ≥ 0 (f64: the float value).
    fn exp_neg_lower(x: &Self) -> Self;
    /// An upper bound on e^{x} for any x (f64: the float value).
    /// None where no bound is representable (the caller then decides
    /// nothing from it).
    fn exp_upper(x: &Self) -> Option<Self>;
    /// A lower bound on e^{x} for any x (f64: the float value).
    fn exp_lower(x: &Self) -> Self;
    /// The nearest f64, for plots and reading (never for a decision).
    fn approx(&self) -> f64;
    /// A rigorous interval holding the value (f64: the value itself).
    fn enclose(&self) -> Iv;
    /// A number ≥ self (self ≥ 0) with a short exact form: the Taylor sums
    /// behind η̂ have hundreds of digits, and every logit bound multiplies
    /// by η̂. Identity in f64.
    fn round_up(&self) -> Self;
    /// A number with a short dyadic form (60 significant bits) at or above
    /// self (`up`) or at or below it, any sign. Identity in f64.
    fn round_dir(&self, up: bool) -> Self;
}

/// Significant bits kept by [`GateArith::round_up`]: a relative loosening
/// of at most 2^-60.
const BITS: u64 = 60;

/// The nearest m/2^k at or above x (`up`) or at or below it, k chosen from
/// x's size so that |m| has about BITS bits.
fn round_rat(x: &Rat, up: bool) -> Rat {
    use num_bigint::BigInt;
    use num_traits::Zero;
    if x.is_zero() {
        return x.clone();
    }
    let (n, d) = (x.numer().bits() as i64, x.denom().bits() as i64);
    // |x| ≈ 2^(n − d); scale so that the integer part has about BITS bits.
    let k = BITS as i64 - (n - d);
    let pow = |e: i64| Rat::from_integer(BigInt::from(1) << (e as usize));
    let scaled = if k >= 0 { x * pow(k) } else { x / pow(-k) };
    let m = if up { scaled.ceil() } else { scaled.floor() };
    if k >= 0 { m / pow(k) } else { m * pow(-k) }
}

/// The smallest m/2^k ≥ x.
fn round_up_rat(x: &Rat) -> Rat {
    round_rat(x, true)
}

/// The exact arithmetics bound e^{−x} by `exp_neg_upper_sup`, which is
/// nonincreasing in x: then the gate bound η̂ grows with T and shrinks as a
/// gap grows, as the true gate mass does.
impl GateArith for Rat {
    fn exp_neg_upper(x: &Rat) -> Rat {
        expbound::exp_neg_upper_sup(x)
    }
    fn exp_neg_lower(x: &Rat) -> Rat {
        expbound::exp_neg_lower(x)
    }
    fn exp_upper(x: &Rat) -> Option<Rat> {
        expbound::exp_upper(x)
    }
    fn exp_lower(x: &Rat) -> Rat {
        expbound::exp_lower(x)
    }
    fn approx(&self) -> f64 {
        self.to_f64().unwrap_or(f64::NAN)
    }
    fn round_up(&self) -> Rat {
        round_up_rat(self)
    }
    fn enclose(&self) -> Iv {
        Iv::enclose(self)
    }
    fn round_dir(&self, up: bool) -> Rat {
        round_rat(self, up)
    }
}

impl GateArith for FastRat {
    fn exp_neg_upper(x: &FastRat) -> FastRat {
        FastRat::from_big(expbound::exp_neg_upper_sup(&x.to_rat()))
    }
    fn exp_neg_lower(x: &FastRat) -> FastRat {
        FastRat::from_big(expbound::exp_neg_lower(&x.to_rat()))
    }
    fn exp_upper(x: &FastRat) -> Option<FastRat> {
        expbound::exp_upper(&x.to_rat()).map(FastRat::from_big)
    }
    fn exp_lower(x: &FastRat) -> FastRat {
        FastRat::from_big(expbound::exp_lower(&x.to_rat()))
    }
    fn approx(&self) -> f64 {
        self.to_rat().to_f64().unwrap_or(f64::NAN)
    }
    fn round_up(&self) -> FastRat {
        FastRat::from_big(round_up_rat(&self.to_rat()))
    }
    /// One outward-rounded division when numerator and denominator are
    /// exact doubles (|n|, d ≤ 2^53), the usual case; else via Rat.
    fn enclose(&self) -> Iv {
        const EXACT: i64 = 1 << 53;
        if let FastRat::Small(q) = self {
            let (n, d) = (*q.numer(), *q.denom());
            if n.abs() <= EXACT && d <= EXACT {
                return Iv::point(n as f64) / Iv::point(d as f64);
            }
        }
        Iv::enclose(&self.to_rat())
    }
    fn round_dir(&self, up: bool) -> FastRat {
        FastRat::from_big(round_rat(&self.to_rat(), up))
    }
}

impl GateArith for f64 {
    fn exp_neg_upper(x: &f64) -> f64 {
        (-x).exp()
    }
    fn exp_neg_lower(x: &f64) -> f64 {
        (-x).exp()
    }
    fn exp_upper(x: &f64) -> Option<f64> {
        Some(x.exp())
    }
    fn exp_lower(x: &f64) -> f64 {
        x.exp()
    }
    fn approx(&self) -> f64 {
        *self
    }
    fn round_up(&self) -> f64 {
        *self
    }
    fn enclose(&self) -> Iv {
        Iv::point(*self)
    }
    fn round_dir(&self, _up: bool) -> f64 {
        *self
    }
}

/// A value for people: exact when short, else "≈" and 5 significant digits.
pub fn brief<S: GateArith>(x: &S) -> String {
    let exact = x.text();
    if exact.len() <= 24 {
        exact
    } else {
        format!("≈ {:.5e}", x.approx())
    }
}

/// Above this argument e^{−x} is bounded by e^{−CAP} (above) and 0 (below):
/// both rigorous, and they keep 2^{−⌊1.44x⌋} from growing numbers of
/// hundreds of thousands of bits when a far expert's gap meets a small T.
const CAP: i64 = 128;

/// The bound e^{−CAP} ≤ this, rounded up, computed once per arithmetic
/// (a far expert meets it on almost every prefix).
fn cap_upper<S: GateArith>() -> S {
    static CAPPED: std::sync::OnceLock<Rat> = std::sync::OnceLock::new();
    let exact =
        CAPPED.get_or_init(|| round_up_rat(&expbound::exp_neg_upper_sup(&crate::scalar::int(CAP))));
    if S::CERTIFIED {
        S::from_rat(exact)
    } else {
        S::exp_neg_upper(&S::from_rat(&crate::scalar::int(CAP)))
    }
}

/// The gate's e^{−CAP} charge, enclosed (for [`super::image`]).
pub fn cap_enclosure() -> Iv {
    static CAPPED: std::sync::OnceLock<Iv> = std::sync::OnceLock::new();
    *CAPPED.get_or_init(|| {
        Iv::enclose(&round_up_rat(&expbound::exp_neg_upper_sup(
            &crate::scalar::int(CAP),
        )))
    })
}

/// e^{−x} bounded above, rounded up to a short exact form.
fn capped_upper<S: GateArith>(x: S) -> S {
    let cap = S::from_rat(&crate::scalar::int(CAP));
    if x > cap {
        cap_upper()
    } else {
        S::exp_neg_upper(&x).round_up()
    }
}

fn capped_lower<S: GateArith>(x: S) -> S {
    if x > S::from_rat(&crate::scalar::int(CAP)) {
        S::zero()
    } else {
        S::exp_neg_lower(&x)
    }
}

/// s/(1 + s): the gate mass off the top expert given s = Σ e^{−gap/T}.
fn off_top<S: GateArith>(s: S) -> S {
    s.clone() / (S::one() + s)
}

/// An upper bound on 1 − g_{e*} at temperature `t` > 0, from the gaps
/// G_{e*} − G_e (e ≠ e*). Monotone in s, so an upper bound on s gives one
/// on s/(1 + s).
pub fn off_top_upper<S: GateArith>(gaps: &[S], t: &S) -> S {
    if gaps.is_empty() {
        return S::zero();
    }
    let s = gaps
        .iter()
        .map(|g| capped_upper(g.clone() / t.clone()))
        .fold(S::zero(), |a, b| a + b);
    off_top(s).round_up()
}

/// A lower bound on 1 − g_{e*} at temperature `t` > 0.
pub fn off_top_lower<S: GateArith>(gaps: &[S], t: &S) -> S {
    if gaps.is_empty() {
        return S::zero();
    }
    let s = gaps
        .iter()
        .map(|g| capped_lower(g.clone() / t.clone()))
        .fold(S::zero(), |a, b| a + b);
    off_top(s)
}

/// Δ/T above 2 + ⌈log2 c⌉, so Δ > T·ln c without any exp: the cheap first
/// test of [`at_most_t_ln`].
pub fn far_above_t_ln<S: GateArith>(delta: &S, t: &S, c: &S) -> bool {
    let x = delta.clone() / t.clone();
    // ln c ≤ 0.7·log2 c < 2 + ⌈log2 c⌉ − 2: the float log2 only sets a
    // threshold with a slack of 2 (far beyond its rounding), and above it
    // Δ/T > ln c without any exp.
    x > S::from_rat(&crate::scalar::int(
        2 + c.approx().log2().max(0.0).ceil() as i64,
    ))
}

/// Whether Δ ≤ T·ln(c) is decided, and how: `Some(true)` proved, `Some(false)`
/// refuted, `None` too close to call with the exp bounds. Δ ≤ T ln c ⇔
/// e^{Δ/T} ≤ c.
pub fn at_most_t_ln<S: GateArith>(delta: &S, t: &S, c: &S) -> Option<bool> {
    if far_above_t_ln(delta, t, c) {
        return Some(false);
    }
    let x = delta.clone() / t.clone();
    if S::exp_upper(&x).is_some_and(|u| u <= *c) {
        Some(true)
    } else if S::exp_lower(&x) > *c {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::{int, rat};

    #[test]
    fn off_top_bounds_bracket_the_softmax() {
        // Scores (3, 2, 0) at T = 1/2: gaps 1 and 3 from the top, so
        // s = e^{-2} + e^{-6} and 1 − g_top = s/(1+s).
        let gaps = [int(1), int(3)];
        let t = rat(1, 2);
        let s = (-2f64).exp() + (-6f64).exp();
        let truth = s / (1.0 + s);
        let hi = off_top_upper(&gaps, &t).to_f64().unwrap();
        let lo = off_top_lower(&gaps, &t).to_f64().unwrap();
        assert!(lo <= truth && truth <= hi, "{lo} {truth} {hi}");
        assert!(hi - lo < 1e-2 * truth);
        // The (K − 1)·e^{−Δ/T} bound of the seed paper is looser.
        assert!(hi < 2.0 * (-2f64).exp());
    }

    #[test]
    fn rounding_up_stays_above_and_close() {
        let x = rat(1, 3) * rat(1, 7_000_000_000_000_000_000);
        let r = round_up_rat(&x);
        assert!(r >= x && r.clone() - x.clone() < x.clone() * rat(1, 1 << 58));
        assert!(r.denom().bits() < 200);
        assert_eq!(round_up_rat(&int(5)), int(5));
    }

    #[test]
    fn a_tie_leaves_half_the_gate_at_every_temperature() {
        for t in [rat(1, 1000), int(1), int(1000)] {
            assert!(off_top_lower(&[int(0)], &t) >= rat(1, 2));
        }
    }

    #[test]
    fn off_top_grows_with_temperature() {
        let gaps = [rat(1, 6), int(2)];
        let mut last = <Rat as num_traits::Zero>::zero();
        for k in 1..20 {
            let u = off_top_upper(&gaps, &rat(k, 40));
            assert!(u > last);
            last = u;
        }
    }

    #[test]
    fn decides_delta_against_t_ln_c() {
        // ln 99 = 4.595…: Δ = 4 at T = 1 is below it, Δ = 5 above.
        assert_eq!(at_most_t_ln(&int(4), &int(1), &int(99)), Some(true));
        assert_eq!(at_most_t_ln(&int(5), &int(1), &int(99)), Some(false));
    }
}
