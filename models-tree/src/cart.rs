//! fheml's tree learner: scikit-learn's CART, for single trees and random forests.
//!
//! Why not smartcore's: smartcore 0.7's `DecisionTreeClassifier` (also the base learner of
//! its random forest) only evaluates a cut between two consecutive sorted samples when their
//! labels differ. With tied feature values (every quantized feature, the 17 grey levels of
//! the digits) the sample order inside a run of ties is arbitrary, so most valid thresholds
//! are never tried; nodes then find no admissible split and trees stop early (about 6
//! leaves where depth 4 allows 16), whatever `max_features` is.
//!
//! This learner does what scikit-learn's `BestSplitter` does:
//! - every threshold is tried: the midpoint between each pair of consecutive distinct
//!   values of a feature among the node's samples;
//! - Gini or entropy (classification) and squared error (regression) impurity, the split
//!   with the largest weighted impurity decrease wins (the first found on ties);
//! - `max_features` features are drawn per node without replacement; features constant in
//!   the node do not count towards it (scikit-learn keeps drawing);
//! - a node becomes a leaf when it is pure, at `max_depth`, has fewer than
//!   `min_samples_split` samples, or no split leaves `min_samples_leaf` samples on each
//!   side; otherwise it splits, even for a zero decrease, so trees grow to the allowed depth;
//! - forests draw a bootstrap sample per tree (as sample weights: `min_samples_*` count
//!   distinct samples, impurities count weights, as scikit-learn), trees fit in parallel.
//!
//! Every random choice comes from a ChaCha8 generator seeded from `seed` (forest tree `i`
//! reads stream `i`), so a fit is deterministic and independent of the thread count.

use ndarray::ArrayView2;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ensemble::{Tree, TreeEnsemble, TreeNode};
use crate::error::{Result, TreeError};
use crate::params::{TreeModelKind, ValidTreeParams, Voting};

/// The impurity a split minimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SplitCriterion {
    /// Gini impurity `1 - Σ p_c²` (classification; scikit-learn's default).
    Gini,
    /// Shannon entropy `-Σ p_c log2 p_c` (classification).
    Entropy,
    /// Variance of the target (regression; scikit-learn's `squared_error`).
    SquaredError,
}

impl SplitCriterion {
    /// The command-line names, in the order of [`Self::ALL`].
    pub const NAMES: [&'static str; 3] = ["gini", "entropy", "squared_error"];
    /// Every criterion.
    pub const ALL: [SplitCriterion; 3] = [Self::Gini, Self::Entropy, Self::SquaredError];

    /// Parses a command-line name (`gini`, `entropy`, `squared_error`; also `mse`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "gini" => Some(Self::Gini),
            "entropy" | "log_loss" => Some(Self::Entropy),
            "squared_error" | "mse" => Some(Self::SquaredError),
            _ => None,
        }
    }

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gini => "gini",
            Self::Entropy => "entropy",
            Self::SquaredError => "squared_error",
        }
    }

    /// Whether the criterion measures class impurity (Gini, entropy).
    pub fn is_for_classification(self) -> bool {
        self != Self::SquaredError
    }
}

/// How many features a node tries (scikit-learn's `max_features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MaxFeatures {
    /// Every feature (single trees and regression forests by default).
    All,
    /// `max(1, floor(√features))` (classification forests by default).
    Sqrt,
    /// `max(1, floor(log2 features))`.
    Log2,
    /// A fixed count, capped at the number of features.
    Count(usize),
}

impl MaxFeatures {
    /// The number of features tried per node out of `n_features`, at least 1.
    pub fn resolve(self, n_features: usize) -> usize {
        let n = n_features.max(1);
        let count = match self {
            Self::All => n,
            Self::Sqrt => (n as f64).sqrt().floor() as usize,
            Self::Log2 => (n as f64).log2().floor() as usize,
            Self::Count(c) => c,
        };
        count.clamp(1, n)
    }

    /// The command-line form: `all`, `sqrt`, `log2` or a count.
    pub fn name(self) -> String {
        match self {
            Self::All => "all".into(),
            Self::Sqrt => "sqrt".into(),
            Self::Log2 => "log2".into(),
            Self::Count(c) => c.to_string(),
        }
    }
}

/// What a tree learns from: class indices or real targets.
#[derive(Debug, Clone, Copy)]
pub enum CartTargets<'a> {
    /// Class indices in `0..n_classes`, one per row.
    Classes {
        /// The class index of each row.
        labels: &'a [usize],
        /// The number of classes.
        n_classes: usize,
    },
    /// Real targets, one per row.
    Values(&'a [f64]),
}

impl CartTargets<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Classes { labels, .. } => labels.len(),
            Self::Values(values) => values.len(),
        }
    }
}

/// The growth limits of one tree, resolved for the data at hand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CartSettings {
    /// The impurity.
    pub criterion: SplitCriterion,
    /// Depth of the deepest leaf allowed (the root is at depth 0).
    pub max_depth: usize,
    /// A node with fewer (distinct) samples is a leaf.
    pub min_samples_split: usize,
    /// Each child of a split keeps at least this many (distinct) samples.
    pub min_samples_leaf: usize,
    /// Non-constant features tried per node.
    pub max_features: usize,
}

/// The best split of a node, as [`best_split`] finds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CartSplit {
    /// The feature compared.
    pub feature: usize,
    /// `x[feature] <= threshold` goes left.
    pub threshold: f64,
    /// The node's impurity minus the weighted mean impurity of its children.
    pub impurity_decrease: f64,
}

/// Weighted target statistics of a set of samples.
#[derive(Debug, Clone, PartialEq)]
struct Stats {
    weight: f64,
    /// Per-class weights (classification), empty for regression.
    class_weight: Vec<f64>,
    sum: f64,
    sum_sq: f64,
}

impl Stats {
    fn empty(targets: &CartTargets) -> Self {
        let classes = match targets {
            CartTargets::Classes { n_classes, .. } => *n_classes,
            CartTargets::Values(_) => 0,
        };
        Self { weight: 0.0, class_weight: vec![0.0; classes], sum: 0.0, sum_sq: 0.0 }
    }

    fn add(&mut self, targets: &CartTargets, row: usize, w: f64) {
        self.weight += w;
        match targets {
            CartTargets::Classes { labels, .. } => self.class_weight[labels[row]] += w,
            CartTargets::Values(values) => {
                self.sum += w * values[row];
                self.sum_sq += w * values[row] * values[row];
            }
        }
    }

    fn minus(&self, part: &Self) -> Self {
        Self {
            weight: self.weight - part.weight,
            class_weight: self.class_weight.iter().zip(&part.class_weight).map(|(a, b)| a - b).collect(),
            sum: self.sum - part.sum,
            sum_sq: self.sum_sq - part.sum_sq,
        }
    }

    fn impurity(&self, criterion: SplitCriterion) -> f64 {
        if self.weight <= 0.0 {
            return 0.0;
        }
        match criterion {
            SplitCriterion::Gini => 1.0 - self.class_weight.iter().map(|w| (w / self.weight).powi(2)).sum::<f64>(),
            SplitCriterion::Entropy => -self
                .class_weight
                .iter()
                .filter(|w| **w > 0.0)
                .map(|w| {
                    let p = w / self.weight;
                    p * p.log2()
                })
                .sum::<f64>(),
            SplitCriterion::SquaredError => {
                let mean = self.sum / self.weight;
                (self.sum_sq / self.weight - mean * mean).max(0.0)
            }
        }
    }

    /// A quantity that orders splits as the impurity decrease does, computed without the
    /// cancellation of `sum_sq - sum²/w` for regression (scikit-learn's "proxy").
    fn split_proxy(left: &Self, right: &Self, criterion: SplitCriterion) -> f64 {
        match criterion {
            SplitCriterion::SquaredError => left.sum * left.sum / left.weight + right.sum * right.sum / right.weight,
            _ => -(left.weight * left.impurity(criterion) + right.weight * right.impurity(criterion)),
        }
    }

    /// The leaf a tree stores: the heaviest class (the first on ties, as scikit-learn's
    /// argmax) voting 1, or the weighted mean.
    fn leaf(&self) -> TreeNode {
        if self.class_weight.is_empty() {
            let value = if self.weight > 0.0 { self.sum / self.weight } else { 0.0 };
            return TreeNode::Leaf { output: 0, value };
        }
        let mut best = 0;
        for (c, w) in self.class_weight.iter().enumerate() {
            if *w > self.class_weight[best] {
                best = c;
            }
        }
        TreeNode::Leaf { output: best, value: 1.0 }
    }
}

/// The impurity decrease of sending `left` one way and the rest of `node` the other.
fn impurity_decrease(node: &Stats, left: &Stats, criterion: SplitCriterion) -> f64 {
    let right = node.minus(left);
    node.impurity(criterion)
        - left.weight / node.weight * left.impurity(criterion)
        - right.weight / node.weight * right.impurity(criterion)
}

/// The threshold between two consecutive distinct values, as scikit-learn computes it: the
/// midpoint, or the lower value when the midpoint rounds up onto the upper one.
fn midpoint(lower: f64, upper: f64) -> f64 {
    let mid = lower / 2.0 + upper / 2.0;
    if mid >= upper || !mid.is_finite() { lower } else { mid }
}

/// The best split of the node holding `rows` (distinct rows with weight > 0), trying the
/// features in `feature_order` until `settings.max_features` non-constant ones were
/// searched. `None` when every tried feature is constant or no threshold leaves
/// `min_samples_leaf` samples on both sides.
pub(crate) fn best_split(
    x: ArrayView2<f64>,
    targets: &CartTargets,
    weights: &[f64],
    rows: &[usize],
    feature_order: &[usize],
    settings: &CartSettings,
) -> Option<CartSplit> {
    let mut node = Stats::empty(targets);
    for &r in rows {
        node.add(targets, r, weights[r]);
    }
    let n = rows.len();
    let mut best: Option<(f64, CartSplit, Stats)> = None;
    let mut searched = 0;
    let mut sorted: Vec<(f64, usize)> = Vec::with_capacity(n);
    for &feature in feature_order {
        if searched == settings.max_features {
            break;
        }
        sorted.clear();
        sorted.extend(rows.iter().map(|&r| (x[[r, feature]], r)));
        sorted.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else { return None };
        if first.0 == last.0 {
            continue;
        }
        searched += 1;
        let mut left = Stats::empty(targets);
        for i in 1..n {
            let (value, row) = sorted[i - 1];
            left.add(targets, row, weights[row]);
            let upper = sorted[i].0;
            if upper == value || i < settings.min_samples_leaf || n - i < settings.min_samples_leaf {
                continue;
            }
            let right = node.minus(&left);
            let proxy = Stats::split_proxy(&left, &right, settings.criterion);
            if best.as_ref().is_none_or(|(b, ..)| proxy > *b) {
                let split = CartSplit { feature, threshold: midpoint(value, upper), impurity_decrease: 0.0 };
                best = Some((proxy, split, left.clone()));
            }
        }
    }
    best.map(|(_, mut split, left)| {
        split.impurity_decrease = impurity_decrease(&node, &left, settings.criterion);
        split
    })
}

/// Grows one tree on the rows with a positive weight (a bootstrap's counts, or all 1).
struct Grower<'a> {
    x: ArrayView2<'a, f64>,
    targets: CartTargets<'a>,
    weights: &'a [f64],
    settings: CartSettings,
    rng: ChaCha8Rng,
    nodes: Vec<TreeNode>,
    /// Per node: the weighted class fractions of a classifier leaf, empty otherwise.
    leaf_class_fractions: Vec<Vec<f64>>,
}

impl Grower<'_> {
    /// Adds the subtree over `rows` at `depth` and returns its node index (depth-first,
    /// left before right, as scikit-learn numbers nodes).
    fn grow(&mut self, rows: Vec<usize>, depth: usize) -> usize {
        let mut stats = Stats::empty(&self.targets);
        for &r in &rows {
            stats.add(&self.targets, r, self.weights[r]);
        }
        let id = self.nodes.len();
        self.nodes.push(stats.leaf());
        self.leaf_class_fractions.push(stats.class_weight.iter().map(|w| w / stats.weight).collect());
        let s = self.settings;
        // `<= EPSILON`: scikit-learn's purity test; a pure node never splits.
        let stop = depth >= s.max_depth
            || rows.len() < s.min_samples_split
            || rows.len() < 2 * s.min_samples_leaf
            || stats.impurity(s.criterion) <= f64::EPSILON;
        if stop {
            return id;
        }
        let mut order: Vec<usize> = (0..self.x.ncols()).collect();
        order.shuffle(&mut self.rng);
        let Some(split) = best_split(self.x, &self.targets, self.weights, &rows, &order, &s) else {
            return id;
        };
        let (left_rows, right_rows): (Vec<usize>, Vec<usize>) =
            rows.into_iter().partition(|&r| self.x[[r, split.feature]] <= split.threshold);
        let left = self.grow(left_rows, depth + 1);
        let right = self.grow(right_rows, depth + 1);
        self.nodes[id] = TreeNode::Split { feature: split.feature, threshold: split.threshold, left, right };
        self.leaf_class_fractions[id].clear();
        id
    }
}

fn check_inputs(x: ArrayView2<f64>, targets: &CartTargets, settings: &CartSettings) -> Result<()> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(TreeError::Data("no training rows or no features".into()));
    }
    if targets.len() != x.nrows() {
        return Err(TreeError::Data(format!("{} rows but {} targets", x.nrows(), targets.len())));
    }
    match targets {
        CartTargets::Classes { labels, n_classes } => {
            if !settings.criterion.is_for_classification() {
                return Err(TreeError::param("criterion", "squared_error is a regression criterion"));
            }
            if let Some(bad) = labels.iter().find(|l| **l >= *n_classes) {
                return Err(TreeError::Data(format!("class index {bad} of {n_classes} classes")));
            }
        }
        CartTargets::Values(_) => {
            if settings.criterion.is_for_classification() {
                return Err(TreeError::param(
                    "criterion",
                    format!("{} is a classification criterion", settings.criterion.name()),
                ));
            }
        }
    }
    Ok(())
}

/// A fitted CART tree: hard-vote (or mean-value) leaves, and what soft voting needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CartTree {
    /// The tree; a classifier leaf votes 1 for its heaviest class, a regressor leaf holds
    /// the mean target.
    pub tree: Tree,
    /// Per node: a classifier leaf's weighted class fractions (scikit-learn's
    /// `predict_proba` of the leaf); empty for split nodes and regressors.
    pub leaf_class_fractions: Vec<Vec<f64>>,
}

impl CartTree {
    /// The tree as one single-output tree per class whose leaves add the class's fraction,
    /// so that summing every tree's outputs averages probabilities (scikit-learn's soft
    /// voting) in an ensemble whose leaves each feed one output. Classes that a tree's
    /// leaves never hold get no tree.
    pub fn per_class_fraction_trees(&self) -> Vec<Tree> {
        let n_classes = self.leaf_class_fractions.iter().map(Vec::len).max().unwrap_or(0);
        (0..n_classes)
            .filter(|c| self.leaf_class_fractions.iter().any(|f| f.get(*c).is_some_and(|p| *p > 0.0)))
            .map(|c| Tree {
                nodes: self
                    .tree
                    .nodes
                    .iter()
                    .zip(&self.leaf_class_fractions)
                    .map(|(node, fractions)| match node {
                        TreeNode::Leaf { .. } => {
                            TreeNode::Leaf { output: c, value: fractions.get(c).copied().unwrap_or(0.0) }
                        }
                        split => split.clone(),
                    })
                    .collect(),
            })
            .collect()
    }
}

fn grow_tree(
    x: ArrayView2<f64>,
    targets: CartTargets,
    weights: &[f64],
    settings: CartSettings,
    rng: ChaCha8Rng,
) -> CartTree {
    let rows: Vec<usize> = (0..x.nrows()).filter(|&r| weights[r] > 0.0).collect();
    let mut grower = Grower { x, targets, weights, settings, rng, nodes: Vec::new(), leaf_class_fractions: Vec::new() };
    grower.grow(rows, 0);
    CartTree { tree: Tree { nodes: grower.nodes }, leaf_class_fractions: grower.leaf_class_fractions }
}

/// Fits one tree on every row. Classifier leaves vote 1 for their class; regressor leaves
/// hold the mean target.
pub fn fit_tree(x: ArrayView2<f64>, targets: CartTargets, settings: &CartSettings, seed: u64) -> Result<CartTree> {
    check_inputs(x, &targets, settings)?;
    let weights = vec![1.0; x.nrows()];
    Ok(grow_tree(x, targets, &weights, *settings, ChaCha8Rng::seed_from_u64(seed)))
}

/// Fits `n_trees` trees, each on its own bootstrap sample (`rows` draws with replacement),
/// in parallel; tree `i` is the same whatever the thread count.
pub fn fit_forest(
    x: ArrayView2<f64>,
    targets: CartTargets,
    settings: &CartSettings,
    n_trees: usize,
    seed: u64,
) -> Result<Vec<CartTree>> {
    check_inputs(x, &targets, settings)?;
    let n = x.nrows();
    Ok((0..n_trees)
        .into_par_iter()
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            let mut weights = vec![0.0; n];
            for _ in 0..n {
                weights[rng.gen_range(0..n)] += 1.0;
            }
            grow_tree(x, targets, &weights, *settings, rng)
        })
        .collect())
}

/// Fits a tree or forest as `params` say. `y` holds class indices `0..classes.len()` for
/// classifiers (`classes` are the labels), targets for regressors.
pub(crate) fn fit_ensemble(
    params: &ValidTreeParams,
    x: ArrayView2<f64>,
    y: &[f64],
    classes: Option<Vec<f64>>,
) -> Result<TreeEnsemble> {
    let p = params.get();
    let settings = CartSettings {
        criterion: p.criterion,
        max_depth: p.max_depth,
        min_samples_split: p.min_samples_split,
        min_samples_leaf: p.min_samples_leaf,
        max_features: p.max_features.resolve(x.ncols()),
    };
    let labels: Vec<usize>;
    let targets = match &classes {
        Some(classes) => {
            labels = y.iter().map(|v| *v as usize).collect();
            CartTargets::Classes { labels: &labels, n_classes: classes.len() }
        }
        None => CartTargets::Values(y),
    };
    let trees = match p.kind {
        TreeModelKind::Tree => vec![fit_tree(x, targets, &settings, p.seed)?],
        TreeModelKind::Forest => fit_forest(x, targets, &settings, p.n_estimators, p.seed)?,
        TreeModelKind::Gbdt => {
            return Err(TreeError::Fit("gradient boosting is trained by hessboost, not CART".into()));
        }
    };
    let n_trees = trees.len();
    let ensemble = match (classes, p.voting) {
        (Some(classes), Voting::Soft) => {
            let per_class = trees.iter().flat_map(CartTree::per_class_fraction_trees).collect();
            let mut ensemble = TreeEnsemble::votes(per_class, x.ncols(), classes);
            // The mean of the trees' class fractions, as scikit-learn's predict_proba.
            ensemble.scale = 1.0 / n_trees as f64;
            ensemble
        }
        (Some(classes), Voting::Hard) => {
            TreeEnsemble::votes(trees.into_iter().map(|t| t.tree).collect(), x.ncols(), classes)
        }
        (None, _) => TreeEnsemble::mean(trees.into_iter().map(|t| t.tree).collect(), x.ncols()),
    };
    ensemble.validate()?;
    Ok(ensemble)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use proptest::prelude::*;

    fn settings(criterion: SplitCriterion, max_depth: usize, n_features: usize) -> CartSettings {
        CartSettings { criterion, max_depth, min_samples_split: 2, min_samples_leaf: 1, max_features: n_features }
    }

    fn column(values: &[f64]) -> Array2<f64> {
        Array2::from_shape_vec((values.len(), 1), values.to_vec()).unwrap()
    }

    fn root_split(tree: &Tree) -> (usize, f64) {
        match tree.nodes[0] {
            TreeNode::Split { feature, threshold, .. } => (feature, threshold),
            TreeNode::Leaf { .. } => panic!("the root is a leaf"),
        }
    }

    /// Gini by hand, x = 1..6, labels 0 0 1 0 1 1. Parent 0.5. Cut after 2 (t = 2.5):
    /// left {0,0} 0, right {1,0,1,1} 0.375, weighted 4/6 · 0.375 = 0.25. Cut after 3:
    /// both sides 4/9, weighted 0.444. Cut after 4 (t = 4.5): left {0,0,1,0} 0.375, right
    /// {1,1} 0, weighted 0.25 (a tie with 2.5, which comes first). Cut after 1: 5/6 · 0.48
    /// = 0.4; after 5: 0.4. So 2.5 wins, with a decrease of 0.25.
    #[test]
    fn gini_split_is_the_hand_computed_one() {
        let x = column(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let labels = [0, 0, 1, 0, 1, 1];
        let targets = CartTargets::Classes { labels: &labels, n_classes: 2 };
        let rows: Vec<usize> = (0..6).collect();
        let split =
            best_split(x.view(), &targets, &[1.0; 6], &rows, &[0], &settings(SplitCriterion::Gini, 1, 1)).unwrap();
        assert_eq!(split.threshold, 2.5);
        assert!((split.impurity_decrease - 0.25).abs() < 1e-12, "{split:?}");
        // Entropy: cut 2.5 leaves H(1/4) · 4/6 = 0.5409; parent 1 bit.
        let split =
            best_split(x.view(), &targets, &[1.0; 6], &rows, &[0], &settings(SplitCriterion::Entropy, 1, 1)).unwrap();
        let h = -(0.25f64 * 0.25f64.log2() + 0.75 * 0.75f64.log2());
        assert!((split.impurity_decrease - (1.0 - 4.0 / 6.0 * h)).abs() < 1e-12, "{split:?}");
    }

    /// Squared error by hand, y = 1 1 1 10 10 13 at x = 0..5: the cut at 2.5 leaves
    /// variances 0 and 2 (mean 11), against 1.5 with a cut at 3.5 ({1,1,1,10} var 15.1875).
    #[test]
    fn squared_error_split_is_the_hand_computed_one() {
        let x = column(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let y = [1.0, 1.0, 1.0, 10.0, 10.0, 13.0];
        let tree =
            fit_tree(x.view(), CartTargets::Values(&y), &settings(SplitCriterion::SquaredError, 1, 1), 0).unwrap().tree;
        assert_eq!(root_split(&tree), (0, 2.5));
        assert_eq!(tree.nodes[1], TreeNode::Leaf { output: 0, value: 1.0 });
        assert_eq!(tree.nodes[2], TreeNode::Leaf { output: 0, value: 11.0 });
        let mean = 36.0 / 6.0;
        let parent = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 6.0;
        let rows: Vec<usize> = (0..6).collect();
        let split = best_split(
            x.view(),
            &CartTargets::Values(&y),
            &[1.0; 6],
            &rows,
            &[0],
            &settings(SplitCriterion::SquaredError, 1, 1),
        )
        .unwrap();
        assert!((split.impurity_decrease - (parent - 3.0 / 6.0 * 2.0)).abs() < 1e-9, "{split:?}");
    }

    /// The case smartcore misses: ties. Feature 0 takes two values, each run of ties mixing
    /// the labels in an order where consecutive samples across the run boundary share a
    /// label; the only good cut is between the runs, and feature 1 is noise.
    #[test]
    fn cuts_between_runs_of_tied_values() {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let high = i >= 20;
            // 90 % of the low run is class 0, 90 % of the high run class 1; the last low
            // sample and the first high one are both class 1.
            let label = usize::from(if high { i != 21 && i != 22 } else { i % 10 == 9 });
            rows.push([if high { 5.0 } else { 1.0 }, ((i * 7) % 3) as f64]);
            labels.push(label);
        }
        let x = Array2::from_shape_vec((40, 2), rows.concat()).unwrap();
        let tree = fit_tree(
            x.view(),
            CartTargets::Classes { labels: &labels, n_classes: 2 },
            &settings(SplitCriterion::Gini, 1, 2),
            3,
        )
        .unwrap()
        .tree;
        assert_eq!(root_split(&tree), (0, 3.0));
    }

    /// 64 points in 16 well-separated cells of a 4 × 4 grid. Classified by cell (16
    /// classes) with entropy, or regressed on `4 · column + row`, the best cut always halves
    /// the cells, so a depth-4 tree isolates every cell: 16 leaves, each right.
    #[test]
    fn depth_d_reaches_two_to_the_d_leaves() {
        let mut values = Vec::new();
        let mut cells = Vec::new();
        for i in 0..64usize {
            let (column, row) = (i % 4, (i / 4) % 4);
            let jitter = (i / 16) as f64 * 0.01;
            values.extend([column as f64 + jitter, row as f64 + jitter]);
            cells.push(4 * column + row);
        }
        let x = Array2::from_shape_vec((64, 2), values).unwrap();
        let reached = |tree: &Tree, r: usize| {
            let mut id = 0;
            while let TreeNode::Split { feature, threshold, left, right } = tree.nodes[id] {
                id = if x[[r, feature]] <= threshold { left } else { right };
            }
            tree.nodes[id].clone()
        };
        let targets = CartTargets::Classes { labels: &cells, n_classes: 16 };
        let tree = fit_tree(x.view(), targets, &settings(SplitCriterion::Entropy, 4, 2), 1).unwrap().tree;
        assert_eq!((tree.n_leaves(), tree.depth()), (16, 4));
        for (r, cell) in cells.iter().enumerate() {
            assert_eq!(reached(&tree, r), TreeNode::Leaf { output: *cell, value: 1.0 });
        }
        let y: Vec<f64> = cells.iter().map(|c| *c as f64).collect();
        for depth in 1..=4 {
            let tree =
                fit_tree(x.view(), CartTargets::Values(&y), &settings(SplitCriterion::SquaredError, depth, 2), 1)
                    .unwrap()
                    .tree;
            assert_eq!((tree.n_leaves(), tree.depth()), (1 << depth, depth));
        }
    }

    #[test]
    fn min_samples_leaf_is_honored() {
        let x = Array2::from_shape_fn((50, 3), |(i, j)| ((i * 13 + j * 7) % 17) as f64);
        // Labels unrelated to the features: the tree keeps cutting down to tiny leaves.
        let labels: Vec<usize> = (0..50).map(|i| (i * i + 3 * i) % 7 % 2).collect();
        for min_leaf in [1, 4, 9] {
            let s = CartSettings { min_samples_leaf: min_leaf, ..settings(SplitCriterion::Gini, 8, 3) };
            let tree = fit_tree(x.view(), CartTargets::Classes { labels: &labels, n_classes: 2 }, &s, 0).unwrap().tree;
            let mut counts = vec![0usize; tree.nodes.len()];
            for r in 0..50 {
                let mut id = 0;
                while let TreeNode::Split { feature, threshold, left, right } = tree.nodes[id] {
                    id = if x[[r, feature]] <= threshold { left } else { right };
                }
                counts[id] += 1;
            }
            let leaf_counts: Vec<usize> = tree
                .nodes
                .iter()
                .zip(&counts)
                .filter(|(n, _)| matches!(n, TreeNode::Leaf { .. }))
                .map(|(_, c)| *c)
                .collect();
            assert!(leaf_counts.iter().all(|c| *c >= min_leaf), "min_samples_leaf {min_leaf}: {leaf_counts:?}");
            if min_leaf == 1 {
                // Without the limit the tree does cut off small leaves here: the test bites.
                assert!(leaf_counts.iter().any(|c| *c < 4), "{leaf_counts:?}");
            }
        }
    }

    #[test]
    fn min_samples_split_stops_small_nodes() {
        let x = column(&[0.0, 1.0, 2.0, 3.0]);
        let labels = [0, 1, 0, 1];
        let targets = CartTargets::Classes { labels: &labels, n_classes: 2 };
        let s = CartSettings { min_samples_split: 5, ..settings(SplitCriterion::Gini, 4, 1) };
        assert_eq!(fit_tree(x.view(), targets, &s, 0).unwrap().tree.nodes.len(), 1);
        let s = CartSettings { min_samples_split: 4, ..s };
        assert!(fit_tree(x.view(), targets, &s, 0).unwrap().tree.nodes.len() > 1);
    }

    #[test]
    fn fits_are_deterministic_with_a_seed() {
        let x = Array2::from_shape_fn((120, 6), |(i, j)| ((i * 31 + j * 17) % 29) as f64);
        let labels: Vec<usize> = (0..120).map(|i| (i * 7 % 29 + i % 3) % 3).collect();
        let targets = CartTargets::Classes { labels: &labels, n_classes: 3 };
        let s = CartSettings { max_features: 2, ..settings(SplitCriterion::Gini, 4, 6) };
        let a = fit_forest(x.view(), targets, &s, 6, 11).unwrap();
        let b = fit_forest(x.view(), targets, &s, 6, 11).unwrap();
        assert_eq!(a, b);
        // Another seed draws other bootstraps and features.
        assert_ne!(a, fit_forest(x.view(), targets, &s, 6, 12).unwrap());
        // The trees of one forest differ from each other.
        assert_ne!(a[0], a[1]);
        // Computed alone or with others (another thread count), tree 3 is the same.
        let single = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(single.install(|| fit_forest(x.view(), targets, &s, 6, 11)).unwrap(), a);
    }

    /// Soft voting averages leaf class fractions: every row's scores are a probability
    /// vector, and a one-tree soft forest predicts as its hard twin.
    #[test]
    fn soft_voting_averages_class_fractions() {
        use crate::params::{TaskKind, TreeParams, Voting};
        let x = Array2::from_shape_fn((90, 3), |(i, j)| ((i * 17 + j * 5) % 11) as f64);
        let y: ndarray::Array1<f64> = (0..90).map(|i| ((i * i + i / 3) % 3) as f64).collect();
        let forest = |n: usize, voting: Voting| {
            TreeParams::new(TreeModelKind::Forest, TaskKind::Classification)
                .n_estimators(n)
                .max_depth(3)
                .voting(voting)
                .check()
                .unwrap()
                .fit(x.view(), y.view())
                .unwrap()
        };
        let soft = forest(5, Voting::Soft);
        for scores in soft.decision_function(x.view()).unwrap().rows() {
            assert!(scores.iter().all(|p| (0.0..=1.0 + 1e-12).contains(p)), "{scores}");
            assert!((scores.sum() - 1.0).abs() < 1e-9, "{scores}");
        }
        let (soft, hard) = (forest(1, Voting::Soft), forest(1, Voting::Hard));
        assert_eq!(soft.predict(x.view()).unwrap(), hard.predict(x.view()).unwrap());
        assert!(soft.ensemble().trees.len() > 1);
    }

    #[test]
    fn mismatched_criterion_is_refused() {
        let x = column(&[0.0, 1.0]);
        let err = fit_tree(x.view(), CartTargets::Values(&[0.0, 1.0]), &settings(SplitCriterion::Gini, 2, 1), 0);
        assert!(matches!(err, Err(TreeError::InvalidParameter { ref name, .. }) if name == "criterion"));
    }

    #[test]
    fn max_features_resolves_as_scikit_learn() {
        assert_eq!(MaxFeatures::Sqrt.resolve(64), 8);
        assert_eq!(MaxFeatures::Sqrt.resolve(30), 5);
        assert_eq!(MaxFeatures::Log2.resolve(64), 6);
        assert_eq!(MaxFeatures::All.resolve(10), 10);
        assert_eq!(MaxFeatures::Count(100).resolve(10), 10);
        assert_eq!(MaxFeatures::Sqrt.resolve(1), 1);
    }

    /// Brute force: the impurity decrease of every admissible midpoint of every feature.
    fn every_candidate(x: &Array2<f64>, targets: &CartTargets, min_leaf: usize, criterion: SplitCriterion) -> Vec<f64> {
        let n = x.nrows();
        let mut node = Stats::empty(targets);
        (0..n).for_each(|r| node.add(targets, r, 1.0));
        let mut out = Vec::new();
        for f in 0..x.ncols() {
            let mut values: Vec<f64> = x.column(f).to_vec();
            values.sort_by(f64::total_cmp);
            values.dedup();
            for pair in values.windows(2) {
                let t = midpoint(pair[0], pair[1]);
                let mut left = Stats::empty(targets);
                let mut n_left = 0;
                for r in 0..n {
                    if x[[r, f]] <= t {
                        left.add(targets, r, 1.0);
                        n_left += 1;
                    }
                }
                if n_left >= min_leaf && n - n_left >= min_leaf {
                    out.push(impurity_decrease(&node, &left, criterion));
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// On random small data (few distinct values, so with ties), the chosen split's
        /// impurity decrease is at least every other admissible candidate's.
        #[test]
        fn chosen_split_decreases_impurity_most(
            cells in proptest::collection::vec((0u8..5, 0u8..4, 0usize..3, -3.0f64..3.0), 4..40),
            min_leaf in 1usize..4,
            criterion in prop_oneof![
                Just(SplitCriterion::Gini),
                Just(SplitCriterion::Entropy),
                Just(SplitCriterion::SquaredError)
            ],
        ) {
            let n = cells.len();
            let x = Array2::from_shape_fn((n, 2), |(i, j)| f64::from(if j == 0 { cells[i].0 } else { cells[i].1 }));
            let labels: Vec<usize> = cells.iter().map(|c| c.2).collect();
            let values: Vec<f64> = cells.iter().map(|c| c.3).collect();
            let targets = if criterion.is_for_classification() {
                CartTargets::Classes { labels: &labels, n_classes: 3 }
            } else {
                CartTargets::Values(&values)
            };
            let s = CartSettings { min_samples_leaf: min_leaf, ..settings(criterion, 1, 2) };
            let rows: Vec<usize> = (0..n).collect();
            let candidates = every_candidate(&x, &targets, min_leaf, criterion);
            let chosen = best_split(x.view(), &targets, &vec![1.0; n], &rows, &[1, 0], &s);
            match chosen {
                None => prop_assert!(candidates.is_empty()),
                Some(split) => {
                    for c in &candidates {
                        prop_assert!(split.impurity_decrease >= c - 1e-9, "{:?} < {}", split, c);
                    }
                    prop_assert!(candidates.iter().any(|c| (c - split.impurity_decrease).abs() < 1e-9));
                }
            }
        }
    }
}
