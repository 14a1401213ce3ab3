//! Interval verification of float weights (issue 14): natural-exp
//! attention, noise, edits that break routing, scores off the ln 2 grid.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use routecert::construct::{self, ModelKind, Options};
use routecert::eval::Evaluator;
use routecert::interval::float_image::{float_image, nearest_dyadic};
use routecert::model::{LinearMap, Model, ScoreUnit, SparseVec};
use routecert::scalar::Rat;
use routecert::spec;
use routecert::taskset::TaskSet;
use routecert::verify::interval::{Outcome, prefix_outcomes, verify_intervals};
use routecert::verify::{Arith, Claim, Config, Verdict, verify};
use std::collections::BTreeSet;
use std::path::Path;

fn taskset(name: &str) -> TaskSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("constructions")
        .join(name);
    TaskSet::from_spec(&spec::load(&path).expect("spec loads"))
}

fn built(ts: &TaskSet, kind: ModelKind) -> Model<Rat> {
    construct::build(ts, &Options::default(), kind)
}

fn eps() -> Rat {
    Options::default().epsilon
}

/// (claim, prefix) of every failure witness of the exact verifier
/// (isolation: its per-prefix checks).
fn exact_failures(v: &Verdict) -> BTreeSet<(String, String)> {
    v.failures
        .iter()
        .filter(|w| w.claim != Claim::Size && !w.prefix.is_empty())
        .map(|w| (w.claim.to_string(), w.prefix.clone()))
        .collect()
}

/// (claim, prefix) pairs.
type Claimed = BTreeSet<(String, String)>;

/// (claim, prefix) of the interval verdict's refuted and undecided claims.
fn open_claims(v: &routecert::verify::interval::IntervalVerdict) -> (Claimed, Claimed) {
    let key = |w: &routecert::verify::Witness| (w.claim.to_string(), w.prefix.clone());
    let not_size = |w: &&routecert::verify::Witness| w.claim != Claim::Size && !w.prefix.is_empty();
    (
        v.failures.iter().filter(not_size).map(key).collect(),
        v.undecided.iter().filter(not_size).map(key).collect(),
    )
}

const CONSTRUCTIONS: [&str; 7] = [
    "running_example.toml",
    "shared_keys.toml",
    "xor_expected_failure.toml",
    "xor_late_expected_failure.toml",
    "ambiguous_xor_expected_failure.toml",
    "random_seed1.toml",
    "random_seed2.toml",
];

/// Every construction, as built (ln 2 units) and as its float64 export
/// reads back (natural exp, every weight rounded): the intervals refute
/// exactly where the exact verifier fails, except that an exact tie (a
/// valid and an invalid logit equal) stays undecided, and they leave
/// nothing else open.
#[test]
fn every_construction_agrees_with_the_exact_verifier() {
    for name in CONSTRUCTIONS {
        let ts = taskset(name);
        for kind in [ModelKind::Moe, ModelKind::Dense] {
            let m = built(&ts, kind);
            let exact_verdict = verify(&ts, &m, &Config::new(&eps()));
            let exact = exact_failures(&exact_verdict);
            for (what, model) in [("built", m.clone()), ("float image", float_image(&m))] {
                let v = verify_intervals(&ts, &model, &eps()).unwrap();
                // Claim I: checked on the dense model only, as often as
                // the exact verifier checks it, circuit by circuit.
                match (&v.claims.isolation, &exact_verdict.claims.isolation) {
                    (Some(i), Some(x)) => {
                        assert_eq!(i.checked, x.checked, "{name} {what}");
                        assert_eq!(i.holds, x.holds, "{name} {what}");
                        let per = |c: &[(String, usize, usize)]| c.to_vec();
                        let ours: Vec<_> = v
                            .circuits
                            .as_ref()
                            .unwrap()
                            .iter()
                            .map(|c| (c.task.clone(), c.neurons, c.prefixes))
                            .collect();
                        let theirs: Vec<_> = exact_verdict
                            .circuits
                            .as_ref()
                            .unwrap()
                            .iter()
                            .map(|c| (c.task.clone(), c.neurons, c.prefixes))
                            .collect();
                        assert_eq!(per(&ours), theirs, "{name} {what}");
                    }
                    (None, None) => assert!(v.circuits.is_none()),
                    other => panic!("{name} {kind:?}: isolation {other:?}"),
                }
                let (refuted, undecided) = open_claims(&v);
                assert!(
                    refuted.is_subset(&exact),
                    "{name} {kind:?} {what}: {refuted:?} vs {exact:?}"
                );
                assert!(
                    undecided.is_subset(&exact),
                    "{name} {kind:?} {what}: {undecided:?}"
                );
                let covered: BTreeSet<_> = refuted.union(&undecided).cloned().collect();
                assert_eq!(covered, exact, "{name} {kind:?} {what}");
                for w in &v.undecided {
                    assert!(w.reason.contains("overlap"), "{name}: {}", w.reason);
                }
                assert_eq!(v.claims.probability.checked, ts.prefixes.len());
                if exact.is_empty() {
                    assert!(v.all_proved(), "{name} {kind:?} {what}");
                }
            }
        }
    }
}

/// The running example as read back from floats: proved on every prefix in
/// both models, every expert's neurons all firing on its task, and the
/// retrieval margin within 1e-6 of the exact one of the ln 2 model (the
/// only change is ln 2 rounded into W_Q).
#[test]
fn running_example_read_from_floats_is_proved() {
    let ts = taskset("running_example.toml");
    for kind in [ModelKind::Moe, ModelKind::Dense] {
        let m = built(&ts, kind);
        let exact = verify(&ts, &m, &Config::new(&eps()));
        let natural = float_image(&m);
        assert_eq!(natural.score_unit, ScoreUnit::Natural);
        let v = verify_intervals(&ts, &natural, &eps()).unwrap();
        assert!(v.all_proved(), "{kind:?}");
        assert_eq!((v.undecided_count, v.failure_count), (0, 0));
        let n = ts.prefixes.len();
        assert_eq!(v.claims.retrieval.proved, n);
        let routed = if kind == ModelKind::Moe { n } else { 0 };
        assert_eq!(v.claims.routing.proved, routed);
        let exact_margin: f64 = exact.claims.retrieval.min_margin.as_ref().unwrap().to_f64();
        let iv_margin: f64 = v
            .claims
            .retrieval
            .min_margin
            .as_ref()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            iv_margin <= exact_margin + 1e-6 && iv_margin > exact_margin - 1e-6,
            "{iv_margin} vs {exact_margin}"
        );
        for (e, x) in v.experts.iter().zip(&exact.experts) {
            assert_eq!(e.neurons, x.neurons);
            assert!(e.firing + e.undecided <= e.bound);
        }
        if kind == ModelKind::Moe {
            // Every neuron of an expert is used on some prefix of its task.
            assert!(
                v.experts
                    .iter()
                    .all(|e| e.firing == e.neurons && e.undecided == 0)
            );
        }
    }
}

/// The f64 forward pass (an independent evaluator) lands inside the
/// intervals on every prefix, up to its own rounding.
#[test]
fn f64_forward_lies_in_the_intervals() {
    use routecert::interval::Iv;
    use routecert::interval::forward::IntervalEvaluator;
    let ts = taskset("running_example.toml");
    let natural = float_image(&built(&ts, ModelKind::Moe));
    let iv_model: Model<Iv> = natural.map(Iv::enclose);
    let intervals = IntervalEvaluator::new(&iv_model);
    let f = natural.to_f64();
    let floats = Evaluator::new(&f);
    let ids = |p: &routecert::taskset::Prefix| -> Vec<usize> {
        p.tokens
            .iter()
            .map(|&t| natural.token(ts.vocab.name(t)).unwrap())
            .collect()
    };
    for p in &ts.prefixes {
        let tokens = ids(p);
        let iv = intervals.run(&tokens).unwrap();
        let fl = floats.run(&tokens).unwrap();
        assert_eq!(iv.candidates, vec![fl.expert]);
        for t in 0..natural.vocab.len() {
            let (z, b) = (fl.logits.get(t), iv.logit(t));
            let slack = 1e-9 * (1.0 + z.abs());
            assert!(
                b.lo() - slack <= z && z <= b.hi() + slack,
                "{t}: {z} not in {b:?}"
            );
            assert!(b.width() < 1e-6, "{t}: {b:?} is loose");
        }
    }
}

/// x + N(0, σ²) rounded to f64, by Box–Muller.
fn gauss(rng: &mut ChaCha8Rng, sigma: f64) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    sigma * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn jitter(x: &Rat, rng: &mut ChaCha8Rng, sigma: f64) -> Rat {
    let y = num_traits::ToPrimitive::to_f64(x).unwrap() + gauss(rng, sigma);
    Rat::from_float(y).unwrap()
}

/// Noise on every entry of a map, zeros included (a dense tensor's view).
fn noisy_map(m: &LinearMap<Rat>, rng: &mut ChaCha8Rng, sigma: f64) -> LinearMap<Rat> {
    let mut out = LinearMap::zero(m.in_dim, m.out_dim);
    for c in 0..m.in_dim {
        for r in 0..m.out_dim {
            out.add(r, c, jitter(&m.get(r, c), rng, sigma));
        }
    }
    out
}

fn noisy_vec(v: &SparseVec<Rat>, d: usize, rng: &mut ChaCha8Rng, sigma: f64) -> SparseVec<Rat> {
    SparseVec::from_entries((0..d).map(|i| (i, jitter(&v.get(i), rng, sigma))))
}

/// Gaussian noise of standard deviation `sigma` on every weight.
fn with_noise(model: &Model<Rat>, sigma: f64, seed: u64) -> Model<Rat> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rng = &mut rng;
    let d = model.residual.len();
    let mut m = model.clone();
    for v in m.token_embed.iter_mut().chain(m.pos_embed.iter_mut()) {
        *v = noisy_vec(v, d, rng, sigma);
    }
    for h in &mut m.heads {
        h.query = noisy_map(&h.query, rng, sigma);
        h.key = noisy_map(&h.key, rng, sigma);
        h.value = noisy_map(&h.value, rng, sigma);
        h.output = noisy_map(&h.output, rng, sigma);
    }
    m.router.weights = noisy_map(&m.router.weights, rng, sigma);
    for b in &mut m.router.bias {
        *b = jitter(b, rng, sigma);
    }
    for e in &mut m.experts {
        for n in &mut e.neurons {
            n.read = noisy_vec(&n.read, d, rng, sigma);
            n.write = noisy_vec(&n.write, d, rng, sigma);
            n.bias = jitter(&n.bias, rng, sigma);
        }
        e.output_bias = noisy_vec(&e.output_bias, d, rng, sigma);
    }
    m.unembed = noisy_map(&m.unembed, rng, sigma);
    m
}

/// Noise of 1e-6 on every weight moves no R or A margin above 1e-3 and no
/// P bound below ε/2 across its threshold (the logits are sums of a few
/// dozen products of weights of size ≤ 10³ with activations ≤ 10³, so they
/// move by well under 1e-3 at this scale). Every prefix where the clean
/// margins are that large must be proved with noise, and the clean model
/// has them on every prefix of the running example: computed, not assumed.
#[test]
fn gaussian_noise_is_proved_where_the_margins_allow() {
    let ts = taskset("running_example.toml");
    let eps_f = num_traits::ToPrimitive::to_f64(&eps()).unwrap();
    for kind in [ModelKind::Moe, ModelKind::Dense] {
        let clean = float_image(&built(&ts, kind));
        let noisy = with_noise(&clean, 1e-6, 14);
        assert!(
            noisy.unembed.nnz() > clean.unembed.nnz(),
            "the noise touches zeros"
        );
        let before = prefix_outcomes(&ts, &clean, &eps()).unwrap();
        let after = prefix_outcomes(&ts, &noisy, &eps()).unwrap();
        let mut allowed = 0;
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let wide = |o: &(Outcome, Option<f64>), t: f64| o.1.is_none_or(|m| m > t);
            let margins_allow = b.routing.as_ref().is_none_or(|r| wide(r, 1e-3))
                && wide(&b.retrieval, 1e-3)
                && wide(&b.probability, eps_f / 2.0);
            if margins_allow {
                allowed += 1;
                let text = ts.render(&ts.prefixes[i].tokens);
                assert_eq!(a.retrieval.0, Outcome::Proved, "{kind:?} {text}");
                assert_eq!(a.probability.0, Outcome::Proved, "{kind:?} {text}");
                if let Some(r) = &a.routing {
                    assert_eq!(r.0, Outcome::Proved, "{kind:?} {text}");
                }
            }
        }
        assert_eq!(
            allowed,
            ts.prefixes.len(),
            "{kind:?}: margins allow every prefix"
        );
        let v = verify_intervals(&ts, &noisy, &eps()).unwrap();
        assert!(v.all_proved(), "{kind:?}: {:?}", v.claims);
    }
}

/// Two router rows swapped: routing is refuted on exactly the prefixes
/// whose only compatible expert is one of the swapped two (the running
/// example has two experts, so every unambiguous prefix; an ambiguous one
/// is compatible with both), and the witnesses name them.
#[test]
fn swapped_router_rows_refute_routing_on_the_right_prefixes() {
    let ts = taskset("running_example.toml");
    let mut m = float_image(&built(&ts, ModelKind::Moe));
    assert_eq!(m.experts.len(), 2);
    let w = &m.router.weights;
    let mut swapped = LinearMap::zero(w.in_dim, w.out_dim);
    for c in 0..w.in_dim {
        for (r, x) in w.column(c).entries() {
            swapped.add(1 - *r, c, x.clone());
        }
    }
    m.router.weights = swapped;
    m.router.bias.swap(0, 1);
    let v = verify_intervals(&ts, &m, &eps()).unwrap();
    let expected: BTreeSet<String> = ts
        .prefixes
        .iter()
        .filter(|p| p.tasks.len() == 1)
        .map(|p| ts.render(&p.tokens))
        .collect();
    assert!(!expected.is_empty());
    let named: BTreeSet<String> = v
        .failures
        .iter()
        .filter(|w| w.claim == Claim::Routing)
        .map(|w| w.prefix.clone())
        .collect();
    assert_eq!(named, expected);
    assert_eq!(v.claims.routing.refuted, expected.len());
    assert_eq!(v.claims.routing.undecided, 0);
    assert!(!v.all_proved());
    for w in v.failures.iter().filter(|w| w.claim == Claim::Routing) {
        assert!(w.reason.contains("outside C(w)"), "{}", w.reason);
        assert!(!w.tasks.is_empty() && !w.top_logits.is_empty());
    }
}

/// W_Q scaled by 1.01: the scores leave the ln 2 grid (no construction
/// path knows the weights any more), yet the intervals decide every claim
/// on every prefix, and where f64 says a claim fails the intervals refute
/// it (and nowhere else).
#[test]
fn queries_off_the_ln2_grid_are_decided() {
    for name in ["running_example.toml", "xor_expected_failure.toml"] {
        let ts = taskset(name);
        for kind in [ModelKind::Moe, ModelKind::Dense] {
            let mut m = float_image(&built(&ts, kind));
            for h in &mut m.heads {
                h.query = h
                    .query
                    .map(&|w: &Rat| nearest_dyadic(&(w * Rat::new(101.into(), 100.into()))));
            }
            let v = verify_intervals(&ts, &m, &eps()).unwrap();
            let (refuted, undecided) = open_claims(&v);
            let f64_failures =
                exact_failures(&verify(&ts, &m, &Config::new(&eps()).arith(Arith::F64)));
            if !undecided.is_empty() {
                // Only exact ties (a valid and an invalid logit equal by
                // construction, untouched by W_Q) may stay open.
                for w in &v.undecided {
                    assert!(w.reason.contains("overlap"), "{name}: {}", w.reason);
                }
                assert_eq!(name, "xor_expected_failure.toml");
                assert_eq!(kind, ModelKind::Dense);
            } else {
                assert_eq!(refuted, f64_failures, "{name} {kind:?}");
            }
            let c = &v.claims;
            assert_eq!(
                c.retrieval.proved + c.retrieval.refuted + c.retrieval.undecided,
                ts.prefixes.len()
            );
            assert_eq!(c.probability.undecided, 0, "{name} {kind:?}");
            assert_eq!(c.routing.undecided, 0, "{name} {kind:?}");
        }
    }
}

#[test]
fn a_spec_token_the_model_lacks_is_an_error() {
    let ts = taskset("running_example.toml");
    let mut m = float_image(&built(&ts, ModelKind::Moe));
    m.vocab[0] = "renamed".into();
    let err = verify_intervals(&ts, &m, &eps()).unwrap_err();
    assert!(err.to_string().contains(ts.vocab.name(0)), "{err}");
}

/// Claim S on the interval path counts a neuron as firing on a task only
/// when the intervals decide it fires on some prefix of the task, and as
/// undecided when its pre-activation straddles 0 and fires surely nowhere.
/// Three neurons are added to the first expert of the running example's
/// float image, reading a coordinate of A' that natural-exp attention
/// makes irrational (an interval of positive width): one biased inside the
/// widest such interval (straddles 0), one surely above, one surely below.
/// They write nothing, so no other claim moves.
#[test]
fn size_counts_a_neuron_only_when_the_intervals_decide_it() {
    use routecert::interval::Iv;
    use routecert::interval::forward::IntervalEvaluator;
    use routecert::model::{Neuron, NeuronRole};
    let ts = taskset("running_example.toml");
    let clean = float_image(&built(&ts, ModelKind::Moe));
    let task = 0;
    let expert = clean
        .experts
        .iter()
        .position(|e| e.name == ts.tasks[task].name)
        .unwrap();
    let iv_model: Model<Iv> = clean.map(Iv::enclose);
    let engine = IntervalEvaluator::new(&iv_model);
    let ids = |p: &routecert::taskset::Prefix| -> Vec<usize> {
        p.tokens
            .iter()
            .map(|&t| clean.token(ts.vocab.name(t)).unwrap())
            .collect()
    };
    let of_task: Vec<_> = ts
        .prefixes
        .iter()
        .filter(|p| p.tasks.contains(&task))
        .collect();
    let traces: Vec<_> = of_task
        .iter()
        .map(|p| engine.run(&ids(p)).unwrap())
        .collect();
    let coords: BTreeSet<usize> = traces
        .iter()
        .flat_map(|t| t.hidden.entries().iter().map(|(c, _)| *c))
        .collect();
    // What the intervals say of a neuron reading `values` with bias b.
    let class = |values: &[Iv], b: f64| {
        if values.iter().any(|v| v.lo() + b > 0.0) {
            "surely"
        } else if values.iter().any(|v| v.hi() + b > 0.0) {
            "maybe"
        } else {
            "silent"
        }
    };
    // A coordinate whose largest value over the task's prefixes is an
    // interval of positive width: a bias inside it straddles 0.
    let (coord, biases) = coords
        .iter()
        .find_map(|&c| {
            let values: Vec<Iv> = traces.iter().map(|t| t.hidden.get(c)).collect();
            let top = values.iter().max_by(|a, b| a.hi().total_cmp(&b.hi()))?;
            let bottom = values.iter().map(Iv::lo).fold(f64::INFINITY, f64::min);
            let inside = top.lo() + top.width() / 2.0;
            let biases = [-inside, 1.0 - bottom, -top.hi() - 1.0];
            let classes: Vec<&str> = biases.iter().map(|&b| class(&values, b)).collect();
            (top.width() > 0.0 && classes == ["maybe", "surely", "silent"]).then_some((c, biases))
        })
        .expect("attention makes some coordinate of A' irrational");
    assert!(coord < clean.residual.len());

    let mut m = clean.clone();
    for (i, b) in biases.iter().enumerate() {
        m.experts[expert].neurons.push(Neuron {
            name: format!("probe{i}"),
            role: NeuronRole::Semantic,
            read: SparseVec::from_entries([(coord, Rat::from_integer(1.into()))]),
            bias: Rat::from_float(*b).unwrap(),
            write: SparseVec::default(),
        });
    }
    let before = verify_intervals(&ts, &clean, &eps()).unwrap();
    let after = verify_intervals(&ts, &m, &eps()).unwrap();
    let (b, a) = (&before.experts[task], &after.experts[task]);
    assert_eq!(a.neurons, b.neurons + 3);
    assert_eq!(a.firing, b.firing + 1, "the surely firing probe counts");
    assert_eq!(a.undecided, b.undecided + 1, "the straddling probe is open");
    assert_eq!(
        (
            after.claims.retrieval.proved,
            after.claims.probability.proved
        ),
        (
            before.claims.retrieval.proved,
            before.claims.probability.proved
        )
    );
}

/// Refinement: 2^60 added to every expert's router weight on one
/// coordinate of A' that attention makes irrational shifts every score by
/// the same amount, so the exact routing is unchanged; but at 53 bits that
/// shift's rounding (about 2^7 times the coordinate) swamps the margins.
/// The refined pass (exact centre, radius from softmax weights to 128+
/// bits) must decide every such prefix, and exactly as before.
#[test]
fn refinement_decides_what_53_bits_cannot() {
    use routecert::interval::Iv;
    use routecert::interval::forward::IntervalEvaluator;
    let ts = taskset("running_example.toml");
    let clean = float_image(&built(&ts, ModelKind::Moe));
    let iv_model: Model<Iv> = clean.map(Iv::enclose);
    let engine = IntervalEvaluator::new(&iv_model);
    // The coordinate of A' that is a non-point interval on most prefixes.
    let mut count = vec![0usize; clean.residual.len()];
    for p in &ts.prefixes {
        let ids: Vec<usize> = p
            .tokens
            .iter()
            .map(|&t| clean.token(ts.vocab.name(t)).unwrap())
            .collect();
        for (c, x) in engine.run(&ids).unwrap().hidden.entries() {
            if !x.is_point() {
                count[*c] += 1;
            }
        }
    }
    let coord = (0..count.len()).max_by_key(|&c| count[c]).unwrap();
    assert!(count[coord] > 0);
    let mut m = clean.clone();
    let big = Rat::from_integer(num_bigint::BigInt::from(1u64 << 60));
    for e in 0..m.experts.len() {
        m.router.weights.add(e, coord, big.clone());
    }
    let before = verify_intervals(&ts, &clean, &eps()).unwrap();
    let after = verify_intervals(&ts, &m, &eps()).unwrap();
    assert_eq!(before.precision.refined, 0);
    assert!(
        after.precision.refined >= count[coord],
        "{} refined, {} prefixes read the coordinate",
        after.precision.refined,
        count[coord]
    );
    assert_eq!(after.precision.refined_decided, after.precision.refined);
    assert_eq!(after.claims.routing, before.claims.routing);
    assert!(after.all_proved());
}

/// Claim I from float weights: an ungated neuron of C(located_in) fires on
/// the spoken_in prefixes. The intervals refute isolation on exactly the
/// checks the exact verifier fails, with the same per-circuit counts
/// (verdicts changed by masking, off-task firings), and the witnesses name
/// the neuron; the clean float model is proved with a positive silence
/// margin on every check.
#[test]
fn isolation_is_refuted_from_floats_where_a_gate_is_removed() {
    let ts = taskset("running_example.toml");
    let clean = built(&ts, ModelKind::Dense);
    let v = verify_intervals(&ts, &float_image(&clean), &eps()).unwrap();
    let i = v.claims.isolation.clone().unwrap();
    assert_eq!((i.checked, i.proved), (39, 39));
    let margin: f64 = i.min_margin.unwrap().parse().unwrap();
    assert!(margin >= 1.0 - 1e-6, "silence margin {margin}");

    let mut broken = clean.clone();
    routecert::fixtures::ungate(&mut broken, "located_in/syn0");
    let exact = verify(&ts, &broken, &Config::new(&eps()));
    let v = verify_intervals(&ts, &float_image(&broken), &eps()).unwrap();
    let i = v.claims.isolation.clone().unwrap();
    let x = exact.claims.isolation.clone().unwrap();
    assert_eq!((i.refuted, i.undecided), (x.failures, 0));
    assert_eq!(i.refuted, 18);
    assert!(!v.all_proved());
    let ours: Vec<_> = v
        .circuits
        .unwrap()
        .iter()
        .map(|c| (c.task.clone(), c.changed_verdicts, c.off_task_firings))
        .collect();
    let theirs: Vec<_> = exact
        .circuits
        .unwrap()
        .iter()
        .map(|c| (c.task.clone(), c.changed_verdicts, c.off_task_firings))
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(ours[1], ("spoken_in".to_string(), 15, 18));
    let witnesses: Vec<_> = v
        .failures
        .iter()
        .filter(|w| w.claim == Claim::Isolation)
        .collect();
    assert_eq!(witnesses.len(), 18);
    assert!(witnesses.iter().all(|w| w.tasks == ["spoken_in"]
        && w.expert.as_deref() == Some("C(spoken_in)")
        && w.reason.contains("located_in/syn0")));
    assert!(witnesses.iter().any(|w| w.reason.contains(
        "masking to C(spoken_in) changes the verdict from P fails, A fails to P holds, A holds"
    )));
    let named: BTreeSet<String> = witnesses.iter().map(|w| w.prefix.clone()).collect();
    let expected: BTreeSet<String> = exact
        .failures
        .iter()
        .filter(|w| w.claim == Claim::Isolation)
        .map(|w| w.prefix.clone())
        .collect();
    assert_eq!(named, expected);
}

/// Claim I counts a silence check as undecided only when the intervals
/// cannot tell even after refinement. A probe neuron put into
/// C(located_in), reading one coordinate of A' that attention makes
/// irrational on the spoken_in-only prefixes and writing nothing:
/// - biased inside that coordinate's 53-bit interval on one prefix p*: it
///   straddles 0 there at 53 bits, and refinement decides every check (the
///   refuted ones are exactly the prefixes whose 512-bit enclosure of the
///   coordinate lies above the bias);
/// - biased at the midpoint of p*'s 512-bit enclosure: p* stays undecided
///   after refinement to 512 bits, and its witness says so;
/// - surely above on every prefix: refuted on each; surely below: proved.
#[test]
fn isolation_is_undecided_only_where_refinement_cannot_tell() {
    use routecert::interval::Iv;
    use routecert::interval::forward::IntervalEvaluator;
    use routecert::interval::refine::Refiner;
    use routecert::model::{Neuron, NeuronRole};
    let ts = taskset("running_example.toml");
    let clean = float_image(&built(&ts, ModelKind::Dense));
    let located = ts
        .tasks
        .iter()
        .position(|t| t.name == "located_in")
        .unwrap();
    let iv_model: Model<Iv> = clean.map(Iv::enclose);
    let engine = IntervalEvaluator::new(&iv_model);
    let refiner = Refiner::new(&clean);
    let ids = |p: &routecert::taskset::Prefix| -> Vec<usize> {
        p.tokens
            .iter()
            .map(|&t| clean.token(ts.vocab.name(t)).unwrap())
            .collect()
    };
    let others: Vec<_> = ts
        .prefixes
        .iter()
        .filter(|p| !p.tasks.contains(&located))
        .collect();
    let traces: Vec<_> = others
        .iter()
        .map(|p| engine.run(&ids(p)).unwrap())
        .collect();
    // The coordinate and prefix p* with the widest 53-bit interval.
    let (star, coord) = (0..others.len())
        .flat_map(|i| traces[i].hidden.entries().iter().map(move |(c, _)| (i, *c)))
        .max_by(|&(i, c), &(j, d)| {
            traces[i]
                .hidden
                .get(c)
                .width()
                .total_cmp(&traces[j].hidden.get(d).width())
        })
        .unwrap();
    let value = traces[star].hidden.get(coord);
    assert!(value.width() > 0.0);
    let read = SparseVec::from_entries([(coord, Rat::from_integer(1.into()))]);
    let zero = Rat::from_integer(0.into());
    let at_512: Vec<(Rat, Rat)> = others
        .iter()
        .map(|p| refiner.pre_activations(&ids(p), 512, [(&read, &zero)])[0].clone())
        .collect();
    let half = Rat::new(1.into(), 2.into());
    let mid_512 = (&at_512[star].0 + &at_512[star].1) * &half;
    let mid_53 = Rat::from_float(value.lo() + value.width() / 2.0).unwrap();
    let bottom = traces
        .iter()
        .map(|t| t.hidden.get(coord).lo())
        .fold(f64::INFINITY, f64::min);
    let top = traces
        .iter()
        .map(|t| t.hidden.get(coord).hi())
        .fold(f64::NEG_INFINITY, f64::max);
    let cases = [
        ("53-bit straddle", -mid_53.clone()),
        ("512-bit straddle", -mid_512.clone()),
        ("firing", Rat::from_float(1.0 - bottom).unwrap()),
        ("silent", Rat::from_float(-top - 1.0).unwrap()),
    ];
    for (what, bias) in cases {
        let mut m = clean.clone();
        let n = m.experts[0].neurons.len();
        m.experts[0].neurons.push(Neuron {
            name: "probe".into(),
            role: NeuronRole::Semantic,
            read: read.clone(),
            bias: bias.clone(),
            write: SparseVec::default(),
        });
        let c = m
            .circuits
            .iter()
            .position(|c| c.name == "located_in")
            .unwrap();
        m.circuits[c].neurons.push(n);
        let v = verify_intervals(&ts, &m, &eps()).unwrap();
        let i = v.claims.isolation.clone().unwrap();
        assert_eq!(i.proved + i.refuted + i.undecided, 39, "{what}");
        let (refined, decided) = v.precision.silence_refined.unwrap();
        let undecided: Vec<_> = v
            .undecided
            .iter()
            .filter(|w| w.claim == Claim::Isolation)
            .collect();
        match what {
            "53-bit straddle" => {
                // The 512-bit enclosures decide every prefix but p*'s
                // neighbourhood; computed, then compared.
                let above = at_512.iter().filter(|(lo, _)| *lo > -bias.clone()).count();
                assert!(refined >= 1, "p* went to refinement");
                assert_eq!((i.undecided, decided), (0, refined), "{what}");
                assert_eq!(i.refuted, above, "{what}");
            }
            "512-bit straddle" => {
                assert!(i.undecided >= 1 && refined > decided, "{what}: {i:?}");
                let text = ts.render(&others[star].tokens);
                assert!(undecided.iter().any(|w| w.prefix == text
                    && w.reason.contains("probe")
                    && w.reason.contains("may fire")
                    && w.reason.contains("still after refinement to 512 bits")));
            }
            "firing" => assert_eq!((i.refuted, i.undecided), (others.len(), 0)),
            _ => assert_eq!((i.proved, refined), (39, 0)),
        }
        // The probe writes nothing: no P or A verdict moves.
        assert!(
            v.claims.probability.holds && v.claims.retrieval.holds,
            "{what}"
        );
    }
}
