//! Standard output that tolerates a closed pipe, and the prediction writers shared by
//! `predict`, `decrypt` and `client`.
//!
//! `fheml inspect m | head` closes the pipe early. Rust ignores SIGPIPE, so a write then
//! fails with `BrokenPipe`; `println!` would panic on it. Every line goes through [`line`]
//! instead, which turns the failure into [`CliError::Output`], and `main` ends quietly with
//! status 0 on a broken pipe: the reader has all it wanted.

use std::io::Write;

use fheml_circuits::{Prediction, Task};
use serde_json::{Map, Value};

use crate::data::DataSchema;
use crate::error::{Error as CliError, Result};

/// Writes one line to standard output.
pub fn line(args: std::fmt::Arguments) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.write_all(b"\n")).map_err(CliError::Output)
}

/// `println!` through [`line`]: returns early with the error on a failed write.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}
pub(crate) use say;

/// How predictions are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A header row, then one row per input row.
    Csv,
    /// One JSON object per input row, one per line.
    Json,
}

/// What to write besides the predictions.
pub struct PredictionOutput<'a> {
    /// The model's columns and labels.
    pub schema: &'a DataSchema,
    /// The model's task (its classes, for probability columns).
    pub task: &'a Task,
    /// The `--id` column's name and cells.
    pub ids: Option<(&'a str, &'a [String])>,
    /// Write class probabilities.
    pub proba: bool,
    /// CSV or JSON lines.
    pub format: Format,
}

impl PredictionOutput<'_> {
    /// Checks that probabilities can be written, before anything is computed.
    pub fn check(&self) -> Result<()> {
        if self.proba && !matches!(self.task, Task::Classification { .. }) {
            return Err(CliError::Usage("--proba: a regression model has no class probabilities".into()));
        }
        Ok(())
    }

    /// Writes one prediction per row to `out`.
    pub fn write(&self, out: &mut dyn Write, predictions: &[Prediction]) -> Result<()> {
        let classes = match self.task {
            Task::Classification { classes } => self.schema.class_names(classes),
            Task::Regression => Vec::new(),
        };
        let probabilities = |p: &Prediction| -> Result<Vec<f64>> {
            match &p.probabilities {
                Some(v) if v.len() == classes.len() => Ok(v.clone()),
                _ => Err(CliError::Usage("--proba: this model gives no class probabilities".into())),
            }
        };
        // Text labels stay text; numeric labels and regression values stay JSON numbers.
        let value = |p: &Prediction| -> Value {
            match &self.schema.labels {
                Some(_) => Value::String(self.schema.label(p.value)),
                None => serde_json::Number::from_f64(p.value).map_or(Value::Null, Value::Number),
            }
        };
        match self.format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                let mut header: Vec<String> = self.ids.iter().map(|(name, _)| name.to_string()).collect();
                header.push("prediction".into());
                if self.proba {
                    header.extend(classes.iter().map(|c| format!("proba_{c}")));
                }
                writer.write_record(&header).map_err(csv_error)?;
                for (i, p) in predictions.iter().enumerate() {
                    let mut record: Vec<String> = self.ids.iter().map(|(_, ids)| ids[i].clone()).collect();
                    record.push(self.schema.label(p.value));
                    if self.proba {
                        record.extend(probabilities(p)?.iter().map(f64::to_string));
                    }
                    writer.write_record(&record).map_err(csv_error)?;
                }
                writer.flush().map_err(CliError::Output)
            }
            Format::Json => {
                for (i, p) in predictions.iter().enumerate() {
                    let mut object = Map::new();
                    if let Some((name, ids)) = self.ids {
                        object.insert(name.to_string(), Value::String(ids[i].clone()));
                    }
                    object.insert("prediction".into(), value(p));
                    if self.proba {
                        let named = classes.iter().cloned().zip(probabilities(p)?.into_iter().map(Value::from));
                        object.insert("probabilities".into(), Value::Object(named.collect()));
                    }
                    writeln!(out, "{}", Value::Object(object)).map_err(CliError::Output)?;
                }
                out.flush().map_err(CliError::Output)
            }
        }
    }
}

fn csv_error(e: csv::Error) -> CliError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => CliError::Output(io),
        other => CliError::Usage(format!("cannot write CSV: {other:?}")),
    }
}
