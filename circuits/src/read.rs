//! What a bootstrap reads: the one rule shared by the cost model ([`crate::read_precision`])
//! and the TFHE runtime (its `ReadSpec`).
//!
//! A bootstrap reading a value that ranges over `[lo, hi]` subtracts an offset so that the
//! message is non-negative, sees it as a `width`-bit message and resolves its top
//! `read_bits` bits. Without rounding, or with an exact rounding (applied inside the table),
//! it resolves every bit of `v - lo`. With an approximate rounding of `lsbs` bits, the
//! dropped bits stay in the ciphertext as noise and only the kept bits are resolved; the
//! boxes are then centred on multiples of `2^lsbs`, so the offset is `lo` rounded down to
//! such a multiple, and the last box (holding `hi`) must fit entirely, which may cost one
//! more bit than `span_bits - lsbs`.
//!
//! ```
//! use fheml_circuits::{FusedRounding, Interval, ReadLayout, RoundingMode, read_layout};
//!
//! let range = Interval::new(1, 8).unwrap();
//! let approximate = FusedRounding { lsbs: 2, mode: RoundingMode::Approximate };
//! // Boxes 0, 1, 2 (values -2..=1, 2..=5, 6..=9): 2 bits, on a 4-bit message.
//! assert_eq!(read_layout(range, Some(approximate)), ReadLayout { offset: 0, width: 4, read_bits: 2 });
//! assert_eq!(read_layout(range, None), ReadLayout { offset: 1, width: 3, read_bits: 3 });
//! ```

use serde::{Deserialize, Serialize};

use crate::backend::FusedRounding;
use crate::ir::RoundingMode;
use crate::range::Interval;

/// How a bootstrap reads a value: subtract `offset`, view the result as a `width`-bit
/// message, resolve its top `read_bits` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReadLayout {
    /// Subtracted before the bootstrap so that the message is non-negative.
    pub offset: i64,
    /// Bits of the (offset) message.
    pub width: u32,
    /// Bits the bootstrap resolves: `width` unless an approximate rounding leaves
    /// `width - read_bits` low bits in the ciphertext.
    pub read_bits: u32,
}

/// Bits of `v` as an unsigned number (at least 1; negative counts as 0).
fn unsigned_bits(v: i128) -> u32 {
    (128 - (v.max(0) as u128).leading_zeros()).max(1)
}

/// The layout of a bootstrap reading a value that ranges over `range`, through an optional
/// fused rounding.
///
/// Roundings drop at most 62 bits (the builder's limit); past that the layout saturates
/// instead of overflowing.
pub fn read_layout(range: Interval, rounding: Option<FusedRounding>) -> ReadLayout {
    match rounding {
        Some(r) if r.mode == RoundingMode::Approximate => {
            let unit = 1i128 << r.lsbs.min(64);
            let offset = (range.lo as i128).div_euclid(unit) * unit;
            // Boxes are centred on multiples of 2^lsbs; the last one must fit entirely.
            let top_box = (range.hi as i128 - offset + unit / 2) / unit;
            let read_bits = unsigned_bits(top_box);
            ReadLayout {
                offset: i64::try_from(offset).unwrap_or(i64::MIN),
                width: read_bits.saturating_add(r.lsbs),
                read_bits,
            }
        }
        _ => {
            let width = range.span_bits().0;
            ReadLayout { offset: range.lo, width, read_bits: width }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::builder::round_shift;

    fn approximate(lsbs: u32) -> Option<FusedRounding> {
        Some(FusedRounding { lsbs, mode: RoundingMode::Approximate })
    }

    #[test]
    fn layouts_of_hand_computed_ranges() {
        let exact = Some(FusedRounding { lsbs: 2, mode: RoundingMode::Exact });
        let r = Interval { lo: -5, hi: 20 };
        assert_eq!(read_layout(r, None), ReadLayout { offset: -5, width: 5, read_bits: 5 });
        assert_eq!(read_layout(r, exact), ReadLayout { offset: -5, width: 5, read_bits: 5 });
        // offset -8, boxes up to round(28 / 4) = 7.
        assert_eq!(read_layout(r, approximate(2)), ReadLayout { offset: -8, width: 5, read_bits: 3 });
        // [1, 8]: span 3 bits, but 8 lands in box 2, which needs 2 kept bits, not 1.
        assert_eq!(read_layout(Interval { lo: 1, hi: 8 }, approximate(2)).read_bits, 2);
        assert_eq!(read_layout(Interval::point(7), approximate(3)), ReadLayout { offset: 0, width: 4, read_bits: 1 });
        let wide = Interval { lo: i64::MIN, hi: i64::MAX };
        assert_eq!(read_layout(wide, approximate(62)), ReadLayout { offset: i64::MIN, width: 65, read_bits: 3 });
        // Out of the builder's limits: no overflow, a saturated offset.
        assert_eq!(read_layout(wide, approximate(200)), ReadLayout { offset: i64::MIN, width: 201, read_bits: 1 });
    }

    proptest! {
        /// Every value of the range lands in a box the read resolves, and that box is the
        /// value's rounding (minus the offset's).
        #[test]
        fn approximate_boxes_cover_the_range(lo in -5000i64..5000, span in 0i64..5000, lsbs in 1u32..8) {
            let range = Interval { lo, hi: lo + span };
            let layout = read_layout(range, approximate(lsbs));
            prop_assert_eq!(layout.width, layout.read_bits + lsbs);
            prop_assert!(layout.offset <= lo && layout.offset.rem_euclid(1 << lsbs) == 0);
            let boxes = 1i64 << layout.read_bits;
            for v in [range.lo, range.hi, lo + span / 2] {
                let index = round_shift(v, lsbs).unwrap() - (layout.offset >> lsbs);
                prop_assert!((0..boxes).contains(&index), "{} -> box {} of {}", v, index, boxes);
            }
            // Not one bit more than needed: the top box would fit in one bit less.
            if layout.read_bits > 1 {
                prop_assert!(round_shift(range.hi, lsbs).unwrap() - (layout.offset >> lsbs) >= boxes / 2);
            }
        }
    }
}
