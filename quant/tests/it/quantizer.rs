//! Invariants of a single quantizer.

use fheml_quant::{QuantError, UniformQuantizer};
use ndarray::{Array1, array};
use proptest::prelude::*;

use crate::{proptest_config, try_config};

/// Float rounding allowed on top of the half-step error, for values of magnitude `size`.
fn rounding(size: f64) -> f64 {
    16.0 * f64::EPSILON * size
}

/// A data range: `lo` anywhere in ±1e4, width from 1e-3 to 1e4, sometimes 0 (constant data).
fn data_range() -> impl Strategy<Value = (f64, f64)> {
    (-1e4f64..1e4, -3.0f64..4.0, prop::bool::weighted(0.1))
        .prop_map(|(lo, log_width, constant)| (lo, if constant { 0.0 } else { 10f64.powf(log_width) }))
}

proptest! {
    #![proptest_config(proptest_config(512, "proptest-regressions/it/quantizer.txt"))]

    /// Inside the calibrated range nothing is clipped and the round trip is within scale/2.
    #[test]
    fn round_trip_inside_the_range_is_within_half_a_step(
        n_bits in 1u8..=16,
        signed: bool,
        symmetric: bool,
        (lo, width) in data_range(),
        positions in prop::collection::vec(0f64..=1.0, 1..16),
    ) {
        let Some(config) = try_config(n_bits, signed, symmetric) else { return Ok(()) };
        let hi = lo + width;
        let q = UniformQuantizer::calibrate(&config, [lo, hi]).unwrap();
        prop_assert!(q.scale() > 0.0);
        if symmetric && signed {
            prop_assert_eq!(q.zero_point(), 0);
        }
        let x: Array1<f64> = positions.iter().map(|t| (lo + t * width).clamp(lo, hi)).collect();
        let quantized = q.quantize(&x).unwrap();
        prop_assert_eq!(quantized.clipped, 0);
        for (&xi, &qi) in x.iter().zip(&quantized.values) {
            prop_assert!((q.qmin()..=q.qmax()).contains(&qi));
            let err = (q.dequantize_value(qi) - xi).abs();
            let allowed = q.scale() / 2.0 + rounding(lo.abs() + width + xi.abs() + q.scale());
            prop_assert!(err <= allowed, "x {} -> {} err {} > {} ({:?})", xi, qi, err, allowed, q);
        }
    }

    /// Values beyond the grid by more than half a step are clipped to the nearest end and
    /// counted; inside values in the same array are not.
    #[test]
    fn outside_values_are_clipped_and_counted(
        n_bits in 1u8..=16,
        signed: bool,
        symmetric: bool,
        (lo, width) in data_range(),
        below in prop::collection::vec(prop_oneof![2f64..1e3, Just(1e300)], 0..4),
        above in prop::collection::vec(prop_oneof![2f64..1e3, Just(1e300)], 0..4),
    ) {
        let Some(config) = try_config(n_bits, signed, symmetric) else { return Ok(()) };
        let hi = lo + width;
        let q = UniformQuantizer::calibrate(&config, [lo, hi]).unwrap();
        // Grid ends: symmetric signed grids reach one step below -m, so measure from them.
        let (grid_lo, grid_hi) = (q.dequantize_value(q.qmin()), q.dequantize_value(q.qmax()));
        let mut x = vec![lo, hi];
        x.extend(below.iter().map(|steps| grid_lo - steps * q.scale()));
        x.extend(above.iter().map(|steps| grid_hi + steps * q.scale()));
        let quantized = q.quantize(&Array1::from(x)).unwrap();
        prop_assert_eq!(quantized.clipped, below.len() + above.len());
        let (low, high) = quantized.values.as_slice().unwrap()[2..].split_at(below.len());
        prop_assert!(low.iter().all(|&v| v == q.qmin()));
        prop_assert!(high.iter().all(|&v| v == q.qmax()));
    }

    /// Whatever the input, quantized values stay in [qmin, qmax].
    #[test]
    fn quantized_values_stay_in_the_integer_range(
        n_bits in 1u8..=16,
        signed: bool,
        symmetric: bool,
        (lo, width) in data_range(),
        x in prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
    ) {
        let Some(config) = try_config(n_bits, signed, symmetric) else { return Ok(()) };
        let q = UniformQuantizer::calibrate(&config, [lo, lo + width]).unwrap();
        let (v, _) = q.quantize_value(x).unwrap();
        prop_assert!((q.qmin()..=q.qmax()).contains(&v));
    }

    /// f32 input quantizes exactly as the same values in f64.
    #[test]
    fn f32_and_f64_agree(values in prop::collection::vec(-10f32..10.0, 1..32), n_bits in 1u8..=16) {
        let config = try_config(n_bits, true, false).unwrap();
        let wide: Array1<f64> = values.iter().map(|&v| f64::from(v)).collect();
        let q = UniformQuantizer::calibrate(&config, wide.iter().copied()).unwrap();
        prop_assert_eq!(q.quantize(&Array1::from(values)).unwrap(), q.quantize(&wide).unwrap());
    }
}

#[test]
fn calibration_errors_are_typed() {
    let config = try_config(8, false, false).unwrap();
    assert_eq!(UniformQuantizer::calibrate(&config, []), Err(QuantError::EmptyData));
    assert!(matches!(
        UniformQuantizer::calibrate(&config, [1.0, 2.0, f64::NAN]),
        Err(QuantError::NonFinite { row: 2, column: 0, .. })
    ));
    assert!(matches!(
        UniformQuantizer::calibrate(&config, [f64::NEG_INFINITY]),
        Err(QuantError::NonFinite { value, .. }) if value == f64::NEG_INFINITY
    ));
    let q = UniformQuantizer::calibrate(&config, [0.0, 1.0]).unwrap();
    assert!(matches!(q.quantize_value(f64::NAN), Err(QuantError::NonFinite { .. })));
    assert!(matches!(q.quantize(&array![0.5f32, f32::INFINITY]), Err(QuantError::NonFinite { row: 1, .. })));
}

#[test]
fn serde_round_trips_and_rejects_invalid_quantizers() {
    let q = UniformQuantizer::calibrate(&try_config(6, true, true).unwrap(), [-2.0, 3.0]).unwrap();
    let json = serde_json::to_string(&q).unwrap();
    assert_eq!(serde_json::from_str::<UniformQuantizer>(&json).unwrap(), q);
    for bad in [
        r#"{"scale":0.0,"zero_point":0,"n_bits":8,"signed":false}"#,
        r#"{"scale":1.0,"zero_point":0,"n_bits":17,"signed":false}"#,
        r#"{"scale":1.0,"zero_point":-9223372036854775808,"n_bits":8,"signed":false}"#,
    ] {
        assert!(serde_json::from_str::<UniformQuantizer>(bad).is_err(), "{bad}");
    }
}
