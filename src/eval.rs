//! Stage 4: the forward pass, computed from the weights alone.
//!
//! A' = MHA(A) + A at the last position, the router picks the top-1 expert
//! e* = argmax G(A'), A'' = FF_{e*}(A') + A', logits = W_U A''. Generic over
//! the arithmetic; every product is a sparse product over the real weights.
//! Eval never sees the spec, the task set or the intended answer.

pub mod dense;
pub mod float;

pub use crate::model::EvalError;
use crate::model::{Head, LinearMap, Model, ScoreUnit, SparseVec};
use crate::scalar::{Scalar, softmax_mix};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Logits over the whole vocabulary, stored sparsely: every token not listed
/// has logit exactly zero (W_U has no bias, and those tokens' rows met no
/// nonzero residual coordinate).
#[derive(Debug, Clone)]
pub struct Logits<S> {
    pub vocab_size: usize,
    pub nonzero: SparseVec<S>,
}

impl<S: Scalar> Logits<S> {
    pub fn get(&self, token: usize) -> S {
        self.nonzero.get(token)
    }

    /// Distinct logit values with how many tokens of `select` carry each one;
    /// tokens at zero are counted without being listed.
    pub fn histogram(&self, select: impl Fn(usize) -> bool, selected: usize) -> Vec<(S, usize)> {
        let mut values: Vec<(S, usize)> = Vec::new();
        let mut listed = 0;
        for (t, z) in self.nonzero.entries() {
            if select(*t) {
                listed += 1;
                match values.iter_mut().find(|(v, _)| v == z) {
                    Some(slot) => slot.1 += 1,
                    None => values.push((z.clone(), 1)),
                }
            }
        }
        if selected > listed {
            values.push((S::zero(), selected - listed));
        }
        values
    }
}

/// Everything the forward pass computed for one prefix, for verification and
/// for `inspect`.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    /// Each head's output in its own value basis.
    pub heads: Vec<SparseVec<S>>,
    /// Each head's attention weights over positions 1..=i; empty from an
    /// evaluator not built [`Evaluator::with_attention_weights`] (no
    /// verdict reads them, and at long templates forming them costs more
    /// than the head's output).
    pub attention: Vec<Vec<S>>,
    /// A' = MHA(A) + A at the last position: the router's and experts' input.
    pub hidden: SparseVec<S>,
    pub router_scores: Vec<S>,
    /// e*: the first expert with the top router score.
    pub expert: usize,
    /// (neuron index in the expert, activation) for every neuron that fired.
    pub firing: Vec<(usize, S)>,
    /// read·A' + bias for every neuron of the chosen expert, fired or not:
    /// how far each silent neuron stayed below its threshold. Empty from an
    /// evaluator built [`Evaluator::without_preactivations`].
    pub preactivations: Vec<S>,
    /// A'' at the last position.
    pub output: SparseVec<S>,
    pub logits: Logits<S>,
}

/// Run the model on a token sequence and return the last position's trace.
/// For many prefixes of one model, build an [`Evaluator`] once instead.
pub fn forward<S: Scalar>(model: &Model<S>, tokens: &[usize]) -> Result<Trace<S>, EvalError> {
    Evaluator::new(model).with_attention_weights().run(tokens)
}

/// The attention part of a forward pass: each head's output (in its value
/// basis), its weights over positions, and A' at the last position.
pub struct Attended<S> {
    pub heads: Vec<SparseVec<S>>,
    pub attention: Vec<Vec<S>>,
    pub hidden: SparseVec<S>,
}

/// What one position contributes to every prefix that contains it. In a
/// one-layer model the input at position j is embed(t_j) + pos_j, so its
/// query, keys and values depend on (j, t_j) only: they are computed once
/// and shared by every prefix with token t_j at position j.
#[derive(Debug)]
struct Position<S> {
    input: SparseVec<S>,
    /// Per head: W_Q x, W_K x, W_V x.
    query: Vec<SparseVec<S>>,
    key: Vec<SparseVec<S>>,
    value: Vec<SparseVec<S>>,
}

/// What one expert's neurons give on one prefix (see
/// [`Evaluator::expert_terms`]).
struct FfnTerms<S> {
    written: Vec<(usize, S)>,
    firing: Vec<(usize, S)>,
    preactivations: Vec<S>,
}

/// The attention part of one prefix's forward pass and the router scores.
struct Routed<S> {
    attended: Attended<S>,
    router_scores: Vec<S>,
    expert: usize,
}

/// A run's neurons sorted by bias, largest first, with prefix sums of what
/// they write. All neurons of a run share the read vector, so neuron n
/// fires iff read + b_n > 0, i.e. iff b_n > −read: the firing neurons are
/// always the first M of this order (a binary search finds M), and together
/// they write Σ_{m<M} (read + b_m)·w_m = read·W_M + B_M, with
/// W_M = Σ_{m<M} w_m and B_M = Σ_{m<M} b_m·w_m precomputed from the weights.
/// The same number as the neuron-by-neuron sum, so this is used only in
/// exact arithmetic ([`Scalar::EXACT`]), where regrouping a sum changes
/// nothing. It turns an interpolation expert's O(n) firing neurons per
/// prefix, whose slope coefficients have pairwise different denominators
/// (so the running sum's denominator grew with every term), into a handful
/// of small operations: W_M is the interpolant's slope on the segment
/// and B_M its offset, both small rationals.
#[derive(Debug)]
struct RunSums<S> {
    /// Neuron indices, bias descending (ties by index).
    order: Vec<usize>,
    /// `weight[m]` = W_{m+1}, `offset[m]` = B_{m+1}.
    weight: Vec<SparseVec<S>>,
    offset: Vec<SparseVec<S>>,
}

impl<S: Scalar> RunSums<S> {
    /// Add read·W_M + B_M, what the run's M firing neurons write, to `out`.
    fn add_output(&self, neurons: &[crate::model::Neuron<S>], read: &S, out: &mut Vec<(usize, S)>) {
        let threshold = -read.clone();
        let m = self.order.partition_point(|&n| neurons[n].bias > threshold);
        if m == 0 {
            return;
        }
        if !read.is_zero() {
            out.extend(
                self.weight[m - 1]
                    .entries()
                    .iter()
                    .map(|(c, w)| (*c, read.clone() * w.clone())),
            );
        }
        out.extend(self.offset[m - 1].entries().iter().cloned());
    }
}

/// Prefix sums are kept for a run only while they hold at most this many
/// entries beyond 16 per entry of the run's own writes: a run whose neurons
/// write pairwise different coordinates would otherwise need n²/2 entries.
const SUMS_SLACK: usize = 4096;

impl<S: Scalar> RunSums<S> {
    fn build(neurons: &[crate::model::Neuron<S>], first: usize, end: usize) -> Option<Self> {
        if !S::EXACT || end - first < 2 {
            return None;
        }
        let mut order: Vec<usize> = (first..end).collect();
        order.sort_by(|&a, &b| {
            neurons[b]
                .bias
                .partial_cmp(&neurons[a].bias)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        });
        let own: usize = order.iter().map(|&n| neurons[n].write.nnz()).sum();
        let budget = 16 * own + SUMS_SLACK;
        let (mut weight, mut offset) = (Vec::with_capacity(order.len()), Vec::new());
        offset.reserve(order.len());
        let (mut w, mut b) = (SparseVec::default(), SparseVec::default());
        let mut held = 0;
        for &n in &order {
            w = w.add_scaled(&S::one(), &neurons[n].write);
            b = b.add_scaled(&neurons[n].bias, &neurons[n].write);
            held += w.nnz() + b.nnz();
            if held > budget {
                return None;
            }
            weight.push(w.clone());
            offset.push(b.clone());
        }
        Some(RunSums {
            order,
            weight,
            offset,
        })
    }
}

/// The forward pass of one model over many prefixes. Eval still reads only
/// the weights: the per-position table, the grouping of neurons and the
/// prefix sums of a run's writes ([`RunSums`]) are derived from them, and
/// each prefix gets exactly the numbers [`forward`]'s definition gives.
pub struct Evaluator<'m, S> {
    model: &'m Model<S>,
    /// Index j · |vocab| + t, filled on first use (from any thread); boxed,
    /// so that the table costs two words per (position, token) pair, most
    /// of which never occur (an entity only at a key's or value's place).
    positions: Vec<OnceLock<Box<Position<S>>>>,
    /// Per expert: runs of consecutive neurons with the same read vector
    /// (an expert's syntactic neurons all read its pattern scalar s and
    /// differ only in bias), as (first, end); read·A' is computed once a run.
    runs: Vec<Vec<(usize, usize)>>,
    /// Per expert: residual coordinate → the runs whose read vector uses it.
    /// A run no nonzero coordinate of A' touches reads exactly 0, so its
    /// neurons' pre-activations are their biases: with one semantic neuron
    /// per key–value pair, most of an expert is settled without a product,
    /// and without being visited at all (a prefix's cost does not grow with
    /// the number of pairs).
    readers: Vec<HashMap<usize, Vec<usize>>>,
    /// Per expert: the runs with a neuron of positive bias, the only runs
    /// that can fire when they read 0.
    positive_runs: Vec<Vec<usize>>,
    /// Per expert and run: the prefix sums of exact arithmetic, if kept.
    sums: Vec<Vec<Option<RunSums<S>>>>,
    /// Whether traces list every neuron's pre-activation (isolation and
    /// `inspect` need them; routing, P and A do not, and at a thousand
    /// neurons an expert, copying them dominates a prefix's cost).
    preactivations: bool,
    /// Whether traces list the firing neurons (`inspect` and the reports
    /// do; routing, P and A read only the logits, and with prefix sums the
    /// output is found without visiting each firing neuron).
    firing: bool,
    /// Whether traces list each head's attention weights.
    attention_weights: bool,
}

impl<'m, S: Scalar> Evaluator<'m, S> {
    pub fn new(model: &'m Model<S>) -> Self {
        // Per expert: its runs, the runs reading each coordinate, the runs
        // that can fire at read 0, and the runs' prefix sums.
        let (mut runs, mut readers, mut positive_runs, mut sums) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in &model.experts {
            let mut own: Vec<(usize, usize)> = Vec::new();
            for (n, neuron) in e.neurons.iter().enumerate() {
                match own.last_mut() {
                    Some((first, end)) if e.neurons[*first].read == neuron.read => *end = n + 1,
                    _ => own.push((n, n + 1)),
                }
            }
            let mut reading: HashMap<usize, Vec<usize>> = HashMap::new();
            for (r, &(first, _)) in own.iter().enumerate() {
                for (c, _) in e.neurons[first].read.entries() {
                    reading.entry(*c).or_default().push(r);
                }
            }
            positive_runs.push(
                own.iter()
                    .enumerate()
                    .filter(|(_, (first, end))| {
                        e.neurons[*first..*end].iter().any(|n| n.bias.is_positive())
                    })
                    .map(|(r, _)| r)
                    .collect(),
            );
            sums.push(
                own.iter()
                    .map(|&(first, end)| RunSums::build(&e.neurons, first, end))
                    .collect(),
            );
            readers.push(reading);
            runs.push(own);
        }
        Evaluator {
            model,
            readers,
            positive_runs,
            sums,
            preactivations: true,
            firing: true,
            attention_weights: false,
            positions: (0..model.max_len * model.vocab.len())
                .map(|_| OnceLock::new())
                .collect(),
            runs,
        }
    }

    /// Traces without `preactivations` (empty): only firing neurons are
    /// listed. Neurons of a run that reads 0 are then never visited unless
    /// their bias is positive.
    pub fn without_preactivations(mut self) -> Self {
        self.preactivations = false;
        self
    }

    /// Traces with each head's attention weights (`inspect`, [`forward`]).
    pub fn with_attention_weights(mut self) -> Self {
        self.attention_weights = true;
        self
    }

    /// Traces without `firing` (empty) nor `preactivations`: what routing,
    /// P and A need. A run with prefix sums then costs one product and a
    /// binary search, however many of its neurons fire.
    pub fn logits_only(mut self) -> Self {
        self.preactivations = false;
        self.firing = false;
        self
    }

    fn position(&self, j: usize, t: usize) -> Result<&Position<S>, EvalError> {
        let m = self.model;
        let embed = m.token_embed.get(t).ok_or(EvalError::UnknownToken(t))?;
        Ok(self.positions[j * m.vocab.len() + t].get_or_init(|| {
            Box::new({
                let input = embed.add_scaled(&S::one(), &m.pos_embed[j]);
                let each = |f: fn(&Head<S>) -> &LinearMap<S>| {
                    m.heads.iter().map(|h| f(h).apply(&input)).collect()
                };
                Position {
                    query: each(|h| &h.query),
                    key: each(|h| &h.key),
                    value: each(|h| &h.value),
                    input,
                }
            })
        }))
    }

    /// Run the model on a token sequence and return the last position's
    /// trace.
    pub fn run(&self, tokens: &[usize]) -> Result<Trace<S>, EvalError> {
        self.run_with(tokens, None)
    }

    /// The forward pass of the masked model M_C: every FFN neuron outside
    /// `keep` zeroed (read, bias and write), so it computes ReLU(0)·0 = 0 and
    /// its pre-activation is 0. Neurons outside `keep` are therefore not
    /// evaluated at all; no masked copy of the model is made.
    pub fn run_masked(&self, tokens: &[usize], keep: &[usize]) -> Result<Trace<S>, EvalError> {
        self.run_with(tokens, Some(keep))
    }

    /// A' = MHA(A) + A at the last position, with each head's output and
    /// attention weights: the part of the forward pass before the FFN (the
    /// dense evaluator of [`dense`] runs its own FFN on it).
    pub(crate) fn attend(&self, tokens: &[usize]) -> Result<Attended<S>, EvalError> {
        let model = self.model;
        let i = tokens.len();
        if i == 0 {
            return Err(EvalError::Empty);
        }
        if i > model.max_len {
            return Err(EvalError::TooLong {
                len: i,
                max: model.max_len,
            });
        }
        if model.experts.is_empty() {
            return Err(EvalError::NoExperts);
        }
        // A: token embedding + position embedding, at every position.
        let positions = tokens
            .iter()
            .enumerate()
            .map(|(j, &t)| self.position(j, t))
            .collect::<Result<Vec<_>, EvalError>>()?;
        let last = positions[i - 1];

        let mut hidden = last.input.clone();
        let mut head_outputs = Vec::with_capacity(model.heads.len());
        let mut attention = Vec::with_capacity(model.heads.len());
        for (h, head) in model.heads.iter().enumerate() {
            let q = &last.query[h];
            let scores: Vec<S> = positions.iter().map(|p| q.dot(&p.key[h])).collect();
            let values: Vec<&[(usize, S)]> =
                positions.iter().map(|p| p.value[h].entries()).collect();
            // Softmax in the model's unit. In units of ln 2 the arithmetic
            // may sum over the one denominator (exact: one integer sum per
            // output coordinate instead of L reduced fractions).
            let mix = match model.score_unit {
                ScoreUnit::Ln2 => S::softmax2_mix(&scores, &values, self.attention_weights)?,
                ScoreUnit::Natural => {
                    softmax_mix(&scores, &values, self.attention_weights, S::exp)?
                }
            };
            let out = SparseVec::from_entries(mix.entries);
            let weights = mix.weights;
            hidden = hidden.add_scaled(&S::one(), &head.output.apply(&out));
            head_outputs.push(out);
            attention.push(weights);
        }
        Ok(Attended {
            heads: head_outputs,
            attention,
            hidden,
        })
    }

    /// A' (with each head's output and attention weights) and the router
    /// scores G(A') = W_G A' + b: what the router sees, without running any
    /// expert.
    fn attend_and_route(&self, tokens: &[usize]) -> Result<Routed<S>, EvalError> {
        let attended = self.attend(tokens)?;

        // Top-1, first index on ties.
        let router_scores = self.router_scores(&attended.hidden);
        let mut expert = 0;
        for (e, s) in router_scores.iter().enumerate() {
            if *s > router_scores[expert] {
                expert = e;
            }
        }
        Ok(Routed {
            attended,
            router_scores,
            expert,
        })
    }

    /// The router scores G(A') = W_G A' + b.
    pub(crate) fn router_scores(&self, hidden: &SparseVec<S>) -> Vec<S> {
        let router = &self.model.router;
        router
            .weights
            .apply_dense(hidden)
            .into_iter()
            .zip(&router.bias)
            .map(|(g, b)| g + b.clone())
            .collect()
    }

    /// The FFN layer's output A' + Σ terms + output bias and the logits
    /// W_U·output at the last position.
    pub(crate) fn readout(
        &self,
        hidden: &SparseVec<S>,
        output_bias: &SparseVec<S>,
        written: impl IntoIterator<Item = (usize, S)>,
    ) -> (SparseVec<S>, Logits<S>) {
        let output = SparseVec::from_entries(
            hidden
                .entries()
                .iter()
                .chain(output_bias.entries())
                .cloned()
                .chain(written),
        );
        let logits = Logits {
            vocab_size: self.model.vocab.len(),
            nonzero: self.model.unembed.apply(&output),
        };
        (output, logits)
    }

    /// The router's view of a prefix only: A' and the router scores, with
    /// no expert or unembedding run (what router margins need).
    pub fn route(&self, tokens: &[usize]) -> Result<(SparseVec<S>, Vec<S>), EvalError> {
        let r = self.attend_and_route(tokens)?;
        Ok((r.attended.hidden, r.router_scores))
    }

    /// Expert `expert`'s neurons on A' = `hidden`: the (coordinate, value)
    /// terms of Σ ReLU(read·A' + bias)·write, the firing neurons when
    /// `list_firing`, every pre-activation when `list_pre`. Runs no
    /// coordinate of A' touches read exactly 0 and are visited only when
    /// they can fire at 0 (or pre-activations are listed).
    fn expert_terms(
        &self,
        expert: usize,
        hidden: &SparseVec<S>,
        list_firing: bool,
        list_pre: bool,
    ) -> FfnTerms<S> {
        let ffn = &self.model.experts[expert];
        let mut written: Vec<(usize, S)> = Vec::new();
        let mut firing = Vec::new();
        let mut preactivations = Vec::with_capacity(if list_pre { ffn.neurons.len() } else { 0 });
        let runs = &self.runs[expert];
        let mut touched: Vec<usize> = hidden
            .entries()
            .iter()
            .flat_map(|(c, _)| self.readers[expert].get(c).into_iter().flatten())
            .copied()
            .collect();
        touched.sort_unstable();
        touched.dedup();
        // Every run when pre-activations are listed; else only the
        // runs that read a nonzero coordinate or could fire at 0.
        let active: Vec<usize> = if list_pre {
            (0..runs.len()).collect()
        } else {
            let mut a: Vec<usize> = touched
                .iter()
                .chain(&self.positive_runs[expert])
                .copied()
                .collect();
            a.sort_unstable();
            a.dedup();
            a
        };
        for r in active {
            let (first, end) = runs[r];
            let read = if touched.binary_search(&r).is_ok() {
                ffn.neurons[first].read.dot(hidden)
            } else {
                S::zero()
            };
            let sums = self.sums[expert][r].as_ref();
            if list_pre || list_firing || sums.is_none() {
                let before = firing.len();
                for n in first..end {
                    let pre = read.clone() + ffn.neurons[n].bias.clone();
                    if pre.is_positive() {
                        firing.push((n, pre.clone()));
                    }
                    if list_pre {
                        preactivations.push(pre);
                    }
                }
                if sums.is_none() {
                    for (n, act) in &firing[before..] {
                        written.extend(
                            ffn.neurons[*n]
                                .write
                                .entries()
                                .iter()
                                .map(|(c, w)| (*c, act.clone() * w.clone())),
                        );
                    }
                }
                if !list_firing {
                    firing.truncate(before);
                }
            }
            if let Some(sums) = sums {
                sums.add_output(&ffn.neurons, &read, &mut written);
            }
        }
        FfnTerms {
            written,
            firing,
            preactivations,
        }
    }

    fn run_with(&self, tokens: &[usize], keep: Option<&[usize]>) -> Result<Trace<S>, EvalError> {
        let model = self.model;
        let Routed {
            attended:
                Attended {
                    heads: head_outputs,
                    attention,
                    hidden,
                },
            router_scores,
            expert,
        } = self.attend_and_route(tokens)?;

        // The chosen expert's FFN: Σ ReLU(read·A' + bias)·write + output bias.
        let ffn = &model.experts[expert];
        let mut firing = Vec::new();
        // (coordinate, value) terms of Σ ReLU(pre)·write, summed below.
        let mut written: Vec<(usize, S)> = Vec::new();
        let mut preactivations;
        match keep {
            None => {
                let terms = self.expert_terms(expert, &hidden, self.firing, self.preactivations);
                written = terms.written;
                firing = terms.firing;
                preactivations = terms.preactivations;
            }
            Some(keep) => {
                preactivations = vec![S::zero(); ffn.neurons.len()];
                let mut keep = keep.to_vec();
                keep.sort_unstable();
                keep.dedup();
                for n in keep.into_iter().filter(|&n| n < ffn.neurons.len()) {
                    let neuron = &ffn.neurons[n];
                    let pre = neuron.read.dot(&hidden) + neuron.bias.clone();
                    if pre.is_positive() {
                        written.extend(
                            neuron
                                .write
                                .entries()
                                .iter()
                                .map(|(c, w)| (*c, pre.clone() * w.clone())),
                        );
                        firing.push((n, pre.clone()));
                    }
                    preactivations[n] = pre;
                }
            }
        }
        let (output, logits) = self.readout(&hidden, &ffn.output_bias, written);
        Ok(Trace {
            heads: head_outputs,
            attention,
            hidden,
            router_scores,
            expert,
            firing,
            preactivations,
            output,
            logits,
        })
    }
}

impl<S: Scalar> Evaluator<'_, S> {
    /// FF_e(A') for one expert `e`, whether or not the router picked it:
    /// Σ ReLU(read·A' + bias)·write + output bias, from the weights. The
    /// soft MoE of `verify --gate softmax` mixes every expert's output, so
    /// it needs the experts the top-1 forward pass skips.
    pub fn expert_output(&self, hidden: &SparseVec<S>, expert: usize) -> SparseVec<S> {
        let bias = self.model.experts[expert]
            .output_bias
            .entries()
            .iter()
            .cloned();
        SparseVec::from_entries(bias.chain(self.expert_terms(expert, hidden, false, false).written))
    }

    /// The top-1 trace of a prefix and FF_e(A') of every expert e on it
    /// (index e), for the soft MoE.
    pub fn run_all_experts(
        &self,
        tokens: &[usize],
    ) -> Result<(Trace<S>, Vec<SparseVec<S>>), EvalError> {
        let trace = self.run(tokens)?;
        let outputs = (0..self.model.experts.len())
            .map(|e| self.expert_output(&trace.hidden, e))
            .collect();
        Ok((trace, outputs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Basis, Expert, Head, LinearMap, Neuron, NeuronRole, Router, Synthesis};
    use crate::scalar::{ArithError, Rat, int, rat};

    /// A hand-written 2-token model: one head attending by position
    /// (score = j), two experts routed on the head's output, one neuron each.
    fn toy() -> Model<Rat> {
        let mut residual = Basis::default();
        let (a, b, p1, p2, h, out_a, out_b) = (
            residual.add("tok:a"),
            residual.add("tok:b"),
            residual.add("pos:1"),
            residual.add("pos:2"),
            residual.add("h:a"),
            residual.add("out:a"),
            residual.add("out:b"),
        );
        let d = residual.len();
        let mut qk = Basis::default();
        qk.add("position");
        let mut values = Basis::default();
        values.add("a");
        let mut query = LinearMap::zero(d, 1);
        query.add(0, p1, int(1));
        query.add(0, p2, int(1));
        let mut key = LinearMap::zero(d, 1);
        key.add(0, p1, int(1));
        key.add(0, p2, int(2));
        let mut value = LinearMap::zero(d, 1);
        value.add(0, a, int(1));
        let mut output = LinearMap::zero(1, d);
        output.add(h, 0, int(1));
        let mut weights = LinearMap::zero(d, 2);
        weights.add(1, h, int(3));
        let mut unembed = LinearMap::zero(d, 2);
        unembed.add(0, out_a, int(1));
        unembed.add(1, out_b, int(1));
        let expert = |name: &str, write: usize| Expert {
            name: name.into(),
            neurons: vec![Neuron {
                name: format!("{name}/0"),
                role: NeuronRole::Semantic,
                read: SparseVec::unit(h),
                bias: int(0),
                write: SparseVec::from_entries([(write, int(6))]),
            }],
            output_bias: SparseVec::default(),
        };
        Model {
            vocab: vec!["a".into(), "b".into()],
            residual,
            max_len: 2,
            token_embed: vec![SparseVec::unit(a), SparseVec::unit(b)],
            pos_embed: vec![SparseVec::unit(p1), SparseVec::unit(p2)],
            heads: vec![Head {
                name: "h".into(),
                qk,
                values,
                query,
                key,
                value,
                output,
            }],
            router: Router {
                inputs: vec![h],
                weights,
                bias: vec![int(1), int(0)],
                synthesis: Synthesis::given(true, "h"),
            },
            experts: vec![expert("first", out_a), expert("second", out_b)],
            unembed,
            circuits: Vec::new(),
            score_unit: ScoreUnit::Ln2,
        }
    }

    #[test]
    fn forward_pass_matches_hand_computation() {
        let m = toy();
        // "b a": weights 2^1/(2+4), 2^2/(2+4) = 1/3, 2/3; value is 1 on "a"
        // at position 2 only, so h:a = 2/3; router scores (1, 2): expert 1;
        // its neuron fires at 2/3 and writes 6 · 2/3 = 4 on out:b.
        let t = forward(&m, &[1, 0]).unwrap();
        assert_eq!(t.attention[0], vec![rat(1, 3), rat(2, 3)]);
        assert_eq!(t.heads[0].get(0), rat(2, 3));
        assert_eq!(t.router_scores, vec![int(1), int(2)]);
        assert_eq!(t.expert, 1);
        assert_eq!(t.firing, vec![(0, rat(2, 3))]);
        assert_eq!(t.logits.get(1), int(4));
        assert_eq!(t.logits.get(0), int(0));
        // "a b": h:a = 1/3, router scores (1, 1): a tie goes to expert 0.
        let t = forward(&m, &[0, 1]).unwrap();
        assert_eq!(t.expert, 0);
        assert_eq!(t.logits.get(0), int(2));
    }

    #[test]
    fn f64_agrees_with_exact_on_the_toy() {
        let m = toy().to_f64();
        let t = forward(&m, &[1, 0]).unwrap();
        assert!((t.logits.get(1) - 4.0).abs() < 1e-12);
        assert_eq!(t.expert, 1);
    }

    #[test]
    fn natural_scores_use_e_not_2() {
        // The same scores (1, 2) read as natural units: weights e/(e + e²)
        // and e²/(e + e²); exact arithmetic refuses (e is irrational).
        let mut m = toy();
        m.score_unit = ScoreUnit::Natural;
        let t = forward(&m.to_f64(), &[1, 0]).unwrap();
        let e = std::f64::consts::E;
        assert!((t.attention[0][1] - e * e / (e + e * e)).abs() < 1e-15);
        assert!(matches!(
            forward(&m, &[1, 0]).unwrap_err(),
            EvalError::Arith(ArithError::IrrationalExp(_))
        ));
    }

    #[test]
    fn every_expert_runs_on_one_prefix() {
        // "b a": h:a = 2/3 (see above). Both experts read h:a with bias 0,
        // so each fires at 2/3 and writes 6 · 2/3 = 4 on its own output.
        let m = toy();
        let e = Evaluator::new(&m);
        let (trace, outputs) = e.run_all_experts(&[1, 0]).unwrap();
        assert_eq!(trace.expert, 1);
        let (out_a, out_b) = (
            m.residual.get("out:a").unwrap(),
            m.residual.get("out:b").unwrap(),
        );
        assert_eq!(outputs[0].entries(), &[(out_a, int(4))]);
        assert_eq!(outputs[1].entries(), &[(out_b, int(4))]);
        // The chosen expert's output is what the top-1 pass added to A'.
        let added = trace.output.add_scaled(&int(-1), &trace.hidden);
        assert_eq!(added, outputs[1]);
    }

    #[test]
    fn rejects_bad_inputs() {
        let m = toy();
        assert_eq!(forward(&m, &[]).unwrap_err(), EvalError::Empty);
        assert_eq!(
            forward(&m, &[0, 0, 0]).unwrap_err(),
            EvalError::TooLong { len: 3, max: 2 }
        );
        assert_eq!(forward(&m, &[7]).unwrap_err(), EvalError::UnknownToken(7));
    }

    /// A template of 70 positions: head 1's score range passes 62 bits, so
    /// the exact evaluator sums each head over its one denominator
    /// (`scalar::pow2`); asked for the weights, it takes the generic path
    /// instead, and BigRational takes the generic path always. All three
    /// give the same heads, A', router scores, expert and logits on every
    /// prefix past 60 positions.
    #[test]
    fn long_template_heads_agree_with_the_generic_path() {
        use crate::scalar::FastRat;
        let words: Vec<String> = (0..68).map(|j| format!("w{}", j % 23)).collect();
        let text = format!(
            "[[task]]\nname = \"t\"\ntemplates = [\"{} {{key}} {{value}}\"]\npairs = [[\"K1\", \"V1\"], [\"K2\", \"V2\"]]\n",
            words.join(" ")
        );
        let spec = crate::spec::parse_bytes("long.toml", text.as_bytes(), false).unwrap();
        let ts = crate::taskset::TaskSet::from_spec(&spec);
        assert!(ts.max_len >= 70, "L = {}", ts.max_len);
        let exact = crate::construct::build(
            &ts,
            &crate::construct::Options::default(),
            crate::construct::ModelKind::Moe,
        );
        let fast = exact.map(FastRat::from_rat);
        let (summed, generic, big) = (
            Evaluator::new(&fast).logits_only(),
            Evaluator::new(&fast).logits_only().with_attention_weights(),
            Evaluator::new(&exact).logits_only(),
        );
        let rats = |v: &SparseVec<FastRat>| -> Vec<(usize, Rat)> {
            v.entries().iter().map(|(c, x)| (*c, x.to_rat())).collect()
        };
        let mut long = 0;
        // The prefixes near and past the 62-bit edge (the shorter ones take
        // the generic path in both FastRat evaluators).
        for p in ts.prefixes.iter().filter(|p| p.tokens.len() > 60) {
            let (a, b, c) = (
                summed.run(&p.tokens).unwrap(),
                generic.run(&p.tokens).unwrap(),
                big.run(&p.tokens).unwrap(),
            );
            long += usize::from(p.tokens.len() > 63);
            // One (empty) weight list per head from the summing evaluator,
            // the weights over every position from the other.
            assert!(a.attention.iter().all(Vec::is_empty));
            assert!(b.attention.iter().all(|w| w.len() == p.tokens.len()));
            for (x, (y, z)) in a.heads.iter().zip(b.heads.iter().zip(&c.heads)) {
                assert_eq!(x, y);
                assert_eq!(rats(x), z.entries());
            }
            assert_eq!(a.hidden, b.hidden);
            assert_eq!(rats(&a.hidden), c.hidden.entries());
            assert_eq!(a.router_scores, b.router_scores);
            assert_eq!(a.expert, c.expert);
            assert_eq!(rats(&a.logits.nonzero), c.logits.nonzero.entries());
        }
        // 9 with this template and these pairs (counted on a run): the
        // summing path must have run on them, not only near the edge.
        assert!(long >= 9, "{long} prefixes past 63 positions");
    }

    #[test]
    fn histogram_counts_tokens_at_zero() {
        let logits = Logits {
            vocab_size: 5,
            nonzero: SparseVec::from_entries([(1, int(3)), (2, int(3)), (4, int(-1))]),
        };
        let all = logits.histogram(|_| true, 5);
        assert_eq!(all, vec![(int(3), 2), (int(-1), 1), (int(0), 2)]);
        let odd = logits.histogram(|t| t % 2 == 1, 2);
        assert_eq!(odd, vec![(int(3), 1), (int(0), 1)]);
    }
}
