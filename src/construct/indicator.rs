//! The split circuit form of the dense model (`--circuit split`): the
//! syntactic part of circuit C(k) as one *indicator neuron* per pattern of
//! task k instead of one interpolation along a projection s_k.
//!
//! Why: the ramp form has a neuron, ReLU(s_k − t_0), that is on at every
//! prefix of k. Where some lookalikes' hidden states combine into k's
//! (λ ≥ 0 on lookalikes, Σ λ_q h(q) = Σ ν_w h(w) over k's prefixes, as with
//! XOR-like openings), every affine pre-activation that is positive on all
//! of k's prefixes is positive on one of them, so that neuron cannot be
//! kept off (docs/construction.md, "What remains"). An indicator neuron is
//! on at the prefixes of one pattern p only, so such an identity rules it
//! out only when it involves p's prefixes alone.
//!
//! The neuron of pattern p (i = |p|) is ReLU(1 − 2·Γ_p(x)) writing y_p, the
//! same target the interpolation meets at p. Γ_p = A·Φ_p + Ψ_p:
//! - Φ_p, evidence against p: (1 − pos:i) + (1 − Σ_{σ ∈ p} h1:σ) +
//!   (h2:{entity} − h2:{key of k} − h2:{value of k}). Every term is ≥ 0 on
//!   every prefix, all are 0 on p's prefixes of k, and their sum is at least
//!   1/(2^L − 1) on any prefix of another length, with a symbol p lacks, or
//!   with an entity outside Δk.
//! - Ψ_p, for the rest (prefixes of length i made only of p's symbols and
//!   k's entities that are not p's prefixes of k: k's other patterns of
//!   that length and other tasks' lookalikes): an exact functional that
//!   vanishes on p's prefixes and is ≥ 1 on each of them, from the exact LP
//!   of [`super::exclusion`] over every coordinate they use. What it cannot
//!   close is reported with its identity.
//! - A = ⌈(2^L − 1)(‖Ψ_p‖₁ + 1)⌉, so Γ_p ≥ 1 off p's prefixes of k and the
//!   neuron is at most −1 there; on them Γ_p = 0 and it is exactly 1.
//!
//! On a prefix of k exactly one indicator fires (its pattern's), so the
//! circuit writes y_p there, as the ramp form and the MoE expert do.
//! Patterns with y_p = 0 (⋆2 next) need no neuron. So the syntactic part
//! has at most n neurons (n patterns), as the ramp form has: C(k) stays
//! within n + |Δk| ≤ c(k) ≤ L·|T(k)| + |Δk|.

use super::exclusion::{self, Bound, GiveUp};
use super::expert::Point;
use super::gate::{self, EntityDirs};
use super::pattern::{Pattern, Symbol};
use super::residual::Residual;
use crate::model::SparseVec;
use crate::scalar::{Rat, int};
use crate::taskset::{TaskSet, TokenId, TokenKind};
use num_bigint::BigInt;
use num_traits::{One, Signed, Zero};
use rayon::prelude::*;
use std::collections::{BTreeSet, HashSet};

/// One indicator neuron: its pre-activation read (`one` excluded) and bias,
/// the pattern it indicates and what it writes.
#[derive(Debug, Clone)]
pub struct Indicator {
    pub pattern: Pattern,
    /// The prefixes (indices into `ts.prefixes`) a point indicator is on
    /// at (one, or a group of them); empty for a pattern indicator.
    pub prefixes: Vec<usize>,
    pub read: SparseVec<Rat>,
    pub bias: Rat,
    pub write: SparseVec<Rat>,
    /// Prefixes (indices into `ts.prefixes`) outside p's prefixes of k that
    /// Ψ_p could not close, each with the identity that rules it out.
    pub open: Vec<(usize, String)>,
}

/// The pattern of a token sequence: entities replaced by one symbol.
pub fn pattern_of(ts: &TaskSet, tokens: &[TokenId]) -> Pattern {
    tokens
        .iter()
        .map(|&t| match ts.vocab.kind(t) {
            TokenKind::Entity => Symbol::Entity,
            _ => Symbol::Word(t),
        })
        .collect()
}

/// Φ_p as a read vector (`one` holds its constant 2).
fn evidence(p: &Pattern, k: usize, r: &Residual, e: &EntityDirs) -> SparseVec<Rat> {
    let symbols: BTreeSet<usize> = p
        .iter()
        .map(|s| match s {
            Symbol::Word(t) => r.h1[*t],
            Symbol::Entity => r.h1_entity,
        })
        .collect();
    SparseVec::from_entries(
        [
            (r.one, int(2)),
            (r.pos[p.len() - 1], int(-1)),
            (e.count, int(1)),
            (e.keys[k], int(-1)),
            (e.values[k], int(-1)),
        ]
        .into_iter()
        .chain(symbols.into_iter().map(|d| (d, int(-1)))),
    )
}

/// What an indicator neuron is on at: every prefix of k with pattern p, or
/// one of them (a point indicator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Support<'a> {
    Pattern,
    /// Indices into `ts.prefixes`: one prefix, or a group of them.
    Prefixes(&'a [usize]),
}

/// The indicator neuron of one pattern of task k, on all of that pattern's
/// prefixes of k or (`Support::Prefixes`) on some of them.
fn indicator(
    ts: &TaskSet,
    k: usize,
    r: &Residual,
    e: &EntityDirs,
    states: &[SparseVec<Rat>],
    (_, p, y): &Point,
    support: Support<'_>,
) -> Indicator {
    let phi = evidence(p, k, r, e);
    let len = p.len();
    let mut own = Vec::new();
    let mut rest = Vec::new();
    for (q, prefix) in ts.prefixes.iter().enumerate() {
        if prefix.tokens.len() != len {
            continue;
        }
        let on = match support {
            Support::Pattern => prefix.tasks.contains(&k) && pattern_of(ts, &prefix.tokens) == *p,
            Support::Prefixes(on) => on.contains(&q),
        };
        if on {
            own.push(q);
        } else if phi.dot(&states[q]).is_zero() {
            rest.push(q);
        }
    }
    let mut psi = SparseVec::default();
    let mut open = Vec::new();
    if !rest.is_empty() {
        let coords: Vec<usize> = own
            .iter()
            .chain(&rest)
            .flat_map(|&q| states[q].entries().iter().map(|(c, _)| *c))
            .collect::<BTreeSet<usize>>()
            .into_iter()
            .collect();
        let dense = |x: &SparseVec<Rat>| -> Vec<Rat> { coords.iter().map(|&c| x.get(c)).collect() };
        let mut seen: HashSet<Vec<Rat>> = HashSet::new();
        let mut rows = Vec::new();
        let mut names = Vec::new();
        for &q in &own {
            let row = dense(&states[q]);
            if seen.insert(row.clone()) {
                rows.push(row);
                names.push(q);
            }
        }
        let bounds: Vec<Bound> = rest
            .iter()
            .map(|&q| Bound {
                x: dense(&states[q]),
                at_least: Rat::one(),
                give_up: GiveUp::Drop,
            })
            .collect();
        let found = exclusion::exclude(&rows, &bounds, coords.len());
        psi = SparseVec::from_entries(coords.iter().copied().zip(found.psi));
        let task = &ts.tasks[k].name;
        let shown = super::pattern::render(p, |t| ts.vocab.name(t).to_string());
        for (b, id) in &found.given_up {
            let (lhs, rhs, _) = gate::identity_text(ts, *b, id, &rest, &names);
            let what = match support {
                Support::Pattern => format!(
                    "no indicator of {task}'s pattern \"{shown}\" can be kept off it: {lhs} = {rhs}, the left side outside that pattern's prefixes of {task} and the right side on them"
                ),
                Support::Prefixes(on) => format!(
                    "no neuron on at {task}'s {} can be kept off it: {lhs} = {rhs}, with weights ≥ 0 on the left",
                    render_prefixes(ts, on)
                ),
            };
            open.push((
                rest[*b],
                format!(
                    "{what}, so every pre-activation affine in the hidden state that is constant on the right side has the same weighted sum on both sides"
                ),
            ));
        }
    }
    let norm: Rat = psi.entries().iter().map(|(_, v)| v.abs()).sum();
    let a = (Rat::from_integer((BigInt::one() << ts.max_len) - 1) * (norm + Rat::one())).ceil();
    let gamma = psi.add_scaled(&a, &phi);
    // ReLU(1 − 2·Γ_p): 1 on its support, at most −1 elsewhere.
    let constant = gamma.get(r.one);
    let read = gamma
        .add_scaled(&-constant.clone(), &SparseVec::unit(r.one))
        .map(|v| -v * int(2));
    let bias = int(1) - int(2) * constant;
    debug_assert!(own.iter().all(|&q| (read.dot(&states[q]) + &bias).is_one()));
    Indicator {
        pattern: p.clone(),
        prefixes: match support {
            Support::Pattern => Vec::new(),
            Support::Prefixes(on) => on.to_vec(),
        },
        read,
        bias,
        write: y.clone(),
        open,
    }
}

/// `prefix "a"`, or `prefixes "a", "b"` for a group.
pub fn render_prefixes(ts: &TaskSet, on: &[usize]) -> String {
    let shown: Vec<String> = on
        .iter()
        .map(|&w| format!("\"{}\"", ts.render(&ts.prefixes[w].tokens)))
        .collect();
    match shown.len() {
        1 => format!("prefix {}", shown[0]),
        _ => format!("prefixes {}", shown.join(", ")),
    }
}

/// The prefixes of task k with pattern p, one per distinct hidden state.
fn prefixes_of(ts: &TaskSet, k: usize, p: &Pattern, states: &[SparseVec<Rat>]) -> Vec<usize> {
    let mut seen: Vec<&SparseVec<Rat>> = Vec::new();
    (0..ts.prefixes.len())
        .filter(|&q| {
            let prefix = &ts.prefixes[q];
            prefix.tokens.len() == p.len()
                && prefix.tasks.contains(&k)
                && pattern_of(ts, &prefix.tokens) == *p
        })
        .filter(|&q| {
            let fresh = !seen.contains(&&states[q]);
            seen.push(&states[q]);
            fresh
        })
        .collect()
}

/// The indicator neurons of task k, one per pattern with a nonzero target,
/// in the order of `points` (computed in parallel). Where a pattern's
/// indicator leaves a prefix open, that pattern gets one point indicator per
/// prefix instead, if they leave fewer open and the syntactic part stays
/// within `budget` neurons (L·|T(k)|); where one per prefix would exceed it,
/// prefixes that can share a neuron are grouped ([`grouped`]); patterns are
/// taken in order.
pub fn indicators(
    ts: &TaskSet,
    k: usize,
    r: &Residual,
    e: &EntityDirs,
    states: &[SparseVec<Rat>],
    points: &[Point],
    budget: usize,
) -> Vec<Indicator> {
    let shown: Vec<&Point> = points
        .iter()
        .filter(|(_, _, y)| y.entries().iter().any(|(_, v)| !v.is_zero()))
        .collect();
    let by_pattern: Vec<Indicator> = shown
        .par_iter()
        .map(|point| indicator(ts, k, r, e, states, point, Support::Pattern))
        .collect();
    let mut used = by_pattern.len();
    let mut out = Vec::new();
    for (point, ind) in shown.iter().zip(by_pattern) {
        if ind.open.is_empty() {
            out.push(ind);
            continue;
        }
        let at = prefixes_of(ts, k, &point.1, states);
        let by_prefix: Vec<Indicator> = at
            .par_iter()
            .map(|w| {
                indicator(
                    ts,
                    k,
                    r,
                    e,
                    states,
                    point,
                    Support::Prefixes(std::slice::from_ref(w)),
                )
            })
            .collect();
        let open: BTreeSet<usize> = by_prefix
            .iter()
            .flat_map(|i| i.open.iter().map(|(q, _)| *q))
            .collect();
        if open.len() >= ind.open.len() {
            out.push(ind);
            continue;
        }
        // Over the budget, group the prefixes: one neuron on a group of
        // them where that opens nothing the single ones leave open.
        let by_prefix = if used + at.len() - 1 > budget {
            grouped(ts, k, r, e, states, point, &at, by_prefix, &open)
        } else {
            by_prefix
        };
        if used + by_prefix.len() - 1 > budget {
            out.push(ind);
            continue;
        }
        used += by_prefix.len() - 1;
        out.extend(by_prefix);
    }
    out
}

/// Point indicators of one pattern on groups of its prefixes, first fit:
/// each prefix joins the first group whose neuron, on the group with it,
/// leaves open only what the single point indicators (`single`, whose
/// open prefixes are `open`) leave open; else it starts a group. Why: on
/// a key–value XOR (h("of K0 V5") + h("of K2 V4") = h("of K0 V4") + h("of
/// K2 V5"), `generate --shared-keys --seed 12`) one neuron per prefix of
/// the pattern closes it but needs one neuron more than L·|T(k)| allows,
/// while most of those prefixes can share a neuron.
#[allow(clippy::too_many_arguments)]
fn grouped(
    ts: &TaskSet,
    k: usize,
    r: &Residual,
    e: &EntityDirs,
    states: &[SparseVec<Rat>],
    point: &Point,
    at: &[usize],
    single: Vec<Indicator>,
    open: &BTreeSet<usize>,
) -> Vec<Indicator> {
    let mut groups: Vec<(Vec<usize>, Indicator)> = Vec::new();
    for (&w, ind) in at.iter().zip(single) {
        let mut joined = false;
        for (members, neuron) in &mut groups {
            let mut on = members.clone();
            on.push(w);
            let merged = indicator(ts, k, r, e, states, point, Support::Prefixes(&on));
            if merged.open.iter().all(|(q, _)| open.contains(q)) {
                *members = on;
                *neuron = merged;
                joined = true;
                break;
            }
        }
        if !joined {
            groups.push((vec![w], ind));
        }
    }
    groups.into_iter().map(|(_, neuron)| neuron).collect()
}
