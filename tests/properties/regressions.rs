//! Regression specs: every file in tests/regressions/ passes properties
//! 1–4 with both routers; and the reference itself on hand-checked numbers.

use crate::common::*;
use crate::property1::guarantees_hold;
use crate::property2::agrees_with_reference;
use crate::property4::f64_agrees;

#[test]
fn regressions_replay() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression specs in {}",
        dir.display()
    );
    for file in &files {
        let spec = spec::load(file).unwrap_or_else(|e| panic!("{e}"));
        // Optional "# router: …" and "# epsilon: …" lines pin the case;
        // otherwise both routers at ε = 1e-6.
        let text = std::fs::read_to_string(file).unwrap();
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")).map(str::trim))
                .map(String::from)
        };
        let routers = match header("router") {
            Some(r) => vec![r.parse::<RouterMode>().unwrap()],
            None => vec![RouterMode::SyntacticKey, RouterMode::Syntactic],
        };
        let eps = header("epsilon").map_or(rat(1, 1_000_000), |e| {
            routecert::scalar::parse_rational(&e).unwrap()
        });
        for router in routers {
            let name = format!("{} ({router}, ε = {eps})", file.display());
            guarantees_hold(&spec, router, &eps, &no_mutation)
                .unwrap_or_else(|e| panic!("{name}: property 1: {e}"));
            agrees_with_reference(&spec, router, &eps, &|_, _| {})
                .unwrap_or_else(|e| panic!("{name}: property 2: {e}"));
            f64_agrees(&spec, router, &eps).unwrap_or_else(|e| panic!("{name}: property 4: {e}"));
            // With the CLI's perceptron budget too.
            let ts = TaskSet::from_spec(&spec);
            let h = Hypotheses::check(&ts, router, &eps);
            let model = build_moe(
                &ts,
                &Options {
                    router,
                    epsilon: eps.clone(),
                    ..Options::default()
                },
            );
            let v = verify(&ts, &model, &verify::Config::new(&eps).router(router));
            if h.all_hold() {
                assert!(v.all_hold(), "{name}: default options");
            }
            let failed = failures(&v);
            for (i, p) in ts.prefixes.iter().enumerate() {
                if h.routing[i].covered() {
                    let text = ts.render(&p.tokens);
                    assert!(
                        !failed.contains_key(&(Claim::Routing, text.clone())),
                        "{name}: \"{text}\""
                    );
                }
            }
        }
    }
}

// The reference itself, on hand-checked numbers.

#[test]
fn reference_reproduces_hand_computed_values() {
    let spec = spec::load(&routecert::fixtures::path("running_example.toml")).unwrap();
    let oracle = reference::oracle(&spec);
    assert_eq!(oracle.len(), 39);
    assert_eq!(oracle.values().filter(|f| f.is_query).count(), 9);
    let key = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let paris_is = &oracle[&key("Paris is")];
    assert_eq!(paris_is.valid, ["in", "located"].map(String::from).into());
    assert_eq!(
        oracle[&key("Lima is in Peru")].valid,
        ["<eos>".to_string()].into()
    );

    let ts = TaskSet::from_spec(&spec);
    let model = build_moe(&ts, &Options::default());
    let dense = reference::Dense::new(&model);
    let ids: Vec<usize> = ["Paris", "is", "located"]
        .iter()
        .map(|t| dense.vocab.iter().position(|v| v == t).unwrap())
        .collect();
    let t = dense.forward(&ids).unwrap();
    let logit = |name: &str| &t.logits[dense.vocab.iter().position(|v| v == name).unwrap()];
    // β_syn = 217 on "in"; the semantic neuron Paris → France gives (6/3)·18.
    assert_eq!(*logit("in"), rat(217, 1));
    assert_eq!(*logit("France"), rat(36, 1));
    assert_eq!(*logit("is"), Rat::zero());
    assert_eq!(dense.expert_name(t.expert), "located_in");

    // The exp bounds bracket e^y tightly, on both sides of 0.
    for (n, d) in [(0, 1), (1, 3), (-18, 1), (-217, 1), (5, 2), (-1, 64)] {
        let y = rat(n, d);
        let (lo, hi) = (reference::exp_lower(&y), reference::exp_upper(&y));
        let e = (n as f64 / d as f64).exp();
        let (lo, hi) = (lo.to_f64().unwrap(), hi.to_f64().unwrap());
        assert!(
            lo <= e * (1.0 + 1e-15) && hi >= e * (1.0 - 1e-15),
            "{y}: {lo} {e} {hi}"
        );
        assert!(hi / lo < 1.0 + 1e-15, "{y}: {lo} .. {hi}");
    }
    let judged = reference::judge(&spec, &model);
    assert!(judged.prefixes.iter().all(|p| p.routing && p.retrieval));
    assert!(judged.size_holds());
}
