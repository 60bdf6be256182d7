//! Lowering, layer by layer: each network layer becomes leveled circuit operations on
//! integers, and each activation one table lookup per channel.

use ndarray::{Array2, ArrayD, IxDyn};

use fheml_circuits::{CircuitBuilder, Interval, Lut, NodeId, Table};

use super::calibrate::{accumulator_rounding, activation_quantizer, quantize_columns};
use super::layout::{QTensor, channel_scales, hwc, logical_order, stored_shape};
use super::{MAX_TABLE_BITS, QuantSettings};
use crate::error::{NnError, Result};
use crate::network::Activation;

pub(super) struct Lowering<'a> {
    pub(super) b: CircuitBuilder,
    pub(super) settings: &'a QuantSettings,
    /// Per layer and channel, the least rounding to apply (what training used).
    pub(super) min_rounding: &'a [Vec<u32>],
}

impl Lowering<'_> {
    pub(super) fn dense(&mut self, x: QTensor, weight: &Array2<f64>, bias: &ndarray::Array1<f64>) -> Result<QTensor> {
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

    pub(super) fn conv2d(
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

    pub(super) fn avg_pool2d(&mut self, x: QTensor, kernel: [usize; 2], stride: [usize; 2]) -> Result<QTensor> {
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
    pub(super) fn max_pool2d(
        &mut self,
        x: QTensor,
        kernel: [usize; 2],
        stride: [usize; 2],
        layer: usize,
    ) -> Result<QTensor> {
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

    pub(super) fn affine(&mut self, mut x: QTensor, a: &ArrayD<f64>, b: &ArrayD<f64>, layer: usize) -> Result<QTensor> {
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

    pub(super) fn activation(
        &mut self,
        x: QTensor,
        f: Activation,
        range: Option<(f64, f64)>,
        layer: usize,
    ) -> Result<QTensor> {
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

    pub(super) fn reshape(&mut self, x: QTensor, to: &[usize]) -> Result<QTensor> {
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
