//! What the soft MoE needs of one prefix, computed once from the weights:
//! the router's gaps, the hard (top-1) logits, and how far each logit can
//! move when the gate mixes in the other experts.
//!
//! The soft FFN output is Σ_e g_e FF_e(A'), so its logits are
//! z^soft = z^hard + Σ_{e≠e*} g_e · d_e with d_e = W_U (FF_e(A') − FF_{e*}(A'))
//! (W_U is linear). With g_e ≥ 0 and Σ_{e≠e*} g_e = 1 − g_{e*} ≤ η̂, every
//! token's soft logit lies in [z_t + η̂·min(0, min_e d_{e,t}),
//! z_t + η̂·max(0, max_e d_{e,t})]. Lowering the valid tokens and raising the
//! invalid ones to those ends only raises P(invalid) and only hurts the
//! argmax, so claims proved at the ends hold for the soft model.

use super::gate::GateArith;
use super::image::Image;
use crate::eval::{Evaluator, Logits};
use crate::model::{Model, SparseVec};
use crate::taskset::{Prefix, TaskSet, TokenId};
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

/// One prefix, ready to be checked at any gate bound η̂.
#[derive(Debug, Clone)]
pub struct SoftPrefix<S> {
    /// Index in the task set's prefixes.
    pub index: usize,
    /// e*: the top-1 expert (first on ties), as hard routing picks it.
    pub top: usize,
    /// G_{e*} − G_e for every other expert e (≥ 0).
    pub gaps: Vec<S>,
    /// Δ = a_(1) − a_(2), the top-two router margin (None with one expert).
    pub margin: Option<S>,
    /// Hard R: e* ∈ C(w), strictly above every expert outside C(w).
    pub routed: bool,
    /// The exact logits the exact check reads. Emptied by
    /// [`SoftPrefix::drop_exact`] where the interval image stands in for
    /// them (most prefixes: they are most of a prefix's memory), and filled
    /// again, once, by the first exact check that needs them.
    pub exact: OnceLock<ExactLogits<S>>,
    /// max_{e,t} |d_{e,t}|: how far apart the experts' logit outputs are.
    pub spread: S,
    /// The same prefix in intervals (certified arithmetics only).
    pub image: Option<Image>,
}

/// One prefix's exact hard logits and worst-case shifts.
#[derive(Debug, Clone)]
pub struct ExactLogits<S> {
    /// (token, hard logit z_t, min(0, min_e d_{e,t}), max(0, max_e d_{e,t}))
    /// for every token some expert or the hard pass gives a nonzero logit.
    tokens: Vec<(usize, S, S, S)>,
    /// V(w) in model token ids.
    valid: BTreeSet<usize>,
    vocab_size: usize,
}

/// The P, A and R outcome of one prefix at one gate bound.
#[derive(Debug, Clone)]
pub struct Outcome<S> {
    pub routing: bool,
    pub probability: bool,
    /// The bound on P(invalid) of the soft model.
    pub invalid_bound: S,
    pub retrieval: bool,
    /// Worst-case best valid − best invalid soft logit.
    pub retrieval_margin: Option<S>,
}

impl<S> Outcome<S> {
    /// R, P and A all hold.
    pub fn all(&self) -> bool {
        self.routing && self.probability && self.retrieval
    }
}

/// Δ = a_(1) − a_(2) of scores each in [lo_e, hi_e]: the two largest
/// scores are nondecreasing in every score, so a_(1) ∈ [max lo, max hi] and
/// a_(2) ∈ [2nd lo, 2nd hi], and Δ ∈ [max(0, a_(1).lo − a_(2).hi),
/// a_(1).hi − a_(2).lo]. Exact scores (lo = hi) give the exact Δ.
pub fn margin_bounds<S: crate::scalar::Scalar>(lo: &[S], hi: &[S]) -> Option<(S, S)> {
    let two = |v: &[S]| -> Option<(S, S)> {
        let (mut first, mut second): (Option<&S>, Option<&S>) = (None, None);
        for s in v {
            if first.is_none_or(|f| s > f) {
                second = first;
                first = Some(s);
            } else if second.is_none_or(|t| s > t) {
                second = Some(s);
            }
        }
        Some((first?.clone(), second?.clone()))
    };
    let (l1, l2) = two(lo)?;
    let (h1, h2) = two(hi)?;
    let low = l1 - h2;
    Some((if low.is_positive() { low } else { S::zero() }, h1 - l2))
}

/// The top-two margin of router scores: a_(1) − a_(2) (None with fewer than
/// two experts).
pub fn top_two_margin<S: crate::scalar::Scalar>(scores: &[S]) -> Option<S> {
    margin_bounds(scores, scores).map(|(delta, _)| delta)
}

/// Experts by task (by name: the two paths meet only through names).
pub fn expert_of_task<S>(ts: &TaskSet, model: &Model<S>) -> Vec<Option<usize>> {
    ts.tasks
        .iter()
        .map(|t| model.experts.iter().position(|e| e.name == t.name))
        .collect()
}

/// The model's token ids of a prefix, or why it has none.
pub fn model_tokens(
    prefix: &Prefix,
    tokens: &HashMap<TokenId, usize>,
) -> Result<Vec<usize>, String> {
    prefix
        .tokens
        .iter()
        .map(|t| tokens.get(t).copied())
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| "a token of this prefix is not in the model's vocabulary".to_string())
}

impl<S: GateArith> SoftPrefix<S> {
    /// Run every expert on the prefix (from the weights) and keep what the
    /// soft checks need.
    pub fn new(
        engine: &Evaluator<'_, S>,
        model: &Model<S>,
        index: usize,
        prefix: &Prefix,
        tokens: &HashMap<TokenId, usize>,
        experts: &[Option<usize>],
    ) -> Result<SoftPrefix<S>, String> {
        let input = model_tokens(prefix, tokens)?;
        let (trace, outputs) = engine.run_all_experts(&input).map_err(|e| e.to_string())?;
        let scores = &trace.router_scores;
        let top = trace.expert;
        let gaps: Vec<S> = (0..scores.len())
            .filter(|&e| e != top)
            .map(|e| scores[top].clone() - scores[e].clone())
            .collect();
        let compatible: BTreeSet<usize> = prefix.tasks.iter().filter_map(|&k| experts[k]).collect();
        let routed = compatible.contains(&top)
            && (0..scores.len())
                .filter(|e| !compatible.contains(e))
                .all(|e| scores[top] > scores[e]);
        // W_U FF_e(A') for every expert, then d_e against the top one.
        let out: Vec<SparseVec<S>> = outputs.iter().map(|o| model.unembed.apply(o)).collect();
        let mut lo: HashMap<usize, S> = HashMap::new();
        let mut hi: HashMap<usize, S> = HashMap::new();
        let mut spread = S::zero();
        for (e, z_e) in out.iter().enumerate() {
            if e == top {
                continue;
            }
            let d = z_e.add_scaled(&-S::one(), &out[top]);
            for (t, v) in d.entries() {
                let l = lo.entry(*t).or_insert_with(S::zero);
                if *v < *l {
                    *l = v.clone();
                }
                let h = hi.entry(*t).or_insert_with(S::zero);
                if *v > *h {
                    *h = v.clone();
                }
                let a = if v.is_positive() {
                    v.clone()
                } else {
                    -v.clone()
                };
                if a > spread {
                    spread = a;
                }
            }
        }
        let mut support: BTreeSet<usize> = trace
            .logits
            .nonzero
            .entries()
            .iter()
            .map(|(t, _)| *t)
            .collect();
        support.extend(lo.keys().copied());
        let tokens_out: Vec<(usize, S, S, S)> = support
            .into_iter()
            .map(|t| {
                (
                    t,
                    trace.logits.get(t),
                    lo.get(&t).cloned().unwrap_or_else(S::zero),
                    hi.get(&t).cloned().unwrap_or_else(S::zero),
                )
            })
            .collect();
        let valid: BTreeSet<usize> = prefix
            .valid_next
            .iter()
            .filter_map(|t| tokens.get(t).copied())
            .collect();
        let image = S::CERTIFIED.then(|| {
            let gaps_iv = gaps.iter().map(|g| g.enclose()).collect();
            let (mut v, mut w) = (Vec::new(), Vec::new());
            for (t, z, lo, hi) in &tokens_out {
                if valid.contains(t) {
                    v.push((z.enclose(), lo.enclose()));
                } else {
                    w.push((z.enclose(), hi.enclose()));
                }
            }
            let vocab = trace.logits.vocab_size;
            let (zv, zw) = (valid.len() - v.len(), vocab - valid.len() - w.len());
            Image::new(gaps_iv, v, w, zv, zw, routed)
        });
        Ok(SoftPrefix {
            image,
            index,
            top,
            margin: top_two_margin(scores),
            gaps,
            routed,
            exact: OnceLock::from(ExactLogits {
                tokens: tokens_out,
                valid,
                vocab_size: trace.logits.vocab_size,
            }),
            spread,
        })
    }

    /// Bytes this prefix holds: the struct, its gaps (at their inline size;
    /// a big rational's limbs are not counted, so this is a lower bound),
    /// its image and its exact logits while they are kept.
    pub fn held_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<Self>()
            + self.gaps.capacity() * size_of::<S>()
            + self.image.as_ref().map_or(0, Image::held_bytes)
            + self.exact.get().map_or(0, |x| {
                x.tokens.capacity() * size_of::<(usize, S, S, S)>()
                    + x.valid.len() * 3 * size_of::<usize>()
            })
    }

    /// Drop the exact logits (the caller can rebuild them from the
    /// weights): kept only by prefixes without an image.
    pub fn drop_exact(&mut self) {
        if self.image.is_some() {
            self.exact.take();
        }
    }

    /// R, P and A with the gate mass off e* at most `eta_hat` (and R's
    /// tolerance `eta`), on this prefix's exact logits `x`.
    pub fn check(
        &self,
        x: &ExactLogits<S>,
        eta_hat: &S,
        eta: &S,
        epsilon: &S,
        cache: &mut S::Cache,
    ) -> Outcome<S> {
        // Valid logits at their lowest, invalid at their highest.
        let shifted = x.tokens.iter().map(|(t, z, lo, hi)| {
            let d = if x.valid.contains(t) { lo } else { hi };
            (*t, z.clone() + eta_hat.clone() * d.clone())
        });
        let logits = Logits {
            vocab_size: x.vocab_size,
            nonzero: SparseVec::from_entries(shifted),
        };
        let valid = &x.valid;
        let valid_hist = logits.histogram(|t| valid.contains(&t), valid.len());
        let invalid_hist = logits.histogram(|t| !valid.contains(&t), x.vocab_size - valid.len());
        let best = |h: &[(S, usize)]| {
            h.iter()
                .map(|(z, _)| z.clone())
                .reduce(|a, b| if b > a { b } else { a })
        };
        let best_valid = best(&valid_hist).unwrap_or_else(S::zero);
        let best_invalid = best(&invalid_hist);
        let invalid_bound = S::invalid_mass(&valid_hist, &invalid_hist, cache);
        let retrieval_margin = best_invalid.map(|b| best_valid - b);
        Outcome {
            routing: self.routed && *eta_hat <= *eta,
            probability: invalid_bound < *epsilon,
            invalid_bound,
            retrieval: retrieval_margin.as_ref().is_none_or(|m| m.is_positive()),
            retrieval_margin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::int;

    #[test]
    fn top_two_margin_takes_the_two_largest() {
        assert_eq!(top_two_margin(&[int(1), int(5), int(3)]), Some(int(2)));
        assert_eq!(top_two_margin(&[int(4), int(4), int(0)]), Some(int(0)));
        assert_eq!(top_two_margin(&[int(7)]), None);
    }
}
