//! A trained or imported network with its quantization: float predictions and the circuit.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use fheml_circuits::{Interval, ModelCircuit, PostProcessing, Task};
use fheml_quant::{PerFeatureQuantizer, QuantizerConfig};

use crate::error::{NnError, Result};
use crate::lower::{InputQuantization, OutputDecoding, QuantSettings, calibrate_activations, lower};
use crate::network::{Activation, Layer, Network};
use crate::params::{NnTask, ValidMlpParams};
use crate::train::{EpochReport, IntegerInputs, Targets, TrainingSetup, train};

/// Float preprocessing in front of the network: `(x - offset) / scale` per feature. The
/// circuit never computes it: it is folded into the input quantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Per-feature offset.
    pub offset: Vec<f64>,
    /// Per-feature divisor.
    pub scale: Vec<f64>,
}

/// A network ready for FHE: float weights, input quantization, activation ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NnModel {
    network: Network,
    standardizer: Option<Standardizer>,
    input: InputQuantization,
    activation_ranges: Vec<Option<(f64, f64)>>,
    /// Least accumulator rounding per layer (from quantization-aware training).
    #[serde(default)]
    min_rounding: Vec<Vec<u32>>,
    settings: QuantSettings,
    /// Network output to user units (regression target scaling).
    output_affine: (f64, f64),
    task: Task,
    post: PostProcessing,
    params: Option<ValidMlpParams>,
    /// Range of the network's outputs (before `output_affine`) on the training or
    /// calibration rows: sets the logits' resolution under encryption.
    #[serde(default)]
    observed_output: Option<(f64, f64)>,
}

fn mean_std(column: ArrayView1<f64>) -> (f64, f64) {
    let n = column.len().max(1) as f64;
    let mean = column.sum() / n;
    let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    (mean, if std > 1e-12 { std } else { 1.0 })
}

/// `network` without its last layer if that is a Sigmoid activation.
fn without_final_sigmoid(network: Network) -> Result<Network> {
    match network.layers().split_last() {
        Some((Layer::Activation(Activation::Sigmoid), rest)) => {
            Network::new(network.input_shape().to_vec(), rest.to_vec())
        }
        _ => Ok(network),
    }
}

impl ValidMlpParams {
    /// Trains on `x` (rows are samples) and `y` (labels or targets) with
    /// quantization-aware training.
    pub fn fit(&self, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<NnModel> {
        NnModel::fit(self, x, y)
    }

    /// [`Self::fit`], telling `on_epoch` about every finished epoch (for a progress bar).
    pub fn fit_observed(
        &self,
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        on_epoch: &mut dyn FnMut(EpochReport),
    ) -> Result<NnModel> {
        NnModel::fit_observed(self, x, y, on_epoch)
    }
}

impl NnModel {
    /// Trains an MLP with quantization-aware training; see [`crate::MlpParams`].
    pub fn fit(params: &ValidMlpParams, x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<Self> {
        Self::fit_observed(params, x, y, &mut |_| {})
    }

    /// [`Self::fit`], telling `on_epoch` about every finished epoch.
    pub fn fit_observed(
        params: &ValidMlpParams,
        x: ArrayView2<f64>,
        y: ArrayView1<f64>,
        on_epoch: &mut dyn FnMut(EpochReport),
    ) -> Result<Self> {
        let params = &params.sized_for(x.ncols());
        let p = params.get();
        fheml_quant::data::check_training(x, y)?;
        // The client quantizes raw features; the network reads them standardised. With an
        // integer offset `m` the network input is exactly `(s/σ)·(q - m)`.
        let config = QuantizerConfig::params().n_bits(p.n_bits).check()?;
        let quantizer = PerFeatureQuantizer::calibrate(&config, x)?;
        let q = quantizer.quantize(x)?.values;
        let (mut scale, mut zero, mut offset, mut sigma, mut ranges) = (vec![], vec![], vec![], vec![], vec![]);
        for (j, qz) in quantizer.quantizers().iter().enumerate() {
            let (mean, std) = mean_std(x.column(j));
            let m = qz.zero_point() + (mean / qz.scale()).round() as i64;
            scale.push(qz.scale() / std);
            zero.push(m);
            offset.push(qz.scale() * (m - qz.zero_point()) as f64);
            sigma.push(std);
            ranges.push(Interval { lo: qz.qmin() - m, hi: qz.qmax() - m });
        }
        let centred = Array2::from_shape_fn(q.dim(), |(i, j)| (q[[i, j]] - zero[j]) as f64);
        let (targets, task, post, output_affine) = match p.task {
            NnTask::Classification => {
                let mut classes: Vec<f64> = y.to_vec();
                classes.sort_by(f64::total_cmp);
                classes.dedup();
                if classes.len() < 2 {
                    return Err(NnError::Data("classification needs at least two classes".into()));
                }
                let index: Vec<usize> = y.iter().map(|v| classes.partition_point(|c| c.total_cmp(v).is_lt())).collect();
                let k = classes.len();
                (Targets::Classes(index, k), Task::Classification { classes }, PostProcessing::Softmax, (1.0, 0.0))
            }
            NnTask::Regression => {
                let (mean, std) = mean_std(y);
                let values = y.iter().map(|v| (v - mean) / std).collect();
                (Targets::Values(values), Task::Regression, PostProcessing::Identity, (std, mean))
            }
        };
        let setup = TrainingSetup {
            hidden: p.hidden.clone(),
            activation: p.activation,
            settings: params.settings(),
            epochs: p.epochs,
            learning_rate: p.learning_rate,
            batch_size: p.batch_size,
            seed: p.seed,
            max_fan_in: p.max_fan_in,
        };
        let trained = train(&setup, &IntegerInputs { centred, scale: scale.clone(), ranges }, &targets, on_epoch)?;
        let mut model = Self {
            network: trained.network,
            standardizer: Some(Standardizer { offset, scale: sigma }),
            input: InputQuantization { quantizer, scale, zero },
            activation_ranges: trained.activation_ranges,
            min_rounding: trained.rounding,
            settings: params.settings(),
            output_affine,
            task,
            post,
            params: Some(params.clone()),
            observed_output: None,
        };
        model.observed_output = model.output_range(x)?;
        Ok(model)
    }

    /// Post-training quantization of a float network (imported from ONNX or burn):
    /// inputs quantized to `n_bits` and activation ranges measured on `calibration`.
    /// `task` gives the class labels of the outputs (softmax on the client), or regression.
    pub fn from_network(
        network: Network,
        calibration: ArrayView2<f64>,
        n_bits: u8,
        settings: QuantSettings,
        task: Task,
    ) -> Result<Self> {
        fheml_quant::data::check_finite(calibration)?;
        if calibration.nrows() == 0 {
            return Err(NnError::Data("no calibration rows".into()));
        }
        let (network, post) = match &task {
            // A single-logit binary classifier (torch's usual export): the second class wins
            // when the logit is positive. A final Sigmoid only maps the logit to its
            // probability, which the client computes after decryption: it leaves the circuit.
            Task::Classification { classes } if classes.len() == 2 && network.n_outputs() == 1 => {
                (without_final_sigmoid(network)?, PostProcessing::Sigmoid)
            }
            Task::Classification { classes } => {
                if classes.len() != network.n_outputs() {
                    return Err(NnError::Data(format!(
                        "{} class labels for {} network outputs (one output per class, or one logit for two classes)",
                        classes.len(),
                        network.n_outputs()
                    )));
                }
                (network, PostProcessing::Softmax)
            }
            Task::Regression => (network, PostProcessing::Identity),
        };
        let input = InputQuantization::for_network(&network, n_bits, calibration)?;
        let rows: Vec<Vec<f64>> = calibration.rows().into_iter().map(|r| r.to_vec()).collect();
        let activation_ranges = calibrate_activations(&network, &rows)?;
        let mut model = Self {
            network,
            standardizer: None,
            input,
            activation_ranges,
            min_rounding: vec![],
            settings,
            output_affine: (1.0, 0.0),
            task,
            post,
            params: None,
            observed_output: None,
        };
        model.observed_output = model.output_range(calibration)?;
        Ok(model)
    }

    /// The range of the network's outputs (before the output affine map) over the rows of `x`.
    fn output_range(&self, x: ArrayView2<f64>) -> Result<Option<(f64, f64)>> {
        let (a, b) = self.output_affine;
        let outputs = self.decision_function(x)?;
        let network = outputs.iter().map(|v| if a != 0.0 { (v - b) / a } else { *v });
        Ok(network.fold(None, |r: Option<(f64, f64)>, v| Some(r.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))))
    }

    /// The float network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Hyperparameters, for a trained MLP.
    pub fn params(&self) -> Option<&ValidMlpParams> {
        self.params.as_ref()
    }

    /// Quantization settings.
    pub fn settings(&self) -> &QuantSettings {
        &self.settings
    }

    /// Classification labels or regression.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.network.n_inputs()
    }

    /// Float outputs in user units (logits for classifiers, values for regressors).
    pub fn decision_function(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        fheml_quant::data::check_prediction_rows(x, self.n_features())?;
        let mut inputs = x.to_owned();
        if let Some(s) = &self.standardizer {
            for (j, mut column) in inputs.axis_iter_mut(Axis(1)).enumerate() {
                column.mapv_inplace(|v| (v - s.offset[j]) / s.scale[j]);
            }
        }
        let (a, b) = self.output_affine;
        Ok(self.network.forward(inputs.view())?.mapv(|v| v * a + b))
    }

    /// Float predictions: labels or values.
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Array1<f64>> {
        let scores = self.decision_function(x)?;
        let mut out = Vec::with_capacity(scores.nrows());
        for row in scores.rows() {
            out.push(self.post.apply(row.to_vec(), &self.task)?.value);
        }
        Ok(Array1::from(out))
    }

    /// The circuit: leveled layers, one lookup per hidden activation, client softmax.
    pub fn compile(&self) -> Result<ModelCircuit> {
        lower(
            &self.network,
            &self.input,
            &self.activation_ranges,
            &self.min_rounding,
            &self.settings,
            OutputDecoding {
                scale: self.output_affine.0,
                offset: self.output_affine.1,
                post: self.post,
                task: self.task.clone(),
                observed_range: self.observed_output,
            },
        )
    }

    /// The same model lowered with other bit widths or rounding (activation ranges kept).
    pub fn with_settings(mut self, settings: QuantSettings) -> Self {
        if settings != self.settings {
            // Training's roundings were for the old bit widths.
            self.min_rounding.clear();
        }
        self.settings = settings;
        self
    }
}
