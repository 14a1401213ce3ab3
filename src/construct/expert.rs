//! The neurons of expert k.
//!
//! Syntactic neurons (the paper's memorisation lemma): project the hidden
//! state onto one scalar s_k = Σ_σ r_σ·h1:σ + Σ_i c_i·pos:i that takes a
//! different value on every pattern of T(k), sort those values t_1 < … < t_n,
//! and interpolate the target logit vectors y_m piecewise-linearly:
//!   f(s) = y_1 + Σ_{m<n} c_m · ReLU(s − t_m),  c_m = g_m − g_{m−1},
//!   g_m = (y_{m+1} − y_m) / (t_{m+1} − t_m),
//! which is exact at every t_m. What f does between patterns is irrelevant:
//! only k's patterns reach expert k.
//!
//! Semantic neurons: one per pair (a, b) of Δk, ReLU(L·h2:a) · β_sem·out:b.
//! At position i with key a, h2:a = 1/i, so b gets (L/i)·β_sem ≥ β_sem.

use super::Margins;
use super::head1::{Head1, Head1Mode};
use super::pattern::{self, Next, Pattern, Symbol};
use super::residual::Residual;
use crate::model::{Expert, Neuron, NeuronRole, SparseVec};
use crate::scalar::{Rat, int};
use crate::taskset::TaskSet;
use num_bigint::BigInt;
use num_traits::Zero;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Random projections tried before falling back to base-2^{L+1} digits.
const ATTEMPTS: u64 = 32;

/// The scalar s_k: symbol weights r_σ and position offsets c_i.
#[derive(Debug, Clone)]
pub struct Projection {
    pub symbol_weight: BTreeMap<Symbol, BigInt>,
    /// c_i for positions 1..=L.
    pub position_offset: Vec<BigInt>,
}

impl Projection {
    /// s(p) = c_{|p|} + Σ_j r_{σ_j} 2^j / (2^{|p|+1} − 2): the value of s_k on
    /// the hidden state of any prefix with pattern p, for the positional
    /// head 1.
    pub fn value(&self, p: &Pattern) -> Rat {
        let i = p.len();
        let total = (BigInt::from(1) << (i + 1)) - BigInt::from(2);
        let code: BigInt = p
            .iter()
            .enumerate()
            .map(|(j, s)| &self.symbol_weight[s] << (j + 1))
            .sum();
        Rat::from_integer(self.position_offset[i - 1].clone()) + Rat::new(code, total)
    }

    /// s(p) = c_{|p|} + Σ_j r_{σ_j} a_j, with a_j the given head 1's weight
    /// on position j.
    pub fn value_with(&self, head: &Head1, p: &Pattern) -> Rat {
        let i = p.len();
        // Σ r_σ·2^{score_j − min} / Σ_l 2^{score_l − min}: one integer
        // sum and one reduction (at 42 positions a sum of reduced
        // fractions spent most of the build in gcds).
        let (powers, total) = head.powers(p);
        let code: BigInt = p
            .iter()
            .zip(&powers)
            .map(|(s, power)| &self.symbol_weight[s] * power)
            .sum();
        let mixed = Rat::new(code, total);
        Rat::from_integer(self.position_offset[i - 1].clone()) + mixed
    }

    /// The neuron input vector reading s_k from the residual.
    pub fn read(&self, r: &Residual) -> SparseVec<Rat> {
        let symbols = self.symbol_weight.iter().map(|(s, w)| {
            let dir = match s {
                Symbol::Word(t) => r.h1[*t],
                Symbol::Entity => r.h1_entity,
            };
            (dir, Rat::from_integer(w.clone()))
        });
        let positions = self
            .position_offset
            .iter()
            .zip(&r.pos)
            .map(|(c, &dir)| (dir, Rat::from_integer(c.clone())));
        SparseVec::from_entries(symbols.chain(positions))
    }

    /// Weights r_σ given, offsets c_i = (max r + 1)·i keep lengths apart:
    /// Σ_σ r_σ h1:σ is a convex combination of the r's, so in [1, max r].
    fn with_weights(symbol_weight: BTreeMap<Symbol, BigInt>, max_len: usize) -> Self {
        let top = symbol_weight.values().max().cloned().unwrap_or_default() + 1;
        let position_offset = (1..=max_len).map(|i| &top * BigInt::from(i)).collect();
        Projection {
            symbol_weight,
            position_offset,
        }
    }

    /// Does s_k separate these patterns?
    fn injective(&self, head: &Head1, patterns: &[&Pattern]) -> bool {
        let mut values: Vec<Rat> = patterns.iter().map(|p| self.value_with(head, p)).collect();
        values.sort();
        values.windows(2).all(|w| w[0] < w[1])
    }
}

/// Find a projection injective on the patterns: small random integer weights
/// (distinctness checked exactly), else a deterministic fallback. For the
/// positional head, base-2^{L+1} digits, injective because each symbol's
/// code Σ 2^j is below 2^{L+1}. For the content head, weights t^0, t^1, …
/// for t = 2, 3, …: head 1 still tells patterns apart (see
/// [`super::head1`]), so for two patterns of one length the difference of
/// their values is a nonzero polynomial in t with fewer roots than there
/// are symbols, and some t below (symbols)·(pairs of patterns) + 2 works.
pub fn projection(patterns: &[&Pattern], seed: u64, max_len: usize) -> Projection {
    projection_with(patterns, seed, max_len, &Head1::bare(Head1Mode::Positional))
}

/// [`projection`] for the given head 1.
pub fn projection_with(
    patterns: &[&Pattern],
    seed: u64,
    max_len: usize,
    head: &Head1,
) -> Projection {
    let mut symbols: Vec<Symbol> = patterns.iter().flat_map(|p| p.iter().copied()).collect();
    symbols.sort();
    symbols.dedup();
    let range = 4 * symbols.len() as i64 + 4;
    for attempt in 0..ATTEMPTS {
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(attempt));
        let weights = symbols
            .iter()
            .map(|&s| {
                (
                    s,
                    BigInt::from(rng.random_range(1..=range << attempt.min(20))),
                )
            })
            .collect();
        let p = Projection::with_weights(weights, max_len);
        if p.injective(head, patterns) {
            return p;
        }
    }
    if head.mode == Head1Mode::Content {
        let pairs = patterns.len() * patterns.len();
        for t in 2..symbols.len() * pairs + 3 {
            let t = BigInt::from(t);
            let weights = symbols
                .iter()
                .enumerate()
                .map(|(idx, &s)| (s, t.pow(idx as u32)))
                .collect();
            let p = Projection::with_weights(weights, max_len);
            if p.injective(head, patterns) {
                return p;
            }
        }
    }
    let base = BigInt::from(1) << (max_len + 1);
    let weights = symbols
        .iter()
        .enumerate()
        .map(|(idx, &s)| (s, base.pow(idx as u32)))
        .collect();
    Projection::with_weights(weights, max_len)
}

/// The logits expert k's syntactic neurons should produce on a pattern.
fn target(next: &Next, k: usize, r: &Residual, eos: usize, beta: &Rat) -> SparseVec<Rat> {
    let mut dirs: Vec<usize> = next.words.iter().map(|&w| r.out[w]).collect();
    if next.key {
        dirs.push(r.keys_of[k]);
    }
    if next.end {
        dirs.push(r.out[eos]);
    }
    SparseVec::from_entries(dirs.into_iter().map(|d| (d, beta.clone())))
}

/// One interpolation point: s_k on a pattern of T(k), the pattern, and the
/// logits the syntactic neurons must produce there.
pub type Point = (Rat, Pattern, SparseVec<Rat>);

/// The projection s_k of task k and its interpolation points, sorted by s,
/// for the positional head 1. Shared by the MoE expert and the dense
/// model's circuit.
pub fn interpolation(
    ts: &TaskSet,
    k: usize,
    r: &Residual,
    margins: &Margins,
) -> (Projection, Vec<Point>) {
    interpolation_with(ts, k, r, margins, &Head1::design(ts, Head1Mode::Positional))
}

/// The projection s_k and its interpolation points for the given head 1.
pub fn interpolation_with(
    ts: &TaskSet,
    k: usize,
    r: &Residual,
    margins: &Margins,
    head: &Head1,
) -> (Projection, Vec<Point>) {
    let patterns = pattern::patterns(&ts.tasks[k]);
    let keys: Vec<&Pattern> = patterns.keys().collect();
    let proj = projection_with(&keys, k as u64, ts.max_len, head);
    let eos = ts.vocab.eos();
    let mut points: Vec<Point> = patterns
        .iter()
        .map(|(p, next)| {
            (
                proj.value_with(head, p),
                p.clone(),
                target(next, k, r, eos, &margins.syntactic),
            )
        })
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    (proj, points)
}

/// Build expert k for the positional head 1.
pub fn build(ts: &TaskSet, k: usize, r: &Residual, margins: &Margins) -> Expert<Rat> {
    build_with(ts, k, r, margins, &Head1::design(ts, Head1Mode::Positional))
}

/// Build expert k for the given head 1.
pub fn build_with(
    ts: &TaskSet,
    k: usize,
    r: &Residual,
    margins: &Margins,
    head: &Head1,
) -> Expert<Rat> {
    let task = &ts.tasks[k];
    let word = |t: usize| ts.vocab.name(t).to_string();
    let (proj, points) = interpolation_with(ts, k, r, margins, head);
    let read = proj.read(r);

    let mut neurons = Vec::new();
    let mut previous_slope = SparseVec::default();
    for m in 0..points.len().saturating_sub(1) {
        let (t0, p0, y0) = &points[m];
        let (t1, _, y1) = &points[m + 1];
        let slope = y1.add_scaled(&int(-1), y0).map(|v| v / (t1 - t0));
        let write = slope.add_scaled(&int(-1), &previous_slope);
        neurons.push(Neuron {
            name: format!(
                "{}/syn{}: s ≥ s(\"{}\")",
                task.name,
                m,
                pattern::render(p0, word)
            ),
            role: NeuronRole::Syntactic,
            read: read.clone(),
            bias: -t0.clone(),
            write,
        });
        previous_slope = slope;
    }

    for &(key, value) in &task.pairs {
        let dir = r.entity(key).unwrap_or(r.one);
        neurons.push(Neuron {
            name: format!("{}/sem: {} → {}", task.name, word(key), word(value)),
            role: NeuronRole::Semantic,
            read: SparseVec::from_entries([(dir, int(ts.max_len as i64))]),
            bias: Rat::zero(),
            write: SparseVec::from_entries([(r.out[value], margins.semantic.clone())]),
        });
    }
    let output_bias = points.first().map(|p| p.2.clone()).unwrap_or_default();
    Expert {
        name: task.name.clone(),
        neurons,
        output_bias,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_separates_patterns_of_equal_length() {
        let a: Pattern = vec![Symbol::Word(0), Symbol::Word(1)];
        let b: Pattern = vec![Symbol::Word(1), Symbol::Word(0)];
        let c: Pattern = vec![Symbol::Word(0)];
        let p = projection(&[&a, &b, &c], 7, 3);
        assert_ne!(p.value(&a), p.value(&b));
        // Lengths are kept apart by the offsets.
        assert!(p.value(&c) < p.value(&a).min(p.value(&b)));
        // s(p) matches the formula: c_2 + (r_0·2 + r_1·4) / 6.
        let (r0, r1) = (
            &p.symbol_weight[&Symbol::Word(0)],
            &p.symbol_weight[&Symbol::Word(1)],
        );
        let expect = Rat::from_integer(p.position_offset[1].clone())
            + Rat::new(r0 * 2 + r1 * 4, BigInt::from(6));
        assert_eq!(p.value(&a), expect);
    }

    #[test]
    fn the_content_head_changes_the_projection_and_keeps_it_injective() {
        // The four XOR openings as patterns: for the positional head the
        // general formula agrees with the closed one; the content head's
        // values differ but stay distinct.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("constructions/xor_expected_failure.toml");
        let ts = TaskSet::from_spec(&crate::spec::load(&path).unwrap());
        let w = |name: &str| Symbol::Word(ts.vocab.id(name).unwrap());
        let patterns: Vec<Pattern> = [
            ["red", "big"],
            ["blue", "small"],
            ["red", "small"],
            ["blue", "big"],
        ]
        .iter()
        .map(|[a, b]| vec![w(a), w(b)])
        .collect();
        let refs: Vec<&Pattern> = patterns.iter().collect();
        let positional = Head1::design(&ts, Head1Mode::Positional);
        let content = Head1::design(&ts, Head1Mode::Content);
        let p = projection_with(&refs, 3, ts.max_len, &content);
        assert!(p.injective(&content, &refs));
        for pattern in &patterns {
            assert_eq!(p.value(pattern), p.value_with(&positional, pattern));
        }
        assert_ne!(p.value(&patterns[0]), p.value_with(&content, &patterns[0]));
    }

    #[test]
    fn fallback_digits_are_injective() {
        let weights: BTreeMap<Symbol, BigInt> = [
            (Symbol::Word(0), BigInt::from(1)),
            (Symbol::Word(1), BigInt::from(1)),
        ]
        .into_iter()
        .collect();
        // Equal weights collide on permutations; digits do not.
        let p = Projection::with_weights(weights, 2);
        let a: Pattern = vec![Symbol::Word(0), Symbol::Word(1)];
        let b: Pattern = vec![Symbol::Word(1), Symbol::Word(0)];
        assert_eq!(p.value(&a), p.value(&b));
        let base = BigInt::from(8);
        let digits = [(Symbol::Word(0), BigInt::from(1)), (Symbol::Word(1), base)]
            .into_iter()
            .collect();
        let p = Projection::with_weights(digits, 2);
        assert!(p.injective(&Head1::bare(Head1Mode::Positional), &[&a, &b]));
    }
}
