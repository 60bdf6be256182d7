//! Hyperparameters of the built-in MLP, with a checked builder.

use serde::{Deserialize, Serialize};

use fheml_circuits::RoundingMode;

use crate::error::{NnError, Result};
use crate::lower::QuantSettings;
use crate::network::Activation;

/// Classification or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NnTask {
    /// Labels; softmax over one output per class.
    Classification,
    /// One real output.
    Regression,
}

impl NnTask {
    /// Parses `classification` / `regression`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "classification" | "classifier" => Ok(Self::Classification),
            "regression" | "regressor" => Ok(Self::Regression),
            other => Err(NnError::InvalidParameter {
                name: "task".into(),
                reason: format!("`{other}`; valid names: classification, regression"),
            }),
        }
    }
}

/// Hyperparameters of an MLP, unchecked; [`MlpParams::check`] validates them.
///
/// Defaults in the spirit of Concrete ML's built-in networks: 3-bit weights, activations
/// and inputs, ReLU, Adam with learning rate 0.01 for 100 epochs, batches of 16 rows. The
/// accumulator of each hidden neuron is rounded to 5 bits before its activation lookup, and
/// one hidden layer of 16 neurons (32 beyond 32 features) keeps bootstraps (one per hidden
/// neuron) few. Both were chosen by measurement (`docs/mlp-defaults.md`): the rounding keeps
/// its bits of the accumulator's worst-case range, which grows with the input count, so at 4
/// bits a 64-feature network keeps too little of its actual values to learn (digits: 0.49),
/// while 5 bits still run on a 2048-degree set; wider inputs need the wider layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpParams {
    /// Classification or regression.
    pub task: NnTask,
    /// Units of each hidden layer.
    pub hidden: Vec<usize>,
    /// Whether `hidden` is still the default, to be sized to the input when training
    /// ([`MlpParams::default_hidden`]); a trained model stores the sizes it used.
    #[serde(skip)]
    pub hidden_is_default: bool,
    /// Hidden activation.
    pub activation: Activation,
    /// Bits of each (client-side) quantized input feature.
    pub n_bits: u8,
    /// Weight bits.
    pub w_bits: u8,
    /// Activation bits.
    pub a_bits: u8,
    /// Bits kept from each accumulator before its activation (`None`: all).
    pub accumulator_bits: Option<u32>,
    /// Exact or approximate accumulator rounding under encryption.
    pub rounding: RoundingMode,
    /// Passes over the training data.
    pub epochs: usize,
    /// Adam's learning rate.
    pub learning_rate: f64,
    /// Whether `learning_rate` is still the default, to be scaled to the widest layer when
    /// training ([`MlpParams::default_learning_rate`]); a trained model stores the rate it used.
    #[serde(skip)]
    pub learning_rate_is_default: bool,
    /// Rows per optimisation step.
    pub batch_size: usize,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
    /// At most this many inputs per hidden neuron, the rest pruned by magnitude during
    /// training (`None`: all). A neuron's lookup reads a sum whose noise grows with the
    /// 2-norm of its weights, so fewer inputs mean cheaper parameters (Concrete ML bounds
    /// its accumulators the same way).
    #[serde(default)]
    pub max_fan_in: Option<usize>,
}

/// Validated hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidMlpParams(MlpParams);

/// Option names accepted by [`MlpParams::set`].
pub const OPTION_NAMES: &[&str] = &[
    "hidden",
    "activation",
    "n_bits",
    "w_bits",
    "a_bits",
    "accumulator_bits",
    "rounding",
    "epochs",
    "learning_rate",
    "batch_size",
    "seed",
    "max_fan_in",
];

impl MlpParams {
    /// The defaults for `task`.
    pub fn new(task: NnTask) -> Self {
        Self {
            task,
            hidden: vec![16],
            hidden_is_default: true,
            activation: Activation::Relu,
            n_bits: 3,
            w_bits: 3,
            a_bits: 3,
            accumulator_bits: Some(5),
            rounding: RoundingMode::Approximate,
            epochs: 100,
            learning_rate: Self::BASE_LEARNING_RATE,
            learning_rate_is_default: true,
            batch_size: 16,
            seed: 0,
            max_fan_in: None,
        }
    }

    /// The default hidden layers for `features` inputs: one layer of 16 units, 32 beyond 32
    /// features (digits, 64 features: 0.88 quantized with 24 units, 0.95 with 32).
    pub fn default_hidden(features: usize) -> Vec<usize> {
        vec![if features <= 32 { 16 } else { 32 }]
    }

    /// Adam's learning rate for layers of up to [`Self::WIDTH_AT_BASE_RATE`] units.
    pub const BASE_LEARNING_RATE: f64 = 0.01;
    /// The widest layer trained at the base rate; wider ones scale it down in proportion.
    pub const WIDTH_AT_BASE_RATE: usize = 64;

    /// The default learning rate for these hidden layers: the base rate, scaled by
    /// `64 / widest` beyond 64 units. Quantization-aware training of wide layers at 0.01
    /// diverges: on the 8x8 digits two layers of 256 reached 0.26 quantized at 0.01, 0.86 at
    /// 0.002 (docs/mlp-defaults.md).
    pub fn default_learning_rate(hidden: &[usize]) -> f64 {
        let widest = hidden.iter().copied().max().unwrap_or(0);
        Self::BASE_LEARNING_RATE * (Self::WIDTH_AT_BASE_RATE as f64 / widest.max(1) as f64).min(1.0)
    }

    /// Builds from command-line `key=value` options.
    pub fn from_options<'a>(
        task: NnTask,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ValidMlpParams> {
        let mut params = Self::new(task);
        for (key, value) in options {
            params = params.set(key, value)?;
        }
        params.check()
    }

    /// Sets one option from its command-line form.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        let mut quant = QuantSettings {
            w_bits: self.w_bits,
            a_bits: self.a_bits,
            accumulator_bits: self.accumulator_bits,
            rounding: self.rounding,
        };
        if quant.set(key, value)? {
            (self.w_bits, self.a_bits, self.accumulator_bits, self.rounding) =
                (quant.w_bits, quant.a_bits, quant.accumulator_bits, quant.rounding);
            return Ok(self);
        }
        let key = match key {
            "lr" => "learning_rate",
            "hidden_layer_sizes" | "hidden_sizes" => "hidden",
            "max_epochs" => "epochs",
            other => other,
        };
        let bad =
            |what: &str| NnError::InvalidParameter { name: key.into(), reason: format!("`{value}` is not {what}") };
        let v = value.trim();
        let count = || v.parse::<usize>().map_err(|_| bad("a non-negative integer"));
        let bits = || v.parse::<u8>().map_err(|_| bad("a bit width"));
        match key {
            "hidden" => {
                self.hidden_is_default = false;
                self.hidden = if v.is_empty() || v == "none" {
                    vec![]
                } else {
                    v.split(',')
                        .map(|s| s.trim().parse::<usize>())
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|_| bad("a comma-separated list of layer sizes"))?
                }
            }
            "activation" => {
                self.activation = Activation::from_name(v)
                    .ok_or_else(|| bad(&format!("an activation ({})", Activation::NAMES.join(", "))))?
            }
            "n_bits" => self.n_bits = bits()?,
            "epochs" => self.epochs = count()?,
            "learning_rate" => {
                self.learning_rate = v.parse::<f64>().map_err(|_| bad("a number"))?;
                self.learning_rate_is_default = false;
            }
            "batch_size" => self.batch_size = count()?,
            "seed" => self.seed = v.parse::<u64>().map_err(|_| bad("a non-negative integer"))?,
            "max_fan_in" => {
                self.max_fan_in =
                    if v == "none" { None } else { Some(v.parse::<usize>().map_err(|_| bad("a count or none"))?) }
            }
            _ => return Err(NnError::UnknownParameter { key: key.into(), valid: OPTION_NAMES.join(", ") }),
        }
        Ok(self)
    }

    /// Validates every value.
    pub fn check(self) -> Result<ValidMlpParams> {
        let bad = |name: &str, reason: String| Err(NnError::InvalidParameter { name: name.into(), reason });
        if self.hidden.contains(&0) || self.hidden.len() > 8 || self.hidden.iter().any(|h| *h > 4096) {
            return bad("hidden", format!("{:?}: at most 8 layers of 1..=4096 units", self.hidden));
        }
        if !(1..=8).contains(&self.n_bits) {
            return bad("n_bits", format!("{} (1..=8)", self.n_bits));
        }
        if !(2..=8).contains(&self.w_bits) {
            return bad("w_bits", format!("{} (2..=8)", self.w_bits));
        }
        if !(1..=8).contains(&self.a_bits) {
            return bad("a_bits", format!("{} (1..=8)", self.a_bits));
        }
        if self.accumulator_bits.is_some_and(|b| !(1..=16).contains(&b)) {
            return bad("accumulator_bits", format!("{:?} (1..=16 or none)", self.accumulator_bits));
        }
        if self.epochs == 0 || self.epochs > 100_000 {
            return bad("epochs", format!("{} (1..=100000)", self.epochs));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate < 10.0) {
            return bad("learning_rate", format!("{} (0 < lr < 10)", self.learning_rate));
        }
        if self.max_fan_in == Some(0) {
            return bad("max_fan_in", "0 (at least 1, or none)".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into());
        }
        Ok(ValidMlpParams(self))
    }
}

impl ValidMlpParams {
    /// The hyperparameters.
    pub fn get(&self) -> &MlpParams {
        &self.0
    }

    /// These hyperparameters with the hidden layers sized for `features` inputs if they are
    /// still the default: what a trained model records.
    pub fn sized_for(&self, features: usize) -> Self {
        let mut p = self.0.clone();
        if p.hidden_is_default {
            p.hidden = MlpParams::default_hidden(features);
            p.hidden_is_default = false;
        }
        if p.learning_rate_is_default {
            p.learning_rate = MlpParams::default_learning_rate(&p.hidden);
            p.learning_rate_is_default = false;
        }
        Self(p)
    }

    /// The quantization the network is trained for and lowered with.
    pub fn settings(&self) -> QuantSettings {
        QuantSettings {
            w_bits: self.0.w_bits,
            a_bits: self.0.a_bits,
            accumulator_bits: self.0.accumulator_bits,
            rounding: self.0.rounding,
        }
    }
}

impl QuantSettings {
    /// The names [`QuantSettings::set`] takes.
    pub const OPTION_NAMES: [&'static str; 4] = ["w_bits", "a_bits", "accumulator_bits", "rounding"];

    /// Sets a bit width or the rounding by name, as `--set` gives it for a trained MLP or an
    /// imported network (Concrete ML's `n_w_bits`, `n_a_bits` and `n_accum_bits` too).
    /// `Ok(false)` when `key` is not one of these.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        let key = match key {
            "n_w_bits" => "w_bits",
            "n_a_bits" => "a_bits",
            "n_accum_bits" | "rounding_bits" => "accumulator_bits",
            other => other,
        };
        let bad =
            |what: &str| NnError::InvalidParameter { name: key.into(), reason: format!("`{value}` is not {what}") };
        let v = value.trim();
        match key {
            "w_bits" => self.w_bits = v.parse().map_err(|_| bad("a bit width"))?,
            "a_bits" => self.a_bits = v.parse().map_err(|_| bad("a bit width"))?,
            "accumulator_bits" => {
                self.accumulator_bits = match v {
                    "none" => None,
                    _ => match v.parse::<u32>() {
                        Ok(b) if (1..=16).contains(&b) => Some(b),
                        _ => return Err(bad("a bit width in 1..=16 or none")),
                    },
                }
            }
            "rounding" => {
                self.rounding = match v {
                    "exact" => RoundingMode::Exact,
                    "approximate" => RoundingMode::Approximate,
                    _ => return Err(bad("exact or approximate")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn default_hidden_layers_are_sized_to_the_input_and_explicit_ones_kept() {
        let default = MlpParams::new(NnTask::Classification).check().unwrap();
        assert_eq!(default.sized_for(30).get().hidden, vec![16]);
        assert_eq!(default.sized_for(64).get().hidden, vec![32]);
        assert!(!default.sized_for(64).get().hidden_is_default);
        let explicit = MlpParams::from_options(NnTask::Classification, [("hidden", "8")]).unwrap();
        assert_eq!(explicit.sized_for(64).get().hidden, vec![8]);
        let linear = MlpParams::from_options(NnTask::Classification, [("hidden", "none")]).unwrap();
        assert!(linear.sized_for(64).get().hidden.is_empty());
    }

    #[test]
    fn the_default_learning_rate_scales_down_beyond_64_units_and_an_explicit_one_is_kept() {
        let rate = |options: &[(&str, &str)]| {
            let p = MlpParams::from_options(NnTask::Classification, options.iter().copied()).unwrap();
            p.sized_for(30).get().learning_rate
        };
        assert_eq!(rate(&[]), 0.01);
        assert_eq!(rate(&[("hidden", "64,64")]), 0.01);
        assert!((rate(&[("hidden", "256,128")]) - 0.0025).abs() < 1e-12);
        assert_eq!(rate(&[("hidden", "256"), ("lr", "0.05")]), 0.05);
        assert!(
            !MlpParams::from_options(NnTask::Classification, []).unwrap().sized_for(30).get().learning_rate_is_default
        );
    }

    #[test]
    fn options_parse_and_check() {
        let p = MlpParams::from_options(
            NnTask::Classification,
            [("hidden", "8,4"), ("activation", "tanh"), ("lr", "0.05"), ("accumulator_bits", "none")],
        )
        .unwrap();
        assert_eq!(p.get().hidden, vec![8, 4]);
        assert_eq!(p.get().activation, Activation::Tanh);
        assert_eq!(p.get().accumulator_bits, None);
        let err = MlpParams::from_options(NnTask::Regression, [("depth", "3")]).unwrap_err();
        assert!(err.to_string().contains("unknown hyperparameter `depth`"), "{err}");
        let err = MlpParams::from_options(NnTask::Regression, [("w_bits", "1")]).unwrap_err();
        assert!(err.to_string().contains("w_bits"), "{err}");
        let err = MlpParams::from_options(NnTask::Regression, [("hidden", "4,x")]).unwrap_err();
        assert!(err.to_string().contains("comma-separated"), "{err}");
        let pruned = MlpParams::from_options(NnTask::Classification, [("max_fan_in", "8")]).unwrap();
        assert_eq!(pruned.get().max_fan_in, Some(8));
        let all = MlpParams::from_options(NnTask::Classification, [("max_fan_in", "none")]).unwrap();
        assert_eq!(all.get().max_fan_in, None);
        let err = MlpParams::from_options(NnTask::Classification, [("max_fan_in", "0")]).unwrap_err();
        assert!(err.to_string().contains("max_fan_in"), "{err}");
    }
}
