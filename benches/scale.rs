//! Verification at the paper's experimental scale and around it.
//!
//!     cargo bench --bench scale
//!
//! Generates the paper-scale task set (50 tasks × 5 templates of 4–12
//! positions × 200 pairs, `routecert generate --paper-scale`) at 1/8, 1/4,
//! 1/2, 1, 2 and 4 times its pairs per task, runs `routecert verify
//! --timings` on each (a fresh process per run, so the peak RSS is that
//! run's), and prints a Markdown table: set, prefixes, model, arithmetic,
//! build / verify / total seconds, prefixes verified per second, peak RSS,
//! and whether every claim held; then a least-squares fit of time against
//! prefixes. The table is also written to target/scale/results.md.
//!
//! Environment:
//! - ROUTECERT_SCALES: which multiples of 200 pairs, e.g. "1/8,1" (default
//!   "1/8,1/4,1/2,1,2,4").
//! - ROUTECERT_RUNS: which (model, arith) runs, e.g. "moe/exact,moe/f64"
//!   (default "moe/exact,moe/f64,dense/exact"). The dense model is only run
//!   up to ROUTECERT_DENSE_MAX (default 1, the paper's scale; it also runs at
//!   1/64 and 1/32); it is about ten times slower per prefix than the MoE
//!   model's (see the README's performance section).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_routecert");

/// A multiple of the paper's 200 pairs per task, as a fraction.
#[derive(Clone, Copy)]
struct Scale(u32, u32);

impl Scale {
    fn parse(text: &str) -> Scale {
        let (n, d) = text.trim().split_once('/').unwrap_or((text.trim(), "1"));
        Scale(n.parse().expect("a scale"), d.parse().expect("a scale"))
    }
    fn value(self) -> f64 {
        f64::from(self.0) / f64::from(self.1)
    }
    fn pairs(self) -> u32 {
        200 * self.0 / self.1
    }
    fn name(self) -> String {
        if self.1 == 1 {
            format!("{}×", self.0)
        } else {
            format!("{}/{}", self.0, self.1)
        }
    }
}

struct Row {
    scale: String,
    pairs: u32,
    prefixes: u64,
    model: String,
    arith: String,
    build: f64,
    verify: f64,
    total: f64,
    rss_mib: u64,
    verified: bool,
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn generate(dir: &Path, scale: Scale) -> PathBuf {
    let path = dir.join(format!("paper_pairs{}.toml", scale.pairs()));
    let status = Command::new(BIN)
        .args(["generate", "--paper-scale", "--pairs"])
        .arg(scale.pairs().to_string())
        .arg("-o")
        .arg(&path)
        .status()
        .expect("routecert generate runs");
    assert!(status.success(), "generate at {} failed", scale.name());
    path
}

/// "key value" fields of the `--timings` line.
fn field(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("{key} "))? + key.len() + 1;
    line[at..].split([' ', ',']).next()?.parse().ok()
}

fn verify(spec: &Path, model: &str, arith: &str) -> (f64, f64, f64, u64, u64, bool) {
    let clock = Instant::now();
    let out = Command::new(BIN)
        .args([
            "verify",
            "--timings",
            "--quiet",
            "--model",
            model,
            "--arith",
            arith,
        ])
        .arg(spec)
        .output()
        .expect("routecert verify runs");
    let wall = clock.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("timings:"))
        .unwrap_or_else(|| panic!("no timings from {}: {stderr}", spec.display()));
    let verified = out.status.code() == Some(0);
    (
        field(line, "build").unwrap_or(f64::NAN),
        field(line, "verify").unwrap_or(f64::NAN),
        wall,
        field(line, "prefixes").map_or(0, |p| p as u64),
        field(line, "RSS").map_or(0, |m| m as u64),
        verified,
    )
}

/// Least squares y = a + b·x, with R².
fn fit(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let ss_res: f64 = points.iter().map(|(x, y)| (y - a - b * x).powi(2)).sum();
    let ss_tot: f64 = points.iter().map(|(_, y)| (y - my).powi(2)).sum();
    (a, b, 1.0 - ss_res / ss_tot)
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not used here.
    let scales: Vec<Scale> = env_list("ROUTECERT_SCALES", "1/8,1/4,1/2,1,2,4")
        .iter()
        .map(|s| Scale::parse(s))
        .collect();
    let runs = env_list("ROUTECERT_RUNS", "moe/exact,moe/f64,dense/exact");
    let dense_max = Scale::parse(&std::env::var("ROUTECERT_DENSE_MAX").unwrap_or("1".into()));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scale");
    std::fs::create_dir_all(&dir).expect("target/scale");

    let mut all_scales = scales.clone();
    if runs.iter().any(|r| r.starts_with("dense")) {
        // The dense model's points: 1/64 and 1/32 of the pairs, up to its max.
        for s in [Scale(1, 64), Scale(1, 32)] {
            if s.value() <= dense_max.value() && !all_scales.iter().any(|x| x.value() == s.value())
            {
                all_scales.insert(0, s);
            }
        }
    }

    let mut rows: Vec<Row> = Vec::new();
    for &scale in &all_scales {
        let spec = generate(&dir, scale);
        for run in &runs {
            let (model, arith) = run.split_once('/').expect("model/arith");
            let dense = model == "dense";
            let in_range = if dense {
                scale.value() <= dense_max.value()
            } else {
                scales.iter().any(|s| s.value() == scale.value())
            };
            if !in_range {
                continue;
            }
            let (build, verify, total, prefixes, rss_mib, verified) = verify(&spec, model, arith);
            let row = Row {
                scale: scale.name(),
                pairs: scale.pairs(),
                prefixes,
                model: model.into(),
                arith: arith.into(),
                build,
                verify,
                total,
                rss_mib,
                verified,
            };
            eprintln!(
                "{} ({} pairs) {model}/{arith}: {prefixes} prefixes, build {build:.2} s, verify {verify:.2} s, total {total:.2} s, {rss_mib} MiB, {}",
                row.scale,
                row.pairs,
                if verified { "verified" } else { "NOT verified" }
            );
            rows.push(row);
        }
    }

    let mut md = String::new();
    let _ = writeln!(
        md,
        "| scale | pairs/task | prefixes | model | arith | build s | verify s | total s | prefixes/s (verify) | peak RSS MiB | all claims |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {} |",
            r.scale,
            r.pairs,
            r.prefixes,
            r.model,
            r.arith,
            r.build,
            r.verify,
            r.total,
            r.prefixes as f64 / r.verify,
            r.rss_mib,
            if r.verified { "hold" } else { "**fail**" }
        );
    }
    let _ = writeln!(md);
    for run in &runs {
        let (model, arith) = run.split_once('/').unwrap_or((run, ""));
        let of_run: Vec<&Row> = rows
            .iter()
            .filter(|r| r.model == model && r.arith == arith)
            .collect();
        if of_run.len() < 3 {
            continue;
        }
        for (what, pick) in [
            ("total", (|r: &Row| r.total) as fn(&Row) -> f64),
            ("verify", |r: &Row| r.verify),
        ] {
            let points: Vec<(f64, f64)> = of_run
                .iter()
                .map(|r| (r.prefixes as f64, pick(r)))
                .collect();
            let (a, b, r2) = fit(&points);
            let _ = writeln!(
                md,
                "- {model}/{arith}, {what} time: {a:.2} s + {:.2} µs × prefixes, R² = {r2:.4} ({} points)",
                b * 1e6,
                points.len()
            );
        }
    }
    print!("{md}");
    std::fs::write(dir.join("results.md"), &md).expect("target/scale/results.md");
}
