//! Integration tests of the quant crate.
#![allow(clippy::unwrap_used, missing_docs)]

use fheml_quant::{PerFeatureQuantizer, QuantError, QuantizedLinear, QuantizerConfig, UniformQuantizer};
use ndarray::{Array1, Array2, array};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Inside the calibrated range, quantize then dequantize is within scale/2.
    #[test]
    fn round_trip_within_half_a_step(
        n_bits in 1u8..=16,
        signed: bool,
        symmetric: bool,
        lo in -1e3f64..1e3,
        width in 1e-3f64..1e3,
        t in 0f64..=1.0,
    ) {
        let checked = QuantizerConfig::params().n_bits(n_bits).signed(signed).symmetric(symmetric).check();
        if symmetric && n_bits < 2 {
            prop_assert!(checked.is_err());
            return Ok(());
        }
        let config = checked.unwrap();
        let hi = lo + width;
        let q = UniformQuantizer::calibrate(&config, [lo, hi]).unwrap();
        let x = lo + t * width;
        let (v, clipped) = q.quantize_value(x).unwrap();
        prop_assert!(v >= q.qmin() && v <= q.qmax());
        prop_assert!(!clipped, "inside values are not counted as clipped");
        let err = (q.dequantize_value(v) - x).abs();
        prop_assert!(err <= q.scale() / 2.0 * (1.0 + 1e-9) + 1e-9, "err {} scale {} clipped {}", err, q.scale(), clipped);
    }

    /// Outside the range values are clipped, counted, and stay in [qmin, qmax].
    #[test]
    fn outside_values_are_clipped_and_counted(n_bits in 1u8..=16, signed: bool, excess in 1.5f64..1e3) {
        let config = QuantizerConfig::params().n_bits(n_bits).signed(signed).check().unwrap();
        let q = UniformQuantizer::calibrate(&config, [0.0, 1.0]).unwrap();
        let out = q.quantize(&array![-excess, 0.5, 1.0 + excess]).unwrap();
        prop_assert_eq!(out.clipped, 2);
        prop_assert_eq!(out.values[0], q.qmin());
        prop_assert_eq!(out.values[2], q.qmax());
    }

    /// The integer reference dequantizes to the float layer within the documented bound.
    #[test]
    fn integer_matmul_within_bound(k in 1usize..8, m in 1usize..4, n_bits in 2u8..=12, seed in 0u64..1000) {
        let mut s = seed;
        let mut unit = move || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 33) % 2001) as f64 / 1000.0 - 1.0 };
        let w = Array2::from_shape_fn((k, m), |_| unit());
        let b = Array1::from_shape_fn(m, |_| unit());
        let x = Array2::from_shape_fn((4, k), |_| 5.0 * unit());
        let xc = QuantizerConfig::params().n_bits(n_bits).check().unwrap();
        let xq = UniformQuantizer::calibrate(&xc, x.iter().copied()).unwrap();
        let wc = QuantizerConfig::params().n_bits(n_bits).signed(true).symmetric(true).check().unwrap();
        let layer = QuantizedLinear::from_float(w.view(), b.view(), &wc).unwrap();
        let acc = layer.integer_accumulate(xq.quantize(&x).unwrap().values.view(), xq.zero_point()).unwrap();
        let y = layer.dequantize_accumulator(acc.view(), xq.scale());
        let exact = x.dot(&w) + &b;
        for r in 0..4 {
            let bound = layer.error_bound(x.row(r), &xq);
            for j in 0..m {
                prop_assert!((y[[r, j]] - exact[[r, j]]).abs() <= bound[j] + 1e-9);
            }
        }
    }
}

#[test]
fn errors_are_typed() {
    assert_eq!(QuantizerConfig::params().n_bits(0).check().unwrap_err(), QuantError::BadBits(0));
    assert_eq!(QuantizerConfig::params().n_bits(17).check().unwrap_err(), QuantError::BadBits(17));
    let config = QuantizerConfig::params().check().unwrap();
    assert_eq!(UniformQuantizer::calibrate(&config, []).unwrap_err(), QuantError::EmptyData);
    assert!(matches!(UniformQuantizer::calibrate(&config, [1.0, f64::NAN]), Err(QuantError::NonFinite { row: 1, .. })));
    assert!(matches!(UniformQuantizer::calibrate(&config, [f64::INFINITY]), Err(QuantError::NonFinite { .. })));
    let per = PerFeatureQuantizer::calibrate(&config, array![[0.0, 1.0], [1.0, 2.0]].view()).unwrap();
    assert_eq!(per.quantize_row(&[1.0]).unwrap_err(), QuantError::FeatureCount { expected: 2, got: 1 });
    assert!(matches!(per.quantize_row(&[1.0, f64::NAN]), Err(QuantError::NonFinite { column: 1, .. })));
    assert!(matches!(
        per.quantize(array![[0.0, 1.0], [f64::NAN, 1.0]].view()),
        Err(QuantError::NonFinite { row: 1, column: 0, .. })
    ));
    assert!(matches!(
        PerFeatureQuantizer::calibrate(&config, array![[0.0, f64::NEG_INFINITY]].view()),
        Err(QuantError::NonFinite { column: 1, .. })
    ));
    assert!(UniformQuantizer::new(0.0, 0, fheml_quant::NBits::new(8).unwrap(), false).is_err());
}

#[test]
fn f32_and_constant_columns_work() {
    let config = QuantizerConfig::params().n_bits(6).check().unwrap();
    let per = PerFeatureQuantizer::calibrate(&config, array![[3.0, -1.0], [3.0, 1.0]].view()).unwrap();
    let q = per.quantize(array![[3.0f32, 0.0], [3.0, 1.0]].view()).unwrap();
    assert_eq!(q.clipped, 0);
    let back = per.dequantize(q.values.view()).unwrap();
    assert!((back[[0, 0]] - 3.0).abs() < 1e-12, "a constant column maps exactly");
    let json = serde_json::to_string(&per).unwrap();
    assert_eq!(serde_json::from_str::<PerFeatureQuantizer>(&json).unwrap(), per);
}
