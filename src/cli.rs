//! Stage 7: the command line. Parses arguments, runs the pipeline, turns
//! errors into messages and exit codes: 0 every claim holds, 1 a claim
//! fails, 2 bad input.

use crate::construct::{self, Head1Mode, ModelKind, Options, RouterMode};
use crate::eval::{self, Trace, float::FloatModel};
use crate::generate::{self, Params};
use crate::model::Model;
use crate::report::{self, Format, OracleFacts};
use crate::routability;
use crate::scalar::{Rat, parse_rational};
use crate::spec::{self, SpecError};
use crate::taskset::TaskSet;
use crate::verify::{self, Arith, ClaimArith, approx, check_logits};
use clap::{Args, Parser, Subcommand, ValueEnum};
use num_traits::{One, Zero};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "routecert",
    version,
    about = "Build the MoE construction of arXiv:2606.14398 for a task set and prove its claims exactly"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build the model for a spec and verify every claim on every prefix.
    Verify(VerifyArgs),
    /// Trace one prefix through the model: heads, router, neurons, logits.
    Inspect(InspectArgs),
    /// Write a random task set as a TOML spec.
    Generate(GenerateArgs),
    /// Decide whether any linear router over the router's input routes every
    /// prefix: a router checked by the verifier, or a checked certificate
    /// that none exists with a minimal set of conflicting prefixes.
    Routability(RoutabilityArgs),
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Task specification (TOML, or JSON by extension).
    pub spec: PathBuf,
    /// What the router reads: only head 1's syntactic block (the paper's
    /// statement), or also the key, position and current token.
    #[arg(long, default_value = "syntactic+key", value_parser = parse_router)]
    pub router: RouterMode,
    /// Target ε of the probability claim: decimal, scientific or a/b.
    #[arg(long, default_value = "1e-6")]
    pub epsilon: String,
    /// Head 1's attention scores: by position only (score j), or also by
    /// the current and the attended token (exact powers of two either way).
    #[arg(long, default_value = "positional", value_parser = parse_head1)]
    pub head1: Head1Mode,
    /// Which construction: the MoE model of Theorem 4.2 (a router and one
    /// expert per task) or the dense model of Theorem 4.1 (one FFN split
    /// into gated circuits, one per task).
    #[arg(long, default_value = "moe", value_parser = parse_model)]
    pub model: ModelKind,
    /// Arithmetic: exact rationals (P is a certificate), f64 on nalgebra
    /// (fast, not a proof), or both (exact decides; every decision on which
    /// f64 differs is listed).
    #[arg(long, default_value = "exact", value_parser = parse_arith)]
    pub arith: Arith,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prefix to trace, as text ("Paris is located").
    #[arg(long)]
    pub prefix: String,
}

#[derive(Args, Debug)]
pub struct RoutabilityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// LPs the search may solve (the relaxation counts as one) while it
    /// splits cases on ambiguous router inputs, before the answer is
    /// "undecided".
    #[arg(long, default_value_t = routability::DEFAULT_BUDGET)]
    pub budget: usize,
    /// Instead of deciding, check a saved certificate (JSON: the
    /// certificate, or a whole `--format json` report) against this spec and
    /// flags: exit 0 if it is valid, 1 if it is rejected.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of tasks.
    #[arg(long, default_value_t = 6)]
    pub tasks: usize,
    /// Templates per task.
    #[arg(long, default_value_t = 3)]
    pub templates: usize,
    /// Shortest template, in positions (wildcards included; at least 2).
    #[arg(long, default_value_t = 2)]
    pub min_len: usize,
    /// Longest template, in positions.
    #[arg(long, default_value_t = 7)]
    pub max_len: usize,
    /// Key–value pairs per task.
    #[arg(long, default_value_t = 8)]
    pub pairs: usize,
    /// Size of the shared pool of template words.
    #[arg(long, default_value_t = 12)]
    pub words: usize,
    /// Size of the shared pool of values.
    #[arg(long, default_value_t = 8)]
    pub values: usize,
    /// Draw keys from one pool shared by all tasks.
    #[arg(long)]
    pub shared_keys: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Text,
    Json,
    Markdown,
}

fn parse_router(s: &str) -> Result<RouterMode, String> {
    s.parse()
}

fn parse_head1(s: &str) -> Result<Head1Mode, String> {
    s.parse()
}

fn parse_model(s: &str) -> Result<ModelKind, String> {
    s.parse()
}

fn parse_arith(s: &str) -> Result<Arith, String> {
    s.parse()
}

/// A failure to run: bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Spec(Box<SpecError>),
    #[error("{0}")]
    Input(String),
}

impl From<SpecError> for CliError {
    fn from(e: SpecError) -> Self {
        CliError::Spec(Box::new(e))
    }
}

/// Run a parsed command line; the binary prints errors and exits 2.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Verify(args) => verify_command(args),
        Command::Inspect(args) => inspect_command(args),
        Command::Generate(args) => generate_command(args),
        Command::Routability(args) => routability_command(args),
    }
}

fn epsilon(text: &str) -> Result<Rat, CliError> {
    parse_rational(text)
        .filter(|e| *e > Rat::zero() && *e < Rat::one())
        .ok_or_else(|| {
            CliError::Input(format!(
                "--epsilon {text}: expected a number strictly between 0 and 1 (e.g. 1e-6 or 1/1000)"
            ))
        })
}

fn load(args: &ModelArgs) -> Result<(TaskSet, Options), CliError> {
    if args.model == ModelKind::Dense && args.head1 == Head1Mode::Content {
        return Err(CliError::Input(
            "--head1 content applies to the MoE model only: the dense model's gates are built on the positional head 1".into(),
        ));
    }
    let options = Options {
        router: args.router,
        head1: args.head1,
        epsilon: epsilon(&args.epsilon)?,
        ..Options::default()
    };
    let spec = spec::load(&args.spec)?;
    Ok((TaskSet::from_spec(&spec), options))
}

fn verify_command(args: VerifyArgs) -> Result<ExitCode, CliError> {
    let (ts, options) = load(&args.model)?;
    let model = construct::build(&ts, &options, args.model.model);
    let router = match args.model.model {
        ModelKind::Moe => options.router.to_string(),
        ModelKind::Dense => "none".to_string(),
    };
    let verdict = verify::verify_with(&ts, &model, &options.epsilon, &router, args.model.arith);
    let format = match args.format {
        FormatArg::Text => Format::Text,
        FormatArg::Json => Format::Json,
        FormatArg::Markdown => Format::Markdown,
    };
    print!(
        "{}",
        report::render(&verdict, &args.model.spec.display().to_string(), format)
    );
    Ok(if verdict.all_hold() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn inspect_command(args: InspectArgs) -> Result<ExitCode, CliError> {
    let (ts, options) = load(&args.model)?;
    let tokens = ts
        .tokenize(&args.prefix)
        .map_err(|e| CliError::Input(format!("--prefix: {e}")))?;
    if tokens.is_empty() || tokens.len() > ts.max_len {
        return Err(CliError::Input(format!(
            "--prefix: expected 1 to {} tokens, got {}",
            ts.max_len,
            tokens.len()
        )));
    }
    let model = construct::build(&ts, &options, args.model.model);
    // Task-set and model vocabularies coincide by construction; map by name.
    let input: Vec<usize> = tokens
        .iter()
        .map(|&t| {
            model.token(ts.vocab.name(t)).ok_or_else(|| {
                CliError::Input(format!("token {} is not in the model", ts.vocab.name(t)))
            })
        })
        .collect::<Result<_, _>>()?;
    let text = ts.render(&tokens);
    let prefix = ts.prefixes.iter().find(|p| p.tokens == tokens);
    let input_error = |e: eval::EvalError| CliError::Input(e.to_string());
    let mut out = match args.model.arith {
        Arith::Exact | Arith::Both => {
            let trace = eval::forward(&model, &input).map_err(input_error)?;
            let oracle = prefix.map(|p| oracle_facts(&ts, &model, p, &trace));
            report::inspect(&model, &text, &trace, oracle.as_ref())
        }
        Arith::F64 => {
            let float = model.to_f64();
            let trace = FloatModel::new(&float)
                .forward(&input)
                .map_err(input_error)?;
            let oracle = prefix.map(|p| oracle_facts(&ts, &float, p, &trace));
            report::inspect(&float, &text, &trace, oracle.as_ref())
        }
    };
    if args.model.arith == Arith::Both {
        let float = model.to_f64();
        let trace = FloatModel::new(&float)
            .forward(&input)
            .map_err(input_error)?;
        let oracle = prefix.map(|p| oracle_facts(&ts, &float, p, &trace));
        out.push_str(&report::inspect_f64_line(&float, &trace, oracle.as_ref()));
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// What the oracle says about a prefix, with the model's P(invalid) on it.
fn oracle_facts<S: ClaimArith>(
    ts: &TaskSet,
    model: &Model<S>,
    p: &crate::taskset::Prefix,
    trace: &Trace<S>,
) -> OracleFacts {
    let valid = p
        .valid_next
        .iter()
        .filter_map(|&t| model.token(ts.vocab.name(t)))
        .collect();
    let check = check_logits(trace, &valid, &mut S::Cache::default());
    let bound = check.invalid_bound.text();
    OracleFacts {
        tasks: p.tasks.iter().map(|&k| ts.tasks[k].name.clone()).collect(),
        valid_next: p
            .valid_next
            .iter()
            .map(|&t| ts.vocab.name(t).to_string())
            .collect(),
        is_query: p.is_query,
        invalid_bound: match bound.parse::<Rat>() {
            Ok(r) => approx(&r),
            Err(_) => bound,
        },
        certified: S::CERTIFIED,
    }
}

fn routability_command(args: RoutabilityArgs) -> Result<ExitCode, CliError> {
    if args.budget == 0 {
        return Err(CliError::Input("--budget: expected at least 1".into()));
    }
    let (ts, options) = load(&args.model)?;
    if let Some(path) = &args.check {
        return check_command(path, &ts, &options);
    }
    let r = routability::run(&ts, &options, args.budget);
    let source = args.model.spec.display().to_string();
    print!(
        "{}",
        match args.format {
            FormatArg::Json => report::routability::json(&r),
            FormatArg::Text => report::routability::text(&r, &source),
            FormatArg::Markdown => report::routability::markdown(&r, &source),
        }
    );
    Ok(if r.routable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `routability --check FILE`.
fn check_command(path: &PathBuf, ts: &TaskSet, options: &Options) -> Result<ExitCode, CliError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("{shown}: cannot read: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("{shown}: not JSON: {e}")))?;
    let value = value.get("certificate").cloned().unwrap_or(value);
    let cert: routability::certificate::Certificate = serde_json::from_value(value)
        .map_err(|e| CliError::Input(format!("{shown}: not a routability certificate: {e}")))?;
    Ok(match routability::check_certificate(&cert, ts, options) {
        Ok(a) => {
            println!(
                "{shown}: certificate accepted ({} rows over {} prefixes): no linear router over {} routes every prefix",
                a.rows,
                a.prefixes,
                options.router.describe()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{shown}: certificate REJECTED: {e}");
            ExitCode::from(1)
        }
    })
}

fn generate_command(args: GenerateArgs) -> Result<ExitCode, CliError> {
    let params = Params {
        tasks: args.tasks,
        templates: args.templates,
        min_len: args.min_len,
        max_len: args.max_len,
        pairs: args.pairs,
        words: args.words,
        values: args.values,
        shared_keys: args.shared_keys,
        seed: args.seed,
    };
    if params.tasks == 0 || params.templates == 0 || params.pairs == 0 {
        return Err(CliError::Input(
            "generate: --tasks, --templates and --pairs must be at least 1".into(),
        ));
    }
    let spec = generate::generate(&params)?;
    let toml = format!(
        "# routecert generate --tasks {} --templates {} --min-len {} --max-len {} --pairs {} --words {} --values {}{} --seed {}\n{}",
        params.tasks,
        params.templates,
        params.min_len,
        params.max_len,
        params.pairs,
        params.words,
        params.values,
        if params.shared_keys {
            " --shared-keys"
        } else {
            ""
        },
        params.seed,
        spec.to_toml()
    );
    match args.output {
        Some(path) => std::fs::write(&path, toml)
            .map_err(|e| CliError::Input(format!("{}: cannot write: {e}", path.display())))?,
        None => print!("{toml}"),
    }
    Ok(ExitCode::SUCCESS)
}
