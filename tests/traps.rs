//! Traps of issue 15 found still open by the audit (docs/traps.md): each
//! test fails on the code before its fix. Every test runs in well under a
//! second.

mod common;

use common::{routecert, verify_json};
use std::path::PathBuf;

fn trap(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/traps")
        .join(name)
}

/// Three tasks of 20–24 positions (generated: its first line): f64 rounds
/// the router's scores (weights of 10^12 and more against head 1's
/// 2^j/Σ2^l) so that three prefixes of task2 go to task0, while exact
/// arithmetic routes all 239. `--arith f64` used to exit 1 reporting
/// routing, P and A failures; it now re-decides the failing run exactly
/// and exits 0, listing f64's 9 disagreements.
#[test]
fn f64_failures_are_re_decided_exactly() {
    let path = trap("f64_moe_rounding_misroutes.toml");
    let (code, v) = verify_json(&path, &["--arith", "f64"]);
    assert_eq!(code, 0, "{}", v["failures"]);
    assert_eq!(v["arith"], "both");
    assert_eq!(v["prefixes"], 239);
    assert_eq!(v["claims"]["routing"]["failures"], 0);
    let d = v["cross_check"]["disagreements"].as_array().unwrap();
    assert_eq!(d.len(), 9, "{d:?}");
    let run = routecert(&["verify", path.to_str().unwrap(), "--arith", "f64"]);
    assert_eq!(run.code, 0);
    assert!(
        run.stderr.contains("re-decided in exact arithmetic"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("R routing holds (239/239 prefixes)"),
        "{}",
        run.stdout
    );
    // Where f64 holds, the report stays f64's.
    let (code, v) = verify_json(
        &common::construction("running_example.toml"),
        &["--arith", "f64"],
    );
    assert_eq!((code, v["arith"].as_str()), (0, Some("f64")));
}

/// `margins --plot x.png` used to write SVG into x.png (exit 0); every plot
/// flag now refuses a name that is not .svg before any work, as `table`'s.
#[test]
fn margins_plots_refuse_names_that_are_not_svg() {
    let spec = common::construction("running_example.toml");
    let dir = std::env::temp_dir().join(format!("routecert-traps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for flag in ["--plot", "--deviation-plot"] {
        let png = dir.join("x.png");
        let run = routecert(&[
            "margins",
            spec.to_str().unwrap(),
            "--temperatures",
            "1/10",
            flag,
            png.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 2, "{flag}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "{flag} {}: the plot is written as SVG",
                png.display()
            )),
            "{}",
            run.stderr
        );
        assert!(!png.exists(), "{flag}: nothing written");
    }
    let svg = dir.join("x.svg");
    let run = routecert(&[
        "margins",
        spec.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    std::fs::remove_dir_all(&dir).ok();
}
