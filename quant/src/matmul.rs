//! Integer reference for a quantized linear layer, and its error bound.
//!
//! With `x = s_x (q_x - z_x) + e_x`, `|e_x| ≤ s_x/2` (inside the calibrated range) and
//! `w = s_w W + e_w`, `|e_w| ≤ s_w/2`, where `W = q_w - z_w` are the zero-point-corrected
//! integer weights, the float layer `x·w + b` and its integer form
//! `s_x s_w Σ (q_x - z_x) W + b` differ by
//!
//! ```text
//! |x·w - x̂·ŵ| = |Σ x̂ e_w + ŵ e_x + e_x e_w| ≤ Σ_i |x̂_i| s_w/2 + |ŵ_i| s_x/2 + s_x s_w/4
//! ```
//!
//! which [`QuantizedLinear::error_bound`] evaluates per output.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::QuantError;
use crate::quantizer::{QuantizerConfig, UniformQuantizer};

/// A linear layer `y = x·W + b` with integer weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizedLinear {
    /// Zero-point-corrected integer weights `q_w - z_w`, shape `[k, m]`.
    pub weights: Array2<i64>,
    /// The weights' scale.
    pub weight_scale: f64,
    /// The float bias, added after dequantization.
    pub bias: Array1<f64>,
}

impl QuantizedLinear {
    /// Quantizes float weights `[k, m]` with one per-tensor quantizer.
    pub fn from_float(
        weights: ArrayView2<f64>,
        bias: ArrayView1<f64>,
        weight_config: &QuantizerConfig,
    ) -> Result<Self, QuantError> {
        if bias.len() != weights.ncols() {
            return Err(QuantError::Shape(format!("{} biases for {} outputs", bias.len(), weights.ncols())));
        }
        let quantizer = UniformQuantizer::calibrate(weight_config, weights.iter().copied())?;
        let q = quantizer.quantize(&weights)?.values;
        Ok(Self {
            weights: q.mapv(|v| v - quantizer.zero_point()),
            weight_scale: quantizer.scale(),
            bias: bias.to_owned(),
        })
    }

    /// Exact `Σ_i (q_x - z_x)[r, i] · W[i, j]`; overflow is an error.
    pub fn integer_accumulate(&self, q_x: ArrayView2<i64>, x_zero_point: i64) -> Result<Array2<i64>, QuantError> {
        let (rows, k) = q_x.dim();
        if k != self.weights.nrows() {
            return Err(QuantError::Shape(format!("{k} inputs for a layer of {}", self.weights.nrows())));
        }
        let m = self.weights.ncols();
        let mut out = Array2::zeros((rows, m));
        for r in 0..rows {
            for j in 0..m {
                let mut acc = 0i64;
                for i in 0..k {
                    let x = q_x[[r, i]].checked_sub(x_zero_point).ok_or(QuantError::Overflow)?;
                    let term = x.checked_mul(self.weights[[i, j]]).ok_or(QuantError::Overflow)?;
                    acc = acc.checked_add(term).ok_or(QuantError::Overflow)?;
                }
                out[[r, j]] = acc;
            }
        }
        Ok(out)
    }

    /// `acc · s_x · s_w + b`.
    pub fn dequantize_accumulator(&self, acc: ArrayView2<i64>, x_scale: f64) -> Array2<f64> {
        let mut y = acc.mapv(|a| a as f64 * x_scale * self.weight_scale);
        for mut row in y.rows_mut() {
            row += &self.bias;
        }
        y
    }

    /// The bound of the module doc for one input row `x` inside the calibrated range.
    pub fn error_bound(&self, x: ArrayView1<f64>, x_quantizer: &UniformQuantizer) -> Array1<f64> {
        let (sx, sw) = (x_quantizer.scale(), self.weight_scale);
        let x_hat: Vec<f64> = x
            .iter()
            .map(|v| x_quantizer.quantize_value(*v).map_or(0.0, |(q, _)| x_quantizer.dequantize_value(q)))
            .collect();
        Array1::from_shape_fn(self.weights.ncols(), |j| {
            x_hat
                .iter()
                .enumerate()
                .map(|(i, xh)| {
                    xh.abs() * sw / 2.0 + (self.weights[[i, j]] as f64 * sw).abs() * sx / 2.0 + sx * sw / 4.0
                })
                .sum()
        })
    }
}
