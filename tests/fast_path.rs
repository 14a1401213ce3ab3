//! The fast exact path against plain BigRational.
//!
//! `verify` evaluates the weights as `FastRat` (machine-word rationals with
//! a checked fallback to BigRational) through the `Evaluator`, which shares
//! each position's projections between prefixes and computes a run of
//! neurons with one read vector once. Here every logit, router score and
//! routing decision of that path is compared, on every prefix of several
//! sets and both models, with the independent dense BigRational forward
//! pass of tests/reference; and whole verdicts with `verify_bigrational`.

mod reference;

use num_traits::Zero;
use routecert::construct::{ModelKind, Options, RouterMode, build};
use routecert::eval::Evaluator;
use routecert::scalar::{FastRat, Rat, Scalar, rat};
use routecert::verify::{Config, verify};

use routecert::fixtures::task_set;

/// Compare the fast path with the reference on every prefix.
fn agree_on_every_prefix(file: &str, kind: ModelKind, options: &Options) {
    let ts = task_set(file);
    let model = build(&ts, options, kind);
    let fast_model = model.map(FastRat::from_rat);
    let fast = Evaluator::new(&fast_model);
    let reference = reference::Dense::new(&model);
    for p in &ts.prefixes {
        let what = format!("{file} {kind}: {}", ts.render(&p.tokens));
        let f = fast.run(&p.tokens).expect("the fast path runs");
        let r = reference.forward(&p.tokens).expect("the reference runs");
        assert_eq!(f.expert, r.expert, "{what}");
        let scores: Vec<Rat> = f.router_scores.iter().map(FastRat::to_rat).collect();
        assert_eq!(scores, r.router_scores, "{what}");
        for (t, z) in r.logits.iter().enumerate() {
            assert_eq!(f.logits.get(t).to_rat(), *z, "{what}: logit of token {t}");
        }
    }
}

#[test]
fn every_logit_agrees_on_the_constructions() {
    let options = Options::default();
    for file in [
        "running_example.toml",
        "shared_keys.toml",
        "xor_expected_failure.toml",
        "random_seed1.toml",
        "random_seed2.toml",
    ] {
        for kind in [ModelKind::Moe, ModelKind::Dense] {
            agree_on_every_prefix(file, kind, &options);
        }
    }
}

/// Router weights scaled by 2^70 route the same (a positive factor changes
/// no comparison) but their scores leave 64 bits: the fallback to
/// BigRational is taken, and every number still agrees.
#[test]
fn the_big_integer_fallback_agrees_too() {
    let ts = task_set("running_example.toml");
    let mut model = build(&ts, &Options::default(), ModelKind::Moe);
    let scale = Rat::from_integer(num_bigint::BigInt::from(1u8) << 70);
    model.router.weights = model.router.weights.map(&|w: &Rat| w * &scale);
    model.router.bias = model.router.bias.iter().map(|b| b * &scale).collect();
    let fast_model = model.map(FastRat::from_rat);
    let fast = Evaluator::new(&fast_model);
    let reference = reference::Dense::new(&model);
    let mut big = 0;
    for p in &ts.prefixes {
        let f = fast.run(&p.tokens).unwrap();
        let r = reference.forward(&p.tokens).unwrap();
        assert_eq!(f.expert, r.expert);
        for (s, z) in f.router_scores.iter().zip(&r.router_scores) {
            assert_eq!(s.to_rat(), *z);
            big += usize::from(!s.is_small() && !z.is_zero());
        }
        for (t, z) in r.logits.iter().enumerate() {
            assert_eq!(f.logits.get(t).to_rat(), *z);
        }
    }
    assert!(
        big > 0,
        "no router score left machine words: the fallback went untested"
    );
    // And the verdict is the unscaled one, all claims holding.
    let eps = rat(1, 1_000_000);
    let v = verify(
        &ts,
        &model,
        &Config::new(&eps).router(RouterMode::SyntacticKey),
    );
    assert!(v.all_hold());
}

#[test]
fn verdicts_agree_with_bigrational() {
    let epsilon = rat(1, 1_000_000);
    for file in [
        "running_example.toml",
        "xor_expected_failure.toml",
        "random_seed1.toml",
    ] {
        let ts = task_set(file);
        for kind in [ModelKind::Moe, ModelKind::Dense] {
            let model = build(&ts, &Options::default(), kind);
            let config = Config::new(&epsilon).router(RouterMode::SyntacticKey);
            let fast = verify(&ts, &model, &config);
            let plain = verify(&ts, &model, &config.bigrational());
            assert_eq!(
                serde_json::to_value(&fast).unwrap(),
                serde_json::to_value(&plain).unwrap(),
                "{file} {kind}"
            );
        }
    }
}
