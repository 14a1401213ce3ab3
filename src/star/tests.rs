//! Unit tests of the star search: the certificate, the search and its budget.
use super::*;
use crate::routability::system::{Constraint, Term};
use crate::scalar::{int, rat};
use crate::spec;
use std::collections::BTreeSet;
use std::path::Path;

fn load(name: &str) -> TaskSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("constructions")
        .join(name);
    TaskSet::from_spec(&spec::load(&path).unwrap())
}

fn group(x: &[i64], task: usize) -> Group {
    Group {
        x: x.iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .map(|(f, v)| (f, int(*v)))
            .collect(),
        tasks: BTreeSet::from([task]),
    }
}

/// Three tasks on three points with positive coordinates: routable by a
/// linear gate over all features, not by one whose rows lie on one line
/// through a positive direction (every z = v·x̃ > 0 then, and on z > 0 the
/// argmax of R_e·z is the same expert everywhere).
fn three_points() -> System {
    System {
        experts: 3,
        features: 3,
        groups: vec![
            group(&[1, 0, 1], 0),
            group(&[0, 1, 1], 1),
            group(&[1, 1, 1], 2),
        ],
    }
}

#[test]
fn a_rank_one_span_cannot_route_three_tasks_certified() {
    let system = three_points();
    assert!(matches!(linear(&system, 64), Decision::Routes(_)));
    let v = vec![vec![rat(1, 2), rat(1, 2), rat(1, 2)]];
    let (d, _) = structural(&system, &v, 64);
    let Decision::Refuted(r) = d else {
        panic!("expected a refutation, got {d:?}");
    };
    let projected = project(&system, &v);
    assert!(check::refutes(&projected, &r));
    // The same multipliers do not refute the unprojected system (it is
    // routable), so the check is not vacuous.
    assert!(!check::refutes(&system, &r));
}

#[test]
fn the_checker_rejects_a_bogus_refutation() {
    let system = three_points();
    let bogus = Refutation::Farkas(vec![Term {
        constraint: Constraint {
            group: 0,
            task: 0,
            against: 1,
        },
        multiplier: int(1),
    }]);
    assert!(!check::refutes(&system, &bogus));
}

#[test]
fn a_full_span_routes_what_the_linear_gate_routes() {
    let system = three_points();
    let v = vec![
        vec![int(1), int(0), int(0)],
        vec![int(0), int(1), int(0)],
        vec![int(0), int(0), int(1)],
    ];
    let (d, r) = structural(&system, &v, 64);
    let Decision::Routes(w) = d else {
        panic!("{d:?}");
    };
    assert_eq!(compose(&r, &v, 3), w);
    assert!((0..3).all(|g| system.serves(&w, g)));
}

#[test]
fn running_example_routes_with_interpolation() {
    let ts = load("running_example.toml");
    let options = Options::default();
    let report = run(&ts, &options, None, &gha::Params::default(), 64).unwrap();
    assert_eq!(report.linear.decision, "routable", "{report:?}");
    assert_eq!(report.interpolated.decision, "routable", "{report:?}");
    assert!(report.orthonormality < 1e-2, "{report:?}");
    assert_eq!(report.rank, ts.tasks.len());
    // Recompute the interpolated gate and check it serves every input.
    let (system, _) = crate::routability::routing_system(&ts, &options).unwrap();
    let b = basis(&system, report.rank, &gha::Params::default());
    assert_eq!(b.rank, report.exact_rank);
    // W_g as `gate` takes it: the construction's router when it serves
    // every input, else the exact LP's.
    let synthesised = synthesised_rows(&ts, &options, &system);
    let w_g = if serves_all(&system, &synthesised) {
        synthesised
    } else {
        let Decision::Routes(w) = linear(&system, 64) else {
            panic!()
        };
        w
    };
    let w_s = match structural(&system, &b.exact, 64).0 {
        Decision::Routes(w) => w,
        _ => start(&system, &b.exact),
    };
    let (s, w) = interpolate(&system, &w_g, &w_s).unwrap();
    assert_eq!(Some(s.to_string()), report.mix);
    assert!(s > Rat::zero() && s < Rat::one());
    assert!((0..system.groups.len()).all(|g| system.serves(&w, g)));
    assert!(report.margin_positive());
}

/// GHA's V on running_example, then the structural part at K = 2 (refuted)
/// and at K = 8 (routable): the refutation holds on the projected system
/// and not on the original one (which a linear router serves), and the
/// routing gate's rows lie in span(V) exactly.
#[test]
fn gha_span_refuted_at_two_and_routing_inside_the_span_at_eight() {
    let ts = load("running_example.toml");
    let (system, _) = crate::routability::routing_system(&ts, &Options::default()).unwrap();
    let params = gha::Params {
        steps: 60_000,
        ..gha::Params::default()
    };
    let small = basis(&system, 2, &params);
    assert_eq!(small.rank, 2);
    let (d, _) = structural(&system, &small.exact, 64);
    let Decision::Refuted(r) = d else {
        panic!("expected a refutation at K = 2, got {d:?}");
    };
    assert!(check::refutes(&project(&system, &small.exact), &r));
    assert!(!check::refutes(&system, &r));
    assert!(matches!(linear(&system, 64), Decision::Routes(_)));

    let wide = basis(&system, 8, &params);
    let (d, rr) = structural(&system, &wide.exact, 64);
    let Decision::Routes(w) = d else {
        panic!("expected a router at K = 8, got {d:?}");
    };
    assert_eq!(compose(&rr, &wide.exact, system.features), w);
    // Every row of W lies in span(V): appending them keeps the exact rank.
    let mut stacked = wide.exact.clone();
    stacked.extend(w.iter().cloned());
    assert_eq!(gha::rank(&stacked), wide.rank);
    assert!((0..system.groups.len()).all(|g| system.serves(&w, g)));
}

#[test]
fn the_installed_gate_routes_running_example_on_the_forward_pass() {
    let ts = load("running_example.toml");
    let options = Options::default();
    let g = gate(&ts, &options, None, &gha::Params::default(), 64).unwrap();
    assert_eq!(g.report.interpolated.decision, "routable");
    assert_eq!(Some(g.mix.to_string()), g.report.mix);
    let model = model(&ts, &options, &g);
    let config = crate::verify::Config::new(&options.epsilon).router(options.router);
    let verdict = crate::verify::verify(&ts, &model, &config);
    assert!(verdict.claims.routing.holds, "{:?}", verdict.claims.routing);
    assert_eq!(verdict.claims.routing.checked, ts.prefixes.len());
    // The installed router is the gate: its weights are σ(α)·W_g + (1−σ(α))·R·V,
    // not the synthesised router's.
    let (system, _) = crate::routability::routing_system(&ts, &options).unwrap();
    assert_ne!(g.rows, synthesised_rows(&ts, &options, &system));
}

#[test]
fn gha_converges_on_running_example_by_the_stated_criterion() {
    let ts = load("running_example.toml");
    let (system, _) = crate::routability::routing_system(&ts, &Options::default()).unwrap();
    let b = basis(&system, 2, &gha::Params::default());
    assert!(b.orthonormality < 1e-2, "{}", b.orthonormality);
    let c = b.convergence.unwrap();
    assert!(c.captured > 0.999 && c.captured <= 1.0 + 1e-9, "{c:?}");
    assert!(c.distance < 0.1, "{c:?}");
    assert!(c.eigenvalues.windows(2).all(|w| w[0] >= w[1]));
}
