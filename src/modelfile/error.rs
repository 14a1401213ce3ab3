//! Why a model directory could not be written or read. Every variant names
//! the file (and, where there is one, the tensor); the cli turns them into
//! one-line messages and exit code 2.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file could not be read or written at all.
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// The output directory exists and holds files.
    #[error("{0}: exists and is not empty (use --force to replace it)")]
    NotEmpty(PathBuf),
    /// model.safetensors is not a safetensors file.
    #[error("{path}: not a safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    /// One tensor of model.safetensors is wrong.
    #[error("{path}: tensor {tensor}: {reason}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// A JSON file is missing, unparsable, or says something inconsistent.
    #[error("{path}: {reason}")]
    Json { path: PathBuf, reason: String },
    /// The model's vocabulary lacks a token of the spec.
    #[error("{path}: the model's vocabulary has no token \"{token}\" (a token of the spec)")]
    MissingToken { path: PathBuf, token: String },
    /// The export would be unusable or unsafe as asked.
    #[error("{0}")]
    Refused(String),
}

impl ModelFileError {
    pub(crate) fn json(path: &std::path::Path, reason: impl Into<String>) -> Self {
        ModelFileError::Json {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn tensor(path: &std::path::Path, tensor: &str, reason: impl Into<String>) -> Self {
        ModelFileError::Tensor {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            reason: reason.into(),
        }
    }
}
