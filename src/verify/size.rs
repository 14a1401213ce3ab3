//! Claim S: each expert (dense: circuit C(k)) has at most L·|T(k)| + |Δk|
//! neurons, counted from the model's own experts or circuits.

use super::compare::Decision;
use super::tally::Tally;
use super::verdict::{Claim, ClaimResult, ExpertSize, Witness, Witnesses, holds};
use crate::model::{Model, NeuronRole};
use crate::scalar::Rat;
use crate::taskset::TaskSet;

/// S: size, counted from the model's experts (MoE) or circuits (dense).
pub(crate) fn size_claim<S>(
    ts: &TaskSet,
    model: &Model<S>,
    expert_of_task: &[Option<usize>],
    witnesses: &mut Witnesses,
    decisions: &mut Vec<Decision>,
) -> (ClaimResult, Vec<ExpertSize>) {
    let dense = !model.circuits.is_empty();
    let unit = if dense { "circuit" } else { "expert" };
    let mut size = Tally::<Rat>::new(true);
    let mut experts = Vec::new();
    for (k, task) in ts.tasks.iter().enumerate() {
        let bound = task.bound(ts.max_len);
        // (name, roles of its neurons)
        let found: Option<(String, Vec<NeuronRole>)> = if dense {
            model
                .circuits
                .iter()
                .find(|c| c.name == task.name)
                .map(|c| {
                    let roles = c
                        .neurons
                        .iter()
                        .filter_map(|&n| model.experts[0].neurons.get(n).map(|x| x.role))
                        .collect();
                    (c.name.clone(), roles)
                })
        } else {
            expert_of_task[k].map(|e| {
                let expert = &model.experts[e];
                (
                    expert.name.clone(),
                    expert.neurons.iter().map(|n| n.role).collect(),
                )
            })
        };
        let Some((name, roles)) = found else {
            size.record(false, None);
            decisions.push(Decision::new(Claim::Size, &task.name, holds(false)));
            witnesses.push(Witness {
                claim: Claim::Size,
                prefix: String::new(),
                tasks: vec![task.name.clone()],
                expert: None,
                top_logits: vec![],
                reason: format!("the model has no {unit} for task {}", task.name),
            });
            continue;
        };
        let neurons = roles.len();
        size.record(
            neurons <= bound,
            Some(Rat::from_integer((bound as i64 - neurons as i64).into())),
        );
        decisions.push(Decision::new(
            Claim::Size,
            &task.name,
            holds(neurons <= bound),
        ));
        if neurons > bound {
            witnesses.push(Witness {
                claim: Claim::Size,
                prefix: String::new(),
                tasks: vec![task.name.clone()],
                expert: Some(name.clone()),
                top_logits: vec![],
                reason: format!(
                    "{unit} {name} has {neurons} neurons, above L·|T(k)| + |Δk| = {bound}"
                ),
            });
        }
        let count = |role| roles.iter().filter(|&&r| r == role).count();
        experts.push(ExpertSize {
            task: task.name.clone(),
            templates: task.templates.len(),
            template_length_sum: task.template_length_sum(),
            pairs: task.pairs.len(),
            neurons,
            syntactic: count(NeuronRole::Syntactic),
            semantic: count(NeuronRole::Semantic),
            complexity: task.complexity(),
            bound,
        });
    }
    (size.finish(Clone::clone), experts)
}
