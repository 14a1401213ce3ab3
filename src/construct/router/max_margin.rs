//! An f32-safe router: margins that are a sizeable fraction of the scores
//! they separate, not just ≥ 1 on integers (`--router-synthesis max-margin`).
//!
//! The perceptron's weights are sums of whole samples (10^17 at 1/8 paper
//! scale) while its margins stay of order 1/11: an f32 copy, which rounds
//! each score at about 2^−24 of its size, flips decisions. What f32 needs
//! is a large *relative* margin, so this synthesis builds it by layers:
//!
//! 1. presolve (peel): a feature nonzero only on groups that all admit task
//!    t routes every one of them to t with a weight M on W_t, touching no
//!    group outside them; peel those groups and repeat on the rest, so a
//!    feature exclusive only after an earlier peel forms a later layer;
//! 2. the groups no layer peels go to an f64 max-margin LP (maximise m with
//!    (W_t − W_j)·x ≥ m for every t ∈ C and j ∉ C, weights in [−1, 1]),
//!    scaled by 2^D so the rounding to integers costs under a quarter of
//!    the margin, then checked exactly (the float only proposes);
//! 3. the layers get their M from the last peeled to the first, each the
//!    least integer that makes every margin in the layer at least 1/64 of
//!    the scores it compares (exact rationals), so every layer dominates
//!    the ones below it and weights grow geometrically with the layers.
//!
//! The finished router is checked exactly on every group; any failure
//! (the LP too large or infeasible, a margin not strictly positive) is an
//! `Err` saying which, and the caller falls back to the perceptron and
//! records why.

use super::training::Groups;
use crate::scalar::{Rat, Scalar};
use microlp::{ComparisonOp, OptimizationDirection, Problem as FloatLp};
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Every layer's margin is at least 1/RELATIVE of the scores it compares.
const RELATIVE: i64 = 64;
/// The LP is handed to the float solver only up to this many constraint
/// rows (beyond, the perceptron is the tool).
const MAX_LP_ROWS: usize = 20_000;
/// How long the float LP may run.
const LP_TIME: Duration = Duration::from_secs(20);

/// One peeled layer: which task each of its exclusive features raises, and
/// its groups with the task each is routed to.
struct Layer {
    owner: HashMap<usize, usize>,
    groups: Vec<(usize, usize)>,
}

/// The max-margin router over the training data: rows[e] holds one weight
/// per feature, the bias last; Err (why) when it cannot be built and
/// checked.
pub(super) fn router(groups: &Groups, experts: usize) -> Result<Vec<Vec<Rat>>, String> {
    let xs = groups.exact();
    let xi = integer_groups(&xs);
    let features = groups.bias + 1;
    let (layers, rest) = peel(&xi, &groups.tasks);
    let mut w = vec![vec![BigInt::zero(); features]; experts];
    if !rest.is_empty() {
        let lp = max_margin_lp(&xs, &xi, &groups.tasks, &rest, experts)?;
        for (e, row) in lp.into_iter().enumerate() {
            w[e] = row;
        }
    }
    for layer in layers.iter().rev() {
        let m = layer_weight(&w, &xi, &groups.tasks, layer)?;
        for (&f, &t) in &layer.owner {
            w[t][f] += &m;
        }
    }
    if routes_all(&w, &xi, &groups.tasks, 0..xi.len()) {
        Ok(w.into_iter()
            .map(|row| row.into_iter().map(Rat::from_integer).collect())
            .collect())
    } else {
        Err("the finished router misroutes a training group".into())
    }
}

/// Each group's features (bias last) times the lcm of its own
/// denominators. A positive factor per group changes the sign of no margin
/// and no M of [`layer_weight`] (d, A and E all scale with it), so every
/// exact step below runs on integers, not on rationals that reduce by a
/// gcd after each operation (the weights are integers too).
fn integer_groups(xs: &[Vec<(usize, Rat)>]) -> Vec<Vec<(usize, BigInt)>> {
    xs.iter()
        .map(|x| {
            let l = x.iter().fold(BigInt::one(), |l, (_, v)| l.lcm(v.denom()));
            x.iter()
                .map(|(f, v)| (*f, v.numer() * (&l / v.denom())))
                .collect()
        })
        .collect()
}

/// Whether every group in `which` gets a strictly positive margin (a group
/// with no task outside its compatible set has nothing to beat).
fn routes_all(
    w: &[Vec<BigInt>],
    xs: &[Vec<(usize, BigInt)>],
    tasks: &[BTreeSet<usize>],
    which: impl IntoIterator<Item = usize>,
) -> bool {
    which
        .into_iter()
        .all(|g| margin(&scores(w, &xs[g]), &tasks[g]).is_none_or(|m| Signed::is_positive(&m)))
}

/// Peel layers of groups routed by task-exclusive features; the groups
/// left over.
fn peel(xs: &[Vec<(usize, BigInt)>], tasks: &[BTreeSet<usize>]) -> (Vec<Layer>, Vec<usize>) {
    let mut remaining: Vec<usize> = (0..xs.len()).collect();
    let mut layers = Vec::new();
    loop {
        // The tasks every remaining group with a nonzero feature f admits.
        let mut common: HashMap<usize, BTreeSet<usize>> = HashMap::new();
        for &g in &remaining {
            for (f, v) in &xs[g] {
                if v.is_zero() {
                    continue;
                }
                match common.get_mut(f) {
                    Some(c) => c.retain(|t| tasks[g].contains(t)),
                    None => {
                        common.insert(*f, tasks[g].clone());
                    }
                }
            }
        }
        let owner: HashMap<usize, usize> = common
            .into_iter()
            .filter_map(|(f, c)| c.first().map(|&t| (f, t)))
            .collect();
        let mut layer = Vec::new();
        let mut left = Vec::new();
        for &g in &remaining {
            // Route to the owner whose exclusive features weigh most here.
            let mut by_task: HashMap<usize, BigInt> = HashMap::new();
            for (f, v) in &xs[g] {
                if let Some(&t) = owner.get(f) {
                    *by_task.entry(t).or_insert_with(BigInt::zero) += v;
                }
            }
            match by_task
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            {
                Some((t, e)) if Signed::is_positive(&e) => layer.push((g, t)),
                _ => left.push(g),
            }
        }
        if layer.is_empty() {
            return (layers, remaining);
        }
        let used: BTreeSet<usize> = layer.iter().map(|&(_, t)| t).collect();
        layers.push(Layer {
            owner: owner
                .into_iter()
                .filter(|(_, t)| used.contains(t))
                .collect(),
            groups: layer,
        });
        remaining = left;
    }
}

/// The scores W·x.
fn scores(w: &[Vec<BigInt>], x: &[(usize, BigInt)]) -> Vec<BigInt> {
    w.iter()
        .map(|row| {
            x.iter()
                .filter(|(f, _)| !row[*f].is_zero())
                .fold(BigInt::zero(), |acc, (f, v)| acc + &row[*f] * v)
        })
        .collect()
}

/// The best score inside C minus the best outside (None: no task outside).
fn margin(s: &[BigInt], tasks: &BTreeSet<usize>) -> Option<BigInt> {
    let best = |inside: bool| {
        (0..s.len())
            .filter(|e| tasks.contains(e) == inside)
            .map(|e| &s[e])
            .max()
    };
    Some(best(true)? - best(false)?)
}

/// The least integer M ≥ 1 such that adding M on each exclusive feature of
/// the layer gives every group of the layer (routed to t, with exclusive
/// mass E = Σ x_f over t's features) a margin M·E + d ≥ (M·E + A)/64, where
/// d = s_t − max_{j ∉ C} s_j and A = max_e Σ_f |W_ef x_f| come from the
/// weights below the layer: M ≥ (A − 64·d) / (63·E).
fn layer_weight(
    w: &[Vec<BigInt>],
    xs: &[Vec<(usize, BigInt)>],
    tasks: &[BTreeSet<usize>],
    layer: &Layer,
) -> Result<BigInt, String> {
    let k = BigInt::from(RELATIVE);
    let mut need = Rat::one();
    for &(g, t) in &layer.groups {
        let x = &xs[g];
        let s = scores(w, x);
        let Some(rival) = (0..s.len())
            .filter(|e| !tasks[g].contains(e))
            .map(|e| &s[e])
            .max()
        else {
            continue;
        };
        let d = &s[t] - rival;
        let a = w
            .iter()
            .map(|row| {
                x.iter()
                    .filter(|(f, _)| !row[*f].is_zero())
                    .fold(BigInt::zero(), |acc, (f, v)| acc + (&row[*f] * v).abs())
            })
            .max()
            .unwrap_or_else(BigInt::zero);
        let e = x
            .iter()
            .filter(|(f, _)| layer.owner.get(f) == Some(&t))
            .fold(BigInt::zero(), |acc, (_, v)| acc + v);
        if !Signed::is_positive(&e) {
            return Err(format!(
                "group {g} was peeled without positive exclusive mass"
            ));
        }
        let m = Rat::new(a - &k * d, (&k - BigInt::one()) * e);
        if m > need {
            need = m;
        }
    }
    Ok(need.ceil().to_integer())
}

/// The f64 max-margin LP on the leftover groups, as exact integer weights
/// that route each of them with a positive margin (checked exactly).
fn max_margin_lp(
    xs: &[Vec<(usize, Rat)>],
    xi: &[Vec<(usize, BigInt)>],
    tasks: &[BTreeSet<usize>],
    rest: &[usize],
    experts: usize,
) -> Result<Vec<Vec<BigInt>>, String> {
    let rows: usize = rest
        .iter()
        .map(|&g| tasks[g].len() * (experts - tasks[g].len()))
        .sum();
    if rows > MAX_LP_ROWS {
        return Err(format!(
            "the LP on the {} groups no exclusive feature routes has {rows} rows, above {MAX_LP_ROWS}",
            rest.len()
        ));
    }
    let features = xs.iter().flatten().map(|(f, _)| f + 1).max().unwrap_or(0);
    let mut lp = FloatLp::new(OptimizationDirection::Maximize);
    lp.set_time_limit(LP_TIME);
    let margin_var = lp.add_var(1.0, (f64::NEG_INFINITY, f64::INFINITY));
    let mut var = HashMap::new();
    let mut weight = |lp: &mut FloatLp, e: usize, f: usize| {
        *var.entry((e, f))
            .or_insert_with(|| lp.add_var(0.0, (-1.0, 1.0)))
    };
    let mut largest = 0.0f64;
    for &g in rest {
        let x: Vec<(usize, f64)> = xs[g].iter().map(|(f, v)| (*f, f64::from_rat(v))).collect();
        largest = largest.max(x.iter().map(|(_, v)| v.abs()).sum());
        for &t in &tasks[g] {
            for j in (0..experts).filter(|j| !tasks[g].contains(j)) {
                let mut terms = vec![(margin_var, -1.0)];
                for &(f, v) in &x {
                    terms.push((weight(&mut lp, t, f), v));
                    terms.push((weight(&mut lp, j, f), -v));
                }
                lp.add_constraint(terms.as_slice(), ComparisonOp::Ge, 0.0);
            }
        }
    }
    let solution = lp
        .solve()
        .ok()
        .and_then(|s| s.into_solution().ok())
        .ok_or_else(|| {
            format!(
                "the f64 LP found no solution within {} s",
                LP_TIME.as_secs()
            )
        })?;
    let m = solution.var_value(margin_var);
    if !(m > 0.0 && largest > 0.0) {
        return Err(format!(
            "the f64 LP's best margin is {m:e}: the {} groups no exclusive feature routes look linearly inseparable",
            rest.len()
        ));
    }
    // Rounding moves each score difference by at most Σ|x| (half a unit on
    // each of two rows): 2^D · m ≥ 4 Σ|x| keeps three quarters of it.
    let d = (4.0 * largest / m).log2().ceil().max(0.0) as i32;
    let scale = 2f64.powi(d);
    let mut w = vec![vec![BigInt::zero(); features]; experts];
    for ((e, f), v) in var {
        let rounded = (solution.var_value(v) * scale).round();
        w[e][f] = Rat::from_float(rounded)
            .ok_or_else(|| format!("the LP weight scaled by 2^{d} is not finite"))?
            .to_integer();
    }
    // Keep only as many bits as needed: divide out the common power of two.
    let g = w
        .iter()
        .flatten()
        .filter(|v| !v.is_zero())
        .fold(BigInt::zero(), |acc, v| acc.gcd(v));
    if g > BigInt::one() {
        w.iter_mut().flatten().for_each(|v| *v /= &g);
    }
    if routes_all(&w, xi, tasks, rest.iter().copied()) {
        Ok(w)
    } else {
        Err("the f64 LP's router, rounded to integers, misroutes a group (exact check)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::FastRat;

    fn groups(x: Vec<Vec<(usize, i64, i64)>>, tasks: Vec<Vec<usize>>, bias: usize) -> Groups {
        let f = |n: i64, d: i64| FastRat::from_rat(&crate::scalar::rat(n, d));
        let n = x.len();
        Groups {
            x: x.into_iter()
                .map(|g| g.into_iter().map(|(c, n, d)| (c, f(n, d))).collect())
                .collect(),
            tasks: tasks.into_iter().map(BTreeSet::from_iter).collect(),
            weight: vec![1; n],
            forced: 0,
            bias,
        }
    }

    /// Each expert's score on x in rationals (independent of the integer
    /// scores the synthesis itself checks with).
    fn rat_scores(w: &[Vec<Rat>], x: &[(usize, Rat)]) -> Vec<Rat> {
        w.iter()
            .map(|row| x.iter().map(|(f, v)| &row[*f] * v).sum())
            .collect()
    }

    #[test]
    fn exclusive_features_peel_in_layers_and_the_rest_goes_to_the_lp() {
        // Features: 0 is on group 0 only (task 0's alone), 1 on every group
        // and 2 on groups 1 (task 0) and 2 (task 1), which it tells apart;
        // 3 the bias. Group 0 is peeled by feature 0; groups 1 and 2 share
        // every feature across the two tasks, so the LP routes them.
        let g = groups(
            vec![
                vec![(0, 1, 1), (1, 1, 2)],
                vec![(1, 1, 1), (2, 1, 4)],
                vec![(1, 1, 1), (2, 3, 4)],
            ],
            vec![vec![0], vec![0], vec![1]],
            3,
        );
        let w = router(&g, 2).expect("separable");
        let xs = g.exact();
        let s: Vec<Vec<Rat>> = xs.iter().map(|x| rat_scores(&w, x)).collect();
        // Groups 0 and 1 go to task 0, group 2 to task 1, strictly.
        assert!(
            s[0][0] > s[0][1] && s[1][0] > s[1][1] && s[2][1] > s[2][0],
            "{s:?}"
        );
        let (layers, rest) = peel(&integer_groups(&xs), &g.tasks);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].groups, vec![(0, 0)]);
        assert_eq!(rest, vec![1, 2]);
        // The peeled group's margin is at least 1/64 of each score's
        // absolute sum Σ_f |w_ef x_f| (what f32 rounds against).
        let margin = &s[0][0] - &s[0][1];
        for row in &w {
            let abs: Rat = xs[0].iter().map(|(f, v)| (&row[*f] * v).abs()).sum();
            assert!(&margin * Rat::from_integer(RELATIVE.into()) >= abs);
        }
    }

    #[test]
    fn xor_is_not_routed() {
        // Features 0/1 and 2/3 one-hot, 4 the bias: XOR has no linear router.
        let g = groups(
            vec![
                vec![(0, 1, 1), (2, 1, 1)],
                vec![(1, 1, 1), (3, 1, 1)],
                vec![(0, 1, 1), (3, 1, 1)],
                vec![(1, 1, 1), (2, 1, 1)],
            ],
            vec![vec![0], vec![0], vec![1], vec![1]],
            4,
        );
        let why = router(&g, 2).unwrap_err();
        assert!(why.contains("LP"), "{why}");
    }
}
