//! `routecert star`: exit codes and the linear-certificate note.
use std::process::Command;

fn star(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_routecert"))
        .arg("star")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
    )
}

#[test]
fn xor_is_refuted_for_every_star_gate() {
    let (code, out) = star(&["constructions/xor_expected_failure.toml", "--json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["linear"]["decision"], "refuted");
    assert_eq!(v["interpolated"]["decision"], "refuted");
    assert!(
        v["note"]
            .as_str()
            .unwrap()
            .contains("refutes every STAR gate")
    );
}

#[test]
fn running_example_routes_with_a_rational_mix() {
    let (code, out) = star(&["constructions/running_example.toml", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["interpolated"]["decision"], "routable");
    // s = 1 − 2^-j for the first j whose mix of the synthesised router and
    // the structural gate serves every input (docs/routing.md: 15/16).
    assert_eq!(v["mix"], "15/16");
    assert_eq!(v["rank"], 2);
}

#[test]
fn a_zero_rank_is_bad_input() {
    let (code, _) = star(&["constructions/running_example.toml", "--star-rank", "0"]);
    assert_eq!(code, Some(2));
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_routecert"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn verify_with_the_star_gate_holds_on_running_example() {
    let (code, out, err) = run(&[
        "verify",
        "constructions/running_example.toml",
        "--router",
        "star",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let routing = &v["claims"]["routing"];
    assert_eq!(routing["holds"], true, "{routing}");
    assert_eq!(routing["failures"], 0);
}

#[test]
fn routability_with_the_star_gate_verifies_it_and_refutes_xor() {
    let (code, out, _) = run(&[
        "routability",
        "constructions/running_example.toml",
        "--router",
        "star",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["star_routing"]["holds"], true);
    assert_eq!(v["star"]["structural"]["decision"], "refuted");
    assert_eq!(v["star_mix"], v["star"]["mix"]);
    let (code, out, _) = run(&[
        "routability",
        "constructions/xor_expected_failure.toml",
        "--router",
        "star",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["linear"]["decision"], "not_routable");
    assert_eq!(v["star_routing"]["holds"], false);
    assert!(v["star_routing"]["failures"].as_u64().unwrap() > 0);
}

#[test]
fn inspect_with_the_star_gate_names_it() {
    let (code, out, _) = run(&[
        "inspect",
        "constructions/running_example.toml",
        "--router",
        "star",
        "--prefix",
        "Paris is",
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("STAR gate: sigma(alpha) = "), "{out}");
}

#[test]
fn star_router_flags_are_refused_where_they_do_not_apply() {
    let spec = "constructions/running_example.toml";
    for args in [
        vec!["verify", spec, "--router", "star", "--model", "dense"],
        vec!["verify", spec, "--star-rank", "3"],
        vec!["verify", spec, "--router", "star", "--star-rank", "0"],
        vec!["routability", spec, "--star-rank", "2"],
        vec!["star", spec, "--gha-rate", "0"],
    ] {
        let (code, _, err) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            !err.is_empty() && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}
