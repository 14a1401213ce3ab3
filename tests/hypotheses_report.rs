//! `routecert verify` and `inspect` say which hypotheses of
//! docs/hypotheses.md hold, per prefix, on the constructions.

mod common;

use common::{construction, routecert, verify_json};
use serde_json::Value;

fn cover<'a>(v: &'a Value, prefix: &str) -> &'a Value {
    v["hypotheses"]["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["prefix"] == prefix)
        .unwrap_or_else(|| panic!("{prefix} not listed"))
}

#[test]
fn running_example_is_guaranteed_with_the_key_router() {
    let (code, v) = verify_json(&construction("running_example.toml"), &[]);
    assert_eq!(code, 0);
    let h = &v["hypotheses"];
    assert_eq!(h["document"], "docs/hypotheses.md");
    assert_eq!(h["margin"]["holds"], true);
    assert_eq!(h["margin"]["beta_sem"], "18");
    assert_eq!(h["margin"]["beta_syn"], "217");
    assert_eq!(h["routing"]["covered"], 39);
    assert_eq!(h["routing"]["vocabulary"], 39);
    assert_eq!(h["routing"]["uncovered"], 0);
    for claim in ["routing", "probability", "retrieval", "size"] {
        assert_eq!(h["guaranteed"][claim], true, "{claim}");
    }
    assert_eq!(h["listed"], 39);
    let p = cover(&v, "French is");
    assert_eq!(p["cover"], "vocabulary");
    assert_eq!(p["tasks"], serde_json::json!(["spoken_in"]));
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("located_in lacks \"French\""),
        "{p}"
    );
}

#[test]
fn syntactic_router_witnesses_say_the_prefix_is_not_covered() {
    let (code, v) = verify_json(
        &construction("running_example.toml"),
        &["--router", "syntactic"],
    );
    assert_eq!(code, 1);
    let h = &v["hypotheses"];
    // 18 prefixes have only words that both tasks use (docs/hypotheses.md).
    assert_eq!(h["routing"]["uncovered"], 18);
    assert_eq!(h["guaranteed"]["routing"], false);
    assert_eq!(h["guaranteed"]["size"], true);
    // Uncovered prefixes are listed first.
    assert_eq!(h["prefixes"][0]["cover"], "none");
    // Every failure is on an uncovered prefix and says so.
    let failures = v["failures"].as_array().unwrap();
    assert!(!failures.is_empty());
    for w in failures {
        let prefix = w["prefix"].as_str().unwrap();
        assert_eq!(cover(&v, prefix)["cover"], "none", "{prefix}");
        let reason = w["reason"].as_str().unwrap();
        assert!(reason.contains("[not covered by H-R: task "), "{reason}");
        assert!(reason.contains("cannot tell entities apart"), "{reason}");
    }
}

#[test]
fn xor_failures_are_exactly_where_the_hypotheses_give_up() {
    let (code, v) = verify_json(&construction("xor_expected_failure.toml"), &[]);
    assert_eq!(code, 1);
    let h = &v["hypotheses"];
    assert_eq!(h["routing"]["uncovered"], 4);
    assert_eq!(h["routing"]["all_tasks"], 2);
    assert_eq!(cover(&v, "red big")["cover"], "none");
    assert_eq!(cover(&v, "red")["cover"], "all-tasks");
    assert_eq!(cover(&v, "red big A1")["cover"], "vocabulary");
    let routing: Vec<&Value> = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["claim"] == "routing")
        .collect();
    assert!(!routing.is_empty());
    for w in routing {
        assert_eq!(cover(&v, w["prefix"].as_str().unwrap())["cover"], "none");
    }
}

#[test]
fn text_report_has_a_hypotheses_line_after_the_header() {
    let run = routecert(&[
        "verify",
        construction("xor_expected_failure.toml").to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[3].starts_with("hypotheses (docs/hypotheses.md): H-M margin holds"),
        "{}",
        run.stdout
    );
    assert!(
        lines[3].contains("H-R covers 34/38 prefixes (32 by vocabulary, 2 with C(w) = all tasks)"),
        "{}",
        lines[3]
    );
    assert!(
        lines[3].ends_with("guaranteed: R, P, A on the 34 covered prefixes; S"),
        "{}",
        lines[3]
    );
    assert_eq!(lines[4], "");

    let run = routecert(&[
        "verify",
        construction("shared_keys.toml").to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout
            .contains("H-R covers 41/41 prefixes (34 by vocabulary, 7 with C(w) = all tasks) | guaranteed: every claim on every prefix"),
        "{}",
        run.stdout
    );
}

#[test]
fn inspect_names_the_condition_covering_the_prefix() {
    let spec = construction("running_example.toml");
    let run = routecert(&["inspect", spec.to_str().unwrap(), "--prefix", "Paris is"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "hypothesis H-R: every task outside C(w) lacks a token of \"Paris is\": spoken_in lacks \"Paris\""
        ),
        "{}",
        run.stdout
    );
    let run = routecert(&[
        "inspect",
        spec.to_str().unwrap(),
        "--prefix",
        "Paris is",
        "--router",
        "syntactic",
    ]);
    assert!(
        run.stdout.contains("hypothesis H-R: not covered by H-R: task spoken_in is outside C(w) yet has every word of \"Paris is\""),
        "{}",
        run.stdout
    );
}
