//! Verification of every construction in exact and in f64 arithmetic, for
//! both models: the claims of one built model checked on every prefix
//! (forward passes, P, A, routing or isolation). Building the model is
//! shared by both arithmetics and is not timed.
//!
//!     cargo bench --bench arith
//!
//! The README records the numbers; f64 is expected to be at least 10×
//! faster than exact.

use criterion::{Criterion, criterion_group, criterion_main};
use routecert::construct::{ModelKind, Options, build};
use routecert::scalar::rat;
use routecert::verify::{Arith, Config, verify};
use std::hint::black_box;
use std::time::Duration;

const FILES: [&str; 4] = [
    "running_example.toml",
    "shared_keys.toml",
    "random_seed1.toml",
    "random_seed2.toml",
];

fn arith(c: &mut Criterion) {
    let epsilon = rat(1, 1_000_000);
    for file in FILES {
        let ts = routecert::fixtures::task_set(file);
        for kind in [ModelKind::Moe, ModelKind::Dense] {
            let model = build(&ts, &Options::default(), kind);
            let mut group = c.benchmark_group(format!("{}/{kind}", file.trim_end_matches(".toml")));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(3));
            group.bench_function("exact", |b| {
                b.iter(|| verify(black_box(&ts), black_box(&model), &Config::new(&epsilon)))
            });
            group.bench_function("f64", |b| {
                let config = Config::new(&epsilon).arith(Arith::F64);
                b.iter(|| verify(black_box(&ts), black_box(&model), &config))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, arith);
criterion_main!(benches);
