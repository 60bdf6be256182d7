//! Fuzzing of the importers on the stable toolchain: proptest-driven mutations of valid
//! ONNX-ML files (protobuf bytes) and XGBoost JSON files (text, and numbers in the JSON
//! tree). Every case must import or be refused with an error; an imported model must
//! predict a row or refuse it: never a panic. `FHEML_FUZZ_CASES` multiplies the case counts
//! (`cargo xtask fuzz`).

use std::panic::{AssertUnwindSafe, catch_unwind};

use fheml_models_tree::TreeModel;
use fheml_models_tree::onnx_ml::uses_onnx_ml_domain;
use ndarray::Array2;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// Cases in `cargo test`, times `FHEML_FUZZ_CASES` (default 1).
fn cases(base: u32) -> u32 {
    let factor = std::env::var("FHEML_FUZZ_CASES").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
    base.saturating_mul(factor.max(1))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

const ONNX_ML: &[&str] = &[
    "onnx_ml/sklearn_decision_tree_iris.onnx",
    "onnx_ml/sklearn_decision_tree_regressor_diabetes.onnx",
    "onnx_ml/lightgbm_iris.onnx",
    "onnx_ml/xgboost_iris.onnx",
];
const XGBOOST: &[&str] = &["xgb_binary.json", "xgb_regressor.json"];

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Set(Index, u8),
    /// A protobuf varint of all continuation bits: a huge length or value.
    Huge(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Edit::Set(i, v)),
        2 => any::<Index>().prop_map(Edit::Huge),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Edit::Insert(i, v)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        if bytes.is_empty() {
            return;
        }
        let at = |i: &Index, len: usize| i.index(len);
        match e {
            Edit::Set(i, v) => {
                let p = at(i, bytes.len());
                bytes[p] = *v;
            }
            Edit::Huge(i) => {
                let p = at(i, bytes.len());
                let end = (p + 9).min(bytes.len());
                bytes[p..end].fill(0xff);
                if end < bytes.len() {
                    bytes[end] = 0x01;
                }
            }
            Edit::Insert(i, v) => {
                let p = at(i, bytes.len());
                bytes.splice(p..p, v.iter().copied());
            }
            Edit::Remove(i, n) => {
                let p = at(i, bytes.len());
                let end = (p + n).min(bytes.len());
                bytes.drain(p..end);
            }
            Edit::Truncate(i) => {
                let p = at(i, bytes.len());
                bytes.truncate(p);
            }
        }
    }
}

/// What a user of an imported model does first: predict a row (zeros, or whatever fits).
fn use_model(model: &TreeModel) -> fheml_models_tree::Result<()> {
    let n = model.n_features();
    let x = Array2::from_elem((1, n.min(1 << 16)), 0.5);
    model.predict(x.view())?;
    model.decision_function(x.view())?;
    Ok(())
}

/// Runs `f`: a panic fails the case; an error must be one short line.
fn never_panics<E: std::fmt::Display>(what: &str, f: impl FnOnce() -> Result<(), E>) -> Result<(), TestCaseError> {
    let result = catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let text = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        TestCaseError::fail(format!("{what} panicked: {}", text.unwrap_or_default()))
    })?;
    if let Err(e) = result {
        let text = e.to_string();
        prop_assert!(!text.contains('\n') && text.len() <= 1000, "{what}: error not one line: {text:?}");
    }
    Ok(())
}

/// Every number of a JSON value, as paths of object keys and array indices.
fn number_paths(value: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match value {
        Value::Number(_) => out.push(path.clone()),
        Value::String(s) if s.parse::<f64>().is_ok() => out.push(path.clone()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Value::from(i));
                number_paths(item, path, out);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.push(Value::from(k.clone()));
                number_paths(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'a>(value: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        Value::Number(i) => v.get_mut(i.as_u64()? as usize),
        Value::String(k) => v.get_mut(k.as_str()),
        _ => None,
    })
}

#[test]
fn fuzz_fixtures_import() {
    for name in ONNX_ML {
        use_model(&TreeModel::from_onnx_ml_bytes(&fixture(name)).unwrap()).unwrap();
    }
    for name in XGBOOST {
        let text = String::from_utf8(fixture(name)).unwrap();
        use_model(&TreeModel::from_xgboost_json(&text).unwrap()).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(800)))]

    /// An ONNX-ML file: the domain sniff the CLI does, the import, a prediction.
    #[test]
    fn fuzz_mutated_onnx_ml_files_import_or_are_refused(edits in edits(), which in any::<Index>()) {
        let mut bytes = fixture(ONNX_ML[which.index(ONNX_ML.len())]);
        apply(&mut bytes, &edits);
        never_panics("onnx-ml", || {
            uses_onnx_ml_domain(&bytes)?;
            use_model(&TreeModel::from_onnx_ml_bytes(&bytes)?)
        })?;
    }

    /// An XGBoost JSON file edited as bytes (most edits break the JSON syntax).
    #[test]
    fn fuzz_mutated_xgboost_text_imports_or_is_refused(edits in edits(), which in any::<Index>()) {
        let mut bytes = fixture(XGBOOST[which.index(XGBOOST.len())]);
        apply(&mut bytes, &edits);
        let text = String::from_utf8_lossy(&bytes);
        never_panics("xgboost text", || use_model(&TreeModel::from_xgboost_json(&text)?))?;
    }

    /// An XGBoost JSON file with valid syntax and numbers changed: child indices, split
    /// features, counts, thresholds, parameters.
    #[test]
    fn fuzz_mutated_xgboost_numbers_import_or_are_refused(
        which in any::<Index>(),
        changes in prop::collection::vec((any::<Index>(), prop_oneof![
            Just(-1.0), Just(0.0), Just(1.0), Just(2.0), Just(1e9), Just(-1e18), Just(f64::MAX), Just(0.5),
            (-10i64..10_000).prop_map(|v| v as f64),
        ], any::<bool>()), 1..4),
    ) {
        let text = String::from_utf8(fixture(XGBOOST[which.index(XGBOOST.len())])).unwrap();
        let mut value: Value = serde_json::from_str(&text).unwrap();
        let mut paths = Vec::new();
        number_paths(&value, &mut Vec::new(), &mut paths);
        for (at, number, as_string) in &changes {
            let path = &paths[at.index(paths.len())];
            if let Some(slot) = at_path(&mut value, path) {
                *slot = if *as_string || slot.is_string() {
                    Value::from(number.to_string())
                } else {
                    serde_json::Number::from_f64(*number).map_or(Value::Null, Value::Number)
                };
            }
        }
        let text = value.to_string();
        never_panics("xgboost numbers", || use_model(&TreeModel::from_xgboost_json(&text)?))?;
    }
}
