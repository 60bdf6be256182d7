//! Calibration: the ranges a network's values take on sample rows, and the scales and
//! roundings of its integers that follow from them.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use fheml_circuits::{Interval, RoundingMode, read_layout};
use fheml_quant::{PerFeatureQuantizer, QuantizerConfig, UniformQuantizer};

use super::{LOGIT_RESOLUTION_BITS, QuantSettings};
use crate::error::{NnError, Result};
use crate::network::{Layer, Network};

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
            return Err(NnError::Input(fheml_quant::DataError::FeatureCount {
                expected: network.n_inputs(),
                got: data.ncols(),
            }));
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

/// The step of a classifier's integer logits, whose channels have `scales` (float per
/// integer): [`LOGIT_RESOLUTION_BITS`] over the observed float spread in the coarsest
/// channel, a power of two, at least 1.
pub(super) fn logit_step(scales: &[f64], observed: Option<(f64, f64)>) -> u64 {
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
