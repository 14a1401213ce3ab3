//! The P certificate's own tests: the exp bounds and the invalid-mass bound
//! checked directly against the independent reference (tests/reference,
//! 128-bit fixed point, no shared code) on random arguments, most of them
//! off the 1/64 grid the certificate rounds to. Every property runs with a
//! fixed seed, so a run is reproducible and a mutation is caught on every
//! run, not by chance.
//!
//! Mutations, each applied by hand and the test that catches it:
//! - `exp_neg_upper` rounding its argument up instead of down (a bound too
//!   small by up to e^{1/64}): `exp_neg_upper_is_never_below_e_to_the_minus_x`.
//! - `exp_neg_lower` using an even-degree Taylor sum (`taylor(&-y, 10)`,
//!   above e^{-y}): `exp_neg_lower_is_never_above_e_to_the_minus_x`.
//! - the P bound halved in `invalid_mass_bound`:
//!   `the_invalid_mass_bound_is_never_below_the_reference`.
//! - `exp_upper` returning a capped power of two past 2^24 bits (below
//!   e^y) instead of no bound: `past_the_bit_limit_the_bound_is_trivial`.
//!
//! The four were applied together (each in the one function its test
//! exercises) and all four tests failed, with fixed seeds, then reverted.
//! The first three were later applied one at a time (docs/traps.md, "The
//! three mutations re-applied"): each failed its named test, the first
//! two also `the_invalid_mass_bound_is_never_below_the_reference`.
//! `the_margin_certifies_its_own_inequality` guards `ln_ceiling` (the
//! margin β_sem) against the reference; no mutation of it was run.

mod reference;

use num_bigint::BigInt;
use num_traits::{One, Zero};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed, TestRunner};
use reference::Rat;
use routecert::expbound::{
    MAX_POWER_BITS, exp_lower, exp_neg_lower, exp_neg_upper, exp_upper, ln_ceiling,
};
use routecert::verify::probability::{ExpCache, invalid_mass_bound};
use std::collections::{BTreeSet, HashMap};

/// A fixed seed and no persistence file: the same cases on every run.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(0x05ee_d1e5),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    })
}

/// A rational n/d with d up to 10,007 (so mostly off the 1/64 grid) in
/// [lo, hi].
fn rational(lo: i64, hi: i64) -> impl Strategy<Value = Rat> {
    (1i64..=10_007)
        .prop_flat_map(move |d| (lo * d..=hi * d).prop_map(move |n| Rat::new(n.into(), d.into())))
}

#[test]
fn exp_neg_upper_is_never_below_e_to_the_minus_x() {
    runner(2000)
        .run(&rational(0, 48), |x| {
            let hi = exp_neg_upper(&x);
            let truth_lo = reference::exp_lower(&-x.clone());
            prop_assert!(hi >= truth_lo, "x = {}: {} < e^-x", x, hi);
            Ok(())
        })
        .unwrap();
}

#[test]
fn exp_neg_lower_is_never_above_e_to_the_minus_x() {
    runner(2000)
        .run(&rational(0, 48), |x| {
            let lo = exp_neg_lower(&x);
            let truth_hi = reference::exp_upper(&-x.clone());
            prop_assert!(lo <= truth_hi, "x = {}: {} > e^-x", x, lo);
            Ok(())
        })
        .unwrap();
}

#[test]
fn exp_upper_and_lower_bracket_e_to_the_y() {
    runner(1000)
        .run(&rational(-48, 48), |y| {
            let hi = exp_upper(&y).expect("small arguments have a bound");
            prop_assert!(hi >= reference::exp_lower(&y), "upper below e^{}", y);
            prop_assert!(
                exp_lower(&y) <= reference::exp_upper(&y),
                "lower above e^{}",
                y
            );
            Ok(())
        })
        .unwrap();
}

/// Histograms (logit, count) of valid and invalid tokens, logits off the
/// grid, gaps from 0 to about 60 either way.
type Histogram = Vec<(Rat, usize)>;

fn histograms() -> impl Strategy<Value = (Histogram, Histogram)> {
    (
        prop::collection::vec((rational(-30, 30), 1usize..4), 1..4),
        prop::collection::vec((rational(-30, 30), 1usize..4), 0..5),
    )
}

#[test]
fn the_invalid_mass_bound_is_never_below_the_reference() {
    runner(1500)
        .run(&histograms(), |(valid, invalid)| {
            let bound = invalid_mass_bound(&valid, &invalid, &mut ExpCache::default());
            // The same tokens as one logit vector for the reference.
            let mut logits = Vec::new();
            let mut valid_ids = BTreeSet::new();
            for (z, c) in &valid {
                for _ in 0..*c {
                    valid_ids.insert(logits.len());
                    logits.push(z.clone());
                }
            }
            for (z, c) in &invalid {
                logits.extend(std::iter::repeat_n(z.clone(), *c));
            }
            let truth = reference::invalid_mass(&logits, &valid_ids, &mut HashMap::new());
            prop_assert!(
                bound >= truth.lo,
                "bound {} below P(invalid) ≥ {}",
                bound,
                truth.lo
            );
            prop_assert!(bound <= Rat::one());
            Ok(())
        })
        .unwrap();
    // A pinned case where the bound is tight, so halving it must fail:
    // one valid token at 20, three invalid at 0 and one valid at 19.
    let valid = [
        (Rat::from_integer(20.into()), 1),
        (Rat::from_integer(19.into()), 1),
    ];
    let invalid = [(Rat::zero(), 3)];
    let bound = invalid_mass_bound(&valid, &invalid, &mut ExpCache::default());
    let logits: Vec<Rat> = [20, 19, 0, 0, 0]
        .map(|z| Rat::from_integer(z.into()))
        .to_vec();
    let truth = reference::invalid_mass(&logits, &BTreeSet::from([0, 1]), &mut HashMap::new());
    assert!(bound >= truth.lo && bound / Rat::from_integer(2.into()) < truth.lo);
}

#[test]
fn past_the_bit_limit_the_bound_is_trivial() {
    // e^y for y with 1.443·y above 2^24 bits: no power of two is built.
    let y = Rat::from_integer(BigInt::from(MAX_POWER_BITS));
    assert!(exp_upper(&y).is_none());
    let below = Rat::from_integer(BigInt::from(MAX_POWER_BITS / 2));
    let hi = exp_upper(&below).unwrap();
    assert!(hi.numer().bits() as usize > MAX_POWER_BITS / 2);
    // An invalid token that far above the best valid one: P(invalid) ≤ 1,
    // the trivial bound, not a number below the true mass.
    let valid = [(Rat::zero(), 1)];
    let invalid = [(y, 1)];
    assert_eq!(
        invalid_mass_bound(&valid, &invalid, &mut ExpCache::default()),
        Rat::one()
    );
}

#[test]
fn the_margin_certifies_its_own_inequality() {
    // The n of ln_ceiling satisfies e^n ≥ t by the reference's lower bound,
    // and n − 1 does not (by its upper bound), on random t.
    runner(300)
        .run(&(1i64..1_000_000, 0u32..60), |(m, digits)| {
            let t = Rat::from_integer(BigInt::from(m) * BigInt::from(10).pow(digits));
            let n = ln_ceiling(&t).unwrap();
            let e = |k: u32| Rat::from_integer(k.into());
            prop_assert!(reference::exp_lower(&e(n)) >= t, "e^{} < {}", n, t);
            if n > 0 {
                prop_assert!(
                    reference::exp_upper(&e(n - 1)) < t,
                    "e^{} ≥ {} already",
                    n - 1,
                    t
                );
            }
            Ok(())
        })
        .unwrap();
}
