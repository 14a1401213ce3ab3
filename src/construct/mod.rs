//! Stage 3: build the weights of the paper's MoE model (Theorem 4.2) for a
//! task set, on named bases.
//!
//! The compiler is a chain of small stages, each in its own module:
//! - [`residual`]: name every residual direction;
//! - [`attention`]: embeddings, head 1 (syntactic) and head 2 (key);
//! - [`pattern`]: the syntactic patterns of each task's templates;
//! - [`expert`]: syntactic (interpolation) and semantic (recall) neurons;
//! - [`router`]: synthesise a linear top-1 router over exact features.

pub mod attention;
pub mod expert;
pub mod pattern;
pub mod residual;
pub mod router;

use crate::expbound::ln_ceiling;
use crate::model::{LinearMap, Model};
use crate::scalar::{Rat, int};
use crate::taskset::TaskSet;
use residual::Residual;

pub use router::RouterMode;

/// Choices the construction leaves open.
#[derive(Debug, Clone)]
pub struct Options {
    pub router: RouterMode,
    /// The target ε of the probability claim; sets the logit margins.
    pub epsilon: Rat,
    /// Perceptron epochs before router synthesis gives up.
    pub max_epochs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            router: RouterMode::SyntacticKey,
            epsilon: crate::scalar::rat(1, 1_000_000),
            max_epochs: 1000,
        }
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
        let n = ln_ceiling(&(int(vocab as i64) / epsilon));
        let semantic = int(n as i64 + 1);
        let syntactic = int(2 * max_len as i64) * &semantic + int(1);
        Margins {
            semantic,
            syntactic,
        }
    }
}

/// Build the MoE model for a task set.
pub fn build_moe(ts: &TaskSet, options: &Options) -> Model<Rat> {
    let residual = Residual::new(ts);
    let margins = Margins::new(ts.vocab.len(), ts.max_len, &options.epsilon);
    let (token_embed, pos_embed) = attention::embeddings(ts, &residual);
    let heads = attention::heads(ts, &residual);
    let experts = ts
        .tasks
        .iter()
        .enumerate()
        .map(|(k, _)| expert::build(ts, k, &residual, &margins))
        .collect();
    let router = router::synthesize(ts, &residual, options);
    let mut unembed = LinearMap::zero(residual.basis.len(), ts.vocab.len());
    for t in 0..ts.vocab.len() {
        unembed.add(t, residual.out[t], int(1));
    }
    for (k, task) in ts.tasks.iter().enumerate() {
        for key in task.keys() {
            unembed.add(key, residual.keys_of[k], int(1));
        }
    }
    Model {
        vocab: ts.vocab.names().to_vec(),
        residual: residual.basis,
        max_len: ts.max_len,
        token_embed,
        pos_embed,
        heads,
        router,
        experts,
        unembed,
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
    }
}
