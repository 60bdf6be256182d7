//! The linear family in FHE: least squares, ridge, lasso, elastic net, logistic
//! regression, linear SVMs, SGD models and Poisson/Gamma/Tweedie GLMs.
//!
//! Fit a model ([`LogisticRegression::params`]`()...fit(x, y)`, or the untyped
//! [`LinearModel::fit`] the command line uses), or import coefficients trained elsewhere
//! ([`LogisticRegression::from_coefficients`], the counterpart of Concrete ML's
//! `from_sklearn_model`). Then `compile` quantizes it and lowers it to a leveled integer
//! circuit (see [`lower`]): a matrix product and a constant addition, no table lookup, so
//! under TFHE no bootstrap and no evaluation key. The client quantizes and encrypts its
//! features, decrypts the integer scores, and applies the sigmoid, softmax, sign, argmax or
//! inverse link in the clear.
//!
//! ```
//! use fheml_models_linear::LogisticRegression;
//! use ndarray::{Array1, Array2};
//!
//! let data = smartcore::dataset::breast_cancer::load_dataset();
//! let x = Array2::from_shape_vec(
//!     (data.num_samples, data.num_features),
//!     data.data.iter().map(|v| f64::from(*v)).collect(),
//! )?;
//! let y: Array1<f64> = data.target.iter().map(|t| f64::from(*t)).collect();
//!
//! let model = LogisticRegression::params().alpha(1.0).n_bits(8).fit(x.view(), y.view())?;
//! let circuit = model.compile(x.view())?; // calibrate the input quantizers on the training set
//! assert_eq!(circuit.circuit.cost().bootstraps, 0);
//!
//! // Exact integer evaluation of the circuit (what FHE computes), against the float model.
//! let float = model.predict(x.view())?;
//! let agree = x
//!     .rows()
//!     .into_iter()
//!     .zip(&float)
//!     .filter(|(row, label)| circuit.predict_clear(&row.to_vec()).is_ok_and(|p| p.value == **label))
//!     .count();
//! assert!(agree as f64 >= 0.99 * float.len() as f64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every model also has a command-line name ([`LinearModelKind::from_name`]) and takes its
//! hyperparameters as strings ([`LinearModel::fit_with_options`]):
//!
//! ```
//! use fheml_models_linear::{LinearError, LinearModel, LinearModelKind};
//! use ndarray::{Array1, Array2};
//!
//! let x = Array2::from_shape_fn((50, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
//! let y: Array1<f64> = x.rows().into_iter().map(|r| 2.0 * r[0] - r[1] + 3.0).collect();
//! let kind = LinearModelKind::from_name("ridge")?;
//! let model = LinearModel::fit_with_options(kind, [("alpha", "0.1")], x.view(), y.view())?;
//! assert!(model.score(x.view(), y.view())? > 0.99);
//! assert!(matches!(
//!     LinearModel::fit_with_options(kind, [("depth", "3")], x.view(), y.view()),
//!     Err(LinearError::UnknownOption { .. })
//! ));
//! # Ok::<(), LinearError>(())
//! ```

mod coefficients;
mod data;
mod error;
pub mod estimators;
mod family;
mod fit;
mod kind;
pub mod lower;
mod model;
mod params;

pub use coefficients::LinearCoefficients;
pub use error::{LinearError, Result};
pub use estimators::{
    ElasticNet, Estimator, GammaRegressor, Lasso, LinearRegression, LinearSvc, LinearSvr, LogisticRegression, Params,
    PoissonRegressor, Ridge, SgdClassifier, SgdRegressor, TweedieRegressor, ValidParams,
};
pub use family::LinearFamily;
pub use fheml_quant::metrics::{accuracy, r2};
pub use kind::LinearModelKind;
pub use model::LinearModel;
pub use params::{LearningRate, LinearParams, Loss};
