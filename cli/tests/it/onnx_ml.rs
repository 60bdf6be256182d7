//! Tree ensembles in ONNX-ML (skl2onnx, onnxmltools) through `fheml import-onnx`.

use std::path::PathBuf;

use crate::{Scratch, fails, json, ok, s, write_iris};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models-tree/tests/fixtures/onnx_ml").join(name)
}

#[test]
fn scikit_learn_tree_imports_and_runs_encrypted() {
    let dir = Scratch::new("onnx-ml");
    let (train, test) = write_iris(&dir);
    let model = dir.path("tree.fheml");
    let out =
        ok(&["import-onnx", s(&fixture("sklearn_decision_tree_iris.onnx")), "--data", s(&train), "--out", s(&model)]);
    assert!(out.contains("tree, 3 single-output trees") && out.contains("saved"), "{out}");

    // The float model is scikit-learn's: its accuracy on the test split is the fixture's.
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("sklearn_decision_tree_iris.json")).unwrap()).unwrap();
    let labels: Vec<f64> = serde_json::from_value(expected["labels"].clone()).unwrap();
    let text = std::fs::read_to_string(&test).unwrap();
    let truth: Vec<f64> = text.lines().skip(1).map(|l| l.rsplit(',').next().unwrap().parse().unwrap()).collect();
    let source = labels.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64;
    let clear = json(&["eval", "--model", s(&model), "--data", s(&test), "--mode", "clear", "--json"]);
    assert_eq!(clear["metric"], "accuracy");
    assert!((clear["float"].as_f64().unwrap() - source).abs() < 1e-12, "{clear} vs scikit-learn {source}");
    assert!(clear["quantized"].as_f64().unwrap() >= source - 1.0 / 30.0, "{clear}");

    // Real TFHE on two rows gives the Clear labels.
    let execute =
        json(&["eval", "--model", s(&model), "--data", s(&test), "--mode", "execute", "--limit", "2", "--json"]);
    assert_eq!(execute["rows"], 2);
    assert_eq!(execute["agree_with_clear"], 1.0, "{execute}");
}

#[test]
fn onnx_ml_files_are_refused_with_their_reason() {
    let dir = Scratch::new("onnx-ml-refused");
    let (train, _) = write_iris(&dir);
    let refused = dir.path("refused.fheml");
    let import = |file: &PathBuf, extra: &[&str], needle: &str| {
        let mut args = vec!["import-onnx", s(file), "--data", s(&train), "--out", s(&refused)];
        args.extend_from_slice(extra);
        fails(&args, needle);
        assert!(!refused.exists(), "no model file after `{needle}`");
    };
    let forest = fixture("sklearn_random_forest_iris_zipmap.onnx");
    import(&fixture("sklearn_logistic_regression_iris.onnx"), &[], "LinearClassifier");
    import(&fixture("xgboost_breast_cancer.onnx"), &[], "reads 30 features");
    import(&forest, &["--task", "regression"], "does classification");
    import(&forest, &["--set", "w_bits=3"], "`w_bits`");
    import(&forest, &["--n-bits", "0"], "n_bits");
    // Text labels name the classes 0..k in sorted order: three for a three-class model.
    let relabel = |names: [&str; 3], file: &str| {
        let text = std::fs::read_to_string(&train).unwrap();
        let mut out = String::new();
        for (i, line) in text.lines().enumerate() {
            let (features, target) = line.rsplit_once(',').unwrap();
            let label = if i == 0 { target } else { names[target.parse::<f64>().unwrap() as usize] };
            out += &format!("{features},{label}\n");
        }
        let path = dir.path(file);
        std::fs::write(&path, out).unwrap();
        path
    };
    let named = relabel(["setosa", "versicolor", "virginica"], "named.csv");
    let model = dir.path("named.fheml");
    ok(&["import-onnx", s(&forest), "--data", s(&named), "--out", s(&model)]);
    let eval = json(&["eval", "--model", s(&model), "--data", s(&named), "--mode", "clear", "--json"]);
    assert!(eval["quantized"].as_f64().unwrap() > 0.9, "{eval}");
    let two = relabel(["setosa", "other", "other"], "two.csv");
    fails(&["import-onnx", s(&forest), "--data", s(&two), "--out", s(&refused)], "2 text labels");
    let truncated = dir.path("truncated.onnx");
    let bytes = std::fs::read(&forest).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    import(&truncated, &[], "truncated.onnx");
}
