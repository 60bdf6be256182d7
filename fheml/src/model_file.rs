//! The `.fheml` model file: the float model (for reference scores), the lowered and
//! compiled model, in one checked envelope; plus atomic file writes.

use std::path::Path;

use fheml_circuits::{FitHooks, FitRequest, FittedModel, ModelCircuit, NoHooks, Task, TaskKind};
use fheml_fhe_runtime::{FheConfig, FheModel, Kind, limits};
use fheml_models_linear::LinearModel;
use fheml_models_nn::{NnModel, NnTask, QuantSettings};
use fheml_models_tree::{TaskKind as TreeTask, TreeError, TreeModel, TreeParams, onnx_ml};
use serde::{Deserialize, Serialize};

use crate::data::{DataSchema, Table};
use crate::error::{Error, Result};
use crate::registry::Registry;

/// Model names `train` accepts, family by family.
pub fn model_names() -> Vec<&'static str> {
    Registry::builtin().model_names()
}

/// The float model a compiled model came from, in the layout model files had before float
/// models were saved by their family (format 2 and earlier): still read.
#[derive(Deserialize)]
enum LegacyFloatModel {
    Linear(LinearModel),
    Tree(TreeModel),
    Nn(NnModel),
}

impl LegacyFloatModel {
    fn boxed(self) -> Box<dyn FittedModel> {
        match self {
            LegacyFloatModel::Linear(m) => Box::new(m),
            LegacyFloatModel::Tree(m) => Box::new(m),
            LegacyFloatModel::Nn(m) => Box::new(m),
        }
    }
}

/// Everything `train` and the importers save.
pub struct SavedModel {
    /// The model's name (`logistic`, `forest`, `mlp`, `onnx`, ...).
    pub name: String,
    /// Feature column names, in order.
    pub feature_names: Vec<String>,
    /// The float model, of any registered family.
    pub float: Box<dyn FittedModel>,
    /// The quantized, lowered and compiled model.
    pub fhe: FheModel,
    /// The data file's columns by name, the target column and the text class labels.
    pub schema: DataSchema,
}

/// Marks the current model layout, where the float model is its family's bytes.
const LAYOUT: [u8; 4] = *b"fm3\0";

/// The current model file layout (the envelope's payload).
#[derive(Serialize)]
struct SavedModelRef<'a> {
    layout: [u8; 4],
    name: &'a str,
    feature_names: &'a [String],
    family: &'a str,
    float: Vec<u8>,
    fhe: &'a FheModel,
    schema: &'a DataSchema,
}

/// [`SavedModelRef`], read back.
#[derive(Deserialize)]
struct SavedModelV3 {
    layout: [u8; 4],
    name: String,
    feature_names: Vec<String>,
    family: String,
    float: Vec<u8>,
    fhe: FheModel,
    schema: DataSchema,
}

/// The layout before float models were saved by their family.
#[derive(Deserialize)]
struct SavedModelV2 {
    name: String,
    feature_names: Vec<String>,
    float: LegacyFloatModel,
    fhe: FheModel,
    /// Last, so that a file written before it existed fails to decode as this layout and is
    /// read as [`SavedModelV1`] instead (bincode has no field names to go by).
    schema: DataSchema,
}

/// The model file layout before [`DataSchema`] was recorded: still read, its columns are the
/// recorded feature names (all numeric), with numeric labels.
#[derive(Deserialize)]
struct SavedModelV1 {
    name: String,
    feature_names: Vec<String>,
    float: LegacyFloatModel,
    fhe: FheModel,
}

/// Training options.
pub struct TrainOptions<'a> {
    /// Model name (see [`model_names`]).
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

/// The caller's hooks, with the runtime's cost model as [`FitHooks::expected_ms`].
struct PricedHooks<'a> {
    config: &'a FheConfig,
    observer: &'a mut dyn FitHooks,
}

impl FitHooks for PricedHooks<'_> {
    fn expected_ms(&mut self, circuit: &ModelCircuit) -> std::result::Result<f64, String> {
        FheModel::compile(circuit.clone(), self.config)
            .map(|m| m.compiled().report().expected_seconds * 1e3)
            .map_err(|e| e.to_string())
    }

    fn progress(&mut self, progress: fheml_circuits::FitProgress) {
        self.observer.progress(progress);
    }

    fn note(&mut self, line: &str) {
        self.observer.note(line);
    }
}

/// Trains the float model, quantizes and compiles it with the training data as calibration set.
pub fn train(table: &Table, options: &TrainOptions) -> Result<SavedModel> {
    train_observed(table, options, &mut NoHooks)
}

/// [`train_observed`] with the families of `registry` (the built-in ones and any added).
pub fn train_with_registry(
    registry: &Registry,
    table: &Table,
    options: &TrainOptions,
    observer: &mut dyn FitHooks,
) -> Result<SavedModel> {
    let y = table.y.as_ref().ok_or_else(|| Error::Usage("training data needs a target column".into()))?;
    let family = registry.family_of(options.model)?;
    let request = FitRequest {
        model: options.model,
        task: options.task.map(TaskKind::from_name).transpose()?,
        n_bits: options.n_bits,
        settings: options.settings,
        x: table.x.view(),
        y: y.view(),
        budget_ms: options.budget_ms,
    };
    let float = family.fit(&request, &mut PricedHooks { config: &options.config, observer })?;
    saved(table, float, &options.config)
}

/// [`train`] with the built-in families, telling `observer` about progress and decisions.
pub fn train_observed(table: &Table, options: &TrainOptions, observer: &mut dyn FitHooks) -> Result<SavedModel> {
    train_with_registry(Registry::builtin(), table, options, observer)
}

/// Lowers `float` (calibrating on the table's rows), compiles it and names its columns.
pub fn saved(table: &Table, float: Box<dyn FittedModel>, config: &FheConfig) -> Result<SavedModel> {
    let fhe = FheModel::compile(float.lower(table.x.view())?, config)?;
    Ok(SavedModel {
        name: float.model_name(),
        feature_names: table.feature_names.clone(),
        schema: table.schema.clone(),
        float,
        fhe,
    })
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
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size > onnx_ml::MAX_ONNX_ML_BYTES {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(matches!(onnx_ml::uses_onnx_ml_domain(&bytes), Ok(true)).then_some(bytes))
}

/// Imports an ONNX-ML tree ensemble into fheml's tree model, quantizes it with inputs
/// calibrated on the table's rows, and compiles it.
fn import_onnx_ml(path: &Path, bytes: &[u8], options: &OnnxImport) -> Result<SavedModel> {
    let model = TreeModel::from_onnx_ml_bytes(bytes).map_err(|e| match e {
        TreeError::OnnxMlFormat(_) | TreeError::OnnxMlUnsupported(_) => {
            Error::Data { path: path.display().to_string(), detail: e.to_string() }
        }
        other => other.into(),
    })?;
    let table = options.table;
    if model.n_features() != table.x.ncols() {
        return Err(Error::Usage(format!(
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
    if let Some(wanted) = options.task.map(TreeTask::from_name).transpose()?
        && wanted != task
    {
        return Err(Error::Usage(format!(
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
            return Err(Error::Usage(format!(
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
        let bad = || Error::Usage(format!("invalid value `{value}` for `{key}`"));
        match key.as_str() {
            "leaf_bits" => leaf_bits = Some(value.parse().map_err(|_| bad())?),
            "sum_in_fhe" => sum_in_fhe = value.parse().map_err(|_| bad())?,
            other => {
                return Err(Error::Usage(format!(
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
        float: Box::new(model),
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
        return Err(Error::Usage(format!(
            "the ONNX model takes {} inputs, the data has {} feature columns",
            network.n_inputs(),
            table.x.ncols()
        )));
    }
    let mut quant = QuantSettings::default();
    for (key, value) in options.settings {
        if !quant.set(key, value)? {
            return Err(Error::Usage(format!(
                "unknown option `{key}` for import-onnx; valid: {}",
                QuantSettings::OPTION_NAMES.join(", ")
            )));
        }
    }
    let classification = match (options.task.map(NnTask::from_name).transpose()?, &table.y) {
        (Some(task), _) => task == NnTask::Classification,
        (None, Some(y)) => TaskKind::infer(y.view()) == TaskKind::Classification,
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
            return Err(Error::Usage(format!(
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
            return Err(Error::Usage(format!(
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
        float: Box::new(model),
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
        return Err(Error::Usage(format!(
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
        float: Box::new(model),
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
        let bytes = self.to_bytes()?;
        write_atomically(path, &bytes)
    }

    /// The model file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let layout = SavedModelRef {
            layout: LAYOUT,
            name: &self.name,
            feature_names: &self.feature_names,
            family: self.float.family(),
            float: self.float.to_bytes()?,
            fhe: &self.fhe,
            schema: &self.schema,
        };
        Ok(fheml_fhe_runtime::seal(Kind::Model, &self.fhe.compiled().fingerprint(), &layout)?)
    }

    /// Reads and checks a model file, its float model decoded by the built-in families.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = read_limited(path, limits::MODEL_BYTES)?;
        Self::from_file_bytes(path, &bytes)
    }

    /// Reads and checks the bytes of a model file read from `path` (named in errors).
    pub fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        Self::from_file_bytes_with(Registry::builtin(), path, bytes)
    }

    /// [`Self::from_file_bytes`], the float model decoded by a family of `registry`.
    pub fn from_file_bytes_with(registry: &Registry, path: &Path, bytes: &[u8]) -> Result<Self> {
        let data = |detail: String| Error::Data { path: path.display().to_string(), detail };
        if fheml_fhe_runtime::peek_kind(bytes) == Some(Kind::ClientSpec) {
            return Err(data(
                "this is a client file (written by `fheml export-client`): it holds no weights, so only \
                 keygen, encrypt and decrypt take it; this command needs the full model file"
                    .into(),
            ));
        }
        // Decoding validates the compiled circuit and recomputes its fingerprint; the header's
        // (what keys and ciphertexts are tied to) must be that one.
        let model = Self::decode(registry, bytes).map_err(data)?;
        if fheml_fhe_runtime::peek_fingerprint(bytes, Kind::Model)? != model.fhe.compiled().fingerprint() {
            return Err(data("model: the header's fingerprint does not match the content".into()));
        }
        Ok(model)
    }

    /// The current layout, else the two before it.
    fn decode(registry: &Registry, bytes: &[u8]) -> std::result::Result<Self, String> {
        let open_v3 = fheml_fhe_runtime::open::<SavedModelV3>(bytes, Kind::Model, None, limits::MODEL_BYTES);
        let current = match open_v3 {
            Ok(v3) if v3.layout == LAYOUT => {
                let float = registry.decode(&v3.family, &v3.float).map_err(|e| e.to_string())?;
                return Ok(SavedModel {
                    name: v3.name,
                    feature_names: v3.feature_names,
                    float,
                    fhe: v3.fhe,
                    schema: v3.schema,
                });
            }
            Ok(_) => "unknown model file layout".to_string(),
            Err(e) => e.to_string(),
        };
        if let Ok(v2) = fheml_fhe_runtime::open::<SavedModelV2>(bytes, Kind::Model, None, limits::MODEL_BYTES) {
            return Ok(SavedModel {
                name: v2.name,
                feature_names: v2.feature_names,
                float: v2.float.boxed(),
                fhe: v2.fhe,
                schema: v2.schema,
            });
        }
        match fheml_fhe_runtime::open::<SavedModelV1>(bytes, Kind::Model, None, limits::MODEL_BYTES) {
            Ok(v1) => Ok(SavedModel {
                schema: DataSchema::numeric(&v1.feature_names),
                name: v1.name,
                feature_names: v1.feature_names,
                float: v1.float.boxed(),
                fhe: v1.fhe,
            }),
            // The current layout's error names the real problem (truncation, checksum, ...).
            Err(_) => Err(current),
        }
    }
}

/// Reads a file, refusing anything larger than `limit` before reading it.
pub fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size > limit as u64 + 4096 {
        return Err(Error::Data {
            path: path.display().to_string(),
            detail: format!("{size} bytes exceeds the limit of {limit}"),
        });
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it: a failed write never
/// leaves a partial file behind.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("fheml-partial");
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
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
        Error::io(path, e)
    })
}

/// The feature names an XGBoost JSON model records (`learner.feature_names`), if any.
pub fn xgboost_feature_names(json: &Path) -> Result<Option<Vec<String>>> {
    let text = std::fs::read_to_string(json).map_err(|e| Error::io(json, e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Data { path: json.display().to_string(), detail: format!("not JSON: {e}") })?;
    let names = value.pointer("/learner/feature_names").and_then(|v| v.as_array());
    Ok(names.filter(|n| !n.is_empty()).map(|n| n.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Model files of the two earlier layouts (float model as an enum over the three
    /// families; before that, without the schema) still load, and the current layout
    /// round-trips.
    #[test]
    fn earlier_model_file_layouts_still_load() {
        let (train, test) = crate::data::embedded("iris").unwrap();
        let options = TrainOptions::defaults("logistic", &[]);
        let saved = super::train(&train, &options).unwrap();
        let linear = saved.float.as_any().downcast_ref::<LinearModel>().unwrap();
        /// `LegacyFloatModel` as it was written: variant 0 is the linear family.
        #[derive(Serialize)]
        enum Float<'a> {
            Linear(&'a LinearModel),
        }
        #[derive(Serialize)]
        struct V1<'a> {
            name: &'a str,
            feature_names: &'a [String],
            float: Float<'a>,
            fhe: &'a FheModel,
        }
        #[derive(Serialize)]
        struct V2<'a> {
            name: &'a str,
            feature_names: &'a [String],
            float: Float<'a>,
            fhe: &'a FheModel,
            schema: &'a DataSchema,
        }
        let fingerprint = saved.fhe.compiled().fingerprint();
        let (name, feature_names, fhe) = (saved.name.as_str(), saved.feature_names.as_slice(), &saved.fhe);
        let v1 = V1 { name, feature_names, float: Float::Linear(linear), fhe };
        let v2 = V2 { name, feature_names, float: Float::Linear(linear), fhe, schema: &saved.schema };
        let v1 = fheml_fhe_runtime::seal(Kind::Model, &fingerprint, &v1).unwrap();
        let v2 = fheml_fhe_runtime::seal(Kind::Model, &fingerprint, &v2).unwrap();
        let path = Path::new("model.fheml");
        let expected = saved.float.predict(test.x.view()).unwrap();
        for (bytes, schema) in [
            (v1, DataSchema::numeric(&saved.feature_names)),
            (v2, saved.schema.clone()),
            (saved.to_bytes().unwrap(), saved.schema.clone()),
        ] {
            let loaded = SavedModel::from_file_bytes(path, &bytes).unwrap();
            assert_eq!(loaded.schema, schema);
            assert_eq!((loaded.name.as_str(), loaded.float.family()), ("logistic", "linear"));
            assert_eq!(loaded.float.predict(test.x.view()).unwrap(), expected);
        }
    }
}
