//! Penalties mean what scikit-learn means by them, on raw or standardized features.

use fheml_models_linear::{LinearSvc, LogisticRegression, Ridge, SgdClassifier};
use ndarray::{Array1, Array2, Axis};

use crate::{breast_cancer, iris};

/// Ridge's closed form with an unpenalised intercept: centre, solve
/// `(XcᵀXc + αI) w = Xcᵀyc`, then `b = ȳ - x̄·w` (Gauss–Jordan).
fn ridge_closed_form(x: &Array2<f64>, y: &Array1<f64>, alpha: f64) -> (Array1<f64>, f64) {
    let (xm, ym) = (x.mean_axis(Axis(0)).unwrap(), y.mean().unwrap());
    let xc = x - &xm;
    let mut a = xc.t().dot(&xc);
    for j in 0..a.nrows() {
        a[[j, j]] += alpha;
    }
    let mut b = xc.t().dot(&(y - ym));
    let n = b.len();
    for col in 0..n {
        let pivot = a[[col, col]];
        for k in 0..n {
            a[[col, k]] /= pivot;
        }
        b[col] /= pivot;
        for row in 0..n {
            if row != col {
                let f = a[[row, col]];
                for k in 0..n {
                    a[[row, k]] -= f * a[[col, k]];
                }
                b[row] -= f * b[col];
            }
        }
    }
    let intercept = ym - xm.dot(&b);
    (b, intercept)
}

#[test]
fn ridge_penalises_raw_or_standardized_coefficients() {
    let x = Array2::from_shape_fn((40, 3), |(i, j)| ((i * 7 + j * 5) % 13) as f64 * (1.0 + 10.0 * j as f64));
    let y: Array1<f64> =
        x.rows().into_iter().enumerate().map(|(i, r)| r[0] - 0.1 * r[1] + 0.02 * r[2] + (i % 3) as f64).collect();
    let alpha = 25.0;
    // Raw features: scikit-learn's Ridge(alpha).
    let raw = Ridge::params().alpha(alpha).standardize(false).fit(x.view(), y.view()).unwrap();
    let (w, b) = ridge_closed_form(&x, &y, alpha);
    for j in 0..3 {
        assert!((raw.coefficients().weights()[[j, 0]] - w[j]).abs() < 1e-8);
    }
    assert!((raw.coefficients().intercept()[0] - b).abs() < 1e-8);
    // Standardized features: the same closed form on z = (x - x̄)/σ, mapped back.
    let std = x.std_axis(Axis(0), 0.0);
    let z = (&x - &x.mean_axis(Axis(0)).unwrap()) / &std;
    let (wz, _) = ridge_closed_form(&z, &y, alpha);
    let scaled = Ridge::params().alpha(alpha).fit(x.view(), y.view()).unwrap();
    for j in 0..3 {
        assert!((scaled.coefficients().weights()[[j, 0]] - wz[j] / std[j]).abs() < 1e-8);
    }
}

#[test]
fn raw_feature_fits_classify_as_well() {
    // Without standardization the solvers still converge on raw breast-cancer features
    // (scales from 1e-3 to 4e3), as scikit-learn's do with enough iterations.
    let data = breast_cancer();
    let logistic =
        LogisticRegression::params().standardize(false).fit(data.x_train.view(), data.y_train.view()).unwrap();
    assert!(logistic.score(data.x_test.view(), data.y_test.view()).unwrap() > 0.9);
    let data = iris();
    let svc = LinearSvc::params().standardize(false).fit(data.x_train.view(), data.y_train.view()).unwrap();
    assert!(svc.score(data.x_test.view(), data.y_test.view()).unwrap() > 0.85);
}

#[test]
fn seeds_make_sgd_reproducible() {
    let data = iris();
    let fit = |seed| SgdClassifier::params().seed(seed).fit(data.x_train.view(), data.y_train.view()).unwrap();
    assert_eq!(fit(1).coefficients(), fit(1).coefficients());
    assert_ne!(fit(1).coefficients(), fit(2).coefficients());
}
