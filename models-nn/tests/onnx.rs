//! ONNX import against the fixtures made by `scripts/make_onnx_fixture.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use fheml_circuits::{RoundingMode, Task};
use fheml_fhe_runtime::{FheConfig, FheModel, Mode};
use fheml_models_nn::onnx::{OutputActivation, import_onnx, import_onnx_bytes};
use fheml_models_nn::{Activation, Layer, Network, NnError, NnModel, QuantSettings};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

#[derive(serde::Deserialize)]
struct Recorded {
    input_shape: Vec<usize>,
    output_activation: String,
    inputs: Vec<Vec<f64>>,
    outputs: Vec<Vec<f64>>,
}

fn recorded(name: &str) -> Recorded {
    serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap()).unwrap()
}

/// Relative error with a unit floor: the reference evaluator computes in f32, the network in f64.
fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(err <= 1e-5, "{what}[{i}]: got {g}, recorded {w} (error {err:e})");
    }
}

fn check_fixture(name: &str) -> fheml_models_nn::ImportedOnnx {
    let imported = import_onnx(&fixture(&format!("{name}.onnx"))).unwrap();
    let rec = recorded(name);
    assert_eq!(imported.network.input_shape(), rec.input_shape.as_slice());
    let expected_activation =
        if rec.output_activation == "softmax" { OutputActivation::Softmax } else { OutputActivation::None };
    assert_eq!(imported.output_activation, expected_activation);
    assert_eq!(imported.layer_nodes.len(), imported.network.layers().len());
    assert!(!rec.inputs.is_empty());
    for (k, (x, y)) in rec.inputs.iter().zip(&rec.outputs).enumerate() {
        let got = imported.forward_row(x).unwrap();
        assert_close(&got, y, &format!("{name} sample {k}"));
    }
    imported
}

#[test]
fn onnx_mlp_fixture_imports_and_matches_recorded_outputs() {
    let imported = check_fixture("mlp");
    let net = &imported.network;
    assert_eq!(net.n_outputs(), 3);
    let layers = net.layers();
    let dense = layers.iter().filter(|l| matches!(l, Layer::Dense { .. })).count();
    assert_eq!(dense, 5, "{layers:#?}");
    assert!(layers.contains(&Layer::Activation(Activation::Relu)));
    assert!(layers.contains(&Layer::Activation(Activation::Tanh)));
    assert!(layers.contains(&Layer::Activation(Activation::Sigmoid)));
    assert!(
        layers
            .iter()
            .any(|l| matches!(l, Layer::Activation(Activation::LeakyRelu { alpha }) if (alpha - 0.1).abs() < 1e-6))
    );
    assert!(layers.iter().any(|l| matches!(l, Layer::Reshape(s) if s == &[2, 2])));
    // Sub, Mul, broadcast Mul, BatchNormalization and Div are affine layers.
    assert_eq!(layers.iter().filter(|l| matches!(l, Layer::Affine { .. })).count(), 5);
    // Layers keep the names of the ONNX nodes they come from.
    for node in ["centre", "scale", "fc1", "fc2", "bn2", "fc3", "matmul5", "div5"] {
        assert!(imported.layer_nodes.iter().any(|n| n == node), "{node} in {:?}", imported.layer_nodes);
    }
}

#[test]
fn onnx_cnn_fixture_imports_and_matches_recorded_outputs() {
    let imported = check_fixture("cnn");
    let net = &imported.network;
    assert_eq!(net.input_shape(), &[1, 8, 8]);
    assert_eq!(net.n_outputs(), 10);
    let names: Vec<&str> = net.layers().iter().map(Layer::name).collect();
    assert_eq!(names, ["conv2d", "affine", "activation", "avg_pool2d", "reshape", "dense"]);
    assert_eq!(net.shape_after(0), &[4, 8, 8]);
    assert_eq!(net.shape_after(3), &[4, 4, 4]);
    match &net.layers()[1] {
        Layer::Affine { scale, shift } => {
            assert_eq!(scale.shape(), &[4, 1, 1]);
            assert_eq!(shift.shape(), &[4, 1, 1]);
        }
        other => panic!("batch norm became {other:?}"),
    }
    assert_eq!(imported.layer_nodes, ["conv1", "bn1", "relu1", "pool1", "flatten1", "fc"]);
    // The network itself returns logits: their softmax is the recorded output.
    let rec = recorded("cnn");
    let logits = net.forward_row(&rec.inputs[0]).unwrap();
    assert_close(&OutputActivation::Softmax.apply(&logits), &rec.outputs[0], "softmax(logits)");
}

#[test]
fn onnx_single_logit_binary_classifier_imports_with_its_cast_and_sigmoid() {
    let imported = check_fixture("binary");
    assert_eq!(imported.network.n_outputs(), 1);
    let rec = recorded("binary");
    // Calibrate on a grid of rows around the recorded ones; labels 0/1 from the probability.
    let rows: Vec<Vec<f64>> = (0..200)
        .map(|i| (0..4).map(|j| ((i * 7 + j * 13) % 29) as f64 / 29.0 * 6.0 - 3.0).collect())
        .chain(rec.inputs.iter().cloned())
        .collect();
    let x = ndarray::Array2::from_shape_fn((rows.len(), 4), |(i, j)| rows[i][j]);
    let settings = QuantSettings { w_bits: 6, a_bits: 6, accumulator_bits: None, rounding: RoundingMode::Exact };
    let task = Task::Classification { classes: vec![0.0, 1.0] };
    let model = NnModel::from_network(imported.network.clone(), x.view(), 8, settings, task).unwrap();
    // The final Sigmoid leaves the circuit: the client maps the logit to a probability.
    assert!(!model.network().layers().contains(&Layer::Activation(Activation::Sigmoid)));
    let circuit = model.compile().unwrap();
    let float = model.predict(x.view()).unwrap();
    let mut agree = 0;
    for (k, row) in rows.iter().enumerate() {
        let probability = imported.forward_row(row).unwrap()[0];
        assert_eq!(float[k], f64::from(u8::from(probability > 0.5)), "row {k}: p {probability}");
        agree += usize::from(circuit.predict_clear(row).unwrap().value == float[k]);
    }
    // 8-bit inputs and 6-bit weights move rows within a few hundredths of the boundary.
    assert!(agree as f64 >= 0.95 * rows.len() as f64, "quantized labels agree on {agree} of {} rows", rows.len());
}

#[test]
fn onnx_transpose_of_a_stored_weight_imports_as_a_dense_layer() {
    // `x @ W.T` exported without constant folding: the Transpose of an initializer is a
    // constant, folded into the MatMul's weight.
    let imported = check_fixture("transposed");
    let names: Vec<&str> = imported.network.layers().iter().map(Layer::name).collect();
    // onnx-ir fuses MatMul + Add only for an initializer weight: the bias stays an Affine.
    assert_eq!(names, ["dense", "affine", "activation", "dense"]);
}

#[test]
fn onnx_flat_input_reshaped_before_conv_imports_and_quantizes() {
    let imported = check_fixture("flat_cnn");
    assert_eq!(imported.network.input_shape(), &[64]);
    let rec = recorded("flat_cnn");
    let x = ndarray::Array2::from_shape_fn((rec.inputs.len(), 64), |(i, j)| rec.inputs[i][j]);
    let task = Task::Classification { classes: (0..10).map(f64::from).collect() };
    // Unrounded 6-bit accumulators are too wide for a table: one sentence says which layer and what to set.
    let wide = QuantSettings { w_bits: 6, a_bits: 6, accumulator_bits: None, rounding: RoundingMode::Exact };
    let too_wide = NnModel::from_network(imported.network.clone(), x.view(), 8, wide, task.clone()).unwrap();
    let message = too_wide.compile().unwrap_err().to_string();
    assert!(message.contains("layer") && message.contains("accumulator_bits="), "{message}");
    let settings = QuantSettings { w_bits: 6, a_bits: 6, accumulator_bits: Some(8), rounding: RoundingMode::Exact };
    // Used to fail with "conv2d: the scale varies within channel 0": the pixels must share a scale.
    let model = NnModel::from_network(imported.network.clone(), x.view(), 8, settings, task).unwrap();
    let circuit = model.compile().unwrap();
    let float = model.predict(x.view()).unwrap();
    for (k, row) in rec.inputs.iter().enumerate() {
        assert_eq!(circuit.predict_clear(row).unwrap().value, float[k], "row {k}");
    }
}

#[test]
fn encrypted_onnx_maxpool_imports_and_its_lowering_takes_the_exact_max() {
    let imported = check_fixture("maxpool");
    assert!(imported.network.layers().iter().any(|l| matches!(l, Layer::MaxPool2d { kernel: [2, 2], stride: [2, 2] })));
    let rec = recorded("maxpool");
    let x = ndarray::Array2::from_shape_fn((rec.inputs.len(), 36), |(i, j)| rec.inputs[i][j]);
    let settings = QuantSettings { w_bits: 8, a_bits: 6, accumulator_bits: Some(8), rounding: RoundingMode::Exact };
    let task = Task::Classification { classes: vec![0.0, 1.0, 2.0] };
    let model = NnModel::from_network(imported.network.clone(), x.view(), 8, settings, task).unwrap();
    let circuit = model.compile().unwrap();
    // 2 channels x 2x2 windows of a 4x4 map: 8 windows of 3 comparisons, after 2x16 ReLUs.
    assert_eq!(circuit.circuit.cost().bootstraps, 32 + 8 * 3);
    // The max commutes with the activation's quantization, so Clear tracks the float network
    // as closely as the quantization of the other layers allows.
    let float = model.decision_function(x.view()).unwrap();
    let largest = float.iter().fold(0f64, |a, v| a.max(v.abs()));
    for (k, row) in rec.inputs.iter().enumerate() {
        let clear = circuit.predict_clear(row).unwrap().scores;
        for (o, (a, b)) in clear.iter().zip(float.row(k)).enumerate() {
            assert!((a - b).abs() <= 0.05 * largest, "row {k} output {o}: circuit {a} vs float {b}");
        }
    }
    // Under real TFHE the pairwise max (three lookups per 2x2 window) decrypts to Clear's
    // integers: a network that only pools its 2x2 input, outputs decrypted exactly.
    let pool =
        Network::new(vec![1, 2, 2], vec![Layer::MaxPool2d { kernel: [2, 2], stride: [2, 2] }, Layer::Reshape(vec![1])])
            .unwrap();
    let model = NnModel::from_network(pool, x.slice(ndarray::s![.., ..4]), 3, settings, Task::Regression).unwrap();
    let circuit = model.compile().unwrap();
    assert_eq!(circuit.circuit.cost().bootstraps, 3);
    let fhe = FheModel::compile(circuit, &FheConfig::params().exact_outputs(true).check().unwrap()).unwrap();
    fheml_fhe_runtime::testing::use_cached_keys(&fhe);
    let row = x.slice(ndarray::s![..2, ..4]);
    assert_eq!(fhe.run_integers(row, Mode::Clear, 0).unwrap(), fhe.run_integers(row, Mode::Execute, 0).unwrap());
}

#[test]
fn onnx_bytes_import_matches_file_import() {
    let bytes = std::fs::read(fixture("mlp.onnx")).unwrap();
    let from_bytes = import_onnx_bytes(&bytes, "mlp in memory").unwrap();
    let from_file = import_onnx(&fixture("mlp.onnx")).unwrap();
    assert_eq!(from_bytes.network, from_file.network);
}

fn unsupported(name: &str) -> (String, String, String, String) {
    match import_onnx(&fixture(name)) {
        Err(err @ NnError::UnsupportedOp { .. }) => {
            let message = err.to_string();
            let NnError::UnsupportedOp { op, node, detail } = err else { unreachable!() };
            (op, node, detail, message)
        }
        Err(other) => panic!("{name}: expected UnsupportedOp, got {other:?}"),
        Ok(_) => panic!("{name}: imported"),
    }
}

#[test]
fn onnx_unsupported_op_names_the_op_and_the_node() {
    let (op, node, _, message) = unsupported("unsupported.onnx");
    assert_eq!((op.as_str(), node.as_str()), ("Abs", "abs1"));
    assert!(message.contains("Abs") && message.contains("abs1"), "{message}");
}

#[test]
fn onnx_residual_add_is_unsupported() {
    let (op, node, detail, message) = unsupported("residual.onnx");
    assert_eq!((op.as_str(), node.as_str()), ("Add", "skip_add"));
    assert!(detail.contains("2 computed inputs"), "{detail}");
    assert!(message.contains("Add") && message.contains("skip_add"), "{message}");
}

#[test]
fn onnx_grouped_conv_is_unsupported() {
    let (op, node, detail, _) = unsupported("grouped_conv.onnx");
    assert_eq!((op.as_str(), node.as_str()), ("Conv", "conv1"));
    assert!(detail.contains("group = 2"), "{detail}");
}

#[test]
fn onnx_corrupt_truncated_and_missing_files_are_errors() {
    let bytes = std::fs::read(fixture("cnn.onnx")).unwrap();
    for (what, data) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("garbage", b"definitely not a protobuf \xff\xfe\x00\x01".to_vec()),
        ("empty", Vec::new()),
    ] {
        match import_onnx_bytes(&data, what) {
            Err(NnError::Onnx { path, .. }) => assert_eq!(path, what),
            other => panic!("{what}: expected NnError::Onnx, got {other:?}"),
        }
    }
    let dir = std::env::temp_dir().join(format!("fheml-onnx-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    let result = import_onnx(&truncated);
    std::fs::remove_dir_all(&dir).ok();
    assert!(matches!(result, Err(NnError::Onnx { .. })), "{result:?}");
    let missing = fixture("no_such_model.onnx");
    match import_onnx(&missing) {
        Err(err @ NnError::Onnx { .. }) => assert!(err.to_string().contains("no_such_model.onnx"), "{err}"),
        other => panic!("missing file: expected NnError::Onnx, got {other:?}"),
    }
}

/// A fixture's protobuf, edited by `edit`, then imported from memory.
fn import_edited(name: &str, edit: impl FnOnce(&mut onnx_ir::GraphProto)) -> Result<(), NnError> {
    use onnx_ir::Message;
    let mut model = onnx_ir::ModelProto::parse_from_bytes(&std::fs::read(fixture(name)).unwrap()).unwrap();
    edit(model.graph.as_mut().unwrap());
    import_onnx_bytes(&model.write_to_bytes().unwrap(), name).map(|_| ())
}

#[test]
fn onnx_gemm_trans_a_is_unsupported_with_the_reason() {
    let err = import_edited("mlp.onnx", |g| {
        let fc2 = g.node.iter_mut().find(|n| n.name == "fc2").unwrap();
        let mut trans_a = fc2.attribute.iter().find(|a| a.name == "transB").unwrap().clone();
        trans_a.name = "transA".into();
        fc2.attribute.push(trans_a);
    })
    .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, NnError::UnsupportedOp { ref op, ref node, .. } if op == "Gemm" && node == "fc2"), "{err:?}");
    assert!(message.contains("transA"), "{message}");
}

#[test]
fn onnx_softmax_must_be_the_last_operator() {
    let err = import_edited("cnn.onnx", |g| {
        let mut relu = g.node.iter().find(|n| n.op_type == "Relu").unwrap().clone();
        relu.name = "after_softmax".into();
        relu.input = vec!["probs".into()];
        relu.output = vec!["probs_relu".into()];
        g.node.push(relu);
        g.output[0].name = "probs_relu".into();
    })
    .unwrap_err();
    assert!(
        matches!(err, NnError::UnsupportedOp { ref op, ref node, .. } if op == "Softmax" && node == "softmax"),
        "{err:?}"
    );
    assert!(err.to_string().contains("after_softmax"), "{err}");
}

#[test]
fn onnx_unknown_domain_and_unnamed_nodes_are_named_in_errors() {
    let err = import_edited("mlp.onnx", |g| {
        let relu = g.node.iter_mut().find(|n| n.name == "relu1").unwrap();
        relu.name = String::new();
        relu.op_type = "FancyAct".into();
        relu.domain = "com.example".into();
    })
    .unwrap_err();
    match err {
        NnError::UnsupportedOp { op, node, detail } => {
            assert_eq!(op, "FancyAct");
            assert!(node.contains("FancyAct") && node.starts_with('#'), "{node}");
            assert!(detail.contains("com.example"), "{detail}");
        }
        other => panic!("expected UnsupportedOp, got {other:?}"),
    }
}

/// Fuzzing of the ONNX importer on the stable toolchain: proptest-driven mutations of the
/// fixtures' protobuf bytes. Every case imports or is refused with a one-line error, and an
/// imported network evaluates a row or refuses it: never a panic. `FHEML_FUZZ_CASES`
/// multiplies the case count (`cargo xtask fuzz`).
mod fuzz {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use fheml_models_nn::onnx::import_onnx_bytes;
    use proptest::prelude::*;
    use proptest::sample::Index;

    const FIXTURES: &[&str] = &["mlp.onnx", "binary.onnx", "cnn.onnx", "maxpool.onnx", "residual.onnx"];

    fn cases(base: u32) -> u32 {
        let factor = std::env::var("FHEML_FUZZ_CASES").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
        base.saturating_mul(factor.max(1))
    }

    /// One edit: set a byte, write a huge varint, insert, remove, truncate.
    fn edit() -> impl Strategy<Value = (u8, Index, u8)> {
        (0u8..5, any::<Index>(), any::<u8>())
    }

    fn apply(bytes: &mut Vec<u8>, edits: &[(u8, Index, u8)]) {
        for (kind, at, value) in edits {
            if bytes.is_empty() {
                return;
            }
            let p = at.index(bytes.len());
            match kind {
                0 => bytes[p] = *value,
                1 => {
                    let end = (p + 9).min(bytes.len());
                    bytes[p..end].fill(0xff);
                }
                2 => bytes.insert(p, *value),
                3 => drop(bytes.drain(p..(p + 1 + usize::from(*value % 16)).min(bytes.len()))),
                _ => bytes.truncate(p),
            }
        }
    }

    /// Found by the fuzzer: an operator name with a line break made a two-line error (a
    /// file's names now have their control characters escaped in messages).
    #[test]
    fn fuzz_found_a_line_break_in_an_operator_name_is_escaped() {
        let mut bytes = std::fs::read(super::fixture("mlp.onnx")).unwrap();
        let gemms: Vec<usize> = (0..bytes.len() - 3).filter(|&i| &bytes[i..i + 4] == b"Gemm").collect();
        assert!(!gemms.is_empty());
        for at in gemms {
            bytes[at + 2] = b'\n';
        }
        let err = import_onnx_bytes(&bytes, "mlp.onnx").unwrap_err().to_string();
        assert!(err.contains("Ge\\nm") && !err.contains('\n'), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(600)))]

        #[test]
        fn fuzz_mutated_onnx_files_import_or_are_refused(
            which in any::<Index>(),
            edits in prop::collection::vec(edit(), 1..4),
        ) {
            let mut bytes = std::fs::read(super::fixture(FIXTURES[which.index(FIXTURES.len())])).unwrap();
            apply(&mut bytes, &edits);
            let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), fheml_models_nn::NnError> {
                let imported = import_onnx_bytes(&bytes, "fuzzed.onnx")?;
                let n = imported.network.n_inputs();
                if n <= 1 << 16 {
                    imported.forward_row(&vec![0.25; n])?;
                }
                Ok(())
            }))
            .map_err(|_| TestCaseError::fail("the ONNX importer panicked"))?;
            if let Err(e) = result {
                let text = e.to_string();
                prop_assert!(!text.contains('\n') && text.len() <= 1000, "not one line: {text:?}");
            }
        }
    }
}
