//! Every linear model: quantized (Clear) predictions track the float model.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use fheml_models_linear::{LinearError, LinearModel, LinearModelKind, LinearParams};
use ndarray::{Array1, Array2, Axis};

mod execute;

pub(crate) struct Split {
    pub x_train: Array2<f64>,
    pub y_train: Array1<f64>,
    pub x_test: Array2<f64>,
    pub y_test: Array1<f64>,
}

fn split(data: Vec<f32>, target: Vec<f64>, features: usize) -> Split {
    let x = Array2::from_shape_vec((target.len(), features), data.into_iter().map(f64::from).collect()).unwrap();
    let y = Array1::from(target);
    let (test, train): (Vec<usize>, Vec<usize>) = (0..y.len()).partition(|i| i % 5 == 0);
    Split {
        x_train: x.select(Axis(0), &train),
        y_train: y.select(Axis(0), &train),
        x_test: x.select(Axis(0), &test),
        y_test: y.select(Axis(0), &test),
    }
}

pub(crate) fn breast_cancer() -> Split {
    let d = smartcore::dataset::breast_cancer::load_dataset();
    split(d.data, d.target.into_iter().map(f64::from).collect(), d.num_features)
}

pub(crate) fn iris() -> Split {
    let d = smartcore::dataset::iris::load_dataset();
    split(d.data, d.target.into_iter().map(f64::from).collect(), d.num_features)
}

pub(crate) fn diabetes() -> Split {
    let d = smartcore::dataset::diabetes::load_dataset();
    split(d.data, d.target.into_iter().map(f64::from).collect(), d.num_features)
}

fn accuracy(pred: &[f64], y: &Array1<f64>) -> f64 {
    pred.iter().zip(y).filter(|(p, t)| p == t).count() as f64 / y.len() as f64
}

fn r2(pred: &[f64], y: &Array1<f64>) -> f64 {
    let mean = y.mean().unwrap();
    let ss_res: f64 = pred.iter().zip(y).map(|(p, t)| (p - t).powi(2)).sum();
    let ss_tot: f64 = y.iter().map(|t| (t - mean).powi(2)).sum();
    1.0 - ss_res / ss_tot
}

/// Float and quantized (Clear) scores of one model on one split.
fn scores(kind: LinearModelKind, data: &Split) -> (f64, f64) {
    let model = LinearModel::fit(LinearParams::new(kind), data.x_train.view(), data.y_train.view()).unwrap();
    let float = model.predict(data.x_test.view()).unwrap().to_vec();
    let circuit = model.compile(data.x_train.view()).unwrap();
    assert_eq!(circuit.circuit.cost().bootstraps, 0);
    let quantized: Vec<f64> =
        data.x_test.rows().into_iter().map(|r| circuit.predict_clear(r.as_slice().unwrap()).unwrap().value).collect();
    if kind.is_classifier() {
        (accuracy(&float, &data.y_test), accuracy(&quantized, &data.y_test))
    } else {
        (r2(&float, &data.y_test), r2(&quantized, &data.y_test))
    }
}

#[test]
fn classifiers_keep_their_accuracy_when_quantized() {
    for data in [breast_cancer(), iris()] {
        for kind in [LinearModelKind::Logistic, LinearModelKind::LinearSvc, LinearModelKind::SgdClassifier] {
            let (float, quantized) = scores(kind, &data);
            eprintln!("{kind:?}: float {float:.3} quantized {quantized:.3}");
            assert!(float > 0.85, "{kind:?} float accuracy {float}");
            assert!(quantized >= float - 0.01, "{kind:?}: float {float} quantized {quantized}");
        }
    }
}

#[test]
fn regressors_keep_their_r2_when_quantized() {
    let data = diabetes();
    for kind in [
        LinearModelKind::Linear,
        LinearModelKind::Ridge,
        LinearModelKind::Lasso,
        LinearModelKind::ElasticNet,
        LinearModelKind::LinearSvr,
        LinearModelKind::SgdRegressor,
        LinearModelKind::Poisson,
        LinearModelKind::Gamma,
        LinearModelKind::Tweedie,
    ] {
        let (float, quantized) = scores(kind, &data);
        eprintln!("{kind:?}: float R2 {float:.4} quantized {quantized:.4}");
        assert!(float > 0.3, "{kind:?} float R2 {float}");
        assert!((float - quantized).abs() <= 0.01, "{kind:?}: float {float} quantized {quantized}");
    }
}

#[test]
fn least_squares_recovers_known_coefficients() {
    let x = Array2::from_shape_fn((50, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
    let y: Array1<f64> = x.rows().into_iter().map(|r| 2.0 * r[0] - 3.0 * r[1] + 1.5).collect();
    let model = LinearModel::fit(LinearParams::new(LinearModelKind::Linear), x.view(), y.view()).unwrap();
    assert!((model.weights()[[0, 0]] - 2.0).abs() < 1e-6 && (model.weights()[[1, 0]] + 3.0).abs() < 1e-6);
    assert!((model.intercept()[0] - 1.5).abs() < 1e-6);
    // A Poisson GLM on exact log-linear means recovers its coefficients.
    let mu: Array1<f64> = x.rows().into_iter().map(|r| (0.1 * r[0] - 0.05 * r[1] + 0.3).exp()).collect();
    let params = LinearParams::new(LinearModelKind::Poisson).set("alpha", "0").unwrap();
    let glm = LinearModel::fit(params, x.view(), mu.view()).unwrap();
    assert!((glm.weights()[[0, 0]] - 0.1).abs() < 1e-4 && (glm.weights()[[1, 0]] + 0.05).abs() < 1e-4);
}

#[test]
fn bad_input_gives_typed_errors() {
    let data = iris();
    let p = || LinearParams::new(LinearModelKind::Logistic);
    let mut nan = data.x_train.clone();
    nan[[3, 1]] = f64::NAN;
    assert!(matches!(LinearModel::fit(p(), nan.view(), data.y_train.view()), Err(LinearError::Data(_))));
    let empty = Array2::<f64>::zeros((0, 4));
    assert!(matches!(LinearModel::fit(p(), empty.view(), Array1::zeros(0).view()), Err(LinearError::Data(_))));
    let model = LinearModel::fit(p(), data.x_train.view(), data.y_train.view()).unwrap();
    let narrow = Array2::<f64>::zeros((2, 3));
    assert!(model.predict(narrow.view()).is_err());
    assert!(model.compile(narrow.view()).is_err());
    let circuit = model.compile(data.x_train.view()).unwrap();
    assert!(circuit.predict_clear(&[1.0, 2.0]).is_err());
    assert!(circuit.predict_clear(&[1.0, 2.0, f64::NAN, 0.0]).is_err());
    assert!(matches!(p().set("alpha", "-1").unwrap().check(), Err(LinearError::Param(_))));
    assert!(matches!(p().set("n_bits", "0").unwrap().check(), Err(LinearError::Param(_))));
    assert!(matches!(p().set("depth", "3"), Err(LinearError::Param(_))));
    assert!(matches!(p().set("alpha", "x"), Err(LinearError::Param(_))));
    assert!(matches!(LinearModelKind::from_name("svm"), Err(LinearError::UnknownModel(_))));
    for name in LinearModelKind::NAMES {
        assert_eq!(LinearModelKind::from_name(name).unwrap().name(), name);
    }
}
