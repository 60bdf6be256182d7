//! Neural networks through the command: a trained MLP and an imported ONNX network.

use crate::{Scratch, fheml, ok, s, write_dataset};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models-nn/tests/fixtures").join(name)
}

#[test]
fn mlp_trains_evaluates_and_runs_encrypted() {
    let dir = Scratch::new("mlp");
    let (train, test) = write_dataset(&dir);
    let model = dir.path("mlp.fheml");
    ok(&[
        "train",
        "--model",
        "mlp",
        "--data",
        s(&train),
        "--set",
        "hidden=8",
        "--set",
        "epochs=60",
        "--out",
        s(&model),
    ]);
    let inspect = ok(&["inspect", s(&model)]);
    assert!(inspect.contains("dense[8] > activation[8] > dense[2]"), "{inspect}");
    let eval: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&test),
        "--mode",
        "execute",
        "--limit",
        "2",
        "--json",
    ]))
    .unwrap();
    assert_eq!(eval["pbs_per_sample"], 8);
    assert!(eval["quantized"].as_f64().unwrap() > 0.85, "{eval}");
    assert!(eval["agree_with_clear"].as_f64().unwrap() >= 0.5, "{eval}");
    let out = fheml(&["train", "--model", "mlp", "--data", s(&train), "--set", "depth=3", "--out", s(&model)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown hyperparameter `depth`"));
}

#[test]
fn onnx_imports_with_calibration_and_refuses_unsupported_ops() {
    let dir = Scratch::new("onnx");
    // Four features and a three-class label: the fixture MLP's shape.
    let mut csv = String::from("a,b,c,d,label\n");
    for i in 0..60 {
        let x = i as f64 / 10.0;
        csv += &format!("{},{},{},{},{}\n", x.sin(), x.cos(), (x * 0.3).sin(), x / 6.0 - 0.5, i % 3);
    }
    let data = dir.path("calibration.csv");
    std::fs::write(&data, csv).unwrap();
    let model = dir.path("onnx.fheml");
    let onnx = fixture("mlp.onnx");
    ok(&["import-onnx", "--onnx", s(&onnx), "--data", s(&data), "--out", s(&model)]);
    let eval: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--model", s(&model), "--data", s(&data), "--mode", "clear", "--json"]))
            .unwrap();
    // The float network and its 8-bit quantization agree on (nearly) every row.
    let agreement = eval["quantized"].as_f64().unwrap() - eval["float"].as_f64().unwrap();
    assert!(agreement.abs() <= 0.05, "{eval}");
    let bad = fheml(&["import-onnx", "--onnx", s(&fixture("maxpool.onnx")), "--data", s(&data), "--out", s(&model)]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("MaxPool") && !err.contains("panicked"), "{err}");
    assert!(std::fs::metadata(&model).is_ok(), "the earlier model is kept");
}
