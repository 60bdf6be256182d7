//! A float network as a chain of layers, the common form of trained MLPs and imported
//! ONNX graphs before quantization.
//!
//! Shapes are per sample (no batch axis). Image tensors are `[channels, height, width]`
//! as in ONNX; a layer's weights follow ONNX's layouts too, so an importer copies them.

use ndarray::{Array1, Array2, Array4, ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

use crate::error::{NnError, Result};

/// An element-wise activation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x` for `x >= 0`, `alpha·x` otherwise.
    LeakyRelu {
        /// Slope of the negative side.
        alpha: f64,
    },
    /// `x` for `x > 0`, `alpha·(e^x - 1)` otherwise.
    Elu {
        /// Scale of the negative side.
        alpha: f64,
    },
    /// `x·sigmoid(x)` (swish).
    Silu,
    /// `ln(1 + e^x)`.
    Softplus,
    /// `clamp(x, 0, 6)`.
    Relu6,
    /// `x` itself (a layer without activation).
    Identity,
}

impl Activation {
    /// Names accepted by [`Activation::from_name`].
    pub const NAMES: &'static [&'static str] =
        &["relu", "sigmoid", "tanh", "leaky_relu", "elu", "silu", "softplus", "relu6", "identity"];

    /// Parses a name (`leaky_relu` uses slope 0.01, `elu` alpha 1).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "relu" => Self::Relu,
            "sigmoid" => Self::Sigmoid,
            "tanh" => Self::Tanh,
            "leaky_relu" => Self::LeakyRelu { alpha: 0.01 },
            "elu" => Self::Elu { alpha: 1.0 },
            "silu" | "swish" => Self::Silu,
            "softplus" => Self::Softplus,
            "relu6" => Self::Relu6,
            "identity" | "linear" => Self::Identity,
            _ => return None,
        })
    }

    /// The name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::Sigmoid => "sigmoid",
            Self::Tanh => "tanh",
            Self::LeakyRelu { .. } => "leaky_relu",
            Self::Elu { .. } => "elu",
            Self::Silu => "silu",
            Self::Softplus => "softplus",
            Self::Relu6 => "relu6",
            Self::Identity => "identity",
        }
    }

    /// Applies the activation to one value.
    pub fn apply(&self, x: f64) -> f64 {
        match *self {
            Self::Relu => x.max(0.0),
            Self::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Self::Tanh => x.tanh(),
            Self::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Self::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x.exp_m1()
                }
            }
            Self::Silu => x / (1.0 + (-x).exp()),
            Self::Softplus => {
                // Stable for large |x|.
                x.max(0.0) + (-x.abs()).exp().ln_1p()
            }
            Self::Relu6 => x.clamp(0.0, 6.0),
            Self::Identity => x,
        }
    }
}

/// One layer of a [`Network`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Layer {
    /// `y = x·W + b` on a vector: `weight` is `[inputs, outputs]`.
    Dense {
        /// `[inputs, outputs]`.
        weight: Array2<f64>,
        /// `[outputs]`.
        bias: Array1<f64>,
    },
    /// 2-D convolution of a `[C, H, W]` tensor (ONNX `Conv`, one group, no dilation).
    Conv2d {
        /// `[out_channels, in_channels, kernel_h, kernel_w]`.
        weight: Array4<f64>,
        /// `[out_channels]`.
        bias: Array1<f64>,
        /// `[stride_h, stride_w]`.
        stride: [usize; 2],
        /// Zero padding `[top, left, bottom, right]`.
        padding: [usize; 4],
    },
    /// Average pooling of a `[C, H, W]` tensor over `kernel` windows (no padding).
    AvgPool2d {
        /// `[kernel_h, kernel_w]`.
        kernel: [usize; 2],
        /// `[stride_h, stride_w]`.
        stride: [usize; 2],
    },
    /// `y = x ⊙ scale + shift`, both broadcast (numpy rules) to the tensor's shape: batch
    /// normalisation, and addition, subtraction or multiplication by a constant.
    Affine {
        /// Multiplier.
        scale: ArrayD<f64>,
        /// Addend.
        shift: ArrayD<f64>,
    },
    /// An element-wise activation.
    Activation(Activation),
    /// Same elements in row-major order, new shape (ONNX `Flatten` and `Reshape`).
    Reshape(Vec<usize>),
    /// Max pooling of a `[C, H, W]` tensor over `kernel` windows (no padding). Under
    /// encryption each window costs `kh·kw - 1` lookups: `max(a, b) = a + relu(b - a)`.
    MaxPool2d {
        /// `[kernel_h, kernel_w]`.
        kernel: [usize; 2],
        /// `[stride_h, stride_w]`.
        stride: [usize; 2],
    },
}

impl Layer {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Layer::Dense { .. } => "dense",
            Layer::Conv2d { .. } => "conv2d",
            Layer::AvgPool2d { .. } => "avg_pool2d",
            Layer::MaxPool2d { .. } => "max_pool2d",
            Layer::Affine { .. } => "affine",
            Layer::Activation(_) => "activation",
            Layer::Reshape(_) => "reshape",
        }
    }

    /// The output shape for an input of `shape`, or why the layer cannot take it.
    pub fn output_shape(&self, shape: &[usize]) -> std::result::Result<Vec<usize>, String> {
        match self {
            Layer::Dense { weight, bias } => {
                if shape != [weight.nrows()] {
                    return Err(format!("expects a vector of {} values, got shape {shape:?}", weight.nrows()));
                }
                if bias.len() != weight.ncols() {
                    return Err(format!("{} biases for {} outputs", bias.len(), weight.ncols()));
                }
                Ok(vec![weight.ncols()])
            }
            Layer::Conv2d { weight, bias, stride, padding } => {
                let &[c, h, w] = shape else {
                    return Err(format!("expects a [channels, height, width] tensor, got shape {shape:?}"));
                };
                let (oc, ic, kh, kw) = weight.dim();
                if ic != c {
                    return Err(format!("expects {ic} input channels, got {c}"));
                }
                if bias.len() != oc {
                    return Err(format!("{} biases for {oc} output channels", bias.len()));
                }
                if stride.contains(&0) || kh == 0 || kw == 0 {
                    return Err("zero stride or kernel".into());
                }
                let (ph, pw) = (h + padding[0] + padding[2], w + padding[1] + padding[3]);
                if ph < kh || pw < kw {
                    return Err(format!("kernel {kh}x{kw} larger than the padded input {ph}x{pw}"));
                }
                Ok(vec![oc, (ph - kh) / stride[0] + 1, (pw - kw) / stride[1] + 1])
            }
            Layer::AvgPool2d { kernel, stride } | Layer::MaxPool2d { kernel, stride } => {
                let &[c, h, w] = shape else {
                    return Err(format!("expects a [channels, height, width] tensor, got shape {shape:?}"));
                };
                if stride.contains(&0) || kernel.contains(&0) {
                    return Err("zero stride or kernel".into());
                }
                if h < kernel[0] || w < kernel[1] {
                    return Err(format!("kernel {kernel:?} larger than the input {h}x{w}"));
                }
                Ok(vec![c, (h - kernel[0]) / stride[0] + 1, (w - kernel[1]) / stride[1] + 1])
            }
            Layer::Affine { scale, shift } => {
                for (what, a) in [("scale", scale), ("shift", shift)] {
                    if a.broadcast(IxDyn(shape)).is_none() {
                        return Err(format!("{what} of shape {:?} does not broadcast to {shape:?}", a.shape()));
                    }
                }
                Ok(shape.to_vec())
            }
            Layer::Activation(_) => Ok(shape.to_vec()),
            Layer::Reshape(to) => {
                if to.iter().product::<usize>() != shape.iter().product::<usize>() {
                    return Err(format!("cannot reshape {shape:?} into {to:?}"));
                }
                Ok(to.clone())
            }
        }
    }

    /// Evaluates the layer on one sample.
    pub fn forward(&self, x: &ArrayD<f64>) -> ArrayD<f64> {
        match self {
            Layer::Dense { weight, bias } => {
                let v = x.view().into_shape_with_order(weight.nrows()).map(|v| v.dot(weight) + bias);
                v.map(|y| y.into_dyn()).unwrap_or_else(|_| x.clone())
            }
            Layer::Conv2d { weight, bias, stride, padding } => conv2d(x, weight, bias, *stride, *padding),
            Layer::AvgPool2d { kernel, stride } => {
                pool2d(x, *kernel, *stride, |window| window.iter().sum::<f64>() / window.len() as f64)
            }
            Layer::MaxPool2d { kernel, stride } => {
                pool2d(x, *kernel, *stride, |window| window.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            }
            Layer::Affine { scale, shift } => {
                let mut y = x.clone();
                if let (Some(a), Some(b)) = (scale.broadcast(x.raw_dim()), shift.broadcast(x.raw_dim())) {
                    ndarray::Zip::from(&mut y).and(&a).and(&b).for_each(|v, a, b| *v = *v * a + b);
                }
                y
            }
            Layer::Activation(f) => x.mapv(|v| f.apply(v)),
            Layer::Reshape(to) => {
                x.as_standard_layout().into_owned().into_shape_with_order(IxDyn(to)).unwrap_or_else(|_| x.clone())
            }
        }
    }
}

/// `[C, H, W]` image element at `(c, y, x)` of the zero-padded input, or 0 in the padding.
fn padded(x: &ArrayD<f64>, c: usize, y: isize, xx: isize) -> f64 {
    if y < 0 || xx < 0 {
        return 0.0;
    }
    x.get(IxDyn(&[c, y as usize, xx as usize])).copied().unwrap_or(0.0)
}

fn conv2d(x: &ArrayD<f64>, w: &Array4<f64>, b: &Array1<f64>, stride: [usize; 2], pad: [usize; 4]) -> ArrayD<f64> {
    let (oc, ic, kh, kw) = w.dim();
    let shape = x.shape();
    let (h, wd) = (shape[1], shape[2]);
    let oh = (h + pad[0] + pad[2] - kh) / stride[0] + 1;
    let ow = (wd + pad[1] + pad[3] - kw) / stride[1] + 1;
    let mut y = ArrayD::zeros(IxDyn(&[oc, oh, ow]));
    for o in 0..oc {
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = b[o];
                for c in 0..ic {
                    for u in 0..kh {
                        for v in 0..kw {
                            let yy = (i * stride[0] + u) as isize - pad[0] as isize;
                            let xx = (j * stride[1] + v) as isize - pad[1] as isize;
                            acc += w[[o, c, u, v]] * padded(x, c, yy, xx);
                        }
                    }
                }
                y[[o, i, j]] = acc;
            }
        }
    }
    y
}

/// Pools every `kernel` window of a `[C, H, W]` image with `reduce`.
fn pool2d(x: &ArrayD<f64>, kernel: [usize; 2], stride: [usize; 2], reduce: impl Fn(&[f64]) -> f64) -> ArrayD<f64> {
    let shape = x.shape();
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let (oh, ow) = ((h - kernel[0]) / stride[0] + 1, (w - kernel[1]) / stride[1] + 1);
    let mut y = ArrayD::zeros(IxDyn(&[c, oh, ow]));
    let mut window = Vec::with_capacity(kernel[0] * kernel[1]);
    for ch in 0..c {
        for i in 0..oh {
            for j in 0..ow {
                window.clear();
                for u in 0..kernel[0] {
                    for v in 0..kernel[1] {
                        window.push(x[[ch, i * stride[0] + u, j * stride[1] + v]]);
                    }
                }
                y[[ch, i, j]] = reduce(&window);
            }
        }
    }
    y
}

/// A validated chain of layers from an input shape to an output vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    input_shape: Vec<usize>,
    layers: Vec<Layer>,
    /// Shape after each layer.
    shapes: Vec<Vec<usize>>,
}

impl Network {
    /// Checks every layer against the shape it receives.
    pub fn new(input_shape: Vec<usize>, layers: Vec<Layer>) -> Result<Self> {
        if input_shape.is_empty() || input_shape.contains(&0) {
            return Err(NnError::InvalidNetwork(format!("input shape {input_shape:?}")));
        }
        if layers.is_empty() {
            return Err(NnError::InvalidNetwork("a network needs at least one layer".into()));
        }
        let mut shapes = Vec::with_capacity(layers.len());
        let mut shape = input_shape.clone();
        for (i, layer) in layers.iter().enumerate() {
            let finite = match layer {
                Layer::Dense { weight, bias } => weight.iter().chain(bias).all(|v| v.is_finite()),
                Layer::Conv2d { weight, bias, .. } => weight.iter().chain(bias).all(|v| v.is_finite()),
                Layer::Affine { scale, shift } => scale.iter().chain(shift).all(|v| v.is_finite()),
                Layer::Activation(Activation::LeakyRelu { alpha } | Activation::Elu { alpha }) => alpha.is_finite(),
                _ => true,
            };
            if !finite {
                return Err(NnError::InvalidNetwork(format!(
                    "layer {i} ({}) has a NaN or infinite value",
                    layer.name()
                )));
            }
            shape = layer
                .output_shape(&shape)
                .map_err(|why| NnError::InvalidNetwork(format!("layer {i} ({}): {why}", layer.name())))?;
            shapes.push(shape.clone());
        }
        if shape.len() != 1 {
            return Err(NnError::InvalidNetwork(format!("the output must be a vector, got shape {shape:?}")));
        }
        Ok(Self { input_shape, layers, shapes })
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Number of input values per sample.
    pub fn n_inputs(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Number of outputs per sample.
    pub fn n_outputs(&self) -> usize {
        self.shapes.last().map_or(0, |s| s.iter().product())
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Output shape of layer `i`.
    pub fn shape_after(&self, i: usize) -> &[usize] {
        &self.shapes[i]
    }

    /// Evaluates one sample given as a flat row.
    pub fn forward_row(&self, row: &[f64]) -> Result<Vec<f64>> {
        Ok(self.trace_row(row)?.pop().map(|y| y.into_iter().collect()).unwrap_or_default())
    }

    /// The output of every layer for one flat row.
    pub fn trace_row(&self, row: &[f64]) -> Result<Vec<ArrayD<f64>>> {
        if row.len() != self.n_inputs() {
            return Err(NnError::Input(fheml_quant::DataError::FeatureCount {
                expected: self.n_inputs(),
                got: row.len(),
            }));
        }
        let mut x = ArrayD::from_shape_vec(IxDyn(&self.input_shape), row.to_vec())
            .map_err(|e| NnError::InvalidNetwork(e.to_string()))?;
        let mut trace = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            x = layer.forward(&x);
            trace.push(x.clone());
        }
        Ok(trace)
    }

    /// Evaluates every row of `x` (`[samples, n_inputs]`).
    pub fn forward(&self, x: ndarray::ArrayView2<f64>) -> Result<Array2<f64>> {
        let mut out = Array2::zeros((x.nrows(), self.n_outputs()));
        for (i, row) in x.axis_iter(Axis(0)).enumerate() {
            let y = self.forward_row(&row.to_vec())?;
            out.row_mut(i).assign(&Array1::from(y));
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn dense_relu_dense_forward() {
        let net = Network::new(
            vec![2],
            vec![
                Layer::Dense { weight: array![[1.0, -1.0], [2.0, 0.5]], bias: array![0.0, 1.0] },
                Layer::Activation(Activation::Relu),
                Layer::Dense { weight: array![[1.0], [1.0]], bias: array![-0.5] },
            ],
        )
        .unwrap();
        // x = [1, 2]: hidden = [5, 1 - 1 + ... ] = [1+4, -1+1+1] = [5, 1] → 6 - 0.5.
        assert_eq!(net.forward_row(&[1.0, 2.0]).unwrap(), vec![5.5]);
    }

    #[test]
    fn conv_pool_flatten_shapes_and_values() {
        let weight = Array4::from_elem((2, 1, 2, 2), 1.0);
        let net = Network::new(
            vec![1, 3, 3],
            vec![
                Layer::Conv2d { weight, bias: array![0.0, 1.0], stride: [1, 1], padding: [0, 0, 1, 1] },
                Layer::AvgPool2d { kernel: [3, 3], stride: [1, 1] },
                Layer::Reshape(vec![2]),
            ],
        )
        .unwrap();
        assert_eq!(net.shape_after(0), &[2, 3, 3]);
        let y = net.forward_row(&[1.0; 9]).unwrap();
        // Window sums over the padded 3x3 of ones: [[4,4,2],[4,4,2],[2,2,1]], mean 25/9.
        assert!((y[0] - 25.0 / 9.0).abs() < 1e-12 && (y[1] - 34.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn bad_shapes_are_refused_with_the_layer() {
        let err = Network::new(vec![3], vec![Layer::Dense { weight: Array2::zeros((2, 1)), bias: Array1::zeros(1) }])
            .unwrap_err();
        assert!(err.to_string().contains("layer 0 (dense)"), "{err}");
        let err = Network::new(vec![2], vec![Layer::Activation(Activation::Relu)]).map(|_| ());
        assert!(err.is_ok());
        let err = Network::new(vec![1, 2, 2], vec![Layer::Activation(Activation::Relu)]).unwrap_err();
        assert!(err.to_string().contains("vector"), "{err}");
    }
}
