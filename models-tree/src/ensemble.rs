//! The neutral representation every tree model is read into: an ensemble of binary trees
//! whose splits compare one feature with a threshold and whose leaves add a value to one
//! output.

use fheml_circuits::{PostProcessing, Prediction, Task};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use fheml_quant::DataError;
use fheml_quant::data::check_prediction_rows;

use crate::error::{Result, TreeError};

/// How a split compares a feature with its threshold; when the comparison holds the sample
/// goes to the split's `left` child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitRule {
    /// `x <= threshold` goes left (smartcore, scikit-learn).
    LessOrEqual,
    /// `x < threshold` goes left (XGBoost, LightGBM).
    Less,
}

/// The floating-point type splits are compared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// Features and thresholds compared as `f64` (smartcore).
    F64,
    /// Features and thresholds both rounded to `f32` first (XGBoost, hessboost).
    F32,
}

/// One node of a [`Tree`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TreeNode {
    /// An internal node.
    Split {
        /// The feature compared.
        feature: usize,
        /// The threshold it is compared with.
        threshold: f64,
        /// Node index taken when the ensemble's [`SplitRule`] holds.
        left: usize,
        /// Node index taken otherwise.
        right: usize,
    },
    /// A leaf: adds `value` to output `output`.
    Leaf {
        /// The output (class score, or 0 for a single-output model) the leaf adds to.
        output: usize,
        /// The value added.
        value: f64,
    },
}

/// A binary tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The nodes; children are indices into this vector.
    pub nodes: Vec<TreeNode>,
}

/// A leaf together with the conditions on the path that leads to it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafPath {
    /// Index of the leaf node in its tree.
    pub node: usize,
    /// The output the leaf adds to.
    pub output: usize,
    /// The value it adds.
    pub value: f64,
    /// `(split node, went left)` from the root down.
    pub conditions: Vec<(usize, bool)>,
}

impl Tree {
    /// A tree of one leaf.
    pub fn leaf(output: usize, value: f64) -> Self {
        Self { nodes: vec![TreeNode::Leaf { output, value }] }
    }

    /// Every leaf with its path, depth-first, left before right. The tree must be valid
    /// ([`TreeEnsemble::validate`]); the traversal is iterative, so deep trees cannot
    /// overflow the stack.
    pub fn leaves(&self) -> Vec<LeafPath> {
        let mut out = Vec::new();
        let mut stack: Vec<(usize, Vec<(usize, bool)>)> = vec![(0, Vec::new())];
        while let Some((id, path)) = stack.pop() {
            match self.nodes.get(id) {
                Some(TreeNode::Leaf { output, value }) => {
                    out.push(LeafPath { node: id, output: *output, value: *value, conditions: path })
                }
                Some(TreeNode::Split { left, right, .. }) => {
                    let mut right_path = path.clone();
                    right_path.push((id, false));
                    let mut left_path = path;
                    left_path.push((id, true));
                    stack.push((*right, right_path));
                    stack.push((*left, left_path));
                }
                None => {}
            }
        }
        out
    }

    /// Number of split nodes.
    pub fn n_splits(&self) -> usize {
        self.nodes.iter().filter(|n| matches!(n, TreeNode::Split { .. })).count()
    }

    /// Number of leaves.
    pub fn n_leaves(&self) -> usize {
        self.nodes.len() - self.n_splits()
    }

    /// Length of the longest root-to-leaf path.
    pub fn depth(&self) -> usize {
        self.leaves().iter().map(|l| l.conditions.len()).max().unwrap_or(0)
    }
}

/// An ensemble of trees: `score[o] = base_score[o] + scale · Σ_trees value(leaf reached)`
/// over the leaves that add to output `o`, then `post`.
///
/// - decision tree classifier / random forest classifier: one output per class, every leaf
///   adds 1 to its class (vote counting), `scale` 1, [`PostProcessing::Argmax`];
/// - regressors: one output; a forest averages (`scale = 1 / n_trees`);
/// - gradient boosting: one output (binary, regression) or one per class, each tree adding
///   to one output, `base_score` the initial margin, sigmoid or softmax after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEnsemble {
    /// The trees.
    pub trees: Vec<Tree>,
    /// Number of features a sample has.
    pub n_features: usize,
    /// Number of scores (classes for vote counting and multiclass boosting, otherwise 1).
    pub n_outputs: usize,
    /// How splits compare.
    pub rule: SplitRule,
    /// In which float type splits compare.
    pub precision: Precision,
    /// Added to each output after scaling (one per output).
    pub base_score: Vec<f64>,
    /// Multiplies the sum of the leaf values.
    pub scale: f64,
    /// What turns the scores into a prediction.
    pub post: PostProcessing,
    /// Classification (with labels) or regression.
    pub task: Task,
}

fn finite(v: f64, what: impl FnOnce() -> String) -> Result<()> {
    if v.is_finite() { Ok(()) } else { Err(TreeError::InvalidEnsemble(format!("{} is {v}", what()))) }
}

impl TreeEnsemble {
    /// Checks the structure: children in range, every node reached exactly once from the
    /// root (no cycle, no sharing), feature and output indices in range, finite numbers,
    /// one base score per output, and class labels for classifiers.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TreeError::InvalidEnsemble(m));
        if self.trees.is_empty() {
            return bad("no tree".into());
        }
        if self.n_features == 0 || self.n_outputs == 0 {
            return bad(format!("{} features and {} outputs", self.n_features, self.n_outputs));
        }
        if self.base_score.len() != self.n_outputs {
            return bad(format!("{} base scores for {} outputs", self.base_score.len(), self.n_outputs));
        }
        for (o, b) in self.base_score.iter().enumerate() {
            finite(*b, || format!("base score {o}"))?;
        }
        finite(self.scale, || "the scale".into())?;
        if let Task::Classification { classes } = &self.task {
            if classes.len() < 2 {
                return bad(format!("a classifier with {} class labels", classes.len()));
            }
            let needed = match self.post {
                PostProcessing::Sigmoid | PostProcessing::Sign => 1,
                _ => classes.len(),
            };
            if needed != self.n_outputs {
                return bad(format!(
                    "{} classes need {needed} outputs, the ensemble has {}",
                    classes.len(),
                    self.n_outputs
                ));
            }
        }
        for (t, tree) in self.trees.iter().enumerate() {
            let n = tree.nodes.len();
            if n == 0 {
                return bad(format!("tree {t} has no node"));
            }
            let mut seen = vec![false; n];
            let mut stack = vec![0usize];
            while let Some(id) = stack.pop() {
                if id >= n {
                    return bad(format!("tree {t}: child index {id} out of range ({n} nodes)"));
                }
                if std::mem::replace(&mut seen[id], true) {
                    return bad(format!("tree {t}: node {id} is reached twice (a cycle or a shared child)"));
                }
                match &tree.nodes[id] {
                    TreeNode::Split { feature, threshold, left, right } => {
                        if *feature >= self.n_features {
                            return bad(format!("tree {t} node {id}: feature {feature} of {}", self.n_features));
                        }
                        finite(*threshold, || format!("tree {t} node {id}: threshold"))?;
                        stack.push(*right);
                        stack.push(*left);
                    }
                    TreeNode::Leaf { output, value } => {
                        if *output >= self.n_outputs {
                            return bad(format!("tree {t} node {id}: output {output} of {}", self.n_outputs));
                        }
                        finite(*value, || format!("tree {t} node {id}: leaf value"))?;
                    }
                }
            }
            if let Some(orphan) = seen.iter().position(|s| !s) {
                return bad(format!("tree {t}: node {orphan} is not reachable from the root"));
            }
        }
        Ok(())
    }

    /// Whether the split `x[feature] ? threshold` goes left, in this ensemble's rule and
    /// precision.
    pub fn goes_left(&self, x: f64, threshold: f64) -> bool {
        match (self.rule, self.precision) {
            (SplitRule::LessOrEqual, Precision::F64) => x <= threshold,
            (SplitRule::Less, Precision::F64) => x < threshold,
            (SplitRule::LessOrEqual, Precision::F32) => (x as f32) <= (threshold as f32),
            (SplitRule::Less, Precision::F32) => (x as f32) < (threshold as f32),
        }
    }

    /// Index of the leaf of tree `t` that `row` reaches; `None` when there is no tree `t`
    /// or `row` is shorter than a feature the tree reads. The ensemble must be valid.
    pub fn leaf_index(&self, t: usize, row: &[f64]) -> Option<usize> {
        let nodes = &self.trees.get(t)?.nodes;
        let mut id = 0;
        // A valid tree reaches a leaf in fewer steps than it has nodes.
        for _ in 0..nodes.len() {
            match nodes.get(id)? {
                TreeNode::Leaf { .. } => return Some(id),
                TreeNode::Split { feature, threshold, left, right } => {
                    id = if self.goes_left(*row.get(*feature)?, *threshold) { *left } else { *right };
                }
            }
        }
        None
    }

    /// Checks the feature count and that every value is finite.
    pub fn check_rows(&self, x: ArrayView2<f64>) -> Result<()> {
        Ok(check_prediction_rows(x, self.n_features)?)
    }

    /// The scores of one row.
    pub fn scores_row(&self, row: &[f64]) -> Result<Vec<f64>> {
        check_prediction_rows(
            ArrayView2::from_shape((1, row.len()), row).map_err(|e| TreeError::Data(e.to_string()))?,
            self.n_features,
        )?;
        let mut sums = vec![0.0; self.n_outputs];
        for t in 0..self.trees.len() {
            let leaf = self.leaf_index(t, row).and_then(|i| self.trees[t].nodes.get(i));
            if let Some(TreeNode::Leaf { output, value }) = leaf
                && let Some(s) = sums.get_mut(*output)
            {
                *s += value;
            }
        }
        Ok(sums.iter().zip(&self.base_score).map(|(s, b)| b + self.scale * s).collect())
    }

    /// Scores of every row, `[rows][outputs]` (margins for boosting, vote counts for
    /// classifiers, values for regressors).
    pub fn decision_function(&self, x: ArrayView2<f64>) -> Result<Vec<Vec<f64>>> {
        self.check_rows(x)?;
        x.rows()
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                self.scores_row(&r.to_vec()).map_err(|e| match e {
                    TreeError::Input(DataError::NonFiniteFeature { value, column, .. }) => {
                        TreeError::Input(DataError::NonFiniteFeature { value, row: i, column })
                    }
                    other => other,
                })
            })
            .collect()
    }

    /// Float predictions.
    pub fn predict_detailed(&self, x: ArrayView2<f64>) -> Result<Vec<Prediction>> {
        self.decision_function(x)?
            .into_iter()
            .map(|s| self.post.apply(s, &self.task).map_err(TreeError::from))
            .collect()
    }

    /// Concrete ML's bootstrap count for this ensemble in its GEMM (Hummingbird) form: one
    /// per comparison node and one per leaf, per tree.
    pub fn gemm_bootstraps(&self) -> usize {
        self.trees.iter().map(|t| t.nodes.len()).sum()
    }

    /// Largest depth over the trees.
    pub fn max_depth(&self) -> usize {
        self.trees.iter().map(Tree::depth).max().unwrap_or(0)
    }
}

impl TreeEnsemble {
    /// A vote-counting classifier: every leaf adds 1 to its class, the most voted class
    /// wins (`x <= threshold` goes left, compared in `f64`, as scikit-learn and smartcore).
    pub(crate) fn votes(trees: Vec<Tree>, n_features: usize, classes: Vec<f64>) -> Self {
        Self {
            trees,
            n_features,
            n_outputs: classes.len(),
            rule: SplitRule::LessOrEqual,
            precision: Precision::F64,
            base_score: vec![0.0; classes.len()],
            scale: 1.0,
            post: PostProcessing::Argmax,
            task: Task::Classification { classes },
        }
    }

    /// A regressor predicting the mean of its trees' leaf values.
    pub(crate) fn mean(trees: Vec<Tree>, n_features: usize) -> Self {
        let scale = 1.0 / trees.len().max(1) as f64;
        Self {
            trees,
            n_features,
            n_outputs: 1,
            rule: SplitRule::LessOrEqual,
            precision: Precision::F64,
            base_score: vec![0.0],
            scale,
            post: PostProcessing::Identity,
            task: Task::Regression,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn stump() -> TreeEnsemble {
        TreeEnsemble {
            trees: vec![Tree {
                nodes: vec![
                    TreeNode::Split { feature: 0, threshold: 0.5, left: 1, right: 2 },
                    TreeNode::Leaf { output: 0, value: -1.0 },
                    TreeNode::Leaf { output: 0, value: 2.0 },
                ],
            }],
            n_features: 1,
            n_outputs: 1,
            rule: SplitRule::LessOrEqual,
            precision: Precision::F64,
            base_score: vec![0.5],
            scale: 1.0,
            post: PostProcessing::Identity,
            task: Task::Regression,
        }
    }

    #[test]
    fn rules_differ_on_the_threshold() {
        let mut e = stump();
        e.validate().unwrap();
        assert_eq!(e.scores_row(&[0.5]).unwrap(), vec![-0.5]);
        e.rule = SplitRule::Less;
        assert_eq!(e.scores_row(&[0.5]).unwrap(), vec![2.5]);
        assert_eq!(e.scores_row(&[0.4]).unwrap(), vec![-0.5]);
        assert!(matches!(e.scores_row(&[0.4, 1.0]), Err(TreeError::Input(DataError::FeatureCount { .. }))));
        assert_eq!(e.leaf_index(0, &[]), None);
        assert_eq!(e.leaf_index(1, &[0.0]), None);
    }

    #[test]
    fn f32_precision_rounds_both_sides() {
        let mut e = stump();
        e.rule = SplitRule::Less;
        e.precision = Precision::F32;
        let t = 0.1f32 as f64; // the f32 threshold, exactly
        if let TreeNode::Split { threshold, .. } = &mut e.trees[0].nodes[0] {
            *threshold = t;
        }
        // Slightly below the f32 threshold in f64, but equal once rounded to f32.
        let x = t - 1e-12;
        assert!(x < t);
        assert_eq!(e.leaf_index(0, &[x]), Some(2));
    }

    #[test]
    fn validation_catches_cycles_and_bad_indices() {
        let mut e = stump();
        e.trees[0].nodes[0] = TreeNode::Split { feature: 0, threshold: 0.5, left: 0, right: 2 };
        assert!(matches!(e.validate(), Err(TreeError::InvalidEnsemble(_))));
        let mut e = stump();
        e.trees[0].nodes[0] = TreeNode::Split { feature: 3, threshold: 0.5, left: 1, right: 2 };
        assert!(e.validate().is_err());
        let mut e = stump();
        e.trees[0].nodes[0] = TreeNode::Split { feature: 0, threshold: 0.5, left: 1, right: 9 };
        assert!(e.validate().is_err());
        let mut e = stump();
        e.trees[0].nodes[0] = TreeNode::Split { feature: 0, threshold: f64::NAN, left: 1, right: 2 };
        assert!(e.validate().is_err());
        let mut e = stump();
        e.trees[0].nodes.push(TreeNode::Leaf { output: 0, value: 1.0 });
        assert!(e.validate().is_err());
    }

    #[test]
    fn leaves_come_with_their_paths() {
        let e = stump();
        let leaves = e.trees[0].leaves();
        assert_eq!(leaves.len(), 2);
        assert_eq!(leaves[0].conditions, vec![(0, true)]);
        assert_eq!(leaves[1].conditions, vec![(0, false)]);
        assert_eq!(e.gemm_bootstraps(), 3);
        assert_eq!(e.max_depth(), 1);
    }
}
