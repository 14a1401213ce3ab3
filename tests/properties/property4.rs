//! Property 4: f64 and exact arithmetic take the same decisions wherever
//! the exact margin exceeds the stated bound.

use crate::common::*;

/// The stated bound: a decision is the same in f64 and exact arithmetic
/// whenever its exact margin exceeds 2·2^-40·A, A the magnitude (sum of
/// absolute values) of the terms behind it (docs/hypotheses.md, "f64").
/// A only sets a threshold with a factor 8 to spare, so it is summed in f64.
pub(crate) fn f64_slack(magnitude: f64) -> f64 {
    2.0 * magnitude / (1u64 << 40) as f64
}

/// Counts of decisions compared (the rest had margins inside the bound).
#[derive(Default)]
pub(crate) struct Compared {
    routing: usize,
    retrieval: usize,
    probability: usize,
    total: usize,
}

pub(crate) fn f64_agrees(
    spec: &Spec,
    router: RouterMode,
    epsilon: &Rat,
) -> Result<Compared, TestCaseError> {
    let ts = TaskSet::from_spec(spec);
    let model = build_moe(&ts, &options(router, epsilon));
    let m64 = model.to_f64();
    let eps64 = epsilon.to_f64().unwrap();
    let mut ref_cache = HashMap::new();
    let mut n = Compared::default();
    let f = |r: &Rat| r.to_f64().unwrap_or(f64::INFINITY);
    for p in &ts.prefixes {
        let text = ts.render(&p.tokens);
        let exact = forward(&model, &p.tokens).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let float = forward(&m64, &p.tokens).map_err(|e| TestCaseError::fail(e.to_string()))?;
        n.total += 1;
        // Routing: the magnitude of every score's terms.
        let h = &float.hidden;
        let a_router = (0..m64.experts.len())
            .map(|e| {
                h.entries()
                    .iter()
                    .map(|(c, x)| (m64.router.weights.get(e, *c) * x).abs())
                    .sum::<f64>()
                    + m64.router.bias[e].abs()
            })
            .fold(0.0, f64::max);
        let top = &exact.router_scores[exact.expert];
        let second = (0..exact.router_scores.len())
            .filter(|&e| e != exact.expert)
            .map(|e| &exact.router_scores[e])
            .max();
        let route_margin = second.map_or(f64::INFINITY, |s| f(&(top - s)));
        if route_margin > f64_slack(a_router) {
            n.routing += 1;
            prop_assert_eq!(float.expert, exact.expert, "expert on \"{}\"", text);
        }
        if float.expert != exact.expert {
            continue;
        }
        // Logits: magnitudes through the chosen expert, then W_U.
        let expert = &m64.experts[exact.expert];
        let mut mag: HashMap<usize, f64> = HashMap::new();
        for (c, x) in h.entries().iter().chain(expert.output_bias.entries()) {
            *mag.entry(*c).or_default() += x.abs();
        }
        for neuron in &expert.neurons {
            let b = neuron
                .read
                .entries()
                .iter()
                .map(|(c, r)| (r * h.get(*c)).abs())
                .sum::<f64>()
                + neuron.bias.abs();
            for (c, w) in neuron.write.entries() {
                *mag.entry(*c).or_default() += w.abs() * b;
            }
        }
        let mut z: HashMap<usize, f64> = HashMap::new();
        for (c, m) in &mag {
            for (t, u) in m64.unembed.column(*c).entries() {
                *z.entry(*t).or_default() += u.abs() * m;
            }
        }
        let slack = f64_slack(z.values().copied().fold(0.0, f64::max));
        let vocab = model.vocab.len();
        let valid: BTreeSet<usize> = p.valid_next.iter().copied().collect();
        let logits: Vec<Rat> = (0..vocab).map(|t| exact.logits.get(t)).collect();
        let exact_best = |select: &dyn Fn(usize) -> bool| {
            (0..vocab)
                .filter(|&t| select(t))
                .map(|t| &logits[t])
                .max()
                .cloned()
        };
        let float_best = |select: &dyn Fn(usize) -> bool| {
            (0..vocab)
                .filter(|&t| select(t))
                .map(|t| float.logits.get(t))
                .fold(f64::NEG_INFINITY, f64::max)
        };
        let ev = exact_best(&|t| valid.contains(&t)).unwrap_or_default();
        let ei = exact_best(&|t| !valid.contains(&t));
        let (fv, fi) = (
            float_best(&|t| valid.contains(&t)),
            float_best(&|t| !valid.contains(&t)),
        );
        let margin = ei.as_ref().map_or(f64::INFINITY, |i| f(&(&ev - i)));
        if margin.abs() > slack {
            n.retrieval += 1;
            prop_assert_eq!(
                fv > fi,
                margin > 0.0,
                "argmax on \"{}\" (margin {})",
                text,
                margin
            );
        }
        // P: the f64 softmax against ε, where the exact mass is not within
        // a factor 2 of ε and the logits are accurate to 1/8.
        let mass = reference::invalid_mass(&logits, &valid, &mut ref_cache);
        let (half, two) = (epsilon / rat(2, 1), epsilon * rat(2, 1));
        if slack < 0.125 && (mass.hi < half || mass.lo > two) {
            n.probability += 1;
            let (mut inv, mut val) = (0.0, 0.0);
            for t in 0..vocab {
                let e = (float.logits.get(t) - fv).exp();
                if valid.contains(&t) {
                    val += e;
                } else {
                    inv += e;
                }
            }
            let p64 = inv / (inv + val);
            prop_assert_eq!(
                p64 < eps64,
                mass.hi < half,
                "P on \"{}\": f64 {}",
                text,
                p64
            );
        }
    }
    Ok(n)
}

#[test]
fn property4_f64_agrees_with_exact_beyond_the_bound() {
    let (total, compared) = (AtomicUsize::new(0), AtomicUsize::new(0));
    check(
        "4 (f64 = exact beyond the bound)",
        cases(strategy::sized_task_set(5, 1)),
        |case| {
            let n = f64_agrees(&case.set.spec(), case.router, &case.epsilon)?;
            total.fetch_add(3 * n.total, Ordering::Relaxed);
            compared.fetch_add(n.routing + n.retrieval + n.probability, Ordering::Relaxed);
            Ok(())
        },
    );
    let (t, c) = (total.into_inner(), compared.into_inner());
    println!("property 4: {c} of {t} decisions compared");
    // Not vacuous: the bound leaves almost every decision to compare.
    assert!(10 * c >= 9 * t, "only {c} of {t} decisions compared");
}
