//! The forward pass on intervals, computed from the weights alone.
//!
//! The same definition as [`crate::eval`] (docs/model-file.md): A' = x_i +
//! Σ_h W_O·(Σ_j softmax_j · v_j), the top-1 expert of W_G A' + b, A'' =
//! FF_{e*}(A') + A', logits = W_U A''. Where the exact pass takes a branch
//! (which expert wins, whether a neuron fires) an interval may not decide
//! it; this pass then keeps every branch the intervals allow: each expert
//! that may be e* is run and the logits are the hull of their logits, and a
//! neuron whose pre-activation straddles 0 is "maybe firing", ReLU'd as an
//! interval. The verifier reads these as undecided, never as holding.

use super::bound::Iv;
use crate::model::EvalError;
use crate::model::{Head, LinearMap, Model, ScoreUnit, SparseVec};
use crate::scalar::Scalar;
use num_traits::{One, Zero};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Whether a neuron fires, as far as the intervals tell (neurons that
/// surely stay silent are not listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// The pre-activation is certainly positive.
    Surely,
    /// The pre-activation interval contains 0 and positive values.
    Maybe,
}

/// One expert's FFN on one A'.
#[derive(Debug, Clone)]
pub struct FfnResult {
    /// (neuron, firing) for every neuron that may fire, by neuron.
    pub firing: Vec<(usize, Firing)>,
    /// ReLU of each listed neuron's pre-activation, in the order of
    /// `firing` (what the neuron scales its write vector by).
    pub activation: Vec<Iv>,
    /// With [`IntervalEvaluator::with_labels`]: per label, the largest
    /// upper bound on the pre-activation of a neuron of that label
    /// (−∞: the label has no neuron); empty otherwise.
    pub label_max: Vec<f64>,
    /// Σ ReLU(read·A' + bias)·write + the output bias: A'' − A'.
    pub delta: SparseVec<Iv>,
}

/// What the interval forward pass computed for one prefix.
#[derive(Debug, Clone)]
pub struct IntervalTrace {
    /// Each head's attention weights over positions 1..=i.
    pub attention: Vec<Vec<Iv>>,
    /// A' at the last position.
    pub hidden: SparseVec<Iv>,
    pub router_scores: Vec<Iv>,
    /// The experts that may be e* (first index with the top score): one
    /// when the intervals decide routing, in index order.
    pub candidates: Vec<usize>,
    /// Each candidate's FFN, in the order of `candidates`.
    pub ffn: Vec<FfnResult>,
    /// Logits (the hull over candidates); a token not listed has logit
    /// exactly 0 under every candidate.
    pub logits: SparseVec<Iv>,
    pub vocab_size: usize,
}

impl IntervalTrace {
    /// The logit of a token.
    pub fn logit(&self, token: usize) -> Iv {
        self.logits.get(token)
    }
}

/// What one position contributes to every prefix that contains it: its
/// input and per head W_Q x, W_K x, W_V x (as in [`crate::eval::Evaluator`]).
struct Position {
    input: SparseVec<Iv>,
    query: Vec<SparseVec<Iv>>,
    key: Vec<SparseVec<Iv>>,
    value: Vec<SparseVec<Iv>>,
}

/// The interval forward pass of one model over many prefixes.
pub struct IntervalEvaluator<'m> {
    model: &'m Model<Iv>,
    /// Index j · |vocab| + t, filled on first use (from any thread).
    positions: Vec<OnceLock<Position>>,
    /// Per expert: runs of consecutive neurons with the same read vector
    /// (first, end); read·A' is computed once a run.
    runs: Vec<Vec<(usize, usize)>>,
    /// Per expert: residual coordinate → the runs that read it. A run no
    /// nonzero coordinate of A' touches reads exactly 0.
    readers: Vec<HashMap<usize, Vec<usize>>>,
    /// Per expert and run: the neurons whose bias may be positive, the only
    /// ones that may fire when the run reads 0.
    biased: Vec<Vec<Vec<usize>>>,
    /// Neuron labels of the first expert ([`Self::with_labels`]): per
    /// neuron its label, and per run (label, largest bias upper bound) over
    /// the run's neurons, for the runs that read 0.
    labels: Option<Labels>,
}

/// Neuron labels for the per-label pre-activation maxima.
struct Labels {
    of: Vec<usize>,
    count: usize,
    run_bias_max: Vec<Vec<(usize, f64)>>,
}

/// Two read vectors with the same entries, bit for bit.
fn same_read(a: &SparseVec<Iv>, b: &SparseVec<Iv>) -> bool {
    a.nnz() == b.nnz()
        && a.entries().iter().zip(b.entries()).all(|((i, x), (j, y))| {
            i == j && x.lo().to_bits() == y.lo().to_bits() && x.hi().to_bits() == y.hi().to_bits()
        })
}

impl<'m> IntervalEvaluator<'m> {
    pub fn new(model: &'m Model<Iv>) -> Self {
        let mut runs = Vec::new();
        let mut readers = Vec::new();
        let mut biased = Vec::new();
        for e in &model.experts {
            let mut r: Vec<(usize, usize)> = Vec::new();
            for (n, neuron) in e.neurons.iter().enumerate() {
                match r.last_mut() {
                    Some((first, end)) if same_read(&e.neurons[*first].read, &neuron.read) => {
                        *end = n + 1
                    }
                    _ => r.push((n, n + 1)),
                }
            }
            let mut by_coord: HashMap<usize, Vec<usize>> = HashMap::new();
            for (k, &(first, _)) in r.iter().enumerate() {
                for (c, _) in e.neurons[first].read.entries() {
                    by_coord.entry(*c).or_default().push(k);
                }
            }
            biased.push(
                r.iter()
                    .map(|&(first, end)| {
                        (first..end)
                            .filter(|&n| e.neurons[n].bias.hi() > 0.0)
                            .collect()
                    })
                    .collect(),
            );
            readers.push(by_coord);
            runs.push(r);
        }
        IntervalEvaluator {
            model,
            positions: (0..model.max_len * model.vocab.len())
                .map(|_| OnceLock::new())
                .collect(),
            runs,
            readers,
            biased,
            labels: None,
        }
    }

    /// Label the first expert's neurons (`labels[n]` < `count`): its FFN
    /// results then carry, per label, the largest upper bound on a
    /// neuron's pre-activation (the dense model's silence margins, labels
    /// being owner sets).
    pub fn with_labels(mut self, labels: Vec<usize>, count: usize) -> Self {
        let Some(expert) = self.model.experts.first() else {
            return self;
        };
        assert_eq!(labels.len(), expert.neurons.len(), "one label per neuron");
        let run_bias_max = self.runs[0]
            .iter()
            .map(|&(first, end)| {
                let mut max: Vec<(usize, f64)> = Vec::new();
                for (&l, neuron) in labels[first..end].iter().zip(&expert.neurons[first..end]) {
                    let b = neuron.bias.hi();
                    match max.iter_mut().find(|(k, _)| *k == l) {
                        Some((_, m)) => *m = m.max(b),
                        None => max.push((l, b)),
                    }
                }
                max
            })
            .collect();
        self.labels = Some(Labels {
            of: labels,
            count,
            run_bias_max,
        });
        self
    }

    pub fn model(&self) -> &Model<Iv> {
        self.model
    }

    fn position(&self, j: usize, t: usize) -> Result<&Position, EvalError> {
        let m = self.model;
        let embed = m.token_embed.get(t).ok_or(EvalError::UnknownToken(t))?;
        Ok(self.positions[j * m.vocab.len() + t].get_or_init(|| {
            let input = embed.add_scaled(&Iv::one(), &m.pos_embed[j]);
            let each = |f: fn(&Head<Iv>) -> &LinearMap<Iv>| {
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

    /// The interval forward pass on a token sequence.
    pub fn run(&self, tokens: &[usize]) -> Result<IntervalTrace, EvalError> {
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
        let positions = tokens
            .iter()
            .enumerate()
            .map(|(j, &t)| self.position(j, t))
            .collect::<Result<Vec<_>, EvalError>>()?;
        let last = positions[i - 1];

        let mut hidden = last.input.clone();
        let mut attention = Vec::with_capacity(model.heads.len());
        for (h, head) in model.heads.iter().enumerate() {
            let q = &last.query[h];
            let scores: Vec<Iv> = positions.iter().map(|p| q.dot(&p.key[h])).collect();
            let weights = softmax(&scores, model.score_unit);
            let out =
                SparseVec::from_entries(weights.iter().zip(&positions).flat_map(|(w, p)| {
                    p.value[h].entries().iter().map(move |(c, v)| (*c, *w * *v))
                }));
            hidden = hidden.add_scaled(&Iv::one(), &head.output.apply(&out));
            attention.push(weights);
        }

        let router_scores: Vec<Iv> = model
            .router
            .weights
            .apply_dense(&hidden)
            .into_iter()
            .zip(&model.router.bias)
            .map(|(g, b)| g + *b)
            .collect();
        Ok(self.finish(hidden, attention, router_scores))
    }

    /// The trace with sharper router scores (from [`super::refine`]; a
    /// common shift of every score changes no decision): candidates, FFNs
    /// and logits recomputed from them.
    pub fn reroute(&self, trace: IntervalTrace, router_scores: Vec<Iv>) -> IntervalTrace {
        if possible_argmax(&router_scores) == trace.candidates {
            return IntervalTrace {
                router_scores,
                ..trace
            };
        }
        self.finish(trace.hidden, trace.attention, router_scores)
    }

    /// Routing, FFN and unembedding from A' and the router scores.
    fn finish(
        &self,
        hidden: SparseVec<Iv>,
        attention: Vec<Vec<Iv>>,
        router_scores: Vec<Iv>,
    ) -> IntervalTrace {
        let model = self.model;
        let candidates = possible_argmax(&router_scores);
        let ffn: Vec<FfnResult> = candidates.iter().map(|&e| self.ffn(e, &hidden)).collect();
        let mut logits: Option<SparseVec<Iv>> = None;
        for f in &ffn {
            let output = hidden.add_scaled(&Iv::one(), &f.delta);
            let z = model.unembed.apply(&output);
            logits = Some(match logits {
                None => z,
                Some(acc) => hull(&acc, &z),
            });
        }
        IntervalTrace {
            attention,
            hidden,
            router_scores,
            candidates,
            ffn,
            logits: logits.unwrap_or_default(),
            vocab_size: model.vocab.len(),
        }
    }

    /// The logits of the model masked to the neurons `keep` accepts (the
    /// paper's M_C: every other neuron of expert `e` zeroed), from the
    /// full pass's FFN result `f` of that expert on the same A': attention
    /// and the kept neurons' pre-activations do not depend on the others,
    /// so only the FFN's output sums fewer neurons.
    pub fn masked_logits(
        &self,
        e: usize,
        hidden: &SparseVec<Iv>,
        f: &FfnResult,
        keep: impl Fn(usize) -> bool,
    ) -> SparseVec<Iv> {
        let expert = &self.model.experts[e];
        let written = f
            .firing
            .iter()
            .zip(&f.activation)
            .filter(|((n, _), _)| keep(*n))
            .flat_map(|((n, _), act)| {
                expert.neurons[*n]
                    .write
                    .entries()
                    .iter()
                    .map(move |(c, w)| (*c, *act * *w))
            });
        let delta =
            SparseVec::from_entries(expert.output_bias.entries().iter().cloned().chain(written));
        self.model
            .unembed
            .apply(&hidden.add_scaled(&Iv::one(), &delta))
    }

    /// Expert `e`'s FFN on A' = `hidden`, whether or not the router picks
    /// it (claim S asks which neurons fire on the prefixes of a task).
    pub fn ffn(&self, e: usize, hidden: &SparseVec<Iv>) -> FfnResult {
        let expert = &self.model.experts[e];
        let runs = &self.runs[e];
        let mut touched = vec![false; runs.len()];
        for (c, _) in hidden.entries() {
            for &r in self.readers[e].get(c).into_iter().flatten() {
                touched[r] = true;
            }
        }
        let labels = self.labels.as_ref().filter(|_| e == 0);
        let mut label_max = vec![f64::NEG_INFINITY; labels.map_or(0, |l| l.count)];
        let mut firing = Vec::new();
        let mut written: Vec<(usize, Iv)> = Vec::new();
        let mut fire = |n: usize, pre: Iv, firing: &mut Vec<(usize, Firing, Iv)>| {
            if pre.hi() <= 0.0 {
                return;
            }
            let act = pre.relu_iv();
            firing.push((
                n,
                if pre.lo() > 0.0 {
                    Firing::Surely
                } else {
                    Firing::Maybe
                },
                act,
            ));
            written.extend(
                expert.neurons[n]
                    .write
                    .entries()
                    .iter()
                    .map(|(c, w)| (*c, act * *w)),
            );
        };
        for (r, &(first, end)) in runs.iter().enumerate() {
            if !touched[r] {
                // Reads exactly 0: the pre-activation is the bias.
                for &n in &self.biased[e][r] {
                    fire(n, expert.neurons[n].bias, &mut firing);
                }
                if let Some(l) = labels {
                    for &(k, b) in &l.run_bias_max[r] {
                        label_max[k] = label_max[k].max(b);
                    }
                }
                continue;
            }
            let read = expert.neurons[first].read.dot(hidden);
            for n in first..end {
                let pre = read + expert.neurons[n].bias;
                if let Some(l) = labels {
                    let k = l.of[n];
                    label_max[k] = label_max[k].max(pre.hi());
                }
                fire(n, pre, &mut firing);
            }
        }
        firing.sort_unstable_by_key(|(n, ..)| *n);
        let delta =
            SparseVec::from_entries(expert.output_bias.entries().iter().cloned().chain(written));
        FfnResult {
            activation: firing.iter().map(|f| f.2).collect(),
            firing: firing.into_iter().map(|(n, f, _)| (n, f)).collect(),
            label_max,
            delta,
        }
    }
}

/// Softmax of interval scores in the model's unit, each weight bounded on
/// its own: w_j = p_j / (p_j + Σ_{k≠j} p_k) rises with p_j and falls with
/// the rest, so its lower bound takes p_j low and the rest high (and the
/// other way round), tighter than dividing by the hull of the total.
/// Scores are shifted by the largest upper bound first, so every p_j ≤ 1
/// (softmax is invariant under a common shift; the shift is an exact
/// dyadic).
pub fn softmax(scores: &[Iv], unit: ScoreUnit) -> Vec<Iv> {
    let max = scores.iter().map(Iv::hi).fold(f64::NEG_INFINITY, f64::max);
    let shift = if max.is_finite() { max } else { 0.0 };
    let powers: Vec<Iv> = scores
        .iter()
        .map(|s| {
            let shifted = *s - Iv::point(shift);
            match unit {
                ScoreUnit::Ln2 => shifted.exp2(),
                ScoreUnit::Natural => shifted.exp(),
            }
            .expect("interval exp is total")
        })
        .collect();
    let total = powers.iter().fold(Iv::zero(), |a, b| a + *b);
    powers
        .iter()
        .map(|p| {
            if powers.len() == 1 {
                return Iv::one();
            }
            let lo_p = Iv::point(p.lo());
            let hi_p = Iv::point(p.hi());
            // Σ_{k≠j} p_k lies in [total.lo − p.lo, total.hi − p.hi], each
            // endpoint rounded outward.
            let rest_hi = (Iv::point(total.hi()) - Iv::point(p.hi())).hi().max(0.0);
            let rest_lo = (Iv::point(total.lo()) - Iv::point(p.lo())).lo().max(0.0);
            let lo = (lo_p / (lo_p + Iv::point(rest_hi))).lo();
            let hi = (hi_p / (hi_p + Iv::point(rest_lo))).hi();
            Iv::new(
                if lo.is_nan() { 0.0 } else { lo.max(0.0) },
                if hi.is_nan() { 1.0 } else { hi.min(1.0) },
            )
        })
        .collect()
}

/// The experts that may be e* = the first index with the largest score:
/// e may win unless some earlier expert is certainly at least as high or
/// some later one certainly higher.
pub fn possible_argmax(scores: &[Iv]) -> Vec<usize> {
    (0..scores.len())
        .filter(|&e| {
            scores.iter().enumerate().all(|(o, s)| {
                o == e
                    || if o < e {
                        !s.certainly_ge(&scores[e])
                    } else {
                        !s.certainly_gt(&scores[e])
                    }
            })
        })
        .collect()
}

/// Coordinate-wise hull of two sparse interval vectors (absent = exact 0).
fn hull(a: &SparseVec<Iv>, b: &SparseVec<Iv>) -> SparseVec<Iv> {
    let mut out: Vec<(usize, Iv)> = Vec::with_capacity(a.nnz() + b.nnz());
    let (x, y) = (a.entries(), b.entries());
    let (mut i, mut j) = (0, 0);
    let zero = Iv::zero();
    while i < x.len() || j < y.len() {
        let xi = x.get(i).map_or(usize::MAX, |e| e.0);
        let yj = y.get(j).map_or(usize::MAX, |e| e.0);
        if xi < yj {
            out.push((xi, x[i].1.hull(&zero)));
            i += 1;
        } else if yj < xi {
            out.push((yj, y[j].1.hull(&zero)));
            j += 1;
        } else {
            out.push((xi, x[i].1.hull(&y[j].1)));
            i += 1;
            j += 1;
        }
    }
    SparseVec::from_entries(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_brackets_the_true_weights() {
        // Scores (1, 2) in natural units: e/(e + e²) and e²/(e + e²).
        let w = softmax(&[Iv::point(1.0), Iv::point(2.0)], ScoreUnit::Natural);
        let e = std::f64::consts::E;
        let truth = [e / (e + e * e), e * e / (e + e * e)];
        for (w, t) in w.iter().zip(truth) {
            assert!(w.lo() <= t + 1e-15 && w.hi() >= t - 1e-15, "{w:?} vs {t}");
            assert!(w.width() < 1e-13);
        }
        // In units of ln 2, integer scores: 1/3 and 2/3, tightly.
        let w = softmax(&[Iv::point(1.0), Iv::point(2.0)], ScoreUnit::Ln2);
        assert!(w[0].lo() <= 1.0 / 3.0 && w[0].hi() >= 1.0 / 3.0);
        assert!(w[0].width() < 1e-13);
    }

    #[test]
    fn argmax_keeps_every_possible_winner() {
        let s = [Iv::new(1.0, 2.0), Iv::new(1.5, 3.0), Iv::point(0.0)];
        assert_eq!(possible_argmax(&s), vec![0, 1]);
        // A point tie goes to the lowest index.
        let s = [Iv::point(2.0), Iv::point(2.0)];
        assert_eq!(possible_argmax(&s), vec![0]);
        let s = [Iv::point(1.0), Iv::new(1.0, 1.5)];
        assert_eq!(possible_argmax(&s), vec![0, 1]);
        let s = [Iv::point(1.0), Iv::new(1.25, 1.5)];
        assert_eq!(possible_argmax(&s), vec![1]);
    }
}
