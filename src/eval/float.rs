//! The f64 forward pass on nalgebra: the same weights and the same
//! computation as [`super::forward`], in floating point.
//!
//! The model is compiled once into nalgebra matrices, in one of two
//! layouts: dense `DMatrix`/`DVector` products, or nalgebra-sparse CSR
//! matrices with every activation stored as a 1×d sparse row, so that a
//! prefix costs what its nonzeros touch rather than the width of the
//! residual. The constructions' weights are very sparse (a few percent of
//! entries; at paper scale d is in the tens of thousands and a prefix has a
//! few dozen nonzero coordinates), so [`Layout::Auto`] picks the sparse
//! layout unless the weights are dense enough for full products to pay.
//!
//! The attention softmax is the base-2 softmax of the exact pass, shifted by
//! the largest score so that every 2^(s − max) lies in (0, 1] and nothing
//! overflows. Ties in the router go to the first expert, as in the exact
//! pass. A test compares this pass with `eval::forward` on every prefix of
//! every construction, in both layouts.

use super::{EvalError, Logits, Trace};
use crate::model::{LinearMap, Model, SparseVec};
use nalgebra::{DMatrix, DVector};
use nalgebra_sparse::{CooMatrix, CsrMatrix};

/// Under [`Layout::Auto`], the dense layout is used when at least this
/// fraction (1/n) of the matrix entries are stored weights: a sparse
/// multiply-add costs a few dense ones in index bookkeeping. (Measured on
/// random_seed1, release build: the sparse layout is 3× faster than the
/// dense one on the MoE model and 6× on the dense model, at 2–5% density.)
pub const DENSE_AT_DENSITY: usize = 4;

/// How a compiled model stores its matrices and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Sparse, unless at least 1/[`DENSE_AT_DENSITY`] of the entries are
    /// stored weights.
    #[default]
    Auto,
    Dense,
    Sparse,
}

/// The linear algebra a compiled model runs on.
trait Backend {
    type Vector: Clone;
    /// A map in → out, stored as the backend prefers.
    type Matrix;
    fn matrix(rows: usize, cols: usize, entries: &[(usize, usize, f64)]) -> Self::Matrix;
    fn vector(dim: usize, v: &SparseVec<f64>) -> Self::Vector;
    fn from_dense(v: &[f64]) -> Self::Vector;
    fn apply(m: &Self::Matrix, x: &Self::Vector) -> Self::Vector;
    /// c·x.
    fn scale(x: &Self::Vector, c: f64) -> Self::Vector;
    /// x + c·y.
    fn add_scaled(x: &Self::Vector, c: f64, y: &Self::Vector) -> Self::Vector;
    fn dot(x: &Self::Vector, y: &Self::Vector) -> f64;
    fn to_dense(x: &Self::Vector, dim: usize) -> Vec<f64>;
    fn to_sparse(x: &Self::Vector) -> SparseVec<f64>;
}

/// Dense matrices and vectors.
struct Dense;

impl Backend for Dense {
    type Vector = DVector<f64>;
    type Matrix = DMatrix<f64>;

    fn matrix(rows: usize, cols: usize, entries: &[(usize, usize, f64)]) -> DMatrix<f64> {
        let mut m = DMatrix::zeros(rows, cols);
        for &(r, c, w) in entries {
            m[(r, c)] += w;
        }
        m
    }

    fn vector(dim: usize, v: &SparseVec<f64>) -> DVector<f64> {
        let mut x = DVector::zeros(dim);
        for &(i, value) in v.entries() {
            x[i] = value;
        }
        x
    }

    fn from_dense(v: &[f64]) -> DVector<f64> {
        DVector::from_column_slice(v)
    }

    fn apply(m: &DMatrix<f64>, x: &DVector<f64>) -> DVector<f64> {
        m * x
    }

    fn scale(x: &DVector<f64>, c: f64) -> DVector<f64> {
        x * c
    }

    fn add_scaled(x: &DVector<f64>, c: f64, y: &DVector<f64>) -> DVector<f64> {
        x + y * c
    }

    fn dot(x: &DVector<f64>, y: &DVector<f64>) -> f64 {
        x.dot(y)
    }

    fn to_dense(x: &DVector<f64>, _dim: usize) -> Vec<f64> {
        x.as_slice().to_vec()
    }

    fn to_sparse(x: &DVector<f64>) -> SparseVec<f64> {
        SparseVec::from_entries(x.iter().copied().enumerate().filter(|(_, v)| *v != 0.0))
    }
}

/// nalgebra-sparse CSR. A vector is a 1×d row x^T and a map W is stored
/// transposed, so W x is the sparse product x^T W^T.
struct Sparse;

impl Backend for Sparse {
    type Vector = CsrMatrix<f64>;
    type Matrix = CsrMatrix<f64>;

    fn matrix(rows: usize, cols: usize, entries: &[(usize, usize, f64)]) -> CsrMatrix<f64> {
        let mut coo = CooMatrix::new(cols, rows);
        for &(r, c, w) in entries {
            coo.push(c, r, w);
        }
        CsrMatrix::from(&coo)
    }

    fn vector(dim: usize, v: &SparseVec<f64>) -> CsrMatrix<f64> {
        let (indices, values): (Vec<usize>, Vec<f64>) = v.entries().iter().copied().unzip();
        CsrMatrix::try_from_csr_data(1, dim, vec![0, indices.len()], indices, values)
            .expect("a SparseVec is sorted with unique indices below its dimension")
    }

    fn from_dense(v: &[f64]) -> CsrMatrix<f64> {
        let (indices, values): (Vec<usize>, Vec<f64>) = v
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, x)| *x != 0.0)
            .unzip();
        CsrMatrix::try_from_csr_data(1, v.len(), vec![0, indices.len()], indices, values)
            .expect("indices are sorted and unique")
    }

    fn apply(m: &CsrMatrix<f64>, x: &CsrMatrix<f64>) -> CsrMatrix<f64> {
        x * m
    }

    fn scale(x: &CsrMatrix<f64>, c: f64) -> CsrMatrix<f64> {
        x * c
    }

    fn add_scaled(x: &CsrMatrix<f64>, c: f64, y: &CsrMatrix<f64>) -> CsrMatrix<f64> {
        x + &(y * c)
    }

    fn dot(x: &CsrMatrix<f64>, y: &CsrMatrix<f64>) -> f64 {
        // Merge of two sorted index lists.
        let (xi, xv) = (x.col_indices(), x.values());
        let (yi, yv) = (y.col_indices(), y.values());
        let (mut a, mut b, mut acc) = (0, 0, 0.0);
        while a < xi.len() && b < yi.len() {
            match xi[a].cmp(&yi[b]) {
                std::cmp::Ordering::Equal => {
                    acc += xv[a] * yv[b];
                    a += 1;
                    b += 1;
                }
                std::cmp::Ordering::Less => a += 1,
                std::cmp::Ordering::Greater => b += 1,
            }
        }
        acc
    }

    fn to_dense(x: &CsrMatrix<f64>, dim: usize) -> Vec<f64> {
        let mut v = vec![0.0; dim];
        for (&i, &value) in x.col_indices().iter().zip(x.values()) {
            v[i] += value;
        }
        v
    }

    fn to_sparse(x: &CsrMatrix<f64>) -> SparseVec<f64> {
        SparseVec::from_entries(
            x.col_indices()
                .iter()
                .copied()
                .zip(x.values().iter().copied())
                .filter(|(_, v)| *v != 0.0),
        )
    }
}

/// (row, column, weight) of every stored weight of a map.
fn entries(map: &LinearMap<f64>) -> Vec<(usize, usize, f64)> {
    (0..map.in_dim)
        .flat_map(|c| map.column(c).entries().iter().map(move |&(r, w)| (r, c, w)))
        .collect()
}

struct CompiledHead<B: Backend> {
    query: B::Matrix,
    key: B::Matrix,
    value: B::Matrix,
    output: B::Matrix,
}

struct CompiledExpert<B: Backend> {
    /// neurons × residual: row n is neuron n's read vector.
    read: B::Matrix,
    bias: Vec<f64>,
    /// residual × neurons: column n is neuron n's write vector.
    write: B::Matrix,
    output_bias: B::Vector,
    neurons: usize,
}

struct Compiled<B: Backend> {
    token_embed: Vec<B::Vector>,
    pos_embed: Vec<B::Vector>,
    heads: Vec<CompiledHead<B>>,
    router: B::Matrix,
    router_bias: Vec<f64>,
    experts: Vec<CompiledExpert<B>>,
    unembed: B::Matrix,
    /// 2^score or e^score (a model read from a float file).
    natural: bool,
}

impl<B: Backend> Compiled<B> {
    fn new(model: &Model<f64>) -> Self {
        let d = model.residual.len();
        let map = |m: &LinearMap<f64>| B::matrix(m.out_dim, m.in_dim, &entries(m));
        let vectors = |v: &[SparseVec<f64>]| v.iter().map(|x| B::vector(d, x)).collect();
        Compiled {
            token_embed: vectors(&model.token_embed),
            pos_embed: vectors(&model.pos_embed),
            heads: model
                .heads
                .iter()
                .map(|h| CompiledHead {
                    query: map(&h.query),
                    key: map(&h.key),
                    value: map(&h.value),
                    output: map(&h.output),
                })
                .collect(),
            router: map(&model.router.weights),
            router_bias: model.router.bias.clone(),
            natural: model.score_unit == crate::model::ScoreUnit::Natural,
            experts: model
                .experts
                .iter()
                .map(|e| {
                    let n = e.neurons.len();
                    let read: Vec<(usize, usize, f64)> = e
                        .neurons
                        .iter()
                        .enumerate()
                        .flat_map(|(i, neuron)| {
                            neuron.read.entries().iter().map(move |&(c, w)| (i, c, w))
                        })
                        .collect();
                    let write: Vec<(usize, usize, f64)> = e
                        .neurons
                        .iter()
                        .enumerate()
                        .flat_map(|(i, neuron)| {
                            neuron.write.entries().iter().map(move |&(r, w)| (r, i, w))
                        })
                        .collect();
                    CompiledExpert {
                        read: B::matrix(n, d, &read),
                        bias: e.neurons.iter().map(|neuron| neuron.bias).collect(),
                        write: B::matrix(d, n, &write),
                        output_bias: B::vector(d, &e.output_bias),
                        neurons: n,
                    }
                })
                .collect(),
            unembed: map(&model.unembed),
        }
    }

    fn forward(&self, tokens: &[usize], vocab_size: usize) -> Result<Trace<f64>, EvalError> {
        // A: token embedding + position embedding at every position.
        let inputs = tokens
            .iter()
            .enumerate()
            .map(|(j, &t)| {
                let embed = self.token_embed.get(t).ok_or(EvalError::UnknownToken(t))?;
                Ok(B::add_scaled(embed, 1.0, &self.pos_embed[j]))
            })
            .collect::<Result<Vec<_>, EvalError>>()?;
        let last = &inputs[tokens.len() - 1];

        let mut hidden = last.clone();
        let mut head_outputs = Vec::with_capacity(self.heads.len());
        let mut attention = Vec::with_capacity(self.heads.len());
        for head in &self.heads {
            let q = B::apply(&head.query, last);
            let scores: Vec<f64> = inputs
                .iter()
                .map(|x| B::dot(&q, &B::apply(&head.key, x)))
                .collect();
            // Softmax in the model's unit (base 2 for constructions),
            // shifted by the max: every power is in (0, 1].
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let powers: Vec<f64> = scores
                .iter()
                .map(|s| {
                    if self.natural {
                        (s - max).exp()
                    } else {
                        (s - max).exp2()
                    }
                })
                .collect();
            let total: f64 = powers.iter().sum();
            let weights: Vec<f64> = powers.iter().map(|p| p / total).collect();
            let mut out: Option<B::Vector> = None;
            for (w, x) in weights.iter().zip(&inputs) {
                let v = B::apply(&head.value, x);
                out = Some(match out {
                    None => B::scale(&v, *w),
                    Some(acc) => B::add_scaled(&acc, *w, &v),
                });
            }
            let out = out.expect("a prefix has at least one position");
            hidden = B::add_scaled(&hidden, 1.0, &B::apply(&head.output, &out));
            head_outputs.push(B::to_sparse(&out));
            attention.push(weights);
        }

        // Router: G(A') = W_G A' + b; top-1, first index on ties.
        let routed = B::to_dense(&B::apply(&self.router, &hidden), self.router_bias.len());
        let router_scores: Vec<f64> = self
            .router_bias
            .iter()
            .zip(&routed)
            .map(|(b, s)| b + s)
            .collect();
        let mut expert = 0;
        for (e, s) in router_scores.iter().enumerate() {
            if *s > router_scores[expert] {
                expert = e;
            }
        }

        // The chosen expert: Σ ReLU(read·A' + bias)·write + output bias.
        let ffn = &self.experts[expert];
        let reads = B::to_dense(&B::apply(&ffn.read, &hidden), ffn.neurons);
        let preactivations: Vec<f64> = reads.iter().zip(&ffn.bias).map(|(r, b)| r + b).collect();
        let activations: Vec<f64> = preactivations.iter().map(|p| p.max(0.0)).collect();
        let firing: Vec<(usize, f64)> = activations
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, a)| *a > 0.0)
            .collect();
        let written = B::apply(&ffn.write, &B::from_dense(&activations));
        let output = B::add_scaled(
            &B::add_scaled(&hidden, 1.0, &ffn.output_bias),
            1.0,
            &written,
        );
        let logits = Logits {
            vocab_size,
            nonzero: B::to_sparse(&B::apply(&self.unembed, &output)),
        };
        Ok(Trace {
            heads: head_outputs,
            attention,
            hidden: B::to_sparse(&hidden),
            router_scores,
            expert,
            firing,
            preactivations,
            output: B::to_sparse(&output),
            logits,
        })
    }
}

/// (stored weights, matrix entries) over every map of the forward pass.
fn density(model: &Model<f64>) -> (usize, usize) {
    let d = model.residual.len();
    let maps = model
        .heads
        .iter()
        .flat_map(|h| [&h.query, &h.key, &h.value, &h.output])
        .chain([&model.router.weights, &model.unembed]);
    let (mut stored, mut entries) = (0, 0);
    for m in maps {
        stored += m.nnz();
        entries += m.in_dim * m.out_dim;
    }
    for e in &model.experts {
        for n in &e.neurons {
            stored += n.read.nnz() + n.write.nnz();
            entries += 2 * d;
        }
    }
    (stored, entries)
}

enum Inner {
    Dense(Box<Compiled<Dense>>),
    Sparse(Box<Compiled<Sparse>>),
}

/// A model compiled for the f64 forward pass.
pub struct FloatModel {
    inner: Inner,
    max_len: usize,
    vocab_size: usize,
    experts: usize,
}

impl FloatModel {
    /// Compile a model, choosing the layout by the residual's width.
    pub fn new(model: &Model<f64>) -> FloatModel {
        FloatModel::with_layout(model, Layout::Auto)
    }

    pub fn with_layout(model: &Model<f64>, layout: Layout) -> FloatModel {
        let sparse = match layout {
            Layout::Auto => {
                let (stored, entries) = density(model);
                stored * DENSE_AT_DENSITY < entries
            }
            Layout::Dense => false,
            Layout::Sparse => true,
        };
        let inner = if sparse {
            Inner::Sparse(Box::new(Compiled::new(model)))
        } else {
            Inner::Dense(Box::new(Compiled::new(model)))
        };
        FloatModel {
            inner,
            max_len: model.max_len,
            vocab_size: model.vocab.len(),
            experts: model.experts.len(),
        }
    }

    /// Which layout was compiled.
    pub fn layout(&self) -> Layout {
        match self.inner {
            Inner::Dense(_) => Layout::Dense,
            Inner::Sparse(_) => Layout::Sparse,
        }
    }

    /// Run the model on a token sequence, as [`super::forward`] does.
    pub fn forward(&self, tokens: &[usize]) -> Result<Trace<f64>, EvalError> {
        let i = tokens.len();
        if i == 0 {
            return Err(EvalError::Empty);
        }
        if i > self.max_len {
            return Err(EvalError::TooLong {
                len: i,
                max: self.max_len,
            });
        }
        if self.experts == 0 {
            return Err(EvalError::NoExperts);
        }
        match &self.inner {
            Inner::Dense(m) => m.forward(tokens, self.vocab_size),
            Inner::Sparse(m) => m.forward(tokens, self.vocab_size),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::construct::{ModelKind, Options, build};
    use crate::eval::forward;
    use crate::scalar::Scalar;
    use crate::spec;
    use crate::taskset::TaskSet;
    use std::path::Path;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    fn same_sparse(a: &SparseVec<f64>, b: &SparseVec<f64>) -> bool {
        let keys: std::collections::BTreeSet<usize> = a
            .entries()
            .iter()
            .chain(b.entries())
            .map(|(i, _)| *i)
            .collect();
        keys.iter().all(|&i| close(a.get(i), b.get(i)))
    }

    /// One forward-pass semantics: on every prefix of every construction,
    /// in both models and both layouts, the nalgebra pass agrees with
    /// `eval::forward` in f64 and with the exact pass: same expert, every
    /// pre-activation, attention weight, hidden and output coordinate and
    /// logit equal to rounding, the same nonzero logits.
    #[test]
    fn nalgebra_pass_matches_eval_forward_on_every_prefix() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("constructions");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{files:?}");
        let mut checked = 0;
        for file in &files {
            let ts = TaskSet::from_spec(&spec::load(file).unwrap());
            for kind in [ModelKind::Moe, ModelKind::Dense] {
                let exact = build(&ts, &Options::default(), kind);
                let model = exact.to_f64();
                for layout in [Layout::Dense, Layout::Sparse] {
                    let compiled = FloatModel::with_layout(&model, layout);
                    assert_eq!(compiled.layout(), layout);
                    for p in &ts.prefixes {
                        let what = format!(
                            "{} {kind} {layout:?} \"{}\"",
                            file.display(),
                            ts.render(&p.tokens)
                        );
                        let a = compiled.forward(&p.tokens).unwrap();
                        let b = forward(&model, &p.tokens).unwrap();
                        let e = forward(&exact, &p.tokens).unwrap();
                        check(&a, &b, &e, &what);
                        checked += 1;
                    }
                }
            }
        }
        // Every prefix of every construction, in 2 models × 2 layouts.
        let prefixes: usize = files
            .iter()
            .map(|f| TaskSet::from_spec(&spec::load(f).unwrap()).prefixes.len())
            .sum();
        assert!(prefixes >= 39 + 41 + 38);
        assert_eq!(checked, prefixes * 4);
    }

    /// `a` (nalgebra) against `b` (eval::forward in f64) and `e` (exact).
    fn check(a: &Trace<f64>, b: &Trace<f64>, e: &Trace<crate::scalar::Rat>, what: &str) {
        assert_eq!(a.expert, b.expert, "{what}");
        assert_eq!(a.expert, e.expert, "{what}");
        let all_close = |x: &[f64], y: &[f64]| {
            x.len() == y.len() && x.iter().zip(y).all(|(u, v)| close(*u, *v))
        };
        assert!(all_close(&a.router_scores, &b.router_scores), "{what}");
        assert!(all_close(&a.preactivations, &b.preactivations), "{what}");
        for (x, y) in a.attention.iter().zip(&b.attention) {
            assert!(all_close(x, y), "{what}");
        }
        // Firing agrees with the exact pass except where the exact
        // pre-activation is 0 (an interpolation knot sits exactly on the
        // pattern): rounding may tip it either way, with a negligible
        // activation.
        assert_eq!(a.preactivations.len(), e.preactivations.len(), "{what}");
        let fired: Vec<usize> = a.firing.iter().map(|(n, _)| *n).collect();
        for (n, pre) in e.preactivations.iter().enumerate() {
            let pre = f64::from_rat(pre);
            assert!(close(a.preactivations[n], pre), "{what} neuron {n}");
            if pre.abs() > 1e-6 {
                assert_eq!(fired.contains(&n), pre > 0.0, "{what} neuron {n}");
            } else if fired.contains(&n) {
                let act = a.firing.iter().find(|(m, _)| *m == n).unwrap().1;
                assert!(act < 1e-6, "{what} neuron {n}");
            }
        }
        assert!(same_sparse(&a.hidden, &b.hidden), "{what}");
        assert!(same_sparse(&a.output, &b.output), "{what}");
        assert!(same_sparse(&a.logits.nonzero, &b.logits.nonzero), "{what}");
        // Every logit is the exact one to 1e-6 of the largest
        // (a logit that is exactly 0 may come out as rounding noise: the
        // dense model's gates cancel large weights to exactly 0).
        let scale = (0..e.logits.vocab_size)
            .map(|t| f64::from_rat(&e.logits.get(t)).abs())
            .fold(1.0, f64::max);
        for t in 0..e.logits.vocab_size {
            assert!(
                (a.logits.get(t) - f64::from_rat(&e.logits.get(t))).abs() <= 1e-6 * scale,
                "{what} token {t}: {} vs {}",
                a.logits.get(t),
                e.logits.get(t)
            );
        }
    }

    #[test]
    fn auto_layout_is_sparse_for_the_constructions_and_rejects_bad_input() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("constructions/running_example.toml");
        let ts = TaskSet::from_spec(&spec::load(&path).unwrap());
        let model = build(&ts, &Options::default(), ModelKind::Moe).to_f64();
        let (stored, entries) = density(&model);
        assert!(stored * DENSE_AT_DENSITY < entries, "{stored} of {entries}");
        let compiled = FloatModel::new(&model);
        assert_eq!(compiled.layout(), Layout::Sparse);
        assert_eq!(compiled.forward(&[]).unwrap_err(), EvalError::Empty);
        assert_eq!(
            compiled.forward(&[0; 7]).unwrap_err(),
            EvalError::TooLong { len: 7, max: 6 }
        );
        assert_eq!(
            compiled.forward(&[99]).unwrap_err(),
            EvalError::UnknownToken(99)
        );
    }
}
