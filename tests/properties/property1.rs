//! Property 1: where the hypotheses cover a prefix, every claim holds
//! there; where they hold on every prefix, every claim holds (exact
//! arithmetic). With the mutations of the construction it must catch.

use crate::common::*;

/// What one case of property 1 saw, for the vacuity counters.
pub(crate) struct Coverage {
    all_hold: bool,
    covered: usize,
    prefixes: usize,
}

/// Build, optionally break, and verify; then check every guarantee of
/// docs/hypotheses.md against the verdict.
pub(crate) fn guarantees_hold(
    spec: &Spec,
    router: RouterMode,
    epsilon: &Rat,
    mutate: &dyn Fn(&mut Model<Rat>, &TaskSet),
) -> Result<Coverage, TestCaseError> {
    let ts = TaskSet::from_spec(spec);
    let h = Hypotheses::check(&ts, router, epsilon);
    let mut model = build_moe(&ts, &options(router, epsilon));
    mutate(&mut model, &ts);
    let v = verify(&ts, &model, &verify::Config::new(epsilon).router(router));
    // S needs no hypothesis.
    prop_assert!(v.claims.size.holds, "size fails: {:?}", v.experts);
    let all_hold = v.all_hold();
    let coverage = Coverage {
        all_hold: h.all_hold(),
        covered: h.covered(),
        prefixes: ts.prefixes.len(),
    };
    // Per prefix, from the witnesses. When there are too many to list,
    // verify the covered prefixes on their own (every claim must hold
    // there) and skip the lemma on the others.
    let (v, check_all) = if v.failure_count <= MAX_WITNESSES {
        (v, true)
    } else {
        let mut covered = ts.clone();
        covered.prefixes = ts
            .prefixes
            .iter()
            .zip(&h.routing)
            .filter(|(_, c)| c.covered())
            .map(|(p, _)| p.clone())
            .collect();
        let v = verify(
            &covered,
            &model,
            &verify::Config::new(epsilon).router(router),
        );
        prop_assert!(
            v.failure_count <= MAX_WITNESSES,
            "{} failures on covered prefixes",
            v.failure_count
        );
        (v, false)
    };
    let failed = failures(&v);
    for (i, p) in ts.prefixes.iter().enumerate() {
        if !check_all && !h.routing[i].covered() {
            continue;
        }
        let text = ts.render(&p.tokens);
        let routing = failed.get(&(Claim::Routing, text.clone()));
        if h.routing[i].covered() {
            prop_assert!(
                routing.is_none(),
                "H-R covers \"{text}\" ({}) but routing fails: {}",
                h.explain(&ts, i),
                routing.map_or("", |w| w.reason.as_str())
            );
        }
        // Lemma: routed into C(w) (even with a tie outside), A holds and,
        // under H-M, P holds.
        let routed_in =
            routing.is_none_or(|w| w.expert.as_ref().is_some_and(|e| w.tasks.contains(e)));
        if routed_in {
            let a = failed.get(&(Claim::Retrieval, text.clone()));
            prop_assert!(
                a.is_none(),
                "\"{text}\" is routed into C(w) but retrieval fails: {}",
                a.map_or("", |w| w.reason.as_str())
            );
            if h.margin.holds {
                let pw = failed.get(&(Claim::Probability, text.clone()));
                prop_assert!(
                    pw.is_none(),
                    "\"{text}\" is routed into C(w) and H-M holds but probability fails: {}",
                    pw.map_or("", |w| w.reason.as_str())
                );
            }
        }
    }
    if h.all_hold() {
        prop_assert!(all_hold, "every hypothesis holds but a claim fails");
    }
    Ok(coverage)
}

/// Task sets for property 1: half where the hypotheses cover everything
/// by design, half from the general strategy with every hard case.
pub(crate) fn property1_sets() -> impl Strategy<Value = GenSet> {
    prop_oneof![strategy::covered_task_set(), strategy::task_set()]
}

#[test]
fn property1_hypotheses_guarantee_the_claims() {
    let seen = AtomicUsize::new(0);
    let fully = AtomicUsize::new(0);
    let (covered, prefixes) = (AtomicUsize::new(0), AtomicUsize::new(0));
    check(
        "1 (hypotheses guarantee the claims)",
        cases(property1_sets()),
        |case| {
            let c = guarantees_hold(&case.set.spec(), case.router, &case.epsilon, &no_mutation)?;
            seen.fetch_add(1, Ordering::Relaxed);
            fully.fetch_add(c.all_hold as usize, Ordering::Relaxed);
            covered.fetch_add(c.covered, Ordering::Relaxed);
            prefixes.fetch_add(c.prefixes, Ordering::Relaxed);
            Ok(())
        },
    );
    // Not vacuous: many sets satisfy every hypothesis, and most prefixes
    // are covered.
    let (n, full) = (seen.into_inner(), fully.into_inner());
    let (c, p) = (covered.into_inner(), prefixes.into_inner());
    println!("property 1: {full}/{n} sets fully covered, {c}/{p} prefixes covered");
    assert!(
        4 * full >= n,
        "only {full} of {n} sets satisfy every hypothesis"
    );
    assert!(2 * c >= p, "only {c} of {p} prefixes covered");
}

// Mutations caught by property 1 (run with --nocapture to see the
// minimal counterexample).

/// Property 1 on one covered set (the syntactic-key router, ε = 1e-6)
/// with a break applied to the built model.
fn broken(set: &GenSet, mutate: &dyn Fn(&mut Model<Rat>, &TaskSet)) -> Result<(), TestCaseError> {
    guarantees_hold(
        &set.spec(),
        RouterMode::SyntacticKey,
        &rat(1, 1_000_000),
        mutate,
    )
    .map(|_| ())
}

#[test]
fn mutation_syntactic_margin_at_l_beta_sem_is_caught_by_property1() {
    // β_syn lowered from 2·L·β_sem + 1 to L·β_sem: on a prefix "⋆1" followed
    // by a word, the key's values get L·β_sem too, a tie.
    let lower = |m: &mut Model<Rat>, ts: &TaskSet| {
        let eps = rat(1, 1_000_000);
        let margins = routecert::construct::Margins::new(ts.vocab.len(), ts.max_len, &eps);
        let target = Rat::from_integer((ts.max_len as i64).into()) * &margins.semantic;
        scale_syntactic(m, &(target / &margins.syntactic));
    };
    let shown = caught("β_syn = L·β_sem", strategy::covered_task_set(), |set| {
        broken(&set, &lower)
    });
    assert!(shown.contains("retrieval fails"), "{shown}");
}

#[test]
fn mutation_syntactic_margin_just_below_2l_beta_sem_is_harmless() {
    // The design's 2·L·β_sem + 1 is not tight: β_syn = (L + 1)·β_sem, well
    // below 2·L·β_sem, still passes every property-1 case (H-M's separation
    // condition is exactly this, docs/hypotheses.md).
    let lower = |m: &mut Model<Rat>, ts: &TaskSet| {
        let eps = rat(1, 1_000_000);
        let margins = routecert::construct::Margins::new(ts.vocab.len(), ts.max_len, &eps);
        let target = Rat::from_integer((ts.max_len as i64 + 1).into()) * &margins.semantic;
        scale_syntactic(m, &(target / &margins.syntactic));
    };
    let mut runner = seeded(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy::covered_task_set(), |set| broken(&set, &lower))
        .unwrap();
}

#[test]
fn mutation_router_blind_to_the_key_is_caught_by_property1() {
    let shown = caught(
        "router ignores the key",
        strategy::covered_task_set(),
        |set| broken(&set, &|m, _| blind_router_to_entities(m)),
    );
    assert!(shown.contains("routing fails"), "{shown}");
}

#[test]
fn mutation_missing_semantic_neuron_is_caught_by_property1() {
    let drop_recall = |m: &mut Model<Rat>, _: &TaskSet| {
        let e = &mut m.experts[0];
        if let Some(at) = e
            .neurons
            .iter()
            .rposition(|n| n.role == NeuronRole::Semantic)
        {
            e.neurons.remove(at);
        }
    };
    let shown = caught(
        "a semantic neuron dropped",
        strategy::covered_task_set(),
        |set| broken(&set, &drop_recall),
    );
    assert!(shown.contains("retrieval fails"), "{shown}");
}
