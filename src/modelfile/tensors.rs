//! The typed model as TransformerLens-named tensors and back, exactly.
//!
//! Both directions go through [`Tensors`]: every tensor of
//! docs/model-file.md with its shape and its nonzero entries as exact
//! rationals. The writer rounds these to floats; the reader builds them from
//! floats (or from exact.json) and hands them to [`to_model`]. Scores stay in
//! the model's own unit here: folding ln 2 into `W_Q` is the writer's job.

use super::error::ModelFileError;
use super::json::{Config, Names};
use crate::model::{
    Basis, Circuit, Expert, Head, LinearMap, Model, Neuron, NeuronRole, Router, ScoreUnit,
    SparseVec, Synthesis,
};
use crate::scalar::Rat;
use num_traits::{One, Zero};
use std::collections::BTreeMap;
use std::path::Path;

pub const W_E: &str = "embed.W_E";
pub const W_POS: &str = "pos_embed.W_pos";
pub const W_Q: &str = "blocks.0.attn.W_Q";
pub const W_K: &str = "blocks.0.attn.W_K";
pub const W_V: &str = "blocks.0.attn.W_V";
pub const W_O: &str = "blocks.0.attn.W_O";
pub const B_Q: &str = "blocks.0.attn.b_Q";
pub const B_K: &str = "blocks.0.attn.b_K";
pub const B_V: &str = "blocks.0.attn.b_V";
pub const B_O: &str = "blocks.0.attn.b_O";
pub const W_GATE: &str = "blocks.0.mlp.W_gate";
pub const B_GATE: &str = "blocks.0.mlp.b_gate";
pub const W_U: &str = "unembed.W_U";
pub const B_U: &str = "unembed.b_U";

/// The FFN tensor prefix of expert `e` (MoE) or of the one FFN (dense).
pub fn ffn_prefix(dense: bool, e: usize) -> String {
    if dense {
        "blocks.0.mlp".to_string()
    } else {
        format!("blocks.0.mlp.experts.{e}")
    }
}

/// One tensor: its shape and its nonzero entries, sorted by index.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub entries: Vec<(Vec<usize>, Rat)>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>) -> Self {
        Tensor {
            shape,
            entries: Vec::new(),
        }
    }

    fn push(&mut self, index: Vec<usize>, v: &Rat) {
        if !v.is_zero() {
            self.entries.push((index, v.clone()));
        }
    }

    fn sorted(mut self) -> Self {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        self
    }

    /// The number of elements of the dense tensor.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

pub type Tensors = BTreeMap<String, Tensor>;

/// The largest head space (query/key or value) of any head: every head is
/// zero-padded to it.
pub fn d_head<S>(m: &Model<S>) -> usize {
    m.heads
        .iter()
        .map(|h| h.qk.len().max(h.values.len()))
        .max()
        .unwrap_or(0)
        .max(1)
}

/// Every tensor's name and shape for a config (what a file must hold).
pub fn expected_shapes(c: &Config) -> Result<BTreeMap<String, Vec<usize>>, String> {
    let (dm, nh, dh) = (c.d_model, c.n_heads, c.d_head);
    let mut s = BTreeMap::new();
    s.insert(W_E.into(), vec![c.d_vocab, dm]);
    s.insert(W_POS.into(), vec![c.n_ctx, dm]);
    for name in [W_Q, W_K, W_V] {
        s.insert(name.into(), vec![nh, dm, dh]);
    }
    s.insert(W_O.into(), vec![nh, dh, dm]);
    for name in [B_Q, B_K, B_V] {
        s.insert(name.into(), vec![nh, dh]);
    }
    s.insert(B_O.into(), vec![dm]);
    s.insert(W_U.into(), vec![dm, c.d_vocab]);
    s.insert(B_U.into(), vec![c.d_vocab]);
    let widths: Vec<usize> = match c.model.as_str() {
        "moe" => {
            if c.experts.is_empty() {
                return Err("\"experts\" is empty: a MoE model has at least one expert".into());
            }
            s.insert(W_GATE.into(), vec![dm, c.experts.len()]);
            s.insert(B_GATE.into(), vec![c.experts.len()]);
            c.experts.iter().map(|e| e.d_mlp).collect()
        }
        "dense" => vec![c.d_mlp],
        other => {
            return Err(format!(
                "\"model\" is \"{other}\", expected \"moe\" or \"dense\""
            ));
        }
    };
    let dense = c.model == "dense";
    for (e, &w) in widths.iter().enumerate() {
        let p = ffn_prefix(dense, e);
        s.insert(format!("{p}.W_in"), vec![dm, w]);
        s.insert(format!("{p}.b_in"), vec![w]);
        s.insert(format!("{p}.W_out"), vec![w, dm]);
        s.insert(format!("{p}.b_out"), vec![dm]);
    }
    Ok(s)
}

/// The model's weights as exact tensors (scores in the model's own unit).
pub fn from_model(m: &Model<Rat>) -> Tensors {
    let (dm, dv, nh, dh) = (m.residual.len(), m.vocab.len(), m.heads.len(), d_head(m));
    let mut t = Tensors::new();
    let rows = |shape: Vec<usize>, rows: &[SparseVec<Rat>]| {
        let mut x = Tensor::new(shape);
        for (r, v) in rows.iter().enumerate() {
            for (i, w) in v.entries() {
                x.push(vec![r, *i], w);
            }
        }
        x
    };
    t.insert(W_E.into(), rows(vec![dv, dm], &m.token_embed));
    t.insert(W_POS.into(), rows(vec![m.max_len, dm], &m.pos_embed));
    // A map in → out as [in, out] (column c of the map is row c here).
    let by_input = |x: &mut Tensor, lead: &[usize], map: &LinearMap<Rat>| {
        for i in 0..map.in_dim {
            for (o, w) in map.column(i).entries() {
                let mut index = lead.to_vec();
                index.extend([i, *o]);
                x.push(index, w);
            }
        }
    };
    let mut q = Tensor::new(vec![nh, dm, dh]);
    let mut k = q.clone();
    let mut v = q.clone();
    let mut o = Tensor::new(vec![nh, dh, dm]);
    for (h, head) in m.heads.iter().enumerate() {
        by_input(&mut q, &[h], &head.query);
        by_input(&mut k, &[h], &head.key);
        by_input(&mut v, &[h], &head.value);
        by_input(&mut o, &[h], &head.output);
    }
    for (name, x) in [(W_Q, q), (W_K, k), (W_V, v), (W_O, o)] {
        t.insert(name.into(), x.sorted());
    }
    for name in [B_Q, B_K, B_V] {
        t.insert(name.into(), Tensor::new(vec![nh, dh]));
    }
    t.insert(B_O.into(), Tensor::new(vec![dm]));
    let dense = !m.circuits.is_empty();
    if !dense {
        let mut g = Tensor::new(vec![dm, m.experts.len()]);
        by_input(&mut g, &[], &m.router.weights);
        t.insert(W_GATE.into(), g.sorted());
        let mut b = Tensor::new(vec![m.experts.len()]);
        for (e, w) in m.router.bias.iter().enumerate() {
            b.push(vec![e], w);
        }
        t.insert(B_GATE.into(), b);
    }
    for (e, expert) in m.experts.iter().enumerate() {
        let (p, n) = (ffn_prefix(dense, e), expert.neurons.len());
        let (mut w_in, mut b_in) = (Tensor::new(vec![dm, n]), Tensor::new(vec![n]));
        let (mut w_out, mut b_out) = (Tensor::new(vec![n, dm]), Tensor::new(vec![dm]));
        for (j, neuron) in expert.neurons.iter().enumerate() {
            for (i, w) in neuron.read.entries() {
                w_in.push(vec![*i, j], w);
            }
            b_in.push(vec![j], &neuron.bias);
            for (i, w) in neuron.write.entries() {
                w_out.push(vec![j, *i], w);
            }
        }
        for (i, w) in expert.output_bias.entries() {
            b_out.push(vec![*i], w);
        }
        t.insert(format!("{p}.W_in"), w_in.sorted());
        t.insert(format!("{p}.b_in"), b_in);
        t.insert(format!("{p}.W_out"), w_out.sorted());
        t.insert(format!("{p}.b_out"), b_out);
    }
    let mut u = Tensor::new(vec![dm, dv]);
    by_input(&mut u, &[], &m.unembed);
    t.insert(W_U.into(), u.sorted());
    t.insert(B_U.into(), Tensor::new(vec![dv]));
    t
}

fn basis(names: &[String], what: &str, file: &Path) -> Result<Basis, ModelFileError> {
    let mut b = Basis::default();
    for n in names {
        if b.get(n).is_some() {
            return Err(ModelFileError::json(
                file,
                format!("{what}: the name \"{n}\" appears twice"),
            ));
        }
        b.add(n.clone());
    }
    Ok(b)
}

fn role(r: &str, file: &Path) -> Result<NeuronRole, ModelFileError> {
    match r {
        "syntactic" => Ok(NeuronRole::Syntactic),
        "semantic" => Ok(NeuronRole::Semantic),
        other => Err(ModelFileError::json(
            file,
            format!("neuron role \"{other}\": expected \"syntactic\" or \"semantic\""),
        )),
    }
}

/// Everything besides the tensors that [`to_model`] needs.
pub struct Parts<'a> {
    pub config: &'a Config,
    pub names: &'a Names,
    /// Where names came from, for messages.
    pub names_file: &'a Path,
    /// Where the tensors came from, for messages.
    pub tensor_file: &'a Path,
    pub score_unit: ScoreUnit,
    /// The dense model's circuits (exact gates when known).
    pub circuits: Vec<Circuit<Rat>>,
}

/// Build the typed model from tensors whose names and shapes have been
/// checked against `expected_shapes(config)`.
///
/// Biases the typed model has no place for (`b_Q`, `b_K`, `b_V`, `b_O`,
/// `b_U`; zero in exports) are folded in exactly through one extra residual
/// coordinate `bias:one`, 1 at every position: a bias is then a weight from
/// it (and `b_O` a weight from an extra value coordinate of head 0 that
/// averages to 1).
pub fn to_model(t: &Tensors, p: Parts<'_>) -> Result<Model<Rat>, ModelFileError> {
    let (c, names) = (p.config, p.names);
    let get = |name: &str| &t[name];
    let mut residual = basis(&names.residual, "residual", p.names_file)?;
    let dm = c.d_model;
    let biased = [B_Q, B_K, B_V, B_O, B_U]
        .iter()
        .any(|n| !get(n).entries.is_empty());
    let one = biased.then(|| {
        let mut name = "bias:one".to_string();
        while residual.get(&name).is_some() {
            name.push('\'');
        }
        residual.add(name)
    });
    let width = residual.len();
    let rows = |name: &str, n: usize| {
        let mut rows: Vec<Vec<(usize, Rat)>> = vec![Vec::new(); n];
        for (i, w) in &get(name).entries {
            rows[i[0]].push((i[1], w.clone()));
        }
        rows
    };
    let token_embed = rows(W_E, c.d_vocab)
        .into_iter()
        .map(SparseVec::from_entries)
        .collect();
    let pos_embed = rows(W_POS, c.n_ctx)
        .into_iter()
        .map(|mut r| {
            if let Some(one) = one {
                r.push((one, Rat::one()));
            }
            SparseVec::from_entries(r)
        })
        .collect();
    let too_big = |tensor: &str, what: &str, at: usize, len: usize| {
        ModelFileError::tensor(
            p.tensor_file,
            tensor,
            format!("nonzero entry at {what} {at}, outside the {len} coordinates names.json gives"),
        )
    };
    let mut heads = Vec::with_capacity(c.n_heads);
    for (h, hn) in names.heads.iter().enumerate() {
        let qk = basis(&hn.qk, &format!("head {}", hn.name), p.names_file)?;
        let mut values = basis(&hn.values, &format!("head {}", hn.name), p.names_file)?;
        let bias_value = (one.is_some() && h == 0).then(|| values.add("bias:one"));
        let map = |w: &str, b: &str, out: usize| -> Result<LinearMap<Rat>, ModelFileError> {
            let mut m = LinearMap::zero(width, out);
            for (i, x) in get(w).entries.iter().filter(|(i, _)| i[0] == h) {
                if i[2] >= out {
                    return Err(too_big(w, "head coordinate", i[2], out));
                }
                m.add(i[2], i[1], x.clone());
            }
            for (i, x) in get(b).entries.iter().filter(|(i, _)| i[0] == h) {
                if i[1] >= out {
                    return Err(too_big(b, "head coordinate", i[1], out));
                }
                m.add(i[1], one.expect("a nonzero bias adds bias:one"), x.clone());
            }
            Ok(m)
        };
        let query = map(W_Q, B_Q, qk.len())?;
        let key = map(W_K, B_K, qk.len())?;
        let mut value = map(W_V, B_V, hn.values.len())?;
        let mut output = LinearMap::zero(values.len(), width);
        for (i, x) in get(W_O).entries.iter().filter(|(i, _)| i[0] == h) {
            if i[1] >= hn.values.len() {
                return Err(too_big(W_O, "head coordinate", i[1], hn.values.len()));
            }
            output.add(i[2], i[1], x.clone());
        }
        if let (Some(bv), Some(one)) = (bias_value, one) {
            value = {
                let mut v = LinearMap::zero(width, values.len());
                for col in 0..width {
                    for (o, x) in value.column(col).entries() {
                        v.add(*o, col, x.clone());
                    }
                }
                v.add(bv, one, Rat::one());
                v
            };
            for (i, x) in &get(B_O).entries {
                output.add(i[0], bv, x.clone());
            }
        }
        heads.push(Head {
            name: hn.name.clone(),
            qk,
            values,
            query,
            key,
            value,
            output,
        });
    }
    if heads.is_empty() && !get(B_O).entries.is_empty() {
        return Err(ModelFileError::tensor(
            p.tensor_file,
            B_O,
            "a nonzero attention output bias needs at least one head",
        ));
    }
    let dense = c.model == "dense";
    let mut experts = Vec::with_capacity(names.experts.len());
    for (e, en) in names.experts.iter().enumerate() {
        let prefix = ffn_prefix(dense, e);
        let n = en.neurons.len();
        let mut read = vec![Vec::new(); n];
        let mut bias = vec![Rat::zero(); n];
        let mut write = vec![Vec::new(); n];
        for (i, x) in &get(&format!("{prefix}.W_in")).entries {
            read[i[1]].push((i[0], x.clone()));
        }
        for (i, x) in &get(&format!("{prefix}.b_in")).entries {
            bias[i[0]] = x.clone();
        }
        for (i, x) in &get(&format!("{prefix}.W_out")).entries {
            write[i[0]].push((i[1], x.clone()));
        }
        let neurons = en
            .neurons
            .iter()
            .zip(read.into_iter().zip(bias).zip(write))
            .map(|(nn, ((read, bias), write))| {
                Ok(Neuron {
                    name: nn.name.clone(),
                    role: role(&nn.role, p.names_file)?,
                    read: SparseVec::from_entries(read),
                    bias,
                    write: SparseVec::from_entries(write),
                })
            })
            .collect::<Result<_, ModelFileError>>()?;
        experts.push(Expert {
            name: en.name.clone(),
            neurons,
            output_bias: SparseVec::from_entries(
                get(&format!("{prefix}.b_out"))
                    .entries
                    .iter()
                    .map(|(i, x)| (i[0], x.clone())),
            ),
        });
    }
    let n_experts = experts.len();
    let mut weights = LinearMap::zero(width, n_experts);
    let mut bias = vec![Rat::zero(); n_experts];
    if !dense {
        for (i, x) in &get(W_GATE).entries {
            weights.add(i[1], i[0], x.clone());
        }
        for (i, x) in &get(B_GATE).entries {
            bias[i[0]] = x.clone();
        }
    }
    let router = match &c.router {
        Some(r) => Router {
            inputs: r.inputs.clone(),
            weights,
            bias,
            synthesis: Synthesis::trained(
                r.converged,
                r.epochs,
                r.misrouted,
                r.forced,
                r.reads.clone(),
            )
            .by(r.synthesis.clone()),
        },
        None => {
            // Not a routecert export: the inputs are where the weights are.
            let inputs = (0..dm).filter(|&i| weights.column(i).nnz() > 0).collect();
            Router {
                inputs,
                weights,
                bias,
                synthesis: Synthesis::given(
                    true,
                    "the coordinates its weights read (read from a file)",
                ),
            }
        }
    };
    let mut unembed = LinearMap::zero(width, c.d_vocab);
    for (i, x) in &get(W_U).entries {
        unembed.add(i[1], i[0], x.clone());
    }
    for (i, x) in &get(B_U).entries {
        unembed.add(i[0], one.expect("a nonzero bias adds bias:one"), x.clone());
    }
    Ok(Model {
        vocab: c.vocab.clone(),
        residual,
        max_len: c.n_ctx,
        token_embed,
        pos_embed,
        heads,
        router,
        experts,
        unembed,
        circuits: p.circuits,
        score_unit: p.score_unit,
    })
}
