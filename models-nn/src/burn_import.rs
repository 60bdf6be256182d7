//! Networks trained with burn: layers read from burn modules, and a small float CNN trainer
//! (post-training quantization then makes it an FHE model, see [`crate::NnModel::from_network`]).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData, activation};
use ndarray::{Array1, Array2, Array4, ArrayView1, ArrayView2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{NnError, Result};
use crate::network::{Activation, Layer, Network};
use crate::train::{cross_entropy, tensor_values};

/// A burn `Linear` (weights `[d_in, d_out]`, `y = x·W + b`) as a dense layer.
pub fn dense_from_burn(linear: &Linear) -> Result<Layer> {
    let [rows, cols] = linear.weight.val().dims();
    let weight = Array2::from_shape_vec((rows, cols), tensor_values(linear.weight.val())?)
        .map_err(|e| NnError::InvalidNetwork(e.to_string()))?;
    let bias = match &linear.bias {
        Some(b) => Array1::from(tensor_values(b.val())?),
        None => Array1::zeros(cols),
    };
    Ok(Layer::Dense { weight, bias })
}

/// A burn `Conv2d` (one group, no dilation, valid or explicit padding) as a convolution layer.
pub fn conv_from_burn(conv: &Conv2d) -> Result<Layer> {
    if conv.groups != 1 || conv.dilation != [1, 1] {
        return Err(NnError::InvalidNetwork("grouped or dilated burn convolutions are not supported".into()));
    }
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
        PaddingConfig2d::Same => {
            return Err(NnError::InvalidNetwork("burn `Same` padding: use explicit padding".into()));
        }
    };
    let [o, i, kh, kw] = conv.weight.val().dims();
    let weight = Array4::from_shape_vec((o, i, kh, kw), tensor_values(conv.weight.val())?)
        .map_err(|e| NnError::InvalidNetwork(e.to_string()))?;
    let bias = match &conv.bias {
        Some(b) => Array1::from(tensor_values(b.val())?),
        None => Array1::zeros(o),
    };
    Ok(Layer::Conv2d { weight, bias, stride: conv.stride, padding })
}

/// A burn MLP (its `Linear` layers in order, `activation` between them) as a [`Network`].
pub fn mlp_from_burn(linears: &[Linear], activation: Activation) -> Result<Network> {
    let first = linears.first().ok_or_else(|| NnError::InvalidNetwork("no layer".into()))?;
    let [n_in, _] = first.weight.val().dims();
    let mut layers = Vec::new();
    for (i, linear) in linears.iter().enumerate() {
        if i > 0 {
            layers.push(Layer::Activation(activation));
        }
        layers.push(dense_from_burn(linear)?);
    }
    Network::new(vec![n_in], layers)
}

/// A small CNN for square single-channel images: a strided 3x3 convolution, ReLU, and a
/// dense layer to the classes.
#[derive(Module, Debug)]
pub struct SmallCnn {
    conv: Conv2d,
    dense: Linear,
}

/// Hyperparameters of [`train_small_cnn`].
#[derive(Debug, Clone)]
pub struct CnnSetup {
    /// Image side (the input has `side²` pixels, row-major).
    pub side: usize,
    /// Convolution output channels.
    pub channels: usize,
    /// Convolution stride.
    pub stride: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Rows per step.
    pub batch_size: usize,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
}

impl SmallCnn {
    fn new(setup: &CnnSetup, classes: usize, device: &Device) -> Self {
        let conv = Conv2dConfig::new([1, setup.channels], [3, 3])
            .with_stride([setup.stride, setup.stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device);
        let out = (setup.side + 2 - 3) / setup.stride + 1;
        let dense = LinearConfig::new(setup.channels * out * out, classes).init(device);
        Self { conv, dense }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let h = activation::relu(self.conv.forward(x));
        let [b, c, hh, ww] = h.dims();
        self.dense.forward(h.reshape([b, c * hh * ww]))
    }

    /// The trained network as fheml layers (`[1, side, side]` input).
    pub fn to_network(&self, side: usize) -> Result<Network> {
        let conv = conv_from_burn(&self.conv)?;
        let dense = dense_from_burn(&self.dense)?;
        let [features, _] = self.dense.weight.val().dims();
        Network::new(
            vec![1, side, side],
            vec![conv, Layer::Activation(Activation::Relu), Layer::Reshape(vec![features]), dense],
        )
    }
}

/// Trains [`SmallCnn`] in float on images (`[rows, side²]`) with class indices `y`.
pub fn train_small_cnn(setup: &CnnSetup, x: ArrayView2<f64>, y: ArrayView1<usize>) -> Result<Network> {
    let (n, pixels) = x.dim();
    if n == 0 || pixels != setup.side * setup.side || y.len() != n {
        return Err(NnError::Data(format!("{n} rows of {pixels} pixels for {} labels, side {}", y.len(), setup.side)));
    }
    let classes = y.iter().max().map_or(0, |m| m + 1).max(2);
    let device = Device::flex().autodiff();
    device.seed(setup.seed);
    let mut model = SmallCnn::new(setup, classes, &device);
    let mut optimizer = AdamConfig::new().init();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(setup.seed);
    for _ in 0..setup.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(setup.batch_size.max(1)) {
            let rows: Vec<f32> =
                batch.iter().flat_map(|&i| x.row(i).iter().map(|v| *v as f32).collect::<Vec<_>>()).collect();
            let images =
                Tensor::<4>::from_data(TensorData::new(rows, [batch.len(), 1, setup.side, setup.side]), &device);
            let labels: Vec<usize> = batch.iter().map(|&i| y[i]).collect();
            let loss = cross_entropy(model.forward(images), &labels, classes, &device);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(setup.learning_rate, model, grads);
        }
    }
    model.to_network(setup.side)
}
