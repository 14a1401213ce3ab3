//! Refinement: a prefix's router scores recomputed at a chosen precision,
//! for the prefixes the 53-bit pass ([`super::forward`]) leaves undecided.
//!
//! Only the attention weights are irrational; everything else is sums and
//! products of the file's dyadic weights. So the refined pass encloses each
//! softmax weight between rationals of `bits` significant bits (e^x from a
//! Taylor series whose tail is bounded, rounded outward) and carries A' in
//! midpoint–radius form with *exact* rational centre and radius: a linear
//! map M sends c ± r to M·c ± |M|·r with no rounding at all. The router
//! scores come back as exact rational intervals whose width is about 2^-bits
//! of the scores' size, where the 53-bit pass is limited to 2^-53 of it.

use crate::model::{LinearMap, Model, ScoreUnit, SparseVec};
use crate::scalar::Rat;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};

/// 2^e as a rational.
fn pow2(e: i64) -> Rat {
    let p = BigInt::one() << e.unsigned_abs();
    if e >= 0 {
        Rat::from_integer(p)
    } else {
        Rat::new(BigInt::one(), p)
    }
}

/// `r` rounded to a dyadic of `bits` significant bits, up or down: exact
/// when `r` already is one.
pub fn round(r: &Rat, bits: u32, up: bool) -> Rat {
    if r.is_zero() {
        return Rat::zero();
    }
    if r.is_negative() {
        return -round(&-r, bits, !up);
    }
    let (n, d) = (r.numer(), r.denom());
    let shift = bits as i64 - (n.bits() as i64 - d.bits() as i64);
    let (num, den) = if shift >= 0 {
        (n << shift as u64, d.clone())
    } else {
        (n.clone(), d << (-shift) as u64)
    };
    let (mut q, rem) = num.div_rem(&den);
    if up && !rem.is_zero() {
        q += 1;
    }
    Rat::from_integer(q) * pow2(-shift)
}

/// Bounds [lo, hi] on e^x for a rational x ≤ 0, each within a relative
/// 2^-bits of it: e^{-y} = 1/(e^{y/2^s})^{2^s} with y/2^s ≤ 1/2, the
/// Taylor sum T_n bracketing e^{y'} within its last term (the tail after
/// term n is below it for y' ≤ 1/2), squared back with outward rounding.
pub fn exp_nonpositive(x: &Rat, bits: u32) -> (Rat, Rat) {
    debug_assert!(!x.is_positive());
    if x.is_zero() {
        return (Rat::one(), Rat::one());
    }
    // e^-3000 < 2^-4328: a bound that needs no squarings of huge numbers.
    if x < &Rat::from_integer((-3000).into()) {
        return (Rat::zero(), pow2(-4328));
    }
    let half = Rat::new(1.into(), 2.into());
    let mut y = -x.clone();
    let mut s = 0u32;
    while y > half {
        y /= Rat::from_integer(2.into());
        s += 1;
    }
    let p = bits + s + 16;
    // Two chains: terms rounded down from y rounded down (a lower bound on
    // T_n(y) ≤ e^y), and rounded up from y rounded up, plus the last term
    // for the tail (Σ_{j>n} y^j/j! ≤ y^n/n! when y ≤ 1/2).
    let tiny = pow2(-(p as i64) - 4);
    let (y_lo, y_hi) = (round(&y, p + 8, false), round(&y, p + 8, true));
    let (mut t_lo, mut t_hi) = (Rat::one(), Rat::one());
    let (mut lo, mut hi) = (Rat::one(), Rat::one());
    let mut k = 0u32;
    while t_hi > tiny {
        k += 1;
        let kk = Rat::from_integer(k.into());
        t_lo = round(&(t_lo * &y_lo / &kk), p + 8, false);
        t_hi = round(&(t_hi * &y_hi / &kk), p + 8, true);
        lo += &t_lo;
        hi += &t_hi;
    }
    hi += &t_hi;
    let mut lo = round(&lo, p, false);
    let mut hi = round(&hi, p, true);
    for _ in 0..s {
        lo = round(&(&lo * &lo), p, false);
        hi = round(&(&hi * &hi), p, true);
    }
    (
        round(&(Rat::one() / hi), p, false),
        round(&(Rat::one() / lo), p, true),
    )
}

/// ln 2 between two rationals 2^-bits apart: Σ_{k≤n} 1/(k·2^k) ≤ ln 2 ≤
/// that + 1/((n+1)·2^n).
fn ln2(bits: u32) -> (Rat, Rat) {
    let n = bits + 2;
    let mut sum = Rat::zero();
    for k in 1..=n {
        sum += Rat::new(1.into(), BigInt::from(k) << k as u64);
    }
    let tail = Rat::new(1.into(), BigInt::from(n + 1) << n as u64);
    (sum.clone(), sum + tail)
}

/// A vector in midpoint–radius form: every value lies in centre ± radius
/// coordinate-wise (radius ≥ 0).
struct MidRad {
    centre: SparseVec<Rat>,
    radius: SparseVec<Rat>,
}

/// The refined pass of one model (the exact rationals of its weights).
pub struct Refiner<'m> {
    model: &'m Model<Rat>,
    /// |W_O| per head and |W_G|: what the radius goes through.
    abs_output: Vec<LinearMap<Rat>>,
    abs_router: LinearMap<Rat>,
}

impl<'m> Refiner<'m> {
    pub fn new(model: &'m Model<Rat>) -> Self {
        Refiner {
            model,
            abs_output: model
                .heads
                .iter()
                .map(|h| h.output.map(&|w: &Rat| w.abs()))
                .collect(),
            abs_router: model.router.weights.map(&|w: &Rat| w.abs()),
        }
    }

    /// The model whose exact weights this pass reads.
    pub fn model(&self) -> &Model<Rat> {
        self.model
    }

    /// Softmax weights of one head's scores, each enclosed in [lo, hi].
    fn softmax(&self, scores: &[Rat], bits: u32) -> Vec<(Rat, Rat)> {
        if scores.len() == 1 {
            return vec![(Rat::one(), Rat::one())];
        }
        let max = scores.iter().max().expect("nonempty").clone();
        let p = bits + 16;
        let ln2 = ln2(p);
        let powers: Vec<(Rat, Rat)> = scores
            .iter()
            .map(|s| {
                let d = s - &max; // ≤ 0
                match self.model.score_unit {
                    ScoreUnit::Natural => exp_nonpositive(&d, p),
                    ScoreUnit::Ln2 if d.is_integer() => {
                        let e = pow2(d.to_integer().try_into().unwrap_or(i64::MIN / 2));
                        (e.clone(), e)
                    }
                    // d·ln 2 with d < 0 lies in [d·ln2_hi, d·ln2_lo].
                    ScoreUnit::Ln2 => (
                        exp_nonpositive(&(&d * &ln2.1), p).0,
                        exp_nonpositive(&(&d * &ln2.0), p).1,
                    ),
                }
            })
            .collect();
        let sum_lo: Rat = powers.iter().map(|w| w.0.clone()).sum();
        let sum_hi: Rat = powers.iter().map(|w| w.1.clone()).sum();
        if powers.iter().all(|(lo, hi)| lo == hi) {
            // Every power exact (integer scores in ln-2 units, or equal
            // scores): the weights are exact rationals, kept unrounded so
            // that a pre-activation that is exactly 0 comes out as 0.
            return powers
                .iter()
                .map(|(w, _)| {
                    let x = w / &sum_lo;
                    (x.clone(), x)
                })
                .collect();
        }
        powers
            .iter()
            .map(|(lo, hi)| {
                // w = p/(p + rest) rises with p and falls with the rest.
                let rest_hi = &sum_hi - hi;
                let rest_lo = &sum_lo - lo;
                let w_lo = if lo.is_zero() {
                    Rat::zero()
                } else {
                    lo / (lo + rest_hi)
                };
                let w_hi = hi / (hi + rest_lo);
                (round(&w_lo, p, false), round(&w_hi, p, true))
            })
            .collect()
    }

    /// A' of `tokens` (ids of the model's vocabulary, 1..=max_len of them)
    /// with softmax weights to `bits` bits.
    fn hidden(&self, tokens: &[usize], bits: u32) -> MidRad {
        let m = self.model;
        let inputs: Vec<SparseVec<Rat>> = tokens
            .iter()
            .enumerate()
            .map(|(j, &t)| m.token_embed[t].add_scaled(&Rat::one(), &m.pos_embed[j]))
            .collect();
        let last = inputs.last().expect("nonempty prefix");
        let mut centre = last.clone();
        let mut radius = SparseVec::default();
        for (h, head) in m.heads.iter().enumerate() {
            let q = head.query.apply(last);
            let scores: Vec<Rat> = inputs.iter().map(|x| q.dot(&head.key.apply(x))).collect();
            let weights = self.softmax(&scores, bits);
            let mut out_c: SparseVec<Rat> = SparseVec::default();
            let mut out_r: SparseVec<Rat> = SparseVec::default();
            for ((lo, hi), x) in weights.iter().zip(&inputs) {
                let v = head.value.apply(x);
                let half = Rat::new(1.into(), 2.into());
                let c = (lo + hi) * &half;
                let r = (hi - lo) * &half;
                out_c = out_c.add_scaled(&c, &v);
                if !r.is_zero() {
                    out_r = out_r.add_scaled(&r, &v.map(|w: &Rat| w.abs()));
                }
            }
            centre = centre.add_scaled(&Rat::one(), &head.output.apply(&out_c));
            radius = radius.add_scaled(&Rat::one(), &self.abs_output[h].apply(&out_r));
        }
        MidRad { centre, radius }
    }

    /// Bounds [lo, hi] (exact rationals) on read·A' + bias on `tokens`,
    /// for each (read, bias), with the softmax weights to `bits` bits: a
    /// neuron's pre-activation, sharper than the 53-bit pass's. Each head
    /// contributes Σ_j w_j·s_j with s_j = read·W_O·v_j; as the weights sum
    /// to 1 exactly, that is s_r + Σ_{j≠r} w_j·(s_j − s_r) for a reference
    /// position r, each term bounded from the enclosure of w_j. So a read
    /// that sees the same value at every position (e.g. a sum over the
    /// coordinates every token writes one of) is exact, and a
    /// pre-activation that is exactly 0 comes out as 0 even when the
    /// attention weights are irrational.
    pub fn pre_activations<'a>(
        &self,
        tokens: &[usize],
        bits: u32,
        neurons: impl IntoIterator<Item = (&'a SparseVec<Rat>, &'a Rat)>,
    ) -> Vec<(Rat, Rat)> {
        let m = self.model;
        let inputs: Vec<SparseVec<Rat>> = tokens
            .iter()
            .enumerate()
            .map(|(j, &t)| m.token_embed[t].add_scaled(&Rat::one(), &m.pos_embed[j]))
            .collect();
        let last = inputs.last().expect("nonempty prefix");
        // Per head: the softmax weights' enclosures and W_O·v_j per position.
        type Head = (Vec<(Rat, Rat)>, Vec<SparseVec<Rat>>);
        let heads: Vec<Head> = m
            .heads
            .iter()
            .map(|head| {
                let q = head.query.apply(last);
                let scores: Vec<Rat> = inputs.iter().map(|x| q.dot(&head.key.apply(x))).collect();
                let outputs = inputs
                    .iter()
                    .map(|x| head.output.apply(&head.value.apply(x)))
                    .collect();
                (self.softmax(&scores, bits), outputs)
            })
            .collect();
        neurons
            .into_iter()
            .map(|(read, bias)| {
                let base = read.dot(last) + bias;
                let (mut lo, mut hi) = (base.clone(), base);
                for (weights, outputs) in &heads {
                    let s: Vec<Rat> = outputs.iter().map(|o| read.dot(o)).collect();
                    let r = s.len() - 1;
                    lo += &s[r];
                    hi += &s[r];
                    for (j, (w_lo, w_hi)) in weights.iter().enumerate().take(r) {
                        let d = &s[j] - &s[r];
                        let (a, b) = (&d * w_lo, &d * w_hi);
                        if a <= b {
                            lo += a;
                            hi += b;
                        } else {
                            lo += b;
                            hi += a;
                        }
                    }
                }
                (lo, hi)
            })
            .collect()
    }

    /// Every expert's router score on `tokens`, enclosed in [lo, hi] exact
    /// rationals, with the softmax weights to `bits` bits.
    pub fn router_scores(&self, tokens: &[usize], bits: u32) -> Vec<(Rat, Rat)> {
        let a = self.hidden(tokens, bits);
        let router = &self.model.router;
        let c = router.weights.apply_dense(&a.centre);
        let r = self.abs_router.apply_dense(&a.radius);
        c.into_iter()
            .zip(r)
            .zip(&router.bias)
            .map(|((c, r), b)| (&c + b - &r, c + b + r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::int;

    #[test]
    fn rounding_is_outward_and_exact_on_dyadics() {
        let third = Rat::new(1.into(), 3.into());
        let lo = round(&third, 64, false);
        let hi = round(&third, 64, true);
        assert!(lo < third && third < hi);
        assert!(&hi - &lo <= pow2(-65));
        let neg = -third.clone();
        assert!(round(&neg, 64, false) < neg && neg < round(&neg, 64, true));
        let d = Rat::new(5.into(), 8.into());
        assert_eq!(round(&d, 10, true), d);
        assert_eq!(round(&d, 10, false), d);
    }

    #[test]
    fn exp_brackets_e_tightly() {
        // e^-1 ∈ [lo, hi], hi − lo ≤ 2^-200 relatively; e^-1 = 1/e with
        // e bracketed by Σ 1/k! (k ≤ 60) and that + 2/61!.
        let (lo, hi) = exp_nonpositive(&int(-1), 200);
        let mut e = Rat::zero();
        let mut f = Rat::one();
        for k in 1..=60 {
            e += &f;
            f /= int(k);
        }
        let e_hi = &e + f * int(2);
        assert!(lo <= Rat::one() / &e && Rat::one() / &e_hi <= hi);
        assert!(lo < hi && (&hi - &lo) / &lo < pow2(-200));
        // A big negative argument (squarings) stays rigorous and tight.
        let (lo, hi) = exp_nonpositive(&int(-553), 128);
        let (lo2, hi2) = exp_nonpositive(&int(-553), 256);
        assert!(lo <= hi2 && lo2 <= hi && lo2 >= lo && hi2 <= hi);
        assert!((&hi - &lo) / &lo < pow2(-128));
        let (l, h) = ln2(100);
        assert!(l < h && &h - &l < pow2(-100));
    }
}
