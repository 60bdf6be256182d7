//! MLPs trained with quantization-aware training, a burn CNN, and ONNX networks with
//! post-training quantization: float vs quantized, and Execute vs Clear under real TFHE.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;

use fheml_circuits::{PostProcessing, RoundingMode, Task};
use fheml_fhe_runtime::{FheConfig, FheModel, Mode};
use fheml_models_nn::burn_import::{CnnSetup, mlp_from_burn, train_small_cnn};
use fheml_models_nn::{Activation, MlpParams, NnModel, NnTask, QuantSettings, import_onnx};
use fheml_quant::data::Split;
use ndarray::{Array1, Array2, Axis, s};
use smartcore::dataset::{breast_cancer, diabetes, digits, iris};

fn split(x: Vec<f32>, y: Vec<f64>, rows: usize, cols: usize) -> Split {
    let x = Array2::from_shape_vec((rows, cols), x.into_iter().map(f64::from).collect()).unwrap();
    Split::every_fifth(x.view(), Array1::from(y).view())
}

fn dataset(name: &str) -> Split {
    match name {
        "iris" => {
            let d = iris::load_dataset();
            split(d.data, d.target.iter().map(|v| f64::from(*v)).collect(), d.num_samples, d.num_features)
        }
        "breast_cancer" => {
            let d = breast_cancer::load_dataset();
            split(d.data, d.target.iter().map(|v| f64::from(*v)).collect(), d.num_samples, d.num_features)
        }
        "diabetes" => {
            let d = diabetes::load_dataset();
            split(d.data, d.target.iter().map(|v| f64::from(*v)).collect(), d.num_samples, d.num_features)
        }
        _ => {
            let d = digits::load_dataset();
            split(d.data, d.target.iter().map(|v| f64::from(*v)).collect(), d.num_samples, d.num_features)
        }
    }
}

fn accuracy(pred: &[f64], y: &Array1<f64>) -> f64 {
    fheml_quant::metrics::accuracy(pred, &y.to_vec())
}

fn clear_predictions(model: &NnModel, x: &Array2<f64>) -> Vec<f64> {
    let circuit = model.compile().unwrap();
    x.rows().into_iter().map(|r| circuit.predict_clear(&r.to_vec()).unwrap().value).collect()
}

#[test]
fn mlp_classifiers_at_3_bits_are_within_two_points_of_float() {
    for name in ["iris", "breast_cancer"] {
        let d = dataset(name);
        let params = MlpParams::from_options(NnTask::Classification, [("seed", "3")]).unwrap();
        let model = params.fit(d.x_train.view(), d.y_train.view()).unwrap();
        let float = accuracy(model.predict(d.x_test.view()).unwrap().as_slice().unwrap(), &d.y_test);
        let quantized = accuracy(&clear_predictions(&model, &d.x_test), &d.y_test);
        eprintln!("{name}: float {float:.4}, quantized {quantized:.4}");
        assert!(float >= 0.9, "{name}: float accuracy {float}");
        assert!(quantized >= float - 0.02, "{name}: quantized {quantized} vs float {float}");
        let cost = model.compile().unwrap().circuit.cost();
        assert_eq!(cost.bootstraps, 16, "one lookup per hidden neuron");
        assert!(cost.max_precision.0 <= 5, "accumulators rounded to 5 bits: {}", cost.max_precision);
    }
}

/// `max_fan_in` prunes every hidden neuron to its strongest inputs (the output layer keeps
/// all of its own), and the pruned network still learns.
#[test]
fn max_fan_in_bounds_the_inputs_of_every_hidden_neuron() {
    let d = dataset("breast_cancer");
    let options = [("hidden", "24,24"), ("max_fan_in", "4"), ("epochs", "40"), ("seed", "2")];
    let model = MlpParams::from_options(NnTask::Classification, options)
        .unwrap()
        .fit(d.x_train.view(), d.y_train.view())
        .unwrap();
    let layers = model.network().layers();
    let dense: Vec<&Array2<f64>> = layers
        .iter()
        .filter_map(|l| match l {
            fheml_models_nn::Layer::Dense { weight, .. } => Some(weight),
            _ => None,
        })
        .collect();
    assert_eq!(dense.len(), 3);
    for (l, weight) in dense.iter().enumerate().take(2) {
        for (j, column) in weight.axis_iter(Axis(1)).enumerate() {
            let kept = column.iter().filter(|w| **w != 0.0).count();
            assert!(kept <= 4, "layer {l}, neuron {j}: {kept} inputs");
        }
    }
    let output_inputs = dense[2].axis_iter(Axis(1)).map(|c| c.iter().filter(|w| **w != 0.0).count()).max();
    assert!(output_inputs > Some(4), "the output layer is not pruned");
    let quantized = accuracy(&clear_predictions(&model, &d.x_test), &d.y_test);
    assert!(quantized >= 0.85, "pruned network accuracy {quantized}");
}

#[test]
fn mlp_regressor_learns_diabetes() {
    let d = dataset("diabetes");
    let params =
        MlpParams::from_options(NnTask::Regression, [("hidden", "16"), ("activation", "tanh"), ("n_bits", "4")])
            .unwrap();
    let model = params.fit(d.x_train.view(), d.y_train.view()).unwrap();
    let r2 = |p: &[f64]| fheml_quant::metrics::r2(p, &d.y_test.to_vec());
    let float = r2(model.predict(d.x_test.view()).unwrap().as_slice().unwrap());
    let quantized = r2(&clear_predictions(&model, &d.x_test));
    eprintln!("diabetes: float r2 {float:.3}, quantized r2 {quantized:.3}");
    assert!(float > 0.3 && quantized > 0.25, "float {float}, quantized {quantized}");
}

/// Execute (real TFHE) with the default approximate accumulator rounding: a rounded
/// accumulator within noise of a rounding boundary may come out one step off (as in
/// Concrete ML's approximate rounding), so integer outputs can differ from Clear while
/// labels almost always agree; `encrypted_exact_rounding_is_bit_exact` covers the
/// bit-exact mode.
#[test]
fn encrypted_mlp_execute_agrees_with_clear_on_labels() {
    let d = dataset("iris");
    let params = MlpParams::from_options(NnTask::Classification, [("hidden", "8"), ("seed", "1")]).unwrap();
    let model = params.fit(d.x_train.view(), d.y_train.view()).unwrap();
    let fhe = FheModel::compile(model.compile().unwrap(), &FheConfig::default()).unwrap();
    fheml_fhe_runtime::testing::use_cached_keys(&fhe);
    let report = fhe.compiled().report();
    assert_eq!(report.bootstraps, 8);
    let rows = d.x_test.slice(s![..6, ..]);
    let clear = fhe.predict(rows, Mode::Clear).unwrap();
    let execute = fhe.predict(rows, Mode::Execute).unwrap();
    let agree = clear.iter().zip(&execute).filter(|(c, e)| c.value == e.value).count();
    assert!(agree >= 5, "labels agree on {agree}/6 rows");
}

#[test]
fn encrypted_exact_rounding_is_bit_exact() {
    let d = dataset("iris");
    // Two inputs bits and two-bit weights keep every accumulator narrow enough to read whole.
    let params = MlpParams::from_options(
        NnTask::Classification,
        [
            ("hidden", "4"),
            ("n_bits", "2"),
            ("w_bits", "2"),
            ("a_bits", "2"),
            ("rounding", "exact"),
            ("accumulator_bits", "none"),
        ],
    )
    .unwrap();
    let model = params.fit(d.x_train.view(), d.y_train.view()).unwrap();
    let circuit = model.compile().unwrap();
    assert!(circuit.circuit.cost().max_precision.0 <= 5, "{}", circuit.circuit.cost().max_precision);
    let fhe = FheModel::compile(circuit, &FheConfig::default()).unwrap();
    fheml_fhe_runtime::testing::use_cached_keys(&fhe);
    let rows = d.x_test.slice(s![..3, ..]);
    let clear = fhe.run_integers(rows, Mode::Clear, 0).unwrap();
    let execute = fhe.run_integers(rows, Mode::Execute, 0).unwrap();
    assert_eq!(clear, execute);
}

#[test]
fn burn_mlp_imports_and_quantizes() {
    use burn::nn::LinearConfig;
    use burn::tensor::Device;
    let device = Device::flex();
    device.seed(7);
    let linears = vec![LinearConfig::new(4, 6).init(&device), LinearConfig::new(6, 3).init(&device)];
    let network = mlp_from_burn(&linears, Activation::Tanh).unwrap();
    // The imported network computes what burn computes.
    let x = [0.5f32, -1.0, 2.0, 0.25];
    let input = burn::tensor::Tensor::<2>::from_data(burn::tensor::TensorData::new(x.to_vec(), [1, 4]), &device);
    let hidden = burn::tensor::activation::tanh(linears[0].forward(input));
    let want: Vec<f32> = linears[1].forward(hidden).into_data().try_to_vec::<f32>().unwrap();
    let got = network.forward_row(&x.map(f64::from)).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - f64::from(*w)).abs() < 1e-5, "{got:?} vs {want:?}");
    }
    let d = dataset("iris");
    let model = NnModel::from_network(
        network,
        d.x_train.view(),
        8,
        QuantSettings { w_bits: 8, a_bits: 8, accumulator_bits: Some(12), rounding: RoundingMode::Exact },
        Task::Classification { classes: vec![0.0, 1.0, 2.0] },
    )
    .unwrap();
    let float = model.decision_function(d.x_test.view()).unwrap();
    let circuit = model.compile().unwrap();
    for (row, f) in d.x_test.rows().into_iter().zip(float.rows()) {
        let q = circuit.predict_clear(&row.to_vec()).unwrap().scores;
        for (a, b) in q.iter().zip(f) {
            assert!((a - b).abs() < 0.05, "{q:?} vs {f:?}");
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

/// The ONNX fixtures, quantized after training at 8 bits, stay within 3% of the output
/// range of their float outputs on the recorded inputs.
#[test]
fn onnx_fixtures_quantized_track_their_float_outputs() {
    for name in ["mlp", "cnn"] {
        let imported = import_onnx(&fixture(&format!("{name}.onnx"))).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap()).unwrap();
        let inputs: Vec<Vec<f64>> = serde_json::from_value(json["inputs"].clone()).unwrap();
        let network = imported.network.clone();
        let n = network.n_inputs();
        let calibration = Array2::from_shape_vec((inputs.len(), n), inputs.concat()).unwrap();
        let k = network.n_outputs();
        let model = NnModel::from_network(
            network.clone(),
            calibration.view(),
            8,
            QuantSettings { w_bits: 8, a_bits: 8, accumulator_bits: Some(12), rounding: RoundingMode::Exact },
            Task::Classification { classes: (0..k).map(|c| c as f64).collect() },
        )
        .unwrap();
        let circuit = model.compile().unwrap();
        assert_eq!(circuit.post, PostProcessing::Softmax);
        let mut worst = 0f64;
        let mut spread = 0f64;
        for row in &inputs {
            let float = network.forward_row(row).unwrap();
            let quantized = circuit.predict_clear(row).unwrap().scores;
            let (lo, hi) = float.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            spread = spread.max(hi - lo);
            for (q, f) in quantized.iter().zip(&float) {
                worst = worst.max((q - f).abs());
            }
        }
        eprintln!("{name}: worst error {worst:.4} over an output spread of {spread:.3}");
        assert!(worst <= 0.03 * spread.max(1e-9), "{name}: {worst} vs spread {spread}");
    }
}

/// A small CNN on the 8x8 digits trains with burn, is quantized after training, compiles,
/// and runs under real TFHE with the labels of the clear circuit.
#[test]
fn encrypted_cnn_on_digits_trains_compiles_and_runs_in_execute() {
    let d = dataset("digits");
    let labels = d.y_train.mapv(|v| v as usize);
    let setup = CnnSetup { side: 8, channels: 2, stride: 2, epochs: 8, learning_rate: 0.01, batch_size: 32, seed: 0 };
    let network = train_small_cnn(&setup, d.x_train.view(), labels.view()).unwrap();
    let model = NnModel::from_network(
        network,
        d.x_train.view(),
        4,
        QuantSettings { w_bits: 4, a_bits: 3, accumulator_bits: Some(4), rounding: RoundingMode::Approximate },
        Task::Classification { classes: (0..10).map(f64::from).collect() },
    )
    .unwrap();
    let float = accuracy(model.predict(d.x_test.view()).unwrap().as_slice().unwrap(), &d.y_test);
    let quantized = accuracy(&clear_predictions(&model, &d.x_test), &d.y_test);
    eprintln!("digits cnn: float {float:.4}, quantized {quantized:.4}");
    assert!(float > 0.85 && quantized > 0.8, "float {float}, quantized {quantized}");
    let mut fhe = FheModel::compile(model.compile().unwrap(), &FheConfig::default()).unwrap();
    fheml_fhe_runtime::testing::use_cached_keys(&fhe);
    assert_eq!(fhe.compiled().report().bootstraps, 2 * 4 * 4);
    // Approximate rounding may move a row whose accumulators sit on a rounding boundary (the
    // trained network, and so which rows do, depends on the CPU's float arithmetic): run two
    // rows that 32 simulated draws of the encryption noise never flip.
    let stable: Vec<usize> = (0..16)
        .filter(|&i| fhe.estimate_deviations(d.x_test.slice(s![i..i + 1, ..]), 32).unwrap() == 0.0)
        .take(2)
        .collect();
    assert_eq!(stable.len(), 2, "fewer than 2 of 16 rows are stable under simulated noise");
    let rows = d.x_test.select(Axis(0), &stable);
    let rows = rows.view();
    let clear = fhe.predict(rows, Mode::Clear).unwrap();
    let execute = fhe.predict(rows, Mode::Execute).unwrap();
    for (c, e) in clear.iter().zip(&execute) {
        assert_eq!(c.value, e.value);
    }
}
