//! The neural-network crate's error type.

/// Everything that can go wrong while training, importing, quantizing or lowering a network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// Quantization failed (bad bit width, constant calibration data, ...).
    #[error(transparent)]
    Quant(#[from] fheml_quant::QuantError),
    /// Building or evaluating the integer circuit failed.
    #[error(transparent)]
    Circuit(#[from] fheml_circuits::CircuitError),
    /// A hyperparameter has a value outside its range, or a value that does not parse.
    #[error("invalid hyperparameter `{name}`: {reason}")]
    InvalidParameter {
        /// The hyperparameter's name.
        name: String,
        /// Why the value is refused.
        reason: String,
    },
    /// A hyperparameter name that this model does not have.
    #[error("unknown hyperparameter `{key}` for mlp; valid names: {valid}")]
    UnknownParameter {
        /// The name given.
        key: String,
        /// The names accepted, comma-separated.
        valid: String,
    },
    /// Layers that do not fit together, or weights that are not finite.
    #[error("invalid network: {0}")]
    InvalidNetwork(String),
    /// An ONNX graph uses an operator (or an operator's form) that fheml cannot lower.
    #[error("unsupported ONNX operator `{op}` at node `{node}`: {detail}")]
    UnsupportedOp {
        /// The operator type, e.g. `MaxPool`.
        op: String,
        /// The node's name.
        node: String,
        /// What is missing or why it cannot be lowered.
        detail: String,
    },
    /// An ONNX file that cannot be read or parsed.
    #[error("cannot read ONNX model `{path}`: {detail}")]
    Onnx {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The rows are unusable: non-finite, of another width or length.
    #[error(transparent)]
    Input(#[from] fheml_quant::DataError),
    /// The training or calibration data is unusable (shapes, too few classes, ...).
    #[error("invalid data: {0}")]
    Data(String),
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, NnError>;
