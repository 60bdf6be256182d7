//! Quantization of a [`Network`] and its lowering to an integer circuit: [`calibrate`]
//! observes ranges and picks scales, [`layers`] builds the circuit layer by layer.
//!
//! Every tensor of the lowered network is an integer tensor `X` with, per element, a scale
//! `s` and an integer zero point `z`: it stands for the floats `s·(X - z)`. Linear layers
//! fold the scales of their input into their weights, which are then quantized per output
//! channel (symmetric, `w_bits`), so the circuit only multiplies integers by integers:
//! they are leveled. Zero points and biases become one integer constant per output.
//! Each activation is one table lookup, per channel, that maps the (rounded) accumulator
//! straight to the next layer's `a_bits` activation integers: dequantization, the
//! activation and requantization all happen inside the bootstrap.
//!
//! Image tensors (`[C, H, W]` in the network) are laid out channels-last in the circuit so
//! that per-channel tables and convolution weights apply along the last axis; tensors of
//! other ranks keep their row-major layout.

mod calibrate;
mod layers;
mod layout;

use serde::{Deserialize, Serialize};

use fheml_circuits::{
    CircuitBuilder, InputEncoding, InputSpec, Interval, ModelCircuit, OutputSpec, PostProcessing, RoundingMode, Task,
};

use crate::error::{NnError, Result};
use crate::network::{Activation, Layer, Network};

use calibrate::logit_step;
pub use calibrate::{
    InputQuantization, accumulator_rounding, activation_quantizer, calibrate_activations, quantize_columns,
};
use layers::Lowering;
use layout::QTensor;

/// Significant bits a regression network's output keeps under encryption: the runtime bounds
/// its decryption error in units of `2^(width - 8)` of its range (narrower outputs to the
/// unit).
pub const OUTPUT_RESOLUTION_BITS: u32 = 8;

/// Significant bits a classifier's logits keep under encryption, over the spread they take
/// on the training (or calibration) rows: the runtime bounds their decryption error in units
/// of `2^(⌊log2 spread⌋ - 10)` integers (at least one). Labels then flip only where the two
/// best logits lie within about a thousandth of that spread, which the compile report's
/// expected label flips measure; without a recorded spread logits keep their full integer
/// resolution.
pub const LOGIT_RESOLUTION_BITS: u32 = 10;

/// Widest input a table lookup can read (the circuit builder's limit).
const MAX_TABLE_BITS: u32 = 16;

/// Bit widths and rounding of the lowered network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantSettings {
    /// Weight bits (symmetric, per output channel).
    pub w_bits: u8,
    /// Activation bits (the output of every activation lookup).
    pub a_bits: u8,
    /// Bits each accumulator keeps before its activation lookup (`None`: no rounding, the
    /// lookup reads the whole accumulator).
    pub accumulator_bits: Option<u32>,
    /// How the accumulator rounding is carried out under encryption.
    pub rounding: RoundingMode,
}

impl Default for QuantSettings {
    fn default() -> Self {
        Self { w_bits: 3, a_bits: 3, accumulator_bits: Some(4), rounding: RoundingMode::Approximate }
    }
}

/// What the client does with the network's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDecoding {
    /// Network output to user units: `y·scale + offset` (e.g. an un-standardised target).
    pub scale: f64,
    /// See `scale`.
    pub offset: f64,
    /// Client-side post-processing (softmax for classifiers).
    pub post: PostProcessing,
    /// Class labels or regression.
    pub task: Task,
    /// The network's outputs range over this on the training (or calibration) rows, before
    /// `scale` and `offset`: it sets a classifier's logit resolution ([`LOGIT_RESOLUTION_BITS`]).
    pub observed_range: Option<(f64, f64)>,
}

impl OutputDecoding {
    /// Outputs as they are, for a regression.
    pub fn identity() -> Self {
        Self { scale: 1.0, offset: 0.0, post: PostProcessing::Identity, task: Task::Regression, observed_range: None }
    }
}

/// Lowers `network` with its input quantization and activation ranges.
///
/// `min_rounding[i][c]` (if present) is the least number of bits dropped from the
/// accumulator of channel `c` of activation layer `i` (what quantization-aware training used).
pub fn lower(
    network: &Network,
    input: &InputQuantization,
    activation_ranges: &[Option<(f64, f64)>],
    min_rounding: &[Vec<u32>],
    settings: &QuantSettings,
    decoding: OutputDecoding,
) -> Result<ModelCircuit> {
    if settings.w_bits < 2 || settings.w_bits > 16 || settings.a_bits < 1 || settings.a_bits > 16 {
        return Err(NnError::InvalidParameter {
            name: "w_bits/a_bits".into(),
            reason: format!(
                "weights need 2..=16 bits and activations 1..=16, got {} and {}",
                settings.w_bits, settings.a_bits
            ),
        });
    }
    let n = network.n_inputs();
    if input.quantizer.len() != n || input.scale.len() != n || input.zero.len() != n {
        return Err(NnError::Input(fheml_quant::DataError::FeatureCount { expected: n, got: input.quantizer.len() }));
    }
    let mut lowering = Lowering { b: CircuitBuilder::new(), settings, min_rounding };
    let ranges = input.quantizer.quantizers().iter().map(|q| Interval { lo: q.qmin(), hi: q.qmax() }).collect();
    let flat = lowering.b.input_with_ranges(&[n], ranges)?;
    let mut x = QTensor { node: flat, logical: vec![n], scale: input.scale.clone(), zero: input.zero.clone() };
    x = lowering.reshape(x, network.input_shape())?;
    for (i, layer) in network.layers().iter().enumerate() {
        x = match layer {
            Layer::Dense { weight, bias } => lowering.dense(x, weight, bias)?,
            Layer::Conv2d { weight, bias, stride, padding } => lowering.conv2d(x, weight, bias, *stride, *padding)?,
            Layer::AvgPool2d { kernel, stride } => lowering.avg_pool2d(x, *kernel, *stride)?,
            Layer::MaxPool2d { kernel, stride } => lowering.max_pool2d(x, *kernel, *stride, i)?,
            Layer::Affine { scale, shift } => lowering.affine(x, scale, shift, i)?,
            Layer::Activation(Activation::Identity) => x,
            Layer::Activation(f) => lowering.activation(x, *f, activation_ranges.get(i).copied().flatten(), i)?,
            Layer::Reshape(to) => lowering.reshape(x, to)?,
        };
    }
    // Logits and regression values are real-valued outputs. A classifier's logits keep
    // LOGIT_RESOLUTION_BITS over the spread they were seen to take (labels flip when two
    // logits come within a few steps, which the static range says nothing about); a
    // regression value keeps OUTPUT_RESOLUTION_BITS significant bits of its range.
    let step = match decoding.task {
        Task::Classification { .. } => logit_step(&x.scale, decoding.observed_range),
        Task::Regression => 1u64 << lowering.b.node_range(x.node).span_bits().0.saturating_sub(OUTPUT_RESOLUTION_BITS),
    };
    lowering.b.output_real(x.node, step)?;
    let circuit = lowering.b.build()?;
    let (output_scale, output_offset) = (decoding.scale, decoding.offset);
    let output = OutputSpec {
        scale: x.scale.iter().map(|s| s * output_scale).collect(),
        offset: x.scale.iter().zip(&x.zero).map(|(s, z)| -s * *z as f64 * output_scale + output_offset).collect(),
        groups: 1,
    };
    Ok(ModelCircuit {
        circuit,
        inputs: vec![InputSpec { quantizer: input.quantizer.clone(), encoding: InputEncoding::Quantized }],
        outputs: vec![output],
        post: decoding.post,
        task: decoding.task,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, Array4, array};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    fn data(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f64> {
        Array2::from_shape_vec((rows, cols), random(rng, rows * cols)).unwrap()
    }

    /// Lowers with wide bits and compares the clear circuit with the float network.
    fn max_error(network: &Network, x: &Array2<f64>, settings: QuantSettings) -> f64 {
        let input = InputQuantization::for_network(network, 8, x.view()).unwrap();
        let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
        let ranges = calibrate_activations(network, &rows).unwrap();
        let model = lower(network, &input, &ranges, &[], &settings, OutputDecoding::identity()).unwrap();
        let mut worst = 0f64;
        for row in &rows {
            let float = network.forward_row(row).unwrap();
            let outputs = model.circuit.evaluate_clear(&model.encode(row).unwrap()).unwrap();
            let decoded = model.outputs[0].decode(&outputs[0]).unwrap();
            for (a, b) in float.iter().zip(&decoded) {
                worst = worst.max((a - b).abs());
            }
        }
        worst
    }

    const WIDE: QuantSettings =
        QuantSettings { w_bits: 10, a_bits: 10, accumulator_bits: Some(12), rounding: RoundingMode::Exact };

    #[test]
    fn wide_mlp_matches_float() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let net = Network::new(
            vec![4],
            vec![
                Layer::Dense { weight: data(&mut rng, 4, 6), bias: Array1::from(random(&mut rng, 6)) },
                Layer::Activation(Activation::Tanh),
                Layer::Affine { scale: array![2.0].into_dyn(), shift: array![0.3].into_dyn() },
                Layer::Dense { weight: data(&mut rng, 6, 3), bias: Array1::from(random(&mut rng, 3)) },
            ],
        )
        .unwrap();
        let x = data(&mut rng, 40, 4);
        let err = max_error(&net, &x, WIDE);
        assert!(err < 0.05, "max error {err}");
    }

    #[test]
    fn wide_cnn_matches_float() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let conv = Array4::from_shape_vec((2, 1, 3, 3), random(&mut rng, 18)).unwrap();
        let net = Network::new(
            vec![1, 5, 5],
            vec![
                Layer::Conv2d { weight: conv, bias: array![0.1, -0.2], stride: [1, 1], padding: [1, 1, 1, 1] },
                Layer::Affine {
                    scale: Array1::from(vec![1.5, 0.5]).into_shape_with_order((2, 1, 1)).unwrap().into_dyn(),
                    shift: Array1::from(vec![0.1, -0.3]).into_shape_with_order((2, 1, 1)).unwrap().into_dyn(),
                },
                Layer::Activation(Activation::Relu),
                Layer::AvgPool2d { kernel: [2, 2], stride: [2, 2] },
                Layer::Reshape(vec![8]),
                Layer::Dense { weight: data(&mut rng, 8, 3), bias: Array1::from(random(&mut rng, 3)) },
            ],
        )
        .unwrap();
        let x = data(&mut rng, 30, 25);
        let err = max_error(&net, &x, WIDE);
        assert!(err < 0.05, "max error {err}");
    }

    #[test]
    fn rounding_keeps_the_requested_read_precision() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net = Network::new(
            vec![8],
            vec![
                Layer::Dense { weight: data(&mut rng, 8, 16), bias: Array1::from(random(&mut rng, 16)) },
                Layer::Activation(Activation::Relu),
                Layer::Dense { weight: data(&mut rng, 16, 2), bias: Array1::zeros(2) },
            ],
        )
        .unwrap();
        let x = data(&mut rng, 50, 8);
        let input = InputQuantization::calibrate(3, x.view()).unwrap();
        let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
        let ranges = calibrate_activations(&net, &rows).unwrap();
        let settings = QuantSettings::default();
        let model = lower(&net, &input, &ranges, &[], &settings, OutputDecoding::identity()).unwrap();
        let cost = model.circuit.cost();
        assert_eq!(cost.bootstraps, 16);
        assert!(cost.max_precision.0 <= 4, "{}", cost.max_precision);
        // The quantized network still tracks the float one.
        let agree = rows
            .iter()
            .filter(|r| {
                let f = net.forward_row(r).unwrap();
                let q = model.predict_clear(r).unwrap().scores;
                (f[0] > f[1]) == (q[0] > q[1])
            })
            .count();
        assert!(agree >= 35, "{agree}/50");
    }
}
