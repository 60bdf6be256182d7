//! XGBoost's JSON model format (`booster.save_model("model.json")`), read with serde_json.
//!
//! What is read: `learner.learner_model_param` (`base_score`, `num_class`, `num_feature`),
//! `learner.objective.name`, and `learner.gradient_booster.model` (`gbtree` only):
//! `trees[]` (`left_children`, `right_children`, `split_indices`, `split_conditions`,
//! `split_type`, `tree_param.size_leaf_vector`) and `tree_info` (the class of each tree). A
//! node whose left child is `-1` is a leaf whose value is its `split_conditions` entry
//! (learning rate included). XGBoost splits with `x < threshold` going left, both sides in
//! `f32`. `base_score` is a string, either one number (`"5E-1"`, XGBoost 1.x/2.x) or a
//! bracketed list (`"[4.29E-1]"`, one per class for multiclass in XGBoost 3.x); it is in the
//! objective's output space, so `binary:logistic` adds `logit(base_score)` to the margin and
//! the log-link objectives `ln(base_score)` (checked against XGBoost 3.2; `binary:logitraw`
//! and `multi:*` store margins).

use fheml_circuits::{PostProcessing, Task};
use serde_json::Value;

use crate::ensemble::{Precision, SplitRule, Tree, TreeEnsemble, TreeNode};
use crate::error::{Result, TreeError};

/// A JSON value and where it sits in the document, for error messages.
#[derive(Clone, Copy)]
struct At<'v, 'p> {
    v: &'v Value,
    path: &'p str,
}

fn malformed(path: &str, detail: impl Into<String>) -> TreeError {
    TreeError::XgboostFormat {
        path: crate::error::printable(path, 200),
        detail: crate::error::printable(&detail.into(), 600),
    }
}

/// What the file asks that is not supported (its text may quote the file's strings).
fn unsupported(detail: String) -> TreeError {
    TreeError::XgboostUnsupported(crate::error::printable(&detail, 600))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn get<'a>(v: &'a Value, path: &str, key: &str) -> Result<&'a Value> {
    v.get(key).ok_or_else(|| malformed(path, format!("missing field `{key}`")))
}

fn array<'v>(at: At<'v, '_>) -> Result<&'v Vec<Value>> {
    at.v.as_array().ok_or_else(|| malformed(at.path, "expected an array"))
}

/// XGBoost writes most scalars as strings (`"num_class": "3"`); accept numbers too.
fn number(at: At<'_, '_>) -> Result<f64> {
    match at.v {
        Value::Number(n) => n.as_f64().ok_or_else(|| malformed(at.path, "not a number")),
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| malformed(at.path, format!("`{s}` is not a number"))),
        other => Err(malformed(at.path, format!("expected a number, got {other}"))),
    }
}

fn count(at: At<'_, '_>) -> Result<usize> {
    let x = number(at)?;
    if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 {
        Ok(x as usize)
    } else {
        Err(malformed(at.path, format!("expected a non-negative integer, got {x}")))
    }
}

fn ints(at: At<'_, '_>) -> Result<Vec<i64>> {
    array(at)?
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_i64().ok_or_else(|| malformed(&format!("{}[{i}]", at.path), format!("expected an integer, got {x}")))
        })
        .collect()
}

fn floats(at: At<'_, '_>) -> Result<Vec<f64>> {
    array(at)?
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let p = format!("{}[{i}]", at.path);
            let v = x.as_f64().ok_or_else(|| malformed(&p, format!("expected a number, got {x}")))?;
            if v.is_finite() { Ok(v) } else { Err(malformed(&p, format!("non-finite value {v}"))) }
        })
        .collect()
}

/// `"5E-1"`, `"[5E-1]"`, `"[1E0,2E0]"` or a number.
fn base_scores(at: At<'_, '_>) -> Result<Vec<f64>> {
    let values = match at.v {
        Value::String(s) => {
            let s = s.trim();
            let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
            inner
                .split(',')
                .map(|p| p.trim().parse::<f64>().map_err(|_| malformed(at.path, format!("`{s}` is not a number list"))))
                .collect::<Result<Vec<_>>>()?
        }
        Value::Array(_) => floats(at)?,
        _ => vec![number(at)?],
    };
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return Err(malformed(at.path, format!("bad base score {values:?}")));
    }
    Ok(values)
}

/// How an objective maps the stored base score to a margin, and what the client computes.
struct ObjectiveInfo {
    classification: bool,
    post: PostProcessing,
    link: fn(f64) -> Result<f64>,
}

fn identity(x: f64) -> Result<f64> {
    Ok(x)
}

fn logit(p: f64) -> Result<f64> {
    if p > 0.0 && p < 1.0 {
        Ok((p / (1.0 - p)).ln())
    } else {
        Err(malformed("learner.learner_model_param.base_score", format!("{p} is not a probability in (0, 1)")))
    }
}

fn log(m: f64) -> Result<f64> {
    if m > 0.0 {
        Ok(m.ln())
    } else {
        Err(malformed("learner.learner_model_param.base_score", format!("{m} is not positive (log link)")))
    }
}

fn objective_info(name: &str) -> Result<ObjectiveInfo> {
    let (classification, post, link): (bool, PostProcessing, fn(f64) -> Result<f64>) = match name {
        "binary:logistic" => (true, PostProcessing::Sigmoid, logit),
        // XGBoost 3 stores logitraw's base score as a margin already.
        "binary:logitraw" => (true, PostProcessing::Sigmoid, identity),
        "multi:softprob" | "multi:softmax" => (true, PostProcessing::Softmax, identity),
        "reg:squarederror" | "reg:linear" | "reg:absoluteerror" | "reg:pseudohubererror" | "reg:squaredlogerror" => {
            (false, PostProcessing::Identity, identity)
        }
        "count:poisson" | "reg:gamma" | "reg:tweedie" => (false, PostProcessing::Exp, log),
        other => {
            return Err(unsupported(format!(
                "objective `{other}`; supported: binary:logistic, binary:logitraw, multi:softprob, multi:softmax, \
                 reg:squarederror, reg:absoluteerror, reg:pseudohubererror, reg:squaredlogerror, count:poisson, \
                 reg:gamma, reg:tweedie"
            )));
        }
    };
    Ok(ObjectiveInfo { classification, post, link })
}

/// Reads one tree, keeping only the nodes reachable from the root (XGBoost may leave pruned
/// nodes in the arrays) and refusing cycles.
fn read_tree(tree: &Value, path: &str, output: usize) -> Result<Tree> {
    let field = |key: &str| -> Result<(String, &Value)> {
        let p = join(path, key);
        let v = get(tree, path, key)?;
        Ok((p, v))
    };
    if let Ok((p, param)) = field("tree_param")
        && let Some(size) = param.get("size_leaf_vector")
    {
        let size = count(At { v: size, path: &join(&p, "size_leaf_vector") })?;
        if size > 1 {
            return Err(unsupported(format!(
                "{path} has vector leaves (size_leaf_vector {size}, multi_strategy=multi_output_tree)"
            )));
        }
    }
    let (p, v) = field("left_children")?;
    let left = ints(At { v, path: &p })?;
    let (p, v) = field("right_children")?;
    let right = ints(At { v, path: &p })?;
    let (p, v) = field("split_indices")?;
    let features = ints(At { v, path: &p })?;
    let (p, v) = field("split_conditions")?;
    let conditions = floats(At { v, path: &p })?;
    let n = left.len();
    if n == 0 {
        return Err(malformed(path, "a tree with no node"));
    }
    if right.len() != n || features.len() != n || conditions.len() != n {
        return Err(malformed(
            path,
            format!(
                "node arrays differ in length: left_children {n}, right_children {}, split_indices {}, split_conditions {}",
                right.len(),
                features.len(),
                conditions.len()
            ),
        ));
    }
    if let Some(types) = tree.get("split_type") {
        let types = ints(At { v: types, path: &join(path, "split_type") })?;
        if let Some(i) = (0..n).find(|&i| types.get(i).is_some_and(|t| *t != 0) && left[i] != -1) {
            return Err(unsupported(format!("{path} node {i} is a categorical split")));
        }
    }
    // Renumber the reachable nodes in visiting order.
    let mut new_id = vec![usize::MAX; n];
    let mut order = Vec::new();
    let mut stack = vec![0usize];
    while let Some(id) = stack.pop() {
        if new_id[id] != usize::MAX {
            return Err(malformed(path, format!("node {id} is reached twice (a cycle or a shared child)")));
        }
        new_id[id] = order.len();
        order.push(id);
        if left[id] != -1 {
            for child in [right[id], left[id]] {
                let c = usize::try_from(child).ok().filter(|c| *c < n).ok_or_else(|| {
                    malformed(path, format!("node {id} has child {child}, out of range for {n} nodes"))
                })?;
                stack.push(c);
            }
        }
    }
    let nodes = order
        .iter()
        .map(|&id| {
            if left[id] == -1 {
                Ok(TreeNode::Leaf { output, value: conditions[id] })
            } else {
                let feature = usize::try_from(features[id])
                    .map_err(|_| malformed(path, format!("node {id} splits on feature {}", features[id])))?;
                Ok(TreeNode::Split {
                    feature,
                    threshold: conditions[id],
                    left: new_id[left[id] as usize],
                    right: new_id[right[id] as usize],
                })
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tree { nodes })
}

/// Reads an XGBoost JSON model document into a [`TreeEnsemble`].
pub fn ensemble_from_xgboost_json(text: &str) -> Result<TreeEnsemble> {
    let root: Value = serde_json::from_str(text).map_err(|e| malformed("", format!("not JSON: {e}")))?;
    let learner = get(&root, "", "learner")?;
    let lp = "learner.learner_model_param";
    let model_param = get(learner, "learner", "learner_model_param")?;
    let n_features = count(At { v: get(model_param, lp, "num_feature")?, path: &join(lp, "num_feature") })?;
    let num_class = match model_param.get("num_class") {
        Some(v) => count(At { v, path: &join(lp, "num_class") })?,
        None => 0,
    };
    if let Some(v) = model_param.get("num_target") {
        let targets = count(At { v, path: &join(lp, "num_target") })?;
        if targets > 1 {
            return Err(unsupported(format!("{targets} targets (multi-output regression)")));
        }
    }
    let base = base_scores(At { v: get(model_param, lp, "base_score")?, path: &join(lp, "base_score") })?;
    let objective = get(learner, "learner", "objective")?;
    let name = get(objective, "learner.objective", "name")?
        .as_str()
        .ok_or_else(|| malformed("learner.objective.name", "expected a string"))?;
    let info = objective_info(name)?;

    let booster = get(learner, "learner", "gradient_booster")?;
    match booster.get("name").and_then(Value::as_str) {
        Some("gbtree") | None => {}
        Some(other) => {
            return Err(unsupported(format!("booster `{other}`; only gbtree is supported")));
        }
    }
    let mp = "learner.gradient_booster.model";
    let model = get(booster, "learner.gradient_booster", "model")?;
    let trees_v = array(At { v: get(model, mp, "trees")?, path: &join(mp, "trees") })?;
    if trees_v.is_empty() {
        return Err(malformed(&join(mp, "trees"), "no tree"));
    }
    let tree_info = match model.get("tree_info") {
        Some(v) => ints(At { v, path: &join(mp, "tree_info") })?,
        None => vec![0; trees_v.len()],
    };
    if tree_info.len() != trees_v.len() {
        return Err(malformed(
            &join(mp, "tree_info"),
            format!("{} entries for {} trees", tree_info.len(), trees_v.len()),
        ));
    }

    let (n_outputs, task) = match (info.classification, info.post) {
        (true, PostProcessing::Softmax) => {
            if num_class < 2 {
                return Err(malformed(&join(lp, "num_class"), format!("{name} with num_class {num_class}")));
            }
            (num_class, Task::Classification { classes: (0..num_class).map(|c| c as f64).collect() })
        }
        (true, _) => (1, Task::Classification { classes: vec![0.0, 1.0] }),
        (false, _) => (1, Task::Regression),
    };
    let base_score = match base.len() {
        1 => vec![(info.link)(base[0])?; n_outputs],
        k if k == n_outputs => base.iter().map(|b| (info.link)(*b)).collect::<Result<Vec<_>>>()?,
        k => {
            return Err(malformed(&join(lp, "base_score"), format!("{k} values for {n_outputs} outputs")));
        }
    };

    let mut trees = Vec::with_capacity(trees_v.len());
    for (i, (tree, class)) in trees_v.iter().zip(&tree_info).enumerate() {
        let path = format!("{mp}.trees[{i}]");
        let output = usize::try_from(*class).ok().filter(|c| *c < n_outputs).ok_or_else(|| {
            malformed(&format!("{mp}.tree_info[{i}]"), format!("class {class} of {n_outputs} outputs"))
        })?;
        trees.push(read_tree(tree, &path, output)?);
    }
    let ensemble = TreeEnsemble {
        trees,
        n_features,
        n_outputs,
        rule: SplitRule::Less,
        precision: Precision::F32,
        base_score,
        scale: 1.0,
        post: info.post,
        task,
    };
    ensemble.validate().map_err(|e| match e {
        TreeError::InvalidEnsemble(detail) => malformed(mp, detail),
        other => other,
    })?;
    Ok(ensemble)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn doc(objective: &str, base: &str, trees: &str, tree_info: &str) -> String {
        format!(
            r#"{{"learner": {{"learner_model_param": {{"base_score": "{base}", "num_class": "0", "num_feature": "2"}},
              "objective": {{"name": "{objective}"}},
              "gradient_booster": {{"name": "gbtree", "model": {{"trees": {trees}, "tree_info": {tree_info}}}}}}}}}"#
        )
    }

    const STUMP: &str = r#"[{"left_children": [1, -1, -1], "right_children": [2, -1, -1],
        "split_indices": [1, 0, 0], "split_conditions": [0.5, -0.25, 0.75], "split_type": [0, 0, 0],
        "tree_param": {"size_leaf_vector": "1"}}]"#;

    #[test]
    fn reads_a_stump_with_the_less_rule() {
        let e = ensemble_from_xgboost_json(&doc("reg:squarederror", "5E-1", STUMP, "[0]")).unwrap();
        assert_eq!(e.rule, SplitRule::Less);
        assert_eq!(e.scores_row(&[0.0, 0.5]).unwrap(), vec![1.25]);
        assert_eq!(e.scores_row(&[0.0, 0.4]).unwrap(), vec![0.25]);
        let e = ensemble_from_xgboost_json(&doc("binary:logistic", "[5E-1]", STUMP, "[0]")).unwrap();
        assert_eq!(e.base_score, vec![0.0]);
        assert_eq!(e.post, PostProcessing::Sigmoid);
    }

    #[test]
    fn malformed_documents_are_typed_errors() {
        let cases = [
            "not json".to_string(),
            "{}".to_string(),
            doc("reg:squarederror", "abc", STUMP, "[0]"),
            doc("reg:squarederror", "5E-1", STUMP, "[0, 0]"),
            doc("reg:squarederror", "5E-1", STUMP, "[3]"),
            doc("reg:squarederror", "5E-1", &STUMP.replace("[1, -1, -1]", "[0, -1, -1]"), "[0]"),
            doc("reg:squarederror", "5E-1", &STUMP.replace("[1, -1, -1]", "[7, -1, -1]"), "[0]"),
            doc("reg:squarederror", "5E-1", &STUMP.replace("[2, -1, -1]", "[2, -1]"), "[0]"),
            doc("reg:squarederror", "5E-1", &STUMP.replace("[1, 0, 0]", "[9, 0, 0]"), "[0]"),
            doc("reg:squarederror", "5E-1", &STUMP.replace("[0.5, -0.25", "[\"x\", -0.25"), "[0]"),
            doc("binary:logistic", "1.5", STUMP, "[0]"),
        ];
        for (i, text) in cases.iter().enumerate() {
            let err = ensemble_from_xgboost_json(text).unwrap_err();
            assert!(matches!(err, TreeError::XgboostFormat { .. }), "case {i}: {err}");
        }
    }

    #[test]
    fn unsupported_features_are_named() {
        let err = ensemble_from_xgboost_json(&doc("rank:pairwise", "5E-1", STUMP, "[0]")).unwrap_err();
        assert!(matches!(err, TreeError::XgboostUnsupported(ref m) if m.contains("rank:pairwise")));
        let cat = STUMP.replace("\"split_type\": [0, 0, 0]", "\"split_type\": [1, 0, 0]");
        let err = ensemble_from_xgboost_json(&doc("reg:squarederror", "5E-1", &cat, "[0]")).unwrap_err();
        assert!(matches!(err, TreeError::XgboostUnsupported(_)));
    }

    #[test]
    fn pruned_nodes_are_dropped() {
        // Node 3 is left over from pruning: unreachable, ignored.
        let trees = r#"[{"left_children": [1, -1, -1, -1], "right_children": [2, -1, -1, -1],
            "split_indices": [0, 0, 0, 0], "split_conditions": [0.0, 1.0, 2.0, 3.0]}]"#;
        let e = ensemble_from_xgboost_json(&doc("reg:squarederror", "0", trees, "[0]")).unwrap();
        assert_eq!(e.trees[0].nodes.len(), 3);
    }
}
