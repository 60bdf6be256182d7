//! A lowered model together with its compiled circuit: predictions in Clear, Simulate or
//! Execute mode from float features, as Concrete ML's `predict(fhe=...)`.

use std::sync::OnceLock;

use fheml_circuits::{ModelCircuit, Prediction};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::compiled::{ClientKey, CompiledCircuit, EvaluationKey};
use crate::error::{FheError, Result};
use crate::plan::FheConfig;
use crate::sanitize::{Sanitization, Sanitizer};

/// How predictions are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Exact integer evaluation, no cryptography.
    Clear,
    /// Clear evaluation with bootstrap errors injected at the compiled probabilities.
    Simulate,
    /// Real TFHE: encrypt, evaluate on ciphertexts, decrypt.
    Execute,
}

impl std::str::FromStr for Mode {
    type Err = FheError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "clear" => Ok(Mode::Clear),
            "simulate" => Ok(Mode::Simulate),
            "execute" => Ok(Mode::Execute),
            other => Err(FheError::Config(format!("unknown mode `{other}`; use clear, simulate or execute"))),
        }
    }
}

/// A model ready for encrypted inference. Decoding one validates its compiled circuit (see
/// [`CompiledCircuit`]) and checks that the lowered model describes that same circuit.
#[derive(Serialize, Deserialize)]
#[serde(try_from = "StoredFheModel")]
pub struct FheModel {
    model: ModelCircuit,
    compiled: CompiledCircuit,
    #[serde(skip)]
    keys: OnceLock<(ClientKey, EvaluationKey)>,
    /// The server's view of the client's public key, for models compiled with sanitization.
    #[serde(skip)]
    sanitizer: OnceLock<Sanitizer>,
    /// Expected predictions per sample that differ from Clear's under encryption, estimated
    /// by [`FheModel::estimate_deviations`] (classifiers: label flips).
    #[serde(default)]
    deviations: Option<f64>,
}

/// [`FheModel`] as stored (the skipped fields are not written), before validation.
#[derive(Deserialize)]
struct StoredFheModel {
    model: ModelCircuit,
    compiled: CompiledCircuit,
    #[serde(default)]
    deviations: Option<f64>,
}

impl TryFrom<StoredFheModel> for FheModel {
    type Error = FheError;

    fn try_from(stored: StoredFheModel) -> Result<Self> {
        let StoredFheModel { model, compiled, deviations } = stored;
        let circuit = compiled.circuit();
        if model.circuit != *circuit
            || model.inputs.len() != circuit.inputs().len()
            || model.outputs.len() != circuit.outputs().len()
        {
            return Err(FheError::Format {
                what: "model",
                detail: "the lowered model does not describe the compiled circuit".into(),
            });
        }
        Ok(Self { model, compiled, keys: OnceLock::new(), sanitizer: OnceLock::new(), deviations })
    }
}

impl FheModel {
    /// Compiles a lowered model for TFHE.
    pub fn compile(model: ModelCircuit, config: &FheConfig) -> Result<Self> {
        let compiled = CompiledCircuit::compile(model.circuit.clone(), config)?;
        Ok(Self { model, compiled, keys: OnceLock::new(), sanitizer: OnceLock::new(), deviations: None })
    }

    /// The lowered model (circuit, encodings, decoding).
    pub fn model(&self) -> &ModelCircuit {
        &self.model
    }

    /// The compiled circuit.
    pub fn compiled(&self) -> &CompiledCircuit {
        &self.compiled
    }

    /// Generates keys now (Execute mode otherwise does it on first use).
    pub fn keys(&self) -> &(ClientKey, EvaluationKey) {
        self.keys.get_or_init(|| self.compiled.keygen())
    }

    /// Uses keys made elsewhere (the test key cache, [`crate::testing`]) unless keys exist.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn preset_keys(&self, keys: (ClientKey, EvaluationKey)) {
        // A model that made its keys already keeps them: its ciphertexts may be in use.
        let _ = self.keys.set(keys);
    }

    /// The sanitizer of the keys' public key, when the model sanitizes its outputs.
    fn sanitization(&self) -> Result<Sanitization<'_>> {
        if self.compiled.plan().sanitization.is_none() {
            return Ok(Sanitization::Off);
        }
        if let Some(sanitizer) = self.sanitizer.get() {
            return Ok(Sanitization::On(sanitizer));
        }
        let public = self.compiled.client_spec().public_key(&self.keys().0)?;
        let sanitizer = self.compiled.sanitizer(&public)?;
        Ok(Sanitization::On(self.sanitizer.get_or_init(|| sanitizer)))
    }

    /// Whether keys were generated already.
    pub fn has_keys(&self) -> bool {
        self.keys.get().is_some()
    }

    /// The circuit inputs of each row (client-side quantization and encoding).
    pub fn encode(&self, x: ArrayView2<f64>) -> Result<Vec<Vec<Vec<i64>>>> {
        x.rows().into_iter().map(|row| self.model.encode(&row.to_vec()).map_err(FheError::from)).collect()
    }

    /// Decrypted (or clear) outputs to predictions.
    pub fn decode(&self, outputs: &[Vec<Vec<i64>>]) -> Result<Vec<Prediction>> {
        outputs.iter().map(|o| self.model.decode(o).map_err(FheError::from)).collect()
    }

    /// The integer outputs of each row in `mode`.
    pub fn run_integers(&self, x: ArrayView2<f64>, mode: Mode, seed: u64) -> Result<Vec<Vec<Vec<i64>>>> {
        let inputs = self.encode(x)?;
        match mode {
            Mode::Clear => Ok(self.compiled.circuit().evaluate_clear_batch(&inputs)?),
            Mode::Simulate => self.compiled.simulate(&inputs, seed),
            Mode::Execute => {
                let (client_key, eval_key) = self.keys();
                let client = self.compiled.client_spec();
                let query = client.encrypt(client_key, &inputs)?;
                // As a server would answer: sanitized when the model was compiled for it.
                let answer = self.compiled.run_with(eval_key, &query, self.sanitization()?)?;
                client.decrypt(client_key, &answer)
            }
        }
    }

    /// Estimates how often a prediction under encryption differs from Clear's (a label flip
    /// for a classifier; any change of the decrypted value for a regressor), by simulating
    /// `draws` noisy evaluations of every row of `x`: lookup failures, approximate-rounding
    /// flips and real-valued output errors, with their correlations. Kept in the model
    /// ([`FheModel::expected_deviations`]).
    pub fn estimate_deviations(&mut self, x: ArrayView2<f64>, draws: usize) -> Result<f64> {
        let clear = self.predict(x, Mode::Clear)?;
        let rows = x.nrows().max(1);
        let mut changed = 0usize;
        for draw in 0..draws.max(1) {
            let inputs = self.encode(x)?;
            let noisy = self.decode(&self.compiled.simulate(&inputs, 0x5eed ^ draw as u64)?)?;
            changed += noisy.iter().zip(&clear).filter(|(a, b)| a.value != b.value).count();
        }
        let rate = changed as f64 / (rows * draws.max(1)) as f64;
        self.deviations = Some(rate);
        Ok(rate)
    }

    /// Predictions per sample expected to differ from Clear's under encryption, if estimated.
    pub fn expected_deviations(&self) -> Option<f64> {
        self.deviations
    }

    /// Predictions for each row of float features in `mode`.
    pub fn predict(&self, x: ArrayView2<f64>, mode: Mode) -> Result<Vec<Prediction>> {
        self.decode(&self.run_integers(x, mode, 0)?)
    }
}
