//! Neural networks for fheml: quantization-aware training with burn, ONNX import with
//! post-training quantization, and the lowering to an integer circuit that runs under TFHE.
//!
//! Lowering (as in Concrete ML): linear and convolution layers are leveled operations on
//! integer weights; each hidden activation is one table lookup that also requantizes,
//! applied to the accumulator after rounding it to a few bits; the last layer is leveled
//! and softmax/argmax run on the client.

pub mod burn_import;
pub mod error;
pub mod lower;
pub mod model;
pub mod network;
pub mod onnx;
pub mod params;
pub mod train;

pub use error::{NnError, Result};
pub use lower::{InputQuantization, OutputDecoding, QuantSettings, calibrate_activations, lower};
pub use model::{NnModel, Standardizer};
pub use network::{Activation, Layer, Network};
pub use onnx::{ImportedOnnx, OutputActivation, import_onnx, import_onnx_bytes};
pub use params::{MlpParams, NnTask, ValidMlpParams};
