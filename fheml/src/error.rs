//! The library's error type: every failure is one line naming the problem.

use std::path::Path;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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
    /// A value given by the user (an option, a model name, a command-line value) is invalid.
    #[error("{0}")]
    Usage(String),
    /// A model family outside this workspace failed.
    #[error(transparent)]
    Family(Box<dyn std::error::Error + Send + Sync>),
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

impl From<fheml_circuits::FamilyError> for Error {
    /// Keeps the built-in families' typed errors.
    fn from(e: fheml_circuits::FamilyError) -> Self {
        use fheml_circuits::FamilyError;
        match e {
            FamilyError::Invalid(detail) => Error::Usage(detail),
            FamilyError::Model(e) => match e.downcast::<fheml_models_linear::LinearError>() {
                Ok(e) => Error::Linear(*e),
                Err(e) => match e.downcast::<fheml_models_tree::TreeError>() {
                    Ok(e) => Error::Tree(*e),
                    Err(e) => match e.downcast::<fheml_models_nn::NnError>() {
                        Ok(e) => Error::Nn(*e),
                        Err(e) => Error::Family(e),
                    },
                },
            },
        }
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }

    /// Whether this is a write to a pipe whose reader has gone (`| head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
