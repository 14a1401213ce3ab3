//! Embeddings and the two attention heads.
//!
//! Input at position j: tok:t_j + pos:j + one (token plus position embedding;
//! no coordinate encodes a (token, position) pair, so order reaches the model
//! only through attention).
//! - Head 1 (syntactic): score_j = j in units of ln 2, so position j gets
//!   weight 2^j / (2^{i+1} − 2); its value writes the token's syntactic
//!   symbol. Coordinate h1:σ is then a binary code of where σ occurs, which
//!   together with i determines the prefix's syntactic pattern.
//! - Head 2 (key): score 0, i.e. uniform weights 1/i; its value writes h2:e
//!   for entities. Before the value appears the key is the only entity, so
//!   the output is e_key / i.
//!
//! W_O is the identity from each head's value space onto its residual block.
//!
//! With `--head1 content` head 1's score also depends on the current and
//! the attended token's symbols (see [`super::head1`]); everything else is
//! unchanged.

use super::head1::Head1;
use super::pattern::Symbol;
use super::residual::Residual;
use crate::model::{Basis, Head, LinearMap, SparseVec};
use crate::scalar::{Rat, int};
use crate::taskset::{TaskSet, TokenId};
use num_bigint::{BigInt, BigUint};

/// Token and position embeddings.
pub fn embeddings(ts: &TaskSet, r: &Residual) -> (Vec<SparseVec<Rat>>, Vec<SparseVec<Rat>>) {
    let tokens = (0..ts.vocab.len())
        .map(|t| SparseVec::unit(r.tok[t]))
        .collect();
    let positions = r
        .pos
        .iter()
        .map(|&p| SparseVec::from_entries([(p, int(1)), (r.one, int(1))]))
        .collect();
    (tokens, positions)
}

/// Head 1 (positional) and head 2.
pub fn heads(ts: &TaskSet, r: &Residual) -> Vec<Head<Rat>> {
    heads_with(
        ts,
        r,
        &Head1::design(ts, super::head1::Head1Mode::Positional),
    )
}

/// Head 1 as designed and head 2.
pub fn heads_with(ts: &TaskSet, r: &Residual, head1: &Head1) -> Vec<Head<Rat>> {
    let d = r.basis.len();

    // Head 1: q = 1 (from `one`), k_j = j (from pos:j), so score = j. The
    // content head adds one q·k coordinate per attended symbol σ ("attend
    // σ"): the query writes S·level(c, σ) from tok:c, the key writes 1 from
    // every token whose symbol is σ, so the product is S·level(c, σ_j).
    let attended: Vec<Symbol> = head1
        .levels
        .keys()
        .map(|(_, a)| *a)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut qk = Basis::default();
    qk.add("position");
    let symbol_name = |s: Symbol| match s {
        Symbol::Word(w) => ts.vocab.name(w).to_string(),
        Symbol::Entity => super::residual::ENTITY_SYMBOL.to_string(),
    };
    for &a in &attended {
        qk.add(format!("attend {}", symbol_name(a)));
    }
    let mut query = LinearMap::zero(d, qk.len());
    query.add(0, r.one, int(1));
    let mut key = LinearMap::zero(d, qk.len());
    for (j, &p) in r.pos.iter().enumerate() {
        key.add(0, p, int(j as i64 + 1));
    }
    for (slot, &a) in attended.iter().enumerate() {
        for t in 0..ts.vocab.len() {
            let level = head1.level(head1.symbol(t), a);
            if level != 0 {
                query.add(slot + 1, r.tok[t], int(head1.spacing * level));
            }
            if head1.symbol(t) == a {
                key.add(slot + 1, r.tok[t], int(1));
            }
        }
    }
    let block = r.syntactic_block();
    let mut values = Basis::default();
    for &dir in &block {
        values.add(
            r.basis
                .direction(dir)
                .value_slot()
                .expect("a head-1 symbol"),
        );
    }
    let slot = |dir: usize| block.binary_search(&dir).unwrap_or(0);
    let mut value = LinearMap::zero(d, block.len());
    for t in 0..ts.vocab.len() {
        value.add(slot(r.h1[t]), r.tok[t], int(1));
    }
    let mut output = LinearMap::zero(block.len(), d);
    for (s, &dir) in block.iter().enumerate() {
        output.add(dir, s, int(1));
    }
    let syntactic = Head {
        name: match head1.mode {
            super::head1::Head1Mode::Positional => "head1 (syntactic)".into(),
            super::head1::Head1Mode::Content => "head1 (syntactic, content)".into(),
        },
        qk,
        values,
        query,
        key,
        value,
        output,
    };

    // Head 2: zero query and key, so every score is 0 and weights are 1/i.
    let entities: Vec<(TokenId, usize)> = (0..ts.vocab.len())
        .filter_map(|t| r.entity(t).map(|dir| (t, dir)))
        .collect();
    let mut values = Basis::default();
    let mut value = LinearMap::zero(d, entities.len());
    let mut output = LinearMap::zero(entities.len(), d);
    for (s, &(t, dir)) in entities.iter().enumerate() {
        values.add(ts.vocab.name(t));
        value.add(s, r.tok[t], int(1));
        output.add(dir, s, int(1));
    }
    let mut qk = Basis::default();
    qk.add("uniform");
    let key_head = Head {
        name: "head2 (key)".into(),
        qk,
        values,
        query: LinearMap::zero(d, 1),
        key: LinearMap::zero(d, 1),
        value,
        output,
    };
    vec![syntactic, key_head]
}

/// The hidden state A' = A + MHA(A) at the last position of `tokens`, in
/// closed form: what the heads above compute by design. Router synthesis
/// trains on it; the verifier checks the router on the real forward pass,
/// so a mismatch here would surface as a routing failure, never hide one.
///
/// This is the positional head 1; [`hidden_state_with`] takes either head.
pub fn hidden_state(r: &Residual, tokens: &[TokenId]) -> SparseVec<Rat> {
    let i = tokens.len();
    // Position j's weight 2^{j+1} / (2^{i+1} − 2) is 2^j / (2^i − 1), so a
    // direction's summed weight has numerator Σ 2^j over its positions: the
    // bits j set, then one Lehmer reduction (`scalar::gcd`) per direction.
    // A binary gcd of i-bit numbers per position made a 2,000-word
    // template's dense build 95% gcd.
    let total = (BigInt::from(1) << i) - BigInt::from(1);
    let mut at: Vec<(usize, usize)> = tokens
        .iter()
        .enumerate()
        .map(|(j, &t)| (r.h1[t], j))
        .collect();
    at.sort_unstable();
    let weights = at.chunk_by(|a, b| a.0 == b.0).map(|run| {
        let top = run.last().map_or(0, |&(_, j)| j);
        let mut digits = vec![0u32; top / 32 + 1];
        for &(_, j) in run {
            digits[j / 32] |= 1 << (j % 32);
        }
        let n = BigInt::from(BigUint::new(digits));
        (run[0].0, crate::scalar::gcd::reduced(n, total.clone()))
    });
    assemble_summed(r, tokens, weights)
}

/// The hidden state in closed form for the given head 1: its weights come
/// from [`Head1::weights`] on the tokens' symbols.
pub fn hidden_state_with(r: &Residual, head1: &Head1, tokens: &[TokenId]) -> SparseVec<Rat> {
    let symbols: Vec<Symbol> = tokens.iter().map(|&t| head1.symbol(t)).collect();
    // Each h1 direction's weight summed as integers over the common
    // denominator, then reduced once: the same rationals as summing the
    // reduced weights, without a gcd per position.
    let (powers, total) = head1.powers(&symbols);
    let mut by_direction: Vec<(usize, BigInt)> = tokens
        .iter()
        .zip(powers)
        .map(|(&t, p)| (r.h1[t], p))
        .collect();
    by_direction.sort_by_key(|(d, _)| *d);
    let mut summed: Vec<(usize, BigInt)> = Vec::with_capacity(by_direction.len());
    for (d, p) in by_direction {
        match summed.last_mut() {
            Some((last, acc)) if *last == d => *acc += p,
            _ => summed.push((d, p)),
        }
    }
    // Reduced by Lehmer's gcd (`scalar::gcd`): `Rat::new`'s binary gcd of
    // L-bit numbers was a third of a 300-word template's construction.
    let weights = summed
        .into_iter()
        .map(|(d, p)| (d, crate::scalar::gcd::reduced(p, total.clone())));
    assemble_summed(r, tokens, weights)
}

/// A' from head 1's output as (direction, weight) entries.
fn assemble_summed(
    r: &Residual,
    tokens: &[TokenId],
    h1: impl Iterator<Item = (usize, Rat)>,
) -> SparseVec<Rat> {
    let i = tokens.len();
    let last = tokens[i - 1];
    // Head 2: weight 1/i on every entity.
    let h2 = tokens.iter().filter_map(|&t| {
        r.entity(t)
            .map(|dir| (dir, Rat::new(1.into(), (i as i64).into())))
    });
    SparseVec::from_entries(
        [
            (r.tok[last], int(1)),
            (r.pos[i - 1], int(1)),
            (r.one, int(1)),
        ]
        .into_iter()
        .chain(h1)
        .chain(h2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The construction [`hidden_state`] replaced: one reduced weight
    /// 2^{j+1} / (2^{i+1} − 2) per position, added up by
    /// `SparseVec::from_entries`.
    fn per_position(r: &Residual, tokens: &[TokenId]) -> SparseVec<Rat> {
        let i = tokens.len();
        let total = (BigInt::from(1) << (i + 1)) - BigInt::from(2);
        let h1 = tokens
            .iter()
            .enumerate()
            .map(|(j, &t)| (r.h1[t], Rat::new(BigInt::from(1) << (j + 1), total.clone())));
        assemble_summed(r, tokens, h1)
    }

    /// Bits set and one Lehmer reduction per direction give the same
    /// rationals as the per-position sum, on every prefix of the running
    /// example and of a 150-word template (20 words, each at 7 or 8
    /// positions; head 1's denominators pass 130 bits).
    #[test]
    fn summed_head1_weights_are_the_per_position_sum() {
        let mut long_checked = 0;
        for ts in [
            crate::fixtures::task_set("running_example.toml"),
            crate::fixtures::one_long_template(150, 20),
        ] {
            let r = Residual::new(&ts);
            for p in &ts.prefixes {
                let fast = hidden_state(&r, &p.tokens);
                assert_eq!(
                    fast,
                    per_position(&r, &p.tokens),
                    "{}",
                    ts.render(&p.tokens)
                );
                if p.tokens.len() > 130 {
                    long_checked += 1;
                }
            }
        }
        assert!(long_checked >= 20, "{long_checked}");
        // Position weights 1/15, 2/15, 4/15, 8/15: w0 at 1 and 3 has
        // 10/15, reduced.
        let ts = crate::fixtures::one_long_template(3, 2);
        let r = Residual::new(&ts);
        let state = hidden_state(&r, &ts.tokenize("K1 w0 w1 w0").unwrap());
        let w0 = r.h1[ts.tokenize("w0").unwrap()[0]];
        assert_eq!(state.get(w0), crate::scalar::rat(2, 3));
    }
}
