//! The command line's shared inputs: the flags every model command takes
//! ([`ModelArgs`] and its parts), the spec and weights directory read from
//! them, and the typed error a bad input becomes (exit 2). Both
//! [`super`] and [`super::soft`] take them from here.

use crate::construct::{CircuitForm, Head1Mode, ModelKind, Options, RouterMode, RouterSynthesis};
use crate::generate::GenerateError;
use crate::model::{Model, ScoreUnit};
use crate::modelfile;
use crate::scalar::Rat;
use crate::spec::{self, SpecError};
use crate::taskset::TaskSet;
use crate::verify::Arith;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Task specification (TOML, or JSON by extension).
    pub spec: PathBuf,
    /// What the router reads: only head 1's syntactic block (the paper's
    /// statement), or also the key, position and current token; star: the
    /// latter through STAR's structure-aware gate (docs/routing.md).
    #[arg(long, value_enum, default_value_t = RouterChoice::SyntacticKey)]
    pub router: RouterChoice,
    /// With --router star: K, the dimension of STAR's subspace V (default:
    /// the number of experts).
    #[arg(long)]
    pub star_rank: Option<usize>,
    /// How the MoE router's weights are found: the integer perceptron, or a
    /// max-margin router whose margins are large relative to its weights
    /// (f32-safe; docs/export.md), falling back to the perceptron.
    #[arg(long, value_enum, default_value_t = RouterSynthesis::default())]
    pub router_synthesis: RouterSynthesis,
    #[command(flatten)]
    pub gha: GhaArgs,
    /// Target ε of the probability claim: decimal, scientific or a/b.
    #[arg(long, default_value = "1e-6")]
    pub epsilon: String,
    /// Head 1's attention scores: by position only (score j), or also by
    /// the current and the attended token (exact powers of two either way).
    #[arg(long, value_enum, default_value_t = Head1Mode::Positional)]
    pub head1: Head1Mode,
    /// Which construction: the MoE model of Theorem 4.2 (a router and one
    /// expert per task) or the dense model of Theorem 4.1 (one FFN split
    /// into gated circuits, one per task).
    #[arg(long, value_enum, default_value_t = ModelKind::Moe)]
    pub model: ModelKind,
    /// The dense model's circuit form: ramp (one interpolation per task, a
    /// neuron on at all of its prefixes) or split (ramp where it isolates,
    /// else one indicator neuron per pattern; docs/construction.md).
    #[arg(long, value_enum, default_value_t = CircuitForm::default())]
    pub circuit: CircuitForm,
    /// Arithmetic: exact rationals (P is a certificate), f64 on nalgebra
    /// (fast, not a proof), or both (exact decides; every decision on which
    /// f64 differs is listed).
    #[arg(long, value_enum, default_value_t = Arith::Exact)]
    pub arith: Arith,
}

/// `--router` of verify, inspect and routability: a linear router over one
/// of the two input families, or STAR's gate over the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouterChoice {
    /// Only head 1's block, as Theorem 4.2 states.
    Syntactic,
    /// Head 1, head 2 (the key), the position and the current token.
    #[value(name = "syntactic+key")]
    SyntacticKey,
    /// STAR (arXiv:2606.08814): σ(α)·W_g + (1 − σ(α))·R·V over what
    /// syntactic+key reads, V from GHA, decided exactly (docs/routing.md).
    Star,
}

impl RouterChoice {
    /// The input family the router reads.
    pub fn mode(self) -> RouterMode {
        match self {
            RouterChoice::Syntactic => RouterMode::Syntactic,
            RouterChoice::SyntacticKey | RouterChoice::Star => RouterMode::SyntacticKey,
        }
    }
}

impl From<RouterMode> for RouterChoice {
    fn from(m: RouterMode) -> Self {
        match m {
            RouterMode::Syntactic => RouterChoice::Syntactic,
            RouterMode::SyntacticKey => RouterChoice::SyntacticKey,
        }
    }
}

/// The GHA run that proposes STAR's V (docs/routing.md states the defaults).
#[derive(Args, Debug, Clone)]
pub struct GhaArgs {
    /// GHA's random seed (initial rows and the order of inputs).
    #[arg(long, default_value_t = crate::star::gha::Params::default().seed)]
    pub gha_seed: u64,
    /// GHA's number of updates (one router input each).
    #[arg(long, default_value_t = crate::star::gha::Params::default().steps)]
    pub gha_steps: usize,
    /// GHA's initial learning rate times max‖x‖².
    #[arg(long, default_value_t = crate::star::gha::Params::default().rate)]
    pub gha_rate: f64,
    /// GHA's rate decays to rate/decay by the last update.
    #[arg(long, default_value_t = crate::star::gha::Params::default().decay)]
    pub gha_decay: f64,
    /// Normalise GHA's rows after every update, not only at the end.
    #[arg(long)]
    pub gha_normalise: bool,
}

impl Default for GhaArgs {
    fn default() -> Self {
        let p = crate::star::gha::Params::default();
        GhaArgs {
            gha_seed: p.seed,
            gha_steps: p.steps,
            gha_rate: p.rate,
            gha_decay: p.decay,
            gha_normalise: false,
        }
    }
}

impl GhaArgs {
    pub(crate) fn params(&self) -> Result<crate::star::gha::Params, CliError> {
        if !(self.gha_rate > 0.0 && self.gha_rate <= 1.0) {
            return Err(CliError::Input(format!(
                "--gha-rate {}: expected a number in (0, 1]",
                self.gha_rate
            )));
        }
        if !(self.gha_decay >= 1.0 && self.gha_decay.is_finite()) {
            return Err(CliError::Input(format!(
                "--gha-decay {}: expected a number of at least 1",
                self.gha_decay
            )));
        }
        if self.gha_steps == 0 {
            return Err(CliError::Input("--gha-steps: expected at least 1".into()));
        }
        Ok(crate::star::gha::Params {
            seed: self.gha_seed,
            steps: self.gha_steps,
            rate: self.gha_rate,
            decay: self.gha_decay,
            normalise: self.gha_normalise || crate::star::gha::Params::default().normalise,
            ..crate::star::gha::Params::default()
        })
    }
}

/// A failure to run: bad input (exit 2). The variants are types; the
/// binary turns one into its message (`Display`) at the edge.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The spec file: unreadable, too large, or invalid (file, line, task).
    #[error(transparent)]
    Spec(Box<SpecError>),
    /// Another file a command reads or writes, named by its path.
    #[error(transparent)]
    File(#[from] FileError),
    /// A flag whose value cannot be used: the flag and why.
    #[error("{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    /// Any other refused input, as its message.
    #[error("{0}")]
    Input(String),
    /// A model file (export or import).
    #[error(transparent)]
    ModelFile(#[from] modelfile::ModelFileError),
}

/// A file other than the spec that a command could not read, write or
/// understand; the message starts with its path.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not JSON: {source}")]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: not a routability certificate: {source}")]
    NotCertificate {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl FileError {
    pub(crate) fn write(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
        move |source| {
            FileError::Write {
                path: path.to_path_buf(),
                source,
            }
            .into()
        }
    }
}

/// A flag's value refused: `--flag: reason`.
pub(crate) fn flag(flag: &'static str, reason: impl std::fmt::Display) -> CliError {
    CliError::Flag {
        flag,
        reason: reason.to_string(),
    }
}

impl From<SpecError> for CliError {
    fn from(e: SpecError) -> Self {
        CliError::Spec(Box::new(e))
    }
}

impl From<GenerateError> for CliError {
    fn from(e: GenerateError) -> Self {
        match e {
            GenerateError::Spec(e) => e.into(),
            GenerateError::Params(m) => CliError::Input(format!("generate: {m}")),
        }
    }
}

pub(crate) fn epsilon(text: &str) -> Result<Rat, CliError> {
    crate::scalar::parse_epsilon(text).map_err(|e| CliError::Input(e.to_string()))
}

pub(crate) fn load(args: &ModelArgs) -> Result<(TaskSet, Options), CliError> {
    if args.model == ModelKind::Dense && args.head1 == Head1Mode::Content {
        return Err(CliError::Input(
            "--head1 content applies to the MoE model only: the dense model's gates are built on the positional head 1".into(),
        ));
    }
    if args.router == RouterChoice::Star && args.model == ModelKind::Dense {
        return Err(CliError::Input(
            "--router star applies to the MoE model only: the dense model has no router".into(),
        ));
    }
    if args.router != RouterChoice::Star && args.star_rank.is_some() {
        return Err(CliError::Input(
            "--star-rank applies to --router star only".into(),
        ));
    }
    if args.router == RouterChoice::Star && args.router_synthesis != RouterSynthesis::default() {
        return Err(CliError::Input(
            "--router-synthesis applies to the linear router: --router star installs STAR's gate"
                .into(),
        ));
    }
    if args.star_rank == Some(0) {
        return Err(CliError::Input("--star-rank: expected at least 1".into()));
    }
    args.gha.params()?;
    let options = Options {
        router: args.router.mode(),
        head1: args.head1,
        epsilon: epsilon(&args.epsilon)?,
        circuit: args.circuit,
        synthesis: args.router_synthesis,
        ..Options::default()
    };
    let spec = spec::load(&args.spec)?;
    let ts = TaskSet::try_from_spec(&spec).map_err(CliError::Input)?;
    if args.model == ModelKind::Dense
        && args.arith == Arith::F64
        && ts.max_len > crate::scalar::F64_DENSE_MAX_LEN
    {
        return Err(CliError::Input(format!(
            "{}: --arith f64 cannot represent the dense model at L = {}: head 1's weights 2^j/Σ2^l need more than f64's 53-bit mantissa beyond L = {} (use --arith exact or both)",
            spec.file,
            ts.max_len,
            crate::scalar::F64_DENSE_MAX_LEN
        )));
    }
    Ok((ts, options))
}

/// `--weights DIR`: the model read from DIR and the router mode to report.
/// Natural-unit weights (no usable exact.json) have irrational attention
/// weights: exact arithmetic cannot evaluate them and no float may decide
/// them, so `verify` decides them with rigorous intervals
/// ([`verify::interval`]; `interval_ok`), `--arith f64` runs an f64 check,
/// and what needs exact values (`--arith both`) is refused; `inspect`
/// traces such weights in intervals.
pub(crate) fn read_weights(
    dir: &Path,
    ts: &TaskSet,
    arith: Arith,
    interval_ok: bool,
) -> Result<(Model<Rat>, RouterMode), CliError> {
    let read = modelfile::read(dir)?;
    modelfile::read::check_against(dir, &read.model, ts)?;
    let served = arith == Arith::F64 || (interval_ok && arith == Arith::Exact);
    if read.model.score_unit == ScoreUnit::Natural && !served {
        return Err(CliError::Input(format!(
            "{}: {}, so its weights are floats with natural-exp attention: {}",
            dir.display(),
            read.floats_because
                .as_deref()
                .unwrap_or("exact weights unusable"),
            if interval_ok {
                "`--arith both` needs exact values; the default (exact, by rigorous intervals) or `--arith f64` (proves nothing) run on it"
            } else {
                "exact values are needed here; --arith f64 runs it in floats"
            }
        )));
    }
    // The verdict names the router mode the file was exported with; a
    // foreign file names none and is reported as the default mode's reads.
    let router = read
        .config
        .router
        .as_ref()
        .and_then(|r| r.mode.as_deref())
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    Ok((read.model, router))
}
