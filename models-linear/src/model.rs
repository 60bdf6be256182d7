//! A fitted or imported linear model of any kind: float predictions, and its circuit.

use fheml_circuits::{ModelCircuit, PostProcessing, Prediction, Task};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::coefficients::LinearCoefficients;
use crate::data::{check_prediction_input, check_training, encode_classes};
use crate::error::{LinearError, Result};
use crate::fit::{Target, check_glm_targets, fit};
use crate::kind::LinearModelKind;
use crate::params::{LinearParams, Loss};
use fheml_quant::metrics::{accuracy, r2};

/// A fitted (or imported) linear model: `scores = x·weights + intercept`, then the
/// post-processing of its kind (sigmoid, softmax, sign, argmax, exp or identity).
///
/// This is the untyped form every typed model ([`crate::LogisticRegression`], ...) wraps,
/// and the one the command line uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    params: LinearParams,
    coefficients: LinearCoefficients,
    task: Task,
}

impl LinearModel {
    /// Fits on `x` (rows are samples) and `y` (labels for classifiers, targets otherwise).
    pub fn fit(params: LinearParams, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<Self> {
        let params = params.check()?;
        check_training(x, y)?;
        let model = params.kind.name();
        if params.kind.is_classifier() {
            let (classes, index) = encode_classes(model, y)?;
            let target = Target::Classes { index: &index, n_classes: classes.len() };
            let coefficients = fit(&params, x, target)?;
            return Ok(Self { params, coefficients, task: Task::Classification { classes } });
        }
        if params.kind.is_log_link() {
            check_glm_targets(model, y, params.tweedie_power())?;
        }
        let coefficients = fit(&params, x, Target::Values(y))?;
        Ok(Self { params, coefficients, task: Task::Regression })
    }

    /// Fits `kind` with hyperparameters given as `key=value` pairs (the command line's
    /// `--set`); unknown keys are an error naming the valid ones.
    pub fn fit_with_options<K: AsRef<str>, V: AsRef<str>>(
        kind: LinearModelKind,
        options: impl IntoIterator<Item = (K, V)>,
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
    ) -> Result<Self> {
        Self::fit(LinearParams::from_options(kind, options)?, x, y)
    }

    /// Imports a model trained elsewhere (the counterpart of Concrete ML's
    /// `from_sklearn_model`): `weights` is `[n_features, n_outputs]` (scikit-learn's
    /// `coef_.T`), one intercept per output, and the class labels in scikit-learn's
    /// `classes_` order for classifiers (`None` for regressors).
    ///
    /// Classifiers have one output for two classes (positive score: second class) and one
    /// per class otherwise; regressors one output.
    pub fn from_coefficients(
        params: LinearParams,
        weights: Array2<f64>,
        intercept: Array1<f64>,
        classes: Option<Vec<f64>>,
    ) -> Result<Self> {
        Self::from_parts(params, LinearCoefficients::new(weights, intercept)?, classes)
    }

    /// [`Self::from_coefficients`] with already checked coefficients.
    pub fn from_parts(
        params: LinearParams,
        coefficients: LinearCoefficients,
        classes: Option<Vec<f64>>,
    ) -> Result<Self> {
        let params = params.check()?;
        let outputs = coefficients.n_outputs();
        let task = match (params.kind.is_classifier(), classes) {
            (true, Some(classes)) => {
                if classes.iter().any(|c| !c.is_finite()) {
                    return Err(LinearError::Coefficients("class labels must be finite".into()));
                }
                let mut distinct = classes.clone();
                distinct.sort_by(f64::total_cmp);
                distinct.dedup();
                if distinct.len() != classes.len() || classes.len() < 2 {
                    return Err(LinearError::Coefficients(format!(
                        "a classifier needs at least two distinct labels, got {classes:?}"
                    )));
                }
                let expected = if classes.len() == 2 { 1 } else { classes.len() };
                if outputs != expected {
                    return Err(LinearError::Coefficients(format!(
                        "{} classes need {expected} output(s), the weights have {outputs}",
                        classes.len()
                    )));
                }
                Task::Classification { classes }
            }
            (true, None) => return Err(LinearError::Coefficients("a classifier needs its class labels".into())),
            (false, Some(_)) => return Err(LinearError::Coefficients("a regressor takes no class labels".into())),
            (false, None) if outputs != 1 => {
                return Err(LinearError::Coefficients(format!(
                    "a regressor has one output, the weights have {outputs}"
                )));
            }
            (false, None) => Task::Regression,
        };
        Ok(Self { params, coefficients, task })
    }

    /// Which model this is.
    pub fn kind(&self) -> LinearModelKind {
        self.params.kind
    }

    /// The (checked) hyperparameters.
    pub fn params(&self) -> &LinearParams {
        &self.params
    }

    /// Weights and intercepts on raw features.
    pub fn coefficients(&self) -> &LinearCoefficients {
        &self.coefficients
    }

    /// `[n_features, n_outputs]` weights on raw features.
    pub fn weights(&self) -> &Array2<f64> {
        self.coefficients.weights()
    }

    /// One intercept per output.
    pub fn intercept(&self) -> &Array1<f64> {
        self.coefficients.intercept()
    }

    /// Number of features the model reads.
    pub fn n_features(&self) -> usize {
        self.coefficients.n_features()
    }

    /// Classification (with its labels) or regression.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Class labels, in class-index order (classifiers only).
    pub fn classes(&self) -> Option<&[f64]> {
        match &self.task {
            Task::Classification { classes } => Some(classes),
            Task::Regression => None,
        }
    }

    /// What turns scores into predictions (on the client, after decryption).
    pub fn post_processing(&self) -> PostProcessing {
        let binary = self.classes().is_some_and(|c| c.len() <= 2);
        match self.params.kind {
            LinearModelKind::Logistic if binary => PostProcessing::Sigmoid,
            LinearModelKind::Logistic => PostProcessing::Softmax,
            LinearModelKind::SgdClassifier if self.params.loss == Loss::LogLoss => {
                if binary {
                    PostProcessing::Sigmoid
                } else {
                    PostProcessing::Softmax
                }
            }
            LinearModelKind::LinearSvc | LinearModelKind::SgdClassifier => {
                if binary {
                    PostProcessing::Sign
                } else {
                    PostProcessing::Argmax
                }
            }
            kind if kind.is_log_link() => PostProcessing::Exp,
            _ => PostProcessing::Identity,
        }
    }

    /// Raw scores `x·weights + intercept`, `[rows, n_outputs]` (scikit-learn's
    /// `decision_function`; the linear predictor `η` for the GLMs).
    pub fn decision_function(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        check_prediction_input(x, self.n_features())?;
        Ok(self.coefficients.scores(x))
    }

    /// Float predictions with their scores (and probabilities where the model has them).
    pub fn predict_detailed(&self, x: ArrayView2<f64>) -> Result<Vec<Prediction>> {
        let post = self.post_processing();
        self.decision_function(x)?
            .rows()
            .into_iter()
            .map(|scores| post.apply(scores.to_vec(), &self.task).map_err(LinearError::from))
            .collect()
    }

    /// Float predictions: labels (classifiers) or values (regressors).
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Ok(self.predict_detailed(x)?.into_iter().map(|p| p.value).collect())
    }

    /// Class probabilities, `[rows, n_classes]` (logistic regression, and the SGD
    /// classifier with `log_loss`, whose multiclass probabilities are the softmax of its
    /// one-vs-rest scores).
    pub fn predict_proba(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        if !matches!(self.post_processing(), PostProcessing::Sigmoid | PostProcessing::Softmax) {
            return Err(LinearError::Unsupported { model: self.kind().name(), what: "predict_proba" });
        }
        let predictions = self.predict_detailed(x)?;
        let classes = self.classes().map_or(0, <[f64]>::len);
        let mut out = Array2::zeros((predictions.len(), classes));
        for (mut row, p) in out.rows_mut().into_iter().zip(predictions) {
            if let Some(probabilities) = p.probabilities {
                row.assign(&Array1::from(probabilities));
            }
        }
        Ok(out)
    }

    /// Accuracy (classifiers) or R² (regressors) of the float model on `(x, y)`.
    pub fn score(&self, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<f64> {
        check_training(x, y)?;
        let predicted = self.predict(x)?;
        Ok(match self.task {
            Task::Classification { .. } => accuracy(&predicted.to_vec(), &y.to_vec()),
            Task::Regression => r2(&predicted.to_vec(), &y.to_vec()),
        })
    }

    /// Quantizes the model and lowers it to a leveled integer circuit, calibrating the
    /// input quantizers on `calibration` (usually the training set); see [`crate::lower`]
    /// for the scheme. The circuit has no table lookup: under TFHE it needs no bootstrap.
    pub fn compile(&self, calibration: ArrayView2<f64>) -> Result<ModelCircuit> {
        crate::lower::lower(
            &self.coefficients,
            calibration,
            self.params.n_bits,
            self.params.w_bits,
            self.post_processing(),
            self.task.clone(),
        )
    }
}
