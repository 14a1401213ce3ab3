//! Properties of the construction and of the verifier over random task sets
//! (docs/hypotheses.md states what they test).
//!
//! 1. Where the hypotheses cover a prefix, every claim holds there; where
//!    they hold on every prefix, every claim holds (exact arithmetic).
//! 2. The verifier's verdict on every prefix equals that of an independent
//!    reference (dense forward pass, brute-force oracle, own exp bounds),
//!    and routecert never reports success where the reference finds a
//!    failure, also on deliberately broken models.
//! 3. Expert k has (n_k − 1) + |Δk| neurons, never more than L·|T(k)| + |Δk|
//!    or c(k), and the same number when unrelated tasks are added.
//! 4. f64 and exact arithmetic take the same decisions wherever the exact
//!    margin exceeds the stated bound.
//! 5. The spec parser never panics, and every rejection names what is wrong.
//! 6. The dense model verifies wherever the hypotheses hold.
//!
//! Each property runs 256 cases by default; `PROPTEST_CASES=N` runs N. A
//! failing case is shrunk and printed as a spec: save it under
//! tests/regressions/ (the `regressions_replay` test runs every file there).
//!
//! One module a property (each with the mutation tests it must catch),
//! over a shared [`common`] module; one test binary, so the properties run
//! side by side as before.

#[path = "../reference/mod.rs"]
mod reference;
#[path = "../strategy/mod.rs"]
mod strategy;

mod common;
mod property1;
mod property2;
mod property3;
mod property4;
mod property5;
mod property6;
mod regressions;
