//! Random task sets, written as specs.
//!
//! Template length counts every position, wildcards included (|τ|, as in
//! c(k)). Keys are exclusive to their task unless `shared_keys`; values come
//! from one pool shared by all tasks. The same parameters and seed give the
//! same spec, byte for byte (ChaCha8 is stable across platforms).

use crate::spec::{Spec, SpecError};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Short words to draw templates from; pools beyond this list get "w<N>".
const WORDS: [&str; 24] = [
    "the", "of", "is", "in", "has", "was", "by", "for", "on", "at", "to", "from", "with", "as",
    "an", "and", "its", "who", "which", "known", "called", "named", "part", "near",
];

/// Parameters of a random task set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub tasks: usize,
    pub templates: usize,
    pub min_len: usize,
    pub max_len: usize,
    pub pairs: usize,
    /// Size of the shared pool of template words.
    pub words: usize,
    /// Size of the shared pool of values.
    pub values: usize,
    /// Draw keys from one pool shared by all tasks instead of per task.
    pub shared_keys: bool,
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
            values: 8,
            shared_keys: false,
            seed: 1,
        }
    }
}

fn word(i: usize) -> String {
    WORDS
        .get(i)
        .map_or_else(|| format!("w{i}"), |w| w.to_string())
}

/// Draw a task set. Fails only if the parameters admit no valid spec (for
/// example more templates than distinct templates of the allowed lengths).
pub fn generate(p: &Params) -> Result<Spec, SpecError> {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let pool: Vec<String> = (0..p.words.max(1)).map(word).collect();
    let min_len = p.min_len.max(2);
    let max_len = p.max_len.max(min_len);
    let mut tasks = Vec::with_capacity(p.tasks);
    for k in 0..p.tasks {
        let mut templates: Vec<String> = Vec::new();
        // Bounded retries: small pools may not have enough distinct templates.
        for _ in 0..p.templates * 50 {
            if templates.len() == p.templates {
                break;
            }
            let len = rng.random_range(min_len..=max_len);
            let key_at = rng.random_range(0..len - 1);
            let value_at = rng.random_range(key_at + 1..len);
            let text: Vec<String> = (0..len)
                .map(|i| match i {
                    _ if i == key_at => "{key}".to_string(),
                    _ if i == value_at => "{value}".to_string(),
                    _ => pool.choose(&mut rng).cloned().unwrap_or_default(),
                })
                .collect();
            let text = text.join(" ");
            if !templates.contains(&text) {
                templates.push(text);
            }
        }
        let pairs = (0..p.pairs)
            .map(|j| {
                let key = if p.shared_keys {
                    format!("K{j}")
                } else {
                    format!("K{k}_{j}")
                };
                let value = format!("V{}", rng.random_range(0..p.values.max(1)));
                (key, value)
            })
            .collect();
        tasks.push((format!("task{k}"), templates, pairs));
    }
    Spec::from_parts(&format!("generated (seed {})", p.seed), &tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SlotSpec;

    #[test]
    fn same_seed_same_spec() {
        let a = generate(&Params::default()).unwrap().to_toml();
        let b = generate(&Params::default()).unwrap().to_toml();
        assert_eq!(a, b);
        let c = generate(&Params {
            seed: 2,
            ..Params::default()
        })
        .unwrap()
        .to_toml();
        assert_ne!(a, c);
    }

    #[test]
    fn respects_the_parameters() {
        let spec = generate(&Params::default()).unwrap();
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
}
