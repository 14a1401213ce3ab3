//! Soft-to-hard routing (issue 16; arXiv:2605.02124 on our models): the
//! exact top-two router margins Δ(w) and the boundary mass m(w), the soft
//! MoE Σ_e softmax(G(x)/T)_e·FF_e(x) checked with rigorously bounded gate
//! weights, and the certified temperature T* below which every claim holds.
//!
//! - [`gate`]: bounds on the gate mass off the top expert, 1 − g_top;
//! - [`image`]: the same prefix in intervals, deciding most checks
//!   without exact arithmetic;
//! - [`prefix`]: one prefix's router gaps, hard logits and expert spread;
//! - [`certify`]: the soft claims at a temperature, and T*;
//! - [`margins`]: the margin distribution and the boundary-mass curve;
//! - [`deviation`]: how many prefixes' soft gates stray by more than δ,
//!   beside the boundary mass at T·ln((K−1)/δ);
//! - [`render`] and [`plot`]: text, JSON, Markdown, CSV and SVG.
//!
//! The command-line hooks (`verify --gate softmax`, `margins`) live in
//! [`crate::cli::soft`], above everything here.

pub mod certify;
pub mod deviation;
pub mod gate;
pub mod image;
pub mod margins;
pub mod plot;
pub mod prefix;
pub mod render;
