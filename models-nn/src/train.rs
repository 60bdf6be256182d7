//! Quantization-aware training of an MLP with burn (flex CPU backend, autodiff).
//!
//! The forward pass computes exactly what the lowered circuit computes, in floats: the
//! inputs are the client's quantized features, every layer's effective weights (its
//! weights times the scales of its input) are fake-quantized per output channel, the
//! biases are rounded to the accumulator grid, the accumulator is rounded to the bits the
//! activation lookup reads, and every activation is fake-quantized to `a_bits` on a range
//! tracked during training. Rounding passes gradients straight through (STE).

use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData, activation};
use ndarray::{Array1, Array2};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use fheml_circuits::Interval;

use crate::error::{NnError, Result};
use crate::lower::{QuantSettings, accumulator_rounding, activation_quantizer, quantize_columns};
use crate::network::{Activation, Layer, Network};

/// What a training run needs besides the data.
#[derive(Debug, Clone)]
pub struct TrainingSetup {
    /// Units of each hidden layer.
    pub hidden: Vec<usize>,
    /// Hidden activation.
    pub activation: Activation,
    /// Bit widths and rounding the network is trained for.
    pub settings: QuantSettings,
    /// Passes over the data.
    pub epochs: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Rows per step.
    pub batch_size: usize,
    /// Seed of the initialisation and of the shuffling.
    pub seed: u64,
    /// At most this many inputs per hidden neuron (the rest pruned by magnitude).
    pub max_fan_in: Option<usize>,
}

/// Where training stands after one epoch, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// Epochs done (1-based).
    pub epoch: usize,
    /// Epochs in all.
    pub epochs: usize,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
}

/// The network's input: client integers `q` minus `zero`, times `scale` (per feature).
#[derive(Debug, Clone)]
pub struct IntegerInputs {
    /// `q - zero` for every training row (`[rows, features]`).
    pub centred: Array2<f64>,
    /// Per-feature scale.
    pub scale: Vec<f64>,
    /// Integer range of `q - zero`, per feature.
    pub ranges: Vec<Interval>,
}

/// Targets: class indices (cross-entropy) or standardised values (squared error).
#[derive(Debug, Clone)]
pub enum Targets {
    /// Class index per row, and the number of classes.
    Classes(Vec<usize>, usize),
    /// One value per row.
    Values(Vec<f64>),
}

/// What training produces.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The float network on the scaled inputs (dense / activation layers).
    pub network: Network,
    /// Output range of each layer of `network` that is an activation.
    pub activation_ranges: Vec<Option<(f64, f64)>>,
    /// Low bits dropped from each neuron's accumulator during the final epochs (indexed
    /// like `network`'s layers; empty for other layers).
    pub rounding: Vec<Vec<u32>>,
}

#[derive(Module, Debug)]
struct QatMlp {
    weights: Vec<Param<Tensor<2>>>,
    biases: Vec<Param<Tensor<2>>>,
}

fn tensor2(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// The values of a tensor, row-major.
pub(crate) fn tensor_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f64>> {
    let data = t.into_data().try_to_vec::<f32>().map_err(|e| NnError::Data(format!("reading a tensor: {e:?}")))?;
    Ok(data.into_iter().map(f64::from).collect())
}

/// Mean cross-entropy of `logits` (`[rows, k]`) against one class index per row.
pub(crate) fn cross_entropy(logits: Tensor<2>, labels: &[usize], k: usize, device: &Device) -> Tensor<1> {
    let mut onehot = vec![0f32; labels.len() * k];
    for (r, &c) in labels.iter().enumerate() {
        onehot[r * k + c] = 1.0;
    }
    let onehot = tensor2(onehot, labels.len(), k, device);
    -(activation::log_softmax(logits, 1) * onehot).sum() / labels.len() as f64
}

fn scalar(t: Tensor<1>) -> f64 {
    f64::from(t.into_scalar::<f32>())
}

/// Straight-through estimator: the value of `target`, the gradient of `x`.
fn ste(x: Tensor<2>, target: Tensor<2>) -> Tensor<2> {
    x.clone() + (target - x).detach()
}

fn apply_activation(f: Activation, z: Tensor<2>) -> Tensor<2> {
    match f {
        Activation::Relu => activation::relu(z),
        Activation::Sigmoid => activation::sigmoid(z),
        Activation::Tanh => activation::tanh(z),
        Activation::LeakyRelu { alpha } => activation::leaky_relu(z, alpha),
        Activation::Elu { alpha } => activation::elu(z, alpha),
        Activation::Silu => activation::silu(z),
        Activation::Softplus => activation::softplus(z, 1.0),
        Activation::Relu6 => activation::relu6(z),
        Activation::Identity => z,
    }
}

/// Per-layer quantities fixed for one epoch.
#[derive(Debug, Clone)]
struct EpochPlan {
    /// Accumulator rounding (`2^lsbs`) of each neuron of each hidden layer.
    rounding: Vec<Vec<f64>>,
}

struct Trainer<'a> {
    setup: &'a TrainingSetup,
    device: Device,
    input_scale: Vec<f64>,
    input_ranges: Vec<Interval>,
    /// Running output range of each hidden activation.
    ranges: Vec<Option<(f64, f64)>>,
    /// Per dense layer, the 0/1 mask of the weights kept once pruning has happened.
    masks: Vec<Option<Tensor<2>>>,
}

impl Trainer<'_> {
    fn weight_levels(&self) -> f64 {
        ((1i64 << (self.setup.settings.w_bits - 1)) - 1) as f64
    }

    /// Scale vector and integer range of each layer's input.
    fn layer_inputs(&self, layer: usize, width: usize) -> Result<(Vec<f64>, Vec<Interval>)> {
        if layer == 0 {
            return Ok((self.input_scale.clone(), self.input_ranges.clone()));
        }
        let range = self.ranges[layer - 1].unwrap_or((0.0, 1.0));
        let q = activation_quantizer(self.setup.settings.a_bits, range)?;
        let r = Interval { lo: q.qmin() - q.zero_point(), hi: q.qmax() - q.zero_point() };
        Ok((vec![q.scale(); width], vec![r; width]))
    }

    /// `w` with the pruned weights of layer `l` set to zero.
    fn masked(&self, l: usize, w: Tensor<2>) -> Tensor<2> {
        match self.masks.get(l) {
            Some(Some(mask)) => w * mask.clone(),
            _ => w,
        }
    }

    /// Keeps the `k` inputs of largest effective weight (weight times input scale) of every
    /// hidden neuron; the others are zero from now on (their gradient too).
    fn prune(&mut self, model: &QatMlp, k: usize) -> Result<()> {
        let hidden = model.weights.len() - 1;
        for (l, w) in model.weights.iter().enumerate().take(hidden) {
            let [rows, cols] = w.val().dims();
            if rows <= k {
                continue;
            }
            let (scale, _) = self.layer_inputs(l, rows)?;
            let wv = tensor_values(self.masked(l, w.val()))?;
            let mut mask = vec![0f32; rows * cols];
            for j in 0..cols {
                let mut inputs: Vec<usize> = (0..rows).collect();
                inputs.sort_by(|&a, &b| {
                    let (ea, eb) = ((wv[a * cols + j] * scale[a]).abs(), (wv[b * cols + j] * scale[b]).abs());
                    eb.total_cmp(&ea).then(a.cmp(&b))
                });
                for &i in &inputs[..k] {
                    mask[i * cols + j] = 1.0;
                }
            }
            self.masks[l] = Some(tensor2(mask, rows, cols, &self.device));
        }
        Ok(())
    }

    /// The accumulator rounding the lowering will apply, from the current weights.
    fn plan_epoch(&self, model: &QatMlp) -> Result<EpochPlan> {
        let mut rounding = Vec::new();
        for (l, (w, b)) in model.weights.iter().zip(&model.biases).enumerate().take(model.weights.len() - 1) {
            let [rows, cols] = w.val().dims();
            let wv = tensor_values(self.masked(l, w.val()))?;
            let bv = tensor_values(b.val())?;
            let (scale, ranges) = self.layer_inputs(l, rows)?;
            let effective = Array2::from_shape_fn((rows, cols), |(i, j)| wv[i * cols + j] * scale[i]);
            let (wq, scales) = quantize_columns(&effective, self.setup.settings.w_bits);
            let acc: Vec<Interval> = (0..cols)
                .map(|j| {
                    let (mut lo, mut hi) = ((bv[j] / scales[j]).round() as i64, 0i64);
                    hi += lo;
                    for i in 0..rows {
                        let (a, c) = (wq[[i, j]] * ranges[i].lo, wq[[i, j]] * ranges[i].hi);
                        lo += a.min(c);
                        hi += a.max(c);
                    }
                    Interval { lo, hi }
                })
                .collect();
            rounding.push(
                acc.iter()
                    .map(|r| 2f64.powi(accumulator_rounding(std::slice::from_ref(r), &self.setup.settings) as i32))
                    .collect(),
            );
        }
        Ok(EpochPlan { rounding })
    }

    /// The quantized forward pass; records activation ranges when `track` is set.
    fn forward(&mut self, model: &QatMlp, x: Tensor<2>, plan: &EpochPlan, track: bool) -> Result<Tensor<2>> {
        let levels = self.weight_levels();
        let last = model.weights.len() - 1;
        let mut q = x;
        for (l, (w, b)) in model.weights.iter().zip(&model.biases).enumerate() {
            let [rows, _] = w.val().dims();
            let (scale, _) = self.layer_inputs(l, rows)?;
            let c = tensor2(scale.iter().map(|v| *v as f32).collect(), rows, 1, &self.device);
            let effective = self.masked(l, w.val()) * c;
            let step = (effective.clone().abs().max_dim(0).detach() / levels).clamp_min(1e-12);
            let wq = ste(effective.clone(), (effective / step.clone()).round().clamp(-levels, levels) * step.clone());
            let bias = b.val();
            let bq = ste(bias.clone(), (bias / step.clone()).round() * step.clone());
            let mut z = q.matmul(wq) + bq;
            if l == last {
                return Ok(z);
            }
            let units = &plan.rounding[l];
            let unit = step * tensor2(units.iter().map(|u| *u as f32).collect(), 1, units.len(), &self.device);
            z = ste(z.clone(), (z / unit.clone()).round() * unit);
            let a = apply_activation(self.setup.activation, z);
            if track {
                let (lo, hi) = (scalar(a.clone().min()), scalar(a.clone().max()));
                self.ranges[l] = Some(match self.ranges[l] {
                    None => (lo, hi),
                    Some((rl, rh)) => (0.9 * rl + 0.1 * lo, 0.9 * rh + 0.1 * hi),
                });
            }
            let quantizer = activation_quantizer(self.setup.settings.a_bits, self.ranges[l].unwrap_or((0.0, 1.0)))?;
            let (s, zp) = (quantizer.scale(), quantizer.zero_point() as f64);
            let (qmin, qmax) = (quantizer.qmin() as f64, quantizer.qmax() as f64);
            // The next layer reads `q - zero` (integers); its scale is folded in its weights.
            let integer = (a.clone() / s + zp).round().clamp(qmin, qmax) - zp;
            q = ste(a / s, integer);
        }
        Err(NnError::InvalidNetwork("a network without layers".into()))
    }
}

fn initial_model(setup: &TrainingSetup, n_in: usize, n_out: usize, device: &Device) -> QatMlp {
    let mut rng = ChaCha8Rng::seed_from_u64(setup.seed);
    let mut widths = vec![n_in];
    widths.extend(&setup.hidden);
    widths.push(n_out);
    let (mut weights, mut biases) = (Vec::new(), Vec::new());
    for pair in widths.windows(2) {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        // He initialisation for rectifiers, Glorot otherwise.
        let bound = match setup.activation {
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Relu6 | Activation::Elu { .. } => {
                (6.0 / fan_in as f64).sqrt()
            }
            _ => (6.0 / (fan_in + fan_out) as f64).sqrt(),
        };
        let w: Vec<f32> = (0..fan_in * fan_out).map(|_| rng.gen_range(-bound..bound) as f32).collect();
        weights.push(Param::from_tensor(tensor2(w, fan_in, fan_out, device)));
        biases.push(Param::from_tensor(tensor2(vec![0.0; fan_out], 1, fan_out, device)));
    }
    QatMlp { weights, biases }
}

fn loss(logits: Tensor<2>, targets: &Targets, rows: &[usize], device: &Device) -> Tensor<1> {
    match targets {
        Targets::Classes(classes, k) => {
            let labels: Vec<usize> = rows.iter().map(|&i| classes[i]).collect();
            cross_entropy(logits, &labels, *k, device)
        }
        Targets::Values(values) => {
            let y = tensor2(rows.iter().map(|&i| values[i] as f32).collect(), rows.len(), 1, device);
            (logits - y).powf_scalar(2.0).mean()
        }
    }
}

/// Trains an MLP on integer inputs with quantization-aware training.
/// `on_epoch` hears about every finished epoch.
pub fn train(
    setup: &TrainingSetup,
    inputs: &IntegerInputs,
    targets: &Targets,
    on_epoch: &mut dyn FnMut(EpochReport),
) -> Result<Trained> {
    let (n, f) = inputs.centred.dim();
    let n_out = match targets {
        Targets::Classes(_, k) => *k,
        Targets::Values(_) => 1,
    };
    if n == 0 || f == 0 {
        return Err(NnError::Data("no training rows or no features".into()));
    }
    let device = Device::flex().autodiff();
    device.seed(setup.seed);
    let mut model = initial_model(setup, f, n_out, &device);
    let mut optimizer = AdamConfig::new().init();
    let mut trainer = Trainer {
        setup,
        device: device.clone(),
        input_scale: inputs.scale.clone(),
        input_ranges: inputs.ranges.clone(),
        ranges: vec![None; setup.hidden.len()],
        masks: vec![None; setup.hidden.len() + 1],
    };
    let x_all: Vec<f32> = inputs.centred.iter().map(|v| *v as f32).collect();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(setup.seed ^ 0x5eed);
    // The last fifth of the epochs fine-tunes with the quantizers frozen (activation
    // ranges and accumulator roundings, as the lowering will use them) at a tenth of the
    // learning rate, so the final weights are trained for exactly the circuit's arithmetic.
    let frozen_from = setup.epochs - (setup.epochs / 5).max(1).min(setup.epochs);
    let mut frozen: Option<EpochPlan> = None;
    // Pruning happens once, a third of the way in, so the kept weights have most of the
    // training to make up for the dropped ones.
    let prune_at = setup.epochs / 3;
    for epoch in 0..setup.epochs {
        order.shuffle(&mut rng);
        if epoch == prune_at
            && let Some(k) = setup.max_fan_in
        {
            trainer.prune(&model, k)?;
        }
        let track = epoch < frozen_from;
        if !track && frozen.is_none() {
            frozen = Some(trainer.plan_epoch(&model)?);
        }
        let plan = match &frozen {
            Some(p) => p.clone(),
            None => trainer.plan_epoch(&model)?,
        };
        let lr = if track { setup.learning_rate } else { setup.learning_rate / 10.0 };
        let mut loss_sum = 0.0;
        for batch in order.chunks(setup.batch_size.max(1)) {
            let rows: Vec<f32> = batch.iter().flat_map(|&i| x_all[i * f..(i + 1) * f].iter().copied()).collect();
            let x = tensor2(rows, batch.len(), f, &device);
            let logits = trainer.forward(&model, x, &plan, track)?;
            let batch_loss = loss(logits, targets, batch, &device);
            loss_sum += scalar(batch_loss.clone().detach()) * batch.len() as f64;
            let grads = GradientsParams::from_grads(batch_loss.backward(), &model);
            model = optimizer.step(lr, model, grads);
        }
        on_epoch(EpochReport { epoch: epoch + 1, epochs: setup.epochs, loss: loss_sum / n as f64 });
    }
    let rounding = frozen.map(|p| p.rounding).unwrap_or_default();
    network_of(&model, &trainer, f, &rounding)
}

fn network_of(model: &QatMlp, trainer: &Trainer, n_in: usize, unit: &[Vec<f64>]) -> Result<Trained> {
    let (setup, ranges) = (trainer.setup, &trainer.ranges);
    let mut layers = Vec::new();
    let mut activation_ranges = Vec::new();
    let mut rounding = Vec::new();
    let last = model.weights.len() - 1;
    for (l, (w, b)) in model.weights.iter().zip(&model.biases).enumerate() {
        let [rows, cols] = w.val().dims();
        let weight = Array2::from_shape_vec((rows, cols), tensor_values(trainer.masked(l, w.val()))?)
            .map_err(|e| NnError::InvalidNetwork(e.to_string()))?;
        let bias = Array1::from(tensor_values(b.val())?);
        layers.push(Layer::Dense { weight, bias });
        activation_ranges.push(None);
        rounding.push(vec![]);
        if l < last {
            layers.push(Layer::Activation(setup.activation));
            activation_ranges.push(Some(ranges[l].unwrap_or((0.0, 1.0))));
            rounding.push(unit.get(l).map_or(vec![], |u| u.iter().map(|v| v.log2().round() as u32).collect()));
        }
    }
    Ok(Trained { network: Network::new(vec![n_in], layers)?, activation_ranges, rounding })
}
