//! The crate's error type.

/// What can go wrong while fitting, importing, predicting with or compiling a linear model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinearError {
    /// Calibrating or applying a quantizer failed.
    #[error(transparent)]
    Quant(#[from] fheml_quant::QuantError),
    /// Building the integer circuit failed.
    #[error(transparent)]
    Circuit(#[from] fheml_circuits::CircuitError),
    /// The rows are unusable: empty, non-finite, of another width or length.
    #[error(transparent)]
    Data(#[from] fheml_quant::DataError),
    /// The targets do not suit the model (a single class, negative counts, ...).
    #[error("invalid targets for {model}: {reason}")]
    InvalidTargets {
        /// The model's command-line name.
        model: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A hyperparameter value is out of range or does not parse.
    #[error("invalid value `{value}` for `{name}`: expected {expected}")]
    InvalidParam {
        /// The hyperparameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What the value must be.
        expected: String,
    },
    /// A hyperparameter the model does not have.
    #[error("unknown option `{key}` for {model}; valid options: {}", valid.join(", "))]
    UnknownOption {
        /// The model's command-line name.
        model: &'static str,
        /// The option given.
        key: String,
        /// The options the model has.
        valid: Vec<&'static str>,
    },
    /// A model name outside the linear family.
    #[error("unknown linear model `{name}`; valid names: {}", crate::LinearModelKind::NAMES.join(", "))]
    UnknownModel {
        /// The name given.
        name: String,
    },
    /// Imported coefficients have inconsistent shapes or values.
    #[error("invalid coefficients: {0}")]
    Coefficients(String),
    /// The model has no such output (e.g. probabilities from a margin classifier).
    #[error("{model} does not support {what}")]
    Unsupported {
        /// The model's command-line name.
        model: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// The solver failed (singular system, divergence, rejected input).
    #[error("fitting {model} failed: {detail}")]
    Solver {
        /// The model's command-line name.
        model: &'static str,
        /// What happened.
        detail: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = LinearError> = std::result::Result<T, E>;
