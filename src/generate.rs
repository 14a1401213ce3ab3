//! Random task sets, written as specs.
//!
//! Template length counts every position, wildcards included (|τ|, as in
//! c(k)). The same parameters and seed give the same spec, byte for byte
//! (ChaCha8 is stable across platforms).
//!
//! Every task draws from its own random streams, one for its templates, one
//! for the words they use and one for its pairs. So task k is the same
//! whatever the number of tasks, its templates do not depend on the entity
//! pool, and its first pairs do not depend on how many pairs it has: a sweep
//! that varies one parameter changes only what that parameter governs.
//!
//! Templates are drawn over a task's *own* alphabet of `task_words` symbols,
//! which a random one-to-one map then spells with words of the shared pool.
//! Growing the pool therefore makes tasks share fewer words (a larger
//! vocabulary) while each task's templates stay the same up to renaming:
//! the same syntactic patterns, hence the same expert.

use crate::spec::{Spec, SpecError};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Short words to draw templates from; pools beyond this list get "w<N>".
/// [`OPENING`] is deliberately not among them.
const WORDS: [&str; 24] = [
    "the", "of", "in", "has", "was", "by", "for", "on", "at", "to", "from", "with", "as", "an",
    "and", "its", "who", "which", "known", "called", "named", "part", "near", "about",
];

/// With `shared_prefixes`, every template of every task opens with
/// "{key} is", as both relations of the paper's running example do. The word
/// is outside the pool, so the opening never coincides with a drawn word.
pub const OPENING: &str = "is";

/// Parameters of a random task set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub tasks: usize,
    /// Templates per task.
    pub templates: usize,
    /// Shortest template, in positions (wildcards included).
    pub min_len: usize,
    /// Longest template, in positions.
    pub max_len: usize,
    /// Key–value pairs per task.
    pub pairs: usize,
    /// Size of the shared pool of template words.
    pub words: usize,
    /// Words each task's templates draw from (a random subset of the pool);
    /// `None`: the whole pool.
    pub task_words: Option<usize>,
    /// Size of the entity pool that values are drawn from.
    pub values: usize,
    /// Draw keys from one pool shared by all tasks instead of per task.
    pub shared_keys: bool,
    /// Every template opens with "{key} is" (see [`OPENING`]).
    pub shared_prefixes: bool,
    pub seed: u64,
}

impl Default for Params {
    /// The foundation issue's random sets: 6 tasks, 3 templates of 2–7
    /// positions over 12 words, 8 pairs each.
    fn default() -> Self {
        Params {
            tasks: 6,
            templates: 3,
            min_len: 2,
            max_len: 7,
            pairs: 8,
            words: 12,
            task_words: None,
            values: 8,
            shared_keys: false,
            shared_prefixes: false,
            seed: 1,
        }
    }
}

impl Params {
    /// The scale of the paper's experiments (Section 6): 50 tasks, 5
    /// templates of 4–12 positions, 200 pairs each. The paper's templates
    /// were written per relation, so each task uses its own 40 of 400 words;
    /// values come from a pool of 2000 entities.
    pub fn paper_scale() -> Params {
        Params {
            tasks: 50,
            templates: 5,
            min_len: 4,
            max_len: 12,
            pairs: 200,
            words: 400,
            task_words: Some(40),
            values: 2000,
            shared_keys: false,
            shared_prefixes: false,
            seed: 1,
        }
    }

    /// The size of each task's own alphabet.
    pub fn alphabet(&self) -> usize {
        self.task_words.unwrap_or(self.words)
    }

    /// Reject parameters no spec can satisfy, with the flag to change.
    pub fn check(&self) -> Result<(), String> {
        let shortest = if self.shared_prefixes {
            SHARED_PREFIX_MIN_LEN
        } else {
            2
        };
        if self.tasks == 0 || self.templates == 0 || self.pairs == 0 {
            return Err("--tasks, --templates and --pairs must be at least 1".into());
        }
        if self.min_len < shortest {
            return Err(if self.shared_prefixes {
                format!(
                    "--min-len {} is too short: with --shared-prefixes a template needs \"{{key}} {OPENING}\" and {{value}}, at least 3 positions",
                    self.min_len
                )
            } else {
                format!(
                    "--min-len {} is too short: a template needs {{key}} and {{value}}, at least 2 positions",
                    self.min_len
                )
            });
        }
        if self.max_len < self.min_len {
            return Err(format!(
                "--max-len {} is below --min-len {}",
                self.max_len, self.min_len
            ));
        }
        if self.words == 0 || self.values == 0 {
            return Err("--words and --entities must be at least 1".into());
        }
        if let Some(a) = self.task_words
            && (a == 0 || a > self.words)
        {
            return Err(format!(
                "--task-words {a} must be between 1 and --words {}",
                self.words
            ));
        }
        // Refuse before generating what could not be verified here: the
        // task set of the spec, at its largest (every template max_len).
        let shape = (self.pairs, vec![self.max_len; self.templates]);
        let estimate = crate::taskset::estimate_bytes(std::iter::repeat_n(shape, self.tasks));
        crate::taskset::check_fits(estimate).map_err(|e| {
            format!(
                "--tasks {} --templates {} --max-len {} --pairs {}: {e}",
                self.tasks, self.templates, self.max_len, self.pairs
            )
        })?;
        Ok(())
    }

    /// The `routecert generate` flags that reproduce these parameters.
    pub fn to_args(&self) -> String {
        let mut s = format!(
            "--tasks {} --templates {} --min-len {} --max-len {} --pairs {} --words {}",
            self.tasks, self.templates, self.min_len, self.max_len, self.pairs, self.words
        );
        if let Some(a) = self.task_words {
            s += &format!(" --task-words {a}");
        }
        s += &format!(" --entities {}", self.values);
        if self.shared_keys {
            s += " --shared-keys";
        }
        if self.shared_prefixes {
            s += " --shared-prefixes";
        }
        s + &format!(" --seed {}", self.seed)
    }
}

/// Why no spec was generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("generate: {0}")]
    Params(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// The independent random streams of one task.
#[derive(Clone, Copy)]
enum Purpose {
    Templates = 0,
    Words = 1,
    Pairs = 2,
}

/// Stream `purpose` of task `k`: ChaCha's 64-bit stream id separates them
/// under one seed, so no draw of one stream shifts another.
fn stream(seed: u64, k: usize, purpose: Purpose) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(3 * k as u64 + purpose as u64);
    rng
}

/// One position of a template over the task's own alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    Key,
    Value,
    /// The shared opening word.
    Opening,
    /// Symbol i of the task's alphabet.
    Word(usize),
}

fn pool_word(i: usize) -> String {
    WORDS
        .get(i)
        .map_or_else(|| format!("w{i}"), |w| w.to_string())
}

/// Draw `p.templates` distinct templates over an alphabet of `p.alphabet()`
/// symbols, or say why there are not that many.
fn draw_templates(p: &Params, rng: &mut ChaCha8Rng) -> Result<Vec<Vec<Local>>, String> {
    let alphabet = p.alphabet();
    let mut templates: Vec<Vec<Local>> = Vec::new();
    // Bounded retries: small alphabets may not have enough distinct templates.
    for _ in 0..p.templates * 50 {
        if templates.len() == p.templates {
            break;
        }
        let len = rng.random_range(p.min_len..=p.max_len);
        let (key_at, value_at) = if p.shared_prefixes {
            (0, rng.random_range(2..len))
        } else {
            let key_at = rng.random_range(0..len - 1);
            (key_at, rng.random_range(key_at + 1..len))
        };
        let template: Vec<Local> = (0..len)
            .map(|i| match i {
                _ if i == key_at => Local::Key,
                _ if i == value_at => Local::Value,
                1 if p.shared_prefixes => Local::Opening,
                _ => Local::Word(rng.random_range(0..alphabet)),
            })
            .collect();
        if !templates.contains(&template) {
            templates.push(template);
        }
    }
    if templates.len() < p.templates {
        return Err(format!(
            "found only {} distinct templates of {}–{} positions over {alphabet} words in {} draws; allow longer templates or more words",
            templates.len(),
            p.min_len,
            p.max_len,
            p.templates * 50
        ));
    }
    Ok(templates)
}

/// Draw a task set.
pub fn generate(p: &Params) -> Result<Spec, GenerateError> {
    p.check().map_err(GenerateError::Params)?;
    let mut tasks = Vec::with_capacity(p.tasks);
    for k in 0..p.tasks {
        let name = format!("task{k}");
        let local = draw_templates(p, &mut stream(p.seed, k, Purpose::Templates))
            .map_err(|e| GenerateError::Params(format!("task {name}: {e}")))?;
        // Spell the task's alphabet with distinct pool words, in random order.
        let spelling: Vec<usize> = index::sample(
            &mut stream(p.seed, k, Purpose::Words),
            p.words,
            p.alphabet(),
        )
        .into_vec();
        let templates = local
            .iter()
            .map(|t| {
                t.iter()
                    .map(|s| match s {
                        Local::Key => crate::spec::KEY.to_string(),
                        Local::Value => crate::spec::VALUE.to_string(),
                        Local::Opening => OPENING.to_string(),
                        Local::Word(i) => pool_word(spelling[*i]),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let mut rng = stream(p.seed, k, Purpose::Pairs);
        let pairs = (0..p.pairs)
            .map(|j| {
                let key = if p.shared_keys {
                    format!("K{j}")
                } else {
                    format!("K{k}_{j}")
                };
                (key, format!("V{}", rng.random_range(0..p.values)))
            })
            .collect();
        tasks.push((name, templates, pairs));
    }
    Ok(Spec::from_parts(
        &format!("generated (seed {})", p.seed),
        &tasks,
    )?)
}

/// The shortest template `--shared-prefixes` can open: "{key} is" and
/// {value}.
pub const SHARED_PREFIX_MIN_LEN: usize = 3;

/// The most points one sweep runs: each builds and verifies a model, so a
/// longer list is a mistake, refused before the list is allocated.
pub const MAX_SWEEP_POINTS: usize = 10_000;

/// Refuse a sweep list of `points` values (`text` as given) before it is
/// built.
pub fn check_sweep_points(text: &str, points: u128) -> Result<(), String> {
    if points > MAX_SWEEP_POINTS as u128 {
        return Err(format!(
            "--over {text}: {points} points; a sweep runs at most {MAX_SWEEP_POINTS} (each point builds and verifies a model)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{SlotSpec, TaskSpec};

    fn spec(p: &Params) -> Spec {
        generate(p).unwrap()
    }

    #[test]
    fn same_seed_same_spec() {
        let a = spec(&Params::default()).to_toml();
        assert_eq!(a, spec(&Params::default()).to_toml());
        let c = spec(&Params {
            seed: 2,
            ..Params::default()
        });
        assert_ne!(a, c.to_toml());
    }

    #[test]
    fn respects_the_parameters() {
        let spec = spec(&Params::default());
        assert_eq!(spec.tasks.len(), 6);
        for t in &spec.tasks {
            assert_eq!(t.templates.len(), 3);
            assert_eq!(t.pairs.len(), 8);
            for x in &t.templates {
                assert!((2..=7).contains(&x.slots.len()), "{}", x.text);
                for s in &x.slots {
                    if let SlotSpec::Word(w) = s {
                        assert!(WORDS[..12].contains(&w.as_str()), "{w}");
                    }
                }
            }
        }
        // Keys exclusive to their task.
        assert!(spec.tasks[0].pairs.iter().all(|p| p.key.starts_with("K0_")));
    }

    /// Task k's templates with every word replaced by the index of its first
    /// occurrence in the task: the task up to renaming of its words.
    fn shape(t: &TaskSpec) -> Vec<Vec<Option<usize>>> {
        let mut seen: Vec<&str> = Vec::new();
        t.templates
            .iter()
            .map(|x| {
                x.slots
                    .iter()
                    .map(|s| match s {
                        SlotSpec::Word(w) => {
                            Some(seen.iter().position(|v| v == w).unwrap_or_else(|| {
                                seen.push(w);
                                seen.len() - 1
                            }))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_task_does_not_depend_on_the_other_tasks_or_the_entity_pool() {
        let few = spec(&Params {
            tasks: 2,
            ..Params::default()
        });
        let many = spec(&Params {
            tasks: 9,
            values: 100,
            ..Params::default()
        });
        for k in 0..2 {
            assert_eq!(few.tasks[k].templates, many.tasks[k].templates);
            let keys = |t: &TaskSpec| t.pairs.iter().map(|p| p.key.clone()).collect::<Vec<_>>();
            assert_eq!(keys(&few.tasks[k]), keys(&many.tasks[k]));
        }
        // The values moved to the larger pool: some value is beyond V7.
        assert!(
            many.tasks
                .iter()
                .flat_map(|t| &t.pairs)
                .any(|p| { p.value[1..].parse::<usize>().unwrap() >= 8 })
        );
    }

    #[test]
    fn more_pairs_extend_the_dictionary() {
        let small = spec(&Params {
            pairs: 3,
            ..Params::default()
        });
        let large = spec(&Params {
            pairs: 20,
            ..Params::default()
        });
        for (a, b) in small.tasks.iter().zip(&large.tasks) {
            assert_eq!(a.templates, b.templates);
            let pairs = |t: &TaskSpec| {
                t.pairs
                    .iter()
                    .map(|p| (p.key.clone(), p.value.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(pairs(a), pairs(b)[..3]);
        }
    }

    #[test]
    fn a_larger_pool_renames_but_keeps_each_task() {
        let base = Params {
            words: 8,
            task_words: Some(8),
            ..Params::default()
        };
        let small = spec(&base);
        let large = spec(&Params {
            words: 200,
            ..base.clone()
        });
        let vocabulary = |s: &Spec| {
            let mut words: Vec<String> = s
                .tasks
                .iter()
                .flat_map(|t| &t.templates)
                .flat_map(|x| &x.slots)
                .filter_map(|s| match s {
                    SlotSpec::Word(w) => Some(w.clone()),
                    _ => None,
                })
                .collect();
            words.sort();
            words.dedup();
            words.len()
        };
        assert!(vocabulary(&small) <= 8);
        assert!(vocabulary(&large) > 8);
        for (a, b) in small.tasks.iter().zip(&large.tasks) {
            assert_eq!(shape(a), shape(b), "task {}", a.name);
        }
    }

    #[test]
    fn shared_prefixes_open_every_template_alike() {
        let s = spec(&Params {
            min_len: 3,
            shared_prefixes: true,
            shared_keys: true,
            ..Params::default()
        });
        for t in &s.tasks {
            for x in &t.templates {
                assert!(x.text.starts_with("{key} is "), "{}", x.text);
            }
            assert_eq!(t.pairs[0].key, "K0");
        }
    }

    #[test]
    fn impossible_parameters_are_rejected_with_the_flag_to_change() {
        let err = |p: Params| generate(&p).unwrap_err().to_string();
        assert!(
            err(Params {
                min_len: 1,
                ..Params::default()
            })
            .contains("--min-len 1 is too short")
        );
        assert!(
            err(Params {
                shared_prefixes: true,
                ..Params::default()
            })
            .contains("--shared-prefixes")
        );
        assert!(
            err(Params {
                task_words: Some(13),
                ..Params::default()
            })
            .contains("--task-words 13")
        );
        // Length 2 admits one template, "{key} {value}".
        assert!(
            err(Params {
                min_len: 2,
                max_len: 2,
                ..Params::default()
            })
            .contains("found only 1 distinct templates")
        );
    }

    #[test]
    fn paper_scale_has_the_papers_shape() {
        let p = Params::paper_scale();
        assert!(p.check().is_ok());
        assert_eq!(
            (p.tasks, p.templates, p.min_len, p.max_len, p.pairs),
            (50, 5, 4, 12, 200)
        );
    }
}
