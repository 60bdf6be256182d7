//! Affine uniform quantization for fheml.
//!
//! FHE computes on integers, so every float a model sees is first mapped to an `n`-bit
//! integer. A [`UniformQuantizer`] does that with `q = clamp(round(x / scale) + zero_point,
//! qmin, qmax)` and maps back with `x̂ = (q - zero_point) · scale`; inside the calibrated
//! range `|x - x̂| ≤ scale / 2`, and values outside it are clipped and counted.
//! Calibrate one per tensor, or one per feature with [`PerFeatureQuantizer`].
//! [`QuantizedLinear`] is the exact integer reference of a quantized linear layer, with a
//! documented error bound (see [`matmul`]).
//!
//! ```
//! use fheml_quant::{QuantizerConfig, UniformQuantizer};
//! use ndarray::array;
//!
//! let config = QuantizerConfig::params().n_bits(4).check()?;
//! let data = array![-1.0, 0.0, 0.45, 2.0];
//! let quantizer = UniformQuantizer::calibrate(&config, data.iter().copied())?;
//!
//! let quantized = quantizer.quantize(&data)?;
//! assert_eq!(quantized.values, array![0, 5, 7, 15]);
//! assert_eq!(quantized.clipped, 0);
//!
//! let back = quantizer.dequantize(&quantized.values);
//! for (x, x_hat) in data.iter().zip(&back) {
//!     assert!((x - x_hat).abs() <= quantizer.scale() / 2.0);
//! }
//! # Ok::<(), fheml_quant::QuantError>(())
//! ```

mod config;
pub mod data;
mod error;
pub mod matmul;
pub mod metrics;
mod per_feature;
mod quantizer;

pub use config::{NBits, QuantizerConfig, QuantizerConfigParams};
pub use data::DataError;
pub use error::QuantError;
pub use matmul::QuantizedLinear;
pub use per_feature::PerFeatureQuantizer;
pub use quantizer::{MAX_ZERO_POINT, Quantized, Real, UniformQuantizer};
