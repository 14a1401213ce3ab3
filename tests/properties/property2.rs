//! Property 2: the verifier's verdict on every prefix equals that of an
//! independent reference (dense forward pass, brute-force oracle, own exp
//! bounds), and routecert never reports success where the reference finds
//! a failure, also on deliberately broken models.

use crate::common::*;

/// A deliberate break of a built model, so that the verifier is compared
/// with the reference on failing models too.
#[derive(Debug, Clone)]
pub(crate) enum Break {
    None,
    /// Scale every syntactic output (targets become factor·β_syn).
    ScaleSyntactic(i64, i64),
    /// Remove one neuron.
    DropNeuron(prop::sample::Index, prop::sample::Index),
    /// Shift one expert's router bias by this much.
    RouterBias(prop::sample::Index, i64),
    /// Zero every router weight that reads an entity (h2 or tok).
    BlindRouterToEntities,
}

pub(crate) fn breaks() -> impl Strategy<Value = Break> {
    prop_oneof![
        4 => Just(Break::None),
        1 => prop_oneof![Just((1, 2)), Just((1, 8)), Just((1, 40))]
            .prop_map(|(n, d)| Break::ScaleSyntactic(n, d)),
        1 => (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(e, n)| Break::DropNeuron(e, n)),
        1 => (any::<prop::sample::Index>(), -3000i64..3000).prop_map(|(e, b)| Break::RouterBias(e, b)),
        1 => Just(Break::BlindRouterToEntities),
    ]
}

pub(crate) fn apply(b: &Break, model: &mut Model<Rat>) {
    match b {
        Break::None => {}
        Break::ScaleSyntactic(n, d) => scale_syntactic(model, &rat(*n, *d)),
        Break::DropNeuron(e, n) => {
            let e = e.index(model.experts.len());
            let neurons = &mut model.experts[e].neurons;
            let n = n.index(neurons.len());
            neurons.remove(n);
        }
        Break::RouterBias(e, b) => {
            let e = e.index(model.router.bias.len());
            model.router.bias[e] += rat(*b, 1);
        }
        Break::BlindRouterToEntities => blind_router_to_entities(model),
    }
}

/// Compare the verifier with the reference on every prefix.
pub(crate) fn agrees_with_reference(
    spec: &Spec,
    router: RouterMode,
    epsilon: &Rat,
    breaking: &dyn Fn(&mut Model<Rat>, &mut TaskSet),
) -> Result<(), TestCaseError> {
    let mut ts = TaskSet::from_spec(spec);
    let mut model = build_moe(&ts, &options(router, epsilon));
    breaking(&mut model, &mut ts);
    let v = verify(&ts, &model, &verify::Config::new(epsilon).router(router));
    let r = reference::judge(spec, &model);

    // The oracle: same prefixes, same V(w), C(w), queries.
    let ours: HashMap<Vec<String>, &routecert::taskset::Prefix> = ts
        .prefixes
        .iter()
        .map(|p| {
            let names = p
                .tokens
                .iter()
                .map(|&t| ts.vocab.name(t).to_string())
                .collect();
            (names, p)
        })
        .collect();
    prop_assert_eq!(ours.len(), r.prefixes.len(), "number of prefixes");
    for rp in &r.prefixes {
        let words: Vec<String> = rp.text.split(' ').map(String::from).collect();
        let p = ours.get(&words);
        prop_assert!(p.is_some(), "the taskset lacks the prefix \"{}\"", rp.text);
        let p = p.unwrap();
        let valid: BTreeSet<String> = p
            .valid_next
            .iter()
            .map(|&t| ts.vocab.name(t).to_string())
            .collect();
        let tasks: BTreeSet<String> = p.tasks.iter().map(|&k| ts.tasks[k].name.clone()).collect();
        prop_assert_eq!(&valid, &rp.facts.valid, "V(\"{}\")", rp.text);
        prop_assert_eq!(&tasks, &rp.facts.tasks, "C(\"{}\")", rp.text);
        prop_assert_eq!(p.is_query, rp.facts.is_query, "query \"{}\"", rp.text);
    }
    prop_assert_eq!(v.prefixes, r.prefixes.len());
    prop_assert_eq!(
        v.queries,
        r.prefixes.iter().filter(|p| p.facts.is_query).count()
    );
    prop_assert_eq!(
        v.ambiguous,
        r.prefixes
            .iter()
            .filter(|p| p.facts.tasks.len() > 1)
            .count()
    );
    prop_assert_eq!(v.max_len, reference::max_len(spec));

    // Every prefix: R and A exactly, P outside the certificate's slack band.
    let complete = v.failure_count <= MAX_WITNESSES;
    let failed = failures(&v);
    let (mut r_fail, mut a_fail) = (0, 0);
    let sixteenth = epsilon / Rat::from_integer(16.into());
    for rp in &r.prefixes {
        prop_assert!(rp.ran, "the reference could not run \"{}\"", rp.text);
        r_fail += !rp.routing as usize;
        a_fail += !rp.retrieval as usize;
        if !complete {
            continue;
        }
        let says = |claim| !failed.contains_key(&(claim, rp.text.clone()));
        prop_assert_eq!(
            says(Claim::Routing),
            rp.routing,
            "routing on \"{}\" (expert {})",
            rp.text,
            rp.expert
        );
        prop_assert_eq!(
            says(Claim::Retrieval),
            rp.retrieval,
            "retrieval on \"{}\"",
            rp.text
        );
        if rp.invalid.lo >= *epsilon {
            // Soundness: never certify what is false.
            prop_assert!(
                !says(Claim::Probability),
                "P certified on \"{}\" though P(invalid) ≥ {}",
                rp.text,
                rp.invalid.lo
            );
        } else if rp.invalid.hi < sixteenth {
            // Completeness up to the documented factor (docs/hypotheses.md).
            prop_assert!(
                says(Claim::Probability),
                "P not certified on \"{}\" though P(invalid) ≤ {}",
                rp.text,
                rp.invalid.hi
            );
        }
    }
    prop_assert_eq!(v.claims.routing.failures, r_fail, "routing failures");
    prop_assert_eq!(v.claims.retrieval.failures, a_fail, "retrieval failures");
    let p_sure = r
        .prefixes
        .iter()
        .filter(|p| p.invalid.lo >= *epsilon)
        .count();
    let p_maybe = r
        .prefixes
        .iter()
        .filter(|p| p.invalid.hi >= sixteenth)
        .count();
    prop_assert!((p_sure..=p_maybe).contains(&v.claims.probability.failures));

    // S, per expert.
    prop_assert_eq!(v.claims.size.holds, r.size_holds());
    for (task, neurons, bound, complexity) in &r.sizes {
        let e = v.experts.iter().find(|e| e.task == *task);
        prop_assert!(e.is_some(), "no size row for {}", task);
        let e = e.unwrap();
        prop_assert_eq!(Some(e.neurons), *neurons);
        prop_assert_eq!((e.bound, e.complexity), (*bound, *complexity));
    }

    // Never success where the reference finds a failure.
    if v.all_hold() {
        prop_assert!(r_fail == 0 && a_fail == 0 && p_sure == 0 && r.size_holds());
    }
    Ok(())
}

#[test]
fn property2_verifier_agrees_with_the_reference() {
    check(
        "2 (verifier = reference)",
        (cases(strategy::sized_task_set(5, 1)), breaks()),
        |(case, b)| {
            agrees_with_reference(&case.set.spec(), case.router, &case.epsilon, &|m, _| {
                apply(&b, m)
            })
        },
    );
}

// The mutation of the oracle that property 2 must catch.

#[test]
fn mutation_oracle_dropping_a_valid_token_is_caught_by_property2() {
    let shown = caught(
        "the oracle forgets a valid next token",
        strategy::task_set(),
        |set| {
            agrees_with_reference(
                &set.spec(),
                RouterMode::SyntacticKey,
                &rat(1, 1_000_000),
                &|_, ts| {
                    let last = ts.prefixes.len() - 1;
                    let p = &mut ts.prefixes[last];
                    let first = p.valid_next.iter().next().copied();
                    if let Some(t) = first {
                        p.valid_next.remove(&t);
                    }
                },
            )
        },
    );
    assert!(shown.contains("V(\""), "{shown}");
}
