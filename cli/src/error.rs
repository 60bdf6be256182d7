//! The command's error type: every failure is one line naming the problem.

use std::path::Path;

/// What can go wrong in a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A data file is malformed.
    #[error("{path}: {detail}")]
    Data {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// Writing the command's output failed (a closed pipe ends the command quietly).
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// A command-line value is invalid.
    #[error("{0}")]
    Usage(String),
    /// A linear model failed.
    #[error(transparent)]
    Linear(#[from] fheml_models_linear::LinearError),
    /// A tree model failed.
    #[error(transparent)]
    Tree(#[from] fheml_models_tree::TreeError),
    /// A neural network failed.
    #[error(transparent)]
    Nn(#[from] fheml_models_nn::NnError),
    /// The runtime failed.
    #[error(transparent)]
    Fhe(#[from] fheml_fhe_runtime::FheError),
    /// A circuit failed.
    #[error(transparent)]
    Circuit(#[from] fheml_circuits::CircuitError),
}

impl CliError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CliError::Io { path: path.display().to_string(), source }
    }

    /// Whether this is a write to a pipe whose reader has gone (`| head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Shorthand.
pub type Result<T, E = CliError> = std::result::Result<T, E>;
