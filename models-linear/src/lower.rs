//! Quantization and lowering to a leveled integer circuit (no table lookup).
//!
//! 1. Each feature gets an unsigned, asymmetric `n_bits` quantizer calibrated on the
//!    calibration set: `xᵢ ≈ sᵢ·(qᵢ - zᵢ)`, `qᵢ ∈ [qmin, qmax]`.
//! 2. The input scales are folded into the weights, `w'ᵢⱼ = sᵢ·wᵢⱼ`, and each output's
//!    column is quantized symmetric, signed, with `w_bits`: `w'ᵢⱼ ≈ s_wⱼ·Wᵢⱼ`.
//! 3. The server computes `accⱼ = Σᵢ qᵢ·Wᵢⱼ + cⱼ` with
//!    `cⱼ = round(bⱼ / s_wⱼ) - Σᵢ zᵢ·Wᵢⱼ` (a matrix product and one constant addition: the
//!    zero-point correction and the intercept both stay on the server), exactly in integers.
//! 4. The client decodes `scoreⱼ = s_wⱼ·accⱼ` and post-processes it (sigmoid, softmax,
//!    sign, argmax, exp or identity).
//!
//! The decoded score differs from the float one by at most
//! `Σᵢ |qᵢ - zᵢ|·s_wⱼ/2 + Σᵢ |wᵢⱼ|·sᵢ/2 + s_wⱼ/2` for features inside the calibrated range.

use fheml_circuits::{
    CircuitBuilder, InputEncoding, InputSpec, Interval, ModelCircuit, OutputSpec, PostProcessing, Task,
};
use fheml_quant::{PerFeatureQuantizer, QuantizerConfig, UniformQuantizer};
use ndarray::{Array1, Array2, ArrayView2};

use crate::coefficients::LinearCoefficients;
use crate::data::check_prediction_input;
use crate::error::{LinearError, Result};

/// Largest `|round(b / s_w)|`: when the intercept dwarfs the folded weights, the weight
/// scale grows so that the constant stays within 2^24 (the weights then lose precision
/// they could not show in the scores anyway).
const MAX_BIAS_STEPS: f64 = (1u64 << 24) as f64;

/// Quantizes `coefficients` and lowers them to a circuit, calibrating the input quantizers
/// on `calibration`.
pub fn lower(
    coefficients: &LinearCoefficients,
    calibration: ArrayView2<f64>,
    n_bits: u8,
    w_bits: u8,
    post: PostProcessing,
    task: Task,
) -> Result<ModelCircuit> {
    let (p, k) = coefficients.weights().dim();
    check_prediction_input(calibration, p)?;
    let input_config = QuantizerConfig::params().n_bits(n_bits).signed(false).symmetric(false).check()?;
    let inputs = PerFeatureQuantizer::calibrate(&input_config, calibration)?;
    let weight_config = QuantizerConfig::params().n_bits(w_bits).signed(true).symmetric(true).check()?;
    let qmax = UniformQuantizer::from_range(&weight_config, -1.0, 1.0)?.qmax() as f64;

    let mut integer_weights = Array2::<i64>::zeros((p, k));
    let mut constants = Vec::with_capacity(k);
    let mut scales = Vec::with_capacity(k);
    for j in 0..k {
        let folded: Array1<f64> =
            inputs.quantizers().iter().zip(coefficients.weights().column(j)).map(|(q, w)| q.scale() * w).collect();
        let bias = coefficients.intercept()[j];
        let largest = folded.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let m = largest.max(bias.abs() * qmax / MAX_BIAS_STEPS);
        let quantizer = UniformQuantizer::from_range(&weight_config, -m, m)?;
        let column = quantizer.quantize(&folded)?.values;
        let scale = quantizer.scale();
        let zero_point_correction = inputs
            .quantizers()
            .iter()
            .zip(&column)
            .try_fold(0i64, |acc, (q, w)| q.zero_point().checked_mul(*w).and_then(|v| acc.checked_add(v)));
        let constant =
            zero_point_correction.and_then(|c| ((bias / scale).round() as i64).checked_sub(c)).ok_or_else(|| {
                LinearError::Coefficients(format!("output {j}: the integer constant overflows; use fewer bits"))
            })?;
        integer_weights.column_mut(j).assign(&column);
        constants.push(constant);
        scales.push(scale);
    }

    let mut builder = CircuitBuilder::new();
    let ranges = inputs.quantizers().iter().map(|q| Interval { lo: q.qmin(), hi: q.qmax() }).collect();
    let x = builder.input_with_ranges(&[p], ranges)?;
    let accumulator = builder.matmul(x, integer_weights)?;
    let scores = builder.add_const(accumulator, Array1::from(constants).into_dyn())?;
    // Scores are real values: a one-unit error is far below the score's float resolution.
    builder.output_real(scores, 1)?;
    Ok(ModelCircuit {
        circuit: builder.build()?,
        inputs: vec![InputSpec { quantizer: inputs, encoding: InputEncoding::Quantized }],
        outputs: vec![OutputSpec { scale: scales, offset: vec![0.0], groups: 1 }],
        post,
        task,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn case() -> impl Strategy<Value = (Array2<f64>, Array2<f64>, Array1<f64>, u8, u8)> {
        (1usize..6, 1usize..4, 2usize..12).prop_flat_map(|(p, k, n)| {
            (
                proptest::collection::vec(-100.0f64..100.0, n * p)
                    .prop_map(move |v| Array2::from_shape_vec((n, p), v).unwrap()),
                proptest::collection::vec(-5.0f64..5.0, p * k)
                    .prop_map(move |v| Array2::from_shape_vec((p, k), v).unwrap()),
                proptest::collection::vec(-50.0f64..50.0, k).prop_map(Array1::from),
                2u8..10,
                2u8..10,
            )
        })
    }

    proptest! {
        #[test]
        fn decoded_scores_stay_within_the_quantization_bound((x, w, b, n_bits, w_bits) in case()) {
            let c = LinearCoefficients::new(w.clone(), b.clone()).unwrap();
            let circuit = lower(&c, x.view(), n_bits, w_bits, PostProcessing::Identity, Task::Regression).unwrap();
            prop_assert_eq!(circuit.circuit.cost().bootstraps, 0);
            let quantizers = circuit.inputs[0].quantizer.quantizers().to_vec();
            for row in x.rows() {
                let encoded = circuit.encode(row.as_slice().unwrap()).unwrap();
                let scores = circuit.outputs[0].decode(&circuit.circuit.evaluate_clear(&encoded).unwrap()[0]).unwrap();
                let float = row.dot(&w) + &b;
                for j in 0..w.ncols() {
                    let s_w = circuit.outputs[0].scale[j];
                    let bound: f64 = encoded[0].iter().zip(&quantizers).enumerate().map(|(i, (q, qz))| {
                        (q - qz.zero_point()).abs() as f64 * s_w / 2.0 + w[[i, j]].abs() * qz.scale() / 2.0
                    }).sum::<f64>() + s_w / 2.0;
                    prop_assert!((scores[j] - float[j]).abs() <= bound * (1.0 + 1e-9) + 1e-9,
                        "output {}: {} vs {} (bound {})", j, scores[j], float[j], bound);
                }
            }
        }
    }

    #[test]
    fn lowering_is_a_matmul_plus_a_constant_with_no_lookup() {
        let c = LinearCoefficients::new(ndarray::array![[1.0], [-2.0]], ndarray::array![0.5]).unwrap();
        let x = ndarray::array![[0.0, 1.0], [2.0, 3.0], [1.0, 0.0]];
        let circuit = lower(&c, x.view(), 8, 8, PostProcessing::Identity, Task::Regression).unwrap();
        let cost = circuit.circuit.cost();
        assert_eq!(cost.bootstraps, 0);
        assert_eq!(circuit.circuit.nodes().len(), 3);
        let p = circuit.predict_clear(&[1.0, 1.0]).unwrap();
        assert!((p.value - (1.0 - 2.0 + 0.5)).abs() < 0.02, "{p:?}");
        // All-zero weights and an intercept alone still lower (scale from the intercept).
        let zero = LinearCoefficients::new(Array2::zeros((2, 1)), ndarray::array![150.0]).unwrap();
        let circuit = lower(&zero, x.view(), 8, 8, PostProcessing::Identity, Task::Regression).unwrap();
        assert!((circuit.predict_clear(&[5.0, 5.0]).unwrap().value - 150.0).abs() < 1e-3);
    }
}
