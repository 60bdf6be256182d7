//! Bad input gives typed errors, never a panic.

use fheml_models_linear::{
    GammaRegressor, LinearError, LinearModel, LinearModelKind, LinearParams, LinearSvc, LogisticRegression,
    PoissonRegressor, Ridge,
};
use fheml_quant::DataError;
use ndarray::{Array1, Array2, array};

use crate::iris;

#[test]
fn nan_and_empty_training_data_are_refused() {
    let data = iris();
    let mut nan = data.x_train.clone();
    nan[[3, 1]] = f64::NAN;
    let err = LogisticRegression::params().fit(nan.view(), data.y_train.view()).unwrap_err();
    assert!(matches!(err, LinearError::Data(DataError::NonFiniteFeature { row: 3, column: 1, .. })), "{err}");
    let mut y = data.y_train.clone();
    y[7] = f64::INFINITY;
    let err = Ridge::params().fit(data.x_train.view(), y.view()).unwrap_err();
    assert!(matches!(err, LinearError::Data(DataError::NonFiniteTarget { row: 7, .. })), "{err}");

    let empty = Array2::<f64>::zeros((0, 4));
    for kind in LinearModelKind::ALL {
        let err = LinearModel::fit(LinearParams::new(kind), empty.view(), Array1::zeros(0).view()).unwrap_err();
        assert!(matches!(err, LinearError::Data(DataError::Empty { rows: 0, features: 4 })), "{kind}: {err}");
    }
    let no_features = Array2::<f64>::zeros((5, 0));
    let err = Ridge::params().fit(no_features.view(), Array1::zeros(5).view()).unwrap_err();
    assert!(matches!(err, LinearError::Data(DataError::Empty { .. })));
    let err = Ridge::params().fit(data.x_train.view(), Array1::zeros(3).view()).unwrap_err();
    assert!(matches!(err, LinearError::Data(DataError::LengthMismatch { targets: 3, .. })));
}

#[test]
fn unusable_targets_are_refused() {
    let x = Array2::from_shape_fn((6, 2), |(i, j)| (i + j) as f64);
    let err = LogisticRegression::params().fit(x.view(), Array1::ones(6).view()).unwrap_err();
    assert!(matches!(err, LinearError::InvalidTargets { model: "logistic", .. }), "{err}");
    let negative = array![1.0, 2.0, -1.0, 3.0, 1.0, 2.0];
    assert!(matches!(
        PoissonRegressor::params().fit(x.view(), negative.view()),
        Err(LinearError::InvalidTargets { model: "poisson", .. })
    ));
    let zero = array![1.0, 2.0, 0.0, 3.0, 1.0, 2.0];
    assert!(matches!(
        GammaRegressor::params().fit(x.view(), zero.view()),
        Err(LinearError::InvalidTargets { model: "gamma", .. })
    ));
}

#[test]
fn wrong_feature_counts_are_refused_at_predict_and_compile() {
    let data = iris();
    let model = LinearSvc::params().fit(data.x_train.view(), data.y_train.view()).unwrap();
    let narrow = Array2::<f64>::zeros((2, 3));
    assert!(matches!(
        model.predict(narrow.view()),
        Err(LinearError::Data(DataError::FeatureCount { expected: 4, got: 3 }))
    ));
    assert!(matches!(model.decision_function(narrow.view()), Err(LinearError::Data(DataError::FeatureCount { .. }))));
    assert!(matches!(model.compile(narrow.view()), Err(LinearError::Data(DataError::FeatureCount { .. }))));
    let mut nan = data.x_test.clone();
    nan[[0, 0]] = f64::NAN;
    assert!(matches!(model.predict(nan.view()), Err(LinearError::Data(DataError::NonFiniteFeature { .. }))));
    // The compiled circuit refuses bad rows too (its own error type).
    let circuit = model.compile(data.x_train.view()).unwrap();
    assert!(circuit.predict_clear(&[1.0, 2.0]).is_err());
    assert!(circuit.predict_clear(&[1.0, 2.0, f64::NAN, 0.0]).is_err());
    // A margin classifier has no probabilities.
    assert!(matches!(
        model.model().predict_proba(data.x_test.view()),
        Err(LinearError::Unsupported { what: "predict_proba", .. })
    ));
}

#[test]
fn bad_hyperparameters_are_typed_errors() {
    let data = iris();
    let (x, y) = (data.x_train.view(), data.y_train.view());
    let err = Ridge::params().alpha(-1.0).fit(x, y).unwrap_err();
    assert!(matches!(err, LinearError::InvalidParam { name: "alpha", .. }), "{err}");
    assert!(matches!(
        LogisticRegression::params().n_bits(0).check(),
        Err(LinearError::InvalidParam { name: "n_bits", .. })
    ));
    assert!(matches!(
        LogisticRegression::params().w_bits(1).check(),
        Err(LinearError::InvalidParam { name: "w_bits", .. })
    ));
    assert!(matches!(LinearSvc::params().c(0.0).check(), Err(LinearError::InvalidParam { name: "c", .. })));
    assert!(matches!(LinearSvc::params().max_iter(0).check(), Err(LinearError::InvalidParam { name: "max_iter", .. })));
    assert!(matches!(
        LinearModel::fit_with_options(LinearModelKind::Ridge, [("alpha", "-0.5")], x, y),
        Err(LinearError::InvalidParam { name: "alpha", .. })
    ));
    assert!(matches!(
        LinearModel::fit_with_options(LinearModelKind::Ridge, [("alpha", "lots")], x, y),
        Err(LinearError::InvalidParam { name: "alpha", .. })
    ));
}

#[test]
fn unknown_model_names_and_options_list_the_valid_ones() {
    let err = LinearModelKind::from_name("svm").unwrap_err();
    assert!(matches!(&err, LinearError::UnknownModel { name } if name == "svm"));
    for name in LinearModelKind::NAMES {
        assert!(err.to_string().contains(name), "{err}");
    }
    let err = LinearParams::new(LinearModelKind::Logistic).set("depth", "3").unwrap_err();
    match &err {
        LinearError::UnknownOption { model, key, valid } => {
            assert_eq!((*model, key.as_str()), ("logistic", "depth"));
            assert!(valid.contains(&"alpha") && valid.contains(&"n_bits"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("depth") && err.to_string().contains("alpha"), "{err}");
    // An option of another model is unknown to this one.
    assert!(matches!(Ridge::params().set("epsilon", "0.1"), Err(LinearError::UnknownOption { .. })));
}
