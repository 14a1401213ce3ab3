//! DIR → `Model<Rat>`. Every check happens before the model is built, and
//! every failure names the file (and tensor).
//!
//! exact.json is used only when its `safetensors_sha256` matches the bytes
//! of model.safetensors: the exact model is then rebuilt losslessly. Without
//! it the floats are read as the dyadic rationals they are and attention
//! scores are natural units (weight e^score), as PyTorch computes them.

use super::error::ModelFileError;
use super::json::{self, Config, Exact, ExpertNames, HeadNames, Names, NeuronNames};
use super::sha256_hex;
use super::tensors::{self, Parts, Tensor, Tensors};
use crate::model::{Circuit, Model, ScoreUnit, SparseVec};
use crate::scalar::Rat;
use crate::taskset::TaskSet;
use num_traits::Zero;
use safetensors::SafeTensors;
use safetensors::tensor::Dtype as StDtype;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The largest dimension (and n_ctx × d_vocab) a model file may declare.
pub const MAX_DIM: usize = 1 << 26;
/// The most elements one tensor may declare (a dense f64 tensor of 8 TB).
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// A model read from a directory.
#[derive(Debug, Clone)]
pub struct ReadModel {
    pub model: Model<Rat>,
    pub config: Config,
    /// Whether exact.json was used (else: the floats, natural units).
    pub exact: bool,
    /// Why exact.json was not used, when it was not.
    pub floats_because: Option<String>,
}

fn io(path: &Path, source: std::io::Error) -> ModelFileError {
    ModelFileError::Io {
        path: path.to_path_buf(),
        action: "cannot read",
        source,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelFileError> {
    let text = std::fs::read(path).map_err(|e| io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| ModelFileError::json(path, format!("bad JSON: {e}")))
}

/// Read a model directory.
pub fn read(dir: &Path) -> Result<ReadModel, ModelFileError> {
    let config_path = dir.join("config.json");
    let config: Config = read_json(&config_path)?;
    let shapes = check_config(&config, &config_path)?;
    let names_path = dir.join("names.json");
    let names = if names_path.exists() {
        let names: Names = read_json(&names_path)?;
        check_names(&names, &config, &names_path)?;
        names
    } else {
        default_names(&config)
    };
    let st_path = dir.join("model.safetensors");
    let bytes = std::fs::read(&st_path).map_err(|e| io(&st_path, e))?;
    let floats = read_safetensors(&bytes, &config, &shapes, &st_path)?;
    let exact_path = dir.join("exact.json");
    let (tensors, unit, circuits, exact, because) = if exact_path.exists() {
        let ex: Exact = read_json(&exact_path)?;
        if ex.safetensors_sha256 == sha256_hex(&bytes) {
            let (t, unit, circuits) = exact_tensors(&ex, &config, &shapes, &exact_path)?;
            (t, unit, circuits, true, None)
        } else {
            let why = "exact.json's safetensors_sha256 does not match model.safetensors (edited after export)";
            (
                floats,
                ScoreUnit::Natural,
                circuits_without_gates(&config),
                false,
                Some(why.to_string()),
            )
        }
    } else {
        let why = "no exact.json";
        (
            floats,
            ScoreUnit::Natural,
            circuits_without_gates(&config),
            false,
            Some(why.to_string()),
        )
    };
    let model = tensors::to_model(
        &tensors,
        Parts {
            config: &config,
            names: &names,
            names_file: &names_path,
            tensor_file: &st_path,
            score_unit: unit,
            circuits,
        },
    )?;
    Ok(ReadModel {
        model,
        config,
        exact,
        floats_because: because,
    })
}

/// Check that the model can run every prefix of the spec: every spec token
/// is in its vocabulary (by name; ids may differ and extra tokens are part
/// of the softmax) and its positions cover the longest prefix.
pub fn check_against(dir: &Path, model: &Model<Rat>, ts: &TaskSet) -> Result<(), ModelFileError> {
    let have: BTreeSet<&str> = model.vocab.iter().map(String::as_str).collect();
    let path = dir.join("config.json");
    if let Some(t) = ts.vocab.names().iter().find(|t| !have.contains(t.as_str())) {
        return Err(ModelFileError::MissingToken {
            path,
            token: t.clone(),
        });
    }
    if model.max_len < ts.max_len {
        return Err(ModelFileError::json(
            &path,
            format!(
                "n_ctx {} is shorter than the spec's longest prefix ({} tokens)",
                model.max_len, ts.max_len
            ),
        ));
    }
    Ok(())
}

fn check_config(c: &Config, path: &Path) -> Result<BTreeMap<String, Vec<usize>>, ModelFileError> {
    let bad = |m: String| Err(ModelFileError::json(path, m));
    if c.format != json::FORMAT {
        return bad(format!(
            "\"format\" is \"{}\", expected \"{}\"",
            c.format,
            json::FORMAT
        ));
    }
    if c.n_layers != 1 {
        return bad(format!(
            "n_layers is {}: routecert reads one-layer models",
            c.n_layers
        ));
    }
    if c.act_fn != "relu" {
        return bad(format!("act_fn is \"{}\", expected \"relu\"", c.act_fn));
    }
    if c.normalization_type.is_some() {
        return bad("normalization_type must be null (no LayerNorm)".into());
    }
    if c.positional_embedding_type != "standard" {
        return bad("positional_embedding_type must be \"standard\"".into());
    }
    if c.use_attn_scale {
        return bad("use_attn_scale must be false (scores are q·k)".into());
    }
    if c.attn_only {
        return bad("attn_only must be false (the model has an FFN)".into());
    }
    if !["float64", "float32", "bfloat16", "float16"].contains(&c.dtype.as_str()) {
        return bad(format!(
            "dtype \"{}\" is not float64, float32, bfloat16 or float16",
            c.dtype
        ));
    }
    if c.layout != "dense" && c.layout != "sparse" {
        return bad(format!(
            "layout \"{}\": expected \"dense\" or \"sparse\"",
            c.layout
        ));
    }
    if c.vocab.len() != c.d_vocab {
        return bad(format!(
            "vocab has {} tokens but d_vocab is {}",
            c.vocab.len(),
            c.d_vocab
        ));
    }
    let mut seen = BTreeSet::new();
    if let Some(t) = c.vocab.iter().find(|t| !seen.insert(t.as_str())) {
        return bad(format!("vocab lists \"{t}\" twice"));
    }
    if let Some(eos) = &c.eos_token
        && !seen.contains(eos.as_str())
    {
        return bad(format!("eos_token \"{eos}\" is not in vocab"));
    }
    if c.model == "moe" && c.d_mlp != c.experts.iter().map(|e| e.d_mlp).max().unwrap_or(0) {
        return bad("d_mlp is not the widest expert's d_mlp".into());
    }
    if c.model == "dense" {
        if c.circuits.is_empty() {
            return bad("a dense model lists its circuits (\"circuits\" is empty)".into());
        }
        for circuit in &c.circuits {
            if let Some(n) = circuit.neurons.iter().find(|&&n| n >= c.d_mlp) {
                return bad(format!(
                    "circuit {}: neuron {n} is outside d_mlp {}",
                    circuit.name, c.d_mlp
                ));
            }
        }
    }
    if let Some(r) = &c.router
        && let Some(i) = r.inputs.iter().find(|&&i| i >= c.d_model)
    {
        return bad(format!("router input {i} is outside d_model {}", c.d_model));
    }
    // Bounds that keep a hostile config from asking for absurd allocations
    // (a sparse file's size does not bound its dense shape).
    for (what, v) in [
        ("d_model", c.d_model),
        ("d_head", c.d_head),
        ("d_mlp", c.d_mlp),
        ("n_heads", c.n_heads),
        ("n_ctx", c.n_ctx),
    ] {
        if v > MAX_DIM {
            return bad(format!(
                "{what} {v} is above routecert's limit of {MAX_DIM}"
            ));
        }
    }
    if c.n_ctx.saturating_mul(c.d_vocab) > MAX_DIM {
        return bad(format!(
            "n_ctx × d_vocab = {} × {} is above routecert's limit of {MAX_DIM}",
            c.n_ctx, c.d_vocab
        ));
    }
    let shapes = tensors::expected_shapes(c).or_else(bad)?;
    if let Some((name, _)) = shapes.iter().find(|(_, s)| {
        s.iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .is_none_or(|n| n > MAX_ELEMENTS)
    }) {
        return bad(format!(
            "tensor {name} would have more than {MAX_ELEMENTS} elements"
        ));
    }
    if shapes != c.shapes {
        let name = shapes
            .keys()
            .chain(c.shapes.keys())
            .find(|n| shapes.get(*n) != c.shapes.get(*n))
            .expect("the maps differ");
        return bad(format!(
            "shapes[\"{name}\"] is {:?}, but the other fields make it {:?}",
            c.shapes.get(name),
            shapes.get(name)
        ));
    }
    Ok(shapes)
}

fn expert_names(c: &Config) -> Vec<(String, usize)> {
    if c.model == "dense" {
        vec![("ffn".into(), c.d_mlp)]
    } else {
        c.experts
            .iter()
            .map(|e| (e.name.clone(), e.d_mlp))
            .collect()
    }
}

fn check_names(n: &Names, c: &Config, path: &Path) -> Result<(), ModelFileError> {
    let bad = |m: String| Err(ModelFileError::json(path, m));
    if n.residual.len() != c.d_model {
        return bad(format!(
            "{} residual names for d_model {}",
            n.residual.len(),
            c.d_model
        ));
    }
    if n.heads.len() != c.n_heads {
        return bad(format!("{} heads for n_heads {}", n.heads.len(), c.n_heads));
    }
    for h in &n.heads {
        if h.qk.len() > c.d_head || h.values.len() > c.d_head {
            return bad(format!(
                "head {}: a space is wider than d_head {}",
                h.name, c.d_head
            ));
        }
    }
    let want = expert_names(c);
    if n.experts.len() != want.len() {
        return bad(format!(
            "{} experts, config.json has {}",
            n.experts.len(),
            want.len()
        ));
    }
    for (e, (name, width)) in n.experts.iter().zip(&want) {
        if c.model == "moe" && &e.name != name {
            return bad(format!(
                "expert \"{}\" is \"{name}\" in config.json",
                e.name
            ));
        }
        if e.neurons.len() != *width {
            return bad(format!(
                "expert {}: {} neurons for d_mlp {width}",
                e.name,
                e.neurons.len()
            ));
        }
    }
    Ok(())
}

/// Names for a file without names.json: coordinates by index.
fn default_names(c: &Config) -> Names {
    Names {
        residual: (0..c.d_model).map(|i| format!("r{i}")).collect(),
        heads: (0..c.n_heads)
            .map(|h| HeadNames {
                name: format!("head{h}"),
                qk: (0..c.d_head).map(|i| format!("q{i}")).collect(),
                values: (0..c.d_head).map(|i| format!("v{i}")).collect(),
            })
            .collect(),
        experts: expert_names(c)
            .into_iter()
            .map(|(name, width)| ExpertNames {
                neurons: (0..width)
                    .map(|n| NeuronNames {
                        name: format!("{name}/{n}"),
                        role: "semantic".into(),
                    })
                    .collect(),
                name,
            })
            .collect(),
    }
}

/// The dense model's circuits from config.json alone: neurons known, gates
/// Γ_k unknown (empty; only `inspect` shows them).
pub fn circuits_without_gates(c: &Config) -> Vec<Circuit<Rat>> {
    c.circuits
        .iter()
        .map(|k| Circuit {
            name: k.name.clone(),
            neurons: k.neurons.clone(),
            gate: SparseVec::default(),
            gate_weight: vec![Rat::zero(); k.neurons.len()],
            unexcluded: Vec::new(),
        })
        .collect()
}

/// A float of `dtype` at element `i` of `data`, as an exact rational.
fn element(dtype: StDtype, data: &[u8], i: usize) -> Option<f64> {
    let at = |n: usize| &data[i * n..(i + 1) * n];
    Some(match dtype {
        StDtype::F64 => f64::from_le_bytes(at(8).try_into().ok()?),
        StDtype::F32 => f32::from_le_bytes(at(4).try_into().ok()?) as f64,
        StDtype::BF16 => half::bf16::from_le_bytes(at(2).try_into().ok()?).to_f64(),
        StDtype::F16 => half::f16::from_le_bytes(at(2).try_into().ok()?).to_f64(),
        _ => return None,
    })
}

fn float_dtype(dtype: StDtype) -> bool {
    matches!(
        dtype,
        StDtype::F64 | StDtype::F32 | StDtype::BF16 | StDtype::F16
    )
}

fn exact_value(x: f64, path: &Path, name: &str) -> Result<Option<Rat>, ModelFileError> {
    if !x.is_finite() {
        return Err(ModelFileError::tensor(path, name, format!("holds {x}")));
    }
    Ok((x != 0.0).then(|| Rat::from_float(x).expect("finite")))
}

fn unflatten(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        index[d] = flat % shape[d];
        flat /= shape[d];
    }
    index
}

fn read_safetensors(
    bytes: &[u8],
    c: &Config,
    shapes: &BTreeMap<String, Vec<usize>>,
    path: &Path,
) -> Result<Tensors, ModelFileError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| ModelFileError::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let sparse = c.layout == "sparse";
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| ModelFileError::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if let Some(l) = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("routecert.layout"))
        && l != &c.layout
    {
        return Err(ModelFileError::Safetensors {
            path: path.to_path_buf(),
            reason: format!(
                "metadata says layout \"{l}\", config.json says \"{}\"",
                c.layout
            ),
        });
    }
    let want: BTreeSet<String> = shapes
        .keys()
        .flat_map(|n| {
            if sparse {
                vec![format!("{n}.indices"), format!("{n}.values")]
            } else {
                vec![n.clone()]
            }
        })
        .collect();
    let have: BTreeSet<String> = st.names().into_iter().map(String::from).collect();
    if let Some(n) = want.difference(&have).next() {
        return Err(ModelFileError::tensor(path, n, "missing"));
    }
    if let Some(n) = have.difference(&want).next() {
        return Err(ModelFileError::tensor(
            path,
            n,
            format!(
                "not a tensor of a {} model in the {} layout",
                c.model, c.layout
            ),
        ));
    }
    let view = |n: &str| {
        st.tensor(n)
            .map_err(|e| ModelFileError::tensor(path, n, e.to_string()))
    };
    let mut out = Tensors::new();
    for (name, shape) in shapes {
        let mut t = Tensor::new(shape.clone());
        if sparse {
            let (iname, vname) = (format!("{name}.indices"), format!("{name}.values"));
            let (iv, vv) = (view(&iname)?, view(&vname)?);
            if iv.dtype() != StDtype::I64 {
                return Err(ModelFileError::tensor(
                    path,
                    &iname,
                    format!("dtype {:?}, expected I64", iv.dtype()),
                ));
            }
            if !float_dtype(vv.dtype()) {
                return Err(ModelFileError::tensor(
                    path,
                    &vname,
                    format!("dtype {:?}, expected F64, F32, BF16 or F16", vv.dtype()),
                ));
            }
            let nnz = vv.shape().first().copied().unwrap_or(0);
            if vv.shape() != [nnz] || iv.shape() != [shape.len(), nnz] {
                return Err(ModelFileError::tensor(
                    path,
                    &iname,
                    format!(
                        "shape {:?} with values {:?}: expected [{}, nnz] and [nnz]",
                        iv.shape(),
                        vv.shape(),
                        shape.len()
                    ),
                ));
            }
            let data = iv.data();
            let idx = |d: usize, k: usize| {
                let at = (d * nnz + k) * 8;
                i64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"))
            };
            let mut last: Option<Vec<usize>> = None;
            for k in 0..nnz {
                let mut index = Vec::with_capacity(shape.len());
                for (d, &dim) in shape.iter().enumerate() {
                    let i = idx(d, k);
                    if i < 0 || i as u64 >= dim as u64 {
                        return Err(ModelFileError::tensor(
                            path,
                            &iname,
                            format!("index {i} outside dimension {d} of size {dim}"),
                        ));
                    }
                    index.push(i as usize);
                }
                if last.as_ref().is_some_and(|l| *l >= index) {
                    return Err(ModelFileError::tensor(
                        path,
                        &iname,
                        format!("indices not strictly increasing at entry {k}"),
                    ));
                }
                let x = element(vv.dtype(), vv.data(), k).expect("a float dtype");
                if let Some(v) = exact_value(x, path, &vname)? {
                    t.entries.push((index.clone(), v));
                }
                last = Some(index);
            }
        } else {
            let v = view(name)?;
            if !float_dtype(v.dtype()) {
                return Err(ModelFileError::tensor(
                    path,
                    name,
                    format!("dtype {:?}, expected F64, F32, BF16 or F16", v.dtype()),
                ));
            }
            if v.shape() != shape.as_slice() {
                return Err(ModelFileError::tensor(
                    path,
                    name,
                    format!("shape {:?}, expected {:?}", v.shape(), shape),
                ));
            }
            let (dtype, data) = (v.dtype(), v.data());
            for i in 0..t.numel() {
                let x = element(dtype, data, i).expect("a float dtype");
                if let Some(r) = exact_value(x, path, name)? {
                    t.entries.push((unflatten(i, shape), r));
                }
            }
        }
        out.insert(name.clone(), t);
    }
    Ok(out)
}

type ExactParts = (Tensors, ScoreUnit, Vec<Circuit<Rat>>);

fn exact_tensors(
    ex: &Exact,
    c: &Config,
    shapes: &BTreeMap<String, Vec<usize>>,
    path: &Path,
) -> Result<ExactParts, ModelFileError> {
    let bad = |m: String| ModelFileError::json(path, m);
    if ex.format != json::EXACT_FORMAT {
        return Err(bad(format!(
            "\"format\" is \"{}\", expected \"{}\"",
            ex.format,
            json::EXACT_FORMAT
        )));
    }
    let unit = match ex.score_unit.as_str() {
        "ln2" => ScoreUnit::Ln2,
        "natural" => ScoreUnit::Natural,
        other => {
            return Err(bad(format!(
                "score_unit \"{other}\": expected \"ln2\" or \"natural\""
            )));
        }
    };
    let rat = |s: &str, name: &str| -> Result<Rat, ModelFileError> {
        s.parse::<Rat>()
            .map_err(|_| bad(format!("tensor {name}: \"{s}\" is not a rational p/q")))
    };
    let mut out = Tensors::new();
    for (name, shape) in shapes {
        let x = ex
            .tensors
            .get(name)
            .ok_or_else(|| bad(format!("tensor {name} missing")))?;
        if &x.shape != shape {
            return Err(bad(format!(
                "tensor {name}: shape {:?}, expected {:?}",
                x.shape, shape
            )));
        }
        let mut t = Tensor::new(shape.clone());
        for e in &x.entries {
            let (value, index) = match e.split_last() {
                Some((serde_json::Value::String(v), index)) if index.len() == shape.len() => {
                    (v, index)
                }
                _ => {
                    return Err(bad(format!(
                        "tensor {name}: entry {e:?} is not [indices…, \"p/q\"]"
                    )));
                }
            };
            let index = index
                .iter()
                .zip(shape)
                .map(|(i, &dim)| i.as_u64().filter(|&i| i < dim as u64).map(|i| i as usize))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| bad(format!("tensor {name}: entry {e:?} is outside {shape:?}")))?;
            let v = rat(value, name)?;
            if !v.is_zero() {
                t.entries.push((index, v));
            }
        }
        t.entries.sort_by(|a, b| a.0.cmp(&b.0));
        if t.entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(bad(format!("tensor {name}: an entry appears twice")));
        }
        out.insert(name.clone(), t);
    }
    if let Some(n) = ex.tensors.keys().find(|n| !shapes.contains_key(*n)) {
        return Err(bad(format!("tensor {n} is not part of this model")));
    }
    let circuits = ex
        .circuits
        .iter()
        .map(|k| {
            if k.gate_weight.len() != k.neurons.len() || k.neurons.iter().any(|&n| n >= c.d_mlp) {
                return Err(bad(format!(
                    "circuit {}: neurons and gate weights disagree",
                    k.name
                )));
            }
            if let Some((i, _)) = k.gate.iter().find(|(i, _)| *i >= c.d_model) {
                return Err(bad(format!(
                    "circuit {}: gate coordinate {i} is outside d_model",
                    k.name
                )));
            }
            Ok(Circuit {
                name: k.name.clone(),
                neurons: k.neurons.clone(),
                gate: SparseVec::from_entries(
                    k.gate
                        .iter()
                        .map(|(i, v)| Ok((*i, rat(v, "circuits")?)))
                        .collect::<Result<Vec<_>, ModelFileError>>()?,
                ),
                gate_weight: k
                    .gate_weight
                    .iter()
                    .map(|g| rat(g, "circuits"))
                    .collect::<Result<_, _>>()?,
                unexcluded: k.unexcluded.clone(),
            })
        })
        .collect::<Result<Vec<_>, ModelFileError>>()?;
    if c.model == "dense" && circuits.len() != c.circuits.len() {
        return Err(bad(format!(
            "{} circuits, config.json has {}",
            circuits.len(),
            c.circuits.len()
        )));
    }
    Ok((out, unit, circuits))
}
