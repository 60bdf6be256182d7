//! Importers share one vocabulary: the model file positional, `--data` for calibration,
//! `--target`/`--no-target`, `--n-bits` shown in the summary and in `inspect`.

use std::path::PathBuf;

use crate::{Scratch, fails, ok, s};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models-tree/tests/fixtures").join(name)
}

/// `rows` calibration rows of the fixtures' 6 features, `columns` in that order, plus a target.
fn calibration(dir: &Scratch, name: &str, columns: &[usize], target: bool) -> PathBuf {
    let mut header: Vec<String> = columns.iter().map(|c| format!("f{c}")).collect();
    if target {
        header.push("target".into());
    }
    let mut text = header.join(",") + "\n";
    for r in 0..60 {
        let mut cells: Vec<String> =
            columns.iter().map(|c| format!("{:.3}", ((r * 7 + c * 13) % 41) as f64 / 10.0 - 2.0)).collect();
        if target {
            cells.push((r % 2).to_string());
        }
        text += &(cells.join(",") + "\n");
    }
    let path = dir.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn xgboost_and_onnx_importers_share_flags() {
    let dir = Scratch::new("import");
    let json = fixture("xgb_binary.json");
    let in_order = calibration(&dir, "calib.csv", &[0, 1, 2, 3, 4, 5], true);
    let model = dir.path("xgb.fheml");
    let summary = ok(&["import-xgboost", s(&json), "--data", s(&in_order), "--n-bits", "5", "--out", s(&model)]);
    assert!(summary.contains("n_bits 5") && summary.contains("p_error 2^-40.0"), "{summary}");
    assert!(ok(&["inspect", s(&model)]).contains("input bits        5 (n_bits)"));
    let baseline = ok(&["predict", "--model", s(&model), "--data", s(&in_order)]);
    // The older spelling still works.
    let old = dir.path("old.fheml");
    ok(&["import-xgboost", "--json", s(&json), "--calibration", s(&in_order), "--n-bits", "5", "--out", s(&old)]);
    assert_eq!(ok(&["predict", "--model", s(&old), "--data", s(&in_order)]), baseline);

    // No target column: refused unless --no-target; a column too few: refused.
    let features_only = calibration(&dir, "features.csv", &[0, 1, 2, 3, 4, 5], false);
    let refused = dir.path("refused.fheml");
    fails(&["import-xgboost", s(&json), "--data", s(&features_only), "--out", s(&refused)], "--no-target");
    ok(&["import-xgboost", s(&json), "--data", s(&features_only), "--no-target", "--out", s(&refused)]);
    let five = calibration(&dir, "five.csv", &[0, 1, 2, 3, 4], true);
    let narrow = dir.path("narrow.fheml");
    fails(&["import-xgboost", s(&json), "--data", s(&five), "--out", s(&narrow)], "6 features");
    assert!(!narrow.exists());

    // A model that names its features takes the calibration columns by those names.
    let mut named: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    named["learner"]["feature_names"] = serde_json::json!(["f0", "f1", "f2", "f3", "f4", "f5"]);
    let named_json = dir.path("named.json");
    std::fs::write(&named_json, named.to_string()).unwrap();
    let shuffled = calibration(&dir, "shuffled.csv", &[5, 3, 1, 0, 2, 4], true);
    let by_name = dir.path("by-name.fheml");
    ok(&["import-xgboost", s(&named_json), "--data", s(&shuffled), "--n-bits", "5", "--out", s(&by_name)]);
    assert_eq!(ok(&["predict", "--model", s(&by_name), "--data", s(&in_order)]), baseline);
    let renamed = dir.path("renamed.csv");
    std::fs::write(&renamed, std::fs::read_to_string(&shuffled).unwrap().replacen("f3", "g3", 1)).unwrap();
    fails(&["import-xgboost", s(&named_json), "--data", s(&renamed), "--out", s(&narrow)], "`f3`");
}
