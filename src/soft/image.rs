//! The interval image of one prefix: what the exact soft check would
//! decide, enclosed in outward-rounded f64 intervals ([`Iv`]), so that the
//! T* search runs the exact check only where an enclosure straddles a
//! threshold (η for R, ε for P, 0 for A).
//!
//! The intervals enclose the *exact certificate's own numbers*, not only
//! the true values: the gate bound η̂ of [`super::gate::off_top_upper`] and
//! the P(invalid) bound of [`crate::verify::probability`] round their exp
//! arguments to a 1/64 grid, floor far terms at powers of two and truncate
//! Taylor series; each of these is mirrored here (the grid and the powers
//! of two exactly, the truncations by a relative slack far above their
//! size). So a decision read from the image is the decision the exact
//! check makes, and T* is the same rational; where the image cannot tell,
//! the caller checks exactly.

use crate::interval::Iv;
use crate::interval::exp::exp;
use num_traits::{One, Zero};
use std::sync::OnceLock;

/// The exp bounds' grid (`expbound::GRID`).
const GRID: f64 = 64.0;
/// Grid steps at `expbound::TAIL` = 32, where e^{−x} bounds become powers
/// of two.
const TAIL_STEPS: f64 = 32.0 * GRID;
/// `probability::LOWER_CUTOFF`: valid logits further below the best count 0.
const LOWER_CUTOFF: f64 = 40.0;
/// `gate::CAP`: gate exponents above it are charged e^{−128}.
const CAP: f64 = 128.0;
/// 1/T_n(x) ≤ e^{−x}·(1 + 1.1·10⁻⁷) for n = 2⌈x⌉ + 10, x < 32 (the
/// largest tail, near x = 7); ten times that.
const TAYLOR_UP: f64 = 1.0 + 1e-6;
/// exp_neg_lower ≥ e^{−x}·(1 − 4·10⁻⁷) for x ≤ 40 (degree-11 series on
/// x/2^h ≤ 1, squared h ≤ 6 times); 25 times that.
const SERIES_DOWN: f64 = 1.0 - 1e-5;
/// 1/(1 − 10⁻⁵) < 1 + 2·10⁻⁵.
const SERIES_INV_UP: f64 = 1.0 + 2e-5;
/// `round_up` keeps 60 significant bits: a relative rise below 2^−59.
const ROUND_UP: f64 = 1.0 + 1.0 / (1u64 << 56) as f64;

/// e^{−k/64} for k = 0..=2624 (and e^{k/64} for k = 0..=256): every grid
/// point the exact bounds evaluate below the powers of two and the cutoff.
fn grid_neg() -> &'static [Iv] {
    static T: OnceLock<Vec<Iv>> = OnceLock::new();
    T.get_or_init(|| {
        (0..=((LOWER_CUTOFF + 1.0) * GRID) as i64)
            .map(|k| exp(&Iv::point(-(k as f64) / GRID)))
            .collect()
    })
}

fn grid_pos() -> &'static [Iv] {
    static T: OnceLock<Vec<Iv>> = OnceLock::new();
    T.get_or_init(|| {
        (0..=(4.0 * GRID) as i64)
            .map(|k| exp(&Iv::point(k as f64 / GRID)))
            .collect()
    })
}

/// 2^{−n} rounded down (0 below the subnormals) or up.
fn pow2_neg(n: f64, up: bool) -> f64 {
    if n > 1074.0 {
        if up { f64::from_bits(1) } else { 0.0 }
    } else {
        2f64.powi(-(n as i32))
    }
}

/// a·f rounded up (a, f ≥ 0).
fn times_up(a: f64, f: f64) -> f64 {
    (Iv::point(a) * Iv::point(f)).hi()
}

fn times_down(a: f64, f: f64) -> f64 {
    (Iv::point(a) * Iv::point(f)).lo()
}

/// ⌊9k/400⌋ = ⌊36·(k/64)/25⌋, the power-of-two exponent of
/// `exp_neg_upper` at grid point k ≥ 2048 (exact in integers).
fn tail_bits(k: f64) -> f64 {
    if k >= 1e15 {
        return f64::INFINITY;
    }
    ((k as i64 * 9).div_euclid(400)) as f64
}

/// Encloses `expbound::exp_neg_upper(x)` for every x in `x` (x ≥ 0): the
/// argument is rounded down to k/64, below 32 the value is 1/T_n(k/64)
/// (within `TAYLOR_UP` above e^{−k/64}), from 32 on 2^{−⌊9k/400⌋}. The
/// function jumps up at 32, so both pieces are bounded where k straddles.
fn exp_neg_upper_image(x: Iv) -> Iv {
    let xl = x.lo().max(0.0);
    if x.hi() == f64::INFINITY {
        return Iv::new(0.0, 1.0);
    }
    let (kl, kh) = ((xl * GRID).floor(), (x.hi() * GRID).floor());
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    if kl < TAIL_STEPS {
        hi = hi.max(times_up(grid_neg()[kl as usize].hi(), TAYLOR_UP));
        lo = lo.min(grid_neg()[kh.min(TAIL_STEPS - 1.0) as usize].lo());
    }
    if kh >= TAIL_STEPS {
        hi = hi.max(pow2_neg(tail_bits(kl.max(TAIL_STEPS)), true));
        lo = lo.min(pow2_neg(tail_bits(kh), false));
    }
    Iv::new(lo, hi)
}

/// Encloses `expbound::exp_neg_lower(x)` as `probability` uses it: 0 above
/// 40, else the argument rounded up to the grid and a lower series bound.
fn exp_neg_lower_image(x: Iv) -> Iv {
    let xl = x.lo().max(0.0);
    if xl > LOWER_CUTOFF {
        return Iv::zero();
    }
    let (kl, kh) = ((xl * GRID).ceil(), (x.hi() * GRID).ceil());
    let hi = grid_neg()[kl as usize].hi();
    let lo = if x.hi() > LOWER_CUTOFF {
        0.0
    } else if kh == 0.0 {
        1.0
    } else {
        times_down(grid_neg()[kh as usize].lo(), SERIES_DOWN)
    };
    Iv::new(lo, hi)
}

/// Encloses `expbound::exp_upper(y)` (what an invalid token is charged):
/// e^{−x} bounded above for y ≤ 0, 1/exp_neg_lower(y) up to 4; beyond, only
/// a lower end (the true e^y, below every upper bound), and +∞ above.
fn exp_upper_image(y: Iv) -> Iv {
    if y.hi() <= 0.0 {
        return exp_neg_upper_image(-y);
    }
    let lo = exp(&Iv::point(y.lo())).lo();
    if y.lo() > 0.0 && y.hi() <= 4.0 {
        let k = (y.hi() * GRID).ceil();
        return Iv::new(lo, times_up(grid_pos()[k as usize].hi(), SERIES_INV_UP));
    }
    Iv::new(lo, f64::INFINITY)
}

/// One gate term, `capped_upper(x)` of [`super::gate`]: e^{−CAP} (rounded
/// up, enclosed in `cap`) above 128, else `exp_neg_upper_sup` rounded up —
/// at least 2^{−46} = exp_neg_upper(32) below 32.
fn gate_term(x: Iv, cap: Iv) -> Iv {
    if x.lo() > CAP {
        return cap;
    }
    let e = exp_neg_upper_image(x);
    let floor = pow2_neg(46.0, false);
    let mut hi = e.hi();
    if x.lo() < 32.0 {
        hi = hi.max(floor);
    }
    if x.hi() > CAP {
        hi = hi.max(cap.hi());
    }
    let lo = if x.hi() > CAP {
        0.0
    } else if x.hi() < 32.0 {
        e.lo().max(floor)
    } else {
        e.lo()
    };
    Iv::new(lo, times_up(hi, ROUND_UP))
}

/// s/(1 + s), nondecreasing: bounded at the ends of s.
fn off_top(s: Iv) -> Iv {
    let at = |v: f64| {
        let p = Iv::point(v);
        p / (Iv::one() + p)
    };
    Iv::new(at(s.lo()).lo(), at(s.hi()).hi())
}

/// What the interval image decides of one claim: `Some(holds)` or `None`
/// (the exact check must decide).
pub type Decided = Option<bool>;

/// The image's verdict on one prefix at an enclosure of η̂.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub routing: Decided,
    pub probability: Decided,
    pub retrieval: Decided,
    /// Encloses the exact P(invalid) bound.
    pub invalid_bound: Iv,
    /// Encloses the worst-case retrieval margin (None: no invalid token).
    pub retrieval_margin: Option<Iv>,
}

impl Decision {
    /// Some(true) when R, P and A all hold, Some(false) when one fails.
    pub fn all(&self) -> Decided {
        let claims = [self.routing, self.probability, self.retrieval];
        if claims.contains(&Some(false)) {
            Some(false)
        } else if claims.iter().all(|c| *c == Some(true)) {
            Some(true)
        } else {
            None
        }
    }
}

/// What the search keeps of a prefix beside its gaps: the router gaps, the
/// hard logits and the worst-case shifts, all enclosed.
#[derive(Debug, Clone)]
pub struct Image {
    gaps: Vec<Iv>,
    /// (z_t, min(0, min_e d_{e,t})) for the valid tokens with a nonzero
    /// logit somewhere.
    valid: Vec<(Iv, Iv)>,
    /// (z_t, max(0, max_e d_{e,t})) for the invalid ones.
    invalid: Vec<(Iv, Iv)>,
    /// Valid and invalid tokens with logit 0 under every expert.
    zero_valid: usize,
    zero_invalid: usize,
    routed: bool,
}

impl Image {
    pub fn new(
        gaps: Vec<Iv>,
        valid: Vec<(Iv, Iv)>,
        invalid: Vec<(Iv, Iv)>,
        zero_valid: usize,
        zero_invalid: usize,
        routed: bool,
    ) -> Image {
        Image {
            gaps,
            valid,
            invalid,
            zero_valid,
            zero_invalid,
            routed,
        }
    }

    /// Heap bytes the image holds: its interval lists (what a prefix keeps
    /// once its exact logits are dropped, so what the search's memory is).
    pub fn held_bytes(&self) -> usize {
        use std::mem::size_of;
        self.gaps.capacity() * size_of::<Iv>()
            + (self.valid.capacity() + self.invalid.capacity()) * size_of::<(Iv, Iv)>()
    }

    /// Encloses η̂(T) = `off_top_upper(gaps, T)` for T > 0 enclosed in `t`
    /// (`cap`: the enclosed e^{−128} charge).
    pub fn gate_bound(&self, t: Iv, cap: Iv) -> Iv {
        if self.gaps.is_empty() {
            return Iv::zero();
        }
        let s = self
            .gaps
            .iter()
            .map(|g| gate_term(*g / t, cap))
            .fold(Iv::zero(), |a, b| a + b);
        let o = off_top(s);
        Iv::new(o.lo(), times_up(o.hi(), ROUND_UP))
    }

    /// R, P and A as the exact check at an η̂ in `eta_hat` would decide
    /// them, where the enclosures tell (`eta`, `epsilon`: the enclosed
    /// thresholds).
    pub fn decide(&self, eta_hat: Iv, eta: Iv, epsilon: Iv) -> Decision {
        let routing = if !self.routed || eta_hat.lo() > eta.hi() {
            Some(false)
        } else if eta_hat.hi() <= eta.lo() {
            Some(true)
        } else {
            None
        };
        let valid: Vec<Iv> = self
            .valid
            .iter()
            .map(|(z, d)| *z + eta_hat * *d)
            .chain((self.zero_valid > 0).then(Iv::zero))
            .collect();
        let invalid: Vec<Iv> = self
            .invalid
            .iter()
            .map(|(z, d)| *z + eta_hat * *d)
            .chain((self.zero_invalid > 0).then(Iv::zero))
            .collect();
        let undecided = Decision {
            routing,
            probability: None,
            retrieval: None,
            invalid_bound: Iv::new(0.0, 1.0),
            retrieval_margin: None,
        };
        if valid.is_empty() {
            return undecided;
        }
        // The best valid logit, and which token holds it if one surely does.
        let (b, _) = valid
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(bi, bl), (i, v)| {
                if v.lo() > bl { (i, v.lo()) } else { (bi, bl) }
            });
        let sure = valid
            .iter()
            .enumerate()
            .all(|(i, v)| i == b || v.hi() <= valid[b].lo());
        let best = if sure {
            valid[b]
        } else {
            let hi = valid
                .iter()
                .map(|v| v.hi())
                .fold(f64::NEG_INFINITY, f64::max);
            Iv::new(valid[b].lo(), hi)
        };
        let retrieval_margin = invalid
            .iter()
            .copied()
            .reduce(|a, c| Iv::new(a.lo().max(c.lo()), a.hi().max(c.hi())))
            .map(|w| best - w);
        let retrieval = match retrieval_margin {
            None => Some(true),
            Some(m) if m.lo() > 0.0 => Some(true),
            Some(m) if m.hi() <= 0.0 => Some(false),
            Some(_) => None,
        };
        // P(invalid) ≤ U/(U + L), U over the invalid tokens, L the valid.
        let count = |i: usize, n: usize, zeros: usize| if i == n { zeros } else { 1 } as f64;
        let mut upper = Iv::zero();
        for (i, z) in invalid.iter().enumerate() {
            let term = exp_upper_image(*z - best);
            upper = upper + term * Iv::point(count(i, self.invalid.len(), self.zero_invalid));
        }
        let mut lower = Iv::zero();
        for (i, z) in valid.iter().enumerate() {
            let term = if sure && i == b {
                Iv::one()
            } else {
                exp_neg_lower_image(best - *z)
            };
            lower = lower + term * Iv::point(count(i, self.valid.len(), self.zero_valid));
        }
        let invalid_bound = if invalid.is_empty() {
            Iv::zero()
        } else if upper.hi() == f64::INFINITY {
            Iv::new(
                (Iv::point(upper.lo()) / (Iv::point(upper.lo()) + Iv::point(lower.hi()))).lo(),
                1.0,
            )
        } else {
            let at = |u: f64, l: f64| Iv::point(u) / (Iv::point(u) + Iv::point(l));
            Iv::new(
                at(upper.lo(), lower.hi()).lo(),
                at(upper.hi(), lower.lo()).hi(),
            )
        };
        let probability = if invalid_bound.hi() < epsilon.lo() {
            Some(true)
        } else if invalid_bound.lo() >= epsilon.hi() {
            Some(false)
        } else {
            None
        };
        Decision {
            routing,
            probability,
            retrieval,
            invalid_bound,
            retrieval_margin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expbound;
    use crate::scalar::{Rat, rat};

    fn holds(iv: Iv, r: &Rat) -> bool {
        iv.lo_rat().unwrap() <= *r && iv.hi_rat().is_none_or(|h| *r <= h)
    }

    #[test]
    fn the_exp_images_enclose_the_exact_bounds() {
        for (n, d) in [
            (0, 1),
            (1, 7),
            (3, 1),
            (193, 64),
            (57071, 281),
            (31, 1),
            (2047, 64),
            (32, 1),
            (40, 1),
            (4001, 100),
            (700, 3),
            (5000, 1),
        ] {
            let x = rat(n, d);
            let iv = Iv::enclose(&x);
            assert!(
                holds(exp_neg_upper_image(iv), &expbound::exp_neg_upper(&x)),
                "{x}"
            );
            if x <= Rat::from_integer(40.into()) {
                assert!(
                    holds(exp_neg_lower_image(iv), &expbound::exp_neg_lower(&x)),
                    "{x}"
                );
            }
            assert!(holds(
                exp_upper_image(-iv),
                &expbound::exp_upper(&-x.clone()).unwrap()
            ));
            if x <= Rat::from_integer(4.into()) && n > 0 {
                assert!(
                    holds(exp_upper_image(iv), &expbound::exp_upper(&x).unwrap()),
                    "{x}"
                );
            }
        }
    }
}
