//! `fheml`: train, evaluate, deploy and serve machine-learning models under FHE.

mod client_part;
mod data;
mod error;
mod eval;
mod http_client;
mod model_file;
mod quickstart;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fheml_fhe_runtime::{
    ClientKey, CompressedEvaluationKey, EncryptedInputs, EncryptedOutputs, FheConfig, Mode, limits,
};

use crate::data::{TargetColumn, read_csv};
use crate::error::{CliError, Result};
use crate::model_file::{SavedModel, TrainOptions, read_limited, write_atomically};

#[derive(Parser)]
#[command(name = "fheml", version, about = "Machine-learning models in fully homomorphic encryption")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// On a failure to find parameters, list every candidate set and why it failed.
    #[arg(long, global = true)]
    verbose: bool,
}

/// How a model is compiled for TFHE (shared by every command that compiles).
#[derive(clap::Args, Debug, Clone)]
struct CompileArgs {
    /// Failure probability per table lookup (and per exactly decrypted output).
    #[arg(long, default_value_t = 2f64.powi(-40))]
    p_error: f64,
    /// Parameter sets: `optimized` (generated for the circuit, vetted sets as candidates) or
    /// `vetted` (tfhe-rs's vetted sets only).
    #[arg(long = "params", default_value = "optimized")]
    params: String,
    /// Error budget of real-valued outputs (scores, logits, regression values): standard
    /// deviation of the decrypted value, in steps of the output.
    #[arg(long, default_value_t = fheml_fhe_runtime::plan::DEFAULT_OUTPUT_STD)]
    output_std: f64,
    /// Decrypt every output exactly, real-valued ones included.
    #[arg(long)]
    exact_outputs: bool,
}

impl CompileArgs {
    fn config(&self) -> Result<FheConfig> {
        Ok(FheConfig::params()
            .p_error(self.p_error)
            .parameter_mode(self.params.parse()?)
            .output_std(self.output_std)
            .exact_outputs(self.exact_outputs)
            .check()?)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train, compile and run encrypted inference on an embedded dataset.
    Quickstart,
    /// Train a model on a CSV file (header row; target last unless --target) and compile it.
    ///
    /// Models: linear, ridge, lasso, elasticnet, logistic, linear-svc, linear-svr,
    /// sgd-classifier, sgd-regressor, poisson, gamma, tweedie (linear); tree, forest, gbdt
    /// (trees); mlp (a neural network trained with quantization-aware training).
    ///
    /// Example: fheml train --model mlp --data train.csv --set hidden=32,16 --set epochs=200 --out net.fheml
    Train {
        /// Model name: a linear model, tree, forest, gbdt or mlp (list above).
        #[arg(long)]
        model: String,
        /// Training CSV.
        #[arg(long)]
        data: PathBuf,
        /// Target column name (default: the last column).
        #[arg(long, visible_alias = "target-column")]
        target: Option<String>,
        /// classification or regression (default: classification when the target holds few
        /// distinct integers).
        #[arg(long)]
        task: Option<String>,
        /// Input quantization bits (default: per model; for mlp, its `n_bits`, default 3).
        #[arg(long)]
        n_bits: Option<u8>,
        /// Model hyperparameter, `key=value` (repeatable, or comma-separated). mlp: hidden (layer sizes, e.g. 32,16),
        /// activation (relu, tanh, sigmoid, leaky_relu, elu, silu, softplus, relu6, identity),
        /// n_bits, w_bits, a_bits, accumulator_bits (or none), rounding (approximate or exact),
        /// epochs, learning_rate (lr), batch_size, seed. Trees: max_depth, n_estimators,
        /// learning_rate, ...; linear models: alpha, ...
        #[arg(long = "set", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        #[command(flatten)]
        compile: CompileArgs,
        /// Output model file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Score a model on a CSV file in a mode.
    Eval {
        /// Model file.
        #[arg(long)]
        model: PathBuf,
        /// Test CSV.
        #[arg(long)]
        data: PathBuf,
        /// Target column name (default: the last column).
        #[arg(long, visible_alias = "target-column")]
        target: Option<String>,
        /// clear, simulate or execute.
        #[arg(long, default_value = "clear")]
        mode: String,
        /// Evaluate the mode on the first N rows only.
        #[arg(long)]
        limit: Option<usize>,
        /// Recompile for this failure probability per lookup (default: the one trained with).
        #[arg(long)]
        p_error: Option<f64>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Describe a compiled model: circuit, bit widths, bootstraps, parameters, key size, latency.
    Inspect {
        /// Model file.
        model: PathBuf,
    },
    /// Generate a client key and a (compressed) evaluation key.
    Keygen {
        /// Model file.
        #[arg(long)]
        model: PathBuf,
        /// Directory for client.key and eval.key.
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// Client: quantize and encrypt the rows of a CSV file (features only, or with a target column to ignore).
    Encrypt {
        /// Model file.
        #[arg(long)]
        model: PathBuf,
        /// Client key.
        #[arg(long)]
        key: PathBuf,
        /// CSV with the model's feature columns (a trailing target column is ignored).
        #[arg(long)]
        data: PathBuf,
        /// Encrypted query file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Server: evaluate encrypted inputs with the evaluation key only.
    Run {
        /// Model file.
        #[arg(long)]
        model: PathBuf,
        /// Evaluation key.
        #[arg(long)]
        eval_key: PathBuf,
        /// Encrypted query.
        #[arg(long = "in")]
        input: PathBuf,
        /// Encrypted answer file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Client: decrypt an answer and print predictions.
    Decrypt {
        /// Model file.
        #[arg(long)]
        model: PathBuf,
        /// Client key.
        #[arg(long)]
        key: PathBuf,
        /// Encrypted answer.
        #[arg(long = "in")]
        input: PathBuf,
        /// Print JSON instead of CSV.
        #[arg(long)]
        json: bool,
    },
    /// Serve compiled models over HTTP (each under its file stem).
    Serve {
        /// Model files (repeatable).
        #[arg(long = "model", required = true)]
        models: Vec<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Directory for uploaded evaluation keys.
        #[arg(long, default_value = "fheml-keys")]
        key_dir: PathBuf,
        /// Largest accepted request body, in bytes.
        #[arg(long, default_value_t = serve::DEFAULT_BODY_LIMIT)]
        max_body_bytes: usize,
    },
    /// Encrypted prediction through a running `fheml serve`.
    Client {
        /// Server URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Served model name (its file stem).
        #[arg(long)]
        name: String,
        /// CSV with the model's features (a trailing target column is ignored).
        #[arg(long)]
        data: PathBuf,
        /// Where the client keeps its keys between runs.
        #[arg(long)]
        key_dir: Option<PathBuf>,
        /// Print JSON instead of CSV.
        #[arg(long)]
        json: bool,
    },
    /// Import an XGBoost JSON model (`save_model("model.json")`), calibrate and compile it.
    ImportXgboost {
        /// The XGBoost JSON model.
        #[arg(long)]
        json: PathBuf,
        /// Calibration CSV with the model's features (a trailing target column is ignored).
        #[arg(long)]
        calibration: PathBuf,
        /// Input quantization bits.
        #[arg(long)]
        n_bits: Option<u8>,
        #[command(flatten)]
        compile: CompileArgs,
        /// Output model file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a trained model from an ONNX file, calibrate it on a CSV file and compile it:
    /// a neural network (post-training quantization), or a tree ensemble of the ai.onnx.ml
    /// domain (scikit-learn trees, forests, gradient boosting via skl2onnx; LightGBM and
    /// XGBoost via onnxmltools), which becomes fheml's tree model.
    ///
    /// The calibration rows are the CSV's feature columns (read as `train` reads them: the
    /// target is the last column unless --target or --no-target). A network classifier's
    /// labels are the sorted distinct values of the target column, one per network output, in
    /// output order; a tree ensemble's labels are those the ONNX file holds.
    /// Network operators: Gemm, MatMul, Conv, AveragePool, GlobalAveragePool,
    /// BatchNormalization, Add/Sub/Mul/Div by a constant, Relu, Sigmoid, Tanh, LeakyRelu, Elu,
    /// Softplus, Flatten, Reshape, Identity, Dropout, a final Softmax/LogSoftmax. ai.onnx.ml:
    /// TreeEnsembleClassifier and TreeEnsembleRegressor, with Cast, Identity, ZipMap around
    /// them. Anything else is refused naming the operator and the node.
    ///
    /// Examples: fheml import-onnx model.onnx --data train.csv --n-bits 8 --set w_bits=4 --out net.fheml
    ///           fheml import-onnx forest.onnx --data train.csv --out forest.fheml
    ImportOnnx {
        /// The ONNX model.
        #[arg(value_name = "MODEL.onnx", required_unless_present = "onnx_flag")]
        onnx: Option<PathBuf>,
        /// The ONNX model (instead of the positional argument).
        #[arg(long = "onnx", value_name = "MODEL.onnx", conflicts_with = "onnx")]
        onnx_flag: Option<PathBuf>,
        /// Calibration CSV: the network's inputs as columns, then the target column.
        #[arg(long)]
        data: PathBuf,
        /// Target column name (default: the last column).
        #[arg(long, visible_alias = "target-column")]
        target: Option<String>,
        /// The CSV has no target column (classes are then 0..outputs).
        #[arg(long, conflicts_with = "target")]
        no_target: bool,
        /// classification or regression (default: from the target column; without one,
        /// classification when the network has several outputs).
        #[arg(long)]
        task: Option<String>,
        /// Input quantization bits (default 8 for a network, 6 for a tree ensemble, as
        /// Concrete ML).
        #[arg(long)]
        n_bits: Option<u8>,
        /// Networks: `w_bits` (default 3), `a_bits` (3), `accumulator_bits` (4, or `none`),
        /// `rounding` (`approximate` or `exact`). Tree ensembles: `leaf_bits` (default n_bits),
        /// `sum_in_fhe` (true/false). As `key=value` (repeatable, or comma-separated).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        #[command(flatten)]
        compile: CompileArgs,
        /// Output model file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write an embedded dataset as train/test CSV files (80/20 split).
    Dataset {
        /// breast_cancer, iris or diabetes.
        #[arg(long)]
        name: String,
        /// Output directory.
        #[arg(long)]
        out_dir: PathBuf,
    },
}

fn print_predictions(predictions: &[fheml_circuits::Prediction], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(predictions).map_err(|e| CliError::Usage(e.to_string()))?);
    } else {
        println!("prediction");
        for p in predictions {
            println!("{}", p.value);
        }
    }
    Ok(())
}

/// `key=value` options; one `--set` may hold several, comma-separated (`w_bits=4,a_bits=2`):
/// a comma starts a new option only when `key=` follows it, so `hidden=32,16` stays one.
fn parse_settings(settings: &[String]) -> Result<Vec<(String, String)>> {
    let mut options = Vec::new();
    for s in settings {
        let mut parts: Vec<String> = Vec::new();
        for piece in s.split(',') {
            match parts.last_mut() {
                Some(last) if !piece.contains('=') => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => parts.push(piece.to_string()),
            }
        }
        for part in parts {
            match part.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => options.push((k.trim().to_string(), v.trim().to_string())),
                _ => return Err(CliError::Usage(format!("--set {s}: expected key=value"))),
            }
        }
    }
    Ok(options)
}

fn target_column(target: &Option<String>) -> TargetColumn<'_> {
    target.as_deref().map_or(TargetColumn::Last, TargetColumn::Named)
}

/// Reads rows to encrypt: the model's `n` features, with an optional trailing target.
fn read_features(path: &Path, feature_names: &[String]) -> Result<ndarray::Array2<f64>> {
    let table = read_csv(path, TargetColumn::None)?;
    let n = feature_names.len();
    match table.x.ncols() {
        c if c == n => Ok(table.x),
        c if c == n + 1 => Ok(table.x.slice(ndarray::s![.., ..n]).to_owned()),
        c => Err(CliError::Data {
            path: path.display().to_string(),
            detail: format!("{c} columns, the model takes {n} features ({})", feature_names.join(", ")),
        }),
    }
}

/// `inspect`'s lines for a neural network: layers with their shapes, bit widths, and the
/// training hyperparameters of a trained MLP.
fn describe_network(m: &fheml_models_nn::NnModel, saved: &SavedModel) -> Vec<(&'static str, String)> {
    use fheml_models_nn::Layer;
    let network = m.network();
    let layers: Vec<String> = network
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let name = match l {
                Layer::Activation(a) => a.name(),
                other => other.name(),
            };
            format!("{name}{:?}", network.shape_after(i))
        })
        .collect();
    let hidden: Vec<String> = network
        .layers()
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, Layer::Dense { .. } | Layer::Conv2d { .. }))
        .map(|(i, _)| network.shape_after(i).iter().product::<usize>().to_string())
        .collect();
    let input_bits: Vec<u8> = saved
        .fhe
        .model()
        .inputs
        .iter()
        .flat_map(|i| i.quantizer.quantizers().iter().map(|q| q.n_bits().get()))
        .collect();
    let (lo, hi) = (input_bits.iter().min().copied().unwrap_or(0), input_bits.iter().max().copied().unwrap_or(0));
    let q = m.settings();
    let mut lines = vec![
        ("network", layers.join(" > ")),
        (
            "layer sizes",
            format!(
                "{} inputs, hidden {}, {} outputs",
                network.n_inputs(),
                if hidden.len() > 1 { hidden[..hidden.len() - 1].join(",") } else { "none".to_string() },
                network.n_outputs()
            ),
        ),
        (
            "quantization",
            format!(
                "inputs {} bits, weights {} bits, activations {} bits, accumulators {} ({:?} rounding)",
                if lo == hi { lo.to_string() } else { format!("{lo}..{hi}") },
                q.w_bits,
                q.a_bits,
                q.accumulator_bits.map_or("not rounded".to_string(), |b| format!("rounded to {b} bits")),
                q.rounding
            ),
        ),
    ];
    match m.params() {
        Some(p) => {
            let p = p.get();
            lines.push((
                "training",
                format!(
                    "quantization-aware, {} activations, {} epochs, learning rate {}, batch size {}, seed {}",
                    p.activation.name(),
                    p.epochs,
                    p.learning_rate,
                    p.batch_size,
                    p.seed
                ),
            ));
        }
        None => lines.push(("training", "imported, post-training quantization".to_string())),
    }
    lines
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Quickstart => quickstart::run(),
        Command::Train { model, data, target, task, n_bits, settings, compile, out } => {
            let table = read_csv(&data, target_column(&target))?;
            let config = compile.config()?;
            let settings = parse_settings(&settings)?;
            let options = TrainOptions { model: &model, task: task.as_deref(), n_bits, settings: &settings, config };
            let mut saved = model_file::train(&table, &options)?;
            estimate_deviations(&mut saved, &table)?;
            saved.save(&out)?;
            let report = saved.fhe.compiled().report();
            println!(
                "trained {} on {} rows, {} features; {} bootstraps per sample; saved {}",
                saved.name,
                table.x.nrows(),
                table.x.ncols(),
                report.bootstraps,
                out.display()
            );
            Ok(())
        }
        Command::Eval { model, data, target, mode, limit, p_error, json } => {
            let mut saved = SavedModel::load(&model)?;
            if let Some(p) = p_error {
                let config = FheConfig::params().p_error(p).check()?;
                saved.fhe = fheml_fhe_runtime::FheModel::compile(saved.fhe.model().clone(), &config)?;
            }
            let mode: Mode = mode.parse()?;
            let table = read_csv(&data, target_column(&target))?;
            let y = table.y.as_ref().ok_or_else(|| CliError::Usage("evaluation data needs a target column".into()))?;
            if table.x.ncols() != saved.feature_names.len() {
                return Err(CliError::Data {
                    path: data.display().to_string(),
                    detail: format!(
                        "{} feature columns, the model takes {}",
                        table.x.ncols(),
                        saved.feature_names.len()
                    ),
                });
            }
            let report = eval::evaluate(&saved, table.x.view(), y, mode, limit, json)?;
            if json {
                println!("{}", serde_json::to_string(&report).map_err(|e| CliError::Usage(e.to_string()))?);
            } else {
                println!(
                    "{}: float {:.4}, quantized {:.4}, {} {:.4} on {} rows (agrees with clear on {:.1}%), {} bootstraps/sample, {:.2} ms/sample",
                    report.metric,
                    report.float,
                    report.quantized,
                    report.mode,
                    report.score,
                    report.rows,
                    100.0 * report.agree_with_clear,
                    report.pbs_per_sample,
                    1e3 * report.latency_s
                );
            }
            Ok(())
        }
        Command::Inspect { model } => {
            let saved = SavedModel::load(&model)?;
            let circuit = saved.fhe.compiled().circuit();
            let cost = circuit.cost();
            println!("model             {} ({} features)", saved.name, saved.feature_names.len());
            println!("circuit           {} nodes, values up to {}", circuit.nodes().len(), cost.max_value_bits);
            if let model_file::FloatModel::Nn(m) = &saved.float {
                for (label, text) in describe_network(m, &saved) {
                    println!("{label:<17} {text}");
                }
            }
            println!("fingerprint       {}", saved.fhe.compiled().fingerprint());
            println!("{}", saved.fhe.compiled().report());
            if let Some(rate) = saved.fhe.expected_deviations() {
                let what = if saved.is_classifier() { "label flips" } else { "changed predictions" };
                println!(
                    "vs Clear          {rate:.4} {what} per sample expected under encryption (simulated on the training rows)"
                );
            }
            Ok(())
        }
        Command::Keygen { model, out_dir } => {
            let saved = SavedModel::load(&model)?;
            std::fs::create_dir_all(&out_dir).map_err(|e| CliError::io(&out_dir, e))?;
            let (client_key, eval_key) = saved.fhe.compiled().client_spec().keygen_compressed();
            write_atomically(&out_dir.join("client.key"), &client_key.to_bytes()?)?;
            write_atomically(&out_dir.join("eval.key"), &eval_key.to_bytes()?)?;
            println!(
                "wrote {0}/client.key (keep it secret) and {0}/eval.key (send it to the server)",
                out_dir.display()
            );
            Ok(())
        }
        Command::Encrypt { model, key, data, out } => {
            let saved = SavedModel::load(&model)?;
            let fp = saved.fhe.compiled().fingerprint();
            let client_key = ClientKey::from_bytes(&read_limited(&key, limits::KEY_BYTES)?, &fp)?;
            let x = read_features(&data, &saved.feature_names)?;
            let inputs = saved.fhe.encode(x.view())?;
            let query = saved.fhe.compiled().client_spec().encrypt(&client_key, &inputs)?;
            write_atomically(&out, &query.to_bytes()?)?;
            println!("encrypted {} rows into {}", x.nrows(), out.display());
            Ok(())
        }
        Command::Run { model, eval_key, input, out } => {
            let saved = SavedModel::load(&model)?;
            let fp = saved.fhe.compiled().fingerprint();
            let key =
                CompressedEvaluationKey::from_bytes(&read_limited(&eval_key, limits::KEY_BYTES)?, &fp)?.decompress();
            let query = EncryptedInputs::from_bytes(&read_limited(&input, limits::CIPHERTEXT_BYTES)?, &fp)?;
            let answer = saved.fhe.compiled().run(&key, &query)?;
            write_atomically(&out, &answer.to_bytes()?)?;
            println!("evaluated {} encrypted rows into {}", query.len(), out.display());
            Ok(())
        }
        Command::Decrypt { model, key, input, json } => {
            let saved = SavedModel::load(&model)?;
            let fp = saved.fhe.compiled().fingerprint();
            let client_key = ClientKey::from_bytes(&read_limited(&key, limits::KEY_BYTES)?, &fp)?;
            let answer = EncryptedOutputs::from_bytes(&read_limited(&input, limits::CIPHERTEXT_BYTES)?, &fp)?;
            let outputs = saved.fhe.compiled().client_spec().decrypt(&client_key, &answer)?;
            print_predictions(&saved.fhe.decode(&outputs)?, json)
        }
        Command::Serve { models, addr, key_dir, max_body_bytes } => {
            let mut served = Vec::new();
            for path in &models {
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
                served.push((name, SavedModel::load(path)?));
            }
            let names: Vec<String> = served.iter().map(|(n, _)| n.clone()).collect();
            let router = serve::router(served, key_dir, max_body_bytes)?;
            let runtime = tokio::runtime::Runtime::new().map_err(|e| CliError::Usage(e.to_string()))?;
            runtime.block_on(serve::serve(
                router,
                addr,
                async {
                    let _ = tokio::signal::ctrl_c().await;
                },
                |local| eprintln!("serving {} on http://{local} (Ctrl-C to stop)", names.join(", ")),
            ))
        }
        Command::Client { url, name, data, key_dir, json } => {
            let remote = http_client::RemoteModel::connect(&url, &name, key_dir.as_deref())?;
            let x = read_features(&data, &remote.part.feature_names)?;
            print_predictions(&remote.predict(x.view())?, json)
        }
        Command::Dataset { name, out_dir } => data::export_embedded(&name, &out_dir),
        Command::ImportOnnx { onnx, onnx_flag, data, target, no_target, task, n_bits, settings, compile, out } => {
            let onnx = onnx.or(onnx_flag).ok_or_else(|| CliError::Usage("import-onnx needs the ONNX file".into()))?;
            let column = if no_target { TargetColumn::None } else { target_column(&target) };
            let table = read_csv(&data, column)?;
            let config = compile.config()?;
            let settings = parse_settings(&settings)?;
            let options = model_file::OnnxImport {
                table: &table,
                task: task.as_deref(),
                n_bits,
                settings: &settings,
                config: &config,
            };
            let mut saved = model_file::import_onnx(&onnx, &options)?;
            estimate_deviations(&mut saved, &table)?;
            saved.save(&out)?;
            let what = match &saved.float {
                model_file::FloatModel::Nn(m) => format!("{} layers", m.network().layers().len()),
                model_file::FloatModel::Tree(m) => {
                    let e = m.ensemble();
                    format!("{}, {} single-output trees of depth {}", saved.name, e.trees.len(), e.max_depth())
                }
                model_file::FloatModel::Linear(_) => saved.name.clone(),
            };
            println!(
                "imported {} ({what}, {} bootstraps per sample); saved {}",
                onnx.display(),
                saved.fhe.compiled().report().bootstraps,
                out.display()
            );
            Ok(())
        }
        Command::ImportXgboost { json, calibration, n_bits, compile, out } => {
            let table = read_csv(&calibration, TargetColumn::None)?;
            let config = compile.config()?;
            let mut saved = model_file::import_xgboost(&json, &table, n_bits, &config);
            if let Err(CliError::Usage(ref m)) = saved
                && m.contains("features")
            {
                // The calibration file may carry a trailing target column.
                let trimmed = crate::data::Table {
                    feature_names: table.feature_names[..table.feature_names.len().saturating_sub(1)].to_vec(),
                    x: table.x.slice(ndarray::s![.., ..table.x.ncols().saturating_sub(1)]).to_owned(),
                    y: None,
                };
                saved = model_file::import_xgboost(&json, &trimmed, n_bits, &config);
            }
            let mut saved = saved?;
            estimate_deviations(&mut saved, &table)?;
            saved.save(&out)?;
            println!(
                "imported {} ({} bootstraps per sample); saved {}",
                json.display(),
                saved.fhe.compiled().report().bootstraps,
                out.display()
            );
            Ok(())
        }
    }
}

/// How often encryption changes a prediction, simulated on (up to 500 of) the rows the model
/// was built from; `inspect` reports it.
fn estimate_deviations(saved: &mut SavedModel, table: &crate::data::Table) -> Result<()> {
    let rows = table.x.nrows().min(500);
    if rows > 0 && table.x.ncols() == saved.fhe.model().inputs.iter().map(|i| i.n_features()).sum::<usize>() {
        saved.fhe.estimate_deviations(table.x.slice(ndarray::s![..rows, ..]), 4)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let CliError::Fhe(fheml_fhe_runtime::FheError::NoParameters { candidates, .. }) = &e {
                if verbose {
                    eprintln!("candidates:\n{candidates}");
                } else {
                    eprintln!("(--verbose lists every candidate parameter set and why it failed)");
                }
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_settings;

    #[test]
    fn settings_split_on_commas_before_a_key() {
        let parsed = parse_settings(&["hidden=32,16,epochs=5".into(), "w_bits=4, a_bits=2".into()]).unwrap();
        let pairs: Vec<(&str, &str)> = parsed.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("hidden", "32,16"), ("epochs", "5"), ("w_bits", "4"), ("a_bits", "2")]);
        assert!(parse_settings(&["alpha".into()]).is_err());
        assert!(parse_settings(&["=3".into()]).is_err());
    }
}
