//! The models smartcore fits: least squares, ridge, lasso, elastic net, logistic regression.
//!
//! Features arrive centred (and usually scaled), so the intercept of the penalised
//! regressions is the target mean. Penalties are converted so that every model minimizes
//! scikit-learn's objective for the same `alpha`:
//!
//! - ridge: `‖y - Xw‖² + α‖w‖²` (smartcore and scikit-learn agree);
//! - lasso and elastic net: `1/(2n)‖y - Xw‖² + αρ‖w‖₁ + α(1-ρ)/2‖w‖²`. smartcore minimizes
//!   `‖y - Xw‖² + α'ρ'n‖w‖₁ + α'(1-ρ')n‖w‖²` (its elastic net returns the naive elastic
//!   net), so `α' = α(1+ρ)` and `ρ' = 2ρ/(1+ρ)`;
//! - logistic: `Σ log-loss + α/2‖w‖²`, i.e. scikit-learn's `C = 1/α`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::elastic_net::{ElasticNet, ElasticNetParameters};
use smartcore::linear::lasso::{Lasso, LassoParameters};
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters};
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::linear::ridge_regression::{RidgeRegression, RidgeRegressionParameters};

use crate::coefficients::LinearCoefficients;
use crate::error::{LinearError, Result};

fn failed(model: &'static str) -> impl Fn(smartcore::error::Failed) -> LinearError {
    move |e| LinearError::Solver { model, detail: e.to_string() }
}

fn dense(model: &'static str, x: ArrayView2<f64>) -> Result<DenseMatrix<f64>> {
    DenseMatrix::new(x.nrows(), x.ncols(), x.iter().copied().collect(), false).map_err(failed(model))
}

/// A smartcore matrix as an ndarray one, same layout.
pub(crate) fn to_array(m: &DenseMatrix<f64>) -> Array2<f64> {
    let (rows, cols) = m.shape();
    Array2::from_shape_fn((rows, cols), |(r, c)| *m.get((r, c)))
}

/// A regressor's coefficient vector (smartcore stores a column) as `[features, 1]`.
fn single_output(model: &'static str, coef: &DenseMatrix<f64>, features: usize) -> Result<Array2<f64>> {
    let m = to_array(coef);
    let m = if m.dim() == (1, features) && features != 1 { m.reversed_axes() } else { m };
    if m.dim() != (features, 1) {
        return Err(LinearError::Solver { model, detail: format!("coefficients of shape {:?}", m.dim()) });
    }
    Ok(m)
}

fn regression(weights: Array2<f64>, intercept: f64) -> LinearCoefficients {
    LinearCoefficients::from_parts(weights, Array1::from_elem(1, intercept))
}

/// Centred targets and their mean. smartcore's elastic net centres its augmented target
/// vector (targets followed by zeros) by that vector's mean, which is only right when the
/// targets are already centred; with centred features the intercept is the target mean.
fn centre(y: ArrayView1<f64>) -> (Vec<f64>, f64) {
    let mean = y.mean().unwrap_or(0.0);
    (y.iter().map(|v| v - mean).collect(), mean)
}

/// Ordinary least squares (QR).
pub(crate) fn linear(z: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<LinearCoefficients> {
    let m = LinearRegression::fit(&dense("linear", z)?, &y.to_vec(), LinearRegressionParameters::default())
        .map_err(failed("linear"))?;
    Ok(regression(single_output("linear", m.coefficients(), z.ncols())?, *m.intercept()))
}

/// Ridge on centred features (Cholesky); the intercept is the target mean.
pub(crate) fn ridge(z: ArrayView2<f64>, y: ArrayView1<f64>, alpha: f64) -> Result<LinearCoefficients> {
    let p = RidgeRegressionParameters::default().with_alpha(alpha).with_normalize(false);
    let m = RidgeRegression::fit(&dense("ridge", z)?, &y.to_vec(), p).map_err(failed("ridge"))?;
    Ok(regression(single_output("ridge", m.coefficients(), z.ncols())?, y.mean().unwrap_or(0.0)))
}

/// Lasso (interior point) with scikit-learn's `alpha`.
pub(crate) fn lasso(
    z: ArrayView2<f64>,
    y: ArrayView1<f64>,
    alpha: f64,
    max_iter: usize,
    tol: f64,
) -> Result<LinearCoefficients> {
    let p =
        LassoParameters::default().with_alpha(2.0 * alpha).with_normalize(false).with_max_iter(max_iter).with_tol(tol);
    let (centred, mean) = centre(y);
    let m = Lasso::fit(&dense("lasso", z)?, &centred, p).map_err(failed("lasso"))?;
    Ok(regression(single_output("lasso", m.coefficients(), z.ncols())?, mean))
}

/// Elastic net (augmented lasso) with scikit-learn's `alpha` and `l1_ratio`.
pub(crate) fn elastic_net(
    z: ArrayView2<f64>,
    y: ArrayView1<f64>,
    alpha: f64,
    l1_ratio: f64,
    max_iter: usize,
    tol: f64,
) -> Result<LinearCoefficients> {
    let p = ElasticNetParameters::default()
        .with_alpha(alpha * (1.0 + l1_ratio))
        .with_l1_ratio(2.0 * l1_ratio / (1.0 + l1_ratio))
        .with_normalize(false)
        .with_max_iter(max_iter)
        .with_tol(tol);
    let (centred, mean) = centre(y);
    let m = ElasticNet::fit(&dense("elasticnet", z)?, &centred, p).map_err(failed("elasticnet"))?;
    Ok(regression(single_output("elasticnet", m.coefficients(), z.ncols())?, mean))
}

/// Logistic regression (L-BFGS) on class indices `0..k`: one score when `k = 2`
/// (smartcore's `(1, p)` coefficients), otherwise `k` multinomial scores (`(k, p)`).
pub(crate) fn logistic(z: ArrayView2<f64>, classes: &[usize], alpha: f64) -> Result<LinearCoefficients> {
    let y: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
    let p = LogisticRegressionParameters::default().with_alpha(alpha);
    let m = LogisticRegression::fit(&dense("logistic", z)?, &y, p).map_err(failed("logistic"))?;
    let (coef, intercept) = (to_array(m.coefficients()), to_array(m.intercept()));
    let outputs = coef.nrows();
    if coef.ncols() != z.ncols() || intercept.len() != outputs {
        return Err(LinearError::Solver {
            model: "logistic",
            detail: format!("coefficients {:?} and intercept {:?}", coef.dim(), intercept.dim()),
        });
    }
    let intercept = Array1::from_iter(intercept.iter().copied());
    Ok(LinearCoefficients::from_parts(coef.reversed_axes(), intercept))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::{Axis, array};

    /// Centred, mutually orthogonal columns with `xᵀx = n`: the penalised solutions have
    /// closed forms.
    fn orthogonal_design() -> Array2<f64> {
        Array2::from_shape_fn((8, 3), |(i, j)| if (i >> j) & 1 == 0 { 1.0 } else { -1.0 })
    }

    #[test]
    fn least_squares_matches_the_normal_equations() {
        let x = Array2::from_shape_fn((30, 3), |(i, j)| ((i * 7 + j * 5) % 11) as f64 - 5.0 + 0.1 * j as f64);
        let y = x.map_axis(Axis(1), |r| 2.0 * r[0] - 3.0 * r[1] + 0.5 * r[2] + 1.5)
            + Array1::from_shape_fn(30, |i| ((i * 13) % 7) as f64 * 0.01);
        let c = linear(x.view(), y.view()).unwrap();
        // Closed form on [1, x]: (AᵀA)β = Aᵀy.
        let mut a = Array2::ones((30, 4));
        a.slice_mut(ndarray::s![.., 1..]).assign(&x);
        let beta = crate::fit::linalg::solve(a.t().dot(&a), a.t().dot(&y)).unwrap();
        assert!((c.intercept()[0] - beta[0]).abs() < 1e-8);
        for j in 0..3 {
            assert!((c.weights()[[j, 0]] - beta[j + 1]).abs() < 1e-8);
        }
    }

    #[test]
    fn ridge_lasso_and_elastic_net_match_scikit_learn_closed_forms() {
        let x = orthogonal_design();
        let n = 8.0;
        let y = x.dot(&array![3.0, -1.0, 0.2]) + 10.0;
        let xty = x.t().dot(&y) / n;
        // Ridge: (xᵀx + α) w = xᵀy.
        let r = ridge(x.view(), y.view(), 4.0).unwrap();
        for j in 0..3 {
            assert!((r.weights()[[j, 0]] - xty[j] * n / (n + 4.0)).abs() < 1e-9);
        }
        assert!((r.intercept()[0] - 10.0).abs() < 1e-12);
        // scikit-learn's elastic net: w = S(xᵀy/n, αρ) / (1 + α(1-ρ)).
        let soft = |v: f64, t: f64| v.signum() * (v.abs() - t).max(0.0);
        for (alpha, rho) in [(0.5, 1.0), (0.5, 0.5), (0.3, 0.2)] {
            let c = if rho == 1.0 {
                lasso(x.view(), y.view(), alpha, 1000, 1e-8).unwrap()
            } else {
                elastic_net(x.view(), y.view(), alpha, rho, 1000, 1e-8).unwrap()
            };
            for j in 0..3 {
                let expected = soft(xty[j], alpha * rho) / (1.0 + alpha * (1.0 - rho));
                assert!((c.weights()[[j, 0]] - expected).abs() < 1e-3, "α={alpha} ρ={rho} j={j}: {c:?}");
            }
            assert!((c.intercept()[0] - 10.0).abs() < 1e-9);
        }
    }

    #[test]
    fn logistic_layout_is_one_score_per_class_or_one_for_two_classes() {
        let d = smartcore::dataset::iris::load_dataset();
        let x = Array2::from_shape_vec((d.num_samples, d.num_features), d.data.iter().map(|v| f64::from(*v)).collect())
            .unwrap();
        let x = &x - &x.mean_axis(Axis(0)).unwrap();
        let labels: Vec<usize> = d.target.iter().map(|t| *t as usize).collect();
        // Multiclass: (k, p) in smartcore, argmax of our scores equals its prediction.
        let xs = dense("t", x.view()).unwrap();
        let y: Vec<i64> = labels.iter().map(|&c| c as i64).collect();
        let m = LogisticRegression::fit(&xs, &y, LogisticRegressionParameters::default().with_alpha(1.0)).unwrap();
        let ours = logistic(x.view(), &labels, 1.0).unwrap();
        assert_eq!(ours.weights().dim(), (4, 3));
        let predicted = m.predict(&xs).unwrap();
        for (scores, p) in ours.scores(x.view()).rows().into_iter().zip(&predicted) {
            let best = (0..3).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
            assert_eq!(best as i64, *p);
        }
        // Binary: (1, p); class 1 when the score is positive.
        let binary: Vec<usize> = labels.iter().map(|&c| usize::from(c == 2)).collect();
        let y: Vec<i64> = binary.iter().map(|&c| c as i64).collect();
        let m = LogisticRegression::fit(&xs, &y, LogisticRegressionParameters::default().with_alpha(1.0)).unwrap();
        let ours = logistic(x.view(), &binary, 1.0).unwrap();
        assert_eq!(ours.weights().dim(), (4, 1));
        let predicted = m.predict(&xs).unwrap();
        for (scores, p) in ours.scores(x.view()).rows().into_iter().zip(&predicted) {
            assert_eq!(i64::from(scores[0] > 0.0), *p);
        }
    }

    #[test]
    fn logistic_reaches_the_penalised_optimum() {
        // At the optimum of Σ log-loss + α/2‖w‖²: Zᵀ(σ(s) - y) + αw = 0 and Σ(σ(s) - y) = 0.
        let d = smartcore::dataset::breast_cancer::load_dataset();
        let x = Array2::from_shape_vec((d.num_samples, d.num_features), d.data.iter().map(|v| f64::from(*v)).collect())
            .unwrap();
        let z = crate::data::Standardizer::fit(x.view(), true).transform(x.view());
        let labels: Vec<usize> = d.target.iter().map(|t| *t as usize).collect();
        let y = Array1::from_iter(labels.iter().map(|&c| c as f64));
        let alpha = 1.0;
        let c = logistic(z.view(), &labels, alpha).unwrap();
        let residual = c.scores(z.view()).column(0).mapv(|s| 1.0 / (1.0 + (-s).exp())) - &y;
        let gradient = z.t().dot(&residual) + alpha * &c.weights().column(0);
        let start = z.t().dot(&(0.5 - &y)).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let largest = gradient.iter().fold(residual.sum().abs(), |m, v| m.max(v.abs()));
        assert!(largest < 1e-3 * start, "gradient {largest} vs {start} at the start");
    }
}
