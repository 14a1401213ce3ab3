//! CLI flag hygiene (issue 15): no flag is accepted and ignored, every
//! format flag is honoured, and Markdown reports stay tables whatever the
//! spec's names contain.

mod common;

use common::{construction, routecert};

/// Unescaped `|` in a Markdown table row: the cell borders.
fn borders(row: &str) -> usize {
    let b = row.as_bytes();
    (0..b.len())
        .filter(|&i| b[i] == b'|' && (i == 0 || b[i - 1] != b'\\'))
        .count()
}

#[test]
fn verify_markdown_rows_keep_their_columns_with_pipes_in_names() {
    let dir = std::env::temp_dir().join(format!("routecert-md-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("pipes.toml");
    std::fs::write(
        &spec,
        r#"[[task]]
name = "a|b"
templates = ["{key} is in {value}"]
pairs = [["Paris", "France"], ["Lima", "Peru"]]
"#,
    )
    .unwrap();
    for model in ["moe", "dense"] {
        let run = routecert(&[
            "verify",
            spec.to_str().unwrap(),
            "--model",
            model,
            "--format",
            "markdown",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let table: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with('|')).collect();
        // Header (Σ|τ|, |Δk|, L·|T(k)|+|Δk| inside), rule, one task row.
        assert_eq!(table.len(), 3, "{}", run.stdout);
        let columns = if model == "dense" { 8 } else { 7 };
        for row in &table {
            assert_eq!(borders(row), columns + 1, "{model}: {row}");
        }
        assert!(table[0].contains("Σ\\|τ\\|") && table[0].contains("\\|Δk\\|"));
        assert!(table[2].starts_with("| a\\|b |"), "{}", table[2]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn routability_refuses_flags_that_do_not_change_its_answer() {
    let spec = construction("running_example.toml");
    let spec = spec.to_str().unwrap();
    for flag in [
        ["--model", "dense"],
        ["--arith", "f64"],
        ["--epsilon", "1e-3"],
    ] {
        let run = routecert(&["routability", spec, flag[0], flag[1]]);
        assert_eq!(run.code, 2, "{flag:?}: {}", run.stdout);
        assert!(
            run.stderr
                .contains(&format!("unexpected argument '{}' found", flag[0])),
            "{flag:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
    // The flags that do apply still work, and change the answer.
    let run = routecert(&["routability", spec, "--router", "syntactic+key"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = routecert(&[
        "routability",
        spec,
        "--router",
        "syntactic",
        "--head1",
        "content",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.contains("router syntactic, head 1 content"));
}

#[test]
fn routability_check_honours_format_json() {
    let spec = construction("xor_expected_failure.toml");
    let spec = spec.to_str().unwrap();
    let report = routecert(&["routability", spec, "--format", "json"]);
    assert_eq!(report.code, 1, "not routable: {}", report.stderr);
    let dir = std::env::temp_dir().join(format!("routecert-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.json");
    std::fs::write(&cert, &report.stdout).unwrap();
    let run = routecert(&[
        "routability",
        spec,
        "--check",
        cert.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout));
    assert_eq!(v["accepted"], true);
    assert!(v["rows"].as_u64().unwrap() >= 2);
    assert!(v["prefixes"].as_u64().unwrap() >= 2);
    // Text stays the default.
    let text = routecert(&["routability", spec, "--check", cert.to_str().unwrap()]);
    assert!(
        text.stdout.contains("certificate accepted"),
        "{}",
        text.stdout
    );
    // A certificate checked against another spec is rejected, in JSON too.
    let other = construction("running_example.toml");
    let run = routecert(&[
        "routability",
        other.to_str().unwrap(),
        "--check",
        cert.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["accepted"], false);
    assert!(!v["rejection"].as_str().unwrap().is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn table_plot_refuses_a_path_that_is_not_svg_before_any_work() {
    let spec = construction("running_example.toml");
    let dir = std::env::temp_dir().join(format!("routecert-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("x.png");
    let run = routecert(&[
        "table",
        spec.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("x.png") && run.stderr.contains(".svg"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "no table before the refusal");
    assert!(!png.exists());
    // .svg (any case) is accepted and written as SVG.
    let svg = dir.join("x.SVG");
    let run = routecert(&[
        "table",
        spec.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    std::fs::remove_dir_all(&dir).ok();
}
