//! Affine uniform quantization for fheml.
//!
//! A [`UniformQuantizer`] maps floats to `n`-bit integers (`q = round(x/scale) + zero_point`,
//! clipped to the integer range and counted when clipped) and back. Calibrate one on
//! data, per tensor or per feature ([`PerFeatureQuantizer`]); [`QuantizedLinear`] is the
//! exact integer reference of a quantized linear layer with a documented error bound.
//!
//! ```
//! use fheml_quant::{QuantizerConfig, UniformQuantizer};
//! use ndarray::array;
//!
//! let config = QuantizerConfig::params().n_bits(4).check()?;
//! let data = array![-1.0, 0.0, 0.5, 2.0];
//! let q = UniformQuantizer::calibrate(&config, data.iter().copied())?;
//! let ints = q.quantize(&data)?;
//! assert_eq!(ints.clipped, 0);
//! let back = q.dequantize(&ints.values);
//! for (x, y) in data.iter().zip(back.iter()) {
//!     assert!((x - y).abs() <= q.scale() / 2.0 + 1e-12);
//! }
//! # Ok::<(), fheml_quant::QuantError>(())
//! ```

mod error;
mod matmul;
mod quantizer;

pub use error::QuantError;
pub use matmul::QuantizedLinear;
pub use quantizer::{
    NBits, PerFeatureQuantizer, Quantized, QuantizerConfig, QuantizerConfigParams, Real, UniformQuantizer,
};
