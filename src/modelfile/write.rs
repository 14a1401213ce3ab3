//! `routecert export`: a model directory written in full to a temporary
//! sibling, then renamed into place, so a failure leaves nothing behind.

use super::decide::{self, Decided, F32Check};
use super::error::ModelFileError;
use super::json::{
    self, CircuitConfig, Config, Decisions, Exact, ExactCircuit, ExactTensor, ExpertConfig,
    ExpertNames, HeadNames, Names, NeuronNames, Precision, PrefixDecision, RouterConfig,
};
use super::tensors::{self, B_Q, Tensor, Tensors, W_Q};
use super::{Dtype, Layout, dense_bytes, sha256_hex};
use crate::construct::scale;
use crate::model::{Model, NeuronRole, ScoreUnit};
use crate::scalar::{Rat, Scalar};
use crate::taskset::TaskSet;
use num_bigint::BigInt;
use num_traits::One;
use num_traits::Zero;
use safetensors::tensor::{Dtype as StDtype, View};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `export` chooses the sparse layout when the dense file would be larger.
pub const SPARSE_ABOVE: u64 = 256 << 20;
/// A dense layout larger than this is refused: it would have to be built in
/// memory, and no one loads a file this size to run a few thousand weights.
pub const DENSE_LIMIT: u64 = 4 << 30;
/// decisions.json carries f64 logits when prefixes × d_vocab is at most this.
pub const LOGITS_UP_TO: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub dtype: Dtype,
    /// None: dense up to [`SPARSE_ABOVE`], sparse above.
    pub layout: Option<Layout>,
    /// Replace a non-empty DIR; write an f32 file that flips decisions.
    pub force: bool,
    /// The construction's router mode, as reports print it ("none": dense).
    pub router_mode: String,
    /// Re-centre and rescale the router first ([`crate::construct::scale`]):
    /// the file then holds that router, every decision unchanged.
    pub scale_router: bool,
}

/// What `--scale-router` did to the router (exact).
#[derive(Debug, Clone, PartialEq)]
pub struct RouterScaling {
    /// The largest |router weight or bias| before and after.
    pub max_before: Rat,
    pub max_after: Rat,
    /// Every router margin was multiplied by this.
    pub factor: Rat,
    /// The smallest router margin before and after.
    pub margin_before: Option<Rat>,
    pub margin_after: Option<Rat>,
}

/// What an export wrote and measured.
#[derive(Debug, Clone)]
pub struct Summary {
    pub dir: PathBuf,
    pub layout: Layout,
    pub dtype: Dtype,
    /// Bytes of model.safetensors (as written) and of a dense layout.
    pub safetensors_bytes: u64,
    pub dense_bytes: u64,
    pub nonzeros: usize,
    pub prefixes: usize,
    /// The largest |weight| of the float file (W_Q with its ln 2).
    pub max_weight: f64,
    /// The smallest exact router margin and logit margin over all prefixes.
    pub min_router_margin: Option<Rat>,
    pub min_logit_margin: Option<Rat>,
    /// f32 exports: how the f32 forward pass compared.
    pub f32: Option<F32Check>,
    /// The largest |weight| of each tensor of the float file, by name.
    pub max_by_tensor: BTreeMap<String, f64>,
    /// `--scale-router`: what it did.
    pub scaling: Option<RouterScaling>,
}

/// A tensor ready for safetensors.
struct Raw {
    dtype: StDtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> StDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The float the file stores for an exact weight of tensor `name`.
fn float_of(name: &str, v: &Rat, unit: ScoreUnit) -> f64 {
    let x = <f64 as Scalar>::from_rat(v);
    if unit == ScoreUnit::Ln2 && (name == W_Q || name == B_Q) {
        x * std::f64::consts::LN_2
    } else {
        x
    }
}

fn encode(x: f64, dtype: Dtype, out: &mut Vec<u8>) {
    match dtype {
        Dtype::F64 => out.extend(x.to_le_bytes()),
        Dtype::F32 => out.extend((x as f32).to_le_bytes()),
    }
}

/// Every tensor as its file values (f64 before the dtype's rounding).
fn floats(t: &Tensors, unit: ScoreUnit) -> Result<BTreeMap<String, Vec<f64>>, ModelFileError> {
    let mut out = BTreeMap::new();
    for (name, x) in t {
        let values: Vec<f64> = x
            .entries
            .iter()
            .map(|(_, v)| float_of(name, v, unit))
            .collect();
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(ModelFileError::Refused(format!(
                "tensor {name}: weight {} does not fit a float",
                x.entries[at].1
            )));
        }
        out.insert(name.clone(), values);
    }
    Ok(out)
}

fn raw_tensors(
    t: &Tensors,
    values: &BTreeMap<String, Vec<f64>>,
    dtype: Dtype,
    layout: Layout,
) -> Vec<(String, Raw)> {
    let st = match dtype {
        Dtype::F64 => StDtype::F64,
        Dtype::F32 => StDtype::F32,
    };
    let mut out = Vec::new();
    for (name, x) in t {
        let vals = &values[name];
        match layout {
            Layout::Dense => {
                let size = dtype.size();
                let mut data = vec![0u8; x.numel() * size];
                let mut one = Vec::with_capacity(size);
                for ((index, _), v) in x.entries.iter().zip(vals) {
                    let flat = index
                        .iter()
                        .zip(&x.shape)
                        .fold(0, |acc, (i, d)| acc * d + i);
                    one.clear();
                    encode(*v, dtype, &mut one);
                    data[flat * size..(flat + 1) * size].copy_from_slice(&one);
                }
                out.push((
                    name.clone(),
                    Raw {
                        dtype: st,
                        shape: x.shape.clone(),
                        data,
                    },
                ));
            }
            Layout::Sparse => {
                let nnz = x.entries.len();
                let mut indices = Vec::with_capacity(x.shape.len() * nnz * 8);
                for d in 0..x.shape.len() {
                    for (index, _) in &x.entries {
                        indices.extend((index[d] as i64).to_le_bytes());
                    }
                }
                let mut data = Vec::with_capacity(nnz * dtype.size());
                for v in vals {
                    encode(*v, dtype, &mut data);
                }
                out.push((
                    format!("{name}.indices"),
                    Raw {
                        dtype: StDtype::I64,
                        shape: vec![x.shape.len(), nnz],
                        data: indices,
                    },
                ));
                out.push((
                    format!("{name}.values"),
                    Raw {
                        dtype: st,
                        shape: vec![nnz],
                        data,
                    },
                ));
            }
        }
    }
    out
}

fn role(r: NeuronRole) -> String {
    match r {
        NeuronRole::Syntactic => "syntactic",
        NeuronRole::Semantic => "semantic",
    }
    .to_string()
}

pub fn config(
    m: &Model<Rat>,
    t: &Tensors,
    dtype: Dtype,
    layout: Layout,
    router_mode: &str,
) -> Config {
    let dense = !m.circuits.is_empty();
    Config {
        n_layers: 1,
        d_model: m.residual.len(),
        n_ctx: m.max_len,
        d_head: tensors::d_head(m),
        n_heads: m.heads.len(),
        d_mlp: m.experts.iter().map(|e| e.neurons.len()).max().unwrap_or(0),
        d_vocab: m.vocab.len(),
        act_fn: "relu".into(),
        normalization_type: None,
        positional_embedding_type: "standard".into(),
        use_attn_scale: false,
        attn_only: false,
        default_prepend_bos: false,
        tokenizer_name: None,
        format: json::FORMAT.into(),
        model: m.kind().into(),
        layout: layout.name().into(),
        dtype: dtype.name().into(),
        vocab: m.vocab.clone(),
        eos_token: m
            .vocab
            .iter()
            .find(|t| t.as_str() == crate::spec::EOS)
            .cloned(),
        experts: if dense {
            Vec::new()
        } else {
            m.experts
                .iter()
                .map(|e| ExpertConfig {
                    name: e.name.clone(),
                    d_mlp: e.neurons.len(),
                })
                .collect()
        },
        circuits: m
            .circuits
            .iter()
            .map(|c| CircuitConfig {
                name: c.name.clone(),
                neurons: c.neurons.clone(),
            })
            .collect(),
        router: Some(RouterConfig {
            mode: Some(router_mode.to_string()),
            inputs: m.router.inputs.clone(),
            reads: m.router.synthesis.reads.clone(),
            converged: m.router.synthesis.converged,
            epochs: m.router.synthesis.epochs,
            misrouted: m.router.synthesis.misrouted,
            forced: m.router.synthesis.forced,
            synthesis: m.router.synthesis.method.clone(),
        }),
        tokenization: Some(
            "split the text on whitespace; from left to right take the longest run of words that is one vocabulary token (entities may be several words); ids index \"vocab\"".into(),
        ),
        shapes: t.iter().map(|(n, x)| (n.clone(), x.shape.clone())).collect(),
        precision: None,
    }
}

pub fn names(m: &Model<Rat>) -> Names {
    let all = |b: &crate::model::Basis| (0..b.len()).map(|i| b.name(i).to_string()).collect();
    Names {
        residual: all(&m.residual),
        heads: m
            .heads
            .iter()
            .map(|h| HeadNames {
                name: h.name.clone(),
                qk: all(&h.qk),
                values: all(&h.values),
            })
            .collect(),
        experts: m
            .experts
            .iter()
            .map(|e| ExpertNames {
                name: e.name.clone(),
                neurons: e
                    .neurons
                    .iter()
                    .map(|n| NeuronNames {
                        name: n.name.clone(),
                        role: role(n.role),
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub fn exact(m: &Model<Rat>, t: &Tensors, sha: String) -> Exact {
    let entry = |index: &[usize], v: &Rat| {
        let mut e: Vec<serde_json::Value> = index.iter().map(|&i| i.into()).collect();
        e.push(v.to_string().into());
        e
    };
    Exact {
        format: json::EXACT_FORMAT.into(),
        score_unit: match m.score_unit {
            ScoreUnit::Ln2 => "ln2",
            ScoreUnit::Natural => "natural",
        }
        .into(),
        safetensors_sha256: sha,
        tensors: t
            .iter()
            .map(|(n, x): (&String, &Tensor)| {
                (
                    n.clone(),
                    ExactTensor {
                        shape: x.shape.clone(),
                        entries: x.entries.iter().map(|(i, v)| entry(i, v)).collect(),
                    },
                )
            })
            .collect(),
        circuits: m
            .circuits
            .iter()
            .map(|c| ExactCircuit {
                name: c.name.clone(),
                neurons: c.neurons.clone(),
                gate: c
                    .gate
                    .entries()
                    .iter()
                    .map(|(i, v)| (*i, v.to_string()))
                    .collect(),
                gate_weight: c.gate_weight.iter().map(|g| g.to_string()).collect(),
                unexcluded: c.unexcluded.clone(),
            })
            .collect(),
    }
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> ModelFileError {
    let path = path.to_path_buf();
    move |source| ModelFileError::Io {
        path,
        action,
        source,
    }
}

/// safetensors writes its `__metadata__` from a HashMap, so in an order
/// that changes from run to run; rewrite it in key order (the same keys and
/// values, so the same length and offsets): the same model is then the
/// same bytes, and exact.json's sha256 of them the same file.
fn sorted_metadata(bytes: &mut [u8], metadata: &BTreeMap<String, String>) {
    const AT: &[u8] = b"{\"__metadata__\":";
    let sorted = serde_json::to_vec(metadata).expect("strings serialise");
    let start = 8 + AT.len();
    let Some(found) = bytes.get(start..start + sorted.len()) else {
        return;
    };
    let same = bytes[8..start] == *AT
        && serde_json::from_slice::<BTreeMap<String, String>>(found)
            .ok()
            .as_ref()
            == Some(metadata);
    if same {
        bytes[start..start + sorted.len()].copy_from_slice(&sorted);
    }
}

/// Refuse a DIR that exists and holds files (unless forced) or is a file.
fn check_target(dir: &Path, force: bool) -> Result<(), ModelFileError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(ModelFileError::NotEmpty(dir.to_path_buf()));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(dir, "cannot use as the output directory")(e)),
    }
}

fn min_of(values: impl Iterator<Item = Rat>) -> Option<Rat> {
    values.reduce(|a, b| if b < a { b } else { a })
}

/// Build every file of the export in memory and check it (the f32 forward
/// pass for `--dtype f32`), then write the directory.
pub fn export(
    model: &Model<Rat>,
    ts: &TaskSet,
    spec_bytes: &[u8],
    dir: &Path,
    opts: &ExportOptions,
) -> Result<Summary, ModelFileError> {
    check_target(dir, opts.force)?;
    let with_logits = ts.prefixes.len().saturating_mul(model.vocab.len()) <= LOGITS_UP_TO;
    let t = tensors::from_model(model);
    let dense_size = dense_bytes(&t, opts.dtype);
    let layout = opts.layout.unwrap_or(if dense_size > SPARSE_ABOVE {
        Layout::Sparse
    } else {
        Layout::Dense
    });
    if layout == Layout::Dense && dense_size > DENSE_LIMIT {
        return Err(ModelFileError::Refused(format!(
            "--layout dense: the dense file would be {:.1} GB (above the {} GiB limit); use --layout sparse",
            dense_size as f64 / 1e9,
            DENSE_LIMIT >> 30
        )));
    }
    // Refuse weights no float holds before any forward pass.
    floats(&t, model.score_unit)?;
    let (prefixes, decided) = decide::exact(ts, model, with_logits)?;
    let scaled = if opts.scale_router && model.circuits.is_empty() && model.experts.len() > 1 {
        Some(scale_router(ts, model, &decided, &prefixes, with_logits)?)
    } else {
        None
    };
    let (model, prefixes, decided, scaling) = match scaled {
        Some((m, p, d, s)) => (std::borrow::Cow::Owned(m), p, d, Some(s)),
        None => (std::borrow::Cow::Borrowed(model), prefixes, decided, None),
    };
    let model: &Model<Rat> = &model;
    let t = if scaling.is_some() {
        tensors::from_model(model)
    } else {
        t
    };
    let values = floats(&t, model.score_unit)?;
    let max_by_tensor: BTreeMap<String, f64> = values
        .iter()
        .map(|(n, v)| (n.clone(), v.iter().fold(0.0f64, |a, x| a.max(x.abs()))))
        .collect();
    let max_weight = max_by_tensor.values().fold(0.0f64, |a, v| a.max(*v));
    // f64-finite is not f32-finite: a weight above f32's largest value would
    // become ∞ in the file (router weights grow with every layer of the
    // max-margin synthesis), so say which tensor and refuse.
    if opts.dtype == Dtype::F32
        && let Some((name, top)) = max_by_tensor.iter().find(|(_, v)| **v > f32::MAX as f64)
    {
        return Err(ModelFileError::Refused(format!(
            "--dtype f32: tensor {name} holds a weight of {top:e}, above f32's largest value {:e}",
            f32::MAX
        )));
    }
    let min_router_margin = min_of(
        decided
            .iter()
            .filter_map(|d: &Decided<Rat>| d.router_margin.clone()),
    );
    let min_logit_margin = min_of(decided.iter().filter_map(|d| d.logit_margin.clone()));
    let f32_check = match opts.dtype {
        Dtype::F64 => None,
        Dtype::F32 => {
            let check = decide::check_f32(ts, &file_model_f32(&t, &values, model)?, &prefixes)?;
            if check.flips > 0 && !opts.force {
                return Err(ModelFileError::Refused(format!(
                    "--dtype f32: the f32 forward pass flips {} of {} decisions ({}{}); not written (--force writes it anyway; --router-synthesis max-margin builds a router whose margins f32 resolves, docs/export.md)",
                    check.flips,
                    prefixes.len(),
                    check.named.join("; "),
                    if check.flips > check.named.len() {
                        "; …"
                    } else {
                        ""
                    }
                )));
            }
            Some(check)
        }
    };
    let raws = raw_tensors(&t, &values, opts.dtype, layout);
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("routecert.layout".to_string(), layout.name().to_string()),
    ]);
    let mut bytes = safetensors::serialize(
        raws.iter().map(|(n, r)| (n.as_str(), r)),
        Some(metadata.clone().into_iter().collect()),
    )
    .map_err(|e| ModelFileError::Refused(format!("model.safetensors: {e}")))?;
    sorted_metadata(&mut bytes, &metadata);
    let sha = sha256_hex(&bytes);
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("model.safetensors", bytes),
        (
            "config.json",
            pretty(&Config {
                precision: Some(Precision {
                    max_abs_weight: max_weight,
                    max_abs_by_tensor: max_by_tensor.clone(),
                    min_router_margin: min_router_margin.as_ref().map(ToString::to_string),
                    min_logit_margin: min_logit_margin.as_ref().map(ToString::to_string),
                    router_scaled: scaling.as_ref().map(|s| s.factor.to_string()),
                    f32_flips: f32_check.as_ref().map(|c| c.flips),
                }),
                ..config(model, &t, opts.dtype, layout, &opts.router_mode)
            }),
        ),
        ("names.json", pretty(&names(model))),
        ("exact.json", compact(&exact(model, &t, sha))),
        (
            "decisions.json",
            compact(&Decisions {
                spec_sha256: sha256_hex(spec_bytes),
                model: model.kind().into(),
                prefixes,
            }),
        ),
    ];
    let safetensors_bytes = files[0].1.len() as u64;
    write_dir(dir, &files)?;
    Ok(Summary {
        dir: dir.to_path_buf(),
        layout,
        dtype: opts.dtype,
        safetensors_bytes,
        dense_bytes: dense_size,
        nonzeros: t.values().map(|x| x.entries.len()).sum(),
        prefixes: ts.prefixes.len(),
        max_weight,
        min_router_margin,
        min_logit_margin,
        f32: f32_check,
        max_by_tensor,
        scaling,
    })
}

type Scaled = (
    Model<Rat>,
    Vec<PrefixDecision>,
    Vec<Decided<Rat>>,
    RouterScaling,
);

/// `--scale-router`: the model with its router centred and made the
/// smallest integers whose every margin is ≥ 1 along its direction, then
/// decided again exactly (the scaled model is the one exported): every
/// routed expert and argmax set must be the original's, every margin the
/// original's times the factor, or the export stops.
fn scale_router(
    ts: &TaskSet,
    model: &Model<Rat>,
    decided: &[Decided<Rat>],
    prefixes: &[PrefixDecision],
    with_logits: bool,
) -> Result<Scaled, ModelFileError> {
    let margin_before = min_of(decided.iter().filter_map(|d| d.router_margin.clone()));
    let (router, reduced) = scale::reduce(&model.router);
    let lift = margin_before
        .as_ref()
        .map_or_else(BigInt::one, |m| scale::lift(&(m * &reduced.factor)));
    let factor = &reduced.factor * Rat::from_integer(lift.clone());
    let router = if lift.is_one() {
        router
    } else {
        scale::times(&router, &Rat::from_integer(lift))
    };
    let mut scaled = model.clone();
    scaled.router = router;
    let (again, decided_again) = decide::exact(ts, &scaled, with_logits)?;
    for (i, (a, b)) in decided.iter().zip(&decided_again).enumerate() {
        let margin = |d: &Decided<Rat>| d.router_margin.clone();
        if a.expert != b.expert
            || a.argmax != b.argmax
            || margin(a).map(|m| m * &factor) != margin(b)
        {
            return Err(ModelFileError::Refused(format!(
                "--scale-router changed the decision on \"{}\" (a bug: scaling must keep every decision)",
                prefixes[i].text
            )));
        }
    }
    let scaling = RouterScaling {
        max_before: reduced.max_before,
        max_after: scale::max_abs(&scaled.router),
        margin_after: margin_before.as_ref().map(|m| m * &factor),
        factor,
        margin_before,
    };
    Ok((scaled, again, decided_again, scaling))
}

/// The model an f32 file holds: its f32 weights taken exactly, natural-unit
/// scores (what a reader of the floats alone gets).
fn file_model_f32(
    t: &Tensors,
    values: &BTreeMap<String, Vec<f64>>,
    model: &Model<Rat>,
) -> Result<Model<Rat>, ModelFileError> {
    let mut rounded = t.clone();
    for (name, x) in rounded.iter_mut() {
        for ((_, v), f) in x.entries.iter_mut().zip(&values[name]) {
            *v = Rat::from_float(*f as f32 as f64).expect("finite, checked");
        }
        x.entries.retain(|(_, v)| !v.is_zero());
    }
    let config = config(model, t, Dtype::F32, Layout::Sparse, "");
    let names = names(model);
    let circuits = super::read::circuits_without_gates(&config);
    tensors::to_model(
        &rounded,
        tensors::Parts {
            config: &config,
            names: &names,
            names_file: Path::new("names.json"),
            tensor_file: Path::new("model.safetensors"),
            score_unit: ScoreUnit::Natural,
            circuits,
        },
    )
}

fn pretty<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_vec_pretty(v).expect("model JSON serialises");
    s.push(b'\n');
    s
}

fn compact<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut s = serde_json::to_vec(v).expect("model JSON serialises");
    s.push(b'\n');
    s
}

/// Write every file into a temporary sibling of `dir`, then rename it into
/// place (an existing `dir`, allowed by --force, is moved aside first and
/// removed last).
fn write_dir(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<(), ModelFileError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tmp = parent.join(format!(".{base}.routecert-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io(dir, "cannot write (creating a temporary sibling)"))?;
    let cleanup = |e: ModelFileError| {
        let _ = std::fs::remove_dir_all(&tmp);
        e
    };
    for (name, bytes) in files {
        std::fs::write(tmp.join(name), bytes)
            .map_err(io(&dir.join(name), "cannot write"))
            .map_err(cleanup)?;
    }
    let old = parent.join(format!(".{base}.routecert-old-{}", std::process::id()));
    let existed = dir.exists();
    if existed {
        std::fs::rename(dir, &old)
            .map_err(io(dir, "cannot replace"))
            .map_err(cleanup)?;
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        if existed {
            let _ = std::fs::rename(&old, dir);
        }
        return Err(cleanup(io(dir, "cannot write")(e)));
    }
    if existed {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}
