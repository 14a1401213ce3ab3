//! The dense model's FFN over many prefixes, factored by circuit: what the
//! verifier runs on `--model dense`.
//!
//! Every neuron n of a circuit C with gate vector Γ (a read over the
//! residual stream) and gate weight g_n reads read_n = r_n − g_n·Γ for
//! r_n := read_n + g_n·Γ, whatever Γ is: an identity, so
//! read_n·A' = r_n·A' − g_n·(Γ·A') exactly. Γ·A' is computed once per
//! circuit and prefix, and r_n is what the neuron reads besides its gate
//! (for the construction: one key coordinate, or the pattern scalar s_k),
//! so the gate's long, large-denominator evidence is multiplied out once
//! per circuit instead of once per neuron. Residual coordinates that are
//! the same on every input (`one`: equal in every token's embedding, in
//! every position's, and written by no head) are folded into the biases.
//!
//! Neurons then fall into groups (consecutive neurons with the same r_n and
//! g_n, e.g. a circuit's interpolation neurons, which differ only in bias)
//! and groups into classes (same circuit, same g_n, same caller label). A
//! group whose r_n meets no nonzero coordinate of A' reads 0 besides its
//! gate, so all its neurons' pre-activations are bias_n − g_n·Γ(A'): one
//! comparison of the class's largest bias among such groups decides
//! whether any of them fires, and gives the smallest −pre-activation over
//! them exactly. A circuit whose gate is closed is so decided silent with
//! one product and one comparison, and the margin that proves it is kept.
//!
//! Everything is derived from the weights: the factorisation holds for any
//! Γ, so a model whose circuits carry no gate (or a wrong one) is evaluated
//! exactly too, only without the saving. The pre-activations, firing
//! neurons and logits are the numbers [`super::forward`] computes (a unit
//! test compares them on every prefix of the constructions).

use super::{Attended, EvalError, Evaluator, Trace};
use crate::interval::bound::Iv;
use crate::model::{Model, SparseVec};
use crate::scalar::{FastRat, Rat, Scalar};
use std::cell::OnceCell;
use std::collections::HashMap;

/// A number's exact value, where it has one: the gate products Γ·A' are
/// then summed as one unreduced BigRational fraction (one gcd per circuit,
/// not one per term; a gate's coefficients carry denominators of a hundred
/// bits). f64 has none and sums in its own arithmetic.
pub trait ExactValue: Scalar {
    fn exact_value(&self) -> Option<Rat> {
        None
    }
    /// A rigorous enclosure of an exact value (None: not exact).
    fn enclosure(&self) -> Option<Iv> {
        self.exact_value().map(|r| Iv::enclose(&r))
    }
}

impl ExactValue for Rat {
    fn exact_value(&self) -> Option<Rat> {
        Some(self.clone())
    }
}

/// Below 2^53 an i64 converts to f64 exactly.
const EXACT_F64: i64 = 1 << 53;

impl ExactValue for FastRat {
    fn exact_value(&self) -> Option<Rat> {
        Some(self.to_rat())
    }
    fn enclosure(&self) -> Option<Iv> {
        match self {
            FastRat::Small(q) if q.numer().abs() < EXACT_F64 && *q.denom() < EXACT_F64 => {
                Some(Iv::point(*q.numer() as f64) / Iv::point(*q.denom() as f64))
            }
            _ => self.exact_value().map(|r| Iv::enclose(&r)),
        }
    }
}

impl ExactValue for f64 {}

/// Consecutive neurons with the same own read, circuit and gate weight.
struct Group<S> {
    /// r_n without the constant coordinates.
    read: SparseVec<S>,
    class: usize,
    /// (neuron, bias with the constant coordinates folded in), largest
    /// bias first.
    neurons: Vec<(usize, S)>,
}

/// Groups of one label, one circuit's gate and one gate weight.
struct Class<S> {
    label: usize,
    /// The circuit whose gate the neurons read, if any.
    gate: Option<usize>,
    weight: S,
    /// Its groups, largest first bias first.
    groups: Vec<usize>,
}

/// One prefix through the dense evaluator.
pub struct DensePass<S> {
    pub attended: Attended<S>,
    /// A' exactly, where the arithmetic is exact (for margins decided late).
    exact_x: Option<SparseVec<Rat>>,
    /// (neuron, activation) of every neuron that fires, by neuron index.
    pub firing: Vec<(usize, S)>,
    /// Per label: what the smallest −(pre-activation) over its neurons may
    /// be (see [`DenseEvaluator::margin`]).
    candidates: Vec<Vec<Candidate<S>>>,
    /// (group, base, m): the group's first m neurons fired, neuron n with
    /// activation base + bias_n.
    runs: Vec<(usize, S, usize)>,
}

/// The smallest −(pre-activation) of one group on a prefix: exact, or an
/// enclosure proving the group silent, with what makes it exact.
#[derive(Clone)]
struct Candidate<S> {
    bound: Iv,
    exact: Option<S>,
    /// r·A' + the group's largest bias (exact).
    own: S,
    class: usize,
}

/// The dense model's forward pass, factored by circuit gate (see the
/// module comment). `labels` partitions the FFN's neurons for
/// [`DensePass::margins`] (the verifier labels each neuron by the set of
/// tasks whose circuits list it).
pub struct DenseEvaluator<'m, S> {
    base: Evaluator<'m, S>,
    /// Γ_c per circuit, and its exact value and enclosure where the
    /// arithmetic is exact.
    gates: Vec<SparseVec<S>>,
    exact_gates: Option<Vec<SparseVec<Rat>>>,
    /// Residual coordinate → (circuit, enclosure of Γ_c there): Γ·A' is
    /// enclosed by one pass over A''s nonzero coordinates.
    gate_bounds: Vec<Vec<(usize, Iv)>>,
    /// Per class: an enclosure of its gate weight.
    weight_bounds: Vec<Iv>,
    groups: Vec<Group<S>>,
    classes: Vec<Class<S>>,
    /// Residual coordinate → the groups whose own read uses it.
    readers: Vec<Vec<usize>>,
    labels: usize,
    /// Per circuit: its neurons, sorted and deduplicated (the masked model
    /// M_C keeps exactly these).
    members: Vec<Vec<usize>>,
    /// Per group, in exact arithmetic: (W_m, B_m) = Σ_{n<m} (write_n,
    /// bias_n·write_n) over its first m neurons, m = 1, 2, ... while they
    /// stay within [`SUMS_BUDGET`]. Those neurons fire together, each with
    /// activation base + bias_n, so they write base·W_m + B_m: one product
    /// per coordinate instead of one product and one addition per neuron
    /// (a circuit's interpolation ramps fire by the hundred, each with
    /// activation and slope of L bits).
    sums: Vec<Vec<(SparseVec<S>, SparseVec<S>)>>,
}

/// The entries a group's running sums may hold, as a multiple of its
/// neurons' write entries: the interpolation's telescope (W_m is one
/// slope, B_m its intercept) needs about 2.
const SUMS_BUDGET: usize = 4;

/// The residual coordinates whose value is the same on every input: equal
/// in every token's embedding and in every position's, and written by no
/// head. Value by coordinate.
fn constant_coordinates<S: Scalar>(model: &Model<S>) -> HashMap<usize, S> {
    let written: std::collections::HashSet<usize> = model
        .heads
        .iter()
        .flat_map(|h| {
            (0..h.output.in_dim).flat_map(|c| h.output.column(c).entries().iter().map(|(r, _)| *r))
        })
        .collect();
    // A coordinate is constant over a table if every row has the same value
    // there (absent = 0).
    fn uniform<S: Scalar>(rows: &[SparseVec<S>]) -> HashMap<usize, S> {
        let Some(first) = rows.first() else {
            return HashMap::new();
        };
        let mut candidates: HashMap<usize, (S, usize)> = first
            .entries()
            .iter()
            .map(|(c, v)| (*c, (v.clone(), 0)))
            .collect();
        for row in rows {
            for (c, v) in row.entries() {
                if let Some((value, count)) = candidates.get_mut(c) {
                    if value == v {
                        *count += 1;
                    } else {
                        *count = usize::MAX / 2;
                    }
                }
            }
        }
        candidates
            .into_iter()
            .filter(|(_, (_, count))| *count == rows.len())
            .map(|(c, (v, _))| (c, v))
            .collect()
    }
    let tokens = uniform(&model.token_embed);
    let positions = uniform(&model.pos_embed[..model.max_len.min(model.pos_embed.len())]);
    // Nonzero in the first row of either table, uniform in both (absent
    // from the first row of one table and uniform there means 0 in it).
    let zero_in = |rows: &[SparseVec<S>], c: usize| rows.iter().all(|r| r.get(c).is_zero());
    let mut out = HashMap::new();
    for (&c, v) in &tokens {
        if written.contains(&c) {
            continue;
        }
        let p = match positions.get(&c) {
            Some(p) => p.clone(),
            None if zero_in(&model.pos_embed, c) => S::zero(),
            None => continue,
        };
        out.insert(c, v.clone() + p);
    }
    for (&c, p) in &positions {
        if written.contains(&c) || out.contains_key(&c) {
            continue;
        }
        if zero_in(&model.token_embed, c) {
            out.insert(c, p.clone());
        }
    }
    out.retain(|_, v| !v.is_zero());
    out
}

impl<'m, S: ExactValue> DenseEvaluator<'m, S> {
    /// The evaluator of `model`'s first expert (the dense FFN); `label[n]`
    /// (values below `labels`) partitions its neurons for the margins.
    pub fn new(model: &'m Model<S>, label: &[usize], labels: usize) -> Self {
        let neurons = model.experts.first().map_or(&[][..], |e| &e.neurons[..]);
        let width = model.residual.len();
        let gates: Vec<SparseVec<S>> = model
            .circuits
            .iter()
            .map(|c| {
                SparseVec::from_entries(
                    c.gate.entries().iter().filter(|(d, _)| *d < width).cloned(),
                )
            })
            .collect();
        let exact_gates = gates
            .iter()
            .map(|g| {
                g.entries()
                    .iter()
                    .map(|(d, w)| Some((*d, w.exact_value()?)))
                    .collect::<Option<Vec<_>>>()
                    .map(SparseVec::from_entries)
            })
            .collect::<Option<Vec<_>>>();
        // The circuit (and gate weight) each neuron is factored by: the one
        // circuit that lists it, once.
        let mut listed: Vec<Vec<(usize, usize)>> = vec![Vec::new(); neurons.len()];
        for (c, circuit) in model.circuits.iter().enumerate() {
            for (at, &n) in circuit.neurons.iter().enumerate() {
                if n < neurons.len() {
                    listed[n].push((c, at));
                }
            }
        }
        // Only exact arithmetic is factored: in f64 the factored sums would
        // round differently from the neuron-by-neuron pass, so there every
        // neuron reads its own read vector, as in [`super::Evaluator`], and
        // the verdicts and margins are the same to the last bit.
        let factored = exact_gates.is_some();
        let constants = if factored {
            constant_coordinates(model)
        } else {
            HashMap::new()
        };
        let mut groups: Vec<Group<S>> = Vec::new();
        let mut classes: Vec<Class<S>> = Vec::new();
        let mut class_of: HashMap<(usize, Option<usize>), Vec<usize>> = HashMap::new();
        for (n, neuron) in neurons.iter().enumerate() {
            let factor = match listed[n][..] {
                [(c, at)] if factored => model.circuits[c]
                    .gate_weight
                    .get(at)
                    .map(|g| (c, g.clone())),
                _ => None,
            };
            let (gate, weight, own) = match &factor {
                Some((c, g)) => (
                    Some(*c),
                    g.clone(),
                    neuron.read.add_scaled(g, &model.circuits[*c].gate),
                ),
                None => (None, S::zero(), neuron.read.clone()),
            };
            let mut bias = neuron.bias.clone();
            let read = SparseVec::from_entries(own.entries().iter().filter_map(|(d, w)| {
                match constants.get(d) {
                    Some(v) => {
                        bias = bias.clone() + w.clone() * v.clone();
                        None
                    }
                    None => Some((*d, w.clone())),
                }
            }));
            let l = label
                .get(n)
                .copied()
                .unwrap_or(0)
                .min(labels.saturating_sub(1));
            let same = class_of.entry((l, gate)).or_default();
            let class = match same.iter().find(|&&k| classes[k].weight == weight) {
                Some(&k) => k,
                None => {
                    classes.push(Class {
                        label: l,
                        gate,
                        weight,
                        groups: Vec::new(),
                    });
                    same.push(classes.len() - 1);
                    classes.len() - 1
                }
            };
            match groups.last_mut() {
                Some(g) if g.class == class && g.read == read => {
                    g.neurons.push((n, bias));
                }
                _ => {
                    classes[class].groups.push(groups.len());
                    groups.push(Group {
                        read,
                        class,
                        neurons: vec![(n, bias)],
                    });
                }
            }
        }
        let mut readers = vec![Vec::new(); width];
        for (g, group) in groups.iter_mut().enumerate() {
            group
                .neurons
                .sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
            for (d, _) in group.read.entries() {
                if let Some(r) = readers.get_mut(*d) {
                    r.push(g);
                }
            }
        }
        for class in &mut classes {
            class.groups.sort_by(|&a, &b| {
                groups[b].neurons[0]
                    .1
                    .partial_cmp(&groups[a].neurons[0].1)
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        let mut gate_bounds: Vec<Vec<(usize, Iv)>> = vec![Vec::new(); width];
        for (c, g) in exact_gates.iter().flatten().enumerate() {
            for (d, w) in g.entries() {
                gate_bounds[*d].push((c, Iv::enclose(w)));
            }
        }
        let everything = Iv::new(f64::NEG_INFINITY, f64::INFINITY);
        let weight_bounds = classes
            .iter()
            .map(|c| c.weight.enclosure().unwrap_or(everything))
            .collect();
        let sums = groups
            .iter()
            .map(|group| {
                if !factored {
                    return Vec::new();
                }
                let write = |n: usize| &neurons[n].write;
                let budget = SUMS_BUDGET
                    * group
                        .neurons
                        .iter()
                        .map(|(n, _)| write(*n).nnz())
                        .sum::<usize>();
                let mut held = 0;
                let mut acc = (SparseVec::default(), SparseVec::default());
                let mut out = Vec::new();
                for (n, bias) in &group.neurons {
                    acc = (
                        acc.0.add_scaled(&S::one(), write(*n)),
                        acc.1.add_scaled(bias, write(*n)),
                    );
                    held += acc.0.nnz() + acc.1.nnz();
                    if held > budget {
                        break;
                    }
                    out.push(acc.clone());
                }
                out
            })
            .collect();
        let members = model
            .circuits
            .iter()
            .map(|c| {
                let mut m: Vec<usize> = c
                    .neurons
                    .iter()
                    .copied()
                    .filter(|&n| n < neurons.len())
                    .collect();
                m.sort_unstable();
                m.dedup();
                m
            })
            .collect();
        DenseEvaluator {
            base: Evaluator::new(model).without_preactivations(),
            gates,
            exact_gates,
            gate_bounds,
            weight_bounds,
            groups,
            classes,
            readers,
            labels,
            members,
            sums,
        }
    }

    /// The forward pass up to the FFN's activations on one prefix.
    ///
    /// In exact arithmetic each group is first decided on enclosures: Γ·A'
    /// and the gate product g·Γ·A' in rigorous intervals (the gates' large
    /// rationals never enter an exact product), the group's own read and
    /// bias exactly. A group whose largest pre-activation is certainly
    /// below 0 is silent, proved; its exact margin is computed only if it
    /// can be the smallest ([`DenseEvaluator::margin`]). Every other group
    /// (an open gate, or an enclosure too wide to decide) is computed
    /// exactly.
    pub fn run(&self, tokens: &[usize]) -> Result<DensePass<S>, EvalError> {
        let attended = self.base.attend(tokens)?;
        let x = &attended.hidden;
        let exact_x = self.exact_gates.as_ref().and_then(|_| {
            x.entries()
                .iter()
                .map(|(d, v)| Some((*d, v.exact_value()?)))
                .collect::<Option<Vec<_>>>()
                .map(SparseVec::from_entries)
        });
        // Enclosures of Γ_c·A' (exact arithmetic only).
        let gate_bounds: Option<Vec<Iv>> = exact_x.as_ref().and_then(|_| {
            let mut acc = vec![Iv::point(0.0); self.gates.len()];
            for (d, v) in x.entries() {
                let column = self.gate_bounds.get(*d).map_or(&[][..], |c| &c[..]);
                if column.is_empty() {
                    continue;
                }
                let v = v.enclosure()?;
                for (c, w) in column {
                    acc[*c] = acc[*c] + *w * v;
                }
            }
            Some(acc)
        });
        // Γ_c·A' exactly, per circuit, computed when first needed.
        let gammas: Vec<OnceCell<S>> = (0..self.gates.len()).map(|_| OnceCell::new()).collect();
        let mut touched = vec![false; self.groups.len()];
        let mut list: Vec<usize> = Vec::new();
        for (d, _) in x.entries() {
            for &g in self.readers.get(*d).into_iter().flatten() {
                if !touched[g] {
                    touched[g] = true;
                    list.push(g);
                }
            }
        }
        // −g·Γ(A') per class, exactly, computed when first needed.
        let mut shifts: Vec<Option<S>> = vec![None; self.classes.len()];
        let mut shift = |k: usize| -> S {
            shifts[k]
                .get_or_insert_with(|| self.exact_shift(k, x, exact_x.as_ref(), &gammas))
                .clone()
        };
        let shift_bound = |k: usize| -> Option<Iv> {
            let class = &self.classes[k];
            match class.gate {
                Some(c) if !class.weight.is_zero() => {
                    let g = gate_bounds.as_ref()?[c];
                    Some(-(self.weight_bounds[k] * g))
                }
                _ => Some(Iv::point(0.0)),
            }
        };
        let mut candidates: Vec<Vec<Candidate<S>>> = vec![Vec::new(); self.labels.max(1)];
        let mut firing = Vec::new();
        let mut runs = Vec::new();
        // One group on this prefix, given r·A'; returns whether its largest
        // pre-activation is positive.
        let mut visit = |g: usize, read: S, candidates: &mut Vec<Vec<Candidate<S>>>| -> bool {
            let group = &self.groups[g];
            let k = group.class;
            let label = self.classes[k].label;
            let own = read.clone() + group.neurons[0].1.clone();
            if let (Some(sb), Some(ob)) = (shift_bound(k), own.enclosure())
                && (ob + sb).hi() < 0.0
            {
                candidates[label].push(Candidate {
                    bound: -(ob + sb),
                    exact: None,
                    own,
                    class: k,
                });
                return false;
            }
            let base = read + shift(k);
            let top = base.clone() + group.neurons[0].1.clone();
            let positive = top.is_positive();
            let m = -top;
            candidates[label].push(Candidate {
                bound: m
                    .enclosure()
                    .unwrap_or(Iv::new(f64::NEG_INFINITY, f64::INFINITY)),
                exact: Some(m),
                own,
                class: k,
            });
            let mut m = 0;
            for (n, bias) in &group.neurons {
                let pre = base.clone() + bias.clone();
                if !pre.is_positive() {
                    break;
                }
                firing.push((*n, pre));
                m += 1;
            }
            if m > 0 {
                runs.push((g, base, m));
            }
            positive
        };
        for &g in &list {
            let read = self.groups[g].read.dot(x);
            visit(g, read, &mut candidates);
        }
        for class in &self.classes {
            // Later groups have smaller biases: once one is silent, so are
            // they, and its margin is the smallest of them.
            for &g in class.groups.iter().filter(|&&g| !touched[g]) {
                if !visit(g, S::zero(), &mut candidates) {
                    break;
                }
            }
        }
        firing.sort_by_key(|(n, _)| *n);
        Ok(DensePass {
            attended,
            exact_x,
            firing,
            candidates,
            runs,
        })
    }

    /// −g·Γ(A') of class k, exactly.
    fn exact_shift(
        &self,
        k: usize,
        x: &SparseVec<S>,
        exact_x: Option<&SparseVec<Rat>>,
        gammas: &[OnceCell<S>],
    ) -> S {
        let class = &self.classes[k];
        let Some(c) = class.gate.filter(|_| !class.weight.is_zero()) else {
            return S::zero();
        };
        let gamma = gammas[c].get_or_init(|| match (&self.exact_gates, exact_x) {
            (Some(exact), Some(ex)) => S::from_rat(&exact[c].dot(ex)),
            _ => self.gates[c].dot(x),
        });
        -(class.weight.clone() * gamma.clone())
    }

    /// The smallest −(pre-activation) over the neurons of the labels
    /// `select` accepts, exactly (None: they have no neuron). Candidates
    /// whose enclosure lies above another's are not the minimum; the others
    /// are computed exactly.
    pub fn margin(&self, pass: &DensePass<S>, select: impl Fn(usize) -> bool) -> Option<S> {
        let all: Vec<&Candidate<S>> = pass
            .candidates
            .iter()
            .enumerate()
            .filter(|(l, _)| select(*l))
            .flat_map(|(_, c)| c)
            .collect();
        let ceiling = all
            .iter()
            .map(|c| c.bound.hi())
            .fold(f64::INFINITY, f64::min);
        let x = &pass.attended.hidden;
        let gammas: Vec<OnceCell<S>> = (0..self.gates.len()).map(|_| OnceCell::new()).collect();
        all.into_iter()
            .filter(|c| c.bound.lo() <= ceiling)
            .map(|c| match &c.exact {
                Some(m) => m.clone(),
                None => {
                    -(c.own.clone() + self.exact_shift(c.class, x, pass.exact_x.as_ref(), &gammas))
                }
            })
            .reduce(|a, b| if b < a { b } else { a })
    }

    /// The trace of the full model (every neuron) on a pass.
    pub fn trace(&self, pass: &DensePass<S>) -> Trace<S> {
        self.finish(pass, pass.firing.clone())
    }

    /// The trace of the masked model M_C(c) on the same prefix: every FFN
    /// neuron outside circuit c zeroed. Attention and the kept neurons'
    /// pre-activations do not depend on the other neurons, so they are the
    /// full pass's; only the FFN's output sums fewer neurons.
    pub fn masked_trace(&self, pass: &DensePass<S>, circuit: usize) -> Trace<S> {
        let keep = self.members.get(circuit).map_or(&[][..], |m| &m[..]);
        let firing = pass
            .firing
            .iter()
            .filter(|(n, _)| keep.binary_search(n).is_ok())
            .cloned()
            .collect();
        self.finish(pass, firing)
    }

    /// The trace with the FFN output of `firing` (sorted by neuron; a
    /// subset of the pass's).
    fn finish(&self, pass: &DensePass<S>, firing: Vec<(usize, S)>) -> Trace<S> {
        let model = self.base.model;
        let hidden = pass.attended.hidden.clone();
        let router_scores = self.base.router_scores(&hidden);
        let ffn = &model.experts[0];
        let term = |n: usize, act: &S| {
            ffn.neurons[n]
                .write
                .entries()
                .iter()
                .map(|(c, w)| (*c, act.clone() * w.clone()))
                .collect::<Vec<_>>()
        };
        let written: Vec<(usize, S)> = if self.exact_gates.is_none() {
            // f64 adds neuron by neuron, in neuron order, as the forward
            // pass does.
            firing.iter().flat_map(|(n, act)| term(*n, act)).collect()
        } else {
            // Exact sums are the same in any order: by run.
            let activation = |n: usize| {
                firing
                    .binary_search_by_key(&n, |(m, _)| *m)
                    .ok()
                    .map(|at| &firing[at].1)
            };
            let mut written = Vec::new();
            for (g, base, m) in &pass.runs {
                let fired = &self.groups[*g].neurons[..*m];
                let head = if fired.iter().all(|(n, _)| activation(*n).is_some()) {
                    (*m).min(self.sums[*g].len())
                } else {
                    0
                };
                if head > 0 {
                    let (w, b) = &self.sums[*g][head - 1];
                    written.extend(b.add_scaled(base, w).entries().iter().cloned());
                }
                for (n, _) in &fired[head..] {
                    if let Some(act) = activation(*n) {
                        written.extend(term(*n, act));
                    }
                }
            }
            written
        };
        let (output, logits) = self.base.readout(&hidden, &ffn.output_bias, written);
        Trace {
            heads: pass.attended.heads.clone(),
            attention: pass.attended.attention.clone(),
            hidden,
            router_scores,
            expert: 0,
            firing,
            preactivations: Vec::new(),
            output,
            logits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::{Options, build_dense};
    use crate::eval::forward;
    use crate::scalar::Rat;

    /// On every prefix of the constructions (and a model whose gates were
    /// altered, so the factorisation saves nothing but must stay exact),
    /// the dense evaluator's firing neurons, logits and per-neuron margins
    /// are exactly the generic forward pass's, and so are the masked
    /// model's.
    #[test]
    fn the_factored_pass_is_the_forward_pass() {
        let mut checked = 0;
        for file in [
            "running_example.toml",
            "shared_keys.toml",
            "random_seed1.toml",
            "xor_expected_failure.toml",
        ] {
            let ts = crate::fixtures::task_set(file);
            let mut model = build_dense(&ts, &Options::default());
            for altered in [false, true] {
                if altered {
                    // A wrong gate hint: the evaluator must not care.
                    for c in &mut model.circuits {
                        c.gate = c.gate.add_scaled(&Rat::from_integer(3.into()), &c.gate);
                    }
                }
                let n = model.experts[0].neurons.len();
                // Label by neuron parity: margins are per label.
                let label: Vec<usize> = (0..n).map(|i| i % 2).collect();
                let fast = DenseEvaluator::new(&model, &label, 2);
                for p in &ts.prefixes {
                    let pass = fast.run(&p.tokens).unwrap();
                    let slow = forward(&model, &p.tokens).unwrap();
                    let trace = fast.trace(&pass);
                    assert_eq!(trace.firing, slow.firing, "{file}");
                    assert_eq!(trace.logits.nonzero, slow.logits.nonzero);
                    assert_eq!(trace.hidden, slow.hidden);
                    for l in 0..2 {
                        let m = (0..n)
                            .filter(|i| i % 2 == l)
                            .map(|i| -slow.preactivations[i].clone())
                            .reduce(|a, b| if b < a { b } else { a });
                        assert_eq!(fast.margin(&pass, |x| x == l), m, "{file} label {l}");
                    }
                    for (c, circuit) in model.circuits.iter().enumerate() {
                        let masked = Evaluator::new(&model)
                            .run_masked(&p.tokens, &circuit.neurons)
                            .unwrap();
                        let fast_masked = fast.masked_trace(&pass, c);
                        assert_eq!(fast_masked.firing, masked.firing);
                        assert_eq!(fast_masked.logits.nonzero, masked.logits.nonzero);
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 100);
    }

    /// A 150-word template's interpolation ramps fire by the hundred on
    /// one prefix; their output from the running sums is the forward
    /// pass's, for the full and the masked model. So it is where the sums
    /// stop at the budget: every neuron rewritten to write its own logit.
    #[test]
    fn running_sums_write_what_the_forward_pass_writes() {
        fn check<'m>(
            ts: &crate::taskset::TaskSet,
            model: &'m Model<Rat>,
            every: usize,
        ) -> (DenseEvaluator<'m, Rat>, usize) {
            let n = model.experts[0].neurons.len();
            let fast = DenseEvaluator::new(model, &vec![0; n], 1);
            let mut longest = 0;
            for p in ts.prefixes.iter().rev().step_by(every) {
                let pass = fast.run(&p.tokens).unwrap();
                longest = pass.runs.iter().map(|r| r.2).fold(longest, usize::max);
                let slow = forward(model, &p.tokens).unwrap();
                assert_eq!(fast.trace(&pass).logits.nonzero, slow.logits.nonzero);
                let masked = Evaluator::new(model)
                    .run_masked(&p.tokens, &model.circuits[0].neurons)
                    .unwrap();
                assert_eq!(
                    fast.masked_trace(&pass, 0).logits.nonzero,
                    masked.logits.nonzero
                );
            }
            (fast, longest)
        }
        let ts = crate::fixtures::one_long_template(150, 20);
        let model = build_dense(&ts, &Options::default());
        let (fast, longest) = check(&ts, &model, 5);
        assert!(longest >= 100, "{longest}");
        assert!(fast.sums.iter().any(|s| s.len() >= 100));

        let ts = crate::fixtures::task_set("running_example.toml");
        let mut model = build_dense(&ts, &Options::default());
        let outs: Vec<usize> = (0..model.vocab.len())
            .map(|t| {
                model
                    .residual
                    .get(&format!("out:{}", model.vocab[t]))
                    .unwrap()
            })
            .collect();
        for (i, neuron) in model.experts[0].neurons.iter_mut().enumerate() {
            neuron.write = SparseVec::from_entries([(
                outs[i % outs.len()],
                crate::scalar::rat(i as i64 + 1, 3),
            )]);
        }
        let (fast, longest) = check(&ts, &model, 1);
        assert!(longest >= 3, "{longest}");
        let cut = fast
            .groups
            .iter()
            .zip(&fast.sums)
            .any(|(g, s)| s.len() < g.neurons.len());
        assert!(cut);
    }

    /// `one` is the only coordinate the same on every input.
    #[test]
    fn only_one_is_constant() {
        let ts = crate::fixtures::task_set("running_example.toml");
        let model = build_dense(&ts, &Options::default());
        let constants = constant_coordinates(&model);
        let one = model.residual.get("one").unwrap();
        assert_eq!(constants.len(), 1);
        assert_eq!(constants.get(&one), Some(&Rat::from_integer(1.into())));
    }
}
