//! What the user asks of compilation: [`FheConfig`], its checked builder and defaults.

use serde::{Deserialize, Serialize};

use crate::error::{FheError, Result};
use crate::params::ParameterSetId;

/// Where parameter sets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ParameterMode {
    /// Sets generated for the circuit by the optimizer, and the vetted sets: the cheapest
    /// that fits wins (a generated set never costs more than the best vetted one).
    #[default]
    Optimized,
    /// Only tfhe-rs's vetted sets (`--params vetted`).
    Vetted,
}

impl std::str::FromStr for ParameterMode {
    type Err = FheError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "optimized" | "optimize" | "auto" => Ok(ParameterMode::Optimized),
            "vetted" => Ok(ParameterMode::Vetted),
            other => Err(FheError::Config(format!("unknown parameter mode `{other}`; use optimized or vetted"))),
        }
    }
}

/// What the user asks of compilation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FheConfig {
    pub(super) p_error: f64,
    pub(super) global_p_error: Option<f64>,
    pub(super) candidates: Vec<ParameterSetId>,
    #[serde(default = "yes")]
    pub(super) many_lut: bool,
    #[serde(default)]
    pub(super) parameters: ParameterMode,
    #[serde(default = "default_output_std")]
    pub(super) output_std: f64,
    #[serde(default)]
    pub(super) exact_outputs: bool,
    #[serde(default)]
    pub(super) sanitize: bool,
    #[serde(default = "default_sanitize_bits")]
    pub(super) sanitize_bits: u32,
}

fn yes() -> bool {
    true
}

fn default_sanitize_bits() -> u32 {
    DEFAULT_SANITIZE_BITS
}

/// Default statistical hiding asked of sanitized outputs: the flooding noise is at least
/// `2^16` times the bound on the noise the weights leave in an output (see
/// [`crate::sanitize`]).
pub const DEFAULT_SANITIZE_BITS: u32 = 16;

/// Largest hiding a 64-bit ciphertext can carry above any output noise.
pub const MAX_SANITIZE_BITS: u32 = 40;

fn default_output_std() -> f64 {
    DEFAULT_OUTPUT_STD
}

/// Default error budget of a real-valued output: its standard deviation, in steps.
pub const DEFAULT_OUTPUT_STD: f64 = 0.25;

impl Default for FheConfig {
    fn default() -> Self {
        Self {
            p_error: 2f64.powi(-40),
            global_p_error: None,
            candidates: ParameterSetId::all().to_vec(),
            many_lut: true,
            parameters: ParameterMode::Optimized,
            output_std: DEFAULT_OUTPUT_STD,
            exact_outputs: false,
            sanitize: false,
            sanitize_bits: DEFAULT_SANITIZE_BITS,
        }
    }
}

/// Checked builder for [`FheConfig`].
#[derive(Debug, Clone, Default)]
pub struct FheConfigParams(FheConfig);

impl FheConfig {
    /// Starts from the defaults: `p_error = 2^-40` per lookup (Concrete ML's default), no
    /// global bound, parameters optimized for the circuit (vetted sets as candidates too),
    /// real-valued outputs within a quarter step.
    pub fn params() -> FheConfigParams {
        FheConfigParams::default()
    }

    /// Failure probability allowed per table lookup (and per exact output element).
    pub fn p_error(&self) -> f64 {
        self.p_error
    }

    /// Failure probability allowed for a whole evaluation, if bounded.
    pub fn global_p_error(&self) -> Option<f64> {
        self.global_p_error
    }

    /// Whether lookups of one value may share a bootstrap (many-LUT).
    pub fn many_lut(&self) -> bool {
        self.many_lut
    }

    /// Where parameter sets come from.
    pub fn parameter_mode(&self) -> ParameterMode {
        self.parameters
    }

    /// Largest standard deviation of a real-valued output's decryption error, in its steps.
    pub fn output_std(&self) -> f64 {
        self.output_std
    }

    /// Whether every output is decrypted exactly, real-valued ones included.
    pub fn exact_outputs(&self) -> bool {
        self.exact_outputs
    }

    /// Whether outputs are planned for sanitization (see [`crate::sanitize`]).
    pub fn sanitize(&self) -> bool {
        self.sanitize
    }

    /// Smallest statistical hiding (bits) a sanitized output must reach.
    pub fn sanitize_bits(&self) -> u32 {
        self.sanitize_bits
    }
}

impl FheConfigParams {
    /// Failure probability per lookup, in `(0, 0.5)`.
    pub fn p_error(mut self, p: f64) -> Self {
        self.0.p_error = p;
        self
    }

    /// Failure probability per evaluation, in `(0, 1)`.
    pub fn global_p_error(mut self, p: Option<f64>) -> Self {
        self.0.global_p_error = p;
        self
    }

    /// Restricts compilation to these vetted parameter sets (e.g. to force 2^-128 sets);
    /// implies [`ParameterMode::Vetted`].
    pub fn candidates(mut self, ids: &[ParameterSetId]) -> Self {
        self.0.candidates = ids.to_vec();
        self.0.parameters = ParameterMode::Vetted;
        self
    }

    /// Optimized parameters (the default) or vetted sets only.
    pub fn parameter_mode(mut self, mode: ParameterMode) -> Self {
        self.0.parameters = mode;
        self
    }

    /// Allows (the default) or forbids many-LUT: lookups reading the same value through the
    /// same rounding sharing one bootstrap where the noise budget allows.
    pub fn many_lut(mut self, allow: bool) -> Self {
        self.0.many_lut = allow;
        self
    }

    /// Error budget of real-valued outputs: the largest standard deviation of the decrypted
    /// value, in units of the output's step, in `(0, 8]` (default 0.25).
    pub fn output_std(mut self, std: f64) -> Self {
        self.0.output_std = std;
        self
    }

    /// Decrypts every output exactly, as if none were real-valued.
    pub fn exact_outputs(mut self, exact: bool) -> Self {
        self.0.exact_outputs = exact;
        self
    }

    /// Plans every output for sanitization (off by default): the server re-randomizes each
    /// returned ciphertext with a fresh public-key encryption of zero and floods its noise to
    /// the output's error budget, so that neither its mask nor its noise depends on the
    /// weights ([`crate::sanitize`]). The flooding noise counts in the output errors the
    /// report states, and only parameter sets where it fits are chosen.
    pub fn sanitize(mut self, sanitize: bool) -> Self {
        self.0.sanitize = sanitize;
        self
    }

    /// Smallest statistical hiding of a sanitized output, in bits, in `0..=40` (default 16):
    /// the flooding noise is at least `2^bits` times the high-probability bound on the noise
    /// the weights leave in the output, so one output element is within statistical distance
    /// `2^-bits / √(2π)` (plus `p_error`) of one whose noise owes nothing to the weights.
    pub fn sanitize_bits(mut self, bits: u32) -> Self {
        self.0.sanitize_bits = bits;
        self
    }

    /// Validates.
    pub fn check(self) -> Result<FheConfig> {
        let c = self.0;
        if !(c.p_error > 0.0 && c.p_error < 0.5) {
            return Err(FheError::Config(format!("p_error must lie in (0, 0.5), got {}", c.p_error)));
        }
        if let Some(g) = c.global_p_error
            && !(g > 0.0 && g < 1.0)
        {
            return Err(FheError::Config(format!("global_p_error must lie in (0, 1), got {g}")));
        }
        if c.candidates.is_empty() {
            return Err(FheError::Config("no candidate parameter set".into()));
        }
        if !(c.output_std > 0.0 && c.output_std <= 8.0) {
            return Err(FheError::Config(format!("output_std must lie in (0, 8] steps, got {}", c.output_std)));
        }
        if c.sanitize_bits > MAX_SANITIZE_BITS {
            return Err(FheError::Config(format!(
                "sanitize_bits must lie in 0..={MAX_SANITIZE_BITS}, got {}",
                c.sanitize_bits
            )));
        }
        Ok(c)
    }
}
