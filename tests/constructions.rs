//! Every file in constructions/ verified end to end through the binary, with
//! the numbers and verdicts the issues ask for.

mod common;

use common::{construction, experts, routecert, verify_json};
use serde_json::Value;
use std::collections::BTreeSet;

fn claim(v: &Value, name: &str) -> (bool, u64) {
    let c = &v["claims"][name];
    (
        c["holds"].as_bool().unwrap(),
        c["failures"].as_u64().unwrap(),
    )
}

fn all_hold(v: &Value) {
    for name in ["routing", "probability", "retrieval", "size"] {
        assert_eq!(claim(v, name), (true, 0), "claim {name}: {v:#}");
    }
    assert_eq!(v["failures"].as_array().unwrap().len(), 0);
}

fn witness_prefixes(v: &Value, claim: &str) -> BTreeSet<String> {
    v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["claim"] == claim)
        .map(|w| w["prefix"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn running_example_verifies_with_the_default_router() {
    let (code, v) = verify_json(&construction("running_example.toml"), &[]);
    assert_eq!(code, 0);
    assert_eq!(v["prefixes"], 39);
    assert_eq!(v["queries"], 9);
    assert_eq!(v["ambiguous"], 0);
    assert_eq!(v["arith"], "exact");
    all_hold(&v);
    // located_in: 7 patterns → 6 interpolation neurons, + 3 pairs;
    // c(k) = 4 + 5 + 3, bound = 6·2 + 3. spoken_in: 6 patterns, 3 pairs.
    assert_eq!(
        experts(&v),
        vec![
            ("located_in".into(), 9, 6, 3, 12, 15),
            ("spoken_in".into(), 8, 5, 3, 9, 9)
        ]
    );
}

#[test]
fn syntactic_router_cannot_route_the_running_example() {
    let (code, v) = verify_json(
        &construction("running_example.toml"),
        &["--router", "syntactic"],
    );
    assert_eq!(code, 1);
    // "Paris"/"French" and "Paris is"/"French is" have identical syntactic
    // content: a router reading only h1 must send the three keys of one task
    // to the other task's expert, at both lengths.
    assert_eq!(claim(&v, "routing"), (false, 6));
    let misrouted = witness_prefixes(&v, "routing");
    assert_eq!(misrouted.len(), 6);
    let located: BTreeSet<String> = ["Paris", "Tokyo", "Lima", "Paris is", "Tokyo is", "Lima is"]
        .map(String::from)
        .into();
    let spoken: BTreeSet<String> = [
        "French",
        "Japanese",
        "Quechua",
        "French is",
        "Japanese is",
        "Quechua is",
    ]
    .map(String::from)
    .into();
    assert!(misrouted == located || misrouted == spoken, "{misrouted:?}");
    for w in v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["claim"] == "routing")
    {
        let reason = w["reason"].as_str().unwrap();
        assert!(reason.contains("identical router input"), "{reason}");
        assert!(reason.contains("syntactic block"), "{reason}");
    }
    // Size does not depend on the router.
    assert_eq!(claim(&v, "size"), (true, 0));
}

#[test]
fn xor_like_set_fails_routing_with_an_actionable_reason() {
    let (code, v) = verify_json(&construction("xor_expected_failure.toml"), &[]);
    assert_eq!(code, 1);
    let (holds, failures) = claim(&v, "routing");
    assert!(!holds && failures >= 1);
    // The conflict is among the four two-word openings; once the key (which
    // is exclusive to its task) is read, every prefix routes.
    let xor: BTreeSet<String> = ["red big", "blue small", "red small", "blue big"]
        .map(String::from)
        .into();
    let misrouted = witness_prefixes(&v, "routing");
    assert!(
        !misrouted.is_empty() && misrouted.is_subset(&xor),
        "{misrouted:?}"
    );
    let w = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["claim"] == "routing")
        .unwrap();
    assert!(w["reason"].as_str().unwrap().contains("XOR-like"));
    assert!(w["expert"].is_string() && !w["top_logits"].as_array().unwrap().is_empty());
}

#[test]
fn shared_keys_report_ambiguous_prefixes_and_hold() {
    let (code, v) = verify_json(&construction("shared_keys.toml"), &[]);
    assert_eq!(code, 0);
    // Ambiguous: "the", and "K", "K has" for the three shared countries.
    assert_eq!(v["ambiguous"], 7);
    assert_eq!(v["prefixes"], 41);
    assert_eq!(v["queries"], 12);
    all_hold(&v);
}

#[test]
fn random_sets_verify() {
    for (file, prefixes, queries, ambiguous) in [
        ("random_seed1.toml", 502, 128, 4),
        ("random_seed2.toml", 484, 120, 2),
    ] {
        let (code, v) = verify_json(&construction(file), &[]);
        assert_eq!(code, 0, "{file}");
        assert_eq!(
            (
                v["prefixes"].as_u64(),
                v["queries"].as_u64(),
                v["ambiguous"].as_u64()
            ),
            (Some(prefixes), Some(queries), Some(ambiguous)),
            "{file}"
        );
        all_hold(&v);
        for (task, neurons, syn, sem, complexity, bound) in experts(&v) {
            assert_eq!(neurons, syn + sem, "{file} {task}");
            assert_eq!(sem, 8, "{file} {task}: one semantic neuron per pair");
            assert!(neurons <= complexity && neurons <= bound, "{file} {task}");
        }
    }
}

#[test]
fn generate_reproduces_the_committed_random_sets() {
    for seed in ["1", "2"] {
        let run = routecert(&["generate", "--seed", seed]);
        assert_eq!(run.code, 0);
        let file =
            std::fs::read_to_string(construction(&format!("random_seed{seed}.toml"))).unwrap();
        assert_eq!(run.stdout, file);
    }
}

#[test]
fn text_report_starts_with_the_headline() {
    let run = routecert(&[
        "verify",
        construction("running_example.toml").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0);
    let first = run.stdout.lines().next().unwrap();
    assert_eq!(
        first,
        "39 prefixes, 9 queries, 0 ambiguous | R routing holds (39/39 prefixes) | P probability holds (39/39 prefixes) | A retrieval holds (39/39 prefixes) | S size holds (2/2 experts)"
    );
    assert!(
        run.stdout
            .contains("located_in  2          9     3     12    15             9 (6 + 3)"),
        "{}",
        run.stdout
    );

    let run = routecert(&[
        "verify",
        construction("running_example.toml").to_str().unwrap(),
        "--router",
        "syntactic",
        "--format",
        "markdown",
    ]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("| task | templates |"));
    assert!(run.stdout.contains("### Failures"));
    assert!(run.stdout.contains("R routing FAILS (6 of 39 prefixes)"));
}

#[test]
fn inspect_traces_a_prefix_by_name() {
    let run = routecert(&[
        "inspect",
        construction("running_example.toml").to_str().unwrap(),
        "--prefix",
        "Paris is",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = &run.stdout;
    // Head 1: position 1 (Paris → {entity}) weight 2/6, position 2 ("is") 4/6.
    assert!(
        out.contains("head1 (syntactic): {entity}=1/3, is=2/3"),
        "{out}"
    );
    // Head 2: uniform over 2 positions, only Paris is an entity.
    assert!(out.contains("head2 (key): Paris=1/2"), "{out}");
    assert!(out.contains("routed to expert: located_in"), "{out}");
    assert!(out.contains("valid next V(w) = {in, located}"), "{out}");
    // β_syn = 2·6·18 + 1 = 217 on both continuations; the semantic neuron
    // of Paris → France adds (6/2)·18 = 54 on France.
    assert!(
        out.contains("top logits: in=217, located=217, France=54"),
        "{out}"
    );
    assert!(out.contains("located_in/sem: Paris → France = 3"), "{out}");

    let run = routecert(&[
        "inspect",
        construction("running_example.toml").to_str().unwrap(),
        "--prefix",
        "Paris is Mars",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("\"Mars\" is not in the vocabulary"),
        "{}",
        run.stderr
    );
}

#[test]
fn epsilon_changes_the_margins_and_is_exact() {
    // ε = 1/10: |V|/ε = 150, e^5 ≈ 148.4 < 150 ≤ e^6 → β_sem = 7.
    let run = routecert(&[
        "inspect",
        construction("running_example.toml").to_str().unwrap(),
        "--prefix",
        "Paris is",
        "--epsilon",
        "0.1",
    ]);
    assert_eq!(run.code, 0);
    // β_syn = 2·6·7 + 1 = 85; France gets (6/2)·7 = 21.
    assert!(
        run.stdout
            .contains("top logits: in=85, located=85, France=21"),
        "{}",
        run.stdout
    );
    let (code, v) = verify_json(
        &construction("running_example.toml"),
        &["--epsilon", "1/10"],
    );
    assert_eq!(code, 0);
    assert_eq!(v["epsilon"], "1/10");
}
