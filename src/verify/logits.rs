//! Claims P and A on one trace: the logits against the oracle's V(w), and
//! the largest logits by name for witnesses and `inspect`.

use super::arith::ClaimArith;
use crate::eval::{Logits, Trace};
use crate::model::Model;
use crate::scalar::{Rat, Scalar};
use crate::taskset::{Prefix, TaskSet, TokenId};
use std::collections::{BTreeSet, HashMap};

/// Logits shown in a witness.
pub(crate) const TOP_LOGITS: usize = 5;

/// Per-prefix outcome of the logit claims, shared with `inspect`.
#[derive(Debug, Clone)]
pub struct LogitCheck<S> {
    pub best_valid: S,
    pub best_invalid: Option<S>,
    /// P(invalid | w): certified upper bound (exact) or estimate (f64).
    pub invalid_bound: S,
}

impl<S: Scalar> LogitCheck<S> {
    pub fn argmax_valid(&self) -> bool {
        self.best_invalid
            .as_ref()
            .is_none_or(|b| self.best_valid > *b)
    }
}

/// Check the logit claims on one trace against V(w) (model token ids).
pub fn check_logits<S: ClaimArith>(
    trace: &Trace<S>,
    valid: &BTreeSet<usize>,
    cache: &mut S::Cache,
) -> LogitCheck<S> {
    let logits = &trace.logits;
    let valid_hist = logits.histogram(|t| valid.contains(&t), valid.len());
    let invalid_hist = logits.histogram(|t| !valid.contains(&t), logits.vocab_size - valid.len());
    let best = |h: &[(S, usize)]| {
        h.iter()
            .map(|(z, _)| z.clone())
            .reduce(|a, b| if b > a { b } else { a })
    };
    LogitCheck {
        best_valid: best(&valid_hist).unwrap_or_else(S::zero),
        best_invalid: best(&invalid_hist),
        invalid_bound: S::invalid_mass(&valid_hist, &invalid_hist, cache),
    }
}

/// The largest logits of a trace, by name.
pub fn top_logits<S: Scalar>(
    model: &Model<S>,
    trace: &Trace<S>,
    n: usize,
) -> Vec<(String, String)> {
    largest_logits(model, &trace.logits, n)
}

/// The largest of some logits, by name; tokens at 0 are counted, not named.
pub fn largest_logits<S: Scalar>(
    model: &Model<S>,
    logits: &Logits<S>,
    n: usize,
) -> Vec<(String, String)> {
    let mut entries: Vec<&(usize, S)> = logits.nonzero.entries().iter().collect();
    entries.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    let mut top: Vec<(String, String)> = entries
        .iter()
        .take(n)
        .map(|(t, z)| (model.vocab[*t].clone(), z.show()))
        .collect();
    if top.len() < n && logits.vocab_size > entries.len() {
        let rest = logits.vocab_size - entries.len();
        top.push((format!("({rest} other tokens)"), "0".into()));
    }
    top
}

/// Map task-set token ids to model token ids by name: the model carries its
/// own vocabulary, and the two paths meet only through names.
pub(crate) fn token_map<S>(ts: &TaskSet, model: &Model<S>) -> HashMap<TokenId, usize> {
    let by_name: HashMap<&str, usize> = model
        .vocab
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    ts.vocab
        .names()
        .iter()
        .enumerate()
        .filter_map(|(t, n)| by_name.get(n.as_str()).map(|&m| (t, m)))
        .collect()
}

/// The P and A verdicts of one trace against the oracle's V(w).
pub(crate) struct LogitVerdict<S> {
    pub check: LogitCheck<S>,
    pub probability: bool,
    pub retrieval: bool,
}

pub(crate) fn logit_verdict<S: ClaimArith>(
    trace: &Trace<S>,
    prefix: &Prefix,
    tokens: &HashMap<TokenId, usize>,
    epsilon: &S,
    cache: &mut S::Cache,
) -> LogitVerdict<S> {
    let valid: BTreeSet<usize> = prefix
        .valid_next
        .iter()
        .filter_map(|t| tokens.get(t).copied())
        .collect();
    let check = check_logits(trace, &valid, cache);
    LogitVerdict {
        probability: check.invalid_bound < *epsilon,
        retrieval: check.argmax_valid(),
        check,
    }
}

/// A small probability for a message: exact if short, else scientific.
pub(crate) fn show_small<S: Scalar>(p: &S) -> String {
    let t = p.text();
    if t.len() <= 24 {
        return t;
    }
    // `approx` again, without printing the (long) fraction a second time.
    match t.parse::<Rat>() {
        Ok(r) => format!("{:.3e}", <f64 as Scalar>::from_rat(&r)),
        _ => t,
    }
}

/// A rational for a message: exact if short, else scientific (display
/// only; no decision reads it).
pub fn approx(r: &Rat) -> String {
    let s = r.to_string();
    if s.len() <= 24 {
        return s;
    }
    format!("{:.3e}", <f64 as Scalar>::from_rat(r))
}

/// What the oracle says about a prefix `inspect` traces, with the model's
/// P(invalid) on it (the same bound `verify` decides P with).
#[derive(Debug, Clone)]
pub struct OracleFacts {
    pub tasks: Vec<String>,
    pub valid_next: Vec<String>,
    pub is_query: bool,
    /// Upper bound on P(invalid) (exact) or its f64 estimate.
    pub invalid_bound: super::verdict::Number,
    /// Whether `invalid_bound` is a certified bound.
    pub certified: bool,
}

/// The oracle's facts on prefix `p` (from the task set) beside the model's
/// P(invalid) on its trace (from the weights).
pub fn oracle_facts<S: ClaimArith>(
    ts: &TaskSet,
    model: &Model<S>,
    p: &Prefix,
    trace: &Trace<S>,
) -> OracleFacts {
    let valid = p
        .valid_next
        .iter()
        .filter_map(|&t| model.token(ts.vocab.name(t)))
        .collect();
    let check = check_logits(trace, &valid, &mut S::Cache::default());
    OracleFacts {
        tasks: p.tasks.iter().map(|&k| ts.tasks[k].name.clone()).collect(),
        valid_next: p
            .valid_next
            .iter()
            .map(|&t| ts.vocab.name(t).to_string())
            .collect(),
        is_query: p.is_query,
        invalid_bound: check.invalid_bound.number(),
        certified: S::CERTIFIED,
    }
}
