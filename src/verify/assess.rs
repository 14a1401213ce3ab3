//! Per-prefix assessment: one prefix through the model's forward pass and
//! claims R, P and A (and I's per-prefix checks on the dense model) decided
//! on it, independently of every other prefix.

use super::arith::ClaimArith;
use super::compare::Decision;
use super::isolation;
use super::logits::{LogitVerdict, TOP_LOGITS, logit_verdict, show_small, token_map, top_logits};
use super::verdict::{Claim, Witness, holds};
use crate::eval::dense::{DenseEvaluator, DensePass};
use crate::eval::{Evaluator, Trace};
use crate::model::Model;
use crate::scalar::{Rat, Scalar};
use crate::taskset::{Prefix, TaskSet, TokenId};
use std::cell::LazyCell;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

/// The verifier's evaluator: pre-activations and firing neurons are kept
/// only for the dense model, whose isolation claim reads them; R, P and A
/// read the router scores and the logits.
fn evaluator<S: Scalar>(model: &Model<S>) -> Evaluator<'_, S> {
    let e = Evaluator::new(model);
    if model.circuits.is_empty() {
        e.logits_only()
    } else {
        e
    }
}

/// Everything one prefix contributes to the verdict, computed independently
/// of every other prefix (so prefixes can be assessed in parallel) and
/// folded in prefix order (so the verdict does not depend on scheduling).
pub(crate) struct Assessed<S> {
    pub routing: Option<(bool, Option<S>)>,
    pub probability: (bool, Option<S>),
    pub retrieval: (bool, Option<S>),
    pub decisions: Vec<Decision>,
    pub witnesses: Vec<Witness>,
    pub misrouted: Option<Witness>,
    /// A hash of the exact router input; prefixes that share it are
    /// compared exactly before one is named as the other's twin.
    pub fingerprint: u64,
    /// Claim I's checks on this prefix (dense model).
    pub isolation: Vec<isolation::PrefixCheck<S>>,
}

/// The router's exact input on a trace: its nonzero coordinates.
fn router_input<S: ClaimArith>(model: &Model<S>, trace: &Trace<S>) -> Vec<(usize, S::Key)> {
    trace
        .hidden
        .entries()
        .iter()
        .filter(|(d, _)| model.router.inputs.binary_search(d).is_ok())
        .map(|(d, v)| (*d, v.key()))
        .collect()
}

fn fingerprint<K: Hash>(input: &[(usize, K)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    h.finish()
}

/// The fixed context of one verification run.
pub(crate) struct Context<'a, S: ClaimArith> {
    ts: &'a TaskSet,
    model: &'a Model<S>,
    /// Every arithmetic runs the same forward pass.
    engine: Evaluator<'a, S>,
    /// The dense model's pass, factored by circuit gate (dense models only).
    dense_engine: Option<DenseEvaluator<'a, S>>,
    pub eps: S,
    epsilon: &'a Rat,
    tokens: HashMap<TokenId, usize>,
    pub expert_of_task: Vec<Option<usize>>,
    pub dense: bool,
    decisions: bool,
}

impl<'a, S: ClaimArith> Context<'a, S> {
    /// The fixed context of a run on `model` against `ts`'s oracle.
    pub fn new(ts: &'a TaskSet, model: &'a Model<S>, epsilon: &'a Rat, decisions: bool) -> Self {
        Context {
            ts,
            model,
            engine: evaluator(model),
            dense_engine: (!model.circuits.is_empty()).then(|| {
                let (labels, sets) = isolation::owner_labels(ts, model);
                DenseEvaluator::new(model, &labels, sets.len())
            }),
            eps: S::from_rat(epsilon),
            epsilon,
            tokens: token_map(ts, model),
            expert_of_task: ts
                .tasks
                .iter()
                .map(|t| model.experts.iter().position(|e| e.name == t.name))
                .collect(),
            dense: !model.circuits.is_empty(),
            decisions,
        }
    }
}

impl<S: ClaimArith> Context<'_, S> {
    pub fn task_names(&self, tasks: &BTreeSet<usize>) -> Vec<String> {
        tasks
            .iter()
            .map(|&k| self.ts.tasks[k].name.clone())
            .collect()
    }

    fn input(&self, prefix: &Prefix) -> Result<Vec<usize>, String> {
        prefix
            .tokens
            .iter()
            .map(|t| self.tokens.get(t).copied())
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| "a token of this prefix is not in the model's vocabulary".to_string())
    }

    fn decision(&self, out: &mut Vec<Decision>, claim: Claim, text: &str, o: String) {
        if self.decisions {
            out.push(Decision::new(claim, text, o));
        }
    }

    /// R, P and A on one prefix.
    pub fn assess(
        &self,
        prefix: &Prefix,
        iso: &isolation::Isolation<S>,
        cache: &mut S::Cache,
    ) -> Assessed<S> {
        let (ts, model) = (self.ts, self.model);
        // Rendered only for a witness or a recorded decision.
        let text = LazyCell::new(|| ts.render(&prefix.tokens));
        let mut decisions = Vec::new();
        let run = self.input(prefix).and_then(|i| match &self.dense_engine {
            Some(engine) => engine
                .run(&i)
                .map(|pass| (engine.trace(&pass), Some(pass)))
                .map_err(|e| e.to_string()),
            None => self
                .engine
                .run(&i)
                .map(|t| (t, None))
                .map_err(|e| e.to_string()),
        });
        let (trace, pass): (Trace<S>, Option<DensePass<S>>) = match run {
            Ok(run) => run,
            Err(reason) => {
                let claims: &[Claim] = if self.dense {
                    &[Claim::Probability, Claim::Retrieval]
                } else {
                    &[Claim::Routing, Claim::Probability, Claim::Retrieval]
                };
                let mut witnesses = Vec::new();
                for &claim in claims {
                    self.decision(&mut decisions, claim, &text, holds(false));
                    witnesses.push(Witness {
                        claim,
                        prefix: (*text).clone(),
                        tasks: self.task_names(&prefix.tasks),
                        expert: None,
                        top_logits: vec![],
                        reason: format!("the forward pass failed: {reason}"),
                    });
                }
                return Assessed {
                    routing: (!self.dense).then_some((false, None)),
                    probability: (false, None),
                    retrieval: (false, None),
                    decisions,
                    witnesses,
                    misrouted: None,
                    fingerprint: fingerprint::<S::Key>(&[]),
                    isolation: self.isolation(prefix, iso, None, cache),
                };
            }
        };
        let expert_name = model.experts[trace.expert].name.clone();
        let witness = |claim, reason: String| Witness {
            claim,
            prefix: (*text).clone(),
            tasks: self.task_names(&prefix.tasks),
            expert: Some(expert_name.clone()),
            top_logits: top_logits(model, &trace, TOP_LOGITS),
            reason,
        };

        // R: routing (MoE only: the dense model has nothing to route).
        let mut routing = None;
        let mut misrouted = None;
        if !self.dense {
            let compatible: BTreeSet<usize> = prefix
                .tasks
                .iter()
                .filter_map(|&k| self.expert_of_task[k])
                .collect();
            let chosen = &trace.router_scores[trace.expert];
            let best_outside = (0..trace.router_scores.len())
                .filter(|e| !compatible.contains(e))
                .map(|e| trace.router_scores[e].clone())
                .reduce(|a, b| if b > a { b } else { a });
            let margin = best_outside.map(|o| chosen.clone() - o);
            let routed_ok = compatible.contains(&trace.expert)
                && margin.as_ref().is_none_or(|m| *m > S::zero());
            self.decision(
                &mut decisions,
                Claim::Routing,
                &text,
                format!("{} (expert {expert_name})", holds(routed_ok)),
            );
            if !routed_ok {
                let reason = if compatible.contains(&trace.expert) {
                    format!(
                        "expert {expert_name} is compatible but ties with an incompatible expert (margin {})",
                        margin.as_ref().map_or_else(|| "0".into(), |m| m.text())
                    )
                } else {
                    format!("routed to expert {expert_name}, which is not in C(w)")
                };
                misrouted = Some(witness(Claim::Routing, reason));
            }
            routing = Some((routed_ok, margin));
        }

        // P and A: the logits against V(w).
        let mut witnesses = Vec::new();
        let v = logit_verdict(&trace, prefix, &self.tokens, &self.eps, cache);
        let check = &v.check;
        self.decision(
            &mut decisions,
            Claim::Probability,
            &text,
            holds(v.probability),
        );
        if !v.probability {
            let what = if S::CERTIFIED {
                "certified P(invalid) ≤"
            } else {
                "P(invalid) ≈ (f64, not certified)"
            };
            let reason = format!(
                "{what} {} is not below ε = {} (best valid logit {}, best invalid {})",
                show_small(&check.invalid_bound),
                self.epsilon,
                check.best_valid.text(),
                check
                    .best_invalid
                    .as_ref()
                    .map_or_else(|| "0".into(), |b| b.text())
            );
            witnesses.push(witness(Claim::Probability, reason));
        }
        let a_margin = check
            .best_invalid
            .as_ref()
            .map(|b| check.best_valid.clone() - b.clone());
        self.decision(&mut decisions, Claim::Retrieval, &text, holds(v.retrieval));
        if !v.retrieval {
            let what = if prefix.is_query {
                "a right value"
            } else {
                "a valid next token"
            };
            let reason = format!(
                "the largest logit is not only on {what}: best valid {} ≤ best invalid {}",
                check.best_valid.text(),
                check
                    .best_invalid
                    .as_ref()
                    .map_or_else(|| "0".into(), |b| b.text())
            );
            witnesses.push(witness(Claim::Retrieval, reason));
        }
        Assessed {
            routing,
            probability: (v.probability, Some(check.invalid_bound.clone())),
            retrieval: (v.retrieval, a_margin),
            decisions,
            witnesses,
            misrouted,
            fingerprint: if self.dense {
                0
            } else {
                fingerprint(&router_input(model, &trace))
            },
            isolation: match &pass {
                Some(pass) => self.isolation(prefix, iso, Some((&trace, &v, pass)), cache),
                None => Vec::new(),
            },
        }
    }

    /// The dense model's isolation checks on one prefix (none for the MoE
    /// model); `full` is None where the full model's forward pass failed.
    fn isolation(
        &self,
        prefix: &Prefix,
        iso: &isolation::Isolation<S>,
        full: Option<(&Trace<S>, &LogitVerdict<S>, &DensePass<S>)>,
        cache: &mut S::Cache,
    ) -> Vec<isolation::PrefixCheck<S>> {
        let Some(engine) = &self.dense_engine else {
            return Vec::new();
        };
        iso.check_prefix(
            self.ts,
            self.model,
            engine,
            prefix,
            full,
            &self.tokens,
            &self.eps,
            cache,
            self.decisions,
        )
    }

    /// The exact router input of a prefix, if its forward pass runs.
    pub fn exact_router_input(&self, prefix: &Prefix) -> Option<Vec<(usize, S::Key)>> {
        let trace = self.engine.run(&self.input(prefix).ok()?).ok()?;
        Some(router_input(self.model, &trace))
    }
}
