//! Property: on random task sets, `routability` agrees with what the
//! verifier can establish. Where the synthesised router verifies, a router
//! exists, so routability must find one (and its router must verify); where
//! routability proves impossibility, its certificate was checked and the
//! synthesised router must fail routing. Small word pools make conflicts
//! (XOR-like openings, identical router inputs) common.
//!
//! Cases: 24 by default; set ROUTECERT_PROP_CASES for a longer run.

use proptest::prelude::*;
use routecert::construct::{self, Head1Mode, Options, RouterMode};
use routecert::generate::{Params, generate};
use routecert::routability::{self, DEFAULT_BUDGET};
use routecert::taskset::TaskSet;
use routecert::verify;

/// What one random set gave: (verify's routing holds, routability decision).
fn compare(params: &Params, router: RouterMode, head1: Head1Mode) -> Option<(bool, &'static str)> {
    let spec = generate(params).ok()?;
    let ts = TaskSet::from_spec(&spec);
    let options = Options {
        router,
        head1,
        max_epochs: 300,
        ..Options::default()
    };
    let model = construct::build_moe(&ts, &options);
    let verdict = verify::verify(
        &ts,
        &model,
        &verify::Config::new(&options.epsilon).router(router),
    );
    let report = routability::run(&ts, &options, DEFAULT_BUDGET);
    let routed = verdict.claims.routing.holds;
    let context = format!("{params:?} {router} {head1}: {}", report.reason);
    if routed {
        assert_eq!(report.decision, "routable", "{context}");
    }
    match report.decision {
        "routable" => {
            let routing = report
                .routing
                .as_ref()
                .expect("a routable report has the verifier's claim");
            assert!(routing.holds, "{context}");
        }
        "not_routable" => {
            assert_eq!(report.check.as_deref(), Some("accepted"), "{context}");
            assert!(!routed, "{context}");
            assert!(!report.conflict.is_empty(), "{context}");
        }
        other => panic!("undecided ({other}) on {context}"),
    }
    Some((routed, report.decision))
}

fn params() -> impl Strategy<Value = Params> {
    (
        2usize..=4,
        1usize..=3,
        3usize..=5,
        1usize..=3,
        2usize..=5,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(tasks, templates, max_len, pairs, words, shared_keys, seed)| Params {
                tasks,
                templates,
                min_len: 2,
                max_len,
                pairs,
                words,
                values: 3,
                task_words: None,
                shared_keys,
                shared_prefixes: false,
                seed,
            },
        )
}

fn cases() -> u32 {
    std::env::var("ROUTECERT_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn routability_never_contradicts_the_verifier(
        p in params(),
        syntactic in any::<bool>(),
        content in any::<bool>(),
    ) {
        let router = if syntactic { RouterMode::Syntactic } else { RouterMode::SyntacticKey };
        let head1 = if content { Head1Mode::Content } else { Head1Mode::Positional };
        compare(&p, router, head1);
    }
}

/// The property is not vacuous: over a fixed range of seeds, both answers
/// occur under the default router with either head. Keys shared by all
/// tasks leave the words to decide, which three words often cannot.
#[test]
fn random_sets_give_both_answers() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..12 {
        let params = Params {
            tasks: 3,
            templates: 3,
            min_len: 3,
            max_len: 5,
            pairs: 2,
            words: 3,
            values: 3,
            task_words: None,
            shared_keys: true,
            shared_prefixes: false,
            seed,
        };
        for head1 in [Head1Mode::Positional, Head1Mode::Content] {
            if let Some((_, decision)) = compare(&params, RouterMode::SyntacticKey, head1) {
                seen.insert((head1.to_string(), decision));
            }
        }
        if seen.len() == 4 {
            break;
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}
