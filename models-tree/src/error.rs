//! The tree crate's error type.

/// Everything that can go wrong while fitting, importing, quantizing or lowering a tree model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// Quantization failed (bad bit width, constant or empty calibration data, ...).
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
    #[error("unknown hyperparameter `{key}` for {model}; valid names: {valid}")]
    UnknownParameter {
        /// The name given.
        key: String,
        /// The model it was given to.
        model: String,
        /// The names this model accepts, comma-separated.
        valid: String,
    },
    /// A model name that is not one of the tree family.
    #[error("unknown tree model `{0}`; valid names: tree, forest, gbdt")]
    UnknownModel(String),
    /// A task name other than classification or regression.
    #[error("unknown task `{0}`; valid names: classification, regression")]
    UnknownTask(String),
    /// The rows are unusable: non-finite, of another width or length.
    #[error(transparent)]
    Input(#[from] fheml_quant::DataError),
    /// The training or prediction data is unusable (shapes, too few classes, ...).
    #[error("invalid data: {0}")]
    Data(String),
    /// An XGBoost JSON model is malformed (not JSON, a field missing or of the wrong type, an
    /// inconsistent tree).
    #[error("malformed XGBoost JSON model at `{path}`: {detail}")]
    XgboostFormat {
        /// Where in the document (a JSON path such as `learner.gradient_booster.model.trees[3]`).
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// A well-formed XGBoost model uses something fheml does not support (an objective,
    /// categorical splits, vector leaves, the DART booster, ...).
    #[error("unsupported XGBoost model: {0}")]
    XgboostUnsupported(String),
    /// An ONNX-ML model is malformed (not an ONNX protobuf, inconsistent attribute arrays, a
    /// child or weight naming a node that does not exist, over a size limit).
    #[error("malformed ONNX-ML model: {0}")]
    OnnxMlFormat(String),
    /// A well-formed ONNX model uses something the tree importer does not read (an operator,
    /// a node mode, a post_transform, an attribute), named in the message.
    #[error("unsupported ONNX-ML model: {0}")]
    OnnxMlUnsupported(String),
    /// A smartcore model's serialized form does not have the layout this crate reads.
    #[error("unexpected smartcore model layout: {0}")]
    SmartcoreLayout(String),
    /// A tree ensemble is structurally invalid (a child out of range, a cycle, a feature or output
    /// index out of range, a non-finite threshold or leaf value).
    #[error("invalid tree ensemble: {0}")]
    InvalidEnsemble(String),
    /// The training library (smartcore or hessboost) failed.
    #[error("fitting failed: {0}")]
    Fit(String),
    /// A model file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = TreeError> = std::result::Result<T, E>;

impl TreeError {
    pub(crate) fn param(name: &str, reason: impl Into<String>) -> Self {
        Self::InvalidParameter { name: name.to_string(), reason: reason.into() }
    }
}

/// Text from a file (names, and messages quoting them) made fit for a one-line error:
/// control characters escaped, at most `max` characters.
pub(crate) fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
