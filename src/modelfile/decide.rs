//! routecert's own decision on every prefix (decisions.json), and the f32
//! check of `export --dtype f32`: the same decisions taken by the f32
//! forward pass of the f32 file's weights.

use super::error::ModelFileError;
use super::json::PrefixDecision;
use crate::eval::{Evaluator, Trace};
use crate::model::Model;
use crate::scalar::{FastRat, Rat, Scalar};
use crate::taskset::TaskSet;
use rayon::prelude::*;

/// One prefix's decisions in some arithmetic.
#[derive(Debug, Clone)]
pub struct Decided<S> {
    /// e*, the routed expert.
    pub expert: usize,
    /// Every token with the top logit, ascending.
    pub argmax: Vec<usize>,
    /// Top router score minus the best other one (None: one expert).
    pub router_margin: Option<S>,
    /// Top logit minus the best logit outside `argmax` (None: all tied).
    pub logit_margin: Option<S>,
}

/// Decisions of one trace.
pub fn decided<S: Scalar>(trace: &Trace<S>) -> Decided<S> {
    let scores = &trace.router_scores;
    let router_margin = scores
        .iter()
        .enumerate()
        .filter(|(e, _)| *e != trace.expert)
        .map(|(_, s)| s.clone())
        .reduce(|a, b| if b > a { b } else { a })
        .map(|other| scores[trace.expert].clone() - other);
    let logits = &trace.logits;
    let listed = logits.nonzero.entries();
    // Tokens not listed have logit exactly 0.
    let unlisted = logits.vocab_size > listed.len();
    let mut top = listed
        .iter()
        .map(|(_, z)| z.clone())
        .reduce(|a, b| if b > a { b } else { a });
    if unlisted && top.as_ref().is_none_or(|t| !t.is_positive()) {
        top = Some(S::zero());
    }
    let top = top.unwrap_or_else(S::zero);
    let value = |t: usize| logits.get(t);
    let argmax: Vec<usize> = (0..logits.vocab_size)
        .filter(|&t| value(t) == top)
        .collect();
    let mut runner_up: Option<S> = listed
        .iter()
        .filter(|(_, z)| *z != top)
        .map(|(_, z)| z.clone())
        .reduce(|a, b| if b > a { b } else { a });
    if unlisted && !top.is_zero() {
        runner_up = Some(match runner_up {
            Some(r) if r > S::zero() => r,
            _ => S::zero(),
        });
    }
    Decided {
        expert: trace.expert,
        argmax,
        router_margin,
        logit_margin: runner_up.map(|r| top.clone() - r),
    }
}

/// Model token ids of every prefix of the task set (names must match:
/// the reader and the exporter check that first).
pub fn inputs<S>(ts: &TaskSet, model: &Model<S>) -> Result<Vec<Vec<usize>>, ModelFileError> {
    let map = crate::verify::logits::token_map(ts, model);
    ts.prefixes
        .iter()
        .map(|p| {
            p.tokens
                .iter()
                .map(|t| {
                    map.get(t).copied().ok_or_else(|| {
                        ModelFileError::Refused(format!(
                            "the model has no token \"{}\"",
                            ts.vocab.name(*t)
                        ))
                    })
                })
                .collect()
        })
        .collect()
}

fn run_all<S: Scalar, T: Send>(
    model: &Model<S>,
    inputs: &[Vec<usize>],
    f: impl Fn(&Trace<S>) -> T + Sync,
) -> Result<Vec<T>, ModelFileError> {
    let engine = Evaluator::new(model).without_preactivations();
    inputs
        .par_iter()
        .map(|tokens| {
            engine
                .run(tokens)
                .map(|t| f(&t))
                .map_err(|e| ModelFileError::Refused(format!("forward pass: {e}")))
        })
        .collect()
}

/// The exact decisions on every prefix, with the exact logits rounded to
/// f64 when asked.
pub fn exact(
    ts: &TaskSet,
    model: &Model<Rat>,
    with_logits: bool,
) -> Result<(Vec<PrefixDecision>, Vec<Decided<Rat>>), ModelFileError> {
    let fast = model.map(FastRat::from_rat);
    let inputs = inputs(ts, model)?;
    let moe = model.circuits.is_empty();
    let results = run_all(&fast, &inputs, |t| {
        let d = decided(t);
        let logits = with_logits.then(|| {
            (0..t.logits.vocab_size)
                .map(|v| <f64 as Scalar>::from_rat(&t.logits.get(v).to_rat()))
                .collect()
        });
        let d = Decided {
            expert: d.expert,
            argmax: d.argmax,
            router_margin: d.router_margin.map(|m| m.to_rat()),
            logit_margin: d.logit_margin.map(|m| m.to_rat()),
        };
        (d, logits)
    })?;
    let mut out = Vec::with_capacity(results.len());
    let mut decided_all = Vec::with_capacity(results.len());
    for ((p, tokens), (d, logits)) in ts.prefixes.iter().zip(inputs).zip(results) {
        out.push(PrefixDecision {
            text: ts.render(&p.tokens),
            tokens,
            expert: moe.then_some(d.expert),
            argmax: d.argmax.clone(),
            logits,
        });
        decided_all.push(d);
    }
    Ok((out, decided_all))
}

/// How the f32 forward pass of a (natural-unit, f32-valued) model compares
/// with the exact decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct F32Check {
    /// Prefixes whose f32 decision differs: another expert, or a top token
    /// outside the exact argmax set.
    pub flips: usize,
    /// The first [`NAMED_FLIPS`] of them, each as text with what changed.
    pub named: Vec<String>,
}

/// How many flips an f32 check names (the count covers them all).
pub const NAMED_FLIPS: usize = 5;

/// Run `model` (the f32 file's weights, exactly) in f32 and compare with
/// `exact`: a prefix flips if its routed expert differs (MoE) or its first
/// f32 argmax token (what torch.argmax returns) is not an exact argmax.
pub fn check_f32(
    ts: &TaskSet,
    model: &Model<Rat>,
    exact: &[PrefixDecision],
) -> Result<F32Check, ModelFileError> {
    let single = model.map(<f32 as Scalar>::from_rat);
    let inputs = inputs(ts, model)?;
    let moe = model.circuits.is_empty();
    let got = run_all(&single, &inputs, |t| {
        let d = decided(t);
        (d.expert, d.argmax.first().copied())
    })?;
    let mut check = F32Check {
        flips: 0,
        named: Vec::new(),
    };
    let expert = |e: usize| model.experts.get(e).map_or("?", |x| x.name.as_str());
    let token = |t: usize| model.vocab.get(t).map_or("?", String::as_str);
    for (want, (routed_to, top)) in exact.iter().zip(got) {
        let routed = !moe || want.expert == Some(routed_to);
        let right_token = top.is_some_and(|t| want.argmax.contains(&t));
        if !(routed && right_token) {
            check.flips += 1;
            if check.named.len() < NAMED_FLIPS {
                let what = if !routed {
                    format!(
                        "routed to {} instead of {}",
                        expert(routed_to),
                        want.expert.map_or("?", expert)
                    )
                } else {
                    format!(
                        "top token {} instead of {}",
                        top.map_or("none", token),
                        want.argmax.first().map_or("?", |&t| token(t))
                    )
                };
                check.named.push(format!("\"{}\" {what}", want.text));
            }
        }
    }
    Ok(check)
}
