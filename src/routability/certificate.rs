//! Certificates that no linear router exists, and their checker.
//!
//! A certificate names everything: prefixes by their tokens, experts by
//! name, multipliers as exact rationals in text ("3/2"), the router's input
//! directions by residual name. It serialises to JSON and back without loss.
//!
//! The checker shares nothing with the solver. It takes the task set (the
//! oracle: which prefixes exist and their compatible tasks C(w)) and the
//! model (its weights: every router input x̃ is recomputed by
//! [`crate::eval::forward`] and read off the directions the model's router
//! reads, plus a constant 1 for a bias), and verifies in exact arithmetic:
//!
//! - Farkas: every row is a constraint any correct router must satisfy
//!   strictly, s_task(x̃) > s_against(x̃): either the row's prefixes share one
//!   router input and their C(w) intersect in exactly {task} (the router
//!   must choose task there, strictly above every expert outside some
//!   C(w)), or the row is "task beats every expert outside I" under the
//!   assumption of an enclosing case. Every multiplier is ≥ 0, one is > 0,
//!   and Σ λ·(e_task − e_against) ⊗ x̃ is zero on every (expert, direction).
//!   Then for any router W the weighted sum of the scores' differences is 0,
//!   yet each term is > 0 or has λ = 0, and one has λ > 0: a contradiction.
//! - Cases: the listed prefixes share one router input; a correct router
//!   sends it to some expert k of I = ∩ C(w), strictly above every expert
//!   outside I. The cases must cover I, and each case's proof may use the
//!   rows "k beats e" for e ∉ I at that input.
//! - Identical inputs: the prefixes share one router input and no task is
//!   compatible with all of them, so no router serves them all.
//!
//! With the bias in the combination, a certificate refutes affine routers,
//! and so linear ones too (a router reading only head 1 has no bias in the
//! model, but its bias is a weight on Σ h1 = 1 anyway).

use crate::eval::forward;
use crate::model::Model;
use crate::scalar::{Rat, parse_rational};
use crate::taskset::TaskSet;
use num_traits::{Signed, Zero};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// The name of the bias feature in `reads`.
pub const BIAS: &str = "1";

/// A prefix, by its tokens.
pub type Tokens = Vec<String>;

/// A proof that no linear router over `reads` routes every prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// The residual directions the router reads, then "1" for the bias.
    pub reads: Vec<String>,
    pub proof: Proof,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Proof {
    /// Prefixes with one router input and no common compatible task.
    IdenticalInputs { prefixes: Vec<Tokens> },
    /// Nonnegative multipliers on routing constraints that sum to zero.
    Farkas { rows: Vec<Row> },
    /// The router sends these prefixes' input to some task of their common
    /// C(w); every case is refuted.
    Cases {
        prefixes: Vec<Tokens>,
        cases: Vec<Case>,
    },
}

/// λ × (score of `task` − score of `against`) at the prefixes' input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub prefixes: Vec<Tokens>,
    pub task: String,
    pub against: String,
    pub multiplier: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub task: String,
    pub proof: Proof,
}

impl Certificate {
    /// Every prefix the proof uses, once, in order of appearance.
    pub fn prefixes(&self) -> Vec<Tokens> {
        let mut out: Vec<Tokens> = Vec::new();
        self.proof.collect(&mut out);
        out
    }

    /// Rows over the whole proof.
    pub fn rows(&self) -> usize {
        self.proof.rows()
    }
}

impl Proof {
    fn collect(&self, out: &mut Vec<Tokens>) {
        let add = |p: &Tokens| {
            if !out.contains(p) {
                out.push(p.clone())
            }
        };
        match self {
            Proof::IdenticalInputs { prefixes } => prefixes.iter().for_each(add),
            Proof::Farkas { rows } => rows.iter().flat_map(|r| &r.prefixes).for_each(add),
            Proof::Cases { prefixes, cases } => {
                prefixes.iter().for_each(add);
                for case in cases {
                    case.proof.collect(out);
                }
            }
        }
    }

    fn rows(&self) -> usize {
        match self {
            Proof::IdenticalInputs { .. } => 0,
            Proof::Farkas { rows } => rows.len(),
            Proof::Cases { cases, .. } => cases.iter().map(|c| c.proof.rows()).sum(),
        }
    }
}

/// Why the checker rejects a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the certificate reads [{claimed}] but the model's router reads [{actual}]")]
    Reads { claimed: String, actual: String },
    #[error("\"{0}\" is not a prefix of any sentence of the spec")]
    NotAPrefix(String),
    #[error("the forward pass failed on \"{0}\": {1}")]
    Forward(String, String),
    #[error("{0} is not an expert of the model")]
    UnknownExpert(String),
    #[error("row {row}: multiplier \"{value}\" is not a nonnegative rational")]
    Multiplier { row: usize, value: String },
    #[error("row {0}: a constraint needs two different experts")]
    SameExpert(usize),
    #[error("a row or case lists no prefix")]
    NoPrefix,
    #[error("\"{0}\" and \"{1}\" do not have the same router input")]
    NotIdentical(String, String),
    #[error(
        "row {row}: no correct router needs {task} strictly above {against} at \"{prefix}\" (C(w) ∩ … = {{{common}}}, and no case assumes it)"
    )]
    NotRequired {
        row: usize,
        task: String,
        against: String,
        prefix: String,
        common: String,
    },
    #[error("the combination is not zero: {value} on {expert} × {direction}")]
    NonZero {
        expert: String,
        direction: String,
        value: String,
    },
    #[error("every multiplier is zero")]
    AllZero,
    #[error("the prefixes share the compatible task(s) {0}, so one input can go there")]
    SharedTask(String),
    #[error("the cases [{cases}] do not cover the compatible tasks {{{tasks}}}")]
    Uncovered { cases: String, tasks: String },
}

/// What an accepted certificate covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub rows: usize,
    pub prefixes: usize,
}

/// A router input, and the experts compatible with a prefix.
#[derive(Clone)]
struct Input {
    x: Vec<Rat>,
    compatible: BTreeSet<usize>,
}

/// An enclosing case: at input x the router chooses `task` among `tasks`.
struct Assumption {
    x: Vec<Rat>,
    tasks: BTreeSet<usize>,
    task: usize,
}

struct Checker<'a> {
    ts: &'a TaskSet,
    model: &'a Model<Rat>,
    oracle: HashMap<Vec<usize>, &'a BTreeSet<usize>>,
    cache: HashMap<Tokens, Input>,
    /// Router input directions plus the bias.
    features: usize,
}

/// Check a certificate against the task set and the model's weights.
pub fn check(cert: &Certificate, ts: &TaskSet, model: &Model<Rat>) -> Result<Accepted, Rejection> {
    let actual: Vec<String> = model
        .router
        .inputs
        .iter()
        .map(|&d| model.residual.name(d).to_string())
        .chain([BIAS.to_string()])
        .collect();
    if cert.reads != actual {
        return Err(Rejection::Reads {
            claimed: cert.reads.join(", "),
            actual: actual.join(", "),
        });
    }
    let mut checker = Checker {
        ts,
        model,
        oracle: ts
            .prefixes
            .iter()
            .map(|p| (p.tokens.clone(), &p.tasks))
            .collect(),
        cache: HashMap::new(),
        features: actual.len(),
    };
    checker.proof(&cert.proof, &mut Vec::new())?;
    Ok(Accepted {
        rows: cert.rows(),
        prefixes: cert.prefixes().len(),
    })
}

impl Checker<'_> {
    fn expert(&self, name: &str) -> Result<usize, Rejection> {
        self.model
            .experts
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| Rejection::UnknownExpert(name.to_string()))
    }

    /// The router input of a prefix from the forward pass, and its
    /// compatible experts from the oracle (tasks matched to experts by name).
    fn input(&mut self, tokens: &Tokens) -> Result<Input, Rejection> {
        if let Some(input) = self.cache.get(tokens) {
            return Ok(input.clone());
        }
        let text = tokens.join(" ");
        let ids: Option<Vec<usize>> = tokens.iter().map(|t| self.ts.vocab.id(t)).collect();
        let tasks = ids
            .as_ref()
            .and_then(|ids| self.oracle.get(ids))
            .ok_or_else(|| Rejection::NotAPrefix(text.clone()))?;
        let compatible = tasks
            .iter()
            .filter_map(|&k| self.expert(&self.ts.tasks[k].name).ok())
            .collect();
        let model_ids: Vec<usize> = tokens
            .iter()
            .map(|t| {
                self.model
                    .token(t)
                    .ok_or_else(|| Rejection::NotAPrefix(text.clone()))
            })
            .collect::<Result<_, _>>()?;
        let trace = forward(self.model, &model_ids)
            .map_err(|e| Rejection::Forward(text.clone(), e.to_string()))?;
        let x: Vec<Rat> = self
            .model
            .router
            .inputs
            .iter()
            .map(|&d| trace.hidden.get(d))
            .chain([Rat::from_integer(1.into())])
            .collect();
        let input = Input { x, compatible };
        self.cache.insert(tokens.clone(), input.clone());
        Ok(input)
    }

    /// The shared input of some prefixes and the intersection of their
    /// compatible experts.
    fn shared(&mut self, prefixes: &[Tokens]) -> Result<(Vec<Rat>, BTreeSet<usize>), Rejection> {
        let first = prefixes.first().ok_or(Rejection::NoPrefix)?;
        let Input { x, mut compatible } = self.input(first)?;
        for p in &prefixes[1..] {
            let other = self.input(p)?;
            if other.x != x {
                return Err(Rejection::NotIdentical(first.join(" "), p.join(" ")));
            }
            compatible = compatible
                .intersection(&other.compatible)
                .copied()
                .collect();
        }
        Ok((x, compatible))
    }

    fn names(&self, experts: &BTreeSet<usize>) -> String {
        experts
            .iter()
            .map(|&e| self.model.experts[e].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn proof(&mut self, proof: &Proof, assumptions: &mut Vec<Assumption>) -> Result<(), Rejection> {
        match proof {
            Proof::IdenticalInputs { prefixes } => {
                let (_, common) = self.shared(prefixes)?;
                if common.is_empty() {
                    Ok(())
                } else {
                    Err(Rejection::SharedTask(self.names(&common)))
                }
            }
            Proof::Cases { prefixes, cases } => {
                let (x, tasks) = self.shared(prefixes)?;
                let covered: BTreeSet<usize> = cases
                    .iter()
                    .map(|c| self.expert(&c.task))
                    .collect::<Result<_, _>>()?;
                if !tasks.is_subset(&covered) {
                    return Err(Rejection::Uncovered {
                        cases: cases
                            .iter()
                            .map(|c| c.task.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        tasks: self.names(&tasks),
                    });
                }
                for case in cases {
                    let task = self.expert(&case.task)?;
                    assumptions.push(Assumption {
                        x: x.clone(),
                        tasks: tasks.clone(),
                        task,
                    });
                    let result = self.proof(&case.proof, assumptions);
                    assumptions.pop();
                    result?;
                }
                Ok(())
            }
            Proof::Farkas { rows } => self.farkas(rows, assumptions),
        }
    }

    fn farkas(&mut self, rows: &[Row], assumptions: &[Assumption]) -> Result<(), Rejection> {
        let experts = self.model.experts.len();
        let mut sum = vec![vec![Rat::zero(); self.features]; experts];
        let mut positive = false;
        for (index, row) in rows.iter().enumerate() {
            let number = index + 1;
            let lambda = parse_rational(&row.multiplier)
                .filter(|l| !l.is_negative())
                .ok_or_else(|| Rejection::Multiplier {
                    row: number,
                    value: row.multiplier.clone(),
                })?;
            let task = self.expert(&row.task)?;
            let against = self.expert(&row.against)?;
            if task == against {
                return Err(Rejection::SameExpert(number));
            }
            let (x, common) = self.shared(&row.prefixes)?;
            // Required outright: every correct router picks `task` here
            // (the only expert compatible with all these prefixes) strictly
            // above any expert outside some prefix's C(w), i.e. any other.
            let direct = common.len() == 1 && common.contains(&task);
            let assumed = assumptions
                .iter()
                .any(|a| a.x == x && a.task == task && !a.tasks.contains(&against));
            if !direct && !assumed {
                return Err(Rejection::NotRequired {
                    row: number,
                    task: row.task.clone(),
                    against: row.against.clone(),
                    prefix: row.prefixes[0].join(" "),
                    common: self.names(&common),
                });
            }
            positive |= lambda.is_positive();
            for (f, v) in x.iter().enumerate() {
                if v.is_zero() {
                    continue;
                }
                let term = &lambda * v;
                sum[task][f] += &term;
                sum[against][f] -= &term;
            }
        }
        if !positive {
            return Err(Rejection::AllZero);
        }
        for (e, row) in sum.iter().enumerate() {
            if let Some((f, value)) = row.iter().enumerate().find(|(_, v)| !v.is_zero()) {
                let direction = self
                    .model
                    .router
                    .inputs
                    .get(f)
                    .map_or(BIAS.to_string(), |&d| {
                        self.model.residual.name(d).to_string()
                    });
                return Err(Rejection::NonZero {
                    expert: self.model.experts[e].name.clone(),
                    direction,
                    value: value.to_string(),
                });
            }
        }
        Ok(())
    }
}
