//! The claims decided from rigorous intervals: weights routecert did not
//! build, or that use natural-exp attention, whose softmax weights are
//! irrational ([`crate::interval`]).
//!
//! Each claim on each prefix is *proved* when the intervals decide it,
//! *refuted* when they decide the opposite, and otherwise *undecided*,
//! counted apart and never as holding; a claim holds only when it is proved
//! on every prefix (expert, for size). The oracle (V(w), C(w)) comes from
//! the task set as in [`super`]; the numbers from the weights only.
//! - R (MoE): the largest lower bound over compatible experts above every
//!   incompatible expert's upper bound (so e*, ties to the lowest index,
//!   is compatible and strictly above every task outside); refuted when an
//!   incompatible expert's lower bound reaches every compatible upper bound.
//! - P: an upper bound on P(invalid) below ε; refuted by a lower bound ≥ ε.
//! - A: the best valid logit's lower bound above every invalid upper bound;
//!   refuted when an invalid lower bound reaches every valid upper bound.
//! - S: the neurons of each task's expert (dense: its circuit) that fire on
//!   some prefix of the task, against L·|T(k)| + |Δk|: proved when even the
//!   neurons that may fire fit the bound, refuted when those that surely
//!   fire exceed it.
//! - I (dense): for each circuit C(k), k ∈ C(w), on each prefix w: no
//!   neuron of a task w does not belong to fires (proved when every such
//!   pre-activation's upper bound is ≤ 0, refuted when one is surely
//!   positive) and the model masked to C(k) gives the full model's P and A
//!   verdicts (proved when no neuron outside C(k) may fire, so the masked
//!   logits are the full ones, or when both verdicts are decided alike;
//!   refuted when one is decided each way); and the circuits share no
//!   neuron (from config.json, exactly).

use super::isolation::{owner_labels, owner_sets};
use super::logits::token_map;
use super::{Claim, MAX_WITNESSES, Witness};
use crate::interval::Iv;
use crate::interval::exp::{exp, exp_coarse};
use crate::interval::forward::{FfnResult, Firing, IntervalEvaluator, IntervalTrace};
use crate::interval::refine::Refiner;
use crate::model::{Model, SparseVec};
use crate::scalar::{Rat, Scalar};
use crate::taskset::{Prefix, TaskSet};
use num_traits::{ToPrimitive, Zero};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// The refinement stage's precisions: a prefix whose routing the 53-bit
/// pass leaves undecided has its router scores recomputed with softmax
/// weights to each of these many bits in turn ([`crate::interval::refine`]),
/// until one decides it; 512 bits is the stated limit.
pub const REFINE_BITS: [u32; 3] = [128, 256, 512];

/// Prefixes assessed per parallel batch (bounds the memory of results).
const CHUNK: usize = 4096;
/// Logits shown in a witness.
const TOP_LOGITS: usize = 5;

/// What the intervals decided about one claim on one prefix (or expert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Proved,
    Refuted,
    Undecided,
}

/// Why interval verification could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    #[error("the model's vocabulary has no token '{0}', which the spec uses")]
    MissingToken(String),
    #[error("the model has no experts")]
    NoExperts,
}

/// One claim over every prefix (experts, for size).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct IntervalClaim {
    /// Proved on everything checked.
    pub holds: bool,
    pub checked: usize,
    pub proved: usize,
    pub refuted: usize,
    pub undecided: usize,
    /// A rigorous lower bound on the smallest margin (routing: best
    /// compatible − best incompatible score; probability: ε − P(invalid);
    /// retrieval: best valid − best invalid logit; size: bound − neurons
    /// that may fire), as the exact dyadic it is.
    pub min_margin: Option<String>,
}

/// The claims.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IntervalClaims {
    /// Not applicable to the dense model (checked = 0).
    pub routing: IntervalClaim,
    pub probability: IntervalClaim,
    pub retrieval: IntervalClaim,
    pub size: IntervalClaim,
    /// The dense model only: one check per circuit C(k) and prefix of
    /// D(k), and one per neuron shared by circuits (margin: the silence
    /// margin, a lower bound on −pre-activation of the most active neuron
    /// that must stay silent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<IntervalClaim>,
}

/// Claim I for one circuit of the dense model.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IntervalCircuit {
    pub task: String,
    pub neurons: usize,
    /// Prefixes of D(k) checked, and how each check came out.
    pub prefixes: usize,
    pub proved: usize,
    pub refuted: usize,
    pub undecided: usize,
    /// Prefixes where masking to C(k) surely changes the P or A verdict.
    pub changed_verdicts: usize,
    /// Prefixes where a neuron that must stay silent surely fires, and
    /// where one may fire (none surely).
    pub off_task_firings: usize,
    pub off_task_maybe: usize,
    /// Neurons C(k) shares with another circuit.
    pub shared_neurons: usize,
    /// Proved on every prefix and sharing no neuron.
    pub isolated: bool,
    /// Rigorous lower bound on the circuit's smallest silence margin.
    pub silence_margin: Option<String>,
}

/// Claim S for one task: its expert (dense: circuit) by the neurons that
/// fire on its prefixes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FiringSize {
    pub task: String,
    /// The expert or circuit, if the model has one of the task's name.
    pub unit: Option<String>,
    /// Neurons in the expert (circuit).
    pub neurons: usize,
    /// Neurons that surely fire on some prefix of the task.
    pub firing: usize,
    /// Neurons that may fire on some prefix but surely fire on none.
    pub undecided: usize,
    /// L·|T(k)| + |Δk|.
    pub bound: usize,
    pub outcome: Outcome,
}

/// How the intervals were computed, for the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Precision {
    /// Endpoint format: dyadic rationals with a 53-bit mantissa.
    pub endpoints: &'static str,
    /// Taylor terms of e^y on |y| ≤ 1/2.
    pub exp_terms: u32,
    /// Refinement precisions (bits of the softmax weights), in order.
    pub refine_bits: Vec<u32>,
    /// Prefixes whose routing went to refinement, and how many of them it
    /// decided (the rest stay undecided, counted in `claims.routing`).
    pub refined: usize,
    pub refined_decided: usize,
    /// Dense: isolation checks whose silence went to refinement (a neuron
    /// that must stay silent straddling 0 at 53 bits: its pre-activation
    /// recomputed at the same precisions), and how many it decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silence_refined: Option<(usize, usize)>,
}

/// Everything interval verification found.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalVerdict {
    /// "interval".
    pub arith: &'static str,
    /// "moe" or "dense".
    pub model: &'static str,
    /// "ln2" or "natural".
    pub score_unit: &'static str,
    pub epsilon: String,
    pub max_len: usize,
    pub vocabulary: usize,
    pub prefixes: usize,
    pub queries: usize,
    pub ambiguous: usize,
    pub precision: Precision,
    pub claims: IntervalClaims,
    pub experts: Vec<FiringSize>,
    /// The dense model's circuits (claim I).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuits: Option<Vec<IntervalCircuit>>,
    /// Refuted claims (all counted, the first MAX_WITNESSES listed).
    pub failure_count: usize,
    pub failures: Vec<Witness>,
    /// Claims the intervals left open, counted apart.
    pub undecided_count: usize,
    pub undecided: Vec<Witness>,
}

impl IntervalVerdict {
    /// Every claim proved on every prefix: the only case that exits 0.
    pub fn all_proved(&self) -> bool {
        let c = &self.claims;
        c.routing.holds
            && c.probability.holds
            && c.retrieval.holds
            && c.size.holds
            && c.isolation.as_ref().is_none_or(|i| i.holds)
    }
}

/// Running count of one claim.
#[derive(Default)]
struct Count {
    claim: IntervalClaim,
    margin: Option<f64>,
}

impl Count {
    fn record(&mut self, outcome: Outcome, margin: Option<f64>) {
        self.claim.checked += 1;
        match outcome {
            Outcome::Proved => self.claim.proved += 1,
            Outcome::Refuted => self.claim.refuted += 1,
            Outcome::Undecided => self.claim.undecided += 1,
        }
        if let Some(m) = margin.filter(|m| !m.is_nan()) {
            self.margin = Some(self.margin.map_or(m, |w| w.min(m)));
        }
    }

    fn finish(mut self) -> IntervalClaim {
        self.claim.holds = self.claim.proved == self.claim.checked;
        self.claim.min_margin = self.margin.map(|m| Iv::point(m).text());
        self.claim
    }
}

/// A lower bound on a − b for two upper/lower endpoints.
fn gap_lo(a: f64, b: f64) -> f64 {
    (Iv::point(a) - Iv::point(b)).lo()
}

/// Witness lists, capped.
#[derive(Default)]
struct Listed {
    count: usize,
    list: Vec<Witness>,
}

impl Listed {
    fn push(&mut self, w: Witness) {
        self.count += 1;
        if self.list.len() < MAX_WITNESSES {
            self.list.push(w);
        }
    }
}

/// One prefix's outcomes.
struct Assessed {
    routing: Option<(Outcome, Option<f64>)>,
    /// Routing went to refinement: Some(whether refinement decided it).
    refined: Option<bool>,
    probability: (Outcome, Option<f64>),
    retrieval: (Outcome, Option<f64>),
    /// (outcome, witness) for every claim not proved.
    open: Vec<(Outcome, Witness)>,
    /// Per task of the prefix: (task, neurons that may fire, with how).
    firing: Vec<(usize, Vec<(usize, Firing)>)>,
    /// Dense: one isolation check per circuit of the prefix's tasks.
    isolation: Vec<IsolationCheck>,
}

/// Claim I for circuit `circuit` on one prefix.
struct IsolationCheck {
    circuit: usize,
    outcome: Outcome,
    /// Lower bound on the silence margin (None: nothing must stay silent).
    margin: Option<f64>,
    changed: bool,
    surely_fired: bool,
    maybe_fired: bool,
    /// Silence went to refinement: Some(whether it decided it).
    refined: Option<bool>,
}

/// The dense model's neuron ownership, for claim I.
struct Ownership {
    /// Each neuron's owner-set label, and the distinct owner sets (the
    /// tasks whose circuits list the neuron).
    labels: Vec<usize>,
    label_sets: Vec<BTreeSet<usize>>,
    circuit_of_task: Vec<Option<usize>>,
    task_of_circuit: Vec<Option<usize>>,
    /// Each circuit's neurons, sorted.
    members: Vec<Vec<usize>>,
}

impl Ownership {
    fn new(ts: &TaskSet, model: &Model<Iv>) -> Self {
        let (owners, circuit_of_task, task_of_circuit) = owner_sets(ts, model);
        let (labels, label_sets) = owner_labels(ts, model);
        debug_assert_eq!(labels.len(), owners.len());
        Ownership {
            labels,
            label_sets,
            circuit_of_task,
            task_of_circuit,
            members: model
                .circuits
                .iter()
                .map(|c| {
                    let mut m = c.neurons.clone();
                    m.sort_unstable();
                    m.dedup();
                    m
                })
                .collect(),
        }
    }

    /// Whether neuron `n` must stay silent on a prefix of `tasks`: no task
    /// whose circuit lists it is among them.
    fn off_task(&self, n: usize, tasks: &BTreeSet<usize>) -> bool {
        self.label_sets[self.labels[n]].is_disjoint(tasks)
    }
}

/// Two verdicts on one claim, decided by intervals: the same (proved),
/// surely different (refuted), or not known.
fn same_verdict(a: Outcome, b: Outcome) -> Outcome {
    match (a, b) {
        (Outcome::Undecided, _) | (_, Outcome::Undecided) => Outcome::Undecided,
        (x, y) if x == y => Outcome::Proved,
        _ => Outcome::Refuted,
    }
}

/// Every part must be proved; one refuted part refutes.
fn all_of(parts: &[Outcome]) -> Outcome {
    if parts.contains(&Outcome::Refuted) {
        Outcome::Refuted
    } else if parts.contains(&Outcome::Undecided) {
        Outcome::Undecided
    } else {
        Outcome::Proved
    }
}

fn verdict_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Proved => "holds",
        Outcome::Refuted => "fails",
        Outcome::Undecided => "undecided",
    }
}

struct Context<'a> {
    ts: &'a TaskSet,
    engine: IntervalEvaluator<'a>,
    /// The refinement stage, on the weights' exact rationals.
    refiner: Refiner<'a>,
    tokens: HashMap<usize, usize>,
    expert_of_task: Vec<Option<usize>>,
    epsilon: &'a Rat,
    /// ε's enclosure in doubles.
    eps_iv: Iv,
    dense: bool,
    /// The dense model's circuits' neurons (claim I).
    ownership: Option<Ownership>,
}

/// One prefix's decisions, with rigorous lower bounds on the margins.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixOutcome {
    /// None for the dense model.
    pub routing: Option<(Outcome, Option<f64>)>,
    pub probability: (Outcome, Option<f64>),
    pub retrieval: (Outcome, Option<f64>),
}

/// The weights in intervals, checked against the spec's vocabulary.
fn prepare(ts: &TaskSet, model: &Model<Rat>) -> Result<Model<Iv>, IntervalError> {
    if model.experts.is_empty() {
        return Err(IntervalError::NoExperts);
    }
    let tokens = token_map(ts, model);
    if let Some(missing) = (0..ts.vocab.len()).find(|t| !tokens.contains_key(t)) {
        return Err(IntervalError::MissingToken(
            ts.vocab.name(missing).to_string(),
        ));
    }
    Ok(model.map(Iv::enclose))
}

impl<'a> Context<'a> {
    fn new(ts: &'a TaskSet, exact: &'a Model<Rat>, model: &'a Model<Iv>, epsilon: &'a Rat) -> Self {
        let dense = !model.circuits.is_empty();
        let ownership = dense.then(|| Ownership::new(ts, model));
        let engine = match &ownership {
            Some(o) => {
                IntervalEvaluator::new(model).with_labels(o.labels.clone(), o.label_sets.len())
            }
            None => IntervalEvaluator::new(model),
        };
        Context {
            ts,
            engine,
            refiner: Refiner::new(exact),
            tokens: token_map(ts, model),
            expert_of_task: ts
                .tasks
                .iter()
                .map(|t| {
                    if dense {
                        Some(0)
                    } else {
                        model.experts.iter().position(|e| e.name == t.name)
                    }
                })
                .collect(),
            epsilon,
            eps_iv: Iv::enclose(epsilon),
            dense,
            ownership,
        }
    }
}

/// R, P and A decided on each prefix of `ts`, in order: the per-prefix
/// view of [`verify_intervals`] (which also decides S and lists witnesses).
pub fn prefix_outcomes(
    ts: &TaskSet,
    model: &Model<Rat>,
    epsilon: &Rat,
) -> Result<Vec<PrefixOutcome>, IntervalError> {
    let iv_model = prepare(ts, model)?;
    let cx = Context::new(ts, model, &iv_model, epsilon);
    Ok(ts
        .prefixes
        .par_iter()
        .map(|p| {
            let a = cx.assess(p);
            PrefixOutcome {
                routing: a.routing,
                probability: a.probability,
                retrieval: a.retrieval,
            }
        })
        .collect())
}

/// One prefix of the spec decided as [`verify_intervals`] decides it
/// (refinement included): R, P and A with their margins, and the
/// witnesses of every claim not proved (`inspect --weights` on float
/// weights).
pub fn prefix_outcome(
    ts: &TaskSet,
    model: &Model<Rat>,
    prefix: &Prefix,
    epsilon: &Rat,
) -> Result<(PrefixOutcome, Vec<(Outcome, Witness)>), IntervalError> {
    let iv_model = prepare(ts, model)?;
    let cx = Context::new(ts, model, &iv_model, epsilon);
    let a = cx.assess(prefix);
    Ok((
        PrefixOutcome {
            routing: a.routing,
            probability: a.probability,
            retrieval: a.retrieval,
        },
        a.open,
    ))
}

/// Verify R, P, A and S on every prefix of `ts` from rigorous intervals on
/// `model`'s weights (any weights of the architecture; natural-exp or
/// ln 2 attention alike).
pub fn verify_intervals(
    ts: &TaskSet,
    model: &Model<Rat>,
    epsilon: &Rat,
) -> Result<IntervalVerdict, IntervalError> {
    let iv_model = prepare(ts, model)?;
    let dense = !model.circuits.is_empty();
    let cx = Context::new(ts, model, &iv_model, epsilon);

    let mut routing = Count::default();
    let mut probability = Count::default();
    let mut retrieval = Count::default();
    let mut failures = Listed::default();
    let mut undecided = Listed::default();
    let (mut refined, mut refined_decided) = (0, 0);
    // Per task: neurons surely firing on some prefix, and possibly firing.
    let mut surely: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); ts.tasks.len()];
    let mut maybe: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); ts.tasks.len()];
    let mut isolation = Count::default();
    let mut silence_refined = (0, 0);
    let mut per_circuit: Vec<CircuitTally> = (0..model.circuits.len())
        .map(|_| CircuitTally::default())
        .collect();
    for chunk in ts.prefixes.chunks(CHUNK) {
        let assessed: Vec<Assessed> = chunk.par_iter().map(|p| cx.assess(p)).collect();
        for a in assessed {
            if let Some((o, m)) = a.routing {
                routing.record(o, m);
            }
            if let Some(decided) = a.refined {
                refined += 1;
                refined_decided += usize::from(decided);
            }
            probability.record(a.probability.0, a.probability.1);
            retrieval.record(a.retrieval.0, a.retrieval.1);
            for (o, w) in a.open {
                match o {
                    Outcome::Refuted => failures.push(w),
                    _ => undecided.push(w),
                }
            }
            for (k, fired) in a.firing {
                for (n, f) in fired {
                    match f {
                        Firing::Surely => surely[k].insert(n),
                        Firing::Maybe => maybe[k].insert(n),
                    };
                }
            }
            for check in a.isolation {
                if let Some(decided) = check.refined {
                    silence_refined.0 += 1;
                    silence_refined.1 += usize::from(decided);
                }
                isolation.record(check.outcome, check.margin);
                per_circuit[check.circuit].record(&check);
            }
        }
    }
    let circuits = cx
        .ownership
        .as_ref()
        .map(|o| circuit_reports(ts, model, o, per_circuit, &mut isolation, &mut failures));

    let mut size = Count::default();
    let mut experts = Vec::new();
    for (k, task) in ts.tasks.iter().enumerate() {
        let bound = task.bound(ts.max_len);
        // The neurons S counts: the expert's (MoE) or the circuit's (dense).
        let unit: Option<(String, BTreeSet<usize>)> = if dense {
            model
                .circuits
                .iter()
                .find(|c| c.name == task.name)
                .map(|c| (c.name.clone(), c.neurons.iter().copied().collect()))
        } else {
            cx.expert_of_task[k].map(|e| {
                let expert = &model.experts[e];
                (expert.name.clone(), (0..expert.neurons.len()).collect())
            })
        };
        let witness = |reason: String, unit: Option<String>| Witness {
            claim: Claim::Size,
            prefix: String::new(),
            tasks: vec![task.name.clone()],
            expert: unit,
            top_logits: vec![],
            reason,
        };
        let Some((name, members)) = unit else {
            size.record(Outcome::Refuted, None);
            failures.push(witness(
                format!(
                    "the model has no {} for task {}",
                    if dense { "circuit" } else { "expert" },
                    task.name
                ),
                None,
            ));
            experts.push(FiringSize {
                task: task.name.clone(),
                unit: None,
                neurons: 0,
                firing: 0,
                undecided: 0,
                bound,
                outcome: Outcome::Refuted,
            });
            continue;
        };
        let firing = surely[k].intersection(&members).count();
        let open = maybe[k]
            .iter()
            .filter(|n| members.contains(n) && !surely[k].contains(n))
            .count();
        let outcome = if firing + open <= bound {
            Outcome::Proved
        } else if firing > bound {
            Outcome::Refuted
        } else {
            Outcome::Undecided
        };
        size.record(outcome, Some(bound as f64 - (firing + open) as f64));
        match outcome {
            Outcome::Proved => {}
            Outcome::Refuted => failures.push(witness(
                format!("{firing} neurons of {name} surely fire on prefixes of {}, above L·|T(k)| + |Δk| = {bound}", task.name),
                Some(name.clone()),
            )),
            Outcome::Undecided => undecided.push(witness(
                format!("{firing} neurons of {name} surely fire and {open} more may, against L·|T(k)| + |Δk| = {bound}"),
                Some(name.clone()),
            )),
        }
        experts.push(FiringSize {
            task: task.name.clone(),
            unit: Some(name),
            neurons: members.len(),
            firing,
            undecided: open,
            bound,
            outcome,
        });
    }

    Ok(IntervalVerdict {
        arith: "interval",
        model: model.kind(),
        score_unit: match model.score_unit {
            crate::model::ScoreUnit::Ln2 => "ln2",
            crate::model::ScoreUnit::Natural => "natural",
        },
        epsilon: epsilon.to_string(),
        max_len: ts.max_len,
        vocabulary: ts.vocab.len(),
        prefixes: ts.prefixes.len(),
        queries: ts.queries(),
        ambiguous: ts.ambiguous(),
        precision: Precision {
            endpoints: "dyadic, 53-bit mantissa (f64 values), rounded outward",
            exp_terms: crate::interval::exp::TERMS,
            refine_bits: REFINE_BITS.to_vec(),
            refined,
            refined_decided,
            silence_refined: dense.then_some(silence_refined),
        },
        claims: IntervalClaims {
            routing: if dense {
                IntervalClaim {
                    holds: true,
                    ..IntervalClaim::default()
                }
            } else {
                routing.finish()
            },
            probability: probability.finish(),
            retrieval: retrieval.finish(),
            size: size.finish(),
            isolation: dense.then(|| isolation.finish()),
        },
        experts,
        circuits,
        failure_count: failures.count,
        failures: failures.list,
        undecided_count: undecided.count,
        undecided: undecided.list,
    })
}

/// Claim I's checks of one circuit so far.
#[derive(Default)]
struct CircuitTally {
    count: Count,
    changed: usize,
    surely: usize,
    maybe: usize,
}

impl CircuitTally {
    fn record(&mut self, c: &IsolationCheck) {
        self.count.record(c.outcome, c.margin);
        self.changed += usize::from(c.changed);
        self.surely += usize::from(c.surely_fired);
        self.maybe += usize::from(c.maybe_fired && !c.surely_fired);
    }
}

/// Claim I per circuit: the prefix checks, then disjointness (a neuron two
/// circuits list, or a circuit of no task of the spec, refutes), decided
/// from config.json's circuits exactly.
fn circuit_reports(
    ts: &TaskSet,
    model: &Model<Rat>,
    own: &Ownership,
    tallies: Vec<CircuitTally>,
    isolation: &mut Count,
    failures: &mut Listed,
) -> Vec<IntervalCircuit> {
    let neurons = model.experts.first().map_or(&[][..], |e| &e.neurons[..]);
    let mut reports = Vec::new();
    for ((c, circuit), t) in model.circuits.iter().enumerate().zip(tallies) {
        let witness = |reason: String| Witness {
            claim: Claim::Isolation,
            prefix: String::new(),
            tasks: vec![circuit.name.clone()],
            expert: Some(format!("C({})", circuit.name)),
            top_logits: vec![],
            reason,
        };
        let Some(k) = own.task_of_circuit[c] else {
            isolation.record(Outcome::Refuted, None);
            failures.push(witness(format!(
                "circuit {} belongs to no task of the spec",
                circuit.name
            )));
            continue;
        };
        let mut shared = 0;
        for &n in &own.members[c] {
            let owners = &own.label_sets[own.labels[n]];
            if owners.len() > 1 {
                shared += 1;
                isolation.record(Outcome::Refuted, None);
                let others: Vec<&str> = owners
                    .iter()
                    .filter(|&&j| j != k)
                    .map(|&j| ts.tasks[j].name.as_str())
                    .collect();
                failures.push(witness(format!(
                    "C({}) shares neuron {n} ({}) with the circuit(s) of {}: circuits must be disjoint",
                    circuit.name,
                    neurons[n].name,
                    others.join(", ")
                )));
            }
        }
        let claim = t.count.finish();
        reports.push(IntervalCircuit {
            task: circuit.name.clone(),
            neurons: own.members[c].len(),
            prefixes: claim.checked,
            proved: claim.proved,
            refuted: claim.refuted,
            undecided: claim.undecided,
            changed_verdicts: t.changed,
            off_task_firings: t.surely,
            off_task_maybe: t.maybe,
            shared_neurons: shared,
            isolated: claim.holds && shared == 0,
            silence_margin: claim.min_margin,
        });
    }
    reports
}

impl Context<'_> {
    /// Claim I on one prefix: each circuit C(k), k ∈ C(w), from the full
    /// pass's FFN (`ffn`, the one expert's) and verdicts (`p`, `a`).
    #[allow(clippy::too_many_arguments)]
    fn isolation(
        &self,
        own: &Ownership,
        prefix: &Prefix,
        input: &[usize],
        trace: &IntervalTrace,
        ffn: &FfnResult,
        valid: &BTreeSet<usize>,
        (p, a): (Outcome, Outcome),
        witness: &dyn Fn(String) -> Witness,
    ) -> Vec<(IsolationCheck, Option<(Outcome, Witness)>)> {
        let model = self.engine.model();
        let neurons = &model.experts[0].neurons;
        // The neurons that must stay silent (the same for every circuit
        // checked here), and the silence margin's lower bound.
        let off: Vec<(usize, Firing, Iv)> = ffn
            .firing
            .iter()
            .zip(&ffn.activation)
            .filter(|((n, _), _)| own.off_task(*n, &prefix.tasks))
            .map(|(&(n, f), &act)| (n, f, act))
            .collect();
        let margin = (0..own.label_sets.len())
            .filter(|&l| own.label_sets[l].is_disjoint(&prefix.tasks))
            .filter_map(|l| ffn.label_max.get(l).copied())
            .filter(|m| m.is_finite())
            .map(|m| -m)
            .reduce(f64::min);
        let mut surely = off.iter().any(|(_, f, _)| *f == Firing::Surely);
        let mut margin = margin;
        // Neurons straddling 0 at 53 bits whose pre-activation refinement
        // puts at or below 0: silent, so masking them out changes nothing.
        let mut silenced: BTreeSet<usize> = BTreeSet::new();
        let mut refined = None;
        let mut still_bits = None;
        if !surely && !off.is_empty() {
            refined = Some(false);
            let exact = &self.refiner.model().experts[0].neurons;
            let mut open: Vec<usize> = off.iter().map(|(n, ..)| *n).collect();
            for bits in REFINE_BITS {
                let bounds = self.refiner.pre_activations(
                    input,
                    bits,
                    open.iter().map(|&n| (&exact[n].read, &exact[n].bias)),
                );
                let mut still = Vec::new();
                for (&n, (lo, hi)) in open.iter().zip(&bounds) {
                    if lo.is_positive() {
                        surely = true;
                        still.push(n);
                    } else if hi.is_positive() {
                        still.push(n);
                    } else {
                        silenced.insert(n);
                    }
                }
                open = still;
                if surely || open.is_empty() {
                    refined = Some(true);
                    break;
                }
                still_bits = Some(bits);
            }
            if open.is_empty() {
                // Every one is ≤ 0: 0 bounds −pre-activation below for
                // them, and the others were already ≤ 0 at 53 bits.
                margin = Some(0.0);
                still_bits = None;
            }
        }
        let off: Vec<(usize, Firing, Iv)> = off
            .into_iter()
            .filter(|(n, ..)| !silenced.contains(n))
            .collect();
        let silence = if surely {
            Outcome::Refuted
        } else if off.is_empty() {
            Outcome::Proved
        } else {
            Outcome::Undecided
        };
        let silence_reason = || {
            let named: Vec<String> = off
                .iter()
                .take(4)
                .map(|(n, _, act)| format!("{} (ReLU {})", neurons[*n].name, act.show()))
                .collect();
            format!(
                "{} neuron(s) of tasks this prefix does not belong to {}: {}{}",
                off.len(),
                if surely {
                    "fire (pre-activation surely > 0)"
                } else {
                    "may fire (pre-activation interval straddles 0)"
                },
                named.join(", "),
                still_bits.map_or_else(String::new, |b| format!(
                    " (still after refinement to {b} bits)"
                ))
            )
        };
        let mut out = Vec::new();
        for &k in &prefix.tasks {
            let Some(c) = own.circuit_of_task[k] else {
                continue;
            };
            let members = &own.members[c];
            let keep = |n: usize| members.binary_search(&n).is_ok();
            // Masking removes only firing neurons outside C(k); if there
            // are none the masked logits are the full ones, as reals.
            let removes = ffn
                .firing
                .iter()
                .any(|(n, _)| !keep(*n) && !silenced.contains(n));
            let (masking, masked) = if removes {
                let z = self.engine.masked_logits(0, &trace.hidden, ffn, keep);
                let bounds = LogitBounds::from_logits(&z, trace.vocab_size, valid);
                let mp = bounds.probability(self.epsilon, &self.eps_iv).0;
                let ma = bounds.retrieval(prefix.is_query).0;
                (
                    all_of(&[same_verdict(p, mp), same_verdict(a, ma)]),
                    Some((mp, ma)),
                )
            } else {
                (Outcome::Proved, None)
            };
            let outcome = all_of(&[silence, masking]);
            let open = (outcome != Outcome::Proved).then(|| {
                let mut reasons = Vec::new();
                if let (Some((mp, ma)), true) = (masked, masking != Outcome::Proved) {
                    reasons.push(format!(
                        "masking to C({}) {} the verdict from P {}, A {} to P {}, A {}",
                        model.circuits[c].name,
                        if masking == Outcome::Refuted {
                            "changes"
                        } else {
                            "may change"
                        },
                        verdict_word(p),
                        verdict_word(a),
                        verdict_word(mp),
                        verdict_word(ma)
                    ));
                }
                if silence != Outcome::Proved {
                    reasons.push(silence_reason());
                }
                let mut w = witness(reasons.join("; "));
                w.expert = Some(format!("C({})", model.circuits[c].name));
                (outcome, w)
            });
            out.push((
                IsolationCheck {
                    circuit: c,
                    outcome,
                    margin,
                    changed: masking == Outcome::Refuted,
                    surely_fired: surely,
                    maybe_fired: !off.is_empty(),
                    refined,
                },
                open,
            ));
        }
        out
    }

    fn assess(&self, prefix: &Prefix) -> Assessed {
        let model = self.engine.model();
        let input: Vec<usize> = prefix.tokens.iter().map(|t| self.tokens[t]).collect();
        // Rendered only for a witness (most prefixes need none).
        let text = || self.ts.render(&prefix.tokens);
        let tasks = || -> Vec<String> {
            prefix
                .tasks
                .iter()
                .map(|&k| self.ts.tasks[k].name.clone())
                .collect()
        };
        let mut trace = match self.engine.run(&input) {
            Ok(t) => t,
            Err(e) => {
                // The model cannot run this prefix (too long for its
                // positions): every claim is refuted here.
                let w = |claim| Witness {
                    claim,
                    prefix: text(),
                    tasks: tasks(),
                    expert: None,
                    top_logits: vec![],
                    reason: format!("the forward pass cannot run: {e}"),
                };
                return Assessed {
                    routing: (!self.dense).then_some((Outcome::Refuted, None)),
                    refined: None,
                    probability: (Outcome::Refuted, None),
                    retrieval: (Outcome::Refuted, None),
                    open: vec![
                        (Outcome::Refuted, w(Claim::Probability)),
                        (Outcome::Refuted, w(Claim::Retrieval)),
                    ],
                    firing: Vec::new(),
                    isolation: Vec::new(),
                };
            }
        };
        let compatible: BTreeSet<usize> = prefix
            .tasks
            .iter()
            .filter_map(|&k| self.expert_of_task[k])
            .collect();
        let mut decided = (!self.dense).then(|| decide_routing(&trace, &compatible, model));
        let mut refined = None;
        if let Some((Outcome::Undecided, ..)) = decided {
            // Refinement: the router scores at more bits, until decided.
            refined = Some(false);
            for bits in REFINE_BITS {
                let scores = shifted(&self.refiner.router_scores(&input, bits));
                trace = self.engine.reroute(trace, scores);
                let d = decide_routing(&trace, &compatible, model);
                if d.0 != Outcome::Undecided {
                    decided = Some(d);
                    refined = Some(true);
                    break;
                }
                decided = Some((
                    d.0,
                    d.1,
                    format!("{} (still after refinement to {bits} bits)", d.2),
                ));
            }
        }
        let expert_names = || {
            trace
                .candidates
                .iter()
                .map(|&e| model.experts[e].name.clone())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let witness = |claim: Claim, reason: String| Witness {
            claim,
            prefix: text(),
            tasks: tasks(),
            expert: Some(expert_names()),
            top_logits: top_logits(model, &trace),
            reason,
        };
        let mut open = Vec::new();

        let routing = decided.map(|(o, margin, reason)| {
            if o != Outcome::Proved {
                open.push((o, witness(Claim::Routing, reason)));
            }
            (o, margin)
        });

        let valid: BTreeSet<usize> = prefix
            .valid_next
            .iter()
            .filter_map(|t| self.tokens.get(t).copied())
            .collect();
        let logits = LogitBounds::from_logits(&trace.logits, trace.vocab_size, &valid);
        let (p, p_margin, p_reason) = logits.probability(self.epsilon, &self.eps_iv);
        if p != Outcome::Proved {
            open.push((p, witness(Claim::Probability, p_reason)));
        }
        let (a, a_margin, a_reason) = logits.retrieval(prefix.is_query);
        if a != Outcome::Proved {
            open.push((a, witness(Claim::Retrieval, a_reason)));
        }
        let mut isolation = Vec::new();
        if let Some(own) = &self.ownership {
            let computed;
            let ffn = match trace.candidates.iter().position(|&c| c == 0) {
                Some(at) => &trace.ffn[at],
                None => {
                    computed = self.engine.ffn(0, &trace.hidden);
                    &computed
                }
            };
            let iso_witness = |reason: String| witness(Claim::Isolation, reason);
            for (check, w) in self.isolation(
                own,
                prefix,
                &input,
                &trace,
                ffn,
                &valid,
                (p, a),
                &iso_witness,
            ) {
                isolation.push(check);
                open.extend(w);
            }
        }

        // S: the neurons of each task's expert on this prefix, run whether
        // or not the router picked it.
        let firing = prefix
            .tasks
            .iter()
            .filter_map(|&k| {
                let e = self.expert_of_task[k]?;
                let fired = match trace.candidates.iter().position(|&c| c == e) {
                    Some(at) => trace.ffn[at].firing.clone(),
                    None => {
                        let f: FfnResult = self.engine.ffn(e, &trace.hidden);
                        f.firing
                    }
                };
                Some((k, fired))
            })
            .collect();
        Assessed {
            routing,
            refined,
            probability: (p, p_margin),
            retrieval: (a, a_margin),
            open,
            firing,
            isolation,
        }
    }
}

/// Refined router scores as intervals, all shifted by the largest lower
/// bound (exact, and a common shift changes no decision) so that their
/// differences, the only thing routing reads, survive the enclosure in
/// doubles.
fn shifted(scores: &[(Rat, Rat)]) -> Vec<Iv> {
    let shift = scores
        .iter()
        .map(|s| &s.0)
        .max()
        .cloned()
        .unwrap_or_else(Rat::zero);
    scores
        .iter()
        .map(|(lo, hi)| {
            Iv::new(
                Iv::enclose(&(lo - &shift)).lo(),
                Iv::enclose(&(hi - &shift)).hi(),
            )
        })
        .collect()
}

/// R on one prefix from the router score intervals.
fn decide_routing(
    trace: &IntervalTrace,
    compatible: &BTreeSet<usize>,
    model: &Model<Iv>,
) -> (Outcome, Option<f64>, String) {
    let scores = &trace.router_scores;
    let max_of = |inside: bool, f: fn(&Iv) -> f64| {
        (0..scores.len())
            .filter(|e| compatible.contains(e) == inside)
            .map(|e| f(&scores[e]))
            .reduce(f64::max)
    };
    let (Some(in_lo), Some(in_hi)) = (max_of(true, Iv::lo), max_of(true, Iv::hi)) else {
        return (
            Outcome::Refuted,
            None,
            "no expert of the model belongs to a task in C(w)".into(),
        );
    };
    let (Some(out_lo), Some(out_hi)) = (max_of(false, Iv::lo), max_of(false, Iv::hi)) else {
        return (Outcome::Proved, None, String::new());
    };
    let margin = gap_lo(in_lo, out_hi);
    if in_lo > out_hi {
        return (Outcome::Proved, Some(margin), String::new());
    }
    let show = |e: usize| format!("{} {}", model.experts[e].name, scores[e].show());
    let all: Vec<String> = (0..scores.len()).map(show).collect();
    if out_lo >= in_hi {
        (
            Outcome::Refuted,
            Some(margin),
            format!(
                "an expert outside C(w) scores at least as high as every compatible one (router scores: {})",
                all.join(", ")
            ),
        )
    } else {
        (
            Outcome::Undecided,
            Some(margin),
            format!(
                "the router score intervals of compatible and incompatible experts overlap (router scores: {})",
                all.join(", ")
            ),
        )
    }
}

/// The logits of one prefix split by V(w), with the tokens at exactly 0
/// counted rather than listed.
struct LogitBounds {
    valid: Vec<Iv>,
    invalid: Vec<Iv>,
    valid_zero: usize,
    invalid_zero: usize,
}

impl LogitBounds {
    fn from_logits(logits: &SparseVec<Iv>, vocab_size: usize, valid: &BTreeSet<usize>) -> Self {
        let mut v = Vec::new();
        let mut inv = Vec::new();
        for (t, z) in logits.entries() {
            if valid.contains(t) {
                v.push(*z);
            } else {
                inv.push(*z);
            }
        }
        LogitBounds {
            valid_zero: valid.len() - v.len(),
            invalid_zero: vocab_size - valid.len() - inv.len(),
            valid: v,
            invalid: inv,
        }
    }

    fn best(list: &[Iv], zeros: usize, f: fn(&Iv) -> f64) -> Option<f64> {
        let listed = list.iter().map(f).reduce(f64::max);
        if zeros > 0 {
            Some(listed.map_or(0.0, |m| m.max(0.0)))
        } else {
            listed
        }
    }

    /// Σ e^{z − m} over a list and `zeros` tokens at 0, as an interval.
    /// A term whose exponent is surely below `negligible` is bounded by
    /// powers of two (within a factor 2, [`exp_coarse`]) instead of the
    /// series: at paper scale most of the vocabulary sits hundreds below
    /// the best valid logit, and those terms cannot move a decision.
    fn mass(list: &[Iv], zeros: usize, m: f64, negligible: f64) -> Iv {
        let shift = Iv::point(m);
        let term = |d: Iv| {
            if d.hi() < negligible {
                exp_coarse(&d)
            } else {
                exp(&d)
            }
        };
        let mut total = list
            .iter()
            .fold(Iv::zero(), |acc, z| acc + term(*z - shift));
        if zeros > 0 {
            total = total + term(-shift) * Iv::point(zeros as f64);
        }
        total
    }

    /// P(invalid) = I / (I + V) with I, V the invalid and valid masses
    /// shifted by the best valid upper bound m: x/(x + y) rises with x and
    /// falls with y, so (I.hi, V.lo) bound it above and (I.lo, V.hi) below.
    fn probability(&self, epsilon: &Rat, eps_iv: &Iv) -> (Outcome, Option<f64>, String) {
        let Some(m) = Self::best(&self.valid, self.valid_zero, Iv::hi) else {
            return (
                Outcome::Refuted,
                None,
                "no valid next token is in the model's vocabulary".into(),
            );
        };
        // Terms below e^{negligible} are bounded coarsely: with at most
        // |vocabulary| of them, each within a factor 2, they change the
        // bound on P(invalid) by under |vocabulary|·e^{negligible}, far
        // below ε. (The threshold only trades precision for work; every
        // bound stays rigorous, so choosing it from an f64 decides nothing.)
        let negligible = epsilon
            .to_f64()
            .filter(|e| *e > 0.0)
            .map_or(f64::NEG_INFINITY, |e| (e.ln() - 40.0).min(-64.0));
        let i = Self::mass(&self.invalid, self.invalid_zero, m, negligible);
        let v = Self::mass(&self.valid, self.valid_zero, m, negligible);
        let upper = if i.hi() == 0.0 {
            0.0
        } else {
            let x = Iv::point(i.hi());
            (x / (x + Iv::point(v.lo()))).hi().min(1.0)
        };
        let lower = if i.lo() == 0.0 {
            0.0
        } else {
            let x = Iv::point(i.lo());
            (x / (x + Iv::point(v.hi()))).lo().max(0.0)
        };
        // ε's enclosure decides most comparisons with two f64 compares of
        // dyadics (exact); only a bound inside it is compared as rationals.
        let eps = *eps_iv;
        let below = |x: f64| {
            if x < eps.lo() {
                true
            } else if x >= eps.hi() {
                false
            } else {
                Rat::from_float(x).is_some_and(|x| x < *epsilon)
            }
        };
        let margin = (eps - Iv::point(upper)).lo();
        let range = || format!("P(invalid) in [{lower:e}, {upper:e}]");
        if upper.is_finite() && below(upper) {
            (Outcome::Proved, Some(margin), String::new())
        } else if lower.is_finite() && !below(lower) {
            (
                Outcome::Refuted,
                Some(margin),
                format!("{} is not below ε = {epsilon}", range()),
            )
        } else {
            (
                Outcome::Undecided,
                Some(margin),
                format!("{} straddles ε = {epsilon}", range()),
            )
        }
    }

    fn retrieval(&self, is_query: bool) -> (Outcome, Option<f64>, String) {
        let what = if is_query {
            "a right value"
        } else {
            "a valid next token"
        };
        let (Some(v_lo), Some(v_hi)) = (
            Self::best(&self.valid, self.valid_zero, Iv::lo),
            Self::best(&self.valid, self.valid_zero, Iv::hi),
        ) else {
            return (Outcome::Refuted, None, format!("there is no {what}"));
        };
        let (Some(i_lo), Some(i_hi)) = (
            Self::best(&self.invalid, self.invalid_zero, Iv::lo),
            Self::best(&self.invalid, self.invalid_zero, Iv::hi),
        ) else {
            return (Outcome::Proved, None, String::new());
        };
        let margin = gap_lo(v_lo, i_hi);
        if v_lo > i_hi {
            (Outcome::Proved, Some(margin), String::new())
        } else if i_lo >= v_hi {
            (
                Outcome::Refuted,
                Some(margin),
                format!(
                    "the largest logit is not only on {what}: best valid ≤ {v_hi} ≤ {i_lo} ≤ best invalid"
                ),
            )
        } else {
            (
                Outcome::Undecided,
                Some(margin),
                format!(
                    "the best valid logit [{v_lo}, {v_hi}] and the best invalid [{i_lo}, {i_hi}] overlap"
                ),
            )
        }
    }
}

/// The largest logits by upper bound, by name; tokens at 0 are counted.
fn top_logits(model: &Model<Iv>, trace: &IntervalTrace) -> Vec<(String, String)> {
    let mut entries: Vec<&(usize, Iv)> = trace.logits.entries().iter().collect();
    entries.sort_by(|a, b| b.1.hi().total_cmp(&a.1.hi()));
    let mut top: Vec<(String, String)> = entries
        .iter()
        .take(TOP_LOGITS)
        .map(|(t, z)| (model.vocab[*t].clone(), z.show()))
        .collect();
    if top.len() < TOP_LOGITS && trace.vocab_size > entries.len() {
        let rest = trace.vocab_size - entries.len();
        top.push((format!("({rest} other tokens)"), "0".into()));
    }
    top
}
