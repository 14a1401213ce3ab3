//! The running count of one claim over its checks (prefixes, experts or
//! circuits), folded in order into a [`ClaimResult`].

use super::arith::ClaimArith;
use super::verdict::ClaimResult;

/// Running tally of one claim.
pub(crate) struct Tally<S> {
    failures: usize,
    checked: usize,
    worst: Option<S>,
    /// Whether the worst case is the smallest value (margins) or the
    /// largest (P(invalid)).
    keep_min: bool,
}

impl<S: ClaimArith> Tally<S> {
    pub fn new(keep_min: bool) -> Self {
        Tally {
            failures: 0,
            checked: 0,
            worst: None,
            keep_min,
        }
    }

    pub fn record(&mut self, ok: bool, value: Option<S>) {
        self.checked += 1;
        if !ok {
            self.failures += 1;
        }
        if let Some(v) = value {
            self.keep_worse(v);
        }
    }

    /// Add another tally's checks to this one.
    pub fn merge(&mut self, other: Tally<S>) {
        self.checked += other.checked;
        self.failures += other.failures;
        if let Some(v) = other.worst {
            self.keep_worse(v);
        }
    }

    fn keep_worse(&mut self, v: S) {
        let worse = match &self.worst {
            None => true,
            Some(w) => (v < *w) == self.keep_min,
        };
        if worse {
            self.worst = Some(v);
        }
    }

    /// `margin` turns the worst case into the smallest margin.
    pub fn finish(self, margin: impl Fn(&S) -> S) -> ClaimResult {
        ClaimResult {
            holds: self.failures == 0,
            failures: self.failures,
            checked: self.checked,
            min_margin: self.worst.as_ref().map(|w| margin(w).number()),
            worst: self.worst.map(|w| w.number()),
        }
    }
}
