//! Synthesise the linear top-1 router G(x) = W_G x + b.
//!
//! The router's weights are found, not guessed: an integer multiclass
//! perceptron over the exact router input of every prefix. A prefix w with
//! compatible tasks C(w) asks that the best task in C(w) score at least 1
//! above every task outside C(w). Each sample is scaled by the lcm of its
//! denominators, a positive factor that changes no comparison, so the
//! perceptron runs on integers (i128, falling back to big integers if a
//! weight ever overflows). If the perceptron does not converge, the exact LP
//! of [`system`] (via [`crate::lp`]) decides the same training data: it
//! finds a router whenever one exists (the perceptron can need far too many
//! epochs when the separating feature is tiny, as with the content head,
//! whose signal sits at 2^{−S·level}). If neither finds one, the pocket
//! (fewest misrouted prefixes) is kept and the verifier reports what fails.

use super::attention::hidden_state_with;
use super::head1::Head1;
use super::residual::Residual;
use crate::model::{LinearMap, Router, Synthesis};
pub mod system;

use crate::scalar::{FastRat, Rat, Scalar};
use crate::taskset::{TaskSet, TokenKind};
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{CheckedAdd, CheckedDiv, CheckedMul, CheckedSub, One, Zero};
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap, HashSet};
use system::{Group, System};

/// The exact LP fallback runs only on training data up to this many groups
/// of identical router input; beyond, an exact simplex can take very long,
/// and `routecert routability` is the tool to decide such a set on purpose.
const EXACT_FALLBACK_MAX_GROUPS: usize = 2000;
/// How long the exact LP fallback may search (a guard against a hang: the
/// LP count [`system::DEFAULT_BUDGET`] bounds it first on every set of
/// constructions/ and of the property tests). Past it synthesis keeps the
/// perceptron's pocket, and `routecert routability` decides on purpose.
const FALLBACK_TIME: std::time::Duration = std::time::Duration::from_secs(4);
/// Epochs without a better pocket before synthesis stops early.
const PATIENCE: usize = 200;
/// Prefixes synthesis may give up on, one at a time, to escape a conflict.
const MAX_DROPS: usize = 32;
/// Retrains in a row without a better router before giving up dropping.
const MAX_FRUITLESS_DROPS: usize = 4;
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

/// One training example: integer features (column, value), the tasks it may
/// go to, and how many prefixes share this exact router input.
#[derive(Clone)]
struct Sample<T> {
    x: Vec<(usize, T)>,
    tasks: BTreeSet<usize>,
    weight: usize,
}

/// The integer arithmetic the perceptron runs in.
trait Int:
    Clone + Ord + Zero + One + CheckedAdd + CheckedSub + CheckedMul + CheckedDiv + Send + Sync
{
}
impl<T> Int for T where
    T: Clone + Ord + Zero + One + CheckedAdd + CheckedSub + CheckedMul + CheckedDiv + Send + Sync
{
}

struct Trained<T> {
    weights: Vec<Vec<T>>,
    converged: bool,
    epochs: usize,
    misrouted: usize,
}

fn scores<T: Int>(w: &[Vec<T>], x: &[(usize, T)]) -> Option<Vec<T>> {
    w.iter()
        .map(|we| {
            x.iter().try_fold(T::zero(), |acc, (f, v)| {
                acc.checked_add(&we[*f].checked_mul(v)?)
            })
        })
        .collect()
}

/// The best task inside C(w) and the best outside, by score (first on ties).
fn contest<T: Int>(s: &[T], tasks: &BTreeSet<usize>) -> (usize, Option<usize>) {
    let best = |inside: bool| {
        (0..s.len())
            .filter(|e| tasks.contains(e) == inside)
            .reduce(|a, b| if s[b] > s[a] { b } else { a })
    };
    (best(true).unwrap_or(0), best(false))
}

/// Fixed router weights stored by feature: each column's nonzero (expert,
/// weight). A pass over every prefix with fixed weights (counting misroutes,
/// sizing the key weight, securing) then touches only nonzero weights; most
/// are zero (a key column is nonzero for its owners only).
struct ByFeature<T> {
    columns: Vec<Vec<(usize, T)>>,
    experts: usize,
}

impl<T: Int> ByFeature<T> {
    fn new(w: &[Vec<T>]) -> ByFeature<T> {
        let dim = w.first().map_or(0, Vec::len);
        let mut columns = vec![Vec::new(); dim];
        for (e, row) in w.iter().enumerate() {
            for (f, v) in row.iter().enumerate() {
                if !v.is_zero() {
                    columns[f].push((e, v.clone()));
                }
            }
        }
        ByFeature {
            columns,
            experts: w.len(),
        }
    }

    /// The same numbers as [`scores`].
    fn scores(&self, x: &[(usize, T)]) -> Option<Vec<T>> {
        let mut out = vec![T::zero(); self.experts];
        for (f, v) in x {
            for (e, w) in &self.columns[*f] {
                out[*e] = out[*e].checked_add(&w.checked_mul(v)?)?;
            }
        }
        Some(out)
    }
}

/// Count prefixes whose best compatible task does not strictly win.
fn misrouted<T: Int>(w: &[Vec<T>], samples: &[Sample<T>]) -> Option<usize> {
    let w = ByFeature::new(w);
    samples
        .par_iter()
        .map(|s| {
            let sc = w.scores(&s.x)?;
            Some(match contest(&sc, &s.tasks) {
                (inside, Some(outside)) if sc[inside] <= sc[outside] => s.weight,
                _ => 0,
            })
        })
        .sum()
}

/// The perceptron on the `active` samples; the pocket keeps the weights
/// that misroute the fewest prefixes over all samples. None if the integer
/// type overflowed.
fn train<T: Int>(
    samples: &[Sample<T>],
    active: &[bool],
    init: &[Vec<T>],
    max_epochs: usize,
) -> Option<(Trained<T>, Vec<usize>)> {
    let mut w = init.to_vec();
    let mut pocket = (w.clone(), usize::MAX);
    let mut since_better = 0;
    let mut blame = vec![0usize; samples.len()];
    let mut epochs = 0;
    for _ in 0..max_epochs {
        epochs += 1;
        let mut mistakes = 0;
        for (i, s) in samples.iter().enumerate().filter(|(i, _)| active[*i]) {
            let sc = scores(&w, &s.x)?;
            let (inside, Some(outside)) = contest(&sc, &s.tasks) else {
                continue;
            };
            // Margin 1 on integer scores.
            if sc[inside] < sc[outside].checked_add(&T::one())? {
                mistakes += 1;
                blame[i] += 1;
                for (f, v) in &s.x {
                    w[inside][*f] = w[inside][*f].checked_add(v)?;
                    w[outside][*f] = w[outside][*f].checked_sub(v)?;
                }
            }
        }
        // Counting misroutes costs a pass; only do it when this epoch's
        // margin violations suggest the pocket could improve.
        let wrong = if mistakes == 0 || mistakes <= pocket.1.saturating_mul(2) {
            misrouted(&w, samples)?
        } else {
            usize::MAX
        };
        if wrong < pocket.1 {
            pocket = (w.clone(), wrong);
            since_better = 0;
        } else {
            since_better += 1;
        }
        if mistakes == 0 || since_better >= PATIENCE {
            break;
        }
    }
    let trained = Trained {
        weights: pocket.0,
        converged: pocket.1 == 0,
        epochs,
        misrouted: pocket.1,
    };
    Some((trained, blame))
}

/// Train; while the router is imperfect, give up the prefix the perceptron
/// blamed most and train again (bounded), keeping the best router seen.
/// This finds a router that fails only where it must on small conflicts
/// such as XOR-like templates, where a plain pocket perceptron does not.
fn fit<T: Int>(samples: &[Sample<T>], init: &[Vec<T>], max_epochs: usize) -> Option<Trained<T>> {
    let mut active = vec![true; samples.len()];
    let (mut best, mut blame) = train(samples, &active, init, max_epochs)?;
    let mut epochs = best.epochs;
    let mut fruitless = 0;
    for _ in 0..MAX_DROPS {
        if best.converged || fruitless >= MAX_FRUITLESS_DROPS {
            break;
        }
        let Some(worst) = (0..samples.len())
            .filter(|&i| active[i])
            .max_by_key(|&i| (blame[i], std::cmp::Reverse(i)))
        else {
            break;
        };
        if blame[worst] == 0 {
            break;
        }
        active[worst] = false;
        let (next, next_blame) = train(samples, &active, init, max_epochs)?;
        epochs += next.epochs;
        blame = next_blame;
        if next.misrouted < best.misrouted {
            best = next;
            fruitless = 0;
        } else {
            fruitless += 1;
        }
    }
    best.epochs = epochs;
    Some(best)
}

/// Which tasks own each key column (h2:a → tasks with a as a key).
type KeyOwners = HashMap<usize, Vec<usize>>;

/// Synthesis by decomposition. A prefix whose entities are keys of one task
/// only, a task it belongs to, is decided by its key: it needs no training,
/// only a key weight M large enough. So: train on the other prefixes (those
/// before the key, shared keys, values that are keys elsewhere), then add
/// the least integer M on every key's h2 weight toward its owners that gives
/// every key-decided prefix margin 1 (exact), then re-check everything. If
/// the key weights disturb a trained prefix, train on all prefixes starting
/// from these weights.
fn solve<T: Int>(
    samples: &[Sample<T>],
    owners: &KeyOwners,
    experts: usize,
    dim: usize,
    max_epochs: usize,
) -> Option<Trained<T>> {
    let decided_by = |s: &Sample<T>| {
        let mut tasks: Vec<usize> =
            s.x.iter()
                .filter_map(|(c, _)| owners.get(c))
                .flatten()
                .copied()
                .collect();
        tasks.sort_unstable();
        tasks.dedup();
        match tasks.as_slice() {
            [t] if s.tasks.contains(t) => Some(*t),
            _ => None,
        }
    };
    let decided: Vec<Option<usize>> = samples.iter().map(decided_by).collect();
    let hard: Vec<Sample<T>> = samples
        .iter()
        .zip(&decided)
        .filter(|(_, d)| d.is_none())
        .map(|(s, _)| Sample {
            x: s.x.clone(),
            tasks: s.tasks.clone(),
            weight: s.weight,
        })
        .collect();
    let zero = vec![vec![T::zero(); dim]; experts];
    let mut trained = fit(&hard, &zero, max_epochs)?;
    let w = ByFeature::new(&trained.weights);
    // The least M over all key-decided samples (None: overflow).
    let need = |s: &Sample<T>, t: usize| -> Option<T> {
        let sc = w.scores(&s.x)?;
        let Some(rival) = (0..experts).filter(|&j| j != t).map(|j| &sc[j]).max() else {
            return Some(T::one());
        };
        // Need m·key ≥ rival − s_t + 1, with key = Σ of t's key features.
        let gap = rival.checked_sub(&sc[t])?.checked_add(&T::one())?;
        let key =
            s.x.iter()
                .filter(|(c, _)| owners.get(c).is_some_and(|o| o.contains(&t)))
                .try_fold(T::zero(), |a, (_, v)| a.checked_add(v))?;
        if gap > T::zero() && key > T::zero() {
            gap.checked_add(&key)?
                .checked_sub(&T::one())?
                .checked_div(&key)
        } else {
            Some(T::one())
        }
    };
    let m = samples
        .par_iter()
        .zip(&decided)
        .filter_map(|(s, d)| d.map(|t| need(s, t)))
        .try_reduce(T::one, |a, b| Some(a.max(b)))?;
    for (c, tasks) in owners {
        for &t in tasks {
            trained.weights[t][*c] = trained.weights[t][*c].checked_add(&m)?;
        }
    }
    let wrong = misrouted(&trained.weights, samples)?;
    if wrong == trained.misrouted {
        trained.misrouted = wrong;
        return Some(trained);
    }
    let epochs = trained.epochs;
    let mut again = fit(samples, &trained.weights, max_epochs)?;
    again.epochs += epochs;
    Some(again)
}

/// The training data: prefixes grouped by their exact router input. Prefixes
/// with identical input get identical scores, so a group must go to one
/// task: the intersection of their C(w) if it is nonempty; otherwise no
/// router can serve the whole group, and it trains on its most common task
/// (the other prefixes are forced misroutes, counted here).
struct Groups {
    /// Each group's input over the router's columns (bias excluded), exact.
    x: Vec<Vec<(usize, FastRat)>>,
    tasks: Vec<BTreeSet<usize>>,
    /// Prefixes in each group.
    weight: Vec<usize>,
    forced: usize,
    /// The bias column (= the number of read directions).
    bias: usize,
}

impl Groups {
    fn new(ts: &TaskSet, r: &Residual, head1: &Head1, reads: &[usize]) -> Groups {
        let column: HashMap<usize, usize> =
            reads.iter().enumerate().map(|(c, &d)| (d, c)).collect();
        // Hidden states are independent per prefix: compute them in
        // parallel, then group in prefix order (the order training sees).
        let inputs: Vec<Vec<(usize, FastRat)>> = ts
            .prefixes
            .par_iter()
            .map(|p| {
                let h = hidden_state_with(r, head1, &p.tokens);
                // Sized exactly: at paper scale these vectors are most of
                // synthesis's memory.
                let mut x = Vec::with_capacity(h.nnz());
                x.extend(
                    h.entries()
                        .iter()
                        .filter_map(|(d, v)| column.get(d).map(|&c| (c, FastRat::from_rat(v)))),
                );
                x.shrink_to_fit();
                x
            })
            .collect();
        // Group ids in order of first appearance; each group's inputs are
        // then moved (not copied) out of `inputs`.
        let mut id: HashMap<&[(usize, FastRat)], usize> = HashMap::new();
        let mut members: Vec<Vec<&BTreeSet<usize>>> = Vec::new();
        let mut first = Vec::new();
        for (i, (x, p)) in inputs.iter().zip(&ts.prefixes).enumerate() {
            let g = *id.entry(x.as_slice()).or_insert_with(|| {
                members.push(Vec::new());
                first.push(i);
                members.len() - 1
            });
            members[g].push(&p.tasks);
        }
        drop(id);
        let mut inputs = inputs;
        let mut forced = 0;
        let mut groups = Groups {
            x: first
                .iter()
                .map(|&i| std::mem::take(&mut inputs[i]))
                .collect(),
            tasks: Vec::with_capacity(members.len()),
            weight: Vec::with_capacity(members.len()),
            forced: 0,
            bias: reads.len(),
        };
        drop(inputs);
        for members in &members {
            let common = members.iter().skip(1).fold(members[0].clone(), |acc, t| {
                acc.intersection(t).copied().collect()
            });
            let tasks = if common.is_empty() {
                let mut count: HashMap<usize, usize> = HashMap::new();
                members
                    .iter()
                    .flat_map(|t| t.iter())
                    .for_each(|&k| *count.entry(k).or_default() += 1);
                let top = count
                    .iter()
                    .map(|(&k, &c)| (c, std::cmp::Reverse(k)))
                    .max()
                    .map_or(0, |(_, k)| k.0);
                forced += members.iter().filter(|t| !t.contains(&top)).count();
                BTreeSet::from([top])
            } else {
                common
            };
            groups.tasks.push(tasks);
            groups.weight.push(members.len());
        }
        groups.forced = forced;
        groups
    }

    fn len(&self) -> usize {
        self.x.len()
    }

    /// One scale for all samples, the lcm of every denominator (taken over
    /// the distinct ones): scaling each sample by its own lcm would weight
    /// long prefixes up to 2^L times more and slow the perceptron down by as
    /// much.
    fn scale(&self) -> BigInt {
        let denominators: HashSet<BigInt> = self
            .x
            .iter()
            .flatten()
            .map(|(_, v)| v.to_rat().denom().clone())
            .collect();
        denominators
            .into_iter()
            .fold(BigInt::one(), |l, d| l.lcm(&d))
    }

    /// The samples as integers in T (each feature times `scale`, the bias
    /// feature equal to `scale`); None if some feature does not fit in T.
    fn integer<T: Int + TryFrom<BigInt>>(&self, scale: &BigInt) -> Option<Vec<Sample<T>>> {
        let convert = |b: BigInt| T::try_from(b).ok();
        // scale/d for each distinct denominator d, so a feature n/d is n·(scale/d).
        let mut factor: HashMap<BigInt, T> = HashMap::new();
        let bias = convert(scale.clone())?;
        (0..self.len())
            .map(|g| {
                let mut x = Vec::with_capacity(self.x[g].len() + 1);
                for item in self.x[g]
                    .iter()
                    .map(|(c, v)| {
                        let v = v.to_rat();
                        let f = match factor.get(v.denom()) {
                            Some(f) => f.clone(),
                            None => {
                                let f = convert(scale / v.denom())?;
                                factor.insert(v.denom().clone(), f.clone());
                                f
                            }
                        };
                        Some((*c, convert(v.numer().clone())?.checked_mul(&f)?))
                    })
                    .chain([Some((self.bias, bias.clone()))])
                {
                    x.push(item?);
                }
                Some(Sample {
                    x,
                    tasks: self.tasks[g].clone(),
                    weight: self.weight[g],
                })
            })
            .collect()
    }

    /// Each sample's exact rational features, bias included, for the LP.
    fn exact(&self) -> Vec<Vec<(usize, Rat)>> {
        self.x
            .iter()
            .map(|x| {
                x.iter()
                    .map(|(c, v)| (*c, v.to_rat()))
                    .chain([(self.bias, Rat::one())])
                    .collect()
            })
            .collect()
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
        Some(std::time::Instant::now() + FALLBACK_TIME),
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
    scale: &BigInt,
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
    let column: HashMap<usize, usize> = reads.iter().enumerate().map(|(c, &d)| (d, c)).collect();
    let mut owners: KeyOwners = HashMap::new();
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
        Synthesis {
            converged,
            epochs: trained.epochs,
            misrouted: misrouted + groups.forced,
            forced: groups.forced,
            reads: mode.describe().into(),
        },
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

/// The closed-form router of docs/hypotheses.md (hypothesis H-R), as
/// integer rows over the columns of `reads` plus the bias (zero): expert k
/// scores Σ h1:u over the template words u of task k and Σ h2:e over the
/// entities e of Δk, as far as the router reads them. On a prefix w only
/// w's own tokens have nonzero h1/h2 coordinates, so the top score is taken
/// exactly by the tasks that contain every (readable) token of w, and every
/// task lacking one of them scores strictly less.
fn vocabulary_router(ts: &TaskSet, r: &Residual, reads: &[usize]) -> Vec<Vec<BigInt>> {
    let column: HashMap<usize, usize> = reads.iter().enumerate().map(|(c, &d)| (d, c)).collect();
    let mut rows = vec![vec![BigInt::zero(); reads.len() + 1]; ts.tasks.len()];
    for (k, task) in ts.tasks.iter().enumerate() {
        let words = task.templates.iter().flat_map(|t| {
            t.slots.iter().filter_map(|s| match s {
                crate::taskset::Slot::Word(w) => Some(*w),
                _ => None,
            })
        });
        let entities = task.pairs.iter().flat_map(|&(a, b)| [a, b]);
        for t in words.chain(entities) {
            let dir = match ts.vocab.kind(t) {
                TokenKind::Word => Some(r.h1[t]),
                TokenKind::Entity => r.entity(t),
                TokenKind::Eos => None,
            };
            if let Some(&c) = dir.and_then(|d| column.get(&d)) {
                rows[k][c] = BigInt::one();
            }
        }
    }
    rows
}

/// Make the router route every prefix that H-R covers, without losing any
/// prefix it already routes: add M times the closed-form router, for the
/// smallest M ≥ 0 such that on every sample the closed form's top tier
/// (the tasks tied at its top score, a superset of C(w)) wins, led by the
/// trained router's favourite in the tier. Within the tier the trained
/// router's order is unchanged, so a sample it routed stays routed; a
/// covered prefix's tier is C(w) itself, so it is now routed. M = 0 (no
/// change) whenever the trained router already does this.
fn secure<T: Int>(
    trained: Trained<T>,
    closed: &[Vec<T>],
    samples: &[Sample<T>],
) -> Option<Trained<T>> {
    let (by_trained, by_closed) = (ByFeature::new(&trained.weights), ByFeature::new(closed));
    // The least M this sample needs (None: overflow).
    let need = |s: &Sample<T>| -> Option<T> {
        let w = by_trained.scores(&s.x)?;
        let c = by_closed.scores(&s.x)?;
        let mut m = T::zero();
        let Some(top) = c.iter().max() else {
            return Some(m);
        };
        let tier = |k: usize| c[k] == *top;
        let lead = (0..w.len())
            .filter(|&k| tier(k))
            .reduce(|a, b| if w[b] > w[a] { b } else { a })
            .unwrap_or(0);
        for k in (0..w.len()).filter(|&k| !tier(k)) {
            // Need M·(top − c_k) > w_k − w_lead, with top − c_k ≥ 1: the
            // least such M is ⌊(w_k − w_lead)/(top − c_k)⌋ + 1 (both ≥ 0,
            // so truncating division is the floor).
            if w[k] >= w[lead] {
                let need = w[k]
                    .checked_sub(&w[lead])?
                    .checked_div(&top.checked_sub(&c[k])?)?
                    .checked_add(&T::one())?;
                m = m.max(need);
            }
        }
        Some(m)
    };
    let m = samples
        .par_iter()
        .map(need)
        .try_reduce(T::zero, |a, b| Some(a.max(b)))?;
    if m.is_zero() {
        return Some(trained);
    }
    let weights: Vec<Vec<T>> = trained
        .weights
        .iter()
        .zip(closed)
        .map(|(row, c)| {
            row.iter()
                .zip(c)
                .map(|(w, c)| w.checked_add(&m.checked_mul(c)?))
                .collect::<Option<Vec<T>>>()
        })
        .collect::<Option<_>>()?;
    let misrouted = misrouted(&weights, samples)?;
    Some(Trained {
        weights,
        converged: trained.converged || misrouted == 0,
        epochs: trained.epochs,
        misrouted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(x: &[(usize, i128)], tasks: &BTreeSet<usize>) -> Sample<i128> {
        Sample {
            x: x.to_vec(),
            tasks: tasks.clone(),
            weight: 1,
        }
    }

    #[test]
    fn perceptron_separates_separable_data() {
        // Feature 0 marks task 0, feature 1 task 1; feature 2 is the bias.
        let a = BTreeSet::from([0]);
        let b = BTreeSet::from([1]);
        let both = BTreeSet::from([0, 1]);
        let samples = vec![
            sample(&[(0, 1), (2, 1)], &a),
            sample(&[(1, 1), (2, 1)], &b),
            sample(&[(0, 1), (1, 1), (2, 1)], &both),
        ];
        let t = fit(&samples, &vec![vec![0; 3]; 2], 100).unwrap();
        assert!(t.converged);
        assert_eq!(misrouted(&t.weights, &samples), Some(0));
        let s = scores(&t.weights, &samples[0].x).unwrap();
        assert!(s[0] > s[1]);
    }

    #[test]
    fn perceptron_reports_xor_as_not_converged() {
        // XOR: features (x, y) one-hot pairs; task 0 on (0,0),(1,1), task 1 on (0,1),(1,0).
        let a = BTreeSet::from([0]);
        let b = BTreeSet::from([1]);
        let samples = vec![
            sample(&[(0, 1), (2, 1), (4, 1)], &a),
            sample(&[(1, 1), (3, 1), (4, 1)], &a),
            sample(&[(0, 1), (3, 1), (4, 1)], &b),
            sample(&[(1, 1), (2, 1), (4, 1)], &b),
        ];
        let zero = vec![vec![0; 5]; 2];
        let (t, _) = train(&samples, &[true; 4], &zero, 300).unwrap();
        assert!(!t.converged);
        assert!(t.misrouted >= 1);
        // Giving up on one prefix leaves a separable rest: exactly one fails.
        let t = fit(&samples, &zero, 300).unwrap();
        assert_eq!(t.misrouted, 1);
    }

    #[test]
    fn keys_decide_their_prefixes_without_training() {
        // Columns 0, 1: words before the key; 2, 3: keys of tasks 0 and 1;
        // 4: bias. Two pre-key prefixes to train, two decided by their key,
        // where the trained word weights point the wrong way (word 0 is task
        // 1's opening but precedes task 0's key here).
        let s = |x: &[(usize, i128)], t: usize| sample(x, &BTreeSet::from([t]));
        let samples = vec![
            s(&[(0, 1), (4, 1)], 1),
            s(&[(1, 1), (4, 1)], 0),
            s(&[(0, 3), (2, 1), (4, 1)], 0),
            s(&[(1, 3), (3, 1), (4, 1)], 1),
        ];
        let owners = KeyOwners::from([(2, vec![0]), (3, vec![1])]);
        let t = solve(&samples, &owners, 2, 5, 100).unwrap();
        assert!(t.converged);
        assert_eq!(misrouted(&t.weights, &samples), Some(0));
        // The key weight is the least integer that gives margin 1.
        for (i, key) in [(2, 2), (3, 3)] {
            let sc = scores(&t.weights, &samples[i].x).unwrap();
            let (own, other) = if key == 2 { (0, 1) } else { (1, 0) };
            assert!(sc[own] > sc[other]);
        }
        assert_eq!(t.weights[0][2], t.weights[1][3]);
    }

    #[test]
    fn securing_routes_covered_samples_and_keeps_the_others() {
        // Columns: a word only task 0 has, a word only task 1 has, a word
        // both have, the bias.
        let big = |x: &[(usize, i64)], k: usize| Sample {
            x: x.iter().map(|&(c, v)| (c, BigInt::from(v))).collect(),
            tasks: BTreeSet::from([k]),
            weight: 1,
        };
        let samples = vec![
            big(&[(0, 1), (3, 1)], 0),
            big(&[(1, 1), (3, 1)], 1),
            // Only the shared word: not covered, routed by the trained router.
            big(&[(2, 1), (3, 1)], 0),
        ];
        let row = |v: [i64; 4]| v.map(BigInt::from).to_vec();
        // A trained router that misroutes the first sample to task 1.
        let trained = Trained {
            weights: vec![row([0, 0, 5, 0]), row([0, 0, 0, 3])],
            converged: false,
            epochs: 7,
            misrouted: 1,
        };
        let closed = vec![row([1, 0, 1, 0]), row([0, 1, 1, 0])];
        let secured = secure(trained, &closed, &samples).unwrap();
        // M = 4 is the smallest that lifts task 0 above 3 on the first sample.
        assert_eq!(secured.weights, vec![row([4, 0, 9, 0]), row([0, 4, 4, 3])]);
        assert_eq!(secured.misrouted, 0);
        assert!(secured.converged);
        assert_eq!(misrouted(&secured.weights, &samples), Some(0));
        // A router that already routes everything is left alone.
        let good = Trained {
            weights: secured.weights.clone(),
            converged: true,
            epochs: 1,
            misrouted: 0,
        };
        assert_eq!(
            secure(good, &closed, &samples).unwrap().weights,
            secured.weights
        );
    }

    #[test]
    fn overflow_is_detected_not_wrapped() {
        let a = BTreeSet::from([0]);
        let b = BTreeSet::from([1]);
        let huge = i128::MAX / 2;
        let samples = vec![sample(&[(0, huge)], &a), sample(&[(0, huge)], &b)];
        assert!(fit(&samples, &vec![vec![0; 1]; 2], 10).is_none());
    }

    #[test]
    fn integer_samples_scale_by_a_common_factor() {
        let f = |n: i64, d: i64| FastRat::from_rat(&crate::scalar::rat(n, d));
        let groups = Groups {
            x: vec![vec![(0, f(1, 6)), (1, f(1, 4))], vec![(1, f(50, 3))]],
            tasks: vec![BTreeSet::from([0]), BTreeSet::from([1])],
            weight: vec![1, 2],
            forced: 0,
            bias: 2,
        };
        let scale = groups.scale();
        assert_eq!(scale, BigInt::from(12));
        let samples = groups.integer::<i128>(&scale).unwrap();
        assert_eq!(samples[0].x, vec![(0, 2), (1, 3), (2, 12)]);
        assert_eq!(samples[1].x, vec![(1, 200), (2, 12)]);
        assert_eq!(samples[1].weight, 2);
        // The same in big integers; and i8 cannot hold 50/3 · 12 = 200.
        let big = groups.integer::<BigInt>(&scale).unwrap();
        assert_eq!(big[1].x[0].1, BigInt::from(200));
        assert!(groups.integer::<i8>(&scale).is_none());
    }

    #[test]
    fn router_modes_parse() {
        assert_eq!("syntactic".parse::<RouterMode>(), Ok(RouterMode::Syntactic));
        assert_eq!(
            "syntactic+key".parse::<RouterMode>().map(|m| m.to_string()),
            Ok("syntactic+key".into())
        );
        assert!("key".parse::<RouterMode>().is_err());
    }
}
