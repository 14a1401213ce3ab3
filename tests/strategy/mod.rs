//! proptest strategies for random task sets.
//!
//! A generated set is a small structured value ([`GenSet`]) that maps to a
//! spec through `Spec::from_parts`, so every generated set passes the same
//! validation a file does. Its `Debug` form is the spec as TOML: when a
//! property fails, proptest shrinks the set and prints a small, readable
//! spec that can be saved under tests/regressions/ as it is.
//!
//! Words come from small pools so that templates of different tasks share
//! words and prefixes: a shared pool, and two words private to each task
//! (private words make prefixes that the hypotheses cover). Switches turn on
//! the hard cases: keys shared between tasks, a key that is a value
//! elsewhere, keys with several values, templates that begin with {key},
//! and XOR-like template pairs.

#![allow(dead_code)]

use proptest::prelude::*;
use routecert::spec::{Spec, TaskParts};
use std::fmt;

/// Template words every task may use.
pub const SHARED_WORDS: [&str; 6] = ["is", "in", "of", "the", "has", "by"];
/// Words private to one task, per task.
pub const PRIVATE_WORDS: usize = 2;
/// Values every task may use.
pub const VALUES: usize = 6;
/// The XOR-like openings: task 0 gets "red big …" and "blue small …", task 1
/// gets "red small …" and "blue big …".
pub const XOR_TEMPLATES: [[&str; 2]; 2] = [
    [
        "red big {key} maps to {value}",
        "blue small {key} maps to {value}",
    ],
    [
        "red small {key} maps to {value}",
        "blue big {key} maps to {value}",
    ],
];

/// The hard cases, each a switch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    /// Keys come from one pool shared by all tasks ("S0", "S1", …) instead
    /// of being private to their task ("K2_0").
    pub shared_keys: bool,
    /// The first pair of each task takes as its value the first key of the
    /// next task (with one task: its own key, a pair (a, a)).
    pub key_is_value: bool,
    /// Keys are drawn from at most three per task, so a key has several values.
    pub multi_value: bool,
    /// The first template of every task begins with {key}.
    pub key_first: bool,
    /// Tasks 0 and 1 open with XOR-like word pairs.
    pub xor: bool,
}

/// One template: its length (wildcards included), where the wildcards go
/// (normalised so that key < value < len), and the words of the other slots
/// as indices into the task's word pool (shared words, then private ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenTemplate {
    pub len: usize,
    pub key_at: usize,
    pub value_at: usize,
    pub words: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenTask {
    pub templates: Vec<GenTemplate>,
    /// (key index, value index) per pair.
    pub pairs: Vec<(usize, usize)>,
}

/// A random task set.
#[derive(Clone, PartialEq, Eq)]
pub struct GenSet {
    pub switches: Switches,
    pub tasks: Vec<GenTask>,
}

fn word(task: usize, index: usize) -> String {
    match SHARED_WORDS.get(index) {
        Some(w) => w.to_string(),
        None => format!(
            "t{task}{}",
            (b'a' + (index - SHARED_WORDS.len()) as u8) as char
        ),
    }
}

impl GenTemplate {
    fn text(&self, task: usize) -> String {
        let mut words = self.words.iter();
        (0..self.len)
            .map(|i| {
                if i == self.key_at {
                    "{key}".to_string()
                } else if i == self.value_at {
                    "{value}".to_string()
                } else {
                    word(task, *words.next().unwrap_or(&0))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl GenSet {
    fn key_name(&self, task: usize, index: usize) -> String {
        if self.switches.shared_keys {
            format!("S{index}")
        } else {
            format!("K{task}_{index}")
        }
    }

    /// Name, template texts and pairs of every task, deduplicated so that
    /// validation accepts them.
    pub fn parts(&self) -> Vec<TaskParts> {
        let n = self.tasks.len();
        (0..n)
            .map(|k| {
                let task = &self.tasks[k];
                let mut templates: Vec<String> = Vec::new();
                if self.switches.xor && n >= 2 && k < 2 {
                    templates.extend(XOR_TEMPLATES[k].iter().map(|t| t.to_string()));
                }
                for (i, t) in task.templates.iter().enumerate() {
                    let mut t = t.clone();
                    if self.switches.key_first && i == 0 {
                        // Move ⋆1 to the front; ⋆2 stays after it.
                        t.key_at = 0;
                        t.value_at = t.value_at.max(1);
                    }
                    templates.push(t.text(k));
                }
                let mut seen = std::collections::HashSet::new();
                templates.retain(|t| {
                    seen.insert(t.split_whitespace().map(String::from).collect::<Vec<_>>())
                });
                templates.truncate(5);

                let mut pairs: Vec<(String, String)> = Vec::new();
                for (j, &(key, value)) in task.pairs.iter().enumerate() {
                    let key = self.key_name(k, key);
                    let value = if self.switches.key_is_value && j == 0 {
                        let next = (k + 1) % n;
                        self.key_name(next, self.tasks[next].pairs[0].0)
                    } else {
                        format!("V{value}")
                    };
                    if !pairs.contains(&(key.clone(), value.clone())) {
                        pairs.push((key, value));
                    }
                }
                (format!("t{k}"), templates, pairs)
            })
            .collect()
    }

    /// The validated spec. Generation never produces an invalid set; a
    /// rejection here is a bug in the strategy or in validation.
    pub fn spec(&self) -> Spec {
        Spec::from_parts("generated", &self.parts())
            .unwrap_or_else(|e| panic!("a generated set was rejected: {e}\n{self:?}"))
    }

    pub fn toml(&self) -> String {
        self.spec().to_toml()
    }
}

impl fmt::Debug for GenSet {
    /// The spec as TOML, ready to save as a regression file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let toml = Spec::from_parts("generated", &self.parts())
            .map(|s| s.to_toml())
            .unwrap_or_else(|e| format!("# rejected: {e}"));
        write!(f, "\n# switches: {:?}\n{toml}", self.switches)
    }
}

/// How big generated sets may get. The full ranges are those of the issue
/// (1–8 tasks, 1–5 templates of 2–10 positions, 1–12 pairs); `small` keeps
/// most cases cheap enough for exact arithmetic in a debug build.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub tasks: (usize, usize),
    pub templates: (usize, usize),
    pub len: (usize, usize),
    pub pairs: (usize, usize),
}

pub const FULL: Sizes = Sizes {
    tasks: (1, 8),
    templates: (1, 5),
    len: (2, 10),
    pairs: (1, 12),
};

pub const SMALL: Sizes = Sizes {
    tasks: (1, 4),
    templates: (1, 3),
    len: (2, 6),
    pairs: (1, 4),
};

fn template(len: (usize, usize)) -> impl Strategy<Value = GenTemplate> {
    (
        len.0..=len.1,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        prop::collection::vec(0..SHARED_WORDS.len() + PRIVATE_WORDS, len.1),
    )
        .prop_map(|(len, k, v, words)| {
            let key_at = k.index(len - 1);
            let value_at = key_at + 1 + v.index(len - 1 - key_at);
            GenTemplate {
                len,
                key_at,
                value_at,
                words: words[..len - 2].to_vec(),
            }
        })
}

fn task(sizes: Sizes, multi_value: bool) -> impl Strategy<Value = GenTask> {
    let keys = if multi_value { 3 } else { sizes.pairs.1 };
    (
        prop::collection::vec(template(sizes.len), sizes.templates.0..=sizes.templates.1),
        prop::collection::vec((0..keys, 0..VALUES), sizes.pairs.0..=sizes.pairs.1),
    )
        .prop_map(move |(templates, raw)| {
            // Without multi_value every pair has its own key.
            let pairs = raw
                .into_iter()
                .enumerate()
                .map(|(j, (k, v))| if multi_value { (k, v) } else { (j, v) })
                .collect();
            GenTask { templates, pairs }
        })
}

/// Switches, each on with probability 1/4 (so most sets have at most one
/// hard case and many have none).
pub fn switches() -> impl Strategy<Value = Switches> {
    let flag = || prop::bool::weighted(0.25);
    (flag(), flag(), flag(), flag(), flag()).prop_map(
        |(shared_keys, key_is_value, multi_value, key_first, xor)| Switches {
            shared_keys,
            key_is_value,
            multi_value,
            key_first,
            xor,
        },
    )
}

/// Task sets of the given sizes with the given switches.
pub fn task_set_with(sizes: Sizes, switches: Switches) -> impl Strategy<Value = GenSet> {
    prop::collection::vec(
        task(sizes, switches.multi_value),
        sizes.tasks.0..=sizes.tasks.1,
    )
    .prop_map(move |tasks| GenSet { switches, tasks })
}

/// Random task sets: mostly small ones (cheap in exact arithmetic), one in
/// four over the full ranges of the issue, every switch on one time in four.
pub fn task_set() -> impl Strategy<Value = GenSet> {
    sized_task_set(3, 1)
}

/// Task sets drawn from SMALL and FULL with these weights.
pub fn sized_task_set(small: u32, full: u32) -> impl Strategy<Value = GenSet> {
    prop_oneof![
        small => switches().prop_flat_map(|s| task_set_with(SMALL, s)),
        full => switches().prop_flat_map(|s| task_set_with(FULL, s)),
    ]
}

/// Task sets without hard cases whose templates all open with a private
/// word or with {key}: the hypotheses of docs/hypotheses.md cover every
/// prefix of these (keys are private to their task), so property 1 is
/// never vacuous.
pub fn covered_task_set() -> impl Strategy<Value = GenSet> {
    prop_oneof![
        3 => task_set_with(SMALL, Switches::default()),
        1 => task_set_with(FULL, Switches::default()),
    ]
    .prop_map(|mut set| {
        for (k, task) in set.tasks.iter_mut().enumerate() {
            for (i, t) in task.templates.iter_mut().enumerate() {
                if t.key_at > 0 {
                    // The first word is private: "t<k>a" or "t<k>b".
                    if let Some(w) = t.words.first_mut() {
                        *w = SHARED_WORDS.len() + (k + i) % PRIVATE_WORDS;
                    }
                }
            }
        }
        set
    })
}
