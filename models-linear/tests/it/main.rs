//! Integration tests of the linear family: quantized accuracy, imports, errors, and
//! Execute (real TFHE) against Clear.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod accuracy;
mod errors;
mod execute;
mod fitting;
mod import;

use fheml_circuits::ModelCircuit;
use ndarray::{Array1, Array2};

/// A fixed train/test split (every fifth row is a test row).
pub(crate) use fheml_quant::data::Split;

fn split(data: &[f32], target: Vec<f64>, features: usize) -> Split {
    let x = Array2::from_shape_vec((target.len(), features), data.iter().map(|v| f64::from(*v)).collect()).unwrap();
    Split::every_fifth(x.view(), Array1::from(target).view())
}

/// smartcore's embedded breast cancer data (569 × 30, binary).
pub(crate) fn breast_cancer() -> Split {
    let d = smartcore::dataset::breast_cancer::load_dataset();
    split(&d.data, d.target.iter().map(|t| f64::from(*t)).collect(), d.num_features)
}

/// smartcore's embedded iris data (150 × 4, three classes).
pub(crate) fn iris() -> Split {
    let d = smartcore::dataset::iris::load_dataset();
    split(&d.data, d.target.iter().map(|t| f64::from(*t)).collect(), d.num_features)
}

/// smartcore's embedded diabetes data (442 × 10, positive targets).
pub(crate) fn diabetes() -> Split {
    let d = smartcore::dataset::diabetes::load_dataset();
    split(&d.data, d.target.iter().map(|t| f64::from(*t)).collect(), d.num_features)
}

/// Clear (exact integer) predictions of every row.
pub(crate) fn predict_clear(circuit: &ModelCircuit, x: &Array2<f64>) -> Array1<f64> {
    x.rows().into_iter().map(|r| circuit.predict_clear(&r.to_vec()).unwrap().value).collect()
}
