//! Checks on user data, class encoding, and the feature standardizer used while fitting.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::error::{LinearError, Result};

/// Refuses rows of another width than the model's, or with NaN or infinite values.
pub(crate) fn check_prediction_input(x: ArrayView2<f64>, expected: usize) -> Result<()> {
    Ok(fheml_quant::data::check_prediction_rows(x, expected)?)
}

/// Refuses training data that is empty, non-finite, or of mismatched lengths.
pub(crate) fn check_training(x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<()> {
    Ok(fheml_quant::data::check_training(x, y)?)
}

/// Distinct labels in increasing order, and each row's class index.
pub(crate) fn encode_classes(model: &'static str, y: ArrayView1<f64>) -> Result<(Vec<f64>, Vec<usize>)> {
    let mut classes = y.to_vec();
    classes.sort_by(f64::total_cmp);
    classes.dedup();
    if classes.len() < 2 {
        return Err(LinearError::InvalidTargets { model, reason: "a classifier needs at least two classes".into() });
    }
    // Every label is in `classes`, so the search always succeeds.
    let index = y.iter().map(|v| classes.partition_point(|c| c < v)).collect();
    Ok((classes, index))
}

/// Centres features and (optionally) scales them to unit variance.
pub(crate) struct Standardizer {
    mean: Array1<f64>,
    scale: Array1<f64>,
}

impl Standardizer {
    /// Fits on `x`; constant columns keep scale 1.
    pub(crate) fn fit(x: ArrayView2<f64>, scale: bool) -> Self {
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(x.ncols()));
        let scale = if scale {
            x.std_axis(Axis(0), 0.0).mapv(|s| if s > 1e-12 { s } else { 1.0 })
        } else {
            Array1::ones(x.ncols())
        };
        Self { mean, scale }
    }

    /// `(x - mean) / scale`, in standard (row-major) layout.
    pub(crate) fn transform(&self, x: ArrayView2<f64>) -> Array2<f64> {
        (&x - &self.mean) / &self.scale
    }

    /// Maps coefficients on standardized features back to raw features:
    /// `w = w_z / scale`, `b = b_z - mean·w`.
    pub(crate) fn unscale(&self, weights: Array2<f64>, intercept: Array1<f64>) -> (Array2<f64>, Array1<f64>) {
        let weights = weights / self.scale.view().insert_axis(Axis(1));
        let intercept = intercept - self.mean.dot(&weights);
        (weights, intercept)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    #[test]
    fn standardized_coefficients_map_back_to_the_same_scores() {
        let x = array![[1.0, 10.0], [2.0, 30.0], [4.0, 20.0]];
        let s = Standardizer::fit(x.view(), true);
        let z = s.transform(x.view());
        let (wz, bz) = (array![[0.5, -1.0], [2.0, 0.25]], array![0.1, -0.2]);
        let expected = z.dot(&wz) + &bz;
        let (w, b) = s.unscale(wz, bz);
        let got = x.dot(&w) + &b;
        assert!(expected.iter().zip(got.iter()).all(|(e, g)| (e - g).abs() < 1e-12));
    }

    #[test]
    fn classes_are_sorted_and_indexed() {
        let (classes, index) = encode_classes("logistic", array![3.0, 1.0, 3.0, 2.0].view()).unwrap();
        assert_eq!(classes, vec![1.0, 2.0, 3.0]);
        assert_eq!(index, vec![2, 0, 2, 1]);
        assert!(encode_classes("logistic", array![1.0, 1.0].view()).is_err());
    }
}
