//! `eval` and `predict`: a saved model scored or run on the rows of a CSV file.

use crate::*;

/// The arguments of `eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
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
}

impl EvalArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let EvalArgs { model, data, ignore_extra, mode, limit, p_error, json } = self;
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
}

/// The arguments of `predict`.
#[derive(clap::Args)]
pub struct PredictArgs {
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
}

impl PredictArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let PredictArgs { model, data, ignore_extra, mode, proba, out, format, id } = self;
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
}
