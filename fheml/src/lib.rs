//! fheml as a library: train a model (or import one from XGBoost JSON or ONNX), quantize
//! and compile it for TFHE, save it, and run it in the clear, in simulation or encrypted.
//! The `fheml` command and the Python bindings are built on this crate; model families
//! come in through the [`Registry`] (see [`fheml_circuits::ModelFamily`]).
//!
//! ```
//! use fheml::prelude::*;
//!
//! let (train, test) = fheml::data::embedded("iris")?;
//! let model = fheml::train(&train, &TrainOptions::defaults("logistic", &[]))?;
//! let predictions = model.fhe.predict(test.x.view(), Mode::Clear)?;
//! let right = predictions.iter().zip(test.y.as_ref().unwrap()).filter(|(p, y)| p.value == **y).count();
//! assert!(right as f64 / test.x.nrows() as f64 > 0.8);
//!
//! // What a client needs, without the weights: quantizers, encodings, parameters.
//! let client = ClientPart::of(&model);
//! assert_eq!(client.feature_names, model.feature_names);
//! # Ok::<(), fheml::Error>(())
//! ```

pub mod client_part;
pub mod data;
pub mod error;
#[cfg(test)]
mod fuzz_tests;
pub mod model_file;
pub mod registry;

pub use client_part::ClientPart;
pub use error::{Error, Result};
pub use model_file::{
    OnnxImport, SavedModel, TrainOptions, import_onnx, import_xgboost, saved, train, train_observed,
    train_with_registry,
};
pub use registry::Registry;

/// What most programs using fheml need.
pub mod prelude {
    pub use crate::client_part::ClientPart;
    pub use crate::data::{DataSchema, Table};
    pub use crate::error::{Error, Result};
    pub use crate::model_file::{SavedModel, TrainOptions};
    pub use crate::registry::Registry;
    pub use fheml_circuits::{FitHooks, FittedModel, ModelFamily, Prediction, Task, TaskKind};
    pub use fheml_fhe_runtime::{FheConfig, FheModel, Mode};
}
