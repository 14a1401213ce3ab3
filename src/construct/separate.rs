//! A syntactic projection s_k that puts every pattern of task k above the
//! lookalikes its gate cannot close, for the dense model.
//!
//! Why: the first syntactic neuron of circuit C(k), the ramp ReLU(s_k − t_0),
//! fires on every prefix of k, so its pre-activation is fixed on the span of
//! k's hidden states and no gate that vanishes there can change it on a
//! lookalike in that span (see [`super::exclusion`]). But s_k itself is ours
//! to choose: any integer weights r_σ on head 1's symbols and c_i on the
//! positions will do, as long as s_k is injective on k's patterns. If s_k is
//! at most t_1 − 2 on every open lookalike (t_1 the least pattern value),
//! then every interpolation neuron ReLU(s_k − t_m), t_m ≥ t_0 = t_1 − 1, is
//! at most −1 there without any gate.
//!
//! Such weights are a linear separation of two finite point sets, found by
//! the exact simplex of [`crate::routability::simplex`]: s(w) − T ≥ 1 on k's
//! patterns, T − s(q) ≥ 1 on the lookalikes. Its solution S is scaled to
//! integers and mixed with the injective random projection ρ as M·S + ρ:
//! for M beyond ρ's spread the separation survives, and M is raised until
//! the sum is injective on k's patterns too (exactly checked).

use super::expert::Projection;
use super::pattern::{Pattern, Symbol};
use super::residual::Residual;
use crate::model::SparseVec;
use crate::routability::simplex::{self, Outcome, Problem};
use crate::scalar::Rat;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};
use std::collections::BTreeMap;

/// Values of M tried after the first before giving up on injectivity.
const TRIES: usize = 64;

/// The residual directions s_k reads: head 1 on each of the projection's
/// symbols, then every position.
fn features(base: &Projection, r: &Residual) -> Vec<usize> {
    base.symbol_weight
        .keys()
        .map(|s| match s {
            Symbol::Word(t) => r.h1[*t],
            Symbol::Entity => r.h1_entity,
        })
        .chain(r.pos.iter().copied())
        .collect()
}

/// Why no projection puts some lookalikes below k's patterns: with λ, μ ≥ 0
/// and Σ λ = Σ μ > 0, Σ λ_q f(q) = Σ μ_w f(w) on head 1 and the positions,
/// so every projection has Σ λ_q s(q) = Σ μ_w s(w): the lookalikes cannot
/// all lie below all the patterns. Indices into the `open` and `own` slices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conflict {
    pub open: Vec<(usize, Rat)>,
    pub own: Vec<(usize, Rat)>,
}

/// A projection injective on `patterns`, at least 2 above its value on every
/// `open` state on every `own` state, or the conflict the simplex's Farkas
/// vector shows (empty if the separation exists but no M in range made the
/// sum injective).
pub fn separate(
    base: &Projection,
    r: &Residual,
    patterns: &[&Pattern],
    own: &[&SparseVec<Rat>],
    open: &[&SparseVec<Rat>],
) -> Result<Projection, Conflict> {
    let dirs = features(base, r);
    let n = dirs.len();
    let row = |x: &SparseVec<Rat>| -> Vec<Rat> { dirs.iter().map(|&d| x.get(d)).collect() };
    // Distinct own rows, each with the first state it came from.
    let mut own_rows: Vec<Vec<Rat>> = Vec::new();
    let mut own_from: Vec<usize> = Vec::new();
    for (i, x) in own.iter().enumerate() {
        let v = row(x);
        if !own_rows.contains(&v) {
            own_rows.push(v);
            own_from.push(i);
        }
    }
    let open_rows: Vec<Vec<Rat>> = open.iter().map(|x| row(x)).collect();
    // Variables: (a⁺, a⁻) per feature, then T⁺, T⁻, then one surplus per
    // row. Own: a·x − T − s = 1; open: −a·x + T − s = 1.
    let m = own_rows.len() + open_rows.len();
    let signed: Vec<(Rat, &Vec<Rat>)> = own_rows
        .iter()
        .map(|x| (Rat::one(), x))
        .chain(open_rows.iter().map(|x| (-Rat::one(), x)))
        .collect();
    let mut columns: Vec<Vec<(usize, Rat)>> = Vec::with_capacity(2 * n + 2 + m);
    for f in 0..n {
        let plus: Vec<(usize, Rat)> = signed
            .iter()
            .enumerate()
            .filter(|(_, (_, x))| !x[f].is_zero())
            .map(|(i, (sg, x))| (i, sg * &x[f]))
            .collect();
        columns.push(plus.iter().map(|(i, v)| (*i, v.clone())).collect());
        columns.push(plus.into_iter().map(|(i, v)| (i, -v)).collect());
    }
    let t_plus: Vec<(usize, Rat)> = signed
        .iter()
        .enumerate()
        .map(|(i, (sg, _))| (i, -sg))
        .collect();
    columns.push(t_plus.iter().map(|(i, v)| (*i, v.clone())).collect());
    columns.push(t_plus.into_iter().map(|(i, v)| (i, -v)).collect());
    columns.extend((0..m).map(|i| vec![(i, -Rat::one())]));
    let problem = Problem {
        rows: m,
        columns,
        rhs: vec![Rat::one(); m],
    };
    let x = match simplex::solve(&problem).0 {
        Outcome::Feasible(x) => x,
        Outcome::Infeasible(y) => {
            // Weights −y ≥ 0 on the surplus columns.
            let weight = |i: usize| -> Option<Rat> { y[i].is_negative().then(|| -y[i].clone()) };
            return Err(Conflict {
                own: (0..own_rows.len())
                    .filter_map(|i| weight(i).map(|w| (own_from[i], w)))
                    .collect(),
                open: (0..open_rows.len())
                    .filter_map(|i| weight(own_rows.len() + i).map(|w| (i, w)))
                    .collect(),
            });
        }
    };
    let a: Vec<Rat> = (0..n).map(|f| &x[2 * f] - &x[2 * f + 1]).collect();
    let value = |w: &[BigInt], x: &[Rat]| -> Rat {
        w.iter()
            .zip(x)
            .filter(|(_, v)| !v.is_zero())
            .map(|(c, v)| Rat::from_integer(c.clone()) * v)
            .sum()
    };
    let gap = |w: &[BigInt]| -> Option<Rat> {
        let lowest_own = own_rows.iter().map(|x| value(w, x)).min()?;
        let highest_open = open_rows.iter().map(|x| value(w, x)).max()?;
        Some(lowest_own - highest_open)
    };
    // S as small integers: 2a rounded. a separates with a gap of 2, and a
    // state's features add up to at most 2 (head 1's weights and one
    // position), so rounding moves each value by at most 1 and leaves a
    // gap of at least 2 (checked; the vertex's own denominators can run to
    // hundreds of digits, which clearing them would keep).
    let two = Rat::from_integer(BigInt::from(2));
    let rounded: Vec<BigInt> = a.iter().map(|v| (v * &two).round().to_integer()).collect();
    let s = if gap(&rounded).is_some_and(|g| g >= two) {
        rounded
    } else {
        let lcm = a.iter().fold(BigInt::one(), |l, v| l.lcm(v.denom()));
        a.iter()
            .map(|v| (v * Rat::from_integer(lcm.clone())).to_integer())
            .collect()
    };
    let rho: Vec<BigInt> = base
        .symbol_weight
        .values()
        .cloned()
        .chain(base.position_offset.iter().cloned())
        .collect();
    // ρ's spread over every state involved bounds how much it can undo.
    let all: Vec<Rat> = own_rows
        .iter()
        .chain(&open_rows)
        .map(|x| value(&rho, x))
        .collect();
    let spread = all.iter().max().cloned().unwrap_or_default()
        - all.iter().min().cloned().unwrap_or_default();
    let first = spread.ceil().to_integer() + BigInt::from(2);
    for tries in 0..=TRIES {
        let big_m = &first + BigInt::from(tries);
        let w: Vec<BigInt> = s
            .iter()
            .zip(&rho)
            .map(|(si, ri)| &big_m * si + ri)
            .collect();
        let Some(g) = gap(&w) else {
            return Err(Conflict::default());
        };
        if g < two {
            continue;
        }
        let projection = Projection {
            symbol_weight: base
                .symbol_weight
                .keys()
                .copied()
                .zip(w[..base.symbol_weight.len()].iter().cloned())
                .collect::<BTreeMap<Symbol, BigInt>>(),
            position_offset: w[base.symbol_weight.len()..].to_vec(),
        };
        let mut values: Vec<Rat> = patterns.iter().map(|p| projection.value(p)).collect();
        values.sort();
        if values.windows(2).all(|v| v[0] < v[1]) {
            return Ok(projection);
        }
    }
    Err(Conflict::default())
}
