//! One type per model, with a checked hyperparameter builder in the style of linfa:
//! `LogisticRegression::params().alpha(0.5).n_bits(6).check()?.fit(x, y)?` (or
//! `.fit(x, y)?` straight from the builder, which checks first). Each builder has only the
//! setters its model reads.

use std::marker::PhantomData;

use fheml_circuits::ModelCircuit;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::coefficients::LinearCoefficients;
use crate::error::Result;
use crate::kind::LinearModelKind;
use crate::model::LinearModel;
use crate::params::{LearningRate, LinearParams, Loss};

mod private {
    /// Construction from a checked untyped model, for this crate only.
    pub trait Sealed: Sized {
        fn wrap(model: crate::LinearModel) -> Self;
    }
}

/// A typed linear model: one of the twelve types below.
pub trait Estimator: private::Sealed + AsRef<LinearModel> + Into<LinearModel> {
    /// Which member of the family.
    const KIND: LinearModelKind;
}

/// Unchecked hyperparameters of model `M`: adjust, then [`Params::check`] or [`Params::fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Params<M> {
    inner: LinearParams,
    model: PhantomData<fn() -> M>,
}

/// Checked hyperparameters of model `M`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidParams<M> {
    inner: LinearParams,
    model: PhantomData<fn() -> M>,
}

impl<M: Estimator> Default for Params<M> {
    fn default() -> Self {
        Self { inner: LinearParams::new(M::KIND), model: PhantomData }
    }
}

impl<M: Estimator> Params<M> {
    /// Input quantization bits per feature, 1..=16 (default 8).
    pub fn n_bits(mut self, bits: u8) -> Self {
        self.inner.n_bits = bits;
        self
    }

    /// Weight quantization bits, 2..=16 (default 8).
    pub fn w_bits(mut self, bits: u8) -> Self {
        self.inner.w_bits = bits;
        self
    }

    /// Sets a hyperparameter by name, as `--set key=value` does.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        self.inner = self.inner.set(key, value)?;
        Ok(self)
    }

    /// The untyped hyperparameters, as set so far.
    pub fn as_params(&self) -> &LinearParams {
        &self.inner
    }

    /// Validates every value.
    pub fn check(self) -> Result<ValidParams<M>> {
        Ok(ValidParams { inner: self.inner.check()?, model: PhantomData })
    }

    /// Checks, then fits on `x` (rows are samples) and `y`.
    pub fn fit(self, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<M> {
        self.check()?.fit(x, y)
    }
}

impl<M: Estimator> ValidParams<M> {
    /// The checked hyperparameters.
    pub fn params(&self) -> &LinearParams {
        &self.inner
    }

    /// Fits on `x` (rows are samples) and `y` (labels for classifiers, targets otherwise).
    pub fn fit(&self, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<M> {
        LinearModel::fit(self.inner.clone(), x, y).map(M::wrap)
    }

    /// Imports coefficients trained elsewhere with these hyperparameters (bits, loss);
    /// see [`LinearModel::from_coefficients`].
    pub fn import(&self, coefficients: LinearCoefficients, classes: Option<Vec<f64>>) -> Result<M> {
        LinearModel::from_parts(self.inner.clone(), coefficients, classes).map(M::wrap)
    }
}

macro_rules! setters {
    ($($name:ident: $ty:ty, $doc:literal => [$($model:ident),+ $(,)?];)+) => {
        $($(
            impl Params<$model> {
                #[doc = $doc]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.inner.$name = value;
                    self
                }
            }
        )+)+
    };
}

macro_rules! estimator {
    ($(#[$meta:meta])* $name:ident => $kind:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(LinearModel);

        impl private::Sealed for $name {
            fn wrap(model: LinearModel) -> Self {
                Self(model)
            }
        }

        impl Estimator for $name {
            const KIND: LinearModelKind = LinearModelKind::$kind;
        }

        impl AsRef<LinearModel> for $name {
            fn as_ref(&self) -> &LinearModel {
                &self.0
            }
        }

        impl From<$name> for LinearModel {
            fn from(model: $name) -> Self {
                model.0
            }
        }

        impl $name {
            /// Default hyperparameters (scikit-learn's, 8-bit quantization), to adjust.
            pub fn params() -> Params<Self> {
                Params::default()
            }

            /// The untyped model.
            pub fn model(&self) -> &LinearModel {
                &self.0
            }

            /// Weights and intercepts on raw features.
            pub fn coefficients(&self) -> &LinearCoefficients {
                self.0.coefficients()
            }

            /// Raw scores `x·weights + intercept`, `[rows, n_outputs]`.
            pub fn decision_function(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
                self.0.decision_function(x)
            }

            /// Float predictions: labels (classifiers) or values (regressors).
            pub fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
                self.0.predict(x)
            }

            /// Accuracy (classifiers) or R² (regressors) of the float model.
            pub fn score(&self, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<f64> {
                self.0.score(x, y)
            }

            /// Quantizes and lowers to a leveled integer circuit, calibrated on `calibration`.
            pub fn compile(&self, calibration: ArrayView2<f64>) -> Result<ModelCircuit> {
                self.0.compile(calibration)
            }
        }
    };
    (classifier $(#[$meta:meta])* $name:ident => $kind:ident) => {
        estimator!($(#[$meta])* $name => $kind);

        impl $name {
            /// Imports a classifier trained elsewhere with default hyperparameters:
            /// `weights` `[n_features, n_outputs]` (scikit-learn's `coef_.T`; one output for
            /// two classes, one per class otherwise), one intercept per output, and the
            /// labels in scikit-learn's `classes_` order.
            pub fn from_coefficients(weights: Array2<f64>, intercept: Array1<f64>, classes: Vec<f64>) -> Result<Self> {
                Self::params().check()?.import(LinearCoefficients::new(weights, intercept)?, Some(classes))
            }

            /// The class labels, in class-index order.
            pub fn classes(&self) -> &[f64] {
                self.0.classes().unwrap_or_default()
            }
        }
    };
    (regressor $(#[$meta:meta])* $name:ident => $kind:ident) => {
        estimator!($(#[$meta])* $name => $kind);

        impl $name {
            /// Imports a regressor trained elsewhere with default hyperparameters:
            /// `weights` `[n_features, 1]` (scikit-learn's `coef_` as a column) and the intercept.
            pub fn from_coefficients(weights: Array2<f64>, intercept: Array1<f64>) -> Result<Self> {
                Self::params().check()?.import(LinearCoefficients::new(weights, intercept)?, None)
            }
        }
    };
}

estimator!(regressor
    /// Ordinary least squares (scikit-learn's `LinearRegression`), fitted by smartcore (QR).
    LinearRegression => Linear);
estimator!(regressor
    /// Least squares with an L2 penalty `α‖w‖²` (scikit-learn's `Ridge`), fitted by smartcore.
    Ridge => Ridge);
estimator!(regressor
    /// Least squares with an L1 penalty (scikit-learn's `Lasso` objective), fitted by
    /// smartcore's interior-point solver.
    Lasso => Lasso);
estimator!(regressor
    /// Least squares with L1 and L2 penalties (scikit-learn's `ElasticNet` objective),
    /// fitted by smartcore.
    ElasticNet => ElasticNet);
estimator!(classifier
    /// Logistic regression, binary (sigmoid) or multinomial (softmax), with an L2 penalty
    /// `α/2‖w‖²` (scikit-learn's `C = 1/α`), fitted by smartcore (L-BFGS).
    LogisticRegression => Logistic);
estimator!(classifier
    /// Linear support-vector classifier (scikit-learn's `LinearSVC`): squared hinge or
    /// hinge loss by dual coordinate descent, one-vs-rest beyond two classes.
    LinearSvc => LinearSvc);
estimator!(regressor
    /// Linear support-vector regressor (scikit-learn's `LinearSVR`): epsilon-insensitive or
    /// squared epsilon-insensitive loss by dual coordinate descent.
    LinearSvr => LinearSvr);
estimator!(classifier
    /// Linear classifier by plain SGD (scikit-learn's `SGDClassifier`): hinge, log or
    /// squared hinge loss, L2 penalty, seeded shuffles, one-vs-rest beyond two classes.
    SgdClassifier => SgdClassifier);
estimator!(regressor
    /// Linear regressor by plain SGD (scikit-learn's `SGDRegressor`): squared or
    /// epsilon-insensitive losses, L2 penalty, seeded shuffles.
    SgdRegressor => SgdRegressor);
estimator!(regressor
    /// Poisson GLM with log link (scikit-learn's `PoissonRegressor`), fitted by IRLS.
    PoissonRegressor => Poisson);
estimator!(regressor
    /// Gamma GLM with log link (scikit-learn's `GammaRegressor`), fitted by IRLS.
    GammaRegressor => Gamma);
estimator!(regressor
    /// Tweedie GLM with log link (scikit-learn's `TweedieRegressor(link="log")`), fitted by
    /// IRLS; the default power is 1.5 (compound Poisson–Gamma).
    TweedieRegressor => Tweedie);

impl LogisticRegression {
    /// Class probabilities, `[rows, n_classes]`.
    pub fn predict_proba(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.0.predict_proba(x)
    }
}

impl SgdClassifier {
    /// Class probabilities, `[rows, n_classes]`, with `log_loss` only (the multiclass
    /// ones are the softmax of the one-vs-rest scores).
    pub fn predict_proba(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.0.predict_proba(x)
    }
}

setters! {
    alpha: f64, "Penalty strength (scikit-learn's `alpha`; `1/C` for logistic regression), >= 0." => [
        Ridge, Lasso, ElasticNet, LogisticRegression, SgdClassifier, SgdRegressor,
        PoissonRegressor, GammaRegressor, TweedieRegressor,
    ];
    standardize: bool, "Fit on standardized features, so penalties treat features alike (default true)." => [
        Ridge, Lasso, ElasticNet, LogisticRegression, LinearSvc, LinearSvr, SgdClassifier, SgdRegressor,
        PoissonRegressor, GammaRegressor, TweedieRegressor,
    ];
    l1_ratio: f64, "Mix of the L1 (1) and L2 (0) penalties, in [0, 1] (default 0.5)." => [ElasticNet];
    c: f64, "Inverse penalty (scikit-learn's `C`), > 0 (default 1)." => [LinearSvc, LinearSvr];
    epsilon: f64, "Width of the insensitive tube, >= 0." => [LinearSvr, SgdRegressor];
    power: f64, "Tweedie power: 0, or >= 1 (default 1.5)." => [TweedieRegressor];
    loss: Loss, "The loss (scikit-learn's names; see [`Loss::allowed`])." => [
        LinearSvc, LinearSvr, SgdClassifier, SgdRegressor,
    ];
    learning_rate: LearningRate, "Step-size schedule." => [SgdClassifier, SgdRegressor];
    eta0: f64, "Initial step of the constant and invscaling schedules, > 0." => [SgdClassifier, SgdRegressor];
    power_t: f64, "Exponent of the invscaling schedule." => [SgdClassifier, SgdRegressor];
    max_iter: usize, "Iterations (epochs for SGD and the SVMs), >= 1." => [
        Lasso, ElasticNet, LinearSvc, LinearSvr, SgdClassifier, SgdRegressor,
        PoissonRegressor, GammaRegressor, TweedieRegressor,
    ];
    tol: f64, "Stopping tolerance, > 0." => [
        Lasso, ElasticNet, LinearSvc, LinearSvr, SgdClassifier, SgdRegressor,
        PoissonRegressor, GammaRegressor, TweedieRegressor,
    ];
    seed: u64, "Seed of the shuffles." => [LinearSvc, LinearSvr, SgdClassifier, SgdRegressor];
}
