//! A construction as a float model file holds it: what `routecert export`
//! writes and any reader gets back (docs/model-file.md).
//!
//! Every weight is rounded to the nearest f64 (a dyadic rational), and ln 2
//! is folded into W_Q so that attention is an ordinary natural-exp softmax:
//! the scores leave the ln 2 grid and the softmax weights become
//! irrational, which only the interval path ([`crate::verify::interval`])
//! decides. Tests and benchmarks use it until a file reader is at hand;
//! it reads the weights only.

use crate::model::{Model, ScoreUnit};
use crate::scalar::Rat;
use num_traits::ToPrimitive;

/// The f64 nearest to ln 2.
pub const LN2_F64: f64 = std::f64::consts::LN_2;

/// The dyadic rational nearest to r in f64 (r must be within f64 range).
pub fn nearest_dyadic(r: &Rat) -> Rat {
    let x = r.to_f64().unwrap_or(0.0);
    Rat::from_float(x).unwrap_or_default()
}

/// The model as a float64 export of it reads back: W_Q · ln 2 in natural
/// units, every weight rounded to f64. (`ScoreUnit::Ln2` models only: a
/// natural-unit model is returned rounded, W_Q unscaled.)
pub fn float_image(model: &Model<Rat>) -> Model<Rat> {
    let mut out = model.map(nearest_dyadic);
    if model.score_unit == ScoreUnit::Ln2 {
        for (h, head) in out.heads.iter_mut().enumerate() {
            head.query = model.heads[h].query.map(&|w: &Rat| {
                nearest_dyadic(
                    &Rat::from_float(w.to_f64().unwrap_or(0.0) * LN2_F64).unwrap_or_default(),
                )
            });
        }
        out.score_unit = ScoreUnit::Natural;
    }
    out
}
