//! The common representation of every fitted or imported linear model.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::{LinearError, Result};

/// Weights and intercepts on raw features: `scores = x·weights + intercept`.
///
/// `weights` is `[n_features, n_outputs]` (scikit-learn's `coef_.T`); one output for
/// regressors and binary classifiers, one per class otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearCoefficients {
    weights: Array2<f64>,
    intercept: Array1<f64>,
}

impl LinearCoefficients {
    /// Checked construction from `[n_features, n_outputs]` weights and one intercept per output.
    pub fn new(weights: Array2<f64>, intercept: Array1<f64>) -> Result<Self> {
        if weights.is_empty() {
            return Err(LinearError::Coefficients(format!("empty weight matrix of shape {:?}", weights.dim())));
        }
        if weights.ncols() != intercept.len() {
            return Err(LinearError::Coefficients(format!(
                "{} weight columns (outputs) but {} intercepts",
                weights.ncols(),
                intercept.len()
            )));
        }
        if let Some(((f, o), v)) = weights.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(LinearError::Coefficients(format!("non-finite weight {v} for feature {f}, output {o}")));
        }
        if let Some((o, v)) = intercept.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(LinearError::Coefficients(format!("non-finite intercept {v} for output {o}")));
        }
        Ok(Self { weights, intercept })
    }

    /// From scikit-learn's layout: `coef_` as `[n_outputs, n_features]` (a regressor's 1-D
    /// `coef_` is one row) and `intercept_`.
    pub fn from_sklearn(coef: ArrayView2<f64>, intercept: ArrayView1<f64>) -> Result<Self> {
        Self::new(coef.t().to_owned(), intercept.to_owned())
    }

    /// `[n_features, n_outputs]` weights.
    pub fn weights(&self) -> &Array2<f64> {
        &self.weights
    }

    /// One intercept per output.
    pub fn intercept(&self) -> &Array1<f64> {
        &self.intercept
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.weights.nrows()
    }

    /// Number of outputs (scores).
    pub fn n_outputs(&self) -> usize {
        self.weights.ncols()
    }

    /// Scores of every row, `[rows, n_outputs]` (no check on `x`).
    pub(crate) fn scores(&self, x: ArrayView2<f64>) -> Array2<f64> {
        x.dot(&self.weights) + &self.intercept
    }

    /// Unchecked construction for fitted coefficients (the solvers keep them finite).
    pub(crate) fn from_parts(weights: Array2<f64>, intercept: Array1<f64>) -> Self {
        Self { weights, intercept }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    #[test]
    fn sklearn_layout_is_transposed_and_shapes_are_checked() {
        let c = LinearCoefficients::from_sklearn(array![[1.0, 2.0, 3.0]].view(), array![0.5].view()).unwrap();
        assert_eq!(c.weights(), &array![[1.0], [2.0], [3.0]]);
        assert_eq!((c.n_features(), c.n_outputs()), (3, 1));
        assert_eq!(c.scores(array![[1.0, 1.0, 1.0]].view()), array![[6.5]]);
        assert!(LinearCoefficients::new(array![[1.0, 2.0]], array![0.0]).is_err());
        assert!(LinearCoefficients::new(array![[f64::NAN]], array![0.0]).is_err());
        assert!(LinearCoefficients::new(Array2::zeros((0, 1)), array![0.0]).is_err());
    }
}
