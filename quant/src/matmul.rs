//! Integer reference for a quantized linear layer `y = x·w + b`, and its error bound.
//!
//! Inputs are quantized per tensor, `x ≈ x̂ = s_x (q_x - z_x)`; weights `[k, m]` per tensor,
//! `w ≈ ŵ = s_w W` with `W = q_w - z_w` the zero-point-corrected integer weights. The
//! server computes the exact integer accumulator `A[r, j] = Σ_i (q_x - z_x)[r, i] · W[i, j]`
//! ([`QuantizedLinear::integer_accumulate`]); the client dequantizes
//! `y' = s_x s_w A + b = x̂·ŵ + b` ([`QuantizedLinear::dequantize_accumulator`]).
//!
//! # Error bound
//!
//! Inside the calibrated range `x_i = x̂_i + e_i` with `|e_i| ≤ s_x/2`, and since the weights
//! are calibrated on themselves, `w_ij = ŵ_ij + d_ij` with `|d_ij| ≤ s_w/2`. The bias is
//! added in float on both sides, so for output `j`
//!
//! ```text
//! (x·w + b)_j - y'_j = Σ_i (x̂_i + e_i)(ŵ_ij + d_ij) - x̂_i ŵ_ij
//!                    = Σ_i x̂_i d_ij + ŵ_ij e_i + e_i d_ij
//! |(x·w + b)_j - y'_j| ≤ Σ_i |x̂_i| s_w/2 + |ŵ_ij| s_x/2 + s_x s_w/4
//! ```
//!
//! [`QuantizedLinear::error_bound`] evaluates this per output. A clipped input has
//! `|e_i| > s_x/2`; the bound then uses the actual `|x_i - x̂_i|` in place of `s_x/2`, so it
//! holds for every finite input. The bound is in exact arithmetic: evaluating the float
//! layer and the dequantization adds rounding of relative order `f64::EPSILON`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::config::QuantizerConfig;
use crate::error::QuantError;
use crate::quantizer::UniformQuantizer;

/// A linear layer `y = x·w + b` with integer weights and a float bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizedLinear {
    /// Zero-point-corrected integer weights `q_w - z_w`, shape `[inputs, outputs]`.
    pub weights: Array2<i64>,
    /// The weights' scale `s_w`.
    pub weight_scale: f64,
    /// The float bias, one per output, added after dequantization.
    pub bias: Array1<f64>,
}

const WEIGHT_ROWS: &str = "input features (rows of the weights)";
const OUTPUTS: &str = "outputs (columns of the weights)";

impl QuantizedLinear {
    /// Quantizes float `weights` (`[inputs, outputs]`) with one per-tensor quantizer;
    /// `bias` has one value per output. Weight configs are usually signed and symmetric.
    pub fn from_float(
        weights: ArrayView2<f64>,
        bias: ArrayView1<f64>,
        weight_config: &QuantizerConfig,
    ) -> Result<Self, QuantError> {
        if bias.len() != weights.ncols() {
            return Err(QuantError::ShapeMismatch { what: OUTPUTS, expected: weights.ncols(), got: bias.len() });
        }
        if let Some((column, &value)) = bias.iter().enumerate().find(|(_, b)| !b.is_finite()) {
            return Err(QuantError::NonFinite { value, row: 0, column });
        }
        let outputs = weights.ncols().max(1);
        let quantizer = UniformQuantizer::calibrate(weight_config, weights.iter().copied()).map_err(|e| match e {
            // Calibration sees the weights flattened in row-major order.
            QuantError::NonFinite { value, row: flat, .. } => {
                QuantError::NonFinite { value, row: flat / outputs, column: flat % outputs }
            }
            other => other,
        })?;
        let zero_point = quantizer.zero_point();
        Ok(Self {
            weights: quantizer.quantize(&weights)?.values.mapv(|q| q - zero_point),
            weight_scale: quantizer.scale(),
            bias: bias.to_owned(),
        })
    }

    /// The exact accumulator `Σ_i (q_x - z_x)[r, i] · W[i, j]` for quantized inputs
    /// `[rows, inputs]`; an i64 overflow is an error.
    pub fn integer_accumulate(&self, q_x: ArrayView2<i64>, x_zero_point: i64) -> Result<Array2<i64>, QuantError> {
        if q_x.ncols() != self.weights.nrows() {
            return Err(QuantError::ShapeMismatch {
                what: WEIGHT_ROWS,
                expected: self.weights.nrows(),
                got: q_x.ncols(),
            });
        }
        let mut acc = Array2::zeros((q_x.nrows(), self.weights.ncols()));
        for ((row, output), sum) in acc.indexed_iter_mut() {
            *sum = q_x
                .row(row)
                .iter()
                .zip(self.weights.column(output))
                .try_fold(0i64, |s, (&q, &w)| q.checked_sub(x_zero_point)?.checked_mul(w)?.checked_add(s))
                .ok_or(QuantError::Overflow { row, output })?;
        }
        Ok(acc)
    }

    /// `acc · s_x · s_w + b`: the float outputs of an accumulator `[rows, outputs]`.
    pub fn dequantize_accumulator(&self, acc: ArrayView2<i64>, x_scale: f64) -> Result<Array2<f64>, QuantError> {
        if acc.ncols() != self.bias.len() {
            return Err(QuantError::ShapeMismatch { what: OUTPUTS, expected: self.bias.len(), got: acc.ncols() });
        }
        let scale = x_scale * self.weight_scale;
        let mut y = acc.mapv(|a| a as f64 * scale);
        y += &self.bias;
        Ok(y)
    }

    /// Per output, the bound of the [module documentation](crate::matmul) on
    /// `|x·w + b - dequantized integer result|` for one input row `x`, quantized with
    /// `x_quantizer`. Holds for layers built by [`QuantizedLinear::from_float`].
    pub fn error_bound(&self, x: ArrayView1<f64>, x_quantizer: &UniformQuantizer) -> Result<Array1<f64>, QuantError> {
        if x.len() != self.weights.nrows() {
            return Err(QuantError::ShapeMismatch { what: WEIGHT_ROWS, expected: self.weights.nrows(), got: x.len() });
        }
        let (sx, sw) = (x_quantizer.scale(), self.weight_scale);
        // Per input: |x̂_i|, and its error: half a step, or more if clipped.
        let inputs = x
            .iter()
            .enumerate()
            .map(|(column, &value)| {
                let (q, _) =
                    x_quantizer.quantize_value(value).map_err(|_| QuantError::NonFinite { value, row: 0, column })?;
                let x_hat = x_quantizer.dequantize_value(q);
                Ok((x_hat.abs(), (value - x_hat).abs().max(sx / 2.0)))
            })
            .collect::<Result<Vec<_>, QuantError>>()?;
        Ok(self
            .weights
            .columns()
            .into_iter()
            .map(|w| {
                inputs
                    .iter()
                    .zip(w)
                    .map(|(&(x_hat, x_err), &w)| x_hat * sw / 2.0 + ((w as f64 * sw).abs() + sw / 2.0) * x_err)
                    .sum()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ndarray::array;

    use super::*;

    fn weight_config() -> QuantizerConfig {
        QuantizerConfig::params().n_bits(4).signed(true).symmetric(true).check().unwrap()
    }

    #[test]
    fn symmetric_weights_need_no_correction() {
        let layer = QuantizedLinear::from_float(
            array![[1.0, -0.5], [0.25, 0.0]].view(),
            array![0.0, 1.0].view(),
            &weight_config(),
        )
        .unwrap();
        assert_eq!(layer.weights, array![[7, -4], [2, 0]]);
        assert_eq!(layer.weight_scale, 1.0 / 7.0);
    }

    #[test]
    fn accumulates_exactly_and_dequantizes() {
        let layer = QuantizedLinear { weights: array![[2, -1], [3, 4]], weight_scale: 0.5, bias: array![1.0, -1.0] };
        let acc = layer.integer_accumulate(array![[5, 7], [3, 3]].view(), 3).unwrap();
        assert_eq!(acc, array![[2 * 2 + 4 * 3, -2 + 4 * 4], [0, 0]]);
        assert_eq!(layer.dequantize_accumulator(acc.view(), 0.25).unwrap(), array![[3.0, 0.75], [1.0, -1.0]]);
    }

    #[test]
    fn overflow_and_shapes_are_errors() {
        let layer = QuantizedLinear { weights: array![[i64::MAX / 2], [2]], weight_scale: 1.0, bias: array![0.0] };
        assert_eq!(
            layer.integer_accumulate(array![[0, 0], [3, 0]].view(), 0),
            Err(QuantError::Overflow { row: 1, output: 0 })
        );
        assert!(matches!(layer.integer_accumulate(array![[1]].view(), 0), Err(QuantError::ShapeMismatch { .. })));
        assert!(matches!(
            layer.dequantize_accumulator(array![[1, 2]].view(), 1.0),
            Err(QuantError::ShapeMismatch { .. })
        ));
        let q = UniformQuantizer::from_range(&QuantizerConfig::default(), 0.0, 1.0).unwrap();
        assert!(matches!(layer.error_bound(array![1.0].view(), &q), Err(QuantError::ShapeMismatch { .. })));
        assert!(matches!(
            layer.error_bound(array![1.0, f64::NAN].view(), &q),
            Err(QuantError::NonFinite { column: 1, .. })
        ));
        let config = weight_config();
        assert!(matches!(
            QuantizedLinear::from_float(array![[1.0, 2.0]].view(), array![0.0].view(), &config),
            Err(QuantError::ShapeMismatch { expected: 2, got: 1, .. })
        ));
        assert!(matches!(
            QuantizedLinear::from_float(array![[1.0, 2.0], [3.0, f64::NAN]].view(), array![0.0, 0.0].view(), &config),
            Err(QuantError::NonFinite { row: 1, column: 1, .. })
        ));
    }
}
