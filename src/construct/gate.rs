//! The task gate of the dense model: a linear function Γ_k of the hidden
//! state that is exactly 0 on every prefix of task k and at least δ > 0
//! (1 unless a lookalike sets it lower) on every other prefix of the task
//! set.
//!
//! Every neuron of circuit C(k) subtracts G·Γ_k from its pre-activation
//! (G sized so that ReLU stays at 0 once Γ_k ≥ δ): on the task's own
//! prefixes the circuit computes exactly what expert k of the MoE model
//! computes, everywhere else it is silent. Γ_k = A·Φ_k + Ψ_k:
//!
//! - Φ_k, *foreign evidence*: the head-1 mass of symbols that no template of
//!   k uses, 1 − Σ_{σ ∈ Σ_k} h1:σ (head 1's weights sum to 1), plus the
//!   head-2 mass of entities outside Δk, h2:{entity} − h2:{key of k} −
//!   h2:{value of k}. Both are exactly 0 on the prefixes of k and at least
//!   1/(2^L − 1) on any prefix with a foreign token (the smallest head-1
//!   weight is 2/(2^{L+1} − 2); a head-2 weight is 1/i ≥ 1/L). Evidence
//!   only ever closes a gate: an entity of k seen in another task's key
//!   slot is not foreign, and is left to Ψ_k.
//! - Ψ_k, for the *lookalikes*: prefixes of other tasks made only of k's
//!   words and entities (a shared opening such as "from in", or one of k's
//!   values in another task's key slot). Ψ_k is a functional of the exact
//!   nullspace of k's hidden states (so it vanishes on every prefix of k),
//!   positive on the lookalikes: a margin perceptron in f64 proposes it
//!   (its free coordinates rounded, the exact functional checked exactly),
//!   and where that leaves a lookalike open the exact LP of
//!   [`super::exclusion`] decides, over every coordinate of the hidden
//!   state. A lookalike no functional can reach (the λ-weighted lookalikes
//!   lie in the span of k's states, as with XOR-like templates: h(red big) +
//!   h(blue small) = h(red small) + h(blue big)) is recorded with that
//!   identity; the dense model then tries to move its syntactic neurons off
//!   it ([`super::separate`]).
//! - A = ⌈(2^L − 1)(‖Ψ_k‖₁ + 1)⌉: every read coordinate is at most 1 in
//!   magnitude, so |Ψ_k| ≤ ‖Ψ_k‖₁ and A·Φ_k outweighs it wherever a foreign
//!   token appears.

pub use super::exclusion::GiveUp;
use super::exclusion::{self, Bound, Identity, Nullspace};
use super::residual::Residual;
use crate::model::SparseVec;
use crate::scalar::{Rat, Scalar, int};
use crate::taskset::{TaskSet, TokenKind};
use nalgebra::{DMatrix, DVector};
use num_bigint::BigInt;
use num_traits::{One, Signed, Zero};
use std::collections::{BTreeSet, HashSet};

/// Perceptron epochs before gate synthesis settles for its current Ψ_k.
const MAX_EPOCHS: usize = 2000;

/// Head-2 directions the dense model adds for its gates.
#[derive(Debug, Clone)]
pub struct EntityDirs {
    /// h2:{entity}: the number of entities in the prefix over i.
    pub count: usize,
    /// h2:{key of k}: occurrences of k's keys over i.
    pub keys: Vec<usize>,
    /// h2:{value of k}: occurrences of k's values that are not also keys of
    /// k, over i.
    pub values: Vec<usize>,
}

impl EntityDirs {
    /// The directions head 2 writes for token t beyond its own h2:t.
    pub fn written_by(&self, ts: &TaskSet, t: usize) -> Vec<usize> {
        if ts.vocab.kind(t) != TokenKind::Entity {
            return vec![];
        }
        let mut dirs = vec![self.count];
        for (k, task) in ts.tasks.iter().enumerate() {
            let key = task.pairs.iter().any(|&(a, _)| a == t);
            let value = task.pairs.iter().any(|&(_, b)| b == t);
            if key {
                dirs.push(self.keys[k]);
            } else if value {
                dirs.push(self.values[k]);
            }
        }
        dirs
    }
}

/// The gate of one task.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Γ_k as a read vector over the residual (`one` holds the constant);
    /// integer weights.
    pub read: SparseVec<Rat>,
    /// δ: Γ_k ≥ δ on every prefix outside D(k) that it excludes (1, or the
    /// smallest positive Ψ_k on a lookalike).
    pub floor: Rat,
    /// Prefixes of other tasks without a foreign token on which no Ψ_k can
    /// be positive: the gate stays open there.
    pub unexcluded: Vec<Unexcluded>,
    /// The lookalike prefixes Ψ_k had to exclude (indices into
    /// `ts.prefixes`).
    pub lookalikes: Vec<usize>,
}

/// Tokens of task k: its template words and its keys and values.
fn own_tokens(ts: &TaskSet, k: usize) -> Vec<bool> {
    let mut own = vec![false; ts.vocab.len()];
    let task = &ts.tasks[k];
    for template in &task.templates {
        for slot in &template.slots {
            if let crate::taskset::Slot::Word(w) = slot {
                own[*w] = true;
            }
        }
    }
    for &(a, b) in &task.pairs {
        own[a] = true;
        own[b] = true;
    }
    own
}

/// The template words of task k.
fn own_words(ts: &TaskSet, k: usize) -> Vec<usize> {
    own_tokens(ts, k)
        .into_iter()
        .enumerate()
        .filter(|&(t, own)| own && ts.vocab.kind(t) == TokenKind::Word)
        .map(|(t, _)| t)
        .collect()
}

/// The read coordinates Ψ_k may use: `one`, every position, head 1 on k's
/// symbols, the head-2 entity features of k, and the current token when it
/// is one of k's words. Each is at most 1 in magnitude on every prefix.
fn psi_coordinates(ts: &TaskSet, k: usize, r: &Residual, e: &EntityDirs) -> Vec<usize> {
    let mut dirs: BTreeSet<usize> = BTreeSet::new();
    dirs.insert(r.one);
    dirs.extend(&r.pos);
    dirs.insert(r.h1_entity);
    dirs.extend([e.count, e.keys[k], e.values[k]]);
    for t in own_words(ts, k) {
        dirs.insert(r.h1[t]);
        dirs.insert(r.tok[t]);
    }
    dirs.into_iter().collect()
}

/// Φ_k as a read vector.
fn foreign_evidence(ts: &TaskSet, k: usize, r: &Residual, e: &EntityDirs) -> SparseVec<Rat> {
    let mut symbols: BTreeSet<usize> = BTreeSet::new();
    symbols.insert(r.h1_entity);
    symbols.extend(own_words(ts, k).into_iter().map(|t| r.h1[t]));
    SparseVec::from_entries(
        [
            (r.one, int(1)),
            (e.count, int(1)),
            (e.keys[k], int(-1)),
            (e.values[k], int(-1)),
        ]
        .into_iter()
        .chain(symbols.into_iter().map(|d| (d, int(-1)))),
    )
}

/// A direction, in f64, along which every lookalike scores at least 1:
/// a margin perceptron on the lookalikes projected onto an orthonormal
/// basis of the nullspace (nalgebra QR), unit-normalised so that no single
/// lookalike's scale dominates. Lookalikes with no component outside the
/// task's span cannot be excluded by any functional and are skipped.
fn direction(null: &Nullspace, lookalikes: &[Vec<f64>]) -> Vec<f64> {
    let r = null.free.len();
    let columns: Vec<Vec<f64>> = null.free.iter().map(|&f| null.basis_f64(f)).collect();
    let n = DMatrix::from_fn(null.dims, r, |i, j| columns[j][i]);
    let q = n.qr().q();
    let samples: Vec<DVector<f64>> = lookalikes
        .iter()
        .map(|x| q.tr_mul(&DVector::from_column_slice(x)))
        .filter(|u| u.norm() > 1e-9)
        .map(|u| u.normalize())
        .collect();
    let mut w = DVector::<f64>::zeros(q.ncols());
    for _ in 0..MAX_EPOCHS {
        let mut updated = false;
        for u in &samples {
            if w.dot(u) < 1.0 {
                w += u;
                updated = true;
            }
        }
        if !updated {
            break;
        }
    }
    (q * w).as_slice().to_vec()
}

/// A prefix of another task that Γ_k cannot close, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unexcluded {
    /// Index into `ts.prefixes`.
    pub prefix: usize,
    /// The identity between hidden states that rules every linear gate out,
    /// in words.
    pub reason: String,
}

/// `c·h("prefix")` terms joined by signs; at most `SHOWN` terms are named.
pub(crate) fn linear_text(terms: &[(String, Rat)]) -> String {
    const SHOWN: usize = 8;
    let mut text = String::new();
    for (i, (name, c)) in terms.iter().take(SHOWN).enumerate() {
        let sign = if c.is_negative() { "−" } else { "+" };
        match (i, c.is_negative()) {
            (0, false) => {}
            (0, true) => text.push('−'),
            _ => text.push_str(&format!(" {sign} ")),
        }
        let a = c.abs();
        if !a.is_one() {
            text.push_str(&format!("{a}·"));
        }
        text.push_str(&format!("h(\"{name}\")"));
    }
    if terms.len() > SHOWN {
        text.push_str(&format!(" + … ({} terms in all)", terms.len()));
    }
    if text.is_empty() {
        text.push('0');
    }
    text
}

/// The two sides of an identity, in words: the λ-weighted prefixes of the
/// bounds on the left (bound `first` first, with weight 1), the zero rows'
/// prefixes on the right. `bound_prefix` and `row_prefix` map bounds and
/// zero rows to indices into `ts.prefixes`.
pub(crate) fn identity_text(
    ts: &TaskSet,
    first: usize,
    id: &Identity,
    bound_prefix: &[usize],
    row_prefix: &[usize],
) -> (String, String, usize) {
    let own = id
        .bounds
        .iter()
        .find(|(t, _)| *t == first)
        .map_or_else(Rat::one, |(_, l)| l.clone());
    let render = |p: usize| ts.render(&ts.prefixes[p].tokens);
    let left: Vec<(String, Rat)> = id
        .bounds
        .iter()
        .filter(|(t, _)| *t == first)
        .chain(id.bounds.iter().filter(|(t, _)| *t != first))
        .map(|(t, l)| (render(bound_prefix[*t]), l / &own))
        .collect();
    let right: Vec<(String, Rat)> = id
        .rows
        .iter()
        .map(|(r, n)| (render(row_prefix[*r]), n / &own))
        .collect();
    (linear_text(&left), linear_text(&right), left.len())
}

/// Why no Ψ_k closes lookalike `q` (a bound of the exclusion LP), in words.
fn circuit_reason(
    ts: &TaskSet,
    k: usize,
    q: usize,
    id: &Identity,
    lookalikes: &[usize],
    rows: &[usize],
) -> String {
    let (lhs, rhs, terms) = identity_text(ts, q, id, lookalikes, rows);
    let task = &ts.tasks[k].name;
    if terms == 1 {
        format!(
            "no gate linear in the hidden state can close it: {lhs} = {rhs}, prefixes of {task} on the right, so every functional that vanishes on {task}'s prefixes vanishes here"
        )
    } else {
        format!(
            "no gate linear in the hidden state can close it: {lhs} = {rhs}, lookalikes of {task} on the left and its prefixes on the right, so every functional that vanishes on {task}'s prefixes sums to 0 over the left side and cannot be positive on all of it"
        )
    }
}

/// Ψ_k decided exactly: over every coordinate that is nonzero on a prefix
/// of k or a lookalike (the others are 0 on both and cannot help), the
/// functional that vanishes on D(k) and is at least 1 on as many lookalikes
/// as [`exclusion::exclude`] can reach, with the identity that rules out
/// each one it gives up.
fn exact_psi(
    ts: &TaskSet,
    k: usize,
    states: &[SparseVec<Rat>],
    lookalikes: &[usize],
    give_up: &GiveUp,
) -> (SparseVec<Rat>, Vec<Unexcluded>) {
    let own: Vec<usize> = (0..ts.prefixes.len())
        .filter(|&p| ts.prefixes[p].tasks.contains(&k))
        .collect();
    let coords: Vec<usize> = own
        .iter()
        .chain(lookalikes)
        .flat_map(|&p| states[p].entries().iter().map(|(c, _)| *c))
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    let dense = |x: &SparseVec<Rat>| -> Vec<Rat> { coords.iter().map(|&c| x.get(c)).collect() };
    // Distinct states of k's prefixes, each named by its first prefix.
    let mut seen: HashSet<Vec<Rat>> = HashSet::new();
    let mut rows = Vec::new();
    let mut names = Vec::new();
    for &p in &own {
        let row = dense(&states[p]);
        if seen.insert(row.clone()) {
            rows.push(row);
            names.push(p);
        }
    }
    // Ψ ≥ 1 on as many lookalikes as one functional can reach.
    let bounds: Vec<Bound> = lookalikes
        .iter()
        .map(|&q| Bound {
            x: dense(&states[q]),
            at_least: Rat::one(),
            give_up: give_up.clone(),
        })
        .collect();
    let found = exclusion::exclude(&rows, &bounds, coords.len());
    let psi = SparseVec::from_entries(coords.iter().copied().zip(found.psi));
    let unexcluded = found
        .given_up
        .iter()
        .map(|(q, id)| Unexcluded {
            prefix: lookalikes[*q],
            reason: circuit_reason(ts, k, *q, id, lookalikes, &names),
        })
        .collect();
    (psi, unexcluded)
}

/// Ψ_k proposed in f64 and made exact: the margin perceptron's direction in
/// the nullspace of k's states over `psi_coordinates`, its free coordinates
/// rounded to multiples of 2^-20, and the exact nullspace functional with
/// those coordinates (0 on D(k) whatever the rounding), scaled so that the
/// least excluded lookalike scores about 1.
fn proposed_psi(
    ts: &TaskSet,
    k: usize,
    r: &Residual,
    e: &EntityDirs,
    states: &[SparseVec<Rat>],
    lookalikes: &[usize],
) -> SparseVec<Rat> {
    let coords = psi_coordinates(ts, k, r, e);
    let restrict = |x: &SparseVec<Rat>| -> Vec<Rat> { coords.iter().map(|&c| x.get(c)).collect() };
    // Distinct restricted states of the task's own prefixes.
    let mut seen: HashSet<Vec<Rat>> = HashSet::new();
    let rows: Vec<Vec<Rat>> = ts
        .prefixes
        .iter()
        .zip(states)
        .filter(|(p, _)| p.tasks.contains(&k))
        .map(|(_, x)| restrict(x))
        .filter(|row| seen.insert(row.clone()))
        .collect();
    let null = Nullspace::new(&rows, coords.len());
    if null.free.is_empty() {
        return SparseVec::default();
    }
    let seen_f64: Vec<Vec<f64>> = lookalikes
        .iter()
        .map(|&q| restrict(&states[q]).iter().map(f64::from_rat).collect())
        .collect();
    let d = direction(&null, &seen_f64);
    let grid = f64::from(1u32 << 20);
    let z: Vec<Rat> = null
        .free
        .iter()
        .map(|&f| {
            Rat::new(
                BigInt::from((d[f] * grid).round() as i64),
                BigInt::from(1u32 << 20),
            )
        })
        .collect();
    let psi = SparseVec::from_entries(coords.iter().copied().zip(null.complete(&z)));
    // Rescale so the least excluded lookalike scores about 1 (by an
    // integer, to keep the weights' denominators small).
    let least = lookalikes
        .iter()
        .map(|&q| psi.dot(&states[q]))
        .filter(|v| *v >= Rat::one())
        .min();
    match least {
        Some(least) => {
            let by = least.floor();
            psi.map(|v| v / &by)
        }
        None => psi,
    }
}

/// Synthesise Γ_k from the exact hidden states of every prefix (`states`,
/// in the order of `ts.prefixes`). `give_up` says what the exact LP does
/// with a lookalike it cannot reach: `Drop` it (Ψ_k is then free there, and
/// the most lookalikes are closed), or `Relax` it to Ψ_k ≥ 0 (fewer are
/// closed, but every neuron that reads nothing else of it, such as a
/// semantic neuron of a key it lacks, stays off there; the dense model then
/// moves the syntactic neurons out of its way, see [`super::separate`]).
pub fn synthesize(
    ts: &TaskSet,
    k: usize,
    r: &Residual,
    e: &EntityDirs,
    states: &[SparseVec<Rat>],
    give_up: &GiveUp,
) -> Gate {
    let phi = foreign_evidence(ts, k, r, e);
    let own = own_tokens(ts, k);
    let lookalikes: Vec<usize> = ts
        .prefixes
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.tasks.contains(&k) && p.tokens.iter().all(|&t| own[t]))
        .map(|(i, _)| i)
        .collect();

    let mut psi = SparseVec::default();
    let mut unexcluded = Vec::new();
    // δ: the least value of Γ_k outside D(k) (1 unless a lookalike sets it).
    let mut floor = Rat::one();
    if !lookalikes.is_empty() {
        // The perceptron proposes (small denominators, and it is enough on
        // most task sets); where it leaves a lookalike open, the exact LP
        // over every coordinate decides.
        psi = proposed_psi(ts, k, r, e, states, &lookalikes);
        if lookalikes
            .iter()
            .any(|&q| psi.dot(&states[q]) <= Rat::zero())
        {
            (psi, unexcluded) = exact_psi(ts, k, states, &lookalikes, give_up);
        }
        if let Some(least) = lookalikes
            .iter()
            .map(|&q| psi.dot(&states[q]))
            .filter(|v| *v > Rat::zero())
            .min()
        {
            floor = floor.min(least);
        }
    }

    let norm: Rat = psi.entries().iter().map(|(_, v)| v.abs()).sum();
    let a = (Rat::from_integer((BigInt::one() << ts.max_len) - 1) * (norm + Rat::one())).ceil();
    let read = psi.add_scaled(&a, &phi);
    Gate {
        read,
        floor,
        unexcluded,
        lookalikes,
    }
}
