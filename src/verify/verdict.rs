//! The verdict's types: what `verify` found, as data. Claims, model kind,
//! arithmetic and margins are typed here; only `report` turns them into
//! text (JSON keeps today's format: exact numbers as fraction strings).

use crate::construct::ModelKind;
use crate::construct::RouterMode;
use crate::scalar::{Rat, Scalar};
use serde::{Serialize, Serializer};
use std::fmt;

/// Witnesses kept in a verdict (all failures are counted).
pub const MAX_WITNESSES: usize = 1000;

/// The arithmetic the claims are decided in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arith {
    /// Exact rationals; P is a certificate.
    #[default]
    Exact,
    /// f64 on nalgebra; fast, not a proof.
    F64,
    /// Both; exact decides, f64 is cross-checked against it.
    Both,
}

impl Arith {
    pub fn name(self) -> &'static str {
        match self {
            Arith::Exact => "exact",
            Arith::F64 => "f64",
            Arith::Both => "both",
        }
    }
}

impl fmt::Display for Arith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The paper's claims, by letter: R, P, A, S, I.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Claim {
    Routing,
    Probability,
    Retrieval,
    Size,
    Isolation,
}

impl Claim {
    pub fn name(self) -> &'static str {
        match self {
            Claim::Routing => "routing",
            Claim::Probability => "probability",
            Claim::Retrieval => "retrieval",
            Claim::Size => "size",
            Claim::Isolation => "isolation",
        }
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A margin or bound as the arithmetic that decided it computed it: an
/// exact rational, or an f64 (labelled so by the verdict's arithmetic).
/// Serialised as the lossless text of today's JSON (the fraction, or the
/// shortest decimal that reads back as the same f64).
#[derive(Debug, Clone)]
pub enum Number {
    Exact(Rat),
    Float(f64),
}

impl Number {
    /// The lossless rendering (what JSON carries).
    pub fn text(&self) -> String {
        match self {
            Number::Exact(r) => r.to_string(),
            Number::Float(x) => x.text(),
        }
    }

    /// An approximation, for comparisons in messages and tests.
    pub fn to_f64(&self) -> f64 {
        match self {
            Number::Exact(r) => <f64 as Scalar>::from_rat(r),
            Number::Float(x) => *x,
        }
    }

    /// The exact value, if the arithmetic was exact.
    pub fn exact(&self) -> Option<&Rat> {
        match self {
            Number::Exact(r) => Some(r),
            Number::Float(_) => None,
        }
    }
}

/// Exact numbers compare by value; floats by bit pattern (a verdict equals
/// itself even with a NaN in it).
impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        match (self, other) {
            (Number::Exact(a), Number::Exact(b)) => a == b,
            (Number::Float(a), Number::Float(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

impl Eq for Number {}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Serialize for Number {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        s.serialize_str(&self.text())
    }
}

/// The result of one claim.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct ClaimResult {
    pub holds: bool,
    /// Prefixes (experts, for size) on which the claim fails.
    pub failures: usize,
    /// Prefixes (experts, for size) checked.
    pub checked: usize,
    /// The worst case seen: the smallest margin (routing, retrieval), the
    /// largest P(invalid) (probability: the certified bound in exact mode,
    /// the estimate in f64), the smallest slack bound − neurons (size), the
    /// smallest silence margin (isolation).
    pub worst: Option<Number>,
    /// The smallest margin by which the claim held, in the same units:
    /// positive where it holds. Routing: best compatible score − best
    /// incompatible; probability: ε − P(invalid); retrieval: best valid
    /// logit − best invalid; size: bound − neurons; isolation: how far below
    /// zero the most active off-task neuron stayed.
    pub min_margin: Option<Number>,
}

impl ClaimResult {
    /// A claim that does not apply (routing in the dense model): nothing
    /// checked, nothing failed.
    pub fn not_applicable() -> ClaimResult {
        ClaimResult {
            holds: true,
            ..ClaimResult::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Claims {
    /// Not applicable to the dense model (checked = 0).
    pub routing: ClaimResult,
    pub probability: ClaimResult,
    pub retrieval: ClaimResult,
    pub size: ClaimResult,
    /// The dense model only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<ClaimResult>,
}

/// Expert (dense: circuit) size against the task's complexity.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExpertSize {
    pub task: String,
    pub templates: usize,
    /// Σ_{τ ∈ T(k)} |τ|.
    pub template_length_sum: usize,
    pub pairs: usize,
    pub neurons: usize,
    pub syntactic: usize,
    pub semantic: usize,
    /// c(k) = Σ|τ| + |Δk|.
    pub complexity: usize,
    /// L·|T(k)| + |Δk|.
    pub bound: usize,
}

/// A failed claim, with what a person needs to act on it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Witness {
    pub claim: Claim,
    pub prefix: String,
    /// C(w), by name.
    pub tasks: Vec<String>,
    /// The routed expert (dense: "ffn").
    pub expert: Option<String>,
    /// The largest logits, (token, exact value).
    pub top_logits: Vec<(String, String)>,
    pub reason: String,
}

/// Everything `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub arith: Arith,
    #[serde(serialize_with = "model_kind")]
    pub model: ModelKind,
    /// The router input the MoE model was built for (dense: none).
    #[serde(serialize_with = "router_mode")]
    pub router: Option<RouterMode>,
    #[serde(serialize_with = "display")]
    pub epsilon: Rat,
    pub max_len: usize,
    pub vocabulary: usize,
    pub prefixes: usize,
    pub queries: usize,
    pub ambiguous: usize,
    pub claims: Claims,
    /// One row per task: its expert (MoE) or its circuit (dense).
    pub experts: Vec<ExpertSize>,
    /// Per circuit of the dense model: size and isolation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuits: Option<Vec<CircuitReport>>,
    /// Total failures over all claims (witnesses beyond MAX_WITNESSES are
    /// counted here but not listed).
    pub failure_count: usize,
    pub failures: Vec<Witness>,
    /// `--arith both`: the f64 run's claims and every decision on which it
    /// differs from the exact run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_check: Option<CrossCheck>,
    /// Every decision taken, for the cross-check.
    #[serde(skip)]
    pub decisions: Vec<Decision>,
    /// Per prefix, in task-set order: the exact top-two router margin Δ(w)
    /// (MoE; null without a second expert). Filled by `verify --format
    /// json` from [`crate::soft::margins::prefix_margins`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_margins: Option<Vec<Option<String>>>,
}

/// "moe" or "dense".
fn model_kind<Z: Serializer>(m: &ModelKind, s: Z) -> Result<Z::Ok, Z::Error> {
    s.collect_str(m)
}

/// ε as the fraction it was given as.
fn display<Z: Serializer>(r: &Rat, s: Z) -> Result<Z::Ok, Z::Error> {
    s.collect_str(r)
}

fn router_mode<Z: Serializer>(r: &Option<RouterMode>, s: Z) -> Result<Z::Ok, Z::Error> {
    match r {
        Some(mode) => s.collect_str(mode),
        None => s.serialize_str("none"),
    }
}

impl Verdict {
    /// Every claim holds (in the arithmetic that decides: exact for both).
    pub fn all_hold(&self) -> bool {
        let c = &self.claims;
        c.routing.holds
            && c.probability.holds
            && c.retrieval.holds
            && c.size.holds
            && c.isolation.as_ref().is_none_or(|i| i.holds)
    }

    /// The router label as the report prints it ("none" for dense).
    pub fn router_name(&self) -> String {
        self.router
            .map_or_else(|| "none".to_string(), |r| r.to_string())
    }
}

/// Collects witnesses up to MAX_WITNESSES and counts all of them.
#[derive(Default)]
pub(crate) struct Witnesses {
    pub list: Vec<Witness>,
    pub count: usize,
}

impl Witnesses {
    pub fn push(&mut self, w: Witness) {
        self.count += 1;
        if self.list.len() < MAX_WITNESSES {
            self.list.push(w);
        }
    }

    /// Append another collection's witnesses (and its uncounted overflow).
    pub fn absorb(&mut self, other: Witnesses) {
        self.count += other.count - other.list.len();
        for w in other.list {
            self.push(w);
        }
    }
}

/// A decision's outcome word.
pub(crate) fn holds(ok: bool) -> String {
    if ok { "holds" } else { "fails" }.to_string()
}

/// One decision: a claim on a subject (a prefix, a task, or "task: prefix"
/// for isolation) and its outcome ("holds", "fails", "holds (expert k)").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub claim: Claim,
    pub subject: String,
    pub outcome: String,
}

impl Decision {
    pub fn new(claim: Claim, subject: &str, outcome: String) -> Decision {
        Decision {
            claim,
            subject: subject.to_string(),
            outcome,
        }
    }
}

/// A decision on which the two arithmetics differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub claim: Claim,
    pub subject: String,
    pub exact: String,
    pub f64: String,
}

/// The f64 run next to the exact one.
#[derive(Debug, Clone, Serialize)]
pub struct CrossCheck {
    /// The claims as the f64 run decided them.
    pub f64_claims: Claims,
    /// Decisions compared.
    pub decisions: usize,
    pub disagreements: Vec<Disagreement>,
}

/// Size and isolation of one circuit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CircuitReport {
    pub task: String,
    pub neurons: usize,
    /// |D(k)|: prefixes checked.
    pub prefixes: usize,
    /// Prefixes of D(k) on which masking to C(k) changed the P or A verdict.
    pub changed_verdicts: usize,
    /// Prefixes of D(k) on which a neuron of another task's circuit fired.
    pub off_task_firings: usize,
    /// Neurons of C(k) that another circuit also lists.
    pub shared_neurons: usize,
    pub isolated: bool,
    /// Smallest −(pre-activation) of an off-task neuron over D(k).
    pub silence_margin: Option<Number>,
}
