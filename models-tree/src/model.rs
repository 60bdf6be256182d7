//! A fitted or imported tree model: float predictions, quantization, and its circuit.

use std::path::Path;

use fheml_circuits::{ModelCircuit, Prediction, Task};
use fheml_quant::{PerFeatureQuantizer, QuantizerConfig};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::ensemble::TreeEnsemble;
use crate::error::{Result, TreeError};
use crate::lower::{LoweringSummary, lower};
use crate::params::{TaskKind, TreeModelKind, TreeParams, ValidTreeParams};
use crate::quantize::QuantizedEnsemble;
use crate::{boosting, cart, onnx_ml, smartcore_io, xgboost};

/// How [`TreeModel::compile`] quantizes and lowers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileOptions {
    /// Bits per input feature (unsigned, per-feature calibration).
    pub n_bits: u8,
    /// Bits of the leaf values.
    pub leaf_bits: u8,
    /// Sum the trees in the circuit, or output per-tree scores for the client to sum.
    pub sum_in_fhe: bool,
}

/// Everything [`TreeModel::compile_detailed`] produces.
#[derive(Debug, Clone)]
pub struct CompiledTrees {
    /// The lowered model.
    pub circuit: ModelCircuit,
    /// The exact integer model it computes.
    pub quantized: QuantizedEnsemble,
    /// Bootstrap and leaf counts.
    pub summary: LoweringSummary,
}

/// The serialized layout of a [`TreeModel`], written first so that a model saved by an
/// older fheml fails to load with a message rather than as garbage.
///
/// Layouts before this marker started directly with the hyperparameters, whose first
/// field (the model kind) encodes as 0, 1 or 2; the marker's values start far above them.
/// History: 1001, the CART learner (`criterion`, `max_features` as all/sqrt/log2/count,
/// `voting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct TreeModelLayout(u32);

impl TreeModelLayout {
    const CURRENT: Self = Self(1001);
}

impl<'de> Deserialize<'de> for TreeModelLayout {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let found = u32::deserialize(deserializer)?;
        let current = Self::CURRENT.0;
        if found == current {
            return Ok(Self(found));
        }
        let detail = if found < 1000 {
            "this tree model was saved by an fheml older than its CART learner".to_string()
        } else {
            format!("this tree model has layout {found}, this build reads layout {current}")
        };
        Err(serde::de::Error::custom(format!("{detail}; train or import it again with this version")))
    }
}

/// A tree, forest or boosted ensemble with its hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeModel {
    layout: TreeModelLayout,
    params: ValidTreeParams,
    ensemble: TreeEnsemble,
}

fn check_xy(x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<()> {
    Ok(fheml_quant::data::check_training(x, y)?)
}

impl ValidTreeParams {
    /// Fits the model on `x` (rows are samples) and `y` (labels or targets).
    pub fn fit(&self, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<TreeModel> {
        TreeModel::fit(self, x, y)
    }
}

impl TreeModel {
    /// Fits on `x` and `y`: fheml's CART (scikit-learn's algorithm) for trees and forests,
    /// hessboost for boosting.
    pub fn fit(params: &ValidTreeParams, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<Self> {
        check_xy(x, y)?;
        let p = params.get();
        let (targets, classes) = match p.task {
            TaskKind::Classification => {
                let mut classes: Vec<f64> = y.to_vec();
                classes.sort_by(f64::total_cmp);
                classes.dedup();
                if classes.len() < 2 {
                    return Err(TreeError::Data(format!(
                        "a classifier needs at least two classes, got {}",
                        classes.len()
                    )));
                }
                let index: Vec<f64> =
                    y.iter().map(|v| classes.iter().position(|c| c == v).unwrap_or(0) as f64).collect();
                (index, Some(classes))
            }
            TaskKind::Regression => (y.to_vec(), None),
        };
        // As Concrete ML does, fit on the quantized features (dequantized to floats): every
        // threshold then falls between two grid points, so quantizing the inputs with the
        // same calibration (the training data) changes no decision of the fitted model.
        let config = QuantizerConfig::params().n_bits(p.n_bits).signed(false).symmetric(false).check()?;
        let quantizer = PerFeatureQuantizer::calibrate(&config, x)?;
        let on_grid = quantizer.dequantize(quantizer.quantize(x)?.values.view())?;
        let x = on_grid.view();
        let ensemble = match p.kind {
            TreeModelKind::Tree | TreeModelKind::Forest => cart::fit_ensemble(params, x, &targets, classes)?,
            TreeModelKind::Gbdt => boosting::fit(params, x, &targets, classes)?,
        };
        Ok(Self { layout: TreeModelLayout::CURRENT, params: params.clone(), ensemble })
    }

    /// Wraps an ensemble built or read elsewhere (validated).
    pub fn from_ensemble(params: ValidTreeParams, ensemble: TreeEnsemble) -> Result<Self> {
        ensemble.validate()?;
        let task = match ensemble.task {
            Task::Classification { .. } => TaskKind::Classification,
            Task::Regression => TaskKind::Regression,
        };
        if task != params.get().task {
            return Err(TreeError::Data(format!(
                "the ensemble does {} but the parameters say {}",
                task.name(),
                params.get().task.name()
            )));
        }
        Ok(Self { layout: TreeModelLayout::CURRENT, params, ensemble })
    }

    fn imported(kind: TreeModelKind, ensemble: TreeEnsemble) -> Result<Self> {
        let task = match ensemble.task {
            Task::Classification { .. } => TaskKind::Classification,
            Task::Regression => TaskKind::Regression,
        };
        let n_estimators = if kind == TreeModelKind::Tree { 1 } else { ensemble.trees.len().clamp(1, 10_000) };
        let params = TreeParams::new(kind, task)
            .max_depth(ensemble.max_depth().clamp(1, 32))
            .n_estimators(n_estimators)
            .check()?;
        Ok(Self { layout: TreeModelLayout::CURRENT, params, ensemble })
    }

    /// Imports an XGBoost model saved with `save_model("model.json")`, given as JSON text.
    /// Classifier labels are the class indices `0..k` (XGBoost's labels).
    pub fn from_xgboost_json(json: &str) -> Result<Self> {
        Self::imported(TreeModelKind::Gbdt, xgboost::ensemble_from_xgboost_json(json)?)
    }

    /// Imports an XGBoost JSON model file.
    pub fn from_xgboost_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| TreeError::Io { path: path.display().to_string(), source })?;
        Self::from_xgboost_json(&text)
    }

    /// Imports a tree ensemble exported to ONNX in the `ai.onnx.ml` domain (skl2onnx for
    /// scikit-learn trees, forests and gradient boosting; onnxmltools for LightGBM and
    /// XGBoost), given as the file's bytes. See [`crate::onnx_ml`] for what is read.
    pub fn from_onnx_ml_bytes(bytes: &[u8]) -> Result<Self> {
        let (ensemble, kind) = onnx_ml::ensemble_from_onnx_ml(bytes)?;
        Self::imported(kind, ensemble)
    }

    /// Imports an ONNX-ML tree ensemble file (at most [`onnx_ml::MAX_ONNX_ML_BYTES`]).
    pub fn from_onnx_ml_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_onnx_ml_bytes(&onnx_ml::read_file(path.as_ref())?)
    }

    /// Imports a model trained with smartcore directly (`DecisionTreeClassifier`,
    /// `DecisionTreeRegressor`, `RandomForestClassifier`, `RandomForestRegressor`), through
    /// its serde form.
    pub fn from_smartcore(kind: TreeModelKind, task: TaskKind, model: &impl Serialize) -> Result<Self> {
        let value = serde_json::to_value(model)
            .map_err(|e| TreeError::SmartcoreLayout(format!("the model does not serialize: {e}")))?;
        Self::imported(kind, smartcore_io::ensemble_from_smartcore(kind, task, &value)?)
    }

    /// Replaces the quantization options of a model (useful for imported ones).
    pub fn with_options(mut self, n_bits: u8, leaf_bits: Option<u8>, sum_in_fhe: bool) -> Result<Self> {
        let mut p = self.params.into_inner();
        p.n_bits = n_bits;
        p.leaf_bits = leaf_bits;
        p.sum_in_fhe = sum_in_fhe;
        self.params = p.check()?;
        Ok(self)
    }

    /// The hyperparameters.
    pub fn params(&self) -> &ValidTreeParams {
        &self.params
    }

    /// The trees.
    pub fn ensemble(&self) -> &TreeEnsemble {
        &self.ensemble
    }

    /// Classification (with labels) or regression.
    pub fn task(&self) -> &Task {
        &self.ensemble.task
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.ensemble.n_features
    }

    /// Raw scores, `[rows, outputs]`: vote counts (tree and forest classifiers), margins
    /// (boosting), values (regressors).
    pub fn decision_function(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        let scores = self.ensemble.decision_function(x)?;
        let k = self.ensemble.n_outputs;
        Array2::from_shape_vec((scores.len(), k), scores.into_iter().flatten().collect())
            .map_err(|e| TreeError::Data(e.to_string()))
    }

    /// Float predictions with probabilities and scores.
    pub fn predict_detailed(&self, x: ArrayView2<f64>) -> Result<Vec<Prediction>> {
        self.ensemble.predict_detailed(x)
    }

    /// Float predictions: labels or values.
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Ok(self.predict_detailed(x)?.into_iter().map(|p| p.value).collect())
    }

    /// Class probabilities, `[rows, classes]`: vote fractions for trees and forests,
    /// sigmoid or softmax of the margins for boosting.
    pub fn predict_proba(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        let Task::Classification { classes } = &self.ensemble.task else {
            return Err(TreeError::Data("predict_proba needs a classifier".into()));
        };
        let k = classes.len();
        let mut out = Array2::zeros((x.nrows(), k));
        for (i, p) in self.predict_detailed(x)?.into_iter().enumerate() {
            let probs = p.probabilities.unwrap_or_else(|| vec![1.0 / k as f64; k]);
            for (j, v) in probs.into_iter().take(k).enumerate() {
                out[[i, j]] = v;
            }
        }
        Ok(out)
    }

    /// The quantization options from the hyperparameters.
    pub fn compile_options(&self) -> CompileOptions {
        let p = self.params.get();
        CompileOptions { n_bits: p.n_bits, leaf_bits: self.params.leaf_bits(), sum_in_fhe: p.sum_in_fhe }
    }

    /// The integer model: input quantizers calibrated on `calibration`, integer thresholds,
    /// quantized leaves.
    pub fn quantize(&self, calibration: ArrayView2<f64>) -> Result<QuantizedEnsemble> {
        let o = self.compile_options();
        QuantizedEnsemble::new(&self.ensemble, calibration, o.n_bits, o.leaf_bits)
    }

    /// Quantizes (calibrating on `calibration`, usually the training set) and lowers to a
    /// circuit with one bootstrap per leaf at most (see [`crate::lower`]).
    pub fn compile(&self, calibration: ArrayView2<f64>) -> Result<ModelCircuit> {
        Ok(self.compile_detailed(calibration)?.circuit)
    }

    /// [`Self::compile`], also returning the integer model and the lowering summary.
    pub fn compile_detailed(&self, calibration: ArrayView2<f64>) -> Result<CompiledTrees> {
        let quantized = self.quantize(calibration)?;
        let (circuit, summary) = lower(&quantized, self.compile_options().sum_in_fhe)?;
        Ok(CompiledTrees { circuit, quantized, summary })
    }

    /// Concrete ML's bootstrap count for this model in its GEMM form (one per comparison
    /// and one per leaf, per tree), to compare with `circuit.cost().bootstraps`.
    pub fn gemm_bootstraps(&self) -> usize {
        self.ensemble.gemm_bootstraps()
    }
}

/// Clear (exact integer) prediction of one row by a tree circuit. Circuits compiled with
/// `sum_in_fhe = false` output `[n_trees, n_outputs]` with [`fheml_circuits::OutputSpec`]
/// groups, which [`ModelCircuit::decode`] sums like any other model's.
pub fn predict_clear(model: &ModelCircuit, features: &[f64]) -> Result<Prediction> {
    Ok(model.predict_clear(features)?)
}

macro_rules! named_model {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $task:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;

        impl $name {
            /// Default hyperparameters; set some, then `check()?.fit(x, y)`.
            pub fn params() -> TreeParams {
                TreeParams::new($kind, $task)
            }
        }
    };
}

named_model!(
    /// A decision tree classifier (CART as scikit-learn, `x <= t` splits, leaves vote for one class).
    DecisionTreeClassifier,
    TreeModelKind::Tree,
    TaskKind::Classification
);
named_model!(
    /// A decision tree regressor (CART, as scikit-learn).
    DecisionTreeRegressor,
    TreeModelKind::Tree,
    TaskKind::Regression
);
named_model!(
    /// A random forest classifier (CART trees on bootstrap samples; prediction by vote counting).
    RandomForestClassifier,
    TreeModelKind::Forest,
    TaskKind::Classification
);
named_model!(
    /// A random forest regressor (CART trees on bootstrap samples; the mean of the trees).
    RandomForestRegressor,
    TreeModelKind::Forest,
    TaskKind::Regression
);
named_model!(
    /// Gradient-boosted trees for classification (hessboost: `binary:logistic` or
    /// `multi:softprob`), Concrete ML's `XGBClassifier`.
    GradientBoostingClassifier,
    TreeModelKind::Gbdt,
    TaskKind::Classification
);
named_model!(
    /// Gradient-boosted trees for regression (hessboost: `reg:squarederror`), Concrete ML's
    /// `XGBRegressor`.
    GradientBoostingRegressor,
    TreeModelKind::Gbdt,
    TaskKind::Regression
);

/// Concrete ML's name for [`GradientBoostingClassifier`].
pub type XGBClassifier = GradientBoostingClassifier;
/// Concrete ML's name for [`GradientBoostingRegressor`].
pub type XGBRegressor = GradientBoostingRegressor;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn small_model() -> TreeModel {
        let x = Array2::from_shape_fn((40, 2), |(i, j)| ((i * 7 + j * 5) % 13) as f64);
        let y: Array1<f64> = x.rows().into_iter().map(|r| f64::from(r[0] > r[1])).collect();
        DecisionTreeClassifier::params().max_depth(3).check().unwrap().fit(x.view(), y.view()).unwrap()
    }

    #[test]
    fn saved_models_round_trip_and_name_their_layout() {
        let model = small_model();
        let mut value = serde_json::to_value(&model).unwrap();
        assert_eq!(value["layout"], serde_json::json!(TreeModelLayout::CURRENT.0));
        assert_eq!(serde_json::from_value::<TreeModel>(value.clone()).unwrap(), model);

        // A file from before the marker starts with the model kind (0, 1 or 2).
        value["layout"] = serde_json::json!(2);
        let err = serde_json::from_value::<TreeModel>(value.clone()).unwrap_err().to_string();
        assert!(err.contains("older than its CART learner") && err.contains("train or import it again"), "{err}");
        // The same in the model file's encoding (bincode), where the old layout was the
        // bare (params, ensemble) pair: its first byte, the model kind, reads as layout 0.
        let config = bincode::config::standard();
        let old = bincode::serde::encode_to_vec((&model.params, &model.ensemble), config).unwrap();
        let err = bincode::serde::decode_from_slice::<TreeModel, _>(&old, config).unwrap_err().to_string();
        assert!(err.contains("older than its CART learner"), "{err}");
        let new = bincode::serde::encode_to_vec(&model, config).unwrap();
        assert_eq!(bincode::serde::decode_from_slice::<TreeModel, _>(&new, config).unwrap().0, model);

        value["layout"] = serde_json::json!(1999);
        let err = serde_json::from_value::<TreeModel>(value).unwrap_err().to_string();
        assert!(err.contains("layout 1999") && err.contains("reads layout 1001"), "{err}");
    }
}
