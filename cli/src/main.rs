//! `fheml`: train, evaluate, deploy and serve machine-learning models under FHE.

mod commands;
mod eval;
mod http_client;
mod key_store;
mod output;
// The library's modules under their old paths, so that the command's modules read as before.
use fheml::{client_part, data, error, model_file};
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
use crate::error::{Error as CliError, Result};
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
    Train(commands::train::TrainArgs),
    /// Score a model on a CSV file in a mode (columns matched by name; needs the target column).
    Eval(commands::score::EvalArgs),
    /// Predict every row of a CSV file: one line per row, in the original labels.
    ///
    /// Example: fheml predict --model m.fheml --data rows.csv --mode execute --proba --id name --out preds.csv
    Predict(commands::score::PredictArgs),
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
    Keygen(commands::deploy::KeygenArgs),
    /// Client: quantize and encrypt the rows of a CSV file (the model's columns by name; a
    /// target column is skipped).
    Encrypt(commands::deploy::EncryptArgs),
    /// Server: evaluate encrypted inputs with the evaluation key only.
    Run(commands::deploy::RunArgs),
    /// Client: decrypt an answer and print predictions.
    Decrypt(commands::deploy::DecryptArgs),
    /// Write the client's part of a model: what `keygen`, `encrypt` and `decrypt` need
    /// (columns, input quantizers and encodings, output decoding and post-processing, the
    /// parameter set, the model's fingerprint) and none of its weights or thresholds.
    ///
    /// Give the client file to data owners and keep the model file on the server: keys made
    /// from either work with the server's model, and answers decrypt the same.
    ///
    /// Example: fheml export-client model.fheml --out model.client
    ExportClient(commands::deploy::ExportClientArgs),
    /// Serve compiled models over HTTP (each under its file stem); see docs/http-api.md.
    Serve(commands::serving::ServeArgs),
    /// Encrypted prediction through a running `fheml serve`.
    Client(commands::serving::ClientArgs),
    /// Import an XGBoost JSON model (`save_model("model.json")`), calibrate and compile it.
    ///
    /// The calibration file's columns (all but the target) are the model's features, in the
    /// XGBoost model's order; their header names are recorded for later commands.
    ///
    /// Example: fheml import-xgboost model.json --data train.csv --n-bits 6 --out model.fheml
    ImportXgboost(commands::train::ImportXgboostArgs),
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
    ImportOnnx(commands::train::ImportOnnxArgs),
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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Quickstart => quickstart::run(),
        Command::Train(args) => args.run(),
        Command::Eval(args) => args.run(),
        Command::Predict(args) => args.run(),
        Command::Inspect { model, json } => commands::inspect::inspect(&SavedModel::load(&model)?, json),
        Command::Keygen(args) => args.run(),
        Command::Encrypt(args) => args.run(),
        Command::Run(args) => args.run(),
        Command::Decrypt(args) => args.run(),
        Command::ExportClient(args) => args.run(),
        Command::Serve(args) => args.run(),
        Command::Client(args) => args.run(),
        Command::ImportXgboost(args) => args.run(),
        Command::ImportOnnx(args) => args.run(),
        Command::Dataset { name, out_dir } => data::export_embedded(&name, &out_dir),
    }
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
