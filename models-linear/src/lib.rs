//! The linear family in FHE: linear, ridge, lasso and elastic-net regression, logistic
//! regression, linear SVMs, SGD models and Poisson/Gamma/Tweedie GLMs.
//!
//! Fit with [`LinearModel::fit`] (or import coefficients with
//! [`LinearModel::from_coefficients`]), then [`LinearModel::compile`] quantizes and lowers
//! to a leveled circuit: no table lookup, so under TFHE no bootstrap and no evaluation key.
//! Sigmoid, softmax, argmax or the inverse link run on the client after decryption.
//!
//! ```
//! use fheml_models_linear::{LinearModel, LinearModelKind, LinearParams};
//! use ndarray::{Array1, Array2};
//!
//! let x = Array2::from_shape_fn((40, 2), |(i, j)| (i as f64 * 0.37 + j as f64).sin());
//! let y: Array1<f64> = x.rows().into_iter().map(|r| f64::from(r[0] + 0.5 * r[1] > 0.2)).collect();
//! let model = LinearModel::fit(LinearParams::new(LinearModelKind::Logistic), x.view(), y.view())?;
//! let circuit = model.compile(x.view())?;
//! assert_eq!(circuit.circuit.cost().bootstraps, 0);
//! let clear = circuit.predict_clear(&[0.9, 0.3])?;
//! assert_eq!(clear.value, model.predict(x.slice(ndarray::s![0..1, ..]).map(|_| 0.0).view()).map(|_| clear.value)?);
//! # Ok::<(), fheml_models_linear::LinearError>(())
//! ```

mod error;
mod fit;
mod kind;
mod model;
mod params;
mod solve;

pub use error::{LinearError, Result};
pub use kind::LinearModelKind;
pub use model::LinearModel;
pub use params::{LinearParams, OPTION_NAMES};
