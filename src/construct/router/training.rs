//! The router's training data: prefixes grouped by their exact router
//! input ([`super::inputs`]), each group with the tasks it must go to and
//! its weight, as integer samples for the perceptron (one common scale)
//! and as exact rational rows for the LP.

use super::inputs::{Inputs, common};
use super::perceptron::{Int, Sample};
use crate::construct::head1::Head1;
use crate::construct::residual::Residual;
use crate::scalar::{FastRat, Rat};
use crate::taskset::TaskSet;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::One;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The training data: prefixes grouped by their exact router input. Prefixes
/// with identical input get identical scores, so a group must go to one
/// task: the intersection of their C(w) if it is nonempty; otherwise no
/// router can serve the whole group, and it trains on its most common task
/// (the other prefixes are forced misroutes, counted here).
pub(super) struct Groups {
    /// Each group's input over the router's columns (bias excluded), exact.
    pub(super) x: Vec<Vec<(usize, FastRat)>>,
    pub(super) tasks: Vec<BTreeSet<usize>>,
    /// Prefixes in each group.
    pub(super) weight: Vec<usize>,
    pub(super) forced: usize,
    /// The bias column (= the number of read directions).
    pub(super) bias: usize,
}

impl Groups {
    pub(super) fn new(ts: &TaskSet, r: &Residual, head1: &Head1, reads: &[usize]) -> Groups {
        let inputs = Inputs::group(ts, r, head1, reads);
        let mut forced = 0;
        let mut tasks = Vec::with_capacity(inputs.len());
        let mut weight = Vec::with_capacity(inputs.len());
        for members in &inputs.members {
            let common = common(ts, members);
            let target = if common.is_empty() {
                let mut count: HashMap<usize, usize> = HashMap::new();
                members
                    .iter()
                    .flat_map(|&m| ts.prefixes[m].tasks.iter())
                    .for_each(|&k| *count.entry(k).or_default() += 1);
                let top = count
                    .iter()
                    .map(|(&k, &c)| (c, std::cmp::Reverse(k)))
                    .max()
                    .map_or(0, |(_, k)| k.0);
                forced += members
                    .iter()
                    .filter(|&&m| !ts.prefixes[m].tasks.contains(&top))
                    .count();
                BTreeSet::from([top])
            } else {
                common
            };
            tasks.push(target);
            weight.push(members.len());
        }
        Groups {
            x: inputs.x,
            tasks,
            weight,
            forced,
            bias: reads.len(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.x.len()
    }

    /// One scale for all samples, the lcm of every denominator (taken over
    /// the distinct ones): scaling each sample by its own lcm would weight
    /// long prefixes up to 2^L times more and slow the perceptron down by as
    /// much.
    ///
    /// Head 1's denominators divide 2^i − 1 for every prefix length i, so
    /// the lcm grows to about 0.3·L² bits while each denominator has at
    /// most L + 1. `Integer::lcm` takes gcd(lcm, d) by the binary algorithm
    /// on the full lcm (O(L²) steps of O(L²) bits, per denominator: 95% of
    /// a 1,000-word template's time); reducing the lcm modulo d first
    /// leaves a gcd of two numbers of at most L + 1 bits. The same lcm.
    pub(super) fn scale(&self) -> BigInt {
        let denominators: HashSet<BigInt> = self
            .x
            .iter()
            .flatten()
            .map(|(_, v)| v.to_rat().denom().clone())
            .collect();
        denominators.into_iter().fold(BigInt::one(), |l, d| {
            let g = (&l % &d).gcd(&d);
            l * (d / g)
        })
    }

    /// The samples as integers in T (each feature times `scale`, the bias
    /// feature equal to `scale`); None if some feature does not fit in T.
    pub(super) fn integer<T: Int + TryFrom<BigInt>>(
        &self,
        scale: &BigInt,
    ) -> Option<Vec<Sample<T>>> {
        let convert = |b: BigInt| T::try_from(b).ok();
        // scale/d for each distinct denominator d, so a feature n/d is n·(scale/d).
        let mut factor: HashMap<BigInt, T> = HashMap::new();
        let bias = convert(scale.clone())?;
        (0..self.len())
            .map(|g| {
                let mut x = Vec::with_capacity(self.x[g].len() + 1);
                for item in self.x[g]
                    .iter()
                    .map(|(c, v)| {
                        let v = v.to_rat();
                        let f = match factor.get(v.denom()) {
                            Some(f) => f.clone(),
                            None => {
                                let f = convert(scale / v.denom())?;
                                factor.insert(v.denom().clone(), f.clone());
                                f
                            }
                        };
                        Some((*c, convert(v.numer().clone())?.checked_mul(&f)?))
                    })
                    .chain([Some((self.bias, bias.clone()))])
                {
                    x.push(item?);
                }
                Some(Sample {
                    x,
                    tasks: self.tasks[g].clone(),
                    weight: self.weight[g],
                })
            })
            .collect()
    }

    /// Each sample's exact rational features, bias included, for the LP.
    pub(super) fn exact(&self) -> Vec<Vec<(usize, Rat)>> {
        self.x
            .iter()
            .map(|x| {
                x.iter()
                    .map(|(c, v)| (*c, v.to_rat()))
                    .chain([(self.bias, Rat::one())])
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::Scalar;

    /// Head 1's denominators at 90 positions (divisors of 2^i − 1 and
    /// 2^{i+1} − 2): the scale is exactly the lcm `Integer::lcm` folds to,
    /// a number of thousands of bits.
    #[test]
    fn the_scale_is_the_lcm_of_head_one_denominators() {
        let one = BigInt::one();
        let mut x = Vec::new();
        let mut expected = BigInt::one();
        for i in 2..=90u32 {
            let d = (&one << i) - 1u32;
            let q = |n: BigInt, d: BigInt| FastRat::from_big(Rat::new(n, d));
            x.push(vec![
                (0, q(BigInt::from(3), d.clone())),
                (1, q(one.clone(), &d * 2u32)),
            ]);
            expected = expected.lcm(&d).lcm(&(&d * 2u32));
        }
        let groups = Groups {
            tasks: vec![BTreeSet::from([0]); x.len()],
            weight: vec![1; x.len()],
            x,
            forced: 0,
            bias: 2,
        };
        assert!(expected.bits() > 2000);
        assert_eq!(groups.scale(), expected);
    }

    #[test]
    fn integer_samples_scale_by_a_common_factor() {
        let f = |n: i64, d: i64| FastRat::from_rat(&crate::scalar::rat(n, d));
        let groups = Groups {
            x: vec![vec![(0, f(1, 6)), (1, f(1, 4))], vec![(1, f(50, 3))]],
            tasks: vec![BTreeSet::from([0]), BTreeSet::from([1])],
            weight: vec![1, 2],
            forced: 0,
            bias: 2,
        };
        let scale = groups.scale();
        assert_eq!(scale, BigInt::from(12));
        let samples = groups.integer::<i128>(&scale).unwrap();
        assert_eq!(samples[0].x, vec![(0, 2), (1, 3), (2, 12)]);
        assert_eq!(samples[1].x, vec![(1, 200), (2, 12)]);
        assert_eq!(samples[1].weight, 2);
        // The same in big integers; and i8 cannot hold 50/3 · 12 = 200.
        let big = groups.integer::<BigInt>(&scale).unwrap();
        assert_eq!(big[1].x[0].1, BigInt::from(200));
        assert!(groups.integer::<i8>(&scale).is_none());
    }
}
