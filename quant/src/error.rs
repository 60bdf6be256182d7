//! The error type of the quant crate.

/// A float for a message: plain notation for magnitudes in `[1e-4, 1e9)` (and zero), scientific
/// outside, so that a value read from an untrusted file prints as `4.2e300`, not 301 digits.
fn short(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude == 0.0 || !x.is_finite() || (1e-4..1e9).contains(&magnitude) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Everything that can go wrong while configuring, calibrating or applying a quantizer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// The bit width is outside `1..=16`.
    #[error("n_bits must be between 1 and 16, got {0}; pick a width in that range (8 is the usual default)")]
    InvalidBits(u8),
    /// A symmetric quantizer was asked for a single bit.
    #[error("a symmetric quantizer needs at least 2 bits to hold -m, 0 and +m; raise n_bits or use an asymmetric one")]
    SymmetricNeedsTwoBits,
    /// Calibration got no value.
    #[error("cannot calibrate a quantizer on empty data; pass at least one value per feature")]
    EmptyData,
    /// A value is NaN or infinite. One-dimensional data reports its position as `row`
    /// (column 0); a single value reports row 0, column 0.
    #[error("non-finite value {value} at row {row}, column {column}; drop or impute NaN and infinite values first")]
    NonFinite {
        /// The offending value.
        value: f64,
        /// Its row.
        row: usize,
        /// Its column.
        column: usize,
    },
    /// The data has a different number of features than the quantizers were calibrated on.
    #[error("expected {expected} features, got {got}; pass the same columns as at calibration")]
    FeatureCount {
        /// Features at calibration.
        expected: usize,
        /// Features given.
        got: usize,
    },
    /// A calibration range is not finite, or `min > max`.
    #[error("invalid range [{}, {}]: bounds must be finite with min <= max", short(*.min), short(*.max))]
    InvalidRange {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// A range cannot be quantized accurately in f64: too wide, or too narrow for its distance from 0.
    #[error(
        "cannot quantize [{}, {}] with {n_bits} bits: the range is too wide, or too narrow for its \
         distance from zero; rescale or center the data, or use a symmetric quantizer",
        short(*.min),
        short(*.max)
    )]
    UnrepresentableRange {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
        /// The requested bit width.
        n_bits: u8,
    },
    /// An explicit scale is not positive, or so large that the integer grid overflows f64.
    #[error(
        "scale must be positive and small enough for every integer to dequantize to a finite float, got {}",
        short(*.0)
    )]
    InvalidScale(f64),
    /// An explicit zero point is too far from zero for exact float arithmetic.
    #[error("zero point {zero_point} exceeds ±{limit}; such a grid loses precision in f64, center the data")]
    ZeroPointOutOfRange {
        /// The zero point given.
        zero_point: i64,
        /// The largest magnitude accepted.
        limit: i64,
    },
    /// Two operands of a linear layer do not fit together.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which dimension disagrees.
        what: &'static str,
        /// The size the layer needs.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// An integer accumulation left the i64 range.
    #[error("integer accumulation overflows i64 at row {row}, output {output}; use fewer bits or fewer inputs")]
    Overflow {
        /// Input row.
        row: usize,
        /// Output column.
        output: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::QuantError;

    #[test]
    fn floats_in_messages_stay_short() {
        let text = QuantError::InvalidScale(4.2e300).to_string();
        assert!(text.ends_with("got 4.2e300"), "{text}");
        assert!(QuantError::InvalidScale(0.25).to_string().ends_with("got 0.25"));
        let range = QuantError::InvalidRange { min: -1e-300, max: 3.0 }.to_string();
        assert!(range.contains("[-1e-300, 3]"), "{range}");
    }
}
