//! Expert size against task complexity, measured on constructions that were
//! built and verified: one row per task per point (a point is one spec, from
//! a file or from one value of a sweep).
//!
//! The complexity columns come from the task set (the spec); the neuron
//! columns are counted on the built model's experts, as the verifier's S
//! claim counts them. A row says whether every claim held on its point's
//! construction: a failing construction stays in the table, marked.

use crate::construct::{self, ModelKind, Options};
use crate::spec::Spec;
use crate::taskset::{Slot, Task, TaskSet, TokenId};
use crate::verify::{self, ClaimResult, ExpertSize, Verdict};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::Instant;

/// One task at one point.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// What the sweep varies ("tasks", "pairs", …), or "spec" for a table
    /// over spec files.
    pub sweep: String,
    /// The point: the swept parameter's value, or the spec file.
    pub value: String,
    pub task: String,
    /// |T(k)|.
    pub templates: usize,
    /// Σ_{τ ∈ T(k)} |τ|.
    pub template_length_sum: usize,
    /// |Δk|.
    pub pairs: usize,
    /// c(k) = Σ|τ| + |Δk|.
    pub complexity: usize,
    /// L·|T(k)| + |Δk|, with L the point's longest template.
    pub bound: usize,
    /// n, the distinct syntactic prefix patterns of T(k), from the spec: the
    /// construction's syntactic neurons should number n − 1.
    pub patterns: usize,
    /// Neurons of expert k in the MoE model (None: the model has no expert
    /// for this task).
    pub moe_neurons: Option<usize>,
    pub moe_syntactic: Option<usize>,
    pub moe_semantic: Option<usize>,
    /// Neurons of circuit C(k) in the dense model; None until the dense
    /// construction exists (see [`measure`]).
    pub dense_neurons: Option<usize>,
    pub dense_syntactic: Option<usize>,
    pub dense_semantic: Option<usize>,
    /// Every claim held on every prefix of this point's construction.
    pub verified: bool,
    /// The claims that failed there, e.g. "routing (3 of 564 prefixes)".
    pub failed: String,
    /// Time to build the point's model, and to verify it (seconds).
    pub build_seconds: f64,
    pub verify_seconds: f64,
}

/// What one point (one construction) looked like as a whole.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    pub sweep: String,
    pub value: String,
    pub tasks: usize,
    pub prefixes: usize,
    pub queries: usize,
    pub ambiguous: usize,
    /// |V|: template words, entities and `<eos>`.
    pub vocabulary: usize,
    /// L.
    pub max_len: usize,
    pub verified: bool,
    pub failed: String,
    pub build_seconds: f64,
    pub verify_seconds: f64,
}

/// A whole table: the points in order and their rows.
/// The paper's prediction along a sweep, checked on the measured rows (by
/// `sweep::check_prediction`; the table only carries it).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Prediction {
    /// What the paper predicts, in words.
    pub predicted: String,
    /// It held on every row, and every construction verified.
    pub holds: bool,
    /// What was compared, or the first row that disagrees.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct Table {
    /// What varies between points ("spec" for a table over files).
    pub sweep: String,
    /// For a sweep: the paper's prediction, checked on the rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Prediction>,
    pub points: Vec<Point>,
    pub rows: Vec<Row>,
}

/// n: the distinct prefixes of T(k)'s templates with both wildcards read
/// as one symbol "entity". This is what head 1 and the position can tell
/// apart within a task, so it is the number of points the construction's
/// syntactic neurons interpolate. Computed here from the task set alone, as
/// an independent check on the construction's count.
pub fn patterns(task: &Task) -> usize {
    let mut seen: BTreeSet<Vec<Option<TokenId>>> = BTreeSet::new();
    for t in &task.templates {
        let symbols: Vec<Option<TokenId>> = t
            .slots
            .iter()
            .map(|s| match s {
                Slot::Word(w) => Some(*w),
                Slot::Key | Slot::Value => None,
            })
            .collect();
        for len in 1..=symbols.len() {
            seen.insert(symbols[..len].to_vec());
        }
    }
    seen.len()
}

/// Seconds, to the millisecond (timings are for people, not decisions).
fn seconds(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// "routing (3 of 564 prefixes), size (1 of 6 experts)", or "".
fn failed_claims(v: &Verdict) -> String {
    let c = &v.claims;
    let mut list: Vec<(&str, &ClaimResult, &str)> = vec![
        ("routing", &c.routing, "prefixes"),
        ("probability", &c.probability, "prefixes"),
        ("retrieval", &c.retrieval, "prefixes"),
        ("size", &c.size, "experts"),
    ];
    if let Some(isolation) = &c.isolation {
        list.push(("isolation", isolation, "checks"));
    }
    list.iter()
        .filter(|(_, r, _)| !r.holds)
        .map(|(name, r, unit)| format!("{name} ({} of {} {unit})", r.failures, r.checked))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Build and verify both constructions for one spec (the MoE model of
/// Theorem 4.2 and the dense model of Theorem 4.1) and return its point and
/// one row per task. A point is verified only if every claim of both holds.
pub fn measure(sweep: &str, value: &str, spec: &Spec, options: &Options) -> (Point, Vec<Row>) {
    let ts = TaskSet::from_spec(spec);
    let start = Instant::now();
    let model = construct::build(&ts, options, ModelKind::Moe);
    let dense_model = construct::build(&ts, options, ModelKind::Dense);
    let build_seconds = seconds(start);
    let start = Instant::now();
    let config = verify::Config::new(&options.epsilon).router(options.router);
    let verdict = verify::verify(&ts, &model, &config);
    let dense = verify::verify(&ts, &dense_model, &config);
    let verify_seconds = seconds(start);
    let failed = [
        ("moe", failed_claims(&verdict)),
        ("dense", failed_claims(&dense)),
    ]
    .into_iter()
    .filter(|(_, f)| !f.is_empty())
    .map(|(m, f)| format!("{m}: {f}"))
    .collect::<Vec<_>>()
    .join("; ");
    let point = Point {
        sweep: sweep.into(),
        value: value.into(),
        tasks: ts.tasks.len(),
        prefixes: verdict.prefixes,
        queries: verdict.queries,
        ambiguous: verdict.ambiguous,
        vocabulary: verdict.vocabulary,
        max_len: verdict.max_len,
        verified: verdict.all_hold() && dense.all_hold(),
        failed,
        build_seconds,
        verify_seconds,
    };
    let rows = rows(&point, &ts, &verdict.experts, Some(&dense.experts));
    (point, rows)
}

/// One row per task of `ts`: complexity from the task set, sizes from the
/// verdicts' expert (and, when given, dense circuit) sizes, matched by task
/// name.
pub fn rows(
    point: &Point,
    ts: &TaskSet,
    moe: &[ExpertSize],
    dense: Option<&[ExpertSize]>,
) -> Vec<Row> {
    let find = |sizes: Option<&[ExpertSize]>, task: &str| {
        sizes
            .and_then(|s| s.iter().find(|e| e.task == task))
            .cloned()
    };
    ts.tasks
        .iter()
        .map(|task| {
            let m = find(Some(moe), &task.name);
            let d = find(dense, &task.name);
            Row {
                sweep: point.sweep.clone(),
                value: point.value.clone(),
                task: task.name.clone(),
                templates: task.templates.len(),
                template_length_sum: task.template_length_sum(),
                pairs: task.pairs.len(),
                complexity: task.complexity(),
                bound: task.bound(ts.max_len),
                patterns: patterns(task),
                moe_neurons: m.as_ref().map(|e| e.neurons),
                moe_syntactic: m.as_ref().map(|e| e.syntactic),
                moe_semantic: m.as_ref().map(|e| e.semantic),
                dense_neurons: d.as_ref().map(|e| e.neurons),
                dense_syntactic: d.as_ref().map(|e| e.syntactic),
                dense_semantic: d.as_ref().map(|e| e.semantic),
                verified: point.verified,
                failed: point.failed.clone(),
                build_seconds: point.build_seconds,
                verify_seconds: point.verify_seconds,
            }
        })
        .collect()
}

impl Table {
    pub fn new(sweep: &str) -> Table {
        Table {
            sweep: sweep.into(),
            ..Table::default()
        }
    }

    pub fn push(&mut self, point: Point, rows: Vec<Row>) {
        self.points.push(point);
        self.rows.extend(rows);
    }

    /// Every point's construction verified.
    pub fn all_verified(&self) -> bool {
        self.points.iter().all(|p| p.verified)
    }

    /// CSV with a header, one line per row (for pandas: empty cells are
    /// missing values).
    pub fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in &self.rows {
            // Serialising plain fields into memory cannot fail.
            let _ = w.serialize(r);
        }
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// `{ "sweep", "points": [...], "rows": [...] }`.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
            + "\n"
    }

    /// Two Markdown tables: one row per task per point, then one per point
    /// with its size and timings.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let verified = self.points.iter().filter(|p| p.verified).count();
        let _ = writeln!(
            s,
            "**Expert size against complexity, sweep `{}`: {} of {} constructions verified (every claim on every prefix)**\n",
            self.sweep,
            verified,
            self.points.len()
        );
        if let Some(p) = &self.prediction {
            let _ = writeln!(
                s,
                "The paper predicts: {}. Checked on these numbers: **{}** ({}).\n",
                p.predicted,
                if p.holds { "holds" } else { "does not hold" },
                p.detail
            );
        }
        let show = |n: Option<usize>, syn: Option<usize>, sem: Option<usize>| match (n, syn, sem) {
            (Some(n), Some(a), Some(b)) => format!("{n} ({a} + {b})"),
            _ => "–".into(),
        };
        let status = |verified: bool, failed: &str| {
            if verified {
                "yes".to_string()
            } else {
                format!("**no**: {failed}")
            }
        };
        let _ = writeln!(
            s,
            "| {} | task | \\|T(k)\\| | Σ\\|τ\\| | \\|Δk\\| | c(k) | L·\\|T(k)\\|+\\|Δk\\| | patterns | MoE neurons (syn + sem) | dense neurons (syn + sem) | verified |",
            self.sweep
        );
        let _ = writeln!(s, "|{}", "---|".repeat(11));
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&r.value),
                cell(&r.task),
                r.templates,
                r.template_length_sum,
                r.pairs,
                r.complexity,
                r.bound,
                r.patterns,
                show(r.moe_neurons, r.moe_syntactic, r.moe_semantic),
                show(r.dense_neurons, r.dense_syntactic, r.dense_semantic),
                status(r.verified, &r.failed)
            );
        }
        let _ = writeln!(
            s,
            "\n| {} | tasks \\|K\\| | prefixes | queries | ambiguous | \\|V\\| | L | verified | build (s) | verify (s) |",
            self.sweep
        );
        let _ = writeln!(s, "|{}", "---|".repeat(10));
        for p in &self.points {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} |",
                cell(&p.value),
                p.tasks,
                p.prefixes,
                p.queries,
                p.ambiguous,
                p.vocabulary,
                p.max_len,
                status(p.verified, &p.failed),
                p.build_seconds,
                p.verify_seconds
            );
        }
        s
    }
}

/// A Markdown cell: the one escaping every Markdown report uses.
fn cell(text: &str) -> String {
    crate::report::markdown::escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn load(name: &str) -> Spec {
        spec::load(&crate::fixtures::path(name)).unwrap()
    }

    #[test]
    fn running_example_rows() {
        let (point, rows) = measure(
            "spec",
            "running",
            &load("running_example.toml"),
            &Options::default(),
        );
        assert!(point.verified && point.failed.is_empty());
        assert_eq!(
            (point.prefixes, point.vocabulary, point.max_len),
            (39, 15, 6)
        );
        // located_in: "⋆1 is in ⋆2" and "⋆1 is located in ⋆2" share "⋆1 is":
        // 4 + 5 − 2 = 7 patterns, 6 syntactic neurons; spoken_in: 6 and 5.
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.task.as_str(),
                    r.templates,
                    r.template_length_sum,
                    r.pairs,
                    r.complexity,
                    r.bound,
                    r.patterns,
                    r.moe_neurons,
                    r.moe_syntactic,
                    r.moe_semantic,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("located_in", 2, 9, 3, 12, 15, 7, Some(9), Some(6), Some(3)),
                ("spoken_in", 1, 6, 3, 9, 9, 6, Some(8), Some(5), Some(3)),
            ]
        );
        // Dense circuits: n patterns (n − 1 interpolation neurons plus the
        // ramp that replaces the expert's output bias) + |Δk|.
        let dense: Vec<_> = rows
            .iter()
            .map(|r| (r.dense_neurons, r.dense_syntactic, r.dense_semantic))
            .collect();
        assert_eq!(
            dense,
            vec![(Some(10), Some(7), Some(3)), (Some(9), Some(6), Some(3))]
        );
        assert!(rows.iter().all(|r| r.verified));
    }

    #[test]
    fn a_failing_construction_is_marked_in_every_format() {
        let (point, rows) = measure(
            "spec",
            "xor",
            &load("xor_expected_failure.toml"),
            &Options {
                circuit: crate::construct::CircuitForm::Ramp,
                ..Options::default()
            },
        );
        assert!(!point.verified);
        assert!(
            point.failed.starts_with("moe: routing ("),
            "{}",
            point.failed
        );
        assert!(point.failed.contains("dense: "), "{}", point.failed);
        assert!(rows.iter().all(|r| !r.verified && r.failed == point.failed));
        let mut table = Table::new("spec");
        table.push(point, rows);
        assert!(!table.all_verified());
        let md = table.markdown();
        assert!(md.contains("0 of 1 constructions verified"), "{md}");
        assert!(md.contains("| **no**: moe: routing ("), "{md}");
        let csv = table.csv();
        let header = csv.lines().next().unwrap();
        assert!(header.starts_with("sweep,value,task,templates,template_length_sum,pairs,complexity,bound,patterns,moe_neurons"), "{header}");
        let verified_col = header.split(',').position(|c| c == "verified").unwrap();
        for line in csv.lines().skip(1) {
            // No commas inside these cells except in `failed`, which comes later.
            assert_eq!(line.split(',').nth(verified_col), Some("false"), "{line}");
        }
        let json: serde_json::Value = serde_json::from_str(&table.json()).unwrap();
        assert_eq!(json["rows"][0]["verified"], false);
        // alpha: 12 patterns + 2 pairs.
        assert_eq!(json["rows"][0]["dense_neurons"], 14);
    }

    #[test]
    fn csv_quotes_values_and_lists_dense_cells() {
        let (point, rows) = measure(
            "spec",
            "a,b",
            &load("running_example.toml"),
            &Options::default(),
        );
        let mut table = Table::new("spec");
        table.push(point, rows);
        let csv = table.csv();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let first = lines.next().unwrap();
        // The comma in the value is quoted.
        assert!(
            first.starts_with("spec,\"a,b\",located_in,2,9,3,12,15,7,9,6,3,10,7,3,true,,"),
            "{first}"
        );
        assert_eq!(
            header[12..15],
            ["dense_neurons", "dense_syntactic", "dense_semantic"]
        );
    }
}
