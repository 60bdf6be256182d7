//! How the network's tensors lie in the circuit: integers with per-element scales and zero
//! points, images stored channels-last.

use fheml_circuits::NodeId;

use crate::error::{NnError, Result};

/// An integer tensor of the circuit and what its elements stand for.
pub(super) struct QTensor {
    pub(super) node: NodeId,
    /// Shape in the network (`[n]` or `[C, H, W]`).
    pub(super) logical: Vec<usize>,
    /// Per stored element (channels-last for images).
    pub(super) scale: Vec<f64>,
    pub(super) zero: Vec<i64>,
}

/// Stored (channels-last) flat index of `(c, h, w)` in a `[C, H, W]` tensor.
pub(super) fn hwc(shape: &[usize], c: usize, h: usize, w: usize) -> usize {
    (h * shape[2] + w) * shape[0] + c
}

pub(super) fn stored_shape(logical: &[usize]) -> Vec<usize> {
    match logical {
        [c, h, w] => vec![*h, *w, *c],
        other => other.to_vec(),
    }
}

/// For every stored element, its index in the row-major logical order.
pub(super) fn logical_order(logical: &[usize]) -> Vec<usize> {
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
pub(super) fn channel_scales(t: &QTensor, what: &str) -> Result<Vec<f64>> {
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
