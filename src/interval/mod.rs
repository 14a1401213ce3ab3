//! Rigorous interval evaluation of weights that are not on routecert's
//! grid: natural-exp attention (a float file read back, `ScoreUnit::Natural`)
//! whose softmax weights are irrational.
//!
//! [`bound::Iv`] is an interval with dyadic endpoints rounded outward;
//! [`exp`] bounds e^x in it; [`forward`] runs the one-layer model on
//! intervals, sharing the per-(position, token) work across prefixes as
//! [`crate::eval::Evaluator`] does, and reports what the intervals decide
//! (which experts may be chosen, which neurons surely or possibly fire).
//! The claims are decided from these in [`crate::verify::interval`].

pub mod arith;
pub mod bound;
pub mod exp;
pub mod float_image;
pub mod forward;
pub mod refine;

pub use bound::Iv;
