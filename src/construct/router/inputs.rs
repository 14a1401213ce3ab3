//! Prefixes grouped by their exact router input: the one grouping that
//! router synthesis (its training data, [`super::training`]) and
//! routability (its LP system and certificates) share, with the C(w)
//! intersection over a group and the map from read directions to router
//! columns.

use crate::construct::attention::hidden_state_with;
use crate::construct::head1::Head1;
use crate::construct::residual::Residual;
use crate::scalar::{FastRat, Scalar};
use crate::taskset::{TaskId, TaskSet};
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};

/// The router's column of each direction it reads: `reads[c]` ↦ c.
pub fn columns(reads: &[usize]) -> HashMap<usize, usize> {
    reads.iter().enumerate().map(|(c, &d)| (d, c)).collect()
}

/// The distinct router inputs of a task set's prefixes.
pub struct Inputs {
    /// Each distinct input over the router's columns (the bias not
    /// included), exact, sorted by column, in order of first appearance.
    pub x: Vec<Vec<(usize, FastRat)>>,
    /// The prefixes (indices into `ts.prefixes`) with each input, in
    /// prefix order.
    pub members: Vec<Vec<usize>>,
}

impl Inputs {
    /// Group every prefix of `ts` by its router input over `reads` (the
    /// hidden state in closed form, which equals the forward pass: a unit
    /// test of `construct` checks it).
    pub fn group(ts: &TaskSet, r: &Residual, head1: &Head1, reads: &[usize]) -> Inputs {
        let column = columns(reads);
        // Hidden states are independent per prefix: compute them in
        // parallel, then group in prefix order.
        let mut inputs: Vec<Vec<(usize, FastRat)>> = ts
            .prefixes
            .par_iter()
            .map(|p| {
                let h = hidden_state_with(r, head1, &p.tokens);
                // Sized exactly: at paper scale these vectors are most of
                // synthesis's memory.
                let mut x = Vec::with_capacity(h.nnz());
                x.extend(
                    h.entries()
                        .iter()
                        .filter_map(|(d, v)| column.get(d).map(|&c| (c, FastRat::from_rat(v)))),
                );
                x.sort_unstable_by_key(|(c, _)| *c);
                x.shrink_to_fit();
                x
            })
            .collect();
        // Group ids in order of first appearance; each group's input is
        // then moved (not copied) out of `inputs`.
        let mut id: HashMap<&[(usize, FastRat)], usize> = HashMap::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut first = Vec::new();
        for (i, x) in inputs.iter().enumerate() {
            let g = *id.entry(x.as_slice()).or_insert_with(|| {
                members.push(Vec::new());
                first.push(i);
                members.len() - 1
            });
            members[g].push(i);
        }
        drop(id);
        let x = first
            .iter()
            .map(|&i| std::mem::take(&mut inputs[i]))
            .collect();
        Inputs { x, members }
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

/// C(w) ∩ … over some prefixes (`members`, at least one).
pub fn common(ts: &TaskSet, members: &[usize]) -> BTreeSet<TaskId> {
    members
        .iter()
        .skip(1)
        .fold(ts.prefixes[members[0]].tasks.clone(), |acc, &m| {
            acc.intersection(&ts.prefixes[m].tasks).copied().collect()
        })
}
