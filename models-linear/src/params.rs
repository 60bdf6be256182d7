//! Hyperparameters of every linear model, settable by name (`--set key=value`) and checked.
//!
//! [`LinearParams`] is the uniform, untyped form the command line uses; the typed builders
//! in [`crate::estimators`] wrap it and expose only the setters each model has.

use serde::{Deserialize, Serialize};

use crate::error::{LinearError, Result};
use crate::kind::LinearModelKind;

/// Loss functions of the SVMs and SGD models (scikit-learn's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Loss {
    /// `max(0, 1 - y·f)` (classifiers).
    Hinge,
    /// `max(0, 1 - y·f)²` (classifiers).
    SquaredHinge,
    /// `log(1 + exp(-y·f))` (SGD classifier).
    LogLoss,
    /// `½(y - f)²` (SGD regressor).
    SquaredError,
    /// `max(0, |y - f| - ε)` (regressors).
    EpsilonInsensitive,
    /// `max(0, |y - f| - ε)²` (regressors).
    SquaredEpsilonInsensitive,
}

impl Loss {
    const ALL: [Loss; 6] = [
        Self::Hinge,
        Self::SquaredHinge,
        Self::LogLoss,
        Self::SquaredError,
        Self::EpsilonInsensitive,
        Self::SquaredEpsilonInsensitive,
    ];

    /// scikit-learn's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hinge => "hinge",
            Self::SquaredHinge => "squared_hinge",
            Self::LogLoss => "log_loss",
            Self::SquaredError => "squared_error",
            Self::EpsilonInsensitive => "epsilon_insensitive",
            Self::SquaredEpsilonInsensitive => "squared_epsilon_insensitive",
        }
    }

    /// The losses `kind` can use (empty for models without a loss option).
    pub fn allowed(kind: LinearModelKind) -> &'static [Loss] {
        match kind {
            LinearModelKind::LinearSvc => &[Self::SquaredHinge, Self::Hinge],
            LinearModelKind::LinearSvr => &[Self::EpsilonInsensitive, Self::SquaredEpsilonInsensitive],
            LinearModelKind::SgdClassifier => &[Self::Hinge, Self::LogLoss, Self::SquaredHinge],
            LinearModelKind::SgdRegressor => {
                &[Self::SquaredError, Self::EpsilonInsensitive, Self::SquaredEpsilonInsensitive]
            }
            _ => &[],
        }
    }
}

/// Step-size schedules of the SGD models (scikit-learn's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LearningRate {
    /// `eta0` throughout.
    Constant,
    /// `1 / (alpha·(t0 + t))`, with Bottou's heuristic for `t0`.
    Optimal,
    /// `eta0 / t^power_t`.
    InvScaling,
}

impl LearningRate {
    const ALL: [LearningRate; 3] = [Self::Constant, Self::Optimal, Self::InvScaling];

    /// scikit-learn's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Optimal => "optimal",
            Self::InvScaling => "invscaling",
        }
    }
}

/// Hyperparameters of every linear model; each model reads those listed by
/// [`LinearModelKind::option_names`]. Defaults follow scikit-learn / Concrete ML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearParams {
    /// Which model.
    pub kind: LinearModelKind,
    /// Input quantization bits, per feature (Concrete ML's default: 8).
    pub n_bits: u8,
    /// Weight quantization bits (default 8).
    pub w_bits: u8,
    /// Fit on features centred and scaled to unit variance (and centred targets for the SVR
    /// and SGD regressor), then map the coefficients back to raw features. Penalties then
    /// treat every feature alike (glmnet's convention); `false` applies them to raw
    /// coefficients exactly as scikit-learn does. Default `true`.
    pub standardize: bool,
    /// Penalty strength: ridge, lasso, elastic net and GLMs as scikit-learn's `alpha`;
    /// logistic regression `1/C`; SGD models scikit-learn's `alpha`.
    pub alpha: f64,
    /// Elastic-net mixing: 1 is the lasso, 0 ridge.
    pub l1_ratio: f64,
    /// Inverse penalty of the SVMs (scikit-learn's `C`).
    pub c: f64,
    /// Width of the insensitive tube (SVR, SGD regressor's epsilon losses).
    pub epsilon: f64,
    /// Tweedie power: 0 normal, 1 Poisson, 2 Gamma, in between compound Poisson–Gamma,
    /// 3 inverse Gaussian. Default 1.5: scikit-learn's default 0 goes with an identity
    /// link, and fheml's GLMs always use the log link.
    pub power: f64,
    /// Loss of the SVMs and SGD models.
    pub loss: Loss,
    /// SGD step-size schedule.
    pub learning_rate: LearningRate,
    /// SGD initial step (constant and invscaling schedules).
    pub eta0: f64,
    /// SGD exponent of the invscaling schedule.
    pub power_t: f64,
    /// Iterations (epochs for SGD and the SVMs' coordinate descent).
    pub max_iter: usize,
    /// Stopping tolerance.
    pub tol: f64,
    /// Seed of the shuffles (SGD, SVMs).
    pub seed: u64,
}

fn invalid(name: &'static str, value: impl ToString, expected: impl Into<String>) -> LinearError {
    LinearError::InvalidParam { name, value: value.to_string(), expected: expected.into() }
}

fn parse_number(name: &'static str, value: &str) -> Result<f64> {
    value.trim().parse::<f64>().map_err(|_| invalid(name, value, "a number"))
}

fn parse_count<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T> {
    value.trim().parse::<T>().map_err(|_| invalid(name, value, "a non-negative integer"))
}

impl LinearParams {
    /// Defaults for `kind`: 8-bit inputs and weights, scikit-learn's hyperparameters.
    pub fn new(kind: LinearModelKind) -> Self {
        use LinearModelKind::*;
        let alpha = match kind {
            Linear => 0.0,
            SgdClassifier | SgdRegressor => 1e-4,
            _ => 1.0,
        };
        let loss = Loss::allowed(kind).first().copied().unwrap_or(Loss::SquaredError);
        let (learning_rate, eta0, power_t) = match kind {
            SgdRegressor => (LearningRate::InvScaling, 0.01, 0.25),
            _ => (LearningRate::Optimal, 0.01, 0.5),
        };
        let (max_iter, tol) = match kind {
            Poisson | Gamma | Tweedie => (100, 1e-4),
            SgdClassifier | SgdRegressor => (1000, 1e-3),
            _ => (1000, 1e-4),
        };
        Self {
            kind,
            n_bits: 8,
            w_bits: 8,
            standardize: true,
            alpha,
            l1_ratio: 0.5,
            c: 1.0,
            epsilon: if kind == SgdRegressor { 0.1 } else { 0.0 },
            power: match kind {
                Poisson => 1.0,
                Gamma => 2.0,
                _ => 1.5,
            },
            loss,
            learning_rate,
            eta0,
            power_t,
            max_iter,
            tol,
            seed: 0,
        }
    }

    /// Defaults for `kind` with `key=value` options applied in order, then checked.
    pub fn from_options<K: AsRef<str>, V: AsRef<str>>(
        kind: LinearModelKind,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        options.into_iter().try_fold(Self::new(kind), |p, (k, v)| p.set(k.as_ref(), v.as_ref()))?.check()
    }

    /// Sets one option from its command-line form (`--set key=value`). Keys the model does
    /// not read are an error naming the valid ones; values are checked by [`Self::check`].
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        let valid = self.kind.option_names();
        let Some(name) = valid.iter().copied().find(|n| *n == key) else {
            return Err(LinearError::UnknownOption { model: self.kind.name(), key: key.to_string(), valid });
        };
        match name {
            "n_bits" => self.n_bits = parse_count(name, value)?,
            "w_bits" => self.w_bits = parse_count(name, value)?,
            "standardize" => {
                self.standardize = value.trim().parse().map_err(|_| invalid(name, value, "true or false"))?;
            }
            "alpha" => self.alpha = parse_number(name, value)?,
            "l1_ratio" => self.l1_ratio = parse_number(name, value)?,
            "c" => self.c = parse_number(name, value)?,
            "epsilon" => self.epsilon = parse_number(name, value)?,
            "power" => self.power = parse_number(name, value)?,
            "eta0" => self.eta0 = parse_number(name, value)?,
            "power_t" => self.power_t = parse_number(name, value)?,
            "tol" => self.tol = parse_number(name, value)?,
            "max_iter" => self.max_iter = parse_count(name, value)?,
            "seed" => self.seed = parse_count(name, value)?,
            "loss" => {
                self.loss = Loss::ALL.into_iter().find(|l| l.name() == value.trim()).ok_or_else(|| {
                    let names: Vec<_> = Loss::allowed(self.kind).iter().map(|l| l.name()).collect();
                    invalid(name, value, format!("one of {}", names.join(", ")))
                })?;
            }
            "learning_rate" => {
                self.learning_rate = LearningRate::ALL
                    .into_iter()
                    .find(|l| l.name() == value.trim())
                    .ok_or_else(|| invalid(name, value, "one of constant, optimal, invscaling"))?;
            }
            _ => return Err(LinearError::UnknownOption { model: self.kind.name(), key: key.to_string(), valid }),
        }
        Ok(self)
    }

    /// Validates every value the model reads.
    pub fn check(self) -> Result<Self> {
        use LinearModelKind::*;
        let kind = self.kind;
        let reads = |name: &str| kind.option_names().contains(&name);
        if !(1..=16).contains(&self.n_bits) {
            return Err(invalid("n_bits", self.n_bits, "an integer in 1..=16"));
        }
        if !(2..=16).contains(&self.w_bits) {
            return Err(invalid("w_bits", self.w_bits, "an integer in 2..=16"));
        }
        if reads("alpha") && !(self.alpha >= 0.0 && self.alpha.is_finite()) {
            return Err(invalid("alpha", self.alpha, "a finite number >= 0"));
        }
        if reads("l1_ratio") && !(0.0..=1.0).contains(&self.l1_ratio) {
            return Err(invalid("l1_ratio", self.l1_ratio, "a number in [0, 1]"));
        }
        if reads("c") && !(self.c > 0.0 && self.c.is_finite()) {
            return Err(invalid("c", self.c, "a finite number > 0"));
        }
        if reads("epsilon") && !(self.epsilon >= 0.0 && self.epsilon.is_finite()) {
            return Err(invalid("epsilon", self.epsilon, "a finite number >= 0"));
        }
        if kind == Tweedie && !(self.power == 0.0 || (self.power >= 1.0 && self.power.is_finite())) {
            return Err(invalid("power", self.power, "0, or a finite number >= 1"));
        }
        if reads("loss") && !Loss::allowed(kind).contains(&self.loss) {
            let names: Vec<_> = Loss::allowed(kind).iter().map(|l| l.name()).collect();
            return Err(invalid("loss", self.loss.name(), format!("one of {}", names.join(", "))));
        }
        if reads("learning_rate") {
            if self.learning_rate == LearningRate::Optimal && self.alpha <= 0.0 {
                return Err(invalid("alpha", self.alpha, "a number > 0 with learning_rate=optimal"));
            }
            if self.learning_rate != LearningRate::Optimal && !(self.eta0 > 0.0 && self.eta0.is_finite()) {
                return Err(invalid("eta0", self.eta0, "a finite number > 0 with this learning_rate"));
            }
            if !self.power_t.is_finite() {
                return Err(invalid("power_t", self.power_t, "a finite number"));
            }
        }
        if reads("max_iter") && self.max_iter == 0 {
            return Err(invalid("max_iter", self.max_iter, "an integer >= 1"));
        }
        if reads("tol") && !(self.tol > 0.0 && self.tol.is_finite()) {
            return Err(invalid("tol", self.tol, "a finite number > 0"));
        }
        Ok(self)
    }

    /// The Tweedie power of the GLMs (1 for Poisson, 2 for Gamma).
    pub(crate) fn tweedie_power(&self) -> f64 {
        match self.kind {
            LinearModelKind::Poisson => 1.0,
            LinearModelKind::Gamma => 2.0,
            _ => self.power,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_pass_their_own_check() {
        for kind in LinearModelKind::ALL {
            LinearParams::new(kind).check().unwrap();
        }
    }

    #[test]
    fn options_parse_and_bad_values_are_typed_errors() {
        let p = LinearParams::from_options(LinearModelKind::SgdClassifier, [("loss", "log_loss"), ("alpha", "0.01")])
            .unwrap();
        assert_eq!((p.loss, p.alpha), (Loss::LogLoss, 0.01));
        let ridge = || LinearParams::new(LinearModelKind::Ridge);
        assert!(matches!(
            ridge().set("alpha", "-1").unwrap().check(),
            Err(LinearError::InvalidParam { name: "alpha", .. })
        ));
        assert!(matches!(ridge().set("alpha", "x"), Err(LinearError::InvalidParam { name: "alpha", .. })));
        assert!(matches!(
            ridge().set("n_bits", "0").unwrap().check(),
            Err(LinearError::InvalidParam { name: "n_bits", .. })
        ));
        assert!(matches!(ridge().set("n_bits", "300"), Err(LinearError::InvalidParam { name: "n_bits", .. })));
        let err = ridge().set("c", "1").unwrap_err();
        assert!(
            matches!(&err, LinearError::UnknownOption { key, valid, .. } if key == "c" && valid.contains(&"alpha"))
        );
        let svc = LinearParams::new(LinearModelKind::LinearSvc);
        assert!(matches!(
            svc.clone().set("loss", "log_loss").unwrap().check(),
            Err(LinearError::InvalidParam { name: "loss", .. })
        ));
        assert!(matches!(svc.set("loss", "nope"), Err(LinearError::InvalidParam { name: "loss", .. })));
        let tweedie = LinearParams::new(LinearModelKind::Tweedie).set("power", "0.5").unwrap();
        assert!(matches!(tweedie.check(), Err(LinearError::InvalidParam { name: "power", .. })));
    }
}
