//! Quantization of a [`Network`] and its lowering to an integer circuit.
//!
//! Every tensor of the lowered network is an integer tensor `X` with, per element, a scale
//! `s` and an integer zero point `z`: it stands for the floats `s·(X - z)`. Linear layers
//! fold the scales of their input into their weights, which are then quantized per output
//! channel (symmetric, `w_bits`), so the circuit only multiplies integers by integers:
//! they are leveled. Zero points and biases become one integer constant per output.
//! Each activation is one table lookup, per channel, that maps the (rounded) accumulator
//! straight to the next layer's `a_bits` activation integers: dequantization, the
//! activation and requantization all happen inside the bootstrap.
//!
//! Image tensors (`[C, H, W]` in the network) are laid out channels-last in the circuit so
//! that per-channel tables and convolution weights apply along the last axis; tensors of
//! other ranks keep their row-major layout.

use ndarray::{Array2, ArrayD, ArrayView2, IxDyn};
use serde::{Deserialize, Serialize};

use fheml_circuits::{
    CircuitBuilder, InputEncoding, InputSpec, Interval, Lut, ModelCircuit, NodeId, OutputSpec, PostProcessing,
    RoundingMode, Table, Task, read_layout,
};
use fheml_quant::{DataError, PerFeatureQuantizer, QuantizerConfig, UniformQuantizer};

use crate::error::{NnError, Result};
use crate::network::{Activation, Layer, Network};

/// Significant bits a regression network's output keeps under encryption: the runtime bounds
/// its decryption error in units of `2^(width - 8)` of its range (narrower outputs to the
/// unit).
pub const OUTPUT_RESOLUTION_BITS: u32 = 8;

/// Significant bits a classifier's logits keep under encryption, over the spread they take
/// on the training (or calibration) rows: the runtime bounds their decryption error in units
/// of `2^(⌊log2 spread⌋ - 10)` integers (at least one). Labels then flip only where the two
/// best logits lie within about a thousandth of that spread, which the compile report's
/// expected label flips measure; without a recorded spread logits keep their full integer
/// resolution.
pub const LOGIT_RESOLUTION_BITS: u32 = 10;

/// Widest input a table lookup can read (the circuit builder's limit).
const MAX_TABLE_BITS: u32 = 16;

/// Bit widths and rounding of the lowered network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantSettings {
    /// Weight bits (symmetric, per output channel).
    pub w_bits: u8,
    /// Activation bits (the output of every activation lookup).
    pub a_bits: u8,
    /// Bits each accumulator keeps before its activation lookup (`None`: no rounding, the
    /// lookup reads the whole accumulator).
    pub accumulator_bits: Option<u32>,
    /// How the accumulator rounding is carried out under encryption.
    pub rounding: RoundingMode,
}

impl Default for QuantSettings {
    fn default() -> Self {
        Self { w_bits: 3, a_bits: 3, accumulator_bits: Some(4), rounding: RoundingMode::Approximate }
    }
}

/// How the client's quantized features become the network's input: the client quantizes
/// each feature with `quantizer`, and the network sees `scale[i]·(q[i] - zero[i])`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputQuantization {
    /// The client's per-feature quantizers (on the raw features).
    pub quantizer: PerFeatureQuantizer,
    /// Network-side scale of each feature.
    pub scale: Vec<f64>,
    /// Network-side integer zero point of each feature.
    pub zero: Vec<i64>,
}

impl InputQuantization {
    /// Per-feature `n_bits` quantizers calibrated on `data`; the network reads the
    /// dequantized features (post-training quantization).
    pub fn calibrate(n_bits: u8, data: ArrayView2<f64>) -> Result<Self> {
        let config = QuantizerConfig::params().n_bits(n_bits).check()?;
        let quantizer = PerFeatureQuantizer::calibrate(&config, data)?;
        let scale = quantizer.quantizers().iter().map(UniformQuantizer::scale).collect();
        let zero = quantizer.quantizers().iter().map(UniformQuantizer::zero_point).collect();
        Ok(Self { quantizer, scale, zero })
    }

    /// One `n_bits` quantizer shared by every feature, calibrated on all of `data` (image
    /// inputs: convolutions share weights across positions, so they need one scale).
    pub fn calibrate_shared(n_bits: u8, data: ArrayView2<f64>) -> Result<Self> {
        let config = QuantizerConfig::params().n_bits(n_bits).check()?;
        let q = UniformQuantizer::calibrate(&config, data.iter().copied())?;
        let n = data.ncols();
        Ok(Self {
            quantizer: PerFeatureQuantizer::new(vec![q; n]),
            scale: vec![q.scale(); n],
            zero: vec![q.zero_point(); n],
        })
    }

    /// Per-feature quantizers for vector inputs, a shared one for image inputs, including a
    /// flat row that the network reshapes into an image for a convolution (a convolution's
    /// weights apply to every pixel of a channel, so its pixels must share one scale).
    pub fn for_network(network: &Network, n_bits: u8, data: ArrayView2<f64>) -> Result<Self> {
        if data.ncols() != network.n_inputs() {
            return Err(NnError::Input(DataError::FeatureCount { expected: network.n_inputs(), got: data.ncols() }));
        }
        let convolves_its_input = network
            .layers()
            .iter()
            .take_while(|l| !matches!(l, Layer::Dense { .. }))
            .any(|l| matches!(l, Layer::Conv2d { .. } | Layer::AvgPool2d { .. } | Layer::MaxPool2d { .. }));
        if network.input_shape().len() > 1 || convolves_its_input {
            Self::calibrate_shared(n_bits, data)
        } else {
            Self::calibrate(n_bits, data)
        }
    }

    /// The network input the circuit stands for, for one row of raw features.
    pub fn network_input(&self, row: &[f64]) -> Result<Vec<f64>> {
        let (q, _) = self.quantizer.quantize_row(row)?;
        Ok(q.iter().zip(&self.scale).zip(&self.zero).map(|((q, s), z)| s * (q - z) as f64).collect())
    }
}

/// Output range of every activation layer (`None` for other layers), measured on
/// calibration rows (post-training quantization) or during training.
pub fn calibrate_activations(network: &Network, rows: &[Vec<f64>]) -> Result<Vec<Option<(f64, f64)>>> {
    let mut ranges: Vec<Option<(f64, f64)>> = vec![None; network.layers().len()];
    for row in rows {
        for (i, out) in network.trace_row(row)?.iter().enumerate() {
            if !matches!(network.layers()[i], Layer::Activation(_)) {
                continue;
            }
            let (lo, hi) = out.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
            ranges[i] = Some(ranges[i].map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
    }
    Ok(ranges)
}

/// The quantizer of an activation's output.
pub fn activation_quantizer(a_bits: u8, range: (f64, f64)) -> Result<UniformQuantizer> {
    let config = QuantizerConfig::params().n_bits(a_bits).check()?;
    Ok(UniformQuantizer::from_range(&config, range.0, range.1)?)
}

/// Symmetric per-column quantization of `m` to `bits`: integer weights and column scales.
pub fn quantize_columns(m: &Array2<f64>, bits: u8) -> (Array2<i64>, Vec<f64>) {
    let levels = ((1i64 << (bits - 1)) - 1).max(1) as f64;
    let scales: Vec<f64> = m
        .columns()
        .into_iter()
        .map(|c| {
            let max = c.iter().fold(0f64, |a, v| a.max(v.abs()));
            if max > 0.0 { max / levels } else { 1.0 }
        })
        .collect();
    let q = Array2::from_shape_fn(m.dim(), |(i, j)| (m[[i, j]] / scales[j]).round_ties_even() as i64);
    (q, scales)
}

/// The low bits to drop from accumulators ranging over `ranges` so that the activation
/// lookup reads at most `accumulator_bits` (0: no rounding).
pub fn accumulator_rounding(ranges: &[Interval], settings: &QuantSettings) -> u32 {
    let Some(keep) = settings.accumulator_bits else { return 0 };
    let widest = ranges.iter().map(|r| r.span_bits().0).max().unwrap_or(1);
    if widest <= keep {
        return 0;
    }
    let mut lsbs = widest - keep;
    // Approximate roundings align boxes on multiples of 2^lsbs, which may cost one more box.
    while settings.rounding == RoundingMode::Approximate && lsbs < 62 {
        let rounding = fheml_circuits::FusedRounding { lsbs, mode: settings.rounding };
        if ranges.iter().all(|r| read_layout(*r, Some(rounding)).read_bits <= keep) {
            break;
        }
        lsbs += 1;
    }
    lsbs
}

/// An integer tensor of the circuit and what its elements stand for.
struct QTensor {
    node: NodeId,
    /// Shape in the network (`[n]` or `[C, H, W]`).
    logical: Vec<usize>,
    /// Per stored element (channels-last for images).
    scale: Vec<f64>,
    zero: Vec<i64>,
}

/// The step of a classifier's integer logits, whose channels have `scales` (float per
/// integer): [`LOGIT_RESOLUTION_BITS`] over the observed float spread in the coarsest
/// channel, a power of two, at least 1.
fn logit_step(scales: &[f64], observed: Option<(f64, f64)>) -> u64 {
    let coarsest = scales.iter().copied().filter(|s| s.is_finite() && *s > 0.0).fold(0f64, f64::max);
    match observed {
        Some((lo, hi)) if hi > lo && coarsest > 0.0 => {
            let spread = (hi - lo) / coarsest;
            let bits = spread.log2().floor() - LOGIT_RESOLUTION_BITS as f64;
            if bits >= 1.0 { 1u64 << (bits as u32).min(62) } else { 1 }
        }
        _ => 1,
    }
}

/// Stored (channels-last) flat index of `(c, h, w)` in a `[C, H, W]` tensor.
fn hwc(shape: &[usize], c: usize, h: usize, w: usize) -> usize {
    (h * shape[2] + w) * shape[0] + c
}

fn stored_shape(logical: &[usize]) -> Vec<usize> {
    match logical {
        [c, h, w] => vec![*h, *w, *c],
        other => other.to_vec(),
    }
}

/// For every stored element, its index in the row-major logical order.
fn logical_order(logical: &[usize]) -> Vec<usize> {
    match logical {
        &[c, h, w] => {
            let mut order = vec![0; c * h * w];
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        order[hwc(logical, ch, y, x)] = (ch * h + y) * w + x;
                    }
                }
            }
            order
        }
        other => (0..other.iter().product()).collect(),
    }
}

/// The scale of each channel (last stored axis), if it is the same over the channel.
fn channel_scales(t: &QTensor, what: &str) -> Result<Vec<f64>> {
    let channels = *stored_shape(&t.logical).last().unwrap_or(&1);
    let mut scales = vec![f64::NAN; channels];
    for (i, s) in t.scale.iter().enumerate() {
        let c = &mut scales[i % channels];
        if c.is_nan() {
            *c = *s;
        } else if (*c - s).abs() > 1e-12 * c.abs().max(s.abs()) {
            return Err(NnError::InvalidNetwork(format!("{what}: the scale varies within channel {}", i % channels)));
        }
    }
    Ok(scales)
}

struct Lowering<'a> {
    b: CircuitBuilder,
    settings: &'a QuantSettings,
    /// Per layer and channel, the least rounding to apply (what training used).
    min_rounding: &'a [Vec<u32>],
}

impl Lowering<'_> {
    fn dense(&mut self, x: QTensor, weight: &Array2<f64>, bias: &ndarray::Array1<f64>) -> Result<QTensor> {
        let effective = Array2::from_shape_fn(weight.dim(), |(i, j)| weight[[i, j]] * x.scale[i]);
        let (wq, scales) = quantize_columns(&effective, self.settings.w_bits);
        let constant: Vec<i64> = (0..weight.ncols())
            .map(|j| {
                let b = (bias[j] / scales[j]).round_ties_even() as i64;
                b - (0..weight.nrows()).map(|i| wq[[i, j]] * x.zero[i]).sum::<i64>()
            })
            .collect();
        let m = self.b.matmul(x.node, wq)?;
        let node = self.b.add_const(m, ArrayD::from_shape_vec(IxDyn(&[constant.len()]), constant).map_err(shape)?)?;
        Ok(QTensor { node, logical: vec![weight.ncols()], zero: vec![0; scales.len()], scale: scales })
    }

    fn zero_element(&mut self, x: &QTensor) -> Result<NodeId> {
        let one = self.b.gather(x.node, vec![0], &[1])?;
        Ok(self.b.mul_const(one, ArrayD::from_elem(IxDyn(&[1]), 0))?)
    }

    fn conv2d(
        &mut self,
        x: QTensor,
        weight: &ndarray::Array4<f64>,
        bias: &ndarray::Array1<f64>,
        stride: [usize; 2],
        pad: [usize; 4],
    ) -> Result<QTensor> {
        let (oc, ic, kh, kw) = weight.dim();
        let (h, w) = (x.logical[1], x.logical[2]);
        let oh = (h + pad[0] + pad[2] - kh) / stride[0] + 1;
        let ow = (w + pad[1] + pad[3] - kw) / stride[1] + 1;
        let in_scales = channel_scales(&x, "conv2d")?;
        let k = kh * kw * ic;
        let row = |u: usize, v: usize, c: usize| (u * kw + v) * ic + c;
        let mut effective = Array2::zeros((k, oc));
        for o in 0..oc {
            for c in 0..ic {
                for u in 0..kh {
                    for v in 0..kw {
                        effective[[row(u, v, c), o]] = weight[[o, c, u, v]] * in_scales[c];
                    }
                }
            }
        }
        let (wq, scales) = quantize_columns(&effective, self.settings.w_bits);
        // im2col: padded positions read an exact zero appended after the input.
        let n = h * w * ic;
        let flat = self.b.reshape(x.node, &[n])?;
        let zero = self.zero_element(&x)?;
        let padded = self.b.concat(&[flat, zero], 0)?;
        let mut indices = Vec::with_capacity(oh * ow * k);
        let mut constant = Vec::with_capacity(oh * ow * oc);
        for i in 0..oh {
            for j in 0..ow {
                let start = indices.len();
                for u in 0..kh {
                    for v in 0..kw {
                        for c in 0..ic {
                            let yy = (i * stride[0] + u) as isize - pad[0] as isize;
                            let xx = (j * stride[1] + v) as isize - pad[1] as isize;
                            let inside = yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w;
                            indices.push(if inside { hwc(&x.logical, c, yy as usize, xx as usize) } else { n });
                        }
                    }
                }
                for o in 0..oc {
                    let b = (bias[o] / scales[o]).round_ties_even() as i64;
                    let zeros: i64 = indices[start..]
                        .iter()
                        .enumerate()
                        .filter(|(_, src)| **src < n)
                        .map(|(r, src)| wq[[r, o]] * x.zero[*src])
                        .sum();
                    constant.push(b - zeros);
                }
            }
        }
        let cols = self.b.gather(padded, indices, &[oh, ow, k])?;
        let m = self.b.matmul(cols, wq)?;
        let c = ArrayD::from_shape_vec(IxDyn(&[oh, ow, oc]), constant).map_err(shape)?;
        let node = self.b.add_const(m, c)?;
        let scale = (0..oh * ow * oc).map(|e| scales[e % oc]).collect();
        Ok(QTensor { node, logical: vec![oc, oh, ow], scale, zero: vec![0; oh * ow * oc] })
    }

    fn avg_pool2d(&mut self, x: QTensor, kernel: [usize; 2], stride: [usize; 2]) -> Result<QTensor> {
        let (c, h, w) = (x.logical[0], x.logical[1], x.logical[2]);
        let (oh, ow) = ((h - kernel[0]) / stride[0] + 1, (w - kernel[1]) / stride[1] + 1);
        let in_scales = channel_scales(&x, "avg_pool2d")?;
        let area = kernel[0] * kernel[1];
        let mut indices = Vec::with_capacity(oh * ow * c * area);
        let mut zero = Vec::with_capacity(oh * ow * c);
        for i in 0..oh {
            for j in 0..ow {
                for ch in 0..c {
                    let mut z = 0;
                    for u in 0..kernel[0] {
                        for v in 0..kernel[1] {
                            let src = hwc(&x.logical, ch, i * stride[0] + u, j * stride[1] + v);
                            indices.push(src);
                            z += x.zero[src];
                        }
                    }
                    zero.push(z);
                }
            }
        }
        let windows = self.b.gather(x.node, indices, &[oh, ow, c, area])?;
        let node = self.b.sum(windows, 3)?;
        let scale = (0..oh * ow * c).map(|e| in_scales[e % c] / area as f64).collect();
        Ok(QTensor { node, logical: vec![c, oh, ow], scale, zero })
    }

    /// Max pooling in integers: within a channel every element has one scale and zero
    /// point, so the max of the integers is the integer of the max. Windows reduce pairwise,
    /// `max(a, b) = a + relu(b - a)`: one lookup per comparison, `kh·kw - 1` per window.
    fn max_pool2d(&mut self, x: QTensor, kernel: [usize; 2], stride: [usize; 2], layer: usize) -> Result<QTensor> {
        let (c, h, w) = (x.logical[0], x.logical[1], x.logical[2]);
        let (oh, ow) = ((h - kernel[0]) / stride[0] + 1, (w - kernel[1]) / stride[1] + 1);
        let in_scales = channel_scales(&x, "max_pool2d")?;
        let mut zeros = vec![None; c];
        for (e, z) in x.zero.iter().enumerate() {
            if zeros[e % c].is_some_and(|v| v != *z) {
                return Err(NnError::InvalidNetwork(format!(
                    "layer {layer}: max_pool2d needs one zero point per channel, channel {} has several",
                    e % c
                )));
            }
            zeros[e % c] = Some(*z);
        }
        // One node per window position `(u, v)`, each `[oh, ow, c]` (channels last).
        let mut operands = Vec::with_capacity(kernel[0] * kernel[1]);
        for u in 0..kernel[0] {
            for v in 0..kernel[1] {
                let mut indices = Vec::with_capacity(oh * ow * c);
                for i in 0..oh {
                    for j in 0..ow {
                        for ch in 0..c {
                            indices.push(hwc(&x.logical, ch, i * stride[0] + u, j * stride[1] + v));
                        }
                    }
                }
                operands.push(self.b.gather(x.node, indices, &[oh * ow * c])?);
            }
        }
        while operands.len() > 1 {
            let mut next = Vec::with_capacity(operands.len().div_ceil(2));
            for pair in operands.chunks(2) {
                let &[a, b] = pair else {
                    next.extend_from_slice(pair);
                    continue;
                };
                let difference = self.b.sub(b, a)?;
                let range = self.b.node_range(difference);
                if range.span_bits().0 > MAX_TABLE_BITS {
                    return Err(NnError::InvalidNetwork(format!(
                        "layer {layer}: max_pool2d compares values of {} bits, a table reads at most {MAX_TABLE_BITS}",
                        range.span_bits().0
                    )));
                }
                let relu = Table::from_fn(range.lo, range.span_bits().0, |t| t.max(0));
                let positive = self.b.lookup(difference, Lut::Single(relu))?;
                next.push(self.b.add(a, positive)?);
            }
            operands = next;
        }
        let node = self.b.reshape(operands[0], &[oh, ow, c])?;
        let n = oh * ow * c;
        Ok(QTensor {
            node,
            logical: vec![c, oh, ow],
            scale: (0..n).map(|e| in_scales[e % c]).collect(),
            zero: (0..n).map(|e| zeros[e % c].unwrap_or(0)).collect(),
        })
    }

    fn affine(&mut self, mut x: QTensor, a: &ArrayD<f64>, b: &ArrayD<f64>, layer: usize) -> Result<QTensor> {
        let dim = IxDyn(&x.logical);
        let bad = || NnError::InvalidNetwork(format!("layer {layer}: constant does not broadcast to {:?}", x.logical));
        let a: Vec<f64> = a.broadcast(dim.clone()).ok_or_else(bad)?.iter().copied().collect();
        let b: Vec<f64> = b.broadcast(dim).ok_or_else(bad)?.iter().copied().collect();
        let order = logical_order(&x.logical);
        let mut offsets = Vec::with_capacity(order.len());
        for (e, &l) in order.iter().enumerate() {
            if a[l] == 0.0 {
                return Err(NnError::InvalidNetwork(format!("layer {layer}: multiplication by zero")));
            }
            x.scale[e] *= a[l];
            offsets.push(b[l] / x.scale[e]);
        }
        // A shift that is not a whole number of steps is added on a 64x finer grid.
        let whole = offsets.iter().all(|o| (o - o.round()).abs() < 1e-6);
        if !whole {
            const FINER: i64 = 64;
            x.node = self.b.mul_const(x.node, ArrayD::from_elem(IxDyn(&[1]), FINER))?;
            for ((scale, zero), offset) in x.scale.iter_mut().zip(&mut x.zero).zip(&mut offsets) {
                *scale /= FINER as f64;
                *zero *= FINER;
                *offset *= FINER as f64;
            }
        }
        for (z, o) in x.zero.iter_mut().zip(&offsets) {
            *z -= o.round_ties_even() as i64;
        }
        Ok(x)
    }

    fn activation(&mut self, x: QTensor, f: Activation, range: Option<(f64, f64)>, layer: usize) -> Result<QTensor> {
        let range = range.ok_or_else(|| {
            NnError::InvalidNetwork(format!("layer {layer}: no calibrated range for the {} activation", f.name()))
        })?;
        let quantizer = activation_quantizer(self.settings.a_bits, range)?;
        let scales = channel_scales(&x, f.name())?;
        let channels = scales.len();
        let mut zeros = vec![None; channels];
        for (e, z) in x.zero.iter().enumerate() {
            let slot = &mut zeros[e % channels];
            if slot.is_some_and(|v| v != *z) {
                return Err(NnError::InvalidNetwork(format!(
                    "layer {layer}: the zero point varies within channel {}",
                    e % channels
                )));
            }
            *slot = Some(*z);
        }
        // Each channel drops just the bits its own accumulator range needs dropped: a
        // neuron with small weights keeps a finer grid than the widest one.
        let ranges = self.b.element_ranges(x.node).to_vec();
        let trained = self.min_rounding.get(layer);
        let lsbs: Vec<u32> = (0..channels)
            .map(|c| {
                let own: Vec<Interval> = ranges.iter().skip(c).step_by(channels).copied().collect();
                let at_least = trained.and_then(|t| t.get(c)).copied().unwrap_or(0);
                accumulator_rounding(&own, self.settings).max(at_least)
            })
            .collect();
        let mut groups: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for e in 0..ranges.len() {
            groups.entry(lsbs[e % channels]).or_default().push(e);
        }
        let (mut parts, mut order) = (Vec::new(), Vec::new());
        for (lsbs, elements) in groups {
            let picked = self.b.gather(x.node, elements.clone(), &[elements.len()])?;
            let source = if lsbs > 0 { self.b.round(picked, lsbs, self.settings.rounding)? } else { picked };
            let step = 2f64.powi(lsbs as i32);
            let widest = self.b.element_ranges(source).iter().map(|r| r.span_bits().0).max().unwrap_or(1);
            if widest > MAX_TABLE_BITS {
                return Err(NnError::InvalidParameter {
                    name: "accumulator_bits".into(),
                    reason: format!(
                        "layer {layer} ({}) reads accumulators of {widest} bits and a table lookup reads at most \
                         {MAX_TABLE_BITS}; round them with accumulator_bits (e.g. accumulator_bits=6) or use fewer \
                         w_bits, a_bits or n_bits",
                        f.name()
                    ),
                });
            }
            let tables = elements
                .iter()
                .zip(self.b.element_ranges(source))
                .map(|(&e, r)| {
                    let c = e % channels;
                    let span = (r.hi as i128 - r.lo as i128 + 1).max(1) as u128;
                    let bits = (128 - (span - 1).leading_zeros()).max(1);
                    let zero = zeros[c].unwrap_or(0) as f64;
                    Table::from_fn(r.lo, bits, |t| {
                        let pre = scales[c] * (t as f64 * step - zero);
                        quantizer.quantize_value(f.apply(pre)).map_or(quantizer.qmin(), |(q, _)| q)
                    })
                })
                .collect();
            parts.push(self.b.lookup(source, Lut::PerChannel(tables))?);
            order.extend(elements);
        }
        let joined = if parts.len() == 1 { parts[0] } else { self.b.concat(&parts, 0)? };
        let mut back = vec![0; order.len()];
        for (position, &e) in order.iter().enumerate() {
            back[e] = position;
        }
        let node = self.b.gather(joined, back, &stored_shape(&x.logical))?;
        let n = x.scale.len();
        Ok(QTensor {
            node,
            logical: x.logical,
            scale: vec![quantizer.scale(); n],
            zero: vec![quantizer.zero_point(); n],
        })
    }

    fn reshape(&mut self, x: QTensor, to: &[usize]) -> Result<QTensor> {
        if to == x.logical.as_slice() {
            return Ok(x);
        }
        // Move through the row-major logical order: stored → logical → new stored.
        let from_order = logical_order(&x.logical);
        let mut stored_of_logical = vec![0; from_order.len()];
        for (stored, &logical) in from_order.iter().enumerate() {
            stored_of_logical[logical] = stored;
        }
        let indices: Vec<usize> = logical_order(to).iter().map(|&l| stored_of_logical[l]).collect();
        let node = self.b.gather(x.node, indices.clone(), &stored_shape(to))?;
        Ok(QTensor {
            node,
            logical: to.to_vec(),
            scale: indices.iter().map(|&i| x.scale[i]).collect(),
            zero: indices.iter().map(|&i| x.zero[i]).collect(),
        })
    }
}

fn shape(e: ndarray::ShapeError) -> NnError {
    NnError::InvalidNetwork(e.to_string())
}

/// What the client does with the network's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDecoding {
    /// Network output to user units: `y·scale + offset` (e.g. an un-standardised target).
    pub scale: f64,
    /// See `scale`.
    pub offset: f64,
    /// Client-side post-processing (softmax for classifiers).
    pub post: PostProcessing,
    /// Class labels or regression.
    pub task: Task,
    /// The network's outputs range over this on the training (or calibration) rows, before
    /// `scale` and `offset`: it sets a classifier's logit resolution ([`LOGIT_RESOLUTION_BITS`]).
    pub observed_range: Option<(f64, f64)>,
}

impl OutputDecoding {
    /// Outputs as they are, for a regression.
    pub fn identity() -> Self {
        Self { scale: 1.0, offset: 0.0, post: PostProcessing::Identity, task: Task::Regression, observed_range: None }
    }
}

/// Lowers `network` with its input quantization and activation ranges.
///
/// `min_rounding[i][c]` (if present) is the least number of bits dropped from the
/// accumulator of channel `c` of activation layer `i` (what quantization-aware training used).
pub fn lower(
    network: &Network,
    input: &InputQuantization,
    activation_ranges: &[Option<(f64, f64)>],
    min_rounding: &[Vec<u32>],
    settings: &QuantSettings,
    decoding: OutputDecoding,
) -> Result<ModelCircuit> {
    if settings.w_bits < 2 || settings.w_bits > 16 || settings.a_bits < 1 || settings.a_bits > 16 {
        return Err(NnError::InvalidParameter {
            name: "w_bits/a_bits".into(),
            reason: format!(
                "weights need 2..=16 bits and activations 1..=16, got {} and {}",
                settings.w_bits, settings.a_bits
            ),
        });
    }
    let n = network.n_inputs();
    if input.quantizer.len() != n || input.scale.len() != n || input.zero.len() != n {
        return Err(NnError::Input(DataError::FeatureCount { expected: n, got: input.quantizer.len() }));
    }
    let mut lowering = Lowering { b: CircuitBuilder::new(), settings, min_rounding };
    let ranges = input.quantizer.quantizers().iter().map(|q| Interval { lo: q.qmin(), hi: q.qmax() }).collect();
    let flat = lowering.b.input_with_ranges(&[n], ranges)?;
    let mut x = QTensor { node: flat, logical: vec![n], scale: input.scale.clone(), zero: input.zero.clone() };
    x = lowering.reshape(x, network.input_shape())?;
    for (i, layer) in network.layers().iter().enumerate() {
        x = match layer {
            Layer::Dense { weight, bias } => lowering.dense(x, weight, bias)?,
            Layer::Conv2d { weight, bias, stride, padding } => lowering.conv2d(x, weight, bias, *stride, *padding)?,
            Layer::AvgPool2d { kernel, stride } => lowering.avg_pool2d(x, *kernel, *stride)?,
            Layer::MaxPool2d { kernel, stride } => lowering.max_pool2d(x, *kernel, *stride, i)?,
            Layer::Affine { scale, shift } => lowering.affine(x, scale, shift, i)?,
            Layer::Activation(Activation::Identity) => x,
            Layer::Activation(f) => lowering.activation(x, *f, activation_ranges.get(i).copied().flatten(), i)?,
            Layer::Reshape(to) => lowering.reshape(x, to)?,
        };
    }
    // Logits and regression values are real-valued outputs. A classifier's logits keep
    // LOGIT_RESOLUTION_BITS over the spread they were seen to take (labels flip when two
    // logits come within a few steps, which the static range says nothing about); a
    // regression value keeps OUTPUT_RESOLUTION_BITS significant bits of its range.
    let step = match decoding.task {
        Task::Classification { .. } => logit_step(&x.scale, decoding.observed_range),
        Task::Regression => 1u64 << lowering.b.node_range(x.node).span_bits().0.saturating_sub(OUTPUT_RESOLUTION_BITS),
    };
    lowering.b.output_real(x.node, step)?;
    let circuit = lowering.b.build()?;
    let (output_scale, output_offset) = (decoding.scale, decoding.offset);
    let output = OutputSpec {
        scale: x.scale.iter().map(|s| s * output_scale).collect(),
        offset: x.scale.iter().zip(&x.zero).map(|(s, z)| -s * *z as f64 * output_scale + output_offset).collect(),
        groups: 1,
    };
    Ok(ModelCircuit {
        circuit,
        inputs: vec![InputSpec { quantizer: input.quantizer.clone(), encoding: InputEncoding::Quantized }],
        outputs: vec![output],
        post: decoding.post,
        task: decoding.task,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array4, array};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    fn data(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f64> {
        Array2::from_shape_vec((rows, cols), random(rng, rows * cols)).unwrap()
    }

    /// Lowers with wide bits and compares the clear circuit with the float network.
    fn max_error(network: &Network, x: &Array2<f64>, settings: QuantSettings) -> f64 {
        let input = InputQuantization::for_network(network, 8, x.view()).unwrap();
        let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
        let ranges = calibrate_activations(network, &rows).unwrap();
        let model = lower(network, &input, &ranges, &[], &settings, OutputDecoding::identity()).unwrap();
        let mut worst = 0f64;
        for row in &rows {
            let float = network.forward_row(row).unwrap();
            let outputs = model.circuit.evaluate_clear(&model.encode(row).unwrap()).unwrap();
            let decoded = model.outputs[0].decode(&outputs[0]).unwrap();
            for (a, b) in float.iter().zip(&decoded) {
                worst = worst.max((a - b).abs());
            }
        }
        worst
    }

    const WIDE: QuantSettings =
        QuantSettings { w_bits: 10, a_bits: 10, accumulator_bits: Some(12), rounding: RoundingMode::Exact };

    #[test]
    fn wide_mlp_matches_float() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let net = Network::new(
            vec![4],
            vec![
                Layer::Dense { weight: data(&mut rng, 4, 6), bias: Array1::from(random(&mut rng, 6)) },
                Layer::Activation(Activation::Tanh),
                Layer::Affine { scale: array![2.0].into_dyn(), shift: array![0.3].into_dyn() },
                Layer::Dense { weight: data(&mut rng, 6, 3), bias: Array1::from(random(&mut rng, 3)) },
            ],
        )
        .unwrap();
        let x = data(&mut rng, 40, 4);
        let err = max_error(&net, &x, WIDE);
        assert!(err < 0.05, "max error {err}");
    }

    #[test]
    fn wide_cnn_matches_float() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let conv = Array4::from_shape_vec((2, 1, 3, 3), random(&mut rng, 18)).unwrap();
        let net = Network::new(
            vec![1, 5, 5],
            vec![
                Layer::Conv2d { weight: conv, bias: array![0.1, -0.2], stride: [1, 1], padding: [1, 1, 1, 1] },
                Layer::Affine {
                    scale: Array1::from(vec![1.5, 0.5]).into_shape_with_order((2, 1, 1)).unwrap().into_dyn(),
                    shift: Array1::from(vec![0.1, -0.3]).into_shape_with_order((2, 1, 1)).unwrap().into_dyn(),
                },
                Layer::Activation(Activation::Relu),
                Layer::AvgPool2d { kernel: [2, 2], stride: [2, 2] },
                Layer::Reshape(vec![8]),
                Layer::Dense { weight: data(&mut rng, 8, 3), bias: Array1::from(random(&mut rng, 3)) },
            ],
        )
        .unwrap();
        let x = data(&mut rng, 30, 25);
        let err = max_error(&net, &x, WIDE);
        assert!(err < 0.05, "max error {err}");
    }

    #[test]
    fn rounding_keeps_the_requested_read_precision() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net = Network::new(
            vec![8],
            vec![
                Layer::Dense { weight: data(&mut rng, 8, 16), bias: Array1::from(random(&mut rng, 16)) },
                Layer::Activation(Activation::Relu),
                Layer::Dense { weight: data(&mut rng, 16, 2), bias: Array1::zeros(2) },
            ],
        )
        .unwrap();
        let x = data(&mut rng, 50, 8);
        let input = InputQuantization::calibrate(3, x.view()).unwrap();
        let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
        let ranges = calibrate_activations(&net, &rows).unwrap();
        let settings = QuantSettings::default();
        let model = lower(&net, &input, &ranges, &[], &settings, OutputDecoding::identity()).unwrap();
        let cost = model.circuit.cost();
        assert_eq!(cost.bootstraps, 16);
        assert!(cost.max_precision.0 <= 4, "{}", cost.max_precision);
        // The quantized network still tracks the float one.
        let agree = rows
            .iter()
            .filter(|r| {
                let f = net.forward_row(r).unwrap();
                let q = model.predict_clear(r).unwrap().scores;
                (f[0] > f[1]) == (q[0] > q[1])
            })
            .count();
        assert!(agree >= 35, "{agree}/50");
    }
}
