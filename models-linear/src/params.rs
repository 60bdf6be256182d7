//! Checked hyperparameters.

use serde::{Deserialize, Serialize};

use crate::error::{LinearError, Result};
use crate::kind::LinearModelKind;

/// Hyperparameters of every linear model (each model reads the ones it has).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearParams {
    /// Which model.
    pub kind: LinearModelKind,
    /// Input quantization bits (Concrete ML's default: 8).
    pub n_bits: u8,
    /// Weight quantization bits.
    pub w_bits: u8,
    /// Regularization strength (ridge, lasso, elastic net, logistic, GLMs, SGD).
    pub alpha: f64,
    /// Elastic-net mixing between L1 (1) and L2 (0).
    pub l1_ratio: f64,
    /// Tweedie power (0 normal, 1 Poisson, 2 Gamma; between 1 and 2 compound Poisson).
    pub power: f64,
    /// Inverse regularization of the SVMs.
    pub c: f64,
    /// Insensitive margin of the SVR.
    pub epsilon: f64,
    /// Iterations of iterative solvers.
    pub max_iter: usize,
    /// Passes over the data (SGD).
    pub epochs: usize,
    /// Initial step (SGD).
    pub learning_rate: f64,
    /// Random seed (SGD shuffling).
    pub seed: u64,
}

/// The option names `set` accepts.
pub const OPTION_NAMES: [&str; 11] =
    ["n_bits", "w_bits", "alpha", "l1_ratio", "power", "c", "epsilon", "max_iter", "epochs", "learning_rate", "seed"];

impl LinearParams {
    /// Defaults for `kind` (8-bit inputs and weights as in Concrete ML).
    pub fn new(kind: LinearModelKind) -> Self {
        let alpha = match kind {
            LinearModelKind::Linear => 0.0,
            LinearModelKind::Lasso | LinearModelKind::ElasticNet => 0.1,
            LinearModelKind::SgdClassifier | LinearModelKind::SgdRegressor => 1e-4,
            LinearModelKind::Poisson | LinearModelKind::Gamma | LinearModelKind::Tweedie => 1e-3,
            _ => 1.0,
        };
        Self {
            kind,
            n_bits: 8,
            w_bits: 8,
            alpha,
            l1_ratio: 0.5,
            power: 1.5,
            c: 1.0,
            epsilon: 0.0,
            max_iter: 100,
            epochs: 50,
            learning_rate: 0.05,
            seed: 0,
        }
    }

    /// Sets one option from its command-line form (`--set key=value`).
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        let number = || value.parse::<f64>().map_err(|_| LinearError::Param(format!("{key}={value}: not a number")));
        let count = || value.parse::<usize>().map_err(|_| LinearError::Param(format!("{key}={value}: not a count")));
        match key {
            "n_bits" => self.n_bits = count()? as u8,
            "w_bits" => self.w_bits = count()? as u8,
            "alpha" => self.alpha = number()?,
            "l1_ratio" => self.l1_ratio = number()?,
            "power" => self.power = number()?,
            "c" => self.c = number()?,
            "epsilon" => self.epsilon = number()?,
            "max_iter" => self.max_iter = count()?,
            "epochs" => self.epochs = count()?,
            "learning_rate" => self.learning_rate = number()?,
            "seed" => self.seed = count()? as u64,
            _ => {
                return Err(LinearError::Param(format!(
                    "unknown option `{key}` for {}; valid options: {}",
                    self.kind.name(),
                    OPTION_NAMES.join(", ")
                )));
            }
        }
        Ok(self)
    }

    /// Validates every value.
    pub fn check(self) -> Result<Self> {
        let bad = |m: String| Err(LinearError::Param(m));
        if !(1..=16).contains(&self.n_bits) || !(2..=16).contains(&self.w_bits) {
            return bad(format!(
                "n_bits must be in 1..=16 and w_bits in 2..=16, got {} and {}",
                self.n_bits, self.w_bits
            ));
        }
        if !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return bad(format!("alpha must be >= 0, got {}", self.alpha));
        }
        if !(0.0..=1.0).contains(&self.l1_ratio) {
            return bad(format!("l1_ratio must be in [0, 1], got {}", self.l1_ratio));
        }
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !(positive(self.c) && positive(self.learning_rate) && self.epsilon >= 0.0 && self.epsilon.is_finite()) {
            return bad("c and learning_rate must be > 0, epsilon >= 0".into());
        }
        if self.kind == LinearModelKind::Tweedie && (self.power > 0.0 && self.power < 1.0 || self.power < 0.0) {
            return bad(format!("Tweedie power must be 0 or >= 1, got {}", self.power));
        }
        if self.max_iter == 0 || self.epochs == 0 {
            return bad("max_iter and epochs must be positive".into());
        }
        Ok(self)
    }
}
