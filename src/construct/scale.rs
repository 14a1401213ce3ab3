//! An exact post-pass on a built router that changes no decision: centre
//! each input column (and the bias) across experts at its median, then rescale the whole
//! router to the primitive integer router of that direction, or its
//! smallest integer multiple whose every margin is ≥ 1 (`times`).
//!
//! Top-1 routing compares the experts' scores g_e(x) = w_e·x + b_e on each
//! input x. Subtracting the same number c_d from every expert's weight on
//! input d (and the same c from every bias) subtracts c_d·x_d + c from every
//! score alike: every score difference, hence every choice and every margin,
//! is exactly unchanged. Multiplying every weight and bias by one positive
//! number q multiplies every margin by q and changes no choice. Neither step
//! reads an input, so this module needs no forward pass; the caller (export)
//! measures the margins and re-runs the decisions on the result.
//!
//! What this cannot do: the *relative* margin (margin / largest weight),
//! which is what a float format's rounding must resolve, is invariant under
//! rescaling; centring only removes the part every expert shares. See
//! docs/export.md for what that means at paper scale.

use crate::model::{LinearMap, Router};
use crate::scalar::Rat;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};

/// What [`reduce`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduced {
    /// The largest |weight or bias| before and after.
    pub max_before: Rat,
    pub max_after: Rat,
    /// The positive factor the centred router was multiplied by to make
    /// every entry an integer with no common divisor.
    pub factor: Rat,
}

/// The largest |entry| of the router's weights and biases.
pub fn max_abs(r: &Router<Rat>) -> Rat {
    entries(r).fold(Rat::zero(), |m, v| if v.abs() > m { v.abs() } else { m })
}

fn entries(r: &Router<Rat>) -> impl Iterator<Item = &Rat> {
    r.inputs
        .iter()
        .flat_map(|&d| r.weights.column(d).entries().iter().map(|(_, v)| v))
        .chain(r.bias.iter())
}

/// The centre of a column across all experts (absent experts weigh 0):
/// its lower median. A float score's rounding error grows with Σ_e |w_e|,
/// which the median minimises; a column that most experts leave at 0 keeps
/// centre 0 (and its sparsity); and the median is an entry, so centring
/// keeps an integer router integral.
fn centre(values: &[Rat]) -> Rat {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .cloned()
        .unwrap_or_else(Rat::zero)
}

/// The router with every input column and the bias centred across experts,
/// then scaled to the primitive integer vector of its direction (integer
/// entries whose gcd is 1). Every decision and every margin ratio is as
/// before; margins are multiplied by `factor`.
pub fn reduce(r: &Router<Rat>) -> (Router<Rat>, Reduced) {
    let experts = r.bias.len();
    let max_before = max_abs(r);
    if experts < 2 {
        let out = r.clone();
        let reduced = Reduced {
            max_before: max_before.clone(),
            max_after: max_before,
            factor: Rat::one(),
        };
        return (out, reduced);
    }
    let mut weights = LinearMap::zero(r.weights.in_dim, r.weights.out_dim);
    for &d in &r.inputs {
        let column: Vec<Rat> = (0..experts).map(|e| r.weights.get(e, d)).collect();
        let c = centre(&column);
        for (e, v) in column.into_iter().enumerate() {
            weights.add(e, d, v - c.clone());
        }
    }
    let c = centre(&r.bias);
    let bias: Vec<Rat> = r.bias.iter().map(|b| b - c.clone()).collect();
    let mut out = Router {
        inputs: r.inputs.clone(),
        weights,
        bias,
        synthesis: r.synthesis.clone(),
    };
    let factor = primitive_factor(&out);
    if !factor.is_one() {
        out = times(&out, &factor);
    }
    let reduced = Reduced {
        max_before,
        max_after: max_abs(&out),
        factor,
    };
    (out, reduced)
}

/// q > 0 such that q·(every entry) are integers with gcd 1 (1 for a zero
/// router).
fn primitive_factor(r: &Router<Rat>) -> Rat {
    let lcm = entries(r).fold(BigInt::one(), |l, v| l.lcm(v.denom()));
    let gcd = entries(r).fold(BigInt::zero(), |g, v| {
        g.gcd(&(v.numer() * (&lcm / v.denom())))
    });
    if gcd.is_zero() {
        return Rat::one();
    }
    Rat::new(lcm, gcd)
}

/// Every weight and bias times q (q > 0): each margin times q, no choice
/// changed.
pub fn times(r: &Router<Rat>, q: &Rat) -> Router<Rat> {
    assert!(q.is_positive(), "a router is rescaled by a positive factor");
    let mut weights = LinearMap::zero(r.weights.in_dim, r.weights.out_dim);
    for &d in &r.inputs {
        for (e, v) in r.weights.column(d).entries() {
            weights.add(*e, d, v * q);
        }
    }
    Router {
        inputs: r.inputs.clone(),
        weights,
        bias: r.bias.iter().map(|b| b * q).collect(),
        synthesis: r.synthesis.clone(),
    }
}

/// The least integer k ≥ 1 with k·margin ≥ 1.
pub fn lift(margin: &Rat) -> BigInt {
    if !margin.is_positive() || *margin >= Rat::one() {
        return BigInt::one();
    }
    margin.recip().ceil().to_integer()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SparseVec, Synthesis};
    use crate::scalar::int;

    fn router(rows: &[&[i64]], bias: &[i64]) -> Router<Rat> {
        let dim = rows[0].len();
        let mut w = LinearMap::zero(dim, rows.len());
        for (e, row) in rows.iter().enumerate() {
            for (d, v) in row.iter().enumerate() {
                w.add(e, d, int(*v));
            }
        }
        Router {
            inputs: (0..dim).collect(),
            weights: w,
            bias: bias.iter().map(|b| int(*b)).collect(),
            synthesis: Synthesis::given(true, String::new()),
        }
    }

    fn scores(r: &Router<Rat>, x: &[Rat]) -> Vec<Rat> {
        let v = SparseVec::from_entries(x.iter().cloned().enumerate());
        r.weights
            .apply_dense(&v)
            .into_iter()
            .zip(&r.bias)
            .map(|(s, b)| s + b)
            .collect()
    }

    #[test]
    fn centring_and_reducing_keep_every_score_difference_up_to_the_factor() {
        // Columns share a big common part (1000, 2000).
        let r = router(
            &[&[1003, 2006, 9], &[1006, 2000, 3], &[1000, 2003, 0]],
            &[30, 36, 33],
        );
        let (s, info) = reduce(&r);
        assert_eq!(info.max_before, int(2006));
        // Medians: column 0 {1003,1006,1000} → 1003: {0,3,−3}; column 1
        // {2006,2000,2003} → 2003: {3,−3,0}; column 2 {9,3,0} → 3: {6,0,−3};
        // bias {30,36,33} → 33: {−3,3,0}. gcd 3, so the factor is 1/3.
        assert_eq!(info.factor, Rat::new(1.into(), 3.into()));
        assert_eq!(info.max_after, int(2));
        assert_eq!(s.weights.get(0, 2), int(2));
        assert_eq!(s.weights.get(1, 0), int(1));
        assert_eq!(s.bias, vec![int(-1), int(1), int(0)]);
        let inputs = [
            vec![Rat::new(1.into(), 3.into()), int(1), int(2)],
            vec![int(0), Rat::new(5.into(), 7.into()), int(-1)],
        ];
        for x in &inputs {
            let (a, b) = (scores(&r, x), scores(&s, x));
            for (ae, be) in a.iter().zip(&b).skip(1) {
                assert_eq!(ae - &a[0], (be - &b[0]) / &info.factor);
            }
        }
    }

    #[test]
    fn the_primitive_router_divides_out_common_factors_and_denominators() {
        let r = router(&[&[6, 0], &[0, 12]], &[0, 6]);
        let r = times(&r, &Rat::new(1.into(), 5.into()));
        let (s, info) = reduce(&r);
        // Lower medians of two entries are the smaller one: every column's
        // centre is 0 here. Entries 6/5, 12/5, 6/5: ×5/6 → 1, 2, 1.
        assert_eq!(info.factor, Rat::new(5.into(), 6.into()));
        assert_eq!(s.weights.get(0, 0), int(1));
        assert_eq!(s.weights.get(0, 1), int(0));
        assert_eq!(s.weights.get(1, 1), int(2));
        assert_eq!(s.bias, vec![int(0), int(1)]);
        let big = router(&[&[7, 1], &[5, 0], &[9, 2]], &[0, 0, 0]);
        let (s, _) = reduce(&big);
        // Column 0 {7,5,9} → 7: {0,−2,2}; column 1 {1,0,2} → 1: {0,−1,1};
        // gcd 1.
        assert_eq!(s.weights.get(1, 0), int(-2));
        assert_eq!(s.weights.get(2, 1), int(1));
    }

    #[test]
    fn lift_is_the_least_multiplier_reaching_margin_one() {
        assert_eq!(lift(&Rat::new(1.into(), 11.into())), BigInt::from(11));
        assert_eq!(lift(&Rat::new(2.into(), 7.into())), BigInt::from(4));
        assert_eq!(lift(&int(3)), BigInt::from(1));
        assert_eq!(lift(&int(0)), BigInt::from(1));
    }
}
