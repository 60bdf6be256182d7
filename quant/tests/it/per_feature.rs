//! Per-feature quantization of 2-D data.

use fheml_quant::{PerFeatureQuantizer, QuantError};
use ndarray::{Array2, array};
use proptest::prelude::*;

use crate::{proptest_config, try_config};

proptest! {
    #![proptest_config(proptest_config(128, "proptest-regressions/it/per_feature.txt"))]

    /// Every column of the calibration data round-trips within its own half step.
    #[test]
    fn columns_round_trip_within_their_own_half_step(
        n_bits in 2u8..=16,
        signed: bool,
        symmetric: bool,
        (rows, cols) in (1usize..8, 1usize..6),
        seed: u64,
    ) {
        let config = try_config(n_bits, signed, symmetric).unwrap();
        let mut state = seed;
        let data = Array2::from_shape_fn((rows, cols), |(_, c)| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Columns of very different magnitudes.
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.3) * 10f64.powi(c as i32 - 2)
        });
        let per = PerFeatureQuantizer::calibrate(&config, data.view()).unwrap();
        let quantized = per.quantize(data.view()).unwrap();
        prop_assert_eq!(quantized.clipped, 0);
        let back = per.dequantize(quantized.values.view()).unwrap();
        for ((r, c), &x) in data.indexed_iter() {
            let q = per.get(c).unwrap();
            prop_assert!((q.qmin()..=q.qmax()).contains(&quantized.values[[r, c]]));
            prop_assert!((back[[r, c]] - x).abs() <= q.scale() / 2.0 * (1.0 + 1e-9));
        }
        let (row, clipped) = per.quantize_row(data.row(0).as_slice().unwrap()).unwrap();
        prop_assert_eq!(clipped, 0);
        prop_assert_eq!(ndarray::Array1::from(row), quantized.values.row(0).to_owned());
    }
}

#[test]
fn f32_input_and_constant_columns() {
    let config = try_config(6, false, false).unwrap();
    let per = PerFeatureQuantizer::calibrate(&config, array![[3.0, -1.0], [3.0, 1.0]].view()).unwrap();
    let q = per.quantize(array![[3.0f32, 0.0], [3.0, 2.0]].view()).unwrap();
    assert_eq!(q.clipped, 1, "2.0 is beyond the second column's range");
    let back = per.dequantize(q.values.view()).unwrap();
    assert_eq!(back[[0, 0]], 3.0, "a constant column maps exactly");
    let json = serde_json::to_string(&per).unwrap();
    assert_eq!(serde_json::from_str::<PerFeatureQuantizer>(&json).unwrap(), per);
}

#[test]
fn feature_count_and_positions_are_typed() {
    let config = try_config(8, false, false).unwrap();
    let per = PerFeatureQuantizer::calibrate(&config, array![[0.0, 1.0], [1.0, 2.0]].view()).unwrap();
    let three = array![[0.0, 1.0, 2.0]];
    assert_eq!(per.quantize(three.view()), Err(QuantError::FeatureCount { expected: 2, got: 3 }));
    assert_eq!(per.quantize_row(&[1.0]), Err(QuantError::FeatureCount { expected: 2, got: 1 }));
    assert_eq!(per.dequantize(array![[1i64, 2, 3]].view()), Err(QuantError::FeatureCount { expected: 2, got: 3 }));
    assert!(matches!(per.quantize_row(&[1.0, f64::NAN]), Err(QuantError::NonFinite { column: 1, .. })));
    assert!(matches!(
        per.quantize(array![[0.0, 1.0], [f64::NAN, 1.0]].view()),
        Err(QuantError::NonFinite { row: 1, column: 0, .. })
    ));
    assert!(matches!(
        PerFeatureQuantizer::calibrate(&config, array![[0.0, 1.0], [2.0, f64::NEG_INFINITY]].view()),
        Err(QuantError::NonFinite { row: 1, column: 1, .. })
    ));
    assert_eq!(PerFeatureQuantizer::calibrate(&config, Array2::zeros((3, 0)).view()), Err(QuantError::EmptyData));
}
