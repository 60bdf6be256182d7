#![allow(missing_docs, clippy::expect_used)]
//! Per-sample Execute latency of LogisticRegression on breast cancer: quantize, encrypt,
//! evaluate on ciphertexts, decrypt (Concrete ML 1.9.0: 6.5 ms on the reference machine).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fheml_fhe_runtime::{FheConfig, FheModel};
use fheml_models_linear::{LinearModel, LinearModelKind, LinearParams};
use ndarray::{Array1, Array2};

fn bench(c: &mut Criterion) {
    let d = smartcore::dataset::breast_cancer::load_dataset();
    let x = Array2::from_shape_vec((d.num_samples, d.num_features), d.data.into_iter().map(f64::from).collect())
        .expect("dataset shape");
    let y: Array1<f64> = d.target.into_iter().map(f64::from).collect();
    let model = LinearModel::fit(LinearParams::new(LinearModelKind::Logistic), x.view(), y.view()).expect("fit");
    let fhe = FheModel::compile(model.compile(x.view()).expect("compile"), &FheConfig::default()).expect("fhe");
    let (client_key, eval_key) = fhe.keys();
    let client = fhe.compiled().client_spec();
    let row = x.row(0).to_vec();
    c.bench_function("logistic_breast_cancer/execute_per_sample", |b| {
        b.iter(|| {
            let inputs = vec![fhe.model().encode(black_box(&row)).expect("quantize")];
            let query = client.encrypt(client_key, &inputs).expect("encrypt");
            let answer = fhe.compiled().run(eval_key, &query).expect("run");
            let outputs = client.decrypt(client_key, &answer).expect("decrypt");
            fhe.model().decode(&outputs[0]).expect("decode")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
