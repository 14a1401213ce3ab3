//! STAR (arXiv:2606.08814, structure-aware routing), decided exactly on a
//! construction's router inputs.
//!
//! STAR's gate is σ(α)⊙x·W_gᵀ + (1 − σ(α))⊙x·(R·V)ᵀ: V (K × d) a basis of the
//! inputs' top-K principal subspace found by GHA ([`gha`]), R an experts × K
//! mixing matrix, W_g an ordinary linear gate. Its logits are linear in x,
//! so it is a linear router with weights σ(α)·W_g + (1 − σ(α))·R·V; hence
//! every "no linear router exists" certificate of [`crate::routability`]
//! refutes every STAR gate too.
//!
//! What is decided here, exactly:
//! - the structural part alone (α → −∞, W = R·V): substituting W = R·V in
//!   the routing constraints (W_k − W_e)·x̃ ≥ 1 gives (R_k − R_e)·(V·x̃) ≥ 1,
//!   the same kind of system over the projected inputs z = V·x̃ (K
//!   features), decided by the same machinery
//!   ([`crate::routability::system`]); a router R is checked on the original
//!   inputs as W = R·V, a refutation by [`check`] on the projected system;
//! - the interpolated gate: W_g the router the construction synthesises
//!   (the exact LP's router when that one misroutes), R from the
//!   structural LP (or R = [I; 0], STAR's orthogonal start, when none
//!   exists), and the mixing weight s = σ(α) a rational, the first of
//!   1/2, 3/4, 7/8, … whose gate serves every input (checked exactly);
//!   α = ln(s/(1 − s)) is reported in f64 and plays no part in the check.

pub mod check;
pub mod gha;

use crate::construct::{self, Options};
use crate::model::{Model, Router, Synthesis};
use crate::routability::system::{Group, Refutation, Solution, System};
use crate::scalar::Rat;
use crate::taskset::TaskSet;
use num_traits::{One, Signed, ToPrimitive, Zero};
use serde::Serialize;

/// Mixing weights tried: s = 1 − 2^−j for j = 1..=MIX_STEPS.
const MIX_STEPS: usize = 40;

/// V: the GHA rows in f64 and their exact rounding.
#[derive(Debug, Clone)]
pub struct Basis {
    pub float: Vec<Vec<f64>>,
    /// max |V·Vᵀ − I| of the f64 rows, before rounding.
    pub orthonormality: f64,
    /// The f64 rows against the exact top-K eigenspace (reported only).
    pub convergence: Option<gha::Convergence>,
    pub exact: Vec<Vec<Rat>>,
    /// The exact rank of the rounded V.
    pub rank: usize,
}

/// GHA over the system's distinct router inputs (bias feature included, so
/// the top direction can carry the mean), K rows (capped at the features).
pub fn basis(system: &System, k: usize, params: &gha::Params) -> Basis {
    let k = k.min(system.features);
    let inputs: Vec<Vec<f64>> = system
        .groups
        .iter()
        .map(|g| {
            let mut x = vec![0.0; system.features];
            for (f, v) in &g.x {
                x[*f] = v.to_f64().unwrap_or(0.0);
            }
            x
        })
        .collect();
    let float = gha::gha(&inputs, k, params);
    let orthonormality = gha::orthonormality_error(&float);
    let convergence = gha::convergence(&inputs, &float);
    let exact = gha::round(&float, params.denominator);
    let rank = gha::rank(&exact);
    Basis {
        float,
        orthonormality,
        convergence,
        exact,
        rank,
    }
}

/// The system over z = V·x̃: a router R of it is a router W = R·V of the
/// original, and conversely every W with rows in span(V) is some R·V.
pub fn project(system: &System, v: &[Vec<Rat>]) -> System {
    let groups = system
        .groups
        .iter()
        .map(|g| Group {
            x: v.iter()
                .enumerate()
                .map(|(j, row)| (j, g.x.iter().map(|(f, x)| &row[*f] * x).sum::<Rat>()))
                .filter(|(_, z)| !z.is_zero())
                .collect(),
            tasks: g.tasks.clone(),
        })
        .collect();
    System {
        experts: system.experts,
        features: v.len(),
        groups,
    }
}

/// W = R·V.
pub fn compose(r: &[Vec<Rat>], v: &[Vec<Rat>], features: usize) -> Vec<Vec<Rat>> {
    r.iter()
        .map(|re| {
            (0..features)
                .map(|f| re.iter().zip(v).map(|(a, row)| a * &row[f]).sum::<Rat>())
                .collect()
        })
        .collect()
}

/// The answer for gates of one family.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Weights over the original features, checked on every input.
    Routes(Vec<Vec<Rat>>),
    /// No gate of the family exists; the refutation was checked.
    Refuted(Refutation),
    Undecided(String),
}

/// Does a gate with rows in span(V) serve every input?
pub fn structural(system: &System, v: &[Vec<Rat>], budget: usize) -> (Decision, Vec<Vec<Rat>>) {
    let projected = project(system, v);
    match projected.solve(budget).0 {
        Solution::Router(r) => {
            let w = compose(&r, v, system.features);
            if serves_all(system, &w) {
                (Decision::Routes(w), r)
            } else {
                (Decision::Undecided("R·V failed the exact check".into()), r)
            }
        }
        Solution::Refuted(refutation) => {
            if check::refutes(&projected, &refutation) {
                (Decision::Refuted(refutation), Vec::new())
            } else {
                let why = "the refutation failed the exact check".into();
                (Decision::Undecided(why), Vec::new())
            }
        }
        Solution::Undecided(why) => (Decision::Undecided(why), Vec::new()),
    }
}

/// The linear router over the original features (what routecert
/// synthesises when the perceptron fails), checked the same way.
pub fn linear(system: &System, budget: usize) -> Decision {
    match system.solve(budget).0 {
        Solution::Router(w) if serves_all(system, &w) => Decision::Routes(w),
        Solution::Router(_) => Decision::Undecided("the router failed the exact check".into()),
        Solution::Refuted(r) if check::refutes(system, &r) => Decision::Refuted(r),
        Solution::Refuted(_) => Decision::Undecided("the refutation failed the check".into()),
        Solution::Undecided(why) => Decision::Undecided(why),
    }
}

/// σ(α)·W_g + (1 − σ(α))·W_s for the first s = 1 − 2^−j that serves every
/// input: (s, weights).
pub fn interpolate(
    system: &System,
    w_g: &[Vec<Rat>],
    w_s: &[Vec<Rat>],
) -> Option<(Rat, Vec<Vec<Rat>>)> {
    let mut rest = Rat::one();
    for _ in 0..MIX_STEPS {
        rest /= Rat::from_integer(2.into());
        let s = Rat::one() - &rest;
        let w = mixed(&s, w_g, w_s);
        if serves_all(system, &w) {
            return Some((s, w));
        }
    }
    None
}

/// R = [I; 0] (STAR's orthogonal start) as weights: W_s row e = V_e.
pub fn start(system: &System, v: &[Vec<Rat>]) -> Vec<Vec<Rat>> {
    (0..system.experts)
        .map(|e| {
            v.get(e)
                .cloned()
                .unwrap_or_else(|| vec![Rat::zero(); system.features])
        })
        .collect()
}

fn serves_all(system: &System, w: &[Vec<Rat>]) -> bool {
    (0..system.groups.len()).all(|g| system.serves(w, g))
}

/// min over constraining inputs of (best score in I − best outside I),
/// divided by the largest |weight|: scale-free, exact.
pub fn margin(system: &System, w: &[Vec<Rat>]) -> Option<Rat> {
    let top = w.iter().flatten().map(|x| x.abs()).max()?;
    if top.is_zero() {
        return None;
    }
    (0..system.groups.len())
        .filter_map(|g| {
            let s = system.scores(w, g);
            let tasks = &system.groups[g].tasks;
            let inside = tasks.iter().map(|&e| &s[e]).max()?;
            let outside = (0..system.experts)
                .filter(|e| !tasks.contains(e))
                .map(|e| &s[e])
                .max()?;
            Some(inside - outside)
        })
        .min()
        .map(|m| m / top)
}

/// One gate family's line of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    /// "routable", "refuted" or "undecided".
    pub decision: String,
    /// The normalised margin (see [`margin`]), when routable.
    pub margin: Option<f64>,
    /// The largest denominator among the weights, when routable.
    pub denominator: Option<String>,
    pub reason: String,
}

fn line(system: &System, d: &Decision) -> Line {
    match d {
        Decision::Routes(w) => Line {
            decision: "routable".into(),
            margin: margin(system, w).and_then(|m| m.to_f64()),
            denominator: w
                .iter()
                .flatten()
                .map(|x| x.denom().clone())
                .max()
                .map(|d| d.to_string()),
            reason: String::new(),
        },
        Decision::Refuted(r) => Line {
            decision: "refuted".into(),
            margin: None,
            denominator: None,
            reason: format!("checked refutation over {} inputs", r.groups().len()),
        },
        Decision::Undecided(why) => Line {
            decision: "undecided".into(),
            margin: None,
            denominator: None,
            reason: why.clone(),
        },
    }
}

/// STAR on one task set: V, the linear router, the structural part and
/// the interpolated gate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub experts: usize,
    pub features: usize,
    pub inputs: usize,
    /// K asked for, and the exact rank of the rounded V.
    pub rank: usize,
    pub exact_rank: usize,
    pub orthonormality: f64,
    /// GHA's rows against the exact top-K eigenspace (f64, reported only).
    pub convergence: Option<gha::Convergence>,
    /// The GHA run's parameters.
    pub gha_seed: u64,
    pub gha_steps: usize,
    pub gha_rate: f64,
    pub gha_decay: f64,
    pub linear: Line,
    /// W_g alone (the router the interpolated gate mixes in), when there is one.
    pub w_g_line: Option<Line>,
    pub structural: Line,
    pub interpolated: Line,
    /// Where the interpolated gate's W_g came from: "synthesised" (the
    /// construction's router), "exact LP" or "none".
    pub w_g: String,
    /// s = σ(α), exact, when the interpolated gate routes.
    pub mix: Option<String>,
    /// α = ln(s/(1 − s)), f64 (reported only).
    pub alpha: Option<f64>,
    pub note: String,
}

/// Run STAR on a task set under the construction's options. `rank` is K
/// (default: the number of experts). `Err` when identical inputs share no
/// task (no gate of any kind routes them).
pub fn run(
    ts: &TaskSet,
    options: &Options,
    rank: Option<usize>,
    params: &gha::Params,
    budget: usize,
) -> Result<Report, String> {
    gate(ts, options, rank, params, budget).map(|g| g.report)
}

/// STAR's gate to install (`--router star`), with its report: the
/// interpolated gate when it routes; else STAR's start, α = 0 (s = 1/2),
/// over W_g (the synthesised router) and R·V (R = [I; 0] when no
/// structural router exists), so that the verifier reports what fails
/// with its usual witnesses. `Err` only when identical router inputs share
/// no task (no gate of any kind exists; `routability` says which).
pub fn gate(
    ts: &TaskSet,
    options: &Options,
    rank: Option<usize>,
    params: &gha::Params,
    budget: usize,
) -> Result<Gate, String> {
    let Some((system, _names)) = crate::routability::routing_system(ts, options) else {
        return Err("two prefixes with one router input share no task: no gate routes them (see `routecert routability`)".into());
    };
    let k = rank.unwrap_or(system.experts);
    let b = basis(&system, k, params);
    let lin = linear(&system, budget);
    let (st, _r) = structural(&system, &b.exact, budget);
    let w_s = match &st {
        Decision::Routes(w) => w.clone(),
        _ => start(&system, &b.exact),
    };
    let synthesised = synthesised_rows(ts, options, &system);
    // W_g: the construction's own router; the exact LP's when that one
    // misroutes some input (perceptron and fallback gave up).
    let (w_g, w_g_from) = if serves_all(&system, &synthesised) {
        (Some(synthesised.clone()), "synthesised")
    } else if let Decision::Routes(w) = &lin {
        (Some(w.clone()), "exact LP")
    } else {
        (None, "none")
    };
    let half = Rat::new(1.into(), 2.into());
    let fallback = |w_g: &[Vec<Rat>]| (half.clone(), mixed(&half, w_g, &w_s));
    let (inter, mix) = match (&lin, &w_g) {
        (Decision::Refuted(r), _) => (Decision::Refuted(r.clone()), None),
        (_, Some(w_g)) => match interpolate(&system, w_g, &w_s) {
            Some((s, w)) => (Decision::Routes(w), Some(s)),
            None => (
                Decision::Undecided(format!(
                    "no s = 1 - 2^-j, j <= {MIX_STEPS}, served every input"
                )),
                None,
            ),
        },
        (Decision::Undecided(why), None) => (Decision::Undecided(why.clone()), None),
        (Decision::Routes(_), None) => (
            Decision::Undecided("no linear router to interpolate with".into()),
            None,
        ),
    };
    let note = if matches!(lin, Decision::Refuted(_)) {
        "no linear router exists; STAR's logits are linear in x, so the same certificate refutes every STAR gate".into()
    } else {
        "STAR's logits are linear in x: a certificate against linear routers refutes every STAR gate too".into()
    };
    let (s_used, rows) = match (&inter, &mix, &w_g) {
        (Decision::Routes(w), Some(s), _) => (s.clone(), w.clone()),
        (_, _, Some(w_g)) => fallback(w_g),
        _ => fallback(&synthesised),
    };
    let report = Report {
        experts: system.experts,
        features: system.features,
        inputs: system.groups.len(),
        rank: k,
        exact_rank: b.rank,
        orthonormality: b.orthonormality,
        convergence: b.convergence.clone(),
        gha_seed: params.seed,
        gha_steps: params.steps,
        gha_rate: params.rate,
        gha_decay: params.decay,
        linear: line(&system, &lin),
        w_g_line: w_g
            .as_ref()
            .map(|w| line(&system, &Decision::Routes(w.clone()))),
        structural: line(&system, &st),
        interpolated: line(&system, &inter),
        w_g: w_g_from.into(),
        alpha: mix.as_ref().and_then(|s| {
            let s = s.to_f64()?;
            Some((s / (1.0 - s)).ln())
        }),
        mix: mix.map(|s| s.to_string()),
        note,
    };
    Ok(Gate {
        rows,
        mix: s_used,
        report,
    })
}

impl Report {
    /// The interpolated gate's margin is positive (it serves every input
    /// strictly).
    pub fn margin_positive(&self) -> bool {
        self.interpolated.margin.is_some_and(|m| m > 0.0)
    }
}

/// The construction's synthesised router as rows over the system's
/// features (the router's reads, then the bias). Under `--router syntactic`
/// the bias is folded into head 1's weights, which sum to 1 on every
/// input, so the rows give the same scores.
pub fn synthesised_rows(ts: &TaskSet, options: &Options, system: &System) -> Vec<Vec<Rat>> {
    let (residual, head1) = construct::residual_and_head1(ts, options);
    let router = construct::router::synthesize(ts, &residual, &head1, options);
    rows_of(&router, system.features)
}

fn rows_of(router: &Router<Rat>, features: usize) -> Vec<Vec<Rat>> {
    (0..router.bias.len())
        .map(|e| {
            let mut row: Vec<Rat> = router
                .inputs
                .iter()
                .map(|&d| router.weights.get(e, d))
                .collect();
            row.push(router.bias[e].clone());
            row.resize(features, Rat::zero());
            row
        })
        .collect()
}

/// STAR's gate as installed in the model (`--router star`): the weights
/// σ(α)·W_g + (1 − σ(α))·R·V over the router's reads and the bias (exact:
/// s = σ(α) is a rational, α = ln(s/(1 − s)) is reported in f64 only), and
/// the report that says how they were found.
#[derive(Debug, Clone)]
pub struct Gate {
    pub rows: Vec<Vec<Rat>>,
    /// s = σ(α) used (exact).
    pub mix: Rat,
    pub report: Report,
}

fn mixed(s: &Rat, w_g: &[Vec<Rat>], w_s: &[Vec<Rat>]) -> Vec<Vec<Rat>> {
    let rest = Rat::one() - s;
    w_g.iter()
        .zip(w_s)
        .map(|(g, st)| g.iter().zip(st).map(|(a, b)| s * a + &rest * b).collect())
        .collect()
}

/// The MoE model with STAR's gate as its router (the construction's
/// router-installation hook, [`construct::build_moe_routed_by`]).
pub fn model(ts: &TaskSet, options: &Options, gate: &Gate) -> Model<Rat> {
    let r = &gate.report;
    let synthesis = Synthesis::given(
        r.interpolated.decision == "routable",
        format!(
            "{} through the STAR gate (K = {}, s = sigma(alpha) = {})",
            options.router.describe(),
            r.rank,
            gate.mix
        ),
    );
    construct::build_moe_routed_by(ts, options, &gate.rows, synthesis)
}

impl Gate {
    /// One line for reports: how the gate was made.
    pub fn summary(&self) -> String {
        let r = &self.report;
        let alpha = {
            let s = self.mix.to_f64().unwrap_or(0.5);
            (s / (1.0 - s)).ln()
        };
        format!(
            "STAR gate: sigma(alpha) = {} (alpha = {alpha:.4}, f64, informative), W_g {}, V: K = {} (exact rank {}), structural part {}, interpolated gate {}",
            self.mix, r.w_g, r.rank, r.exact_rank, r.structural.decision, r.interpolated.decision
        )
    }
}

#[cfg(test)]
mod tests;
