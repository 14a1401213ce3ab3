//! Sweeps: vary one generator parameter over a list, keep the others fixed,
//! and measure every point (see [`crate::table`]).
//!
//! The built-in sweeps carry the paper's claim that an expert's size depends
//! only on its own task, c(k) = Σ|τ| + |Δk|:
//! - `tasks` (1…64, each task fixed): every expert keeps its size;
//! - `pairs`: the expert grows by exactly one neuron per pair;
//! - `templates`, `length`: syntactic neurons track the distinct prefix
//!   patterns (n − 1 of them);
//! - `words`, `entities` (the vocabulary and the entity pool, tasks fixed up
//!   to renaming): every expert keeps its size.
//!
//! The generator draws each task from its own random streams (see
//! [`crate::generate`]), so "the others fixed" holds task by task, not only
//! in distribution.

use crate::construct::Options;
use crate::generate::{self, GenerateError, Params};
use crate::table::{self, Prediction, Row, Table};
use std::collections::BTreeMap;
use std::fmt;

/// The generator parameter a sweep varies (its `--sweep` name is its
/// [`Param::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Param {
    /// Number of tasks.
    Tasks,
    /// Pairs per task, |Δk|.
    Pairs,
    /// Templates per task, |T(k)|.
    Templates,
    /// Template length: every template has exactly this many positions.
    Length,
    /// Size of the word pool (each task keeps its own `task_words` words).
    Words,
    /// Size of the entity pool values are drawn from.
    Entities,
}

impl Param {
    pub const ALL: [Param; 6] = [
        Param::Tasks,
        Param::Pairs,
        Param::Templates,
        Param::Length,
        Param::Words,
        Param::Entities,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Param::Tasks => "tasks",
            Param::Pairs => "pairs",
            Param::Templates => "templates",
            Param::Length => "length",
            Param::Words => "words",
            Param::Entities => "entities",
        }
    }

    /// Set this parameter to `v`.
    pub fn apply(self, p: &mut Params, v: usize) {
        match self {
            Param::Tasks => p.tasks = v,
            Param::Pairs => p.pairs = v,
            Param::Templates => p.templates = v,
            Param::Length => {
                p.min_len = v;
                p.max_len = v;
            }
            Param::Words => p.words = v,
            Param::Entities => p.values = v,
        }
    }

    /// The values of the built-in sweep.
    pub fn builtin_values(self) -> Vec<usize> {
        match self {
            Param::Tasks | Param::Pairs => vec![1, 2, 4, 8, 16, 32, 64],
            Param::Templates => (1..=8).collect(),
            Param::Length => (3..=12).collect(),
            Param::Words => vec![8, 16, 32, 64, 128, 256],
            Param::Entities => vec![1, 2, 4, 8, 16, 32, 64, 128, 256],
        }
    }

    /// What the paper predicts along this sweep, for the reader of a table.
    pub fn prediction(self) -> &'static str {
        match self {
            Param::Tasks => "each expert's size is the same at every number of tasks",
            Param::Pairs => "an expert grows by exactly one (semantic) neuron per pair",
            Param::Templates | Param::Length => {
                "syntactic neurons = distinct prefix patterns − 1, within Σ|τ|"
            }
            Param::Words | Param::Entities => {
                "each expert's size is the same at every vocabulary size"
            }
        }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fixed parameters of the built-in sweeps: 4 tasks of 3 templates
/// (3–8 positions) over their own 8 words from a pool of 48, 8 pairs each,
/// values from 16 entities.
pub fn base() -> Params {
    Params {
        tasks: 4,
        templates: 3,
        min_len: 3,
        max_len: 8,
        pairs: 8,
        words: 48,
        task_words: Some(8),
        values: 16,
        shared_keys: false,
        shared_prefixes: false,
        seed: 1,
    }
}

/// One parameter over a list of values, the others fixed at `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub param: Param,
    pub values: Vec<usize>,
    pub base: Params,
}

impl Sweep {
    /// The built-in sweep of a parameter. The vocabulary sweeps run with 16
    /// tasks, so that the pools they grow can actually be used: 16 tasks of
    /// 8 words and 8 pairs can tell apart up to 128 words and 128 values.
    pub fn builtin(param: Param) -> Sweep {
        let mut base = base();
        if matches!(param, Param::Words | Param::Entities) {
            base.tasks = 16;
        }
        Sweep {
            param,
            values: param.builtin_values(),
            base,
        }
    }

    /// The generator parameters of every point, in order.
    pub fn points(&self) -> Vec<(usize, Params)> {
        self.values
            .iter()
            .map(|&v| {
                let mut p = self.base.clone();
                self.param.apply(&mut p, v);
                (v, p)
            })
            .collect()
    }

    /// Check every point's parameters before any work starts.
    pub fn check(&self) -> Result<(), String> {
        if self.values.is_empty() {
            return Err(format!("sweep {}: no values", self.param));
        }
        for (v, p) in self.points() {
            p.check()
                .map_err(|e| format!("sweep {} at {v}: {e}", self.param))?;
        }
        Ok(())
    }

    /// Generate, build and verify every point; `progress` is told the value
    /// about to run and then that it finished.
    pub fn run(
        &self,
        options: &Options,
        mut progress: impl FnMut(Progress),
    ) -> Result<Table, GenerateError> {
        self.check().map_err(GenerateError::Params)?;
        let mut table = Table::new(self.param.name());
        for (v, p) in self.points() {
            progress(Progress::Start(v));
            let spec = generate::generate(&p)?;
            let (point, rows) = table::measure(self.param.name(), &v.to_string(), &spec, options);
            table.push(point, rows);
            progress(Progress::Done);
        }
        table.prediction = Some(check_prediction(self.param, &table));
        Ok(table)
    }
}

/// Check the prediction of `param` on a table's numbers. On every row:
/// neurons = syntactic + semantic, syntactic = patterns − 1, semantic = |Δk|, and neurons < c(k) ≤
/// L·|T(k)| + |Δk|. Along the sweep, per task: the same expert at every point
/// (tasks, words, entities), or the same syntactic neurons and one more
/// neuron per added pair (pairs).
pub fn check_prediction(param: Param, table: &Table) -> Prediction {
    let verdict = |holds: bool, detail: String| Prediction {
        predicted: param.prediction().into(),
        holds,
        detail,
    };
    if let Some(p) = table.points.iter().find(|p| !p.verified) {
        return verdict(
            false,
            format!(
                "the construction at {param} = {} failed: {}",
                p.value, p.failed
            ),
        );
    }
    let size = |r: &Row| (r.moe_neurons, r.moe_syntactic, r.moe_semantic);
    for r in &table.rows {
        let ok = match size(r) {
            (Some(n), Some(syn), Some(sem)) => {
                syn + 1 == r.patterns
                    && sem == r.pairs
                    && n < r.complexity
                    && r.complexity <= r.bound
            }
            _ => false,
        };
        if !ok {
            let show = |v: Option<usize>| v.map_or("none".into(), |n| n.to_string());
            return verdict(
                false,
                format!(
                    "{param} = {}, {}: {} neurons ({} syntactic + {} semantic) against {} patterns, {} pairs, c(k) = {}, bound {}",
                    r.value,
                    r.task,
                    show(r.moe_neurons),
                    show(r.moe_syntactic),
                    show(r.moe_semantic),
                    r.patterns,
                    r.pairs,
                    r.complexity,
                    r.bound
                ),
            );
        }
    }
    let mut by_task: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &table.rows {
        by_task.entry(&r.task).or_default().push(r);
    }
    let rows = table.rows.len();
    let every_row = "on every row: neurons = syntactic + semantic, syntactic = patterns − 1, semantic = |Δk|, neurons < c(k) ≤ L·|T(k)| + |Δk|";
    let along = |same: &dyn Fn(&Row, &Row) -> bool, what: &str| {
        for (task, rows) in &by_task {
            if let Some(w) = rows.windows(2).find(|w| !same(w[0], w[1])) {
                return verdict(
                    false,
                    format!(
                        "{task}: {what} differs between {param} = {} and {}",
                        w[0].value, w[1].value
                    ),
                );
            }
        }
        verdict(
            true,
            format!(
                "{rows} rows: {every_row}; {what} the same along the sweep for each of {} tasks",
                by_task.len()
            ),
        )
    };
    match param {
        Param::Tasks | Param::Words | Param::Entities => {
            along(&|a, b| size(a) == size(b), "expert size (syn + sem)")
        }
        Param::Pairs => along(
            &|a, b| {
                a.moe_syntactic == b.moe_syntactic
                    && a.moe_neurons
                        .zip(b.moe_neurons)
                        .map(|(x, y)| y as i64 - x as i64)
                        == Some(b.pairs as i64 - a.pairs as i64)
            },
            "syntactic neurons, and neurons − pairs,",
        ),
        Param::Templates | Param::Length => verdict(true, format!("{rows} rows: {every_row}")),
    }
}

/// Events of a running sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Start(usize),
    Done,
}

/// Parse "1,2,4" or "1-8" or a mix ("1-4,8,16").
pub fn parse_values(text: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("--over {text}: expected numbers or ranges like 1,2,4 or 3-12");
    let mut values = Vec::new();
    for part in text.split(',').map(str::trim) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                let points = values.len() as u128 + (b - a) as u128 + 1;
                crate::generate::check_sweep_points(text, points)?;
                values.extend(a..=b);
            }
            None => values.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Row;
    use std::collections::BTreeMap;

    /// A small sweep: 2-3 tasks of 2 templates (3–5 positions), 3 pairs.
    fn small(param: Param, values: Vec<usize>) -> Table {
        let sweep = Sweep {
            param,
            values,
            base: Params {
                tasks: 3,
                templates: 2,
                min_len: 3,
                max_len: 5,
                pairs: 3,
                words: 8,
                task_words: Some(6),
                values: 4,
                ..base()
            },
        };
        sweep.run(&Options::default(), |_| {}).unwrap()
    }

    fn by_task(table: &Table) -> BTreeMap<String, Vec<&Row>> {
        let mut map: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for r in &table.rows {
            map.entry(r.task.clone()).or_default().push(r);
        }
        map
    }

    #[test]
    fn the_prediction_check_catches_a_wrong_count() {
        let mut table = small(Param::Tasks, vec![1, 2]);
        let p = table.prediction.clone().unwrap();
        assert!(p.holds, "{p:?}");
        assert!(p.detail.starts_with("3 rows: "), "{}", p.detail);
        // As if task0 had one more pattern at the second point: every row is
        // still consistent, but the expert is no longer the same.
        {
            let r = &mut table.rows[1];
            assert_eq!((r.task.as_str(), r.value.as_str()), ("task0", "2"));
            r.patterns += 1;
            r.complexity += 1;
            r.bound += 1;
            r.moe_syntactic = r.moe_syntactic.map(|n| n + 1);
            r.moe_neurons = r.moe_neurons.map(|n| n + 1);
        }
        assert!(check_prediction(Param::Length, &table).holds);
        let p = check_prediction(Param::Tasks, &table);
        assert!(!p.holds);
        assert_eq!(
            p.detail,
            "task0: expert size (syn + sem) differs between tasks = 1 and 2"
        );
        // A syntactic count that is not patterns − 1 fails every sweep.
        table.rows[2].moe_syntactic = table.rows[2].moe_syntactic.map(|n| n + 1);
        let p = check_prediction(Param::Length, &table);
        assert!(!p.holds);
        assert!(
            p.detail
                .starts_with("length = 2, task1: 10 neurons (8 syntactic + 3 semantic)"),
            "{}",
            p.detail
        );
        // An unverified point fails the check, whatever the sizes.
        table.points[0].verified = false;
        table.points[0].failed = "routing (1 of 85 prefixes)".into();
        let p = check_prediction(Param::Tasks, &table);
        assert!(!p.holds && p.detail.contains("at tasks = 1 failed: routing"));
    }

    fn sizes(r: &Row) -> (usize, usize, usize) {
        (
            r.moe_neurons.unwrap(),
            r.moe_syntactic.unwrap(),
            r.moe_semantic.unwrap(),
        )
    }

    /// What holds at every row of every sweep: verified, the syntactic
    /// neurons are the patterns less one, one semantic neuron per pair, and
    /// the size is within c(k) and the paper's bound.
    fn invariants(table: &Table) {
        assert!(table.all_verified(), "{}", table.markdown());
        let p = table.prediction.as_ref().unwrap();
        assert!(p.holds, "{p:?}");
        for r in &table.rows {
            let (n, syn, sem) = sizes(r);
            assert_eq!(n, syn + sem);
            assert_eq!(syn, r.patterns - 1, "{r:?}");
            assert_eq!(sem, r.pairs, "{r:?}");
            assert!(r.patterns <= r.template_length_sum);
            assert!(n < r.complexity && r.complexity <= r.bound, "{r:?}");
        }
    }

    #[test]
    fn tasks_sweep_keeps_every_expert_the_same() {
        let table = small(Param::Tasks, vec![1, 2, 4]);
        invariants(&table);
        assert_eq!(table.rows.len(), 1 + 2 + 4);
        let tasks = by_task(&table);
        assert_eq!(tasks["task0"].len(), 3);
        for rows in tasks.values() {
            let first = (sizes(rows[0]), rows[0].complexity);
            assert!(rows.iter().all(|r| (sizes(r), r.complexity) == first));
        }
        // The task set really grew: more prefixes and a larger vocabulary.
        let p = &table.points;
        assert!(p[0].prefixes < p[1].prefixes && p[1].prefixes < p[2].prefixes);
        assert!(p[0].vocabulary < p[2].vocabulary);
    }

    #[test]
    fn pairs_sweep_adds_one_neuron_per_pair() {
        let table = small(Param::Pairs, vec![1, 2, 3, 5, 8]);
        invariants(&table);
        for rows in by_task(&table).values() {
            for w in rows.windows(2) {
                let (a, b) = (sizes(w[0]), sizes(w[1]));
                let added = w[1].pairs - w[0].pairs;
                assert_eq!(b.0 - a.0, added);
                assert_eq!((b.1, b.2 - a.2), (a.1, added));
                assert_eq!(w[1].complexity - w[0].complexity, added);
            }
        }
    }

    #[test]
    fn template_sweeps_track_patterns() {
        let table = small(Param::Templates, vec![1, 2, 3]);
        invariants(&table);
        for rows in by_task(&table).values() {
            // Later points add templates to the same task: patterns never drop.
            assert!(rows.windows(2).all(|w| w[0].patterns <= w[1].patterns));
            assert_eq!(
                rows.iter().map(|r| r.templates).collect::<Vec<_>>(),
                [1, 2, 3]
            );
        }
        let table = small(Param::Length, vec![3, 4, 6]);
        invariants(&table);
        for r in &table.rows {
            assert_eq!(r.template_length_sum, 2 * r.value.parse::<usize>().unwrap());
        }
    }

    #[test]
    fn vocabulary_sweeps_keep_every_expert_the_same() {
        for (param, values) in [
            (Param::Words, vec![6, 12, 40]),
            (Param::Entities, vec![1, 3, 30]),
        ] {
            let table = small(param, values);
            invariants(&table);
            for rows in by_task(&table).values() {
                let first = (sizes(rows[0]), rows[0].complexity, rows[0].patterns);
                assert!(
                    rows.iter()
                        .all(|r| (sizes(r), r.complexity, r.patterns) == first)
                );
            }
            let p = &table.points;
            assert!(p[0].vocabulary < p[2].vocabulary, "{param}");
        }
    }

    #[test]
    fn a_sweep_that_fails_says_so() {
        // Shared prefixes "{key} is" and a router that reads only head 1:
        // "K0_0 is" and "K1_0 is" look the same to it, so routing fails.
        let sweep = Sweep {
            param: Param::Tasks,
            values: vec![1, 2],
            base: Params {
                pairs: 2,
                templates: 1,
                shared_prefixes: true,
                ..base()
            },
        };
        let options = Options {
            router: crate::construct::RouterMode::Syntactic,
            ..Options::default()
        };
        let table = sweep.run(&options, |_| {}).unwrap();
        assert!(table.points[0].verified, "one task routes trivially");
        assert!(!table.points[1].verified);
        assert!(table.points[1].failed.starts_with("moe: routing"));
        assert!(table.rows[1..].iter().all(|r| !r.verified));
    }

    #[test]
    fn progress_sees_every_point() {
        let mut events = Vec::new();
        let sweep = Sweep {
            param: Param::Pairs,
            values: vec![1, 2],
            base: Params { tasks: 1, ..base() },
        };
        sweep.run(&Options::default(), |e| events.push(e)).unwrap();
        assert_eq!(
            events,
            [
                Progress::Start(1),
                Progress::Done,
                Progress::Start(2),
                Progress::Done
            ]
        );
    }

    #[test]
    fn values_parse() {
        assert_eq!(parse_values("1,2,4").unwrap(), [1, 2, 4]);
        assert_eq!(parse_values("3-5, 8").unwrap(), [3, 4, 5, 8]);
        assert!(parse_values("5-3").is_err());
        assert!(parse_values("x").is_err());
        // clap's names are the ones tables and JSON print.
        for p in Param::ALL {
            assert_eq!(<Param as clap::ValueEnum>::from_str(p.name(), false), Ok(p));
        }
        assert!(<Param as clap::ValueEnum>::from_str("size", false).is_err());
        // A point that cannot be generated is rejected before any work.
        let sweep = Sweep {
            param: Param::Length,
            values: vec![3, 1],
            base: base(),
        };
        assert!(sweep.check().unwrap_err().contains("at 1: --min-len 1"));
    }
}
