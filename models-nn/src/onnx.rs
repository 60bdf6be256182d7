//! ONNX import: a sequential ONNX graph becomes a float [`Network`], which the quantizer
//! then calibrates (post-training quantization) and lowers like any other network.
//!
//! Parsing goes through `onnx-ir`, which decodes initializers and attributes (with every
//! opset's defaults applied), folds constant subgraphs and fuses `Gemm`/`MatMul`+`Add`
//! into its own `Linear` node. `onnx-ir` renames every node (`linear1`, `conv2d1`, ...),
//! so the importer also reads the protobuf itself, once, to check the operators and the
//! chain structure and to name nodes in errors as the ONNX file names them.
//!
//! # What is accepted
//!
//! A chain: every operator has exactly one computed input, the previous operator's first
//! output (its other inputs are initializers or `Constant`s). A node with two computed
//! inputs (a residual `Add`, a `Concat`) or that reads an earlier tensor gives
//! [`NnError::UnsupportedOp`] naming it. The graph has one input whose first axis is the
//! batch axis; the [`Network`] works per sample, without it.
//!
//! | ONNX | becomes |
//! | --- | --- |
//! | `Gemm` (any `alpha`, `beta`, `transB`; `transA = 0`), `MatMul` by a constant 2-D right operand, `MatMul` + `Add` | [`Layer::Dense`] |
//! | `Conv` (2-D, `group = 1`, dilation 1, explicit pads, `auto_pad` `NOTSET`/`VALID`) | [`Layer::Conv2d`] |
//! | `AveragePool` (2-D, no padding, dilation 1), `GlobalAveragePool` | [`Layer::AvgPool2d`] |
//! | `MaxPool` (2-D, no padding, dilation 1; `kh·kw - 1` lookups per window) | [`Layer::MaxPool2d`] |
//! | `BatchNormalization` (inference form) | [`Layer::Affine`], per channel (`[C, 1, 1]` on images) |
//! | `Add`, `Sub`, `Mul`, `Div` with one constant operand (`constant / x` excepted) | [`Layer::Affine`] |
//! | `Relu`, `Sigmoid`, `Tanh`, `LeakyRelu`, `Elu`, `Softplus` | [`Layer::Activation`] |
//! | `Flatten`, `Reshape` (constant shape), `Squeeze`, `Unsqueeze` (constant axes); batch axis kept | [`Layer::Reshape`] |
//! | `Identity`, `Dropout`, `Cast` to float32/float64 | nothing (inference no-ops) |
//! | `Transpose` of a constant (`x @ W.T` exported without constant folding) | folded into the constant |
//! | `Softmax`, `LogSoftmax` over the features, as the last operator only | nothing: reported in [`ImportedOnnx::output_activation`] |
//!
//! Anything else (`Concat`, `Transpose` of a computed tensor, `Shape`, custom domains, ...) is an
//! [`NnError::UnsupportedOp`] naming the operator, the node and the reason; an unreadable
//! file is an [`NnError::Onnx`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use ndarray::{Array1, Array2, Array4, ArrayD, IxDyn};
use onnx_ir::node::padding::{AutoPad, PaddingConfig2d};
use onnx_ir::{
    ArgType, Argument, Message, ModelProto, Node, NodeProto, NodeType, OnnxGraph, OnnxGraphBuilder, TensorDataExt,
};

use crate::error::{NnError, Result};
use crate::network::{Activation, Layer, Network};

/// The ONNX operators (default domain) the importer converts.
pub const SUPPORTED_OPS: &[&str] = &[
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Relu",
    "Sigmoid",
    "Tanh",
    "LeakyRelu",
    "Elu",
    "Softplus",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Conv",
    "AveragePool",
    "MaxPool",
    "GlobalAveragePool",
    "BatchNormalization",
    "Identity",
    "Dropout",
    "Cast",
    "Softmax",
    "LogSoftmax",
    "Constant",
];

/// A normalisation the ONNX graph applied to its outputs and the [`Network`] leaves out:
/// the network's outputs are then logits, and the client applies it after decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputActivation {
    /// The graph ends with a computed layer: the network's outputs are the graph's.
    None,
    /// The graph ended with `Softmax` over the features.
    Softmax,
    /// The graph ended with `LogSoftmax` over the features.
    LogSoftmax,
}

impl OutputActivation {
    /// Applies it to one sample's outputs (the network's logits).
    pub fn apply(&self, logits: &[f64]) -> Vec<f64> {
        match self {
            Self::None => logits.to_vec(),
            Self::Softmax | Self::LogSoftmax => {
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logits.iter().map(|v| (v - max).exp()).sum();
                if *self == Self::Softmax {
                    logits.iter().map(|v| (v - max).exp() / sum).collect()
                } else {
                    let log_sum = max + sum.ln();
                    logits.iter().map(|v| v - log_sum).collect()
                }
            }
        }
    }
}

/// An imported ONNX model.
#[derive(Debug, Clone)]
pub struct ImportedOnnx {
    /// The float network, per sample (no batch axis).
    pub network: Network,
    /// A final `Softmax`/`LogSoftmax` that was dropped from the network.
    pub output_activation: OutputActivation,
    /// Name of the graph's input.
    pub input_name: String,
    /// Name of the graph's output.
    pub output_name: String,
    /// For each layer of [`ImportedOnnx::network`], the ONNX node it comes from (as named
    /// in the file, or `#index (op)` for an unnamed node).
    pub layer_nodes: Vec<String>,
}

impl ImportedOnnx {
    /// Evaluates one flat sample in float, final `Softmax`/`LogSoftmax` included: the
    /// ONNX graph's own output.
    pub fn forward_row(&self, row: &[f64]) -> Result<Vec<f64>> {
        Ok(self.output_activation.apply(&self.network.forward_row(row)?))
    }
}

/// Imports the ONNX file at `path`.
pub fn import_onnx(path: &Path) -> Result<ImportedOnnx> {
    let source = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| NnError::Onnx { path: source.clone(), detail: e.to_string() })?;
    import_onnx_bytes(&bytes, &source)
}

/// Imports an ONNX model held in memory; `name` stands for the file in errors. A model
/// whose weights live in external data files must be imported with [`import_onnx`].
pub fn import_onnx_bytes(bytes: &[u8], name: &str) -> Result<ImportedOnnx> {
    let onnx_err = |detail: String| NnError::Onnx { path: name.to_string(), detail: printable(&detail, 600) };
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| onnx_err(format!("not an ONNX protobuf: {e}")))?;
    let chain = raw_chain(&model).map_err(|e| e.into_error(name))?;
    // onnx-ir's own checks are thorough but not all are errors: guard against a panic on
    // a malformed file so that a bad input never brings the caller down.
    let parsed = std::panic::catch_unwind(|| OnnxGraphBuilder::new().parse_bytes(bytes))
        .map_err(|_| onnx_err("onnx-ir panicked while parsing the model".into()))?;
    let graph = parsed.map_err(|e| onnx_err(e.to_string()))?;
    convert(&graph, &chain).map_err(|e| e.into_error(name))
}

/// An error found while converting, before the file name is attached.
enum Fail {
    Unsupported { op: String, node: String, detail: String },
    Invalid(String),
}

impl Fail {
    fn into_error(self, path: &str) -> NnError {
        match self {
            Fail::Unsupported { op, node, detail } => NnError::UnsupportedOp {
                op: printable(&op, 80),
                node: printable(&node, 80),
                detail: printable(&detail, 600),
            },
            Fail::Invalid(detail) => NnError::Onnx { path: path.to_string(), detail: printable(&detail, 600) },
        }
    }
}

/// Text from a file (operator and node names, and messages quoting them) made fit for a
/// one-line error: control characters escaped, at most `max` characters.
fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

type Conv<T> = std::result::Result<T, Fail>;

/// One computed node of the protobuf's chain.
#[derive(Debug, Clone)]
struct RawStep {
    op: String,
    name: String,
}

/// A node's name for messages.
fn display_name(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() { format!("#{index} ({})", node.op_type) } else { node.name.clone() }
}

/// Checks the operators and the chain structure on the protobuf, where nodes still have
/// their names, and lists the computed nodes in order.
fn raw_chain(model: &ModelProto) -> Conv<Vec<RawStep>> {
    let graph = model.graph.as_ref().ok_or_else(|| Fail::Invalid("the model has no graph".into()))?;
    let mut constant: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&str> = graph.input.iter().map(|v| v.name.as_str()).filter(|n| !constant.contains(n)).collect();
    let &[input] = inputs.as_slice() else {
        return Err(Fail::Invalid(format!("the graph needs exactly one input, it has {}: {inputs:?}", inputs.len())));
    };
    let mut current = input;
    let mut steps = Vec::new();
    let mut softmax_at: Option<(usize, String, String)> = None;
    for (index, node) in graph.node.iter().enumerate() {
        let name = display_name(node, index);
        let unsupported = |detail: String| Fail::Unsupported { op: node.op_type.clone(), node: name.clone(), detail };
        let computed: Vec<&str> =
            node.input.iter().map(String::as_str).filter(|n| !n.is_empty() && !constant.contains(n)).collect();
        if computed.is_empty() {
            // A constant subgraph: onnx-ir folds it (or reports it below).
            constant.extend(node.output.iter().map(String::as_str));
            continue;
        }
        if !matches!(node.domain.as_str(), "" | "ai.onnx") {
            return Err(unsupported(format!("operators of domain `{}` are not supported", node.domain)));
        }
        if !SUPPORTED_OPS.contains(&node.op_type.as_str()) {
            return Err(unsupported(format!("supported operators: {}", SUPPORTED_OPS.join(", "))));
        }
        if let Some((_, op, soft_name)) = &softmax_at {
            return Err(Fail::Unsupported {
                op: op.clone(),
                node: soft_name.clone(),
                detail: format!("only allowed as the last operator, but `{name}` follows it"),
            });
        }
        if computed.len() > 1 {
            return Err(unsupported(format!(
                "{} computed inputs ({}); only chains of operators with one computed input are supported \
                 (no residual connections or branches)",
                computed.len(),
                computed.join(", ")
            )));
        }
        if computed[0] != current {
            return Err(unsupported(format!(
                "reads `{}`, which is not the output of the previous operator (`{current}`); only sequential \
                 chains are supported",
                computed[0]
            )));
        }
        current = node.output.first().map(String::as_str).unwrap_or_default();
        if matches!(node.op_type.as_str(), "Softmax" | "LogSoftmax") {
            softmax_at = Some((steps.len(), node.op_type.clone(), name.clone()));
        }
        steps.push(RawStep { op: node.op_type.clone(), name });
    }
    let outputs: Vec<&str> = graph.output.iter().map(|v| v.name.as_str()).collect();
    if outputs != [current] {
        return Err(Fail::Invalid(format!(
            "the graph must have one output, the end of the chain `{current}`; it has {outputs:?}"
        )));
    }
    Ok(steps)
}

/// The ONNX operator types an onnx-ir node can stem from.
fn onnx_ops(node: &Node) -> Vec<String> {
    match node.node_type() {
        NodeType::Linear => vec!["Gemm".into(), "MatMul".into()],
        NodeType::Conv1d | NodeType::Conv2d | NodeType::Conv3d => vec!["Conv".into()],
        NodeType::AveragePool1d | NodeType::AveragePool2d | NodeType::AveragePool3d => vec!["AveragePool".into()],
        NodeType::MaxPool1d | NodeType::MaxPool2d | NodeType::MaxPool3d => vec!["MaxPool".into()],
        NodeType::Custom => match node {
            Node::Custom(c) => vec![c.op_type.clone()],
            _ => vec![],
        },
        other => vec![other.to_string()],
    }
}

/// Per-sample conversion state.
struct State<'a> {
    chain: &'a [RawStep],
    /// Next unmatched step of `chain`.
    cursor: usize,
    shape: Vec<usize>,
    batch: Option<usize>,
    layers: Vec<Layer>,
    layer_nodes: Vec<String>,
}

impl State<'_> {
    /// The ONNX op and file name of `node`: the next step of the protobuf's chain of a
    /// matching type (onnx-ir drops `Identity`, `Dropout`, `x + 0`, `x * 1` and fuses
    /// `MatMul` + `Add`, so steps may be skipped).
    fn origin(&mut self, node: &Node) -> (String, String) {
        let ops = onnx_ops(node);
        if let Some(offset) = self.chain[self.cursor..].iter().position(|s| ops.contains(&s.op)) {
            let step = &self.chain[self.cursor + offset];
            self.cursor += offset + 1;
            return (step.op.clone(), step.name.clone());
        }
        (ops.first().cloned().unwrap_or_else(|| node.node_type().to_string()), format!("{} (onnx-ir)", node.name()))
    }
}

/// A constant input's values and shape.
fn constant(arg: &Argument) -> Option<(Vec<usize>, Vec<f64>)> {
    let data = arg.value()?;
    let values = data.to_f64_vec().ok()?;
    Some((data.shape().to_vec(), values))
}

/// A constant tensor: shape and row-major values.
type ConstantTensor = (Vec<usize>, Vec<f64>);

/// Constants computed by operators onnx-ir leaves unfolded, by output name.
type Folded = HashMap<String, ConstantTensor>;

fn constant_or_folded(arg: &Argument, folded: &Folded) -> Option<ConstantTensor> {
    constant(arg).or_else(|| folded.get(&arg.name).cloned())
}

/// Evaluates `node` when it is a `Transpose` of a constant (a stored `[out, in]` weight
/// that `x @ W.T` exports without constant folding, which onnx-ir keeps as a node): its
/// output name and value.
fn fold_constant(node: &Node, folded: &Folded) -> Conv<Option<(String, ConstantTensor)>> {
    let Node::Transpose(n) = node else { return Ok(None) };
    let (Some(input), Some(output)) = (n.inputs.first(), n.outputs.first()) else { return Ok(None) };
    let Some((shape, values)) = constant_or_folded(input, folded) else { return Ok(None) };
    let rank = shape.len();
    let perm: Vec<usize> = if n.config.perm.is_empty() {
        (0..rank).rev().collect()
    } else {
        n.config.perm.iter().map(|&p| usize::try_from(p).unwrap_or(usize::MAX)).collect()
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..rank).collect::<Vec<_>>() {
        return Err(Fail::Invalid(format!(
            "Transpose `{}`: perm {:?} is not a permutation of the {rank} axes",
            n.name, n.config.perm
        )));
    }
    let array = ArrayD::from_shape_vec(IxDyn(&shape), values)
        .map_err(|e| Fail::Invalid(format!("Transpose `{}`: {e}", n.name)))?;
    let transposed = array.permuted_axes(IxDyn(&perm));
    let out_shape = transposed.shape().to_vec();
    Ok(Some((output.name.clone(), (out_shape, transposed.iter().copied().collect()))))
}

fn convert(graph: &OnnxGraph, chain: &[RawStep]) -> Conv<ImportedOnnx> {
    let [input] = graph.inputs.as_slice() else {
        return Err(Fail::Invalid(format!("onnx-ir sees {} graph inputs, expected one", graph.inputs.len())));
    };
    let [output] = graph.outputs.as_slice() else {
        return Err(Fail::Invalid(format!("onnx-ir sees {} graph outputs, expected one", graph.outputs.len())));
    };
    let full = match &input.ty {
        ArgType::Tensor(t) => t.static_shape.clone().unwrap_or_default(),
        other => return Err(Fail::Invalid(format!("the input `{}` is a {other}, not a tensor", input.name))),
    };
    let per_sample: Option<Vec<usize>> = full.iter().skip(1).copied().collect();
    let shape = match per_sample {
        Some(s) if full.len() >= 2 && !s.contains(&0) => s,
        _ => {
            return Err(Fail::Invalid(format!(
                "the input `{}` must be [batch, ...] with every axis but the batch one known, got {}",
                input.name, input.ty
            )));
        }
    };
    let input_shape = shape.clone();
    let mut st = State {
        chain,
        cursor: 0,
        shape,
        batch: full.first().copied().flatten(),
        layers: Vec::new(),
        layer_nodes: Vec::new(),
    };
    let mut current = input.name.clone();
    let mut output_activation = OutputActivation::None;
    let mut folded = Folded::new();
    for node in &graph.nodes {
        if matches!(node, Node::Constant(_)) {
            continue;
        }
        if let Some((output, value)) = fold_constant(node, &folded)? {
            folded.insert(output, value);
            continue;
        }
        let (op, name) = st.origin(node);
        let unsupported = |detail: String| Fail::Unsupported { op: op.clone(), node: name.clone(), detail };
        if output_activation != OutputActivation::None {
            return Err(unsupported("follows the final Softmax/LogSoftmax".into()));
        }
        let computed: Vec<usize> = (0..node.inputs().len())
            .filter(|&i| node.inputs()[i].is_dynamic() && !folded.contains_key(&node.inputs()[i].name))
            .collect();
        let &[x] = computed.as_slice() else {
            return Err(unsupported(format!(
                "{} computed inputs after onnx-ir's constant folding; only chains of operators with one computed \
                 input are supported",
                computed.len()
            )));
        };
        if node.inputs()[x].name != current {
            return Err(unsupported(format!(
                "reads `{}`, not the output of the previous operator; only sequential chains are supported",
                node.inputs()[x].name
            )));
        }
        let before = st.layers.len();
        if let Some(activation) = convert_node(node, x, &mut st, &folded, &unsupported)? {
            output_activation = activation;
        }
        for layer in &st.layers[before..] {
            st.shape = layer.output_shape(&st.shape).map_err(|why| unsupported(format!("{}: {why}", layer.name())))?;
            st.layer_nodes.push(name.clone());
        }
        current = node.outputs().first().map(|a| a.name.clone()).unwrap_or_default();
    }
    if output.name != current {
        return Err(Fail::Invalid(format!(
            "the graph output `{}` is not the end of the chain `{current}`",
            output.name
        )));
    }
    let network = Network::new(input_shape, st.layers).map_err(|e| Fail::Invalid(e.to_string()))?;
    Ok(ImportedOnnx {
        network,
        output_activation,
        input_name: input.name.clone(),
        output_name: output.name.clone(),
        layer_nodes: st.layer_nodes,
    })
}

/// Appends the node's layers to `st.layers`; returns the output activation of a final
/// `Softmax`/`LogSoftmax`.
fn convert_node(
    node: &Node,
    x: usize,
    st: &mut State<'_>,
    folded: &Folded,
    unsupported: &dyn Fn(String) -> Fail,
) -> Conv<Option<OutputActivation>> {
    let inputs = node.inputs();
    let need_constant = |i: usize, what: &str| -> Conv<(Vec<usize>, Vec<f64>)> {
        let arg = inputs.get(i).ok_or_else(|| unsupported(format!("missing {what}")))?;
        constant_or_folded(arg, folded)
            .ok_or_else(|| unsupported(format!("the {what} must be a constant (initializer)")))
    };
    let optional_constant = |i: usize, what: &str| -> Conv<Option<(Vec<usize>, Vec<f64>)>> {
        match inputs.get(i) {
            Some(arg) if !arg.is_optional() => need_constant(i, what).map(Some),
            _ => Ok(None),
        }
    };
    let activation = |a: Activation| Layer::Activation(a);
    let layer = match node {
        Node::Linear(n) => {
            if x != 0 {
                return Err(unsupported("the computed tensor must be the left operand".into()));
            }
            let (wshape, w) = need_constant(1, "weight")?;
            let weight = matrix(&wshape, w, n.config.transpose_weight, 1.0, unsupported)?;
            let bias = bias_vector(optional_constant(2, "bias")?, weight.ncols(), 1.0, unsupported)?;
            Layer::Dense { weight, bias }
        }
        Node::Gemm(n) => {
            let c = &n.config;
            if x != 0 {
                return Err(unsupported("the computed tensor must be A, the left operand".into()));
            }
            if c.trans_a != 0 {
                return Err(unsupported("transA = 1 transposes the batch axis into the features".into()));
            }
            let (wshape, w) = need_constant(1, "B operand")?;
            let weight = matrix(&wshape, w, c.trans_b != 0, f64::from(c.alpha), unsupported)?;
            let bias = bias_vector(optional_constant(2, "C operand")?, weight.ncols(), f64::from(c.beta), unsupported)?;
            Layer::Dense { weight, bias }
        }
        Node::MatMul(_) => {
            if x != 0 {
                return Err(unsupported("a constant left operand is not supported (x · W only)".into()));
            }
            let (wshape, w) = need_constant(1, "right operand")?;
            let weight = matrix(&wshape, w, false, 1.0, unsupported)?;
            Layer::Dense { bias: Array1::zeros(weight.ncols()), weight }
        }
        Node::Add(_) | Node::Sub(_) | Node::Mul(_) | Node::Div(_) => {
            let (cshape, values) = need_constant(1 - x, "other operand")?;
            let c = per_sample_constant(&cshape, values, &st.shape, unsupported)?;
            let one = ArrayD::from_elem(IxDyn(&[]), 1.0);
            let zero = ArrayD::from_elem(IxDyn(&[]), 0.0);
            let (scale, shift) = match (node, x) {
                (Node::Add(_), _) => (one, c),
                (Node::Sub(_), 0) => (one, -c),
                (Node::Sub(_), _) => (-one, c),
                (Node::Mul(_), _) => (c, zero),
                (Node::Div(_), 0) => {
                    if c.iter().any(|&v| v == 0.0) {
                        return Err(unsupported("division by a constant with a zero".into()));
                    }
                    (c.mapv(|v| 1.0 / v), zero)
                }
                _ => return Err(unsupported("a constant divided by the computed tensor is not affine".into())),
            };
            Layer::Affine { scale, shift }
        }
        Node::BatchNormalization(n) => {
            let eps = match &n.config {
                onnx_ir::node::batch_norm::BatchNormConfig::Static(c) => c.epsilon,
                onnx_ir::node::batch_norm::BatchNormConfig::Runtime(c) => c.epsilon,
            };
            if x != 0 {
                return Err(unsupported("the computed tensor must be X".into()));
            }
            let Some(&channels) = st.shape.first() else {
                return Err(unsupported("needs a channel axis".into()));
            };
            let mut params = Vec::with_capacity(4);
            for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "var")] {
                let (_, v) = need_constant(i, what)?;
                if v.len() != channels {
                    return Err(unsupported(format!("{} {what} values for {channels} channels", v.len())));
                }
                params.push(v);
            }
            let mut bshape = vec![1; st.shape.len()];
            bshape[0] = channels;
            let scale: Vec<f64> = (0..channels).map(|c| params[0][c] / (params[3][c] + eps).sqrt()).collect();
            let shift: Vec<f64> = (0..channels).map(|c| params[1][c] - params[2][c] * scale[c]).collect();
            Layer::Affine {
                scale: dyn_array(&bshape, scale, unsupported)?,
                shift: dyn_array(&bshape, shift, unsupported)?,
            }
        }
        Node::Relu(_) => activation(Activation::Relu),
        Node::Sigmoid(_) => activation(Activation::Sigmoid),
        Node::Tanh(_) => activation(Activation::Tanh),
        Node::LeakyRelu(n) => activation(Activation::LeakyRelu { alpha: n.config.alpha }),
        Node::Elu(n) => activation(Activation::Elu { alpha: n.config.alpha }),
        Node::Softplus(_) => activation(Activation::Softplus),
        Node::Identity(_) | Node::Dropout(_) => return Ok(None),
        // Exporters cast the features to the network's float type; the importer computes in
        // f64, so a cast to another type would change values it cannot reproduce.
        Node::Cast(n) if matches!(n.config.to, onnx_ir::DType::F32 | onnx_ir::DType::F64) => return Ok(None),
        Node::Cast(n) => {
            return Err(unsupported(format!(
                "cast to {:?}: only casts to float32 or float64 are supported",
                n.config.to
            )));
        }
        Node::Flatten(n) => {
            let axis = n.config.axis;
            if axis == 0 {
                return Err(unsupported("axis 0 flattens the batch axis into the features".into()));
            }
            let lead: usize = st.shape.iter().take(axis - 1).product();
            if lead != 1 {
                return Err(unsupported(format!(
                    "axis {axis} of a [batch, {:?}] tensor mixes the batch axis",
                    st.shape
                )));
            }
            Layer::Reshape(vec![st.shape.iter().product()])
        }
        Node::Squeeze(n) => match &n.config.axes {
            None => Layer::Reshape(st.shape.iter().copied().filter(|&d| d != 1).collect()),
            Some(onnx_ir::node::squeeze::SqueezeInput::Static(axes)) => {
                Layer::Reshape(squeeze_shape(&st.shape, axes).map_err(unsupported)?)
            }
            Some(onnx_ir::node::squeeze::SqueezeInput::Runtime(_)) => {
                return Err(unsupported("the axes must be a constant".into()));
            }
        },
        Node::Unsqueeze(n) => match &n.config {
            onnx_ir::node::unsqueeze::UnsqueezeConfig::Static(axes) => {
                Layer::Reshape(unsqueeze_shape(&st.shape, axes).map_err(unsupported)?)
            }
            onnx_ir::node::unsqueeze::UnsqueezeConfig::Runtime(_) => {
                return Err(unsupported("the axes must be a constant".into()));
            }
        },
        Node::Reshape(n) => match &n.config.shape {
            onnx_ir::node::reshape::ReshapeInput::Static(target) => {
                Layer::Reshape(reshape_target(target, &st.shape, st.batch).map_err(unsupported)?)
            }
            onnx_ir::node::reshape::ReshapeInput::Runtime(_) => {
                return Err(unsupported("the target shape must be a constant".into()));
            }
        },
        Node::Conv2d(n) => {
            let c = &n.config;
            if x != 0 {
                return Err(unsupported("the computed tensor must be X".into()));
            }
            if c.groups != 1 {
                return Err(unsupported(format!("group = {}: only group = 1 is supported", c.groups)));
            }
            if c.dilation != [1, 1] {
                return Err(unsupported(format!("dilations {:?}: only 1 is supported", c.dilation)));
            }
            check_auto_pad(&c.auto_pad, unsupported)?;
            let (wshape, w) = need_constant(1, "weight")?;
            let &[oc, ic, kh, kw] = wshape.as_slice() else {
                return Err(unsupported(format!("weight of shape {wshape:?}, expected [M, C, kH, kW]")));
            };
            let weight = Array4::from_shape_vec((oc, ic, kh, kw), w).map_err(|e| unsupported(e.to_string()))?;
            let bias = bias_vector(optional_constant(2, "bias")?, oc, 1.0, unsupported)?;
            let (t, l, b, r) = c.padding.as_tuple();
            Layer::Conv2d { weight, bias, stride: c.stride, padding: [t, l, b, r] }
        }
        Node::AveragePool2d(n) => {
            let c = &n.config;
            let window = PoolWindow { padding: &c.padding, dilation: c.dilation, ceil_mode: c.ceil_mode };
            check_pool(&c.auto_pad, &window, c.kernel_size, c.strides, &st.shape, unsupported)?;
            Layer::AvgPool2d { kernel: c.kernel_size, stride: c.strides }
        }
        Node::MaxPool2d(n) => {
            let c = &n.config;
            let window = PoolWindow { padding: &c.padding, dilation: c.dilation, ceil_mode: c.ceil_mode };
            check_pool(&c.auto_pad, &window, c.kernel_size, c.strides, &st.shape, unsupported)?;
            if n.outputs.len() > 1 {
                return Err(unsupported("the Indices output is not supported".into()));
            }
            Layer::MaxPool2d { kernel: c.kernel_size, stride: c.strides }
        }
        Node::GlobalAveragePool(_) => {
            let &[_, h, w] = st.shape.as_slice() else {
                return Err(unsupported(format!("expects a [batch, C, H, W] tensor, got [batch, {:?}]", st.shape)));
            };
            Layer::AvgPool2d { kernel: [h, w], stride: [1, 1] }
        }
        Node::Softmax(n) => return softmax_last(n.config.axis, &st.shape, OutputActivation::Softmax, unsupported),
        Node::LogSoftmax(n) => {
            return softmax_last(n.config.axis, &st.shape, OutputActivation::LogSoftmax, unsupported);
        }
        _ => return Err(unsupported(format!("supported operators: {}", SUPPORTED_OPS.join(", ")))),
    };
    st.layers.push(layer);
    Ok(None)
}

fn softmax_last(
    axis: usize,
    shape: &[usize],
    which: OutputActivation,
    unsupported: &dyn Fn(String) -> Fail,
) -> Conv<Option<OutputActivation>> {
    if shape.len() != 1 || axis != 1 {
        return Err(unsupported(format!(
            "only over the features of a [batch, features] tensor (got axis {axis} of [batch, {shape:?}])"
        )));
    }
    Ok(Some(which))
}

/// A pooling node's window attributes the importer checks.
struct PoolWindow<'a> {
    padding: &'a PaddingConfig2d,
    dilation: [usize; 2],
    ceil_mode: bool,
}

/// Refuses what `AveragePool`/`MaxPool` may carry beyond unpadded, undilated windows:
/// padding, dilation, and `ceil_mode` with a partial last window on an input of `shape`.
fn check_pool(
    auto_pad: &AutoPad,
    window: &PoolWindow<'_>,
    kernel: [usize; 2],
    strides: [usize; 2],
    shape: &[usize],
    unsupported: &dyn Fn(String) -> Fail,
) -> Conv<()> {
    check_auto_pad(auto_pad, unsupported)?;
    let padding = window.padding;
    if *padding != PaddingConfig2d::Valid && padding.as_tuple() != (0, 0, 0, 0) {
        return Err(unsupported(format!("padding {padding}: only unpadded pooling is supported")));
    }
    if window.dilation != [1, 1] {
        return Err(unsupported(format!("dilations {:?}: only 1 is supported", window.dilation)));
    }
    if window.ceil_mode && shape.len() == 3 {
        let exact = |len: usize, k: usize, s: usize| len >= k && s > 0 && (len - k).is_multiple_of(s);
        if !(exact(shape[1], kernel[0], strides[0]) && exact(shape[2], kernel[1], strides[1])) {
            return Err(unsupported("ceil_mode = 1 with partial windows is not supported".into()));
        }
    }
    Ok(())
}

fn check_auto_pad(auto_pad: &AutoPad, unsupported: &dyn Fn(String) -> Fail) -> Conv<()> {
    match auto_pad {
        AutoPad::NotSet | AutoPad::Valid => Ok(()),
        other => Err(unsupported(format!("auto_pad {other:?}: only NOTSET (explicit pads) or VALID is supported"))),
    }
}

/// A 2-D constant as `[in, out]`, times `alpha`.
fn matrix(
    shape: &[usize],
    values: Vec<f64>,
    transpose: bool,
    alpha: f64,
    unsupported: &dyn Fn(String) -> Fail,
) -> Conv<Array2<f64>> {
    let &[r, c] = shape else {
        return Err(unsupported(format!("weight of shape {shape:?}, expected a matrix")));
    };
    let m = Array2::from_shape_vec((r, c), values).map_err(|e| unsupported(e.to_string()))?;
    let m = if transpose { m.reversed_axes().as_standard_layout().into_owned() } else { m };
    Ok(if alpha == 1.0 { m } else { m * alpha })
}

/// A bias broadcast to `n` values (ONNX allows `[n]`, `[1, n]`, a scalar, or none), times `beta`.
fn bias_vector(
    c: Option<(Vec<usize>, Vec<f64>)>,
    n: usize,
    beta: f64,
    unsupported: &dyn Fn(String) -> Fail,
) -> Conv<Array1<f64>> {
    let Some((shape, values)) = c else {
        return Ok(Array1::zeros(n));
    };
    let per_sample = shape.len() < 2 || shape[0] == 1;
    let values: Vec<f64> = match values.len() {
        1 if per_sample => vec![values[0]; n],
        len if len == n && per_sample => values,
        _ => return Err(unsupported(format!("bias of shape {shape:?} does not broadcast to {n} outputs per sample"))),
    };
    Ok(Array1::from(values) * beta)
}

fn dyn_array(shape: &[usize], values: Vec<f64>, unsupported: &dyn Fn(String) -> Fail) -> Conv<ArrayD<f64>> {
    ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| unsupported(e.to_string()))
}

/// An elementwise operand of shape `cshape` (numpy broadcasting against `[batch, shape..]`)
/// as a per-sample array that broadcasts to `shape` without changing it.
fn per_sample_constant(
    cshape: &[usize],
    values: Vec<f64>,
    shape: &[usize],
    unsupported: &dyn Fn(String) -> Fail,
) -> Conv<ArrayD<f64>> {
    let cshape = match cshape.len() {
        len if len <= shape.len() => cshape,
        len if len == shape.len() + 1 && cshape[0] == 1 => &cshape[1..],
        _ => {
            return Err(unsupported(format!(
                "constant of shape {cshape:?} does not broadcast per sample to [batch, {shape:?}]"
            )));
        }
    };
    let c = dyn_array(cshape, values, unsupported)?;
    if c.broadcast(IxDyn(shape)).is_none() {
        return Err(unsupported(format!(
            "constant of shape {cshape:?} does not broadcast to the per-sample shape {shape:?}"
        )));
    }
    Ok(c)
}

/// The per-sample shape of a `Reshape` to `target` (with its batch axis) of a
/// `[batch, shape..]` tensor; `batch` is the graph's batch size where it is fixed.
/// The per-sample shape after ONNX `Squeeze` of `axes` (of the batched tensor) from a
/// `[batch, shape..]` tensor; the batch axis stays.
fn squeeze_shape(shape: &[usize], axes: &[i64]) -> std::result::Result<Vec<usize>, String> {
    let rank = shape.len() as i64 + 1;
    let mut drop = Vec::new();
    for &a in axes {
        let axis = if a < 0 { a + rank } else { a };
        if axis <= 0 || axis >= rank {
            return Err(format!("axis {a} of a rank-{rank} tensor: the batch axis stays and others must exist"));
        }
        if shape[axis as usize - 1] != 1 {
            return Err(format!("axis {a} has size {}, not 1", shape[axis as usize - 1]));
        }
        drop.push(axis as usize - 1);
    }
    Ok(shape.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, d)| *d).collect())
}

/// The per-sample shape after ONNX `Unsqueeze` at `axes` (of the batched output).
fn unsqueeze_shape(shape: &[usize], axes: &[i64]) -> std::result::Result<Vec<usize>, String> {
    let rank = (shape.len() + axes.len()) as i64 + 1;
    let mut inserted = Vec::new();
    for &a in axes {
        let axis = if a < 0 { a + rank } else { a };
        if axis <= 0 || axis >= rank || inserted.contains(&(axis as usize)) {
            return Err(format!("axis {a} of the rank-{rank} output: the batch axis stays and axes are distinct"));
        }
        inserted.push(axis as usize);
    }
    let mut rest = shape.iter();
    Ok((1..rank as usize).map(|i| if inserted.contains(&i) { 1 } else { rest.next().copied().unwrap_or(1) }).collect())
}

fn reshape_target(target: &[i64], shape: &[usize], batch: Option<usize>) -> std::result::Result<Vec<usize>, String> {
    let total: usize = shape.iter().product();
    let Some((&first, rest)) = target.split_first() else {
        return Err("an empty target shape drops the batch axis".into());
    };
    if rest.is_empty() {
        return Err(format!("target shape {target:?} leaves no axis per sample"));
    }
    let mut out = Vec::with_capacity(rest.len());
    let mut infer = None;
    for (i, &d) in rest.iter().enumerate() {
        match d {
            0 => out.push(*shape.get(i).ok_or_else(|| format!("0 at axis {} copies no input axis", i + 1))?),
            -1 if infer.is_none() && first != -1 => {
                infer = Some(i);
                out.push(1);
            }
            d if d > 0 => out.push(usize::try_from(d).map_err(|e| e.to_string())?),
            _ => return Err(format!("target shape {target:?} is not supported")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape [batch, {shape:?}] into {target:?}"));
        }
        out[i] = total / known;
    }
    let keeps_batch = match first {
        0 | -1 => true,
        d => usize::try_from(d).ok() == batch && batch.is_some(),
    };
    if !keeps_batch || out.iter().product::<usize>() != total {
        return Err(format!(
            "target shape {target:?} of a [batch, {shape:?}] tensor does not keep the batch axis (its first entry \
             must be 0 or -1, and the rest must hold one sample)"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeeze_and_unsqueeze_keep_the_batch_axis() {
        assert_eq!(squeeze_shape(&[1, 8, 1], &[1]), Ok(vec![8, 1]));
        assert_eq!(squeeze_shape(&[1, 8, 1], &[-1, 1]), Ok(vec![8]));
        assert!(squeeze_shape(&[1, 8], &[0]).is_err(), "the batch axis");
        assert!(squeeze_shape(&[1, 8], &[2]).is_err(), "size 8");
        assert_eq!(unsqueeze_shape(&[8], &[1]), Ok(vec![1, 8]));
        assert_eq!(unsqueeze_shape(&[8], &[-1]), Ok(vec![8, 1]));
        assert_eq!(unsqueeze_shape(&[8, 8], &[1, 3]), Ok(vec![1, 8, 1, 8]));
        assert!(unsqueeze_shape(&[8], &[0]).is_err(), "the batch axis");
    }

    #[test]
    fn reshape_targets_keep_the_batch_axis() {
        assert_eq!(reshape_target(&[-1, 2, 2], &[4], None), Ok(vec![2, 2]));
        assert_eq!(reshape_target(&[0, -1], &[2, 3, 3], None), Ok(vec![18]));
        assert_eq!(reshape_target(&[0, 0, 9], &[2, 3, 3], None), Ok(vec![2, 9]));
        assert_eq!(reshape_target(&[1, 18], &[2, 3, 3], Some(1)), Ok(vec![18]));
        assert!(reshape_target(&[1, 18], &[2, 3, 3], None).is_err());
        assert!(reshape_target(&[-1, 9], &[2, 3, 3], None).is_err());
        assert!(reshape_target(&[0, -1, -1], &[4], None).is_err());
        assert!(reshape_target(&[], &[4], None).is_err());
        assert!(reshape_target(&[-1], &[4], None).is_err());
    }

    #[test]
    fn softmax_and_log_softmax_apply() {
        let p = OutputActivation::Softmax.apply(&[0.0, 2f64.ln()]);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-12 && (p[1] - 2.0 / 3.0).abs() < 1e-12);
        let l = OutputActivation::LogSoftmax.apply(&[0.0, 2f64.ln()]);
        assert!((l[1] - (2.0f64 / 3.0).ln()).abs() < 1e-12);
        assert_eq!(OutputActivation::None.apply(&[1.5]), vec![1.5]);
    }
}
