//! The linear family by name, and what each member predicts.

use fheml_circuits::PostProcessing;

use crate::error::{LinearError, Result};

/// Every linear model fheml fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LinearModelKind {
    /// Ordinary least squares.
    Linear,
    /// L2-penalised least squares.
    Ridge,
    /// L1-penalised least squares.
    Lasso,
    /// L1 + L2-penalised least squares.
    ElasticNet,
    /// Logistic regression (binary or multinomial).
    Logistic,
    /// Linear support-vector classifier (squared hinge, one-vs-rest).
    LinearSvc,
    /// Linear support-vector regressor (squared epsilon-insensitive loss).
    LinearSvr,
    /// Logistic loss by stochastic gradient descent (one-vs-rest).
    SgdClassifier,
    /// Squared loss by stochastic gradient descent.
    SgdRegressor,
    /// Poisson GLM, log link.
    Poisson,
    /// Gamma GLM, log link.
    Gamma,
    /// Tweedie GLM, log link.
    Tweedie,
}

impl LinearModelKind {
    /// The command-line names, in the order of [`Self::ALL`].
    pub const NAMES: [&'static str; 12] = [
        "linear",
        "ridge",
        "lasso",
        "elasticnet",
        "logistic",
        "linear-svc",
        "linear-svr",
        "sgd-classifier",
        "sgd-regressor",
        "poisson",
        "gamma",
        "tweedie",
    ];

    /// Every kind.
    pub const ALL: [LinearModelKind; 12] = [
        Self::Linear,
        Self::Ridge,
        Self::Lasso,
        Self::ElasticNet,
        Self::Logistic,
        Self::LinearSvc,
        Self::LinearSvr,
        Self::SgdClassifier,
        Self::SgdRegressor,
        Self::Poisson,
        Self::Gamma,
        Self::Tweedie,
    ];

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| LinearError::UnknownModel(name.to_string()))
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|k| *k == self).unwrap_or(0)]
    }

    /// Whether the model predicts classes.
    pub fn is_classifier(self) -> bool {
        matches!(self, Self::Logistic | Self::LinearSvc | Self::SgdClassifier)
    }

    /// What the client computes from the decrypted scores.
    pub fn post_processing(self, n_classes: usize) -> PostProcessing {
        match self {
            Self::Logistic | Self::SgdClassifier if n_classes <= 2 => PostProcessing::Sigmoid,
            Self::Logistic | Self::SgdClassifier => PostProcessing::Softmax,
            Self::LinearSvc if n_classes <= 2 => PostProcessing::Sign,
            Self::LinearSvc => PostProcessing::Argmax,
            Self::Poisson | Self::Gamma | Self::Tweedie => PostProcessing::Exp,
            _ => PostProcessing::Identity,
        }
    }
}
