#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::print_stdout)]
//! What output sanitization costs on the benchmark's models (docs/privacy.md).
//!
//! Trains each model on breast_cancer (diabetes for `linear`), compiles it without and with
//! sanitization (p_error 2^-40, default `sanitize_bits`), and prints for both: the
//! parameter set, the bootstraps and the planner's time estimate, the compressed
//! evaluation key, each output's error and the hiding reached. With `--execute` it also
//! generates keys and times one batch: the server's `run`, then `sanitize` alone (per
//! output element), and the public key's size.
//!
//! ```text
//! cargo run --release -p fheml-cli --example model_sanitize_cost -- [logistic,linear,tree,gbdt,mlp] [--execute] [--batch 8]
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use fheml_fhe_runtime::{CompiledCircuit, FheConfig, FheModel, Sanitization};
use fheml_models_linear::{LinearModel, LinearModelKind, LinearParams};
use fheml_models_nn::{MlpParams, NnTask};
use fheml_models_tree::{TaskKind, TreeModel, TreeModelKind, TreeParams};
use ndarray::{Array1, Array2};

fn read_csv(path: &Path) -> (Array2<f64>, Array1<f64>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|c| c.trim().parse::<f64>().expect("number")).collect())
        .collect();
    let cols = rows[0].len();
    let x = Array2::from_shape_fn((rows.len(), cols - 1), |(r, c)| rows[r][c]);
    let y = Array1::from_iter(rows.iter().map(|r| r[cols - 1]));
    (x, y)
}

fn compile(model: &str, data: &Path, config: &FheConfig) -> Result<(FheModel, Array2<f64>), String> {
    let set = if model == "linear" { "diabetes" } else { "breast_cancer" };
    let (x, y) = read_csv(&data.join(format!("{set}_train.csv")));
    let (xt, _) = read_csv(&data.join(format!("{set}_test.csv")));
    let circuit = match model {
        "logistic" | "linear" => {
            let m = LinearModel::fit(LinearParams::new(LinearModelKind::from_name(model).unwrap()), x.view(), y.view())
                .unwrap();
            m.compile(x.view()).unwrap()
        }
        "tree" | "gbdt" => {
            let (kind, settings): (_, &[(&str, &str)]) = match model {
                "gbdt" => (TreeModelKind::Gbdt, &[("n_estimators", "20"), ("max_depth", "3")]),
                _ => (TreeModelKind::Tree, &[("max_depth", "5")]),
            };
            let mut params = TreeParams::new(kind, TaskKind::Classification).set("n_bits", "6").unwrap();
            for (k, v) in settings {
                params = params.set(k, v).unwrap();
            }
            TreeModel::fit(&params.check().unwrap(), x.view(), y.view()).unwrap().compile(x.view()).unwrap()
        }
        "mlp" => {
            let options = vec![("n_bits", "3"), ("w_bits", "3"), ("a_bits", "3")];
            let params = MlpParams::from_options(NnTask::Classification, options).unwrap();
            params.fit(x.view(), y.view()).unwrap().compile().unwrap()
        }
        other => panic!("unknown model {other}"),
    };
    FheModel::compile(circuit, config).map(|m| (m, xt)).map_err(|e| e.to_string())
}

fn describe(label: &str, compiled: &CompiledCircuit) {
    let r = compiled.report();
    let outputs: Vec<String> = r
        .outputs
        .iter()
        .map(|o| {
            let hiding = o.sanitize_bits.map(|b| format!(" hiding {b:.1} bits")).unwrap_or_default();
            if o.exact {
                format!("exact p_off 2^{:.1}{hiding}", o.p_off.log2())
            } else {
                format!("error {:.3} steps{hiding}", o.error_std / o.step as f64)
            }
        })
        .collect();
    println!(
        "  {label:<11} {} (k·N {}), {} PBS, est. {:.3} s/sample, eval key {:.1} MiB; {}",
        r.parameter_set,
        r.ciphertext_dimension,
        r.bootstraps,
        r.expected_seconds,
        r.compressed_key_bytes as f64 / (1 << 20) as f64,
        outputs.join("; ")
    );
}

fn execute(label: &str, model: &FheModel, xt: &Array2<f64>, batch: usize) {
    let compiled = model.compiled();
    let spec = compiled.client_spec();
    let rows = model.encode(xt.slice(ndarray::s![..batch.min(xt.nrows()), ..])).unwrap();
    let start = Instant::now();
    let (client_key, eval_key) = spec.keygen();
    let keygen = start.elapsed().as_secs_f64();
    let inputs = spec.encrypt(&client_key, &rows).unwrap();
    let start = Instant::now();
    let mut answer = compiled.run(&eval_key, &inputs).unwrap();
    let run = start.elapsed().as_secs_f64();
    let elements = rows.len() * spec.outputs.iter().sum::<usize>();
    let mut line = format!("  {label:<11} keygen {keygen:.2} s, run {:.2} ms/sample", run * 1e3 / rows.len() as f64);
    if spec.sanitized {
        let start = Instant::now();
        let public = spec.public_key(&client_key).unwrap();
        let public_key = start.elapsed().as_secs_f64();
        let bytes = public.to_bytes().unwrap().len();
        let start = Instant::now();
        let sanitizer = compiled.sanitizer(&public).unwrap();
        let expand = start.elapsed().as_secs_f64();
        let start = Instant::now();
        compiled.sanitize(&sanitizer, &mut answer).unwrap();
        let sanitize = start.elapsed().as_secs_f64();
        // The whole server path as a server runs it, for the record.
        let _ = compiled.run_with(&eval_key, &inputs, Sanitization::On(&sanitizer)).unwrap();
        line += &format!(
            ", sanitize {:.3} ms/output element ({elements} elements), public key {bytes} bytes (made in {:.1} ms, checked and expanded in {:.1} ms)",
            sanitize * 1e3 / elements as f64,
            public_key * 1e3,
            expand * 1e3
        );
    }
    let got = spec.decrypt(&client_key, &answer).unwrap();
    let clear = compiled.circuit().evaluate_clear_batch(&rows).unwrap();
    let off: Vec<i64> = got
        .iter()
        .zip(&clear)
        .flat_map(|(g, c)| g.iter().flatten().zip(c.iter().flatten()).map(|(a, b)| a - b))
        .collect();
    let labels_equal = model
        .decode(&got)
        .unwrap()
        .iter()
        .zip(model.decode(&clear).unwrap())
        .filter(|(a, b)| a.value == b.value)
        .count();
    line += &format!(
        "; integer error max {} over {} elements, predictions equal to Clear {labels_equal}/{}",
        off.iter().map(|v| v.abs()).max().unwrap_or(0),
        off.len(),
        rows.len()
    );
    println!("{line}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut models = vec!["logistic".to_string(), "linear".to_string(), "tree".into(), "gbdt".into(), "mlp".into()];
    let (mut run, mut batch, mut data) = (false, 8usize, PathBuf::from("../shared/datasets"));
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--execute" => run = true,
            "--batch" => batch = it.next().unwrap().parse().unwrap(),
            "--data" => data = PathBuf::from(it.next().unwrap()),
            list => models = list.split(',').map(str::to_string).collect(),
        }
    }
    println!("threads {}, p_error 2^-40", rayon::current_num_threads());
    for model in &models {
        println!("{model}");
        let mut configs: Vec<(String, FheConfig)> = vec![
            ("plain".to_string(), FheConfig::default()),
            ("sanitized".to_string(), FheConfig::params().sanitize(true).check().unwrap()),
        ];
        let mut i = 0;
        while i < configs.len() {
            let (label, config) = configs[i].clone();
            match compile(model, &data, &config) {
                Ok((fhe, xt)) => {
                    describe(&label, fhe.compiled());
                    if run {
                        execute(&label, &fhe, &xt, batch);
                    }
                }
                Err(e) => {
                    println!("  {label:<11} {e}");
                    // Then the hiding this model can reach, and at what cost.
                    let reached = e
                        .split("reaches ")
                        .nth(1)
                        .and_then(|r| r.split(' ').next())
                        .and_then(|b| b.parse::<f64>().ok());
                    if let Some(bits) = reached.filter(|b| *b >= 0.0) {
                        let bits = bits.floor() as u32;
                        let config = FheConfig::params().sanitize(true).sanitize_bits(bits).check().unwrap();
                        configs.push((format!("san. {bits} b"), config));
                    }
                }
            }
            i += 1;
        }
    }
}
