//! ONNX-ML tree ensembles (`ai.onnx.ml` `TreeEnsembleClassifier` / `TreeEnsembleRegressor`,
//! as skl2onnx writes scikit-learn's trees and forests and onnxmltools writes LightGBM and
//! XGBoost models), read from the protobuf into a [`TreeEnsemble`].
//!
//! # What is accepted
//!
//! The graph holds exactly one tree ensemble node. Its input is the graph's single input,
//! possibly through `Cast` (to float or double) and `Identity` nodes. Its outputs may pass
//! through output-formatting nodes only: `Identity`, `Cast`, `ZipMap`, and `Mul` by a
//! constant tensor of ones (onnxmltools' LightGBM wrapper). Any other node, in any domain, is
//! refused naming it: fheml replaces the whole graph with the ensemble, so a node it does
//! not understand would otherwise be silently dropped.
//!
//! Semantics follow the ONNX operator specification and its reference implementation
//! (`onnx.reference.ops.aionnxml`):
//!
//! - A tree's root is its first node in attribute order; `nodes_truenodeids` and
//!   `nodes_falsenodeids` name nodes of the same tree.
//! - `BRANCH_LEQ`, `BRANCH_LT`, `BRANCH_GTE` and `BRANCH_GT` are read; the ensemble keeps one
//!   rule. When every split is `BRANCH_LT` or `BRANCH_GTE` (XGBoost) it is `x < t`; otherwise
//!   `x <= t`, and `x < t` becomes `x <= t'` with `t'` the largest float below `t` in the
//!   precision the graph compares in. The `GT`/`GTE` modes swap the children.
//!   `BRANCH_EQ`, `BRANCH_NEQ` and any other mode are refused by name.
//! - Splits compare in `f32` when the input reaches the ensemble as float32 at any point (the
//!   usual `FloatTensorType` input), in `f64` only when the whole path is double.
//! - `nodes_missing_value_tracks_true` only matters for NaN inputs, which fheml refuses
//!   before evaluating, so it is read and ignored.
//! - Classifier, more than one distinct class id: one output per class, `base_values` added;
//!   `post_transform` `NONE` gives [`PostProcessing::Argmax`], `SOFTMAX` gives
//!   [`PostProcessing::Softmax`]. A leaf that weighs several classes (scikit-learn trees and
//!   forests) becomes one copy of its tree per class, each leaf adding its weight for that
//!   class, as fheml's own soft-voting forests do.
//! - Classifier, two labels and every weight on class id 0 (the ONNX "binary" case): one
//!   score `s`. `NONE` means probabilities `[1 - s, s]`, so the label is the second class
//!   when `s > 0.5`: [`PostProcessing::Sign`] of `s - 0.5` (class probabilities are not
//!   kept). `LOGISTIC` means `[σ(-s), σ(s)]`: [`PostProcessing::Sigmoid`] of `s`. `SOFTMAX`
//!   means `softmax([-s, s])`, which is `σ(2s)`: Sigmoid of the doubled score.
//! - Regressor: one target (`n_targets` 1), `aggregate_function` `SUM` or `AVERAGE` (the sum
//!   divided by the number of trees), then `base_values`; `post_transform` `NONE`.
//!
//! Refused by name: other `post_transform` values (`PROBIT`, `SOFTMAX_ZERO`, `LOGISTIC`
//! with several classes), `MIN`/`MAX` aggregation, several regression targets, string class
//! labels that are not numbers, unknown attributes, and the ONNX-ML opset 5 `TreeEnsemble`
//! operator. The opset 3 tensor forms (`nodes_values_as_tensor`, `base_values_as_tensor`,
//! `class_weights_as_tensor`, `target_weights_as_tensor`, `nodes_hitrates_as_tensor`, in
//! float or double) are read like the float lists.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use fheml_circuits::{PostProcessing, Task};
use onnx_ir::{AttributeProto, GraphProto, Message, ModelProto, NodeProto, TensorProto};

use crate::ensemble::{Precision, SplitRule, Tree, TreeEnsemble, TreeNode};
use crate::error::{Result, TreeError};
use crate::params::TreeModelKind;

/// The largest ONNX file read (the protobuf is decoded whole in memory).
pub const MAX_ONNX_ML_BYTES: u64 = 256 << 20;
/// The largest feature index a split may read: the input quantizers and the client's
/// encoding are per feature, so an absurd index from a crafted file must not size them.
pub const MAX_FEATURES: usize = 1 << 20;

const ML_DOMAIN: &str = "ai.onnx.ml";
const CLASSIFIER: &str = "TreeEnsembleClassifier";
const REGRESSOR: &str = "TreeEnsembleRegressor";
/// ONNX `TensorProto.DataType` values.
const FLOAT: i32 = 1;
const DOUBLE: i32 = 11;

fn malformed(detail: impl Into<String>) -> TreeError {
    TreeError::OnnxMlFormat(crate::error::printable(&detail.into(), 600))
}

fn unsupported(detail: impl Into<String>) -> TreeError {
    TreeError::OnnxMlUnsupported(crate::error::printable(&detail.into(), 600))
}

fn display_name(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() { format!("#{index} ({})", node.op_type) } else { node.name.clone() }
}

/// Whether any node of the model is in the `ai.onnx.ml` domain: the CLI sends those models
/// here and the others to the neural-network importer.
pub fn uses_onnx_ml_domain(bytes: &[u8]) -> Result<bool> {
    let model = parse(bytes)?;
    Ok(model.graph.as_ref().is_some_and(|g| g.node.iter().any(|n| n.domain == ML_DOMAIN)))
}

fn parse(bytes: &[u8]) -> Result<ModelProto> {
    if bytes.len() as u64 > MAX_ONNX_ML_BYTES {
        return Err(malformed(format!("{} bytes exceeds the limit of {MAX_ONNX_ML_BYTES}", bytes.len())));
    }
    ModelProto::parse_from_bytes(bytes).map_err(|e| malformed(format!("not an ONNX protobuf: {e}")))
}

/// Reads an ONNX file, refusing one larger than [`MAX_ONNX_ML_BYTES`] before reading it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    let io = |source| TreeError::Io { path: path.display().to_string(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_ONNX_ML_BYTES {
        return Err(malformed(format!("{} is {size} bytes, over the limit of {MAX_ONNX_ML_BYTES}", path.display())));
    }
    std::fs::read(path).map_err(io)
}

/// The values of a constant tensor as `f64` (float, double, or integer data), for checking
/// that a wrapper `Mul` multiplies by ones.
fn tensor_values(t: &TensorProto) -> Option<Vec<f64>> {
    if !t.raw_data.is_empty() {
        let size = if t.data_type == DOUBLE { 8 } else { 4 };
        if !t.raw_data.len().is_multiple_of(size) {
            return None;
        }
        return match t.data_type {
            FLOAT => Some(
                t.raw_data.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
            ),
            DOUBLE => Some(
                t.raw_data
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
            _ => None,
        };
    }
    match t.data_type {
        FLOAT => Some(t.float_data.iter().map(|v| f64::from(*v)).collect()),
        DOUBLE => Some(t.double_data.clone()),
        _ => None,
    }
}

/// The tree ensemble node and the float precision its input arrives in, after checking
/// every other node of the graph (see the module documentation).
fn locate_ensemble(graph: &GraphProto) -> Result<(usize, Precision, Option<usize>)> {
    let initializers: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let inputs: Vec<_> = graph.input.iter().filter(|v| !initializers.contains_key(v.name.as_str())).collect();
    let [input] = inputs.as_slice() else {
        return Err(malformed(format!("the graph needs exactly one input, it has {}", inputs.len())));
    };
    let input_type = input.type_.tensor_type();
    let elem = input_type.elem_type;
    if elem != FLOAT && elem != DOUBLE {
        return Err(unsupported(format!(
            "graph input `{}` has element type {elem}; a tree ensemble reads float (1) or double (11)",
            input.name
        )));
    }
    // The feature count, when the input shape says it: [batch, features].
    let declared_features = match input_type.shape.dim.as_slice() {
        [_, features] if features.has_dim_value() && features.dim_value() > 0 => {
            usize::try_from(features.dim_value()).ok()
        }
        _ => None,
    };

    let ensembles: Vec<usize> = (0..graph.node.len())
        .filter(|&i| {
            graph.node[i].domain == ML_DOMAIN && matches!(graph.node[i].op_type.as_str(), CLASSIFIER | REGRESSOR)
        })
        .collect();
    let ensemble = match ensembles.as_slice() {
        [one] => *one,
        [] => {
            let ml: Vec<String> = graph
                .node
                .iter()
                .filter(|n| n.domain == ML_DOMAIN && n.op_type != "ZipMap")
                .map(|n| n.op_type.clone())
                .collect();
            return Err(unsupported(if ml.is_empty() {
                "the graph has no TreeEnsembleClassifier or TreeEnsembleRegressor".to_string()
            } else {
                format!(
                    "ai.onnx.ml operator `{}`; supported: TreeEnsembleClassifier, TreeEnsembleRegressor \
                     (with ZipMap, Cast, Identity around them)",
                    ml.join("`, `")
                )
            }));
        }
        more => return Err(unsupported(format!("{} tree ensembles in one graph (stacked models)", more.len()))),
    };

    // Walk back from the ensemble's input to the graph input through Cast and Identity.
    let producer: HashMap<&str, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i))).collect();
    let mut input_chain = HashSet::new();
    let mut float32_seen = elem == FLOAT;
    let ensemble_node = &graph.node[ensemble];
    let [x] = ensemble_node.input.as_slice() else {
        return Err(malformed(format!(
            "{} has {} inputs, expected one",
            ensemble_node.op_type,
            ensemble_node.input.len()
        )));
    };
    let mut tensor = x.as_str();
    while tensor != input.name {
        let &i = producer
            .get(tensor)
            .ok_or_else(|| malformed(format!("tensor `{tensor}` is neither computed nor the graph input")))?;
        if !input_chain.insert(i) {
            return Err(malformed("the graph has a cycle"));
        }
        let node = &graph.node[i];
        let name = display_name(node, i);
        match (node.domain.as_str(), node.op_type.as_str()) {
            ("" | "ai.onnx", "Identity") => {}
            ("" | "ai.onnx", "Cast") => {
                let to = node.attribute.iter().find(|a| a.name == "to").map(|a| a.i);
                match to {
                    Some(t) if t == i64::from(FLOAT) => float32_seen = true,
                    Some(t) if t == i64::from(DOUBLE) => {}
                    other => {
                        return Err(unsupported(format!(
                            "`Cast` node `{name}` before the tree ensemble casts to type {other:?}; only float (1) \
                             or double (11) inputs are read"
                        )));
                    }
                }
            }
            (domain, op) => {
                return Err(unsupported(format!(
                    "`{op}` node `{name}` (domain `{domain}`) before the tree ensemble; only Cast and Identity \
                     may stand between the graph input and the ensemble"
                )));
            }
        }
        let [source] = node.input.as_slice() else {
            return Err(malformed(format!("node `{name}` has {} inputs, expected one", node.input.len())));
        };
        tensor = source.as_str();
    }

    // Everything else formats the ensemble's outputs.
    let mut derived: HashSet<&str> = ensemble_node.output.iter().map(String::as_str).collect();
    let mut constants: HashMap<&str, Vec<f64>> = HashMap::new();
    for (name, t) in &initializers {
        if let Some(values) = tensor_values(t) {
            constants.insert(name, values);
        }
    }
    for (i, node) in graph.node.iter().enumerate() {
        if i == ensemble || input_chain.contains(&i) {
            continue;
        }
        let name = display_name(node, i);
        let op = (node.domain.as_str(), node.op_type.as_str());
        if op == ("", "Constant") || op == ("ai.onnx", "Constant") {
            if let Some(t) = node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref())
                && let (Some(out), Some(values)) = (node.output.first(), tensor_values(t))
            {
                constants.insert(out.as_str(), values);
            }
            continue;
        }
        let computed: Vec<&str> = node
            .input
            .iter()
            .map(String::as_str)
            .filter(|n| !n.is_empty() && !constants.contains_key(n) && !initializers.contains_key(n))
            .collect();
        let follows_ensemble = !computed.is_empty() && computed.iter().all(|n| derived.contains(n));
        let formatting = match op {
            ("" | "ai.onnx", "Identity" | "Cast") | (ML_DOMAIN, "ZipMap") => computed.len() == 1,
            ("" | "ai.onnx", "Mul") => {
                computed.len() == 1
                    && node.input.len() == 2
                    && node.input.iter().filter_map(|n| constants.get(n.as_str())).all(|v| v.iter().all(|x| *x == 1.0))
                    && node.input.iter().any(|n| constants.contains_key(n.as_str()))
            }
            _ => false,
        };
        if !(formatting && follows_ensemble) {
            return Err(unsupported(format!(
                "`{}` node `{name}` (domain `{}`) around the tree ensemble; only Cast and Identity before it, and \
                 Identity, Cast, ZipMap and Mul by ones after it are supported",
                node.op_type, node.domain
            )));
        }
        derived.extend(node.output.iter().map(String::as_str));
    }
    let precision = if float32_seen { Precision::F32 } else { Precision::F64 };
    Ok((ensemble, precision, declared_features))
}

/// The attributes of the ensemble node, each read once and checked against the names the
/// operator defines.
struct Attributes<'a> {
    op: &'a str,
    by_name: HashMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attributes<'a> {
    fn new(node: &'a NodeProto, known: &[&str]) -> Result<Self> {
        let mut by_name = HashMap::new();
        for a in &node.attribute {
            let base = a.name.strip_suffix("_as_tensor").unwrap_or(&a.name);
            if !known.contains(&a.name.as_str()) || (base != a.name && !TENSOR_FORMS.contains(&base)) {
                return Err(unsupported(format!("{} attribute `{}`", node.op_type, a.name)));
            }
            if by_name.insert(a.name.as_str(), a).is_some() {
                return Err(malformed(format!("{} attribute `{}` is given twice", node.op_type, a.name)));
            }
        }
        for base in TENSOR_FORMS {
            let tensor = format!("{base}_as_tensor");
            if by_name.contains_key(base) && by_name.contains_key(tensor.as_str()) {
                return Err(malformed(format!("{} has both `{base}` and `{tensor}`", node.op_type)));
            }
        }
        Ok(Self { op: node.op_type.as_str(), by_name })
    }

    fn ints(&self, name: &str) -> &'a [i64] {
        self.by_name.get(name).map_or(&[], |a| a.ints.as_slice())
    }

    /// A list of numbers, from the float-list attribute `name` or from its tensor form
    /// `name_as_tensor` (float or double, ONNX-ML opset 3).
    fn floats(&self, name: &str) -> Result<Vec<f64>> {
        if let Some(a) = self.by_name.get(format!("{name}_as_tensor").as_str()) {
            let t = a.t.as_ref().ok_or_else(|| malformed(format!("{} `{name}_as_tensor` holds no tensor", self.op)))?;
            if !t.external_data.is_empty() {
                return Err(unsupported(format!("{} `{name}_as_tensor` stored in an external file", self.op)));
            }
            return tensor_values(t).ok_or_else(|| {
                unsupported(format!(
                    "{} `{name}_as_tensor` of element type {}; float (1) or double (11) is read",
                    self.op, t.data_type
                ))
            });
        }
        Ok(self.by_name.get(name).map_or(Vec::new(), |a| a.floats.iter().map(|v| f64::from(*v)).collect()))
    }

    fn int(&self, name: &str) -> Option<i64> {
        self.by_name.get(name).map(|a| a.i)
    }

    fn string(&self, name: &str) -> Result<Option<String>> {
        self.by_name
            .get(name)
            .map(|a| {
                String::from_utf8(a.s.to_vec()).map_err(|_| malformed(format!("{} `{name}` is not UTF-8", self.op)))
            })
            .transpose()
    }

    fn strings(&self, name: &str) -> Result<Vec<String>> {
        self.by_name.get(name).map_or(Ok(Vec::new()), |a| {
            a.strings
                .iter()
                .map(|s| {
                    String::from_utf8(s.to_vec()).map_err(|_| malformed(format!("{} `{name}` is not UTF-8", self.op)))
                })
                .collect()
        })
    }
}

/// The attributes ONNX-ML opset 3 also allows as a tensor (`<name>_as_tensor`, double).
const TENSOR_FORMS: [&str; 5] = ["nodes_values", "nodes_hitrates", "base_values", "class_weights", "target_weights"];

const NODE_ATTRIBUTES: [&str; 13] = [
    "nodes_values_as_tensor",
    "nodes_hitrates_as_tensor",
    "base_values_as_tensor",
    "nodes_treeids",
    "nodes_nodeids",
    "nodes_featureids",
    "nodes_values",
    "nodes_modes",
    "nodes_truenodeids",
    "nodes_falsenodeids",
    "nodes_missing_value_tracks_true",
    "nodes_hitrates",
    "post_transform",
];

/// One weight a leaf adds: `(tree id, node id) -> (output, weight)`.
type LeafWeights = HashMap<(i64, i64), Vec<(usize, f64)>>;

/// The comparison a split makes, from `nodes_modes`.
#[derive(Clone, Copy)]
enum Mode {
    Leaf,
    Leq,
    Lt,
    Gte,
    Gt,
}

/// The largest float below `t` in the comparison precision: `x < t` is `x <= below(t)`.
fn below(t: f64, precision: Precision) -> f64 {
    match precision {
        Precision::F32 => f64::from((t as f32).next_down()),
        Precision::F64 => t.next_down(),
    }
}

/// Reads the trees' structure and the leaves' weights into trees of single-output leaves.
fn read_trees(attrs: &Attributes, weights: &LeafWeights, precision: Precision, n_outputs: usize) -> Result<ReadTrees> {
    let op = attrs.op;
    let tree_ids = attrs.ints("nodes_treeids");
    let node_ids = attrs.ints("nodes_nodeids");
    let features = attrs.ints("nodes_featureids");
    let values = attrs.floats("nodes_values")?;
    let true_ids = attrs.ints("nodes_truenodeids");
    let false_ids = attrs.ints("nodes_falsenodeids");
    let modes = attrs.strings("nodes_modes")?;
    let n = tree_ids.len();
    if n == 0 {
        return Err(malformed(format!("{op} has no node")));
    }
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_values", values.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_modes", modes.len()),
    ] {
        if len != n {
            return Err(malformed(format!("{op} `{name}` has {len} entries, `nodes_treeids` {n}")));
        }
    }
    let modes = modes
        .iter()
        .enumerate()
        .map(|(i, m)| match m.as_str() {
            "LEAF" => Ok(Mode::Leaf),
            "BRANCH_LEQ" => Ok(Mode::Leq),
            "BRANCH_LT" => Ok(Mode::Lt),
            "BRANCH_GTE" => Ok(Mode::Gte),
            "BRANCH_GT" => Ok(Mode::Gt),
            other => Err(unsupported(format!(
                "{op} node mode `{other}` (tree {}, node {}); supported: BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, \
                 BRANCH_GT, LEAF",
                tree_ids[i], node_ids[i]
            ))),
        })
        .collect::<Result<Vec<_>>>()?;

    // Trees in order of first appearance; a tree's root is its first node (as the reference).
    let mut order: Vec<(i64, usize)> = Vec::new();
    let mut seen_trees = HashSet::new();
    let mut index: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
    for i in 0..n {
        if seen_trees.insert(tree_ids[i]) {
            order.push((tree_ids[i], i));
        }
        if index.insert((tree_ids[i], node_ids[i]), i).is_some() {
            return Err(malformed(format!("{op}: tree {} has node id {} twice", tree_ids[i], node_ids[i])));
        }
    }
    for key in weights.keys() {
        match index.get(key) {
            Some(&i) if matches!(modes[i], Mode::Leaf) => {}
            Some(_) => return Err(malformed(format!("{op}: weights for tree {} node {}, not a leaf", key.0, key.1))),
            None => {
                return Err(malformed(format!(
                    "{op}: weights for tree {} node {}, which does not exist",
                    key.0, key.1
                )));
            }
        }
    }
    // XGBoost's `x < t` (its thresholds are feature values) stays as it is, so that
    // quantization can keep `x == t` on the right (see `crate::quantize`); mixed modes
    // become `x <= t'`.
    let rule = if modes.iter().all(|m| matches!(m, Mode::Lt | Mode::Gte | Mode::Leaf))
        && modes.iter().any(|m| !matches!(m, Mode::Leaf))
    {
        SplitRule::Less
    } else {
        SplitRule::LessOrEqual
    };
    let mut n_features = 0usize;
    let mut trees = Vec::new();
    for &(tree_id, root) in &order {
        // Renumber the reachable nodes in visiting order; every node is visited once.
        let mut new_id: HashMap<usize, usize> = HashMap::new();
        let mut visit = vec![root];
        let mut reached = Vec::new();
        while let Some(i) = visit.pop() {
            if new_id.insert(i, reached.len()).is_some() {
                return Err(malformed(format!("{op}: tree {tree_id} node {} is reached twice", node_ids[i])));
            }
            reached.push(i);
            if !matches!(modes[i], Mode::Leaf) {
                for child in [false_ids[i], true_ids[i]] {
                    let &c = index.get(&(tree_id, child)).ok_or_else(|| {
                        malformed(format!(
                            "{op}: tree {tree_id} node {} has child {child}, not in the tree",
                            node_ids[i]
                        ))
                    })?;
                    visit.push(c);
                }
            }
        }
        // The outputs this tree's leaves add to; one copy of the tree per output.
        let mut outputs: Vec<usize> = reached
            .iter()
            .filter_map(|&i| weights.get(&(tree_id, node_ids[i])))
            .flat_map(|w| w.iter().map(|(o, _)| *o))
            .collect();
        outputs.sort_unstable();
        outputs.dedup();
        for &output in &outputs {
            if output >= n_outputs {
                return Err(malformed(format!("{op}: tree {tree_id} adds to output {output} of {n_outputs}")));
            }
            let nodes = reached
                .iter()
                .map(|&i| {
                    let mut split = |threshold: f64, left: i64, right: i64| -> Result<TreeNode> {
                        let feature =
                            usize::try_from(features[i]).ok().filter(|f| *f < MAX_FEATURES).ok_or_else(|| {
                                malformed(format!(
                                    "{op}: tree {tree_id} node {} reads feature {}",
                                    node_ids[i], features[i]
                                ))
                            })?;
                        n_features = n_features.max(feature + 1);
                        if !threshold.is_finite() {
                            return Err(malformed(format!(
                                "{op}: tree {tree_id} node {} has threshold {threshold}",
                                node_ids[i]
                            )));
                        }
                        Ok(TreeNode::Split {
                            feature,
                            threshold,
                            left: new_id[&index[&(tree_id, left)]],
                            right: new_id[&index[&(tree_id, right)]],
                        })
                    };
                    let t = values[i];
                    let (yes, no) = (true_ids[i], false_ids[i]);
                    match modes[i] {
                        Mode::Leaf => {
                            let value = weights
                                .get(&(tree_id, node_ids[i]))
                                .map_or(0.0, |w| w.iter().filter(|(o, _)| *o == output).map(|(_, v)| v).sum());
                            Ok(TreeNode::Leaf { output, value })
                        }
                        Mode::Lt if rule == SplitRule::Less => split(t, yes, no),
                        Mode::Gte if rule == SplitRule::Less => split(t, no, yes),
                        Mode::Leq => split(t, yes, no),
                        Mode::Lt => split(below(t, precision), yes, no),
                        // x > t is not (x <= t); x >= t is not (x < t).
                        Mode::Gt => split(t, no, yes),
                        Mode::Gte => split(below(t, precision), no, yes),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            trees.push(Tree { nodes });
        }
    }
    Ok(ReadTrees { trees, n_trees: order.len(), n_features, rule })
}

/// What [`read_trees`] reads.
struct ReadTrees {
    /// Single-output trees (one copy of an ONNX tree per output its leaves add to).
    trees: Vec<Tree>,
    /// Number of ONNX trees.
    n_trees: usize,
    /// One more than the largest feature index a split reads.
    n_features: usize,
    /// `Less` when every split is `BRANCH_LT` or `BRANCH_GTE`, else `LessOrEqual`.
    rule: SplitRule,
}

/// Leaf weights from the `class_*` or `target_*` attributes.
fn leaf_weights(attrs: &Attributes, prefix: &str, map_output: impl Fn(i64) -> Result<usize>) -> Result<LeafWeights> {
    let op = attrs.op;
    let trees = attrs.ints(&format!("{prefix}_treeids"));
    let nodes = attrs.ints(&format!("{prefix}_nodeids"));
    let ids = attrs.ints(&format!("{prefix}_ids"));
    let weights = attrs.floats(&format!("{prefix}_weights"))?;
    if nodes.len() != trees.len() || ids.len() != trees.len() || weights.len() != trees.len() {
        return Err(malformed(format!(
            "{op} `{prefix}_*` attributes differ in length: treeids {}, nodeids {}, ids {}, weights {}",
            trees.len(),
            nodes.len(),
            ids.len(),
            weights.len()
        )));
    }
    let mut out: LeafWeights = HashMap::new();
    for i in 0..trees.len() {
        let w = weights[i];
        if !w.is_finite() {
            return Err(malformed(format!("{op}: leaf weight {w} (tree {}, node {})", trees[i], nodes[i])));
        }
        out.entry((trees[i], nodes[i])).or_default().push((map_output(ids[i])?, w));
    }
    Ok(out)
}

fn base_values(attrs: &Attributes, n: usize) -> Result<Vec<f64>> {
    let base = attrs.floats("base_values")?;
    match base.len() {
        0 => Ok(vec![0.0; n]),
        k if k == n => Ok(base),
        k => Err(malformed(format!("{} has {k} base_values for {n} outputs", attrs.op))),
    }
}

fn class_labels(attrs: &Attributes) -> Result<Vec<f64>> {
    let ints = attrs.ints("classlabels_int64s");
    let strings = attrs.strings("classlabels_strings")?;
    let labels: Vec<f64> = match (ints.is_empty(), strings.is_empty()) {
        (false, true) => {
            // Labels travel as f64; beyond 2^53 two labels could merge.
            if let Some(v) = ints.iter().find(|v| v.unsigned_abs() > 1 << 53) {
                return Err(unsupported(format!("class label {v}: beyond 2^53, not exact as a float")));
            }
            ints.iter().map(|v| *v as f64).collect()
        }
        (true, false) => strings
            .iter()
            .map(|s| {
                s.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                    unsupported(format!("string class label `{s}`: fheml's labels are numbers; relabel the classes"))
                })
            })
            .collect::<Result<_>>()?,
        (true, true) => return Err(malformed("TreeEnsembleClassifier has no class labels")),
        (false, false) => return Err(malformed("TreeEnsembleClassifier has both integer and string class labels")),
    };
    let mut sorted = labels.clone();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    if sorted.len() != labels.len() {
        return Err(malformed(format!("repeated class labels {labels:?}")));
    }
    if labels.len() < 2 {
        return Err(unsupported(format!("a classifier with {} class label(s)", labels.len())));
    }
    Ok(labels)
}

fn classifier(attrs: &Attributes, precision: Precision) -> Result<(TreeEnsemble, usize)> {
    let classes = class_labels(attrs)?;
    let k = classes.len();
    let post = attrs.string("post_transform")?.unwrap_or_else(|| "NONE".into());
    let class_ids: HashSet<i64> = attrs.ints("class_ids").iter().copied().collect();
    // The ONNX "binary" case: two labels, every weight on one class id.
    let binary = class_ids.len() == 1 && k == 2;
    if class_ids.len() == 1 && !binary {
        return Err(unsupported(format!("every class weight on one class id with {k} class labels")));
    }
    if binary && !class_ids.contains(&0) {
        // The reference and onnxruntime read this case differently.
        return Err(unsupported("a binary classifier whose weights are all on class id 1 (expected class id 0)"));
    }
    let n_outputs = if binary { 1 } else { k };
    let weights = leaf_weights(attrs, "class", |id| {
        usize::try_from(id).ok().filter(|c| *c < k).ok_or_else(|| malformed(format!("class id {id} of {k} classes")))
    })?;
    let base = if binary {
        // The reference fills every column with base_values, then keeps column 0.
        let b = attrs.floats("base_values")?;
        if b.len() > 2 {
            return Err(malformed(format!("{} base_values for a binary classifier", b.len())));
        }
        vec![b.first().copied().unwrap_or(0.0)]
    } else {
        base_values(attrs, k)?
    };
    let ReadTrees { trees, n_trees, n_features, rule } = read_trees(attrs, &weights, precision, n_outputs)?;
    let all_positive = weights.values().flatten().all(|(_, w)| *w >= 0.0);
    let (post, base_score, scale) = match (post.as_str(), binary) {
        ("NONE", false) => (PostProcessing::Argmax, base, 1.0),
        ("SOFTMAX", false) => (PostProcessing::Softmax, base, 1.0),
        ("NONE", true) if all_positive => (PostProcessing::Sign, vec![base[0] - 0.5], 1.0),
        ("NONE", true) => {
            return Err(unsupported(
                "a binary classifier with post_transform NONE and negative weights (onnxruntime and the ONNX \
                 reference disagree on its probabilities)",
            ));
        }
        ("LOGISTIC", true) => (PostProcessing::Sigmoid, base, 1.0),
        ("SOFTMAX", true) => (PostProcessing::Sigmoid, vec![2.0 * base[0]], 2.0),
        (other, _) => {
            return Err(unsupported(format!(
                "TreeEnsembleClassifier post_transform `{other}` with {k} classes{}; supported: NONE, SOFTMAX, \
                 LOGISTIC (binary only)",
                if binary { " (binary)" } else { "" }
            )));
        }
    };
    let ensemble = TreeEnsemble {
        trees,
        n_features,
        n_outputs,
        rule,
        precision,
        base_score,
        scale,
        post,
        task: Task::Classification { classes },
    };
    Ok((ensemble, n_trees))
}

fn regressor(attrs: &Attributes, precision: Precision) -> Result<(TreeEnsemble, usize)> {
    let targets = attrs.int("n_targets").unwrap_or(1);
    if targets != 1 {
        return Err(unsupported(format!("TreeEnsembleRegressor with n_targets {targets}; fheml reads one target")));
    }
    if let Some(post) = attrs.string("post_transform")?
        && post != "NONE"
    {
        return Err(unsupported(format!("TreeEnsembleRegressor post_transform `{post}`; supported: NONE")));
    }
    let aggregate = attrs.string("aggregate_function")?.unwrap_or_else(|| "SUM".into());
    let weights = leaf_weights(attrs, "target", |id| {
        if id == 0 { Ok(0) } else { Err(malformed(format!("target id {id} of one target"))) }
    })?;
    let base_score = base_values(attrs, 1)?;
    let ReadTrees { mut trees, n_trees, n_features, rule } = read_trees(attrs, &weights, precision, 1)?;
    if trees.is_empty() {
        trees.push(Tree::leaf(0, 0.0));
    }
    let scale = match aggregate.as_str() {
        "SUM" => 1.0,
        // The reference divides by the number of distinct tree ids.
        "AVERAGE" => 1.0 / n_trees as f64,
        other => {
            return Err(unsupported(format!(
                "TreeEnsembleRegressor aggregate_function `{other}`; supported: SUM, AVERAGE"
            )));
        }
    };
    let ensemble = TreeEnsemble {
        trees,
        n_features,
        n_outputs: 1,
        rule,
        precision,
        base_score,
        scale,
        post: PostProcessing::Identity,
        task: Task::Regression,
    };
    Ok((ensemble, n_trees))
}

/// Reads an ONNX model whose graph is a tree ensemble of the `ai.onnx.ml` domain, and
/// says which kind of model it is (one tree, a forest, or boosting: base values, a
/// logistic/softmax link, or summed regression trees).
pub fn ensemble_from_onnx_ml(bytes: &[u8]) -> Result<(TreeEnsemble, TreeModelKind)> {
    let model = parse(bytes)?;
    let graph = model.graph.as_ref().ok_or_else(|| malformed("the model has no graph"))?;
    let (index, precision, declared_features) = locate_ensemble(graph)?;
    let node = &graph.node[index];
    let (mut ensemble, n_trees) = match node.op_type.as_str() {
        CLASSIFIER => {
            let mut known = NODE_ATTRIBUTES.to_vec();
            known.extend([
                "base_values",
                "class_ids",
                "class_weights_as_tensor",
                "class_nodeids",
                "class_treeids",
                "class_weights",
                "classlabels_int64s",
                "classlabels_strings",
            ]);
            classifier(&Attributes::new(node, &known)?, precision)?
        }
        _ => {
            let mut known = NODE_ATTRIBUTES.to_vec();
            known.extend([
                "aggregate_function",
                "base_values",
                "n_targets",
                "target_ids",
                "target_nodeids",
                "target_treeids",
                "target_weights",
                "target_weights_as_tensor",
            ]);
            regressor(&Attributes::new(node, &known)?, precision)?
        }
    };
    if ensemble.trees.is_empty() {
        // No leaf carries a weight: the scores are the base values.
        ensemble.trees.push(Tree::leaf(0, 0.0));
    }
    ensemble.n_features = match declared_features {
        Some(f) if f >= ensemble.n_features && f <= MAX_FEATURES => f,
        Some(f) => {
            return Err(malformed(format!(
                "the graph input has {f} features, the trees read feature {}",
                ensemble.n_features.saturating_sub(1)
            )));
        }
        None => ensemble.n_features.max(1),
    };
    ensemble.validate().map_err(|e| match e {
        TreeError::InvalidEnsemble(detail) => malformed(detail),
        other => other,
    })?;
    // Boosting: a link function or base values. Summed regression trees without a base value
    // may be either a forest (skl2onnx divides the leaves by the number of trees) or boosting
    // (LightGBM keeps its initial score in the first tree); only the producer tells them
    // apart, and only the model's name depends on it: onnxmltools converts the boosting
    // libraries.
    let boosted = !matches!(ensemble.post, PostProcessing::Argmax | PostProcessing::Identity | PostProcessing::Sign)
        || ensemble.base_score.iter().any(|b| *b != 0.0 && ensemble.post != PostProcessing::Sign)
        || (ensemble.task == Task::Regression && model.producer_name.eq_ignore_ascii_case("OnnxMLTools"));
    let kind = if boosted {
        TreeModelKind::Gbdt
    } else if n_trees == 1 {
        TreeModelKind::Tree
    } else {
        TreeModelKind::Forest
    };
    Ok((ensemble, kind))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ensemble::TreeNode;

    /// A scikit-learn decision tree on iris (4 features, 3 classes), through skl2onnx.
    const TREE: &[u8] = include_bytes!("../tests/fixtures/onnx_ml/sklearn_decision_tree_iris.onnx");
    /// scikit-learn gradient boosting on diabetes (10 features), through skl2onnx.
    const REGRESSOR: &[u8] =
        include_bytes!("../tests/fixtures/onnx_ml/sklearn_gradient_boosting_regressor_diabetes.onnx");

    fn edited(bytes: &[u8], edit: impl FnOnce(&mut GraphProto)) -> Vec<u8> {
        let mut model = ModelProto::parse_from_bytes(bytes).unwrap();
        edit(model.graph.mut_or_insert_default());
        model.write_to_bytes().unwrap()
    }

    fn ensemble_node(g: &mut GraphProto) -> &mut NodeProto {
        g.node.iter_mut().find(|n| n.domain == ML_DOMAIN && n.op_type.starts_with("TreeEnsemble")).unwrap()
    }

    fn attr<'a>(g: &'a mut GraphProto, name: &str) -> &'a mut AttributeProto {
        ensemble_node(g).attribute.iter_mut().find(|a| a.name == name).unwrap()
    }

    fn refused(bytes: &[u8]) -> TreeError {
        match ensemble_from_onnx_ml(bytes) {
            Err(e) => e,
            Ok((e, _)) => panic!("accepted: {} trees", e.trees.len()),
        }
    }

    fn assert_unsupported(bytes: &[u8], needle: &str) {
        let err = refused(bytes);
        assert!(matches!(err, TreeError::OnnxMlUnsupported(_)), "{err}");
        assert!(err.to_string().contains(needle), "`{err}` lacks `{needle}`");
    }

    fn assert_malformed(bytes: &[u8], needle: &str) {
        let err = refused(bytes);
        assert!(matches!(err, TreeError::OnnxMlFormat(_)), "{err}");
        assert!(err.to_string().contains(needle), "`{err}` lacks `{needle}`");
    }

    /// Rows on a grid that includes every threshold of the ensemble exactly.
    fn probe_rows(e: &TreeEnsemble) -> Vec<Vec<f64>> {
        let mut rows = vec![vec![0.0; e.n_features]];
        for tree in &e.trees {
            for node in &tree.nodes {
                if let TreeNode::Split { feature, threshold, .. } = node {
                    for v in [*threshold, threshold.next_up(), threshold.next_down(), threshold + 0.5] {
                        let mut row = vec![*threshold; e.n_features];
                        row[*feature] = v;
                        rows.push(row);
                    }
                }
            }
        }
        rows
    }

    #[test]
    fn a_scikit_learn_tree_reads_as_one_tree_per_class() {
        let (e, kind) = ensemble_from_onnx_ml(TREE).unwrap();
        assert_eq!(kind, TreeModelKind::Tree);
        assert_eq!((e.n_features, e.n_outputs, e.trees.len()), (4, 3, 3));
        assert_eq!((e.post, e.precision, e.rule), (PostProcessing::Argmax, Precision::F32, SplitRule::LessOrEqual));
        assert_eq!(e.task, Task::Classification { classes: vec![0.0, 1.0, 2.0] });
        assert!(uses_onnx_ml_domain(TREE).unwrap());
        let (r, kind) = ensemble_from_onnx_ml(REGRESSOR).unwrap();
        assert_eq!((kind, r.n_features, r.post), (TreeModelKind::Gbdt, 10, PostProcessing::Identity));
        assert!((r.base_score[0] - 150.518).abs() < 1e-3, "{:?}", r.base_score);
    }

    #[test]
    fn every_branch_mode_keeps_the_decisions() {
        let (leq, _) = ensemble_from_onnx_ml(TREE).unwrap();
        let rows = probe_rows(&leq);
        let scores = |e: &TreeEnsemble| -> Vec<Vec<f64>> { rows.iter().map(|r| e.scores_row(r).unwrap()).collect() };
        let rewrite = |mode: &str, swap: bool| {
            let bytes = edited(TREE, |g| {
                let modes = attr(g, "nodes_modes");
                for m in &mut modes.strings {
                    if m.as_ref() == b"BRANCH_LEQ" {
                        *m = mode.as_bytes().to_vec().into();
                    }
                }
                if swap {
                    let t = std::mem::take(&mut attr(g, "nodes_truenodeids").ints);
                    let f = std::mem::replace(&mut attr(g, "nodes_falsenodeids").ints, t);
                    attr(g, "nodes_truenodeids").ints = f;
                }
            });
            ensemble_from_onnx_ml(&bytes).unwrap().0
        };
        // x > t with the children swapped is x <= t.
        assert_eq!(scores(&rewrite("BRANCH_GT", true)), scores(&leq));
        // x < t differs from x <= t exactly on the threshold; x >= t swapped is x < t.
        let lt = rewrite("BRANCH_LT", false);
        assert_ne!(scores(&lt), scores(&leq));
        assert_eq!(scores(&rewrite("BRANCH_GTE", true)), scores(&lt));
        let root = |e: &TreeEnsemble| match e.trees[0].nodes[0] {
            TreeNode::Split { threshold, .. } => threshold,
            TreeNode::Leaf { .. } => panic!("a leaf root"),
        };
        // All `x < t` (XGBoost) keeps the rule and the thresholds.
        assert_eq!((lt.rule, root(&lt)), (SplitRule::Less, root(&leq)));
        assert!(!lt.goes_left(root(&leq), root(&lt)) && leq.goes_left(root(&leq), root(&leq)));
        // Mixed with `x <= t`, `x < t` becomes `x <= t'`, t' the float32 just below t.
        let mixed =
            ensemble_from_onnx_ml(&edited(TREE, |g| attr(g, "nodes_modes").strings[0] = b"BRANCH_LT".to_vec().into()))
                .unwrap()
                .0;
        assert_eq!((mixed.rule, root(&mixed)), (SplitRule::LessOrEqual, f64::from((root(&leq) as f32).next_down())));
        // The two differ only on rows holding the root's threshold.
        for r in rows.iter().filter(|r| !r.contains(&root(&leq))) {
            assert_eq!(mixed.scores_row(r).unwrap(), leq.scores_row(r).unwrap());
        }
    }

    #[test]
    fn tensor_forms_read_like_the_float_lists() {
        let (plain, _) = ensemble_from_onnx_ml(REGRESSOR).unwrap();
        let bytes = edited(REGRESSOR, |g| {
            for name in ["nodes_values", "target_weights", "base_values"] {
                let a = attr(g, name);
                let values: Vec<f64> = a.floats.drain(..).map(f64::from).collect();
                a.name = format!("{name}_as_tensor");
                let tensor = TensorProto {
                    data_type: DOUBLE,
                    dims: vec![values.len() as i64],
                    double_data: values,
                    ..Default::default()
                };
                a.t = Some(tensor).into();
                a.type_ = onnx_ir::AttributeType::TENSOR.into();
            }
        });
        let (tensor, _) = ensemble_from_onnx_ml(&bytes).unwrap();
        assert_eq!(tensor, plain);
        // Both forms at once are ambiguous.
        let both = edited(&bytes, |g| {
            let extra = AttributeProto { name: "base_values".into(), floats: vec![1.0], ..Default::default() };
            ensemble_node(g).attribute.push(extra);
        });
        assert_malformed(&both, "both `base_values` and `base_values_as_tensor`");
    }

    #[test]
    fn unsupported_semantics_are_refused_by_name() {
        let set_string = |bytes: &[u8], name: &str, value: &str| {
            edited(bytes, |g| {
                if let Some(a) = ensemble_node(g).attribute.iter_mut().find(|a| a.name == name) {
                    a.s = value.as_bytes().to_vec().into();
                } else {
                    let a =
                        AttributeProto { name: name.into(), s: value.as_bytes().to_vec().into(), ..Default::default() };
                    ensemble_node(g).attribute.push(a);
                }
            })
        };
        assert_unsupported(&set_string(TREE, "post_transform", "PROBIT"), "PROBIT");
        assert_unsupported(&set_string(REGRESSOR, "post_transform", "SOFTMAX"), "SOFTMAX");
        assert_unsupported(&set_string(REGRESSOR, "aggregate_function", "MAX"), "MAX");
        let eq = edited(TREE, |g| attr(g, "nodes_modes").strings[0] = b"BRANCH_EQ".to_vec().into());
        assert_unsupported(&eq, "BRANCH_EQ");
        let unknown = edited(TREE, |g| {
            ensemble_node(g).attribute.push(AttributeProto { name: "nodes_colors".into(), ..Default::default() })
        });
        assert_unsupported(&unknown, "nodes_colors");
        let targets = edited(REGRESSOR, |g| attr(g, "n_targets").i = 2);
        assert_unsupported(&targets, "n_targets 2");
        // A node the ensemble does not explain, before or after it.
        let scaled = edited(TREE, |g| {
            let input = ensemble_node(g).input[0].clone();
            ensemble_node(g).input[0] = "scaled".into();
            let scaler = NodeProto {
                op_type: "Scaler".into(),
                domain: ML_DOMAIN.into(),
                name: "scaler".into(),
                input: vec![input],
                output: vec!["scaled".into()],
                ..Default::default()
            };
            g.node.insert(0, scaler);
        });
        assert_unsupported(&scaled, "`Scaler` node `scaler`");
        let doubled = edited(REGRESSOR, |g| {
            let output = ensemble_node(g).output[0].clone();
            let two = TensorProto { data_type: FLOAT, float_data: vec![2.0], name: "two".into(), ..Default::default() };
            g.initializer.push(two);
            let mul = NodeProto {
                op_type: "Mul".into(),
                input: vec![output, "two".into()],
                output: vec!["doubled".into()],
                ..Default::default()
            };
            g.node.push(mul);
        });
        assert_unsupported(&doubled, "`Mul` node `#1 (Mul)`");
        let two = edited(TREE, |g| {
            let mut copy = ensemble_node(g).clone();
            copy.output = vec!["l2".into(), "p2".into()];
            g.node.push(copy);
        });
        assert_unsupported(&two, "2 tree ensembles");
    }

    #[test]
    fn inconsistent_files_are_malformed() {
        assert_malformed(b"\xff\xff\xff", "not an ONNX protobuf");
        assert_malformed(&[], "no graph");
        let short = edited(TREE, |g| {
            attr(g, "nodes_values").floats.pop();
        });
        assert_malformed(&short, "`nodes_values` has 10 entries, `nodes_treeids` 11");
        let dangling = edited(TREE, |g| attr(g, "nodes_truenodeids").ints[0] = 99);
        assert_malformed(&dangling, "child 99");
        let cycle = edited(TREE, |g| attr(g, "nodes_truenodeids").ints[0] = 0);
        assert_malformed(&cycle, "reached twice");
        let class = edited(TREE, |g| attr(g, "class_ids").ints[0] = 7);
        assert_malformed(&class, "class id 7");
        let feature = edited(TREE, |g| attr(g, "nodes_featureids").ints[0] = 9);
        assert_malformed(&feature, "4 features");
        let huge = edited(TREE, |g| attr(g, "nodes_featureids").ints[0] = i64::MAX);
        assert_malformed(&huge, "reads feature");
        let nan = edited(TREE, |g| attr(g, "nodes_values").floats[0] = f32::NAN);
        assert_malformed(&nan, "threshold NaN");
        let no_leaf_weight = edited(TREE, |g| attr(g, "class_nodeids").ints[0] = 0);
        assert_malformed(&no_leaf_weight, "not a leaf");
    }
}
