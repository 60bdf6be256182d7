//! The model-family contract. A family (linear models, trees, networks, or a new one) fits
//! models from options given by name, predicts in clear floats, and lowers a fitted model to
//! a [`ModelCircuit`] with its client-side encodings. The library, the command, the
//! benchmarks and the Python bindings only ever hold `dyn ModelFamily` and
//! `dyn FittedModel`, so adding a family is one crate plus one line in the library's
//! registry; the runtime only ever sees the [`ModelCircuit`].
//!
//! Families stay free of the TFHE runtime: what they need from it (the expected latency of
//! a candidate circuit, to size a network for a budget) comes through [`FitHooks`].

use std::any::Any;

use ndarray::{ArrayView1, ArrayView2};

use crate::model::{ModelCircuit, Task};

/// Classification or regression, as asked for before the labels are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Predicts one of a few labels.
    Classification,
    /// Predicts a real value.
    Regression,
}

impl TaskKind {
    /// `classification` (or `classifier`) or `regression` (or `regressor`), in any case.
    pub fn from_name(name: &str) -> Result<Self, FamilyError> {
        match name.to_ascii_lowercase().as_str() {
            "classification" | "classifier" => Ok(TaskKind::Classification),
            "regression" | "regressor" => Ok(TaskKind::Regression),
            other => Err(FamilyError::Invalid(format!("unknown task `{other}`; use classification or regression"))),
        }
    }

    /// The task's name.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Classification => "classification",
            TaskKind::Regression => "regression",
        }
    }

    /// Classification when every target is an integer and there are at most 20 distinct
    /// values; regression otherwise.
    pub fn infer(y: ArrayView1<f64>) -> Self {
        let mut values: Vec<f64> = y.to_vec();
        values.sort_by(f64::total_cmp);
        values.dedup();
        if values.len() <= 20 && values.iter().all(|v| v.fract() == 0.0) {
            TaskKind::Classification
        } else {
            TaskKind::Regression
        }
    }
}

/// Why a family could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum FamilyError {
    /// The request is invalid (unknown model or option, a value out of range, an option
    /// this family does not have): the caller's to fix.
    #[error("{0}")]
    Invalid(String),
    /// The family failed on valid options (bad data, training, lowering).
    #[error(transparent)]
    Model(Box<dyn std::error::Error + Send + Sync>),
}

impl FamilyError {
    /// Wraps a family's own error.
    pub fn model(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        FamilyError::Model(Box::new(error))
    }
}

/// Progress of a fit, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FitProgress {
    /// An epoch of gradient training ended.
    Epoch {
        /// Epochs done.
        epoch: usize,
        /// Epochs planned.
        of: usize,
        /// Training loss of the epoch.
        loss: f64,
    },
    /// A candidate configuration was priced (sizing for a latency budget).
    Priced {
        /// Candidates priced so far.
        candidates: usize,
    },
}

/// What a fit may ask of its caller.
pub trait FitHooks {
    /// Expected milliseconds per sample of `circuit` under encryption (the runtime's cost
    /// model); `Err` names why it does not compile.
    fn expected_ms(&mut self, circuit: &ModelCircuit) -> Result<f64, String> {
        let _ = circuit;
        Err("no cost model was given".into())
    }

    /// Reports progress.
    fn progress(&mut self, progress: FitProgress) {
        let _ = progress;
    }

    /// Reports a decision worth telling the user (one line).
    fn note(&mut self, line: &str) {
        let _ = line;
    }
}

/// Hooks that ignore everything (no cost model, no progress).
pub struct NoHooks;

impl FitHooks for NoHooks {}

/// What a fit is asked to do.
pub struct FitRequest<'a> {
    /// One of the family's [`ModelFamily::model_names`].
    pub model: &'a str,
    /// The task, or `None` to infer it from the target ([`TaskKind::infer`]).
    pub task: Option<TaskKind>,
    /// Input quantization bits, or `None` for the model's default.
    pub n_bits: Option<u8>,
    /// Hyperparameters by name (`max_depth`, `hidden`, ...), as `--set key=value` gives them.
    pub settings: &'a [(String, String)],
    /// Training rows.
    pub x: ArrayView2<'a, f64>,
    /// Training targets.
    pub y: ArrayView1<'a, f64>,
    /// A latency target per sample in milliseconds, for families that size themselves by
    /// the cost model ([`FitHooks::expected_ms`]); others refuse it.
    pub budget_ms: Option<f64>,
}

impl FitRequest<'_> {
    /// The requested task, or the one the targets suggest.
    pub fn task_or_inferred(&self) -> TaskKind {
        self.task.unwrap_or_else(|| TaskKind::infer(self.y))
    }

    /// Refuses a latency budget, for families whose cost is set by their hyperparameters.
    pub fn refuse_budget(&self) -> Result<(), FamilyError> {
        match self.budget_ms {
            Some(_) => Err(FamilyError::Invalid(format!(
                "--budget-ms sizes networks; {} has no width to choose (its cost is set by its hyperparameters)",
                self.model
            ))),
            None => Ok(()),
        }
    }
}

/// A model family.
pub trait ModelFamily: Send + Sync {
    /// The family's name, recorded in saved models (never change it).
    fn name(&self) -> &'static str;

    /// The model names [`ModelFamily::fit`] accepts.
    fn model_names(&self) -> Vec<&'static str>;

    /// Whether `model` names one of this family's models (aliases included).
    fn accepts(&self, model: &str) -> bool {
        self.model_names().contains(&model)
    }

    /// Fits a model.
    fn fit(&self, request: &FitRequest<'_>, hooks: &mut dyn FitHooks) -> Result<Box<dyn FittedModel>, FamilyError>;

    /// Reads a model that [`FittedModel::to_bytes`] wrote.
    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn FittedModel>, FamilyError>;
}

/// A fitted float model of some family.
pub trait FittedModel: Send + Sync + Any {
    /// The [`ModelFamily::name`] of its family.
    fn family(&self) -> &'static str;

    /// The model's name (one of its family's [`ModelFamily::model_names`], or how it was
    /// imported).
    fn model_name(&self) -> String;

    /// Float predictions: labels (classification) or values (regression), one per row.
    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FamilyError>;

    /// Quantizes (calibrating the inputs on `calibration`, usually the training rows) and
    /// lowers to an integer circuit with the client's encodings.
    fn lower(&self, calibration: ArrayView2<f64>) -> Result<ModelCircuit, FamilyError>;

    /// The labels, or regression.
    fn task(&self) -> Task;

    /// The model's shape in a few words (`3 trees of depth 4`, `2 hidden layers`).
    fn describe(&self) -> String;

    /// Serialized model, for [`ModelFamily::decode`].
    fn to_bytes(&self) -> Result<Vec<u8>, FamilyError>;

    /// The concrete model, for family-specific reports.
    fn as_any(&self) -> &dyn Any;
}

/// The largest serialized float model [`decode_model`] reads.
pub const MAX_MODEL_BYTES: usize = 256 << 20;

/// A family's model as bytes (bincode of its serde form), for [`FittedModel::to_bytes`].
pub fn encode_model<T: serde::Serialize>(model: &T) -> Result<Vec<u8>, FamilyError> {
    bincode::serde::encode_to_vec(model, bincode::config::standard())
        .map_err(|e| FamilyError::Invalid(format!("cannot serialize the model: {e}")))
}

/// Reads what [`encode_model`] wrote, refusing trailing bytes and anything over
/// [`MAX_MODEL_BYTES`].
pub fn decode_model<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FamilyError> {
    let config = bincode::config::standard().with_limit::<MAX_MODEL_BYTES>();
    let (model, used) = bincode::serde::decode_from_slice(bytes, config)
        .map_err(|e| FamilyError::Invalid(format!("the float model does not decode: {e}")))?;
    if used != bytes.len() {
        return Err(FamilyError::Invalid(format!("the float model has {} trailing bytes", bytes.len() - used)));
    }
    Ok(model)
}
