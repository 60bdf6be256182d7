//! Tree ensembles converted to ONNX-ML by the libraries people use (skl2onnx for
//! scikit-learn; onnxmltools for LightGBM and XGBoost; scripts/make_onnx_ml_fixtures.sh)
//! import, predict as their source library did, and keep its predictions once quantized.

use fheml_circuits::PostProcessing;
use fheml_fhe_runtime::{FheConfig, FheModel, Mode};
use fheml_models_tree::{MAX_INPUT_BITS, TreeError, TreeModel, TreeModelKind, TreeNode, predict_clear};
use ndarray::{Array2, s};
use serde_json::Value;

use crate::common::{Data, Split, split};

/// Every tree-ensemble fixture, with the model kind it must import as.
const FIXTURES: &[(&str, TreeModelKind)] = &[
    ("sklearn_decision_tree_iris", TreeModelKind::Tree),
    ("sklearn_decision_tree_iris_zipmap", TreeModelKind::Tree),
    ("sklearn_decision_tree_breast_cancer", TreeModelKind::Tree),
    ("sklearn_decision_tree_regressor_diabetes", TreeModelKind::Tree),
    ("sklearn_random_forest_breast_cancer", TreeModelKind::Forest),
    ("sklearn_random_forest_iris_zipmap", TreeModelKind::Forest),
    ("sklearn_random_forest_regressor_diabetes", TreeModelKind::Forest),
    ("sklearn_extra_trees_iris", TreeModelKind::Forest),
    ("sklearn_extra_trees_regressor_diabetes", TreeModelKind::Forest),
    ("sklearn_gradient_boosting_breast_cancer", TreeModelKind::Gbdt),
    ("sklearn_gradient_boosting_iris", TreeModelKind::Gbdt),
    ("sklearn_gradient_boosting_regressor_diabetes", TreeModelKind::Gbdt),
    ("sklearn_hist_gradient_boosting_breast_cancer", TreeModelKind::Gbdt),
    ("sklearn_hist_gradient_boosting_iris", TreeModelKind::Gbdt),
    ("sklearn_hist_gradient_boosting_regressor_diabetes", TreeModelKind::Gbdt),
    ("lightgbm_breast_cancer", TreeModelKind::Gbdt),
    ("lightgbm_iris", TreeModelKind::Gbdt),
    ("lightgbm_regressor_diabetes", TreeModelKind::Gbdt),
    ("xgboost_breast_cancer", TreeModelKind::Gbdt),
    ("xgboost_iris", TreeModelKind::Gbdt),
    ("xgboost_regressor_diabetes", TreeModelKind::Gbdt),
];

fn path(name: &str) -> String {
    format!("{}/tests/fixtures/onnx_ml/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path(name)).unwrap()).unwrap()
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The split the fixtures were trained on: the embedded dataset, every fifth row a test row
/// (`fheml dataset` writes the same split for the fixture script).
fn data(name: &str) -> &'static Split {
    split(match name {
        "breast_cancer" => Data::BreastCancer,
        "iris" => Data::Iris,
        "diabetes" => Data::Diabetes,
        other => panic!("unknown dataset {other}"),
    })
}

struct Fixture {
    model: TreeModel,
    data: &'static Split,
    expected: Value,
}

impl Fixture {
    fn load(name: &'static str) -> Self {
        let model = TreeModel::from_onnx_ml_file(path(&format!("{name}.onnx")))
            .unwrap_or_else(|e| panic!("{name} does not import: {e}"));
        let expected = json(&format!("{name}.json"));
        let data = data(expected["dataset"].as_str().unwrap());
        Fixture { model, data, expected }
    }

    fn classification(&self) -> bool {
        self.expected["task"] == "classification"
    }

    /// The source library's predictions: labels or values.
    fn source(&self) -> Vec<f64> {
        floats(&self.expected[if self.classification() { "labels" } else { "values" }])
    }

    /// Class probabilities as the source library's `predict_proba` gives them.
    fn probabilities(&self) -> Vec<Vec<f64>> {
        let x = self.data.x_test.view();
        if self.model.ensemble().post == PostProcessing::Sign {
            // The ONNX binary case without a link: the score is P(class 1) - 1/2.
            let scores = self.model.decision_function(x).unwrap();
            return scores.column(0).iter().map(|s| vec![0.5 - s, s + 0.5]).collect();
        }
        self.model.predict_proba(x).unwrap().rows().into_iter().map(|r| r.to_vec()).collect()
    }
}

use fheml_quant::metrics::{accuracy, r2};

/// Before quantization, the imported model is the ONNX model exactly: onnxruntime's label on
/// every test row, and the source library's label and class probabilities wherever the ONNX
/// file itself agrees with the library. The converters store thresholds as float32 and
/// LightGBM compares in float64: on breast_cancer test row 1, LightGBM's threshold
/// 103.39999771118165 on feature 22 rounds to the row's value 103.4000015258789, so its
/// `x <= t` turns true in the ONNX file (onnxruntime agrees with fheml there, not with
/// LightGBM, whose probability was 0.505). Regression values agree to float32's relative precision (the leaf
/// weights are stored in float32, 2^-24 relative each; 1e-6 leaves room for summing a few
/// tens of them).
#[test]
fn every_fixture_imports_and_predicts_as_its_library() {
    let mut converter_differs = Vec::new();
    for &(name, kind) in FIXTURES {
        let f = Fixture::load(name);
        assert_eq!(f.model.params().get().kind, kind, "{name}");
        let predicted = f.model.predict(f.data.x_test.view()).unwrap().to_vec();
        let source = f.source();
        assert_eq!(predicted.len(), source.len(), "{name}");
        if f.classification() {
            let runtime = floats(&f.expected["onnxruntime_labels"]);
            assert_eq!(predicted, runtime, "{name}: labels differ from onnxruntime's");
            let want = matrix(&f.expected["probabilities"]);
            for (i, (got, want)) in f.probabilities().iter().zip(want.rows()).enumerate() {
                if runtime[i] != source[i] {
                    converter_differs.push((name, i));
                    continue;
                }
                assert_eq!(predicted[i], source[i], "{name} row {i}");
                for (g, w) in got.iter().zip(want) {
                    assert!((g - w).abs() <= 1e-6, "{name} row {i}: probabilities {got:?}, source {want}");
                }
            }
        } else {
            for (i, (got, want)) in predicted.iter().zip(&source).enumerate() {
                assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{name} row {i}: {got} vs source {want}");
            }
        }
    }
    assert_eq!(converter_differs, [("lightgbm_breast_cancer", 1)], "rows where the ONNX file is not the library");
}

/// Quantized as fheml quantizes trees by default (6-bit inputs and leaves, Concrete ML's
/// default; calibrated on the train split), the compiled circuit's Clear predictions (the
/// exact integer evaluation that encryption reproduces) stay within 1 point of the source
/// library's accuracy, or 0.01 of its R², on the test split. Two effects separate them,
/// both from quantization:
///
/// - a test input within half a quantization step of a threshold may take the other branch
///   (labels agree on at least 97% of the rows);
/// - each leaf value is rounded to the 6-bit leaf grid: the score differs from the sum of
///   the same leaves' float values by at most half a leaf step per tree (times the
///   ensemble's scale), which is checked exactly.
#[test]
fn quantized_fixtures_stay_within_a_point_of_their_library() {
    for &(name, _) in FIXTURES {
        let f = Fixture::load(name);
        assert_eq!(f.model.compile_options().n_bits, 6);
        let compiled = f.model.compile_detailed(f.data.x_train.view()).unwrap();
        let q = &compiled.quantized;
        let e = f.model.ensemble();
        let x = f.data.x_test.view();
        let integer = q.predict_detailed(x).unwrap();
        let rows = q.quantize_rows(x).unwrap();
        let half_step = e.scale.abs() * q.leaves.scale / 2.0;
        let mut clear = Vec::new();
        for ((row, qrow), want) in x.rows().into_iter().zip(&rows).zip(&integer) {
            let got = predict_clear(&compiled.circuit, &row.to_vec()).unwrap();
            // The circuit is the integer model (decoded in another order of operations).
            assert!((got.value - want.value).abs() <= 1e-9 * want.value.abs().max(1.0), "{name}");
            // Leaf rounding: against the float values of the leaves the integer model reached.
            let mut same_leaves = e.base_score.clone();
            let mut trees_per_output = vec![0usize; e.n_outputs];
            for (t, tree) in e.trees.iter().enumerate() {
                if let TreeNode::Leaf { output, value } = tree.nodes[q.leaf_index(t, qrow).unwrap()] {
                    same_leaves[output] += e.scale * value;
                    trees_per_output[output] += 1;
                }
            }
            for ((s, float), n) in want.scores.iter().zip(&same_leaves).zip(&trees_per_output) {
                let bound = half_step * *n as f64 + 1e-9 * float.abs().max(1.0);
                assert!((s - float).abs() <= bound, "{name}: score {s}, float leaves {float}, bound {bound}");
            }
            clear.push(got.value);
        }
        let source = f.source();
        let truth = f.data.y_test.as_slice().unwrap();
        if f.classification() {
            let agree = accuracy(&clear, &source);
            let (quantized, float) = (accuracy(&clear, truth), accuracy(&source, truth));
            println!("{name:50} labels agree {agree:.4}, accuracy {quantized:.4} (source {float:.4})");
            assert!(agree >= 0.97, "{name}: the quantized model agrees with the source on {agree}");
            assert!(quantized >= float - 0.01, "{name}: accuracy {quantized} vs source {float}");
        } else {
            let (quantized, float) = (r2(&clear, truth), r2(&source, truth));
            println!("{name:50} R² {quantized:.4} (source {float:.4})");
            assert!(quantized >= float - 0.01, "{name}: R² {quantized} vs source {float}");
        }
    }
}

/// At the widest inputs fheml allows (10 bits), the integer model (what Clear computes) gives
/// the source library's label on every test row of every classifier fixture.
#[test]
fn ten_bit_inputs_keep_every_label() {
    for &(name, _) in FIXTURES {
        let f = Fixture::load(name);
        if !f.classification() {
            continue;
        }
        let model = f.model.clone().with_options(MAX_INPUT_BITS, None, f.model.compile_options().sum_in_fhe).unwrap();
        let labels: Vec<f64> = model
            .quantize(f.data.x_train.view())
            .unwrap()
            .predict_detailed(f.data.x_test.view())
            .unwrap()
            .iter()
            .map(|p| p.value)
            .collect();
        assert_eq!(labels, f.source(), "{name}");
    }
}

/// Real TFHE on an imported scikit-learn tree: Execute equals Clear.
#[test]
fn imported_tree_runs_encrypted() {
    let f = Fixture::load("sklearn_decision_tree_iris");
    let model = f.model.clone().with_options(4, None, true).unwrap();
    let fhe = FheModel::compile(model.compile(f.data.x_train.view()).unwrap(), &FheConfig::default()).unwrap();
    let rows = f.data.x_test.slice(s![..2, ..]).to_owned();
    let clear = fhe.run_integers(rows.view(), Mode::Clear, 0).unwrap();
    let execute = fhe.run_integers(rows.view(), Mode::Execute, 0).unwrap();
    assert_eq!(clear, execute);
    let labels: Vec<f64> = fhe.decode(&execute).unwrap().iter().map(|p| p.value).collect();
    assert_eq!(labels, f.source()[..2]);
}

#[test]
fn linear_models_and_broken_files_are_refused_by_name() {
    let err = TreeModel::from_onnx_ml_file(path("sklearn_logistic_regression_iris.onnx")).unwrap_err();
    assert!(matches!(err, TreeError::OnnxMlUnsupported(_)) && err.to_string().contains("LinearClassifier"), "{err}");
    let bytes = std::fs::read(path("sklearn_random_forest_iris_zipmap.onnx")).unwrap();
    for cut in [0, 10, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = TreeModel::from_onnx_ml_bytes(&bytes[..cut]).unwrap_err();
        assert!(matches!(err, TreeError::OnnxMlFormat(_) | TreeError::OnnxMlUnsupported(_)), "cut {cut}: {err}");
    }
    let err = TreeModel::from_onnx_ml_bytes(b"not an onnx file at all").unwrap_err();
    assert!(matches!(err, TreeError::OnnxMlFormat(_)), "{err}");
}
