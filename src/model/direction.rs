//! Typed residual directions: what each coordinate of the residual stream
//! means, in the paper's terms.
//!
//! A direction is displayed as the name reports, model files and JSON have
//! always used ("tok:Paris", "pos:3", "h1:is", "h2:Paris", "out:France",
//! "keys:capital", ...), so typing the basis changes no output. A model file
//! written elsewhere may name its coordinates anything: those are
//! [`Direction::Named`], and reading a file back needs no routecert
//! vocabulary.

use std::fmt;

/// The syntactic symbol every entity maps to in head 1's block (template
/// words cannot contain braces, so it never collides with a word).
pub const ENTITY_SYMBOL: &str = "{entity}";

/// A feature of the entities seen so far that the dense model's head 2
/// writes for its task gates (Theorem 4.1), beside the MoE model's h2:e.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntityFeature {
    /// h2:{entity}: every entity.
    Count,
    /// h2:{key of k}: every key of task k.
    KeyOf(String),
    /// h2:{value of k}: every value of task k.
    ValueOf(String),
}

impl fmt::Display for EntityFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntityFeature::Count => f.write_str(ENTITY_SYMBOL),
            EntityFeature::KeyOf(task) => write!(f, "{{key of {task}}}"),
            EntityFeature::ValueOf(task) => write!(f, "{{value of {task}}}"),
        }
    }
}

/// One residual direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `one`: constant 1, written by every position embedding.
    One,
    /// `tok:t`: the current token is t.
    Token(String),
    /// `pos:i`: the current position is i (1-based).
    Position(usize),
    /// `h1:w`: head 1's output on the syntactic symbol of template word w.
    Symbol(String),
    /// `h1:{entity}`: head 1's output on the symbol every entity shares.
    EntitySymbol,
    /// `h2:e`: head 2's output on entity e.
    Entity(String),
    /// `out:t`: read by W_U as the logit of token t.
    Output(String),
    /// `keys:k`: spread by W_U over every key of task k.
    Keys(String),
    /// `h2:{entity}`, `h2:{key of k}`, `h2:{value of k}` (the dense model's
    /// gate features), primed `primes` times where an entity of the same
    /// name already took the plain name.
    Feature {
        feature: EntityFeature,
        primes: usize,
    },
    /// A coordinate of a model file, by whatever name the file gives it.
    Named(String),
}

impl Direction {
    /// The name of the head value slot that W_O copies onto this direction
    /// (head 1's symbols, head 2's entities and features), if any.
    pub fn value_slot(&self) -> Option<String> {
        match self {
            Direction::Symbol(w) => Some(w.clone()),
            Direction::EntitySymbol => Some(ENTITY_SYMBOL.to_string()),
            Direction::Entity(e) => Some(e.clone()),
            Direction::Feature { feature, primes } => {
                Some(format!("{feature}{}", "'".repeat(*primes)))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Direction::One => f.write_str("one"),
            Direction::Token(t) => write!(f, "tok:{t}"),
            Direction::Position(i) => write!(f, "pos:{i}"),
            Direction::Symbol(_) | Direction::EntitySymbol => {
                write!(f, "h1:{}", self.value_slot().unwrap_or_default())
            }
            Direction::Entity(_) | Direction::Feature { .. } => {
                write!(f, "h2:{}", self.value_slot().unwrap_or_default())
            }
            Direction::Output(t) => write!(f, "out:{t}"),
            Direction::Keys(k) => write!(f, "keys:{k}"),
            Direction::Named(name) => f.write_str(name),
        }
    }
}

impl From<String> for Direction {
    fn from(name: String) -> Direction {
        Direction::Named(name)
    }
}

impl From<&str> for Direction {
    fn from(name: &str) -> Direction {
        Direction::Named(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_display_as_the_residual_names() {
        let cases = [
            (Direction::One, "one"),
            (Direction::Token("Paris".into()), "tok:Paris"),
            (Direction::Position(3), "pos:3"),
            (Direction::Symbol("is".into()), "h1:is"),
            (Direction::EntitySymbol, "h1:{entity}"),
            (Direction::Entity("Paris".into()), "h2:Paris"),
            (Direction::Output("France".into()), "out:France"),
            (Direction::Keys("capital".into()), "keys:capital"),
            (
                Direction::Feature {
                    feature: EntityFeature::Count,
                    primes: 0,
                },
                "h2:{entity}",
            ),
            (
                Direction::Feature {
                    feature: EntityFeature::KeyOf("capital".into()),
                    primes: 2,
                },
                "h2:{key of capital}''",
            ),
            (
                Direction::Feature {
                    feature: EntityFeature::ValueOf("capital".into()),
                    primes: 0,
                },
                "h2:{value of capital}",
            ),
            (Direction::Named("blocks.0.hook".into()), "blocks.0.hook"),
        ];
        for (d, name) in cases {
            assert_eq!(d.to_string(), name);
        }
        // A word may look like a prefixed name: its slot is the word itself.
        assert_eq!(
            Direction::Symbol("h1:x".into()).value_slot().as_deref(),
            Some("h1:x")
        );
        assert_eq!(Direction::Position(1).value_slot(), None);
    }
}
