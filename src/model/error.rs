//! Why a forward pass over a model could not run: the one error every
//! evaluator shares (exact and float in [`crate::eval`], rigorous intervals
//! in [`crate::interval`]), kept with the model so that neither evaluator
//! imports the other for it.

use crate::scalar::ArithError;

/// Why a forward pass could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("empty input: a prefix has at least one token")]
    Empty,
    #[error("input of {len} tokens exceeds the model's {max} positions")]
    TooLong { len: usize, max: usize },
    #[error("token id {0} is outside the vocabulary")]
    UnknownToken(usize),
    #[error("the model has no experts")]
    NoExperts,
    #[error(transparent)]
    Arith(#[from] ArithError),
}
