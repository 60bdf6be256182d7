//! Importing smartcore's trees and forests: reading their private trees through their
//! serde form. (fheml trains its own trees, see [`crate::cart`]: smartcore 0.7's classifier
//! skips most thresholds when feature values tie.)
//!
//! The layout (smartcore 0.7, pinned by tests): a classifier tree serializes as
//! `{"nodes": [...], "classes": [...], "num_features": n, ...}`, a forest classifier as
//! `{"trees": [<classifier tree>...], "classes": [...]}`, a regressor tree as
//! `{"tree_regressor": {"nodes": [...]}, "num_features": n}` and a forest regressor as
//! `{"forest_regressor": {"trees": [{"nodes": [...]}...], "num_features": n}}`. A node is
//! `{"output", "split_feature", "split_value", "true_child", "false_child", ...}`;
//! `x[split_feature] <= split_value` goes to `true_child`; a node whose `true_child` is null
//! is a leaf (it may still carry a `split_value`). A classifier leaf's `output` is the index
//! of its winning class in `classes`; a regressor leaf's `output` is its value.

use serde_json::Value;

use crate::ensemble::{Tree, TreeEnsemble, TreeNode};
use crate::error::{Result, TreeError};
use crate::params::{TaskKind, TreeModelKind};

fn layout(msg: String) -> TreeError {
    TreeError::SmartcoreLayout(msg)
}

fn field<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a Value> {
    v.get(key).ok_or_else(|| layout(format!("`{at}` has no field `{key}`")))
}

fn usize_of(v: &Value, at: &str) -> Result<usize> {
    v.as_u64().and_then(|u| usize::try_from(u).ok()).ok_or_else(|| layout(format!("`{at}` is not an index: {v}")))
}

fn opt_usize(v: &Value, key: &str, at: &str) -> Result<Option<usize>> {
    match field(v, key, at)? {
        Value::Null => Ok(None),
        x => usize_of(x, &format!("{at}.{key}")).map(Some),
    }
}

/// Turns a leaf's `output` (at a path) into its `(output, value)` pair.
type LeafReader<'a> = &'a dyn Fn(&Value, &str) -> Result<(usize, f64)>;

/// Reads one smartcore tree's `nodes` array. `leaf` turns a leaf's `output` into its
/// `(output, value)` pair.
fn read_nodes(tree: &Value, at: &str, leaf: LeafReader<'_>) -> Result<Tree> {
    let nodes = field(tree, "nodes", at)?.as_array().ok_or_else(|| layout(format!("`{at}.nodes` is not an array")))?;
    if nodes.is_empty() {
        return Err(layout(format!("`{at}.nodes` is empty (an unfitted model?)")));
    }
    let mut out = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let here = format!("{at}.nodes[{i}]");
        match opt_usize(node, "true_child", &here)? {
            None => {
                let (output, value) = leaf(field(node, "output", &here)?, &here)?;
                out.push(TreeNode::Leaf { output, value });
            }
            Some(left) => {
                let right = opt_usize(node, "false_child", &here)?
                    .ok_or_else(|| layout(format!("`{here}` has a true_child but no false_child")))?;
                let feature = usize_of(field(node, "split_feature", &here)?, &format!("{here}.split_feature"))?;
                let threshold = field(node, "split_value", &here)?
                    .as_f64()
                    .ok_or_else(|| layout(format!("`{here}` splits without a numeric split_value")))?;
                out.push(TreeNode::Split { feature, threshold, left, right });
            }
        }
    }
    Ok(Tree { nodes: out })
}

fn classes_of(v: &Value, at: &str) -> Result<Vec<f64>> {
    field(v, "classes", at)?
        .as_array()
        .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
        .ok_or_else(|| layout(format!("`{at}.classes` is not an array of numbers")))
}

fn classifier_tree(tree: &Value, at: &str, n_classes: usize) -> Result<Tree> {
    read_nodes(tree, at, &|output, here| {
        let class = usize_of(output, &format!("{here}.output"))?;
        if class >= n_classes {
            return Err(layout(format!("`{here}` votes for class {class} of {n_classes}")));
        }
        Ok((class, 1.0))
    })
}

fn regressor_tree(tree: &Value, at: &str) -> Result<Tree> {
    read_nodes(tree, at, &|output, here| {
        output.as_f64().map(|v| (0, v)).ok_or_else(|| layout(format!("`{here}.output` is not a number")))
    })
}

/// Reads a serialized smartcore `DecisionTreeClassifier`, `RandomForestClassifier`,
/// `DecisionTreeRegressor` or `RandomForestRegressor` (`serde_json::to_value(&model)`).
/// Classifier labels come from the model's `classes`.
pub fn ensemble_from_smartcore(kind: TreeModelKind, task: TaskKind, v: &Value) -> Result<TreeEnsemble> {
    let ensemble = match (kind, task) {
        (TreeModelKind::Tree, TaskKind::Classification) => {
            let classes = classes_of(v, "model")?;
            let n_features = usize_of(field(v, "num_features", "model")?, "model.num_features")?;
            TreeEnsemble::votes(vec![classifier_tree(v, "model", classes.len())?], n_features, classes)
        }
        (TreeModelKind::Forest, TaskKind::Classification) => {
            let classes = classes_of(v, "model")?;
            let trees_v =
                field(v, "trees", "model")?.as_array().ok_or_else(|| layout("`model.trees` is not an array".into()))?;
            let first = trees_v.first().ok_or_else(|| layout("`model.trees` is empty".into()))?;
            let n_features = usize_of(field(first, "num_features", "model.trees[0]")?, "model.trees[0].num_features")?;
            let mut trees = Vec::with_capacity(trees_v.len());
            for (i, t) in trees_v.iter().enumerate() {
                let at = format!("model.trees[{i}]");
                // Each tree indexes its own `classes`; map them onto the forest's.
                let own = classes_of(t, &at)?;
                let mut tree = classifier_tree(t, &at, own.len())?;
                for node in &mut tree.nodes {
                    if let TreeNode::Leaf { output, .. } = node {
                        let label = own[*output];
                        *output = classes
                            .iter()
                            .position(|c| *c == label)
                            .ok_or_else(|| layout(format!("`{at}` has class {label} unknown to the forest")))?;
                    }
                }
                trees.push(tree);
            }
            TreeEnsemble::votes(trees, n_features, classes)
        }
        (TreeModelKind::Tree, TaskKind::Regression) => {
            let inner = field(v, "tree_regressor", "model")?;
            let n_features = opt_usize(v, "num_features", "model")?
                .ok_or_else(|| layout("`model.num_features` is null (an unfitted model?)".into()))?;
            TreeEnsemble::mean(vec![regressor_tree(inner, "model.tree_regressor")?], n_features)
        }
        (TreeModelKind::Forest, TaskKind::Regression) => {
            let inner = field(v, "forest_regressor", "model")?;
            let n_features = opt_usize(inner, "num_features", "model.forest_regressor")?
                .ok_or_else(|| layout("`model.forest_regressor.num_features` is null".into()))?;
            let trees_v = field(inner, "trees", "model.forest_regressor")?
                .as_array()
                .ok_or_else(|| layout("`model.forest_regressor.trees` is not an array".into()))?;
            let trees = trees_v
                .iter()
                .enumerate()
                .map(|(i, t)| regressor_tree(t, &format!("model.forest_regressor.trees[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            TreeEnsemble::mean(trees, n_features)
        }
        (TreeModelKind::Gbdt, _) => {
            return Err(TreeError::Data(
                "smartcore has no gradient-boosted classifier; use gbdt training or XGBoost JSON".into(),
            ));
        }
    };
    ensemble.validate()?;
    Ok(ensemble)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ensemble::SplitRule;
    use serde_json::json;
    use smartcore::linalg::basic::matrix::DenseMatrix;
    use smartcore::tree::decision_tree_classifier::{DecisionTreeClassifier, DecisionTreeClassifierParameters};
    use smartcore::tree::decision_tree_regressor::{DecisionTreeRegressor, DecisionTreeRegressorParameters};

    fn tiny() -> DenseMatrix<f64> {
        DenseMatrix::from_2d_vec(&vec![vec![0.0, 5.0], vec![1.0, 5.0], vec![2.0, 5.0], vec![3.0, 5.0]]).unwrap()
    }

    /// Pins smartcore's serde layout on a hand-checked tree: four points, one split at the
    /// midpoint 1.5 of feature 0, `x <= 1.5` to the true child.
    #[test]
    fn smartcore_classifier_layout_is_pinned() {
        let y: Vec<u32> = vec![0, 0, 1, 1];
        let model = DecisionTreeClassifier::fit(&tiny(), &y, DecisionTreeClassifierParameters::default()).unwrap();
        let v = serde_json::to_value(&model).unwrap();
        assert_eq!(v["classes"], json!([0, 1]));
        assert_eq!(v["num_features"], json!(2));
        let nodes = v["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0]["split_feature"], json!(0));
        assert_eq!(nodes[0]["split_value"], json!(1.5));
        let (t, f) =
            (nodes[0]["true_child"].as_u64().unwrap() as usize, nodes[0]["false_child"].as_u64().unwrap() as usize);
        assert_eq!(nodes[t]["output"], json!(0));
        assert_eq!(nodes[f]["output"], json!(1));
        assert_eq!(nodes[t]["true_child"], Value::Null);

        let e = ensemble_from_smartcore(TreeModelKind::Tree, TaskKind::Classification, &v).unwrap();
        assert_eq!(e.rule, SplitRule::LessOrEqual);
        assert_eq!(e.trees[0].nodes[0], TreeNode::Split { feature: 0, threshold: 1.5, left: t, right: f });
        assert_eq!(e.scores_row(&[1.5, 0.0]).unwrap(), vec![1.0, 0.0]);
        assert_eq!(e.scores_row(&[1.6, 0.0]).unwrap(), vec![0.0, 1.0]);
        let preds = model.predict(&DenseMatrix::from_2d_vec(&vec![vec![1.5, 0.0], vec![1.6, 0.0]]).unwrap()).unwrap();
        assert_eq!(preds, vec![0, 1]);
    }

    #[test]
    fn smartcore_regressor_layout_is_pinned() {
        let y = vec![1.0, 1.0, 3.0, 5.0];
        let model = DecisionTreeRegressor::fit(&tiny(), &y, DecisionTreeRegressorParameters::default()).unwrap();
        let v = serde_json::to_value(&model).unwrap();
        assert_eq!(v["num_features"], json!(2));
        let nodes = v["tree_regressor"]["nodes"].as_array().unwrap();
        assert_eq!(nodes[0]["split_value"], json!(1.5));
        let e = ensemble_from_smartcore(TreeModelKind::Tree, TaskKind::Regression, &v).unwrap();
        for (row, want) in [([0.0, 0.0], 1.0), ([2.0, 0.0], 3.0), ([2.6, 0.0], 5.0)] {
            assert_eq!(e.scores_row(&row).unwrap(), vec![want]);
        }
        let preds = model.predict(&DenseMatrix::from_2d_vec(&vec![vec![2.5, 0.0]]).unwrap()).unwrap();
        assert_eq!(e.scores_row(&[2.5, 0.0]).unwrap(), preds);
    }

    #[test]
    fn layout_errors_are_typed() {
        let v = json!({"nodes": [{"true_child": 1, "false_child": null}], "classes": [0, 1], "num_features": 1});
        assert!(matches!(
            ensemble_from_smartcore(TreeModelKind::Tree, TaskKind::Classification, &v),
            Err(TreeError::SmartcoreLayout(_))
        ));
        let v = json!({"trees": [], "classes": [0, 1]});
        assert!(ensemble_from_smartcore(TreeModelKind::Forest, TaskKind::Classification, &v).is_err());
    }
}
