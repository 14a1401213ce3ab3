//! `--arith both`: every decision the exact run took, set against the f64
//! run's. Exact decides; a disagreement means f64 would have told the user
//! something false (or, on P, that the certificate is looser than the
//! float estimate), and is listed with both outcomes.

use super::{Claims, Verdict};
use serde::Serialize;
use std::collections::HashMap;

/// One decision: a claim on a subject (a prefix, a task, or "task: prefix"
/// for isolation) and its outcome ("holds", "fails", "holds (expert k)").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub claim: &'static str,
    pub subject: String,
    pub outcome: String,
}

impl Decision {
    pub fn new(claim: &'static str, subject: &str, outcome: String) -> Decision {
        Decision {
            claim,
            subject: subject.to_string(),
            outcome,
        }
    }
}

/// A decision on which the two arithmetics differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub claim: &'static str,
    pub subject: String,
    pub exact: String,
    pub f64: String,
}

/// The f64 run next to the exact one.
#[derive(Debug, Clone, Serialize)]
pub struct CrossCheck {
    /// The claims as the f64 run decided them.
    pub f64_claims: Claims,
    /// Decisions compared.
    pub decisions: usize,
    pub disagreements: Vec<Disagreement>,
}

/// Compare two verdicts of the same model and task set, decision by
/// decision (matched by claim and subject; one missing on either side is a
/// disagreement too).
pub fn cross_check(exact: &Verdict, float: &Verdict) -> CrossCheck {
    let absent = || "(not decided)".to_string();
    let floats: HashMap<(&str, &str), &str> = float
        .decisions
        .iter()
        .map(|d| ((d.claim, d.subject.as_str()), d.outcome.as_str()))
        .collect();
    let mut disagreements: Vec<Disagreement> = exact
        .decisions
        .iter()
        .filter_map(|d| {
            let f = floats.get(&(d.claim, d.subject.as_str())).copied();
            (f != Some(d.outcome.as_str())).then(|| Disagreement {
                claim: d.claim,
                subject: d.subject.clone(),
                exact: d.outcome.clone(),
                f64: f.map_or_else(absent, str::to_string),
            })
        })
        .collect();
    let exacts: HashMap<(&str, &str), &str> = exact
        .decisions
        .iter()
        .map(|d| ((d.claim, d.subject.as_str()), d.outcome.as_str()))
        .collect();
    disagreements.extend(
        float
            .decisions
            .iter()
            .filter(|d| !exacts.contains_key(&(d.claim, d.subject.as_str())))
            .map(|d| Disagreement {
                claim: d.claim,
                subject: d.subject.clone(),
                exact: absent(),
                f64: d.outcome.clone(),
            }),
    );
    CrossCheck {
        f64_claims: float.claims.clone(),
        decisions: exact.decisions.len(),
        disagreements,
    }
}
