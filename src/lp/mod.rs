//! Exact linear programming, knowing nothing about what the rows mean.
//!
//! One question, feasibility in standard form — find x ≥ 0 with A x = b, or
//! a Farkas vector y with yᵀA ≥ 0 and yᵀb < 0 — answered by one service,
//! [`feasibility`], that every caller uses (router synthesis, the dense
//! gates and projections, routability). It works the way exact LP solvers
//! do (SoPlex's iterative refinement, QSopt_ex): a floating-point solver
//! ([`float`], on microlp) proposes an answer, and exact rationals
//! ([`exact`]) confirm it — the float answer's active set is solved once,
//! exactly, and the result is checked exactly against every row. Only if
//! that check fails does the exact simplex ([`simplex`]) run, and it runs
//! under a time limit past which the answer is "undecided, and why", never
//! a hang. So a float never decides anything: it only says where to look.
//!
//! Every call is recorded (size, time, how it was decided) so that
//! `verify --timings` and `routability` can say what the LPs cost
//! ([`Log`]).

pub mod clock;
pub mod exact;
pub mod float;
pub mod greedy;
pub mod nullspace;
pub mod simplex;
pub mod strict;
pub mod support;

pub use nullspace::Nullspace;
pub use simplex::{Outcome, Problem};

use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the exact simplex may repair one LP whose float proposal did
/// not survive the exact check, before the call answers "undecided".
pub const REPAIR_TIME: Duration = Duration::from_secs(2);

/// How one call was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// The float proposal, solved and checked exactly.
    Confirmed,
    /// The exact simplex on the float proposal's support
    /// ([`support::on_support`]), after the proposal failed the check.
    OnSupport,
    /// The full exact simplex, after the float proposal failed the check
    /// and its support gave no answer.
    Repaired,
    /// The exact simplex ran out of time.
    GaveUp,
    /// The exact simplex alone, on a small LP ([`feasibility_by_simplex`]).
    Simplex,
    /// A float proposal that failed its exact check, with no repair tried
    /// ([`strict::separate`]: the caller decides by the Farkas side).
    Rejected,
}

/// The answer of one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Checked exactly: a feasible point or a Farkas vector.
    Decided(Outcome),
    /// Neither could be found within the limit; the reason says which.
    Undecided(String),
}

/// What one call cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Call {
    pub rows: usize,
    pub columns: usize,
    pub seconds: f64,
    pub route: Route,
    /// Exact simplex pivots (0 when the proposal was confirmed).
    pub pivots: usize,
}

/// Totals over the calls of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Log {
    pub calls: usize,
    pub confirmed: usize,
    pub on_support: usize,
    pub repaired: usize,
    pub gave_up: usize,
    pub rejected: usize,
    pub simplex: usize,
    pub pivots: usize,
    pub seconds: f64,
    pub slowest: f64,
    /// The largest LP (rows, columns), by rows × columns.
    pub largest: (usize, usize),
}

impl Log {
    fn add(&mut self, call: &Call) {
        self.calls += 1;
        match call.route {
            Route::Confirmed => self.confirmed += 1,
            Route::OnSupport => self.on_support += 1,
            Route::Repaired => self.repaired += 1,
            Route::GaveUp => self.gave_up += 1,
            Route::Rejected => self.rejected += 1,
            Route::Simplex => self.simplex += 1,
        }
        self.pivots += call.pivots;
        self.seconds += call.seconds;
        self.slowest = self.slowest.max(call.seconds);
        if call.rows * call.columns > self.largest.0 * self.largest.1 {
            self.largest = (call.rows, call.columns);
        }
    }
}

impl std::fmt::Display for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} LP calls ({} by the exact simplex alone, {} confirmed from the float proposal, {} proposals rejected, {} repaired on their support, {} by the full simplex, {} undecided; {} exact pivots), \
             largest {}×{}, {:.3} s in all, slowest {:.3} s",
            self.calls,
            self.simplex,
            self.confirmed,
            self.rejected,
            self.on_support,
            self.repaired,
            self.gave_up,
            self.pivots,
            self.largest.0,
            self.largest.1,
            self.seconds,
            self.slowest
        )
    }
}

/// The process-wide log: LPs are called deep inside construction, and the
/// edge (cli) reads the totals once at the end.
static LOG: Mutex<Log> = Mutex::new(Log {
    calls: 0,
    confirmed: 0,
    on_support: 0,
    repaired: 0,
    gave_up: 0,
    rejected: 0,
    simplex: 0,
    pivots: 0,
    seconds: 0.0,
    slowest: 0.0,
    largest: (0, 0),
});

/// Add a call to the log.
fn record(call: Call) {
    if std::env::var_os("LPTRACE").is_some() {
        eprintln!("lp {call:?}");
    }
    LOG.lock().unwrap_or_else(|e| e.into_inner()).add(&call);
}

/// The totals so far.
pub fn log() -> Log {
    *LOG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Small LPs the exact simplex solves first in [`feasibility_by_simplex`]:
/// at most this many tableau entries (rows × (columns + rows)) ... (the
/// dense LPs of constructions/ have at most 26 rows × 126 and need at most
/// 39 pivots; a 157 × 219 gate LP of a 9-task shared-keys set took 9 s for
/// 200 pivots, which is what the float proposal is for)
pub const SIMPLEX_FIRST_ENTRIES: usize = 20_000;
/// ... and at most this many pivots, a deterministic limit (so the answer
/// does not depend on the machine's speed).
pub const SIMPLEX_FIRST_PIVOTS: usize = 100;

/// For callers whose greedy choices depend on *which* point or Farkas
/// vector they get (the dense gates and projections): the exact simplex
/// first, as before the float proposal existed, on LPs small enough and
/// within [`SIMPLEX_FIRST_PIVOTS`], so their constructions are unchanged;
/// past that, [`feasibility`].
pub fn feasibility_by_simplex(problem: &Problem) -> (Answer, Call) {
    let entries = problem.rows * (problem.columns.len() + problem.rows);
    if entries <= SIMPLEX_FIRST_ENTRIES {
        let start = Instant::now();
        // The deadline only guards against a hang: within the pivot limit
        // these LPs take well under a second.
        if let (Some(outcome), pivots) = simplex::solve_within(
            problem,
            Some(clock::now() + REPAIR_TIME),
            Some(SIMPLEX_FIRST_PIVOTS),
        ) {
            let call = Call {
                rows: problem.rows,
                columns: problem.columns.len(),
                seconds: start.elapsed().as_secs_f64(),
                route: Route::Simplex,
                pivots,
            };
            record(call);
            return (Answer::Decided(outcome), call);
        }
    }
    feasibility(problem)
}

/// Decide feasibility of A x = b, x ≥ 0, exactly, with the default repair
/// time.
pub fn feasibility(problem: &Problem) -> (Answer, Call) {
    feasibility_within(problem, REPAIR_TIME)
}

/// Decide feasibility of A x = b, x ≥ 0, exactly; the exact repair (run
/// only when the float proposal fails the exact check: first on the
/// proposal's support, then on the whole problem) stops after `limit`.
pub fn feasibility_within(problem: &Problem, limit: Duration) -> (Answer, Call) {
    let start = Instant::now();
    let deadline = clock::now() + limit;
    let proposal = float::propose_within(problem, Some(limit));
    let confirmed = proposal.as_ref().and_then(|p| exact::confirm(problem, p));
    let (answer, route, pivots) = match (confirmed, proposal) {
        (Some(outcome), _) => (Answer::Decided(outcome), Route::Confirmed, 0),
        (None, proposal) => {
            let (repaired, on_support) = match &proposal {
                Some(p) => support::on_support(problem, p, Some(deadline)),
                None => (None, 0),
            };
            match repaired {
                Some(outcome) => (Answer::Decided(outcome), Route::OnSupport, on_support),
                None => match simplex::solve_within(problem, Some(deadline), None) {
                    (Some(outcome), pivots) => (
                        Answer::Decided(outcome),
                        Route::Repaired,
                        on_support + pivots,
                    ),
                    (None, pivots) => (
                        Answer::Undecided(format!(
                            "an LP of {} rows and {} columns: the float proposal failed the exact \
                             check and the exact simplex did not finish in {} s",
                            problem.rows,
                            problem.columns.len(),
                            limit.as_secs_f64()
                        )),
                        Route::GaveUp,
                        on_support + pivots,
                    ),
                },
            }
        }
    };
    let call = Call {
        rows: problem.rows,
        columns: problem.columns.len(),
        seconds: start.elapsed().as_secs_f64(),
        route,
        pivots,
    };
    record(call);
    debug_assert!(match &answer {
        Answer::Decided(o) => simplex::holds(problem, o),
        Answer::Undecided(_) => true,
    });
    (answer, call)
}
