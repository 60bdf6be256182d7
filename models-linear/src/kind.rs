//! The linear family by name: the registry behind the command line.

use serde::{Deserialize, Serialize};

use crate::error::{LinearError, Result};

/// Every linear model fheml fits, by its command-line name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LinearModelKind {
    /// Ordinary least squares (`linear`).
    Linear,
    /// L2-penalised least squares (`ridge`).
    Ridge,
    /// L1-penalised least squares (`lasso`).
    Lasso,
    /// L1 + L2-penalised least squares (`elasticnet`).
    ElasticNet,
    /// Logistic regression, binary or multinomial (`logistic`).
    Logistic,
    /// Linear support-vector classifier, one-vs-rest (`linear-svc`).
    LinearSvc,
    /// Linear support-vector regressor (`linear-svr`).
    LinearSvr,
    /// Linear classifier fitted by stochastic gradient descent, one-vs-rest (`sgd-classifier`).
    SgdClassifier,
    /// Linear regressor fitted by stochastic gradient descent (`sgd-regressor`).
    SgdRegressor,
    /// Poisson GLM with log link (`poisson`).
    Poisson,
    /// Gamma GLM with log link (`gamma`).
    Gamma,
    /// Tweedie GLM with log link (`tweedie`).
    Tweedie,
}

const COMMON: [&str; 2] = ["n_bits", "w_bits"];

impl LinearModelKind {
    /// The command-line names, in the order of [`Self::ALL`].
    pub const NAMES: [&'static str; 12] = [
        "linear",
        "ridge",
        "lasso",
        "elasticnet",
        "logistic",
        "linear-svc",
        "linear-svr",
        "sgd-classifier",
        "sgd-regressor",
        "poisson",
        "gamma",
        "tweedie",
    ];

    /// Every kind.
    pub const ALL: [LinearModelKind; 12] = [
        Self::Linear,
        Self::Ridge,
        Self::Lasso,
        Self::ElasticNet,
        Self::Logistic,
        Self::LinearSvc,
        Self::LinearSvr,
        Self::SgdClassifier,
        Self::SgdRegressor,
        Self::Poisson,
        Self::Gamma,
        Self::Tweedie,
    ];

    /// Parses a command-line name; an unknown name is an error listing the valid ones.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::NAMES
            .iter()
            .zip(Self::ALL)
            .find_map(|(n, kind)| (*n == name).then_some(kind))
            .ok_or_else(|| LinearError::UnknownModel { name: name.to_string() })
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Ridge => "ridge",
            Self::Lasso => "lasso",
            Self::ElasticNet => "elasticnet",
            Self::Logistic => "logistic",
            Self::LinearSvc => "linear-svc",
            Self::LinearSvr => "linear-svr",
            Self::SgdClassifier => "sgd-classifier",
            Self::SgdRegressor => "sgd-regressor",
            Self::Poisson => "poisson",
            Self::Gamma => "gamma",
            Self::Tweedie => "tweedie",
        }
    }

    /// Whether the model predicts classes.
    pub fn is_classifier(self) -> bool {
        matches!(self, Self::Logistic | Self::LinearSvc | Self::SgdClassifier)
    }

    /// Whether the model predicts through a log link (`exp` of the score).
    pub fn is_log_link(self) -> bool {
        matches!(self, Self::Poisson | Self::Gamma | Self::Tweedie)
    }

    /// The hyperparameters the model reads: the keys [`crate::LinearParams::set`] accepts.
    pub fn option_names(self) -> Vec<&'static str> {
        let own: &[&str] = match self {
            Self::Linear => &[],
            Self::Ridge => &["alpha", "standardize"],
            Self::Lasso => &["alpha", "max_iter", "tol", "standardize"],
            Self::ElasticNet => &["alpha", "l1_ratio", "max_iter", "tol", "standardize"],
            Self::Logistic => &["alpha", "standardize"],
            Self::LinearSvc => &["c", "loss", "max_iter", "tol", "seed", "standardize"],
            Self::LinearSvr => &["c", "epsilon", "loss", "max_iter", "tol", "seed", "standardize"],
            Self::SgdClassifier => {
                &["alpha", "loss", "learning_rate", "eta0", "power_t", "max_iter", "tol", "seed", "standardize"]
            }
            Self::SgdRegressor => &[
                "alpha",
                "loss",
                "epsilon",
                "learning_rate",
                "eta0",
                "power_t",
                "max_iter",
                "tol",
                "seed",
                "standardize",
            ],
            Self::Poisson | Self::Gamma => &["alpha", "max_iter", "tol", "standardize"],
            Self::Tweedie => &["alpha", "power", "max_iter", "tol", "standardize"],
        };
        COMMON.iter().chain(own).copied().collect()
    }
}

impl std::fmt::Display for LinearModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LinearModelKind {
    type Err = LinearError;

    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for (name, kind) in LinearModelKind::NAMES.iter().zip(LinearModelKind::ALL) {
            assert_eq!(LinearModelKind::from_name(name).unwrap(), kind);
            assert_eq!(kind.name(), *name);
            assert_eq!(kind.to_string().parse::<LinearModelKind>().unwrap(), kind);
        }
        let err = LinearModelKind::from_name("svm").unwrap_err();
        assert!(matches!(&err, LinearError::UnknownModel { name } if name == "svm"));
        assert!(err.to_string().contains("linear-svc") && err.to_string().contains("tweedie"));
    }
}
