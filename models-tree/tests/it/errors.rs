//! Typed errors for bad input.

use fheml_models_tree::{
    DecisionTreeClassifier, GradientBoostingRegressor, TreeError, TreeModel, TreeParams, predict_clear,
};
use fheml_quant::DataError;
use ndarray::{Array1, Array2, array};

fn toy() -> (Array2<f64>, Array1<f64>) {
    let x = Array2::from_shape_fn((30, 2), |(i, j)| (i * (j + 1)) as f64 % 7.0);
    let y = x.column(0).mapv(|v| f64::from(v > 3.0));
    (x, y)
}

#[test]
fn nan_is_refused_everywhere() {
    let (mut x, y) = toy();
    let model = DecisionTreeClassifier::params().check().unwrap().fit(x.view(), y.view()).unwrap();
    let circuit = model.compile(x.view()).unwrap();
    x[[3, 1]] = f64::NAN;
    let fit = DecisionTreeClassifier::params().check().unwrap().fit(x.view(), y.view());
    assert!(matches!(fit, Err(TreeError::Input(DataError::NonFiniteFeature { row: 3, column: 1, .. }))), "{fit:?}");
    assert!(matches!(
        model.predict(x.view()),
        Err(TreeError::Input(DataError::NonFiniteFeature { row: 3, column: 1, .. }))
    ));
    assert!(matches!(model.compile(x.view()), Err(TreeError::Input(DataError::NonFiniteFeature { .. }))));
    let mut y_bad = y.clone();
    y_bad[5] = f64::INFINITY;
    let (x, _) = toy();
    assert!(matches!(
        DecisionTreeClassifier::params().check().unwrap().fit(x.view(), y_bad.view()),
        Err(TreeError::Input(DataError::NonFiniteTarget { row: 5, .. }))
    ));
    assert!(predict_clear(&circuit, &[f64::NAN, 1.0]).is_err());
}

#[test]
fn wrong_feature_counts_are_refused() {
    let (x, y) = toy();
    let model = DecisionTreeClassifier::params().check().unwrap().fit(x.view(), y.view()).unwrap();
    let three = Array2::<f64>::zeros((2, 3));
    assert!(matches!(
        model.predict(three.view()),
        Err(TreeError::Input(DataError::FeatureCount { expected: 2, got: 3 }))
    ));
    assert!(matches!(
        model.compile(three.view()),
        Err(TreeError::Input(DataError::FeatureCount { expected: 2, got: 3 }))
    ));
    let circuit = model.compile(x.view()).unwrap();
    assert!(predict_clear(&circuit, &[1.0, 2.0, 3.0]).is_err());
    let short = array![1.0, 0.0];
    assert!(matches!(
        DecisionTreeClassifier::params().check().unwrap().fit(x.view(), short.view()),
        Err(TreeError::Input(DataError::LengthMismatch { rows: 30, targets: 2 }))
    ));
    let one_class = Array1::<f64>::zeros(30);
    assert!(matches!(
        DecisionTreeClassifier::params().check().unwrap().fit(x.view(), one_class.view()),
        Err(TreeError::Data(_))
    ));
}

#[test]
fn bad_hyperparameters_are_typed() {
    let err = GradientBoostingRegressor::params().learning_rate(0.0).check().unwrap_err();
    assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "learning_rate"));
    let err = GradientBoostingRegressor::params().n_estimators(0).check().unwrap_err();
    assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "n_estimators"));
    let err = DecisionTreeClassifier::params().n_bits(12).check().unwrap_err();
    assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "n_bits"));
    let err = DecisionTreeClassifier::params().leaf_bits(1).check().unwrap_err();
    assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "leaf_bits"));
    let err = TreeParams::from_options("gbdt", "classification", [("depth", "3")]).unwrap_err();
    assert!(matches!(err, TreeError::UnknownParameter { ref key, .. } if key == "depth"));
    assert!(err.to_string().contains("max_depth"), "the message lists the valid names: {err}");
    assert!(matches!(TreeParams::from_options("svm", "classification", []), Err(TreeError::UnknownModel(_))));
    assert!(matches!(TreeParams::from_options("tree", "clustering", []), Err(TreeError::UnknownTask(_))));
}

#[test]
fn malformed_xgboost_files_are_typed() {
    let good = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/xgb_binary.json")).unwrap();
    let truncated = &good[..good.len() / 2];
    assert!(matches!(TreeModel::from_xgboost_json(truncated), Err(TreeError::XgboostFormat { .. })));
    let no_trees = good.replace("\"trees\"", "\"forest\"");
    let err = TreeModel::from_xgboost_json(&no_trees).unwrap_err();
    assert!(matches!(err, TreeError::XgboostFormat { ref path, .. } if path.contains("gradient_booster")), "{err}");
    let bad_child = good.replacen("\"left_children\":[1,", "\"left_children\":[99,", 1);
    assert_ne!(bad_child, good);
    assert!(matches!(TreeModel::from_xgboost_json(&bad_child), Err(TreeError::XgboostFormat { .. })));
    let ranking = good.replace("binary:logistic", "rank:ndcg");
    assert!(matches!(TreeModel::from_xgboost_json(&ranking), Err(TreeError::XgboostUnsupported(_))));
    assert!(matches!(TreeModel::from_xgboost_file("/nonexistent/model.json"), Err(TreeError::Io { .. })));
}
