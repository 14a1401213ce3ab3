//! The JSON files of a model directory (docs/model-file.md), as serde types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FORMAT: &str = "routecert-model/1";
pub const EXACT_FORMAT: &str = "routecert-exact/1";

/// config.json: the `HookedTransformerConfig` fields, then routecert's own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub n_layers: usize,
    pub d_model: usize,
    pub n_ctx: usize,
    pub d_head: usize,
    pub n_heads: usize,
    pub d_mlp: usize,
    pub d_vocab: usize,
    pub act_fn: String,
    pub normalization_type: Option<String>,
    pub positional_embedding_type: String,
    pub use_attn_scale: bool,
    pub attn_only: bool,
    pub default_prepend_bos: bool,
    pub tokenizer_name: Option<String>,
    pub format: String,
    /// "moe" or "dense".
    pub model: String,
    /// "dense" or "sparse".
    pub layout: String,
    /// "float64", "float32", "bfloat16" or "float16".
    pub dtype: String,
    pub vocab: Vec<String>,
    #[serde(default)]
    pub eos_token: Option<String>,
    /// MoE: the experts in tensor order.
    #[serde(default)]
    pub experts: Vec<ExpertConfig>,
    /// Dense: the circuits (neuron indices into the one FFN).
    #[serde(default)]
    pub circuits: Vec<CircuitConfig>,
    #[serde(default)]
    pub router: Option<RouterConfig>,
    #[serde(default)]
    pub tokenization: Option<String>,
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// How close the export is to a float format's limits (messages only;
    /// readers ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
}

/// config.json's `precision`: the float file's largest |weight| (overall
/// and per tensor) and the smallest exact margins, as exact strings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Precision {
    pub max_abs_weight: f64,
    pub max_abs_by_tensor: BTreeMap<String, f64>,
    pub min_router_margin: Option<String>,
    pub min_logit_margin: Option<String>,
    /// `--scale-router`: the factor every router margin was multiplied by.
    pub router_scaled: Option<String>,
    /// `--dtype f32`: prefixes whose f32 decision differs from the exact one.
    pub f32_flips: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExpertConfig {
    pub name: String,
    pub d_mlp: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CircuitConfig {
    pub name: String,
    pub neurons: Vec<usize>,
}

/// What the router reads and how it was found (messages only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouterConfig {
    /// The construction's router mode as `verify` reports it ("none": dense).
    #[serde(default)]
    pub mode: Option<String>,
    /// Residual coordinates the router may read.
    pub inputs: Vec<usize>,
    pub reads: String,
    pub converged: bool,
    pub epochs: usize,
    pub misrouted: usize,
    pub forced: usize,
    /// Which synthesis found the weights ([`crate::model::Synthesis::method`];
    /// absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub synthesis: String,
}

/// names.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Names {
    pub residual: Vec<String>,
    pub heads: Vec<HeadNames>,
    pub experts: Vec<ExpertNames>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeadNames {
    pub name: String,
    pub qk: Vec<String>,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExpertNames {
    pub name: String,
    pub neurons: Vec<NeuronNames>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NeuronNames {
    pub name: String,
    /// "syntactic" or "semantic".
    pub role: String,
}

/// exact.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exact {
    pub format: String,
    /// "ln2" (constructions) or "natural".
    pub score_unit: String,
    pub safetensors_sha256: String,
    pub tensors: BTreeMap<String, ExactTensor>,
    #[serde(default)]
    pub circuits: Vec<ExactCircuit>,
}

/// Every nonzero entry: its indices, then the value as "p/q".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExactTensor {
    pub shape: Vec<usize>,
    pub entries: Vec<Vec<serde_json::Value>>,
}

/// A dense-model circuit with its gate Γ_k, exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExactCircuit {
    pub name: String,
    pub neurons: Vec<usize>,
    /// Γ_k over the residual: [coordinate, "p/q"].
    pub gate: Vec<(usize, String)>,
    pub gate_weight: Vec<String>,
    /// Prefixes gate synthesis could not exclude, with the reason.
    pub unexcluded: Vec<(String, String)>,
}

/// decisions.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decisions {
    pub spec_sha256: String,
    pub model: String,
    pub prefixes: Vec<PrefixDecision>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrefixDecision {
    pub text: String,
    pub tokens: Vec<usize>,
    /// MoE: the routed expert e*.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expert: Option<usize>,
    /// Every token with the top logit, ascending.
    pub argmax: Vec<usize>,
    /// The exact logits rounded to f64, over the whole vocabulary (only
    /// when prefixes × d_vocab ≤ 10^6).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logits: Option<Vec<f64>>,
}
