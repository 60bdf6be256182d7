//! The linear crate's error type.

/// What can go wrong while fitting, importing or compiling a linear model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinearError {
    /// Quantization failed (NaN, wrong feature count, bad bit width, ...).
    #[error(transparent)]
    Quant(#[from] fheml_quant::QuantError),
    /// Lowering to a circuit failed.
    #[error(transparent)]
    Circuit(#[from] fheml_circuits::CircuitError),
    /// The training data is unusable.
    #[error("invalid training data: {0}")]
    Data(String),
    /// A hyperparameter is out of range, unknown, or not a number.
    #[error("invalid hyperparameter: {0}")]
    Param(String),
    /// The model name is not one of the linear family.
    #[error("unknown linear model `{0}`; valid names: {names}", names = crate::LinearModelKind::NAMES.join(", "))]
    UnknownModel(String),
    /// The underlying solver failed.
    #[error("fitting failed: {0}")]
    Fit(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = LinearError> = std::result::Result<T, E>;
