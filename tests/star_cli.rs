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
    assert_eq!(v["mix"], "3/4");
    assert_eq!(v["rank"], 2);
}

#[test]
fn a_zero_rank_is_bad_input() {
    let (code, _) = star(&["constructions/running_example.toml", "--star-rank", "0"]);
    assert_eq!(code, Some(2));
}
