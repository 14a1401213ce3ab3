//! What every property shares: the imports, the proptest configuration,
//! the generated case (a task set, the router and ε), the failure map of a
//! verdict, the runner that expects a mutation to be caught, and the
//! breaks of a built model that several mutation tests apply.

pub(crate) use crate::reference::{self, Rat};
pub(crate) use crate::strategy::{self, GenSet};
pub(crate) use num_traits::{Signed, ToPrimitive, Zero};
pub(crate) use proptest::prelude::*;
pub(crate) use proptest::test_runner::{Config, TestCaseError, TestError, TestRng, TestRunner};
pub(crate) use routecert::construct::{Options, RouterMode, build_moe};
pub(crate) use routecert::eval::forward;
pub(crate) use routecert::hypotheses::Hypotheses;
pub(crate) use routecert::model::{Model, NeuronRole, SparseVec};
pub(crate) use routecert::spec::{self, SlotSpec, Spec};
pub(crate) use routecert::taskset::TaskSet;
pub(crate) use routecert::verify::{self, Claim, MAX_WITNESSES, Verdict, Witness, verify};
pub(crate) use std::collections::{BTreeSet, HashMap};
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};

/// A runner on proptest's fixed-seed RNG: every run draws the same cases,
/// so a failure (or a slow case) is reproducible and the suite's time is
/// the same from run to run (with random seeds one full `cargo test` took
/// the property suite 341 s where lone runs took 25 s, and nothing could
/// replay it).
pub(crate) fn seeded(config: Config) -> TestRunner {
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    TestRunner::new_with_rng(config, rng)
}

/// The default configuration (256 cases, or PROPTEST_CASES), without
/// proptest's seed files: failures are kept as readable specs instead.
pub(crate) fn config() -> Config {
    Config {
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    }
}

/// Run a property; on failure, panic with the shrunk case (a spec).
pub(crate) fn check<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = seeded(config());
    match runner.run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(reason, value)) => panic!(
            "property {name} fails: {reason}\nminimal case (save under tests/regressions/):\n{value:#?}"
        ),
        Err(e) => panic!("property {name}: {e}"),
    }
}

/// The construction's options in the properties: the defaults, except a
/// perceptron budget of 10 epochs instead of 1000. No guarantee depends on
/// it (the router secures every covered prefix whatever the perceptron
/// found), and it keeps XOR-like sets cheap in a debug build.
pub(crate) fn options(router: RouterMode, epsilon: &Rat) -> Options {
    Options {
        router,
        epsilon: epsilon.clone(),
        max_epochs: 10,
        // Securing, not the exact LP, is what the properties rely on.
        lp_fallback: false,
        ..Options::default()
    }
}

pub(crate) fn rat(n: i64, d: i64) -> Rat {
    Rat::new(n.into(), d.into())
}

/// ε for a case: 1/10, 1/1000, 1e-6 (the default, most often) or 1e-12.
pub(crate) fn epsilon() -> impl Strategy<Value = Rat> {
    prop_oneof![
        1 => Just(rat(1, 10)),
        1 => Just(rat(1, 1000)),
        3 => Just(rat(1, 1_000_000)),
        1 => Just(rat(1, 1_000_000_000_000)),
    ]
}

pub(crate) fn router() -> impl Strategy<Value = RouterMode> {
    prop_oneof![3 => Just(RouterMode::SyntacticKey), 1 => Just(RouterMode::Syntactic)]
}

/// One generated case: a task set, the router and ε. Its `Debug` form is a
/// spec file whose comment lines give the router and ε, which
/// `regressions_replay` reads back.
#[derive(Clone)]
pub(crate) struct Case {
    pub(crate) set: GenSet,
    pub(crate) router: RouterMode,
    pub(crate) epsilon: Rat,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n# router: {}\n# epsilon: {}{:?}",
            self.router, self.epsilon, self.set
        )
    }
}

pub(crate) fn cases(sets: impl Strategy<Value = GenSet>) -> impl Strategy<Value = Case> {
    (sets, router(), epsilon()).prop_map(|(set, router, epsilon)| Case {
        set,
        router,
        epsilon,
    })
}

/// Failing (claim, prefix) pairs of a verdict, with the witness.
pub(crate) fn failures(v: &Verdict) -> HashMap<(Claim, String), &Witness> {
    v.failures
        .iter()
        .map(|w| ((w.claim, w.prefix.clone()), w))
        .collect()
}

/// Run a property with a break applied; it must fail (the mutation tests).
/// Returns the shrunk counterexample's message.
pub(crate) fn caught<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> String
where
    S::Value: std::fmt::Debug,
{
    let mut runner = seeded(Config {
        cases: 256,
        max_shrink_iters: 256,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(&strategy, test) {
        Err(TestError::Fail(reason, value)) => {
            let shown = format!("{reason}\n{value:#?}");
            println!("mutation \"{name}\" caught: {shown}");
            shown
        }
        other => panic!("mutation \"{name}\" was not caught: {other:?}"),
    }
}

// Breaks of a built model shared by several properties' mutation tests.

/// No break: the property on the model as built.
pub(crate) fn no_mutation(_: &mut Model<Rat>, _: &TaskSet) {}

pub(crate) fn scale_syntactic(model: &mut Model<Rat>, factor: &Rat) {
    for e in &mut model.experts {
        for n in e
            .neurons
            .iter_mut()
            .filter(|n| n.role == NeuronRole::Syntactic)
        {
            n.write = n.write.map(|w| w * factor);
        }
        e.output_bias = e.output_bias.map(|w| w * factor);
    }
}

pub(crate) fn blind_router_to_entities(model: &mut Model<Rat>) {
    // Entities are the tokens head 2 writes (h2:e); the router sees them
    // there and, while one is the current token, at tok:e.
    let entities: BTreeSet<String> = (0..model.residual.len())
        .filter_map(|d| model.residual.name(d).strip_prefix("h2:").map(String::from))
        .collect();
    let entity_dirs: Vec<usize> = (0..model.residual.len())
        .filter(|&d| {
            let name = model.residual.name(d);
            name.starts_with("h2:")
                || name
                    .strip_prefix("tok:")
                    .is_some_and(|t| entities.contains(t))
        })
        .collect();
    let mut weights = routecert::model::LinearMap::zero(model.residual.len(), model.experts.len());
    for d in 0..model.residual.len() {
        if entity_dirs.contains(&d) {
            continue;
        }
        for (e, w) in model.router.weights.column(d).entries() {
            weights.add(*e, d, w.clone());
        }
    }
    model.router.weights = weights;
}
