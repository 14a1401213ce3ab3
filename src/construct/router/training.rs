//! The router's training data: prefixes grouped by their exact router
//! input ([`super::inputs`]), each group with the tasks it must go to and
//! its weight, as integer samples for the perceptron (one common scale)
//! and as exact rational rows for the LP.

use super::inputs::{Inputs, common};
use super::perceptron::{Int, Sample};
use crate::construct::attention::hidden_state_with;
use crate::construct::head1::Head1;
use crate::construct::residual::Residual;
use crate::scalar::{FastRat, Rat};
use crate::taskset::TaskSet;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::One;
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The largest common scale, in bits, before samples are scaled one by one
/// instead: 4,096 bits (64 words a feature) is the lcm of head 1's
/// denominators at about 115 positions; every set of constructions/, the
/// sweeps and the generators' defaults stays far below it, so their routers
/// are the common-scale ones.
pub(super) const COMMON_SCALE_MAX_BITS: u64 = 4096;

/// How samples become integers: each is multiplied by a positive integer,
/// which changes no comparison between experts on it.
pub(super) enum Scale {
    /// One multiplier for all, the lcm of every denominator.
    Common(BigInt),
    /// One multiplier per sample ([`Groups::normalised`]).
    PerSample(Vec<BigInt>),
}

/// Prefixes whose router input the memory estimate computes.
pub(super) const MEMORY_SAMPLE: usize = 256;

/// About how many bytes the training data of `ts` holds at its peak, and
/// per prefix: every prefix's exact router input over `reads` and, beside
/// it, its big-integer sample (one integer per nonzero input, of about the
/// scale's bits plus its numerator's less its denominator's). Measured on up
/// to [`MEMORY_SAMPLE`] evenly spaced prefixes and scaled to all; grouping
/// identical inputs only lowers it. The scale's bits are the sampled
/// denominators' lcm while it stays a common scale, else the largest
/// sampled prefix's own lcm (the per-sample multiplier's size).
pub(super) fn estimate_bytes(
    ts: &TaskSet,
    r: &Residual,
    head1: &Head1,
    reads: &[usize],
) -> (u128, u128) {
    use std::mem::size_of;
    let n = ts.prefixes.len();
    let sample = n.min(MEMORY_SAMPLE);
    if sample == 0 {
        return (0, 0);
    }
    let step = n / sample;
    let column = super::inputs::columns(reads);
    let lcm = |l: BigInt, d: &BigInt| {
        let g = (&l % d).gcd(d);
        l * (d / g)
    };
    // Per sampled prefix (each hidden state dropped once summarised): the
    // bytes that do not depend on the scale, each integer's bits less the
    // scale's, its distinct denominators and its own lcm's bits.
    let entry = (size_of::<(usize, FastRat)>() + size_of::<(usize, BigInt)>()) as u128;
    let summaries: Vec<(u128, Vec<i64>, HashSet<BigInt>, u64)> = (0..sample)
        .into_par_iter()
        .map(|k| {
            let h = hidden_state_with(r, head1, &ts.prefixes[k * step].tokens);
            let mut fixed = 0;
            let mut spans = Vec::new();
            let mut denominators = HashSet::new();
            for (_, v) in h.entries().iter().filter(|(d, _)| column.contains_key(d)) {
                fixed +=
                    entry + <FastRat as crate::scalar::Scalar>::from_rat(v).heap_bytes() as u128;
                spans.push(v.numer().bits() as i64 + 1 - v.denom().bits() as i64);
                denominators.insert(v.denom().clone());
            }
            let own = denominators.iter().fold(BigInt::one(), lcm).bits();
            (fixed, spans, denominators, own)
        })
        .collect();
    let mut common = Some(BigInt::one());
    for d in summaries.iter().flat_map(|s| &s.2) {
        common = common
            .map(|l| lcm(l, d))
            .filter(|l| l.bits() <= COMMON_SCALE_MAX_BITS);
    }
    let scale_bits = common.map_or_else(
        || summaries.iter().map(|s| s.3).max().unwrap_or(0),
        |l| l.bits(),
    );
    let held: u128 = summaries
        .iter()
        .map(|(fixed, spans, _, _)| {
            fixed
                + spans
                    .iter()
                    .map(|&b| ((b + scale_bits as i64).max(1) as u128).div_ceil(64) * 8)
                    .sum::<u128>()
        })
        .sum();
    (held * n as u128 / sample as u128, held / sample as u128)
}

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

    /// The integer multiplier of each sample: one common scale while the
    /// lcm of every denominator stays within [`COMMON_SCALE_MAX_BITS`],
    /// else one normalised multiplier per sample (see [`Scale`]).
    pub(super) fn scale(&self) -> Scale {
        match self.common_scale(COMMON_SCALE_MAX_BITS) {
            Some(l) => Scale::Common(l),
            None => Scale::PerSample(self.normalised()),
        }
    }

    /// One scale for all samples, the lcm of every denominator (taken over
    /// the distinct ones), or None once it passes `max_bits`: scaling each
    /// sample by its own lcm would weight long prefixes up to 2^L times
    /// more and slow the perceptron down by as much.
    ///
    /// Head 1's denominators divide 2^i − 1 for every prefix length i, so
    /// the lcm grows to about 0.3·L² bits while each denominator has at
    /// most L + 1. `Integer::lcm` takes gcd(lcm, d) by the binary algorithm
    /// on the full lcm (O(L²) steps of O(L²) bits, per denominator: 95% of
    /// a 1,000-word template's time); reducing the lcm modulo d first
    /// leaves a gcd of two numbers of at most L + 1 bits. The same lcm.
    pub(super) fn common_scale(&self, max_bits: u64) -> Option<BigInt> {
        let denominators: HashSet<BigInt> = self
            .x
            .iter()
            .flatten()
            .map(|(_, v)| v.to_rat().denom().clone())
            .collect();
        let mut l = BigInt::one();
        for d in denominators {
            let g = (&l % &d).gcd(&d);
            l *= d / g;
            if l.bits() > max_bits {
                return None;
            }
        }
        Some(l)
    }

    /// Each sample's own lcm D_g times 2^{K − e_g}, where 2^{e_g} ≤ D_g <
    /// 2^{e_g + 1} and K is the largest e_g: sample g is scaled by
    /// 2^K · (D_g / 2^{e_g}), and D_g / 2^{e_g} lies in [1, 2), so no
    /// sample weighs more than twice another's (as under a common scale)
    /// while every feature keeps about K + (its numerator's) bits, not the
    /// common lcm's 0.3·L².
    fn normalised(&self) -> Vec<BigInt> {
        let lcms: Vec<BigInt> = self
            .x
            .iter()
            .map(|x| {
                x.iter().fold(BigInt::one(), |l, (_, v)| {
                    let d = v.to_rat().denom().clone();
                    let g = (&l % &d).gcd(&d);
                    l * (d / g)
                })
            })
            .collect();
        let k = lcms.iter().map(|d| d.bits() - 1).max().unwrap_or(0);
        lcms.into_iter()
            .map(|d| {
                let e = d.bits() - 1;
                d << (k - e)
            })
            .collect()
    }

    /// The samples as integers in T (each feature of sample g times its
    /// multiplier `scale.of(g)`, the bias feature equal to it); None if some
    /// feature does not fit in T.
    pub(super) fn integer<T: Int + TryFrom<BigInt>>(
        &self,
        scale: &Scale,
    ) -> Option<Vec<Sample<T>>> {
        let convert = |b: BigInt| T::try_from(b).ok();
        // multiplier/d for each distinct (multiplier, denominator d), so a
        // feature n/d is n·(multiplier/d); under a common scale one entry
        // per denominator.
        let mut factor: HashMap<(usize, BigInt), T> = HashMap::new();
        let common_bias = match scale {
            Scale::Common(l) => Some(convert(l.clone())?),
            Scale::PerSample(_) => None,
        };
        (0..self.len())
            .map(|g| {
                let (key, m) = match scale {
                    Scale::Common(l) => (0, l),
                    Scale::PerSample(m) => {
                        factor.clear();
                        (g, &m[g])
                    }
                };
                let bias = match &common_bias {
                    Some(b) => b.clone(),
                    None => convert(m.clone())?,
                };
                let mut x = Vec::with_capacity(self.x[g].len() + 1);
                for item in self.x[g]
                    .iter()
                    .map(|(c, v)| {
                        let v = v.to_rat();
                        let id = (key, v.denom().clone());
                        let f = match factor.get(&id) {
                            Some(f) => f.clone(),
                            None => {
                                let f = convert(m / v.denom())?;
                                factor.insert(id, f.clone());
                                f
                            }
                        };
                        Some((*c, convert(v.numer().clone())?.checked_mul(&f)?))
                    })
                    .chain([Some((self.bias, bias))])
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
        assert_eq!(groups.common_scale(u64::MAX), Some(expected.clone()));
        // Past the common scale's limit each sample gets its own.
        assert_eq!(groups.common_scale(expected.bits() - 1), None);
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
        assert!(matches!(&scale, Scale::Common(l) if *l == BigInt::from(12)));
        let samples = groups.integer::<i128>(&scale).unwrap();
        assert_eq!(samples[0].x, vec![(0, 2), (1, 3), (2, 12)]);
        assert_eq!(samples[1].x, vec![(1, 200), (2, 12)]);
        assert_eq!(samples[1].weight, 2);
        // The same in big integers; and i8 cannot hold 50/3 · 12 = 200.
        let big = groups.integer::<BigInt>(&scale).unwrap();
        assert_eq!(big[1].x[0].1, BigInt::from(200));
        assert!(groups.integer::<i8>(&scale).is_none());
    }

    /// Past the common scale's limit: sample g is multiplied by its own lcm
    /// D_g times 2^{K − e_g}. Here D = 3 (e = 1) and D = 10 (e = 3), K = 3,
    /// so the multipliers are 12 and 10, within a factor 2 of each other.
    #[test]
    fn per_sample_multipliers_normalise_each_lcm() {
        let f = |n: i64, d: i64| FastRat::from_rat(&crate::scalar::rat(n, d));
        let groups = Groups {
            x: vec![vec![(0, f(1, 3))], vec![(0, f(1, 5)), (1, f(-1, 2))]],
            tasks: vec![BTreeSet::from([0]), BTreeSet::from([1])],
            weight: vec![1, 1],
            forced: 0,
            bias: 2,
        };
        let m = groups.normalised();
        assert_eq!(m, vec![BigInt::from(12), BigInt::from(10)]);
        let samples = groups.integer::<i64>(&Scale::PerSample(m)).unwrap();
        assert_eq!(samples[0].x, vec![(0, 4), (2, 12)]);
        assert_eq!(samples[1].x, vec![(0, 2), (1, -5), (2, 10)]);
    }

    /// At 130 positions the common lcm passes 4,096 bits, so each sample
    /// gets its own multiplier; the estimate of what synthesis holds is
    /// within a factor 2 of the bytes its exact inputs and big-integer
    /// samples really hold.
    #[test]
    fn the_training_memory_estimate_matches_what_synthesis_holds() {
        use std::mem::size_of;
        let ts = crate::fixtures::two_long_tasks(130);
        let options = crate::construct::Options::default();
        let (r, head1) = crate::construct::residual_and_head1(&ts, &options);
        let reads = options.router.reads(&r);
        let groups = Groups::new(&ts, &r, &head1, &reads);
        let scale = groups.scale();
        assert!(matches!(scale, Scale::PerSample(_)));
        let samples = groups.integer::<BigInt>(&scale).unwrap();
        let inputs: usize = groups
            .x
            .iter()
            .flatten()
            .map(|(_, v)| size_of::<(usize, FastRat)>() + v.heap_bytes())
            .sum();
        let integers: usize = samples
            .iter()
            .flat_map(|s| &s.x)
            .map(|(_, v)| size_of::<(usize, BigInt)>() + v.bits().div_ceil(64) as usize * 8)
            .sum();
        let held = (inputs + integers) as u128;
        let (estimate, per_prefix) = estimate_bytes(&ts, &r, &head1, &reads);
        assert!(
            held / 2 <= estimate && estimate <= 2 * held,
            "estimate {estimate} against {held} held"
        );
        assert_eq!(per_prefix, estimate / ts.prefixes.len() as u128);
        // Under the common scale the same samples would hold far more.
        let common = groups.common_scale(u64::MAX).unwrap();
        assert!(common.bits() > 4096, "{} bits", common.bits());
    }
}
