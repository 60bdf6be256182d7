//! Value ranges and bit widths.
//!
//! Static ranges are derived while the circuit is built, from the inputs' declared
//! intervals and the constants; they contain every value any admissible input can
//! produce. [`observed_ranges`] gives the (narrower) ranges seen on calibration data.

use serde::{Deserialize, Serialize};

use crate::error::{CircuitError, Result};
use crate::ir::{Circuit, NodeId};

/// A closed integer interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interval {
    /// Smallest value.
    pub lo: i64,
    /// Largest value.
    pub hi: i64,
}

/// A number of bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BitWidth(pub u32);

impl std::fmt::Display for BitWidth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bits", self.0)
    }
}

impl Interval {
    /// `[lo, hi]`; `None` when `lo > hi`.
    pub fn new(lo: i64, hi: i64) -> Option<Self> {
        (lo <= hi).then_some(Self { lo, hi })
    }

    /// The single value `v`.
    pub fn point(v: i64) -> Self {
        Self { lo: v, hi: v }
    }

    /// Whether `v` lies inside.
    pub fn contains(&self, v: i64) -> bool {
        self.lo <= v && v <= self.hi
    }

    /// Smallest interval containing all of `items` (`[0, 0]` for none).
    pub fn hull(items: impl IntoIterator<Item = Interval>) -> Self {
        items
            .into_iter()
            .reduce(|a, b| Interval { lo: a.lo.min(b.lo), hi: a.hi.max(b.hi) })
            .unwrap_or(Interval::point(0))
    }

    /// Bits of a two's-complement integer holding every value (sign bit included when
    /// `lo < 0`).
    pub fn signed_bits(&self) -> BitWidth {
        let magnitude_bits = |v: i64| 64 - v.leading_zeros();
        if self.lo < 0 {
            // v < 0 needs bits(!v) + 1 (e.g. -1 -> 1 bit, -2 -> 2 bits).
            let neg = magnitude_bits(!self.lo) + 1;
            let pos = if self.hi > 0 { magnitude_bits(self.hi) + 1 } else { 1 };
            BitWidth(neg.max(pos))
        } else {
            BitWidth(magnitude_bits(self.hi).max(1))
        }
    }

    /// Bits needed for `v - lo` over the interval: the precision a lookup reading this
    /// value exactly needs once the offset `lo` is removed.
    pub fn span_bits(&self) -> BitWidth {
        let span = (self.hi as i128 - self.lo as i128) as u128;
        BitWidth((128 - span.leading_zeros()).max(1))
    }
}

/// An interval in i128, checked back into i64 once an operation is complete.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WideInterval {
    pub lo: i128,
    pub hi: i128,
}

impl WideInterval {
    pub fn from(i: Interval) -> Self {
        Self { lo: i.lo as i128, hi: i.hi as i128 }
    }

    pub fn add(self, o: Self) -> Self {
        Self { lo: self.lo + o.lo, hi: self.hi + o.hi }
    }

    pub fn sub(self, o: Self) -> Self {
        Self { lo: self.lo - o.hi, hi: self.hi - o.lo }
    }

    pub fn scale(self, c: i64) -> Self {
        let (a, b) = (self.lo * c as i128, self.hi * c as i128);
        Self { lo: a.min(b), hi: a.max(b) }
    }

    pub fn narrow(self, node: NodeId, op: &'static str) -> Result<Interval> {
        // Keep a margin of one bit so that subtractions of offsets in backends cannot wrap.
        let limit = (i64::MAX / 2) as i128;
        if self.lo < -limit || self.hi > limit {
            return Err(CircuitError::PossibleOverflow { node, op, lo: self.lo, hi: self.hi });
        }
        Ok(Interval { lo: self.lo as i64, hi: self.hi as i64 })
    }
}

/// Per node, per element: the smallest and largest value observed over `samples`.
///
/// Each sample is the list of the circuit's inputs (flat, row-major). Nodes never
/// evaluated keep their static range.
pub fn observed_ranges(circuit: &Circuit, samples: &[Vec<Vec<i64>>]) -> Result<Vec<Vec<Interval>>> {
    let mut observed: Vec<Vec<Option<Interval>>> = circuit.nodes().iter().map(|n| vec![None; n.len()]).collect();
    for sample in samples {
        let values = crate::clear::evaluate_all_nodes(circuit, sample)?;
        for (node_obs, node_vals) in observed.iter_mut().zip(values) {
            for (slot, v) in node_obs.iter_mut().zip(node_vals.iter()) {
                *slot = Some(match slot {
                    Some(i) => Interval { lo: i.lo.min(*v), hi: i.hi.max(*v) },
                    None => Interval::point(*v),
                });
            }
        }
    }
    Ok(observed
        .into_iter()
        .zip(circuit.nodes())
        .map(|(obs, node)| obs.into_iter().zip(&node.ranges).map(|(o, stat)| o.unwrap_or(*stat)).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bits_cover_twos_complement() {
        let cases = [
            ((0, 0), 1),
            ((0, 1), 1),
            ((0, 255), 8),
            ((-1, 0), 1),
            ((-128, 127), 8),
            ((-129, 0), 9),
            ((0, 128), 8),
            ((-1, 128), 9),
        ];
        for ((lo, hi), bits) in cases {
            let got = Interval { lo, hi }.signed_bits().0;
            assert_eq!(got, bits, "[{lo}, {hi}]");
        }
    }

    #[test]
    fn span_bits_count_offset_values() {
        assert_eq!(Interval { lo: 5, hi: 5 }.span_bits().0, 1);
        assert_eq!(Interval { lo: -4, hi: 3 }.span_bits().0, 3);
        assert_eq!(Interval { lo: -4, hi: 4 }.span_bits().0, 4);
        assert_eq!(Interval { lo: i64::MIN, hi: i64::MAX }.span_bits().0, 64);
    }
}
