//! Decide routability: does any linear router over the model's router input
//! route every prefix, with the top score on a task of C(w), strictly above
//! every task outside C(w) (so strictly unique where C(w) = {k})?
//!
//! The answer is always backed by something checked independently of the
//! solver that produced it:
//! - yes: the exact LP's router is installed in the model and the verifier
//!   ([`crate::verify`]) checks routing on the forward pass;
//! - no: a certificate ([`certificate`]) naming a minimal set of conflicting
//!   prefixes, checked in exact arithmetic on the forward pass by
//!   [`certificate::check`], which shares no code with the solver;
//! - undecided: when neither exists (the branch budget on ambiguous inputs
//!   ran out, or a check failed), the report says so.
//!
//! Layout: [`crate::lp`] is the exact LP service, [`system`] (in
//! `construct::router`, which synthesis shares) the routing constraints and
//! their decision (pure mathematics over feature vectors); this module maps
//! prefixes to router inputs and back to names.

pub mod certificate;

pub use crate::construct::router::system;

use crate::construct::router::inputs::{self, common};

use crate::construct::residual::Residual;
use crate::construct::{self, Options};
use crate::model::{Model, Synthesis};
use crate::scalar::Rat;
use crate::taskset::{TaskId, TaskSet};
use crate::verify::{self, ClaimResult};
use certificate::{BIAS, Case, Certificate, Proof, Row, Tokens};
use num_traits::{One, Zero};
use serde::Serialize;
use std::collections::BTreeSet;
use system::{Group, Refutation, Solution, Stats, System};

pub use system::DEFAULT_BUDGET;

/// The default time budget of `routecert routability --time-limit`, in
/// seconds of CPU time ([`crate::lp::clock`]): the shared-keys sets of
/// issue 12 decide well within it.
pub const DEFAULT_SECONDS: f64 = 5.0;

/// The solver's answer, before any independent check.
#[derive(Debug, Clone)]
pub enum Decision {
    /// rows[e]: the router's weights over the router input, then the bias.
    Routable(Vec<Vec<Rat>>),
    Impossible(Certificate),
    Undecided(String),
}

/// A decision with the facts around it.
#[derive(Debug, Clone)]
pub struct Decided {
    pub decision: Decision,
    pub prefixes: usize,
    /// Distinct router inputs (prefixes with identical input share one).
    pub inputs: usize,
    pub ambiguous: usize,
    pub stats: Stats,
}

/// Prefixes grouped by their exact router input.
struct Inputs {
    x: Vec<Vec<(usize, Rat)>>,
    members: Vec<Vec<usize>>,
}

fn router_inputs(ts: &TaskSet, options: &Options) -> (Inputs, Vec<String>) {
    let (r, head1) = construct::residual_and_head1(ts, options);
    let reads = options.router.reads(&r);
    let bias = reads.len();
    // The same grouping as synthesis's training data; each input exact, with
    // the bias feature (sorted by column already, the bias last).
    let grouped = inputs::Inputs::group(ts, &r, &head1, &reads);
    let inputs = Inputs {
        x: grouped
            .x
            .iter()
            .map(|x| {
                x.iter()
                    .map(|(c, v)| (*c, v.to_rat()))
                    .chain([(bias, Rat::one())])
                    .collect()
            })
            .collect(),
        members: grouped.members,
    };
    let names = reads
        .iter()
        .map(|&d| r.basis.name(d).to_string())
        .chain([BIAS.to_string()])
        .collect();
    (inputs, names)
}

/// Drop members while the intersection of C(w) stays `target`: what is
/// left justifies the same requirement with no prefix to spare.
fn fewest(ts: &TaskSet, members: &[usize], target: &BTreeSet<TaskId>) -> Vec<usize> {
    if let Some(&m) = members.iter().find(|&&m| ts.prefixes[m].tasks == *target) {
        return vec![m];
    }
    let mut kept = members.to_vec();
    let mut at = 0;
    while at < kept.len() {
        let mut trial = kept.clone();
        trial.remove(at);
        if !trial.is_empty() && common(ts, &trial) == *target {
            kept = trial;
        } else {
            at += 1;
        }
    }
    kept
}

/// Decide whether a linear router over `options.router`'s input exists,
/// within `budget` LP solves for case splits.
pub fn decide(ts: &TaskSet, options: &Options, budget: usize) -> Decided {
    decide_within(ts, options, budget, None)
}

/// [`decide`], with no LP started after `deadline` (then: undecided).
pub fn decide_within(
    ts: &TaskSet,
    options: &Options,
    budget: usize,
    deadline: Option<std::time::Instant>,
) -> Decided {
    let (inputs, reads) = router_inputs(ts, options);
    let ambiguous = ts.ambiguous();
    let tokens = |m: usize| -> Tokens {
        ts.prefixes[m]
            .tokens
            .iter()
            .map(|&t| ts.vocab.name(t).to_string())
            .collect()
    };
    let facts = |decision, stats| Decided {
        decision,
        prefixes: ts.prefixes.len(),
        inputs: inputs.x.len(),
        ambiguous,
        stats,
    };
    // One input, no common task: refuted before any LP.
    if let Some(members) = inputs.members.iter().find(|m| common(ts, m).is_empty()) {
        let proof = Proof::IdenticalInputs {
            prefixes: fewest(ts, members, &BTreeSet::new())
                .into_iter()
                .map(tokens)
                .collect(),
        };
        return facts(
            Decision::Impossible(Certificate { reads, proof }),
            Stats::default(),
        );
    }
    let system = System {
        experts: ts.tasks.len(),
        features: reads.len(),
        groups: inputs
            .x
            .iter()
            .zip(&inputs.members)
            .map(|(x, m)| Group {
                x: x.clone(),
                tasks: common(ts, m),
            })
            .collect(),
    };
    let (solution, stats) = system.solve_within(budget, deadline);
    let decision = match solution {
        Solution::Router(w) => Decision::Routable(w),
        Solution::Undecided(reason) => Decision::Undecided(reason),
        Solution::Refuted(r) => {
            let proof = to_proof(&r, ts, &system, &inputs.members, &tokens);
            Decision::Impossible(Certificate { reads, proof })
        }
    };
    facts(decision, stats)
}

/// The routing constraints of `options.router`'s input, one group per
/// distinct router input, and the feature names (the bias last): what
/// [`crate::star`] projects onto span(V). `None` when two prefixes with one
/// input share no task (no gate of any kind routes them).
pub fn routing_system(ts: &TaskSet, options: &Options) -> Option<(System, Vec<String>)> {
    let (inputs, reads) = router_inputs(ts, options);
    if inputs.members.iter().any(|m| common(ts, m).is_empty()) {
        return None;
    }
    let groups = inputs
        .x
        .iter()
        .zip(&inputs.members)
        .map(|(x, m)| Group {
            x: x.clone(),
            tasks: common(ts, m),
        })
        .collect();
    let system = System {
        experts: ts.tasks.len(),
        features: reads.len(),
        groups,
    };
    Some((system, reads))
}

/// A refutation over groups as a certificate over named prefixes.
fn to_proof(
    r: &Refutation,
    ts: &TaskSet,
    system: &System,
    members: &[Vec<usize>],
    tokens: &impl Fn(usize) -> Tokens,
) -> Proof {
    let name = |k: usize| ts.tasks[k].name.clone();
    match r {
        Refutation::Farkas(terms) => Proof::Farkas {
            rows: terms
                .iter()
                .map(|t| {
                    let c = t.constraint;
                    let group = &system.groups[c.group];
                    // A unique group needs only the prefixes that pin it to
                    // its task; an assumed (case) row names the whole group.
                    let justify = if group.tasks.len() == 1 {
                        fewest(ts, &members[c.group], &group.tasks)
                    } else {
                        members[c.group].clone()
                    };
                    Row {
                        prefixes: justify.into_iter().map(tokens).collect(),
                        task: name(c.task),
                        against: name(c.against),
                        multiplier: t.multiplier.to_string(),
                    }
                })
                .collect(),
        },
        Refutation::Cases { group, cases } => Proof::Cases {
            prefixes: members[*group].iter().map(|&m| tokens(m)).collect(),
            cases: cases
                .iter()
                .map(|(k, r)| Case {
                    task: name(*k),
                    proof: to_proof(r, ts, system, members, tokens),
                })
                .collect(),
        },
    }
}

/// One prefix of the conflict, with its compatible tasks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Conflict {
    pub prefix: String,
    pub tasks: Vec<String>,
}

/// Everything `routecert routability` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub router: String,
    pub head1: String,
    /// What the router reads, in words.
    pub reads: String,
    pub experts: usize,
    pub prefixes: usize,
    pub router_inputs: usize,
    pub ambiguous: usize,
    pub lp: Stats,
    /// "routable", "not_routable" or "undecided".
    pub decision: &'static str,
    /// One sentence: why.
    pub reason: String,
    /// The verifier's routing claim on the model with the LP's router.
    pub routing: Option<ClaimResult>,
    pub certificate: Option<Certificate>,
    /// "accepted", or why the independent checker rejected the certificate.
    pub check: Option<String>,
    /// The prefixes the certificate uses (minimal for a Farkas certificate).
    pub conflict: Vec<Conflict>,
}

impl Report {
    /// A router exists and the verifier confirmed it.
    pub fn routable(&self) -> bool {
        self.decision == "routable"
    }
}

/// The model whose router input a certificate talks about: the
/// construction with an all-zero router (the checker reads the router's
/// input directions and the forward pass up to the router, never its
/// weights).
fn model_for_checking(ts: &TaskSet, options: &Options) -> Model<Rat> {
    let features = options.router.reads(&Residual::new(ts)).len() + 1;
    let zero = vec![vec![Rat::zero(); features]; ts.tasks.len()];
    let synthesis = Synthesis::given(false, options.router.describe());
    construct::build_moe_routed_by(ts, options, &zero, synthesis)
}

/// Check a certificate against the model `options` build for `ts`.
pub fn check_certificate(
    cert: &Certificate,
    ts: &TaskSet,
    options: &Options,
) -> Result<certificate::Accepted, certificate::Rejection> {
    certificate::check(cert, ts, &model_for_checking(ts, options))
}

/// Decide, then check the answer independently: verify the router, or
/// check the certificate against the model's forward pass.
pub fn run(ts: &TaskSet, options: &Options, budget: usize) -> Report {
    run_within(ts, options, budget, None)
}

/// [`run`] with a time budget for the search ([`decide_within`]).
pub fn run_within(
    ts: &TaskSet,
    options: &Options,
    budget: usize,
    deadline: Option<std::time::Instant>,
) -> Report {
    let decided = decide_within(ts, options, budget, deadline);
    let experts = ts.tasks.len();
    let reads = options.router.describe();
    let mut report = Report {
        router: options.router.to_string(),
        head1: options.head1.to_string(),
        reads: reads.to_string(),
        experts,
        prefixes: decided.prefixes,
        router_inputs: decided.inputs,
        ambiguous: decided.ambiguous,
        lp: decided.stats.clone(),
        decision: "undecided",
        reason: String::new(),
        routing: None,
        certificate: None,
        check: None,
        conflict: Vec::new(),
    };
    match decided.decision {
        Decision::Routable(rows) => {
            let synthesis = Synthesis::given(true, reads);
            let model = construct::build_moe_routed_by(ts, options, &rows, synthesis);
            let config = verify::Config::new(&options.epsilon).router(options.router);
            let verdict = verify::verify(ts, &model, &config);
            let routing = verdict.claims.routing;
            if routing.holds {
                report.decision = "routable";
                report.reason = format!(
                    "the exact LP found a linear router over {reads}, and the verifier confirms it routes all {} prefixes",
                    routing.checked
                );
            } else {
                report.reason = format!(
                    "the exact LP's router misroutes {} of {} prefixes on the forward pass (a bug in routecert)",
                    routing.failures, routing.checked
                );
            }
            report.routing = Some(routing);
        }
        Decision::Impossible(cert) => {
            report.conflict = cert
                .prefixes()
                .iter()
                .map(|p| {
                    let ids: Vec<usize> = p.iter().filter_map(|t| ts.vocab.id(t)).collect();
                    let tasks = ts
                        .prefixes
                        .iter()
                        .find(|q| q.tokens == ids)
                        .map(|q| q.tasks.iter().map(|&k| ts.tasks[k].name.clone()).collect())
                        .unwrap_or_default();
                    Conflict {
                        prefix: p.join(" "),
                        tasks,
                    }
                })
                .collect();
            match check_certificate(&cert, ts, options) {
                Ok(_) => {
                    report.decision = "not_routable";
                    report.reason = format!(
                        "no linear router over {reads} routes every prefix: {}",
                        match &cert.proof {
                            Proof::IdenticalInputs { .. } =>
                                "these prefixes have the identical router input but no common task",
                            Proof::Farkas { .. } =>
                                "a nonnegative combination of routing constraints at these prefixes vanishes",
                            Proof::Cases { .. } =>
                                "every choice for an ambiguous input leads to a vanishing combination",
                        }
                    );
                    report.check = Some("accepted".into());
                }
                Err(e) => {
                    report.reason =
                        format!("the solver's certificate failed the independent check: {e}");
                    report.check = Some(e.to_string());
                }
            }
            report.certificate = Some(cert);
        }
        Decision::Undecided(reason) => report.reason = reason,
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::Head1Mode;
    use crate::construct::RouterMode;
    use crate::spec;
    use std::path::Path;

    fn load(name: &str) -> TaskSet {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("constructions")
            .join(name);
        TaskSet::from_spec(&spec::load(&path).unwrap())
    }

    fn options(router: RouterMode, head1: Head1Mode) -> Options {
        Options {
            router,
            head1,
            ..Options::default()
        }
    }

    fn xor_certificate() -> (TaskSet, Options, Certificate) {
        let ts = load("xor_expected_failure.toml");
        let o = options(RouterMode::SyntacticKey, Head1Mode::Positional);
        let Decision::Impossible(cert) = decide(&ts, &o, DEFAULT_BUDGET).decision else {
            panic!("XOR must be refuted")
        };
        (ts, o, cert)
    }

    #[test]
    fn xor_certificate_is_the_four_openings_with_unit_multipliers() {
        let (ts, o, cert) = xor_certificate();
        let Proof::Farkas { rows } = &cert.proof else {
            panic!("{cert:?}")
        };
        let mut got: Vec<(String, String, String, String)> = rows
            .iter()
            .map(|r| {
                assert_eq!(r.prefixes.len(), 1);
                (
                    r.prefixes[0].join(" "),
                    r.task.clone(),
                    r.against.clone(),
                    r.multiplier.clone(),
                )
            })
            .collect();
        got.sort();
        let row = |p: &str, t: &str, a: &str| (p.into(), t.into(), a.into(), "1".into());
        assert_eq!(
            got,
            vec![
                row("blue big", "beta", "alpha"),
                row("blue small", "alpha", "beta"),
                row("red big", "alpha", "beta"),
                row("red small", "beta", "alpha"),
            ]
        );
        let model = model_for_checking(&ts, &o);
        assert_eq!(
            certificate::check(&cert, &ts, &model),
            Ok(certificate::Accepted {
                rows: 4,
                prefixes: 4
            })
        );
    }

    #[test]
    fn the_checker_rejects_corrupted_certificates() {
        let (ts, o, cert) = xor_certificate();
        let model = model_for_checking(&ts, &o);
        let check = |c: &Certificate| certificate::check(c, &ts, &model);
        fn rows(c: &mut Certificate) -> &mut Vec<Row> {
            match &mut c.proof {
                Proof::Farkas { rows } => rows,
                _ => unreachable!(),
            }
        }
        // A multiplier changed: the combination no longer vanishes.
        let mut bad = cert.clone();
        rows(&mut bad)[0].multiplier = "2".into();
        assert!(matches!(
            check(&bad),
            Err(certificate::Rejection::NonZero { .. })
        ));
        // A negative multiplier.
        let mut bad = cert.clone();
        rows(&mut bad)[1].multiplier = "-1".into();
        assert!(matches!(
            check(&bad),
            Err(certificate::Rejection::Multiplier { .. })
        ));
        // A row dropped.
        let mut bad = cert.clone();
        rows(&mut bad).pop();
        assert!(matches!(
            check(&bad),
            Err(certificate::Rejection::NonZero { .. })
        ));
        // A constraint turned around: "beta above alpha" at "red big" is
        // not something a correct router must do.
        let mut bad = cert.clone();
        let r = &mut rows(&mut bad)[0];
        std::mem::swap(&mut r.task, &mut r.against);
        assert!(matches!(
            check(&bad),
            Err(certificate::Rejection::NotRequired { .. })
        ));
        // A prefix that is not in the spec.
        let mut bad = cert.clone();
        rows(&mut bad)[0].prefixes[0] = vec!["red".into(), "red".into()];
        assert!(matches!(
            check(&bad),
            Err(certificate::Rejection::NotAPrefix(_))
        ));
        // All multipliers zero.
        let mut bad = cert.clone();
        rows(&mut bad)
            .iter_mut()
            .for_each(|r| r.multiplier = "0".into());
        assert_eq!(check(&bad), Err(certificate::Rejection::AllZero));
        // A certificate about another router input.
        let mut bad = cert.clone();
        bad.reads.pop();
        assert!(matches!(
            check(&bad),
            Err(certificate::Rejection::Reads { .. })
        ));
        // The original still passes, also after a JSON round trip.
        let json = serde_json::to_string(&cert).unwrap();
        let back: Certificate = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cert);
        assert!(check(&back).is_ok());
    }

    #[test]
    fn the_checker_recomputes_inputs_from_the_weights() {
        // Corrupt the model instead: if head 1 attended differently, the
        // inputs change and the same certificate no longer sums to zero.
        let (ts, o, cert) = xor_certificate();
        let mut model = model_for_checking(&ts, &o);
        // Head 1 now also favours attending to "red" (score + 1): the
        // openings are no longer additive in their two words.
        let red = model.residual.get("tok:red").unwrap();
        model.heads[0].key.add(0, red, Rat::one());
        assert!(matches!(
            certificate::check(&cert, &ts, &model),
            Err(certificate::Rejection::NonZero { .. })
        ));
    }

    #[test]
    fn identical_inputs_refute_the_syntactic_router_on_the_running_example() {
        let ts = load("running_example.toml");
        let o = options(RouterMode::Syntactic, Head1Mode::Positional);
        let decided = decide(&ts, &o, DEFAULT_BUDGET);
        let Decision::Impossible(cert) = &decided.decision else {
            panic!("{:?}", decided.decision)
        };
        let Proof::IdenticalInputs { prefixes } = &cert.proof else {
            panic!("{cert:?}")
        };
        // One located_in key and one spoken_in key, at the same length.
        assert_eq!(prefixes.len(), 2);
        assert_eq!(prefixes[0].len(), prefixes[1].len());
        let model = model_for_checking(&ts, &o);
        assert!(certificate::check(cert, &ts, &model).is_ok());
        // Claiming instead that two located_in prefixes conflict is rejected.
        let fake = Certificate {
            reads: cert.reads.clone(),
            proof: Proof::IdenticalInputs {
                prefixes: vec![vec!["Paris".into()], vec!["Tokyo".into()]],
            },
        };
        assert!(matches!(
            certificate::check(&fake, &ts, &model),
            Err(certificate::Rejection::SharedTask(_))
        ));
    }

    #[test]
    fn an_ambiguous_prefix_is_refuted_case_by_case() {
        let ts = load("ambiguous_xor_expected_failure.toml");
        let o = options(RouterMode::SyntacticKey, Head1Mode::Positional);
        let Decision::Impossible(cert) = decide(&ts, &o, DEFAULT_BUDGET).decision else {
            panic!("must be refuted")
        };
        let Proof::Cases { prefixes, cases } = &cert.proof else {
            panic!("{cert:?}")
        };
        assert_eq!(prefixes, &vec![vec!["blue".to_string(), "big".to_string()]]);
        let tasks: BTreeSet<&str> = cases.iter().map(|c| c.task.as_str()).collect();
        assert_eq!(tasks, BTreeSet::from(["beta", "gamma"]));
        // Each case is the XOR square of its own: four rows, one of them
        // the case's assumption at "blue big".
        for case in cases {
            let Proof::Farkas { rows } = &case.proof else {
                panic!("{case:?}")
            };
            assert_eq!(rows.len(), 4);
            let assumed: Vec<&Row> = rows
                .iter()
                .filter(|r| r.prefixes[0] == ["blue", "big"])
                .collect();
            assert_eq!(assumed.len(), 1);
            assert_eq!(
                (assumed[0].task.as_str(), assumed[0].against.as_str()),
                (case.task.as_str(), "alpha")
            );
        }
        let model = model_for_checking(&ts, &o);
        let check = |c: &Certificate| certificate::check(c, &ts, &model);
        assert_eq!(check(&cert).map(|a| a.prefixes), Ok(7));
        // Drop a case: the split no longer covers C("blue big").
        let mut bad = cert.clone();
        if let Proof::Cases { cases, .. } = &mut bad.proof {
            cases.pop();
        }
        assert!(matches!(
            check(&bad),
            Err(certificate::Rejection::Uncovered { .. })
        ));
        // Swap the cases' proofs: each now relies on the other case's
        // assumption, which is not in scope.
        let mut bad = cert.clone();
        if let Proof::Cases { cases, .. } = &mut bad.proof {
            let first = cases[0].task.clone();
            cases[0].task = cases[1].task.clone();
            cases[1].task = first;
        }
        assert!(matches!(
            check(&bad),
            Err(certificate::Rejection::NotRequired { .. })
        ));
        // Without the split, a case's rows alone are not a proof.
        let bad = Certificate {
            reads: cert.reads.clone(),
            proof: cases[0].proof.clone(),
        };
        assert!(matches!(
            check(&bad),
            Err(certificate::Rejection::NotRequired { .. })
        ));
    }

    #[test]
    fn constructions_that_verify_are_routable() {
        for (file, router) in [
            ("running_example.toml", RouterMode::SyntacticKey),
            ("shared_keys.toml", RouterMode::SyntacticKey),
        ] {
            let ts = load(file);
            let report = run(&ts, &options(router, Head1Mode::Positional), DEFAULT_BUDGET);
            assert_eq!(report.decision, "routable", "{file}: {}", report.reason);
            let routing = report.routing.unwrap();
            assert!(routing.holds && routing.checked == ts.prefixes.len());
        }
    }
}
