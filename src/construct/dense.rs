//! The dense model of Theorem 4.1: the same embeddings and two heads as the
//! MoE model, no router, and one FFN whose neurons split into disjoint
//! circuits C(k), one per task.
//!
//! Circuit C(k) is expert k of the MoE model made to live among the other
//! tasks' neurons:
//! - the syntactic interpolation is written without an output bias (a
//!   dense FFN has one bias for every task): a ramp from 0 at the virtual
//!   knot t_0 = t_1 − 1 up to y_1 at t_1 replaces it, so the circuit has n
//!   interpolation neurons for n patterns instead of n − 1 plus a bias;
//! - every neuron subtracts G·Γ_k, where Γ_k is the task gate of
//!   [`super::gate`]: exactly 0 on the task's prefixes, at least 1 on every
//!   other prefix. Its constant part is the neuron's large negative bias,
//!   the rest is task evidence the neuron reads (k's own symbols and
//!   entities push it up, foreign entities down). G is sized from the weights: a syntactic neuron's input
//!   s_k never exceeds max r + c_L, so G = max r + c_L − t_0 + 1 leaves it at
//!   most −1; a semantic neuron's L·h2:a never exceeds L, so G = L + 1.
//!
//! - where the gate cannot close a lookalike, the syntactic neurons read a
//!   projection s_k and a correction (0 on D(k)) chosen by an exact LP to
//!   put it below every pattern of k (see [`super::separate`]);
//! - where even that leaves a lookalike open, the split circuit form (the
//!   default, [`CircuitForm::Split`]) replaces the task's interpolation by
//!   one indicator neuron per pattern ([`super::indicator`]): no neuron is
//!   then on at every prefix of k, which is what the certificates against
//!   the ramp form need.
//!
//! C(k) has n + |Δk| ≤ Σ|τ| + |Δk| = c(k) ≤ L·|T(k)| + |Δk| neurons, gate
//! included: the gate is part of each neuron's weights, not extra neurons.
//! Head 2 writes three more kinds of direction for the gates: h2:{entity}
//! (every entity), h2:{key of k} and h2:{value of k}.

use super::attention;
use super::expert;
use super::gate::{self, EntityDirs, GiveUp};
use super::indicator;
use super::pattern;
use super::query;
use super::residual::Residual;
use super::separate;
use super::{CircuitForm, Margins, Options};
use crate::model::{
    Basis, Circuit, Direction, EntityFeature, Expert, Head, LinearMap, Model, Neuron, NeuronRole,
    Router, SparseVec, Synthesis,
};
use crate::scalar::{Rat, int};
use crate::taskset::{TaskSet, TokenId};
use num_bigint::BigInt;
use num_traits::{Signed, Zero};
use rayon::prelude::*;
use std::collections::HashMap;

/// The residual of the dense model: the MoE model's directions plus the
/// head-2 entity features the gates read.
#[derive(Debug, Clone)]
pub struct DenseResidual {
    pub residual: Residual,
    pub entities: EntityDirs,
    /// written[t]: the extra head-2 directions token t writes.
    written: Vec<Vec<usize>>,
}

/// An entity feature, primed until no direction of the basis has its name
/// (an entity may be called "{entity}").
fn fresh(basis: &Basis, feature: EntityFeature) -> Direction {
    let mut primes = 0;
    loop {
        let direction = Direction::Feature {
            feature: feature.clone(),
            primes,
        };
        if basis.find(&direction).is_none() {
            return direction;
        }
        primes += 1;
    }
}

impl DenseResidual {
    pub fn new(ts: &TaskSet) -> DenseResidual {
        let mut residual = Residual::new(ts);
        let mut add = |feature: EntityFeature| {
            let direction = fresh(&residual.basis, feature);
            residual.basis.add(direction)
        };
        let count = add(EntityFeature::Count);
        let keys = ts
            .tasks
            .iter()
            .map(|t| add(EntityFeature::KeyOf(t.name.clone())))
            .collect();
        let values = ts
            .tasks
            .iter()
            .map(|t| add(EntityFeature::ValueOf(t.name.clone())))
            .collect();
        let entities = EntityDirs {
            count,
            keys,
            values,
        };
        let written = (0..ts.vocab.len())
            .map(|t| entities.written_by(ts, t))
            .collect();
        DenseResidual {
            residual,
            entities,
            written,
        }
    }

    /// The hidden state A' at the last position, in closed form: the MoE
    /// model's plus 1/i on each extra head-2 direction per entity
    /// occurrence. Gate synthesis works on it; a test checks that the
    /// forward pass computes exactly this on every prefix.
    pub fn hidden_state(&self, tokens: &[TokenId]) -> SparseVec<Rat> {
        let i = tokens.len() as i64;
        let base = attention::hidden_state(&self.residual, tokens);
        let extra = tokens.iter().flat_map(|&t| {
            self.written[t]
                .iter()
                .map(move |&d| (d, Rat::new(1.into(), i.into())))
        });
        base.add_scaled(&int(1), &SparseVec::from_entries(extra))
    }

    /// The hidden state of every prefix of the task set, in prefix order
    /// (computed in parallel).
    pub fn hidden_states(&self, ts: &TaskSet) -> Vec<SparseVec<Rat>> {
        ts.prefixes
            .par_iter()
            .map(|p| self.hidden_state(&p.tokens))
            .collect()
    }
}

/// Prefixes whose hidden state the memory estimate computes.
pub const MEMORY_SAMPLE: usize = 256;

/// The bytes one hidden state holds: its entries and their integers' limbs.
fn held_bytes(x: &SparseVec<Rat>) -> u128 {
    let limbs = |n: &BigInt| n.bits().div_ceil(64) as u128 * 8;
    x.entries()
        .iter()
        .map(|(_, v)| {
            std::mem::size_of::<(usize, Rat)>() as u128 + limbs(v.numer()) + limbs(v.denom())
        })
        .sum()
}

/// About how many bytes [`DenseResidual::hidden_states`] holds, and per
/// prefix: measured on up to [`MEMORY_SAMPLE`] evenly spaced prefixes and
/// scaled to all. Every gate, projection and indicator of the build reads
/// these states, so they are held for all of it: prefixes × L entries of
/// about L bits, L³ for one template of L words.
pub fn estimate_bytes(ts: &TaskSet, d: &DenseResidual) -> (u128, u128) {
    let n = ts.prefixes.len();
    let sample = n.min(MEMORY_SAMPLE);
    if sample == 0 {
        return (0, 0);
    }
    let step = n / sample;
    let held: u128 = (0..sample)
        .into_par_iter()
        .map(|k| held_bytes(&d.hidden_state(&ts.prefixes[k * step].tokens)))
        .sum();
    (held * n as u128 / sample as u128, held / sample as u128)
}

/// Refuse a task set whose hidden states would not fit in memory, with the
/// estimate and the limit (half of the available memory, as for the MoE
/// router's training data).
pub fn check_fits(ts: &TaskSet, d: &DenseResidual) -> Result<(), String> {
    check_fits_within(ts, d, crate::spec::available_memory() / 2)
}

/// [`check_fits`] against a given limit in bytes.
fn check_fits_within(ts: &TaskSet, d: &DenseResidual, limit: u64) -> Result<(), String> {
    crate::taskset::check_sampled_fits(
        "hidden states (what the dense model's gates are built from)",
        ts.prefixes.len(),
        estimate_bytes(ts, d),
        MEMORY_SAMPLE,
        limit,
    )
}

/// A copy of `map` with room for `rows` more outputs and `cols` more inputs.
fn widen(map: &LinearMap<Rat>, rows: usize, cols: usize) -> LinearMap<Rat> {
    let mut wide = LinearMap::zero(map.in_dim + cols, map.out_dim + rows);
    for c in 0..map.in_dim {
        for (r, w) in map.column(c).entries() {
            wide.add(*r, c, w.clone());
        }
    }
    wide
}

/// Give head 2 one value slot per extra direction, written by the entities
/// that carry it and copied by W_O onto that direction.
fn extend_key_head(head: &mut Head<Rat>, ts: &TaskSet, d: &DenseResidual) {
    let r = &d.residual;
    let extra: Vec<usize> = [d.entities.count]
        .into_iter()
        .chain(d.entities.keys.iter().copied())
        .chain(d.entities.values.iter().copied())
        .collect();
    let first = head.values.len();
    let mut value = widen(&head.value, extra.len(), 0);
    let mut output = widen(&head.output, 0, extra.len());
    for (s, &dir) in extra.iter().enumerate() {
        let slot = r.basis.direction(dir).value_slot();
        head.values.add(slot.expect("an entity feature"));
        output.add(dir, first + s, int(1));
    }
    for t in 0..ts.vocab.len() {
        for dir in &d.written[t] {
            let s = extra
                .iter()
                .position(|x| x == dir)
                .expect("an extra direction");
            value.add(first + s, r.tok[t], int(1));
        }
    }
    head.value = value;
    head.output = output;
}

/// The gate of task k and the projection its syntactic neurons read, with
/// its interpolation points. First the gate that keeps Ψ_k ≥ 0 on the
/// lookalikes it cannot close; if there are any, a projection s_k that puts
/// them below every pattern of k silences the syntactic neurons there
/// ([`super::separate`]), and the semantic ones read no key there. If no
/// projection separates them, the gate that closes the most lookalikes
/// instead, with the positional projection; those it leaves open are
/// reported with the identity that rules them out.
fn gate_and_projection(
    ts: &TaskSet,
    k: usize,
    d: &DenseResidual,
    margins: &Margins,
    states: &[SparseVec<Rat>],
) -> (
    gate::Gate,
    expert::Projection,
    Vec<expert::Point>,
    SparseVec<Rat>,
) {
    let r = &d.residual;
    let relaxed = gate::synthesize(ts, k, r, &d.entities, states, &GiveUp::Relax(Rat::zero()));
    let (proj, points) = expert::interpolation(ts, k, r, margins);
    if relaxed.unexcluded.is_empty() {
        return (relaxed, proj, points, SparseVec::default());
    }
    let task = &ts.tasks[k].name;
    let render = |p: usize| ts.render(&ts.prefixes[p].tokens);
    let own_prefixes: Vec<usize> = (0..ts.prefixes.len())
        .filter(|&p| ts.prefixes[p].tasks.contains(&k))
        .collect();
    let own: Vec<&SparseVec<Rat>> = own_prefixes.iter().map(|&p| &states[p]).collect();
    let patterns: Vec<&pattern::Pattern> = points.iter().map(|(_, p, _)| p).collect();
    // Move as many of the open lookalikes below k's patterns as one
    // projection can, giving up (in reverse index order) each one that
    // cannot be moved together with those kept before it: a choice made by
    // feasibility alone (see [`crate::lp::greedy`]).
    let open: Vec<usize> = relaxed.unexcluded.iter().map(|u| u.prefix).collect();
    let order: Vec<usize> = (0..open.len()).rev().collect();
    let found = crate::lp::greedy::in_order(&order, |kept: &[usize]| {
        let states_open: Vec<&SparseVec<Rat>> = kept.iter().map(|&i| &states[open[i]]).collect();
        match separate::separate(&proj, r, &patterns, &own, &states_open) {
            Ok(moved) => crate::lp::greedy::Probe::Feasible(moved),
            Err(conflict) if conflict.open.is_empty() => crate::lp::greedy::Probe::Undecided(
                "no projection injective on the patterns".into(),
            ),
            Err(conflict) => crate::lp::greedy::Probe::Infeasible((conflict, kept.to_vec())),
        }
    });
    let mut left: Vec<(usize, String)> = Vec::new();
    for (i, (conflict, list)) in &found.given_up {
        // The conflict's lookalikes index `list`; the one given up is in it.
        let at = list
            .iter()
            .position(|j| j == i)
            .expect("the given-up lookalike");
        let weight = conflict
            .open
            .iter()
            .find(|(q, _)| *q == at)
            .map(|(_, w)| w.clone())
            .expect("a conflict leans on the lookalike it gives up");
        let mut lhs: Vec<(String, Rat)> = vec![(render(open[*i]), int(1))];
        lhs.extend(
            conflict
                .open
                .iter()
                .filter(|(q, _)| *q != at)
                .map(|(q, w)| (render(open[list[*q]]), w / &weight)),
        );
        let rhs: Vec<(String, Rat)> = conflict
            .own
            .iter()
            .map(|(q, w)| (render(own_prefixes[*q]), w / &weight))
            .collect();
        left.push((
            open[*i],
            format!(
                "; nor can {task}'s syntactic neurons be moved off it: on head 1 and the positions {} = {}, with equal total weight on both sides, and the left side is in the span of {task}'s hidden states, so every projection s_k has the same weighted mean on these lookalikes as on those prefixes of {task}, every correction that vanishes on {task} sums to 0 over them, and the ramp {task}/syn0, on at every prefix of {task}, cannot be kept off all of them",
                gate::linear_text(&lhs),
                gate::linear_text(&rhs)
            ),
        ));
    }
    let moved = match found.end {
        Ok(moved) if !found.kept.is_empty() => Some(moved),
        Ok(_) => None,
        Err(_) => {
            // Separable but never injective in range (or past the LP's
            // limit): give up the rest.
            let gone: Vec<usize> = found.given_up.iter().map(|(i, _)| *i).collect();
            left.extend(order.iter().filter(|i| !gone.contains(i)).map(|&i| {
                (open[i], format!("; no projection s_k injective on {task}'s patterns was found that puts it below them"))
            }));
            None
        }
    };
    let dropped = gate::synthesize(ts, k, r, &d.entities, states, &GiveUp::Drop);
    if left.len() <= dropped.unexcluded.len() {
        // The relaxed gate and the moved projection leave fewer open.
        let unexcluded = relaxed
            .unexcluded
            .iter()
            .filter_map(|u| {
                let (_, why) = left.iter().find(|(q, _)| *q == u.prefix)?;
                Some(gate::Unexcluded {
                    prefix: u.prefix,
                    reason: format!("{}{why}", u.reason),
                })
            })
            .collect();
        let gate = gate::Gate {
            unexcluded,
            ..relaxed
        };
        return match moved {
            Some(moved) => {
                let mut points: Vec<expert::Point> = points
                    .iter()
                    .map(|(_, p, y)| (moved.projection.value(p), p.clone(), y.clone()))
                    .collect();
                points.sort_by(|a, b| a.0.cmp(&b.0));
                (gate, moved.projection, points, moved.correction)
            }
            None => (gate, proj, points, SparseVec::default()),
        };
    }
    let mut dropped = dropped;
    for u in &mut dropped.unexcluded {
        u.reason.push_str(&format!(
            "; moving {task}'s syntactic neurons (a projection s_k and a correction that vanishes on {task}) clears only {} of the {} lookalike(s) that a gate with Ψ_k ≥ 0 on them leaves open, so the gate that closes the most lookalikes is used instead",
            relaxed.unexcluded.len() - left.len(),
            relaxed.unexcluded.len()
        ));
    }
    (dropped, proj, points, SparseVec::default())
}

/// The query gate of task k's semantic neurons ([`query::query_gate`]),
/// and a gate of its own ([`query::key_gate`]) for each key whose
/// lookalikes the shared one leaves open, where that closes some of them
/// and opens none. The returned gate's `open` lists what stays open.
fn query_gates(
    ts: &TaskSet,
    k: usize,
    r: &Residual,
    states: &[SparseVec<Rat>],
    open: &[usize],
    keyed: &[bool],
) -> (query::QueryGate, HashMap<TokenId, SparseVec<Rat>>) {
    let mut shared = query::query_gate(ts, k, states, open, keyed);
    let mut own: HashMap<TokenId, SparseVec<Rat>> = HashMap::new();
    // What each key's own gate leaves open.
    let mut own_left: HashMap<TokenId, Vec<usize>> = HashMap::new();
    for &(key, _) in &ts.tasks[k].pairs {
        let Some(dir) = r.entity(key) else { continue };
        let with_key: Vec<usize> = shared
            .open
            .iter()
            .map(|(q, _)| *q)
            .filter(|&q| ts.prefixes[q].tokens.contains(&key))
            .collect();
        if with_key.is_empty() {
            continue;
        }
        let g = query::key_gate(ts, k, dir, states, open, keyed);
        let left: Vec<usize> = g.open.iter().map(|(q, _)| *q).collect();
        if left.len() < with_key.len() && left.iter().all(|q| with_key.contains(q)) {
            for (q, why) in g.open {
                if let Some((_, text)) = shared.open.iter_mut().find(|(p, _)| *p == q) {
                    text.push_str(&why);
                }
            }
            own.insert(key, g.psi);
            own_left.insert(key, left);
        }
    }
    let keys: Vec<TokenId> = ts.tasks[k].pairs.iter().map(|&(a, _)| a).collect();
    // A lookalike stays open while the gate of a key of k it holds leaves
    // it open.
    shared.open.retain(|(q, _)| {
        ts.prefixes[*q]
            .tokens
            .iter()
            .any(|t| keys.contains(t) && own_left.get(t).is_none_or(|left| left.contains(q)))
    });
    (shared, own)
}

/// The neurons of circuit C(k), appended to `neurons`; returns the circuit.
fn circuit(
    ts: &TaskSet,
    k: usize,
    d: &DenseResidual,
    margins: &Margins,
    states: &[SparseVec<Rat>],
    form: CircuitForm,
    neurons: &mut Vec<Neuron<Rat>>,
) -> Circuit<Rat> {
    let r = &d.residual;
    let task = &ts.tasks[k];
    let word = |t: usize| ts.vocab.name(t).to_string();
    let (gate, proj, points, correction) = gate_and_projection(ts, k, d, margins, states);
    // The split form where the ramp form leaves a lookalike open: indicator
    // neurons per pattern, and the gate that keeps Ψ_k ≥ 0 on what it cannot
    // close for the semantic neurons (they read no key of k there).
    let split = form == CircuitForm::Split && !gate.unexcluded.is_empty();
    let gate = if split {
        gate::synthesize(ts, k, r, &d.entities, states, &GiveUp::Relax(Rat::zero()))
    } else {
        gate
    };
    let gate = &gate;
    // s_k − c: c vanishes on k's prefixes (see `separate`).
    let s_read = proj.read(r).add_scaled(
        &int(-1),
        &correction.add_scaled(&-correction.get(r.one), &SparseVec::unit(r.one)),
    );
    let s_constant = -correction.get(r.one);
    // Head 1's weights are ≥ 0 and sum to 1, and one position is on, so
    // s_k ≤ max(max r, 0) + max c.
    let max_r = proj
        .symbol_weight
        .values()
        .max()
        .cloned()
        .unwrap_or_else(BigInt::zero)
        .max(BigInt::zero());
    let max_c = proj
        .position_offset
        .iter()
        .max()
        .cloned()
        .unwrap_or_default();
    // Every coordinate is at most 1 in magnitude, so |c| ≤ ‖c‖₁.
    let c_norm: Rat = correction.entries().iter().map(|(_, v)| v.abs()).sum();
    let s_max = Rat::from_integer(max_r + max_c) + c_norm;
    let t0 = &points[0].0 - int(1);
    // The largest ungated pre-activation a neuron can see anywhere: s_k −
    // t_0 for a syntactic one, L·h2:a for a semantic one.
    let f_syn = &s_max - &t0;
    let f_sem = int(ts.max_len as i64);

    // Γ_k's constant term becomes a large negative bias (−G·Γ_k(one)); the
    // rest is the task evidence each neuron reads.
    let constant = gate.read.get(r.one);
    let evidence = gate
        .read
        .add_scaled(&-constant.clone(), &SparseVec::unit(r.one));
    // Off-task Γ_k ≥ δ, so G·δ must cover the largest input a neuron sees.
    let gated = |read: SparseVec<Rat>, bias: Rat, f_max: &Rat| {
        let g = ((f_max + int(1)) / &gate.floor).ceil();
        let read = read.add_scaled(&-g.clone(), &evidence);
        let bias = bias - &g * &constant;
        (read, bias, g)
    };

    let mut members = Vec::new();
    let mut gate_weight = Vec::new();
    // Knots: (t_0, 0), then every pattern's (t_m, y_m).
    let mut knots: Vec<(Rat, Option<&pattern::Pattern>, SparseVec<Rat>)> =
        vec![(t0.clone(), None, SparseVec::default())];
    knots.extend(
        points
            .iter()
            .map(|(t, p, y)| (t.clone(), Some(p), y.clone())),
    );
    let mut previous_slope = SparseVec::default();
    let mut unexcluded: Vec<(String, String)> = Vec::new();
    let mut query_gate: Option<SparseVec<Rat>> = None;
    let mut key_gates: HashMap<TokenId, SparseVec<Rat>> = HashMap::new();
    let keys: Vec<TokenId> = task.pairs.iter().map(|&(a, _)| a).collect();
    let holds_a_key = |q: usize| ts.prefixes[q].tokens.iter().any(|t| keys.contains(t));
    // The ramp form whose syntactic neurons were moved off the lookalikes
    // the gate leaves open (Γ_k < δ there) keeps them silent, but a
    // semantic neuron still reads its key there: with shared keys such a
    // lookalike can hold one (`generate --shared-keys --seed 8`: task2's
    // "K1 → V5" fired on task4's "with K1 V0" at Γ = 0). Those get the
    // query gate too.
    let mut ramp_open: Vec<(usize, String)> = Vec::new();
    if !split && form == CircuitForm::Split {
        let open: Vec<usize> = (0..ts.prefixes.len())
            .filter(|&q| {
                !ts.prefixes[q].tasks.contains(&k) && gate.read.dot(&states[q]) < gate.floor
            })
            .collect();
        let keyed: Vec<bool> = open.iter().map(|&q| holds_a_key(q)).collect();
        if keyed.iter().any(|&b| b) {
            let (q, own_gates) = query_gates(ts, k, r, states, &open, &keyed);
            key_gates = own_gates;
            ramp_open = q
                .open
                .iter()
                .map(|(p, why)| {
                    (
                        *p,
                        format!(
                            "the gate of {} does not close it and it holds a key of {}, so that key's semantic neuron is not kept off it{why}",
                            task.name, task.name
                        ),
                    )
                })
                .collect();
            query_gate = Some(q.psi);
        }
    }
    if split {
        let interpolation_points = expert::interpolation(ts, k, r, margins).1;
        let budget = ts.max_len * task.templates.len();
        let shown =
            indicator::indicators(ts, k, r, &d.entities, states, &interpolation_points, budget);
        for (m, ind) in shown.into_iter().enumerate() {
            members.push(neurons.len());
            gate_weight.push(Rat::zero());
            let on = if ind.prefixes.is_empty() {
                format!("pattern \"{}\"", pattern::render(&ind.pattern, word))
            } else {
                indicator::render_prefixes(ts, &ind.prefixes)
            };
            neurons.push(Neuron {
                name: format!("{}/syn{m}: {on}, indicator", task.name),
                role: NeuronRole::Syntactic,
                read: ind.read,
                bias: ind.bias,
                write: ind.write,
            });
            unexcluded.extend(
                ind.open
                    .into_iter()
                    .map(|(q, why)| (ts.render(&ts.prefixes[q].tokens), why)),
            );
        }
        // A semantic neuron reads its key besides the gate: where Γ_k = 0
        // off D(k) it fires only if that key is there. Then the semantic
        // neurons get a query gate too (see [`super::query`]).
        let open: Vec<usize> = gate.unexcluded.iter().map(|u| u.prefix).collect();
        let keyed: Vec<bool> = open.iter().map(|&q| holds_a_key(q)).collect();
        if keyed.iter().any(|&b| b) {
            let (q, own_gates) = query_gates(ts, k, r, states, &open, &keyed);
            key_gates = own_gates;
            for u in &gate.unexcluded {
                if let Some((_, why)) = q.open.iter().find(|(p, _)| *p == u.prefix) {
                    unexcluded.push((
                        ts.render(&ts.prefixes[u.prefix].tokens),
                        format!(
                            "{}; it holds a key of {}, so that key's semantic neuron is not kept off it{why}",
                            u.reason, task.name
                        ),
                    ));
                }
            }
            query_gate = Some(q.psi);
        }
    }
    // Every syntactic neuron reads s_k gated by the same G: its read (the
    // gate's L-bit evidence times G, added to s_k) is computed once, not
    // once per neuron (700 neurons of 1,000 words: a quadratic binary gcd
    // per coordinate each); its bias is s_k's constant − t_m − G·Γ_k(one).
    let syntactic = gated(s_read.clone(), Rat::zero(), &f_syn);
    for m in 0..if split { 0 } else { knots.len() - 1 } {
        let (t_m, p_m, y_m) = &knots[m];
        let (t_next, _, y_next) = &knots[m + 1];
        let slope = y_next.add_scaled(&int(-1), y_m).map(|v| v / (t_next - t_m));
        let write = slope.add_scaled(&int(-1), &previous_slope);
        let at = match p_m {
            Some(p) => format!("s(\"{}\")", pattern::render(p, word)),
            None => format!(
                "s(\"{}\") − 1",
                pattern::render(knots[1].1.expect("a pattern"), word)
            ),
        };
        let (read, shift, g) = syntactic.clone();
        let bias = &s_constant - t_m + shift;
        members.push(neurons.len());
        gate_weight.push(g);
        neurons.push(Neuron {
            name: format!("{}/syn{m}: s ≥ {at}, gated", task.name),
            role: NeuronRole::Syntactic,
            read,
            bias,
            write,
        });
        previous_slope = slope;
    }

    // The query gate: L·h2:a − (L+1)·(B·Γ_k + Ψ_Q), B = ⌈(‖Ψ_Q‖₁ + 1)/δ⌉,
    // so that B·Γ_k + Ψ_Q ≥ 1 wherever Γ_k ≥ δ (see [`super::query`]).
    let query_read_of = |psi: &SparseVec<Rat>| {
        let norm: Rat = psi.entries().iter().map(|(_, v)| v.abs()).sum();
        let b = ((norm + int(1)) / &gate.floor).ceil();
        let l1 = f_sem.clone() + int(1);
        let g = &l1 * &b;
        let c = psi.get(r.one);
        let read = psi
            .add_scaled(&-c.clone(), &SparseVec::unit(r.one))
            .map(|v| -v * &l1);
        (read, -&l1 * &c, g)
    };
    let query_read = query_gate.as_ref().map(query_read_of);
    for &(key, value) in &task.pairs {
        let dir = r.entity(key).unwrap_or(r.one);
        let own = SparseVec::from_entries([(dir, int(ts.max_len as i64))]);
        let own_read = key_gates.get(&key).map(query_read_of);
        let (read, bias, g, gated_by) = match own_read.as_ref().or(query_read.as_ref()) {
            None => {
                let (read, bias, g) = gated(own, Rat::zero(), &f_sem);
                (read, bias, g, "gated")
            }
            Some((q_read, q_bias, g)) => {
                let read = own
                    .add_scaled(&int(1), q_read)
                    .add_scaled(&-g.clone(), &evidence);
                let bias = q_bias - g * &constant;
                (read, bias, g.clone(), "gated, query-gated")
            }
        };
        members.push(neurons.len());
        gate_weight.push(g);
        neurons.push(Neuron {
            name: format!(
                "{}/sem: {} → {}, {gated_by}",
                task.name,
                word(key),
                word(value)
            ),
            role: NeuronRole::Semantic,
            read,
            bias,
            write: SparseVec::from_entries([(r.out[value], margins.semantic.clone())]),
        });
    }
    if !split {
        unexcluded = gate
            .unexcluded
            .iter()
            .map(|u| (ts.render(&ts.prefixes[u.prefix].tokens), u.reason.clone()))
            .chain(
                ramp_open
                    .into_iter()
                    .filter(|(q, _)| gate.unexcluded.iter().all(|u| u.prefix != *q))
                    .map(|(q, why)| (ts.render(&ts.prefixes[q].tokens), why)),
            )
            .collect();
    }
    Circuit {
        name: task.name.clone(),
        neurons: members,
        gate: gate.read.clone(),
        gate_weight,
        unexcluded,
    }
}

/// Build the dense model for a task set.
pub fn build_dense(ts: &TaskSet, options: &Options) -> Model<Rat> {
    dense_on(ts, options, DenseResidual::new(ts))
}

/// [`build_dense`], refused (with the estimate and the limit) when the
/// hidden states it is built from would not fit in memory.
pub fn try_build_dense(ts: &TaskSet, options: &Options) -> Result<Model<Rat>, String> {
    let d = DenseResidual::new(ts);
    check_fits(ts, &d)?;
    Ok(dense_on(ts, options, d))
}

/// The dense model on its residual.
fn dense_on(ts: &TaskSet, options: &Options, d: DenseResidual) -> Model<Rat> {
    let r = &d.residual;
    let m = ts.most_tasks_sharing_a_pair();
    let margins = Margins::new(ts.vocab.len(), ts.max_len, &options.epsilon).dense(m, ts.max_len);
    let mut heads = attention::heads(ts, r);
    extend_key_head(&mut heads[1], ts, &d);

    let states = d.hidden_states(ts);
    // Each circuit depends only on its own task (and every prefix's state):
    // built in parallel, then numbered in task order.
    let built: Vec<(Vec<Neuron<Rat>>, Circuit<Rat>)> = (0..ts.tasks.len())
        .into_par_iter()
        .map(|k| {
            let mut own = Vec::new();
            let c = circuit(ts, k, &d, &margins, &states, options.circuit, &mut own);
            (own, c)
        })
        .collect();
    let mut neurons = Vec::new();
    let circuits = built
        .into_iter()
        .map(|(own, mut c)| {
            let first = neurons.len();
            for n in &mut c.neurons {
                *n += first;
            }
            neurons.extend(own);
            c
        })
        .collect();

    let router = no_router(r.basis.len());
    let ffn = Expert {
        name: "ffn".into(),
        neurons,
        output_bias: SparseVec::default(),
    };
    super::assemble(ts, d.residual, heads, router, vec![ffn], circuits)
}

/// The dense model's router: one FFN, nothing to choose.
fn no_router(width: usize) -> Router<Rat> {
    Router {
        inputs: vec![],
        weights: LinearMap::zero(width, 1),
        bias: vec![Rat::zero()],
        synthesis: Synthesis::given(true, "nothing (the dense model has one FFN)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::build_moe;
    use crate::eval::forward;
    use crate::spec;
    use num_traits::{One, Zero};
    use std::path::Path;

    fn load(name: &str) -> TaskSet {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("constructions")
            .join(name);
        TaskSet::from_spec(&spec::load(&path).unwrap())
    }

    /// On a 130-word template (393 prefixes, 256 of them sampled) the
    /// estimate is within a factor 2 of what `hidden_states` really holds.
    #[test]
    fn the_hidden_state_estimate_matches_what_the_states_hold() {
        let ts = crate::fixtures::one_long_template(130, 40);
        let d = DenseResidual::new(&ts);
        let (estimate, per_prefix) = estimate_bytes(&ts, &d);
        let held: u128 = d.hidden_states(&ts).iter().map(held_bytes).sum();
        assert!(ts.prefixes.len() > MEMORY_SAMPLE, "{}", ts.prefixes.len());
        assert!(
            held <= 2 * estimate && estimate <= 2 * held,
            "estimate {estimate}, held {held}"
        );
        let n = ts.prefixes.len() as u128;
        assert!(per_prefix * n <= estimate && estimate < (per_prefix + 1) * n);
        // Head 1's 130-bit weights dominate: past 40 words a state holds
        // 40 of them, at least 40 · 2 · 24 bytes of limbs.
        assert!(per_prefix > 40 * 2 * 24, "{per_prefix}");
    }

    /// The refusal compares the estimate with the limit and names both: a
    /// limit one byte below the estimate refuses, the estimate itself fits.
    #[test]
    fn hidden_states_over_the_limit_are_refused_with_both_numbers() {
        let ts = crate::fixtures::task_set("random_seed1.toml");
        let d = DenseResidual::new(&ts);
        let (estimate, _) = estimate_bytes(&ts, &d);
        let estimate = u64::try_from(estimate).unwrap();
        assert!(estimate > 0);
        assert_eq!(check_fits_within(&ts, &d, estimate), Ok(()));
        // The message itself: `taskset::check_sampled_fits`'s test.
        let e = check_fits_within(&ts, &d, estimate - 1).unwrap_err();
        let show = crate::taskset::show_bytes;
        let subject = format!("the {} prefixes' hidden states", ts.prefixes.len());
        assert!(e.contains(&subject), "{e}");
        assert!(
            e.contains(&format!("about {}", show(u128::from(estimate)))),
            "{e}"
        );
    }

    #[test]
    fn circuits_are_the_experts_plus_a_ramp_and_stay_within_the_bound() {
        let ts = load("running_example.toml");
        let model = build_dense(&ts, &Options::default());
        assert_eq!(model.kind(), "dense");
        assert_eq!(model.experts.len(), 1);
        let sizes: Vec<(&str, usize)> = model
            .circuits
            .iter()
            .map(|c| (c.name.as_str(), c.neurons.len()))
            .collect();
        // located_in: 7 patterns → 7 ramp/interpolation neurons + 3 pairs;
        // spoken_in: 6 + 3 = 9 = L·|T(k)| + |Δk|, exactly at the bound.
        assert_eq!(sizes, [("located_in", 10), ("spoken_in", 9)]);
        assert_eq!(model.experts[0].neurons.len(), 19);
        assert!(model.experts[0].output_bias.entries().is_empty());
        // The first neuron ramps up from 0 one unit below the first pattern.
        assert!(
            model.experts[0].neurons[0]
                .name
                .starts_with("located_in/syn0: s ≥ s(\"⋆1\") − 1, gated"),
            "{}",
            model.experts[0].neurons[0].name
        );
        // A gated semantic neuron, by name: task evidence (k's symbols and
        // entities, 441 = G·A with G = L + 1 = 7, A = 2^6 − 1) and a large
        // negative bias cancel exactly on located_in's prefixes, leaving
        // 6·h2:Paris.
        assert_eq!(
            model.explain_neuron(0, 7),
            "located_in/sem: Paris → France, gated: ReLU(h1:{entity}=441, h1:is=441, h1:in=441, h1:located=441, h2:Paris=6, h2:{entity}=-441, h2:{key of located_in}=441, h2:{value of located_in}=441 + -441) -> out:France=18"
        );
        for (c, circuit) in model.circuits.iter().enumerate() {
            for &n in &circuit.neurons {
                assert_eq!(model.circuit_of(n), Some(c));
            }
            assert!(circuit.unexcluded.is_empty());
        }
    }

    #[test]
    fn closed_form_hidden_state_is_what_the_weights_compute() {
        for file in [
            "running_example.toml",
            "shared_keys.toml",
            "random_seed2.toml",
        ] {
            let ts = load(file);
            let d = DenseResidual::new(&ts);
            let model = build_dense(&ts, &Options::default());
            for p in &ts.prefixes {
                let trace = forward(&model, &p.tokens).unwrap();
                assert_eq!(
                    trace.hidden,
                    d.hidden_state(&p.tokens),
                    "{file}: {}",
                    ts.render(&p.tokens)
                );
            }
        }
        // Head 2 counts entities and tells keys from values.
        let ts = load("running_example.toml");
        let model = build_dense(&ts, &Options::default());
        let t = forward(&model, &ts.tokenize("Paris is in France").unwrap()).unwrap();
        let named = model.describe(&t.heads[1], &model.heads[1].values);
        assert_eq!(
            named,
            "Paris=1/4, France=1/4, {entity}=1/2, {key of located_in}=1/4, {value of located_in}=1/4, {value of spoken_in}=1/4"
        );
    }

    /// Γ_k is exactly 0 on every prefix of task k and positive on every
    /// other prefix: every gate closes where it must.
    #[test]
    fn gates_vanish_on_their_task_and_close_elsewhere() {
        for file in [
            "running_example.toml",
            "shared_keys.toml",
            "random_seed1.toml",
            "random_seed2.toml",
        ] {
            let ts = load(file);
            let d = DenseResidual::new(&ts);
            let model = build_dense(&ts, &Options::default());
            for (k, circuit) in model.circuits.iter().enumerate() {
                assert!(circuit.unexcluded.is_empty(), "{file} {}", circuit.name);
                for p in &ts.prefixes {
                    let g = circuit.gate.dot(&d.hidden_state(&p.tokens));
                    if p.tasks.contains(&k) {
                        assert!(
                            g.is_zero(),
                            "{file} {}: {}",
                            circuit.name,
                            ts.render(&p.tokens)
                        );
                    } else {
                        assert!(
                            g > Rat::zero(),
                            "{file} {}: {}",
                            circuit.name,
                            ts.render(&p.tokens)
                        );
                    }
                }
            }
        }
    }

    /// On the XOR-like set no functional vanishes on alpha's prefixes and is
    /// positive on both of beta's crossed openings (h(red big) + h(blue
    /// small) = h(red small) + h(blue big)), nor does any projection put
    /// both below alpha's patterns: each gate closes one and names the
    /// identity that rules out the other.
    #[test]
    fn xor_like_openings_cannot_be_gated() {
        let ts = load("xor_expected_failure.toml");
        let ramp = Options {
            circuit: CircuitForm::Ramp,
            ..Options::default()
        };
        let model = build_dense(&ts, &ramp);
        let unexcluded: Vec<(&str, Vec<&str>)> = model
            .circuits
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.unexcluded.iter().map(|(p, _)| p.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            unexcluded,
            [("alpha", vec!["red small"]), ("beta", vec!["red big"])]
        );
        let (_, reason) = &model.circuits[0].unexcluded[0];
        assert!(
            reason.starts_with(
                "no gate linear in the hidden state can close it: h(\"red small\") + h(\"blue big\") = h(\"red big\") + h(\"blue small\")"
            ),
            "{reason}"
        );
        assert!(
            reason.contains("nor can alpha's syntactic neurons be moved off it"),
            "{reason}"
        );
    }

    /// The split form on the XOR-like set: each circuit's syntactic part is
    /// one indicator per pattern with a nonzero target, and on every prefix
    /// exactly the indicator of its own pattern (per task it belongs to)
    /// fires, with pre-activation 1; no gate is left open.
    #[test]
    fn split_circuits_fire_one_indicator_per_prefix_on_the_xor_set() {
        let ts = load("xor_expected_failure.toml");
        let model = build_dense(&ts, &Options::default());
        let ffn = &model.experts[0];
        for c in &model.circuits {
            assert!(c.unexcluded.is_empty(), "{}: {:?}", c.name, c.unexcluded);
            let syn = c
                .neurons
                .iter()
                .filter(|&&n| ffn.neurons[n].role == NeuronRole::Syntactic)
                .count();
            // 12 patterns each, 2 of them with ⋆2 next (target 0).
            assert_eq!(syn, 10, "{}", c.name);
            assert!(ffn.neurons[c.neurons[0]].name.ends_with(", indicator"));
        }
        for p in &ts.prefixes {
            let trace = forward(&model, &p.tokens).unwrap();
            let pattern = indicator::pattern_of(&ts, &p.tokens);
            let shown = pattern::render(&pattern, |t| ts.vocab.name(t).to_string());
            let mut fired_tasks = Vec::new();
            for (n, a) in &trace.firing {
                let k = model.circuit_of(*n).unwrap();
                assert!(
                    p.tasks.contains(&k),
                    "{}: {}",
                    ts.render(&p.tokens),
                    ffn.neurons[*n].name
                );
                if ffn.neurons[*n].role == NeuronRole::Syntactic {
                    assert!(a.is_one());
                    assert!(
                        ffn.neurons[*n]
                            .name
                            .contains(&format!("pattern \"{shown}\""))
                    );
                    fired_tasks.push(k);
                }
            }
            // ⋆2 next: no indicator; otherwise one per task of the prefix.
            let next_value = ts.render(&p.tokens).ends_with("to");
            if !next_value {
                fired_tasks.sort();
                let tasks: Vec<usize> = p.tasks.iter().copied().collect();
                assert_eq!(fired_tasks, tasks, "{}", ts.render(&p.tokens));
            }
        }
    }

    /// Where one task claims a prefix, only its circuit fires, and it
    /// computes exactly what the MoE model's expert computes (also where
    /// the syntactic neurons were moved: their correction vanishes there).
    #[test]
    fn dense_logits_equal_the_moe_logits_on_unambiguous_prefixes() {
        for file in [
            "running_example.toml",
            "shared_keys.toml",
            "random_seed2.toml",
            "dense_gate_needs_separating_projection.toml",
        ] {
            let ts = if file.starts_with("dense_gate") {
                regression(file)
            } else {
                load(file)
            };
            let dense = build_dense(&ts, &Options::default());
            let moe = build_moe(&ts, &Options::default());
            let mut compared = 0;
            for p in ts.prefixes.iter().filter(|p| !p.is_ambiguous()) {
                let a = forward(&dense, &p.tokens).unwrap();
                let b = forward(&moe, &p.tokens).unwrap();
                assert_eq!(
                    a.logits.nonzero,
                    b.logits.nonzero,
                    "{file}: {}",
                    ts.render(&p.tokens)
                );
                let k = *p.tasks.first().unwrap();
                assert!(
                    a.firing
                        .iter()
                        .all(|(n, _)| dense.circuit_of(*n) == Some(k))
                );
                compared += 1;
            }
            assert_eq!(compared, ts.prefixes.len() - ts.ambiguous());
        }
    }

    /// The index of the prefix that renders as `text`.
    fn index_of(ts: &TaskSet, text: &str) -> usize {
        ts.prefixes
            .iter()
            .position(|p| ts.render(&p.tokens) == text)
            .unwrap()
    }

    fn regression(name: &str) -> TaskSet {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/regressions")
            .join(name);
        TaskSet::from_spec(&spec::load(&path).unwrap())
    }

    /// The exact gate synthesis: Γ_k = 0 on every prefix of k, at least δ
    /// on every other prefix it closes, δ > 0, and (relaxed) at least 0 on
    /// those it cannot close.
    #[test]
    fn exact_gates_vanish_on_their_task_and_reach_delta_elsewhere() {
        let mut closed = 0;
        for ts in [
            regression("dense_gate_perceptron_misses_lookalike.toml"),
            regression("dense_gate_needs_separating_projection.toml"),
            load("random_seed1.toml"),
            load("xor_expected_failure.toml"),
        ] {
            let d = DenseResidual::new(&ts);
            let states = d.hidden_states(&ts);
            for k in 0..ts.tasks.len() {
                for mode in [GiveUp::Drop, GiveUp::Relax(Rat::zero())] {
                    let g = gate::synthesize(&ts, k, &d.residual, &d.entities, &states, &mode);
                    assert!(g.floor > Rat::zero());
                    for (q, (p, x)) in ts.prefixes.iter().zip(&states).enumerate() {
                        let v = g.read.dot(x);
                        if p.tasks.contains(&k) {
                            assert!(v.is_zero(), "{}", ts.render(&p.tokens));
                        } else if g.unexcluded.iter().any(|u| u.prefix == q) {
                            if mode != GiveUp::Drop {
                                assert!(v >= Rat::zero(), "{}", ts.render(&p.tokens));
                            }
                        } else {
                            assert!(v >= g.floor, "{}", ts.render(&p.tokens));
                            closed += 1;
                        }
                    }
                }
            }
        }
        assert!(closed > 0);
    }

    /// The perceptron's Ψ_k missed the lookalike "w40" of task3 (task2's
    /// opening); the exact LP closes it, and the dense model verifies.
    #[test]
    fn the_exact_lp_closes_what_the_perceptron_missed() {
        let ts = regression("dense_gate_perceptron_misses_lookalike.toml");
        let d = DenseResidual::new(&ts);
        let states = d.hidden_states(&ts);
        let w40 = index_of(&ts, "w40");
        let g = gate::synthesize(&ts, 1, &d.residual, &d.entities, &states, &GiveUp::Drop);
        assert_eq!(g.lookalikes, [w40]);
        assert!(g.unexcluded.is_empty());
        assert!(g.read.dot(&states[w40]) >= Rat::one());
        let model = build_dense(&ts, &Options::default());
        assert!(model.circuits.iter().all(|c| c.unexcluded.is_empty()));
    }

    /// "w43 w43" (task3) is a combination of task1's hidden states, so no
    /// gate vanishing on task1 can close it: the identity says which. A
    /// projection s_k that puts it below every pattern of task1 keeps
    /// task1's syntactic neurons off there instead.
    #[test]
    fn a_lookalike_in_the_span_is_left_to_the_projection() {
        let ts = regression("dense_gate_needs_separating_projection.toml");
        let d = DenseResidual::new(&ts);
        let states = d.hidden_states(&ts);
        let q = index_of(&ts, "w43 w43");
        let g = gate::synthesize(&ts, 0, &d.residual, &d.entities, &states, &GiveUp::Drop);
        assert_eq!(g.unexcluded.len(), 1);
        assert_eq!(g.unexcluded[0].prefix, q);
        assert!(g.read.dot(&states[q]).is_zero());
        assert_eq!(g.unexcluded[0].reason, IDENTITY);
        let model = build_dense(&ts, &Options::default());
        assert!(model.circuits.iter().all(|c| c.unexcluded.is_empty()));
        // Every syntactic neuron of C(task1) is at most −1 on "w43 w43"
        // (moved below it), every semantic one at most 0 (Γ = 0, no key).
        let trace = forward(&model, &ts.prefixes[q].tokens).unwrap();
        for &n in &model.circuits[0].neurons {
            let neuron = &model.experts[0].neurons[n];
            let pre = neuron.read.dot(&trace.hidden) + &neuron.bias;
            let bound = match neuron.role {
                NeuronRole::Syntactic => -Rat::one(),
                NeuronRole::Semantic => Rat::zero(),
            };
            assert!(pre <= bound, "{}: {pre}", neuron.name);
        }
    }

    /// h("w43 w43") = h("called called") + h("w43") − h("called"), on every
    /// coordinate: positions, head 1, current token.
    const IDENTITY: &str = "no gate linear in the hidden state can close it: h(\"w43 w43\") = −h(\"called\") + h(\"called called\") + h(\"w43\"), prefixes of task1 on the right, so every functional that vanishes on task1's prefixes vanishes here";
}
