//! By-name views of a model's FFN: an expert (MoE) or a circuit C(k)
//! (dense) by its task's name, a neuron by address ("capital/7") or by name,
//! and a neuron's reads and writes as typed residual directions.
//!
//! These answer "what does neuron 7 of expert `capital` read and write?"
//! from the weights alone; `report::neuron` renders them.

use super::{Direction, Model, Neuron, SparseVec};
use crate::scalar::Scalar;
use std::fmt;

/// A named set of FFN neurons: an expert of the MoE model, or a circuit
/// C(k) of the dense model (whose neurons all live in its one FFN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeuronGroup {
    /// The expert's or the circuit's (task's) name.
    pub name: String,
    /// "expert" or "circuit".
    pub kind: &'static str,
    /// The expert the neurons belong to.
    pub expert: usize,
    /// The neurons' indices in that expert, in the group's order.
    pub neurons: Vec<usize>,
}

/// One neuron seen by name: ReLU(Σ reads + bias) · writes.
#[derive(Debug, Clone)]
pub struct NeuronView<'a, S> {
    pub group: &'a NeuronGroup,
    /// Its index in the group (the N of "group/N").
    pub position: usize,
    /// Its index in its expert (what `Trace::firing` lists).
    pub index: usize,
    pub neuron: &'a Neuron<S>,
    /// The residual directions it reads, with their weights.
    pub reads: Vec<(&'a Direction, &'a S)>,
    /// The residual directions it writes, with their weights.
    pub writes: Vec<(&'a Direction, &'a S)>,
}

/// Why a name picks out no expert, circuit or neuron.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    UnknownGroup {
        kind: &'static str,
        name: String,
        known: Vec<String>,
    },
    NoSuchNeuron {
        group: String,
        index: usize,
        count: usize,
    },
    UnknownNeuron {
        query: String,
        groups: Vec<String>,
    },
    AmbiguousNeuron {
        query: String,
        candidates: Vec<String>,
    },
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::UnknownGroup { kind, name, known } => write!(
                f,
                "no {kind} named '{name}' (the {kind}s are: {})",
                known.join(", ")
            ),
            LookupError::NoSuchNeuron {
                group,
                index,
                count,
            } => write!(
                f,
                "'{group}' has no neuron {index} (it has {count}: {group}/0 to {group}/{})",
                count.saturating_sub(1)
            ),
            LookupError::UnknownNeuron { query, groups } => write!(
                f,
                "no neuron named '{query}' (name one as GROUP/N or by its full name, as `--expert` lists them; the groups are: {})",
                groups.join(", ")
            ),
            LookupError::AmbiguousNeuron { query, candidates } => write!(
                f,
                "'{query}' names {} neurons: {}",
                candidates.len(),
                candidates.join("; ")
            ),
        }
    }
}

impl std::error::Error for LookupError {}

impl<S: Scalar> Model<S> {
    /// The expert of that name.
    pub fn expert(&self, name: &str) -> Option<&super::Expert<S>> {
        self.experts.iter().find(|e| e.name == name)
    }

    /// The dense model's circuit of that task.
    pub fn circuit(&self, task: &str) -> Option<&super::Circuit<S>> {
        self.circuits.iter().find(|c| c.name == task)
    }

    /// A sparse vector over the residual as (direction, weight) pairs.
    pub fn named<'a>(&'a self, v: &'a SparseVec<S>) -> Vec<(&'a Direction, &'a S)> {
        v.entries()
            .iter()
            .map(|(i, x)| (self.residual.direction(*i), x))
            .collect()
    }

    /// The FFN by task: the experts of the MoE model, the circuits of the
    /// dense one.
    pub fn groups(&self) -> Vec<NeuronGroup> {
        if self.circuits.is_empty() {
            self.experts
                .iter()
                .enumerate()
                .map(|(e, x)| NeuronGroup {
                    name: x.name.clone(),
                    kind: "expert",
                    expert: e,
                    neurons: (0..x.neurons.len()).collect(),
                })
                .collect()
        } else {
            self.circuits
                .iter()
                .map(|c| NeuronGroup {
                    name: c.name.clone(),
                    kind: "circuit",
                    expert: 0,
                    neurons: c.neurons.clone(),
                })
                .collect()
        }
    }

    /// The expert (MoE) or circuit (dense) of that name.
    pub fn group(&self, name: &str) -> Result<NeuronGroup, LookupError> {
        let groups = self.groups();
        let kind = if self.circuits.is_empty() {
            "expert"
        } else {
            "circuit"
        };
        groups
            .iter()
            .find(|g| g.name == name)
            .cloned()
            .ok_or_else(|| LookupError::UnknownGroup {
                kind,
                name: name.to_string(),
                known: groups.iter().map(|g| g.name.clone()).collect(),
            })
    }

    /// Neuron `position` of a group, by name.
    pub fn neuron_view<'a>(&'a self, group: &'a NeuronGroup, position: usize) -> NeuronView<'a, S> {
        let index = group.neurons[position];
        let neuron = &self.experts[group.expert].neurons[index];
        NeuronView {
            group,
            position,
            index,
            neuron,
            reads: self.named(&neuron.read),
            writes: self.named(&neuron.write),
        }
    }

    /// A neuron by its full name, by address "GROUP/N" (neuron N of an
    /// expert or circuit), or a unique neuron whose name continues the
    /// query with ':' or ',' ("located_in/syn0", or "located_in/sem: Paris
    /// → France" for the dense model's ", gated" neuron). Returns the group
    /// and the neuron's position in it.
    pub fn find_neuron(&self, query: &str) -> Result<(NeuronGroup, usize), LookupError> {
        let groups = self.groups();
        let name_of =
            |g: &NeuronGroup, p: usize| &self.experts[g.expert].neurons[g.neurons[p]].name;
        let all = || {
            groups
                .iter()
                .flat_map(|g| (0..g.neurons.len()).map(move |p| (g, p)))
        };
        if let Some((g, p)) = all().find(|&(g, p)| name_of(g, p) == query) {
            return Ok((g.clone(), p));
        }
        if let Some((name, n)) = query.rsplit_once('/')
            && let Ok(n) = n.trim().parse::<usize>()
        {
            let g = self.group(name)?;
            return if n < g.neurons.len() {
                Ok((g, n))
            } else {
                Err(LookupError::NoSuchNeuron {
                    group: g.name,
                    index: n,
                    count: g.neurons.len(),
                })
            };
        }
        let continues = |name: &str| {
            name.strip_prefix(query)
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with(','))
        };
        let matches: Vec<(&NeuronGroup, usize)> =
            all().filter(|&(g, p)| continues(name_of(g, p))).collect();
        match matches.as_slice() {
            [(g, p)] => Ok(((*g).clone(), *p)),
            [] => Err(LookupError::UnknownNeuron {
                query: query.to_string(),
                groups: groups
                    .iter()
                    .map(|g| format!("{} ({} neurons)", g.name, g.neurons.len()))
                    .collect(),
            }),
            many => Err(LookupError::AmbiguousNeuron {
                query: query.to_string(),
                candidates: many
                    .iter()
                    .map(|(g, p)| format!("{}/{p} = {}", g.name, name_of(g, *p)))
                    .collect(),
            }),
        }
    }
}
