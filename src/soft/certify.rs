//! `verify --gate softmax`: the soft MoE checked at one temperature, and the
//! certified temperature T*.
//!
//! At temperature T every prefix's gate mass off its top-1 expert is bounded
//! above by η̂(T) ([`super::gate::off_top_upper`]); R is "η̂ ≤ η and the top
//! expert is a right one", P and A are decided on the worst-case soft logits
//! ([`super::prefix`]). The true mass 1 − g_{e*}(T) is nondecreasing in T,
//! so a proof at T* that used only "1 − g_{e*} ≤ η̂(T*)" is a proof at every
//! T ≤ T*: for T ≤ T*, 1 − g_{e*}(T) ≤ 1 − g_{e*}(T*) ≤ η̂(T*). T* is found by
//! bracketing and bisection on dyadic rationals; the reported T* is proved,
//! and the bracket's upper end (where this certificate fails) is within the
//! stated relative precision above it.
//!
//! The search re-runs no forward pass: every prefix's router gaps and
//! expert spread are T-independent. Before it starts, each prefix's claims
//! are proved once at a gate bound b (η, or η halved until they hold); at a
//! trial T the prefix is then settled without its logits when
//! 1 − g_{e*}(T) ≤ b is shown, from Δ > T·ln((K−1)/b) (one comparison for
//! all but the smallest margins, since 1 − g_{e*} ≤ (K−1)·e^{−Δ/T}) or from
//! η̂(T) ≤ b; only the prefixes near their limit are checked in full.

use super::gate::{GateArith, at_most_t_ln, brief, cap_enclosure, far_above_t_ln, off_top_upper};
use super::image::Decision;
use super::prefix::{ExactLogits, Outcome, SoftPrefix, expert_of_task};
use crate::eval::Evaluator;
use crate::interval::Iv;
use crate::model::Model;
use crate::scalar::{Rat, int};
use crate::taskset::{TaskSet, TokenId};
use crate::verify::ClaimResult;
use crate::verify::logits::token_map;

use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// Failures listed in a soft verdict (all are counted).
const LISTED: usize = 20;
/// Doublings tried above the first bracket before T* is reported as "at
/// least" the largest temperature tried.
const MAX_DOUBLINGS: usize = 64;
/// Halvings tried below it before giving up on a positive T*.
const MAX_HALVINGS: usize = 256;
/// Halvings of η tried for a prefix's T-independent gate bound.
const BOUND_HALVINGS: usize = 24;

/// The parameters of the soft claims.
#[derive(Debug, Clone)]
pub struct SoftOptions {
    /// R's tolerance: the top expert's gate weight must be ≥ 1 − η.
    pub eta: Rat,
    /// P's ε, as for the hard model.
    pub epsilon: Rat,
    /// Relative precision of T*: the search stops once (hi − T*)/hi ≤ this.
    pub precision: Rat,
}

impl Default for SoftOptions {
    fn default() -> Self {
        SoftOptions {
            eta: Rat::new(1.into(), 100.into()),
            epsilon: Rat::new(1.into(), 1_000_000.into()),
            precision: Rat::new(1.into(), 1000.into()),
        }
    }
}

/// One failed soft claim.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SoftFailure {
    pub claim: &'static str,
    pub prefix: String,
    pub tasks: Vec<String>,
    pub reason: String,
}

/// The soft model's claims at one temperature.
#[derive(Debug, Clone, Serialize)]
pub struct SoftVerdict {
    /// "exact" or "f64".
    pub arith: String,
    /// Whether the verdict is a proof (exact) or a float estimate (f64).
    pub certified: bool,
    /// The temperature checked (exact rational or f64 text).
    pub temperature: String,
    pub eta: String,
    pub epsilon: String,
    pub prefixes: usize,
    pub routing: ClaimResult,
    pub probability: ClaimResult,
    pub retrieval: ClaimResult,
    /// The largest bound η̂ on 1 − g_top over the prefixes.
    pub max_off_top: Option<String>,
    /// The same, for reading.
    pub max_off_top_brief: Option<String>,
    pub failure_count: usize,
    pub failures: Vec<SoftFailure>,
}

impl SoftVerdict {
    pub fn all_hold(&self) -> bool {
        self.routing.holds && self.probability.holds && self.retrieval.holds
    }
}

/// The prefix that stops T* from being larger.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Binding {
    pub prefix: String,
    pub tasks: Vec<String>,
    /// The top-1 expert.
    pub expert: String,
    /// Its top-two router margin Δ (exact).
    pub margin: Option<String>,
    /// max_{e,t} |(W_U(FF_e − FF_{e*}))_t|: the spread of the experts'
    /// logit outputs there.
    pub spread: String,
    /// The same, for reading.
    pub spread_brief: String,
    /// What fails just above T* (or at every T > 0 when T* = 0).
    pub reason: String,
}

/// The certified temperature.
#[derive(Debug, Clone, Serialize)]
pub struct CertifiedTemperature {
    /// T*: every claim is proved at every T ≤ T* (exact mode). "0" when no
    /// positive temperature is, "unbounded" with one expert.
    pub temperature: String,
    /// T* as a decimal, for reading.
    pub approx: f64,
    /// The smallest temperature tried at which the certificate failed: T*
    /// is within `relative_precision` of it.
    pub fails_at: Option<String>,
    pub relative_precision: String,
    /// True if T* is only a lower end: the search stopped doubling.
    pub at_least: bool,
    pub binding: Option<Binding>,
    /// Every claim at T* itself.
    pub verdict: SoftVerdict,
}

/// A gate bound at which one prefix's claims were proved, T-independent:
/// at any T where 1 − g_{e*}(T) ≤ `bound` is shown, the prefix is proved.
#[derive(Debug, Clone)]
struct Proved<S> {
    bound: S,
    /// The bound enclosed.
    bound_iv: Iv,
    /// (K − 1)/bound: Δ > T·ln(c) shows (K − 1)·e^{−Δ/T} < bound.
    c: S,
    /// The exact outcome at the bound, when the exact check made it (the
    /// interval image proves most bounds without one).
    outcome: Option<Outcome<S>>,
}

/// The soft thresholds and the temperature, enclosed once per check.
#[derive(Debug, Clone, Copy)]
struct Enclosed {
    eta: Iv,
    epsilon: Iv,
    cap: Iv,
}

impl Enclosed {
    fn new(o: &SoftOptions) -> Enclosed {
        Enclosed {
            eta: Iv::enclose(&o.eta),
            epsilon: Iv::enclose(&o.epsilon),
            cap: cap_enclosure(),
        }
    }
}

/// One prefix checked exactly: η̂ and the outcome (None when the forward
/// pass failed), and what fails.
type Checked<S> = (Option<(S, Outcome<S>)>, Vec<(&'static str, String)>);

/// Every prefix prepared once: the soft checks at any T reuse it.
pub struct Prepared<'a, S> {
    ts: &'a TaskSet,
    model: &'a Model<S>,
    /// The forward pass, the token map and the experts by task, kept to
    /// rebuild a prefix's exact logits when an exact check needs them.
    engine: Evaluator<'a, S>,
    tokens: HashMap<TokenId, usize>,
    experts: Vec<Option<usize>>,
    /// Per prefix: its data, or why its forward pass failed.
    prefixes: Vec<Result<SoftPrefix<S>, String>>,
    /// Prefix indices by Δ, smallest first (the likeliest to fail first).
    order: Vec<usize>,
    /// Per prefix: its T-independent proof, once [`Prepared::certify`] has
    /// made them.
    shortcuts: std::sync::OnceLock<Vec<Option<Proved<S>>>>,
}

/// Prefixes prepared first to estimate what all of them will hold.
const MEMORY_SAMPLE: usize = 256;

/// What the prepared prefixes of `ts` will hold, in bytes: an evenly
/// spaced sample of [`MEMORY_SAMPLE`] prefixes prepared (exact logits
/// dropped, as [`Prepared::new`] keeps them) and scaled to all of them.
pub(crate) fn estimate_held_bytes<S: GateArith>(ts: &TaskSet, model: &Model<S>) -> u128 {
    let n = ts.prefixes.len();
    let engine = Evaluator::new(model).without_preactivations();
    let tokens = token_map(ts, model);
    let experts = expert_of_task(ts, model);
    let sample = n.min(MEMORY_SAMPLE);
    if sample == 0 {
        return 0;
    }
    let step = n / sample;
    let held: u128 = (0..sample)
        .into_par_iter()
        .map(|k| {
            let i = k * step;
            SoftPrefix::new(&engine, model, i, &ts.prefixes[i], &tokens, &experts).map_or(
                0,
                |mut q| {
                    q.drop_exact();
                    q.held_bytes() as u128
                },
            )
        })
        .sum();
    held * n as u128 / sample as u128
}

impl<'a, S: GateArith> Prepared<'a, S> {
    /// [`Prepared::new`], refused with the estimate and the limit when the
    /// prepared prefixes would not fit in memory. Each prefix keeps its
    /// image: two intervals for every token some expert gives a nonzero
    /// logit, so the search holds about prefixes × nonzero tokens × 32 bytes
    /// (at paper scale, 253,158 prefixes × about 10,000 tokens). The
    /// estimate prepares an evenly spaced sample of prefixes, measures what
    /// they hold and scales it to all of them; it is a lower bound (a big
    /// rational's limbs are not counted), so nothing refused would have fit.
    pub fn try_new(ts: &'a TaskSet, model: &'a Model<S>) -> Result<Prepared<'a, S>, String> {
        let n = ts.prefixes.len();
        if n > MEMORY_SAMPLE {
            let estimate = estimate_held_bytes(ts, model);
            let limit = crate::spec::available_memory() / 2;
            if estimate > limit as u128 {
                return Err(format!(
                    "--gate softmax: the {n} prefixes' interval images would need about {} of memory ({} a prefix, measured on {MEMORY_SAMPLE} of them), more than this machine can hold (limit {}: half of the available memory); a smaller set (fewer pairs or tasks) runs, and `margins` needs only the router",
                    crate::taskset::show_bytes(estimate),
                    crate::taskset::show_bytes(estimate / n as u128),
                    crate::taskset::show_bytes(limit as u128)
                ));
            }
        }
        Ok(Prepared::new(ts, model))
    }

    pub fn new(ts: &'a TaskSet, model: &'a Model<S>) -> Prepared<'a, S> {
        let engine = Evaluator::new(model).without_preactivations();
        let tokens = token_map(ts, model);
        let experts = expert_of_task(ts, model);
        let prefixes: Vec<Result<SoftPrefix<S>, String>> = ts
            .prefixes
            .par_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut q = SoftPrefix::new(&engine, model, i, p, &tokens, &experts)?;
                q.drop_exact();
                Ok(q)
            })
            .collect();
        let mut order: Vec<usize> = (0..prefixes.len()).collect();
        order.sort_by(|&a, &b| {
            let m = |i: usize| prefixes[i].as_ref().ok().and_then(|p| p.margin.clone());
            match (m(a), m(b)) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
        });
        Prepared {
            ts,
            model,
            engine,
            tokens,
            experts,
            prefixes,
            order,
            shortcuts: std::sync::OnceLock::new(),
        }
    }

    /// Prefix `i`'s exact logits, rebuilt from the weights (the forward
    /// pass is deterministic, so they are the ones prepared and dropped).
    fn rebuild(&self, i: usize) -> ExactLogits<S> {
        SoftPrefix::new(
            &self.engine,
            self.model,
            i,
            &self.ts.prefixes[i],
            &self.tokens,
            &self.experts,
        )
        .ok()
        .and_then(|q| q.exact.into_inner())
        .expect("the forward pass that prepared this prefix runs again")
    }

    /// R, P and A of prefix `p` at gate bound `eta_hat`, exactly. Without
    /// its exact logits they are rebuilt; `keep`: kept for the next check
    /// (the search, where the image could not decide and the prefix is
    /// likely checked again), else dropped after this one (verify_at's
    /// extremes and the binding reason, checked once).
    fn check(
        &self,
        p: &SoftPrefix<S>,
        eta_hat: &S,
        o: &SoftOptions,
        cache: &mut S::Cache,
        keep: bool,
    ) -> Outcome<S> {
        let (eta, eps) = (S::from_rat(&o.eta), S::from_rat(&o.epsilon));
        match p.exact.get() {
            Some(x) => p.check(x, eta_hat, &eta, &eps, cache),
            None if keep => {
                let x = p.exact.get_or_init(|| self.rebuild(p.index));
                p.check(x, eta_hat, &eta, &eps, cache)
            }
            None => p.check(&self.rebuild(p.index), eta_hat, &eta, &eps, cache),
        }
    }

    /// Each prefix's claims proved at gate bound η, or η/2, η/4, … (None
    /// when hard routing fails or no bound tried holds).
    fn make_shortcuts(&self, o: &SoftOptions) -> Vec<Option<Proved<S>>> {
        let eta = S::from_rat(&o.eta);
        let two = S::from_rat(&int(2));
        let enc = Enclosed::new(o);
        self.prefixes
            .par_iter()
            .map_init(S::Cache::default, |cache, p| {
                let p = p.as_ref().ok().filter(|p| p.routed && !p.gaps.is_empty())?;
                let mut bound = eta.clone();
                for _ in 0..BOUND_HALVINGS {
                    let bound_iv = bound.enclose();
                    // R at a bound b ≤ η is hard R (known exactly): the
                    // image, whose enclosure of b = η straddles η, is asked
                    // only for P and A.
                    let decided = p.image.as_ref().and_then(|im| {
                        let mut d = im.decide(bound_iv, enc.eta, enc.epsilon);
                        d.routing = Some(p.routed && bound <= eta);
                        d.all()
                    });
                    let (holds, outcome) = match decided {
                        Some(h) => (h, None),
                        None => {
                            let outcome = self.check(p, &bound, o, cache, true);
                            (outcome.all(), Some(outcome))
                        }
                    };
                    if holds {
                        let c = S::from_rat(&int(p.gaps.len() as i64)) / bound.clone();
                        return Some(Proved {
                            bound,
                            bound_iv,
                            c,
                            outcome,
                        });
                    }
                    bound = bound / two.clone();
                }
                None
            })
            .collect()
    }

    /// Prefix `i`'s T-independent proof, if it covers temperature `t`.
    fn shortcut(&self, i: usize, t: &S) -> Option<&Proved<S>> {
        if t.is_zero() {
            return None;
        }
        let proved = self.shortcuts.get()?.get(i)?.as_ref()?;
        let p = self.prefixes[i].as_ref().ok()?;
        let margin = p.margin.as_ref()?;
        if at_most_t_ln(margin, t, &proved.c) == Some(false) || Self::eta_hat(p, t) <= proved.bound
        {
            Some(proved)
        } else {
            None
        }
    }

    /// The prepared prefixes (in task-set order).
    pub fn prefixes(&self) -> &[Result<SoftPrefix<S>, String>] {
        &self.prefixes
    }

    fn text(&self, i: usize) -> String {
        self.ts.render(&self.ts.prefixes[i].tokens)
    }

    fn tasks(&self, i: usize) -> Vec<String> {
        self.ts.prefixes[i]
            .tasks
            .iter()
            .map(|&k| self.ts.tasks[k].name.clone())
            .collect()
    }

    /// η̂ at T; T = 0 is the limit T → 0+, where only tied experts keep
    /// weight (each tie keeps e^0 = 1).
    fn eta_hat(p: &SoftPrefix<S>, t: &S) -> S {
        if t.is_zero() {
            let ties = p.gaps.iter().filter(|g| g.is_zero()).count();
            let s = S::from_rat(&int(ties as i64));
            s.clone() / (S::one() + s)
        } else {
            off_top_upper(&p.gaps, t)
        }
    }

    fn outcome(
        &self,
        p: &SoftPrefix<S>,
        t: &S,
        o: &SoftOptions,
        cache: &mut S::Cache,
        keep: bool,
    ) -> (S, Outcome<S>) {
        let eta_hat = Self::eta_hat(p, t);
        let out = self.check(p, &eta_hat, o, cache, keep);
        (eta_hat, out)
    }

    /// Why prefix `i` fails at T, or None if every claim holds there
    /// (`keep`: as for [`Prepared::check`]).
    fn failure(
        &self,
        i: usize,
        t: &S,
        o: &SoftOptions,
        cache: &mut S::Cache,
        keep: bool,
    ) -> Option<Vec<(&'static str, String)>> {
        if self.shortcut(i, t).is_some() {
            return None;
        }
        let p = match &self.prefixes[i] {
            Ok(p) => p,
            Err(e) => return Some(vec![("routing", format!("the forward pass failed: {e}"))]),
        };
        let (eta_hat, out) = self.outcome(p, t, o, cache, keep);
        let why = self.reasons(p, &eta_hat, &out, o);
        (!why.is_empty()).then_some(why)
    }

    /// What fails on a prefix with gate bound `eta_hat` and outcome `out`.
    fn reasons(
        &self,
        p: &SoftPrefix<S>,
        eta_hat: &S,
        out: &Outcome<S>,
        o: &SoftOptions,
    ) -> Vec<(&'static str, String)> {
        let mut why = Vec::new();
        let expert = &self.model.experts[p.top].name;
        if !out.routing {
            let reason = if !p.routed {
                format!(
                    "hard routing already fails: expert {expert} is not a right one strictly above the others"
                )
            } else {
                format!(
                    "the gate mass off expert {expert} may reach {} > η = {} (Δ = {})",
                    brief(eta_hat),
                    o.eta,
                    p.margin.as_ref().map_or_else(|| "none".into(), brief)
                )
            };
            why.push(("routing", reason));
        }
        if !out.probability {
            why.push((
                "probability",
                format!(
                    "P(invalid) of the soft model {} {} is not below ε = {} (gate mass off the top ≤ {}, expert spread {})",
                    if S::CERTIFIED { "≤" } else { "≈ (f64, not certified)" },
                    brief(&out.invalid_bound),
                    o.epsilon,
                    brief(eta_hat),
                    brief(&p.spread)
                ),
            ));
        }
        if !out.retrieval {
            why.push((
                "retrieval",
                format!(
                    "the soft argmax may leave the valid tokens: worst-case margin {} (gate mass off the top ≤ {}, expert spread {})",
                    out.retrieval_margin.as_ref().map_or_else(|| "0".into(), brief),
                    brief(eta_hat),
                    brief(&p.spread)
                ),
            ));
        }
        why
    }

    /// Prefix `i`'s interval image at T (enclosed in `t_iv`): η̂ enclosed
    /// and what it decides, None without an image (f64). At T = 0 (the
    /// limit T → 0+) η̂ is the exact ties/(1 + ties), enclosed.
    fn image_at(&self, i: usize, t: &S, t_iv: Iv, enc: &Enclosed) -> Option<(Iv, Decision)> {
        let p = self.prefixes[i].as_ref().ok()?;
        let image = p.image.as_ref()?;
        let eta_hat = if t.is_zero() {
            Self::eta_hat(p, t).enclose()
        } else {
            image.gate_bound(t_iv, enc.cap)
        };
        Some((eta_hat, image.decide(eta_hat, enc.eta, enc.epsilon)))
    }

    /// Whether prefix `i` fails at T, as [`Prepared::failure`] decides it,
    /// from its interval image where that tells: the exact check runs only
    /// where an enclosure straddles η, ε or 0.
    fn fails(
        &self,
        i: usize,
        t: &S,
        t_iv: Iv,
        enc: &Enclosed,
        o: &SoftOptions,
        cache: &mut S::Cache,
    ) -> bool {
        let Ok(p) = &self.prefixes[i] else {
            return true;
        };
        let proved = self.shortcuts.get().and_then(|s| s[i].as_ref());
        if !t.is_zero()
            && let (Some(pr), Some(m)) = (proved, &p.margin)
            && far_above_t_ln(m, t, &pr.c)
        {
            return false;
        }
        let Some((eta_hat, decision)) = self.image_at(i, t, t_iv, enc) else {
            return self.failure(i, t, o, cache, true).is_some();
        };
        // η̂ ≤ bound: the shortcut holds (as `shortcut` has it, not at T = 0).
        if !t.is_zero() && proved.is_some_and(|pr| eta_hat.hi() <= pr.bound_iv.lo()) {
            return false;
        }
        match decision.all() {
            Some(true) => false,
            Some(false) => self.shortcut(i, t).is_none(),
            None => self.failure(i, t, o, cache, true).is_some(),
        }
    }

    /// The first failing prefix at T in Δ order, if any.
    fn first_failure(&self, t: &S, o: &SoftOptions) -> Option<usize> {
        let enc = Enclosed::new(o);
        let t_iv = t.enclose();
        self.order
            .par_iter()
            .map_init(S::Cache::default, |cache, &i| {
                (i, self.fails(i, t, t_iv, &enc, o, cache))
            })
            .find_first(|(_, fails)| *fails)
            .map(|(i, _)| i)
    }

    /// Prefix `i` checked exactly at T: η̂, the outcome that proves it (or
    /// fails), and what fails.
    fn exact_at(&self, i: usize, t: &S, o: &SoftOptions, cache: &mut S::Cache) -> Checked<S> {
        match &self.prefixes[i] {
            Err(e) => (
                None,
                vec![("routing", format!("the forward pass failed: {e}"))],
            ),
            Ok(p) => {
                let (eta_hat, out) = self.outcome(p, t, o, cache, false);
                if out.all() {
                    return (Some((eta_hat, out)), Vec::new());
                }
                if let Some(proved) = self.shortcut(i, t) {
                    let outcome = proved
                        .outcome
                        .clone()
                        .unwrap_or_else(|| self.check(p, &proved.bound, o, cache, false));
                    return (Some((eta_hat, outcome)), Vec::new());
                }
                let why = self.reasons(p, &eta_hat, &out, o);
                (Some((eta_hat, out)), why)
            }
        }
    }

    /// Every claim of the soft model at temperature T. A prefix whose
    /// interval image proves every claim is checked exactly only if it
    /// could hold a printed extreme (the largest η̂ or P(invalid) bound,
    /// the smallest retrieval margin); every other is checked exactly.
    pub fn verify_at(&self, t: &S, o: &SoftOptions) -> SoftVerdict {
        enum At<S> {
            Image(Iv, Decision),
            Exact(Checked<S>),
        }
        let enc = Enclosed::new(o);
        let t_iv = t.enclose();
        let mut checked: Vec<At<S>> = (0..self.prefixes.len())
            .into_par_iter()
            .map_init(S::Cache::default, |cache, i| {
                match self.image_at(i, t, t_iv, &enc) {
                    Some((eta_hat, d)) if d.all() == Some(true) => At::Image(eta_hat, d),
                    _ => At::Exact(self.exact_at(i, t, o, cache)),
                }
            })
            .collect();
        // Rigorous lower ends of the largest η̂ and P bound, and an upper end
        // of the smallest retrieval margin: an image entirely beyond them
        // cannot hold the extreme.
        let (mut eta_floor, mut p_floor, mut r_ceiling) =
            (f64::NEG_INFINITY, f64::NEG_INFINITY, f64::INFINITY);
        for c in &checked {
            let (e, p, r) = match c {
                At::Image(e, d) => (
                    e.lo(),
                    d.invalid_bound.lo(),
                    d.retrieval_margin.map(|m| m.hi()),
                ),
                At::Exact((Some((e, out)), _)) => (
                    e.enclose().lo(),
                    out.invalid_bound.enclose().lo(),
                    out.retrieval_margin.as_ref().map(|m| m.enclose().hi()),
                ),
                At::Exact((None, _)) => continue,
            };
            eta_floor = eta_floor.max(e);
            p_floor = p_floor.max(p);
            if let Some(r) = r {
                r_ceiling = r_ceiling.min(r);
            }
        }
        checked
            .par_iter_mut()
            .enumerate()
            .for_each_init(S::Cache::default, |cache, (i, c)| {
                if let At::Image(e, d) = c
                    && (e.hi() >= eta_floor
                        || d.invalid_bound.hi() >= p_floor
                        || d.retrieval_margin.is_some_and(|m| m.lo() <= r_ceiling))
                {
                    *c = At::Exact(self.exact_at(i, t, o, cache));
                }
            });
        let checked: Vec<Checked<S>> = checked
            .into_iter()
            .map(|c| match c {
                At::Image(..) => (None, Vec::new()),
                At::Exact(c) => c,
            })
            .collect();
        let mut failures = Vec::new();
        let mut count = 0;
        let mut tallies = [(0usize, None::<S>), (0, None), (0, None)];
        let mut max_off: Option<S> = None;
        for (i, (got, why)) in checked.into_iter().enumerate() {
            if let Some((eta_hat, out)) = got {
                if max_off.as_ref().is_none_or(|m| eta_hat > *m) {
                    max_off = Some(eta_hat.clone());
                }
                let slack = S::from_rat(&o.eta) - eta_hat;
                let worst = [
                    Some(slack),
                    Some(S::from_rat(&o.epsilon) - out.invalid_bound.clone()),
                    out.retrieval_margin.clone(),
                ];
                for (k, w) in worst.into_iter().enumerate() {
                    if let Some(w) = w
                        && tallies[k].1.as_ref().is_none_or(|m| w < *m)
                    {
                        tallies[k].1 = Some(w);
                    }
                }
            }
            for (claim, reason) in why {
                let k = ["routing", "probability", "retrieval"]
                    .iter()
                    .position(|c| *c == claim)
                    .unwrap_or(0);
                tallies[k].0 += 1;
                count += 1;
                if failures.len() < LISTED {
                    failures.push(SoftFailure {
                        claim,
                        prefix: self.text(i),
                        tasks: self.tasks(i),
                        reason,
                    });
                }
            }
        }
        let checked = self.prefixes.len();
        let result = |k: usize| ClaimResult {
            holds: tallies[k].0 == 0,
            failures: tallies[k].0,
            checked,
            worst: None,
            min_margin: tallies[k].1.as_ref().map(crate::verify::ClaimArith::number),
        };
        SoftVerdict {
            arith: S::NAME.to_string(),
            certified: S::CERTIFIED,
            temperature: t.text(),
            eta: o.eta.to_string(),
            epsilon: o.epsilon.to_string(),
            prefixes: checked,
            routing: result(0),
            probability: result(1),
            retrieval: result(2),
            max_off_top_brief: max_off.as_ref().map(brief),
            max_off_top: max_off.map(|m| m.text()),
            failure_count: count,
            failures,
        }
    }

    fn binding(&self, i: usize, t: &S, o: &SoftOptions) -> Binding {
        let mut cache = S::Cache::default();
        let reason = self
            .failure(i, t, o, &mut cache, false)
            .map(|w| {
                w.into_iter()
                    .map(|(c, r)| format!("{c}: {r}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        match &self.prefixes[i] {
            Ok(p) => Binding {
                prefix: self.text(i),
                tasks: self.tasks(i),
                expert: self.model.experts[p.top].name.clone(),
                margin: p.margin.as_ref().map(|m| m.text()),
                spread: p.spread.text(),
                spread_brief: brief(&p.spread),
                reason,
            },
            Err(_) => Binding {
                prefix: self.text(i),
                tasks: self.tasks(i),
                expert: String::new(),
                margin: None,
                spread: "0".into(),
                spread_brief: "0".into(),
                reason,
            },
        }
    }

    /// The largest T* (to `o.precision`, relative) at which every claim is
    /// proved, and the prefix that binds it.
    pub fn certify(&self, o: &SoftOptions) -> CertifiedTemperature {
        self.shortcuts.get_or_init(|| self.make_shortcuts(o));
        let zero = S::zero();
        let done = |t: S, fails_at: Option<S>, at_least: bool, binding: Option<usize>| {
            let b = binding.map(|i| self.binding(i, fails_at.as_ref().unwrap_or(&t), o));
            CertifiedTemperature {
                approx: t.approx(),
                temperature: t.text(),
                fails_at: fails_at.map(|f| f.text()),
                relative_precision: o.precision.to_string(),
                at_least,
                binding: b,
                verdict: self.verify_at(&t, o),
            }
        };
        if let Some(i) = self.first_failure(&zero, o) {
            return done(zero, None, false, Some(i));
        }
        let margins: Vec<S> = self
            .prefixes
            .iter()
            .filter_map(|p| p.as_ref().ok().and_then(|p| p.margin.clone()))
            .filter(|m| m.is_positive())
            .collect();
        let Some(start) = margins
            .iter()
            .cloned()
            .reduce(|a, b| if b < a { b } else { a })
        else {
            // One expert (or only ties, already settled at T → 0): the gate
            // is constant, so every T is as good as T → 0.
            let mut c = done(zero, None, true, None);
            c.temperature = "unbounded".into();
            c.approx = f64::INFINITY;
            return c;
        };
        let two = S::from_rat(&int(2));
        // Bracket: lo proved (0 = the hard limit), hi failing.
        let (mut lo, mut hi) = (zero.clone(), start);
        let mut doublings = 0;
        while self.first_failure(&hi, o).is_none() {
            lo = hi.clone();
            hi = hi * two.clone();
            doublings += 1;
            if doublings > MAX_DOUBLINGS {
                return done(lo, None, true, None);
            }
        }
        if lo.is_zero() {
            let mut halvings = 0;
            loop {
                let half = hi.clone() / two.clone();
                if self.first_failure(&half, o).is_none() {
                    lo = half;
                    break;
                }
                hi = half;
                halvings += 1;
                if halvings > MAX_HALVINGS {
                    let i = self.first_failure(&hi, o);
                    return done(zero, Some(hi), false, i);
                }
            }
        }
        let precision = S::from_rat(&o.precision);
        while hi.clone() - lo.clone() > precision.clone() * hi.clone() {
            let mid = (lo.clone() + hi.clone()) / two.clone();
            if self.first_failure(&mid, o).is_none() {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let i = self.first_failure(&hi, o);
        done(lo, Some(hi), false, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::{ModelKind, Options};
    use crate::scalar::{FastRat, Scalar, rat};
    use crate::spec;
    use num_traits::Zero;
    use std::path::Path;

    fn task_set(name: &str) -> TaskSet {
        let path = format!("{}/constructions/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        TaskSet::from_spec(&spec::load(Path::new(&path)).unwrap())
    }

    fn model(ts: &TaskSet) -> Model<Rat> {
        crate::construct::build(ts, &Options::default(), ModelKind::Moe)
    }

    fn parse(text: &str) -> Rat {
        crate::scalar::parse_rational(text).unwrap()
    }

    #[test]
    fn running_example_has_a_positive_certified_temperature() {
        let ts = task_set("running_example");
        let m = model(&ts).map(FastRat::from_rat);
        let p = Prepared::new(&ts, &m);
        let o = SoftOptions::default();
        let c = p.certify(&o);
        let t = parse(&c.temperature);
        assert!(t > Rat::zero() && c.verdict.certified && c.verdict.all_hold());
        // T* is within the stated precision of a temperature that fails.
        let fails = parse(c.fails_at.as_ref().unwrap());
        assert!(fails > t && (fails.clone() - t.clone()) <= o.precision.clone() * fails.clone());
        assert!(!p.verify_at(&FastRat::from_rat(&fails), &o).all_hold());
        // Everything proved at T*/2, with less gate mass off the top.
        let half = p.verify_at(&FastRat::from_rat(&(t.clone() / int(2))), &o);
        assert!(half.all_hold());
        assert!(
            parse(half.max_off_top.as_ref().unwrap())
                < parse(c.verdict.max_off_top.as_ref().unwrap())
        );
        // Two experts and Δ = 1/6 at the binding prefix: 1 − g_top =
        // s/(1+s) with s = e^{−Δ/T} reaches η = 1/100 at T = Δ/ln 99 ≈
        // 0.036272; the certificate's slack keeps T* just below it.
        let b = c.binding.unwrap();
        assert_eq!(b.margin.as_deref(), Some("1/6"));
        assert_eq!(b.tasks, vec!["spoken_in".to_string()]);
        let exact = (1.0 / 6.0) / 99f64.ln();
        assert!(c.approx < exact && c.approx > 0.99 * exact, "{}", c.approx);
    }

    #[test]
    fn raising_one_prefix_margin_never_lowers_t_star() {
        let ts = task_set("running_example");
        let m = model(&ts).map(FastRat::from_rat);
        let o = SoftOptions::default();
        let base = Prepared::new(&ts, &m);
        let t0 = parse(&base.certify(&o).temperature);
        // The three prefixes with the smallest margin (the binding ones),
        // one in the middle and the largest.
        let picks = [
            base.order[0],
            base.order[1],
            base.order[20],
            *base.order.last().unwrap(),
        ];
        for i in picks {
            let mut raised = Prepared::new(&ts, &m);
            if let Ok(p) = &mut raised.prefixes[i] {
                p.gaps = p
                    .gaps
                    .iter()
                    .map(|g| g.clone() * FastRat::from_rat(&int(3)))
                    .collect();
                p.margin = p.margin.clone().map(|g| g * FastRat::from_rat(&int(3)));
            }
            let t = parse(&raised.certify(&o).temperature);
            assert!(t >= t0, "prefix {i}: {t} < {t0}");
        }
        // Raising all three prefixes at Δ = 1/6 lifts T* to the next
        // binding margin (Δ = 1/5).
        let mut raised = Prepared::new(&ts, &m);
        for &i in &base.order[..3] {
            if let Ok(p) = &mut raised.prefixes[i] {
                p.gaps = p
                    .gaps
                    .iter()
                    .map(|g| g.clone() * FastRat::from_rat(&int(3)))
                    .collect();
                p.margin = p.margin.clone().map(|g| g * FastRat::from_rat(&int(3)));
            }
        }
        let c = raised.certify(&o);
        assert!(parse(&c.temperature) > t0);
        assert_eq!(c.binding.unwrap().margin.as_deref(), Some("1/5"));
    }

    #[test]
    fn a_router_tie_gives_t_star_zero_and_names_the_prefix() {
        let ts = task_set("shared_keys");
        let m = model(&ts).map(FastRat::from_rat);
        let c = Prepared::new(&ts, &m).certify(&SoftOptions::default());
        assert_eq!(c.temperature, "0");
        let b = c.binding.unwrap();
        assert_eq!(b.margin.as_deref(), Some("0"));
        let i = ts
            .prefixes
            .iter()
            .position(|p| ts.render(&p.tokens) == b.prefix)
            .unwrap();
        assert!(ts.prefixes[i].is_ambiguous());
        assert!(b.reason.contains("1/2 > η"), "{}", b.reason);
    }

    #[test]
    fn f64_finds_about_the_same_temperature_but_certifies_nothing() {
        let ts = task_set("running_example");
        let exact_model = model(&ts);
        let exact = Prepared::new(&ts, &exact_model.map(FastRat::from_rat))
            .certify(&SoftOptions::default());
        let float_model = exact_model.to_f64();
        let float = Prepared::new(&ts, &float_model).certify(&SoftOptions::default());
        assert!(!float.verdict.certified && exact.verdict.certified);
        assert!(float.verdict.all_hold());
        assert!((float.approx - exact.approx).abs() < 0.01 * exact.approx);
        let text = crate::soft::render::certified_text(&float, "x");
        assert!(text.contains("not certified"), "{text}");
    }

    /// `Prepared` with every interval image dropped: the exact-only search.
    fn exact_only<'a>(ts: &'a TaskSet, m: &'a Model<FastRat>) -> Prepared<'a, FastRat> {
        let mut p = Prepared::new(ts, m);
        for q in p.prefixes.iter_mut().flatten() {
            q.image = None;
        }
        p
    }

    fn contains(iv: Iv, x: &FastRat) -> bool {
        let x = x.to_rat();
        iv.lo_rat().unwrap() <= x && iv.hi_rat().is_none_or(|h| x <= h)
    }

    #[test]
    fn the_interval_image_decides_as_the_exact_check() {
        let o = SoftOptions::default();
        let enc = Enclosed::new(&o);
        for name in ["running_example", "random_seed1", "random_seed2"] {
            let ts = task_set(name);
            let m = model(&ts).map(FastRat::from_rat);
            let fast = Prepared::new(&ts, &m);
            let slow = exact_only(&ts, &m);
            let (a, b) = (fast.certify(&o), slow.certify(&o));
            // T*, where it fails, the binding prefix and the verdict at T*
            // are those of the exact-only search.
            assert_eq!(a.temperature, b.temperature, "{name}");
            assert_eq!(a.fails_at, b.fails_at, "{name}");
            assert_eq!(a.binding, b.binding, "{name}");
            assert_eq!(
                serde_json::to_string(&a.verdict).unwrap(),
                serde_json::to_string(&b.verdict).unwrap(),
                "{name}"
            );
            // The search kept exact logits only where the image could not
            // decide: the prefixes near their own limit, at most a tenth.
            let kept = fast
                .prefixes
                .iter()
                .flatten()
                .filter(|q| q.exact.get().is_some())
                .count();
            assert!(kept * 10 <= fast.prefixes.len(), "{name}: {kept} kept");
            // On every prefix at temperatures across the passage (and at T*
            // and where it fails), each decision the image makes is the
            // exact check's, and its enclosures hold the exact numbers.
            let t_star = parse(&a.temperature);
            // 1/1000 · (3/2)^k, k < 24: 0.001 to about 11.
            let mut temps: Vec<Rat> =
                std::iter::successors(Some(rat(1, 1000)), |t| Some(t.clone() * rat(3, 2)))
                    .take(24)
                    .collect();
            temps.push(t_star.clone());
            temps.push(parse(a.fails_at.as_ref().unwrap()));
            temps.push(t_star * rat(1001, 1000));
            let mut decided = 0;
            let mut cache = Default::default();
            for t in temps {
                let t = FastRat::from_rat(&t);
                for (i, q) in fast.prefixes.iter().enumerate() {
                    let q = q.as_ref().unwrap();
                    let (eta_iv, d) = fast.image_at(i, &t, t.enclose(), &enc).unwrap();
                    let eta_hat = Prepared::eta_hat(q, &t);
                    assert!(contains(eta_iv, &eta_hat), "{name} {i} {t:?}: {eta_iv:?}");
                    let out = fast.check(q, &eta_hat, &o, &mut cache, false);
                    assert!(contains(d.invalid_bound, &out.invalid_bound), "{name} {i}");
                    if let (Some(iv), Some(x)) = (d.retrieval_margin, &out.retrieval_margin) {
                        assert!(contains(iv, x), "{name} {i}");
                    }
                    for (got, want) in [
                        (d.routing, out.routing),
                        (d.probability, out.probability),
                        (d.retrieval, out.retrieval),
                    ] {
                        if let Some(g) = got {
                            assert_eq!(g, want, "{name} prefix {i} at {t:?}");
                            decided += 1;
                        }
                    }
                }
            }
            // The image decides nearly everything (else it saves nothing).
            let all = 3 * 27 * fast.prefixes.len();
            assert!(decided * 100 >= all * 95, "{name}: {decided} of {all}");
        }
    }

    #[test]
    fn too_hot_a_gate_fails_routing_first() {
        let ts = task_set("running_example");
        let m = model(&ts).map(FastRat::from_rat);
        let v = Prepared::new(&ts, &m)
            .verify_at(&FastRat::from_rat(&rat(1, 2)), &SoftOptions::default());
        assert!(!v.routing.holds && v.routing.failures > 0);
        assert!(v.failures.iter().any(|f| f.claim == "routing"));
    }

    /// The sampled estimate is what preparing every prefix holds, within a
    /// factor of two, on a construction with more prefixes than the sample
    /// (random_seed1: 502 prefixes, 7 experts).
    #[test]
    fn the_memory_estimate_matches_what_the_prefixes_hold() {
        let ts = task_set("random_seed1");
        assert!(ts.prefixes.len() > MEMORY_SAMPLE);
        let m = model(&ts).map(FastRat::from_rat);
        let p = Prepared::new(&ts, &m);
        let held: u128 = p
            .prefixes
            .iter()
            .map(|q| q.as_ref().map_or(0, |q| q.held_bytes() as u128))
            .sum();
        let estimate = estimate_held_bytes(&ts, &m);
        assert!(held > 0);
        assert!(
            estimate * 2 >= held && estimate <= held * 2,
            "estimate {estimate}, held {held}"
        );
    }
}
