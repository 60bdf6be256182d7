//! A fitted linear model: float predictions, and its quantized integer circuit.

use fheml_circuits::{CircuitBuilder, InputEncoding, InputSpec, Interval, ModelCircuit, OutputSpec, Prediction, Task};
use fheml_quant::{PerFeatureQuantizer, QuantizerConfig, UniformQuantizer};
use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayView2, IxDyn};
use serde::{Deserialize, Serialize};

use crate::error::{LinearError, Result};
use crate::fit::fit;
use crate::params::LinearParams;

/// A fitted (or imported) linear model: `scores = x·weights + intercept`, then the kind's
/// post-processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    params: LinearParams,
    weights: Array2<f64>,
    intercept: Array1<f64>,
    task: Task,
}

fn check_finite(x: ArrayView2<f64>, y: Option<ArrayView1<f64>>) -> Result<()> {
    if let Some(((r, c), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(LinearError::Data(format!("non-finite value {v} at row {r}, column {c}")));
    }
    if let Some((r, v)) = y.and_then(|y| y.iter().copied().enumerate().find(|(_, v)| !v.is_finite())) {
        return Err(LinearError::Data(format!("non-finite target {v} at row {r}")));
    }
    Ok(())
}

impl LinearModel {
    /// Fits on `x` (rows are samples) and `y` (labels for classifiers, targets otherwise).
    pub fn fit(params: LinearParams, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<Self> {
        let params = params.check()?;
        if x.nrows() == 0 || x.ncols() == 0 {
            return Err(LinearError::Data("no training rows or no features".into()));
        }
        if x.nrows() != y.len() {
            return Err(LinearError::Data(format!("{} rows but {} targets", x.nrows(), y.len())));
        }
        check_finite(x, Some(y))?;
        let (task, targets) = if params.kind.is_classifier() {
            let mut classes: Vec<f64> = y.to_vec();
            classes.sort_by(f64::total_cmp);
            classes.dedup();
            if classes.len() < 2 {
                return Err(LinearError::Data("a classifier needs at least two classes".into()));
            }
            let index = y.mapv(|v| classes.iter().position(|c| *c == v).unwrap_or(0) as f64);
            (Task::Classification { classes }, index)
        } else {
            (Task::Regression, y.to_owned())
        };
        let n_classes = match &task {
            Task::Classification { classes } => classes.len(),
            Task::Regression => 0,
        };
        let c = fit(&params, x, targets.view(), n_classes)?;
        Ok(Self { params, weights: c.weights, intercept: c.intercept, task })
    }

    /// Imports a model trained elsewhere (e.g. scikit-learn's `coef_.T` and `intercept_`):
    /// `weights` is `[features, outputs]`; `classes` for classifiers.
    pub fn from_coefficients(
        params: LinearParams,
        weights: Array2<f64>,
        intercept: Array1<f64>,
        classes: Option<Vec<f64>>,
    ) -> Result<Self> {
        let params = params.check()?;
        if weights.ncols() != intercept.len() || weights.is_empty() {
            return Err(LinearError::Data(format!(
                "{} weight columns for {} intercepts",
                weights.ncols(),
                intercept.len()
            )));
        }
        check_finite(weights.view(), Some(intercept.view()))?;
        let task = match (params.kind.is_classifier(), classes) {
            (true, Some(classes)) if classes.len() >= 2 => Task::Classification { classes },
            (true, _) => return Err(LinearError::Data("a classifier needs its class labels".into())),
            (false, _) => Task::Regression,
        };
        Ok(Self { params, weights, intercept, task })
    }

    /// The hyperparameters.
    pub fn params(&self) -> &LinearParams {
        &self.params
    }

    /// `[features, outputs]` weights on raw features.
    pub fn weights(&self) -> &Array2<f64> {
        &self.weights
    }

    /// One intercept per output.
    pub fn intercept(&self) -> &Array1<f64> {
        &self.intercept
    }

    /// Classification or regression.
    pub fn task(&self) -> &Task {
        &self.task
    }

    fn check_features(&self, x: ArrayView2<f64>) -> Result<()> {
        if x.ncols() != self.weights.nrows() {
            return Err(LinearError::Quant(fheml_quant::QuantError::FeatureCount {
                expected: self.weights.nrows(),
                got: x.ncols(),
            }));
        }
        check_finite(x, None)
    }

    /// Raw scores `x·weights + intercept`, `[rows, outputs]`.
    pub fn decision_function(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.check_features(x)?;
        Ok(x.dot(&self.weights) + &self.intercept)
    }

    /// Float predictions (one per row), with probabilities where the model has them.
    pub fn predict_detailed(&self, x: ArrayView2<f64>) -> Result<Vec<Prediction>> {
        let post = self.post_processing();
        self.decision_function(x)?
            .rows()
            .into_iter()
            .map(|scores| post.apply(scores.to_vec(), &self.task).map_err(LinearError::from))
            .collect()
    }

    /// Float predictions: labels or values.
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        Ok(self.predict_detailed(x)?.into_iter().map(|p| p.value).collect())
    }

    fn post_processing(&self) -> fheml_circuits::PostProcessing {
        let n_classes = match &self.task {
            Task::Classification { classes } => classes.len(),
            Task::Regression => 0,
        };
        self.params.kind.post_processing(n_classes)
    }

    /// Quantizes and lowers to a leveled integer circuit, calibrating the input quantizers
    /// on `calibration` (usually the training set).
    ///
    /// Inputs are quantized per feature; the input scales are folded into the weights,
    /// which are then quantized symmetric per tensor, so the server computes
    /// `Σ (q_i - z_i)·W_ij + round(b_j / s_w)` exactly and the client multiplies by `s_w`.
    pub fn compile(&self, calibration: ArrayView2<f64>) -> Result<ModelCircuit> {
        self.check_features(calibration)?;
        let input_config = QuantizerConfig::params().n_bits(self.params.n_bits).check()?;
        let quantizer = PerFeatureQuantizer::calibrate(&input_config, calibration)?;
        let folded = Array2::from_shape_fn(self.weights.dim(), |(i, j)| {
            self.weights[[i, j]] * quantizer.quantizers()[i].scale()
        });
        let weight_config =
            QuantizerConfig::params().n_bits(self.params.w_bits).signed(true).symmetric(true).check()?;
        let weight_quantizer = UniformQuantizer::calibrate(&weight_config, folded.iter().copied())?;
        let integer_weights = weight_quantizer.quantize(&folded)?.values;
        let scale = weight_quantizer.scale();
        let constants: Vec<i64> = (0..self.weights.ncols())
            .map(|j| {
                let zero_points: i64 = quantizer
                    .quantizers()
                    .iter()
                    .enumerate()
                    .map(|(i, q)| q.zero_point() * integer_weights[[i, j]])
                    .sum();
                (self.intercept[j] / scale).round() as i64 - zero_points
            })
            .collect();

        let mut b = CircuitBuilder::new();
        let ranges = quantizer.quantizers().iter().map(|q| Interval { lo: q.qmin(), hi: q.qmax() }).collect();
        let x = b.input_with_ranges(&[self.weights.nrows()], ranges)?;
        let acc = b.matmul(x, integer_weights)?;
        let scores = b.add_const(
            acc,
            ArrayD::from_shape_vec(IxDyn(&[constants.len()]), constants)
                .map_err(|e| LinearError::Fit(e.to_string()))?,
        )?;
        b.output(scores)?;
        Ok(ModelCircuit {
            circuit: b.build()?,
            inputs: vec![InputSpec { quantizer, encoding: InputEncoding::Quantized }],
            outputs: vec![OutputSpec { scale: vec![scale], offset: vec![0.0] }],
            post: self.post_processing(),
            task: self.task.clone(),
        })
    }
}
