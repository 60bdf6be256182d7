//! Scoring a model in a mode, with the figures benchmarks report.

use std::time::Instant;

use fheml_circuits::{ModelCircuit, PostProcessing, Prediction};
use fheml_fhe_runtime::{CompileReport, Mode, limits};
use fheml_quant::metrics::score;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, ArrayView2, Axis, s};
use serde::Serialize;

use crate::error::{Error as CliError, Result};
use crate::model_file::SavedModel;

/// What `eval --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// "accuracy" or "r2".
    pub metric: &'static str,
    /// The float model's score on all rows.
    pub float: f64,
    /// The quantized model's score (Clear) on all rows.
    pub quantized: f64,
    /// The mode of `score`.
    pub mode: String,
    /// Score in `mode` on the rows it ran.
    pub score: f64,
    /// Rows evaluated in `mode`.
    pub rows: usize,
    /// Fraction of those rows whose prediction agrees with Clear's: the same label, or a
    /// real value within one output step.
    pub agree_with_clear: f64,
    /// Bootstraps per sample.
    pub pbs_per_sample: usize,
    /// Largest lookup precision in bits.
    pub max_tlu_bits: u32,
    /// Failure probability per lookup the parameters were chosen for.
    pub p_error: f64,
    /// Chosen parameter set.
    pub parameters: String,
    /// Key generation time (Execute), seconds.
    pub keygen_s: f64,
    /// Size of the compressed evaluation key, bytes (0 without lookups or outside Execute).
    pub eval_key_bytes: usize,
    /// Median per-sample latency in `mode` (quantize + encrypt + evaluate + decrypt), seconds.
    pub latency_s: f64,
    /// Median time of one keyswitch + bootstrap on the chosen set, one thread (Execute), seconds.
    pub bootstrap_s: f64,
    /// Threads the server evaluation used.
    pub threads: usize,
    /// `latency ÷ (bootstraps × bootstrap_s ÷ threads)`: 1 when evaluation is bootstrap-bound.
    pub bootstrap_bound_ratio: f64,
}

/// How far a prediction may be from Clear's and still agree: labels must be equal; a real
/// value decrypts within an error budget (a fraction of its step), so it agrees when it is
/// within one output step (in the decoded units, times the groups the client sums).
fn agreement_tolerance(model: &ModelCircuit, report: &CompileReport, classifier: bool) -> f64 {
    if classifier {
        return 0.0;
    }
    let Some(spec) = model.outputs.first() else { return 0.0 };
    let scale = spec.scale.iter().fold(0.0f64, |m, s| m.max(s.abs()));
    let step = report.outputs.first().map_or(1, |o| o.step.max(1));
    scale * step as f64 * spec.groups.max(1) as f64
}

/// Whether `fhe` agrees with `clear` within `tolerance` decoded units (before the client's
/// post-processing, which for a log link is `exp`).
fn agrees(fhe: f64, clear: f64, tolerance: f64, post: PostProcessing) -> bool {
    if fhe == clear {
        return true;
    }
    let (a, b) = match post {
        PostProcessing::Exp if fhe > 0.0 && clear > 0.0 => (fhe.ln(), clear.ln()),
        _ => (fhe, clear),
    };
    (a - b).abs() <= tolerance * (1.0 + 1e-9)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn progress(len: usize, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

/// Evaluates `model` on `x`/`y`: float and Clear on all rows, `mode` on the first `limit` rows.
pub fn evaluate(
    model: &SavedModel,
    x: ArrayView2<f64>,
    y: &Array1<f64>,
    mode: Mode,
    limit: Option<usize>,
    quiet: bool,
) -> Result<EvalReport> {
    let classifier = model.is_classifier();
    let truth = y.to_vec();
    let float = score(classifier, &model.float.predict(x)?, &truth);
    let fhe = &model.fhe;
    let clear: Vec<f64> = fhe.predict(x, Mode::Clear)?.iter().map(|p| p.value).collect();
    let quantized = score(classifier, &clear, &truth);
    let rows = limit.unwrap_or(x.nrows()).min(x.nrows());
    let subset = x.slice(s![..rows, ..]);
    let report = fhe.compiled().report();
    let (mut keygen_s, mut eval_key_bytes, mut bootstrap_s) = (0.0, 0, 0.0);
    let mut latencies = Vec::with_capacity(rows);
    let predictions: Vec<f64> = match mode {
        Mode::Clear | Mode::Simulate => {
            let start = Instant::now();
            let p: Vec<f64> = fhe.predict(subset, mode)?.iter().map(|p| p.value).collect();
            latencies.push(start.elapsed().as_secs_f64() / rows.max(1) as f64);
            p
        }
        Mode::Execute => {
            let client = fhe.compiled().client_spec();
            let start = Instant::now();
            let (client_key, compressed) = client.keygen_compressed();
            let key_bytes = compressed.to_bytes()?;
            if key_bytes.len() > limits::KEY_BYTES {
                return Err(CliError::Usage("evaluation key exceeds the size limit".into()));
            }
            let eval_key = compressed.decompress();
            keygen_s = start.elapsed().as_secs_f64();
            eval_key_bytes = if report.needs_evaluation_key { key_bytes.len() } else { 0 };
            if report.needs_evaluation_key {
                bootstrap_s = fhe.compiled().time_bootstrap(&eval_key, 9)?;
            }
            let bar = (!quiet).then(|| progress(rows, "execute"));
            let mut out = Vec::with_capacity(rows);
            for row in subset.axis_iter(Axis(0)) {
                let start = Instant::now();
                let inputs = vec![fhe.model().encode(&row.to_vec())?];
                let query = client.encrypt(&client_key, &inputs)?;
                let answer = fhe.compiled().run(&eval_key, &query)?;
                let outputs = client.decrypt(&client_key, &answer)?;
                let prediction = fhe.model().decode(&outputs[0])?;
                latencies.push(start.elapsed().as_secs_f64());
                out.push(prediction.value);
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            out
        }
    };
    let tolerance = agreement_tolerance(fhe.model(), report, classifier);
    let agree = predictions.iter().zip(&clear).filter(|(a, b)| agrees(**a, **b, tolerance, fhe.model().post)).count()
        as f64
        / rows.max(1) as f64;
    let threads = rayon::current_num_threads().max(1);
    let latency_s = median(latencies);
    let bound = report.bootstraps as f64 * bootstrap_s / threads as f64;
    Ok(EvalReport {
        metric: if classifier { "accuracy" } else { "r2" },
        float,
        quantized,
        mode: format!("{mode:?}").to_lowercase(),
        score: score(classifier, &predictions, &truth[..rows]),
        rows,
        agree_with_clear: agree,
        pbs_per_sample: report.bootstraps,
        max_tlu_bits: report.max_precision.0,
        p_error: report.p_error,
        parameters: report.parameter_set.clone(),
        keygen_s,
        eval_key_bytes,
        latency_s,
        bootstrap_s,
        threads,
        bootstrap_bound_ratio: if bound > 0.0 { latency_s / bound } else { f64::NAN },
    })
}

/// Predictions for every row of `x` in `mode`. Execute generates keys once, then encrypts,
/// evaluates and decrypts row by row with a progress bar on standard error.
pub fn predict(model: &SavedModel, x: ArrayView2<f64>, mode: Mode) -> Result<Vec<Prediction>> {
    let fhe = &model.fhe;
    match mode {
        Mode::Clear | Mode::Simulate => Ok(fhe.predict(x, mode)?),
        Mode::Execute => {
            let client = fhe.compiled().client_spec();
            let (client_key, compressed) = client.keygen_compressed();
            let eval_key = compressed.decompress();
            let bar = progress(x.nrows(), "execute");
            let mut out = Vec::with_capacity(x.nrows());
            for row in x.axis_iter(Axis(0)) {
                let inputs = vec![fhe.model().encode(&row.to_vec())?];
                let answer = fhe.compiled().run(&eval_key, &client.encrypt(&client_key, &inputs)?)?;
                out.push(fhe.model().decode(&client.decrypt(&client_key, &answer)?[0])?);
                bar.inc(1);
            }
            bar.finish_and_clear();
            Ok(out)
        }
    }
}

/// Training progress on stderr: epochs on a bar, budget pricing on its message, and the
/// fit's decisions as lines.
#[derive(Default)]
pub struct TrainingProgress {
    bar: Option<ProgressBar>,
}

impl TrainingProgress {
    /// Clears the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

impl fheml_circuits::FitHooks for TrainingProgress {
    fn progress(&mut self, report: fheml_circuits::FitProgress) {
        match report {
            fheml_circuits::FitProgress::Epoch { epoch, of, loss } => {
                // The budget's pricing spinner, if any, gives way to the epochs' bar.
                if let Some(spinner) = self.bar.take_if(|b| b.length().is_none()) {
                    spinner.finish_and_clear();
                }
                let bar = self.bar.get_or_insert_with(|| progress(of, "training"));
                bar.set_position(epoch as u64);
                bar.set_message(format!("loss {loss:.4}"));
            }
            fheml_circuits::FitProgress::Priced { candidates } => {
                let bar = self.bar.get_or_insert_with(ProgressBar::new_spinner);
                bar.set_message(format!("sizing for the budget: pricing candidate {candidates}"));
                bar.tick();
            }
        }
    }

    fn note(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
