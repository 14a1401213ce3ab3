//! The construction's design choices that depend on the task set alone:
//! the logit margins β_sem, β_syn and which residual family the router may
//! read. `construct` builds weights from them and `hypotheses` states the
//! construction's guarantees from them, without either importing the other.

use crate::expbound::ln_ceiling;
use crate::scalar::{Rat, int};
use std::fmt;
use std::str::FromStr;

/// What the router may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RouterMode {
    /// Only head 1's block, as Theorem 4.2 states.
    Syntactic,
    /// Head 1, head 2 (the key), the position and the current token.
    #[default]
    #[value(name = "syntactic+key")]
    SyntacticKey,
}

impl fmt::Display for RouterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouterMode::Syntactic => "syntactic",
            RouterMode::SyntacticKey => "syntactic+key",
        })
    }
}

impl FromStr for RouterMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "syntactic" => Ok(RouterMode::Syntactic),
            "syntactic+key" => Ok(RouterMode::SyntacticKey),
            other => Err(format!(
                "unknown router '{other}' (expected syntactic or syntactic+key)"
            )),
        }
    }
}

impl RouterMode {
    /// The directions it reads, as a phrase for messages.
    pub fn describe(self) -> &'static str {
        match self {
            RouterMode::Syntactic => "the syntactic block (h1)",
            RouterMode::SyntacticKey => "h1, h2 (the key), pos and tok",
        }
    }
}

/// How the router's weights are synthesised (`--router-synthesis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RouterSynthesis {
    /// The integer perceptron (with key decomposition, H-R securing and the
    /// exact LP fallback): the smallest training effort, but its weights
    /// are sums of whole samples, so margins are tiny relative to them.
    #[default]
    Perceptron,
    /// Presolve by task-exclusive features plus an f64 max-margin LP on the
    /// rest, rounded to integers and checked exactly: every margin is a
    /// sizeable fraction of the scores it separates, so an f32 copy keeps
    /// every decision (docs/export.md). Falls back to the perceptron when
    /// the exact check fails.
    MaxMargin,
}

impl fmt::Display for RouterSynthesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouterSynthesis::Perceptron => "perceptron",
            RouterSynthesis::MaxMargin => "max-margin",
        })
    }
}

/// The logit scales of the construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Margins {
    /// β_sem: the logit a semantic neuron puts on a value (at least at the
    /// query position). An integer with e^{β_sem − 1} ≥ |V|/ε, so that
    /// |V| invalid tokens at a gap of β_sem carry mass below ε/e.
    pub semantic: Rat,
    /// β_syn = 2·L·β_sem + 1 > 2·L·β_sem: a syntactic target beats anything
    /// the (at most two) entities in a prefix add through semantic neurons.
    pub syntactic: Rat,
}

impl Margins {
    pub fn new(vocab: usize, max_len: usize, epsilon: &Rat) -> Margins {
        // ε below [`crate::scalar::MIN_EPSILON`] is refused where it is
        // parsed, so the limit is never reached here; were it reached, the
        // largest certified n still gives integer margins the verifier then
        // judges from the weights.
        let n =
            ln_ceiling(&(int(vocab as i64) / epsilon)).unwrap_or(crate::expbound::MAX_LN_CEILING);
        let semantic = int(n as i64 + 1);
        let syntactic = int(2 * max_len as i64) * &semantic + int(1);
        Margins {
            semantic,
            syntactic,
        }
    }

    /// The margins of the dense model where up to `m` tasks share one
    /// (key, value) pair. On a prefix claimed by several tasks all their
    /// circuits fire, and the semantic neurons of those for which it is no
    /// query add up on a value that is invalid there: on token b at most
    /// Σ_a (count of a / i)·#{j: (a, b) ∈ Δj}·L·β_sem ≤ m·L·β_sem (head 2's
    /// entity weights sum to at most 1). So β_syn = (m + 1)·L·β_sem + 1
    /// keeps the syntactic target L·β_sem + 1 above it, as 2·L·β_sem + 1
    /// does for m = 1 (unchanged then). Shared keys make m ≥ 2 common
    /// (`generate --shared-keys --seed 1`: "K0" is claimed by 5 tasks, two
    /// map it to V4, and 2·L·β_sem = 266 stood 1 below β_syn = 267).
    pub fn dense(self, m: usize, max_len: usize) -> Margins {
        if m <= 1 {
            return self;
        }
        let syntactic = int(((m + 1) * max_len) as i64) * &self.semantic + int(1);
        Margins { syntactic, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::rat;

    #[test]
    fn margins_follow_the_design() {
        // |V| = 15, ε = 1e-6: |V|/ε = 1.5e7, e^16 < 1.5e7 ≤ e^17, so β_sem = 18.
        let m = Margins::new(15, 6, &rat(1, 1_000_000));
        assert_eq!(m.semantic, int(18));
        assert_eq!(m.syntactic, int(2 * 6 * 18 + 1));
        // Three tasks sharing a pair: β_syn = 4·L·β_sem + 1; one: unchanged.
        assert_eq!(m.clone().dense(3, 6).syntactic, int(4 * 6 * 18 + 1));
        assert_eq!(m.clone().dense(1, 6), m);
    }

    #[test]
    fn router_modes_round_trip_through_their_names() {
        for mode in [RouterMode::Syntactic, RouterMode::SyntacticKey] {
            assert_eq!(mode.to_string().parse::<RouterMode>(), Ok(mode));
        }
        assert!("key".parse::<RouterMode>().is_err());
    }
}
