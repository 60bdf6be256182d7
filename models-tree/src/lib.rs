//! Decision trees, random forests and gradient-boosted trees in FHE.
//!
//! Fit trees and forests with fheml's CART ([`cart`], scikit-learn's algorithm: every
//! threshold, Gini/entropy/squared error, bootstrap forests) and boosting with hessboost,
//! or import an XGBoost JSON model ([`TreeModel::from_xgboost_json`]), an ONNX-ML tree
//! ensemble from skl2onnx or onnxmltools ([`TreeModel::from_onnx_ml_file`]: scikit-learn,
//! LightGBM, XGBoost) or a smartcore model ([`TreeModel::from_smartcore`]); every model is
//! read into one neutral [`TreeEnsemble`]. [`TreeModel::compile`] quantizes it
//! ([`QuantizedEnsemble`]: unsigned per-feature inputs, integer thresholds that reproduce
//! every float decision on the dequantized input of a model fitted on the grid, leaf values
//! on one scale) and lowers it to an integer circuit
//! that needs at most one low-precision bootstrap per leaf, against Concrete ML's one per
//! comparison and one per leaf: the client encrypts a thermometer encoding of each feature,
//! so comparisons are free (see [`lower`]). Vote counts, margins or values come out of the
//! circuit; argmax, sigmoid or softmax run on the client.
//!
//! ```
//! use fheml_models_tree::{DecisionTreeClassifier, predict_clear};
//! use ndarray::{Array1, Array2};
//!
//! let x = Array2::from_shape_fn((60, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
//! let y: Array1<f64> = x.rows().into_iter().map(|r| f64::from(r[0] + r[1] > 9.0)).collect();
//! let model = DecisionTreeClassifier::params().max_depth(3).n_bits(4).check()?.fit(x.view(), y.view())?;
//!
//! let circuit = model.compile(x.view())?;
//! let float = model.predict(x.view())?;
//! for (row, want) in x.rows().into_iter().zip(float.iter()) {
//!     assert_eq!(predict_clear(&circuit, &row.to_vec())?.value, *want);
//! }
//! // At most one bootstrap per leaf; Concrete ML needs one per node.
//! assert!(circuit.circuit.cost().bootstraps < model.gemm_bootstraps());
//! # Ok::<(), fheml_models_tree::TreeError>(())
//! ```

mod boosting;
pub mod cart;
mod ensemble;
mod error;
mod family;
pub mod lower;
mod model;
pub mod onnx_ml;
mod params;
mod quantize;
mod smartcore_io;
mod xgboost;

pub use cart::{MaxFeatures, SplitCriterion};
pub use ensemble::{LeafPath, Precision, SplitRule, Tree, TreeEnsemble, TreeNode};
pub use error::{Result, TreeError};
pub use family::TreeFamily;
pub use lower::LoweringSummary;
pub use model::{
    CompileOptions, CompiledTrees, DecisionTreeClassifier, DecisionTreeRegressor, GradientBoostingClassifier,
    GradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor, TreeModel, XGBClassifier, XGBRegressor,
    predict_clear,
};
pub use params::{MAX_INPUT_BITS, TaskKind, TreeModelKind, TreeParams, ValidTreeParams, Voting};
pub use quantize::{LeafQuantization, QuantizedEnsemble, QuantizedNode, QuantizedTree};
pub use smartcore_io::ensemble_from_smartcore;
pub use xgboost::ensemble_from_xgboost_json;
