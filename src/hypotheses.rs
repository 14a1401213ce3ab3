//! Sufficient conditions for the construction's claims, computed from the
//! task set alone (never from weights). docs/hypotheses.md states and proves
//! them; this module decides them and says, per prefix, which one covers it.
//!
//! - **H-R (routing)**, per prefix w: every task outside C(w) lacks some
//!   token of w that the router reads (a template word; with the key-reading
//!   router also an entity). The special case C(w) = every task is listed
//!   separately. Guarantee: w is routed into C(w), strictly above every task
//!   outside it (the router synthesis secures this, see
//!   `construct::router`).
//! - **H-M (margin)**, global: (|V| − 1)·ū(β_sem) < ε, where ū(x) bounds the
//!   certificate's charge e^{−y} for every gap y ≥ x, and β_syn ≥ (L + 1)·β_sem.
//!   Guarantee: on every prefix routed into C(w), the valid tokens lead every
//!   invalid one by at least β_sem, so A holds and P is certified.
//! - **S (size)** needs no hypothesis: expert k has (n_k − 1) + |Δk| neurons,
//!   n_k ≤ Σ|τ| its distinct patterns, so it stays below c(k).

use crate::design::{Margins, RouterMode};
use crate::expbound::exp_neg_upper_sup;
use crate::scalar::{Rat, Scalar, int};
use crate::taskset::{TaskId, TaskSet, TokenId, TokenKind};
use serde::Serialize;
use std::collections::BTreeSet;

/// Where the statements and proofs are.
pub const DOCUMENT: &str = "docs/hypotheses.md";
/// Prefixes listed one by one in the JSON report (uncovered first).
pub const MAX_LISTED: usize = 10_000;

/// Which part of H-R covers a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// C(w) is every task: any top-1 choice is compatible.
    AllTasks,
    /// Every task outside C(w) lacks a token of w the router reads.
    Vocabulary,
    /// Not covered: this task is outside C(w) yet has every token of w the
    /// router reads, so the closed-form router ties it with C(w).
    Uncovered { twin: TaskId },
}

impl Cover {
    pub fn covered(self) -> bool {
        !matches!(self, Cover::Uncovered { .. })
    }

    pub fn name(self) -> &'static str {
        match self {
            Cover::AllTasks => "all-tasks",
            Cover::Vocabulary => "vocabulary",
            Cover::Uncovered { .. } => "none",
        }
    }
}

/// H-M, with the numbers it was decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarginCheck {
    pub beta_sem: Rat,
    pub beta_syn: Rat,
    /// (|V| − 1)·ū(β_sem): what the certificate can charge at most.
    pub invalid_bound: Rat,
    pub epsilon: Rat,
    /// β_syn ≥ (L + 1)·β_sem.
    pub separated: bool,
    pub holds: bool,
}

impl MarginCheck {
    /// H-M for a vocabulary of `vocab` tokens, templates of at most
    /// `max_len` positions, and a model built with `margins`, verified at ε.
    pub fn new(vocab: usize, max_len: usize, margins: &Margins, epsilon: &Rat) -> MarginCheck {
        // At most |V| − 1 invalid tokens (V(w) is never empty), each at a
        // gap of at least β_sem, which the certificate charges ≤ ū(β_sem).
        let invalid_bound =
            int(vocab.saturating_sub(1) as i64) * exp_neg_upper_sup(&margins.semantic);
        let separated = margins.syntactic >= int(max_len as i64 + 1) * &margins.semantic;
        MarginCheck {
            holds: separated && invalid_bound < *epsilon,
            beta_sem: margins.semantic.clone(),
            beta_syn: margins.syntactic.clone(),
            invalid_bound,
            epsilon: epsilon.clone(),
            separated,
        }
    }
}

/// Every hypothesis, decided on one task set.
#[derive(Debug, Clone)]
pub struct Hypotheses {
    pub router: RouterMode,
    pub margin: MarginCheck,
    /// H-R per prefix, aligned with `TaskSet::prefixes`.
    pub routing: Vec<Cover>,
    /// For each token, the tasks it occurs in.
    occurs: Vec<BTreeSet<TaskId>>,
}

/// For each token, the tasks it occurs in (as a template word or an entity).
fn token_tasks(ts: &TaskSet) -> Vec<BTreeSet<TaskId>> {
    let mut tasks = vec![BTreeSet::new(); ts.vocab.len()];
    for (k, task) in ts.tasks.iter().enumerate() {
        for template in &task.templates {
            for slot in &template.slots {
                if let crate::taskset::Slot::Word(w) = slot {
                    tasks[*w].insert(k);
                }
            }
        }
        for &(a, b) in &task.pairs {
            tasks[a].insert(k);
            tasks[b].insert(k);
        }
    }
    tasks
}

/// The tokens a router of this mode tells apart: head 1 gives every word
/// its own coordinate but maps every entity to one symbol; head 2 (read by
/// the key-reading router) gives every entity its own coordinate.
fn readable(ts: &TaskSet, router: RouterMode, t: TokenId) -> bool {
    match ts.vocab.kind(t) {
        TokenKind::Word => true,
        TokenKind::Entity => router == RouterMode::SyntacticKey,
        TokenKind::Eos => false,
    }
}

impl Hypotheses {
    /// Decide every hypothesis for a task set, a router mode and ε, with
    /// the MoE model's margins.
    pub fn check(ts: &TaskSet, router: RouterMode, epsilon: &Rat) -> Hypotheses {
        let margins = Margins::new(ts.vocab.len(), ts.max_len, epsilon);
        Hypotheses::check_with(ts, router, epsilon, &margins)
    }

    /// [`Hypotheses::check`] with the dense model's margins: β_syn grows
    /// with the most tasks sharing one (key, value) pair, as the dense
    /// construction builds it ([`Margins::dense`]).
    pub fn check_dense(ts: &TaskSet, router: RouterMode, epsilon: &Rat) -> Hypotheses {
        let margins = Margins::new(ts.vocab.len(), ts.max_len, epsilon)
            .dense(ts.most_tasks_sharing_a_pair(), ts.max_len);
        Hypotheses::check_with(ts, router, epsilon, &margins)
    }

    fn check_with(
        ts: &TaskSet,
        router: RouterMode,
        epsilon: &Rat,
        margins: &Margins,
    ) -> Hypotheses {
        let margin = MarginCheck::new(ts.vocab.len(), ts.max_len, margins, epsilon);
        let occurs = token_tasks(ts);
        let all: BTreeSet<TaskId> = (0..ts.tasks.len()).collect();
        let routing = ts
            .prefixes
            .iter()
            .map(|p| {
                if p.tasks == all {
                    return Cover::AllTasks;
                }
                // T(w): the tasks holding every readable token of w. It
                // contains C(w); H-R asks for equality.
                let mut holders = all.clone();
                for &t in p.tokens.iter().filter(|&&t| readable(ts, router, t)) {
                    holders.retain(|k| occurs[t].contains(k));
                }
                match holders.iter().find(|k| !p.tasks.contains(k)) {
                    None => Cover::Vocabulary,
                    Some(&twin) => Cover::Uncovered { twin },
                }
            })
            .collect();
        Hypotheses {
            router,
            margin,
            routing,
            occurs,
        }
    }

    pub fn covered(&self) -> usize {
        self.routing.iter().filter(|c| c.covered()).count()
    }

    pub fn count(&self, name: &str) -> usize {
        self.routing.iter().filter(|c| c.name() == name).count()
    }

    /// H-R covers every prefix.
    pub fn all_covered(&self) -> bool {
        self.routing.iter().all(|c| c.covered())
    }

    /// What the hypotheses guarantee for the whole task set.
    pub fn guarantees(&self) -> Guarantees {
        let r = self.all_covered();
        Guarantees {
            routing: r,
            probability: r && self.margin.holds,
            retrieval: r,
            size: true,
        }
    }

    /// Every claim is guaranteed on every prefix.
    pub fn all_hold(&self) -> bool {
        let g = self.guarantees();
        g.routing && g.probability && g.retrieval && g.size
    }

    /// Why prefix `i` is covered or not, in words.
    pub fn explain(&self, ts: &TaskSet, i: usize) -> String {
        let p = &ts.prefixes[i];
        let text = ts.render(&p.tokens);
        let tokens = if self.router == RouterMode::Syntactic {
            "word"
        } else {
            "token"
        };
        match self.routing[i] {
            Cover::AllTasks => "C(w) is every task, so any expert is compatible".into(),
            Cover::Vocabulary => {
                let outside: Vec<String> = (0..ts.tasks.len())
                    .filter(|k| !p.tasks.contains(k))
                    .take(3)
                    .map(|k| {
                        let missing = p
                            .tokens
                            .iter()
                            .find(|&&t| {
                                readable(ts, self.router, t) && !self.occurs[t].contains(&k)
                            })
                            .map_or("?", |&t| ts.vocab.name(t));
                        format!("{} lacks \"{missing}\"", ts.tasks[k].name)
                    })
                    .collect();
                let more = ts.tasks.len() - p.tasks.len();
                let tail = if more > 3 {
                    format!(" (and {} more tasks)", more - 3)
                } else {
                    String::new()
                };
                format!(
                    "every task outside C(w) lacks a {tokens} of \"{text}\": {}{tail}",
                    outside.join(", ")
                )
            }
            Cover::Uncovered { twin } => {
                let what = if self.router == RouterMode::Syntactic {
                    " (this router cannot tell entities apart)"
                } else {
                    ""
                };
                format!(
                    "not covered by H-R: task {} is outside C(w) yet has every {tokens} of \"{text}\"{what}",
                    ts.tasks[twin].name
                )
            }
        }
    }

    /// The serialisable summary the reports print.
    pub fn summary(&self, ts: &TaskSet) -> Summary {
        let m = &self.margin;
        let mut order: Vec<usize> = (0..ts.prefixes.len()).collect();
        // Uncovered prefixes first: they are what a reader looks for.
        order.sort_by_key(|&i| self.routing[i].covered());
        let prefixes = order
            .into_iter()
            .take(MAX_LISTED)
            .map(|i| PrefixCover {
                prefix: ts.render(&ts.prefixes[i].tokens),
                tasks: ts.prefixes[i]
                    .tasks
                    .iter()
                    .map(|&k| ts.tasks[k].name.clone())
                    .collect(),
                cover: self.routing[i].name(),
                reason: self.explain(ts, i),
            })
            .collect();
        Summary {
            document: DOCUMENT,
            router: self.router.to_string(),
            margin: MarginSummary {
                holds: m.holds,
                beta_sem: m.beta_sem.to_string(),
                beta_syn: m.beta_syn.to_string(),
                invalid_bound: m.invalid_bound.to_string(),
                epsilon: m.epsilon.to_string(),
                separated: m.separated,
            },
            routing: RoutingSummary {
                prefixes: self.routing.len(),
                covered: self.covered(),
                all_tasks: self.count("all-tasks"),
                vocabulary: self.count("vocabulary"),
                uncovered: self.routing.len() - self.covered(),
            },
            guaranteed: self.guarantees(),
            listed: self.routing.len().min(MAX_LISTED),
            prefixes,
        }
    }

    /// One line for the text report.
    pub fn line(&self, ts: &TaskSet) -> String {
        let m = &self.margin;
        let margin = if m.holds {
            format!(
                "H-M margin holds ((|V|−1)·ū(β_sem) ≤ {} < ε)",
                approx(&m.invalid_bound)
            )
        } else if !m.separated {
            format!("H-M margin FAILS (β_syn = {} < (L+1)·β_sem)", m.beta_syn)
        } else {
            format!(
                "H-M margin FAILS ((|V|−1)·ū(β_sem) ≤ {} is not below ε)",
                approx(&m.invalid_bound)
            )
        };
        let n = self.routing.len();
        let mut routing = format!(
            "H-R covers {}/{n} prefixes ({} by vocabulary, {} with C(w) = all tasks)",
            self.covered(),
            self.count("vocabulary"),
            self.count("all-tasks")
        );
        let uncovered: Vec<String> = (0..n)
            .filter(|&i| !self.routing[i].covered())
            .take(3)
            .map(|i| format!("\"{}\"", ts.render(&ts.prefixes[i].tokens)))
            .collect();
        if !uncovered.is_empty() {
            let more = n - self.covered();
            routing.push_str(&format!(
                "; not covered: {}{}",
                uncovered.join(", "),
                if more > 3 { ", …" } else { "" }
            ));
        }
        let g = self.guarantees();
        let guaranteed = if self.all_hold() {
            "every claim on every prefix".to_string()
        } else {
            let p = if m.holds { "R, P, A" } else { "R, A" };
            if g.routing {
                format!("{p} on every prefix; S")
            } else {
                format!("{p} on the {} covered prefixes; S", self.covered())
            }
        };
        format!("hypotheses ({DOCUMENT}): {margin} | {routing} | guaranteed: {guaranteed}")
    }
}

fn approx(r: &Rat) -> String {
    let s = r.to_string();
    if s.len() <= 24 {
        return s;
    }
    format!("{:.3e}", <f64 as Scalar>::from_rat(r))
}

/// What the hypotheses guarantee on the whole task set.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Guarantees {
    pub routing: bool,
    pub probability: bool,
    pub retrieval: bool,
    pub size: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MarginSummary {
    pub holds: bool,
    pub beta_sem: String,
    pub beta_syn: String,
    pub invalid_bound: String,
    pub epsilon: String,
    pub separated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoutingSummary {
    pub prefixes: usize,
    pub covered: usize,
    pub all_tasks: usize,
    pub vocabulary: usize,
    pub uncovered: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrefixCover {
    pub prefix: String,
    pub tasks: Vec<String>,
    /// "all-tasks", "vocabulary" or "none".
    pub cover: &'static str,
    pub reason: String,
}

/// The `hypotheses` section of the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub document: &'static str,
    pub router: String,
    pub margin: MarginSummary,
    pub routing: RoutingSummary,
    pub guaranteed: Guarantees,
    /// How many prefixes `prefixes` lists (at most MAX_LISTED).
    pub listed: usize,
    pub prefixes: Vec<PrefixCover>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    /// (name, templates, pairs).
    type Task<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

    fn set(tasks: &[Task]) -> TaskSet {
        let parts: Vec<crate::spec::TaskParts> = tasks
            .iter()
            .map(|(n, t, p)| {
                (
                    n.to_string(),
                    t.iter().map(|s| s.to_string()).collect(),
                    p.iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                )
            })
            .collect();
        TaskSet::from_spec(&Spec::from_parts("t", &parts).unwrap())
    }

    fn cover(ts: &TaskSet, h: &Hypotheses, text: &str) -> Cover {
        let tokens = ts.tokenize(text).unwrap();
        let i = ts.prefixes.iter().position(|p| p.tokens == tokens).unwrap();
        h.routing[i]
    }

    fn running() -> TaskSet {
        set(&[
            (
                "located_in",
                &["{key} is in {value}", "{key} is located in {value}"],
                &[("Paris", "France"), ("Tokyo", "Japan"), ("Lima", "Peru")],
            ),
            (
                "spoken_in",
                &["{key} is spoken widely in {value}"],
                &[
                    ("French", "France"),
                    ("Japanese", "Japan"),
                    ("Quechua", "Peru"),
                ],
            ),
        ])
    }

    #[test]
    fn the_key_covers_the_running_example() {
        let ts = running();
        let eps = crate::scalar::rat(1, 1_000_000);
        let h = Hypotheses::check(&ts, RouterMode::SyntacticKey, &eps);
        assert_eq!(h.covered(), 39);
        assert!(h.all_hold());
        assert_eq!(cover(&ts, &h, "Paris is"), Cover::Vocabulary);
        assert!(
            h.explain(&ts, 0).contains("spoken_in lacks \"Paris\""),
            "{}",
            h.explain(&ts, 0)
        );
        // β_sem = 18, |V| = 15: 14·e^{-18} ≈ 2.1e-7 < 1e-6.
        assert!(h.margin.holds);
        assert_eq!(h.margin.beta_sem, int(18));
    }

    #[test]
    fn syntax_alone_leaves_the_shared_opening_uncovered() {
        let ts = running();
        let eps = crate::scalar::rat(1, 1_000_000);
        let h = Hypotheses::check(&ts, RouterMode::Syntactic, &eps);
        // The entity is invisible and "is", "in" occur in both tasks: "K",
        // "K is" for all six keys, "K is in" and "K is in V" for the three
        // located_in keys. H-R is sufficient, not necessary: the synthesised
        // router still routes 12 of these 18 (it fails on 6).
        assert_eq!(h.routing.len() - h.covered(), 18);
        assert_eq!(
            cover(&ts, &h, "Paris is in France"),
            Cover::Uncovered { twin: 1 }
        );
        assert_eq!(cover(&ts, &h, "Paris is"), Cover::Uncovered { twin: 1 });
        assert_eq!(cover(&ts, &h, "French is"), Cover::Uncovered { twin: 0 });
        assert_eq!(cover(&ts, &h, "Paris is located"), Cover::Vocabulary);
        assert!(!h.guarantees().routing && h.guarantees().size);
        assert!(
            h.line(&ts).contains("H-R covers 21/39 prefixes"),
            "{}",
            h.line(&ts)
        );
    }

    #[test]
    fn xor_openings_are_not_covered_but_the_key_is() {
        let ts = set(&[
            (
                "alpha",
                &[
                    "red big {key} maps to {value}",
                    "blue small {key} maps to {value}",
                ],
                &[("A1", "X")],
            ),
            (
                "beta",
                &[
                    "red small {key} maps to {value}",
                    "blue big {key} maps to {value}",
                ],
                &[("B1", "X")],
            ),
        ]);
        let h = Hypotheses::check(&ts, RouterMode::SyntacticKey, &crate::scalar::rat(1, 1000));
        // "red" and "blue" are shared openings (C(w) = both tasks).
        assert_eq!(cover(&ts, &h, "red"), Cover::AllTasks);
        assert_eq!(cover(&ts, &h, "red big"), Cover::Uncovered { twin: 1 });
        assert_eq!(cover(&ts, &h, "red big A1"), Cover::Vocabulary);
        assert_eq!(h.count("none"), 4);
    }

    #[test]
    fn shared_values_and_keys_do_not_identify_a_task() {
        // "France" is a key of both tasks: the prefix "France" is ambiguous
        // with C(w) = both (covered), and "France has" too.
        let ts = set(&[
            (
                "capital",
                &["{key} has capital {value}"],
                &[("France", "Paris")],
            ),
            (
                "language",
                &["{key} has language {value}"],
                &[("France", "French")],
            ),
            (
                "river",
                &["{key} flows through {value}"],
                &[("Seine", "France")],
            ),
        ]);
        let h = Hypotheses::check(&ts, RouterMode::SyntacticKey, &crate::scalar::rat(1, 1000));
        // "France" occurs in all three tasks (a value of river), but C(w) is
        // {capital, language}: river is a twin.
        assert_eq!(cover(&ts, &h, "France"), Cover::Uncovered { twin: 2 });
        // "has" is not in river.
        assert_eq!(cover(&ts, &h, "France has"), Cover::Vocabulary);
        assert_eq!(cover(&ts, &h, "Seine"), Cover::Vocabulary);
    }

    #[test]
    fn margins_built_for_a_larger_epsilon_break_the_margin_hypothesis() {
        // Built for ε = 1e-6 (β_sem = 18), checked at ε = 1e-30: the
        // certificate can no longer promise anything (the verifier's
        // probability claim fails on this model, see verify's tests).
        let ts = running();
        let built = Margins::new(
            ts.vocab.len(),
            ts.max_len,
            &crate::scalar::rat(1, 1_000_000),
        );
        let tiny = crate::scalar::rat(1, 10).pow(30);
        let m = MarginCheck::new(ts.vocab.len(), ts.max_len, &built, &tiny);
        assert!(m.separated && !m.holds);
        let ok = MarginCheck::new(
            ts.vocab.len(),
            ts.max_len,
            &built,
            &crate::scalar::rat(1, 1_000_000),
        );
        assert!(ok.holds);
        // 14·ū(18) with ū(18) = 1/T_46(18) (rounded, exact): about 2.1e-7.
        let f = <f64 as Scalar>::from_rat(&ok.invalid_bound);
        assert!((2.0e-7..2.2e-7).contains(&f), "{f}");
        // β_syn below (L + 1)·β_sem is reported as not separated.
        let weak = Margins {
            semantic: int(18),
            syntactic: int(18 * 6),
        };
        assert!(!MarginCheck::new(15, 6, &weak, &crate::scalar::rat(1, 1000)).separated);
    }
}
