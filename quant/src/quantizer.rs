//! Affine uniform quantizers: `q = clamp(round(x / scale) + zero_point, qmin, qmax)` and
//! back, `x̂ = (q - zero_point) · scale`.

use ndarray::{Array, ArrayBase, Data, Dimension};
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::{NBits, QuantizerConfig};
use crate::error::QuantError;

/// The largest accepted `|zero_point|`.
///
/// Quantizing computes `x / scale + zero_point` in f64; up to this bound its rounding error
/// stays below 2^-12 of a step, and `q - zero_point` times a 16-bit weight stays far from the
/// i64 limits. Only asymmetric ranges very narrow for their distance from 0 come near it.
pub const MAX_ZERO_POINT: i64 = 1 << 40;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A float type that can be quantized: `f32` or `f64`.
pub trait Real: Copy + Into<f64> + sealed::Sealed {}
impl Real for f32 {}
impl Real for f64 {}

/// Quantized integers, and how many inputs fell outside the calibrated range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantized<D: Dimension> {
    /// The integers, each in `[qmin, qmax]`.
    pub values: Array<i64, D>,
    /// How many inputs were clipped to `qmin` or `qmax` (their error exceeds half a step).
    pub clipped: usize,
}

/// An affine uniform quantizer to `n`-bit integers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UniformQuantizer {
    scale: f64,
    zero_point: i64,
    n_bits: NBits,
    signed: bool,
}

/// `[qmin, qmax]`: `[-2^(n-1), 2^(n-1) - 1]` signed, `[0, 2^n - 1]` unsigned.
fn integer_range(n_bits: NBits, signed: bool) -> (i64, i64) {
    let n = u32::from(n_bits.get());
    if signed { (-(1 << (n - 1)), (1 << (n - 1)) - 1) } else { (0, (1 << n) - 1) }
}

impl UniformQuantizer {
    /// A quantizer with explicit parameters: `scale` positive, `|zero_point|` at most
    /// [`MAX_ZERO_POINT`], and every integer in `[qmin, qmax]` dequantizing to a finite
    /// float. The zero point may lie outside `[qmin, qmax]` (for a range that excludes 0).
    pub fn new(scale: f64, zero_point: i64, n_bits: NBits, signed: bool) -> Result<Self, QuantError> {
        if zero_point.unsigned_abs() > MAX_ZERO_POINT.unsigned_abs() {
            return Err(QuantError::ZeroPointOutOfRange { zero_point, limit: MAX_ZERO_POINT });
        }
        let quantizer = Self { scale, zero_point, n_bits, signed };
        let grid_is_finite = quantizer.dequantize_value(quantizer.qmin()).is_finite()
            && quantizer.dequantize_value(quantizer.qmax()).is_finite();
        if scale > 0.0 && grid_is_finite { Ok(quantizer) } else { Err(QuantError::InvalidScale(scale)) }
    }

    /// Calibrates on the minimum and maximum of `data`; see [`UniformQuantizer::from_range`].
    /// A NaN or infinite value is an error naming its position (as `row`).
    pub fn calibrate(config: &QuantizerConfig, data: impl IntoIterator<Item = f64>) -> Result<Self, QuantError> {
        let mut range: Option<(f64, f64)> = None;
        for (row, value) in data.into_iter().enumerate() {
            if !value.is_finite() {
                return Err(QuantError::NonFinite { value, row, column: 0 });
            }
            range = Some(range.map_or((value, value), |(lo, hi)| (lo.min(value), hi.max(value))));
        }
        let (min, max) = range.ok_or(QuantError::EmptyData)?;
        Self::from_range(config, min, max)
    }

    /// A quantizer covering `[min, max]`, as Concrete ML builds them.
    ///
    /// Asymmetric: the integer range spans exactly `[min, max]` (which need not contain 0).
    /// Symmetric: `±(2^(n-1) - 1)` steps around 0 span `[-m, m]`, `m = max(|min|, |max|)`,
    /// with zero point 0 (signed) or `2^(n-1)` (unsigned). A constant range (`min == max`)
    /// still gives a positive scale and maps its value exactly.
    pub fn from_range(config: &QuantizerConfig, min: f64, max: f64) -> Result<Self, QuantError> {
        if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(QuantError::InvalidRange { min, max });
        }
        let (n_bits, signed) = (config.n_bits(), config.signed());
        let (qmin, qmax) = integer_range(n_bits, signed);
        let (scale, zero_point) = if config.symmetric() {
            // `check` guarantees n >= 2, so there is at least one step each side of 0.
            let half = 1i64 << (n_bits.get() - 1);
            let m = min.abs().max(max.abs());
            let scale = if m > 0.0 { m / (half - 1) as f64 } else { 1.0 };
            (scale, if signed { 0.0 } else { half as f64 })
        } else if min == max {
            constant_grid(min, qmin, qmax)
        } else {
            let levels = (qmax - qmin) as f64;
            let width = max - min;
            // Dividing first would lose precision on narrow ranges; do it only on overflow.
            let scale = if width.is_finite() { width / levels } else { max / levels - min / levels };
            (scale, (qmin as f64 - min / scale).round_ties_even())
        };
        let unrepresentable = QuantError::UnrepresentableRange { min, max, n_bits: n_bits.get() };
        // False for NaN and infinities (from a zero scale); when true, the cast below is exact.
        let zero_point_fits = zero_point.abs() <= MAX_ZERO_POINT as f64;
        if !zero_point_fits {
            return Err(unrepresentable);
        }
        Self::new(scale, zero_point as i64, n_bits, signed).map_err(|_| unrepresentable)
    }

    /// The float step between consecutive integers.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The integer that stands for 0.0 (possibly outside `[qmin, qmax]`).
    pub fn zero_point(&self) -> i64 {
        self.zero_point
    }

    /// Bit width.
    pub fn n_bits(&self) -> NBits {
        self.n_bits
    }

    /// Whether the integers are signed.
    pub fn signed(&self) -> bool {
        self.signed
    }

    /// The smallest integer.
    pub fn qmin(&self) -> i64 {
        integer_range(self.n_bits, self.signed).0
    }

    /// The largest integer.
    pub fn qmax(&self) -> i64 {
        integer_range(self.n_bits, self.signed).1
    }

    /// Quantizes one value, rounding half to even (as Concrete ML's `numpy.rint`); the flag
    /// says whether it was clipped. NaN or infinity is an error (reported at row 0, column 0).
    pub fn quantize_value(&self, x: f64) -> Result<(i64, bool), QuantError> {
        if !x.is_finite() {
            return Err(QuantError::NonFinite { value: x, row: 0, column: 0 });
        }
        Ok(self.quantize_finite(x))
    }

    /// [`UniformQuantizer::quantize_value`] for a value known to be finite.
    pub(crate) fn quantize_finite(&self, x: f64) -> (i64, bool) {
        let exact = x / self.scale + self.zero_point as f64;
        let (qmin, qmax) = (self.qmin() as f64, self.qmax() as f64);
        // The ends of a calibrated range may sit up to half a step beyond the outer grid
        // points, so only values more than half a step out count as clipped; the slack
        // absorbs the float rounding of `exact`.
        let slack = 4.0 * f64::EPSILON * (1.0 + exact.abs() + self.zero_point.unsigned_abs() as f64);
        let clipped = !exact.is_finite() || exact < qmin - 0.5 - slack || exact > qmax + 0.5 + slack;
        (exact.round_ties_even().clamp(qmin, qmax) as i64, clipped)
    }

    /// The float an integer stands for.
    pub fn dequantize_value(&self, q: i64) -> f64 {
        // In i128 so that no i64 input can overflow the subtraction.
        (i128::from(q) - i128::from(self.zero_point)) as f64 * self.scale
    }

    /// Quantizes an array of `f32` or `f64`. A NaN or infinite value is an error naming its
    /// index on the first axis as `row` and its flat index over the other axes as `column`.
    pub fn quantize<A: Real, S: Data<Elem = A>, D: Dimension>(
        &self,
        x: &ArrayBase<S, D>,
    ) -> Result<Quantized<D>, QuantError> {
        let first_non_finite = x.iter().enumerate().find_map(|(flat, &v)| {
            let value: f64 = v.into();
            (!value.is_finite()).then_some((flat, value))
        });
        if let Some((flat, value)) = first_non_finite {
            let inner = x.shape().iter().skip(1).product::<usize>().max(1);
            return Err(QuantError::NonFinite { value, row: flat / inner, column: flat % inner });
        }
        let mut clipped = 0;
        let values = x.map(|&v| {
            let (q, was_clipped) = self.quantize_finite(v.into());
            clipped += usize::from(was_clipped);
            q
        });
        Ok(Quantized { values, clipped })
    }

    /// Dequantizes an array of integers.
    pub fn dequantize<S: Data<Elem = i64>, D: Dimension>(&self, q: &ArrayBase<S, D>) -> Array<f64, D> {
        q.mapv(|v| self.dequantize_value(v))
    }
}

// Checked on load too: a zero scale from a file would turn every input into ±inf.
impl<'de> Deserialize<'de> for UniformQuantizer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            scale: f64,
            zero_point: i64,
            n_bits: NBits,
            signed: bool,
        }
        let f = Fields::deserialize(deserializer)?;
        Self::new(f.scale, f.zero_point, f.n_bits, f.signed).map_err(serde::de::Error::custom)
    }
}

/// Scale and zero point for a constant `c`: scale `|c|` puts `c` one step from the zero
/// point, which stays 0 whenever the integer range allows, as in Concrete ML.
fn constant_grid(c: f64, qmin: i64, qmax: i64) -> (f64, f64) {
    if c == 0.0 {
        return (1.0, 0.0);
    }
    let step = if c > 0.0 { 1 } else { -1 };
    (c.abs(), 0i64.clamp(qmin - step, qmax - step) as f64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ndarray::{Array2, array};

    use super::*;

    fn config(n_bits: u8, signed: bool, symmetric: bool) -> QuantizerConfig {
        QuantizerConfig::params().n_bits(n_bits).signed(signed).symmetric(symmetric).check().unwrap()
    }

    #[test]
    fn integer_ranges() {
        let bits = |n| NBits::new(n).unwrap();
        assert_eq!(integer_range(bits(1), false), (0, 1));
        assert_eq!(integer_range(bits(1), true), (-1, 0));
        assert_eq!(integer_range(bits(8), false), (0, 255));
        assert_eq!(integer_range(bits(8), true), (-128, 127));
        assert_eq!(integer_range(bits(16), true), (-32768, 32767));
    }

    #[test]
    fn asymmetric_maps_the_range_ends_onto_the_integer_ends() {
        let q = UniformQuantizer::from_range(&config(8, false, false), -1.0, 3.0).unwrap();
        assert_eq!(q.quantize_value(-1.0).unwrap(), (0, false));
        assert_eq!(q.quantize_value(3.0).unwrap(), (255, false));
        assert!((q.scale() - 4.0 / 255.0).abs() < 1e-15);
        assert_eq!(q.zero_point(), 64);
    }

    #[test]
    fn asymmetric_range_need_not_contain_zero() {
        let q = UniformQuantizer::from_range(&config(4, true, false), 10.0, 11.5).unwrap();
        assert_eq!(q.quantize_value(10.0).unwrap(), (-8, false));
        assert_eq!(q.quantize_value(11.5).unwrap(), (7, false));
        assert!(q.zero_point() < q.qmin());
    }

    #[test]
    fn symmetric_signed_has_zero_point_zero_and_exact_ends() {
        let q = UniformQuantizer::from_range(&config(4, true, true), -0.5, 2.0).unwrap();
        assert_eq!(q.zero_point(), 0);
        assert_eq!(q.quantize_value(2.0).unwrap(), (7, false));
        assert_eq!(q.quantize_value(-2.0).unwrap(), (-7, false));
        assert_eq!(q.quantize_value(0.0).unwrap(), (0, false));
    }

    #[test]
    fn symmetric_unsigned_is_the_signed_grid_shifted() {
        let signed = UniformQuantizer::from_range(&config(5, true, true), -3.0, 1.0).unwrap();
        let unsigned = UniformQuantizer::from_range(&config(5, false, true), -3.0, 1.0).unwrap();
        assert_eq!(unsigned.zero_point(), 16);
        assert_eq!(unsigned.scale(), signed.scale());
        for x in [-3.0, -1.3, 0.0, 0.65, 3.0] {
            assert_eq!(unsigned.quantize_value(x).unwrap().0, signed.quantize_value(x).unwrap().0 + 16);
        }
    }

    #[test]
    fn constant_data_maps_exactly_with_a_positive_scale() {
        for (n_bits, signed, symmetric) in [(1, false, false), (1, true, false), (8, true, false), (3, false, true)] {
            for c in [-2.5, 0.0, 1e-9, 7.0] {
                let q = UniformQuantizer::calibrate(&config(n_bits, signed, symmetric), [c, c]).unwrap();
                assert!(q.scale() > 0.0);
                let (v, clipped) = q.quantize_value(c).unwrap();
                assert!(!clipped && (q.qmin()..=q.qmax()).contains(&v));
                assert!((q.dequantize_value(v) - c).abs() <= 4.0 * f64::EPSILON * c.abs(), "{c} -> {v}");
            }
        }
    }

    #[test]
    fn ties_round_to_even() {
        let q = UniformQuantizer::new(1.0, 0, NBits::new(8).unwrap(), true).unwrap();
        assert_eq!(q.quantize_value(2.5).unwrap().0, 2);
        assert_eq!(q.quantize_value(3.5).unwrap().0, 4);
        assert_eq!(q.quantize_value(-2.5).unwrap().0, -2);
    }

    #[test]
    fn clipping_is_counted_only_beyond_half_a_step() {
        let q = UniformQuantizer::new(1.0, 0, NBits::new(2).unwrap(), false).unwrap();
        assert_eq!(q.quantize_value(3.5).unwrap(), (3, false));
        assert_eq!(q.quantize_value(3.6).unwrap(), (3, true));
        assert_eq!(q.quantize_value(-0.5).unwrap(), (0, false));
        assert_eq!(q.quantize_value(-1e300).unwrap(), (0, true));
        assert_eq!(q.quantize_value(f64::MAX).unwrap(), (3, true));
    }

    #[test]
    fn extreme_ranges_are_handled_or_refused() {
        let wide = UniformQuantizer::from_range(&config(8, false, false), -1e300, 2e300).unwrap();
        assert_eq!(wide.quantize_value(-1e300).unwrap(), (0, false));
        assert_eq!(wide.quantize_value(2e300).unwrap(), (255, false));
        // The outer grid points of these would dequantize past f64::MAX.
        for (min, max) in [(-f64::MAX, f64::MAX), (0.0, f64::MAX)] {
            let too_wide = UniformQuantizer::from_range(&config(8, false, false), min, max);
            assert!(matches!(too_wide, Err(QuantError::UnrepresentableRange { .. })), "{too_wide:?}");
        }
        let narrow = UniformQuantizer::from_range(&config(16, false, false), 1e9, 1e9 + 1e-3);
        assert!(matches!(narrow, Err(QuantError::UnrepresentableRange { n_bits: 16, .. })));
        assert!(matches!(
            UniformQuantizer::from_range(&config(8, false, false), 2.0, 1.0),
            Err(QuantError::InvalidRange { .. })
        ));
        assert!(matches!(
            UniformQuantizer::from_range(&config(8, false, false), 0.0, f64::INFINITY),
            Err(QuantError::InvalidRange { .. })
        ));
    }

    #[test]
    fn explicit_parameters_are_checked() {
        let bits = NBits::new(8).unwrap();
        assert_eq!(UniformQuantizer::new(0.0, 0, bits, false), Err(QuantError::InvalidScale(0.0)));
        assert!(matches!(UniformQuantizer::new(f64::NAN, 0, bits, false), Err(QuantError::InvalidScale(_))));
        assert_eq!(UniformQuantizer::new(1e308, 0, bits, false), Err(QuantError::InvalidScale(1e308)));
        assert_eq!(
            UniformQuantizer::new(1.0, i64::MIN, bits, false),
            Err(QuantError::ZeroPointOutOfRange { zero_point: i64::MIN, limit: MAX_ZERO_POINT })
        );
        let far = UniformQuantizer::new(1.0, MAX_ZERO_POINT, bits, false).unwrap();
        assert_eq!(far.dequantize_value(i64::MIN), (i128::from(i64::MIN) - (1 << 40)) as f64);
    }

    #[test]
    fn nd_arrays_keep_their_shape_and_report_positions() {
        let q = UniformQuantizer::from_range(&config(4, false, false), 0.0, 1.0).unwrap();
        let x = Array2::from_shape_fn((2, 3), |(r, c)| (r * 3 + c) as f64 / 4.0);
        let out = q.quantize(&x.t()).unwrap();
        assert_eq!(out.values.dim(), (3, 2));
        assert_eq!(out.clipped, 1, "only 1.25 is beyond the range");
        let cube = array![[[0.0f32, 0.5], [1.0, 0.25]], [[0.0, f32::NAN], [0.0, 0.0]]];
        assert!(matches!(q.quantize(&cube), Err(QuantError::NonFinite { row: 1, column: 1, .. })));
    }
}
