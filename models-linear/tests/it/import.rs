//! Coefficients trained elsewhere import, predict and compile like fitted ones.

use fheml_circuits::PostProcessing;
use fheml_models_linear::{
    LinearCoefficients, LinearError, LinearModel, LinearModelKind, LinearParams, LinearRegression, LogisticRegression,
    PoissonRegressor, SgdClassifier,
};
use ndarray::{Array1, Array2, array};

use crate::{breast_cancer, iris, predict_clear};

#[test]
fn imported_coefficients_reproduce_the_fitted_model() {
    for data in [breast_cancer(), iris()] {
        let fitted = LogisticRegression::params().fit(data.x_train.view(), data.y_train.view()).unwrap();
        // Through scikit-learn's layout: coef_ is [outputs, features].
        let coef = fitted.coefficients().weights().t().to_owned();
        let c = LinearCoefficients::from_sklearn(coef.view(), fitted.coefficients().intercept().view()).unwrap();
        let imported = LogisticRegression::from_coefficients(
            c.weights().clone(),
            c.intercept().clone(),
            fitted.classes().to_vec(),
        )
        .unwrap();
        assert_eq!(imported.predict(data.x_test.view()).unwrap(), fitted.predict(data.x_test.view()).unwrap());
        let (a, b) = (fitted.compile(data.x_train.view()).unwrap(), imported.compile(data.x_train.view()).unwrap());
        assert_eq!(predict_clear(&a, &data.x_test), predict_clear(&b, &data.x_test));
    }
}

#[test]
fn imports_choose_the_post_processing_of_their_kind() {
    let w = array![[0.5], [-0.25]];
    let b = array![0.1];
    let logistic = LogisticRegression::from_coefficients(w.clone(), b.clone(), vec![-1.0, 1.0]).unwrap();
    assert_eq!(logistic.model().post_processing(), PostProcessing::Sigmoid);
    assert_eq!(logistic.predict(array![[4.0, 0.0], [0.0, 4.0]].view()).unwrap(), array![1.0, -1.0]);
    let svm = SgdClassifier::from_coefficients(w.clone(), b.clone(), vec![0.0, 1.0]).unwrap();
    assert_eq!(svm.model().post_processing(), PostProcessing::Sign);
    let poisson = PoissonRegressor::from_coefficients(w.clone(), b.clone()).unwrap();
    assert_eq!(poisson.model().post_processing(), PostProcessing::Exp);
    let expected = (0.5f64 * 2.0 + 0.1).exp();
    assert!((poisson.predict(array![[2.0, 0.0]].view()).unwrap()[0] - expected).abs() < 1e-12);
    // Quantized: exp of a decoded score close to the float one.
    let x = Array2::from_shape_fn((20, 2), |(i, j)| (i * (j + 1)) as f64 / 10.0);
    let circuit = poisson.compile(x.view()).unwrap();
    let float = poisson.predict(x.view()).unwrap();
    let clear = predict_clear(&circuit, &x);
    for (f, c) in float.iter().zip(&clear) {
        assert!((f - c).abs() / f < 0.01, "{f} vs {c}");
    }
    // Three classes: one score per class, softmax.
    let multi = LogisticRegression::from_coefficients(Array2::eye(3), Array1::zeros(3), vec![0.0, 1.0, 2.0]).unwrap();
    assert_eq!(multi.model().post_processing(), PostProcessing::Softmax);
    assert_eq!(multi.predict(array![[0.0, 5.0, 1.0]].view()).unwrap(), array![1.0]);
}

fn bad<T>(r: Result<T, LinearError>) -> bool {
    matches!(r, Err(LinearError::Coefficients(_)))
}

#[test]
fn inconsistent_imports_are_refused() {
    let w = array![[0.5], [-0.25]];
    let b = array![0.1];
    // Two outputs for two classes, three labels for one output, repeated labels.
    assert!(bad(LogisticRegression::from_coefficients(Array2::zeros((2, 2)), Array1::zeros(2), vec![0.0, 1.0])));
    assert!(bad(LogisticRegression::from_coefficients(w.clone(), b.clone(), vec![0.0, 1.0, 2.0])));
    assert!(bad(LogisticRegression::from_coefficients(w.clone(), b.clone(), vec![1.0, 1.0])));
    assert!(bad(LinearRegression::from_coefficients(w.clone(), array![0.1, 0.2])));
    assert!(bad(LinearRegression::from_coefficients(array![[f64::NAN]], b.clone())));
    assert!(bad(LinearModel::from_coefficients(
        LinearParams::new(LinearModelKind::Logistic),
        w.clone(),
        b.clone(),
        None
    )));
    assert!(bad(LinearModel::from_coefficients(LinearParams::new(LinearModelKind::Ridge), w, b, Some(vec![0.0, 1.0]))));
}

#[test]
fn models_serialize_and_come_back_equal() {
    let data = iris();
    let model = LogisticRegression::params().fit(data.x_train.view(), data.y_train.view()).unwrap();
    let json = serde_json::to_string(&model).unwrap();
    let back: LogisticRegression = serde_json::from_str(&json).unwrap();
    assert_eq!(back.model().params(), model.model().params());
    assert_eq!(back.classes(), model.classes());
    let (a, b) = (back.coefficients().weights(), model.coefficients().weights());
    assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs().max(1.0)));
    assert_eq!(back.predict(data.x_test.view()).unwrap(), model.predict(data.x_test.view()).unwrap());
    let untyped: LinearModel = serde_json::from_str(&json).unwrap();
    assert_eq!(untyped.kind(), LinearModelKind::Logistic);
}
