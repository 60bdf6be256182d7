//! `fheml`: train, evaluate, deploy and serve machine-learning models under FHE.

mod client_part;
mod data;
mod error;
mod eval;
#[cfg(test)]
mod fuzz_tests;
mod http_client;
mod key_store;
mod model_file;
mod output;
mod quickstart;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fheml_fhe_runtime::{
    ClientKey, CompressedEvaluationKey, EncryptedInputs, EncryptedOutputs, FheConfig, Mode, PublicKey, Sanitization,
    limits, sanitize,
};

use crate::client_part::ClientPart;
use crate::data::{CsvOptions, DEFAULT_TARGET, DataSchema, RawTable, ScoringTable, Selection, Table, Target};
use crate::error::{CliError, Result};
use crate::model_file::{SavedModel, TrainOptions, read_limited, write_atomically};
use crate::output::{Format, PredictionOutput, say};

#[derive(Parser)]
#[command(name = "fheml", version, about = "Machine-learning models in fully homomorphic encryption")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// On a failure to find parameters, list every candidate set and why it failed.
    #[arg(long, global = true)]
    verbose: bool,
}

/// Parses a probability written as `2^-40`, `1e-12` or `0.001`.
fn parse_probability(text: &str) -> std::result::Result<f64, String> {
    let text = text.trim();
    let power = text.split_once("**").or_else(|| text.split_once('^'));
    let value = match power {
        Some((base, exponent)) => {
            let base: f64 = base.trim().parse().map_err(|_| format!("`{base}` is not a number"))?;
            let exponent: f64 = exponent.trim().parse().map_err(|_| format!("`{exponent}` is not a number"))?;
            base.powf(exponent)
        }
        None => text.parse().map_err(|_| format!("`{text}` is not a probability (write 2^-40, 1e-12 or 0.001)"))?,
    };
    if value.is_finite() && value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(format!("p_error must be between 0 and 1 (exclusive), got {text}"))
    }
}

/// A probability as a power of two, as p_error is usually quoted: `2^-40.0`.
fn format_probability(p: f64) -> String {
    format!("2^{:.1}", p.log2())
}

/// How a model is compiled for TFHE (shared by every command that compiles).
#[derive(clap::Args, Debug, Clone)]
struct CompileArgs {
    /// Failure probability per table lookup (and per exactly decrypted output): `2^-40`, `1e-12`
    /// or `0.001`.
    #[arg(long, default_value = "2^-40", value_parser = parse_probability)]
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
    /// Plan outputs for sanitization, which `fheml serve` requires by default: the server
    /// re-randomizes every answer and floods its noise to the output's error budget, so that
    /// answers give nothing of the weights away (docs/privacy.md). Costs precision (outputs
    /// use their whole error budget) and, for models with lookups, quieter parameters.
    #[arg(long)]
    sanitize: bool,
    /// With --sanitize: the least statistical hiding, in bits, of every output's own noise
    /// behind the flood.
    #[arg(long, default_value_t = fheml_fhe_runtime::plan::DEFAULT_SANITIZE_BITS, requires = "sanitize")]
    sanitize_bits: u32,
}

impl CompileArgs {
    fn config(&self) -> Result<FheConfig> {
        Ok(FheConfig::params()
            .p_error(self.p_error)
            .parameter_mode(self.params.parse()?)
            .output_std(self.output_std)
            .exact_outputs(self.exact_outputs)
            .sanitize(self.sanitize)
            .sanitize_bits(self.sanitize_bits)
            .check()?)
    }
}

/// A data file and how to read it (every command that reads rows).
#[derive(clap::Args, Debug, Clone)]
struct DataArgs {
    /// CSV file with a header row naming the columns; columns are matched by name, in any order.
    #[arg(long, alias = "calibration")]
    data: PathBuf,
    /// The target column's name (default: `target`, or the one the model was trained with).
    #[arg(long, visible_alias = "target-column")]
    target: Option<String>,
    /// The file has no target column.
    #[arg(long, conflicts_with = "target")]
    no_target: bool,
    /// Field separator: `,`, `;`, `tab`, ... (default: detected from the first line).
    #[arg(long, value_parser = data::parse_delimiter)]
    delimiter: Option<u8>,
    /// The file has no header row: its columns are the model's, in the model's order (then the
    /// target, for eval). Without this flag a first row of numbers is refused.
    #[arg(long)]
    no_header: bool,
}

impl DataArgs {
    fn read(&self) -> Result<RawTable> {
        RawTable::read(&self.data, CsvOptions { delimiter: self.delimiter, no_header: self.no_header })
    }

    /// The target rule of training and calibration: the named column (default `target`) must
    /// exist, unless `--no-target`.
    fn training_target(&self) -> Target<'_> {
        if self.no_target { Target::None } else { Target::Named(self.target.as_deref().unwrap_or(DEFAULT_TARGET)) }
    }

    /// The target column of a file scored by `schema`'s model (`None` with `--no-target`).
    fn scoring_target<'a>(&'a self, schema: &'a DataSchema) -> Option<&'a str> {
        if self.no_target {
            None
        } else {
            Some(self.target.as_deref().or(schema.target.as_deref()).unwrap_or(DEFAULT_TARGET))
        }
    }

    /// Reads the file and matches its columns to the model's by name.
    fn select(
        &self,
        schema: &DataSchema,
        need_target: bool,
        ignore_extra: bool,
        id: Option<&str>,
    ) -> Result<ScoringTable> {
        if need_target && self.no_target {
            return Err(CliError::Usage("this command scores against the target: --no-target does not apply".into()));
        }
        let selection = Selection { target: self.scoring_target(schema), need_target, ignore_extra, id };
        schema.select(&self.read()?, selection)
    }
}

/// How predictions are printed (`decrypt`, `client`).
#[derive(clap::Args, Debug, Clone)]
struct PrintArgs {
    /// csv (a header, then one line per row) or json (one object per line).
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Same as --format json.
    #[arg(long, hide = true)]
    json: bool,
    /// Add each class's probability (classifiers).
    #[arg(long)]
    proba: bool,
}

impl PrintArgs {
    fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train, compile and run encrypted inference on an embedded dataset.
    Quickstart,
    /// Train a model on a CSV file and compile it.
    ///
    /// The file needs a header row; the target is the column named `target` (or --target NAME),
    /// every other column is a feature. The model records the column names, so other commands
    /// match columns by name. A text target gives a classifier that predicts the same texts.
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
        #[command(flatten)]
        data: DataArgs,
        /// Columns holding categories (text or codes), one-hot encoded: `--categorical colour,size`.
        #[arg(long, value_delimiter = ',')]
        categorical: Vec<String>,
        /// classification or regression (default: classification when the target holds text or
        /// few distinct integers).
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
        /// mlp only: a latency target in milliseconds per sample (Execute, this machine's
        /// cost model). Picks the widest hidden layers, then the most weight/activation bits
        /// (up to 4), expected to fit, from brief probe trainings; `hidden`, `w_bits` and
        /// `a_bits` given with --set stay as set.
        #[arg(long, value_name = "MS")]
        budget_ms: Option<f64>,
        #[command(flatten)]
        compile: CompileArgs,
        /// Output model file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Score a model on a CSV file in a mode (columns matched by name; needs the target column).
    Eval {
        /// Model file.
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Drop columns the model does not use instead of refusing them.
        #[arg(long)]
        ignore_extra: bool,
        /// clear, simulate or execute.
        #[arg(long, default_value = "clear")]
        mode: String,
        /// Evaluate the mode on the first N rows only.
        #[arg(long)]
        limit: Option<usize>,
        /// Recompile for this failure probability per lookup (default: the one trained with).
        #[arg(long, value_parser = parse_probability)]
        p_error: Option<f64>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Predict every row of a CSV file: one line per row, in the original labels.
    ///
    /// Example: fheml predict --model m.fheml --data rows.csv --mode execute --proba --id name --out preds.csv
    Predict {
        /// Model file.
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Drop columns the model does not use instead of refusing them.
        #[arg(long)]
        ignore_extra: bool,
        /// clear (the integer circuit, no encryption), simulate (with encryption's error rate) or
        /// execute (real TFHE: keygen, encrypt, evaluate, decrypt).
        #[arg(long, default_value = "clear")]
        mode: String,
        /// Add each class's probability (classifiers).
        #[arg(long)]
        proba: bool,
        /// Output file, or `-` for standard output.
        #[arg(long, default_value = "-")]
        out: PathBuf,
        /// csv (a header, then one line per row) or json (one object per line).
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// A column to copy into the output beside each prediction (e.g. a row id).
        #[arg(long)]
        id: Option<String>,
    },
    /// Describe a compiled model: columns, circuit, bit widths, bootstraps, parameters, key sizes.
    Inspect {
        /// Model file.
        model: PathBuf,
        /// Print one JSON object with every figure.
        #[arg(long)]
        json: bool,
    },
    /// Generate a client key, a (compressed) evaluation key and, for a model compiled with
    /// sanitization, the public key the server sanitizes answers with.
    Keygen {
        /// Model file, or the client file `fheml export-client` writes from it.
        #[arg(long)]
        model: PathBuf,
        /// Directory for client.key, eval.key (and public.key).
        #[arg(long)]
        out_dir: PathBuf,
        /// Replace keys already in the directory (answers encrypted for the old key can then
        /// no longer be decrypted).
        #[arg(long)]
        force: bool,
    },
    /// Client: quantize and encrypt the rows of a CSV file (the model's columns by name; a
    /// target column is skipped).
    Encrypt {
        /// Model file, or the client file `fheml export-client` writes from it.
        #[arg(long)]
        model: PathBuf,
        /// Client key.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Drop columns the model does not use instead of refusing them.
        #[arg(long)]
        ignore_extra: bool,
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
        /// The client's public key (keygen's public.key): sanitizes the answer, as
        /// `fheml serve` does. Needed for a model compiled with sanitization.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Answer a model compiled with sanitization without sanitizing (its answer then
        /// gives the client the model's weights).
        #[arg(long, conflicts_with = "public_key")]
        no_sanitize: bool,
        /// Encrypted query.
        #[arg(long = "in")]
        input: PathBuf,
        /// Encrypted answer file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Client: decrypt an answer and print predictions.
    Decrypt {
        /// Model file, or the client file `fheml export-client` writes from it.
        #[arg(long)]
        model: PathBuf,
        /// Client key.
        #[arg(long)]
        key: PathBuf,
        /// Encrypted answer.
        #[arg(long = "in")]
        input: PathBuf,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Write the client's part of a model: what `keygen`, `encrypt` and `decrypt` need
    /// (columns, input quantizers and encodings, output decoding and post-processing, the
    /// parameter set, the model's fingerprint) and none of its weights or thresholds.
    ///
    /// Give the client file to data owners and keep the model file on the server: keys made
    /// from either work with the server's model, and answers decrypt the same.
    ///
    /// Example: fheml export-client model.fheml --out model.client
    ExportClient {
        /// Model file.
        #[arg(value_name = "MODEL.fheml")]
        model: PathBuf,
        /// Output client file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve compiled models over HTTP (each under its file stem); see docs/http-api.md.
    Serve {
        /// Model files (repeatable).
        #[arg(long = "model", required = true)]
        models: Vec<PathBuf>,
        /// Address to listen on. Any address but loopback needs --token-file (or
        /// --insecure-no-auth) and --tls-cert/--tls-key (or --insecure-no-tls).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Directory for uploaded evaluation keys, owned by this server (--key-disk-bytes
        /// applies); unused with --key-store.
        #[arg(long, default_value = "fheml-keys")]
        key_dir: PathBuf,
        /// A key store shared by replicas, instead of --key-dir: file:///path (or a path), or
        /// with the cloud-keys feature s3://bucket/prefix, gs://bucket/prefix,
        /// az://container/prefix (credentials from the environment). Keys uploaded to one
        /// replica serve requests on all; none is evicted from it (--key-disk-bytes does not
        /// apply); --key-memory-bytes bounds each replica's cache.
        #[arg(long, value_name = "URL")]
        key_store: Option<String>,
        /// File holding the bearer token every request but /health must carry.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Serve a non-loopback address without a token (behind a proxy that authenticates).
        #[arg(long)]
        insecure_no_auth: bool,
        /// Serve a non-loopback address over plain HTTP (behind a proxy or mesh that
        /// terminates TLS on the same host or a private link).
        #[arg(long, conflicts_with = "tls_cert")]
        insecure_no_tls: bool,
        /// Most samples (rows) in one /run request; the /run body limit follows from it.
        #[arg(long, default_value_t = serve::DEFAULT_MAX_SAMPLES)]
        max_samples: usize,
        /// Evaluations and key expansions running at once (each uses every core).
        #[arg(long, default_value_t = 2)]
        max_concurrent: usize,
        /// Requests to /run and /keys admitted at once, running or waiting; more get 503.
        #[arg(long, default_value_t = 32)]
        max_queued: usize,
        /// Deadline of one request in seconds, upload included; later ones get 408.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Bytes of expanded evaluation keys kept in memory (least recently used evicted).
        #[arg(long, default_value_t = 8 << 30)]
        key_memory_bytes: u64,
        /// Bytes of compressed evaluation keys kept in --key-dir (least recently used evicted;
        /// not applied to a shared --key-store).
        #[arg(long, default_value_t = 32 << 30)]
        key_disk_bytes: u64,
        /// Bytes of expanded inputs one evaluation holds at a time (it works in chunks).
        #[arg(long, default_value_t = 256 << 20)]
        chunk_bytes: usize,
        /// Lowers the body limits derived from each model (never raises them).
        #[arg(long)]
        max_body_bytes: Option<usize>,
        /// Sanitize every answer with the client's public key, so that answers give nothing of
        /// the weights away (docs/privacy.md). On by default: a model compiled without
        /// sanitization is refused unless `--sanitize=false`.
        #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        sanitize: bool,
        /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM); needs --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Encrypted prediction through a running `fheml serve`.
    Client {
        /// Server URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Served model name (its file stem).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        data: DataArgs,
        /// Drop columns the model does not use instead of refusing them.
        #[arg(long)]
        ignore_extra: bool,
        /// Where the client keeps its keys between runs.
        #[arg(long)]
        key_dir: Option<PathBuf>,
        /// File holding the server's bearer token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Trust the CA certificates in this PEM file for an https:// server instead of the
        /// built-in WebPKI roots (a private CA, or the server's self-signed certificate).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Rows per request: at most the server's --max-samples.
        #[arg(long, default_value_t = serve::DEFAULT_MAX_SAMPLES)]
        batch_rows: usize,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Import an XGBoost JSON model (`save_model("model.json")`), calibrate and compile it.
    ///
    /// The calibration file's columns (all but the target) are the model's features, in the
    /// XGBoost model's order; their header names are recorded for later commands.
    ///
    /// Example: fheml import-xgboost model.json --data train.csv --n-bits 6 --out model.fheml
    ImportXgboost {
        /// The XGBoost JSON model.
        #[arg(value_name = "MODEL.json", required_unless_present = "json_flag")]
        json: Option<PathBuf>,
        /// The XGBoost JSON model (older spelling of the positional argument).
        #[arg(long = "json", value_name = "MODEL.json", conflicts_with = "json", hide = true)]
        json_flag: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
        /// Input quantization bits (default: the imported model's, 6).
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
    /// The calibration rows are the CSV's feature columns: every column but the target (named
    /// `target`, or --target NAME; --no-target when there is none). A network classifier's
    /// labels are the sorted distinct values of the target column, one per network output, in
    /// output order; a tree ensemble's are the class labels the ONNX file holds.
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
        #[arg(long = "onnx", value_name = "MODEL.onnx", conflicts_with = "onnx", hide = true)]
        onnx_flag: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
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
    /// Write an embedded dataset as train/test CSV files (80/20 split, target column `target`).
    Dataset {
        /// breast_cancer, iris or diabetes.
        #[arg(long)]
        name: String,
        /// Output directory.
        #[arg(long)]
        out_dir: PathBuf,
    },
}

/// Writes predictions to standard output.
fn print_predictions(
    predictions: &[fheml_circuits::Prediction],
    schema: &DataSchema,
    task: &fheml_circuits::Task,
    print: &PrintArgs,
) -> Result<()> {
    let output = PredictionOutput { schema, task, ids: None, proba: print.proba, format: print.format() };
    output.check()?;
    output.write(&mut std::io::stdout().lock(), predictions)
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

/// The input quantization bits of a model, lowest and highest.
fn input_bits(saved: &SavedModel) -> (u8, u8) {
    let bits: Vec<u8> = saved
        .fhe
        .model()
        .inputs
        .iter()
        .flat_map(|i| i.quantizer.quantizers().iter().map(|q| q.n_bits().get()))
        .collect();
    (bits.iter().min().copied().unwrap_or(0), bits.iter().max().copied().unwrap_or(0))
}

fn bits_text((lo, hi): (u8, u8)) -> String {
    if lo == hi { lo.to_string() } else { format!("{lo}..{hi}") }
}

/// Text labels force classification: refuses `--task regression` or a regression model on them.
fn task_for_labels<'a>(table: &Table, model: &str, task: Option<&'a str>) -> Result<Option<&'a str>> {
    let Some(labels) = &table.schema.labels else { return Ok(task) };
    let shown: Vec<&str> = labels.iter().take(5).map(String::as_str).collect();
    let column = table.schema.target.as_deref().unwrap_or(DEFAULT_TARGET);
    let regressor = fheml_models_linear::LinearModelKind::from_name(model).is_ok_and(|k| !k.is_classifier());
    if task == Some("regression") || regressor {
        return Err(CliError::Usage(format!(
            "the target column `{column}` holds text labels ({}{}): that is classification, not regression",
            shown.join(", "),
            if labels.len() > 5 { ", ..." } else { "" }
        )));
    }
    Ok(Some(task.unwrap_or("classification")))
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
                bits_text(input_bits(saved)),
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
                    "quantization-aware, {} activations, {} epochs, learning rate {}, batch size {}, seed {}{}",
                    p.activation.name(),
                    p.epochs,
                    p.learning_rate,
                    p.batch_size,
                    p.seed,
                    p.max_fan_in.map_or(String::new(), |k| format!(", pruned to {k} inputs per hidden neuron"))
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
        Command::Train { model, data, categorical, task, n_bits, settings, budget_ms, compile, out } => {
            let table = data.read()?.training_table(data.training_target(), &categorical)?;
            let task = task_for_labels(&table, &model, task.as_deref())?;
            let config = compile.config()?;
            let settings = parse_settings(&settings)?;
            let options = TrainOptions { model: &model, task, n_bits, settings: &settings, budget_ms, config };
            let mut saved = model_file::train(&table, &options)?;
            estimate_deviations(&mut saved, &table)?;
            saved.save(&out)?;
            let report = saved.fhe.compiled().report();
            say!(
                "trained {} on {} rows, {} features (n_bits {}, p_error {}); {} bootstraps per sample; saved {}",
                saved.name,
                table.x.nrows(),
                table.x.ncols(),
                bits_text(input_bits(&saved)),
                format_probability(report.p_error),
                report.bootstraps,
                out.display()
            );
            Ok(())
        }
        Command::Eval { model, data, ignore_extra, mode, limit, p_error, json } => {
            let mut saved = SavedModel::load(&model)?;
            if let Some(p) = p_error {
                let config = FheConfig::params().p_error(p).check()?;
                saved.fhe = fheml_fhe_runtime::FheModel::compile(saved.fhe.model().clone(), &config)?;
            }
            let mode: Mode = mode.parse()?;
            let rows = data.select(&saved.schema, true, ignore_extra, None)?;
            let cells = rows.target.unwrap_or_default();
            let y = saved.schema.encode_target(&cells, &data.data.display().to_string())?;
            let report = eval::evaluate(&saved, rows.x.view(), &y, mode, limit, json)?;
            if json {
                say!("{}", serde_json::to_string(&report).map_err(|e| CliError::Usage(e.to_string()))?);
            } else {
                say!(
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
        Command::Predict { model, data, ignore_extra, mode, proba, out, format, id } => {
            let saved = SavedModel::load(&model)?;
            let mode: Mode = mode.parse()?;
            let rows = data.select(&saved.schema, false, ignore_extra, id.as_deref())?;
            let ids = id.as_deref().zip(rows.ids.as_deref());
            let task = &saved.fhe.model().task;
            let output = PredictionOutput { schema: &saved.schema, task, ids, proba, format };
            output.check()?;
            let predictions = eval::predict(&saved, rows.x.view(), mode)?;
            if out.as_os_str() == "-" {
                output.write(&mut std::io::stdout().lock(), &predictions)
            } else {
                let mut bytes = Vec::new();
                output.write(&mut bytes, &predictions)?;
                write_atomically(&out, &bytes)?;
                eprintln!("wrote {} predictions to {}", predictions.len(), out.display());
                Ok(())
            }
        }
        Command::Inspect { model, json } => inspect(&SavedModel::load(&model)?, json),
        Command::ExportClient { model, out } => {
            let saved = SavedModel::load(&model)?;
            if std::fs::canonicalize(&out).is_ok_and(|o| std::fs::canonicalize(&model).is_ok_and(|m| m == o)) {
                return Err(CliError::Usage(format!("--out {} would replace the model file", out.display())));
            }
            let bytes = ClientPart::of(&saved).to_bytes()?;
            write_atomically(&out, &bytes)?;
            say!(
                "wrote {} ({} bytes): the client part of {} (fingerprint {}), without its weights; keygen, encrypt \
                 and decrypt take it in place of the model file",
                out.display(),
                bytes.len(),
                model.display(),
                saved.fhe.compiled().fingerprint().short()
            );
            Ok(())
        }
        Command::Keygen { model, out_dir, force } => {
            let part = ClientPart::load(&model)?;
            for existing in ["client.key", "eval.key", "public.key"].map(|f| out_dir.join(f)) {
                if existing.exists() && !force {
                    return Err(CliError::Usage(format!(
                        "{} exists; pass --force to replace it (answers encrypted under the old key could no longer be decrypted)",
                        existing.display()
                    )));
                }
            }
            std::fs::create_dir_all(&out_dir).map_err(|e| CliError::io(&out_dir, e))?;
            let spec = &part.spec;
            let (client_key, eval_key) = spec.keygen_compressed();
            model_file::write_secret_atomically(&out_dir.join("client.key"), &client_key.to_bytes()?)?;
            write_atomically(&out_dir.join("eval.key"), &eval_key.to_bytes()?)?;
            if spec.sanitized {
                write_atomically(&out_dir.join("public.key"), &spec.public_key(&client_key)?.to_bytes()?)?;
                say!(
                    "wrote {0}/client.key (keep it secret), {0}/eval.key and {0}/public.key (send both to the server)",
                    out_dir.display()
                );
            } else {
                say!(
                    "wrote {0}/client.key (keep it secret) and {0}/eval.key (send it to the server)",
                    out_dir.display()
                );
            }
            Ok(())
        }
        Command::Encrypt { model, key, data, ignore_extra, out } => {
            let part = ClientPart::load(&model)?;
            let client_key = ClientKey::from_bytes(&read_limited(&key, limits::KEY_BYTES)?, &part.spec.fingerprint)?;
            let x = data.select(&part.schema, false, ignore_extra, None)?.x;
            let inputs = x.rows().into_iter().map(|row| part.encode(&row.to_vec())).collect::<Result<Vec<_>>>()?;
            let query = part.spec.encrypt(&client_key, &inputs)?;
            write_atomically(&out, &query.to_bytes()?)?;
            say!("encrypted {} rows into {}", x.nrows(), out.display());
            Ok(())
        }
        Command::Run { model, eval_key, public_key, no_sanitize, input, out } => {
            let saved = SavedModel::load(&model)?;
            let compiled = saved.fhe.compiled();
            let fp = compiled.fingerprint();
            let sanitizer = match public_key {
                Some(path) => {
                    let public = PublicKey::from_bytes(&read_limited(&path, sanitize::PUBLIC_KEY_BYTES)?, &fp)?;
                    Some(compiled.sanitizer(&public)?)
                }
                None if compiled.plan().sanitization.is_some() && !no_sanitize => {
                    return Err(CliError::Usage(
                        "this model sanitizes its answers: pass the client's public key (--public-key, keygen's \
                         public.key), or --no-sanitize"
                            .into(),
                    ));
                }
                None => None,
            };
            let key =
                CompressedEvaluationKey::from_bytes_conformant(&read_limited(&eval_key, limits::KEY_BYTES)?, compiled)?;
            let key = key.decompress();
            let query =
                EncryptedInputs::from_bytes_conformant(&read_limited(&input, limits::CIPHERTEXT_BYTES)?, compiled)?;
            let sanitization = sanitizer.as_ref().map_or(Sanitization::Off, Sanitization::On);
            let answer = compiled.run_with(&key, &query, sanitization)?;
            write_atomically(&out, &answer.to_bytes()?)?;
            say!("evaluated {} encrypted rows into {}", query.len(), out.display());
            Ok(())
        }
        Command::Decrypt { model, key, input, print } => {
            let part = ClientPart::load(&model)?;
            let fp = &part.spec.fingerprint;
            let client_key = ClientKey::from_bytes(&read_limited(&key, limits::KEY_BYTES)?, fp)?;
            let answer = EncryptedOutputs::from_bytes(&read_limited(&input, limits::CIPHERTEXT_BYTES)?, fp)?;
            let outputs = part.spec.decrypt(&client_key, &answer)?;
            let predictions = outputs.iter().map(|o| part.decode(o)).collect::<Result<Vec<_>>>()?;
            print_predictions(&predictions, &part.schema, &part.task, &print)
        }
        Command::Serve {
            models,
            addr,
            key_dir,
            key_store,
            token_file,
            insecure_no_auth,
            insecure_no_tls,
            max_samples,
            max_concurrent,
            max_queued,
            timeout_secs,
            key_memory_bytes,
            key_disk_bytes,
            chunk_bytes,
            max_body_bytes,
            sanitize,
            tls_cert,
            tls_key,
        } => {
            let token = token_file.as_deref().map(read_token).transpose()?;
            let tls = tls_cert.zip(tls_key).map(|(cert, key)| serve::TlsFiles { cert, key });
            serve::check_exposure(addr, token.is_some(), insecure_no_auth, tls.is_some(), insecure_no_tls)?;
            let mut served = Vec::new();
            for path in &models {
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
                served.push((name, SavedModel::load(path)?));
            }
            let names: Vec<String> = served.iter().map(|(n, _)| n.clone()).collect();
            let options = serve::ServeOptions {
                max_samples,
                max_concurrent,
                max_queued,
                request_timeout: std::time::Duration::from_secs(timeout_secs.max(1)),
                key_memory_bytes,
                key_disk_bytes,
                chunk_bytes,
                max_body_bytes,
                token,
                sanitize,
                key_store,
                ..serve::ServeOptions::new(key_dir)
            };
            let router = serve::router(served, options)?;
            let runtime = tokio::runtime::Runtime::new().map_err(|e| CliError::Usage(e.to_string()))?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            runtime.block_on(serve::serve(
                router,
                addr,
                tls,
                async {
                    let _ = tokio::signal::ctrl_c().await;
                },
                |local| eprintln!("serving {} on {scheme}://{local} (Ctrl-C to stop)", names.join(", ")),
            ))
        }
        Command::Client { url, name, data, ignore_extra, key_dir, token_file, ca_cert, batch_rows, print } => {
            let token = token_file.as_deref().map(read_token).transpose()?;
            let ca = ca_cert.as_deref().map(|p| read_limited(p, 1 << 20)).transpose()?;
            let remote = http_client::RemoteModel::connect(&url, &name, key_dir.as_deref(), token, ca.as_deref())?;
            let x = data.select(&remote.part.schema, false, ignore_extra, None)?.x;
            print_predictions(&remote.predict(x.view(), batch_rows)?, &remote.part.schema, &remote.part.task, &print)
        }
        Command::Dataset { name, out_dir } => data::export_embedded(&name, &out_dir),
        Command::ImportOnnx { onnx, onnx_flag, data, task, n_bits, settings, compile, out } => {
            let onnx = onnx.or(onnx_flag).ok_or_else(|| CliError::Usage("import-onnx needs the ONNX file".into()))?;
            let table = data.read()?.training_table(data.training_target(), &[])?;
            let task = if table.schema.labels.is_some() {
                task_for_labels(&table, "mlp", task.as_deref())?
            } else {
                task.as_deref()
            };
            let config = compile.config()?;
            let settings = parse_settings(&settings)?;
            let options = model_file::OnnxImport { table: &table, task, n_bits, settings: &settings, config: &config };
            let mut saved = model_file::import_onnx(&onnx, &options)?;
            warn_if_quantization_drifts(&saved, &table)?;
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
            say!(
                "imported {} ({what}, n_bits {}, p_error {}, {} bootstraps per sample); saved {}",
                onnx.display(),
                bits_text(input_bits(&saved)),
                format_probability(saved.fhe.compiled().report().p_error),
                saved.fhe.compiled().report().bootstraps,
                out.display()
            );
            Ok(())
        }
        Command::ImportXgboost { json, json_flag, data, n_bits, compile, out } => {
            let json =
                json.or(json_flag).ok_or_else(|| CliError::Usage("import-xgboost needs the JSON file".into()))?;
            let raw = data.read()?;
            let mut table = raw.training_table(data.training_target(), &[])?;
            if let Some(names) = model_file::xgboost_feature_names(&json)? {
                // The JSON names its features: take the calibration columns by those names, in
                // the model's order, so a reordered or renamed calibration file cannot miscalibrate.
                let schema = DataSchema { target: table.schema.target.clone(), ..DataSchema::numeric(&names) };
                let selection = Selection {
                    target: table.schema.target.as_deref(),
                    need_target: false,
                    ignore_extra: false,
                    id: None,
                };
                table = Table { feature_names: names, x: schema.select(&raw, selection)?.x, y: table.y, schema };
            }
            let config = compile.config()?;
            let mut saved = model_file::import_xgboost(&json, &table, n_bits, &config)?;
            // XGBoost's classes are 0..k over the sorted labels; text labels read from the
            // calibration target only name them when every class is there.
            if let Some(labels) = &saved.schema.labels {
                let classes = match &saved.fhe.model().task {
                    fheml_circuits::Task::Classification { classes } => classes.len(),
                    fheml_circuits::Task::Regression => 0,
                };
                if labels.len() != classes {
                    return Err(CliError::Usage(format!(
                        "the calibration target holds {} text labels ({}), the XGBoost model has {classes} classes: \
                         one label per class is needed",
                        labels.len(),
                        labels.join(", ")
                    )));
                }
            }
            estimate_deviations(&mut saved, &table)?;
            saved.save(&out)?;
            say!(
                "imported {} (n_bits {}, p_error {}, {} bootstraps per sample); saved {}",
                json.display(),
                bits_text(input_bits(&saved)),
                format_probability(saved.fhe.compiled().report().p_error),
                saved.fhe.compiled().report().bootstraps,
                out.display()
            );
            Ok(())
        }
    }
}

/// `inspect`: every figure of a model, as aligned text or one JSON object.
fn inspect(saved: &SavedModel, json: bool) -> Result<()> {
    let circuit = saved.fhe.compiled().circuit();
    let cost = circuit.cost();
    let report = saved.fhe.compiled().report();
    let schema = &saved.schema;
    let columns: Vec<String> = schema
        .columns
        .iter()
        .map(|c| match &c.categories {
            // Quoted: header names often hold spaces and commas (`sepal length (cm)`).
            Some(k) => format!("`{}` (one-hot: {})", c.name, k.join("|")),
            None => format!("`{}`", c.name),
        })
        .collect();
    let classes = match &saved.fhe.model().task {
        fheml_circuits::Task::Classification { classes } => Some(schema.class_names(classes)),
        fheml_circuits::Task::Regression => None,
    };
    let network = match &saved.float {
        model_file::FloatModel::Nn(m) => describe_network(m, saved),
        _ => Vec::new(),
    };
    if json {
        let object = serde_json::json!({
            "model": saved.name,
            "features": saved.feature_names.len(),
            "feature_names": saved.feature_names,
            "columns": schema.columns,
            "target": schema.target,
            "classes": classes,
            "n_bits": { "min": input_bits(saved).0, "max": input_bits(saved).1 },
            "circuit_nodes": circuit.nodes().len(),
            "max_value_bits": cost.max_value_bits.0,
            "network": network.iter().map(|(k, v)| ((*k).to_string(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "fingerprint": saved.fhe.compiled().fingerprint().to_string(),
            "p_error_log2": report.p_error.log2(),
            "compressed_key_bytes": report.compressed_key_bytes,
            "expanded_key_bytes": report.evaluation_key_bytes,
            "expected_deviations": saved.fhe.expected_deviations(),
            "report": report,
        });
        say!("{object}");
        return Ok(());
    }
    say!("model             {} ({} features)", saved.name, saved.feature_names.len());
    say!("columns           {} (matched by header name)", columns.join(", "));
    say!("target            {}", schema.target.as_deref().unwrap_or("none recorded (commands default to `target`)"));
    if let Some(classes) = &classes {
        say!("classes           {}", classes.join(", "));
    }
    say!("input bits        {} (n_bits)", bits_text(input_bits(saved)));
    say!("circuit           {} nodes, values up to {}", circuit.nodes().len(), cost.max_value_bits);
    for (label, text) in &network {
        say!("{label:<17} {text}");
    }
    say!("fingerprint       {}", saved.fhe.compiled().fingerprint());
    say!("p_error           {} per lookup", format_probability(report.p_error));
    // The runtime's report says "compressed" and "expanded"; say where each one lives.
    for line in report.to_string().lines() {
        if line.starts_with("evaluation key") {
            say!(
                "evaluation key    {:.1} MiB compressed (the file keygen writes, uploaded and stored on disk), \
                 {:.1} MiB expanded in the server's memory",
                report.compressed_key_bytes as f64 / (1 << 20) as f64,
                report.evaluation_key_bytes as f64 / (1 << 20) as f64
            );
        } else {
            say!("{line}");
        }
    }
    if let Some(rate) = saved.fhe.expected_deviations() {
        let what = if saved.is_classifier() { "label flips" } else { "changed predictions" };
        say!(
            "vs Clear          {rate:.4} {what} per sample expected under encryption (simulated on the training rows)"
        );
    }
    Ok(())
}

/// Post-training quantization can lose a network trained on raw (unstandardised) features,
/// or move many inputs of an imported tree ensemble across its thresholds: compares the quantized model with the float one on (up to 500 of) the calibration rows and
/// warns, with the fix, when they part.
fn warn_if_quantization_drifts(saved: &SavedModel, table: &crate::data::Table) -> Result<()> {
    let rows = table.x.nrows().min(500);
    if rows == 0 {
        return Ok(());
    }
    let x = table.x.slice(ndarray::s![..rows, ..]);
    let float = saved.float.predict(x)?;
    let clear: Vec<f64> = saved.fhe.predict(x, Mode::Clear)?.iter().map(|p| p.value).collect();
    let (what, fix) = match saved.float {
        model_file::FloatModel::Tree(_) => ("tree model", "raise --n-bits (up to 10) or --set leaf_bits"),
        _ => (
            "network",
            "raise --n-bits or --set w_bits/a_bits/accumulator_bits, and if the network was trained on raw features \
             of very different scales, standardise them inside the network before exporting",
        ),
    };
    let drift = if saved.is_classifier() {
        let agree = float.iter().zip(&clear).filter(|(a, b)| a == b).count() as f64 / rows as f64;
        (agree < 0.98).then(|| {
            format!(
                "the quantized {what} predicts the float {what}'s label on {:.1}% of the calibration rows",
                100.0 * agree
            )
        })
    } else {
        let mean = float.iter().sum::<f64>() / rows as f64;
        let spread = (float.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64).sqrt().max(1e-12);
        let error = (float.iter().zip(&clear).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / rows as f64).sqrt();
        (error > 0.1 * spread).then(|| {
            format!(
                "the quantized {what} is off the float one by {:.0}% of the predictions' spread",
                100.0 * error / spread
            )
        })
    };
    if let Some(drift) = drift {
        eprintln!("warning: {drift}; {fix}");
    }
    Ok(())
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
        // The reader closed the pipe (`| head`): it has what it wanted.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
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

/// A bearer token from its file: one line, surrounding whitespace ignored, never empty.
fn read_token(path: &std::path::Path) -> Result<String> {
    let text = read_limited(path, 4096)?;
    let token = String::from_utf8(text)
        .map_err(|_| CliError::Usage(format!("{}: the token is not UTF-8 text", path.display())))?
        .trim()
        .to_string();
    if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(CliError::Usage(format!("{}: the token must be one non-empty word", path.display())));
    }
    Ok(token)
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
