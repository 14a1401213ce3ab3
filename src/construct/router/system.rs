//! The routing constraints of a linear top-1 router, and their decision.
//!
//! Pure mathematics: a [`System`] is a list of router inputs x̃ (exact
//! feature vectors, the bias feature included), each with the set I of
//! experts the router may choose there. A router W (one weight row per
//! expert, score s_e = W_e·x̃) serves a group when its top score is on an
//! expert of I, strictly above every expert outside I. Scores are
//! homogeneous in W, so "strictly above" can be written "at least 1 above":
//! with |I| = 1 the group asks the linear inequalities
//!   (W_k − W_e)·x̃ ≥ 1   for every e ≠ k,
//! and with |I| > 1 a disjunction (some k ∈ I beats every e ∉ I).
//!
//! The decision, in order:
//! 1. presolve: a feature that is positive only on groups sharing a task k
//!    can route all of them to k by a weight large enough on W_k, without
//!    touching any other group; remove them and repeat (keys that belong to
//!    one task dispose of most prefixes this way);
//! 2. the LP of the remaining |I| = 1 groups (a relaxation: it drops the
//!    disjunctions), solved exactly with constraint generation; infeasible
//!    means no router exists, and the Farkas multipliers say why;
//! 3. if its router violates a disjunction, branch on the expert that group
//!    goes to (depth-first, bounded); a branch whose LP is infeasible is
//!    refuted by its own Farkas multipliers, which may use the branch's
//!    assumption, so exhausting every branch yields a case-split proof.
//!
//! Expert 0's weights are fixed at 0 in the LP: constraints only involve
//! differences W_k − W_e, so this loses no router, and a Farkas combination
//! that vanishes on experts 1.. vanishes on expert 0 too (the blocks of any
//! constraint sum to zero).

use crate::lp::{self, Answer, Outcome, Problem};
use crate::scalar::Rat;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// LP solves allowed for case splits on ambiguous router inputs.
pub const DEFAULT_BUDGET: usize = 64;

/// LP rows handed to the simplex per round of constraint generation.
const BATCH: usize = 64;
/// Systems up to this many rows are solved whole, without generation.
const WHOLE: usize = 192;

/// One router input and the experts that may serve it.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// x̃ as sorted (feature, nonzero value), the bias feature included.
    pub x: Vec<(usize, Rat)>,
    /// I: the experts the router may choose at this input (nonempty).
    pub tasks: BTreeSet<usize>,
}

impl Group {
    /// The experts that must score strictly below `chosen` here.
    fn below(&self, chosen: usize, experts: usize) -> impl Iterator<Item = usize> + '_ {
        (0..experts).filter(move |&e| e != chosen && !self.tasks.contains(&e))
    }
}

/// A set of routing requirements.
#[derive(Debug, Clone)]
pub struct System {
    pub experts: usize,
    pub features: usize,
    pub groups: Vec<Group>,
}

/// One linear routing constraint: at the input of `group`, expert `task`
/// scores at least 1 above expert `against`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Constraint {
    pub group: usize,
    pub task: usize,
    pub against: usize,
}

/// A constraint with its Farkas multiplier.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub constraint: Constraint,
    pub multiplier: Rat,
}

/// Why no router exists.
#[derive(Debug, Clone, PartialEq)]
pub enum Refutation {
    /// Multipliers λ > 0 with Σ λ·(W_task − W_against)·x̃ ≡ 0: every
    /// constraint asks for a positive term, yet they sum to zero.
    Farkas(Vec<Term>),
    /// The router must send `group` to one of its experts; each case (an
    /// expert of I) is refuted, its Farkas terms free to use "task beats
    /// every expert outside I" at that group.
    Cases {
        group: usize,
        cases: Vec<(usize, Refutation)>,
    },
}

impl Refutation {
    /// Every group a term of this proof uses.
    pub fn groups(&self) -> BTreeSet<usize> {
        match self {
            Refutation::Farkas(terms) => terms.iter().map(|t| t.constraint.group).collect(),
            Refutation::Cases { group, cases } => cases
                .iter()
                .flat_map(|(_, r)| r.groups())
                .chain([*group])
                .collect(),
        }
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Solution {
    /// weights[e][f]: a router that serves every group.
    Router(Vec<Vec<Rat>>),
    Refuted(Refutation),
    /// The branch budget ran out before a router or a refutation was found.
    Undecided(String),
}

/// What the decision cost.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Groups that constrain the router (I is not every expert).
    pub constraining: usize,
    /// Groups routed by the presolve (a feature exclusive to their task).
    pub presolved: usize,
    /// Groups left with |I| > 1 after the presolve.
    pub disjunctive: usize,
    pub lp_solves: usize,
    /// Exact simplex pivots (only LPs whose float proposal failed the
    /// exact check pivot).
    pub pivots: usize,
    /// The largest LP handed to the LP service: (rows, columns).
    pub largest: (usize, usize),
    /// Time spent in the LP service.
    #[serde(skip)]
    pub lp_seconds: f64,
    /// The end of the time budget, if the caller set one
    /// ([`System::solve_within`]): no LP starts after it, and none runs
    /// past it.
    #[serde(skip)]
    pub deadline: Option<Instant>,
}

impl Stats {
    /// Time left before the deadline (None: no deadline).
    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(lp::clock::now()))
    }

    fn out_of_time(&self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }
}

/// A feature exclusive to one task's groups, found by the presolve.
struct Layer {
    feature: usize,
    task: usize,
    groups: Vec<usize>,
}

enum Node {
    Router(Vec<Vec<Rat>>),
    Refuted(Refutation),
    OutOfBudget,
    /// An LP past the limit of [`crate::lp`]: the reason.
    Undecided(String),
}

/// Why an LP gave no router.
#[derive(Debug, Clone, PartialEq)]
enum Blocked {
    /// Farkas multipliers: these constraints admit no router.
    Farkas(Vec<Term>),
    /// The LP service reached its limit.
    Undecided(String),
}

/// How long the deletion filter may shrink a refutation: past this, the
/// refutation found so far is kept (valid, maybe not minimal).
const MINIMIZE_TIME: Duration = Duration::from_secs(3);

impl System {
    /// Scores of every expert at a group's input.
    pub fn scores(&self, w: &[Vec<Rat>], group: usize) -> Vec<Rat> {
        w.iter()
            .map(|we| {
                self.groups[group]
                    .x
                    .iter()
                    .map(|(f, v)| &we[*f] * v)
                    .sum::<Rat>()
            })
            .collect()
    }

    /// Does the router serve this group: the best expert of I strictly
    /// above every expert outside I?
    pub fn serves(&self, w: &[Vec<Rat>], group: usize) -> bool {
        let s = self.scores(w, group);
        let g = &self.groups[group];
        let inside = g.tasks.iter().map(|&e| &s[e]).max();
        let outside = (0..self.experts)
            .filter(|e| !g.tasks.contains(e))
            .map(|e| &s[e])
            .max();
        match (inside, outside) {
            (Some(i), Some(o)) => i > o,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Decide whether a router serves every group, within `budget` LP
    /// solves for the branching on disjunctions; a refutation comes with
    /// minimal Farkas leaves.
    pub fn solve(&self, budget: usize) -> (Solution, Stats) {
        self.decide(budget, None, true)
    }

    /// [`System::solve`] within a time budget as well: past `deadline` no
    /// LP starts, and the answer is undecided (a refutation found in time
    /// is kept, minimal or not).
    pub fn solve_within(&self, budget: usize, deadline: Option<Instant>) -> (Solution, Stats) {
        self.decide(budget, deadline, true)
    }

    /// A router that serves every group, if the search finds one (no time
    /// spent on making refutations minimal).
    pub fn router(&self, budget: usize) -> Option<Vec<Vec<Rat>>> {
        self.router_within(budget, None)
    }

    /// [`System::router`] with no LP started after `deadline`.
    pub fn router_within(&self, budget: usize, deadline: Option<Instant>) -> Option<Vec<Vec<Rat>>> {
        match self.decide(budget, deadline, false).0 {
            Solution::Router(w) => Some(w),
            _ => None,
        }
    }

    fn decide(&self, budget: usize, deadline: Option<Instant>, minimal: bool) -> (Solution, Stats) {
        let mut stats = Stats {
            deadline,
            ..Stats::default()
        };
        if self.groups.iter().any(|g| g.tasks.is_empty()) {
            return (
                Solution::Undecided("a group has no compatible expert".into()),
                stats,
            );
        }
        let live: Vec<usize> = (0..self.groups.len())
            .filter(|&g| self.groups[g].tasks.len() < self.experts)
            .collect();
        stats.constraining = live.len();
        let (layers, remaining) = self.presolve(&live);
        stats.presolved = live.len() - remaining.len();
        let (unique, disjunctive): (Vec<usize>, Vec<usize>) = remaining
            .iter()
            .partition(|&&g| self.groups[g].tasks.len() == 1);
        stats.disjunctive = disjunctive.len();
        let base: Vec<Constraint> = unique
            .iter()
            .flat_map(|&g| self.constraints(g, self.only(g)))
            .collect();
        let mut budget = budget;
        let node = self.search(
            &base,
            &mut Vec::new(),
            &disjunctive,
            &mut budget,
            &mut stats,
        );
        let solution = match node {
            Node::Router(w) => Solution::Router(self.complete(w, &layers)),
            Node::Refuted(r) if minimal => {
                Solution::Refuted(self.minimize_tree(r, &mut Vec::new(), &mut stats))
            }
            Node::Refuted(r) => Solution::Refuted(r),
            Node::OutOfBudget => Solution::Undecided(format!(
                "{} ambiguous router inputs need a case split and the branch budget ran out",
                disjunctive.len()
            )),
            Node::Undecided(reason) => Solution::Undecided(reason),
        };
        (solution, stats)
    }

    /// The task of a group with |I| = 1.
    fn only(&self, g: usize) -> usize {
        *self.groups[g].tasks.first().unwrap_or(&0)
    }

    /// "chosen beats every expert outside I" at group g.
    fn constraints(&self, g: usize, chosen: usize) -> Vec<Constraint> {
        self.groups[g]
            .below(chosen, self.experts)
            .map(|against| Constraint {
                group: g,
                task: chosen,
                against,
            })
            .collect()
    }

    /// Remove groups that a feature exclusive to one of their tasks can
    /// route, repeatedly. Returns the layers in the order found and the
    /// groups left.
    fn presolve(&self, live: &[usize]) -> (Vec<Layer>, Vec<usize>) {
        let mut alive: BTreeSet<usize> = live.iter().copied().collect();
        let mut layers = Vec::new();
        let mut used = BTreeSet::new();
        loop {
            let mut on: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for &g in &alive {
                for (f, _) in &self.groups[g].x {
                    on.entry(*f).or_default().push(g);
                }
            }
            let found = on.into_iter().find_map(|(f, groups)| {
                if used.contains(&f) {
                    return None;
                }
                let positive = groups
                    .iter()
                    .all(|&g| self.value(g, f).is_some_and(|v| v.is_positive()));
                let common = groups
                    .iter()
                    .skip(1)
                    .fold(self.groups[groups[0]].tasks.clone(), |acc, &g| {
                        acc.intersection(&self.groups[g].tasks).copied().collect()
                    });
                let task = common.first().copied()?;
                positive.then_some(Layer {
                    feature: f,
                    task,
                    groups,
                })
            });
            let Some(layer) = found else { break };
            for g in &layer.groups {
                alive.remove(g);
            }
            used.insert(layer.feature);
            layers.push(layer);
        }
        (layers, alive.into_iter().collect())
    }

    fn value(&self, g: usize, f: usize) -> Option<&Rat> {
        let x = &self.groups[g].x;
        x.binary_search_by_key(&f, |(i, _)| *i)
            .ok()
            .map(|at| &x[at].1)
    }

    /// Give each presolve layer its weight, last layer first: a layer's
    /// feature is zero on every group still alive when it was found, except
    /// its own, so its weight can be sized once the later layers are set.
    fn complete(&self, mut w: Vec<Vec<Rat>>, layers: &[Layer]) -> Vec<Vec<Rat>> {
        for layer in layers.iter().rev() {
            let mut weight = Rat::zero();
            for &g in &layer.groups {
                let s = self.scores(&w, g);
                let x = self
                    .value(g, layer.feature)
                    .cloned()
                    .unwrap_or_else(Rat::one);
                for e in self.groups[g].below(layer.task, self.experts) {
                    // s_k + M·x ≥ s_e + 1.
                    let need = (&s[e] + Rat::one() - &s[layer.task]) / &x;
                    if need > weight {
                        weight = need;
                    }
                }
            }
            w[layer.task][layer.feature] += weight.ceil();
        }
        w
    }

    /// Depth-first search over the disjunctions the current router breaks.
    fn search(
        &self,
        base: &[Constraint],
        pinned: &mut Vec<(usize, usize)>,
        disjunctive: &[usize],
        budget: &mut usize,
        stats: &mut Stats,
    ) -> Node {
        if *budget == 0 {
            return Node::OutOfBudget;
        }
        if stats.out_of_time() {
            return Node::Undecided(format!(
                "the time budget ran out after {} LP solves, {} ambiguous router inputs still to split",
                stats.lp_solves,
                disjunctive.len()
            ));
        }
        *budget -= 1;
        let mut rows = base.to_vec();
        for &(g, k) in pinned.iter() {
            rows.extend(self.constraints(g, k));
        }
        let w = match self.lp(&rows, stats) {
            Err(Blocked::Farkas(terms)) => return Node::Refuted(Refutation::Farkas(terms)),
            Err(Blocked::Undecided(reason)) => return Node::Undecided(reason),
            Ok(w) => w,
        };
        let open = disjunctive
            .iter()
            .copied()
            .find(|&g| !pinned.iter().any(|(p, _)| *p == g) && !self.serves(&w, g));
        let Some(g) = open else {
            return Node::Router(w);
        };
        // Try the experts of I best-scoring first.
        let s = self.scores(&w, g);
        let mut choices: Vec<usize> = self.groups[g].tasks.iter().copied().collect();
        choices.sort_by(|a, b| s[*b].cmp(&s[*a]).then(a.cmp(b)));
        let mut cases = Vec::new();
        let mut exhausted = false;
        let mut undecided = None;
        for k in choices {
            pinned.push((g, k));
            let child = self.search(base, pinned, disjunctive, budget, stats);
            pinned.pop();
            match child {
                Node::Router(w) => return Node::Router(w),
                // A refutation that never used this case's assumption
                // refutes the parent as well.
                Node::Refuted(r) if !r.groups().contains(&g) => return Node::Refuted(r),
                Node::Refuted(r) => cases.push((k, r)),
                Node::OutOfBudget => exhausted = true,
                Node::Undecided(reason) => undecided = Some(reason),
            }
        }
        if let Some(reason) = undecided {
            Node::Undecided(reason)
        } else if exhausted {
            Node::OutOfBudget
        } else {
            Node::Refuted(Refutation::Cases { group: g, cases })
        }
    }

    /// Solve the LP of these constraints with constraint generation: solve
    /// a working subset, add the constraints its router violates, repeat.
    /// A refutation of a subset refutes the whole set.
    fn lp(&self, rows: &[Constraint], stats: &mut Stats) -> Result<Vec<Vec<Rat>>, Blocked> {
        // The whole LP first: the float proposal makes its size cheap.
        let mut working: Vec<Constraint> = rows.to_vec();
        loop {
            let w = self.lp_whole(&working, stats)?;
            // Every expert's score once per router input, not once per
            // constraint (a group has one constraint per expert below).
            let mut scores: BTreeMap<usize, Vec<Rat>> = BTreeMap::new();
            for c in rows {
                scores
                    .entry(c.group)
                    .or_insert_with(|| self.scores(&w, c.group));
            }
            let mut violated: Vec<(Rat, Constraint)> = rows
                .iter()
                .filter_map(|c| {
                    let s = &scores[&c.group];
                    let margin = &s[c.task] - &s[c.against];
                    (margin < Rat::one()).then_some((margin, *c))
                })
                .collect();
            violated.sort();
            let fresh: Vec<Constraint> = violated
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| !working.contains(c))
                .take(BATCH)
                .collect();
            // The simplex meets every working row, so nothing violated is
            // already working; if that ever failed, the router goes to the
            // verifier, which would report what it misroutes.
            if fresh.is_empty() {
                return Ok(w);
            }
            working.extend(fresh);
        }
    }

    /// One exact LP for the constraints (W_k − W_e)·x̃ ≥ 1 (W free, W_0 = 0):
    /// the primal in standard form, or its Farkas alternative
    /// (λ ≥ 0, Σ λ_r a_r = 0, Σ λ_r = 1), whichever has fewer rows. Both
    /// answer with a router or with multipliers.
    fn lp_whole(&self, rows: &[Constraint], stats: &mut Stats) -> Result<Vec<Vec<Rat>>, Blocked> {
        let features: BTreeSet<usize> = rows
            .iter()
            .flat_map(|c| self.groups[c.group].x.iter().map(|(f, _)| *f))
            .collect();
        let features: Vec<usize> = features.into_iter().collect();
        let column_of: BTreeMap<usize, usize> =
            features.iter().enumerate().map(|(i, &f)| (f, i)).collect();
        let per_expert = features.len();
        let variables = (self.experts - 1) * per_expert;
        // a_r as (variable, coefficient): variable (e, f) for e ≥ 1 is
        // (e − 1)·|features| + index of f.
        let a: Vec<Vec<(usize, Rat)>> = rows
            .iter()
            .map(|c| {
                let mut entries = Vec::new();
                for (f, v) in &self.groups[c.group].x {
                    let i = column_of[f];
                    for (e, coefficient) in [(c.task, v.clone()), (c.against, -v.clone())] {
                        if e != 0 {
                            entries.push(((e - 1) * per_expert + i, coefficient));
                        }
                    }
                }
                entries
            })
            .collect();
        let to_router = |value: &dyn Fn(usize) -> Rat| {
            let mut w = vec![vec![Rat::zero(); self.features]; self.experts];
            for (e, we) in w.iter_mut().enumerate().skip(1) {
                for (i, &f) in features.iter().enumerate() {
                    we[f] = value((e - 1) * per_expert + i);
                }
            }
            w
        };
        let to_terms = |lambda: &dyn Fn(usize) -> Rat| {
            let terms: Vec<Term> = rows
                .iter()
                .enumerate()
                .map(|(r, c)| Term {
                    constraint: *c,
                    multiplier: lambda(r),
                })
                .filter(|t| t.multiplier.is_positive())
                .collect();
            Blocked::Farkas(integral(terms))
        };
        stats.lp_solves += 1;
        // The float router, confirmed by its exact margins, answers most
        // LPs; otherwise the Farkas alternative decides either way.
        let start = std::time::Instant::now();
        if rows.len() * variables > stats.largest.0 * stats.largest.1 {
            stats.largest = (rows.len(), variables);
        }
        let found = lp::strict::separate_within(&a, variables, stats.remaining());
        stats.lp_seconds += start.elapsed().as_secs_f64();
        if let Some(w) = found {
            return Ok(to_router(&|v| w[v].clone()));
        }
        if rows.len() <= variables + 1 && rows.len() <= WHOLE {
            // Primal: a_r·(x⁺ − x⁻) − s_r = 1, columns 2v, 2v + 1, then s.
            let mut columns: Vec<Vec<(usize, Rat)>> = vec![Vec::new(); 2 * variables + rows.len()];
            for (r, entries) in a.iter().enumerate() {
                for (v, coefficient) in entries {
                    columns[2 * v].push((r, coefficient.clone()));
                    columns[2 * v + 1].push((r, -coefficient.clone()));
                }
                columns[2 * variables + r].push((r, -Rat::one()));
            }
            let problem = Problem {
                rows: rows.len(),
                columns,
                rhs: vec![Rat::one(); rows.len()],
            };
            match self.run(&problem, stats)? {
                Outcome::Feasible(x) => Ok(to_router(&|v| &x[2 * v] - &x[2 * v + 1])),
                // yᵀA ≥ 0 on the slack columns says y ≤ 0, on the pairs
                // x⁺, x⁻ that yᵀA_W = 0, and yᵀb = Σ y < 0: λ = −y.
                Outcome::Infeasible(y) => Err(to_terms(&|r| -y[r].clone())),
            }
        } else {
            // Farkas alternative: one column per constraint r holding a_r
            // and a 1 in the normalising row; right-hand side (0, …, 0, 1).
            let columns = a
                .iter()
                .map(|entries| {
                    let mut column = entries.clone();
                    column.push((variables, Rat::one()));
                    column
                })
                .collect();
            let mut rhs = vec![Rat::zero(); variables + 1];
            rhs[variables] = Rat::one();
            let problem = Problem {
                rows: variables + 1,
                columns,
                rhs,
            };
            match self.run(&problem, stats)? {
                Outcome::Feasible(lambda) => Err(to_terms(&|r| lambda[r].clone())),
                // y = (u, t) with a_r·u + t ≥ 0 for every r and t < 0: the
                // router W = u / (−t) has a_r·W ≥ 1.
                Outcome::Infeasible(y) => {
                    let t = -y[variables].clone();
                    Ok(to_router(&|v| &y[v] / &t))
                }
            }
        }
    }

    /// Hand a problem to the LP service, with bookkeeping.
    fn run(&self, problem: &Problem, stats: &mut Stats) -> Result<Outcome, Blocked> {
        let size = (problem.rows, problem.columns.len());
        if size.0 * size.1 > stats.largest.0 * stats.largest.1 {
            stats.largest = size;
        }
        let limit = stats
            .remaining()
            .map_or(lp::REPAIR_TIME, |r| r.min(lp::REPAIR_TIME));
        let (answer, call) = lp::feasibility_within(problem, limit);
        stats.pivots += call.pivots;
        stats.lp_seconds += call.seconds;
        match answer {
            Answer::Decided(outcome) => Ok(outcome),
            Answer::Undecided(reason) => Err(Blocked::Undecided(reason)),
        }
    }

    /// Minimise every Farkas leaf of a refutation under its cases' pins.
    fn minimize_tree(
        &self,
        r: Refutation,
        pins: &mut Vec<(usize, usize)>,
        stats: &mut Stats,
    ) -> Refutation {
        match r {
            Refutation::Farkas(terms) => Refutation::Farkas(self.minimize(terms, pins, stats)),
            Refutation::Cases { group, cases } => Refutation::Cases {
                group,
                cases: cases
                    .into_iter()
                    .map(|(k, sub)| {
                        pins.push((group, k));
                        let sub = self.minimize_tree(sub, pins, stats);
                        pins.pop();
                        (k, sub)
                    })
                    .collect(),
            },
        }
    }

    /// A deletion filter: drop each group of the refutation in turn and
    /// keep it dropped if the rest is still infeasible. What remains is
    /// minimal (every proper subset admits a router), since a group that was
    /// needed in a set is needed in each of its subsets. A pinned group
    /// contributes its case's constraints.
    fn minimize(&self, terms: Vec<Term>, pins: &[(usize, usize)], stats: &mut Stats) -> Vec<Term> {
        let rows_of = |groups: &BTreeSet<usize>| -> Vec<Constraint> {
            groups
                .iter()
                .flat_map(|&g| {
                    let chosen = pins
                        .iter()
                        .find(|(p, _)| *p == g)
                        .map_or_else(|| self.only(g), |(_, k)| *k);
                    self.constraints(g, chosen)
                })
                .collect()
        };
        let groups_of = |terms: &[Term]| -> BTreeSet<usize> {
            terms.iter().map(|t| t.constraint.group).collect()
        };
        let mut set = groups_of(&terms);
        let mut best = terms;
        let mut needed = BTreeSet::new();
        let deadline = lp::clock::now()
            + stats
                .remaining()
                .map_or(MINIMIZE_TIME, |r| r.min(MINIMIZE_TIME));
        while let Some(&g) = set.iter().find(|g| !needed.contains(*g)) {
            if lp::clock::now() > deadline {
                break;
            }
            let mut trial = set.clone();
            trial.remove(&g);
            match self.lp(&rows_of(&trial), stats) {
                Err(Blocked::Farkas(terms)) => {
                    set = groups_of(&terms);
                    best = terms;
                }
                // Feasible without g (or undecided): keep g.
                Ok(_) | Err(Blocked::Undecided(_)) => {
                    needed.insert(g);
                }
            }
        }
        best
    }
}

/// Scale multipliers to the smallest integers with the same ratios.
fn integral(terms: Vec<Term>) -> Vec<Term> {
    let lcm = terms
        .iter()
        .fold(BigInt::one(), |l, t| l.lcm(t.multiplier.denom()));
    let scaled: Vec<BigInt> = terms
        .iter()
        .map(|t| (&t.multiplier * Rat::from_integer(lcm.clone())).to_integer())
        .collect();
    let gcd = scaled.iter().fold(BigInt::zero(), |g, v| g.gcd(v));
    let gcd = if gcd.is_zero() { BigInt::one() } else { gcd };
    terms
        .into_iter()
        .zip(scaled)
        .map(|(t, v)| Term {
            constraint: t.constraint,
            multiplier: Rat::from_integer(v / &gcd),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::int;

    fn group(x: &[(usize, i64)], tasks: &[usize]) -> Group {
        Group {
            x: x.iter().map(|&(f, v)| (f, int(v))).collect(),
            tasks: tasks.iter().copied().collect(),
        }
    }

    /// Does the combination of a Farkas refutation vanish on every
    /// (expert, feature)? (The independent checker does this on the model.)
    fn vanishes(system: &System, terms: &[Term]) -> bool {
        let mut sum: BTreeMap<(usize, usize), Rat> = BTreeMap::new();
        for t in terms {
            for (f, v) in &system.groups[t.constraint.group].x {
                *sum.entry((t.constraint.task, *f)).or_insert_with(Rat::zero) += &t.multiplier * v;
                *sum.entry((t.constraint.against, *f))
                    .or_insert_with(Rat::zero) -= &t.multiplier * v;
            }
        }
        !terms.is_empty()
            && terms.iter().all(|t| t.multiplier.is_positive())
            && sum.values().all(Zero::is_zero)
    }

    /// XOR over one-hot features: first word red (0) / blue (1), second
    /// word big (2) / small (3), bias 4; task 0 on red-big and blue-small.
    fn xor() -> System {
        System {
            experts: 2,
            features: 5,
            groups: vec![
                group(&[(0, 1), (2, 1), (4, 1)], &[0]),
                group(&[(1, 1), (3, 1), (4, 1)], &[0]),
                group(&[(0, 1), (3, 1), (4, 1)], &[1]),
                group(&[(1, 1), (2, 1), (4, 1)], &[1]),
            ],
        }
    }

    #[test]
    fn xor_is_refuted_by_all_four_constraints_with_equal_weight() {
        let (solution, stats) = xor().solve(16);
        let Solution::Refuted(Refutation::Farkas(terms)) = &solution else {
            panic!("{solution:?}")
        };
        assert!(vanishes(&xor(), terms));
        // The only combination: each of the four with multiplier 1.
        let mut got: Vec<(usize, usize, usize, Rat)> = terms
            .iter()
            .map(|t| {
                let c = t.constraint;
                (c.group, c.task, c.against, t.multiplier.clone())
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (0, 0, 1, int(1)),
                (1, 0, 1, int(1)),
                (2, 1, 0, int(1)),
                (3, 1, 0, int(1))
            ]
        );
        assert_eq!(stats.presolved, 0);
    }

    #[test]
    fn a_fifth_feature_makes_xor_separable() {
        // Add an AND feature (5) on red-big: now w = AND − small separates.
        let mut s = xor();
        s.features = 6;
        s.groups[0].x.push((5, int(1)));
        let (solution, stats) = s.solve(16);
        let Solution::Router(w) = solution else {
            panic!("{solution:?}")
        };
        assert!((0..4).all(|g| s.serves(&w, g)));
        // Feature 5 is exclusive to task 0, so red-big goes to the presolve;
        // then red is exclusive to task 1 (red-small), and so on: the
        // presolve routes all four and the LP is empty.
        assert_eq!(stats.presolved, 4);
        assert_eq!(stats.largest, (0, 0));
    }

    #[test]
    fn the_deletion_filter_keeps_only_a_minimal_conflict() {
        // XOR plus three satisfiable groups on their own features.
        let mut s = xor();
        s.features = 8;
        s.groups.push(group(&[(5, 1), (0, 1), (4, 1)], &[0]));
        s.groups.push(group(&[(6, 1), (2, 1), (4, 1)], &[1]));
        s.groups.push(group(&[(7, 1), (4, 1)], &[0]));
        // Duplicated conflicting rows with different scale, to tempt the LP.
        s.groups.push(group(&[(0, 2), (2, 2), (4, 2)], &[0]));
        let (solution, _) = s.solve(16);
        let Solution::Refuted(Refutation::Farkas(terms)) = &solution else {
            panic!("{solution:?}")
        };
        assert!(vanishes(&s, terms));
        let groups: BTreeSet<usize> = terms.iter().map(|t| t.constraint.group).collect();
        assert_eq!(groups.len(), 4, "{groups:?}");
        assert!(groups.is_subset(&BTreeSet::from([0, 1, 2, 3, 7])));
    }

    #[test]
    fn presolve_weights_route_exclusive_groups() {
        // Three experts; each group carries a feature of its own task, on
        // top of a shared feature that alone would route everything to 0.
        let s = System {
            experts: 3,
            features: 4,
            groups: vec![
                group(&[(0, 5), (3, 1)], &[0]),
                group(&[(1, 1), (3, 7)], &[1]),
                group(&[(2, 1), (3, 9)], &[2]),
                group(&[(1, 2), (2, 1), (3, 1)], &[1, 2]),
            ],
        };
        let (solution, stats) = s.solve(16);
        let Solution::Router(w) = solution else {
            panic!("{solution:?}")
        };
        assert!((0..4).all(|g| s.serves(&w, g)), "{w:?}");
        assert_eq!(stats.presolved, 4);
        assert_eq!(stats.lp_solves, 1);
    }

    #[test]
    fn an_ambiguous_group_is_routed_inside_its_tasks() {
        // Scores are affine in t (feature 0; feature 2 is the bias): t = 0
        // must go to 1, t = 2 to 2, and t = 1 to 0 or 1. No feature is
        // exclusive, so the disjunction is decided by the LP and the search.
        let s = System {
            experts: 3,
            features: 3,
            groups: vec![
                group(&[(0, 1), (2, 1)], &[0, 1]),
                group(&[(0, 2), (2, 1)], &[2]),
                group(&[(2, 1)], &[1]),
            ],
        };
        let (solution, stats) = s.solve(16);
        let Solution::Router(w) = solution else {
            panic!("{solution:?}")
        };
        assert!((0..3).all(|g| s.serves(&w, g)), "{w:?}");
        assert_eq!((stats.presolved, stats.disjunctive), (0, 1));
    }

    #[test]
    fn a_case_split_refutes_when_every_choice_fails() {
        // Three experts, feature 0 = t and feature 1 = bias. t = 0 goes to
        // 0, t = 2 to 2; input (1, 1) may go to 0 or 2, but input (2, 2),
        // the same direction scaled by 2, must go to 1. The relaxation (drop
        // the disjunction) is feasible and sends (1, 1) to 1; each case
        // "(1, 1) goes to 0" and "(1, 1) goes to 2" contradicts (2, 2).
        let s = System {
            experts: 3,
            features: 2,
            groups: vec![
                group(&[(1, 1)], &[0]),
                group(&[(0, 2), (1, 1)], &[2]),
                group(&[(0, 1), (1, 1)], &[0, 2]),
                group(&[(0, 2), (1, 2)], &[1]),
            ],
        };
        let (solution, stats) = s.solve(16);
        let Solution::Refuted(Refutation::Cases { group, cases }) = &solution else {
            panic!("{solution:?} {stats:?}")
        };
        assert_eq!(*group, 2);
        let mut tasks: Vec<usize> = cases.iter().map(|(k, _)| *k).collect();
        tasks.sort();
        assert_eq!(tasks, [0, 2]);
        for (k, r) in cases {
            let Refutation::Farkas(terms) = r else {
                panic!("{r:?}")
            };
            // Each case uses its assumption at group 2 and group 3's rows.
            assert!(
                terms
                    .iter()
                    .any(|t| t.constraint.group == 2 && t.constraint.task == *k)
            );
            assert!(terms.iter().any(|t| t.constraint.group == 3));
            assert!(vanishes(&s, terms));
        }
        // Budget 1 allows the relaxation only: undecided, not refuted.
        assert!(matches!(s.solve(1).0, Solution::Undecided(_)));
    }

    #[test]
    fn vacuous_groups_and_single_experts_impose_nothing() {
        let s = System {
            experts: 1,
            features: 1,
            groups: vec![group(&[(0, 1)], &[0])],
        };
        assert!(matches!(s.solve(4).0, Solution::Router(_)));
        let s = System {
            experts: 2,
            features: 1,
            groups: vec![group(&[(0, 1)], &[0, 1])],
        };
        let (solution, stats) = s.solve(4);
        assert!(matches!(solution, Solution::Router(_)));
        assert_eq!(stats.constraining, 0);
    }

    #[test]
    fn the_float_proposal_decides_a_large_lp_exactly() {
        // 300 one-dimensional groups: t = 1..=300 with bias, task 0 below
        // 150 and task 1 above: separable by a threshold.
        let s = System {
            experts: 2,
            features: 3,
            groups: (1..=300)
                .map(|t| group(&[(0, t), (1, 1), (2, t % 7 + 1)], &[usize::from(t > 150)]))
                .collect(),
        };
        let mut stats = Stats::default();
        let rows: Vec<Constraint> = (0..300).flat_map(|g| s.constraints(g, s.only(g))).collect();
        let w = s.lp(&rows, &mut stats).unwrap();
        assert!((0..300).all(|g| s.serves(&w, g)));
        // Confirmed from the float router: no exact pivot.
        assert_eq!(stats.pivots, 0, "{stats:?}");
        // Flip one label in the middle: now infeasible, and the Farkas
        // terms vanish exactly.
        let mut s = s;
        s.groups[100].tasks = BTreeSet::from([1]);
        let rows: Vec<Constraint> = (0..300).flat_map(|g| s.constraints(g, s.only(g))).collect();
        match s.lp(&rows, &mut Stats::default()) {
            Err(Blocked::Farkas(terms)) => assert!(vanishes(&s, &terms)),
            other => panic!("expected a refutation, got {other:?}"),
        }
    }
}
