//! Neural networks for fheml: quantization-aware training with burn, ONNX import with
//! post-training quantization, and the lowering to an integer circuit that runs under TFHE.
//!
//! Lowering (as in Concrete ML): linear and convolution layers are leveled operations on
//! integer weights; each hidden activation is one table lookup that also requantizes,
//! applied to the accumulator after rounding it to a few bits; the last layer is leveled
//! and softmax/argmax run on the client.
//!
//! ```
//! use fheml_models_nn::{MlpParams, NnTask};
//! use ndarray::{Array1, Array2};
//!
//! let iris = smartcore::dataset::iris::load_dataset();
//! let features: Vec<f64> = iris.data.iter().map(|v| f64::from(*v)).collect();
//! let x = Array2::from_shape_vec((iris.num_samples, iris.num_features), features)?;
//! let y: Array1<f64> = iris.target.iter().map(|v| f64::from(*v)).collect();
//! // Quantization-aware training: 3-bit inputs, weights and activations by default.
//! let params = MlpParams::from_options(NnTask::Classification, [("hidden", "8"), ("epochs", "20")])?;
//! let model = params.fit(x.view(), y.view())?;
//! // Leveled layers and one table lookup per hidden neuron.
//! let circuit = model.compile()?;
//! assert_eq!(circuit.circuit.cost().bootstraps, 8);
//! let prediction = circuit.predict_clear(&x.row(0).to_vec())?;
//! assert!([0.0, 1.0, 2.0].contains(&prediction.value));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod budget;
pub mod burn_import;
pub mod error;
mod family;
pub mod lower;
pub mod model;
pub mod network;
pub mod onnx;
pub mod params;
pub mod train;

pub use error::{NnError, Result};
pub use family::NnFamily;
pub use lower::{InputQuantization, OutputDecoding, QuantSettings, calibrate_activations, lower};
pub use model::{NnModel, Standardizer};
pub use network::{Activation, Layer, Network};
pub use onnx::{ImportedOnnx, OutputActivation, import_onnx, import_onnx_bytes};
pub use params::{MlpParams, NnTask, ValidMlpParams};
pub use train::EpochReport;
