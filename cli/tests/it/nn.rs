//! Neural networks through the command: a trained MLP and an imported ONNX network.

use std::path::PathBuf;

use crate::{Scratch, fails, fheml, json, ok, s, write_dataset, write_iris};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models-nn/tests/fixtures").join(name)
}

#[test]
fn mlp_on_iris_trains_evaluates_and_runs_encrypted() {
    let dir = Scratch::new("mlp-iris");
    let (train, test) = write_iris(&dir);
    let model = dir.path("mlp.fheml");
    ok(&["train", "--model", "mlp", "--data", s(&train), "--set", "hidden=8", "--n-bits", "3", "--out", s(&model)]);
    let inspect = ok(&["inspect", s(&model)]);
    for needle in ["dense[8] > relu[8] > dense[3]", "hidden 8,", "inputs 3 bits, weights 3 bits", "quantization-aware"]
    {
        assert!(inspect.contains(needle), "`{needle}` missing from\n{inspect}");
    }

    let clear = json(&["eval", "--model", s(&model), "--data", s(&test), "--mode", "clear", "--json"]);
    assert_eq!(clear["metric"], "accuracy");
    assert!(clear["float"].as_f64().unwrap() > 0.8, "{clear}");
    assert!(clear["quantized"].as_f64().unwrap() > 0.8, "{clear}");
    assert_eq!(clear["pbs_per_sample"], 8, "one lookup per hidden neuron");

    // Real TFHE on two rows gives the clear integer model's labels. (Approximate rounding may
    // move an activation one step; Simulate on the whole test set shows no label flip.)
    let execute =
        json(&["eval", "--model", s(&model), "--data", s(&test), "--mode", "execute", "--limit", "2", "--json"]);
    assert_eq!(execute["rows"], 2);
    assert_eq!(execute["agree_with_clear"], 1.0, "{execute}");

    // The file-based deployment works on an MLP model file too.
    let keys = dir.path("keys");
    ok(&["keygen", "--model", s(&model), "--out-dir", s(&keys)]);
    let text = std::fs::read_to_string(&test).unwrap();
    let rows: Vec<&str> = text.lines().take(3).collect();
    let two = dir.path("two.csv");
    std::fs::write(&two, rows.join("\n") + "\n").unwrap();
    let (query, answer) = (dir.path("query.bin"), dir.path("answer.bin"));
    let client_key = keys.join("client.key");
    ok(&["encrypt", "--model", s(&model), "--key", s(&client_key), "--data", s(&two), "--out", s(&query)]);
    ok(&["run", "--model", s(&model), "--eval-key", s(&keys.join("eval.key")), "--in", s(&query), "--out", s(&answer)]);
    let decrypted = ok(&["decrypt", "--model", s(&model), "--key", s(&client_key), "--in", s(&answer)]);
    let labels: Vec<f64> = decrypted.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    let truth: Vec<f64> = rows[1..].iter().map(|l| l.rsplit(',').next().unwrap().parse().unwrap()).collect();
    // The first two test rows are setosa, far from the other classes.
    assert_eq!(labels, truth);
}

#[test]
fn mlp_options_are_checked_by_name() {
    let dir = Scratch::new("mlp-options");
    let (train, _) = write_dataset(&dir);
    let model = dir.path("mlp.fheml");
    fails(&["train", "--model", "mlp", "--data", s(&train), "--set", "depth=3", "--out", s(&model)], "`depth`");
    fails(&["train", "--model", "mlp", "--data", s(&train), "--set", "hidden=8,x", "--out", s(&model)], "hidden");
    fails(&["train", "--model", "mlp", "--data", s(&train), "--n-bits", "0", "--out", s(&model)], "n_bits");
    fails(&["train", "--model", "mlp", "--data", s(&train), "--task", "ranking", "--out", s(&model)], "ranking");
    assert!(!model.exists(), "no model file after a refused option");
    // Concrete ML's spelling of the hidden sizes, and a small regression network.
    ok(&[
        "train",
        "--model",
        "mlp",
        "--data",
        s(&train),
        "--task",
        "regression",
        "--set",
        "hidden_layer_sizes=4",
        "--set",
        "epochs=5",
        "--out",
        s(&model),
    ]);
    let eval = json(&["eval", "--model", s(&model), "--data", s(&train), "--json"]);
    assert_eq!(eval["metric"], "r2");
    assert!(ok(&["inspect", s(&model)]).contains("hidden 4,"));
}

#[test]
fn onnx_imports_with_calibration_and_refuses_bad_input() {
    let dir = Scratch::new("onnx");
    let (train, test) = write_iris(&dir);
    let model = dir.path("onnx.fheml");
    let onnx = fixture("mlp.onnx");
    let out = ok(&["import-onnx", s(&onnx), "--data", s(&train), "--n-bits", "8", "--out", s(&model)]);
    assert!(out.contains("saved"), "{out}");
    let eval = json(&["eval", "--model", s(&model), "--data", s(&test), "--mode", "clear", "--json"]);
    assert_eq!(eval["metric"], "accuracy");
    // The fixture's weights are random: the test is that the 8-bit quantization keeps the float
    // network's predictions, not that it classifies iris.
    let gap = eval["quantized"].as_f64().unwrap() - eval["float"].as_f64().unwrap();
    assert!(gap.abs() <= 0.05, "{eval}");
    let inspect = ok(&["inspect", s(&model)]);
    assert!(inspect.contains("inputs 8 bits, weights 3 bits") && inspect.contains("post-training"), "{inspect}");
    // The flag form and explicit quantization settings.
    let narrow = dir.path("narrow.fheml");
    ok(&[
        "import-onnx",
        "--onnx",
        s(&onnx),
        "--data",
        s(&train),
        "--target-column",
        "target",
        "--set",
        "w_bits=4,a_bits=2",
        "--out",
        s(&narrow),
    ]);
    assert!(ok(&["inspect", s(&narrow)]).contains("weights 4 bits, activations 2 bits"));

    let refused = dir.path("refused.fheml");
    let import = |file: &PathBuf, data: &PathBuf, extra: &[&str], needle: &str| {
        let mut args = vec!["import-onnx", s(file), "--data", s(data), "--out", s(&refused)];
        args.extend_from_slice(extra);
        fails(&args, needle);
        assert!(!refused.exists(), "no model file after `{needle}`");
    };
    import(&fixture("unsupported.onnx"), &train, &[], "Abs");
    let corrupt = dir.path("corrupt.onnx");
    std::fs::write(&corrupt, &std::fs::read(&onnx).unwrap()[..200]).unwrap();
    import(&corrupt, &train, &[], "corrupt.onnx");
    import(&fixture("cnn.onnx"), &train, &[], "64 inputs");
    import(&onnx, &train, &["--task", "regression"], "one output");
    import(&onnx, &train, &["--set", "depth=2"], "`depth`");
    import(&onnx, &train, &["--set", "accumulator_bits=0"], "accumulator_bits");
    // Two labels for a three-output network.
    let (cancer, _) = write_dataset(&dir);
    let mut four = String::new();
    for line in std::fs::read_to_string(cancer).unwrap().lines() {
        let cells: Vec<&str> = line.split(',').collect();
        four += &format!("{},{}\n", cells[..4].join(","), cells[cells.len() - 1]);
    }
    let binary = dir.path("binary.csv");
    std::fs::write(&binary, four).unwrap();
    import(&onnx, &binary, &[], "2 distinct labels");
    let bad = fheml(&["import-onnx", "--data", s(&train), "--out", s(&refused)]);
    assert!(!bad.status.success() && !refused.exists());
}

#[test]
fn onnx_single_logit_binary_classifier_imports_and_predicts_two_labels() {
    let dir = Scratch::new("onnx-binary");
    let (train, _) = write_iris(&dir);
    // Two classes: iris setosa or not.
    let binary = dir.path("binary.csv");
    let text = std::fs::read_to_string(&train).unwrap();
    let mut lines = text.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for line in lines {
        let (features, label) = line.rsplit_once(',').unwrap();
        out.push_str(&format!("{features},{}\n", u8::from(label.trim() != "0")));
    }
    std::fs::write(&binary, out).unwrap();
    let model = dir.path("binary.fheml");
    let imported = ok(&["import-onnx", s(&fixture("binary.onnx")), "--data", s(&binary), "--out", s(&model)]);
    assert!(imported.contains("saved"), "{imported}");
    let eval = json(&["eval", "--model", s(&model), "--data", s(&binary), "--mode", "clear", "--json"]);
    // Random weights: the test is that quantization keeps the float network's labels.
    let gap = eval["quantized"].as_f64().unwrap() - eval["float"].as_f64().unwrap();
    assert!(gap.abs() <= 0.05, "{eval}");
    let predictions = ok(&["predict", "--model", s(&model), "--data", s(&binary), "--mode", "clear"]);
    assert!(
        predictions.lines().skip(1).all(|l| l.ends_with(",0") || l.ends_with(",1") || l == "0" || l == "1"),
        "{predictions}"
    );
}

#[test]
fn onnx_import_warns_when_quantization_parts_from_the_float_network() {
    let dir = Scratch::new("onnx-drift");
    let (train, _) = write_iris(&dir);
    let (model, onnx) = (dir.path("m.fheml"), fixture("mlp.onnx"));
    let import = |extra: &[&str]| {
        let mut args = vec!["import-onnx", s(&onnx), "--data", s(&train), "--out", s(&model)];
        args.extend_from_slice(extra);
        let out = fheml(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let fine = import(&["--n-bits", "8", "--set", "w_bits=6,a_bits=6,accumulator_bits=8"]);
    assert!(!fine.contains("warning"), "{fine}");
    let coarse = import(&["--n-bits", "2", "--set", "w_bits=2,a_bits=1"]);
    assert!(coarse.contains("warning: the quantized network") && coarse.contains("--n-bits"), "{coarse}");
}

#[test]
fn budget_ms_sizes_the_mlp_from_the_cost_model() {
    let dir = Scratch::new("mlp-budget");
    let (train, _) = write_iris(&dir);
    let model = dir.path("budget.fheml");
    let budget = 150.0;
    let args = ["train", "--model", "mlp", "--data", s(&train), "--set", "epochs=10", "--budget-ms", "150"];
    let out = fheml(&[&args[..], &["--out", s(&model)]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("budget 150 ms: hidden="), "{stderr}");
    let inspect = json(&["inspect", s(&model), "--json"]);
    let expected_ms = inspect["report"]["expected_seconds"].as_f64().unwrap() * 1e3;
    let units = inspect["report"]["bootstraps"].as_u64().unwrap();
    assert!(expected_ms <= budget * 1.05, "expected {expected_ms} ms for a {budget} ms budget");
    // The widest width that fits: the next width up would not (the runtime prices a
    // bootstrap at several milliseconds, so 150 ms holds a few dozen at most).
    assert!((4..=64).contains(&units), "{units} bootstraps");

    // Bits given with --set stay; an impossible budget and a model without width are refused.
    let fixed = dir.path("fixed.fheml");
    ok(&[
        "train",
        "--model",
        "mlp",
        "--data",
        s(&train),
        "--set",
        "epochs=4,w_bits=2,a_bits=2",
        "--budget-ms",
        "150",
        "--out",
        s(&fixed),
    ]);
    let inspect = ok(&["inspect", s(&fixed)]);
    assert!(inspect.contains("weights 2 bits"), "{inspect}");
    fails(
        &["train", "--model", "mlp", "--data", s(&train), "--set", "epochs=2", "--budget-ms", "1", "--out", s(&fixed)],
        "fits no network: the cheapest tried (hidden=4",
    );
    fails(
        &["train", "--model", "gbdt", "--data", s(&train), "--budget-ms", "100", "--out", s(&fixed)],
        "--budget-ms sizes networks",
    );
}
