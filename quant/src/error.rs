//! The quantization error type.

/// What can go wrong while calibrating or quantizing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// The bit width is outside 1..=16.
    #[error("n_bits must be between 1 and 16, got {0}")]
    BadBits(u8),
    /// Calibration got no value.
    #[error("cannot calibrate a quantizer on empty data")]
    EmptyData,
    /// A value is NaN or infinite.
    #[error("non-finite value {value} at row {row}, column {column}; clean or impute the data first")]
    NonFinite {
        /// The value.
        value: f64,
        /// Its row (0 when not applicable).
        row: usize,
        /// Its column (0 when not applicable).
        column: usize,
    },
    /// The number of features does not match the calibrated quantizers.
    #[error("expected {expected} features, got {got}")]
    FeatureCount {
        /// Calibrated feature count.
        expected: usize,
        /// Given feature count.
        got: usize,
    },
    /// A quantizer's explicit parameters are invalid.
    #[error("invalid quantizer: {0}")]
    Invalid(String),
    /// Integer accumulation overflowed i64.
    #[error("integer accumulation overflows i64; use fewer bits")]
    Overflow,
    /// Shapes do not fit.
    #[error("shape mismatch: {0}")]
    Shape(String),
}
