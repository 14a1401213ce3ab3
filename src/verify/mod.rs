//! Stage 5: check the paper's claims on every prefix, behind one entry
//! point ([`verify`]) that takes a [`Config`].
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

//!
//! One job per file: [`verdict`] the types of what was found, [`arith`] the
//! number types claims are decided in, [`assess`] one prefix, [`logits`]
//! claims P and A on a trace, [`size`] claim S, [`isolation`] claim I,
//! [`compare`] the `--arith both` cross-check, [`probability`] the P
//! certificate. This file runs the prefixes and folds them into a verdict.

pub mod arith;
mod assess;
pub mod compare;
pub mod interval;
pub mod isolation;
pub mod logits;
pub mod probability;
mod size;
mod tally;
pub mod verdict;

pub use arith::{ClaimArith, FastCache};
pub use logits::{
    LogitCheck, OracleFacts, approx, check_logits, largest_logits, oracle_facts, top_logits,
};
pub use verdict::{
    Arith, Claim, ClaimResult, Claims, ExpertSize, MAX_WITNESSES, Number, Verdict, Witness,
};

use crate::construct::{ModelKind, RouterMode};
use crate::model::{Model, ScoreUnit};
use crate::scalar::{FastRat, Rat, Scalar};
use crate::taskset::TaskSet;
use assess::{Assessed, Context};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;
use tally::Tally;
use verdict::Witnesses;

/// How one verification runs: the arithmetic, ε, what to record and whom
/// to tell of progress. Build with [`Config::new`] and the setters.
#[derive(Clone, Copy)]
pub struct Config<'a> {
    pub arith: Arith,
    /// The P claim's ε.
    pub epsilon: &'a Rat,
    /// The router input the MoE model was built for, copied into the
    /// verdict (dense models: none).
    pub router: Option<RouterMode>,
    /// Keep every decision in the verdict (what `--arith both` compares).
    /// Off, `Verdict::decisions` stays empty: at a million prefixes the
    /// decisions alone would take hundreds of megabytes.
    pub decisions: bool,
    /// Exact arithmetic on BigRational throughout instead of [`FastRat`]:
    /// slower, and the reference the fast path is tested against.
    pub bigrational: bool,
    /// Called with (prefixes done, prefixes in all) as the run goes.
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
}

impl<'a> Config<'a> {
    /// Exact arithmetic, no router label, nothing recorded.
    pub fn new(epsilon: &'a Rat) -> Config<'a> {
        Config {
            arith: Arith::Exact,
            epsilon,
            router: None,
            decisions: false,
            bigrational: false,
            progress: None,
        }
    }

    pub fn arith(self, arith: Arith) -> Self {
        Config { arith, ..self }
    }

    pub fn router(self, router: RouterMode) -> Self {
        Config {
            router: Some(router),
            ..self
        }
    }

    pub fn decisions(self, decisions: bool) -> Self {
        Config { decisions, ..self }
    }

    pub fn bigrational(self) -> Self {
        Config {
            bigrational: true,
            ..self
        }
    }

    pub fn progress(self, progress: &'a (dyn Fn(usize, usize) + Sync)) -> Self {
        Config {
            progress: Some(progress),
            ..self
        }
    }
}

/// Verify every claim on every prefix: the MoE model (R, P, A, S) or the
/// dense model (P, A, S, I), in the arithmetic `config` names. Exact runs
/// evaluate the weights as [`FastRat`]s (the same exact numbers as
/// BigRational, held in machine words while they fit) unless
/// `config.bigrational`; `Arith::Both` returns the exact verdict with the
/// f64 claims and every disagreement attached.
pub fn verify(ts: &TaskSet, model: &Model<Rat>, config: &Config<'_>) -> Verdict {
    match config.arith {
        Arith::Exact if config.bigrational => verify_in(ts, model, config),
        Arith::Exact => verify_in(ts, &model.map(FastRat::from_rat), config),
        Arith::F64 => verify_in(ts, &model.to_f64(), config),
        Arith::Both => {
            // The cross-check compares every decision of the two runs.
            let recorded = config.decisions(true);
            let mut exact = verify(ts, model, &recorded.arith(Arith::Exact));
            let float = verify(ts, model, &recorded.arith(Arith::F64));
            exact.cross_check = Some(compare::cross_check(&exact, &float));
            exact.arith = Arith::Both;
            if !config.decisions {
                exact.decisions = Vec::new();
            }
            exact
        }
    }
}

/// [`verify`], except that an f64 run never reports a failure exact
/// arithmetic would not: rounding (head 1's weights 2^j/Σ2^l against routers
/// of 10^15 and more) can turn a holding claim into a false failure at any
/// L. When the f64 run fails a claim and the weights are exact with ln 2
/// scores, every claim is re-decided as `Arith::Both` (exact decides, the
/// f64 disagreements attached, no progress reported). The flag says whether
/// that happened, for the caller to tell the user.
pub fn verify_f64_failures_exactly(
    ts: &TaskSet,
    model: &Model<Rat>,
    config: &Config<'_>,
) -> (Verdict, bool) {
    let verdict = verify(ts, model, config);
    if config.arith == Arith::F64 && !verdict.all_hold() && model.score_unit == ScoreUnit::Ln2 {
        let both = Config {
            arith: Arith::Both,
            progress: None,
            ..*config
        };
        return (verify(ts, model, &both), true);
    }
    (verdict, false)
}

/// Prefixes assessed in parallel between two in-order folds: large enough
/// to keep both cores busy, small enough that the records of a chunk take
/// little memory.
const CHUNK: usize = 4096;

/// One run in arithmetic `S`: every prefix assessed (in parallel, chunk by
/// chunk), folded in prefix order, then S and I, which look at the whole.
fn verify_in<S: ClaimArith>(ts: &TaskSet, model: &Model<S>, config: &Config<'_>) -> Verdict {
    let epsilon = config.epsilon;
    let cx = Context::new(ts, model, epsilon, config.decisions);
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
        if let Some(progress) = config.progress {
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
    witnesses.absorb(others);
    let expert_of_task = &cx.expert_of_task;

    let (size, experts) =
        size::size_claim(ts, model, expert_of_task, &mut witnesses, &mut decisions);
    let (isolation_claim, circuits) = if dense {
        let found = iso.finish(ts, model);
        witnesses.absorb(found.witnesses);
        decisions.extend(found.decisions);
        (Some(found.claim), Some(found.circuits))
    } else {
        (None, None)
    };

    Verdict {
        arith: config.arith,
        model: if dense {
            ModelKind::Dense
        } else {
            ModelKind::Moe
        },
        router: if dense { None } else { config.router },
        epsilon: epsilon.clone(),
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
        router_margins: None,
        decisions: if config.decisions {
            decisions
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::{Options, build_moe};
    use crate::model::{NeuronRole, SparseVec};
    use crate::scalar::{Scalar, int, rat};
    use num_traits::Zero;

    fn setup() -> (TaskSet, Model<Rat>) {
        let ts = crate::fixtures::task_set("running_example.toml");
        let model = build_moe(&ts, &Options::default());
        (ts, model)
    }

    fn eps() -> Rat {
        rat(1, 1_000_000)
    }

    /// Exact verification at ε = 1e-6, as `routecert verify` runs it.
    fn verify_at(ts: &TaskSet, model: &Model<Rat>, epsilon: &Rat) -> Verdict {
        verify(
            ts,
            model,
            &Config::new(epsilon).router(RouterMode::SyntacticKey),
        )
    }

    fn exact(n: &Option<Number>) -> Rat {
        n.as_ref().and_then(Number::exact).cloned().unwrap()
    }

    /// Two tasks of 130-word templates that differ in one word: the router
    /// trains on per-sample multipliers (the common lcm passes 4,096 bits)
    /// and still routes every prefix, checked exactly from the weights.
    #[test]
    fn long_templates_route_under_per_sample_multipliers() {
        let ts = crate::fixtures::two_long_tasks(130);
        let model = build_moe(&ts, &Options::default());
        let v = verify_at(&ts, &model, &eps());
        assert!(v.all_hold());
        assert_eq!(v.claims.routing.checked, ts.prefixes.len());
        // Past position 65 the two tasks' prefixes are disjoint, so the
        // router separates them there (C(w) is one task).
        let single = ts.prefixes.iter().filter(|p| p.tasks.len() == 1).count();
        assert!(single > 100, "{single} single-task prefixes");
        assert!(exact(&v.claims.routing.worst) > Rat::zero());
    }

    #[test]
    fn the_construction_passes() {
        let (ts, model) = setup();
        let v = verify_at(&ts, &model, &eps());
        assert!(v.all_hold());
        assert_eq!(v.claims.routing.checked, 39);
        assert_eq!((v.arith, v.model), (Arith::Exact, ModelKind::Moe));
        // The smallest routing margin is positive and exact.
        let worst = exact(&v.claims.routing.worst);
        assert!(worst > Rat::zero());
        // min_margin: the same for routing; ε − P(invalid) for P.
        assert_eq!(exact(&v.claims.routing.min_margin), worst);
        let p = exact(&v.claims.probability.worst);
        let m = exact(&v.claims.probability.min_margin);
        assert_eq!(m, eps() - p);
        // spoken_in: 8 neurons against L·|T(k)| + |Δk| = 9.
        assert_eq!(exact(&v.claims.size.min_margin), int(1));
        assert!(v.claims.isolation.is_none());
    }

    #[test]
    fn f64_decides_the_same_claims_with_similar_margins() {
        let (ts, model) = setup();
        let e = eps();
        let recorded = Config::new(&e)
            .router(RouterMode::SyntacticKey)
            .decisions(true);
        let exact_run = verify(&ts, &model, &recorded);
        let float = verify(&ts, &model, &recorded.arith(Arith::F64));
        assert_eq!(float.arith, Arith::F64);
        assert!(float.all_hold());
        // 39 prefixes × (R, P, A) + one size decision per task.
        assert_eq!(exact_run.decisions.len(), 39 * 3 + 2);
        assert_eq!(exact_run.decisions, float.decisions);
        // Without recording, a verdict keeps no decisions.
        assert!(verify_at(&ts, &model, &eps()).decisions.is_empty());
        let float_margin = match float.claims.routing.min_margin {
            Some(Number::Float(x)) => x,
            other => panic!("an f64 run's margin is an f64, not {other:?}"),
        };
        let exact_margin = exact(&exact_run.claims.routing.min_margin);
        assert!((float_margin - f64::from_rat(&exact_margin)).abs() < 1e-9);
        // The f64 P(invalid) is an estimate at or below the certified bound.
        let pe = exact(&exact_run.claims.probability.worst);
        let pf = float.claims.probability.worst.unwrap().to_f64();
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
        let v = verify_at(&ts, &model, &eps());
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
        let v = verify_at(&ts, &model, &eps());
        // Every score ties, so no prefix has a strict margin: the 21
        // located_in prefixes go to their expert but tie with spoken_in, and
        // the 18 spoken_in prefixes go to expert 0 (first on ties).
        assert_eq!(v.claims.routing.failures, 39);
        let reasons = |needle: &str| {
            v.failures
                .iter()
                .filter(|w| w.claim == Claim::Routing && w.reason.contains(needle))
                .count()
        };
        assert_eq!(reasons("ties with an incompatible expert"), 21);
        assert_eq!(reasons("not in C(w)"), 18);
    }

    #[test]
    fn a_weak_margin_fails_the_probability_certificate_only() {
        let (ts, model) = setup();
        // β_sem = 18 was sized for ε = 1e-6; ask for 1e-30 instead.
        let v = verify_at(&ts, &model, &rat(1, 10).pow(30));
        assert!(!v.claims.probability.holds);
        assert!(v.claims.retrieval.holds && v.claims.routing.holds);
        assert!(v.failures.iter().all(|w| w.claim == Claim::Probability));
        // Where P fails its margin ε − P(invalid) is negative.
        assert!(exact(&v.claims.probability.min_margin) < Rat::zero());
    }

    #[test]
    fn an_oversized_expert_fails_size() {
        let (ts, mut model) = setup();
        // spoken_in sits exactly at its bound 6·1 + 3 = 9 with 8 neurons + 1
        // dead one; a tenth exceeds it.
        let mut dead = model.experts[1].neurons[0].clone();
        dead.write = SparseVec::default();
        model.experts[1].neurons.extend([dead.clone(), dead]);
        let v = verify_at(&ts, &model, &eps());
        assert_eq!((v.claims.size.holds, v.claims.size.failures), (false, 1));
        assert!(v.failures.iter().any(|w| {
            w.reason
                .contains("expert spoken_in has 10 neurons, above L·|T(k)| + |Δk| = 9")
        }));
        // Dead neurons change no logit: every other claim still holds.
        assert!(v.claims.routing.holds && v.claims.probability.holds && v.claims.retrieval.holds);
    }
}
