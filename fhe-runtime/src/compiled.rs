//! A circuit compiled for TFHE: its plan, keys, encryption, server evaluation,
//! decryption and simulation.

use fheml_circuits::{Circuit, Interval, Tensor, evaluate, evaluate_batch, shape_inputs};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tfhe::conformance::ParameterSetConformant;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::*;
use tfhe::shortint::atomic_pattern::AtomicPatternParameters;
use tfhe::shortint::ciphertext::MaxDegree;
use tfhe::shortint::client_key::atomic_pattern::AtomicPatternClientKey;
use tfhe::shortint::{ClientKey as ShortintClientKey, CompressedServerKey, ServerKey};
use tfhe_csprng::seeders::SeedKind;

use crate::envelope::{self, Kind};
use crate::error::{FheError, Result};
use crate::fingerprint::Fingerprint;
use crate::params::Parameters;
use crate::plan::{CompileReport, FheConfig, Plan, plan};
use crate::simulate::{Noisy, SimulatedBackend};
use crate::tfhe_backend::{Ct, TfheBackend};

/// A circuit with its TFHE plan. Holds the model: it stays on the server; the client only
/// needs [`CompiledCircuit::client_spec`].
///
/// Decoding one (from a model file, alone or inside another structure) validates it: the
/// circuit is replayed through the builder's checks ([`Circuit::validate`]), the plan is
/// checked against it ([`Plan::check`]) and the fingerprint is recomputed from the content
/// and must be the stored one, so a file whose circuit or plan was edited is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredCompiledCircuit")]
pub struct CompiledCircuit {
    circuit: Circuit,
    plan: Plan,
    fingerprint: Fingerprint,
}

/// [`CompiledCircuit`] as stored, before validation.
#[derive(Deserialize)]
struct StoredCompiledCircuit {
    circuit: Circuit,
    plan: Plan,
    fingerprint: Fingerprint,
}

impl TryFrom<StoredCompiledCircuit> for CompiledCircuit {
    type Error = FheError;

    fn try_from(stored: StoredCompiledCircuit) -> Result<Self> {
        let StoredCompiledCircuit { circuit, plan, fingerprint } = stored;
        circuit.validate().map_err(|e| FheError::Format { what: "model", detail: format!("circuit: {e}") })?;
        plan.check(&circuit)?;
        let me = Self::with_fingerprint(circuit, plan)?;
        if me.fingerprint != fingerprint {
            return Err(FheError::Format {
                what: "model",
                detail:
                    "the fingerprint does not match the content (the circuit or plan was changed after compilation)"
                        .into(),
            });
        }
        Ok(me)
    }
}

/// What the client needs to encrypt inputs and decrypt outputs, and nothing of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientSpec {
    /// The compiled circuit this spec belongs to.
    pub fingerprint: Fingerprint,
    /// The parameter set keys are generated for.
    pub parameter_set: Parameters,
    /// Whether the server needs an evaluation key.
    pub needs_evaluation_key: bool,
    /// Per input: shape, admissible range and `log2 Δ` of every element.
    pub inputs: Vec<(Vec<usize>, Vec<Interval>, Vec<u32>)>,
    /// Per output: number of elements.
    pub outputs: Vec<usize>,
    /// Whether the server sanitizes outputs (the client then sends a
    /// [`crate::PublicKey`], see [`ClientSpec::public_key`]).
    #[serde(default)]
    pub sanitized: bool,
    /// Per input: whether it is encrypted under the small LWE key (read by lookups alone,
    /// see [`crate::plan::small_key_nodes`]); empty when none is.
    #[serde(default)]
    pub small_key_inputs: Vec<bool>,
}

/// The client's secret key. Never leaves the client.
#[derive(Serialize, Deserialize)]
pub struct ClientKey {
    fingerprint: Fingerprint,
    parameter_set: Parameters,
    #[serde(with = "crate::versioned")]
    pub(crate) key: ShortintClientKey,
}

/// What the server needs to evaluate: bootstrapping and keyswitching keys, or nothing for
/// leveled-only circuits.
#[derive(Serialize, Deserialize)]
pub struct EvaluationKey {
    fingerprint: Fingerprint,
    #[serde(with = "crate::versioned")]
    pub(crate) key: Option<ServerKey>,
}

/// The evaluation key in its seeded (compressed) form, for transport.
#[derive(Serialize, Deserialize)]
pub struct CompressedEvaluationKey {
    fingerprint: Fingerprint,
    #[serde(with = "crate::versioned")]
    key: Option<CompressedServerKey>,
}

/// Encrypted inputs of a batch: the input elements of all samples, one after the other,
/// packed as the coefficients of seeded GLWE ciphertexts. One GLWE holds `N` inputs for the
/// price of one mask (regenerated from a seed, so it costs nothing on the wire); the
/// server extracts each input as an LWE sample under the same key, which adds no noise.
/// Inputs that lookups alone read are packed the same way under the small key, seen as a
/// GLWE key of `n / N'` polynomials of size `N'` ([`small_key_polynomial_size`]), and the
/// lookups read them without a keyswitch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptedInputs {
    fingerprint: Fingerprint,
    pub(crate) samples: usize,
    #[serde(with = "crate::versioned")]
    pub(crate) packed: SeededGlweCiphertextListOwned<u64>,
    #[serde(with = "crate::versioned")]
    pub(crate) small: Option<SeededGlweCiphertextListOwned<u64>>,
}

/// The polynomial size the small LWE key of dimension `n` is split into to pack small-key
/// inputs: the largest power of two dividing `n`, at most 2^11 (one mask of `n` words then
/// serves that many inputs; generated sets have `n` a multiple of 16).
pub fn small_key_polynomial_size(n: usize) -> usize {
    1 << n.trailing_zeros().min(11)
}

/// Encrypted outputs of a batch: per sample, all output elements.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptedOutputs {
    fingerprint: Fingerprint,
    #[serde(with = "crate::versioned::pairs")]
    pub(crate) samples: Vec<(LweCiphertextListOwned<u64>, Vec<u32>)>,
}

/// Size limits when reading untrusted bytes.
pub mod limits {
    /// Keys: the largest vetted evaluation key is a few GiB.
    pub const KEY_BYTES: usize = 8 << 30;
    /// One ciphertext batch.
    pub const CIPHERTEXT_BYTES: usize = 1 << 30;
    /// A compiled model.
    pub const MODEL_BYTES: usize = 256 << 20;
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl CompiledCircuit {
    /// Plans `circuit` for TFHE under `config`: encodings, noise, parameter set.
    pub fn compile(circuit: Circuit, config: &FheConfig) -> Result<Self> {
        let plan = plan(&circuit, config)?;
        Self::with_fingerprint(circuit, plan)
    }

    /// The compiled circuit of `circuit` and `plan`, its fingerprint computed from them.
    fn with_fingerprint(circuit: Circuit, plan: Plan) -> Result<Self> {
        let bytes = bincode::serde::encode_to_vec(
            (&circuit, &plan.parameters, &plan.deltas, &plan.small_key),
            bincode::config::standard(),
        )
        .map_err(|e| FheError::Format { what: "model", detail: e.to_string() })?;
        Ok(Self { fingerprint: Fingerprint::of(&bytes), circuit, plan })
    }

    /// The circuit.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// What compilation decided.
    pub fn report(&self) -> &CompileReport {
        &self.plan.report
    }

    /// The plan (encodings and noise).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Identity of this compiled circuit.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The client's part.
    pub fn client_spec(&self) -> ClientSpec {
        ClientSpec {
            fingerprint: self.fingerprint,
            parameter_set: self.plan.parameters,
            needs_evaluation_key: self.plan.report.needs_evaluation_key,
            inputs: self
                .circuit
                .inputs()
                .iter()
                .map(|id| {
                    let node = self.circuit.node(*id);
                    (node.shape.clone(), node.ranges.clone(), self.plan.deltas[id.0].clone())
                })
                .collect(),
            outputs: self.circuit.outputs().iter().map(|id| self.circuit.node(*id).len()).collect(),
            sanitized: self.plan.sanitization.is_some(),
            small_key_inputs: if self.plan.small_key.is_empty() {
                Vec::new()
            } else {
                self.circuit.inputs().iter().map(|id| self.plan.is_small_key(*id)).collect()
            },
        }
    }

    /// Generates a client key and the matching evaluation key.
    pub fn keygen(&self) -> (ClientKey, EvaluationKey) {
        self.client_spec().keygen()
    }

    fn check_key(&self, what: &'static str, found: &Fingerprint) -> Result<()> {
        if found != &self.fingerprint {
            return Err(FheError::WrongModel { what, expected: self.fingerprint.short(), found: found.short() });
        }
        Ok(())
    }

    /// Server side: evaluates a batch of encrypted samples (in parallel). Needs no secret.
    pub fn run(&self, key: &EvaluationKey, inputs: &EncryptedInputs) -> Result<EncryptedOutputs> {
        self.run_chunked(key, inputs, usize::MAX, &|| true)
    }

    /// Server side, with bounded memory: like [`CompiledCircuit::run`], but expands the
    /// packed inputs into full LWE samples (`k·N+1` words each, thousands of times their
    /// size on the wire) a chunk of samples at a time, the chunk chosen so that its expanded
    /// inputs take at most `expanded_bytes` (at least one sample). `keep_going` is asked
    /// before each chunk; when it answers false the evaluation stops with
    /// [`FheError::Interrupted`] (a server whose client has timed out stops spending CPU).
    pub fn run_chunked(
        &self,
        key: &EvaluationKey,
        inputs: &EncryptedInputs,
        expanded_bytes: usize,
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<EncryptedOutputs> {
        self.check_key("evaluation key", &key.fingerprint)?;
        self.check_key("encrypted inputs", &inputs.fingerprint)?;
        if self.plan.report.needs_evaluation_key && key.key.is_none() {
            return Err(FheError::MissingEvaluationKey);
        }
        let params = self.plan.parameters.set().params;
        let lwe_size = LweSize(self.plan.parameters.set().big_lwe_dimension() + 1);
        let backend = TfheBackend {
            circuit: &self.circuit,
            deltas: &self.plan.deltas,
            server_key: key.key.as_ref(),
            params,
            lwe_size,
            shared: &self.plan.shared,
            small_key: &self.plan.small_key,
        };
        let spec = self.client_spec();
        self.check_inputs(inputs)?;
        let packed = inputs.packed.clone().decompress_into_glwe_ciphertext_list();
        let small = inputs.small.clone().map(|s| s.decompress_into_glwe_ciphertext_list());
        let (per_sample, small_per_sample) = spec.elements_per_sample();
        let sample_bytes = per_sample.saturating_mul(lwe_size.0).saturating_mul(8).max(1);
        let chunk = (expanded_bytes / sample_bytes).max(1);
        let mut samples = Vec::with_capacity(inputs.samples);
        for first in (0..inputs.samples).step_by(chunk) {
            if !keep_going() {
                return Err(FheError::Interrupted);
            }
            let batch = (first..inputs.samples.min(first.saturating_add(chunk)))
                .into_par_iter()
                .map(|s| {
                    let starts = (s * per_sample, s * small_per_sample);
                    self.unpack_sample(&spec, &packed, small.as_ref(), starts, lwe_size)
                })
                .collect::<Result<Vec<_>>>()?;
            let outputs = evaluate_batch(&self.circuit, &backend, batch)?;
            samples.extend(outputs.into_iter().map(|tensors| {
                let cts: Vec<&Ct> = tensors.iter().flat_map(|t| t.iter()).collect();
                let deltas = cts.iter().map(|c| c.delta_log).collect();
                let mut data = Vec::with_capacity(cts.len() * lwe_size.0);
                for ct in cts {
                    data.extend_from_slice(ct.lwe.as_ref());
                }
                (LweCiphertextList::from_container(data, lwe_size, params.ciphertext_modulus), deltas)
            }));
        }
        Ok(EncryptedOutputs { fingerprint: self.fingerprint, samples })
    }

    /// The evaluation key of a circuit without table lookups (it holds nothing), so a
    /// server needs no upload for it; `None` when the circuit needs a real key.
    pub fn leveled_key(&self) -> Option<EvaluationKey> {
        (!self.plan.report.needs_evaluation_key).then_some(EvaluationKey { fingerprint: self.fingerprint, key: None })
    }

    /// Inputs of one sample (elements of every input tensor): at most the number of packed
    /// coefficients one sample takes on the wire.
    pub fn inputs_per_sample(&self) -> usize {
        self.circuit.inputs().iter().map(|id| self.circuit.node(*id).len()).sum()
    }

    /// Checks that untrusted encrypted inputs fit this circuit's parameters exactly —
    /// model, GLWE size, polynomial size, modulus, count, container length and seed form —
    /// without expanding anything, so that no malformed list reaches tfhe-rs (whose
    /// assertions would panic on it).
    pub fn check_inputs(&self, inputs: &EncryptedInputs) -> Result<()> {
        self.check_key("encrypted inputs", &inputs.fingerprint)?;
        let params = self.plan.parameters.set().params;
        let n = params.polynomial_size.0;
        let (per_sample, small_per_sample) = self.client_spec().elements_per_sample();
        self.check_small_inputs(inputs, small_per_sample)?;
        let expected = (inputs.samples.saturating_mul(per_sample)).div_ceil(n).max(1);
        let list = &inputs.packed;
        let glwe_size = params.glwe_dimension.to_glwe_size();
        // Compared before the count: the count divides by the polynomial size.
        if list.glwe_size() != glwe_size || list.polynomial_size() != params.polynomial_size {
            return Err(FheError::BadCiphertexts(format!(
                "GLWE ciphertexts of size {}x{}; the circuit takes size {}x{n}",
                list.glwe_size().0,
                list.polynomial_size().0,
                glwe_size.0,
            )));
        }
        if list.as_ref().len() != expected.saturating_mul(n) {
            return Err(FheError::BadCiphertexts(format!(
                "{} packed coefficients for {} samples; the circuit takes {} ({expected} GLWE ciphertexts of {n})",
                list.as_ref().len(),
                inputs.samples,
                expected.saturating_mul(n),
            )));
        }
        if list.ciphertext_modulus() != params.ciphertext_modulus {
            return Err(FheError::BadCiphertexts(format!(
                "ciphertext modulus {}; the circuit's parameters use {}",
                list.ciphertext_modulus(),
                params.ciphertext_modulus
            )));
        }
        // Honest clients seed the mask generator with a plain seed from its first byte;
        // anything else (an XOF seed, a counter near the end of its range) is refused
        // rather than handed to the generator.
        let seed = &list.compression_seed().inner;
        if !matches!(seed.seed, SeedKind::Ctr(_))
            || seed.first_index != CompressionSeed::from(Seed(0)).inner.first_index
        {
            return Err(FheError::BadCiphertexts("unexpected mask seed form".into()));
        }
        Ok(())
    }

    /// The small-key part of untrusted inputs: present exactly when the circuit has small-key
    /// inputs, with the small key's GLWE layout, the right count, modulus and seed form.
    fn check_small_inputs(&self, inputs: &EncryptedInputs, per_sample: usize) -> Result<()> {
        let params = self.plan.parameters.set().params;
        let list = match (&inputs.small, per_sample) {
            (None, 0) => return Ok(()),
            (Some(list), p) if p > 0 => list,
            _ => {
                return Err(FheError::BadCiphertexts(
                    "small-key inputs do not match the circuit (made for another version of the model?)".into(),
                ));
            }
        };
        let n = params.lwe_dimension.0;
        let poly = small_key_polynomial_size(n);
        let glwe_size = GlweSize(n / poly + 1);
        if list.glwe_size() != glwe_size || list.polynomial_size().0 != poly {
            return Err(FheError::BadCiphertexts(format!(
                "small-key GLWE ciphertexts of size {}x{}; the circuit takes size {}x{poly}",
                list.glwe_size().0,
                list.polynomial_size().0,
                glwe_size.0
            )));
        }
        let expected = inputs.samples.saturating_mul(per_sample).div_ceil(poly).saturating_mul(poly);
        if list.as_ref().len() != expected {
            return Err(FheError::BadCiphertexts(format!(
                "{} small-key packed coefficients for {} samples; the circuit takes {expected}",
                list.as_ref().len(),
                inputs.samples
            )));
        }
        if list.ciphertext_modulus() != params.ciphertext_modulus {
            return Err(FheError::BadCiphertexts(format!(
                "small-key ciphertext modulus {}; the circuit's parameters use {}",
                list.ciphertext_modulus(),
                params.ciphertext_modulus
            )));
        }
        let seed = &list.compression_seed().inner;
        if !matches!(seed.seed, SeedKind::Ctr(_))
            || seed.first_index != CompressionSeed::from(Seed(0)).inner.first_index
        {
            return Err(FheError::BadCiphertexts("unexpected mask seed form of the small-key inputs".into()));
        }
        Ok(())
    }

    /// Median wall time of one lookup with `key` on this circuit's parameters, on the
    /// calling thread (`repeats` runs): the unit that a bootstrap-bound evaluation of
    /// `bootstraps` lookups on `t` threads should take `bootstraps × this ÷ t` of. A
    /// keyswitch + bootstrap, or where some lookups read small-key inputs, the average over
    /// the circuit's lookups of that and of a bootstrap alone.
    pub fn time_bootstrap(&self, key: &EvaluationKey, repeats: usize) -> Result<f64> {
        let keyswitched = self.time_keyswitch_bootstrap(key, repeats)?;
        let report = &self.plan.report;
        if report.small_key_lookups == 0 || report.lookups == 0 {
            return Ok(keyswitched);
        }
        let server_key = key.key.as_ref().ok_or(FheError::MissingEvaluationKey)?;
        let params = self.plan.parameters.set().params;
        let mut lwe = LweCiphertextOwned::new(0u64, params.lwe_dimension.to_lwe_size(), params.ciphertext_modulus);
        for (i, c) in lwe.as_mut().iter_mut().enumerate() {
            *c = splitmix(i as u64);
        }
        let glwe_size = params.glwe_dimension.to_glwe_size();
        let big_size = LweSize(params.glwe_dimension.0 * params.polynomial_size.0 + 1);
        let mut times = (0..repeats.max(1))
            .map(|_| {
                let start = std::time::Instant::now();
                let mut acc =
                    GlweCiphertextOwned::new(1u64, glwe_size, params.polynomial_size, params.ciphertext_modulus);
                crate::tfhe_backend::rotate_small(server_key, std::hint::black_box(&lwe), &mut acc)?;
                let mut out = LweCiphertextOwned::new(0u64, big_size, params.ciphertext_modulus);
                extract_lwe_sample_from_glwe_ciphertext(&acc, &mut out, MonomialDegree(0));
                std::hint::black_box(out);
                Ok(start.elapsed().as_secs_f64())
            })
            .collect::<Result<Vec<f64>>>()?;
        times.sort_by(f64::total_cmp);
        let small = times[times.len() / 2];
        let share = report.small_key_lookups as f64 / report.lookups as f64;
        Ok(share * small + (1.0 - share) * keyswitched)
    }

    /// [`CompiledCircuit::time_bootstrap`] of a lookup that keyswitches.
    fn time_keyswitch_bootstrap(&self, key: &EvaluationKey, repeats: usize) -> Result<f64> {
        self.check_key("evaluation key", &key.fingerprint)?;
        let server_key = key.key.as_ref().ok_or(FheError::MissingEvaluationKey)?;
        let params = self.plan.parameters.set().params;
        let mut lwe = LweCiphertextOwned::new(
            0u64,
            LweSize(params.glwe_dimension.0 * params.polynomial_size.0 + 1),
            params.ciphertext_modulus,
        );
        // A mask that is not all zero: tfhe-rs short-cuts trivial ciphertexts.
        for (i, c) in lwe.as_mut().iter_mut().enumerate() {
            *c = splitmix(i as u64);
        }
        let ct = tfhe::shortint::Ciphertext::new(
            lwe,
            tfhe::shortint::ciphertext::Degree::new(0),
            tfhe::shortint::ciphertext::NoiseLevel::NOMINAL,
            params.message_modulus,
            params.carry_modulus,
            tfhe::shortint::parameters::AtomicPatternKind::Standard(
                tfhe::shortint::parameters::PBSOrder::KeyswitchBootstrap,
            ),
        );
        let lut = server_key.generate_lookup_table(|x| x);
        let mut times: Vec<f64> = (0..repeats.max(1))
            .map(|_| {
                let start = std::time::Instant::now();
                let _ = std::hint::black_box(server_key.apply_lookup_table(std::hint::black_box(&ct), &lut));
                start.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// Extracts one sample's inputs, starting at packed coefficient `start`.
    fn unpack_sample(
        &self,
        spec: &ClientSpec,
        packed: &GlweCiphertextListOwned<u64>,
        small: Option<&GlweCiphertextListOwned<u64>>,
        (start, small_start): (usize, usize),
        lwe_size: LweSize,
    ) -> Result<Vec<Tensor<Ct>>> {
        let params = self.plan.parameters.set().params;
        let n = params.polynomial_size.0;
        let (mut first, mut small_first) = (start, small_start);
        spec.inputs
            .iter()
            .enumerate()
            .map(|(index, (shape, _, deltas))| {
                if spec.is_small_key_input(index) {
                    let list = small.ok_or_else(|| FheError::BadCiphertexts("small-key inputs missing".into()))?;
                    let poly = list.polynomial_size().0;
                    let size = params.lwe_dimension.to_lwe_size();
                    let values: Vec<Ct> = deltas
                        .par_iter()
                        .enumerate()
                        .map(|(j, d)| {
                            let next = small_first + j;
                            let mut lwe = LweCiphertextOwned::new(0u64, size, params.ciphertext_modulus);
                            extract_lwe_sample_from_glwe_ciphertext(
                                &list.get(next / poly),
                                &mut lwe,
                                MonomialDegree(next % poly),
                            );
                            Ct { lwe, delta_log: *d }
                        })
                        .collect();
                    small_first += deltas.len();
                    return ArrayD::from_shape_vec(IxDyn(shape), values)
                        .map_err(|e| FheError::BadCiphertexts(e.to_string()));
                }
                // In parallel: a sample may have thousands of inputs (thermometer bits), and
                // extracting them alone would leave the other threads idle.
                let values: Vec<Ct> = deltas
                    .par_iter()
                    .enumerate()
                    .map(|(j, d)| {
                        let next = first + j;
                        let mut lwe = LweCiphertextOwned::new(0u64, lwe_size, params.ciphertext_modulus);
                        extract_lwe_sample_from_glwe_ciphertext(
                            &packed.get(next / n),
                            &mut lwe,
                            MonomialDegree(next % n),
                        );
                        Ct { lwe, delta_log: *d }
                    })
                    .collect();
                first += deltas.len();
                ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|e| FheError::BadCiphertexts(e.to_string()))
            })
            .collect()
    }

    /// Simulation: clear evaluation carrying sampled noise beside every value (see
    /// [`SimulatedBackend`]): lookup failures, approximate-rounding flips and real-valued
    /// output errors happen as under encryption; `seed` makes it reproducible.
    pub fn simulate(&self, batch: &[Vec<Vec<i64>>], seed: u64) -> Result<Vec<Vec<Vec<i64>>>> {
        let noisy = self.simulate_noisy(batch, seed)?;
        Ok(noisy.into_iter().map(|s| s.into_iter().map(|o| o.iter().map(Noisy::decrypt).collect()).collect()).collect())
    }

    /// Simulation before decryption: per sample, per output, each element's clear value
    /// and the noise it carries (in units of the output).
    pub fn simulate_noisy(&self, batch: &[Vec<Vec<i64>>], seed: u64) -> Result<Vec<Vec<Vec<Noisy>>>> {
        let noise = self.plan.parameters.set().noise_model();
        batch
            .par_iter()
            .enumerate()
            .map(|(i, sample)| {
                let backend = SimulatedBackend {
                    circuit: &self.circuit,
                    plan: &self.plan,
                    noise,
                    seed: splitmix(seed ^ splitmix(i as u64)),
                };
                let inputs = shape_inputs(&self.circuit, sample)?
                    .into_iter()
                    .zip(self.circuit.inputs())
                    .map(|(tensor, id)| {
                        let values: Vec<Noisy> =
                            tensor.iter().enumerate().map(|(e, v)| backend.encrypt(*id, e, *v)).collect();
                        ArrayD::from_shape_vec(tensor.raw_dim(), values)
                            .map_err(|e| FheError::BadInput(format!("input shape: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let outs = evaluate(&self.circuit, &backend, inputs)?;
                Ok(outs
                    .into_iter()
                    .enumerate()
                    .map(|(o, t)| t.iter().enumerate().map(|(e, v)| backend.sanitized(o, e, *v)).collect())
                    .collect())
            })
            .collect()
    }

    /// Serialises the compiled circuit (server side).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        envelope::seal(Kind::Model, &self.fingerprint, self)
    }

    /// Reads a compiled circuit: decoding validates circuit and plan and recomputes the
    /// fingerprint (see [`CompiledCircuit`]), which must be the one in the header.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let me: Self = envelope::open(bytes, Kind::Model, None, limits::MODEL_BYTES)?;
        let header = envelope::peek_fingerprint(bytes, Kind::Model)?;
        if header != me.fingerprint {
            return Err(FheError::Format { what: "model", detail: "fingerprint does not match the content".into() });
        }
        Ok(me)
    }
}

impl ClientSpec {
    /// Generates a client key and the matching evaluation key.
    pub fn keygen(&self) -> (ClientKey, EvaluationKey) {
        let set = self.parameter_set.set();
        let key = ShortintClientKey::new(set.params);
        let server = self.needs_evaluation_key.then(|| ServerKey::new(&key));
        (
            ClientKey { fingerprint: self.fingerprint, parameter_set: self.parameter_set, key },
            EvaluationKey { fingerprint: self.fingerprint, key: server },
        )
    }

    /// Generates a client key and the compressed evaluation key (for transport).
    pub fn keygen_compressed(&self) -> (ClientKey, CompressedEvaluationKey) {
        let set = self.parameter_set.set();
        let key = ShortintClientKey::new(set.params);
        let server = self.needs_evaluation_key.then(|| CompressedServerKey::new(&key));
        (
            ClientKey { fingerprint: self.fingerprint, parameter_set: self.parameter_set, key },
            CompressedEvaluationKey { fingerprint: self.fingerprint, key: server },
        )
    }

    /// Checks a spec read from an untrusted file: its parameter set must be bounded and
    /// secure (see [`crate::generated::check_security`]) before any key is made, and every
    /// input's shape, ranges and scales must agree (so that encrypting allocates what the
    /// spec holds, and every scale is one a plan can give).
    pub fn validate(&self) -> Result<()> {
        self.parameter_set.validate()?;
        let bad = |detail: String| Err(FheError::Format { what: "client specification", detail });
        for (i, (shape, ranges, deltas)) in self.inputs.iter().enumerate() {
            let elements = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
            if elements != Some(ranges.len()) || deltas.len() != ranges.len() {
                return bad(format!(
                    "input {i}: shape {shape:?}, {} ranges and {} scales disagree",
                    ranges.len(),
                    deltas.len()
                ));
            }
            if ranges.iter().any(|r| r.lo > r.hi) || deltas.iter().any(|d| !(1..=63).contains(d)) {
                return bad(format!("input {i}: an empty range or a scale outside 2^1..2^63"));
            }
        }
        if !self.small_key_inputs.is_empty() && self.small_key_inputs.len() != self.inputs.len() {
            return bad(format!("{} small-key flags for {} inputs", self.small_key_inputs.len(), self.inputs.len()));
        }
        Ok(())
    }

    fn check(&self, what: &'static str, found: &Fingerprint) -> Result<()> {
        if found != &self.fingerprint {
            return Err(FheError::WrongModel { what, expected: self.fingerprint.short(), found: found.short() });
        }
        Ok(())
    }

    /// Whether input `index` is encrypted under the small LWE key.
    pub fn is_small_key_input(&self, index: usize) -> bool {
        self.small_key_inputs.get(index).copied().unwrap_or(false)
    }

    /// Elements per sample under the large key and under the small key.
    pub fn elements_per_sample(&self) -> (usize, usize) {
        self.inputs.iter().enumerate().fold((0, 0), |(big, small), (i, (_, ranges, _))| {
            if self.is_small_key_input(i) { (big, small + ranges.len()) } else { (big + ranges.len(), small) }
        })
    }

    /// Encrypts a batch: each sample is the list of flat circuit inputs.
    pub fn encrypt(&self, key: &ClientKey, batch: &[Vec<Vec<i64>>]) -> Result<EncryptedInputs> {
        self.check("client key", &key.fingerprint)?;
        let params = self.parameter_set.set().params;
        let (secret, noise) = key.key.encryption_key_and_noise();
        // The large LWE key is the GLWE key laid flat.
        let glwe_key = GlweSecretKey::from_container(secret.as_ref(), params.polynomial_size);
        let n = params.polynomial_size.0;
        let (mut plaintexts, mut small_plaintexts) = (Vec::new(), Vec::new());
        for sample in batch {
            for (index, encoded) in self.encode_sample(sample)?.into_iter().enumerate() {
                if self.is_small_key_input(index) {
                    small_plaintexts.extend(encoded);
                } else {
                    plaintexts.extend(encoded);
                }
            }
        }
        let small = if small_plaintexts.is_empty() {
            None
        } else {
            let AtomicPatternClientKey::Standard(standard) = &key.key.atomic_pattern else {
                return Err(FheError::Config(
                    "small-key inputs need a standard (keyswitch-bootstrap) client key".into(),
                ));
            };
            let small_key = standard.small_lwe_secret_key();
            // The small LWE key laid out as a GLWE key: one mask per `poly` inputs.
            let poly = small_key_polynomial_size(small_key.lwe_dimension().0);
            let glwe_key = GlweSecretKey::from_container(small_key.as_ref(), PolynomialSize(poly));
            let count = small_plaintexts.len().div_ceil(poly);
            small_plaintexts.resize(count * poly, 0);
            let mut seeder = new_seeder();
            let mut list = SeededGlweCiphertextList::new(
                0u64,
                glwe_key.glwe_dimension().to_glwe_size(),
                PolynomialSize(poly),
                GlweCiphertextCount(count),
                seeder.seed().into(),
                params.ciphertext_modulus,
            );
            encrypt_seeded_glwe_ciphertext_list(
                &glwe_key,
                &mut list,
                &PlaintextList::from_container(small_plaintexts),
                params.lwe_noise_distribution,
                seeder.as_mut(),
            );
            Some(list)
        };
        let count = plaintexts.len().div_ceil(n).max(1);
        plaintexts.resize(count * n, 0);
        let mut seeder = new_seeder();
        let mut packed = SeededGlweCiphertextList::new(
            0u64,
            params.glwe_dimension.to_glwe_size(),
            params.polynomial_size,
            GlweCiphertextCount(count),
            seeder.seed().into(),
            params.ciphertext_modulus,
        );
        encrypt_seeded_glwe_ciphertext_list(
            &glwe_key,
            &mut packed,
            &PlaintextList::from_container(plaintexts),
            noise,
            seeder.as_mut(),
        );
        Ok(EncryptedInputs { fingerprint: self.fingerprint, samples: batch.len(), packed, small })
    }

    /// Per input, the plaintexts of one sample.
    fn encode_sample(&self, sample: &[Vec<i64>]) -> Result<Vec<Vec<u64>>> {
        if sample.len() != self.inputs.len() {
            return Err(FheError::BadInput(format!(
                "{} inputs given, the circuit takes {}",
                sample.len(),
                self.inputs.len()
            )));
        }
        let mut plaintexts = Vec::with_capacity(self.inputs.len());
        for (index, (values, (_, ranges, deltas))) in sample.iter().zip(&self.inputs).enumerate() {
            let mut encoded = Vec::with_capacity(values.len());
            if values.len() != ranges.len() {
                return Err(FheError::BadInput(format!(
                    "input {index}: {} values, expected {}",
                    values.len(),
                    ranges.len()
                )));
            }
            for (e, ((v, r), d)) in values.iter().zip(ranges).zip(deltas).enumerate() {
                if !r.contains(*v) {
                    return Err(FheError::BadInput(format!(
                        "input {index} element {e}: {v} is outside [{}, {}]",
                        r.lo, r.hi
                    )));
                }
                encoded.push((*v as u64).wrapping_shl(*d));
            }
            plaintexts.push(encoded);
        }
        Ok(plaintexts)
    }

    /// Decrypts a batch of outputs: per sample, the flat values of each output.
    pub fn decrypt(&self, key: &ClientKey, outputs: &EncryptedOutputs) -> Result<Vec<Vec<Vec<i64>>>> {
        self.check("client key", &key.fingerprint)?;
        self.check("encrypted outputs", &outputs.fingerprint)?;
        let secret = key.key.encryption_key();
        let total: usize = self.outputs.iter().sum();
        let lwe_size = secret.lwe_dimension().to_lwe_size();
        let modulus = self.parameter_set.set().params.ciphertext_modulus;
        outputs
            .samples
            .iter()
            .map(|(list, deltas)| {
                // The answer comes from a server: its sizes are checked before tfhe-rs
                // divides by them or asserts on them (an LWE size of 0 divided by zero).
                if list.lwe_size() != lwe_size || list.ciphertext_modulus() != modulus {
                    return Err(FheError::BadCiphertexts(format!(
                        "output ciphertexts of LWE size {} and modulus {}; the parameters give {} and {modulus}",
                        list.lwe_size().0,
                        list.ciphertext_modulus(),
                        lwe_size.0
                    )));
                }
                if list.as_ref().len() != total.saturating_mul(lwe_size.0) || deltas.len() != total {
                    return Err(FheError::BadCiphertexts(format!(
                        "{} output ciphertexts, expected {total}",
                        list.as_ref().len() / lwe_size.0
                    )));
                }
                let mut values = list.iter().zip(deltas).map(|(ct, d)| {
                    let p = decrypt_lwe_ciphertext(&secret, &ct).0;
                    let d = (*d).clamp(1, 63);
                    (p.wrapping_add(1u64 << (d - 1)) as i64) >> d
                });
                Ok(self.outputs.iter().map(|n| values.by_ref().take(*n).collect()).collect())
            })
            .collect()
    }
}

macro_rules! envelope_io {
    ($ty:ty, $kind:expr, $limit:expr) => {
        impl $ty {
            /// Serialises into a checked envelope.
            pub fn to_bytes(&self) -> Result<Vec<u8>> {
                envelope::seal($kind, &self.fingerprint, self)
            }

            /// Reads from bytes, refusing anything made for another model than `expected`.
            pub fn from_bytes(bytes: &[u8], expected: &Fingerprint) -> Result<Self> {
                envelope::open(bytes, $kind, Some(expected), $limit)
            }

            /// The compiled circuit this belongs to.
            pub fn fingerprint(&self) -> Fingerprint {
                self.fingerprint
            }
        }
    };
}

envelope_io!(ClientKey, Kind::ClientKey, limits::KEY_BYTES);
envelope_io!(EvaluationKey, Kind::EvaluationKey, limits::KEY_BYTES);
envelope_io!(CompressedEvaluationKey, Kind::CompressedEvaluationKey, limits::KEY_BYTES);
envelope_io!(EncryptedInputs, Kind::EncryptedInputs, limits::CIPHERTEXT_BYTES);
envelope_io!(EncryptedOutputs, Kind::EncryptedOutputs, limits::CIPHERTEXT_BYTES);

/// The conformance parameters of the server key of `compiled`'s parameter set.
fn server_key_conformance(compiled: &CompiledCircuit) -> (AtomicPatternParameters, MaxDegree) {
    let params = compiled.plan.parameters.set().params;
    let max_degree = MaxDegree::from_msg_carry_modulus(params.message_modulus, params.carry_modulus);
    (AtomicPatternParameters::from(params), max_degree)
}

impl CompressedEvaluationKey {
    /// Reads an untrusted key for `compiled` as tfhe-rs's `safe_deserialize_conformant`
    /// does: size-limited, versioned, then checked against the model's parameter set
    /// ([`CompressedEvaluationKey::check_conformant`]) before it is returned, so nothing is
    /// expanded from dimensions a client claims.
    pub fn from_bytes_conformant(bytes: &[u8], compiled: &CompiledCircuit) -> Result<Self> {
        let key = Self::from_bytes(bytes, &compiled.fingerprint)?;
        key.check_conformant(compiled)?;
        Ok(key)
    }

    /// Checks an untrusted key against the circuit it claims to serve, before anything is
    /// expanded: a circuit without table lookups takes no key at all; otherwise the key's
    /// keyswitching and bootstrapping keys must have exactly the dimensions, levels, bases,
    /// modulus and seed layout of the circuit's parameter set (tfhe-rs's conformance check),
    /// so decompression allocates what the parameter set says and nothing a client claims.
    pub fn check_conformant(&self, compiled: &CompiledCircuit) -> Result<()> {
        compiled.check_key("evaluation key", &self.fingerprint)?;
        let needs_key = compiled.plan.report.needs_evaluation_key;
        match (&self.key, needs_key) {
            (None, false) => Ok(()),
            (Some(_), false) => {
                Err(FheError::BadKey("this model has no table lookups and takes no evaluation key".into()))
            }
            (None, true) => Err(FheError::MissingEvaluationKey),
            (Some(key), true) => {
                if key.is_conformant(&server_key_conformance(compiled)) {
                    Ok(())
                } else {
                    Err(FheError::BadKey(format!(
                        "its dimensions do not match the model's parameter set {}",
                        compiled.plan.parameters.set().name
                    )))
                }
            }
        }
    }

    /// Whether the key holds keyswitching and bootstrapping keys.
    pub fn has_bootstrapping_key(&self) -> bool {
        self.key.is_some()
    }

    /// Expands the seeded key for evaluation.
    pub fn decompress(&self) -> EvaluationKey {
        EvaluationKey { fingerprint: self.fingerprint, key: self.key.as_ref().map(CompressedServerKey::decompress) }
    }
}

impl EvaluationKey {
    /// Reads an untrusted expanded key for `compiled`: size-limited, versioned, then checked
    /// against the model's parameter set ([`EvaluationKey::check_conformant`]) before it is
    /// returned.
    pub fn from_bytes_conformant(bytes: &[u8], compiled: &CompiledCircuit) -> Result<Self> {
        let key = Self::from_bytes(bytes, &compiled.fingerprint)?;
        key.check_conformant(compiled)?;
        Ok(key)
    }

    /// Checks an untrusted expanded key against the circuit it claims to serve: none for a
    /// circuit without lookups; otherwise keyswitching and bootstrapping keys of exactly the
    /// parameter set's dimensions, levels, bases and modulus (tfhe-rs's conformance check), so
    /// that evaluation never hands tfhe-rs a key whose sizes disagree with the ciphertexts.
    pub fn check_conformant(&self, compiled: &CompiledCircuit) -> Result<()> {
        compiled.check_key("evaluation key", &self.fingerprint)?;
        match (&self.key, compiled.plan.report.needs_evaluation_key) {
            (None, false) => Ok(()),
            (Some(_), false) => {
                Err(FheError::BadKey("this model has no table lookups and takes no evaluation key".into()))
            }
            (None, true) => Err(FheError::MissingEvaluationKey),
            (Some(key), true) if key.is_conformant(&server_key_conformance(compiled)) => Ok(()),
            (Some(_), true) => Err(FheError::BadKey(format!(
                "its dimensions do not match the model's parameter set {}",
                compiled.plan.parameters.set().name
            ))),
        }
    }
}

impl EncryptedInputs {
    /// Reads an untrusted batch for `compiled`: size-limited, versioned, then checked against
    /// the circuit's parameters ([`CompiledCircuit::check_inputs`]) before it is returned.
    pub fn from_bytes_conformant(bytes: &[u8], compiled: &CompiledCircuit) -> Result<Self> {
        let inputs = Self::from_bytes(bytes, &compiled.fingerprint)?;
        compiled.check_inputs(&inputs)?;
        Ok(inputs)
    }
}

/// Tests: a client that holds an evaluation key re-running the server's computation with a
/// candidate model of the same shape.
#[cfg(test)]
impl EvaluationKey {
    pub(crate) fn relabelled(&self, fingerprint: Fingerprint) -> Self {
        Self { fingerprint, key: self.key.clone() }
    }
}

/// Tests: keys around shortint keys made once per parameter set ([`crate::testing`]).
#[cfg(any(test, feature = "testing"))]
impl ClientSpec {
    pub(crate) fn keys_around(&self, key: ShortintClientKey, server: Option<ServerKey>) -> (ClientKey, EvaluationKey) {
        (
            ClientKey { fingerprint: self.fingerprint, parameter_set: self.parameter_set, key },
            EvaluationKey { fingerprint: self.fingerprint, key: server },
        )
    }
}

#[cfg(test)]
impl EncryptedInputs {
    pub(crate) fn relabelled(&self, fingerprint: Fingerprint) -> Self {
        Self { fingerprint, ..self.clone() }
    }
}

impl EncryptedInputs {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }
}

impl ClientKey {
    /// The parameter set of this key.
    pub fn parameter_set(&self) -> Parameters {
        self.parameter_set
    }
}
