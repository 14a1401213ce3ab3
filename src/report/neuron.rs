//! `inspect --neuron` / `--expert`: what FFN neurons read (with their bias)
//! and write, by residual direction, and on which prefixes of the spec they
//! fire in the forward pass.
//!
//! The reads and writes come from the weights ([`Model::neuron_view`]); the
//! firing prefixes from running the model on every prefix of the task set,
//! so a neuron is listed as firing exactly where the forward pass routes to
//! its expert and its pre-activation read·A' + bias is positive.

use crate::eval::{EvalError, Evaluator};
use crate::model::{Model, NeuronGroup, NeuronRole, NeuronView};
use crate::scalar::Scalar;
use crate::taskset::TaskSet;
use std::collections::HashMap;
use std::fmt::Write;

/// Firing prefixes listed per neuron; the count is always complete.
pub const MAX_LISTED: usize = 1000;

/// Where one neuron fired: (prefix index, activation).
type Firing<S> = Vec<(usize, S)>;

/// Neurons `positions` of `group`, by name, with the prefixes of `ts` they
/// fire on. The task set and the model meet only through token names (a
/// model file may order its vocabulary differently).
pub fn render<S: Scalar>(
    model: &Model<S>,
    ts: &TaskSet,
    group: &NeuronGroup,
    positions: &[usize],
) -> Result<String, EvalError> {
    let id: HashMap<&str, usize> = model
        .vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let evaluator = Evaluator::new(model).without_preactivations();
    let mut firing: Vec<Firing<S>> = vec![Vec::new(); positions.len()];
    let mut routed = 0usize;
    for (p, prefix) in ts.prefixes.iter().enumerate() {
        let input = prefix
            .tokens
            .iter()
            .map(|&t| {
                id.get(ts.vocab.name(t))
                    .copied()
                    .ok_or(EvalError::UnknownToken(t))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let trace = evaluator.run(&input)?;
        if trace.expert != group.expert {
            continue;
        }
        routed += 1;
        for (slot, &position) in positions.iter().enumerate() {
            let index = group.neurons[position];
            if let Some((_, a)) = trace.firing.iter().find(|(n, _)| *n == index) {
                firing[slot].push((p, a.clone()));
            }
        }
    }
    let mut s = header(model, group, routed, ts.prefixes.len());
    for (slot, &position) in positions.iter().enumerate() {
        let view = model.neuron_view(group, position);
        s.push('\n');
        s.push_str(&neuron_text(&view, ts, &firing[slot]));
    }
    Ok(s)
}

/// The group's size, and for an expert how many prefixes reach it; for a
/// circuit its gate Γ_k.
fn header<S: Scalar>(model: &Model<S>, group: &NeuronGroup, routed: usize, total: usize) -> String {
    let neurons = &model.experts[group.expert].neurons;
    let count = |role| {
        group
            .neurons
            .iter()
            .filter(|&&n| neurons[n].role == role)
            .count()
    };
    let mut s = format!(
        "{} {}: {} neurons ({} syntactic, {} semantic)",
        group.kind,
        group.name,
        group.neurons.len(),
        count(NeuronRole::Syntactic),
        count(NeuronRole::Semantic)
    );
    if model.circuits.is_empty() {
        let _ = writeln!(s, "; the router sends it {routed} of {total} prefixes");
    } else {
        let _ = writeln!(s, " of the FFN; {total} prefixes");
        if let Some(c) = model.circuit(&group.name) {
            let _ = writeln!(s, "gate Γ_k: {}", model.describe(&c.gate, &model.residual));
        }
    }
    s
}

/// One neuron: its name, one line per read and write, its bias, and the
/// prefixes it fires on with its activation there.
fn neuron_text<S: Scalar>(view: &NeuronView<'_, S>, ts: &TaskSet, firing: &Firing<S>) -> String {
    let role = match view.neuron.role {
        NeuronRole::Syntactic => "syntactic",
        NeuronRole::Semantic => "semantic",
    };
    let place = match view.group.kind {
        "circuit" => format!("; FFN neuron {}", view.index),
        _ => String::new(),
    };
    let mut s = format!(
        "{}/{}: {}  ({role}{place})\n",
        view.group.name, view.position, view.neuron.name
    );
    for (d, w) in &view.reads {
        let _ = writeln!(s, "  read {d} = {}", w.show());
    }
    let _ = writeln!(s, "  bias = {}", view.neuron.bias.show());
    for (d, w) in &view.writes {
        let _ = writeln!(s, "  write {d} = {}", w.show());
    }
    let _ = writeln!(
        s,
        "  fires on {} of {} prefixes{}",
        firing.len(),
        ts.prefixes.len(),
        if firing.is_empty() { "" } else { ":" }
    );
    for (p, a) in firing.iter().take(MAX_LISTED) {
        let _ = writeln!(
            s,
            "    \"{}\" → {}",
            ts.render(&ts.prefixes[*p].tokens),
            a.show()
        );
    }
    if firing.len() > MAX_LISTED {
        let _ = writeln!(s, "    … and {} more", firing.len() - MAX_LISTED);
    }
    s
}
