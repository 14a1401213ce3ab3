//! Interval verification against exact verification, in one run.
//!
//!     cargo bench --bench interval
//!
//! Generates the paper-scale task set at 25 pairs per task (`routecert
//! generate --paper-scale --pairs 25`, 32 308 prefixes; ROUTECERT_PAIRS sets
//! another count), builds the MoE model, and times, in this one process:
//! 1. `verify` — exact verification of the built model (ln 2 units, FastRat);
//! 2. interval verification of the same model as its float64 export reads
//!    back (W_Q · ln 2, natural exp, every weight rounded to f64), the path
//!    `verify --weights DIR` takes on a float-only file;
//! 3. interval verification of the built model itself (ln 2 units).
//!
//! It prints each time, the ratio to exact (issue 14's target: ≤ 3×), and
//! whether every claim was proved.

use routecert::construct::{self, ModelKind, Options};
use routecert::generate::{Params, generate};
use routecert::interval::float_image::float_image;
use routecert::taskset::TaskSet;
use routecert::verify::interval::verify_intervals;
use routecert::verify::{Config, verify};
use std::time::Instant;

fn main() {
    let pairs: usize = std::env::var("ROUTECERT_PAIRS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(25);
    let params = Params {
        pairs,
        ..Params::paper_scale()
    };
    let spec = generate(&params).expect("the paper-scale set generates");
    let ts = TaskSet::from_spec(&spec);
    let options = Options::default();
    let model = construct::build(&ts, &options, ModelKind::Moe);
    let natural = float_image(&model);
    println!(
        "paper scale, {pairs} pairs per task: {} prefixes, {} experts",
        ts.prefixes.len(),
        model.experts.len()
    );

    let t = Instant::now();
    let exact = verify(&ts, &model, &Config::new(&options.epsilon));
    let exact_s = t.elapsed().as_secs_f64();
    println!(
        "exact verify (ln 2 model):            {exact_s:8.3} s, all hold: {}",
        exact.all_hold()
    );

    for (what, m) in [
        ("interval (float export, natural exp)", &natural),
        ("interval (built model, ln 2)        ", &model),
    ] {
        let t = Instant::now();
        let v = verify_intervals(&ts, m, &options.epsilon).expect("vocabularies match");
        let s = t.elapsed().as_secs_f64();
        println!(
            "{what}: {s:8.3} s = {:.2}x exact, all proved: {} (undecided {})",
            s / exact_s,
            v.all_proved(),
            v.undecided_count
        );
    }
}
