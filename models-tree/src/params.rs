//! Model kinds, tasks and checked hyperparameters.

use serde::{Deserialize, Serialize};

use crate::cart::{MaxFeatures, SplitCriterion};
use crate::error::{Result, TreeError};

/// The tree family, by command-line name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TreeModelKind {
    /// One decision tree (fheml's CART, scikit-learn's algorithm), `tree`.
    Tree,
    /// A random forest of CART trees on bootstrap samples, `forest`.
    Forest,
    /// Gradient-boosted trees (hessboost, or imported XGBoost JSON), `gbdt`.
    Gbdt,
}

impl TreeModelKind {
    /// The command-line names, in the order of [`Self::ALL`].
    pub const NAMES: [&'static str; 3] = ["tree", "forest", "gbdt"];
    /// Every kind.
    pub const ALL: [TreeModelKind; 3] = [Self::Tree, Self::Forest, Self::Gbdt];

    /// Parses a command-line name (`tree`, `forest`, `gbdt`; also `decision-tree`,
    /// `random-forest`, `xgboost`, case-insensitive).
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "tree" | "decision-tree" => Ok(Self::Tree),
            "forest" | "random-forest" => Ok(Self::Forest),
            "gbdt" | "xgboost" | "xgb" | "gradient-boosting" => Ok(Self::Gbdt),
            _ => Err(TreeError::UnknownModel(name.to_string())),
        }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tree => "tree",
            Self::Forest => "forest",
            Self::Gbdt => "gbdt",
        }
    }

    /// The hyperparameters [`TreeParams::set`] accepts for this kind.
    pub fn option_names(self) -> &'static [&'static str] {
        match self {
            Self::Tree => &[
                "max_depth",
                "criterion",
                "max_features",
                "min_samples_split",
                "min_samples_leaf",
                "seed",
                "n_bits",
                "leaf_bits",
                "sum_in_fhe",
            ],
            Self::Forest => &[
                "max_depth",
                "n_estimators",
                "criterion",
                "max_features",
                "voting",
                "min_samples_split",
                "min_samples_leaf",
                "seed",
                "n_bits",
                "leaf_bits",
                "sum_in_fhe",
            ],
            Self::Gbdt => &[
                "max_depth",
                "n_estimators",
                "learning_rate",
                "lambda",
                "min_child_weight",
                "seed",
                "n_bits",
                "leaf_bits",
                "sum_in_fhe",
            ],
        }
    }
}

/// How a forest classifier combines its trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Voting {
    /// Each tree votes for its leaf's heaviest class; one bootstrap per leaf at most.
    Hard,
    /// The trees' leaf class fractions are averaged, as scikit-learn's `predict_proba`.
    /// Leaves feed one output each, so a tree becomes one tree per class it holds: about
    /// as many more bootstraps as a leaf holds classes.
    Soft,
}

impl Voting {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hard => "hard",
            Self::Soft => "soft",
        }
    }
}

/// Classification or regression, by command-line name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskKind {
    /// Predicts a label.
    Classification,
    /// Predicts a value.
    Regression,
}

impl TaskKind {
    /// Parses `classification` (or `classifier`) and `regression` (or `regressor`).
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "classification" | "classifier" => Ok(Self::Classification),
            "regression" | "regressor" => Ok(Self::Regression),
            _ => Err(TreeError::UnknownTask(name.to_string())),
        }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classification => "classification",
            Self::Regression => "regression",
        }
    }
}

/// Hyperparameters of a tree model, unchecked; [`TreeParams::check`] validates them.
/// Defaults follow Concrete ML: `n_bits` 6; a tree of depth 5, a forest of 20 trees of
/// depth 4, 20 boosted trees of depth 3 with XGBoost's learning rate 0.3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeParams {
    /// Which model.
    pub kind: TreeModelKind,
    /// Classification or regression.
    pub task: TaskKind,
    /// Maximum depth of each tree.
    pub max_depth: usize,
    /// Number of trees (forests, boosting).
    pub n_estimators: usize,
    /// Shrinkage of each boosting step (XGBoost's `eta`).
    pub learning_rate: f64,
    /// L2 regularization of boosted leaf values (XGBoost's `lambda`).
    pub lambda: f64,
    /// Minimum hessian sum in a boosted child (XGBoost's `min_child_weight`).
    pub min_child_weight: f64,
    /// Impurity of tree and forest splits (Gini by default for classification, squared
    /// error for regression; boosting uses its own gain).
    pub criterion: SplitCriterion,
    /// Features tried per split (scikit-learn's defaults: √features for classification
    /// forests, all otherwise).
    pub max_features: MaxFeatures,
    /// How a forest classifier combines its trees (hard votes by default: the cheapest
    /// circuit; soft matches scikit-learn's prediction at a higher bootstrap count).
    pub voting: Voting,
    /// Minimum number of samples to split a node (trees, forests).
    pub min_samples_split: usize,
    /// Minimum number of samples in a leaf (trees, forests).
    pub min_samples_leaf: usize,
    /// Random seed.
    pub seed: u64,
    /// Bits of each quantized input feature (Concrete ML's default: 6).
    pub n_bits: u8,
    /// Bits of the quantized leaf values (`None`: `n_bits`, as Concrete ML).
    pub leaf_bits: Option<u8>,
    /// Sum the trees under encryption (one output per score); when false the circuit
    /// outputs one score per tree and the client sums them after decryption.
    pub sum_in_fhe: bool,
}

/// Validated hyperparameters, from [`TreeParams::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidTreeParams(TreeParams);

/// The largest input bit width: the thermometer encoding sends `2^n_bits - 1` ciphertexts
/// per feature.
pub const MAX_INPUT_BITS: u8 = 10;

impl TreeParams {
    /// Defaults for `kind` and `task`.
    pub fn new(kind: TreeModelKind, task: TaskKind) -> Self {
        let (max_depth, n_estimators) = match kind {
            TreeModelKind::Tree => (5, 1),
            TreeModelKind::Forest => (4, 20),
            TreeModelKind::Gbdt => (3, 20),
        };
        Self {
            kind,
            task,
            max_depth,
            n_estimators,
            learning_rate: 0.3,
            lambda: 1.0,
            min_child_weight: 1.0,
            criterion: match task {
                TaskKind::Classification => SplitCriterion::Gini,
                TaskKind::Regression => SplitCriterion::SquaredError,
            },
            max_features: if kind == TreeModelKind::Forest && task == TaskKind::Classification {
                MaxFeatures::Sqrt
            } else {
                MaxFeatures::All
            },
            voting: Voting::Hard,
            min_samples_split: 2,
            min_samples_leaf: 1,
            seed: 0,
            n_bits: 6,
            leaf_bits: None,
            // Boosted margins and regression forests sum many wide leaf values: summing them
            // under encryption forces much larger parameters (about 10x slower), so by default
            // the client sums the per-tree scores after decryption, as Concrete ML does.
            sum_in_fhe: !(kind == TreeModelKind::Gbdt
                || (kind == TreeModelKind::Forest && task == TaskKind::Regression)),
        }
    }

    /// Builds from command-line names and `key=value` options.
    pub fn from_options<'a>(
        model: &str,
        task: &str,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ValidTreeParams> {
        let mut params = Self::new(TreeModelKind::from_name(model)?, TaskKind::from_name(task)?);
        for (key, value) in options {
            params = params.set(key, value)?;
        }
        params.check()
    }

    /// Sets one option from its command-line form; an option this kind does not have is
    /// [`TreeError::UnknownParameter`].
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        let key = match key {
            "eta" => "learning_rate",
            "n_trees" => "n_estimators",
            "reg_lambda" => "lambda",
            other => other,
        };
        if !self.kind.option_names().contains(&key) {
            return Err(TreeError::UnknownParameter {
                key: key.to_string(),
                model: format!("{} {}", self.kind.name(), self.task.name()),
                valid: self.kind.option_names().join(", "),
            });
        }
        let bad = |what: &str| TreeError::param(key, format!("`{value}` is not {what}"));
        let count = || value.trim().parse::<usize>().map_err(|_| bad("a non-negative integer"));
        let number = || value.trim().parse::<f64>().map_err(|_| bad("a number"));
        let bits = || value.trim().parse::<u8>().map_err(|_| bad("a bit width"));
        match key {
            "max_depth" => self.max_depth = count()?,
            "n_estimators" => self.n_estimators = count()?,
            "learning_rate" => self.learning_rate = number()?,
            "lambda" => self.lambda = number()?,
            "min_child_weight" => self.min_child_weight = number()?,
            "criterion" => {
                self.criterion = SplitCriterion::from_name(value)
                    .ok_or_else(|| bad(&format!("a criterion ({})", SplitCriterion::NAMES.join(", "))))?
            }
            "max_features" => {
                self.max_features = match value.trim() {
                    "all" | "none" | "None" | "1.0" => MaxFeatures::All,
                    "sqrt" => MaxFeatures::Sqrt,
                    "log2" => MaxFeatures::Log2,
                    _ => MaxFeatures::Count(
                        value.trim().parse::<usize>().map_err(|_| bad("all, sqrt, log2 or a feature count"))?,
                    ),
                }
            }
            "voting" => {
                self.voting = match value.trim() {
                    "hard" => Voting::Hard,
                    "soft" => Voting::Soft,
                    _ => return Err(bad("hard or soft")),
                }
            }
            "min_samples_split" => self.min_samples_split = count()?,
            "min_samples_leaf" => self.min_samples_leaf = count()?,
            "seed" => self.seed = value.trim().parse::<u64>().map_err(|_| bad("a non-negative integer"))?,
            "n_bits" => self.n_bits = bits()?,
            "leaf_bits" => self.leaf_bits = Some(bits()?),
            "sum_in_fhe" => {
                self.sum_in_fhe = match value.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(bad("a boolean")),
                }
            }
            _ => {}
        }
        Ok(self)
    }

    /// Maximum depth of each tree.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Number of trees.
    pub fn n_estimators(mut self, n: usize) -> Self {
        self.n_estimators = n;
        self
    }

    /// Boosting learning rate.
    pub fn learning_rate(mut self, eta: f64) -> Self {
        self.learning_rate = eta;
        self
    }

    /// Boosting L2 regularization.
    pub fn lambda(mut self, lambda: f64) -> Self {
        self.lambda = lambda;
        self
    }

    /// Boosting minimum child hessian weight.
    pub fn min_child_weight(mut self, w: f64) -> Self {
        self.min_child_weight = w;
        self
    }

    /// Split impurity of trees and forests.
    pub fn criterion(mut self, criterion: SplitCriterion) -> Self {
        self.criterion = criterion;
        self
    }

    /// Features tried per split.
    pub fn max_features(mut self, m: MaxFeatures) -> Self {
        self.max_features = m;
        self
    }

    /// Hard or soft voting (forest classifiers).
    pub fn voting(mut self, voting: Voting) -> Self {
        self.voting = voting;
        self
    }

    /// Minimum samples to split a node.
    pub fn min_samples_split(mut self, n: usize) -> Self {
        self.min_samples_split = n;
        self
    }

    /// Minimum samples in a leaf.
    pub fn min_samples_leaf(mut self, n: usize) -> Self {
        self.min_samples_leaf = n;
        self
    }

    /// Random seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Input bits.
    pub fn n_bits(mut self, n: u8) -> Self {
        self.n_bits = n;
        self
    }

    /// Leaf-value bits.
    pub fn leaf_bits(mut self, n: u8) -> Self {
        self.leaf_bits = Some(n);
        self
    }

    /// Sum the trees under encryption (default) or on the client.
    pub fn sum_in_fhe(mut self, yes: bool) -> Self {
        self.sum_in_fhe = yes;
        self
    }

    /// Validates every value.
    pub fn check(self) -> Result<ValidTreeParams> {
        let bad = |name: &str, reason: String| Err(TreeError::param(name, reason));
        if !(1..=32).contains(&self.max_depth) {
            return bad("max_depth", format!("must be in 1..=32, got {}", self.max_depth));
        }
        if self.kind == TreeModelKind::Tree && self.n_estimators != 1 {
            return bad("n_estimators", format!("a single tree has 1 estimator, got {}", self.n_estimators));
        }
        if !(1..=10_000).contains(&self.n_estimators) {
            return bad("n_estimators", format!("must be in 1..=10000, got {}", self.n_estimators));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate", format!("must be in (0, 1], got {}", self.learning_rate));
        }
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return bad("lambda", format!("must be finite and >= 0, got {}", self.lambda));
        }
        if !(self.min_child_weight >= 0.0 && self.min_child_weight.is_finite()) {
            return bad("min_child_weight", format!("must be finite and >= 0, got {}", self.min_child_weight));
        }
        if self.voting == Voting::Soft && self.task != TaskKind::Classification {
            return bad("voting", "soft voting averages class fractions: classifiers only".into());
        }
        if self.max_features == MaxFeatures::Count(0) {
            return bad("max_features", "must be at least 1".into());
        }
        if self.kind != TreeModelKind::Gbdt
            && self.criterion.is_for_classification() != (self.task == TaskKind::Classification)
        {
            return bad(
                "criterion",
                format!(
                    "{} does not fit {}: use gini or entropy to classify, squared_error to regress",
                    self.criterion.name(),
                    self.task.name()
                ),
            );
        }
        if self.min_samples_split < 2 {
            return bad("min_samples_split", format!("must be at least 2, got {}", self.min_samples_split));
        }
        if self.min_samples_leaf < 1 {
            return bad("min_samples_leaf", "must be at least 1".into());
        }
        if !(1..=MAX_INPUT_BITS).contains(&self.n_bits) {
            return bad(
                "n_bits",
                format!(
                    "must be in 1..={MAX_INPUT_BITS} (the thermometer encoding sends 2^n_bits - 1 ciphertexts per feature), got {}",
                    self.n_bits
                ),
            );
        }
        if let Some(l) = self.leaf_bits
            && !(2..=16).contains(&l)
        {
            return bad("leaf_bits", format!("must be in 2..=16, got {l}"));
        }
        Ok(ValidTreeParams(self))
    }
}

impl ValidTreeParams {
    /// The validated values.
    pub fn get(&self) -> &TreeParams {
        &self.0
    }

    /// Bits of the quantized leaf values.
    pub fn leaf_bits(&self) -> u8 {
        self.0.leaf_bits.unwrap_or(self.0.n_bits.max(2))
    }

    /// Back to the unchecked form (to change a value).
    pub fn into_inner(self) -> TreeParams {
        self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in TreeModelKind::ALL {
            assert_eq!(TreeModelKind::from_name(kind.name()).unwrap(), kind);
        }
        assert!(matches!(TreeModelKind::from_name("svm"), Err(TreeError::UnknownModel(n)) if n == "svm"));
        assert_eq!(TaskKind::from_name("regression").unwrap(), TaskKind::Regression);
        assert!(matches!(TaskKind::from_name("ranking"), Err(TreeError::UnknownTask(_))));
    }

    #[test]
    fn options_are_typed() {
        let p = TreeParams::from_options("gbdt", "classification", [("max_depth", "4"), ("eta", "0.1")]).unwrap();
        assert_eq!(p.get().max_depth, 4);
        assert_eq!(p.get().learning_rate, 0.1);
        let err = TreeParams::from_options("tree", "regression", [("learning_rate", "0.1")]).unwrap_err();
        assert!(matches!(err, TreeError::UnknownParameter { ref key, .. } if key == "learning_rate"), "{err}");
        let err = TreeParams::from_options("forest", "regression", [("max_depht", "3")]).unwrap_err();
        assert!(err.to_string().contains("max_depht"));
        let err = TreeParams::from_options("forest", "regression", [("max_depth", "deep")]).unwrap_err();
        assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "max_depth"));
        let err = TreeParams::from_options("gbdt", "regression", [("learning_rate", "-1")]).unwrap_err();
        assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "learning_rate"));
        let err = TreeParams::new(TreeModelKind::Tree, TaskKind::Regression).n_bits(0).check().unwrap_err();
        assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "n_bits"));
        let err = TreeParams::new(TreeModelKind::Tree, TaskKind::Regression).max_depth(0).check().unwrap_err();
        assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "max_depth"));
    }

    #[test]
    fn criterion_and_max_features_follow_scikit_learn() {
        let forest = TreeParams::new(TreeModelKind::Forest, TaskKind::Classification);
        assert_eq!((forest.criterion, forest.max_features), (SplitCriterion::Gini, MaxFeatures::Sqrt));
        let forest = TreeParams::new(TreeModelKind::Forest, TaskKind::Regression);
        assert_eq!((forest.criterion, forest.max_features), (SplitCriterion::SquaredError, MaxFeatures::All));
        let tree = TreeParams::new(TreeModelKind::Tree, TaskKind::Classification);
        assert_eq!(tree.max_features, MaxFeatures::All);
        let p =
            TreeParams::from_options("tree", "classification", [("criterion", "entropy"), ("max_features", "log2")])
                .unwrap();
        assert_eq!((p.get().criterion, p.get().max_features), (SplitCriterion::Entropy, MaxFeatures::Log2));
        let p = TreeParams::from_options("forest", "classification", [("max_features", "7")]).unwrap();
        assert_eq!(p.get().max_features, MaxFeatures::Count(7));
        let err = TreeParams::from_options("forest", "regression", [("criterion", "gini")]).unwrap_err();
        assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "criterion"), "{err}");
        let err = TreeParams::from_options("tree", "classification", [("criterion", "variance")]).unwrap_err();
        assert!(err.to_string().contains("gini, entropy, squared_error"), "{err}");
        let p = TreeParams::from_options("forest", "classification", [("voting", "soft")]).unwrap();
        assert_eq!(p.get().voting, Voting::Soft);
        let err = TreeParams::from_options("forest", "regression", [("voting", "soft")]).unwrap_err();
        assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "voting"), "{err}");
        let err = TreeParams::from_options("forest", "classification", [("max_features", "0")]).unwrap_err();
        assert!(matches!(err, TreeError::InvalidParameter { ref name, .. } if name == "max_features"));
    }
}
