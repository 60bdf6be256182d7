//! Models saved by XGBoost itself (scripts/make_xgboost_fixture.py) predict as XGBoost did.

use fheml_models_tree::{TreeModel, predict_clear};
use ndarray::Array2;
use serde_json::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn rows(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v["rows"].clone()).unwrap();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

#[test]
fn xgboost_predictions_are_reproduced() {
    let expected: Value = serde_json::from_str(&fixture("xgb_predictions.json")).unwrap();
    for name in ["binary", "regressor", "multiclass"] {
        let model =
            TreeModel::from_xgboost_file(format!("{}/tests/fixtures/xgb_{name}.json", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let x = rows(&expected[name]);
        let margins = model.decision_function(x.view()).unwrap();
        let want_margin = flat(&expected[name]["margin"]);
        for (got, want) in margins.iter().zip(&want_margin) {
            assert!((got - want).abs() < 1e-5, "{name}: margin {got} vs XGBoost {want}");
        }
        assert_eq!(margins.len(), want_margin.len());
        let want_output = flat(&expected[name]["output"]);
        let got_output: Vec<f64> = match name {
            "binary" => model.predict_proba(x.view()).unwrap().column(1).to_vec(),
            "multiclass" => model.predict_proba(x.view()).unwrap().iter().copied().collect(),
            _ => model.predict(x.view()).unwrap().to_vec(),
        };
        assert_eq!(got_output.len(), want_output.len());
        for (got, want) in got_output.iter().zip(&want_output) {
            assert!((got - want).abs() < 1e-5, "{name}: output {got} vs XGBoost {want}");
        }
    }
}

#[test]
fn imported_xgboost_models_compile_and_agree_in_clear() {
    let expected: Value = serde_json::from_str(&fixture("xgb_predictions.json")).unwrap();
    for name in ["binary", "multiclass"] {
        let model = TreeModel::from_xgboost_json(&fixture(&format!("xgb_{name}.json"))).unwrap();
        let x = rows(&expected[name]);
        let compiled = model.compile_detailed(x.view()).unwrap();
        assert!(compiled.summary.bootstraps * 2 <= model.gemm_bootstraps());
        let q = compiled.quantized.predict_detailed(x.view()).unwrap();
        for (row, want) in x.rows().into_iter().zip(q) {
            assert_eq!(predict_clear(&compiled.circuit, &row.to_vec()).unwrap().value, want.value);
        }
    }
}
