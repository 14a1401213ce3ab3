//! The syntactic neurons of circuit C(k) moved out of the way of the
//! lookalikes its gate cannot close, for the dense model.
//!
//! Why: the first syntactic neuron of C(k), the ramp ReLU(s_k − t_0), fires
//! on every prefix of k, so its pre-activation is fixed on the span of k's
//! hidden states, and no gate that vanishes there changes it on a lookalike
//! in that span (see [`super::exclusion`]). But two things are still ours
//! to choose:
//! - the projection s_k itself: any integer weights r_σ on head 1's symbols
//!   and c_i on the positions do, as long as s_k is injective on k's
//!   patterns;
//! - a correction c that every syntactic neuron subtracts, any linear
//!   function of the hidden state that vanishes on k's prefixes (the same
//!   nullspace the gate lives in), so nothing changes on D(k).
//!
//! If s_k − c is at most t_1 − 2 on every open lookalike (t_1 the least
//! pattern value), every interpolation neuron ReLU(s_k − c − t_m), t_m ≥
//! t_0 = t_1 − 1, is at most −1 there. That is one exact LP over (s, T, c):
//! s(w) − T ≥ 1 on k's patterns, T − s(q) + c(q) ≥ 1 on the lookalikes,
//! solved by [`crate::lp`]. Its s is doubled and rounded
//! to integers (a state's head-1 weights and position add up to 2, so each
//! value moves by at most 1; checked) and mixed with the injective random
//! projection ρ as M·S + ρ, with c scaled by M too: for M beyond ρ's spread
//! the separation survives, and M is raised until the sum is injective on
//! k's patterns (exactly checked).
//!
//! When the LP is infeasible its Farkas vector is the obstacle: weights λ on
//! lookalikes and μ on k's patterns, Σλ = Σμ, such that Σ λ_q h(q) is in the
//! span of k's states (so c sums to 0 over them) and equals Σ μ_w h(w) on
//! head 1 and the positions (so every s has the same weighted mean on both
//! sides): the lookalikes cannot all lie below all the patterns.

use super::exclusion::Nullspace;
use super::expert::Projection;
use super::pattern::{Pattern, Symbol};
use super::residual::Residual;
use crate::lp::{self, Answer, Outcome, Problem};
use crate::model::SparseVec;
use crate::scalar::Rat;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};
use std::collections::{BTreeMap, BTreeSet};

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

/// The obstacle, in indices into the `open` and `own` slices (see the
/// module docs). Empty if the LP was feasible but no M in range made the
/// projection injective.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conflict {
    pub open: Vec<(usize, Rat)>,
    pub own: Vec<(usize, Rat)>,
}

/// The moved syntactic neurons: their projection, and the correction every
/// one of them subtracts (a read vector, `one` holding its constant; 0 on
/// every prefix of k).
#[derive(Debug, Clone)]
pub struct Separation {
    pub projection: Projection,
    pub correction: SparseVec<Rat>,
}

/// Move the syntactic neurons so that s_k − c is at least 2 below every
/// `own` state on every `open` state, with s_k injective on `patterns`.
pub fn separate(
    base: &Projection,
    r: &Residual,
    patterns: &[&Pattern],
    own: &[&SparseVec<Rat>],
    open: &[&SparseVec<Rat>],
) -> Result<Separation, Conflict> {
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
    // The correction's room: functionals over every coordinate seen that
    // vanish on k's states; c(q) = u_q·z for free coordinates z.
    let coords: Vec<usize> = own
        .iter()
        .chain(open)
        .flat_map(|x| x.entries().iter().map(|(c, _)| *c))
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    let full = |x: &SparseVec<Rat>| -> Vec<Rat> { coords.iter().map(|&c| x.get(c)).collect() };
    let mut seen: BTreeSet<Vec<Rat>> = BTreeSet::new();
    let span: Vec<Vec<Rat>> = own
        .iter()
        .map(|x| full(x))
        .filter(|v| seen.insert(v.clone()))
        .collect();
    let null = Nullspace::new(&span, coords.len());
    let u: Vec<Vec<Rat>> = open.iter().map(|x| null.project(&full(x))).collect();
    let free = null.free.len();

    // Variables: (a⁺, a⁻) per feature, T⁺, T⁻, (z⁺, z⁻) per free
    // coordinate, then one surplus per row.
    // Own: a·x − T − s = 1; open: −a·x + T + u·z − s = 1.
    let m = own_rows.len() + open_rows.len();
    let signed: Vec<(Rat, &Vec<Rat>)> = own_rows
        .iter()
        .map(|x| (Rat::one(), x))
        .chain(open_rows.iter().map(|x| (-Rat::one(), x)))
        .collect();
    let mut columns: Vec<Vec<(usize, Rat)>> = Vec::with_capacity(2 * (n + 1 + free) + m);
    let mut pair = |plus: Vec<(usize, Rat)>| {
        let minus = plus.iter().map(|(i, v)| (*i, -v.clone())).collect();
        columns.push(plus);
        columns.push(minus);
    };
    for f in 0..n {
        pair(
            signed
                .iter()
                .enumerate()
                .filter(|(_, (_, x))| !x[f].is_zero())
                .map(|(i, (sg, x))| (i, sg * &x[f]))
                .collect(),
        );
    }
    pair(
        signed
            .iter()
            .enumerate()
            .map(|(i, (sg, _))| (i, -sg))
            .collect(),
    );
    for f in 0..free {
        pair(
            u.iter()
                .enumerate()
                .filter(|(_, uq)| !uq[f].is_zero())
                .map(|(q, uq)| (own_rows.len() + q, uq[f].clone()))
                .collect(),
        );
    }
    columns.extend((0..m).map(|i| vec![(i, -Rat::one())]));
    let problem = Problem {
        rows: m,
        columns,
        rhs: vec![Rat::one(); m],
    };
    let outcome = match lp::feasibility_by_simplex(&problem).0 {
        Answer::Decided(outcome) => outcome,
        // Past the LP's limit: no projection found, and no conflict to name.
        Answer::Undecided(_) => return Err(Conflict::default()),
    };
    let x = match outcome {
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
    let base_z = 2 * (n + 1);
    let z: Vec<Rat> = (0..free)
        .map(|f| &x[base_z + 2 * f] - &x[base_z + 2 * f + 1])
        .collect();
    let c_full = null.complete(&z);
    let c_open: Vec<Rat> = u
        .iter()
        .map(|uq| uq.iter().zip(&z).map(|(a, b)| a * b).sum())
        .collect();

    let value = |w: &[BigInt], x: &[Rat]| -> Rat {
        w.iter()
            .zip(x)
            .filter(|(_, v)| !v.is_zero())
            .map(|(c, v)| Rat::from_integer(c.clone()) * v)
            .sum()
    };
    // Lowest own value minus highest open value, c scaled by `scale`.
    let gap = |w: &[BigInt], scale: &Rat| -> Option<Rat> {
        let lowest_own = own_rows.iter().map(|x| value(w, x)).min()?;
        let highest_open = open_rows
            .iter()
            .zip(&c_open)
            .map(|(x, c)| value(w, x) - c * scale)
            .max()?;
        Some(lowest_own - highest_open)
    };
    // S as small integers: 2a rounded, c doubled; the vertex's own
    // denominators can run to hundreds of digits, which clearing them would
    // keep.
    let two = Rat::from_integer(BigInt::from(2));
    let rounded: Vec<BigInt> = a.iter().map(|v| (v * &two).round().to_integer()).collect();
    let (s, c_scale) = if gap(&rounded, &two).is_some_and(|g| g >= two) {
        (rounded, two.clone())
    } else {
        let lcm = a.iter().fold(BigInt::one(), |l, v| l.lcm(v.denom()));
        let s = a
            .iter()
            .map(|v| (v * Rat::from_integer(lcm.clone())).to_integer())
            .collect();
        (s, Rat::from_integer(lcm))
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
        let scale = &c_scale * Rat::from_integer(big_m.clone());
        let Some(g) = gap(&w, &scale) else {
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
            let correction = SparseVec::from_entries(
                coords
                    .iter()
                    .copied()
                    .zip(c_full.iter().map(|c| c * &scale)),
            );
            return Ok(Separation {
                projection,
                correction,
            });
        }
    }
    Err(Conflict::default())
}
