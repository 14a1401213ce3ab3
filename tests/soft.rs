//! Soft-to-hard routing on the command line (issue 16): `margins` and
//! `verify --gate softmax` on specs and on model files (`--weights`), exact
//! and by intervals. Every case runs on the running example or the
//! shared-key set (39 and 37 prefixes): about a second in all.

mod common;

use common::{construction, routecert};
use serde_json::Value;
use std::path::Path;

fn spec(name: &str) -> String {
    construction(name).to_str().unwrap().to_string()
}

/// Export a construction's MoE model to `dir`.
fn export(name: &str, dir: &Path, extra: &[&str]) {
    let s = spec(name);
    let mut args = vec!["export", s.as_str(), "-o", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let run = routecert(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// The same export without exact.json: its floats are read in natural
/// units and decided by intervals.
fn float_export(name: &str, dir: &Path) {
    export(name, dir, &[]);
    std::fs::remove_file(dir.join("exact.json")).unwrap();
}

fn json(args: &[&str]) -> (i32, Value) {
    let run = routecert(args);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    (run.code, serde_json::from_str(&run.stdout).expect("JSON"))
}

fn parse(text: &str) -> routecert::scalar::Rat {
    routecert::scalar::parse_rational(text).unwrap()
}

#[test]
fn exact_weights_give_the_constructions_margins_and_t_star() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("m");
    export("running_example.toml", &d, &[]);
    let s = spec("running_example.toml");
    let w = d.to_str().unwrap();
    let (_, built) = json(&["margins", &s, "--format", "json"]);
    let (_, read) = json(&["margins", &s, "--weights", w, "--format", "json"]);
    let (b, r) = (&built["margins"][0], &read["margins"][0]);
    assert_eq!(r["model"], w);
    assert_eq!(r["arith"], "exact");
    assert_eq!(b["curve"], r["curve"]);
    // The running example's smallest margin is 1/6, on 3 prefixes.
    assert_eq!(r["curve"][0]["delta"], "1/6");
    assert_eq!(r["curve"][0]["all_le"], 3);
    let (code, from_spec) = json(&["verify", &s, "--gate", "softmax", "--format", "json"]);
    assert_eq!(code, 0);
    let (code, from_file) = json(&[
        "verify",
        &s,
        "--gate",
        "softmax",
        "--weights",
        w,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(from_spec["temperature"], from_file["temperature"]);
    assert_eq!(from_file["binding"]["margin"], "1/6");
    assert!(parse(from_file["temperature"].as_str().unwrap()) > parse("1/30"));
}

#[test]
fn float_weights_give_interval_margins_around_the_exact_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("f");
    float_export("running_example.toml", &d);
    let s = spec("running_example.toml");
    let w = d.to_str().unwrap();
    let (_, v) = json(&[
        "margins",
        &s,
        "--weights",
        w,
        "--format",
        "json",
        "--temperatures",
        "1/100,1/10,1",
    ]);
    let c = &v["margins"][0];
    assert_eq!(c["arith"], "interval");
    assert_eq!(c["prefixes"], 39);
    assert_eq!(c["without_margin"], 0);
    // Natural-exp attention makes the router scores intervals; the
    // smallest margin is an interval around 1/6 (ln 2 rounded in W_Q moves
    // it by ~1e-16), narrower than 1e-9.
    let smallest = c["smallest"][0]["delta"].as_str().unwrap();
    let inner = smallest.trim_start_matches('[').trim_end_matches(']');
    let (lo, hi) = inner.split_once(", ").expect("an interval");
    let (lo, hi) = (parse(lo), parse(hi));
    let tol = parse("1/1000000000");
    assert!(lo < hi && hi.clone() - lo.clone() < tol);
    assert!(lo < parse("1/6") + tol.clone() && parse("1/6") < hi + tol);
    let last = c["curve"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["all_le"], 39);
    assert_eq!(last["undecided_le"], 0);
    // The straying table matches the exact model's, every prefix decided:
    // none at T = 1/100 (Δ ≥ 1/6 > T·ln 99), 27 at 1/10, all 39 at 1.
    let (_, exact) = json(&[
        "margins",
        &s,
        "--format",
        "json",
        "--temperatures",
        "1/100,1/10,1",
    ]);
    for (r, e) in v["straying"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(exact["straying"][0]["rows"].as_array().unwrap())
    {
        assert_eq!(r["deviating"], e["deviating"], "{r}");
        assert_eq!(r["boundary"], e["boundary"], "{r}");
        assert_eq!(r["undecided"], 0);
    }
    assert_eq!(v["straying"][0]["rows"][0]["deviating"], 0);
    assert_eq!(v["straying"][0]["rows"][1]["deviating"], 27);
    assert_eq!(v["straying"][0]["rows"][2]["deviating"], 39);
}

#[test]
fn one_line_per_model_in_the_plot() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    export("running_example.toml", &a, &[]);
    float_export("running_example.toml", &b);
    let svg = dir.path().join("m.svg");
    let s = spec("running_example.toml");
    let run = routecert(&[
        "margins",
        &s,
        "--weights",
        a.to_str().unwrap(),
        "--weights",
        b.to_str().unwrap(),
        "--construction",
        "--plot",
        svg.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in [
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "router syntactic+key",
    ] {
        assert!(text.contains(label), "{label} not in the plot");
    }
    // Three models, one CSV block each, with their arithmetic.
    let arith: std::collections::BTreeSet<&str> = run
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.rsplit_once("\",")
                .map(|(_, rest)| rest.split(',').next().unwrap())
        })
        .collect();
    assert_eq!(
        arith,
        ["exact", "interval"].into_iter().collect(),
        "{}",
        run.stdout
    );
}

#[test]
fn soft_verify_of_float_weights_is_refused_in_exact_and_not_certified_in_f64() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("f");
    float_export("running_example.toml", &d);
    let s = spec("running_example.toml");
    let w = d.to_str().unwrap();
    let run = routecert(&["verify", &s, "--gate", "softmax", "--weights", w]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains(w) && run.stderr.contains("natural units"));
    let run = routecert(&[
        "verify",
        &s,
        "--gate",
        "softmax",
        "--weights",
        w,
        "--arith",
        "f64",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("not certified"), "{}", run.stdout);
}

#[test]
fn a_router_tie_gives_t_star_zero_naming_the_prefix() {
    let s = spec("shared_keys.toml");
    let (code, v) = json(&["verify", &s, "--gate", "softmax", "--format", "json"]);
    assert_eq!(code, 1);
    assert_eq!(v["temperature"], "0");
    assert_eq!(v["binding"]["margin"], "0");
    assert_eq!(v["binding"]["prefix"], "France");
    assert_eq!(v["verdict"]["certified"], true);
}

#[test]
fn margins_refuse_a_dense_model_file_and_two_specs_with_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("dense");
    export("running_example.toml", &d, &["--model", "dense"]);
    let s = spec("running_example.toml");
    let run = routecert(&["margins", &s, "--weights", d.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no router"), "{}", run.stderr);
    let run = routecert(&["margins", &s, &s, "--weights", d.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("one SPEC"), "{}", run.stderr);
}

#[test]
fn verify_json_carries_every_prefix_margin_as_margins_counts_them() {
    let s = spec("running_example.toml");
    let (code, v) = json(&["verify", &s, "--format", "json"]);
    assert_eq!(code, 0);
    let deltas: Vec<_> = v["router_margins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| parse(d.as_str().unwrap()))
        .collect();
    assert_eq!(deltas.len(), 39);
    // m(w) of `margins` at every distinct Δ counts the same prefixes.
    let (_, m) = json(&["margins", &s, "--format", "json"]);
    let curve = m["margins"][0]["curve"].as_array().unwrap();
    assert!(curve.len() > 1);
    for point in curve {
        let w = parse(point["delta"].as_str().unwrap());
        let le = deltas.iter().filter(|d| **d <= w).count();
        assert_eq!(Some(le as u64), point["all_le"].as_u64(), "{point}");
    }
}
