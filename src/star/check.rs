//! An exact check of a refutation of a routing system, sharing nothing with
//! the solver but the system itself: every term's multiplier is positive,
//! every term is a constraint the system asks (or the case assumed), and the
//! weighted constraints cancel on every expert and feature. Such a sum says
//! 0 ≥ Σλ > 0, so no weights serve the system.

use crate::routability::system::{Refutation, System, Term};
use crate::scalar::Rat;
use num_traits::{Signed, Zero};
use std::collections::BTreeMap;

/// Does `refutation` prove that no router serves `system`?
pub fn refutes(system: &System, refutation: &Refutation) -> bool {
    holds(system, refutation, &[])
}

fn holds(system: &System, r: &Refutation, assumed: &[(usize, usize)]) -> bool {
    match r {
        Refutation::Farkas(terms) => farkas(system, terms, assumed),
        Refutation::Cases { group, cases } => {
            let Some(g) = system.groups.get(*group) else {
                return false;
            };
            // Every expert the group may go to must be refuted.
            g.tasks.iter().all(|k| {
                cases.iter().any(|(c, proof)| {
                    let mut more = assumed.to_vec();
                    more.push((*group, *k));
                    c == k && holds(system, proof, &more)
                })
            })
        }
    }
}

fn farkas(system: &System, terms: &[Term], assumed: &[(usize, usize)]) -> bool {
    if terms.is_empty() {
        return false;
    }
    let mut sum: BTreeMap<(usize, usize), Rat> = BTreeMap::new();
    for t in terms {
        let c = t.constraint;
        let Some(g) = system.groups.get(c.group) else {
            return false;
        };
        let asked = g.tasks.len() == 1 && g.tasks.contains(&c.task);
        let by_case = assumed.contains(&(c.group, c.task));
        if !t.multiplier.is_positive()
            || !(asked || by_case)
            || g.tasks.contains(&c.against)
            || c.against >= system.experts
        {
            return false;
        }
        for (f, v) in &g.x {
            *sum.entry((c.task, *f)).or_insert_with(Rat::zero) += &t.multiplier * v;
            *sum.entry((c.against, *f)).or_insert_with(Rat::zero) -= &t.multiplier * v;
        }
    }
    sum.values().all(Zero::is_zero)
}
