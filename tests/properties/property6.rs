//! Property 6: the dense model (Theorem 4.1, the default split circuit
//! form) verifies wherever the MoE model's hypotheses hold: every claim on
//! every prefix, and every circuit isolated, in exact arithmetic.
//!
//! Cheap on purpose: 32 cases (or PROPTEST_CASES), drawn like property 1's
//! (half from the sets the hypotheses cover by design, half from the
//! general strategy with every hard case).

use crate::common::*;
use crate::property1::property1_sets;
use routecert::construct::build_dense;

/// Cases of this property unless PROPTEST_CASES says otherwise.
const CASES: u32 = 32;

#[test]
fn property6_the_dense_model_verifies_where_the_hypotheses_hold() {
    let count = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CASES);
    let mut runner = seeded(Config {
        cases: count,
        ..config()
    });
    let (seen, held, dense_held) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let result = runner.run(&cases(property1_sets()), |case| {
        let ts = TaskSet::from_spec(&case.set.spec());
        let h = Hypotheses::check(&ts, case.router, &case.epsilon);
        let model = build_dense(&ts, &options(case.router, &case.epsilon));
        let v = verify(&ts, &model, &verify::Config::new(&case.epsilon));
        seen.fetch_add(1, Ordering::Relaxed);
        dense_held.fetch_add(v.all_hold() as usize, Ordering::Relaxed);
        // S needs no hypothesis: every circuit within L·|T(k)| + |Δk|.
        prop_assert!(v.claims.size.holds, "size fails: {:?}", v.circuits);
        if h.all_hold() {
            held.fetch_add(1, Ordering::Relaxed);
            prop_assert!(
                v.all_hold(),
                "every hypothesis holds but the dense model fails: {:?}",
                v.failures.first()
            );
            let circuits = v
                .circuits
                .as_ref()
                .expect("the dense model reports circuits");
            prop_assert!(circuits.iter().all(|c| c.isolated));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("property 6: {e}");
    }
    let (n, h, d) = (
        seen.into_inner(),
        held.into_inner(),
        dense_held.into_inner(),
    );
    println!("property 6: hypotheses hold on {h}/{n} sets; the dense model verifies on {d}/{n}");
    // Not vacuous.
    assert!(4 * h >= n, "the hypotheses hold on only {h} of {n} sets");
}
