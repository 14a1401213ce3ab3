//! Stage 7: the command line. Parses arguments, runs the pipeline, turns
//! errors into messages and exit codes: 0 every claim holds, 1 a claim
//! fails, 2 bad input.

use crate::construct::{self, Options, RouterMode};
use crate::eval;
use crate::generate::{self, Params};
use crate::hypotheses::Hypotheses;
use crate::report::{self, Format, OracleFacts};
use crate::scalar::{Rat, parse_rational};
use crate::spec::{self, SpecError};
use crate::taskset::TaskSet;
use crate::verify::{self, approx, check_logits, probability::ExpCache};
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
    let options = Options {
        router: args.router,
        epsilon: epsilon(&args.epsilon)?,
        ..Options::default()
    };
    let spec = spec::load(&args.spec)?;
    Ok((TaskSet::from_spec(&spec), options))
}

fn verify_command(args: VerifyArgs) -> Result<ExitCode, CliError> {
    let (ts, options) = load(&args.model)?;
    let model = construct::build_moe(&ts, &options);
    let verdict = verify::verify(&ts, &model, &options.epsilon, &options.router.to_string());
    let format = match args.format {
        FormatArg::Text => Format::Text,
        FormatArg::Json => Format::Json,
        FormatArg::Markdown => Format::Markdown,
    };
    let hypotheses = Hypotheses::check(&ts, options.router, &options.epsilon);
    print!(
        "{}",
        report::render_with_hypotheses(
            &verdict,
            &hypotheses,
            &ts,
            &args.model.spec.display().to_string(),
            format
        )
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
    let model = construct::build_moe(&ts, &options);
    // Task-set and model vocabularies coincide by construction; map by name.
    let input: Vec<usize> = tokens
        .iter()
        .map(|&t| {
            model.token(ts.vocab.name(t)).ok_or_else(|| {
                CliError::Input(format!("token {} is not in the model", ts.vocab.name(t)))
            })
        })
        .collect::<Result<_, _>>()?;
    let trace = eval::forward(&model, &input).map_err(|e| CliError::Input(e.to_string()))?;
    let oracle = ts.prefixes.iter().find(|p| p.tokens == tokens).map(|p| {
        let valid = p
            .valid_next
            .iter()
            .filter_map(|&t| model.token(ts.vocab.name(t)))
            .collect();
        let check = check_logits(&trace, &valid, &mut ExpCache::default());
        OracleFacts {
            tasks: p.tasks.iter().map(|&k| ts.tasks[k].name.clone()).collect(),
            valid_next: p
                .valid_next
                .iter()
                .map(|&t| ts.vocab.name(t).to_string())
                .collect(),
            is_query: p.is_query,
            invalid_bound: approx(&check.invalid_bound),
        }
    });
    print!(
        "{}",
        report::inspect(&model, &ts.render(&tokens), &trace, oracle.as_ref())
    );
    if let Some(i) = ts.prefixes.iter().position(|p| p.tokens == tokens) {
        let h = Hypotheses::check(&ts, options.router, &options.epsilon);
        println!("hypothesis H-R: {}", h.explain(&ts, i));
    }
    Ok(ExitCode::SUCCESS)
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
