//! f32, PyTorch's default dtype: the forward pass run honestly in single
//! precision (every sum, product and exp rounded to f32), so that `export
//! --dtype f32` can tell whether a file of f32 weights still takes every
//! decision routecert verified.

use super::{ArithError, Rat, Scalar};
use num_traits::ToPrimitive;

impl Scalar for f32 {
    const NAME: &'static str = "f32";

    fn from_rat(r: &Rat) -> Self {
        r.to_f32().unwrap_or(if r < &Rat::from_integer(0.into()) {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        })
    }

    fn exp2(&self) -> Result<Self, ArithError> {
        Ok(f32::exp2(*self))
    }

    fn exp(&self) -> Result<Self, ArithError> {
        Ok(f32::exp(*self))
    }

    fn show(&self) -> String {
        format!("{self:.6}")
    }

    fn text(&self) -> String {
        format!("{self:e}")
    }
}

#[cfg(test)]
mod tests {
    use crate::scalar::{Scalar, rat};

    #[test]
    fn f32_rounds_where_f64_does_not() {
        // 2^24 + 1 is the first integer f32 cannot hold.
        let big = <f32 as Scalar>::from_rat(&rat(16_777_217, 1));
        assert_eq!(big, 16_777_216.0);
        assert_eq!(<f64 as Scalar>::from_rat(&rat(16_777_217, 1)), 16_777_217.0);
        assert_eq!(Scalar::exp(&0.0f32).unwrap(), 1.0);
    }
}
