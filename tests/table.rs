//! `routecert generate` and `routecert table` end to end through the binary:
//! generated specs verify, sweeps show what the paper predicts, failing
//! constructions are marked, and the SVG has the points and the bound.

mod common;

use common::{construction, routecert, verify_json};
use serde_json::Value;
use std::collections::BTreeMap;

fn temp(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// `generate ARGS` into a file; returns the file's text and path.
fn generate(args: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let (dir, path) = temp("spec.toml");
    let mut all = vec!["generate", "-o", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let run = routecert(&all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&path).unwrap();
    (dir, path, text)
}

#[test]
fn generated_specs_round_trip_through_verify() {
    for (args, tasks, pairs, ambiguous) in [
        (vec!["--seed", "3"], 6, 8, None),
        (
            vec![
                "--tasks",
                "3",
                "--pairs",
                "4",
                "--task-words",
                "5",
                "--words",
                "30",
            ],
            3,
            4,
            None,
        ),
        // Every template opens "{key} is" and the keys K0..K4 are shared,
        // so "Kj" and "Kj is" belong to all three tasks; task1 and task2 also
        // both have "{key} is was …": 15 ambiguous prefixes.
        (
            vec![
                "--tasks",
                "3",
                "--pairs",
                "5",
                "--min-len",
                "3",
                "--shared-prefixes",
                "--shared-keys",
            ],
            3,
            5,
            Some(15),
        ),
    ] {
        let (_dir, path, text) = generate(&args);
        let (code, v) = verify_json(&path, &[]);
        assert_eq!(code, 0, "{args:?}: {v:#}");
        let experts = v["experts"].as_array().unwrap();
        assert_eq!(experts.len(), tasks, "{args:?}");
        assert!(experts.iter().all(|e| e["pairs"] == pairs), "{args:?}");
        if let Some(a) = ambiguous {
            assert_eq!(v["ambiguous"], a, "{args:?}");
        }
        // The header is the command that regenerates the file.
        let header = text.lines().next().unwrap();
        let command: Vec<&str> = header
            .strip_prefix("# routecert ")
            .unwrap()
            .split(' ')
            .collect();
        let again = routecert(&command);
        assert_eq!(again.stdout, text, "{header}");
    }
}

#[test]
fn paper_scale_preset_has_the_papers_shape() {
    let (_dir, _, text) = generate(&["--paper-scale"]);
    assert!(text.starts_with(
        "# routecert generate --tasks 50 --templates 5 --min-len 4 --max-len 12 --pairs 200 --words 400 --task-words 40 --entities 2000 --seed 1\n"
    ));
    // Counted from the TOML itself (spec::load checks far more than needed
    // here and is slow on 20,000 strings in a debug build).
    let tasks = |text: &str| -> Vec<toml::Value> {
        let v: toml::Value = toml::from_str(text).unwrap();
        v["task"].as_array().unwrap().clone()
    };
    let all = tasks(&text);
    assert_eq!(all.len(), 50);
    for t in &all {
        let templates = t["templates"].as_array().unwrap();
        assert_eq!(
            (templates.len(), t["pairs"].as_array().unwrap().len()),
            (5, 200)
        );
        for x in templates {
            let len = x.as_str().unwrap().split_whitespace().count();
            assert!((4..=12).contains(&len), "{x}");
        }
    }
    // Flags still override the preset.
    let (_dir, _, text) = generate(&["--paper-scale", "--tasks", "2"]);
    assert_eq!(tasks(&text).len(), 2);
}

fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            // Sweep tables have no commas inside cells except `failed`,
            // which is empty when every claim holds.
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

fn num(row: &BTreeMap<String, String>, col: &str) -> usize {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("{col} = {:?}", row[col]))
}

#[test]
fn pairs_sweep_csv_and_plot() {
    let (_dir, svg) = temp("pairs.svg");
    let run = routecert(&[
        "table",
        "--sweep",
        "pairs",
        "--over",
        "1,2,5",
        "--tasks",
        "2",
        "--format",
        "csv",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Not a terminal: no progress bar, nothing on stderr.
    assert_eq!(run.stderr, "");
    let rows = csv_rows(&run.stdout);
    assert_eq!(rows.len(), 3 * 2);
    let mut by_task: BTreeMap<String, Vec<&BTreeMap<String, String>>> = BTreeMap::new();
    for r in &rows {
        assert_eq!(r["sweep"], "pairs");
        assert_eq!(r["verified"], "true");
        assert_eq!(num(r, "pairs"), r["value"].parse::<usize>().unwrap());
        let (n, syn, sem) = (
            num(r, "moe_neurons"),
            num(r, "moe_syntactic"),
            num(r, "moe_semantic"),
        );
        assert_eq!(
            (n, sem, syn),
            (syn + sem, num(r, "pairs"), num(r, "patterns") - 1)
        );
        assert!(n <= num(r, "complexity") && n <= num(r, "bound"));
        // The dense circuit: every pattern (n − 1 interpolation neurons and
        // the ramp for the output bias) + one neuron per pair.
        let (dn, dsyn, dsem) = (
            num(r, "dense_neurons"),
            num(r, "dense_syntactic"),
            num(r, "dense_semantic"),
        );
        assert_eq!(
            (dn, dsem, dsyn),
            (dsyn + dsem, num(r, "pairs"), num(r, "patterns"))
        );
        assert!(dn <= num(r, "complexity") && dn <= num(r, "bound"));
        by_task.entry(r["task"].clone()).or_default().push(r);
    }
    for rows in by_task.values() {
        // One neuron per pair: 1 → 2 → 5 pairs adds 1, then 3.
        let n: Vec<usize> = rows.iter().map(|r| num(r, "moe_neurons")).collect();
        assert_eq!((n[1] - n[0], n[2] - n[1]), (1, 3), "{n:?}");
    }
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
    // Six rings and one legend disc per sweep value; the bound line's label.
    assert_eq!(svg.matches("<circle").count(), 6 + 3);
    assert!(svg.contains("neurons = c(k)") && svg.contains("pairs = 5"));
}

#[test]
fn tasks_sweep_json_keeps_each_expert() {
    let run = routecert(&[
        "table", "--sweep", "tasks", "--over", "1,3,6", "--pairs", "3", "--format", "json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["sweep"], "tasks");
    let points = v["points"].as_array().unwrap();
    assert_eq!(
        points
            .iter()
            .map(|p| p["tasks"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 3, 6]
    );
    for p in points {
        assert_eq!(p["verified"], true);
        assert!(p["build_seconds"].as_f64().unwrap() >= 0.0);
        assert!(p["verify_seconds"].as_f64().is_some());
    }
    let mut sizes: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for r in v["rows"].as_array().unwrap() {
        sizes
            .entry(r["task"].as_str().unwrap().into())
            .or_default()
            .push((
                r["moe_neurons"].as_u64().unwrap(),
                r["complexity"].as_u64().unwrap(),
            ));
    }
    assert_eq!(sizes["task0"].len(), 3);
    assert_eq!(sizes["task5"].len(), 1);
    for (task, s) in &sizes {
        assert!(s.iter().all(|x| *x == s[0]), "{task}: {s:?}");
    }
}

#[test]
fn spec_table_marks_the_failing_construction() {
    let (_dir, svg) = temp("specs.svg");
    let run = routecert(&[
        "table",
        construction("running_example.toml").to_str().unwrap(),
        construction("xor_expected_failure.toml").to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "a construction failed: exit 1");
    let md = &run.stdout;
    assert!(md.contains("1 of 2 constructions verified"), "{md}");
    let running: Vec<&str> = md
        .lines()
        .filter(|l| l.contains("running_example.toml | "))
        .collect();
    let xor: Vec<&str> = md
        .lines()
        .filter(|l| l.contains("xor_expected_failure.toml | "))
        .collect();
    // Two task rows and one point row each.
    assert_eq!((running.len(), xor.len()), (3, 3), "{md}");
    assert!(running.iter().all(|l| l.contains("| yes |")), "{md}");
    assert!(
        xor.iter().all(|l| l.contains("**no**: moe: routing (")),
        "{md}"
    );
    assert!(
        md.contains("| located_in | 2 | 9 | 3 | 12 | 15 | 7 | 9 (6 + 3) | 10 (7 + 3) | yes |"),
        "{md}"
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("construction failed a claim"));
}

#[test]
fn table_rejects_bad_requests_with_exit_2() {
    let spec = construction("running_example.toml");
    let spec = spec.to_str().unwrap();
    for (args, message) in [
        (vec!["table"], "give spec files or --sweep"),
        (
            vec!["table", "--sweep", "size"],
            "invalid value 'size' for '--sweep <SWEEP>'",
        ),
        (vec!["table", spec, "--sweep", "tasks"], "not both"),
        (
            vec!["table", spec, "--pairs", "3"],
            "apply only with --sweep",
        ),
        (
            vec!["table", "--sweep", "length", "--over", "4,1"],
            "sweep length at 1: --min-len 1 is too short",
        ),
        (vec!["table", "--sweep", "pairs", "--over", "a"], "--over a"),
        (vec!["table", "missing.toml"], "missing.toml"),
        (
            vec!["generate", "--task-words", "20"],
            "--task-words 20 must be between 1 and --words 12",
        ),
    ] {
        let run = routecert(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        // One line from routecert; clap adds a usage hint after its own.
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(first.contains(message), "{args:?}: {}", run.stderr);
        assert!(
            first.starts_with("error: invalid value") || run.stderr.lines().count() == 1,
            "{}",
            run.stderr
        );
    }
}
