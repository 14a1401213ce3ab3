//! Synthesise the linear top-1 router G(x) = W_G x + b.
//!
//! The router's weights are found, not guessed: an integer multiclass
//! perceptron over the exact router input of every prefix. A prefix w with
//! compatible tasks C(w) asks that the best task in C(w) score at least 1
//! above every task outside C(w). The samples are scaled by the lcm of
//! their denominators (past 4,096 bits, each by its own normalised lcm), a
//! positive factor that changes no comparison, so the perceptron runs on
//! integers (i64, then i128, falling back to big integers
//! if a weight ever overflows). If the perceptron does not converge, the exact LP
//! of [`system`] (via [`crate::lp`]) decides the same training data: it
//! finds a router whenever one exists (the perceptron can need far too many
//! epochs when the separating feature is tiny, as with the content head,
//! whose signal sits at 2^{−S·level}). If neither finds one, the pocket
//! (fewest misrouted prefixes) is kept and the verifier reports what fails.
//!
//! This module runs that pipeline (the integer type widened i64 → i128 →
//! big integers whenever one overflows, then the LP fallback) and installs
//! the weights; its parts each do one job: [`inputs`] groups prefixes by
//! router input (shared with routability), `training` turns the groups into
//! samples, `perceptron` trains, `closed_form` secures the trained router
//! with H-R's closed form, and [`system`] states and decides the routing
//! constraints exactly. `--router-synthesis max-margin` tries [`max_margin`]
//! first (margins large relative to the weights, for f32 copies) and falls
//! back to this pipeline when its exact check fails.

mod closed_form;
pub mod inputs;
mod max_margin;
mod perceptron;
pub mod system;
mod training;

use super::head1::Head1;
use super::residual::Residual;
use crate::model::{LinearMap, Router, Synthesis};
use crate::scalar::Rat;
use crate::taskset::TaskSet;
use closed_form::{secure, vocabulary_router};
use inputs::columns;
use num_bigint::BigInt;
use num_traits::Zero;
use perceptron::{Int, KeyOwners, Sample, Trained, solve};
use system::{Group, System};
use training::{Groups, Scale};

/// The exact LP fallback runs only on training data up to this many groups
/// of identical router input; beyond, an exact simplex can take very long,
/// and `routecert routability` is the tool to decide such a set on purpose.
const EXACT_FALLBACK_MAX_GROUPS: usize = 2000;
/// How long the exact LP fallback may search (a guard against a hang: the
/// LP count [`system::DEFAULT_BUDGET`] bounds it first on every set of
/// constructions/ and of the property tests). Past it synthesis keeps the
/// perceptron's pocket, and `routecert routability` decides on purpose.
const FALLBACK_TIME: std::time::Duration = std::time::Duration::from_secs(4);
pub use crate::design::RouterMode;

impl RouterMode {
    /// The residual directions this router reads.
    pub fn reads(self, r: &Residual) -> Vec<usize> {
        match self {
            RouterMode::Syntactic => r.syntactic_block(),
            RouterMode::SyntacticKey => {
                let mut dirs = r.syntactic_block();
                dirs.extend(r.h2.iter().flatten());
                dirs.extend(&r.pos);
                dirs.extend(&r.tok);
                dirs.sort_unstable();
                dirs.dedup();
                dirs
            }
        }
    }
}

/// The exact LP on the training data: weights over the features (bias
/// last) if some router serves every sample.
fn exact_router(groups: &Groups, experts: usize) -> Option<Vec<Vec<Rat>>> {
    let lp = System {
        experts,
        features: groups.bias + 1,
        groups: groups
            .exact()
            .into_iter()
            .zip(&groups.tasks)
            .map(|(x, tasks)| Group {
                x,
                tasks: tasks.clone(),
            })
            .collect(),
    };
    lp.router_within(
        system::DEFAULT_BUDGET,
        Some(crate::lp::clock::now() + FALLBACK_TIME),
    )
}

/// Train (with key decomposition), then secure, all in the integer type T;
/// None if T overflowed somewhere.
fn pipeline<T: Int>(
    samples: &[Sample<T>],
    owners: &KeyOwners,
    closed: &[Vec<T>],
    max_epochs: usize,
) -> Option<Trained<T>> {
    let trained = solve(samples, owners, closed.len(), closed[0].len(), max_epochs)?;
    secure(trained, closed, samples)
}

/// The pipeline in the machine integer T, if nothing overflows T.
fn attempt<T: Int + TryFrom<BigInt> + Into<BigInt>>(
    groups: &Groups,
    scale: &Scale,
    closed: &[Vec<BigInt>],
    owners: &KeyOwners,
    options: &super::Options,
) -> Option<Trained<BigInt>> {
    let samples = groups.integer::<T>(scale)?;
    let closed: Vec<Vec<T>> = closed
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| T::try_from(c.clone()).ok())
                .collect::<Option<_>>()
        })
        .collect::<Option<_>>()?;
    let t = pipeline(&samples, owners, &closed, options.max_epochs)?;
    Some(Trained {
        weights: t
            .weights
            .into_iter()
            .map(|row| row.into_iter().map(Into::into).collect())
            .collect(),
        converged: t.converged,
        epochs: t.epochs,
        misrouted: t.misrouted,
    })
}

/// Refuse a task set whose router training data would not fit in memory,
/// with the estimate and the limit (half of the available memory, as for
/// the task set itself): the data grows as prefixes × L nonzero inputs of
/// about L bits each, L³ for one template of L words (1,000 words: about 1
/// GiB; 5,000: about 100).
pub fn check_fits(
    ts: &TaskSet,
    r: &Residual,
    head1: &Head1,
    mode: RouterMode,
) -> Result<(), String> {
    check_fits_within(ts, r, head1, mode, crate::spec::available_memory() / 2)
}

/// [`check_fits`] against a given limit in bytes.
fn check_fits_within(
    ts: &TaskSet,
    r: &Residual,
    head1: &Head1,
    mode: RouterMode,
    limit: u64,
) -> Result<(), String> {
    crate::taskset::check_sampled_fits(
        "router inputs (the router's training data)",
        ts.prefixes.len(),
        training::estimate_bytes(ts, r, head1, &mode.reads(r)),
        training::MEMORY_SAMPLE,
        limit,
    )
}

/// Find the router for a task set.
pub fn synthesize(
    ts: &TaskSet,
    r: &Residual,
    head1: &Head1,
    options: &super::Options,
) -> Router<Rat> {
    let mode = options.router;
    let reads = mode.reads(r);
    let groups = Groups::new(ts, r, head1, &reads);
    let experts = ts.tasks.len();
    // Which synthesis this is, and (max-margin asked for but not found) why
    // the perceptron's router is the one installed.
    let mut fell_back = String::new();
    if options.synthesis == super::RouterSynthesis::MaxMargin {
        match max_margin::router(&groups, experts) {
            Ok(rows) => {
                let synthesis =
                    Synthesis::trained(true, 0, groups.forced, groups.forced, mode.describe())
                        .by("max-margin");
                return install(r, mode, &rows, synthesis);
            }
            Err(why) => fell_back = format!(" (max-margin: {why})"),
        }
    }
    let column = columns(&reads);
    let mut owners = KeyOwners::new();
    for (k, task) in ts.tasks.iter().enumerate() {
        for key in task.keys() {
            if let Some(&c) = r.entity(key).and_then(|d| column.get(&d)) {
                owners.entry(c).or_default().push(k);
            }
        }
    }
    let closed = vocabulary_router(ts, r, &reads);
    let scale = groups.scale();
    // i64 first (half the memory of i128 at scale), then i128, then big
    // integers: the same algorithm in a wider type whenever one overflows.
    let trained: Trained<BigInt> = attempt::<i64>(&groups, &scale, &closed, &owners, options)
        .or_else(|| attempt::<i128>(&groups, &scale, &closed, &owners, options))
        .unwrap_or_else(|| {
            let samples = groups
                .integer::<BigInt>(&scale)
                .expect("big integers hold every feature");
            pipeline(&samples, &owners, &closed, options.max_epochs)
                .expect("big-integer arithmetic cannot overflow")
        });

    let exact =
        if trained.converged || !options.lp_fallback || groups.len() > EXACT_FALLBACK_MAX_GROUPS {
            None
        } else {
            exact_router(&groups, experts)
        };
    let method = if exact.is_some() {
        "exact LP"
    } else {
        "perceptron"
    };
    let (rows, converged, misrouted) = match exact {
        Some(rows) => (rows, true, 0),
        None => (
            trained
                .weights
                .into_iter()
                .map(|row| row.into_iter().map(Rat::from_integer).collect())
                .collect(),
            trained.converged,
            trained.misrouted,
        ),
    };
    install(
        r,
        mode,
        &rows,
        Synthesis::trained(
            converged,
            trained.epochs,
            misrouted + groups.forced,
            groups.forced,
            mode.describe(),
        )
        .by(format!("{method}{fell_back}")),
    )
}

/// The router with these weights: rows[e] holds one weight per direction of
/// `mode.reads(r)`, then the bias.
pub fn install(
    r: &Residual,
    mode: RouterMode,
    rows: &[Vec<Rat>],
    synthesis: Synthesis,
) -> Router<Rat> {
    let reads = mode.reads(r);
    let bias = reads.len();
    let experts = rows.len();
    let mut weights = LinearMap::zero(r.basis.len(), experts);
    let mut biases = vec![Rat::zero(); experts];
    for (e, row) in rows.iter().enumerate() {
        for (c, &dir) in reads.iter().enumerate() {
            weights.add(e, dir, row[c].clone());
        }
        let b = row[bias].clone();
        match mode {
            // Head 1's weights sum to 1, so a bias b equals weight b on every
            // h1 direction: fold it in and the router reads only h1.
            RouterMode::Syntactic => {
                for &dir in &reads {
                    weights.add(e, dir, b.clone());
                }
            }
            RouterMode::SyntacticKey => biases[e] = b,
        }
    }
    Router {
        inputs: reads,
        weights,
        bias: biases,
        synthesis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_modes_parse() {
        assert_eq!("syntactic".parse::<RouterMode>(), Ok(RouterMode::Syntactic));
        assert_eq!(
            "syntactic+key".parse::<RouterMode>().map(|m| m.to_string()),
            Ok("syntactic+key".into())
        );
        assert!("key".parse::<RouterMode>().is_err());
    }

    /// The refusal compares the estimate with the limit and names both: a
    /// limit one byte below the estimate refuses, the estimate itself fits.
    #[test]
    fn training_data_over_the_limit_is_refused_with_both_numbers() {
        let ts = crate::fixtures::task_set("random_seed1.toml");
        let options = crate::construct::Options::default();
        let (r, head1) = crate::construct::residual_and_head1(&ts, &options);
        let mode = options.router;
        let (estimate, _) = training::estimate_bytes(&ts, &r, &head1, &mode.reads(&r));
        let estimate = u64::try_from(estimate).unwrap();
        assert!(estimate > 0);
        assert_eq!(check_fits_within(&ts, &r, &head1, mode, estimate), Ok(()));
        // The message itself: `taskset::check_sampled_fits`'s test.
        let e = check_fits_within(&ts, &r, &head1, mode, estimate - 1).unwrap_err();
        let show = crate::taskset::show_bytes;
        let subject = format!("the {} prefixes' router inputs", ts.prefixes.len());
        assert!(e.contains(&subject), "{e}");
        assert!(
            e.contains(&format!("about {}", show(u128::from(estimate)))),
            "{e}"
        );
    }
}
