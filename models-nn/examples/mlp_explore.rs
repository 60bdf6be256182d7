//! Trains MLPs on the embedded datasets and prints float / quantized scores and costs;
//! with `EXECUTE=n`, also runs the first n test rows under real TFHE.
//! `EXECUTE=5 cargo run --release -p fheml-models-nn --example mlp_explore -- breast_cancer hidden=16 epochs=100`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use fheml_models_nn::{MlpParams, NnTask};
use ndarray::{Array1, Array2, Axis};
use smartcore::dataset::{Dataset, breast_cancer, diabetes, iris};

fn to_arrays(d: Dataset<f32, u32>) -> (Array2<f64>, Array1<f64>) {
    let x = Array2::from_shape_vec((d.num_samples, d.num_features), d.data.iter().map(|v| f64::from(*v)).collect())
        .unwrap();
    (x, d.target.iter().map(|v| f64::from(*v)).collect())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("iris", String::as_str);
    let (x, y) = to_arrays(match name {
        "breast_cancer" => breast_cancer::load_dataset(),
        "diabetes" => diabetes::load_dataset(),
        _ => iris::load_dataset(),
    });
    let (test, train): (Vec<usize>, Vec<usize>) = (0..x.nrows()).partition(|i| i % 5 == 0);
    let (xtr, ytr) = (x.select(Axis(0), &train), y.select(Axis(0), &train));
    let (xte, yte) = (x.select(Axis(0), &test), y.select(Axis(0), &test));
    let task = if name == "diabetes" { NnTask::Regression } else { NnTask::Classification };
    let opts: Vec<(&str, &str)> = args[1..].iter().filter_map(|a| a.split_once('=')).collect();
    let params = MlpParams::from_options(task, opts).unwrap();
    let t = std::time::Instant::now();
    let model = params.fit(xtr.view(), ytr.view()).unwrap();
    println!("fit {:.2} s", t.elapsed().as_secs_f64());
    let circuit = model.compile().unwrap();
    let cost = circuit.circuit.cost();
    println!("bootstraps {} max precision {}", cost.bootstraps, cost.max_precision);
    let float = model.predict(xte.view()).unwrap();
    let quant: Vec<f64> = xte.rows().into_iter().map(|r| circuit.predict_clear(&r.to_vec()).unwrap().value).collect();
    let score = |p: &[f64]| {
        if task == NnTask::Regression {
            let mean = yte.mean().unwrap();
            1.0 - p.iter().zip(&yte).map(|(a, b)| (a - b).powi(2)).sum::<f64>()
                / yte.iter().map(|b| (b - mean).powi(2)).sum::<f64>()
        } else {
            p.iter().zip(&yte).filter(|(a, b)| a == b).count() as f64 / yte.len() as f64
        }
    };
    println!("float {:.4} quantized {:.4}", score(float.as_slice().unwrap()), score(&quant));
    let qtr: Vec<f64> = xtr.rows().into_iter().map(|r| circuit.predict_clear(&r.to_vec()).unwrap().value).collect();
    let ftr = model.predict(xtr.view()).unwrap();
    let acc = |p: &[f64]| p.iter().zip(&ytr).filter(|(a, b)| a == b).count() as f64 / ytr.len() as f64;
    println!("train: float {:.4} quantized {:.4}", acc(ftr.as_slice().unwrap()), acc(&qtr));
    if let Ok(n) = std::env::var("EXECUTE") {
        let n: usize = n.parse().unwrap();
        let mut config = fheml_fhe_runtime::FheConfig::params();
        if std::env::var_os("ONLY22").is_some() {
            config = config
                .candidates(&[fheml_fhe_runtime::ParameterSetId::M2C2P40, fheml_fhe_runtime::ParameterSetId::G1C3P128]);
        }
        let config = config.check().unwrap();
        let fhe = fheml_fhe_runtime::FheModel::compile(circuit.clone(), &config).unwrap();
        println!("{}", fhe.compiled().report());
        let t = std::time::Instant::now();
        let _ = fhe.keys();
        println!("keygen {:.2} s", t.elapsed().as_secs_f64());
        let rows = xte.slice(ndarray::s![..n, ..]);
        let clear = fhe.run_integers(rows, fheml_fhe_runtime::Mode::Clear, 0).unwrap();
        let sim = fhe.run_integers(rows, fheml_fhe_runtime::Mode::Simulate, 0).unwrap();
        let t = std::time::Instant::now();
        let exec = fhe.run_integers(rows, fheml_fhe_runtime::Mode::Execute, 0).unwrap();
        let secs = t.elapsed().as_secs_f64() / n as f64;
        let same = clear.iter().zip(&exec).filter(|(a, b)| a == b).count();
        let same_sim = clear.iter().zip(&sim).filter(|(a, b)| a == b).count();
        let pc = fhe.decode(&clear).unwrap();
        let pe = fhe.decode(&exec).unwrap();
        let same_label = pc.iter().zip(&pe).filter(|(a, b)| a.value == b.value).count();
        println!(
            "execute {secs:.3} s/sample; outputs equal {same}/{n} (simulate {same_sim}/{n}); labels equal {same_label}/{n}"
        );
    }
}
