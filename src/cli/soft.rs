//! The soft-routing hooks of the command line: `verify --gate softmax
//! [--temperature T] [--eta E] [--weights DIR]` and `routecert margins
//! [--weights DIR]...`. Errors are [`CliError`]s (exit 2), turned into
//! messages by the binary.

use super::input::{CliError, ModelArgs, load, read_weights};
use crate::construct::{self, ModelKind};
use crate::model::{Model, ScoreUnit};
use crate::report::Format;
use crate::scalar::{FastRat, Rat, Scalar, parse_rational};
use crate::soft::certify::{Prepared, SoftOptions};
use crate::soft::deviation::{Deviation, deviation};
use crate::soft::gate::GateArith;
use crate::soft::margins::{MarginCurve, curve, interval_views, router_views};
use crate::soft::render;
use crate::spec;
use crate::taskset::TaskSet;
use crate::verify::Arith;
use clap::{Args, ValueEnum};
use num_traits::{One, Zero};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The gate of the MoE layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Gate {
    /// Top-1 routing, as the paper states it.
    #[default]
    Hard,
    /// Σ_e softmax(G(x)/T)_e · FF_e(x).
    Softmax,
}

/// `verify`'s soft-routing flags.
#[derive(Args, Debug, Default)]
pub struct GateArgs {
    /// The MoE gate: hard top-1, or softmax at --temperature (without it,
    /// find the certified temperature T* below which every claim holds).
    #[arg(long, value_enum, default_value_t = Gate::Hard)]
    pub gate: Gate,
    /// Softmax temperature T > 0 (decimal, scientific or a/b; exact).
    #[arg(long)]
    pub temperature: Option<String>,
    /// Soft R's tolerance: the top expert's gate weight must be ≥ 1 − η
    /// (default 1/100).
    #[arg(long)]
    pub eta: Option<String>,
}

impl GateArgs {
    /// Whether any soft-routing flag was given (then `verify` hands over).
    pub fn wanted(&self) -> bool {
        self.gate == Gate::Softmax || self.temperature.is_some() || self.eta.is_some()
    }
}

fn fraction(flag: &str, text: &str, open_top: bool) -> Result<Rat, CliError> {
    parse_rational(text)
        .filter(|r| *r > Rat::zero() && (!open_top || *r < Rat::one()))
        .ok_or_else(|| {
            CliError::Input(format!(
                "{flag} {text}: expected a number {}",
                if open_top {
                    "strictly between 0 and 1 (e.g. 0.01 or 1/100)"
                } else {
                    "greater than 0 (e.g. 0.05 or 1/20)"
                }
            ))
        })
}

/// `verify --gate softmax`: the soft claims at T, or T*.
pub fn verify_soft(
    model_args: &ModelArgs,
    gate: &GateArgs,
    weights: Option<&Path>,
    format: Format,
) -> Result<ExitCode, CliError> {
    if gate.gate != Gate::Softmax {
        return Err(CliError::Input(
            "--temperature and --eta apply to --gate softmax only".into(),
        ));
    }
    if model_args.model != ModelKind::Moe {
        return Err(CliError::Input(
            "--gate softmax applies to the MoE model only: the dense model has no router".into(),
        ));
    }
    let (ts, options) = load(model_args)?;
    let soft = SoftOptions {
        eta: match &gate.eta {
            Some(e) => fraction("--eta", e, true)?,
            None => SoftOptions::default().eta,
        },
        epsilon: options.epsilon.clone(),
        ..SoftOptions::default()
    };
    let temperature = gate
        .temperature
        .as_deref()
        .map(|t| fraction("--temperature", t, false))
        .transpose()?;
    if model_args.arith == Arith::Both {
        return Err(CliError::Input(
            "--gate softmax takes --arith exact or --arith f64, not both".into(),
        ));
    }
    let (model, source) = match weights {
        None => (
            construct::try_build(&ts, &options, model_args.model)
                .map_err(|e| CliError::Input(format!("{}: {e}", model_args.spec.display())))?,
            model_args.spec.display().to_string(),
        ),
        Some(dir) => {
            let (model, _) = read_weights(dir, &ts, model_args.arith, true)?;
            if model.score_unit == ScoreUnit::Natural && model_args.arith == Arith::Exact {
                return Err(CliError::Input(format!(
                    "{}: float weights in natural units (no usable exact.json): the soft gate is certified only on exact weights; `--arith f64` runs it (not certified), and `routecert margins --weights` bounds their margins by intervals",
                    dir.display()
                )));
            }
            (model, dir.display().to_string())
        }
    };
    match model_args.arith {
        Arith::Exact => run_soft(
            &ts,
            &model.map(FastRat::from_rat),
            temperature,
            &soft,
            format,
            &source,
        ),
        Arith::F64 => run_soft(&ts, &model.to_f64(), temperature, &soft, format, &source),
        Arith::Both => Err(CliError::Input(
            "--gate softmax takes --arith exact or --arith f64, not both".into(),
        )),
    }
}

fn run_soft<S: GateArith>(
    ts: &TaskSet,
    model: &Model<S>,
    temperature: Option<Rat>,
    soft: &SoftOptions,
    format: Format,
    source: &str,
) -> Result<ExitCode, CliError> {
    let prepared =
        Prepared::try_new(ts, model).map_err(|e| CliError::Input(format!("{source}: {e}")))?;
    let ok = match temperature {
        Some(t) => {
            let v = prepared.verify_at(&S::from_rat(&t), soft);
            print!(
                "{}",
                match format {
                    Format::Json => render::json(&v),
                    _ => render::verdict_text(&v, source),
                }
            );
            v.all_hold()
        }
        None => {
            let c = prepared.certify(soft);
            print!(
                "{}",
                match format {
                    Format::Json => render::json(&c),
                    _ => render::certified_text(&c, source),
                }
            );
            c.verdict.all_hold() && c.temperature != "0"
        }
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MarginsFormat {
    Csv,
    Json,
    Markdown,
}

/// `routecert margins`.
#[derive(Args, Debug)]
pub struct MarginsArgs {
    /// Task specifications (TOML or JSON), one line of the plot each; with
    /// --weights, the one task set the model files are measured on.
    #[arg(required = true)]
    pub specs: Vec<PathBuf>,
    /// A model directory (docs/model-file.md) to measure on the SPEC's
    /// prefixes instead of its construction; repeat for one line each.
    /// Exact when its exact.json is usable, otherwise by rigorous intervals
    /// (margins then as intervals, open counts reported as undecided).
    #[arg(long, value_name = "DIR")]
    pub weights: Vec<PathBuf>,
    /// With --weights, also measure the SPEC's own construction (one more
    /// line).
    #[arg(long, requires = "weights")]
    pub construction: bool,
    /// What the router reads (as for verify).
    #[arg(long, default_value = "syntactic+key", value_parser = |s: &str| s.parse::<construct::RouterMode>())]
    pub router: construct::RouterMode,
    /// Head 1's attention scores (as for verify).
    #[arg(long, default_value = "positional", value_parser = |s: &str| s.parse::<construct::Head1Mode>())]
    pub head1: construct::Head1Mode,
    /// exact (FastRat) or f64.
    #[arg(long, value_enum, default_value_t = Arith::Exact)]
    pub arith: Arith,
    /// Output format.
    #[arg(long, value_enum, default_value_t = MarginsFormat::Markdown)]
    pub format: MarginsFormat,
    /// Draw m(w) against log w, one line per model, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Also tabulate, at these temperatures ("1/100,0.1,1"), the prefixes
    /// with 1 − g_top > --delta beside the boundary mass at T·ln((K−1)/δ).
    #[arg(long)]
    pub temperatures: Option<String>,
    /// δ of the straying table.
    #[arg(long, default_value = "1/100")]
    pub delta: String,
    /// Draw the straying table as SVG (needs --temperatures).
    #[arg(long, value_name = "FILE.svg", requires = "temperatures")]
    pub deviation_plot: Option<PathBuf>,
}

/// `routecert margins SPEC...`.
pub fn margins_command(args: MarginsArgs) -> Result<ExitCode, CliError> {
    let delta = fraction("--delta", &args.delta, true)?;
    let temperatures = match &args.temperatures {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|t| fraction("--temperatures", t.trim(), false))
            .collect::<Result<Vec<_>, _>>()?,
    };
    if args.arith == Arith::Both {
        return Err(CliError::Input(
            "margins takes --arith exact or --arith f64, not both".into(),
        ));
    }
    if let Some(path) = &args.plot {
        crate::cli::svg_path("--plot", path)?;
    }
    if let Some(path) = &args.deviation_plot {
        crate::cli::svg_path("--deviation-plot", path)?;
    }
    if !args.weights.is_empty() && args.specs.len() != 1 {
        return Err(CliError::Input(format!(
            "--weights measures model files on one task set: give one SPEC, not {}",
            args.specs.len()
        )));
    }
    let options = construct::Options {
        router: args.router,
        head1: args.head1,
        ..construct::Options::default()
    };
    let mut curves = Vec::new();
    let mut tables = Vec::new();
    let mut add = |(c, d): (MarginCurve, Option<Deviation>)| {
        curves.push(c);
        tables.extend(d);
    };
    for path in &args.specs {
        let spec = spec::load(path)?;
        let ts = TaskSet::try_from_spec(&spec).map_err(CliError::Input)?;
        if args.weights.is_empty() || args.construction {
            let model = construct::try_build(&ts, &options, ModelKind::Moe)
                .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
            let label = format!("{} (router {})", path.display(), args.router);
            add(one_model(
                &label,
                &ts,
                &model,
                args.arith,
                &delta,
                &temperatures,
            ));
        }
        for dir in &args.weights {
            let (model, _) = read_weights(dir, &ts, args.arith, true)?;
            if !model.circuits.is_empty() {
                return Err(CliError::Input(format!(
                    "{}: a dense model has no router, so no router margins",
                    dir.display()
                )));
            }
            let label = dir.display().to_string();
            add(one_model(
                &label,
                &ts,
                &model,
                args.arith,
                &delta,
                &temperatures,
            ));
        }
    }
    let mut out = match args.format {
        MarginsFormat::Csv => render::margins_csv(&curves),
        MarginsFormat::Markdown => render::margins_markdown(&curves),
        MarginsFormat::Json => {
            render::json(&serde_json::json!({ "margins": curves, "straying": tables }))
        }
    };
    if !tables.is_empty() {
        match args.format {
            MarginsFormat::Csv => out.push_str(&format!("\n{}", render::deviation_csv(&tables))),
            MarginsFormat::Markdown => out.push_str(&render::deviation_markdown(&tables)),
            MarginsFormat::Json => {}
        }
    }
    print!("{out}");
    let write = |path: &PathBuf, svg: Result<String, String>| {
        std::fs::write(path, svg.map_err(CliError::Input)?)
            .map_err(|e| CliError::Input(format!("{}: cannot write: {e}", path.display())))
    };
    if let Some(path) = &args.plot {
        write(path, crate::soft::plot::margins_svg(&curves))?;
    }
    if let Some(path) = &args.deviation_plot {
        write(path, crate::soft::plot::deviation_svg(&tables))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The margin curve (and the straying table) of one model: exact or f64
/// on its router scores, or rigorous intervals for float weights in
/// natural units (exact mode).
fn one_model(
    label: &str,
    ts: &TaskSet,
    model: &Model<Rat>,
    arith: Arith,
    delta: &Rat,
    temperatures: &[Rat],
) -> (MarginCurve, Option<Deviation>) {
    fn measured<S: GateArith>(
        label: &str,
        ts: &TaskSet,
        experts: usize,
        arith: &str,
        views: &[Result<crate::soft::margins::RouterView<S>, String>],
        delta: &Rat,
        temperatures: &[Rat],
    ) -> (MarginCurve, Option<Deviation>) {
        let c = curve(label, ts, experts, arith, views);
        let d = (!temperatures.is_empty())
            .then(|| deviation(label, arith, views, experts, delta, temperatures));
        (c, d)
    }
    let k = model.experts.len();
    match (arith, model.score_unit) {
        (Arith::F64, _) => {
            let m = model.to_f64();
            measured(
                label,
                ts,
                k,
                "f64",
                &router_views(ts, &m, !temperatures.is_empty()),
                delta,
                temperatures,
            )
        }
        (_, ScoreUnit::Natural) => measured(
            label,
            ts,
            k,
            "interval",
            &interval_views(ts, model, !temperatures.is_empty()),
            delta,
            temperatures,
        ),
        _ => {
            let m = model.map(FastRat::from_rat);
            measured(
                label,
                ts,
                k,
                "exact",
                &router_views(ts, &m, !temperatures.is_empty()),
                delta,
                temperatures,
            )
        }
    }
}
