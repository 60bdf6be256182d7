//! The `.fheml` model file: the float model (for reference scores), the lowered and
//! compiled model, in one checked envelope; plus atomic file writes.

use std::path::Path;

use fheml_circuits::{ModelCircuit, Task};
use fheml_fhe_runtime::{FheConfig, FheModel, Kind, limits};
use fheml_models_linear::{LinearModel, LinearModelKind, LinearParams};
use fheml_models_nn::budget::BudgetSearch;
use fheml_models_nn::{MlpParams, NnModel, NnTask, QuantSettings, ValidMlpParams};
use fheml_models_tree::{TaskKind, TreeError, TreeModel, TreeModelKind, TreeParams, onnx_ml};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::data::{DataSchema, Table};
use crate::error::{CliError, Result};

/// Model names `train` accepts.
pub fn model_names() -> Vec<&'static str> {
    let mut names = LinearModelKind::NAMES.to_vec();
    names.extend(["tree", "forest", "gbdt", "mlp"]);
    names
}

/// The float model a compiled model came from.
#[derive(Serialize, Deserialize)]
pub enum FloatModel {
    /// A linear model.
    Linear(LinearModel),
    /// A tree, forest or boosted ensemble.
    Tree(TreeModel),
    /// A neural network (trained MLP or imported ONNX).
    Nn(NnModel),
}

impl FloatModel {
    /// Float predictions (labels or values).
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>> {
        match self {
            FloatModel::Linear(m) => Ok(m.predict(x)?.to_vec()),
            FloatModel::Tree(m) => Ok(m.predict(x)?.to_vec()),
            FloatModel::Nn(m) => Ok(m.predict(x)?.to_vec()),
        }
    }
}

/// Everything `train` saves.
#[derive(Serialize, Deserialize)]
pub struct SavedModel {
    /// The model's command-line name.
    pub name: String,
    /// Feature column names, in order.
    pub feature_names: Vec<String>,
    /// The float model.
    pub float: FloatModel,
    /// The quantized, lowered and compiled model.
    pub fhe: FheModel,
    /// The data file's columns by name, the target column and the text class labels.
    /// Last, so that a file written before it existed fails to decode as this layout and is
    /// read as [`SavedModelV1`] instead (bincode has no field names to go by).
    pub schema: DataSchema,
}

/// The model file layout before [`DataSchema`] was recorded: still read, its columns are the
/// recorded feature names (all numeric), with numeric labels.
#[derive(Deserialize)]
struct SavedModelV1 {
    name: String,
    feature_names: Vec<String>,
    float: FloatModel,
    fhe: FheModel,
}

/// Training options.
pub struct TrainOptions<'a> {
    /// Model name.
    pub model: &'a str,
    /// `classification` or `regression`, when the model family has both.
    pub task: Option<&'a str>,
    /// Input bits, overriding the model's default.
    pub n_bits: Option<u8>,
    /// `key=value` hyperparameters.
    pub settings: &'a [(String, String)],
    /// mlp: latency target per sample in milliseconds ([`fheml_models_nn::budget`]).
    pub budget_ms: Option<f64>,
    /// Compilation settings.
    pub config: FheConfig,
}

impl<'a> TrainOptions<'a> {
    /// `model` with these hyperparameters and every other option at its default.
    pub fn defaults(model: &'a str, settings: &'a [(String, String)]) -> Self {
        Self { model, task: None, n_bits: None, settings, budget_ms: None, config: FheConfig::default() }
    }
}

/// Classification when every target is an integer and there are few distinct values.
fn infer_task(y: &ndarray::Array1<f64>) -> TaskKind {
    let mut values: Vec<f64> = y.to_vec();
    values.sort_by(f64::total_cmp);
    values.dedup();
    if values.len() <= 20 && values.iter().all(|v| v.fract() == 0.0) {
        TaskKind::Classification
    } else {
        TaskKind::Regression
    }
}

fn train_tree(
    table: &Table,
    y: &ndarray::Array1<f64>,
    kind: TreeModelKind,
    options: &TrainOptions,
) -> Result<SavedModel> {
    let task = match options.task {
        Some(t) => TaskKind::from_name(t)?,
        None => infer_task(y),
    };
    let mut params = TreeParams::new(kind, task);
    if let Some(n) = options.n_bits {
        params = params.set("n_bits", &n.to_string())?;
    }
    for (key, value) in options.settings {
        params = params.set(key, value)?;
    }
    let model = TreeModel::fit(&params.check()?, table.x.view(), y.view())?;
    let fhe = FheModel::compile(model.compile(table.x.view())?, &options.config)?;
    Ok(SavedModel {
        name: kind.name().to_string(),
        feature_names: table.feature_names.clone(),
        schema: table.schema.clone(),
        float: FloatModel::Tree(model),
        fhe,
    })
}

fn train_mlp(table: &Table, y: &ndarray::Array1<f64>, options: &TrainOptions) -> Result<SavedModel> {
    let task = match options.task {
        Some(t) => NnTask::from_name(t)?,
        None if infer_task(y) == TaskKind::Classification => NnTask::Classification,
        None => NnTask::Regression,
    };
    let n_bits = options.n_bits.map(|n| n.to_string());
    let settings = n_bits
        .iter()
        .map(|n| ("n_bits", n.as_str()))
        .chain(options.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut params = MlpParams::from_options(task, settings)?;
    if let Some(budget_ms) = options.budget_ms {
        params = size_for_budget(&params, table, y, budget_ms, options)?;
    }
    let bar = crate::eval::progress(params.get().epochs, "training");
    let model = params.fit_observed(table.x.view(), y.view(), &mut |report| {
        bar.set_position(report.epoch as u64);
        bar.set_message(format!("loss {:.4}", report.loss));
    })?;
    bar.finish_and_clear();
    let fhe = FheModel::compile(model.compile()?, &options.config)?;
    Ok(SavedModel {
        name: "mlp".into(),
        feature_names: table.feature_names.clone(),
        schema: table.schema.clone(),
        float: FloatModel::Nn(model),
        fhe,
    })
}

/// The MLP hyperparameters, with hidden width and bits chosen for `budget_ms` by the
/// runtime's cost model (those set with `--set` stay).
fn size_for_budget(
    params: &ValidMlpParams,
    table: &Table,
    y: &ndarray::Array1<f64>,
    budget_ms: f64,
    options: &TrainOptions,
) -> Result<ValidMlpParams> {
    let set = |key: &str| options.settings.iter().any(|(k, _)| k == key);
    let search = BudgetSearch { width: !set("hidden"), bits: !set("w_bits") && !set("a_bits") };
    let spinner = indicatif::ProgressBar::new_spinner();
    let mut expected_ms = |circuit: &ModelCircuit| {
        spinner.inc(1);
        spinner.set_message(format!("sizing for {budget_ms} ms: pricing candidate {}", spinner.position()));
        FheModel::compile(circuit.clone(), &options.config)
            .map(|m| m.compiled().report().expected_seconds * 1e3)
            .map_err(|e| e.to_string())
    };
    let choice = fheml_models_nn::budget::size_for_budget(
        params,
        table.x.view(),
        y.view(),
        budget_ms,
        search,
        &mut expected_ms,
    )?;
    spinner.finish_and_clear();
    let p = choice.params.get();
    let tried: Vec<String> = choice
        .trials
        .iter()
        .map(|t| {
            let hidden = t.hidden.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
            match &t.expected_ms {
                Ok(ms) => format!("{hidden}@{}b {ms:.0} ms", t.bits.0),
                Err(_) => format!("{hidden}@{}b does not compile", t.bits.0),
            }
        })
        .collect();
    eprintln!(
        "budget {budget_ms} ms: hidden={}, w_bits={}, a_bits={} (expected {:.0} ms per sample; tried {})",
        p.hidden.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        p.w_bits,
        p.a_bits,
        choice.expected_ms,
        tried.join(", ")
    );
    Ok(choice.params)
}

/// What `import-onnx` needs besides the file.
pub struct OnnxImport<'a> {
    /// Calibration rows (features only) and, for a classifier, the labels.
    pub table: &'a Table,
    /// `classification` or `regression` (default: from the target column, if any).
    pub task: Option<&'a str>,
    /// Input quantization bits (default: 8 for a network, 6 for a tree ensemble).
    pub n_bits: Option<u8>,
    /// `w_bits`, `a_bits`, `accumulator_bits`, `rounding` as `key=value` for a network;
    /// `leaf_bits`, `sum_in_fhe` for a tree ensemble.
    pub settings: &'a [(String, String)],
    /// Compilation settings.
    pub config: &'a FheConfig,
}

/// The bytes of an ONNX file whose graph uses the `ai.onnx.ml` domain (tree ensembles from
/// skl2onnx or onnxmltools), or `None` for any other file (networks, or files that do not
/// parse: the network importer then reports them).
fn onnx_ml_bytes(path: &Path) -> Result<Option<Vec<u8>>> {
    let size = std::fs::metadata(path).map_err(|e| CliError::io(path, e))?.len();
    if size > onnx_ml::MAX_ONNX_ML_BYTES {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| CliError::io(path, e))?;
    Ok(matches!(onnx_ml::uses_onnx_ml_domain(&bytes), Ok(true)).then_some(bytes))
}

/// Imports an ONNX-ML tree ensemble into fheml's tree model, quantizes it with inputs
/// calibrated on the table's rows, and compiles it.
fn import_onnx_ml(path: &Path, bytes: &[u8], options: &OnnxImport) -> Result<SavedModel> {
    let model = TreeModel::from_onnx_ml_bytes(bytes).map_err(|e| match e {
        TreeError::OnnxMlFormat(_) | TreeError::OnnxMlUnsupported(_) => {
            CliError::Data { path: path.display().to_string(), detail: e.to_string() }
        }
        other => other.into(),
    })?;
    let table = options.table;
    if model.n_features() != table.x.ncols() {
        return Err(CliError::Usage(format!(
            "the ONNX model reads {} features, the data has {} feature columns{}",
            model.n_features(),
            table.x.ncols(),
            if table.y.is_some() {
                " besides the target (--target NAME names the target column; --no-target when there is none)"
            } else {
                ""
            }
        )));
    }
    let task = model.params().get().task;
    if let Some(wanted) = options.task.map(TaskKind::from_name).transpose()?
        && wanted != task
    {
        return Err(CliError::Usage(format!(
            "the ONNX model does {}, not {}; leave out --task for a tree ensemble",
            task.name(),
            wanted.name()
        )));
    }
    // Text labels in the calibration target name the classes 0..k (their sorted order), as
    // for XGBoost: they can only name a model whose classes are exactly those indices.
    if let (Some(labels), Task::Classification { classes }) = (&table.schema.labels, model.task()) {
        let indices = classes.iter().enumerate().all(|(i, c)| *c == i as f64);
        if !indices || labels.len() != classes.len() {
            let shown: Vec<String> = classes.iter().take(10).map(f64::to_string).collect();
            return Err(CliError::Usage(format!(
                "the calibration target holds {} text labels ({}), the ONNX model's classes are {}: text labels \
                 name the classes 0..{} in sorted order",
                labels.len(),
                labels.join(", "),
                shown.join(", "),
                labels.len()
            )));
        }
    }
    let defaults = model.compile_options();
    let (mut leaf_bits, mut sum_in_fhe) = (None, defaults.sum_in_fhe);
    for (key, value) in options.settings {
        let bad = || CliError::Usage(format!("invalid value `{value}` for `{key}`"));
        match key.as_str() {
            "leaf_bits" => leaf_bits = Some(value.parse().map_err(|_| bad())?),
            "sum_in_fhe" => sum_in_fhe = value.parse().map_err(|_| bad())?,
            other => {
                return Err(CliError::Usage(format!(
                    "unknown option `{other}` for an ONNX-ML tree ensemble; valid: leaf_bits, sum_in_fhe"
                )));
            }
        }
    }
    let n_bits = options.n_bits.unwrap_or(TreeParams::new(model.params().get().kind, task).n_bits);
    let model = model.with_options(n_bits, leaf_bits, sum_in_fhe)?;
    let fhe = FheModel::compile(model.compile(table.x.view())?, options.config)?;
    Ok(SavedModel {
        name: model.params().get().kind.name().to_string(),
        feature_names: table.feature_names.clone(),
        schema: table.schema.clone(),
        float: FloatModel::Tree(model),
        fhe,
    })
}

/// Imports an ONNX file calibrated on the table's rows: an `ai.onnx.ml` tree ensemble
/// becomes a tree model, any other graph a network (post-training quantization).
pub fn import_onnx(path: &Path, options: &OnnxImport) -> Result<SavedModel> {
    if let Some(bytes) = onnx_ml_bytes(path)? {
        return import_onnx_ml(path, &bytes, options);
    }
    let imported = fheml_models_nn::import_onnx(path)?;
    let network = imported.network;
    let table = options.table;
    if network.n_inputs() != table.x.ncols() {
        return Err(CliError::Usage(format!(
            "the ONNX model takes {} inputs, the data has {} feature columns",
            network.n_inputs(),
            table.x.ncols()
        )));
    }
    let mut quant = QuantSettings::default();
    for (key, value) in options.settings {
        let bad = || CliError::Usage(format!("invalid value `{value}` for `{key}`"));
        match key.as_str() {
            "w_bits" => quant.w_bits = value.parse().map_err(|_| bad())?,
            "a_bits" => quant.a_bits = value.parse().map_err(|_| bad())?,
            "accumulator_bits" => {
                quant.accumulator_bits = match value.as_str() {
                    "none" => None,
                    v => match v.parse::<u32>() {
                        Ok(b) if (1..=16).contains(&b) => Some(b),
                        _ => {
                            return Err(CliError::Usage(format!(
                                "invalid value `{value}` for `accumulator_bits`: 1..=16 or none"
                            )));
                        }
                    },
                }
            }
            "rounding" => {
                quant.rounding = match value.as_str() {
                    "exact" => fheml_circuits::RoundingMode::Exact,
                    "approximate" => fheml_circuits::RoundingMode::Approximate,
                    _ => return Err(bad()),
                }
            }
            other => {
                return Err(CliError::Usage(format!(
                    "unknown option `{other}` for import-onnx; valid: w_bits, a_bits, accumulator_bits, rounding"
                )));
            }
        }
    }
    let classification = match (options.task.map(NnTask::from_name).transpose()?, &table.y) {
        (Some(task), _) => task == NnTask::Classification,
        (None, Some(y)) => infer_task(y) == TaskKind::Classification,
        (None, None) => network.n_outputs() > 1,
    };
    let task = if classification {
        let classes = match &table.y {
            Some(y) => {
                let mut c = y.to_vec();
                c.sort_by(f64::total_cmp);
                c.dedup();
                c
            }
            None => (0..network.n_outputs()).map(|i| i as f64).collect(),
        };
        // One output per class, or a single logit for two classes.
        let single_logit = classes.len() == 2 && network.n_outputs() == 1;
        if classes.len() != network.n_outputs() && !single_logit {
            let shown: Vec<String> = classes.iter().take(10).map(f64::to_string).collect();
            return Err(CliError::Usage(format!(
                "the target column has {} distinct labels ({}{}), the ONNX model has {} outputs: one label per output is needed (or one logit for two labels)",
                classes.len(),
                shown.join(", "),
                if classes.len() > 10 { ", ..." } else { "" },
                network.n_outputs()
            )));
        }
        Task::Classification { classes }
    } else {
        if network.n_outputs() != 1 {
            return Err(CliError::Usage(format!(
                "regression needs a network with one output, the ONNX model has {}",
                network.n_outputs()
            )));
        }
        Task::Regression
    };
    let model = NnModel::from_network(network, table.x.view(), options.n_bits.unwrap_or(8), quant, task)?;
    let fhe = FheModel::compile(model.compile()?, options.config)?;
    Ok(SavedModel {
        name: "onnx".into(),
        feature_names: table.feature_names.clone(),
        schema: table.schema.clone(),
        float: FloatModel::Nn(model),
        fhe,
    })
}

/// Quantizes and compiles an imported XGBoost JSON model, calibrating on `table`.
pub fn import_xgboost(json: &Path, table: &Table, n_bits: Option<u8>, config: &FheConfig) -> Result<SavedModel> {
    let mut model = TreeModel::from_xgboost_file(json)?;
    if let Some(n) = n_bits {
        let options = model.compile_options();
        model = model.with_options(n, Some(options.leaf_bits), options.sum_in_fhe)?;
    }
    if model.n_features() != table.x.ncols() {
        return Err(CliError::Usage(format!(
            "the XGBoost model takes {} features, the calibration data has {}",
            model.n_features(),
            table.x.ncols()
        )));
    }
    let fhe = FheModel::compile(model.compile(table.x.view())?, config)?;
    Ok(SavedModel {
        name: "gbdt".into(),
        feature_names: table.feature_names.clone(),
        schema: table.schema.clone(),
        float: FloatModel::Tree(model),
        fhe,
    })
}

/// Trains the float model, quantizes and compiles it with the training data as calibration set.
pub fn train(table: &Table, options: &TrainOptions) -> Result<SavedModel> {
    let y = table.y.as_ref().ok_or_else(|| CliError::Usage("training data needs a target column".into()))?;
    if options.budget_ms.is_some() && options.model != "mlp" {
        return Err(CliError::Usage(format!(
            "--budget-ms sizes mlp networks; {} has no width to choose (its cost is set by its hyperparameters)",
            options.model
        )));
    }
    if let Ok(kind) = TreeModelKind::from_name(options.model) {
        return train_tree(table, y, kind, options);
    }
    if options.model == "mlp" {
        return train_mlp(table, y, options);
    }
    let kind = LinearModelKind::from_name(options.model).map_err(|_| {
        CliError::Usage(format!("unknown model `{}`; valid models: {}", options.model, model_names().join(", ")))
    })?;
    if let Some(task) = options.task {
        let wanted = match task {
            "classification" => true,
            "regression" => false,
            other => return Err(CliError::Usage(format!("unknown task `{other}`; use classification or regression"))),
        };
        if wanted != kind.is_classifier() {
            return Err(CliError::Usage(format!("{} does not do {task}", kind.name())));
        }
    }
    let mut params = LinearParams::new(kind);
    if let Some(n) = options.n_bits {
        params.n_bits = n;
    }
    for (key, value) in options.settings {
        params = params.set(key, value)?;
    }
    let model = LinearModel::fit(params, table.x.view(), y.view())?;
    let fhe = FheModel::compile(model.compile(table.x.view())?, &options.config)?;
    Ok(SavedModel {
        name: kind.name().to_string(),
        feature_names: table.feature_names.clone(),
        schema: table.schema.clone(),
        float: FloatModel::Linear(model),
        fhe,
    })
}

impl SavedModel {
    /// Whether the model predicts classes.
    pub fn is_classifier(&self) -> bool {
        matches!(self.fhe.model().task, Task::Classification { .. })
    }

    /// Writes the model file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = fheml_fhe_runtime::seal(Kind::Model, &self.fhe.compiled().fingerprint(), self)?;
        write_atomically(path, &bytes)
    }

    /// Reads and checks a model file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = read_limited(path, limits::MODEL_BYTES)?;
        Self::from_file_bytes(path, &bytes)
    }

    /// Reads and checks the bytes of a model file read from `path` (named in errors).
    pub fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        if fheml_fhe_runtime::peek_kind(bytes) == Some(Kind::ClientSpec) {
            return Err(CliError::Data {
                path: path.display().to_string(),
                detail: "this is a client file (written by `fheml export-client`): it holds no weights, so only \
                         keygen, encrypt and decrypt take it; this command needs the full model file"
                    .into(),
            });
        }
        // Decoding validates the compiled circuit and recomputes its fingerprint; the header's
        // (what keys and ciphertexts are tied to) must be that one.
        let model = Self::decode(path, bytes)?;
        if fheml_fhe_runtime::peek_fingerprint(bytes, Kind::Model)? != model.fhe.compiled().fingerprint() {
            return Err(CliError::Data {
                path: path.display().to_string(),
                detail: "model: the header's fingerprint does not match the content".into(),
            });
        }
        Ok(model)
    }

    fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        match fheml_fhe_runtime::open::<SavedModel>(bytes, Kind::Model, None, limits::MODEL_BYTES) {
            Ok(model) => Ok(model),
            Err(current) => {
                match fheml_fhe_runtime::open::<SavedModelV1>(bytes, Kind::Model, None, limits::MODEL_BYTES) {
                    Ok(v1) => Ok(SavedModel {
                        schema: DataSchema::numeric(&v1.feature_names),
                        name: v1.name,
                        feature_names: v1.feature_names,
                        float: v1.float,
                        fhe: v1.fhe,
                    }),
                    // The current layout's error names the real problem (truncation, checksum, ...).
                    Err(_) => Err(CliError::Data { path: path.display().to_string(), detail: current.to_string() }),
                }
            }
        }
    }
}

/// Reads a file, refusing anything larger than `limit` before reading it.
pub fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path).map_err(|e| CliError::io(path, e))?.len();
    if size > limit as u64 + 4096 {
        return Err(CliError::Data {
            path: path.display().to_string(),
            detail: format!("{size} bytes exceeds the limit of {limit}"),
        });
    }
    std::fs::read(path).map_err(|e| CliError::io(path, e))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it: a failed write never
/// leaves a partial file behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("fheml-partial");
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CliError::io(path, e)
    })
}

/// Writes a secret (a client key) like [`write_atomically`], readable by its owner only
/// (mode 0600 on Unix) from the moment it exists.
pub fn write_secret_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("fheml-partial");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CliError::io(path, e)
    })
}

/// The feature names an XGBoost JSON model records (`learner.feature_names`), if any.
pub fn xgboost_feature_names(json: &Path) -> Result<Option<Vec<String>>> {
    let text = std::fs::read_to_string(json).map_err(|e| CliError::io(json, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Data { path: json.display().to_string(), detail: format!("not JSON: {e}") })?;
    let names = value.pointer("/learner/feature_names").and_then(|v| v.as_array());
    Ok(names.filter(|n| !n.is_empty()).map(|n| n.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A model file written before the schema was recorded still loads, its columns taken
    /// from the recorded feature names.
    #[test]
    fn version_1_model_files_still_load() {
        let (train, _) = crate::data::embedded("iris").unwrap();
        let options = TrainOptions::defaults("logistic", &[]);
        let saved = super::train(&train, &options).unwrap();
        #[derive(Serialize)]
        struct V1<'a> {
            name: &'a str,
            feature_names: &'a [String],
            float: &'a FloatModel,
            fhe: &'a FheModel,
        }
        let v1 = V1 { name: &saved.name, feature_names: &saved.feature_names, float: &saved.float, fhe: &saved.fhe };
        let bytes = fheml_fhe_runtime::seal(Kind::Model, &saved.fhe.compiled().fingerprint(), &v1).unwrap();
        let dir = std::env::temp_dir().join(format!("fheml-v1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (old, new) = (dir.join("v1.fheml"), dir.join("v2.fheml"));
        std::fs::write(&old, bytes).unwrap();
        saved.save(&new).unwrap();
        let loaded = SavedModel::load(&old).unwrap();
        assert_eq!(loaded.schema, DataSchema::numeric(&saved.feature_names));
        assert_eq!(SavedModel::load(&new).unwrap().schema, saved.schema);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
