//! `Iv` as a [`Scalar`], so intervals run the same sparse algebra as the
//! other arithmetics; it joins the interval type ([`super::bound`]) with
//! its exponential ([`super::exp`]), which each stand alone.

use super::bound::Iv;
use super::exp::{LN2, exp};
use crate::scalar::{ArithError, Rat, Scalar};

/// Intervals run the same sparse algebra as the other arithmetics
/// ([`crate::model::LinearMap`], [`crate::model::SparseVec`]); the interval
/// forward pass ([`super::forward`]) decides routing and ReLU itself, since
/// an interval may not decide them.
impl Scalar for Iv {
    const NAME: &'static str = "interval";

    fn from_rat(r: &Rat) -> Iv {
        Iv::enclose(r)
    }

    fn exp2(&self) -> Result<Iv, ArithError> {
        Ok(exp(&(*self * LN2)))
    }

    fn exp(&self) -> Result<Iv, ArithError> {
        Ok(exp(self))
    }

    fn show(&self) -> String {
        if self.is_point() {
            format!("{}", self.lo())
        } else {
            format!("[{}, {}]", self.lo(), self.hi())
        }
    }
}
