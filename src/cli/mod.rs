//! Stage 7: the command line. Parses arguments, runs the pipeline, turns
//! errors into messages and exit codes: 0 every claim holds, 1 a claim
//! fails, 2 bad input.

mod input;
pub mod soft;

use crate::construct::{
    self, CircuitForm, Head1Mode, ModelKind, Options, RouterMode, RouterSynthesis,
};
use crate::eval::{self, float::FloatModel};
use crate::generate::{self, Params};
use crate::hypotheses::Hypotheses;
use crate::model::{Model, ScoreUnit};
use crate::modelfile;
use crate::progress;
use crate::report::{self, Format};
use crate::routability;
use crate::scalar::Rat;
use crate::spec;
use crate::sweep::{self, Param, Sweep};
use crate::table::{self, Table};
use crate::taskset::TaskSet;
use crate::verify::{self, Arith, oracle_facts};
use clap::{Args, Parser, Subcommand, ValueEnum};
pub use input::{CliError, FileError, GhaArgs, ModelArgs, RouterChoice};
use input::{epsilon, flag, load, read_weights};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
    /// STAR (structure-aware routing, docs/routing.md): the linear router,
    /// STAR's structural part (rows in the GHA subspace V) and STAR with
    /// interpolation, each decided exactly.
    Star(StarArgs),
    /// Expert size against task complexity, from verified constructions:
    /// over spec files, or over a sweep of generated task sets.
    Table(TableArgs),
    /// Every prefix's exact top-two router margin Δ(w) and the boundary
    /// mass m(w) = #{Δ ≤ w} / #prefixes (docs/soft-routing.md).
    Margins(soft::MarginsArgs),
    /// Write the model as a directory PyTorch and TransformerLens load
    /// (docs/model-file.md): safetensors, config, names, exact weights and
    /// routecert's decision on every prefix.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Task specification (TOML, or JSON by extension).
    pub spec: PathBuf,
    /// The directory to write (created; replaced only with --force).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Which construction (as for verify).
    #[arg(long, value_enum, default_value_t = ModelKind::Moe)]
    pub model: ModelKind,
    /// What the router reads (as for verify).
    #[arg(long, value_enum, default_value_t = RouterMode::SyntacticKey)]
    pub router: RouterMode,
    /// How the router's weights are found (as for verify): max-margin makes
    /// them f32-safe where it can. Default: max-margin for --dtype f32 (the
    /// perceptron's router flips f32 decisions on most random sets), the
    /// perceptron otherwise (the model verify builds, bit for bit).
    #[arg(long, value_enum)]
    pub router_synthesis: Option<RouterSynthesis>,
    /// Head 1's attention scores (as for verify).
    #[arg(long, value_enum, default_value_t = Head1Mode::Positional)]
    pub head1: Head1Mode,
    /// The dense model's circuit form: ramp (one interpolation per task, a
    /// neuron on at all of its prefixes) or split (ramp where it isolates,
    /// else one indicator neuron per pattern; docs/construction.md).
    #[arg(long, value_enum, default_value_t = CircuitForm::default())]
    pub circuit: CircuitForm,
    /// Target ε of the probability claim (as for verify).
    #[arg(long, default_value = "1e-6")]
    pub epsilon: String,
    /// Float type of model.safetensors: f64, or f32 (refused if the f32
    /// forward pass flips a decision, unless --force).
    #[arg(long, default_value = "f64", value_parser = parse_dtype)]
    pub dtype: modelfile::Dtype,
    /// dense (what TransformerLens loads) or sparse (COO); default: dense
    /// up to 256 MiB, sparse above.
    #[arg(long, value_parser = parse_layout)]
    pub layout: Option<modelfile::Layout>,
    /// Replace a non-empty output directory; write an f32 file that flips
    /// decisions.
    #[arg(long)]
    pub force: bool,
    /// MoE: first centre every router column and the bias across experts
    /// (at the median) and rescale the router to the smallest integers whose
    /// every margin is ≥ 1 along its direction; an exact pass that keeps
    /// every decision (re-checked on the scaled model, the one written).
    #[arg(long)]
    pub scale_router: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Verify the weights of a model directory (docs/model-file.md) instead
    /// of building them: exact when its exact.json matches its tensors,
    /// otherwise only with --arith f64 (natural-unit floats need the
    /// interval verifier for an exact verdict).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print to stderr how long loading, building and verifying took, and
    /// the peak resident memory (what the scale benchmark reads).
    #[arg(long)]
    pub timings: bool,
    /// No progress bar (it shows only on a terminal, after a second).
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub soft: soft::GateArgs,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Trace the weights of a model directory instead of building them.
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// The prefix to trace, as text ("Paris is located").
    #[arg(long, required_unless_present_any = ["neuron", "expert"])]
    pub prefix: Option<String>,
    /// Instead, one FFN neuron: GROUP/N (neuron N of an expert, or of a
    /// dense circuit) or its name; what it reads and writes, and where it fires.
    #[arg(long, conflicts_with_all = ["prefix", "expert"])]
    pub neuron: Option<String>,
    /// Instead, every neuron of an expert (or a dense circuit), by task name.
    #[arg(long, conflicts_with = "prefix")]
    pub expert: Option<String>,
}

/// `routability` decides the MoE router's existence exactly: it takes no
/// `--model`, `--arith` or `--epsilon` (none of them changes the answer),
/// and clap refuses them rather than ignore them.
#[derive(Args, Debug)]
pub struct RoutabilityArgs {
    /// Task specification (TOML, or JSON by extension).
    pub spec: PathBuf,
    /// What the router reads (as for verify); star: also decide STAR's
    /// gate and verify it installed in the model.
    #[arg(long, value_enum, default_value_t = RouterChoice::SyntacticKey)]
    pub router: RouterChoice,
    /// With --router star: K (as for verify).
    #[arg(long)]
    pub star_rank: Option<usize>,
    #[command(flatten)]
    pub gha: GhaArgs,
    /// Head 1's attention scores (as for verify).
    #[arg(long, value_enum, default_value_t = Head1Mode::Positional)]
    pub head1: Head1Mode,
    /// LPs the search may solve (the relaxation counts as one) while it
    /// splits cases on ambiguous router inputs, before the answer is
    /// "undecided" (a count, so the answer does not depend on the machine).
    #[arg(long, default_value_t = routability::DEFAULT_BUDGET)]
    pub budget: usize,
    /// Seconds of CPU time the search may take (decimal; CPU, not wall, so
    /// that a loaded machine does not change the answer): no LP starts
    /// after this, and none runs past it; then the answer is "undecided:
    /// the time budget ran out". Verifying the answer comes on top.
    #[arg(long, value_name = "SECONDS", default_value_t = routability::DEFAULT_SECONDS)]
    pub time_limit: f64,
    /// Instead of deciding, check a saved certificate (JSON: the
    /// certificate, or a whole `--format json` report) against this spec and
    /// flags: exit 0 if it is valid, 1 if it is rejected.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `star`: STAR's gates decided exactly (docs/routing.md).
#[derive(Args, Debug)]
pub struct StarArgs {
    /// Task specification (TOML, or JSON by extension).
    pub spec: PathBuf,
    /// What the router reads (as for verify).
    #[arg(long, value_enum, default_value_t = RouterMode::SyntacticKey)]
    pub router: RouterMode,
    /// Head 1's attention scores (as for verify).
    #[arg(long, value_enum, default_value_t = Head1Mode::Positional)]
    pub head1: Head1Mode,
    /// K, the dimension of STAR's subspace V (default: the number of experts).
    #[arg(long)]
    pub star_rank: Option<usize>,
    #[command(flatten)]
    pub gha: GhaArgs,
    /// LPs the search may solve on ambiguous inputs (as for routability).
    #[arg(long, default_value_t = routability::DEFAULT_BUDGET)]
    pub budget: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parameters of a generated task set. Unset flags keep the preset's value:
/// `generate`'s defaults, `--paper-scale`, or a sweep's fixed parameters.
#[derive(Args, Debug, Default)]
pub struct GenFlags {
    /// Number of tasks (defaults: generate 6, --paper-scale 50, table sweeps 4,
    /// but 16 for the words and entities sweeps).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Templates per task (defaults: generate 3, --paper-scale 5, table sweeps 3).
    #[arg(long)]
    pub templates: Option<usize>,
    /// Shortest template, in positions, wildcards included (defaults: generate 2, --paper-scale 4, table sweeps 3).
    #[arg(long)]
    pub min_len: Option<usize>,
    /// Longest template, in positions (defaults: generate 7, --paper-scale 12, table sweeps 8).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Key–value pairs per task (defaults: generate 8, --paper-scale 200, table sweeps 8).
    #[arg(long)]
    pub pairs: Option<usize>,
    /// Size of the shared pool of template words (defaults: generate 12, --paper-scale 400, table sweeps 48).
    #[arg(long)]
    pub words: Option<usize>,
    /// Words each task draws its templates from, a random subset of the
    /// pool; a larger pool then renames a task's words without changing its
    /// templates' shape (defaults: generate the whole pool, --paper-scale 40, table sweeps 8).
    #[arg(long)]
    pub task_words: Option<usize>,
    /// Size of the entity pool that values are drawn from (defaults: generate 8, --paper-scale 2000, table sweeps 16).
    #[arg(long, visible_alias = "values")]
    pub entities: Option<usize>,
    /// Draw keys from one pool shared by all tasks.
    #[arg(long)]
    pub shared_keys: bool,
    /// Open every template with "{key} is", as in the paper's running example.
    #[arg(long)]
    pub shared_prefixes: bool,
    /// Random seed; the same seed gives the same file (default 1).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl GenFlags {
    /// Override `p` with the flags that were given.
    fn apply(&self, p: &mut Params) {
        let set = |field: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut p.tasks, self.tasks);
        set(&mut p.templates, self.templates);
        set(&mut p.min_len, self.min_len);
        if self.shared_prefixes && self.min_len.is_none() {
            // "{key} is … {value}" needs 3 positions: the default follows.
            p.min_len = p.min_len.max(generate::SHARED_PREFIX_MIN_LEN);
            p.max_len = p.max_len.max(p.min_len);
        }
        set(&mut p.max_len, self.max_len);
        set(&mut p.pairs, self.pairs);
        set(&mut p.words, self.words);
        set(&mut p.values, self.entities);
        if self.task_words.is_some() {
            p.task_words = self.task_words;
        }
        p.shared_keys |= self.shared_keys;
        p.shared_prefixes |= self.shared_prefixes;
        if let Some(seed) = self.seed {
            p.seed = seed;
        }
    }

    fn any(&self) -> bool {
        let GenFlags {
            tasks,
            templates,
            min_len,
            max_len,
            pairs,
            words,
            task_words,
            entities,
            shared_keys,
            shared_prefixes,
            seed,
        } = self;
        [
            tasks, templates, min_len, max_len, pairs, words, task_words, entities,
        ]
        .iter()
        .any(|v| v.is_some())
            || *shared_keys
            || *shared_prefixes
            || seed.is_some()
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub params: GenFlags,
    /// Start from the paper's scale: 50 tasks, 5 templates of 4–12
    /// positions, 200 pairs each (other flags still override).
    #[arg(long)]
    pub paper_scale: bool,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TableArgs {
    /// Spec files, one point each (instead of --sweep).
    pub specs: Vec<PathBuf>,
    /// Vary one generator parameter: tasks, pairs, templates, length (every
    /// template exactly this long), words or entities. Alone it runs the
    /// built-in sweep; --over and the generator flags change it.
    #[arg(long, value_enum)]
    pub sweep: Option<Param>,
    /// The values of the swept parameter: "1,2,4", "3-12" or a mix.
    #[arg(long, requires = "sweep")]
    pub over: Option<String>,
    #[command(flatten)]
    pub params: GenFlags,
    /// What the router reads (as for verify).
    #[arg(long, value_enum, default_value_t = RouterMode::SyntacticKey)]
    pub router: RouterMode,
    /// Target ε of the probability claim (as for verify).
    #[arg(long, default_value = "1e-6")]
    pub epsilon: String,
    /// The dense model's circuit form: ramp (one interpolation per task, a
    /// neuron on at all of its prefixes) or split (ramp where it isolates,
    /// else one indicator neuron per pattern; docs/construction.md).
    #[arg(long, value_enum, default_value_t = CircuitForm::default())]
    pub circuit: CircuitForm,
    /// Output format: csv (for pandas), markdown or json.
    #[arg(long, value_enum, default_value_t = TableFormat::Markdown)]
    pub format: TableFormat,
    /// Also draw neurons against c(k) as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Write the table here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// No progress bar (it shows only on a terminal, after a second).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TableFormat {
    Csv,
    Markdown,
    Json,
}

fn parse_dtype(s: &str) -> Result<modelfile::Dtype, String> {
    s.parse()
}

fn parse_layout(s: &str) -> Result<modelfile::Layout, String> {
    s.parse()
}

/// Run a parsed command line; the binary prints errors and exits 2.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Verify(args) => verify_command(args),
        Command::Inspect(args) => inspect_command(args),
        Command::Generate(args) => generate_command(args),
        Command::Routability(args) => routability_command(args),
        Command::Star(args) => star_command(args),
        Command::Table(args) => table_command(args),
        Command::Margins(args) => soft::margins_command(args),
        Command::Export(args) => export_command(args),
    }
}

/// The model verify and inspect run: the construction, or with `--router
/// star` the construction with STAR's gate installed as its router (and a
/// line saying how the gate was made).
fn build_model(
    args: &ModelArgs,
    ts: &TaskSet,
    options: &Options,
) -> Result<(Model<Rat>, Option<String>), CliError> {
    if args.router != RouterChoice::Star {
        let model = construct::try_build(ts, options, args.model)
            .map_err(|e| CliError::Input(format!("{}: {e}", args.spec.display())))?;
        return Ok((model, None));
    }
    let gate = crate::star::gate(
        ts,
        options,
        args.star_rank,
        &args.gha.params()?,
        routability::DEFAULT_BUDGET,
    )
    .map_err(|e| CliError::Input(format!("{}: --router star: {e}", args.spec.display())))?;
    Ok((crate::star::model(ts, options, &gate), Some(gate.summary())))
}

fn verify_command(args: VerifyArgs) -> Result<ExitCode, CliError> {
    if args.model.router == RouterChoice::Star && args.soft.wanted() {
        return Err(CliError::Input(
            "--router star: the soft gate (--gate softmax) is not built on STAR's gate".into(),
        ));
    }
    if args.model.router == RouterChoice::Star && args.weights.is_some() {
        return Err(CliError::Input(
            "--router star builds the router; --weights reads one from a file: give one of them"
                .into(),
        ));
    }
    if args.soft.wanted() {
        return soft::verify_soft(
            &args.model,
            &args.soft,
            args.weights.as_deref(),
            args.format,
        );
    }
    let clock = Instant::now();
    let (ts, options) = load(&args.model)?;
    let loaded = clock.elapsed();
    let show = !args.quiet && std::io::stderr().is_terminal();
    let (model, router, star) = match &args.weights {
        None => {
            let building = progress::Bar::spinner("build", show, || {
                let log = crate::lp::log();
                format!(
                    "{} LP calls, {:.1} s in LPs, largest {}×{}",
                    log.calls, log.seconds, log.largest.0, log.largest.1
                )
            });
            let built = build_model(&args.model, &ts, &options);
            building.finish();
            let (model, star) = built?;
            (model, options.router, star)
        }
        Some(dir) => {
            let (model, router) = read_weights(dir, &ts, args.model.arith, true)?;
            (model, router, None)
        }
    };
    let built = clock.elapsed();
    if model.score_unit == ScoreUnit::Natural && args.model.arith == Arith::Exact {
        let started = (clock, loaded, built);
        return interval_verify(&args, &ts, &model, &options.epsilon, started);
    }
    let bar = progress::Bar::counting(ts.prefixes.len(), "prefixes", "verify", show);
    let progress = |done: usize, _: usize| bar.set(done);
    let config = verify::Config::new(&options.epsilon)
        .arith(args.model.arith)
        .router(router)
        .progress(&progress);
    let (mut verdict, redecided) = verify::verify_f64_failures_exactly(&ts, &model, &config);
    bar.finish();
    if redecided {
        eprintln!(
            "routecert: --arith f64 found failing claims; f64 is not a certificate, so they were re-decided in exact arithmetic (the report is --arith both's: exact decides, f64's disagreements listed)"
        );
    }
    let verified = clock.elapsed();
    if args.format == Format::Json && args.model.model == ModelKind::Moe {
        verdict.router_margins = Some(crate::soft::margins::margin_texts(
            &ts,
            &model,
            verdict.arith,
        ));
    }
    let format = args.format;
    let hypotheses = match args.model.model {
        ModelKind::Moe => Hypotheses::check(&ts, options.router, &options.epsilon),
        ModelKind::Dense => Hypotheses::check_dense(&ts, options.router, &options.epsilon),
    };
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
    if let Some(line) = &star
        && format == Format::Text
    {
        println!("{line}");
    }
    if args.timings {
        let s = |d: Duration| d.as_secs_f64();
        eprintln!(
            "timings: prefixes {}, load {:.3} s, build {:.3} s, verify {:.3} s, total {:.3} s, peak RSS {}",
            ts.prefixes.len(),
            s(loaded),
            s(built - loaded),
            s(verified - built),
            s(clock.elapsed()),
            crate::memory::peak_rss_mib()
                .map_or_else(|| "unknown".to_string(), |m| format!("{m} MiB"))
        );
        eprintln!("timings: lp: {}", crate::lp::log());
    }
    Ok(if verdict.all_hold() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn inspect_command(args: InspectArgs) -> Result<ExitCode, CliError> {
    let (ts, options) = load(&args.model)?;
    let Some(prefix_text) = &args.prefix else {
        return inspect_neurons(&args, &ts, &options);
    };
    let tokens = ts.tokenize(prefix_text).map_err(|e| flag("--prefix", e))?;
    if tokens.is_empty() || tokens.len() > ts.max_len {
        return Err(flag(
            "--prefix",
            format!("expected 1 to {} tokens, got {}", ts.max_len, tokens.len()),
        ));
    }
    let (model, star) = inspect_model(&args, &ts, &options)?;
    // The task set and the model meet only through token names.
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
    if model.score_unit == ScoreUnit::Natural && args.model.arith == Arith::Exact {
        // Float weights: irrational attention, traced in rigorous intervals.
        let iv_model = model.map(crate::interval::Iv::enclose);
        let trace = crate::interval::forward::IntervalEvaluator::new(&iv_model)
            .run(&input)
            .map_err(input_error)?;
        let oracle = match prefix {
            Some(p) => {
                let (outcome, open) =
                    verify::interval::prefix_outcome(&ts, &model, p, &options.epsilon).map_err(
                        |e| {
                            CliError::Input(format!(
                                "{}: {e}",
                                args.weights.as_deref().unwrap_or(Path::new("")).display()
                            ))
                        },
                    )?;
                Some(report::interval::IntervalOracle {
                    tasks: p.tasks.iter().map(|&k| ts.tasks[k].name.clone()).collect(),
                    valid_next: p
                        .valid_next
                        .iter()
                        .map(|&t| ts.vocab.name(t).to_string())
                        .collect(),
                    is_query: p.is_query,
                    outcome,
                    open,
                })
            }
            None => None,
        };
        print!(
            "{}",
            report::interval::inspect(&iv_model, &text, &trace, oracle.as_ref())
        );
        return Ok(ExitCode::SUCCESS);
    }
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
    if let Some(line) = &star {
        println!("{line}");
    }
    if let Some(i) = ts.prefixes.iter().position(|p| p.tokens == tokens) {
        let h = Hypotheses::check(&ts, options.router, &options.epsilon);
        println!("hypothesis H-R: {}", h.explain(&ts, i));
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify --weights` on float weights: every claim decided by rigorous
/// rational intervals (proved, refuted, or undecided and counted apart);
/// exit 0 only when every claim is proved on every prefix.
fn interval_verify(
    args: &VerifyArgs,
    ts: &TaskSet,
    model: &Model<Rat>,
    epsilon: &Rat,
    (clock, loaded, read): (Instant, Duration, Duration),
) -> Result<ExitCode, CliError> {
    if args.format == Format::Markdown {
        return Err(CliError::Input(
            "--format markdown: the interval verdict (float weights) is rendered as text or json"
                .into(),
        ));
    }
    let verdict = verify::interval::verify_intervals(ts, model, epsilon).map_err(|e| {
        CliError::Input(format!(
            "{}: {e}",
            args.weights.as_deref().unwrap_or(Path::new("")).display()
        ))
    })?;
    let verified = clock.elapsed();
    let source = args.model.spec.display().to_string();
    match args.format {
        Format::Json => print!("{}", report::interval::json(&verdict)),
        _ => print!("{}", report::interval::text(&verdict, &source)),
    }
    if args.timings {
        let s = |d: Duration| d.as_secs_f64();
        eprintln!(
            "timings: prefixes {}, load {:.3} s, read weights {:.3} s, verify (intervals) {:.3} s, total {:.3} s, refined {} prefixes, peak RSS {}",
            ts.prefixes.len(),
            s(loaded),
            s(read - loaded),
            s(verified - read),
            s(clock.elapsed()),
            verdict.precision.refined,
            crate::memory::peak_rss_mib()
                .map_or_else(|| "unknown".to_string(), |m| format!("{m} MiB"))
        );
    }
    Ok(if verdict.all_proved() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn export_command(args: ExportArgs) -> Result<ExitCode, CliError> {
    let model_args = ModelArgs {
        spec: args.spec.clone(),
        router: args.router.into(),
        star_rank: None,
        router_synthesis: args.router_synthesis.unwrap_or(match args.dtype {
            modelfile::Dtype::F32 => RouterSynthesis::MaxMargin,
            modelfile::Dtype::F64 => RouterSynthesis::Perceptron,
        }),
        gha: GhaArgs::default(),
        epsilon: args.epsilon.clone(),
        head1: args.head1,
        circuit: args.circuit,
        model: args.model,
        arith: Arith::Exact,
    };
    let (ts, options) = load(&model_args)?;
    let spec_bytes = spec::read_capped(&args.spec)?;
    let clock = Instant::now();
    let model = construct::try_build(&ts, &options, args.model)
        .map_err(|e| CliError::Input(format!("{}: {e}", args.spec.display())))?;
    let built = clock.elapsed();
    let router_mode = match args.model {
        ModelKind::Moe => options.router.to_string(),
        ModelKind::Dense => "none".to_string(),
    };
    let opts = modelfile::ExportOptions {
        dtype: args.dtype,
        layout: args.layout,
        force: args.force,
        router_mode,
        scale_router: args.scale_router,
    };
    let s = modelfile::export(&model, &ts, &spec_bytes, &args.output, &opts)?;
    let shown = |m: &Option<Rat>| {
        m.as_ref()
            .map_or_else(|| "none".to_string(), verify::approx)
    };
    let rel = |m: &Option<Rat>| {
        m.as_ref().map_or_else(
            || "-".to_string(),
            |m| {
                format!(
                    "{:.3e}",
                    <f64 as crate::scalar::Scalar>::from_rat(m) / s.max_weight
                )
            },
        )
    };
    println!(
        "{}: {} {} layout, model.safetensors {} bytes (dense layout {} bytes), {} nonzero weights, {} prefixes; build {:.3} s, export {:.3} s",
        s.dir.display(),
        s.dtype.name(),
        s.layout.name(),
        s.safetensors_bytes,
        s.dense_bytes,
        s.nonzeros,
        s.prefixes,
        built.as_secs_f64(),
        (clock.elapsed() - built).as_secs_f64()
    );
    println!(
        "largest weight {:e}; smallest router margin {} ({} of it), smallest logit margin {} ({} of it)",
        s.max_weight,
        shown(&s.min_router_margin),
        rel(&s.min_router_margin),
        shown(&s.min_logit_margin),
        rel(&s.min_logit_margin)
    );
    if !model.router.synthesis.method.is_empty() {
        println!("router synthesis: {}", model.router.synthesis.method);
    }
    let mut by_tensor: Vec<(&String, &f64)> = s.max_by_tensor.iter().collect();
    by_tensor.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    println!(
        "largest |weight| by tensor: {}",
        by_tensor
            .iter()
            .take(4)
            .map(|(n, v)| format!("{n} {v:.3e}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(sc) = &s.scaling {
        let f = |r: &Rat| <f64 as crate::scalar::Scalar>::from_rat(r);
        println!(
            "--scale-router: largest |router weight| {:.3e} -> {:.3e}, every router margin times {} ({} -> {}); every decision re-checked and unchanged",
            f(&sc.max_before),
            f(&sc.max_after),
            verify::approx(&sc.factor),
            shown(&sc.margin_before),
            shown(&sc.margin_after)
        );
    }
    if let Some(c) = &s.f32 {
        if c.flips == 0 {
            println!("f32 forward pass: every decision survives");
        } else {
            println!(
                "f32 forward pass: {} decisions flip ({}{}); written because of --force",
                c.flips,
                c.named.join("; "),
                if c.flips > c.named.len() { "; …" } else { "" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `inspect --neuron` / `--expert`: neurons by name, where they fire.
/// The model `inspect` looks at: read from `--weights`, or built.
fn inspect_model(
    args: &InspectArgs,
    ts: &TaskSet,
    options: &construct::Options,
) -> Result<(Model<Rat>, Option<String>), CliError> {
    if args.model.router == RouterChoice::Star && args.weights.is_some() {
        return Err(CliError::Input(
            "--router star builds the router; --weights reads one from a file: give one of them"
                .into(),
        ));
    }
    match &args.weights {
        None => build_model(&args.model, ts, options),
        Some(dir) => Ok((read_weights(dir, ts, args.model.arith, true)?.0, None)),
    }
}

fn inspect_neurons(
    args: &InspectArgs,
    ts: &TaskSet,
    options: &construct::Options,
) -> Result<ExitCode, CliError> {
    let model = inspect_model(args, ts, options)?.0;
    let (group, positions) = match (&args.neuron, &args.expert) {
        (Some(query), _) => {
            let (group, n) = model.find_neuron(query).map_err(|e| flag("--neuron", e))?;
            (group, vec![n])
        }
        // clap admits no inspect without --prefix, --neuron or --expert.
        (None, name) => {
            let group = model
                .group(name.as_deref().unwrap_or_default())
                .map_err(|e| flag("--expert", e))?;
            let all = (0..group.neurons.len()).collect();
            (group, all)
        }
    };
    let input_error = |e: eval::EvalError| CliError::Input(e.to_string());
    // Float weights (natural-exp attention) have no exact forward pass; the
    // reads and writes are still exact, the firing prefixes come from f64.
    let floats = model.score_unit == ScoreUnit::Natural;
    let out = match args.model.arith {
        Arith::Exact | Arith::Both if !floats => {
            report::neuron::render(&model, ts, &group, &positions)
        }
        _ => report::neuron::render(&model.to_f64(), ts, &group, &positions),
    }
    .map_err(input_error)?;
    print!("{out}");
    if floats && args.model.arith != Arith::F64 {
        println!("(float weights: firing prefixes from the f64 forward pass, not proved)");
    }
    Ok(ExitCode::SUCCESS)
}

fn routability_command(args: RoutabilityArgs) -> Result<ExitCode, CliError> {
    if args.budget == 0 {
        return Err(flag("--budget", "expected at least 1"));
    }
    let star = args.router == RouterChoice::Star;
    if !star && args.star_rank.is_some() {
        return Err(CliError::Input(
            "--star-rank applies to --router star only".into(),
        ));
    }
    if args.star_rank == Some(0) {
        return Err(CliError::Input("--star-rank: expected at least 1".into()));
    }
    let params = args.gha.params()?;
    if !(args.time_limit.is_finite() && args.time_limit > 0.0) {
        return Err(CliError::Input(format!(
            "--time-limit: expected a positive number of seconds, got {}",
            args.time_limit
        )));
    }
    let options = Options {
        router: args.router.mode(),
        head1: args.head1,
        ..Options::default()
    };
    let ts = TaskSet::try_from_spec(&spec::load(&args.spec)?).map_err(CliError::Input)?;
    if let Some(path) = &args.check {
        return check_command(path, &ts, &options, args.format);
    }
    construct::check_router_fits(&ts, &options)
        .map_err(|e| CliError::Input(format!("{}: {e}", args.spec.display())))?;
    let deadline =
        crate::lp::clock::now() + std::time::Duration::from_secs_f64(args.time_limit.min(1e6));
    let spinner = progress::Bar::spinner("routability", std::io::stderr().is_terminal(), || {
        let log = crate::lp::log();
        format!("{} LP calls, {:.1} s in LPs", log.calls, log.seconds)
    });
    let r = routability::run_within(&ts, &options, args.budget, Some(deadline));
    spinner.finish();
    let source = args.spec.display().to_string();
    if star {
        return star_routability(&args, &ts, &options, &params, &r, &source);
    }
    print!(
        "{}",
        match args.format {
            Format::Json => report::routability::json(&r),
            Format::Text => report::routability::text(&r, &source),
            Format::Markdown => report::routability::markdown(&r, &source),
        }
    );
    Ok(if r.routable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `routability --router star`: the linear decision (whose certificate
/// refutes every STAR gate too), then STAR's gate installed in the model
/// and its routing claim checked by the verifier on the forward pass.
/// Exit 0 exactly when that claim holds on every prefix.
fn star_routability(
    args: &RoutabilityArgs,
    ts: &TaskSet,
    options: &Options,
    params: &crate::star::gha::Params,
    linear: &routability::Report,
    source: &str,
) -> Result<ExitCode, CliError> {
    let gate = crate::star::gate(ts, options, args.star_rank, params, args.budget)
        .map_err(|e| CliError::Input(format!("{source}: --router star: {e}")))?;
    let model = crate::star::model(ts, options, &gate);
    let config = verify::Config::new(&options.epsilon).router(options.router);
    let routing = verify::verify(ts, &model, &config).claims.routing;
    match args.format {
        Format::Json => {
            let v = serde_json::json!({
                "linear": serde_json::from_str::<serde_json::Value>(&report::routability::json(linear)).unwrap_or_default(),
                "star": gate.report,
                "star_mix": gate.mix.to_string(),
                "star_routing": routing,
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Text => {
            print!("{}", report::routability::text(linear, source));
            println!("{}", gate.summary());
            println!("{}", gate.report.note);
            println!(
                "STAR gate routing on the forward pass: {} ({} of {} prefixes misrouted)",
                if routing.holds { "holds" } else { "fails" },
                routing.failures,
                routing.checked
            );
        }
        Format::Markdown => {
            print!("{}", report::routability::markdown(linear, source));
            println!("\n{}\n\n{}\n", gate.summary(), gate.report.note);
            println!(
                "STAR gate routing on the forward pass: **{}** ({} of {} prefixes misrouted)",
                if routing.holds { "holds" } else { "fails" },
                routing.failures,
                routing.checked
            );
        }
    }
    Ok(if routing.holds {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn star_command(args: StarArgs) -> Result<ExitCode, CliError> {
    if args.budget == 0 {
        return Err(flag("--budget", "expected at least 1"));
    }
    if args.star_rank == Some(0) {
        return Err(flag("--star-rank", "expected at least 1"));
    }
    let options = Options {
        router: args.router,
        head1: args.head1,
        ..Options::default()
    };
    let ts = TaskSet::from_spec(&spec::load(&args.spec)?);
    let params = args.gha.params()?;
    let shown = args.spec.display();
    let r = crate::star::run(&ts, &options, args.star_rank, &params, args.budget)
        .map_err(|e| CliError::Input(format!("{shown}: {e}")))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        println!(
            "{shown}: {} experts, {} features, {} inputs; V: K = {}, exact rank {}, max|VVᵀ-I| = {:.2e} before rounding",
            r.experts, r.features, r.inputs, r.rank, r.exact_rank, r.orthonormality
        );
        if let Some(c) = &r.convergence {
            println!(
                "  GHA (seed {}, {} steps, rate {}): distance to the exact top-K eigenspace {:.2e}, eigengap (λK-λK+1)/λ1 {:.2e}, top-K second moment captured {:.6}",
                r.gha_seed, r.gha_steps, r.gha_rate, c.distance, c.gap, c.captured
            );
        }
        for (name, l) in [
            ("linear", &r.linear),
            ("star structural", &r.structural),
            ("star interpolated", &r.interpolated),
        ] {
            let margin = l
                .margin
                .map_or(String::new(), |m| format!(" margin {m:.4}"));
            let den = l
                .denominator
                .as_ref()
                .map_or(String::new(), |d| format!(" max denominator {d}"));
            println!("  {name}: {}{margin}{den} {}", l.decision, l.reason);
        }
        if let (Some(s), Some(a)) = (&r.mix, r.alpha) {
            println!("  sigma(alpha) = {s} (alpha = {a:.4})");
        }
        println!("  {}", r.note);
    }
    Ok(if r.interpolated.decision == "routable" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `routability --check FILE`.
fn check_command(
    path: &PathBuf,
    ts: &TaskSet,
    options: &Options,
    format: Format,
) -> Result<ExitCode, CliError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.clone(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| FileError::NotJson {
            path: path.clone(),
            source,
        })?;
    let value = value.get("certificate").cloned().unwrap_or(value);
    let cert: routability::certificate::Certificate =
        serde_json::from_value(value).map_err(|source| FileError::NotCertificate {
            path: path.clone(),
            source,
        })?;
    let outcome = routability::check_certificate(&cert, ts, options).map_err(|e| e.to_string());
    let reads = options.router.describe();
    print!(
        "{}",
        report::routability::check(&shown.to_string(), reads, &outcome, format)
    );
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn generate_command(args: GenerateArgs) -> Result<ExitCode, CliError> {
    let mut params = if args.paper_scale {
        Params::paper_scale()
    } else {
        Params::default()
    };
    args.params.apply(&mut params);
    let spec = generate::generate(&params)?;
    // JSON where the output is named .json (what `verify x.json` reads);
    // otherwise TOML, whose header is the command that regenerates the file,
    // every flag explicit.
    let json = args
        .output
        .as_deref()
        .and_then(Path::extension)
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let text = if json {
        spec.to_json()
    } else {
        format!(
            "# routecert generate {}\n{}",
            params.to_args(),
            spec.to_toml()
        )
    };
    write_output(args.output.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
}

fn write_output(path: Option<&Path>, text: &str) -> Result<(), CliError> {
    match path {
        Some(path) => std::fs::write(path, text).map_err(FileError::write(path)),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Refused before any work: every plot is SVG, whatever the name says, so
/// a name that says otherwise (`x.png`) is an error (table, margins).
pub(crate) fn svg_path(flag: &str, path: &Path) -> Result<(), CliError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
    {
        return Ok(());
    }
    Err(CliError::Input(format!(
        "{flag} {}: the plot is written as SVG; give a file name ending in .svg",
        path.display()
    )))
}

fn table_command(args: TableArgs) -> Result<ExitCode, CliError> {
    let options = Options {
        router: args.router,
        epsilon: epsilon(&args.epsilon)?,
        circuit: args.circuit,
        ..Options::default()
    };
    // The bar is for a person watching: not when stdout is piped or captured.
    let show = !args.quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    if let Some(path) = &args.plot {
        svg_path("--plot", path)?;
    }
    let table = match (args.sweep, args.specs.is_empty()) {
        (Some(param), true) => {
            let mut sweep = Sweep::builtin(param);
            if let Some(over) = &args.over {
                sweep.values = sweep::parse_values(over).map_err(CliError::Input)?;
            }
            args.params.apply(&mut sweep.base);
            sweep.check().map_err(CliError::Input)?;
            let bar = progress::Bar::new(sweep.values.len(), &format!("sweep {param}"), show);
            let table = sweep.run(&options, |event| match event {
                sweep::Progress::Start(v) => bar.start(format!("{param} = {v}")),
                sweep::Progress::Done => bar.done(),
            });
            bar.finish();
            table?
        }
        (None, false) => {
            if args.params.any() {
                return Err(CliError::Input(
                    "table: generator flags (--tasks, --pairs, …) apply only with --sweep".into(),
                ));
            }
            // Read every file first: a bad one fails before any work.
            let specs = args
                .specs
                .iter()
                .map(|p| spec::load(p).map(|s| (p.display().to_string(), s)))
                .collect::<Result<Vec<_>, _>>()?;
            let bar = progress::Bar::new(specs.len(), "specs", show);
            let mut table = Table::new("spec");
            for (name, spec) in &specs {
                bar.start(name.clone());
                let (point, rows) = table::measure("spec", name, spec, &options);
                table.push(point, rows);
                bar.done();
            }
            bar.finish();
            table
        }
        (Some(_), false) => {
            return Err(CliError::Input(
                "table: give spec files or --sweep, not both".into(),
            ));
        }
        (None, true) => {
            return Err(CliError::Input(
                "table: give spec files or --sweep (tasks, pairs, templates, length, words, entities)"
                    .into(),
            ));
        }
    };
    let text = match args.format {
        TableFormat::Csv => table.csv(),
        TableFormat::Markdown => table.markdown(),
        TableFormat::Json => table.json(),
    };
    write_output(args.output.as_deref(), &text)?;
    if let Some(path) = &args.plot {
        let svg = crate::plot::svg(&table).map_err(CliError::Input)?;
        std::fs::write(path, svg).map_err(FileError::write(path))?;
    }
    Ok(if table.all_verified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
