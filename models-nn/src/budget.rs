//! Sizing an MLP for a latency target: the widest hidden layers, and then the most bits,
//! whose encrypted evaluation the cost model expects within the budget.
//!
//! Latency under TFHE is one bootstrap per hidden unit, at a cost set by the parameter set
//! the planner picks for the circuit's reads and weights. Neither is known before training,
//! so each candidate is trained briefly (a probe of a few epochs: enough for realistic
//! weights and accumulator ranges), lowered, and priced by a caller-supplied estimate
//! (the runtime's planner: this crate does not depend on it). Widths are searched by
//! bisection, as latency grows with width; at the chosen width one more bit of weights and
//! activations is taken if it still fits.
//!
//! ```
//! use fheml_models_nn::budget::{BudgetSearch, size_for_budget};
//! use fheml_models_nn::{MlpParams, NnTask};
//! use ndarray::{Array1, Array2};
//!
//! let x = Array2::from_shape_fn((40, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
//! let y = Array1::from_shape_fn(40, |i| (i % 2) as f64);
//! let params = MlpParams::from_options(NnTask::Classification, [("epochs", "4")])?;
//! // A stand-in for the planner's estimate: 10 ms per bootstrap.
//! let mut estimate = |c: &fheml_circuits::ModelCircuit| Ok::<f64, String>(10.0 * c.circuit.cost().bootstraps as f64);
//! let choice = size_for_budget(&params, x.view(), y.view(), 250.0, BudgetSearch::default(), &mut estimate)?;
//! assert_eq!(choice.params.get().hidden, vec![24]);
//! assert!(choice.expected_ms <= 250.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use fheml_circuits::ModelCircuit;
use ndarray::{ArrayView1, ArrayView2};

use crate::error::{NnError, Result};
use crate::params::{MlpParams, ValidMlpParams};

/// Hidden widths tried, narrowest first.
pub const WIDTHS: &[usize] = &[4, 8, 12, 16, 24, 32, 48, 64, 96, 128];

/// Most weight/activation bits the search raises to.
pub const MAX_BITS: u8 = 4;

/// Epochs of a probe training (at most the configured epochs).
pub const PROBE_EPOCHS: usize = 8;

/// What the search may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSearch {
    /// Choose the hidden width (every hidden layer gets it); off when the user set `hidden`.
    pub width: bool,
    /// Raise `w_bits`/`a_bits` by one where it fits; off when the user set either.
    pub bits: bool,
}

impl Default for BudgetSearch {
    fn default() -> Self {
        Self { width: true, bits: true }
    }
}

/// One candidate priced during the search.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetTrial {
    /// Hidden layers.
    pub hidden: Vec<usize>,
    /// Weight and activation bits.
    pub bits: (u8, u8),
    /// Expected milliseconds per sample, or why it could not be priced.
    pub expected_ms: std::result::Result<f64, String>,
}

/// The configuration chosen for a budget.
#[derive(Debug, Clone)]
pub struct BudgetChoice {
    /// Hyperparameters to train with (the caller's, with width and bits chosen).
    pub params: ValidMlpParams,
    /// The probe's expected milliseconds per sample.
    pub expected_ms: f64,
    /// Every candidate priced, in the order tried.
    pub trials: Vec<BudgetTrial>,
}

/// Picks hidden width and bits for `budget_ms` per sample. `expected_ms` prices a lowered
/// model (the runtime planner's expected Execute time); an error from it marks the
/// candidate as not fitting (e.g. no parameter set).
pub fn size_for_budget(
    base: &ValidMlpParams,
    x: ArrayView2<f64>,
    y: ArrayView1<f64>,
    budget_ms: f64,
    search: BudgetSearch,
    expected_ms: &mut dyn FnMut(&ModelCircuit) -> std::result::Result<f64, String>,
) -> Result<BudgetChoice> {
    if !(budget_ms.is_finite() && budget_ms > 0.0) {
        return Err(NnError::InvalidParameter { name: "budget_ms".into(), reason: format!("{budget_ms} (> 0)") });
    }
    let base = base.sized_for(x.ncols());
    let p = base.get();
    let layers = p.hidden.len().max(1);
    let mut trials = Vec::new();
    let mut price = |hidden: Vec<usize>, bits: (u8, u8)| -> Result<(ValidMlpParams, BudgetTrial)> {
        let params = with(&base, |q| {
            q.hidden = hidden.clone();
            (q.w_bits, q.a_bits) = bits;
        })?;
        let probe = with(&params, |q| q.epochs = q.epochs.min(PROBE_EPOCHS))?;
        let priced = probe.fit(x, y)?.compile().map_err(|e| e.to_string()).and_then(|c| expected_ms(&c));
        Ok((params, BudgetTrial { hidden, bits, expected_ms: priced }))
    };
    let fits = |t: &BudgetTrial| t.expected_ms.as_ref().is_ok_and(|ms| *ms <= budget_ms);

    // The widest width that fits, by bisection over WIDTHS (latency grows with width).
    let mut best: Option<(ValidMlpParams, f64)> = None;
    if search.width {
        let (mut lo, mut hi) = (0usize, WIDTHS.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (params, trial) = price(vec![WIDTHS[mid]; layers], (p.w_bits, p.a_bits))?;
            let ok = fits(&trial);
            // Bisection only moves up past a fit, so a later fit is always wider.
            if let (true, Ok(ms)) = (ok, &trial.expected_ms) {
                best = Some((params, *ms));
            }
            trials.push(trial);
            if ok { lo = mid + 1 } else { hi = mid }
        }
    } else {
        let (params, trial) = price(p.hidden.clone(), (p.w_bits, p.a_bits))?;
        if let (true, Ok(ms)) = (fits(&trial), &trial.expected_ms) {
            best = Some((params, *ms));
        }
        trials.push(trial);
    }
    let Some((mut chosen, mut chosen_ms)) = best else {
        return Err(NnError::InvalidParameter { name: "budget_ms".into(), reason: no_fit(budget_ms, &trials) });
    };
    if search.bits && chosen.get().w_bits < MAX_BITS && chosen.get().a_bits < MAX_BITS {
        let bits = (chosen.get().w_bits + 1, chosen.get().a_bits + 1);
        let (params, trial) = price(chosen.get().hidden.clone(), bits)?;
        if let (true, Ok(ms)) = (fits(&trial), &trial.expected_ms) {
            (chosen, chosen_ms) = (params, *ms);
        }
        trials.push(trial);
    }
    Ok(BudgetChoice { params: chosen, expected_ms: chosen_ms, trials })
}

/// `params` changed by `edit`, checked again.
fn with(params: &ValidMlpParams, edit: impl FnOnce(&mut MlpParams)) -> Result<ValidMlpParams> {
    let mut p = params.get().clone();
    edit(&mut p);
    p.hidden_is_default = false;
    p.check()
}

/// One sentence: the budget, the cheapest candidate's price and what to change.
fn no_fit(budget_ms: f64, trials: &[BudgetTrial]) -> String {
    let cheapest =
        trials.iter().filter_map(|t| t.expected_ms.as_ref().ok().map(|ms| (t, *ms))).min_by(|a, b| a.1.total_cmp(&b.1));
    match cheapest {
        Some((t, ms)) => format!(
            "{budget_ms} ms fits no network: the cheapest tried (hidden={}, {} bits) is expected to take {ms:.0} ms \
             per sample; raise the budget or use fewer features",
            join(&t.hidden),
            t.bits.0
        ),
        None => format!(
            "{budget_ms} ms: no candidate compiled ({})",
            trials.first().and_then(|t| t.expected_ms.as_ref().err()).map_or("no candidate", String::as_str)
        ),
    }
}

fn join(widths: &[usize]) -> String {
    widths.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ndarray::{Array1, Array2};

    use super::*;
    use crate::params::NnTask;

    fn data() -> (Array2<f64>, Array1<f64>) {
        (
            Array2::from_shape_fn((30, 2), |(i, j)| ((i * 5 + j) % 7) as f64),
            Array1::from_shape_fn(30, |i| (i % 2) as f64),
        )
    }

    /// 10 ms per bootstrap.
    fn estimate(c: &ModelCircuit) -> std::result::Result<f64, String> {
        Ok(10.0 * c.circuit.cost().bootstraps as f64)
    }

    #[test]
    fn bisection_finds_the_widest_fitting_width_then_tries_one_more_bit() {
        let (x, y) = data();
        let base = MlpParams::from_options(NnTask::Classification, [("epochs", "2")]).unwrap();
        let choice = size_for_budget(&base, x.view(), y.view(), 500.0, BudgetSearch::default(), &mut estimate).unwrap();
        assert_eq!(choice.params.get().hidden, vec![48]);
        assert_eq!((choice.params.get().w_bits, choice.params.get().a_bits), (4, 4));
        assert!(choice.trials.len() <= 5, "{:?}", choice.trials);
        // Widths only: the bits stay.
        let widths = BudgetSearch { width: true, bits: false };
        let choice = size_for_budget(&base, x.view(), y.view(), 100.0, widths, &mut estimate).unwrap();
        assert_eq!((choice.params.get().hidden.clone(), choice.params.get().w_bits), (vec![8], 3));
    }

    #[test]
    fn an_impossible_budget_names_the_cheapest_candidate() {
        let (x, y) = data();
        let base = MlpParams::from_options(NnTask::Classification, [("epochs", "2")]).unwrap();
        let message = size_for_budget(&base, x.view(), y.view(), 5.0, BudgetSearch::default(), &mut estimate)
            .unwrap_err()
            .to_string();
        assert!(message.contains("hidden=4") && message.contains("40 ms"), "{message}");
        let bad = size_for_budget(&base, x.view(), y.view(), f64::NAN, BudgetSearch::default(), &mut estimate);
        assert!(bad.is_err());
    }
}
