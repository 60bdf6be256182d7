//! `train`, `import-onnx` and `import-xgboost`: a model from data or from a file, compiled and saved.

use crate::*;

/// The arguments of `train`.
#[derive(clap::Args)]
pub struct TrainArgs {
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
}

impl TrainArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let TrainArgs { model, data, categorical, task, n_bits, settings, budget_ms, compile, out } = self;
        let table = data.read()?.training_table(data.training_target(), &categorical)?;
        let task = task_for_labels(&table, &model, task.as_deref())?;
        let config = compile.config()?;
        let settings = parse_settings(&settings)?;
        let options = TrainOptions { model: &model, task, n_bits, settings: &settings, budget_ms, config };
        let mut observer = eval::TrainingProgress::default();
        let trained = model_file::train_observed(&table, &options, &mut observer);
        observer.finish();
        let mut saved = trained?;
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
}

/// The arguments of `import-onnx`.
#[derive(clap::Args)]
pub struct ImportOnnxArgs {
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
}

impl ImportOnnxArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let ImportOnnxArgs { onnx, onnx_flag, data, task, n_bits, settings, compile, out } = self;
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
        let what = saved.float.describe();
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
}

/// The arguments of `import-xgboost`.
#[derive(clap::Args)]
pub struct ImportXgboostArgs {
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
}

impl ImportXgboostArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let ImportXgboostArgs { json, json_flag, data, n_bits, compile, out } = self;
        let json = json.or(json_flag).ok_or_else(|| CliError::Usage("import-xgboost needs the JSON file".into()))?;
        let raw = data.read()?;
        let mut table = raw.training_table(data.training_target(), &[])?;
        if let Some(names) = model_file::xgboost_feature_names(&json)? {
            // The JSON names its features: take the calibration columns by those names, in
            // the model's order, so a reordered or renamed calibration file cannot miscalibrate.
            let schema = DataSchema { target: table.schema.target.clone(), ..DataSchema::numeric(&names) };
            let selection =
                Selection { target: table.schema.target.as_deref(), need_target: false, ignore_extra: false, id: None };
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
    let (what, fix) = match saved.float.family() {
        "tree" => ("tree model", "raise --n-bits (up to 10) or --set leaf_bits"),
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
