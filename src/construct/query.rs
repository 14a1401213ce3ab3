//! The query gates of a circuit's semantic neurons (dense model): of split
//! circuits, and of ramp circuits whose moved lookalikes hold a key; and a
//! key's own gate ([`key_gate`]).
//!
//! Why: where the task gate Γ_k cannot close a lookalike q that holds a key
//! a of k (with shared keys: h("K0 V0") + h("K4 V1") = h("K0 V1") + h("K4
//! V0") on the whole hidden state, so no functional that vanishes on k's
//! prefixes is positive on both of another task's "K0 V1" and "K4 V0"), the
//! semantic neuron of a reads L·h2:a > 0 there and fires off its task. But
//! a semantic neuron need not be on at every prefix of k: only at k's
//! queries (⋆2 next), where it writes the value. Elsewhere in D(k) the
//! syntactic target, β_syn > 2·L·β_sem, decides the output anyway. So it
//! gets a second gate Ψ_Q that vanishes on k's queries only:
//!
//! - Ψ_Q = 0 on every query of k (the zero rows of the exact LP of
//!   [`super::exclusion`]);
//! - Ψ_Q ≥ 1 on each lookalike Γ_k leaves open that holds a key of k
//!   (dropped, and reported with its identity, where no Ψ_Q can);
//! - Ψ_Q ≥ 0 on k's other prefixes and on the other open lookalikes (hard:
//!   Ψ_Q = 0 meets them), so that the neuron reads no more there than it
//!   would without the query gate.
//!
//! The neuron then reads L·h2:a − (L+1)·(B·Γ_k + Ψ_Q) with B =
//! ⌈(‖Ψ_Q‖₁ + 1)/δ⌉: where Γ_k ≥ δ, B·Γ_k + Ψ_Q ≥ 1 (every coordinate is at
//! most 1 in magnitude, so |Ψ_Q| ≤ ‖Ψ_Q‖₁); on an open lookalike Γ_k ≥ 0
//! and Ψ_Q ≥ 1; either way the pre-activation is at most −1. On k's queries
//! both gates are 0 and the neuron is the MoE expert's.

use super::exclusion::{self, Bound, GiveUp};
use super::gate;
use crate::model::SparseVec;
use crate::scalar::Rat;
use num_traits::{One, Zero};
use std::collections::{BTreeSet, HashSet};

/// The query gate of task k: Ψ_Q (`one` holds its constant) and the
/// lookalikes holding a key of k it could not close, each with the identity
/// that rules it out (indices into `ts.prefixes`).
#[derive(Debug, Clone)]
pub struct QueryGate {
    pub psi: SparseVec<Rat>,
    pub open: Vec<(usize, String)>,
}

/// The query gate of task k. `open` are the prefixes outside D(k) that Γ_k
/// leaves open (at Γ_k ≥ 0), `keyed[i]` whether `open[i]` holds a key of k.
pub fn query_gate(
    ts: &crate::taskset::TaskSet,
    k: usize,
    states: &[SparseVec<Rat>],
    open: &[usize],
    keyed: &[bool],
) -> QueryGate {
    let own: Vec<usize> = (0..ts.prefixes.len())
        .filter(|&p| ts.prefixes[p].tasks.contains(&k))
        .collect();
    let (queries, others): (Vec<usize>, Vec<usize>) =
        own.iter().partition(|&&p| ts.prefixes[p].is_query);
    let coords: Vec<usize> = own
        .iter()
        .chain(open)
        .flat_map(|&p| states[p].entries().iter().map(|(c, _)| *c))
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    let dense = |x: &SparseVec<Rat>| -> Vec<Rat> { coords.iter().map(|&c| x.get(c)).collect() };
    let mut seen: HashSet<Vec<Rat>> = HashSet::new();
    let mut rows = Vec::new();
    let mut names = Vec::new();
    for &p in &queries {
        let row = dense(&states[p]);
        if seen.insert(row.clone()) {
            rows.push(row);
            names.push(p);
        }
    }
    // Bounds: the keyed lookalikes first (soft, ≥ 1), then the hard ≥ 0.
    let mut bound_prefix: Vec<usize> = Vec::new();
    let mut bounds: Vec<Bound> = Vec::new();
    for (&q, &key) in open.iter().zip(keyed) {
        if key {
            bound_prefix.push(q);
            bounds.push(Bound {
                x: dense(&states[q]),
                at_least: Rat::one(),
                give_up: GiveUp::Drop,
            });
        }
    }
    let hard = open
        .iter()
        .zip(keyed)
        .filter(|(_, key)| !**key)
        .map(|(q, _)| *q)
        .chain(others);
    for q in hard {
        bound_prefix.push(q);
        bounds.push(Bound {
            x: dense(&states[q]),
            at_least: Rat::zero(),
            give_up: GiveUp::Never,
        });
    }
    let found = exclusion::exclude(&rows, &bounds, coords.len());
    let psi = SparseVec::from_entries(coords.iter().copied().zip(found.psi));
    let task = &ts.tasks[k].name;
    let open = found
        .given_up
        .iter()
        .map(|(b, id)| {
            let (lhs, rhs, _) = gate::identity_text(ts, *b, id, &bound_prefix, &names);
            (
                bound_prefix[*b],
                format!(
                    "; nor can a query gate (0 on {task}'s queries, ≥ 0 on its other prefixes) close it: {lhs} = {rhs}, queries of {task} on the right"
                ),
            )
        })
        .collect();
    QueryGate { psi, open }
}

/// A query gate of its own for the semantic neuron of key a of task k
/// (`key_dir` its h2:a coordinate), where the shared Ψ_Q leaves open a
/// lookalike holding a. Ψ_Q = 0 on k's queries is more than the neuron
/// needs: it must fire at k's queries holding a (reading at least 1 there,
/// so that it writes at least β_sem), and read no more than L·h2:a on
/// k's other prefixes. So Ψ_a is free at those queries up to
/// L·h2:a − (L+1)·Ψ_a ≥ 1, ≥ 0 on every other prefix of k (there the
/// neuron reads at most L·h2:a, and nothing where h2:a = 0, as on k's
/// other queries) and on the open lookalikes without a, ≥ 1 on those with
/// a (given up with the identity where impossible). Shared keys need it:
/// `generate --shared-keys --seed 13` has h("with to K0") = 2·h("to with
/// K0") − h("with with K0"), task3's query on the left and task1's on the
/// right; no Ψ_Q vanishing on task1's queries closes it, but a neuron
/// reading twice as much at "with with K0" as at "to with K0" is off there.
/// Returns Ψ_a and the lookalikes it leaves open, as `query_gate` does.
pub fn key_gate(
    ts: &crate::taskset::TaskSet,
    k: usize,
    key_dir: usize,
    states: &[SparseVec<Rat>],
    open: &[usize],
    keyed: &[bool],
) -> QueryGate {
    let l = Rat::from_integer((ts.max_len as i64).into());
    let own: Vec<usize> = (0..ts.prefixes.len())
        .filter(|&p| ts.prefixes[p].tasks.contains(&k))
        .collect();
    let coords: Vec<usize> = own
        .iter()
        .chain(open)
        .flat_map(|&p| states[p].entries().iter().map(|(c, _)| *c))
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    let dense = |x: &SparseVec<Rat>| -> Vec<Rat> { coords.iter().map(|&c| x.get(c)).collect() };
    let mut bound_prefix: Vec<usize> = Vec::new();
    let mut bounds: Vec<Bound> = Vec::new();
    for (&q, &key) in open.iter().zip(keyed) {
        let holds = !states[q].get(key_dir).is_zero();
        if key && holds {
            bound_prefix.push(q);
            bounds.push(Bound {
                x: dense(&states[q]),
                at_least: Rat::one(),
                give_up: GiveUp::Drop,
            });
        }
    }
    let soft = bounds.len();
    let mut negated = vec![false; soft];
    for &q in open.iter().chain(&own) {
        let h = states[q].get(key_dir);
        if bound_prefix[..soft].contains(&q) {
            continue;
        }
        let query_with_a =
            ts.prefixes[q].tasks.contains(&k) && ts.prefixes[q].is_query && !h.is_zero();
        negated.push(query_with_a);
        bound_prefix.push(q);
        bounds.push(if query_with_a {
            // −Ψ_a ≥ −(L·h2:a − 1)/(L+1), at most 0 (h2:a ≥ 1/L).
            Bound {
                x: dense(&states[q]).into_iter().map(|v| -v).collect(),
                at_least: -(&l * &h - Rat::one()) / (&l + Rat::one()),
                give_up: GiveUp::Never,
            }
        } else {
            Bound {
                x: dense(&states[q]),
                at_least: Rat::zero(),
                give_up: GiveUp::Never,
            }
        });
    }
    let found = exclusion::exclude(&[], &bounds, coords.len());
    let psi = SparseVec::from_entries(coords.iter().copied().zip(found.psi));
    let task = &ts.tasks[k].name;
    // No zero rows: the Farkas vector says Σ λ_i·x_i = 0 with λ ≥ 0, x_i
    // the state, negated at k's queries holding a.
    let open = found
        .given_up
        .iter()
        .map(|(b, id)| {
            let own_weight = id
                .bounds
                .iter()
                .find(|(t, _)| t == b)
                .map_or_else(Rat::one, |(_, w)| w.clone());
            let terms: Vec<(String, Rat)> = id
                .bounds
                .iter()
                .filter(|(t, _)| t == b)
                .chain(id.bounds.iter().filter(|(t, _)| t != b))
                .map(|(t, w)| {
                    let w = w / &own_weight;
                    let w = if negated[*t] { -w } else { w };
                    (ts.render(&ts.prefixes[bound_prefix[*t]].tokens), w)
                })
                .collect();
            (
                bound_prefix[*b],
                format!(
                    "; nor can a gate of this key's own (read ≥ 1 at {task}'s queries holding it, ≤ L·h2 on its other prefixes) close it: {} = 0, weights ≥ 0 except on those queries",
                    gate::linear_text(&terms)
                ),
            )
        })
        .collect();
    QueryGate { psi, open }
}
