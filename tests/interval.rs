//! Interval verification of float weights (issue 14): natural-exp
//! attention, noise, edits that break routing, scores off the ln 2 grid.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use routecert::construct::{self, ModelKind, Options};
use routecert::eval::Evaluator;
use routecert::interval::float_image::{float_image, nearest_dyadic};
use routecert::model::{LinearMap, Model, ScoreUnit, SparseVec};
use routecert::scalar::Rat;
use routecert::spec;
use routecert::taskset::TaskSet;
use routecert::verify::interval::{Outcome, prefix_outcomes, verify_intervals};
use routecert::verify::{Verdict, verify};
use std::collections::BTreeSet;
use std::path::Path;

fn taskset(name: &str) -> TaskSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("constructions")
        .join(name);
    TaskSet::from_spec(&spec::load(&path).expect("spec loads"))
}

fn built(ts: &TaskSet, kind: ModelKind) -> Model<Rat> {
    construct::build(ts, &Options::default(), kind)
}

fn eps() -> Rat {
    Options::default().epsilon
}

/// (claim, prefix) of every failure witness of the exact verifier.
fn exact_failures(v: &Verdict) -> BTreeSet<(String, String)> {
    v.failures
        .iter()
        .filter(|w| w.claim != "size" && w.claim != "isolation")
        .map(|w| (w.claim.to_string(), w.prefix.clone()))
        .collect()
}

#[test]
fn probe_all() {
    for name in [
        "running_example.toml",
        "shared_keys.toml",
        "xor_expected_failure.toml",
        "ambiguous_xor_expected_failure.toml",
        "random_seed1.toml",
    ] {
        let ts = taskset(name);
        for kind in [ModelKind::Moe, ModelKind::Dense] {
            let m = built(&ts, kind);
            let exact = verify(&ts, &m, &eps(), "x");
            let t = std::time::Instant::now();
            let iv = verify_intervals(&ts, &m, &eps()).unwrap();
            let dt = t.elapsed();
            let nat = verify_intervals(&ts, &float_image(&m), &eps()).unwrap();
            let fails: BTreeSet<(String, String)> = iv
                .failures
                .iter()
                .filter(|w| w.claim != "size")
                .map(|w| (w.claim.to_string(), w.prefix.clone()))
                .collect();
            let natfails: BTreeSet<(String, String)> = nat
                .failures
                .iter()
                .filter(|w| w.claim != "size")
                .map(|w| (w.claim.to_string(), w.prefix.clone()))
                .collect();
            println!(
                "{name} {kind:?}: prefixes {} exact fails {} iv fails {} undecided {} same {} | nat fails {} undecided {} same {} {:?}",
                ts.prefixes.len(),
                exact_failures(&exact).len(),
                fails.len(),
                iv.undecided_count,
                fails == exact_failures(&exact),
                natfails.len(),
                nat.undecided_count,
                natfails == exact_failures(&exact),
                dt
            );
            for w in nat.undecided.iter().take(2) {
                println!("   U {w:?}");
            }
        }
    }
}
