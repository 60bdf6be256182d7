//! Affine uniform quantizers: `q = clamp(round(x / scale) + zero_point, qmin, qmax)`.

use ndarray::{Array, ArrayBase, ArrayView2, Data, Dimension, Ix2};
use serde::{Deserialize, Serialize};

use crate::error::QuantError;

/// A bit width between 1 and 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct NBits(u8);

impl NBits {
    /// Checked constructor.
    pub fn new(bits: u8) -> Result<Self, QuantError> {
        if (1..=16).contains(&bits) { Ok(Self(bits)) } else { Err(QuantError::BadBits(bits)) }
    }

    /// The number of bits.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for NBits {
    type Error = QuantError;
    fn try_from(v: u8) -> Result<Self, QuantError> {
        Self::new(v)
    }
}

impl From<NBits> for u8 {
    fn from(b: NBits) -> u8 {
        b.0
    }
}

impl std::fmt::Display for NBits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bits", self.0)
    }
}

/// How to calibrate a quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantizerConfig {
    n_bits: NBits,
    signed: bool,
    symmetric: bool,
}

/// Unchecked builder of [`QuantizerConfig`].
#[derive(Debug, Clone, Copy)]
pub struct QuantizerConfigParams {
    n_bits: u8,
    signed: bool,
    symmetric: bool,
}

impl QuantizerConfig {
    /// Defaults: 8 bits, unsigned, asymmetric.
    pub fn params() -> QuantizerConfigParams {
        QuantizerConfigParams { n_bits: 8, signed: false, symmetric: false }
    }

    /// Bit width.
    pub fn n_bits(&self) -> NBits {
        self.n_bits
    }

    /// Whether integers are signed.
    pub fn signed(&self) -> bool {
        self.signed
    }

    /// Whether the range is symmetric around zero.
    pub fn symmetric(&self) -> bool {
        self.symmetric
    }
}

impl QuantizerConfigParams {
    /// Bit width, 1..=16.
    pub fn n_bits(mut self, n: u8) -> Self {
        self.n_bits = n;
        self
    }

    /// Signed integers.
    pub fn signed(mut self, s: bool) -> Self {
        self.signed = s;
        self
    }

    /// Symmetric range (zero point 0 for signed integers).
    pub fn symmetric(mut self, s: bool) -> Self {
        self.symmetric = s;
        self
    }

    /// Validates.
    pub fn check(self) -> Result<QuantizerConfig, QuantError> {
        if self.symmetric && self.n_bits < 2 {
            return Err(QuantError::Invalid("a symmetric quantizer needs at least 2 bits".into()));
        }
        Ok(QuantizerConfig { n_bits: NBits::new(self.n_bits)?, signed: self.signed, symmetric: self.symmetric })
    }
}

/// A float type that can be quantized.
pub trait Real: Copy + Into<f64> {}
impl Real for f32 {}
impl Real for f64 {}

/// Quantized values, with the number of inputs that fell outside the calibrated range.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized<D: Dimension> {
    /// The integers.
    pub values: Array<i64, D>,
    /// How many values were clipped to `qmin` or `qmax`.
    pub clipped: usize,
}

/// An affine uniform quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UniformQuantizer {
    scale: f64,
    zero_point: i64,
    n_bits: NBits,
    signed: bool,
}

fn integer_range(n_bits: NBits, signed: bool) -> (i64, i64) {
    let n = n_bits.get() as u32;
    if signed { (-(1i64 << (n - 1)), (1i64 << (n - 1)) - 1) } else { (0, (1i64 << n) - 1) }
}

impl UniformQuantizer {
    /// Checked explicit construction.
    pub fn new(scale: f64, zero_point: i64, n_bits: NBits, signed: bool) -> Result<Self, QuantError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(QuantError::Invalid(format!("scale must be finite and positive, got {scale}")));
        }
        let (lo, hi) = integer_range(n_bits, signed);
        // The zero point may sit outside [qmin, qmax] for ranges that exclude zero.
        if zero_point.unsigned_abs() > (1u64 << 40) {
            return Err(QuantError::Invalid(format!("zero point {zero_point} is unreasonably far from [{lo}, {hi}]")));
        }
        Ok(Self { scale, zero_point, n_bits, signed })
    }

    /// Calibrates on the min and max of `data` (NaN or infinite values are an error).
    pub fn calibrate(config: &QuantizerConfig, data: impl IntoIterator<Item = f64>) -> Result<Self, QuantError> {
        let mut bounds: Option<(f64, f64)> = None;
        for (i, v) in data.into_iter().enumerate() {
            if !v.is_finite() {
                return Err(QuantError::NonFinite { value: v, row: i, column: 0 });
            }
            bounds = Some(bounds.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
        }
        let (lo, hi) = bounds.ok_or(QuantError::EmptyData)?;
        Self::from_range(config, lo, hi)
    }

    /// Quantizer covering `[min, max]` (symmetric configs cover `[-m, m]`, `m = max(|min|, |max|)`).
    pub fn from_range(config: &QuantizerConfig, min: f64, max: f64) -> Result<Self, QuantError> {
        if !min.is_finite() || !max.is_finite() {
            return Err(QuantError::NonFinite { value: if min.is_finite() { max } else { min }, row: 0, column: 0 });
        }
        let (min, max) = (min.min(max), min.max(max));
        let (qmin, qmax) = integer_range(config.n_bits, config.signed);
        let levels = (qmax - qmin) as f64;
        if config.symmetric {
            let m = min.abs().max(max.abs());
            // A constant zero column still needs a positive scale.
            let m = if m > 0.0 { m } else { 1.0 };
            let (scale, zero_point) = if config.signed {
                (m / qmax.max(1) as f64, 0)
            } else {
                // Unsigned symmetric: zero in the middle of the integer range.
                let zp = (qmin + qmax + 1) / 2;
                (2.0 * m / levels.max(1.0), zp)
            };
            return Self::new(scale, zero_point, config.n_bits, config.signed);
        }
        if max - min <= f64::EPSILON * max.abs().max(1.0) {
            // Constant data: map it exactly onto qmin with a unit-ish scale.
            let scale = if min != 0.0 { min.abs() } else { 1.0 };
            let zero_point = qmin - (min / scale).round() as i64;
            return Self::new(scale, zero_point, config.n_bits, config.signed);
        }
        let scale = (max - min) / levels;
        let zero_point = qmin - (min / scale).round() as i64;
        Self::new(scale, zero_point, config.n_bits, config.signed)
    }

    /// Step between two integers.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The integer representing 0.0.
    pub fn zero_point(&self) -> i64 {
        self.zero_point
    }

    /// Bit width.
    pub fn n_bits(&self) -> NBits {
        self.n_bits
    }

    /// Whether integers are signed.
    pub fn signed(&self) -> bool {
        self.signed
    }

    /// Smallest integer.
    pub fn qmin(&self) -> i64 {
        integer_range(self.n_bits, self.signed).0
    }

    /// Largest integer.
    pub fn qmax(&self) -> i64 {
        integer_range(self.n_bits, self.signed).1
    }

    /// Quantizes one value; the flag says whether it was clipped.
    pub fn quantize_value(&self, x: f64) -> Result<(i64, bool), QuantError> {
        if !x.is_finite() {
            return Err(QuantError::NonFinite { value: x, row: 0, column: 0 });
        }
        let q = (x / self.scale).round() + self.zero_point as f64;
        let (lo, hi) = (self.qmin(), self.qmax());
        let clamped = if q < lo as f64 {
            lo
        } else if q > hi as f64 {
            hi
        } else {
            return Ok((q as i64, false));
        };
        // A value half a step past the last grid point rounds outward but is still inside
        // the calibrated range: only count values the clamp moves by more than half a step.
        let outside = (self.dequantize_value(clamped) - x).abs() > self.scale * (0.5 + 1e-9);
        Ok((clamped, outside))
    }

    /// The float an integer stands for.
    pub fn dequantize_value(&self, q: i64) -> f64 {
        (q - self.zero_point) as f64 * self.scale
    }

    /// Quantizes an array (f32 or f64).
    pub fn quantize<A: Real, S: Data<Elem = A>, D: Dimension>(
        &self,
        x: &ArrayBase<S, D>,
    ) -> Result<Quantized<D>, QuantError> {
        let mut clipped = 0;
        let mut values = Vec::with_capacity(x.len());
        for v in x.iter() {
            let (q, c) = self.quantize_value((*v).into())?;
            clipped += usize::from(c);
            values.push(q);
        }
        let values = Array::from_shape_vec(x.raw_dim(), values).map_err(|e| QuantError::Shape(e.to_string()))?;
        Ok(Quantized { values, clipped })
    }

    /// Dequantizes an array.
    pub fn dequantize<S: Data<Elem = i64>, D: Dimension>(&self, q: &ArrayBase<S, D>) -> Array<f64, D> {
        q.mapv(|v| self.dequantize_value(v))
    }
}

/// One quantizer per feature (column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerFeatureQuantizer {
    quantizers: Vec<UniformQuantizer>,
}

impl PerFeatureQuantizer {
    /// From explicit quantizers.
    pub fn new(quantizers: Vec<UniformQuantizer>) -> Self {
        Self { quantizers }
    }

    /// Calibrates one quantizer per column of `data`.
    pub fn calibrate(config: &QuantizerConfig, data: ArrayView2<f64>) -> Result<Self, QuantError> {
        if data.nrows() == 0 || data.ncols() == 0 {
            return Err(QuantError::EmptyData);
        }
        let quantizers = data
            .columns()
            .into_iter()
            .enumerate()
            .map(|(c, col)| {
                UniformQuantizer::calibrate(config, col.iter().copied()).map_err(|e| match e {
                    QuantError::NonFinite { value, row, .. } => QuantError::NonFinite { value, row, column: c },
                    other => other,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { quantizers })
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.quantizers.len()
    }

    /// Whether there is no feature.
    pub fn is_empty(&self) -> bool {
        self.quantizers.is_empty()
    }

    /// The quantizer of feature `i`.
    pub fn get(&self, i: usize) -> Option<&UniformQuantizer> {
        self.quantizers.get(i)
    }

    /// All quantizers.
    pub fn quantizers(&self) -> &[UniformQuantizer] {
        &self.quantizers
    }

    /// Quantizes one row of features; returns the integers and the clipped count.
    pub fn quantize_row(&self, row: &[f64]) -> Result<(Vec<i64>, usize), QuantError> {
        if row.len() != self.len() {
            return Err(QuantError::FeatureCount { expected: self.len(), got: row.len() });
        }
        let mut clipped = 0;
        let values = row
            .iter()
            .zip(&self.quantizers)
            .enumerate()
            .map(|(c, (x, q))| {
                let (v, clip) =
                    q.quantize_value(*x).map_err(|_| QuantError::NonFinite { value: *x, row: 0, column: c })?;
                clipped += usize::from(clip);
                Ok(v)
            })
            .collect::<Result<_, QuantError>>()?;
        Ok((values, clipped))
    }

    /// Quantizes a 2-D array, row by row.
    pub fn quantize<A: Real>(&self, x: ArrayView2<A>) -> Result<Quantized<Ix2>, QuantError> {
        if x.ncols() != self.len() {
            return Err(QuantError::FeatureCount { expected: self.len(), got: x.ncols() });
        }
        let mut clipped = 0;
        let mut values = Vec::with_capacity(x.len());
        for (r, row) in x.rows().into_iter().enumerate() {
            let floats: Vec<f64> = row.iter().map(|v| (*v).into()).collect();
            let (q, c) = self.quantize_row(&floats).map_err(|e| match e {
                QuantError::NonFinite { value, column, .. } => QuantError::NonFinite { value, row: r, column },
                other => other,
            })?;
            clipped += c;
            values.extend(q);
        }
        let values = Array::from_shape_vec(x.raw_dim(), values).map_err(|e| QuantError::Shape(e.to_string()))?;
        Ok(Quantized { values, clipped })
    }

    /// Dequantizes a 2-D array of integers.
    pub fn dequantize(&self, q: ArrayView2<i64>) -> Result<ndarray::Array2<f64>, QuantError> {
        if q.ncols() != self.len() {
            return Err(QuantError::FeatureCount { expected: self.len(), got: q.ncols() });
        }
        Ok(ndarray::Array2::from_shape_fn(q.raw_dim(), |(r, c)| self.quantizers[c].dequantize_value(q[[r, c]])))
    }
}
