//! Exact nullspaces: the functionals over some coordinates that vanish on
//! a set of rows, in reduced (Gauss–Jordan) form, and the combination of
//! rows behind each pivot (so a vector in the rows' span can be written
//! through them). The dense gates write their functionals through it, and
//! the LP service solves a basis with it.

use crate::scalar::Rat;
use num_traits::{One, Zero};
use std::collections::HashSet;

/// The functionals over `dims` coordinates that vanish on every zero row,
/// in reduced form: each pivot row has a 1 at its pivot column and 0 at
/// every other pivot column, and remembers which input rows it combines. A
/// functional vanishing on every row is then fixed by its free (non-pivot)
/// coordinates z_f: its pivot coordinate p is −Σ_f z_f·row_p[f].
pub struct Nullspace {
    /// (pivot column, reduced row, the reduced row as a combination of the
    /// input rows: (input row, coefficient)).
    pivots: Vec<Pivot>,
    pub free: Vec<usize>,
    pub dims: usize,
}

/// A sparse combination of input rows: (row, coefficient).
type Combination = Vec<(usize, Rat)>;

/// (pivot column, reduced row, the reduced row as a combination of the
/// input rows).
type Pivot = (usize, Vec<Rat>, Combination);

/// a − f·b on sparse combinations of input rows.
fn combine(a: &mut Vec<(usize, Rat)>, f: &Rat, b: &[(usize, Rat)]) {
    for (i, v) in b {
        match a.iter_mut().find(|(j, _)| j == i) {
            Some((_, w)) => *w -= f * v,
            None => a.push((*i, -(f * v))),
        }
    }
    a.retain(|(_, v)| !v.is_zero());
}

impl Nullspace {
    pub fn new(rows: &[Vec<Rat>], dims: usize) -> Nullspace {
        let mut pivots: Vec<Pivot> = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            if pivots.len() == dims {
                break;
            }
            let mut x = row.clone();
            let mut origin = vec![(r, Rat::one())];
            for (col, p, o) in &pivots {
                if !x[*col].is_zero() {
                    let f = x[*col].clone();
                    for (xi, pi) in x.iter_mut().zip(p) {
                        if !pi.is_zero() {
                            *xi -= &f * pi;
                        }
                    }
                    combine(&mut origin, &f, o);
                }
            }
            let Some(col) = x.iter().position(|v| !v.is_zero()) else {
                continue;
            };
            let lead = x[col].clone();
            for xi in x.iter_mut() {
                *xi /= &lead;
            }
            for (_, v) in origin.iter_mut() {
                *v /= &lead;
            }
            for (_, p, o) in pivots.iter_mut() {
                if !p[col].is_zero() {
                    let f = p[col].clone();
                    for (pi, xi) in p.iter_mut().zip(&x) {
                        if !xi.is_zero() {
                            *pi -= &f * xi;
                        }
                    }
                    combine(o, &f, &origin);
                }
            }
            pivots.push((col, x, origin));
        }
        let pivot_cols: HashSet<usize> = pivots.iter().map(|(c, _, _)| *c).collect();
        let free = (0..dims).filter(|f| !pivot_cols.contains(f)).collect();
        Nullspace { pivots, free, dims }
    }

    /// The exact functional with free coordinates z.
    pub fn complete(&self, z: &[Rat]) -> Vec<Rat> {
        let mut d = vec![Rat::zero(); self.dims];
        for (&f, zf) in self.free.iter().zip(z) {
            d[f] = zf.clone();
        }
        for (c, row, _) in &self.pivots {
            d[*c] = -self
                .free
                .iter()
                .zip(z)
                .filter(|(f, zf)| !zf.is_zero() && !row[**f].is_zero())
                .map(|(f, zf)| zf * &row[*f])
                .sum::<Rat>();
        }
        d
    }

    /// u with ψ(x) = u·z for the functional ψ of free coordinates z:
    /// u_f = x_f − Σ_p row_p[f]·x_p. It is 0 iff x is in the rows' span.
    pub fn project(&self, x: &[Rat]) -> Vec<Rat> {
        self.free
            .iter()
            .map(|&f| {
                let mut u = x[f].clone();
                for (c, row, _) in &self.pivots {
                    if !x[*c].is_zero() && !row[f].is_zero() {
                        u -= &x[*c] * &row[f];
                    }
                }
                u
            })
            .collect()
    }

    /// For x in the rows' span, ν with x = Σ ν_r·rows[r] (reduced rows have
    /// a 1 at their own pivot and 0 at the others', so x = Σ_p x_p·row_p).
    pub fn express(&self, x: &[Rat]) -> Vec<(usize, Rat)> {
        let mut nu: Vec<(usize, Rat)> = Vec::new();
        for (c, _, origin) in &self.pivots {
            if !x[*c].is_zero() {
                combine(&mut nu, &-x[*c].clone(), origin);
            }
        }
        nu.sort_by_key(|(r, _)| *r);
        nu
    }

    /// The basis functional of free coordinate f, in f64 (for the
    /// perceptron's proposal).
    pub fn basis_f64(&self, f: usize) -> Vec<f64> {
        use crate::scalar::Scalar;
        let z: Vec<Rat> = self
            .free
            .iter()
            .map(|&g| if g == f { Rat::one() } else { Rat::zero() })
            .collect();
        self.complete(&z).iter().map(f64::from_rat).collect()
    }
}
