//! Claim I, isolation of the dense model's circuits, checked rather than
//! assumed.
//!
//! For each task k with circuit C(k), on every prefix w of D(k):
//! 1. masking: the model masked to C(k) (the paper's M_C: every FFN neuron
//!    outside C(k) zeroed) is run through the real forward pass, and its P
//!    and A verdicts must equal the full model's;
//! 2. silence: no neuron of a circuit C(j) with w ∉ D(j) fires on w. On a
//!    prefix shared by several tasks their circuits may all fire (each is
//!    right there); any other firing neuron means a gate failed to close,
//!    even if no verdict happens to change.
//!
//! And the circuits share no neuron. The claim's margin is the silence
//! margin: how far below zero the most active off-task neuron's
//! pre-activation stayed (at least 1 by construction when the gates work).

use super::arith::ClaimArith;
use super::compare::Decision;
use super::logits::{LogitVerdict, TOP_LOGITS, largest_logits, logit_verdict};
use super::tally::Tally;
pub use super::verdict::CircuitReport;
use super::verdict::{Claim, ClaimResult, Witness, Witnesses, holds};
use crate::eval::Trace;
use crate::eval::dense::{DenseEvaluator, DensePass};
use crate::model::Model;
use crate::taskset::{Prefix, TaskSet, TokenId};
use std::cell::LazyCell;
use std::collections::{BTreeSet, HashMap};

/// Firing off-task neurons named in one witness.
const NAMED: usize = 4;

/// The isolation claim with its per-circuit reports, witnesses and
/// decisions.
pub(crate) struct Found {
    pub claim: ClaimResult,
    pub circuits: Vec<CircuitReport>,
    pub witnesses: Witnesses,
    pub decisions: Vec<Decision>,
}

fn verdict_text(p: bool, a: bool) -> String {
    format!("P {}, A {}", holds(p), holds(a))
}

/// One isolation check: circuit C(k) on one prefix w of D(k).
pub(crate) struct PrefixCheck<S> {
    /// Index into the model's circuits.
    pub circuit: usize,
    pub ok: bool,
    pub margin: Option<S>,
    pub changed: bool,
    pub fired: bool,
    pub decision: Option<Decision>,
    pub witness: Option<Witness>,
}

/// What one circuit has accumulated over its prefixes.
struct Tallied<S> {
    checked: usize,
    changed: usize,
    firing: usize,
    margin: Option<S>,
    tally: Tally<S>,
    witnesses: Witnesses,
    decisions: Vec<Decision>,
}

/// Claim I, checked prefix by prefix as verification streams through the
/// prefixes (nothing per prefix is kept beyond its own checks), then
/// summed up per circuit.
pub(crate) struct Isolation<S> {
    /// The tasks whose circuits list each FFN neuron.
    owners: Vec<BTreeSet<usize>>,
    /// Each distinct owner set once: the labels of [`owner_labels`].
    label_sets: Vec<BTreeSet<usize>>,
    /// The circuit of each task, if it has one.
    circuit_of_task: Vec<Option<usize>>,
    /// The task of each circuit, by name (None: no task of the spec).
    task_of_circuit: Vec<Option<usize>>,
    /// Per circuit, in circuit order.
    tallied: Vec<Tallied<S>>,
}

/// Each FFN neuron's label for the dense evaluator's margins: the index of
/// its owner set (the tasks whose circuits list it) among the distinct owner
/// sets, which are returned too. Silence is checked per owner set: a
/// prefix's off-task neurons are those whose owners it does not belong to.
pub(crate) fn owner_labels<S>(
    ts: &TaskSet,
    model: &Model<S>,
) -> (Vec<usize>, Vec<BTreeSet<usize>>) {
    label_owner_sets(&owner_sets(ts, model).0)
}

/// Number the distinct owner sets in order of first appearance and label
/// each neuron with its set's number.
fn label_owner_sets(owners: &[BTreeSet<usize>]) -> (Vec<usize>, Vec<BTreeSet<usize>>) {
    let mut number: HashMap<&BTreeSet<usize>, usize> = HashMap::new();
    let mut sets: Vec<BTreeSet<usize>> = Vec::new();
    let labels = owners
        .iter()
        .map(|o| {
            *number.entry(o).or_insert_with(|| {
                sets.push(o.clone());
                sets.len() - 1
            })
        })
        .collect();
    (labels, sets)
}

/// The owner set of every FFN neuron, each task's circuit and each
/// circuit's task.
#[allow(clippy::type_complexity)]
pub(crate) fn owner_sets<S>(
    ts: &TaskSet,
    model: &Model<S>,
) -> (Vec<BTreeSet<usize>>, Vec<Option<usize>>, Vec<Option<usize>>) {
    let neurons = model.experts.first().map_or(0, |e| e.neurons.len());
    let task_index: HashMap<&str, usize> = ts
        .tasks
        .iter()
        .enumerate()
        .map(|(k, t)| (t.name.as_str(), k))
        .collect();
    let mut owners: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); neurons];
    let mut circuit_of_task = vec![None; ts.tasks.len()];
    let task_of_circuit: Vec<Option<usize>> = model
        .circuits
        .iter()
        .map(|c| task_index.get(c.name.as_str()).copied())
        .collect();
    for (c, circuit) in model.circuits.iter().enumerate() {
        if let Some(k) = task_of_circuit[c] {
            circuit_of_task[k].get_or_insert(c);
            for &n in circuit.neurons.iter().filter(|&&n| n < neurons) {
                owners[n].insert(k);
            }
        }
    }
    (owners, circuit_of_task, task_of_circuit)
}

impl<S: ClaimArith> Isolation<S> {
    pub fn new(ts: &TaskSet, model: &Model<S>) -> Isolation<S> {
        let (owners, circuit_of_task, task_of_circuit) = owner_sets(ts, model);
        let label_sets = label_owner_sets(&owners).1;
        Isolation {
            owners,
            label_sets,
            circuit_of_task,
            task_of_circuit,
            tallied: model
                .circuits
                .iter()
                .map(|_| Tallied {
                    checked: 0,
                    changed: 0,
                    firing: 0,
                    margin: None,
                    tally: Tally::new(true),
                    witnesses: Witnesses::default(),
                    decisions: Vec::new(),
                })
                .collect(),
        }
    }

    /// The checks of every circuit C(k), k ∈ C(w), on prefix w: the masked
    /// model M_C(k) against the full model's verdict, and silence of every
    /// neuron of tasks w does not belong to. `full` is None where the full
    /// model's forward pass failed; else the full trace, its verdict and
    /// the dense pass they came from (whose per-owner-set margins decide
    /// silence: see [`crate::eval::dense`]).
    #[allow(clippy::too_many_arguments)]
    pub fn check_prefix(
        &self,
        ts: &TaskSet,
        model: &Model<S>,
        engine: &DenseEvaluator<'_, S>,
        prefix: &Prefix,
        full: Option<(&Trace<S>, &LogitVerdict<S>, &DensePass<S>)>,
        tokens: &HashMap<TokenId, usize>,
        eps: &S,
        cache: &mut S::Cache,
        record: bool,
    ) -> Vec<PrefixCheck<S>> {
        // Rendered only for a witness or a recorded decision.
        let text = LazyCell::new(|| ts.render(&prefix.tokens));
        let task_names: Vec<String> = prefix
            .tasks
            .iter()
            .map(|&j| ts.tasks[j].name.clone())
            .collect();
        // Neurons of circuits for tasks this prefix does not belong to (or
        // of no circuit at all): they must stay silent. The same for every
        // circuit checked on this prefix.
        let silence = full.map(|(_, _, pass)| {
            let fired: Vec<(usize, S)> = pass
                .firing
                .iter()
                .filter(|(n, _)| self.owners[*n].is_disjoint(&prefix.tasks))
                .cloned()
                .collect();
            let margin = engine.margin(pass, |l| {
                self.label_sets
                    .get(l)
                    .is_some_and(|set| set.is_disjoint(&prefix.tasks))
            });
            (fired, margin)
        });
        let mut checks = Vec::new();
        for &k in &prefix.tasks {
            let Some(c) = self.circuit_of_task[k] else {
                continue;
            };
            let circuit = &model.circuits[c];
            let label = format!("C({})", circuit.name);
            let subject = || format!("{}: {}", circuit.name, *text);
            let fail = |reason: String, top: Vec<(String, String)>| Witness {
                claim: Claim::Isolation,
                prefix: (*text).clone(),
                tasks: task_names.clone(),
                expert: Some(label.clone()),
                top_logits: top,
                reason,
            };
            let masked = full.map(|(_, _, pass)| engine.masked_trace(pass, c));
            let (Some((trace, verdict, _)), Some((fired, margin)), Some(masked)) =
                (full, &silence, masked)
            else {
                checks.push(PrefixCheck {
                    circuit: c,
                    ok: false,
                    margin: None,
                    changed: false,
                    fired: false,
                    decision: record
                        .then(|| Decision::new(Claim::Isolation, &subject(), holds(false))),
                    witness: Some(fail(
                        "the forward pass of the full or the masked model failed".into(),
                        vec![],
                    )),
                });
                continue;
            };
            let m = logit_verdict(&masked, prefix, tokens, eps, cache);
            let changed = (m.probability, m.retrieval) != (verdict.probability, verdict.retrieval);
            let ok = !changed && fired.is_empty();
            let witness = (!ok).then(|| {
                let mut reasons = Vec::new();
                if changed {
                    reasons.push(format!(
                        "masking to {label} changes the verdict from {} to {}",
                        verdict_text(verdict.probability, verdict.retrieval),
                        verdict_text(m.probability, m.retrieval)
                    ));
                }
                if !fired.is_empty() {
                    reasons.push(self.firing_reason(model, trace, fired, &text));
                }
                fail(
                    reasons.join("; "),
                    largest_logits(model, &trace.logits, TOP_LOGITS),
                )
            });
            checks.push(PrefixCheck {
                circuit: c,
                ok,
                margin: margin.clone(),
                changed,
                fired: !fired.is_empty(),
                decision: record.then(|| Decision::new(Claim::Isolation, &subject(), holds(ok))),
                witness,
            });
        }
        checks
    }

    /// Which off-task neurons fired and what their gates read.
    fn firing_reason(
        &self,
        model: &Model<S>,
        trace: &Trace<S>,
        fired: &[(usize, S)],
        text: &str,
    ) -> String {
        let neurons = &model.experts[0].neurons;
        let mut circuits: BTreeSet<usize> = BTreeSet::new();
        let named: Vec<String> = fired
            .iter()
            .take(NAMED)
            .map(|(n, pre)| format!("{} ({})", neurons[*n].name, pre.show()))
            .collect();
        for &(n, _) in fired {
            circuits.extend(model.circuits.iter().position(|c| c.neurons.contains(&n)));
        }
        let more = fired.len().saturating_sub(NAMED);
        let mut why = format!(
            "{} neuron(s) of tasks this prefix does not belong to fire: {}{}",
            fired.len(),
            named.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
        for &j in &circuits {
            let gate = &model.circuits[j];
            why.push_str(&format!(
                "; the gate of {} is Γ = {} here (it closes at ≥ 1)",
                gate.name,
                gate.gate.dot(&trace.hidden).show()
            ));
            if let Some((_, reason)) = gate.unexcluded.iter().find(|(p, _)| p == text) {
                why.push_str(&format!(
                    ", and gate synthesis found no evidence linear in the hidden state that vanishes on every prefix of {} and is positive on this one (as with XOR-like templates: the same words in swapped combinations across tasks): {reason}",
                    gate.name
                ));
            }
        }
        why
    }

    /// Fold one prefix's checks in (prefix order).
    pub fn record(&mut self, checks: Vec<PrefixCheck<S>>) {
        for check in checks {
            let t = &mut self.tallied[check.circuit];
            t.checked += 1;
            t.changed += usize::from(check.changed);
            t.firing += usize::from(check.fired);
            if let Some(m) = &check.margin
                && t.margin.as_ref().is_none_or(|x| m < x)
            {
                t.margin = Some(m.clone());
            }
            t.tally.record(check.ok, check.margin);
            t.decisions.extend(check.decision);
            if let Some(w) = check.witness {
                t.witnesses.push(w);
            }
        }
    }

    /// The claim: the per-prefix checks, circuit by circuit, and the
    /// circuits' disjointness.
    pub fn finish(self, ts: &TaskSet, model: &Model<S>) -> Found {
        let neurons = model.experts.first().map_or(&[][..], |e| &e.neurons[..]);
        let mut witnesses = Witnesses::default();
        let mut tally = Tally::<S>::new(true);
        let mut decisions = Vec::new();
        let mut reports = Vec::new();
        for ((circuit, t), task) in model
            .circuits
            .iter()
            .zip(self.tallied)
            .zip(&self.task_of_circuit)
        {
            let Some(k) = *task else {
                tally.record(false, None);
                witnesses.push(Witness {
                    claim: Claim::Isolation,
                    prefix: String::new(),
                    tasks: vec![circuit.name.clone()],
                    expert: None,
                    top_logits: vec![],
                    reason: format!("circuit {} belongs to no task of the spec", circuit.name),
                });
                continue;
            };
            let label = format!("C({})", circuit.name);
            let shared: Vec<usize> = circuit
                .neurons
                .iter()
                .copied()
                .filter(|&n| n >= neurons.len() || self.owners[n].len() > 1)
                .collect();
            for &n in &shared {
                tally.record(false, None);
                decisions.push(Decision::new(
                    Claim::Isolation,
                    &format!("{label} neuron {n}"),
                    holds(false),
                ));
                let others: Vec<&str> = self
                    .owners
                    .get(n)
                    .into_iter()
                    .flatten()
                    .filter(|&&j| j != k)
                    .map(|&j| ts.tasks[j].name.as_str())
                    .collect();
                witnesses.push(Witness {
                    claim: Claim::Isolation,
                    prefix: String::new(),
                    tasks: vec![circuit.name.clone()],
                    expert: Some(label.clone()),
                    top_logits: vec![],
                    reason: if n >= neurons.len() {
                        format!("{label} lists neuron {n}, which the FFN does not have")
                    } else {
                        format!(
                            "{label} shares neuron {n} ({}) with the circuit(s) of {}: circuits must be disjoint",
                            neurons[n].name,
                            others.join(", ")
                        )
                    },
                });
            }
            tally.merge(t.tally);
            decisions.extend(t.decisions);
            witnesses.count += t.witnesses.count - t.witnesses.list.len();
            for w in t.witnesses.list {
                witnesses.push(w);
            }
            reports.push(CircuitReport {
                task: circuit.name.clone(),
                neurons: circuit.neurons.len(),
                prefixes: t.checked,
                changed_verdicts: t.changed,
                off_task_firings: t.firing,
                shared_neurons: shared.len(),
                isolated: t.changed == 0 && t.firing == 0 && shared.is_empty(),
                silence_margin: t.margin.map(|m| m.number()),
            });
        }
        Found {
            claim: tally.finish(Clone::clone),
            circuits: reports,
            witnesses,
            decisions,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::construct::{Options, build_dense};
    use crate::fixtures::ungate;
    use crate::model::Model;
    use crate::scalar::{Rat, rat};
    use crate::taskset::TaskSet;
    use crate::verify::{Arith, Claim, Config, Verdict, verify};

    fn verify_in(ts: &TaskSet, model: &Model<Rat>, arith: Arith) -> Verdict {
        let eps = rat(1, 1_000_000);
        verify(ts, model, &Config::new(&eps).arith(arith))
    }

    fn setup() -> (TaskSet, Model<Rat>) {
        let ts = crate::fixtures::task_set("running_example.toml");
        let model = build_dense(&ts, &Options::default());
        (ts, model)
    }

    #[test]
    fn the_running_example_is_isolated() {
        let (ts, model) = setup();
        for v in [
            verify_in(&ts, &model, Arith::Exact),
            verify_in(&ts, &model, Arith::F64),
        ] {
            assert!(v.all_hold(), "{:?}", v.failures);
            let i = v.claims.isolation.clone().unwrap();
            assert_eq!((i.holds, i.checked), (true, 39));
            let reports: Vec<(String, usize, usize, bool)> = v
                .circuits
                .unwrap()
                .into_iter()
                .map(|c| {
                    (
                        c.task,
                        c.neurons,
                        c.prefixes,
                        c.isolated && c.shared_neurons == 0,
                    )
                })
                .collect();
            assert_eq!(
                reports,
                [
                    ("located_in".to_string(), 10, 21, true),
                    ("spoken_in".to_string(), 9, 18, true)
                ]
            );
            // Routing does not apply: nothing was checked.
            assert_eq!(v.claims.routing.checked, 0);
        }
    }

    #[test]
    fn a_neuron_without_its_gate_breaks_isolation_and_is_named() {
        let (ts, mut model) = setup();
        ungate(&mut model, "located_in/syn0");
        let v = verify_in(&ts, &model, Arith::Exact);
        let i = v.claims.isolation.clone().unwrap();
        assert!(!i.holds && !v.all_hold());
        // The ramp neuron fires on all 18 spoken_in prefixes, which the
        // full model then gets wrong on 15; masked to C(spoken_in) they are
        // right again.
        assert_eq!(i.failures, 18);
        assert_eq!(v.claims.probability.failures, 15);
        let c = v.circuits.clone().unwrap();
        assert_eq!((c[0].isolated, c[0].off_task_firings), (true, 0));
        assert_eq!((c[1].changed_verdicts, c[1].off_task_firings), (15, 18));
        let witnesses: Vec<_> = v
            .failures
            .iter()
            .filter(|w| w.claim == Claim::Isolation)
            .collect();
        assert_eq!(witnesses.len(), 18);
        assert!(witnesses.iter().all(|w| {
            w.tasks == ["spoken_in"]
                && w.expert.as_deref() == Some("C(spoken_in)")
                && w.reason.contains("located_in/syn0")
        }));
        assert!(witnesses.iter().any(|w| w.reason.contains(
            "masking to C(spoken_in) changes the verdict from P fails, A fails to P holds, A holds"
        )));
        // The smallest silence margin is now negative.
        let m = i.min_margin.as_ref().and_then(|m| m.exact()).unwrap();
        assert!(*m < Rat::from_integer(0.into()));
    }

    #[test]
    fn a_firing_off_task_neuron_fails_isolation_even_when_no_verdict_changes() {
        let (ts, mut model) = setup();
        ungate(&mut model, "spoken_in/syn4");
        let v = verify_in(&ts, &model, Arith::Exact);
        // It fires on 3 located_in prefixes without changing P or A there.
        let c = v.circuits.clone().unwrap();
        assert_eq!((c[0].changed_verdicts, c[0].off_task_firings), (0, 3));
        assert_eq!(v.claims.isolation.clone().unwrap().failures, 3);
        assert!(v.claims.probability.holds && v.claims.retrieval.holds);
        assert!(!v.all_hold());
    }

    #[test]
    fn circuits_that_share_a_neuron_are_reported() {
        let (ts, mut model) = setup();
        model.circuits[1].neurons.push(0);
        let v = verify_in(&ts, &model, Arith::Exact);
        let c = v.circuits.clone().unwrap();
        assert_eq!((c[0].shared_neurons, c[1].shared_neurons), (1, 1));
        assert!(!v.claims.isolation.clone().unwrap().holds);
        assert!(v.failures.iter().any(|w| w.reason
            == "C(spoken_in) shares neuron 0 (located_in/syn0: s ≥ s(\"⋆1\") − 1, gated) with the circuit(s) of located_in: circuits must be disjoint"));
        // Size counts the shared neuron against spoken_in: 10 > 9.
        assert!(!v.claims.size.holds);
    }
}
