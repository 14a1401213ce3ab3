//! The model file (docs/model-file.md): the typed model written as
//! safetensors that PyTorch and TransformerLens load, with its names, its
//! exact rationals and routecert's decisions beside it, and read back from
//! any directory of that format — losslessly when the exact part matches the
//! tensors, otherwise from the floats, each taken as the dyadic rational it
//! is (scores then in natural units).
//!
//! - [`json`]: the JSON files as serde types;
//! - [`tensors`]: model ↔ named exact tensors;
//! - [`write`]: `routecert export`;
//! - [`read`]: DIR → `Model<Rat>`;
//! - [`decide`]: the decisions of decisions.json and the f32 check;
//! - [`error`]: what can go wrong, naming the file and tensor.

pub mod decide;
pub mod error;
pub mod json;
pub mod read;
pub mod tensors;
pub mod write;

pub use error::ModelFileError;
pub use read::{ReadModel, read};
pub use write::{ExportOptions, Summary, export};

use sha2::{Digest, Sha256};

/// The float type an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
}

impl Dtype {
    /// As config.json names it.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "float64",
            Dtype::F32 => "float32",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F64 => 8,
            Dtype::F32 => 4,
        }
    }
}

impl std::str::FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f64" | "float64" => Ok(Dtype::F64),
            "f32" | "float32" => Ok(Dtype::F32),
            other => Err(format!("unknown dtype \"{other}\": expected f64 or f32")),
        }
    }
}

/// How model.safetensors stores each tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every tensor in full, as TransformerLens loads it.
    Dense,
    /// COO: `NAME.indices` [ndim, nnz] int64 and `NAME.values` [nnz].
    Sparse,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Dense => "dense",
            Layout::Sparse => "sparse",
        }
    }
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dense" => Ok(Layout::Dense),
            "sparse" => Ok(Layout::Sparse),
            other => Err(format!(
                "unknown layout \"{other}\": expected dense or sparse"
            )),
        }
    }
}

/// The tensor bytes of a dense-layout file of these tensors.
pub fn dense_bytes(t: &tensors::Tensors, dtype: Dtype) -> u64 {
    t.values()
        .map(|x| x.numel() as u64 * dtype.size() as u64)
        .sum()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
