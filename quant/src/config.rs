//! Bit widths and quantizer configuration.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::QuantError;

/// A quantization bit width, `1..=16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct NBits(u8);

impl NBits {
    /// The widest supported integers: table lookups beyond 16 bits are impractical in TFHE.
    pub const MAX: u8 = 16;

    /// A bit width, if `bits` is in `1..=16`.
    pub fn new(bits: u8) -> Result<Self, QuantError> {
        if (1..=Self::MAX).contains(&bits) { Ok(Self(bits)) } else { Err(QuantError::InvalidBits(bits)) }
    }

    /// The number of bits.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for NBits {
    type Error = QuantError;

    fn try_from(bits: u8) -> Result<Self, QuantError> {
        Self::new(bits)
    }
}

impl From<NBits> for u8 {
    fn from(bits: NBits) -> u8 {
        bits.0
    }
}

impl fmt::Display for NBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A checked quantizer configuration; build one with [`QuantizerConfig::params`].
///
/// Asymmetric quantizers map the calibrated `[min, max]` onto the whole integer range;
/// symmetric ones map `[-m, m]`, `m = max(|min|, |max|)`, so that 0 is exact and sits at
/// zero point 0 (signed) or `2^(n-1)` (unsigned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuantizerConfig {
    n_bits: NBits,
    signed: bool,
    symmetric: bool,
}

impl QuantizerConfig {
    /// A builder with the defaults: 8 bits, unsigned, asymmetric (Concrete ML's linear models).
    pub fn params() -> QuantizerConfigParams {
        QuantizerConfigParams::default()
    }

    /// Bit width.
    pub fn n_bits(&self) -> NBits {
        self.n_bits
    }

    /// Whether the integers are signed.
    pub fn signed(&self) -> bool {
        self.signed
    }

    /// Whether the float range is symmetric around zero.
    pub fn symmetric(&self) -> bool {
        self.symmetric
    }
}

impl Default for QuantizerConfig {
    fn default() -> Self {
        Self { n_bits: NBits(8), signed: false, symmetric: false }
    }
}

// Checked on load too: a file must not smuggle in a configuration `check` would refuse.
impl<'de> Deserialize<'de> for QuantizerConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        QuantizerConfigParams::deserialize(deserializer)?.check().map_err(serde::de::Error::custom)
    }
}

/// The unchecked builder of a [`QuantizerConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct QuantizerConfigParams {
    n_bits: u8,
    signed: bool,
    symmetric: bool,
}

impl Default for QuantizerConfigParams {
    fn default() -> Self {
        Self { n_bits: 8, signed: false, symmetric: false }
    }
}

impl QuantizerConfigParams {
    /// Bit width, `1..=16` (2 or more when symmetric).
    pub fn n_bits(mut self, n_bits: u8) -> Self {
        self.n_bits = n_bits;
        self
    }

    /// Signed integers (`-2^(n-1)..2^(n-1)`) instead of unsigned (`0..2^n`).
    pub fn signed(mut self, signed: bool) -> Self {
        self.signed = signed;
        self
    }

    /// A range symmetric around zero.
    pub fn symmetric(mut self, symmetric: bool) -> Self {
        self.symmetric = symmetric;
        self
    }

    /// Validates the parameters.
    pub fn check(self) -> Result<QuantizerConfig, QuantError> {
        let n_bits = NBits::new(self.n_bits)?;
        if self.symmetric && n_bits.get() < 2 {
            return Err(QuantError::SymmetricNeedsTwoBits);
        }
        Ok(QuantizerConfig { n_bits, signed: self.signed, symmetric: self.symmetric })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn bit_widths_outside_one_to_sixteen_are_refused() {
        assert_eq!(NBits::new(0), Err(QuantError::InvalidBits(0)));
        assert_eq!(NBits::new(17), Err(QuantError::InvalidBits(17)));
        assert_eq!(NBits::new(16).unwrap().get(), 16);
        assert_eq!(NBits::new(3).unwrap().to_string(), "3");
    }

    #[test]
    fn defaults_are_eight_bits_unsigned_asymmetric() {
        let config = QuantizerConfig::params().check().unwrap();
        assert_eq!(config, QuantizerConfig::default());
        assert_eq!((config.n_bits().get(), config.signed(), config.symmetric()), (8, false, false));
    }

    #[test]
    fn symmetric_needs_two_bits() {
        let one_bit = QuantizerConfig::params().n_bits(1);
        assert!(one_bit.check().is_ok());
        assert_eq!(one_bit.symmetric(true).check(), Err(QuantError::SymmetricNeedsTwoBits));
    }

    #[test]
    fn deserialization_is_checked() {
        let config = QuantizerConfig::params().n_bits(4).signed(true).symmetric(true).check().unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<QuantizerConfig>(&json).unwrap(), config);
        let bad = r#"{"n_bits":1,"signed":true,"symmetric":true}"#;
        assert!(serde_json::from_str::<QuantizerConfig>(bad).is_err());
        assert!(serde_json::from_str::<NBits>("17").is_err());
    }
}
