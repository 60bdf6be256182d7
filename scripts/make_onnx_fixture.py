#!/usr/bin/env python3
"""Builds the small ONNX fixtures of `models-nn/tests/fixtures/` and records their outputs.

Run from anywhere: `python3 scripts/make_onnx_fixture.py` (needs the `onnx` and `numpy`
pip packages; CI never runs it, the generated files are committed).

Every model is built by hand with `onnx.helper` from weights drawn with fixed seeds, so a
re-run writes the same files. Each valid model is evaluated with onnx's reference
evaluator (`onnx.reference.ReferenceEvaluator`) on a few fixed inputs, and
`<name>.json` records them:

    {"input_shape": [...], "output_activation": "none" | "softmax",
     "inputs": [[flat row], ...], "outputs": [[flat row], ...]}

Models:
- `mlp.onnx`: 4 features -> Sub/Mul by constants -> Reshape -> Mul (broadcast) -> Reshape
  -> Gemm -> Relu -> Gemm(transB=1) -> BatchNormalization -> Tanh
  -> Gemm(alpha, beta) -> LeakyRelu -> Gemm(transB=1) -> Sigmoid -> Dropout
  -> MatMul + Add -> Div by a constant -> Identity -> 3 outputs.
- `cnn.onnx`: 1x8x8 image -> Conv 3x3 pad 1 -> BatchNormalization -> Relu
  -> AveragePool 2x2 -> Flatten -> Gemm(transB=1, explicit alpha = beta = 1) -> Softmax
  -> 10 outputs.
- `binary.onnx`: a single-logit binary classifier as torch exports it: 4 features -> Cast
  (to float) -> Unsqueeze -> Squeeze -> Gemm(transB=1) -> Relu -> Gemm(transB=1) -> 1 output -> Sigmoid.
- `flat_cnn.onnx`: the same CNN on a flat 64-feature row, reshaped to 1x8x8 before the Conv
  (as exports of networks trained on flat tabular pixels come).
- `maxpool.onnx`: 1x6x6 image -> Conv 3x3 -> Relu -> MaxPool 2x2 -> Flatten -> MatMul -> 3 outputs.
- `transposed.onnx`: 5 features -> MatMul by `Transpose` of a stored [out, in] weight (as
  `x @ W.T` exports without constant folding) -> Add -> Relu -> Gemm -> 2 outputs.
- `unsupported.onnx` (invalid: Abs), `residual.onnx` (invalid: an Add of two computed
  tensors), `grouped_conv.onnx` (invalid: Conv with group=2). No JSON for these.
"""

import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models-nn", "tests", "fixtures")
OPSET = 15  # BatchNormalization >= 14: the reference evaluator of opsets 9-13 mixes in batch statistics


def f32(a):
    return np.asarray(a, dtype=np.float32)


def init(name, array):
    return numpy_helper.from_array(f32(array), name)


def i64(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def model(name, nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fheml fixture")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def save(m, name, inputs=None, output_activation="none"):
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(m, path)
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes)")
    if inputs is None:
        return
    sess = ReferenceEvaluator(m)
    input_name = m.graph.input[0].name
    (y,) = sess.run(None, {input_name: inputs})
    record = {
        "input_shape": list(inputs.shape[1:]),
        "output_activation": output_activation,
        "inputs": [[float(v) for v in row.ravel()] for row in inputs],
        "outputs": [[float(v) for v in row.ravel()] for row in y],
    }
    path = os.path.join(OUT, name + ".json")
    with open(path, "w") as f:
        # One row a line: readable diffs, small files.
        f.write("{\n")
        f.write(f' "input_shape": {json.dumps(record["input_shape"])},\n')
        f.write(f' "output_activation": {json.dumps(record["output_activation"])},\n')
        for key in ("inputs", "outputs"):
            rows = ",\n  ".join(json.dumps(row) for row in record[key])
            end = ",\n" if key == "inputs" else "\n"
            f.write(f' "{key}": [\n  {rows}\n ]{end}')
        f.write("}\n")
    print(f"wrote {os.path.relpath(path)}")


def mlp():
    rng = np.random.default_rng(6)
    n = lambda *shape: f32(rng.normal(size=shape) * 0.6)
    inits = [
        init("mu", [0.5, -1.0, 2.0, 0.0]),
        init("inv_sigma", [1.0, 0.5, 2.0, 1.5]),
        i64("shape_2x2", [-1, 2, 2]),
        init("row_scale", [[1.5], [-0.5]]),  # [2, 1]: broadcasts along rows of the 2x2
        i64("shape_4", [0, 4]),
        init("W1", n(4, 8)),
        init("b1", n(8)),
        init("W2", n(6, 8)),  # transB=1: [out, in]
        init("b2", n(6)),
        init("bn_scale", f32(rng.uniform(0.5, 1.5, 6))),
        init("bn_bias", n(6)),
        init("bn_mean", n(6)),
        init("bn_var", f32(rng.uniform(0.3, 2.0, 6))),
        init("W3", n(6, 5)),
        init("b3", n(1, 5)),  # [1, N] bias, broadcast over the batch
        init("W4", n(5, 5)),
        init("b4", n(5)),
        init("W5", n(5, 3)),
        init("b5", n(3)),
        init("div", [4.0]),
    ]
    nodes = [
        helper.make_node("Sub", ["x", "mu"], ["centred"], name="centre"),
        helper.make_node("Mul", ["centred", "inv_sigma"], ["scaled"], name="scale"),
        helper.make_node("Reshape", ["scaled", "shape_2x2"], ["grid"], name="to_grid"),
        helper.make_node("Mul", ["row_scale", "grid"], ["grid_scaled"], name="row_scale_mul"),
        helper.make_node("Reshape", ["grid_scaled", "shape_4"], ["flat"], name="to_flat"),
        helper.make_node("Gemm", ["flat", "W1", "b1"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["h2"], name="fc2", transB=1),
        helper.make_node(
            "BatchNormalization", ["h2", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n2"], name="bn2", epsilon=1e-3
        ),
        helper.make_node("Tanh", ["n2"], ["a2"], name="tanh2"),
        helper.make_node("Gemm", ["a2", "W3", "b3"], ["h3"], name="fc3", alpha=0.5, beta=2.0),
        helper.make_node("LeakyRelu", ["h3"], ["a3"], name="leaky3", alpha=0.1),
        helper.make_node("Gemm", ["a3", "W4", "b4"], ["h4"], name="fc4", transB=1),
        helper.make_node("Sigmoid", ["h4"], ["a4"], name="sigmoid4"),
        helper.make_node("Dropout", ["a4"], ["d4"], name="dropout4"),
        helper.make_node("MatMul", ["d4", "W5"], ["m5"], name="matmul5"),
        helper.make_node("Add", ["m5", "b5"], ["h5"], name="bias5"),
        helper.make_node("Div", ["h5", "div"], ["q5"], name="div5"),
        helper.make_node("Identity", ["q5"], ["y"], name="out"),
    ]
    m = model(
        "fheml_mlp",
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    xs = f32(np.random.default_rng(60).normal(size=(6, 4)) * 2.0)
    save(m, "mlp", xs)


def binary():
    rng = np.random.default_rng(8)
    n = lambda *shape: f32(rng.normal(size=shape) * 0.8)
    inits = [init("W1", n(6, 4)), init("b1", n(6)), init("W2", n(1, 6)), init("b2", n(1)), i64("axis_1", [1])]
    nodes = [
        helper.make_node("Cast", ["x"], ["xf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["xf", "axis_1"], ["x3"], name="unsqueeze"),
        helper.make_node("Squeeze", ["x3", "axis_1"], ["x2"], name="squeeze"),
        helper.make_node("Gemm", ["x2", "W1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["logit"], name="fc2", transB=1),
        helper.make_node("Sigmoid", ["logit"], ["p"], name="sigmoid"),
    ]
    m = model(
        "fheml_binary",
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    xs = f32(np.random.default_rng(80).normal(size=(8, 4)) * 1.5)
    save(m, "binary", xs)


def cnn(name="cnn", group=1, flat_input=False):
    rng = np.random.default_rng(7)
    n = lambda *shape: f32(rng.normal(size=shape) * 0.5)
    channels = 4
    inits = [
        init("conv_w", n(channels, 1 if group == 1 else 2, 3, 3)),
        init("conv_b", n(channels)),
        init("bn_scale", f32(rng.uniform(0.5, 1.5, channels))),
        init("bn_bias", n(channels)),
        init("bn_mean", n(channels)),
        init("bn_var", f32(rng.uniform(0.3, 2.0, channels))),
        init("fc_w", n(10, channels * 4 * 4)),
        init("fc_b", n(10)),
    ]
    in_channels = 1 if group == 1 else 4
    # `flat_input`: the features arrive as a flat row, reshaped to an image before the Conv.
    reshape = [helper.make_node("Reshape", ["pixels", "image_shape"], ["image"], name="to_image")] if flat_input else []
    if flat_input:
        inits.append(i64("image_shape", [-1, 1, 8, 8]))
    nodes = reshape + [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=group),
        helper.make_node(
            "BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n1"], name="bn1", epsilon=1e-5
        ),
        helper.make_node("Relu", ["n1"], ["a1"], name="relu1"),
        helper.make_node("AveragePool", ["a1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flatten1", axis=1),
        # Explicit alpha = beta = 1 with transB = 1: onnx-ir turns this Gemm into its `Linear`.
        helper.make_node("Gemm", ["f1", "fc_w", "fc_b"], ["logits"], name="fc", alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    m = model(
        "fheml_" + name,
        nodes,
        [
            helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 64])
            if flat_input
            else helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", in_channels, 8, 8])
        ],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    if group != 1:
        save(m, name)
        return
    xs = f32(np.random.default_rng(70).uniform(0.0, 1.0, size=(4, 1, 8, 8)))
    if flat_input:
        xs = xs.reshape(4, 64)
    save(m, name, xs, output_activation="softmax")


def maxpool():
    rng = np.random.default_rng(8)
    inits = [init("conv_w", rng.normal(size=(2, 1, 3, 3))), init("fc_w", rng.normal(size=(8, 3)))]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w"], ["c1"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["a1"], name="relu1"),
        helper.make_node("MaxPool", ["a1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flatten1"),
        helper.make_node("MatMul", ["f1", "fc_w"], ["y"], name="fc"),
    ]
    m = model(
        "fheml_maxpool",
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    xs = f32(np.random.default_rng(81).uniform(0.0, 1.0, size=(4, 1, 6, 6)))
    save(m, "maxpool", xs)


def transposed():
    rng = np.random.default_rng(10)
    n = lambda *shape: f32(rng.normal(size=shape) * 0.7)
    inits = [init("W1_t", n(6, 5)), init("b1", n(6)), init("W2", n(6, 2)), init("b2", n(2))]
    nodes = [
        helper.make_node("Transpose", ["W1_t"], ["W1"], name="transpose_w1", perm=[1, 0]),
        helper.make_node("MatMul", ["x", "W1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["y"], name="fc2"),
    ]
    m = model(
        "fheml_transposed",
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    xs = f32(np.random.default_rng(100).normal(size=(6, 5)))
    save(m, "transposed", xs)


def unsupported():
    rng = np.random.default_rng(9)
    inits = [init("W1", rng.normal(size=(4, 5))), init("W2", rng.normal(size=(5, 2)))]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h1"], name="fc1"),
        helper.make_node("Abs", ["h1"], ["a1"], name="abs1"),
        helper.make_node("MatMul", ["a1", "W2"], ["y"], name="fc2"),
    ]
    m = model(
        "fheml_unsupported",
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    save(m, "unsupported")


def residual():
    rng = np.random.default_rng(9)
    inits = [init("W", rng.normal(size=(4, 4))), init("b", rng.normal(size=4)), init("W_out", rng.normal(size=(4, 2)))]
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu1"),
        helper.make_node("Add", ["a", "x"], ["r"], name="skip_add"),
        helper.make_node("MatMul", ["r", "W_out"], ["y"], name="fc_out"),
    ]
    m = model(
        "fheml_residual",
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    save(m, "residual")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    mlp()
    binary()
    cnn()
    cnn("flat_cnn", flat_input=True)
    cnn("grouped_conv", group=2)
    maxpool()
    transposed()
    unsupported()
    residual()
