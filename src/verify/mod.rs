//! Stage 5: check the paper's claims on every prefix.
//!
//! Two independent paths meet here: the oracle (V(w), C(w), queries) comes
//! from the task set, i.e. from the spec only; the model's answer comes from
//! [`crate::eval::forward`] on the weights only. Claims:
//! - R routing: C(w) = {k} ⇒ the top-1 expert is k with a strict margin;
//!   |C(w)| > 1 ⇒ the expert is in C(w), strictly above every task outside.
//! - P probability: Σ_{u ∈ V(w)} P(u | w) > 1 − ε, a rational certificate.
//! - A retrieval: the largest logit belongs only to valid tokens (on a query,
//!   that is a right value for the key).
//! - S size: expert k has at most L·|T(k)| + |Δk| neurons.

pub mod probability;

use crate::eval::{Trace, forward};
use crate::model::{Model, NeuronRole};
use crate::scalar::{Rat, Scalar};
use crate::taskset::{TaskSet, TokenId};
use num_traits::Zero;
use probability::{ExpCache, invalid_mass_bound};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// Witnesses kept in a verdict (all failures are counted).
pub const MAX_WITNESSES: usize = 1000;
/// Logits shown in a witness.
const TOP_LOGITS: usize = 5;

/// The result of one claim.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClaimResult {
    pub holds: bool,
    /// Prefixes (experts, for size) on which the claim fails.
    pub failures: usize,
    /// Prefixes (experts, for size) checked.
    pub checked: usize,
    /// The worst case seen: the smallest margin (routing, retrieval), the
    /// largest bound on P(invalid) (probability), the smallest slack
    /// bound − neurons (size). An exact rational as text.
    pub worst: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Claims {
    pub routing: ClaimResult,
    pub probability: ClaimResult,
    pub retrieval: ClaimResult,
    pub size: ClaimResult,
}

/// Expert size against the task's complexity.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExpertSize {
    pub task: String,
    pub templates: usize,
    /// Σ_{τ ∈ T(k)} |τ|.
    pub template_length_sum: usize,
    pub pairs: usize,
    pub neurons: usize,
    pub syntactic: usize,
    pub semantic: usize,
    /// c(k) = Σ|τ| + |Δk|.
    pub complexity: usize,
    /// L·|T(k)| + |Δk|.
    pub bound: usize,
}

/// A failed claim, with what a person needs to act on it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Witness {
    /// "routing", "probability", "retrieval" or "size".
    pub claim: &'static str,
    pub prefix: String,
    /// C(w), by name.
    pub tasks: Vec<String>,
    /// The routed expert.
    pub expert: Option<String>,
    /// The largest logits, (token, exact value).
    pub top_logits: Vec<(String, String)>,
    pub reason: String,
}

/// Everything `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub arith: &'static str,
    pub model: &'static str,
    pub router: String,
    pub epsilon: String,
    pub max_len: usize,
    pub vocabulary: usize,
    pub prefixes: usize,
    pub queries: usize,
    pub ambiguous: usize,
    pub claims: Claims,
    pub experts: Vec<ExpertSize>,
    /// Total failures over all claims (witnesses beyond MAX_WITNESSES are
    /// counted here but not listed).
    pub failure_count: usize,
    pub failures: Vec<Witness>,
}

impl Verdict {
    pub fn all_hold(&self) -> bool {
        let c = &self.claims;
        c.routing.holds && c.probability.holds && c.retrieval.holds && c.size.holds
    }
}

/// Running tally of one claim.
#[derive(Default)]
struct Tally {
    failures: usize,
    checked: usize,
    worst: Option<Rat>,
}

impl Tally {
    /// Record a check; `keep_min` picks whether the worst is the min or max.
    fn record(&mut self, ok: bool, value: Option<Rat>, keep_min: bool) {
        self.checked += 1;
        if !ok {
            self.failures += 1;
        }
        if let Some(v) = value {
            let worse = match &self.worst {
                None => true,
                Some(w) => (v < *w) == keep_min,
            };
            if worse {
                self.worst = Some(v);
            }
        }
    }

    fn finish(self) -> ClaimResult {
        ClaimResult {
            holds: self.failures == 0,
            failures: self.failures,
            checked: self.checked,
            worst: self.worst.map(|w| w.to_string()),
        }
    }
}

/// Per-prefix outcome of the logit claims, shared with `inspect`.
#[derive(Debug, Clone)]
pub struct LogitCheck {
    pub best_valid: Rat,
    pub best_invalid: Option<Rat>,
    /// Certified upper bound on P(invalid | w).
    pub invalid_bound: Rat,
}

impl LogitCheck {
    pub fn argmax_valid(&self) -> bool {
        self.best_invalid
            .as_ref()
            .is_none_or(|b| self.best_valid > *b)
    }
}

/// Check the logit claims on one trace against V(w) (model token ids).
pub fn check_logits(
    trace: &Trace<Rat>,
    valid: &BTreeSet<usize>,
    cache: &mut ExpCache,
) -> LogitCheck {
    let logits = &trace.logits;
    let valid_hist = logits.histogram(|t| valid.contains(&t), valid.len());
    let invalid_hist = logits.histogram(|t| !valid.contains(&t), logits.vocab_size - valid.len());
    let best = |h: &[(Rat, usize)]| h.iter().map(|(z, _)| z.clone()).max();
    LogitCheck {
        best_valid: best(&valid_hist).unwrap_or_else(Rat::zero),
        best_invalid: best(&invalid_hist),
        invalid_bound: invalid_mass_bound(&valid_hist, &invalid_hist, cache),
    }
}

/// The largest logits of a trace, by name.
pub fn top_logits<S: Scalar>(
    model: &Model<S>,
    trace: &Trace<S>,
    n: usize,
) -> Vec<(String, String)> {
    let mut entries: Vec<&(usize, S)> = trace.logits.nonzero.entries().iter().collect();
    entries.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    let mut top: Vec<(String, String)> = entries
        .iter()
        .take(n)
        .map(|(t, z)| (model.vocab[*t].clone(), z.show()))
        .collect();
    if top.len() < n && trace.logits.vocab_size > entries.len() {
        let rest = trace.logits.vocab_size - entries.len();
        top.push((format!("({rest} other tokens)"), "0".into()));
    }
    top
}

/// Map task-set token ids to model token ids by name: the model carries its
/// own vocabulary, and the two paths meet only through names.
fn token_map(ts: &TaskSet, model: &Model<Rat>) -> HashMap<TokenId, usize> {
    let by_name: HashMap<&str, usize> = model
        .vocab
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    ts.vocab
        .names()
        .iter()
        .enumerate()
        .filter_map(|(t, n)| by_name.get(n.as_str()).map(|&m| (t, m)))
        .collect()
}

/// Verify every claim of the MoE model on every prefix.
pub fn verify(ts: &TaskSet, model: &Model<Rat>, epsilon: &Rat, router: &str) -> Verdict {
    let tokens = token_map(ts, model);
    let expert_of_task: Vec<Option<usize>> = ts
        .tasks
        .iter()
        .map(|t| model.experts.iter().position(|e| e.name == t.name))
        .collect();
    let task_names = |tasks: &BTreeSet<usize>| {
        tasks
            .iter()
            .map(|&k| ts.tasks[k].name.clone())
            .collect::<Vec<_>>()
    };

    let mut routing = Tally::default();
    let mut probability = Tally::default();
    let mut retrieval = Tally::default();
    let mut witnesses: Vec<Witness> = Vec::new();
    let mut failure_count = 0;
    let mut cache = ExpCache::default();
    let mut misrouted: Vec<(usize, Witness)> = Vec::new();
    let mut router_inputs: Vec<Vec<(usize, Rat)>> = Vec::with_capacity(ts.prefixes.len());
    let push = |w: Witness, witnesses: &mut Vec<Witness>, failure_count: &mut usize| {
        *failure_count += 1;
        if witnesses.len() < MAX_WITNESSES {
            witnesses.push(w);
        }
    };

    for (index, prefix) in ts.prefixes.iter().enumerate() {
        let text = ts.render(&prefix.tokens);
        let input: Option<Vec<usize>> = prefix
            .tokens
            .iter()
            .map(|t| tokens.get(t).copied())
            .collect();
        let trace = match input
            .ok_or_else(|| "a token of this prefix is not in the model's vocabulary".to_string())
            .and_then(|i| forward(model, &i).map_err(|e| e.to_string()))
        {
            Ok(trace) => trace,
            Err(reason) => {
                for (claim, tally) in [
                    ("routing", &mut routing),
                    ("probability", &mut probability),
                    ("retrieval", &mut retrieval),
                ] {
                    tally.record(false, None, true);
                    push(
                        Witness {
                            claim,
                            prefix: text.clone(),
                            tasks: task_names(&prefix.tasks),
                            expert: None,
                            top_logits: vec![],
                            reason: format!("the forward pass failed: {reason}"),
                        },
                        &mut witnesses,
                        &mut failure_count,
                    );
                }
                router_inputs.push(vec![]);
                continue;
            }
        };
        router_inputs.push(
            model
                .router
                .inputs
                .iter()
                .map(|&d| (d, trace.hidden.get(d)))
                .filter(|(_, v)| !v.is_zero())
                .collect(),
        );
        let expert_name = model.experts[trace.expert].name.clone();
        let witness = |claim, reason: String| Witness {
            claim,
            prefix: text.clone(),
            tasks: task_names(&prefix.tasks),
            expert: Some(expert_name.clone()),
            top_logits: top_logits(model, &trace, TOP_LOGITS),
            reason,
        };

        // R: routing.
        let compatible: BTreeSet<usize> = prefix
            .tasks
            .iter()
            .filter_map(|&k| expert_of_task[k])
            .collect();
        let chosen = &trace.router_scores[trace.expert];
        let best_outside = (0..trace.router_scores.len())
            .filter(|e| !compatible.contains(e))
            .map(|e| &trace.router_scores[e])
            .max();
        let margin = best_outside.map(|o| chosen - o);
        let routed_ok =
            compatible.contains(&trace.expert) && margin.as_ref().is_none_or(|m| *m > Rat::zero());
        routing.record(routed_ok, margin.clone(), true);
        if !routed_ok {
            let reason = if compatible.contains(&trace.expert) {
                format!(
                    "expert {expert_name} is compatible but ties with an incompatible expert (margin {})",
                    margin.unwrap_or_default()
                )
            } else {
                format!("routed to expert {expert_name}, which is not in C(w)")
            };
            misrouted.push((index, witness("routing", reason)));
        }

        // P and A: the logits against V(w).
        let valid: BTreeSet<usize> = prefix
            .valid_next
            .iter()
            .filter_map(|t| tokens.get(t).copied())
            .collect();
        let check = check_logits(&trace, &valid, &mut cache);
        let p_ok = check.invalid_bound < *epsilon;
        probability.record(p_ok, Some(check.invalid_bound.clone()), false);
        if !p_ok {
            let reason = format!(
                "certified P(invalid) ≤ {} is not below ε = {epsilon} (best valid logit {}, best invalid {})",
                approx(&check.invalid_bound),
                check.best_valid,
                check.best_invalid.clone().unwrap_or_default()
            );
            push(
                witness("probability", reason),
                &mut witnesses,
                &mut failure_count,
            );
        }
        let a_ok = check.argmax_valid();
        let a_margin = check.best_invalid.as_ref().map(|b| &check.best_valid - b);
        retrieval.record(a_ok, a_margin, true);
        if !a_ok {
            let what = if prefix.is_query {
                "a right value"
            } else {
                "a valid next token"
            };
            let reason = format!(
                "the largest logit is not only on {what}: best valid {} ≤ best invalid {}",
                check.best_valid,
                check.best_invalid.clone().unwrap_or_default()
            );
            push(
                witness("retrieval", reason),
                &mut witnesses,
                &mut failure_count,
            );
        }
    }

    // Routing witnesses get the strongest explanation available: a prefix of
    // another task with the identical router input proves no router can work.
    let mut by_input: HashMap<&[(usize, Rat)], Vec<usize>> = HashMap::new();
    for (i, input) in router_inputs.iter().enumerate() {
        by_input.entry(input.as_slice()).or_default().push(i);
    }
    let synthesis = &model.router.synthesis;
    // Routing failures cause the others, so they are listed first.
    let others = std::mem::take(&mut witnesses);
    for (index, mut w) in misrouted {
        let twins = &by_input[router_inputs[index].as_slice()];
        let conflict = twins
            .iter()
            .find(|&&j| ts.prefixes[j].tasks.is_disjoint(&ts.prefixes[index].tasks));
        w.reason = match conflict {
            Some(&j) => format!(
                "{}; \"{}\" ({}) has the identical router input, so no router that reads {} can send both to their tasks",
                w.reason,
                ts.render(&ts.prefixes[j].tokens),
                task_names(&ts.prefixes[j].tasks).join(", "),
                synthesis.reads
            ),
            None if !synthesis.converged => format!(
                "{}; router synthesis found no linear router over {} (the perceptron stopped after {} epochs, its best router misroutes {} prefix(es)): the tasks are likely not linearly separable here, as with XOR-like templates (the same words in swapped combinations across tasks); make some word before the key unique to each task, or try --head1 content; `routecert routability` decides whether any linear router exists and, if none does, prints a checked certificate with the minimal conflicting prefixes",
                w.reason, synthesis.reads, synthesis.epochs, synthesis.misrouted
            ),
            None => format!(
                "{}; the synthesised router separates the designed features, so the forward pass disagrees with the design (a construction bug)",
                w.reason
            ),
        };
        push(w, &mut witnesses, &mut failure_count);
    }
    failure_count -= others.len();
    for w in others {
        push(w, &mut witnesses, &mut failure_count);
    }

    // S: size, counted from the model's experts.
    let mut size = Tally::default();
    let mut experts = Vec::new();
    for (k, task) in ts.tasks.iter().enumerate() {
        let bound = task.bound(ts.max_len);
        let Some(e) = expert_of_task[k] else {
            size.record(false, None, true);
            push(
                Witness {
                    claim: "size",
                    prefix: String::new(),
                    tasks: vec![task.name.clone()],
                    expert: None,
                    top_logits: vec![],
                    reason: format!("the model has no expert for task {}", task.name),
                },
                &mut witnesses,
                &mut failure_count,
            );
            continue;
        };
        let expert = &model.experts[e];
        let neurons = expert.neurons.len();
        size.record(
            neurons <= bound,
            Some(Rat::from_integer((bound as i64 - neurons as i64).into())),
            true,
        );
        if neurons > bound {
            push(
                Witness {
                    claim: "size",
                    prefix: String::new(),
                    tasks: vec![task.name.clone()],
                    expert: Some(expert.name.clone()),
                    top_logits: vec![],
                    reason: format!(
                        "expert {} has {neurons} neurons, above L·|T(k)| + |Δk| = {bound}",
                        expert.name
                    ),
                },
                &mut witnesses,
                &mut failure_count,
            );
        }
        experts.push(ExpertSize {
            task: task.name.clone(),
            templates: task.templates.len(),
            template_length_sum: task.template_length_sum(),
            pairs: task.pairs.len(),
            neurons,
            syntactic: expert.count(NeuronRole::Syntactic),
            semantic: expert.count(NeuronRole::Semantic),
            complexity: task.complexity(),
            bound,
        });
    }

    Verdict {
        arith: Rat::NAME,
        model: "moe",
        router: router.to_string(),
        epsilon: epsilon.to_string(),
        max_len: ts.max_len,
        vocabulary: ts.vocab.len(),
        prefixes: ts.prefixes.len(),
        queries: ts.queries(),
        ambiguous: ts.ambiguous(),
        claims: Claims {
            routing: routing.finish(),
            probability: probability.finish(),
            retrieval: retrieval.finish(),
            size: size.finish(),
        },
        experts,
        failure_count,
        failures: witnesses,
    }
}

/// A rational for a message: exact if short, else scientific (display
/// only; no decision reads it).
pub fn approx(r: &Rat) -> String {
    let s = r.to_string();
    if s.len() <= 24 {
        return s;
    }
    format!("{:.3e}", <f64 as Scalar>::from_rat(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::{Options, build_moe};
    use crate::model::SparseVec;
    use crate::scalar::{int, rat};
    use crate::spec;
    use std::path::Path;

    fn setup() -> (TaskSet, Model<Rat>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("constructions/running_example.toml");
        let ts = TaskSet::from_spec(&spec::load(&path).unwrap());
        let model = build_moe(&ts, &Options::default());
        (ts, model)
    }

    fn eps() -> Rat {
        rat(1, 1_000_000)
    }

    #[test]
    fn the_construction_passes() {
        let (ts, model) = setup();
        let v = verify(&ts, &model, &eps(), "syntactic+key");
        assert!(v.all_hold());
        assert_eq!(v.claims.routing.checked, 39);
        // The smallest routing margin is positive and exact.
        let worst: Rat = v.claims.routing.worst.unwrap().parse().unwrap();
        assert!(worst > Rat::zero());
    }

    #[test]
    fn silenced_semantic_neurons_fail_exactly_the_queries() {
        let (ts, mut model) = setup();
        for e in &mut model.experts {
            for n in e
                .neurons
                .iter_mut()
                .filter(|n| n.role == NeuronRole::Semantic)
            {
                n.write = SparseVec::default();
            }
        }
        let v = verify(&ts, &model, &eps(), "mutant");
        // With no recall, a query's logits are all 0: argmax not only valid.
        assert_eq!(v.claims.retrieval.failures, ts.queries());
        assert_eq!(v.claims.probability.failures, ts.queries());
        assert!(v.claims.routing.holds);
        assert!(v.failures.iter().all(|w| {
            ts.prefixes
                .iter()
                .any(|p| p.is_query && ts.render(&p.tokens) == w.prefix)
        }));
    }

    #[test]
    fn a_router_that_ignores_its_input_misroutes_a_task() {
        let (ts, mut model) = setup();
        model.router.weights = crate::model::LinearMap::zero(model.residual.len(), 2);
        model.router.bias = vec![int(0), int(0)];
        let v = verify(&ts, &model, &eps(), "mutant");
        // Every score ties, so no prefix has a strict margin: the 21
        // located_in prefixes go to their expert but tie with spoken_in, and
        // the 18 spoken_in prefixes go to expert 0 (first on ties).
        assert_eq!(v.claims.routing.failures, 39);
        let reasons = |needle: &str| {
            v.failures
                .iter()
                .filter(|w| w.claim == "routing" && w.reason.contains(needle))
                .count()
        };
        assert_eq!(reasons("ties with an incompatible expert"), 21);
        assert_eq!(reasons("not in C(w)"), 18);
    }

    #[test]
    fn a_weak_margin_fails_the_probability_certificate_only() {
        let (ts, model) = setup();
        // β_sem = 18 was sized for ε = 1e-6; ask for 1e-30 instead.
        let v = verify(&ts, &model, &rat(1, 10).pow(30), "syntactic+key");
        assert!(!v.claims.probability.holds);
        assert!(v.claims.retrieval.holds && v.claims.routing.holds);
        assert!(v.failures.iter().all(|w| w.claim == "probability"));
    }

    #[test]
    fn an_oversized_expert_fails_size() {
        let (ts, mut model) = setup();
        // spoken_in sits exactly at its bound 6·1 + 3 = 9 with 8 neurons + 1
        // dead one; a tenth exceeds it.
        let mut dead = model.experts[1].neurons[0].clone();
        dead.write = SparseVec::default();
        model.experts[1].neurons.extend([dead.clone(), dead]);
        let v = verify(&ts, &model, &eps(), "mutant");
        assert_eq!((v.claims.size.holds, v.claims.size.failures), (false, 1));
        assert!(v.failures.iter().any(|w| {
            w.reason
                .contains("expert spoken_in has 10 neurons, above L·|T(k)| + |Δk| = 9")
        }));
        // Dead neurons change no logit: every other claim still holds.
        assert!(v.claims.routing.holds && v.claims.probability.holds && v.claims.retrieval.holds);
    }
}
