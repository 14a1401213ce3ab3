//! STAR's structural basis V: the generalised Hebbian algorithm (Sanger's
//! rule) in f64 over the router inputs, then rounded to rationals with a
//! small denominator so that the gate built on it is an exact object.
//!
//! The f64 run only proposes V; every claim made about span(V) afterwards
//! (its rank, what a gate in it routes) is decided on the rounded, exact V.

use crate::scalar::Rat;
use nalgebra::{DMatrix, SymmetricEigen};
use num_bigint::BigInt;
use num_traits::{Signed, Zero};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The fixed parameters of one GHA run (stated in docs/routing.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub seed: u64,
    /// Updates, each on one router input drawn uniformly at random.
    pub steps: usize,
    /// η·max‖x‖²: the initial learning rate relative to the inputs' scale.
    pub rate: f64,
    /// The rate decays as 1/(1 + (decay − 1)·t/steps), to rate/decay at the end.
    pub decay: f64,
    /// V's entries are rounded to multiples of 1/denominator.
    pub denominator: i64,
    /// Normalise every row after every update (otherwise only at the end).
    pub normalise: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            seed: 17,
            steps: 300_000,
            rate: 0.1,
            decay: 100.0,
            denominator: 64,
            normalise: false,
        }
    }
}

/// GHA over `inputs` (dense f64 rows): K rows tracking the top-K principal
/// subspace of the (uncentred) inputs. v_k ← v_k + η·y_k·(x − Σ_{i≤k} y_i·v_i),
/// y_k = v_k·x. The rate decays as 1/(1 + (decay − 1)·t/steps), to
/// rate/decay at the end, so the run settles; rows start random (seeded)
/// and normalised.
pub fn gha(inputs: &[Vec<f64>], k: usize, params: &Params) -> Vec<Vec<f64>> {
    let d = inputs.first().map_or(0, Vec::len);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut v: Vec<Vec<f64>> = (0..k)
        .map(|_| {
            let row: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            normalised(row)
        })
        .collect();
    if inputs.is_empty() || d == 0 {
        return v;
    }
    let scale = inputs
        .iter()
        .map(|x| dot(x, x))
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let eta0 = params.rate / scale;
    for t in 0..params.steps {
        let x = &inputs[rng.random_range(0..inputs.len())];
        let eta = eta0 / (1.0 + (params.decay - 1.0) * t as f64 / params.steps as f64);
        let y: Vec<f64> = v.iter().map(|vk| dot(vk, x)).collect();
        // Sanger's rule: the residual seen by row k removes rows 0..=k.
        let mut residual = x.clone();
        for kk in 0..k {
            for (r, vi) in residual.iter_mut().zip(&v[kk]) {
                *r -= y[kk] * vi;
            }
            for (vk, r) in v[kk].iter_mut().zip(&residual) {
                *vk += eta * y[kk] * r;
            }
            if params.normalise {
                let n = dot(&v[kk], &v[kk]).sqrt();
                if n > 0.0 {
                    v[kk].iter_mut().for_each(|a| *a /= n);
                }
            }
        }
    }
    v.into_iter().map(normalised).collect()
}

/// max |V·Vᵀ − I|: how far the f64 rows are from orthonormal.
pub fn orthonormality_error(v: &[Vec<f64>]) -> f64 {
    let mut worst = 0.0_f64;
    for (i, a) in v.iter().enumerate() {
        for (j, b) in v.iter().enumerate() {
            let target = if i == j { 1.0 } else { 0.0 };
            worst = worst.max((dot(a, b) - target).abs());
        }
    }
    worst
}

/// Each entry to the nearest multiple of 1/denominator.
pub fn round(v: &[Vec<f64>], denominator: i64) -> Vec<Vec<Rat>> {
    v.iter()
        .map(|row| {
            row.iter()
                .map(|&x| {
                    let n = (x * denominator as f64).round() as i64;
                    Rat::new(BigInt::from(n), BigInt::from(denominator))
                })
                .collect()
        })
        .collect()
}

/// The exact rank of rational rows (Gaussian elimination over Q).
pub fn rank(rows: &[Vec<Rat>]) -> usize {
    let mut m: Vec<Vec<Rat>> = rows.to_vec();
    let cols = m.first().map_or(0, Vec::len);
    let mut r = 0;
    for c in 0..cols {
        let Some(p) = (r..m.len()).find(|&i| !m[i][c].is_zero()) else {
            continue;
        };
        m.swap(r, p);
        let pivot_row = m[r].clone();
        for (i, row) in m.iter_mut().enumerate() {
            if i != r && !row[c].is_zero() {
                let f = &row[c] / &pivot_row[c];
                for (a, b) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                    *a -= &f * b;
                }
            }
        }
        r += 1;
        if r == m.len() {
            break;
        }
    }
    r
}

/// The largest |numerator| and denominator among V's entries, for reports.
pub fn size(v: &[Vec<Rat>]) -> (BigInt, BigInt) {
    let mut num = BigInt::zero();
    let mut den = BigInt::from(1);
    for x in v.iter().flatten() {
        num = num.max(x.numer().abs());
        den = den.max(x.denom().clone());
    }
    (num, den)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalised(row: Vec<f64>) -> Vec<f64> {
    let n = dot(&row, &row).sqrt();
    if n > 0.0 {
        row.into_iter().map(|x| x / n).collect()
    } else {
        row
    }
}

/// How close the f64 rows are to the inputs' top-K principal subspace,
/// measured against the exact eigendecomposition (nalgebra's
/// `SymmetricEigen`, f64) of the uncentred second-moment matrix
/// M = (1/n)·Σ x·xᵀ that GHA tracks. Reported only: no decision reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Convergence {
    /// sin θ_max, θ_max the largest principal angle between span(V) (rows
    /// orthonormalised) and the span of M's top-K eigenvectors: 0 when they
    /// coincide, 1 when some direction of one is orthogonal to the other.
    /// Meaningful only when `gap` is not ~0.
    pub distance: f64,
    /// (λ_K − λ_{K+1}) / λ_1: when ~0 the top-K subspace is not unique (any
    /// K-subspace of the eigenvalue cluster is one) and `distance` can be
    /// large for a perfect answer.
    pub gap: f64,
    /// tr(Qᵀ·M·Q) / (λ_1 + … + λ_K), Q an orthonormal basis of span(V): the
    /// share of the top-K second moment that span(V) captures. 1 exactly
    /// when span(V) is a top-K invariant subspace, whichever one: the
    /// criterion that still means something on a degenerate spectrum.
    pub captured: f64,
    /// λ_1 ≥ … ≥ λ_{K+1} (fewer when d ≤ K).
    pub eigenvalues: Vec<f64>,
}

/// Compare `v` with the exact top-K eigenspace of the inputs' second moment.
/// `None` when there is nothing to compare (no inputs, no rows) or the
/// eigensolver does not converge.
pub fn convergence(inputs: &[Vec<f64>], v: &[Vec<f64>]) -> Option<Convergence> {
    let d = inputs.first()?.len();
    let k = v.len();
    if d == 0 || k == 0 || k > d {
        return None;
    }
    let n = inputs.len() as f64;
    let mut m = DMatrix::<f64>::zeros(d, d);
    for x in inputs {
        let xv = nalgebra::DVector::from_column_slice(x);
        m.ger(1.0 / n, &xv, &xv, 1.0);
    }
    let eig = SymmetricEigen::try_new(m.clone(), 1e-13, 1_000_000)?;
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let lambda: Vec<f64> = order.iter().map(|&i| eig.eigenvalues[i]).collect();
    let u = DMatrix::from_fn(d, k, |r, c| eig.eigenvectors[(r, order[c])]);
    let vt = DMatrix::from_fn(d, k, |r, c| v[c][r]);
    let q = vt.qr().q();
    let cosines = (u.transpose() * &q).svd(false, false).singular_values;
    let smallest = cosines
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(1.0);
    let top: f64 = lambda[..k].iter().sum();
    let captured = (q.transpose() * &m * &q).trace();
    let next = lambda.get(k).copied().unwrap_or(0.0);
    Some(Convergence {
        distance: (1.0 - smallest * smallest).max(0.0).sqrt(),
        gap: if lambda[0] > 0.0 {
            (lambda[k - 1] - next) / lambda[0]
        } else {
            0.0
        },
        captured: if top > 0.0 { captured / top } else { 1.0 },
        eigenvalues: lambda.into_iter().take(k + 1).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::rat;

    #[test]
    fn gha_finds_the_top_principal_subspace_orthonormally() {
        // Inputs spread along e0 (variance 9) and e1 (variance 4), little
        // along e2 (0.01): the top-2 subspace is span(e0, e1).
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let inputs: Vec<Vec<f64>> = (0..400)
            .map(|_| {
                vec![
                    3.0 * rng.random_range(-1.0..1.0_f64),
                    2.0 * rng.random_range(-1.0..1.0_f64),
                    0.1 * rng.random_range(-1.0..1.0_f64),
                ]
            })
            .collect();
        let v = gha(&inputs, 2, &Params::default());
        assert!(orthonormality_error(&v) < 1e-2, "{v:?}");
        // Both rows nearly orthogonal to e2.
        assert!(v.iter().all(|row| row[2].abs() < 0.05), "{v:?}");
        let exact = round(&v, 64);
        assert_eq!(rank(&exact), 2);
        // Against the exact eigenspace span(e0, e1): close, with a clear gap.
        let c = convergence(&inputs, &v).unwrap();
        assert!(c.distance < 0.05, "{c:?}");
        assert!(c.captured > 0.999, "{c:?}");
        assert!(c.gap > 0.3, "{c:?}");
    }

    #[test]
    fn convergence_is_zero_on_the_exact_eigenvectors_and_one_off_them() {
        // Second moment diag(4/3, 1/3, 1/12): inputs ±2e0, ±e1, ±0.5e2; the
        // gap (1/3 − 1/12)/(4/3) = 3/16.
        let inputs = vec![
            vec![2.0, 0.0, 0.0],
            vec![-2.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, -1.0, 0.0],
            vec![0.0, 0.0, 0.5],
            vec![0.0, 0.0, -0.5],
        ];
        let on = convergence(&inputs, &[vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]]).unwrap();
        assert!(
            on.distance < 1e-9 && (on.captured - 1.0).abs() < 1e-9,
            "{on:?}"
        );
        assert!((on.gap - 3.0 / 16.0).abs() < 1e-9, "{on:?}");
        let off = convergence(&inputs, &[vec![1.0, 0.0, 0.0], vec![0.0, 0.0, 1.0]]).unwrap();
        assert!((off.distance - 1.0).abs() < 1e-9, "{off:?}");
        // (4/3 + 1/12) / (4/3 + 1/3) of the top-2 second moment.
        assert!((off.captured - 4.25 / 5.0).abs() < 1e-9, "{off:?}");
    }

    #[test]
    fn rank_is_exact() {
        let rows = vec![
            vec![rat(1, 3), rat(2, 3), rat(0, 1)],
            vec![rat(2, 3), rat(4, 3), rat(0, 1)],
            vec![rat(0, 1), rat(0, 1), rat(1, 7)],
        ];
        assert_eq!(rank(&rows), 2);
        assert_eq!(rank(&rows[..1]), 1);
        let mut full = rows.clone();
        full[1][0] = rat(2, 3) + rat(1, 1_000_000);
        assert_eq!(rank(&full), 3);
    }
}
