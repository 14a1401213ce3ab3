//! Stage 5: check the paper's claims on every prefix.
//!
//! Two independent paths meet here: the oracle (V(w), C(w), queries) comes
//! from the task set, i.e. from the spec only; the model's answer comes from
//! the forward pass on the weights only ([`crate::eval::forward`] in exact
//! arithmetic, [`crate::eval::float`] in f64). Claims:
//! - R routing (MoE): C(w) = {k} ⇒ the top-1 expert is k with a strict
//!   margin; |C(w)| > 1 ⇒ the expert is in C(w), strictly above every task
//!   outside.
//! - P probability: Σ_{u ∈ V(w)} P(u | w) > 1 − ε; a rational certificate in
//!   exact mode, a floating-point estimate (labelled so) in f64.
//! - A retrieval: the largest logit belongs only to valid tokens (on a query,
//!   that is a right value for the key).
//! - S size: expert k (dense: circuit C(k)) has at most L·|T(k)| + |Δk|
//!   neurons.
//! - I isolation (dense): see [`isolation`].
//!
//! The same code decides every claim in either arithmetic ([`ClaimArith`]);
//! `--arith both` runs both and lists every decision on which they differ
//! ([`compare`]).

pub mod compare;
pub mod isolation;
pub mod probability;

use crate::eval::{Evaluator, Logits, Trace};
use crate::model::{Model, NeuronRole};
use crate::scalar::{FastRat, Rat, Scalar};
use crate::taskset::{Prefix, TaskSet, TokenId};
use compare::{CrossCheck, Decision};
use probability::{ExpCache, invalid_mass_bound, invalid_mass_f64};
use rayon::prelude::*;
use serde::Serialize;
use std::cell::LazyCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Mutex;

/// Witnesses kept in a verdict (all failures are counted).
pub const MAX_WITNESSES: usize = 1000;
/// Logits shown in a witness.
const TOP_LOGITS: usize = 5;

/// The arithmetic the claims are decided in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arith {
    /// Exact rationals; P is a certificate.
    #[default]
    Exact,
    /// f64 on nalgebra; fast, not a proof.
    F64,
    /// Both; exact decides, f64 is cross-checked against it.
    Both,
}

impl fmt::Display for Arith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arith::Exact => "exact",
            Arith::F64 => "f64",
            Arith::Both => "both",
        })
    }
}

impl FromStr for Arith {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Arith::Exact),
            "f64" => Ok(Arith::F64),
            "both" => Ok(Arith::Both),
            other => Err(format!(
                "unknown arithmetic '{other}' (expected exact, f64 or both)"
            )),
        }
    }
}

/// The verifier's evaluator: pre-activations are kept only for the dense
/// model, whose isolation claim reads them.
fn evaluator<S: Scalar>(model: &Model<S>) -> Evaluator<'_, S> {
    let e = Evaluator::new(model);
    if model.circuits.is_empty() {
        e.without_preactivations()
    } else {
        e
    }
}

/// A number type the claims can be decided in.
pub trait ClaimArith: Scalar {
    /// Reused work across prefixes (exact: bounds on exp by argument).
    type Cache: Default + Send;
    /// A hashable image of a value, to find prefixes with identical router
    /// inputs.
    type Key: Hash + Eq + Send;
    /// Whether a verdict in this arithmetic is a proof.
    const CERTIFIED: bool;
    /// P(invalid | w) from logit histograms (value, count) of the valid and
    /// invalid tokens: a certified upper bound (exact) or an estimate (f64).
    fn invalid_mass(
        valid: &[(Self, usize)],
        invalid: &[(Self, usize)],
        cache: &mut Self::Cache,
    ) -> Self;
    fn key(&self) -> Self::Key;
}

impl ClaimArith for Rat {
    type Cache = ExpCache;
    type Key = Rat;
    const CERTIFIED: bool = true;

    fn invalid_mass(valid: &[(Rat, usize)], invalid: &[(Rat, usize)], cache: &mut ExpCache) -> Rat {
        invalid_mass_bound(valid, invalid, cache)
    }

    fn key(&self) -> Rat {
        self.clone()
    }
}

/// Logit values with how many tokens carry each.
type Histogram = Vec<(FastRat, usize)>;

/// The exact certificate's memory: bounds on e^x by argument, and whole
/// certificates by the shape of the logits they were computed from.
#[derive(Debug, Default)]
pub struct FastCache {
    exp: ExpCache,
    /// Key: the valid and invalid histograms as (logit − best valid logit,
    /// count). The bound depends on nothing else (softmax is invariant
    /// under a common shift, and `invalid_mass_bound` only ever uses the
    /// differences), and most prefixes share a handful of shapes.
    bounds: HashMap<(Histogram, Histogram), FastRat>,
}

impl ClaimArith for FastRat {
    type Cache = FastCache;
    type Key = FastRat;
    const CERTIFIED: bool = true;

    /// The certificate is computed on BigRational (its bounds on e^x are
    /// fractions far beyond 64 bits).
    fn invalid_mass(
        valid: &[(FastRat, usize)],
        invalid: &[(FastRat, usize)],
        cache: &mut FastCache,
    ) -> FastRat {
        let Some(best) = valid.iter().map(|(z, _)| z).max() else {
            return num_traits::One::one();
        };
        let shape = |h: &[(FastRat, usize)]| -> Vec<(FastRat, usize)> {
            h.iter()
                .map(|(z, c)| (z.clone() - best.clone(), *c))
                .collect()
        };
        let key = (shape(valid), shape(invalid));
        if let Some(bound) = cache.bounds.get(&key) {
            return bound.clone();
        }
        let big = |h: &[(FastRat, usize)]| -> Vec<(Rat, usize)> {
            h.iter().map(|(z, c)| (z.to_rat(), *c)).collect()
        };
        let bound = FastRat::from_big(invalid_mass_bound(
            &big(&key.0),
            &big(&key.1),
            &mut cache.exp,
        ));
        cache.bounds.insert(key, bound.clone());
        bound
    }

    fn key(&self) -> FastRat {
        self.clone()
    }
}

impl ClaimArith for f64 {
    type Cache = ();
    type Key = u64;
    const CERTIFIED: bool = false;

    fn invalid_mass(valid: &[(f64, usize)], invalid: &[(f64, usize)], _: &mut ()) -> f64 {
        invalid_mass_f64(valid, invalid)
    }

    fn key(&self) -> u64 {
        // +0.0 and −0.0 are the same input.
        (self + 0.0).to_bits()
    }
}

/// The result of one claim.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct ClaimResult {
    pub holds: bool,
    /// Prefixes (experts, for size) on which the claim fails.
    pub failures: usize,
    /// Prefixes (experts, for size) checked.
    pub checked: usize,
    /// The worst case seen: the smallest margin (routing, retrieval), the
    /// largest P(invalid) (probability: the certified bound in exact mode,
    /// the estimate in f64), the smallest slack bound − neurons (size), the
    /// smallest silence margin (isolation). Exact rational or f64, as text.
    pub worst: Option<String>,
    /// The smallest margin by which the claim held, in the same units:
    /// positive where it holds. Routing: best compatible score − best
    /// incompatible; probability: ε − P(invalid); retrieval: best valid
    /// logit − best invalid; size: bound − neurons; isolation: how far below
    /// zero the most active off-task neuron stayed.
    pub min_margin: Option<String>,
}

impl ClaimResult {
    /// A claim that does not apply (routing in the dense model): nothing
    /// checked, nothing failed.
    pub fn not_applicable() -> ClaimResult {
        ClaimResult {
            holds: true,
            ..ClaimResult::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Claims {
    /// Not applicable to the dense model (checked = 0).
    pub routing: ClaimResult,
    pub probability: ClaimResult,
    pub retrieval: ClaimResult,
    pub size: ClaimResult,
    /// The dense model only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<ClaimResult>,
}

/// Expert (dense: circuit) size against the task's complexity.
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
    /// "routing", "probability", "retrieval", "size" or "isolation".
    pub claim: &'static str,
    pub prefix: String,
    /// C(w), by name.
    pub tasks: Vec<String>,
    /// The routed expert (dense: "ffn").
    pub expert: Option<String>,
    /// The largest logits, (token, exact value).
    pub top_logits: Vec<(String, String)>,
    pub reason: String,
}

/// Everything `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// "exact", "f64" or "both".
    pub arith: String,
    /// "moe" or "dense".
    pub model: &'static str,
    pub router: String,
    pub epsilon: String,
    pub max_len: usize,
    pub vocabulary: usize,
    pub prefixes: usize,
    pub queries: usize,
    pub ambiguous: usize,
    pub claims: Claims,
    /// One row per task: its expert (MoE) or its circuit (dense).
    pub experts: Vec<ExpertSize>,
    /// Per circuit of the dense model: size and isolation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuits: Option<Vec<isolation::CircuitReport>>,
    /// Total failures over all claims (witnesses beyond MAX_WITNESSES are
    /// counted here but not listed).
    pub failure_count: usize,
    pub failures: Vec<Witness>,
    /// `--arith both`: the f64 run's claims and every decision on which it
    /// differs from the exact run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_check: Option<CrossCheck>,
    /// Every decision taken, for the cross-check.
    #[serde(skip)]
    pub decisions: Vec<Decision>,
    /// Per prefix, in task-set order: the exact top-two router margin Δ(w)
    /// (MoE; null without a second expert). Filled by `verify --format
    /// json` from [`crate::soft::margins::prefix_margins`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_margins: Option<Vec<Option<String>>>,
}

impl Verdict {
    /// Every claim holds (in the arithmetic that decides: exact for both).
    pub fn all_hold(&self) -> bool {
        let c = &self.claims;
        c.routing.holds
            && c.probability.holds
            && c.retrieval.holds
            && c.size.holds
            && c.isolation.as_ref().is_none_or(|i| i.holds)
    }
}

/// Running tally of one claim.
struct Tally<S> {
    failures: usize,
    checked: usize,
    worst: Option<S>,
    /// Whether the worst case is the smallest value (margins) or the
    /// largest (P(invalid)).
    keep_min: bool,
}

impl<S: Scalar> Tally<S> {
    fn new(keep_min: bool) -> Self {
        Tally {
            failures: 0,
            checked: 0,
            worst: None,
            keep_min,
        }
    }

    fn record(&mut self, ok: bool, value: Option<S>) {
        self.checked += 1;
        if !ok {
            self.failures += 1;
        }
        if let Some(v) = value {
            self.keep_worse(v);
        }
    }

    /// Add another tally's checks to this one.
    fn merge(&mut self, other: Tally<S>) {
        self.checked += other.checked;
        self.failures += other.failures;
        if let Some(v) = other.worst {
            self.keep_worse(v);
        }
    }

    fn keep_worse(&mut self, v: S) {
        let worse = match &self.worst {
            None => true,
            Some(w) => (v < *w) == self.keep_min,
        };
        if worse {
            self.worst = Some(v);
        }
    }

    /// `margin` turns the worst case into the smallest margin.
    fn finish(self, margin: impl Fn(&S) -> S) -> ClaimResult {
        ClaimResult {
            holds: self.failures == 0,
            failures: self.failures,
            checked: self.checked,
            min_margin: self.worst.as_ref().map(|w| margin(w).text()),
            worst: self.worst.map(|w| w.text()),
        }
    }
}

/// Per-prefix outcome of the logit claims, shared with `inspect`.
#[derive(Debug, Clone)]
pub struct LogitCheck<S> {
    pub best_valid: S,
    pub best_invalid: Option<S>,
    /// P(invalid | w): certified upper bound (exact) or estimate (f64).
    pub invalid_bound: S,
}

impl<S: Scalar> LogitCheck<S> {
    pub fn argmax_valid(&self) -> bool {
        self.best_invalid
            .as_ref()
            .is_none_or(|b| self.best_valid > *b)
    }
}

/// Check the logit claims on one trace against V(w) (model token ids).
pub fn check_logits<S: ClaimArith>(
    trace: &Trace<S>,
    valid: &BTreeSet<usize>,
    cache: &mut S::Cache,
) -> LogitCheck<S> {
    let logits = &trace.logits;
    let valid_hist = logits.histogram(|t| valid.contains(&t), valid.len());
    let invalid_hist = logits.histogram(|t| !valid.contains(&t), logits.vocab_size - valid.len());
    let best = |h: &[(S, usize)]| {
        h.iter()
            .map(|(z, _)| z.clone())
            .reduce(|a, b| if b > a { b } else { a })
    };
    LogitCheck {
        best_valid: best(&valid_hist).unwrap_or_else(S::zero),
        best_invalid: best(&invalid_hist),
        invalid_bound: S::invalid_mass(&valid_hist, &invalid_hist, cache),
    }
}

/// The largest logits of a trace, by name.
pub fn top_logits<S: Scalar>(
    model: &Model<S>,
    trace: &Trace<S>,
    n: usize,
) -> Vec<(String, String)> {
    largest_logits(model, &trace.logits, n)
}

/// The largest of some logits, by name; tokens at 0 are counted, not named.
pub fn largest_logits<S: Scalar>(
    model: &Model<S>,
    logits: &Logits<S>,
    n: usize,
) -> Vec<(String, String)> {
    let mut entries: Vec<&(usize, S)> = logits.nonzero.entries().iter().collect();
    entries.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    let mut top: Vec<(String, String)> = entries
        .iter()
        .take(n)
        .map(|(t, z)| (model.vocab[*t].clone(), z.show()))
        .collect();
    if top.len() < n && logits.vocab_size > entries.len() {
        let rest = logits.vocab_size - entries.len();
        top.push((format!("({rest} other tokens)"), "0".into()));
    }
    top
}

/// Map task-set token ids to model token ids by name: the model carries its
/// own vocabulary, and the two paths meet only through names.
pub(crate) fn token_map<S>(ts: &TaskSet, model: &Model<S>) -> HashMap<TokenId, usize> {
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

/// The P and A verdicts of one trace against the oracle's V(w).
pub(crate) struct LogitVerdict<S> {
    pub check: LogitCheck<S>,
    pub probability: bool,
    pub retrieval: bool,
}

pub(crate) fn logit_verdict<S: ClaimArith>(
    trace: &Trace<S>,
    prefix: &Prefix,
    tokens: &HashMap<TokenId, usize>,
    epsilon: &S,
    cache: &mut S::Cache,
) -> LogitVerdict<S> {
    let valid: BTreeSet<usize> = prefix
        .valid_next
        .iter()
        .filter_map(|t| tokens.get(t).copied())
        .collect();
    let check = check_logits(trace, &valid, cache);
    LogitVerdict {
        probability: check.invalid_bound < *epsilon,
        retrieval: check.argmax_valid(),
        check,
    }
}

/// Verify every claim on every prefix in exact arithmetic: the MoE model
/// (R, P, A, S) or the dense model (P, A, S, I). The weights are evaluated
/// as [`FastRat`]s: the same exact numbers as BigRational, held in machine
/// words while they fit.
pub fn verify(ts: &TaskSet, model: &Model<Rat>, epsilon: &Rat, router: &str) -> Verdict {
    verify_run(ts, model, epsilon, router, Arith::Exact, Run::default())
}

/// Exact verification on BigRational throughout: slower, and the reference
/// the fast path is tested against.
pub fn verify_bigrational(
    ts: &TaskSet,
    model: &Model<Rat>,
    epsilon: &Rat,
    router: &str,
    run: Run<'_>,
) -> Verdict {
    verify_in(ts, model, epsilon, router, run)
}

/// The same claims decided in f64 (the same forward pass, on f64 weights).
pub fn verify_f64(ts: &TaskSet, model: &Model<Rat>, epsilon: &Rat, router: &str) -> Verdict {
    verify_run(ts, model, epsilon, router, Arith::F64, Run::default())
}

/// Exact verification (which decides) cross-checked by f64: the verdict is
/// the exact one, with the f64 claims and every disagreement attached.
pub fn verify_both(ts: &TaskSet, model: &Model<Rat>, epsilon: &Rat, router: &str) -> Verdict {
    verify_run(ts, model, epsilon, router, Arith::Both, Run::default())
}

/// Verify in the chosen arithmetic.
pub fn verify_with(
    ts: &TaskSet,
    model: &Model<Rat>,
    epsilon: &Rat,
    router: &str,
    arith: Arith,
) -> Verdict {
    verify_run(ts, model, epsilon, router, arith, Run::default())
}

/// Verify in the chosen arithmetic, recording and reporting as `run` says.
pub fn verify_run(
    ts: &TaskSet,
    model: &Model<Rat>,
    epsilon: &Rat,
    router: &str,
    arith: Arith,
    run: Run<'_>,
) -> Verdict {
    match arith {
        Arith::Exact => verify_in(ts, &model.map(FastRat::from_rat), epsilon, router, run),
        Arith::F64 => verify_in(ts, &model.to_f64(), epsilon, router, run),
        Arith::Both => {
            // The cross-check compares every decision of the two runs.
            let recorded = Run {
                decisions: true,
                ..run
            };
            let mut exact = verify_run(ts, model, epsilon, router, Arith::Exact, recorded);
            let float = verify_run(ts, model, epsilon, router, Arith::F64, recorded);
            exact.cross_check = Some(compare::cross_check(&exact, &float));
            exact.arith = Arith::Both.to_string();
            if !run.decisions {
                exact.decisions = Vec::new();
            }
            exact
        }
    }
}

/// Collects witnesses up to MAX_WITNESSES and counts all of them.
#[derive(Default)]
pub(crate) struct Witnesses {
    pub list: Vec<Witness>,
    pub count: usize,
}

impl Witnesses {
    pub fn push(&mut self, w: Witness) {
        self.count += 1;
        if self.list.len() < MAX_WITNESSES {
            self.list.push(w);
        }
    }
}

fn holds(ok: bool) -> String {
    if ok { "holds" } else { "fails" }.to_string()
}

/// How a verification run records and reports.
#[derive(Clone, Copy, Default)]
pub struct Run<'a> {
    /// Keep every decision in the verdict (what `--arith both` compares).
    /// Off, `Verdict::decisions` stays empty: at a million prefixes the
    /// decisions alone would take hundreds of megabytes.
    pub decisions: bool,
    /// Called with (prefixes done, prefixes in all) as the run goes.
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
}

/// Prefixes assessed in parallel between two in-order folds: large enough
/// to keep both cores busy, small enough that the records of a chunk take
/// little memory.
const CHUNK: usize = 4096;

/// Everything one prefix contributes to the verdict, computed independently
/// of every other prefix (so prefixes can be assessed in parallel) and
/// folded in prefix order (so the verdict does not depend on scheduling).
struct Assessed<S> {
    routing: Option<(bool, Option<S>)>,
    probability: (bool, Option<S>),
    retrieval: (bool, Option<S>),
    decisions: Vec<Decision>,
    witnesses: Vec<Witness>,
    misrouted: Option<Witness>,
    /// A hash of the exact router input; prefixes that share it are
    /// compared exactly before one is named as the other's twin.
    fingerprint: u64,
    /// Claim I's checks on this prefix (dense model).
    isolation: Vec<isolation::PrefixCheck<S>>,
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
struct Context<'a, S: ClaimArith> {
    ts: &'a TaskSet,
    model: &'a Model<S>,
    /// Every arithmetic runs the same forward pass.
    engine: Evaluator<'a, S>,
    eps: S,
    epsilon: &'a Rat,
    tokens: HashMap<TokenId, usize>,
    expert_of_task: Vec<Option<usize>>,
    dense: bool,
    decisions: bool,
}

impl<S: ClaimArith> Context<'_, S> {
    fn task_names(&self, tasks: &BTreeSet<usize>) -> Vec<String> {
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

    fn decision(&self, out: &mut Vec<Decision>, claim: &'static str, text: &str, o: String) {
        if self.decisions {
            out.push(Decision::new(claim, text, o));
        }
    }

    /// R, P and A on one prefix.
    fn assess(
        &self,
        prefix: &Prefix,
        iso: &isolation::Isolation<S>,
        cache: &mut S::Cache,
    ) -> Assessed<S> {
        let (ts, model) = (self.ts, self.model);
        // Rendered only for a witness or a recorded decision.
        let text = LazyCell::new(|| ts.render(&prefix.tokens));
        let mut decisions = Vec::new();
        let trace = match self
            .input(prefix)
            .and_then(|i| self.engine.run(&i).map_err(|e| e.to_string()))
        {
            Ok(trace) => trace,
            Err(reason) => {
                let claims: &[&'static str] = if self.dense {
                    &["probability", "retrieval"]
                } else {
                    &["routing", "probability", "retrieval"]
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
                    isolation: if self.dense {
                        let input = self.input(prefix).ok();
                        iso.check_prefix(
                            self.ts,
                            model,
                            &self.engine,
                            prefix,
                            input.as_deref(),
                            None,
                            &self.tokens,
                            &self.eps,
                            cache,
                            self.decisions,
                        )
                    } else {
                        Vec::new()
                    },
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
                "routing",
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
                misrouted = Some(witness("routing", reason));
            }
            routing = Some((routed_ok, margin));
        }

        // P and A: the logits against V(w).
        let mut witnesses = Vec::new();
        let v = logit_verdict(&trace, prefix, &self.tokens, &self.eps, cache);
        let check = &v.check;
        self.decision(&mut decisions, "probability", &text, holds(v.probability));
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
            witnesses.push(witness("probability", reason));
        }
        let a_margin = check
            .best_invalid
            .as_ref()
            .map(|b| check.best_valid.clone() - b.clone());
        self.decision(&mut decisions, "retrieval", &text, holds(v.retrieval));
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
            witnesses.push(witness("retrieval", reason));
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
            isolation: if self.dense {
                let input = self.input(prefix).ok();
                iso.check_prefix(
                    self.ts,
                    model,
                    &self.engine,
                    prefix,
                    input.as_deref(),
                    Some((&trace, &v)),
                    &self.tokens,
                    &self.eps,
                    cache,
                    self.decisions,
                )
            } else {
                Vec::new()
            },
        }
    }

    /// The exact router input of a prefix, if its forward pass runs.
    fn exact_router_input(&self, prefix: &Prefix) -> Option<Vec<(usize, S::Key)>> {
        let trace = self.engine.run(&self.input(prefix).ok()?).ok()?;
        Some(router_input(self.model, &trace))
    }
}

fn verify_in<S: ClaimArith>(
    ts: &TaskSet,
    model: &Model<S>,
    epsilon: &Rat,
    router: &str,
    run: Run<'_>,
) -> Verdict {
    let cx = Context {
        ts,
        model,
        engine: evaluator(model),
        eps: S::from_rat(epsilon),
        epsilon,
        tokens: token_map(ts, model),
        expert_of_task: ts
            .tasks
            .iter()
            .map(|t| model.experts.iter().position(|e| e.name == t.name))
            .collect(),
        dense: !model.circuits.is_empty(),
        decisions: run.decisions,
    };
    let dense = cx.dense;
    let eps = cx.eps.clone();

    let mut routing = Tally::new(true);
    let mut probability = Tally::new(false);
    let mut retrieval = Tally::new(true);
    let mut witnesses = Witnesses::default();
    let mut decisions = Vec::new();
    let mut misrouted: Vec<(usize, Witness)> = Vec::new();
    let mut fingerprints: Vec<u64> = Vec::with_capacity(ts.prefixes.len());
    // Claim I, checked as the prefixes stream by.
    let mut iso = isolation::Isolation::new(ts, model);
    // One exp-bound cache per worker thread, kept across chunks.
    let caches: Vec<Mutex<S::Cache>> = (0..rayon::current_num_threads().max(1))
        .map(|_| Mutex::new(S::Cache::default()))
        .collect();

    let total = ts.prefixes.len();
    for (c, chunk) in ts.prefixes.chunks(CHUNK).enumerate() {
        let assessed: Vec<Assessed<S>> = chunk
            .par_iter()
            .map(|prefix| {
                let slot = rayon::current_thread_index().unwrap_or(0) % caches.len();
                let mut cache = caches[slot].lock().unwrap_or_else(|e| e.into_inner());
                cx.assess(prefix, &iso, &mut cache)
            })
            .collect();
        for (offset, a) in assessed.into_iter().enumerate() {
            if let Some((ok, margin)) = a.routing {
                routing.record(ok, margin);
            }
            probability.record(a.probability.0, a.probability.1);
            retrieval.record(a.retrieval.0, a.retrieval.1);
            decisions.extend(a.decisions);
            for w in a.witnesses {
                witnesses.push(w);
            }
            if let Some(w) = a.misrouted {
                misrouted.push((c * CHUNK + offset, w));
            }
            fingerprints.push(a.fingerprint);
            iso.record(a.isolation);
        }
        if let Some(progress) = run.progress {
            progress((c * CHUNK + chunk.len()).min(total), total);
        }
    }

    // Routing witnesses get the strongest explanation available: a prefix of
    // another task with the identical router input proves no router can work.
    let mut by_fingerprint: HashMap<u64, Vec<usize>> = HashMap::new();
    if !misrouted.is_empty() {
        for (i, f) in fingerprints.iter().enumerate() {
            by_fingerprint.entry(*f).or_default().push(i);
        }
    }
    let synthesis = &model.router.synthesis;
    // Routing failures cause the others, so they are listed first.
    let others = std::mem::take(&mut witnesses);
    for (index, mut w) in misrouted {
        let prefix = &ts.prefixes[index];
        let input = cx.exact_router_input(prefix);
        let conflict = by_fingerprint[&fingerprints[index]].iter().find(|&&j| {
            ts.prefixes[j].tasks.is_disjoint(&prefix.tasks)
                && input.is_some()
                && cx.exact_router_input(&ts.prefixes[j]) == input
        });
        w.reason = match conflict {
            Some(&j) => format!(
                "{}; \"{}\" ({}) has the identical router input, so no router that reads {} can send both to their tasks",
                w.reason,
                ts.render(&ts.prefixes[j].tokens),
                cx.task_names(&ts.prefixes[j].tasks).join(", "),
                synthesis.reads
            ),
            None if !synthesis.converged => format!(
                "{}; router synthesis found no linear router over {} (the perceptron stopped after {} epochs, its best router misroutes {} prefix(es)): the tasks are likely not linearly separable here, as with XOR-like templates (the same words in swapped combinations across tasks); make some word before the key unique to each task, or try --head1 content; `routecert routability` decides whether any linear router exists and, if none does, prints a checked certificate with the minimal conflicting prefixes",
                w.reason, synthesis.reads, synthesis.epochs, synthesis.misrouted
            ),
            None if !S::CERTIFIED => format!(
                "{}; the synthesised router separates the designed features exactly, so f64 rounding decided this prefix (compare with --arith exact)",
                w.reason
            ),
            None => format!(
                "{}; the synthesised router separates the designed features, so the forward pass disagrees with the design (a construction bug)",
                w.reason
            ),
        };
        witnesses.push(w);
    }
    witnesses.count += others.count - others.list.len();
    for w in others.list {
        witnesses.push(w);
    }
    let expert_of_task = &cx.expert_of_task;

    let (size, experts) = size_claim(ts, model, expert_of_task, &mut witnesses, &mut decisions);
    let (isolation_claim, circuits) = if dense {
        let found = iso.finish(ts, model);
        witnesses.count += found.witnesses.count - found.witnesses.list.len();
        for w in found.witnesses.list {
            witnesses.push(w);
        }
        decisions.extend(found.decisions);
        (Some(found.claim), Some(found.circuits))
    } else {
        (None, None)
    };

    Verdict {
        arith: S::NAME.to_string(),
        model: model.kind(),
        router: router.to_string(),
        epsilon: epsilon.to_string(),
        max_len: ts.max_len,
        vocabulary: ts.vocab.len(),
        prefixes: ts.prefixes.len(),
        queries: ts.queries(),
        ambiguous: ts.ambiguous(),
        claims: Claims {
            routing: if dense {
                ClaimResult::not_applicable()
            } else {
                routing.finish(Clone::clone)
            },
            probability: probability.finish(|p| eps.clone() - p.clone()),
            retrieval: retrieval.finish(Clone::clone),
            size,
            isolation: isolation_claim,
        },
        experts,
        circuits,
        failure_count: witnesses.count,
        failures: witnesses.list,
        cross_check: None,
        decisions: if run.decisions { decisions } else { Vec::new() },
        router_margins: None,
    }
}

/// S: size, counted from the model's experts (MoE) or circuits (dense).
fn size_claim<S: ClaimArith>(
    ts: &TaskSet,
    model: &Model<S>,
    expert_of_task: &[Option<usize>],
    witnesses: &mut Witnesses,
    decisions: &mut Vec<Decision>,
) -> (ClaimResult, Vec<ExpertSize>) {
    let dense = !model.circuits.is_empty();
    let unit = if dense { "circuit" } else { "expert" };
    let mut size = Tally::<Rat>::new(true);
    let mut experts = Vec::new();
    for (k, task) in ts.tasks.iter().enumerate() {
        let bound = task.bound(ts.max_len);
        // (name, roles of its neurons)
        let found: Option<(String, Vec<NeuronRole>)> = if dense {
            model
                .circuits
                .iter()
                .find(|c| c.name == task.name)
                .map(|c| {
                    let roles = c
                        .neurons
                        .iter()
                        .filter_map(|&n| model.experts[0].neurons.get(n).map(|x| x.role))
                        .collect();
                    (c.name.clone(), roles)
                })
        } else {
            expert_of_task[k].map(|e| {
                let expert = &model.experts[e];
                (
                    expert.name.clone(),
                    expert.neurons.iter().map(|n| n.role).collect(),
                )
            })
        };
        let Some((name, roles)) = found else {
            size.record(false, None);
            decisions.push(Decision::new("size", &task.name, holds(false)));
            witnesses.push(Witness {
                claim: "size",
                prefix: String::new(),
                tasks: vec![task.name.clone()],
                expert: None,
                top_logits: vec![],
                reason: format!("the model has no {unit} for task {}", task.name),
            });
            continue;
        };
        let neurons = roles.len();
        size.record(
            neurons <= bound,
            Some(Rat::from_integer((bound as i64 - neurons as i64).into())),
        );
        decisions.push(Decision::new("size", &task.name, holds(neurons <= bound)));
        if neurons > bound {
            witnesses.push(Witness {
                claim: "size",
                prefix: String::new(),
                tasks: vec![task.name.clone()],
                expert: Some(name.clone()),
                top_logits: vec![],
                reason: format!(
                    "{unit} {name} has {neurons} neurons, above L·|T(k)| + |Δk| = {bound}"
                ),
            });
        }
        let count = |role| roles.iter().filter(|&&r| r == role).count();
        experts.push(ExpertSize {
            task: task.name.clone(),
            templates: task.templates.len(),
            template_length_sum: task.template_length_sum(),
            pairs: task.pairs.len(),
            neurons,
            syntactic: count(NeuronRole::Syntactic),
            semantic: count(NeuronRole::Semantic),
            complexity: task.complexity(),
            bound,
        });
    }
    (size.finish(Clone::clone), experts)
}

/// A small probability for a message: exact if short, else scientific.
fn show_small<S: Scalar>(p: &S) -> String {
    let t = p.text();
    match t.parse::<Rat>() {
        Ok(r) if t.len() > 24 => approx(&r),
        _ => t,
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
    use num_traits::Zero;
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
        // min_margin: the same for routing; ε − P(invalid) for P.
        assert_eq!(v.claims.routing.min_margin, Some(worst.to_string()));
        let p: Rat = v.claims.probability.worst.unwrap().parse().unwrap();
        let m: Rat = v.claims.probability.min_margin.unwrap().parse().unwrap();
        assert_eq!(m, eps() - p);
        // spoken_in: 8 neurons against L·|T(k)| + |Δk| = 9.
        assert_eq!(v.claims.size.min_margin.as_deref(), Some("1"));
        assert!(v.claims.isolation.is_none());
    }

    #[test]
    fn f64_decides_the_same_claims_with_similar_margins() {
        let (ts, model) = setup();
        let recorded = Run {
            decisions: true,
            progress: None,
        };
        let exact = verify_run(&ts, &model, &eps(), "syntactic+key", Arith::Exact, recorded);
        let float = verify_run(&ts, &model, &eps(), "syntactic+key", Arith::F64, recorded);
        assert_eq!(float.arith, "f64");
        assert!(float.all_hold());
        // 39 prefixes × (R, P, A) + one size decision per task.
        assert_eq!(exact.decisions.len(), 39 * 3 + 2);
        assert_eq!(exact.decisions, float.decisions);
        // Without recording, a verdict keeps no decisions.
        assert!(
            verify(&ts, &model, &eps(), "syntactic+key")
                .decisions
                .is_empty()
        );
        let r = |v: &Verdict| -> f64 {
            v.claims
                .routing
                .min_margin
                .as_ref()
                .unwrap()
                .parse()
                .unwrap()
        };
        let exact_margin: Rat = exact
            .claims
            .routing
            .min_margin
            .clone()
            .unwrap()
            .parse()
            .unwrap();
        assert!((r(&float) - f64::from_rat(&exact_margin)).abs() < 1e-9);
        // The f64 P(invalid) is an estimate at or below the certified bound.
        let pe: Rat = exact.claims.probability.worst.unwrap().parse().unwrap();
        let pf: f64 = float.claims.probability.worst.unwrap().parse().unwrap();
        assert!(
            pf > 0.0 && pf <= f64::from_rat(&pe) * (1.0 + 1e-12),
            "{pf} vs {pe}"
        );
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
        // Where P fails its margin ε − P(invalid) is negative.
        let m: Rat = v.claims.probability.min_margin.unwrap().parse().unwrap();
        assert!(m < Rat::zero());
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

    #[test]
    fn arith_names_parse() {
        for a in [Arith::Exact, Arith::F64, Arith::Both] {
            assert_eq!(a.to_string().parse::<Arith>(), Ok(a));
        }
        assert!("float".parse::<Arith>().is_err());
    }
}
