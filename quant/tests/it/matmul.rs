//! The integer reference of a quantized linear layer against the float layer.

use fheml_quant::{QuantizedLinear, UniformQuantizer};
use ndarray::{Array1, Array2, Axis};
use proptest::prelude::*;

use crate::{proptest_config, try_config};

/// Shapes and values of a layer `[k, m]`, its bias, and `rows` inputs.
fn layer_and_inputs() -> impl Strategy<Value = (Array2<f64>, Array1<f64>, Array2<f64>)> {
    (1usize..10, 1usize..5, 1usize..6, -3i32..3).prop_flat_map(|(k, m, rows, log_w)| {
        let w_mag = 10f64.powi(log_w);
        (
            prop::collection::vec(-w_mag..w_mag, k * m),
            prop::collection::vec(-5f64..5.0, m),
            prop::collection::vec(-100f64..100.0, rows * k),
        )
            .prop_map(move |(w, b, x)| {
                (
                    Array2::from_shape_vec((k, m), w).unwrap(),
                    Array1::from(b),
                    Array2::from_shape_vec((rows, k), x).unwrap(),
                )
            })
    })
}

proptest! {
    #![proptest_config(proptest_config(256, "proptest-regressions/it/matmul.txt"))]

    /// The dequantized integer result is within `error_bound` of the float layer, for inputs
    /// inside the calibrated range and (with the clipping-aware bound) outside it.
    #[test]
    fn integer_result_is_within_the_error_bound(
        (w, b, x) in layer_and_inputs(),
        (x_bits, x_signed, x_symmetric) in (1u8..=12, any::<bool>(), any::<bool>()),
        (w_bits, w_symmetric) in (2u8..=12, prop::bool::weighted(0.8)),
        outside_factor in 1.0f64..3.0,
    ) {
        let Some(x_config) = try_config(x_bits, x_signed, x_symmetric) else { return Ok(()) };
        let w_config = try_config(w_bits, true, w_symmetric).unwrap();
        let x_quantizer = UniformQuantizer::calibrate(&x_config, x.iter().copied()).unwrap();
        let layer = QuantizedLinear::from_float(w.view(), b.view(), &w_config).unwrap();
        if w_symmetric {
            prop_assert!(layer.weights.iter().all(|v| v.abs() < 1 << (w_bits - 1)));
        }

        // The calibration rows, then the same rows scaled beyond the range (clipped).
        let inputs = ndarray::concatenate(Axis(0), &[x.view(), (&x * outside_factor).view()]).unwrap();
        let q_x = x_quantizer.quantize(&inputs).unwrap().values;
        let acc = layer.integer_accumulate(q_x.view(), x_quantizer.zero_point()).unwrap();
        let y = layer.dequantize_accumulator(acc.view(), x_quantizer.scale()).unwrap();
        let exact = inputs.dot(&w) + &b;
        for (r, input) in inputs.rows().into_iter().enumerate() {
            let bound = layer.error_bound(input, &x_quantizer).unwrap();
            for j in 0..b.len() {
                let magnitude: f64 = input.iter().zip(w.column(j)).map(|(a, c)| (a * c).abs()).sum::<f64>() + b[j].abs();
                let err = (y[[r, j]] - exact[[r, j]]).abs();
                prop_assert!(
                    err <= bound[j] + 1e-12 * (1.0 + magnitude),
                    "row {} output {}: err {} > bound {}", r, j, err, bound[j]
                );
            }
        }
    }
}

#[test]
fn accumulator_matches_a_hand_computation() {
    let config = try_config(3, true, true).unwrap();
    let w = ndarray::array![[1.0, -1.0], [0.5, 0.0], [-0.25, 1.0]];
    let layer = QuantizedLinear::from_float(w.view(), ndarray::array![0.5, 0.0].view(), &config).unwrap();
    // 3-bit symmetric: scale 1/3, so w/scale = [[3, -3], [1.5, 0], [-0.75, 3]], rounded.
    assert_eq!(layer.weights, ndarray::array![[3, -3], [2, 0], [-1, 3]]);
    let acc = layer.integer_accumulate(ndarray::array![[4, 5, 6]].view(), 5).unwrap();
    assert_eq!(acc, ndarray::array![[-3 - 1, 3 + 3]]);
}
