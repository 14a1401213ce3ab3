//! The residual stream's typed directions ([`Direction`]), indexed by role.
//!
//! Families (a name never collides across families, and template words
//! cannot contain braces, so "{entity}" is free for the entity symbol):
//! - `one`: constant 1, written by every position embedding;
//! - `tok:t`: the current token; `pos:i`: the current position;
//! - `h1:σ`: head 1's output, one coordinate per syntactic symbol σ (a
//!   template word, or `{entity}` for every key and value);
//! - `h2:e`: head 2's output, one coordinate per entity;
//! - `out:t`: a direction W_U reads as the logit of token t;
//! - `keys:k`: a direction W_U spreads over every key of task k.

use crate::model::{Basis, Direction};
use crate::taskset::{TaskSet, TokenId, TokenKind};

/// The syntactic symbol every entity maps to.
pub use crate::model::ENTITY_SYMBOL;

/// Index of every named direction, by role.
#[derive(Debug, Clone)]
pub struct Residual {
    pub basis: Basis,
    pub one: usize,
    /// tok[t] for every token t.
    pub tok: Vec<usize>,
    /// pos[i - 1] for positions 1..=L.
    pub pos: Vec<usize>,
    /// h1[t]: the head-1 coordinate of token t's syntactic symbol.
    pub h1: Vec<usize>,
    /// h1 coordinate of the entity symbol.
    pub h1_entity: usize,
    /// h2[t]: the head-2 coordinate of entity t (None for words and `<eos>`).
    pub h2: Vec<Option<usize>>,
    pub out: Vec<usize>,
    pub keys_of: Vec<usize>,
}

impl Residual {
    pub fn new(ts: &TaskSet) -> Residual {
        let mut basis = Basis::default();
        let one = basis.add(Direction::One);
        let names = ts.vocab.names();
        let tok = names
            .iter()
            .map(|t| basis.add(Direction::Token(t.clone())))
            .collect();
        let pos = (1..=ts.max_len)
            .map(|i| basis.add(Direction::Position(i)))
            .collect();
        let h1_entity = basis.add(Direction::EntitySymbol);
        let h1 = (0..names.len())
            .map(|t| match ts.vocab.kind(t) {
                TokenKind::Word => basis.add(Direction::Symbol(names[t].clone())),
                TokenKind::Entity | TokenKind::Eos => h1_entity,
            })
            .collect();
        let h2 = (0..names.len())
            .map(|t| {
                (ts.vocab.kind(t) == TokenKind::Entity)
                    .then(|| basis.add(Direction::Entity(names[t].clone())))
            })
            .collect();
        let out = names
            .iter()
            .map(|t| basis.add(Direction::Output(t.clone())))
            .collect();
        let keys_of = ts
            .tasks
            .iter()
            .map(|k| basis.add(Direction::Keys(k.name.clone())))
            .collect();
        Residual {
            basis,
            one,
            tok,
            pos,
            h1,
            h1_entity,
            h2,
            out,
            keys_of,
        }
    }

    /// The head-1 directions (the syntactic block), in basis order.
    pub fn syntactic_block(&self) -> Vec<usize> {
        let mut dirs: Vec<usize> = self.h1.clone();
        dirs.push(self.h1_entity);
        dirs.sort_unstable();
        dirs.dedup();
        dirs
    }

    /// h2 direction of a token, if it is an entity.
    pub fn entity(&self, t: TokenId) -> Option<usize> {
        self.h2[t]
    }
}
