//! Property 3: expert k has (n_k − 1) + |Δk| neurons, never more than
//! L·|T(k)| + |Δk| or c(k), and the same number when unrelated tasks are
//! added.

use crate::common::*;

/// Distinct syntactic patterns of a task (entities as one symbol), counted
/// here from the spec.
pub(crate) fn patterns(task: &spec::TaskSpec) -> usize {
    let mut seen: BTreeSet<Vec<Option<&str>>> = BTreeSet::new();
    for t in &task.templates {
        let symbols: Vec<Option<&str>> = t
            .slots
            .iter()
            .map(|s| match s {
                SlotSpec::Word(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        for len in 1..=symbols.len() {
            seen.insert(symbols[..len].to_vec());
        }
    }
    seen.len()
}

/// (neurons, syntactic, semantic) per task name.
pub(crate) fn sizes(model: &Model<Rat>) -> HashMap<String, (usize, usize, usize)> {
    model
        .experts
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                (
                    e.neurons.len(),
                    e.count(NeuronRole::Syntactic),
                    e.count(NeuronRole::Semantic),
                ),
            )
        })
        .collect()
}

/// Templates of an unrelated task: words and entities no other task uses.
pub(crate) fn unrelated() -> impl Strategy<Value = (Vec<String>, usize)> {
    (
        prop::collection::vec((2usize..=10, any::<prop::sample::Index>()), 1..=3),
        1usize..=4,
    )
        .prop_map(|(templates, pairs)| {
            let texts = templates
                .into_iter()
                .map(|(len, at)| {
                    let key = at.index(len - 1);
                    (0..len)
                        .map(|i| match i {
                            _ if i == key => "{key}".to_string(),
                            _ if i == key + 1 => "{value}".to_string(),
                            _ => format!("zz{}", i % 3),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            (texts, pairs)
        })
}

/// Sizes do not depend on the router: one perceptron epoch is enough.
pub(crate) fn size_options() -> Options {
    Options {
        max_epochs: 1,
        lp_fallback: false,
        ..Options::default()
    }
}

pub(crate) fn sizes_are_bounded_and_local(
    set: &GenSet,
    extra: &(Vec<String>, usize),
    mutate: &dyn Fn(&mut Model<Rat>, &TaskSet),
) -> Result<(), TestCaseError> {
    let spec = set.spec();
    let ts = TaskSet::from_spec(&spec);
    let mut model = build_moe(&ts, &size_options());
    mutate(&mut model, &ts);
    let l = reference::max_len(&spec);
    let before = sizes(&model);
    for task in &spec.tasks {
        let (n, syn, sem) = before[&task.name];
        let sum: usize = task.templates.iter().map(|t| t.slots.len()).sum();
        let (bound, complexity) = (
            l * task.templates.len() + task.pairs.len(),
            sum + task.pairs.len(),
        );
        prop_assert!(
            n <= bound,
            "{}: {} neurons > L·|T(k)| + |Δk| = {}",
            task.name,
            n,
            bound
        );
        prop_assert!(
            n <= complexity,
            "{}: {} neurons > c(k) = {}",
            task.name,
            n,
            complexity
        );
        // Exactly: one interpolation neuron per pattern but the first, one
        // recall neuron per pair.
        prop_assert_eq!(
            (syn, sem),
            (patterns(task) - 1, task.pairs.len()),
            "{}",
            task.name
        );
    }
    // Add an unrelated task (fresh words, fresh entities, any length):
    // every existing expert keeps its size.
    let mut parts = set.parts();
    let (templates, pairs) = extra;
    parts.push((
        "unrelated".into(),
        templates.clone(),
        (0..*pairs)
            .map(|j| (format!("U{j}"), format!("W{j}")))
            .collect(),
    ));
    let bigger =
        Spec::from_parts("bigger", &parts).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let ts2 = TaskSet::from_spec(&bigger);
    let mut model2 = build_moe(&ts2, &size_options());
    mutate(&mut model2, &ts2);
    let after = sizes(&model2);
    for task in &spec.tasks {
        prop_assert_eq!(
            before[&task.name],
            after[&task.name],
            "expert {} changed when an unrelated task was added",
            task.name
        );
    }
    Ok(())
}

#[test]
fn property3_expert_size_is_bounded_and_local() {
    check(
        "3 (expert size)",
        (strategy::task_set(), unrelated()),
        |(set, extra)| sizes_are_bounded_and_local(&set, &extra, &no_mutation),
    );
}

// The mutation property 3 must catch.

#[test]
fn mutation_expert_growing_with_other_tasks_is_caught_by_property3() {
    // A construction that gives each expert one gating neuron per other
    // task (as a dense model might) is no longer local.
    let gate = |m: &mut Model<Rat>, ts: &TaskSet| {
        for e in &mut m.experts {
            let mut dead = e.neurons[0].clone();
            dead.write = SparseVec::default();
            for _ in 1..ts.tasks.len() {
                e.neurons.push(dead.clone());
            }
        }
    };
    let shown = caught(
        "gating neurons per other task",
        (strategy::task_set(), unrelated()),
        |(set, extra)| sizes_are_bounded_and_local(&set, &extra, &gate),
    );
    assert!(
        shown.contains("changed when an unrelated task was added") || shown.contains("neurons"),
        "{shown}"
    );
}
