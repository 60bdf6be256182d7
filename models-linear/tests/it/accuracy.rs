//! Every model: quantized (Clear) predictions keep the float model's accuracy or R².

use fheml_models_linear::{
    ElasticNet, GammaRegressor, Lasso, LinearModel, LinearRegression, LinearSvc, LinearSvr, LogisticRegression, Loss,
    PoissonRegressor, Result, Ridge, SgdClassifier, SgdRegressor, TweedieRegressor, accuracy, r2,
};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::{Split, breast_cancer, diabetes, iris, predict_clear};

type Fit = fn(ArrayView2<f64>, ArrayView1<f64>) -> Result<LinearModel>;

fn classifiers() -> Vec<(&'static str, Fit)> {
    vec![
        ("logistic", |x, y| LogisticRegression::params().fit(x, y).map(Into::into)),
        ("linear-svc", |x, y| LinearSvc::params().fit(x, y).map(Into::into)),
        ("linear-svc (hinge)", |x, y| LinearSvc::params().loss(Loss::Hinge).fit(x, y).map(Into::into)),
        ("sgd-classifier", |x, y| SgdClassifier::params().fit(x, y).map(Into::into)),
        ("sgd-classifier (log_loss)", |x, y| SgdClassifier::params().loss(Loss::LogLoss).fit(x, y).map(Into::into)),
    ]
}

fn regressors() -> Vec<(&'static str, Fit)> {
    vec![
        ("linear", |x, y| LinearRegression::params().fit(x, y).map(Into::into)),
        ("ridge", |x, y| Ridge::params().fit(x, y).map(Into::into)),
        ("lasso", |x, y| Lasso::params().fit(x, y).map(Into::into)),
        ("elasticnet", |x, y| ElasticNet::params().fit(x, y).map(Into::into)),
        ("linear-svr", |x, y| LinearSvr::params().fit(x, y).map(Into::into)),
        ("sgd-regressor", |x, y| SgdRegressor::params().fit(x, y).map(Into::into)),
        ("poisson", |x, y| PoissonRegressor::params().fit(x, y).map(Into::into)),
        ("gamma", |x, y| GammaRegressor::params().fit(x, y).map(Into::into)),
        ("tweedie", |x, y| TweedieRegressor::params().fit(x, y).map(Into::into)),
    ]
}

/// Float and quantized (Clear) scores of one model on one split.
fn scores(fit: Fit, data: &Split) -> (f64, f64) {
    let model = fit(data.x_train.view(), data.y_train.view()).unwrap();
    let float = model.predict(data.x_test.view()).unwrap();
    let circuit = model.compile(data.x_train.view()).unwrap();
    assert_eq!(circuit.circuit.cost().bootstraps, 0, "linear circuits are leveled");
    let quantized = predict_clear(&circuit, &data.x_test);
    let metric = if model.kind().is_classifier() { accuracy } else { r2 };
    let truth = data.y_test.to_vec();
    (metric(&float.to_vec(), &truth), metric(&quantized.to_vec(), &truth))
}

#[test]
fn classifiers_keep_their_accuracy_when_quantized() {
    for (dataset, data) in [("breast_cancer", breast_cancer()), ("iris", iris())] {
        for (name, fit) in classifiers() {
            let (float, quantized) = scores(fit, &data);
            eprintln!("{dataset:14} {name:26} accuracy float {float:.4} quantized {quantized:.4}");
            assert!(float > 0.85, "{name} on {dataset}: float accuracy {float}");
            assert!((float - quantized).abs() <= 0.01, "{name} on {dataset}: float {float}, quantized {quantized}");
        }
    }
}

#[test]
fn regressors_keep_their_r2_when_quantized() {
    let data = diabetes();
    for (name, fit) in regressors() {
        let (float, quantized) = scores(fit, &data);
        eprintln!("diabetes       {name:26} R2 float {float:.4} quantized {quantized:.4}");
        assert!(float > 0.3, "{name}: float R2 {float}");
        assert!((float - quantized).abs() <= 0.01, "{name}: float {float}, quantized {quantized}");
    }
}

#[test]
fn probabilities_match_the_predictions() {
    let data = iris();
    let model = LogisticRegression::params().fit(data.x_train.view(), data.y_train.view()).unwrap();
    let proba = model.predict_proba(data.x_test.view()).unwrap();
    let labels = model.predict(data.x_test.view()).unwrap();
    assert_eq!(proba.dim(), (data.x_test.nrows(), 3));
    for (row, label) in proba.rows().into_iter().zip(&labels) {
        assert!((row.sum() - 1.0).abs() < 1e-12);
        let best = (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        assert_eq!(model.classes()[best], *label);
    }
    // The client's decoded probabilities track the float ones.
    let circuit = model.compile(data.x_train.view()).unwrap();
    let clear = circuit.predict_clear(&data.x_test.row(0).to_vec()).unwrap().probabilities.unwrap();
    for (c, f) in clear.iter().zip(proba.row(0)) {
        assert!((c - f).abs() < 0.02, "{clear:?} vs {proba:?}");
    }
}

fn read_csv(path: &std::path::Path) -> Option<(Array2<f64>, Array1<f64>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let columns = rows.first()?.len();
    let x = Array2::from_shape_fn((rows.len(), columns - 1), |(i, j)| rows[i][j]);
    let y = rows.iter().map(|r| r[columns - 1]).collect();
    Some((x, y))
}

/// The table behind the crate's report, on scikit-learn's 80/20 splits (the ones Concrete
/// ML's anchors use). Needs the CSV files: `FHEML_DATASETS=../shared/datasets cargo test
/// -p fheml-models-linear -- --ignored --nocapture`.
#[test]
#[ignore = "needs the shared CSV datasets"]
fn accuracy_table_on_the_shared_csv_splits() {
    let dir = std::path::PathBuf::from(std::env::var("FHEML_DATASETS").unwrap_or("../../shared/datasets".into()));
    for dataset in ["breast_cancer", "iris", "diabetes"] {
        let (Some((x_train, y_train)), Some((x_test, y_test))) =
            (read_csv(&dir.join(format!("{dataset}_train.csv"))), read_csv(&dir.join(format!("{dataset}_test.csv"))))
        else {
            panic!("no CSV files under {}", dir.display());
        };
        let data = Split { x_train, y_train, x_test, y_test };
        let models = if dataset == "diabetes" { regressors() } else { classifiers() };
        for (name, fit) in models {
            let (float, quantized) = scores(fit, &data);
            println!("| {dataset} | {name} | {float:.4} | {quantized:.4} |");
        }
    }
}
