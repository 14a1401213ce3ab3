//! Stage 4: the forward pass, computed from the weights alone.
//!
//! A' = MHA(A) + A at the last position, the router picks the top-1 expert
//! e* = argmax G(A'), A'' = FF_{e*}(A') + A', logits = W_U A''. Generic over
//! the arithmetic; every product is a sparse product over the real weights.
//! Eval never sees the spec, the task set or the intended answer.

pub mod float;

use crate::model::{Head, LinearMap, Model, ScoreUnit, SparseVec};
use crate::scalar::{ArithError, Scalar};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Why a forward pass could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("empty input: a prefix has at least one token")]
    Empty,
    #[error("input of {len} tokens exceeds the model's {max} positions")]
    TooLong { len: usize, max: usize },
    #[error("token id {0} is outside the vocabulary")]
    UnknownToken(usize),
    #[error("the model has no experts")]
    NoExperts,
    #[error(transparent)]
    Arith(#[from] ArithError),
}

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
    /// Each head's attention weights over positions 1..=i.
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
    Evaluator::new(model).run(tokens)
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

/// The attention part of one prefix's forward pass and the router scores.
struct Attended<S> {
    heads: Vec<SparseVec<S>>,
    attention: Vec<Vec<S>>,
    hidden: SparseVec<S>,
    router_scores: Vec<S>,
    expert: usize,
}

/// The forward pass of one model over many prefixes. Eval still reads only
/// the weights: the per-position table and the grouping of neurons are
/// derived from them, and each prefix gets exactly the numbers
/// [`forward`]'s definition gives.
pub struct Evaluator<'m, S> {
    model: &'m Model<S>,
    /// Index j · |vocab| + t, filled on first use (from any thread).
    positions: Vec<OnceLock<Position<S>>>,
    /// Per expert: runs of consecutive neurons with the same read vector
    /// (an expert's syntactic neurons all read its pattern scalar s and
    /// differ only in bias), as (first, end); read·A' is computed once a run.
    runs: Vec<Vec<(usize, usize)>>,
    /// Per expert: residual coordinate → the runs whose read vector uses it.
    /// A run no nonzero coordinate of A' touches reads exactly 0, so its
    /// neurons' pre-activations are their biases: with one semantic neuron
    /// per key–value pair, most of an expert is settled without a product.
    readers: Vec<HashMap<usize, Vec<usize>>>,
    /// Per expert and run: the neurons whose bias is positive, the only
    /// ones that fire when the run reads 0.
    positive_bias: Vec<Vec<Vec<usize>>>,
    /// Whether traces list every neuron's pre-activation (isolation and
    /// `inspect` need them; routing, P and A do not, and at a thousand
    /// neurons an expert, copying them dominates a prefix's cost).
    preactivations: bool,
}

impl<'m, S: Scalar> Evaluator<'m, S> {
    pub fn new(model: &'m Model<S>) -> Self {
        let runs = model
            .experts
            .iter()
            .map(|e| {
                let mut runs: Vec<(usize, usize)> = Vec::new();
                for (n, neuron) in e.neurons.iter().enumerate() {
                    match runs.last_mut() {
                        Some((first, end)) if e.neurons[*first].read == neuron.read => *end = n + 1,
                        _ => runs.push((n, n + 1)),
                    }
                }
                runs
            })
            .collect();
        let readers = model
            .experts
            .iter()
            .zip(&runs)
            .map(
                |(e, runs): (&crate::model::Expert<S>, &Vec<(usize, usize)>)| {
                    let mut readers: HashMap<usize, Vec<usize>> = HashMap::new();
                    for (r, &(first, _)) in runs.iter().enumerate() {
                        for (c, _) in e.neurons[first].read.entries() {
                            readers.entry(*c).or_default().push(r);
                        }
                    }
                    readers
                },
            )
            .collect();
        let positive_bias = model
            .experts
            .iter()
            .zip(&runs)
            .map(
                |(e, runs): (&crate::model::Expert<S>, &Vec<(usize, usize)>)| {
                    runs.iter()
                        .map(|&(first, end)| {
                            (first..end)
                                .filter(|&n| e.neurons[n].bias.is_positive())
                                .collect()
                        })
                        .collect()
                },
            )
            .collect();
        Evaluator {
            model,
            readers,
            positive_bias,
            preactivations: true,
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

    fn position(&self, j: usize, t: usize) -> Result<&Position<S>, EvalError> {
        let m = self.model;
        let embed = m.token_embed.get(t).ok_or(EvalError::UnknownToken(t))?;
        Ok(self.positions[j * m.vocab.len() + t].get_or_init(|| {
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

    /// A' = MHA(A) + A at the last position (with each head's output and
    /// attention weights) and the router scores G(A') = W_G A' + b: what
    /// the router sees, without running any expert.
    fn attend(&self, tokens: &[usize]) -> Result<Attended<S>, EvalError> {
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
            // Softmax in the model's unit; shifting by the max keeps 2^score
            // small and exact (and e^score from overflowing).
            let max = scores
                .iter()
                .cloned()
                .reduce(|a, b| if b > a { b } else { a })
                .unwrap_or_else(S::zero);
            let powers = scores
                .iter()
                .map(|s| {
                    let shifted = s.clone() - max.clone();
                    match model.score_unit {
                        ScoreUnit::Ln2 => shifted.exp2(),
                        ScoreUnit::Natural => shifted.exp(),
                    }
                })
                .collect::<Result<Vec<S>, _>>()?;
            let total = powers.iter().cloned().fold(S::zero(), |a, b| a + b);
            let weights: Vec<S> = powers.into_iter().map(|p| p / total.clone()).collect();
            let out = SparseVec::from_entries(weights.iter().zip(&positions).flat_map(|(w, p)| {
                p.value[h]
                    .entries()
                    .iter()
                    .map(move |(c, v)| (*c, w.clone() * v.clone()))
            }));
            hidden = hidden.add_scaled(&S::one(), &head.output.apply(&out));
            head_outputs.push(out);
            attention.push(weights);
        }

        // Router: G(A') = W_G A' + b; top-1, first index on ties.
        let router_scores: Vec<S> = model
            .router
            .weights
            .apply_dense(&hidden)
            .into_iter()
            .zip(&model.router.bias)
            .map(|(g, b)| g + b.clone())
            .collect();
        let mut expert = 0;
        for (e, s) in router_scores.iter().enumerate() {
            if *s > router_scores[expert] {
                expert = e;
            }
        }
        Ok(Attended {
            heads: head_outputs,
            attention,
            hidden,
            router_scores,
            expert,
        })
    }

    /// The router's view of a prefix only: A' and the router scores, with
    /// no expert or unembedding run (what router margins need).
    pub fn route(&self, tokens: &[usize]) -> Result<(SparseVec<S>, Vec<S>), EvalError> {
        let a = self.attend(tokens)?;
        Ok((a.hidden, a.router_scores))
    }

    fn run_with(&self, tokens: &[usize], keep: Option<&[usize]>) -> Result<Trace<S>, EvalError> {
        let model = self.model;
        let Attended {
            heads: head_outputs,
            attention,
            hidden,
            router_scores,
            expert,
        } = self.attend(tokens)?;

        // The chosen expert's FFN: Σ ReLU(read·A' + bias)·write + output bias.
        let ffn = &model.experts[expert];
        let mut firing = Vec::new();
        let mut preactivations;
        match keep {
            None => {
                preactivations = Vec::with_capacity(if self.preactivations {
                    ffn.neurons.len()
                } else {
                    0
                });
                let runs = &self.runs[expert];
                let mut touched = vec![false; runs.len()];
                for (c, _) in hidden.entries() {
                    for &r in self.readers[expert].get(c).into_iter().flatten() {
                        touched[r] = true;
                    }
                }
                for (r, &(first, end)) in runs.iter().enumerate() {
                    if !touched[r] && !self.preactivations {
                        // Reads 0: pre-activation = bias.
                        for &n in &self.positive_bias[expert][r] {
                            firing.push((n, ffn.neurons[n].bias.clone()));
                        }
                        continue;
                    }
                    let read = if touched[r] {
                        ffn.neurons[first].read.dot(&hidden)
                    } else {
                        S::zero()
                    };
                    for n in first..end {
                        let pre = read.clone() + ffn.neurons[n].bias.clone();
                        if pre.is_positive() {
                            firing.push((n, pre.clone()));
                        }
                        if self.preactivations {
                            preactivations.push(pre);
                        }
                    }
                }
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
                        firing.push((n, pre.clone()));
                    }
                    preactivations[n] = pre;
                }
            }
        }
        let written = firing.iter().flat_map(|(n, act)| {
            ffn.neurons[*n]
                .write
                .entries()
                .iter()
                .map(move |(c, w)| (*c, act.clone() * w.clone()))
        });
        let output = SparseVec::from_entries(
            hidden
                .entries()
                .iter()
                .chain(ffn.output_bias.entries())
                .cloned()
                .chain(written),
        );

        let logits = Logits {
            vocab_size: model.vocab.len(),
            nonzero: model.unembed.apply(&output),
        };
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
        let ffn = &self.model.experts[expert];
        let mut written: Vec<(usize, S)> = ffn.output_bias.entries().to_vec();
        let runs = &self.runs[expert];
        let mut touched = vec![false; runs.len()];
        for (c, _) in hidden.entries() {
            for &r in self.readers[expert].get(c).into_iter().flatten() {
                touched[r] = true;
            }
        }
        let mut fire = |neuron: &crate::model::Neuron<S>, pre: S| {
            if pre.is_positive() {
                written.extend(
                    neuron
                        .write
                        .entries()
                        .iter()
                        .map(|(c, w)| (*c, pre.clone() * w.clone())),
                );
            }
        };
        for (r, &(first, end)) in runs.iter().enumerate() {
            if !touched[r] {
                // Reads exactly 0: pre-activation = bias, so only the
                // positive-bias neurons fire.
                for &n in &self.positive_bias[expert][r] {
                    fire(&ffn.neurons[n], ffn.neurons[n].bias.clone());
                }
                continue;
            }
            let read = ffn.neurons[first].read.dot(hidden);
            for neuron in &ffn.neurons[first..end] {
                fire(neuron, read.clone() + neuron.bias.clone());
            }
        }
        SparseVec::from_entries(written)
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
    use crate::scalar::{Rat, int, rat};

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
                synthesis: Synthesis {
                    converged: true,
                    epochs: 0,
                    misrouted: 0,
                    forced: 0,
                    reads: "h".into(),
                },
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
