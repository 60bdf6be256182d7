#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used, clippy::panic, clippy::print_stdout)]
//! Execute-mode overhead: how close `CompiledCircuit::run` comes to its bootstraps alone.
//!
//! Trains the benchmark's models on breast_cancer (`../shared/datasets`, as `cargo xtask
//! bench` does), compiles them at p_error 2^-40, generates keys once, then times `run` on
//! one sample and on small batches, and one keyswitch + bootstrap on the same parameter set
//! (tfhe-rs shortint, one thread; and the throughput of all threads). Prints
//! `run / (bootstraps × single bootstrap / threads)`.
//!
//! ```text
//! cargo run --release -p fheml-cli --example overhead -- [gbdt,forest,mlp] [--reps N] [--batches 1,2,4]
//! ```
//!
//! Compiled circuits and encoded rows are cached in `$TMPDIR/fheml-overhead/`, so that
//! `perf record` of a later run sees (almost) only the server side.

use std::path::{Path, PathBuf};
use std::time::Instant;

use fheml_fhe_runtime::{CompiledCircuit, FheConfig, FheModel};
use fheml_models_nn::{MlpParams, NnTask};
use fheml_models_tree::{TaskKind, TreeModel, TreeModelKind, TreeParams};
use ndarray::{Array1, Array2};
use rayon::prelude::*;

fn read_csv(path: &Path) -> (Array2<f64>, Array1<f64>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        rows.push(line.split(',').map(|c| c.trim().parse::<f64>().expect("number")).collect());
    }
    let cols = rows[0].len();
    let x = Array2::from_shape_fn((rows.len(), cols - 1), |(r, c)| rows[r][c]);
    let y = Array1::from_iter(rows.iter().map(|r| r[cols - 1]));
    (x, y)
}

/// The compiled circuit and the encoded test rows of `model`, trained or from the cache.
fn prepare(model: &str, data: &Path, cache: &Path) -> (CompiledCircuit, Vec<Vec<Vec<i64>>>) {
    let circuit_file = cache.join(format!("{model}.circuit"));
    let rows_file = cache.join(format!("{model}.rows.json"));
    if let (Ok(bytes), Ok(rows)) = (std::fs::read(&circuit_file), std::fs::read(&rows_file)) {
        return (CompiledCircuit::from_bytes(&bytes).expect("cached circuit"), serde_json::from_slice(&rows).unwrap());
    }
    let (x, y) = read_csv(&data.join("breast_cancer_train.csv"));
    let (xt, _) = read_csv(&data.join("breast_cancer_test.csv"));
    let config = FheConfig::default();
    let start = Instant::now();
    let fhe = match model {
        "gbdt" | "forest" | "tree" => {
            let (kind, settings): (_, &[(&str, &str)]) = match model {
                "gbdt" => (TreeModelKind::Gbdt, &[("n_estimators", "20"), ("max_depth", "3")]),
                "forest" => (TreeModelKind::Forest, &[("n_estimators", "20"), ("max_depth", "4")]),
                _ => (TreeModelKind::Tree, &[("max_depth", "5")]),
            };
            let mut params = TreeParams::new(kind, TaskKind::Classification).set("n_bits", "6").unwrap();
            for (k, v) in settings {
                params = params.set(k, v).unwrap();
            }
            let m = TreeModel::fit(&params.check().unwrap(), x.view(), y.view()).unwrap();
            FheModel::compile(m.compile(x.view()).unwrap(), &config).unwrap()
        }
        "mlp" | "mlp120" => {
            let mut options = vec![("n_bits", "3"), ("w_bits", "3"), ("a_bits", "3")];
            if model == "mlp120" {
                options.push(("hidden", "120,120"));
            }
            let params = MlpParams::from_options(NnTask::Classification, options).unwrap();
            let m = params.fit(x.view(), y.view()).unwrap();
            FheModel::compile(m.compile().unwrap(), &config).unwrap()
        }
        other => panic!("unknown model {other}"),
    };
    eprintln!("{model}: trained and compiled in {:.1?}", start.elapsed());
    let rows = fhe.encode(xt.view()).unwrap();
    let compiled = fhe.compiled().clone();
    std::fs::create_dir_all(cache).unwrap();
    std::fs::write(&circuit_file, compiled.to_bytes().unwrap()).unwrap();
    std::fs::write(&rows_file, serde_json::to_vec(&rows).unwrap()).unwrap();
    (compiled, rows)
}

/// With `FHEML_PERF_CTL=<fifo>` (`perf record -D -1 --control fifo:<fifo>`), profiles only the
/// timed runs.
fn perf_control(command: &str) {
    if let Ok(path) = std::env::var("FHEML_PERF_CTL") {
        let _ = std::fs::OpenOptions::new().write(true).open(path).and_then(|mut f| {
            use std::io::Write;
            f.write_all(format!("{command}\n").as_bytes())
        });
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds this process's threads have run and waited runnable on a run queue (from
/// `/proc/self/task/*/schedstat`): on a shared machine, `wall × threads − run − wait` is the
/// time our threads sat idle (our scheduling), while `wait` is time other processes took.
fn schedstat() -> (f64, f64) {
    let mut total = (0u64, 0u64);
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            let mut f = text.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
            total.0 += f.next().unwrap_or(0);
            total.1 += f.next().unwrap_or(0);
        }
    }
    (total.0 as f64 * 1e-9, total.1 as f64 * 1e-9)
}

/// Run time of the calling thread, seconds.
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .map_or(f64::NAN, |ns| ns as f64 * 1e-9)
}

/// Wall, run and run-queue wait seconds of `f`.
fn measure(f: impl FnOnce()) -> (f64, f64, f64) {
    let (run0, wait0) = schedstat();
    let start = Instant::now();
    f();
    let wall = start.elapsed().as_secs_f64();
    let (run1, wait1) = schedstat();
    (wall, run1 - run0, wait1 - wait0)
}

/// Keyswitch + bootstrap through tfhe-rs shortint on `params`, the fastest of `reps` (the
/// least disturbed by other processes): (single-thread wall seconds, its run seconds, wall
/// seconds per bootstrap with every thread busy).
fn bootstrap_reference(params: tfhe::shortint::ClassicPBSParameters, reps: usize) -> (f64, f64, f64) {
    let client = tfhe::shortint::ClientKey::new(params);
    let server = tfhe::shortint::ServerKey::new(&client);
    let lut = server.generate_lookup_table(|x| x ^ 1);
    let mut ct = client.encrypt(1);
    server.apply_lookup_table_assign(&mut ct, &lut); // warm the thread-local buffers
    let (walls, cpus): (Vec<f64>, Vec<f64>) = (0..reps)
        .map(|_| {
            let (start, cpu) = (Instant::now(), thread_cpu());
            server.apply_lookup_table_assign(&mut ct, &lut);
            (start.elapsed().as_secs_f64(), thread_cpu() - cpu)
        })
        .unzip();
    let threads = rayon::current_num_threads();
    let count = 4 * threads;
    let parallel = (0..reps / 2)
        .map(|_| {
            let cts: Vec<_> = (0..count).map(|i| client.encrypt(i as u64 % 2)).collect();
            let start = Instant::now();
            cts.into_par_iter().for_each(|mut c| server.apply_lookup_table_assign(&mut c, &lut));
            start.elapsed().as_secs_f64() / count as f64
        })
        .fold(f64::INFINITY, f64::min);
    (walls.iter().copied().fold(f64::INFINITY, f64::min), median(cpus), parallel)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut models = vec!["gbdt".to_string(), "forest".to_string(), "mlp".to_string()];
    let mut reps = 5usize;
    let mut batches = vec![1usize, 2, 4];
    let mut data = PathBuf::from("../shared/datasets");
    let mut only_run = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--reps" => reps = it.next().unwrap().parse().unwrap(),
            "--batches" => batches = it.next().unwrap().split(',').map(|b| b.parse().unwrap()).collect(),
            "--data" => data = PathBuf::from(it.next().unwrap()),
            // Skip the bootstrap reference (for profiling the run alone).
            "--only-run" => only_run = true,
            list => models = list.split(',').map(str::to_string).collect(),
        }
    }
    let cache = std::env::temp_dir().join("fheml-overhead");
    let threads = rayon::current_num_threads();
    println!("threads {threads}, reps {reps}");
    println!(
        "{:<7} {:<50} {:>4} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6}",
        "model",
        "parameters",
        "PBS",
        "batch",
        "wall min",
        "wall med",
        "run/s",
        "rqwait/s",
        "PBS 1thr",
        "PBS nthr",
        "ratio",
        "ratio*",
        "cpu",
        "idle"
    );
    for model in &models {
        let (compiled, rows) = prepare(model, &data, &cache);
        let report = compiled.report();
        let nodes: Vec<String> = compiled
            .circuit()
            .nodes()
            .iter()
            .map(|n| {
                let operands: Vec<String> = n.op.operands().iter().map(|o| o.0.to_string()).collect();
                format!("{}({})[{}]", n.op.name(), operands.join(","), n.len())
            })
            .collect();
        eprintln!("{model}: {}", nodes.join(" "));
        let client = compiled.client_spec();
        let (ck, ek) = compiled.keygen();
        let (single, single_cpu, parallel) = if only_run {
            (f64::NAN, f64::NAN, f64::NAN)
        } else {
            bootstrap_reference(client.parameter_set.set().params, 20)
        };
        for &batch in &batches {
            let inputs: Vec<_> = rows.iter().cycle().take(batch).cloned().collect();
            let start = Instant::now();
            let query = client.encrypt(&ck, &inputs).unwrap();
            let encrypt = start.elapsed().as_secs_f64();
            let expected: Vec<_> = inputs.iter().map(|s| compiled.circuit().evaluate_clear(s).unwrap()).collect();
            let answer = compiled.run(&ek, &query).unwrap(); // warm-up, and check
            let start = Instant::now();
            let decrypted = client.decrypt(&ck, &answer).unwrap();
            eprintln!(
                "{model}: client side per sample: encrypt {:.2} ms, decrypt {:.3} ms",
                encrypt * 1e3 / batch as f64,
                start.elapsed().as_secs_f64() * 1e3 / batch as f64
            );
            let differ = decrypted.iter().zip(&expected).filter(|(a, b)| a != b).count();
            // Approximate roundings may come out one step off (the report's expectation).
            assert!(
                differ == 0 || report.rounding_deviations > 0.0,
                "{model}: Execute differs from Clear on {differ} samples"
            );
            if differ > 0 {
                eprintln!("{model}: {differ} of {batch} samples off by an approximate rounding");
            }
            perf_control("enable");
            let runs: Vec<(f64, f64, f64)> = (0..reps)
                .map(|_| {
                    let (wall, run, wait) = measure(|| {
                        std::hint::black_box(compiled.run(&ek, &query).unwrap());
                    });
                    let b = batch as f64;
                    (wall / b, run / b, wait / b)
                })
                .collect();
            perf_control("disable");
            let wall_min = runs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
            let wall = median(runs.iter().map(|r| r.0).collect());
            let run = median(runs.iter().map(|r| r.1).collect());
            let wait = median(runs.iter().map(|r| r.2).collect());
            let pbs = report.bootstraps as f64;
            println!(
                "{:<7} {:<50} {:>4} {:>5} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>6.2}ms {:>6.2}ms {:>6.3} {:>6.3} {:>6.3} {:>5.1}%",
                model,
                report.parameter_set,
                report.bootstraps,
                batch,
                wall_min,
                wall,
                run,
                wait,
                single * 1e3,
                parallel * 1e3,
                wall_min / (pbs * single / threads as f64),
                wall_min / (pbs * parallel),
                run / (pbs * single_cpu),
                100.0 * (1.0 - (run + wait) / (wall * threads as f64)),
            );
        }
    }
    println!(
        "per sample: wall min/med over reps; run, rqwait = CPU time running / waiting for a CPU (median);\n\
         PBS 1thr = fastest single-thread keyswitch+bootstrap (tfhe-rs shortint); PBS nthr = fastest wall per \
         bootstrap with all threads busy;\n\
         ratio = wall min / (PBS × PBS 1thr / threads) (the target); ratio* = wall min / (PBS × PBS nthr);\n\
         cpu = run / (PBS × median PBS run): work besides bootstrapping; idle = share of threads × wall \
         neither running nor waiting for a CPU: scheduling loss"
    );
}
