//! routecert builds the hand-designed weights of the single-layer
//! mixture-of-experts transformer of arXiv:2606.14398 ("A theoretical model
//! for task routing in mixture-of-expert transformers") from a task
//! specification, runs them in exact rational arithmetic, and proves or
//! refutes the paper's claims on every prefix.
//!
//! The pipeline, one module per stage, data flowing one way:
//! [`spec`] → [`taskset`] → [`construct`] → [`eval`] → [`verify`] →
//! [`report`] → [`cli`]. The weights live in [`model`] on named bases;
//! [`scalar`] and [`expbound`] are the arithmetic underneath, and [`lp`]
//! the exact linear programming (a float solver proposes, rationals decide)
//! that [`construct`] (router fallback, dense gates and projections) and
//! [`routability`] both call; [`lp`] imports neither. [`routability`] sits
//! beside [`verify`]: it reads the construction's router input and its
//! routing constraints ([`construct::router::system`]), never the reverse.
//!
//! [`hypotheses`] reads the task set alone (with [`design`]'s choices) and
//! feeds [`verify`]'s report. A model leaves and comes back through
//! [`modelfile`], which sits above [`verify`] (it writes routecert's own
//! decision on every prefix beside the weights);
//! weights that are not on routecert's grid are verified by [`interval`].
//! [`soft`] and [`star`] sit beside [`verify`] like [`routability`]: they
//! read a built model, never the reverse; their command-line hooks live in
//! [`cli`] (`cli::soft`), which alone knows clap and exit codes.
//!
//! No module imports one that imports it back. The shared pieces sit below
//! their users: the prefix grouping by router input that synthesis and
//! routability share is [`construct::router::inputs`]; the forward pass's
//! error ([`model::EvalError`]) lives with the model, so [`interval`]
//! (which [`eval`]'s dense pass uses for its enclosures) needs nothing from
//! [`eval`]; `cli::input` holds the flags and loaders every command shares.
//!
//! Around the pipeline: [`generate`] writes random task sets, [`sweep`]
//! varies one of their parameters, [`table`] measures expert size against
//! complexity on verified constructions and [`plot`] draws it.

pub mod cli;
pub mod construct;
pub mod design;
pub mod eval;
pub mod expbound;
#[doc(hidden)]
pub mod fixtures;
pub mod generate;
pub mod hypotheses;
pub mod interval;
pub mod lp;
pub mod memory;
pub mod model;
pub mod modelfile;
pub mod plot;
pub mod progress;
pub mod report;
pub mod routability;
pub mod scalar;
pub mod soft;
pub mod spec;
pub mod star;
pub mod sweep;
pub mod table;
pub mod taskset;
pub mod verify;
