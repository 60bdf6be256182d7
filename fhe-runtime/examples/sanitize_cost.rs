#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
//! What output sanitization costs the server per output element, by large LWE dimension,
//! on a linear circuit of breast_cancer's shape (30 features of 8 bits, 8-bit weights):
//! the public key (size, time to make and to check and expand), `run` per sample, and
//! `sanitize` per output element, without and with sanitization.
//!
//! ```text
//! cargo run --release -p fheml-fhe-runtime --example sanitize_cost
//! ```

use std::time::Instant;

use fheml_circuits::{CircuitBuilder, Interval};
use fheml_fhe_runtime::{CompiledCircuit, FheConfig, ParameterSetId, Sanitization};
use ndarray::Array2;

const FEATURES: usize = 30;
const BATCH: usize = 64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn circuit() -> fheml_circuits::Circuit {
    let weights = Array2::from_shape_fn((FEATURES, 1), |(i, _)| ((i as i64 * 37) % 255) - 127);
    let mut b = CircuitBuilder::new();
    let x = b.input(&[FEATURES], Interval::new(0, 255).unwrap());
    let y = b.matmul(x, weights).unwrap();
    b.output_real(y, 1).unwrap();
    b.build().unwrap()
}

fn measure(label: &str, config: &FheConfig) {
    let compiled = CompiledCircuit::compile(circuit(), config).unwrap();
    let report = compiled.report();
    let spec = compiled.client_spec();
    let (client_key, eval_key) = spec.keygen();
    let batch: Vec<Vec<Vec<i64>>> =
        (0..BATCH).map(|s| vec![(0..FEATURES).map(|i| ((i * 7 + s * 61) % 256) as i64).collect()]).collect();
    let inputs = spec.encrypt(&client_key, &batch).unwrap();
    let runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let _ = compiled.run(&eval_key, &inputs).unwrap();
            start.elapsed().as_secs_f64() / BATCH as f64
        })
        .collect();
    let mut line = format!(
        "{label:<34} k·N {:>5}  run {:>7.3} ms/sample  error {:.3} steps",
        report.ciphertext_dimension,
        median(runs) * 1e3,
        report.outputs[0].error_std
    );
    if spec.sanitized {
        let start = Instant::now();
        let public = spec.public_key(&client_key).unwrap();
        let make = start.elapsed().as_secs_f64();
        let bytes = public.to_bytes().unwrap();
        let start = Instant::now();
        let sanitizer = compiled
            .sanitizer(&fheml_fhe_runtime::PublicKey::from_bytes(&bytes, &compiled.fingerprint()).unwrap())
            .unwrap();
        let check = start.elapsed().as_secs_f64();
        let per_element: Vec<f64> = (0..5)
            .map(|_| {
                let mut answer = compiled.run(&eval_key, &inputs).unwrap();
                let start = Instant::now();
                compiled.sanitize(&sanitizer, &mut answer).unwrap();
                start.elapsed().as_secs_f64() / BATCH as f64
            })
            .collect();
        let answer = compiled.run_with(&eval_key, &inputs, Sanitization::On(&sanitizer)).unwrap();
        let got = spec.decrypt(&client_key, &answer).unwrap();
        let clear = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
        let off = got.iter().zip(&clear).filter(|(g, c)| g != c).count();
        line += &format!(
            "  sanitize {:>6.3} ms/element  hiding {:.1} bits  public key {} bytes (make {:.1} ms, check+expand {:.2} ms)  {off}/{BATCH} one unit off",
            median(per_element) * 1e3,
            report.outputs[0].sanitize_bits.unwrap_or(f64::NAN),
            bytes.len(),
            make * 1e3,
            check * 1e3
        );
    }
    println!("{line}");
}

fn main() {
    println!("threads {}, batch {BATCH}, {FEATURES} features", rayon::current_num_threads());
    measure("plain (planner's choice)", &FheConfig::default());
    measure("sanitized (planner's choice)", &FheConfig::params().sanitize(true).check().unwrap());
    // k·N = 2048 fits this circuit only at a lower hiding.
    let config = FheConfig::params().candidates(&[ParameterSetId::M2C2P40]).sanitize(true).sanitize_bits(8);
    measure("sanitized on M2C2P40, 8 bits asked", &config.check().unwrap());
    for id in [ParameterSetId::G5C0P128, ParameterSetId::M3C3P40, ParameterSetId::G5C2P128] {
        let config = FheConfig::params().candidates(&[id]).sanitize(true).check().unwrap();
        measure(&format!("sanitized on {}", id.set().name.replace("_KS_PBS", "")), &config);
    }
}
