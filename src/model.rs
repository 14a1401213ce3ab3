//! The weights of a one-layer transformer on named bases.
//!
//! As in tracr, every residual coordinate is a typed, named direction
//! ([`Direction`]: "tok:Paris", "pos:3", "h1:is", "h2:Paris", "out:France",
//! "keys:capital") and every
//! weight matrix is a sparse linear map between named spaces. This is the
//! only thing `construct` hands to `eval`: the forward pass sees weights and
//! names, never the spec.

mod direction;
mod error;
mod view;

pub use direction::{Direction, ENTITY_SYMBOL, EntityFeature};
pub use error::EvalError;
pub use view::{LookupError, NeuronGroup, NeuronView};

use crate::scalar::{Rat, Scalar};
use std::collections::HashMap;

/// An ordered set of typed basis directions, each with a unique name (its
/// display): the residual stream's [`Direction`]s, or a head's slots (all
/// [`Direction::Named`]).
#[derive(Debug, Clone, Default)]
pub struct Basis {
    directions: Vec<Direction>,
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Basis {
    /// Add a direction (or return the existing one of that name); a string
    /// adds a [`Direction::Named`].
    pub fn add(&mut self, direction: impl Into<Direction>) -> usize {
        let direction = direction.into();
        let name = direction.to_string();
        if let Some(&i) = self.index.get(&name) {
            return i;
        }
        self.directions.push(direction);
        self.names.push(name.clone());
        self.index.insert(name, self.names.len() - 1);
        self.names.len() - 1
    }

    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The coordinate of a direction, if the basis has it.
    pub fn find(&self, direction: &Direction) -> Option<usize> {
        self.get(&direction.to_string())
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// What coordinate `i` means.
    pub fn direction(&self, i: usize) -> &Direction {
        &self.directions[i]
    }

    /// Every direction, in coordinate order.
    pub fn directions(&self) -> &[Direction] {
        &self.directions
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A sparse vector: sorted (coordinate, nonzero value) entries.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseVec<S> {
    entries: Vec<(usize, S)>,
}

impl<S> Default for SparseVec<S> {
    fn default() -> Self {
        SparseVec {
            entries: Vec::new(),
        }
    }
}

impl<S: Scalar> SparseVec<S> {
    /// Build from (coordinate, value) pairs; repeated coordinates add up and
    /// zeros are dropped.
    pub fn from_entries(entries: impl IntoIterator<Item = (usize, S)>) -> Self {
        let mut raw: Vec<(usize, S)> = entries.into_iter().collect();
        raw.sort_by_key(|(i, _)| *i);
        let mut out: Vec<(usize, S)> = Vec::with_capacity(raw.len());
        for (i, v) in raw {
            match out.last_mut() {
                Some((j, acc)) if *j == i => *acc = acc.clone() + v,
                _ => out.push((i, v)),
            }
        }
        out.retain(|(_, v)| !v.is_zero());
        SparseVec { entries: out }
    }

    pub fn unit(i: usize) -> Self {
        SparseVec {
            entries: vec![(i, S::one())],
        }
    }

    pub fn entries(&self) -> &[(usize, S)] {
        &self.entries
    }

    pub fn get(&self, i: usize) -> S {
        self.entries
            .binary_search_by_key(&i, |(j, _)| *j)
            .map_or_else(|_| S::zero(), |at| self.entries[at].1.clone())
    }

    pub fn nnz(&self) -> usize {
        self.entries.len()
    }

    /// Inner product (merge of two sorted lists).
    pub fn dot(&self, other: &Self) -> S {
        let (mut a, mut b) = (0, 0);
        let mut pairs = Vec::new();
        while a < self.entries.len() && b < other.entries.len() {
            let (i, j) = (self.entries[a].0, other.entries[b].0);
            if i == j {
                pairs.push((&self.entries[a].1, &other.entries[b].1));
                a += 1;
                b += 1;
            } else if i < j {
                a += 1;
            } else {
                b += 1;
            }
        }
        S::sum_of_products(pairs.into_iter())
    }

    /// self + c · other, by a linear merge of the two sorted lists.
    pub fn add_scaled(&self, c: &S, other: &Self) -> Self {
        let (a, b) = (&self.entries, &other.entries);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let take_a = j == b.len() || (i < a.len() && a[i].0 < b[j].0);
            let take_b = i == a.len() || (j < b.len() && b[j].0 < a[i].0);
            if take_a {
                out.push(a[i].clone());
                i += 1;
            } else if take_b {
                out.push((b[j].0, c.clone() * b[j].1.clone()));
                j += 1;
            } else {
                let v = a[i].1.clone() + c.clone() * b[j].1.clone();
                if !v.is_zero() {
                    out.push((a[i].0, v));
                }
                i += 1;
                j += 1;
            }
        }
        out.retain(|(_, v)| !v.is_zero());
        SparseVec { entries: out }
    }

    pub fn map<T: Scalar>(&self, f: impl Fn(&S) -> T) -> SparseVec<T> {
        SparseVec::from_entries(self.entries.iter().map(|(i, v)| (*i, f(v))))
    }
}

/// A sparse linear map between two spaces, stored by input column: column c
/// lists the outputs that input coordinate c writes to. Applying it to a
/// sparse vector touches only the columns the vector uses.
#[derive(Debug, Clone)]
pub struct LinearMap<S> {
    pub in_dim: usize,
    pub out_dim: usize,
    columns: Vec<SparseVec<S>>,
}

impl<S: Scalar> LinearMap<S> {
    pub fn zero(in_dim: usize, out_dim: usize) -> Self {
        LinearMap {
            in_dim,
            out_dim,
            columns: vec![SparseVec::default(); in_dim],
        }
    }

    /// Add `w` to the weight from input `input` to output `output`.
    pub fn add(&mut self, output: usize, input: usize, w: S) {
        let col = &mut self.columns[input].entries;
        match col.binary_search_by_key(&output, |(r, _)| *r) {
            Ok(at) => {
                col[at].1 = col[at].1.clone() + w;
                if col[at].1.is_zero() {
                    col.remove(at);
                }
            }
            Err(at) if !w.is_zero() => col.insert(at, (output, w)),
            Err(_) => {}
        }
    }

    /// What input coordinate `input` writes.
    pub fn column(&self, input: usize) -> &SparseVec<S> {
        &self.columns[input]
    }

    /// The weight from `input` to `output`.
    pub fn get(&self, output: usize, input: usize) -> S {
        self.columns[input].get(output)
    }

    /// W x as a dense vector of `out_dim` values: for maps into a small
    /// space (the router's one score per expert), accumulating in place
    /// beats sorting a list of products.
    /// Each output is one [`Scalar::sum_of_products`] over its terms, in
    /// the order of x's coordinates (so f64 sums in the same order as
    /// before; exact sums need no gcd per term).
    pub fn apply_dense(&self, x: &SparseVec<S>) -> Vec<S> {
        let mut rows: Vec<Vec<(&S, &S)>> = vec![Vec::new(); self.out_dim];
        for (c, xc) in x.entries() {
            for (r, w) in self.columns[*c].entries() {
                rows[*r].push((w, xc));
            }
        }
        rows.into_iter()
            .map(|terms| S::sum_of_products(terms.into_iter()))
            .collect()
    }

    pub fn apply(&self, x: &SparseVec<S>) -> SparseVec<S> {
        SparseVec::from_entries(x.entries().iter().flat_map(|(c, xc)| {
            self.columns[*c]
                .entries()
                .iter()
                .map(move |(r, w)| (*r, w.clone() * xc.clone()))
        }))
    }

    pub fn nnz(&self) -> usize {
        self.columns.iter().map(SparseVec::nnz).sum()
    }

    pub fn map<T: Scalar>(&self, f: &impl Fn(&S) -> T) -> LinearMap<T> {
        LinearMap {
            in_dim: self.in_dim,
            out_dim: self.out_dim,
            columns: self.columns.iter().map(|c| c.map(f)).collect(),
        }
    }
}

/// How an attention score becomes an unnormalised weight.
///
/// routecert's constructions keep scores in units of ln 2 (weight 2^score,
/// exact for integer scores); a model file written for PyTorch folds the ln 2
/// into W_Q and uses natural exp, as does any weight file read back from
/// elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoreUnit {
    /// weight ∝ 2^score.
    #[default]
    Ln2,
    /// weight ∝ e^score (softmax as in PyTorch).
    Natural,
}

/// One attention head. Scores are q·k in the model's [`ScoreUnit`], causal:
/// position i attends to positions 1..=i.
#[derive(Debug, Clone)]
pub struct Head<S> {
    pub name: String,
    /// Names of the query/key space.
    pub qk: Basis,
    /// Names of the value space.
    pub values: Basis,
    pub query: LinearMap<S>,
    pub key: LinearMap<S>,
    pub value: LinearMap<S>,
    /// W_O: value space → residual.
    pub output: LinearMap<S>,
}

/// Which part of the model an FFN neuron belongs to, in the paper's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeuronRole {
    /// I_k: predicts the next template word.
    Syntactic,
    /// I'_k: associative recall over Δk.
    Semantic,
}

/// One ReLU neuron: ReLU(read · x + bias) · write.
#[derive(Debug, Clone)]
pub struct Neuron<S> {
    pub name: String,
    pub role: NeuronRole,
    pub read: SparseVec<S>,
    pub bias: S,
    pub write: SparseVec<S>,
}

/// One expert: a ReLU feed-forward block.
#[derive(Debug, Clone)]
pub struct Expert<S> {
    pub name: String,
    pub neurons: Vec<Neuron<S>>,
    /// The second-layer bias, added whenever this expert is chosen.
    pub output_bias: SparseVec<S>,
}

impl<S> Expert<S> {
    pub fn count(&self, role: NeuronRole) -> usize {
        self.neurons.iter().filter(|n| n.role == role).count()
    }
}

/// How the router's weights were found; for messages only, never for verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synthesis {
    pub converged: bool,
    pub epochs: usize,
    /// Prefixes the synthesised router got wrong on its own training data.
    pub misrouted: usize,
    /// Of those, prefixes that share their exact router input with a prefix
    /// of a disjoint set of tasks: no router over this input can route them.
    pub forced: usize,
    /// The residual directions the router may read, as a phrase.
    pub reads: String,
    /// Which synthesis found the weights ("perceptron", "exact LP",
    /// "max-margin", or why max-margin fell back): `export` reports it and
    /// config.json keeps it, so a fallback is never silent.
    pub method: String,
}

impl Synthesis {
    /// The record of a router found by training: whether it converged, in
    /// how many epochs, and what it still misroutes (of which `forced`).
    pub fn trained(
        converged: bool,
        epochs: usize,
        misrouted: usize,
        forced: usize,
        reads: impl Into<String>,
    ) -> Synthesis {
        Synthesis {
            converged,
            epochs,
            misrouted,
            forced,
            reads: reads.into(),
            method: String::new(),
        }
    }

    /// The same record, saying which synthesis found the weights.
    pub fn by(self, method: impl Into<String>) -> Synthesis {
        Synthesis {
            method: method.into(),
            ..self
        }
    }

    /// The record of router weights given rather than trained (a closed
    /// form, an LP's solution, a file): no epochs, nothing counted misrouted.
    pub fn given(converged: bool, reads: impl Into<String>) -> Synthesis {
        Synthesis::trained(converged, 0, 0, 0, reads)
    }
}

/// The linear top-1 router G(x) = W_G x + b.
#[derive(Debug, Clone)]
pub struct Router<S> {
    /// The residual directions the router may read (its input subspace);
    /// its weights are zero elsewhere.
    pub inputs: Vec<usize>,
    /// Residual → one score per expert.
    pub weights: LinearMap<S>,
    pub bias: Vec<S>,
    pub synthesis: Synthesis,
}

/// A circuit of the dense model (Theorem 4.1): the FFN neurons of one task,
/// C(k), and the task evidence Γ_k that gates them.
///
/// Every neuron of C(k) reads −G·Γ_k(x) on top of its own input (G its
/// `gate_weight`), where Γ_k is designed to be exactly 0 on every prefix of
/// the task and at least 1 on every other prefix: off-task, the neuron's
/// pre-activation is pushed below zero. Eval never reads this; the verifier
/// uses `neurons` to mask the model to M_C, and `inspect` shows Γ_k.
#[derive(Debug, Clone)]
pub struct Circuit<S> {
    /// The task's name.
    pub name: String,
    /// Indices into the FFN's neurons (`experts[0]`).
    pub neurons: Vec<usize>,
    /// Γ_k as a read vector over the residual stream (`one` carries its
    /// constant term).
    pub gate: SparseVec<S>,
    /// G per neuron of `neurons`, in the same order.
    pub gate_weight: Vec<S>,
    /// Prefixes of other tasks that gate synthesis could not exclude, each
    /// with the reason (for messages only: the verifier decides from the
    /// forward pass).
    pub unexcluded: Vec<(String, String)>,
}

/// The model: embeddings, two heads with W_O onto their own blocks, a
/// router, experts, and the unembedding. The MoE model (Theorem 4.2) has one
/// expert per task; the dense model (Theorem 4.1) has a single FFN (one
/// expert, a router with nothing to choose) split into `circuits`.
#[derive(Debug, Clone)]
pub struct Model<S> {
    /// Token names; the model's input alphabet.
    pub vocab: Vec<String>,
    /// The residual stream's typed directions ([`Direction`]).
    pub residual: Basis,
    /// Position embeddings exist for positions 1..=max_len.
    pub max_len: usize,
    pub token_embed: Vec<SparseVec<S>>,
    /// pos_embed[i - 1] is the embedding of position i.
    pub pos_embed: Vec<SparseVec<S>>,
    pub heads: Vec<Head<S>>,
    pub router: Router<S>,
    pub experts: Vec<Expert<S>>,
    /// W_U: residual → logits, one per token.
    pub unembed: LinearMap<S>,
    /// The dense model's circuits, one per task; empty for the MoE model.
    pub circuits: Vec<Circuit<S>>,
    /// How attention scores become weights (constructions: ln 2).
    pub score_unit: ScoreUnit,
}

impl<S: Scalar> Model<S> {
    pub fn token(&self, name: &str) -> Option<usize> {
        self.vocab.iter().position(|t| t == name)
    }

    /// The same weights in another arithmetic.
    pub fn map<T: Scalar>(&self, f: impl Fn(&S) -> T) -> Model<T> {
        let f = &f;
        let vecs = |v: &[SparseVec<S>]| v.iter().map(|x| x.map(f)).collect();
        Model {
            vocab: self.vocab.clone(),
            residual: self.residual.clone(),
            max_len: self.max_len,
            token_embed: vecs(&self.token_embed),
            pos_embed: vecs(&self.pos_embed),
            heads: self
                .heads
                .iter()
                .map(|h| Head {
                    name: h.name.clone(),
                    qk: h.qk.clone(),
                    values: h.values.clone(),
                    query: h.query.map(f),
                    key: h.key.map(f),
                    value: h.value.map(f),
                    output: h.output.map(f),
                })
                .collect(),
            router: Router {
                inputs: self.router.inputs.clone(),
                weights: self.router.weights.map(f),
                bias: self.router.bias.iter().map(f).collect(),
                synthesis: self.router.synthesis.clone(),
            },
            experts: self
                .experts
                .iter()
                .map(|e| Expert {
                    name: e.name.clone(),
                    neurons: e
                        .neurons
                        .iter()
                        .map(|n| Neuron {
                            name: n.name.clone(),
                            role: n.role,
                            read: n.read.map(f),
                            bias: f(&n.bias),
                            write: n.write.map(f),
                        })
                        .collect(),
                    output_bias: e.output_bias.map(f),
                })
                .collect(),
            unembed: self.unembed.map(f),
            circuits: self
                .circuits
                .iter()
                .map(|c| Circuit {
                    name: c.name.clone(),
                    neurons: c.neurons.clone(),
                    gate: c.gate.map(f),
                    gate_weight: c.gate_weight.iter().map(f).collect(),
                    unexcluded: c.unexcluded.clone(),
                })
                .collect(),
            score_unit: self.score_unit,
        }
    }

    /// "moe" or "dense", as reports print it.
    pub fn kind(&self) -> &'static str {
        if self.circuits.is_empty() {
            "moe"
        } else {
            "dense"
        }
    }

    /// The paper's M_C for circuit `c` of the dense model: every FFN neuron
    /// outside the circuit zeroed (read, bias and write), so it contributes
    /// ReLU(0)·0 = 0. Indices stay as they were.
    pub fn masked_to(&self, c: usize) -> Model<S> {
        let mut masked = self.clone();
        let keep: std::collections::HashSet<usize> =
            self.circuits[c].neurons.iter().copied().collect();
        for expert in &mut masked.experts {
            for (n, neuron) in expert.neurons.iter_mut().enumerate() {
                if !keep.contains(&n) {
                    neuron.read = SparseVec::default();
                    neuron.bias = S::zero();
                    neuron.write = SparseVec::default();
                }
            }
        }
        masked
    }

    /// The circuit a neuron of the FFN belongs to, if any.
    pub fn circuit_of(&self, neuron: usize) -> Option<usize> {
        self.circuits
            .iter()
            .position(|c| c.neurons.contains(&neuron))
    }

    /// A sparse vector as "name=value" terms, largest magnitude first.
    pub fn describe(&self, v: &SparseVec<S>, basis: &Basis) -> String {
        v.entries()
            .iter()
            .map(|(i, x)| format!("{}={}", basis.name(*i), x.show()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What neuron `n` of expert `e` reads and writes, by name.
    pub fn explain_neuron(&self, e: usize, n: usize) -> String {
        let neuron = &self.experts[e].neurons[n];
        format!(
            "{}: ReLU({} + {}) -> {}",
            neuron.name,
            self.describe(&neuron.read, &self.residual),
            neuron.bias.show(),
            self.describe(&neuron.write, &self.residual)
        )
    }
}

impl Model<Rat> {
    /// The model in f64.
    pub fn to_f64(&self) -> Model<f64> {
        self.map(<f64 as Scalar>::from_rat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::{int, rat};

    #[test]
    fn sparse_vectors_add_and_drop_zeros() {
        let a = SparseVec::from_entries([(3, int(2)), (1, int(1)), (3, int(-2))]);
        assert_eq!(a.entries(), &[(1, int(1))]);
        let b = SparseVec::from_entries([(1, int(4)), (5, rat(1, 2))]);
        assert_eq!(a.dot(&b), int(4));
        let c = a.add_scaled(&int(-1), &b);
        assert_eq!(c.entries(), &[(1, int(-3)), (5, rat(-1, 2))]);
        assert_eq!(c.get(5), rat(-1, 2));
        assert_eq!(c.get(2), int(0));
    }

    #[test]
    fn linear_maps_apply_by_column() {
        let mut m = LinearMap::zero(3, 2);
        m.add(0, 0, int(2));
        m.add(1, 2, int(3));
        m.add(1, 2, int(1));
        let x = SparseVec::from_entries([(0, int(1)), (2, rat(1, 2))]);
        assert_eq!(m.apply(&x).entries(), &[(0, int(2)), (1, int(2))]);
        assert_eq!(m.get(1, 2), int(4));
        assert_eq!(m.nnz(), 2);
    }

    #[test]
    fn basis_names_round_trip() {
        let mut b = Basis::default();
        let i = b.add(Direction::Token("Paris".into()));
        assert_eq!(b.add("tok:Paris"), i);
        assert_eq!(b.get("tok:Paris"), Some(i));
        assert_eq!(b.name(i), "tok:Paris");
        assert_eq!(b.direction(i), &Direction::Token("Paris".into()));
        let j = b.add("resid.7");
        assert_eq!(b.direction(j), &Direction::Named("resid.7".into()));
        assert_eq!(b.find(&Direction::Token("Paris".into())), Some(i));
        assert_eq!(b.len(), 2);
    }
}
