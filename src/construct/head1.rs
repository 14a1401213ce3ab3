//! Head 1's attention scores: positional (the reference construction) or
//! content-aware (`--head1 content`).
//!
//! Scores are integers in units of ln 2, so every attention weight is a
//! power of two over a sum of powers of two, an exact rational.
//!
//! - Positional: score_j = j. Head 1's output is then additive over
//!   positions (a sum of one term per (position, symbol)), and so is every
//!   other router input; a linear router cannot compute an XOR of two
//!   positions (`constructions/xor_expected_failure.toml`).
//! - Content: score_j = j + S·level(c, σ_j), where c is the current symbol
//!   (the query), σ_j the attended symbol (the key), S = 2L + 1, and
//!   level(c, σ) ≥ 0 an integer read off the task set: a pair "σ occurs
//!   before c" that happens in the templates of one task only is
//!   *exclusive* to that task; for each current symbol c, the tasks with an
//!   exclusive pair into c are numbered 1, 2, … and the pair gets its
//!   task's number; every other pair gets 0. A prefix that contains an
//!   exclusive pair belongs to that pair's task alone, and every exclusive
//!   pair in it has the same level, so the attention mass left on the
//!   current symbol (of order 2^{−S·level}) tells the router which task it
//!   is: the head computes a feature of the pair (earlier word, current
//!   word) that no sum over positions can.
//!
//! Why S = 2L + 1: the output still determines the prefix's pattern, which
//! the experts' interpolation needs. Up to a common factor, symbol σ gets
//! 2^{S·level}·code_σ with code_σ = Σ_{j: σ_j = σ} 2^j ∈ [2, 2^{L+1}), so
//! the ratio of two symbols' codes lies in (2^{−L}, 2^L), an interval
//! narrower than one step 2^S of the levels: each ratio of outputs splits
//! uniquely into a level difference and a code ratio, the codes (which sum
//! to 2^{i+1} − 2) follow, and a code is the set of positions of its symbol.

use super::pattern::Symbol;
use crate::scalar::Rat;
use crate::taskset::{Slot, TaskSet, TokenId, TokenKind};
use num_bigint::BigInt;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Which head 1 the construction uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Head1Mode {
    /// score_j = j (the design's reference head).
    #[default]
    Positional,
    /// score_j = j + (2L + 1)·level(current symbol, attended symbol).
    Content,
}

impl fmt::Display for Head1Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Head1Mode::Positional => "positional",
            Head1Mode::Content => "content",
        })
    }
}

impl FromStr for Head1Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "positional" => Ok(Head1Mode::Positional),
            "content" => Ok(Head1Mode::Content),
            other => Err(format!(
                "unknown head 1 '{other}' (expected positional or content)"
            )),
        }
    }
}

/// Head 1 as designed for one task set.
#[derive(Debug, Clone)]
pub struct Head1 {
    pub mode: Head1Mode,
    /// The syntactic symbol of every token (entities and `<eos>`: Entity).
    symbols: Vec<Symbol>,
    /// level(current, attended) where it is positive.
    pub levels: BTreeMap<(Symbol, Symbol), i64>,
    /// S = 2L + 1: the score step between levels.
    pub spacing: i64,
}

impl Head1 {
    /// Design head 1 for a task set.
    pub fn design(ts: &TaskSet, mode: Head1Mode) -> Head1 {
        let symbols = (0..ts.vocab.len())
            .map(|t| match ts.vocab.kind(t) {
                TokenKind::Word => Symbol::Word(t),
                TokenKind::Entity | TokenKind::Eos => Symbol::Entity,
            })
            .collect();
        let spacing = 2 * ts.max_len as i64 + 1;
        let levels = match mode {
            Head1Mode::Positional => BTreeMap::new(),
            Head1Mode::Content => content_levels(ts),
        };
        Head1 {
            mode,
            symbols,
            levels,
            spacing,
        }
    }

    /// A head with no vocabulary and no levels: enough for
    /// [`Head1::weights`] on symbol sequences (the positional head needs no
    /// more), not for [`Head1::symbol`].
    pub fn bare(mode: Head1Mode) -> Head1 {
        Head1 {
            mode,
            symbols: Vec::new(),
            levels: BTreeMap::new(),
            spacing: 1,
        }
    }

    /// The syntactic symbol of a token.
    pub fn symbol(&self, t: TokenId) -> Symbol {
        self.symbols[t]
    }

    /// level(current, attended): 0 unless the pair is exclusive to a task.
    pub fn level(&self, current: Symbol, attended: Symbol) -> i64 {
        self.levels.get(&(current, attended)).copied().unwrap_or(0)
    }

    /// The attention score of position j (1-based) holding `attended`,
    /// seen from the last position holding `current`.
    pub fn score(&self, current: Symbol, attended: Symbol, j: usize) -> i64 {
        j as i64 + self.spacing * self.level(current, attended)
    }

    /// Attention weights at the last position of a symbol sequence:
    /// 2^{score_j − min} / Σ_l 2^{score_l − min}, exact.
    pub fn weights(&self, symbols: &[Symbol]) -> Vec<Rat> {
        let (powers, total) = self.powers(symbols);
        powers
            .into_iter()
            .map(|p| Rat::new(p, total.clone()))
            .collect()
    }

    /// The weights' common form: 2^{score_j − min} per position and their
    /// sum, so that a weighted sum Σ c_j·weight_j is one integer over the
    /// sum (one gcd, not one per position).
    pub fn powers(&self, symbols: &[Symbol]) -> (Vec<BigInt>, BigInt) {
        let Some(&current) = symbols.last() else {
            return (Vec::new(), BigInt::from(1));
        };
        let scores: Vec<i64> = symbols
            .iter()
            .enumerate()
            .map(|(j, &s)| self.score(current, s, j + 1))
            .collect();
        let low = scores.iter().copied().min().unwrap_or(0);
        let powers: Vec<BigInt> = scores
            .iter()
            .map(|s| BigInt::from(1) << ((s - low) as usize))
            .collect();
        let total: BigInt = powers.iter().sum();
        (powers, total)
    }

    /// Head 1's output at the last position, per symbol (summed over the
    /// positions that hold it), in order of first occurrence.
    pub fn output(&self, symbols: &[Symbol]) -> Vec<(Symbol, Rat)> {
        let mut out: Vec<(Symbol, Rat)> = Vec::new();
        for (s, w) in symbols.iter().zip(self.weights(symbols)) {
            match out.iter_mut().find(|(o, _)| o == s) {
                Some(slot) => slot.1 += w,
                None => out.push((*s, w)),
            }
        }
        out
    }
}

/// The levels of the content head: for each current symbol c, number the
/// tasks that own an exclusive pair (σ before c), and give each exclusive
/// pair its task's number.
fn content_levels(ts: &TaskSet) -> BTreeMap<(Symbol, Symbol), i64> {
    let symbol = |slot: &Slot| match slot {
        Slot::Word(w) => Symbol::Word(*w),
        Slot::Key | Slot::Value => Symbol::Entity,
    };
    // Tasks in which σ occurs before c in some template.
    let mut owners: BTreeMap<(Symbol, Symbol), BTreeSet<usize>> = BTreeMap::new();
    for (k, task) in ts.tasks.iter().enumerate() {
        for template in &task.templates {
            let symbols: Vec<Symbol> = template.slots.iter().map(symbol).collect();
            for (i, &current) in symbols.iter().enumerate() {
                for &attended in &symbols[..i] {
                    if attended != current {
                        owners.entry((current, attended)).or_default().insert(k);
                    }
                }
            }
        }
    }
    let exclusive: Vec<((Symbol, Symbol), usize)> = owners
        .into_iter()
        .filter_map(|(pair, tasks)| (tasks.len() == 1).then(|| (pair, tasks.into_iter().next())))
        .filter_map(|(pair, task)| task.map(|t| (pair, t)))
        .collect();
    let mut tasks_into: BTreeMap<Symbol, BTreeSet<usize>> = BTreeMap::new();
    for ((current, _), task) in &exclusive {
        tasks_into.entry(*current).or_default().insert(*task);
    }
    exclusive
        .into_iter()
        .map(|((current, attended), task)| {
            let rank = tasks_into[&current].iter().position(|&t| t == task);
            ((current, attended), rank.map_or(0, |r| r as i64 + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::rat;
    use crate::spec;
    use std::path::Path;

    fn xor() -> TaskSet {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("constructions/xor_expected_failure.toml");
        TaskSet::from_spec(&spec::load(&path).unwrap())
    }

    fn word(ts: &TaskSet, w: &str) -> Symbol {
        Symbol::Word(ts.vocab.id(w).unwrap())
    }

    #[test]
    fn positional_weights_are_the_reference_head() {
        let ts = xor();
        let head = Head1::design(&ts, Head1Mode::Positional);
        assert!(head.levels.is_empty());
        let s = [word(&ts, "red"), word(&ts, "big"), Symbol::Entity];
        // 2^j / (2^{i+1} − 2) for i = 3: 2/14, 4/14, 8/14.
        assert_eq!(head.weights(&s), vec![rat(1, 7), rat(2, 7), rat(4, 7)]);
    }

    #[test]
    fn content_levels_single_out_the_xor_pairs() {
        let ts = xor();
        let head = Head1::design(&ts, Head1Mode::Content);
        let (red, blue, big, small) = (
            word(&ts, "red"),
            word(&ts, "blue"),
            word(&ts, "big"),
            word(&ts, "small"),
        );
        // Into "big": red→big is alpha's (level 1), blue→big beta's (2).
        assert_eq!(head.level(big, red), 1);
        assert_eq!(head.level(big, blue), 2);
        assert_eq!(head.level(small, blue), 1);
        assert_eq!(head.level(small, red), 2);
        // "maps" follows red, blue, big, small and the key in both tasks.
        assert_eq!(head.level(word(&ts, "maps"), red), 0);
        assert_eq!(head.level(word(&ts, "maps"), Symbol::Entity), 0);
        // L = 6, S = 13: "red big" has scores 1 + 13 = 14 and 2, so the
        // weights are 2^12/(2^12 + 1) and 1/(2^12 + 1); "blue big" has
        // 1 + 26 = 27 and 2: 2^25/(2^25 + 1) and 1/(2^25 + 1).
        assert_eq!(head.spacing, 13);
        assert_eq!(
            head.weights(&[red, big]),
            vec![rat(4096, 4097), rat(1, 4097)]
        );
        let w = head.weights(&[blue, big]);
        assert_eq!(w[1], Rat::new(1.into(), ((1i64 << 25) + 1).into()));
        // The same words in the other order carry no level.
        assert_eq!(head.weights(&[big, red]), vec![rat(1, 3), rat(2, 3)]);
    }

    #[test]
    fn output_sums_repeated_symbols() {
        let ts = xor();
        let head = Head1::design(&ts, Head1Mode::Content);
        let out = head.output(&[Symbol::Entity, word(&ts, "maps"), Symbol::Entity]);
        assert_eq!(
            out,
            vec![(Symbol::Entity, rat(5, 7)), (word(&ts, "maps"), rat(2, 7))]
        );
    }

    #[test]
    fn modes_parse() {
        assert_eq!("content".parse::<Head1Mode>(), Ok(Head1Mode::Content));
        assert_eq!(
            "positional".parse::<Head1Mode>().map(|m| m.to_string()),
            Ok("positional".into())
        );
        assert!("semantic".parse::<Head1Mode>().is_err());
    }
}
