//! Output sanitization: the ciphertexts a server returns carry nothing of the model beyond
//! the decrypted values.
//!
//! # The leak
//!
//! A returned ciphertext is a deterministic function of the client's inputs, of the
//! evaluation key and of the model. For a leveled output `y = Σ wᵢ·xᵢ + b`, the server
//! returns `(Σ wᵢ·aᵢ, Σ wᵢ·bᵢ + b·Δ)` where `(aᵢ, bᵢ)` are the client's input ciphertexts:
//! whoever holds the inputs (the client, or anyone who saw them) solves the mask's `k·N`
//! linear equations for every integer weight and then reads the bias off the body, from one
//! answer and without any secret key. The noise `Σ wᵢ·eᵢ` is another linear function of the
//! weights the client can compute, since it knows its own `eᵢ`. An output that went through
//! a lookup is a deterministic function of the whole table (the blind rotation mixes every
//! entry into the mask), and the client, which generated the bootstrapping key, can
//! recompute it for any candidate table.
//!
//! # The fix
//!
//! The client sends a [`PublicKey`]: a seeded compact LWE public key (tfhe-rs's
//! `LweCompactPublicKey`, RLWE in dimension `k·N`) under the same large LWE key its inputs
//! are encrypted under, with the key's own noise distribution (the parameter set's GLWE
//! noise, checked secure for `k·N`). Its mask is expanded from a seed derived from the
//! model's fingerprint, which the server checks, so a client cannot pick a degenerate mask.
//! For every output element the server adds a fresh public-key encryption of zero
//! (`encrypt_lwe_ciphertext_with_compact_public_key`, server randomness from the OS): the
//! new mask is `a⊛r + e₁` plus the old one, pseudo-random under RLWE whatever the weights.
//! Its body noise is the flooding noise: a Gaussian that tops the output's noise up to its
//! whole error budget (99% of the variance the plan allows: `output_std` steps for a
//! real-valued output, failure at `p_error` for an exact one), so the total noise variance
//! is the budget, a public number, and no longer the weights' `σ²·Σ wᵢ²`.
//!
//! # What it guarantees
//!
//! Let `σ_w` be the std of the output's own noise (the plan's analysis: fresh noise through
//! the weights, bootstrap noise through what follows) and `B = z·σ_w` its bound except with
//! probability `p_error` (`z = √2·erfc⁻¹(p_error)`). A flood of std `σ_f ≥ 2^λ·B` makes one
//! output element's noise `μ + flood` (for any `|μ| ≤ B` the client can compute) within
//! statistical distance `2^-λ/√(2π) + p_error` of `flood` alone, and within Rényi
//! divergence `R₂ ≤ exp(2^-2λ)`: over `T` answered elements `R₂ ≤ exp(T·2^-2λ)`, so any
//! search for the weights succeeds with probability at most `√(e·q)` for `T ≤ 2^2λ`, `q`
//! its success against answers whose noise owes nothing to the weights. The planner
//! computes `λ` for every output element of every candidate set and keeps only sets where
//! the smallest reaches [`crate::FheConfig::sanitize_bits`] (default 16); the report gives
//! the reached `λ` per output and output errors with the flood included.
//!
//! The public key needs `k·N` to be a power of two (tfhe-rs's compact public key), so a
//! sanitized plan never picks a set with `k = 3`.
//!
//! # What it does not do
//!
//! It assumes a client that encrypts honestly (in-range messages, noise from the scheme's
//! distribution) and an honestly generated public key: a client that crafts input
//! ciphertexts whose phase carries large chosen offsets (or a public key with a chosen body)
//! gets those offsets multiplied by the weights, beyond any flooding. Closing that needs
//! proofs of well-formed encryption (tfhe-rs's zero-knowledge compact encryption), not done.
//! Outputs fed by lookups carry bootstrap noise (`2^41`–`2^55` on the 64-bit torus), which
//! leaves little room for flooding: such circuits reach only a few bits and fail to compile
//! with the default [`crate::FheConfig::sanitize_bits`]; the mask re-randomization is then
//! still available at a lower `sanitize_bits`. What the client learns by design (quantizer
//! ranges, output scales, parameter set, per-tree scores where boosting sums on the
//! client) is listed in `docs/privacy.md`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tfhe::conformance::ParameterSetConformant;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::*;
use tfhe::shortint::parameters::ClassicPBSParameters;

use crate::compiled::{ClientKey, ClientSpec, CompiledCircuit, EncryptedInputs, EncryptedOutputs, EvaluationKey};
use crate::envelope::{self, Kind};
use crate::error::{FheError, Result};
use crate::fingerprint::Fingerprint;

/// Largest serialized public key: `k·N ≤ 2^16` words and a seed.
pub const PUBLIC_KEY_BYTES: usize = (8 << 16) + 4096;

/// Whether a parameter set can sanitize: its large LWE dimension `k·N` must be a power of
/// two, the ring of tfhe-rs's compact public key.
pub fn supports(params: &ClassicPBSParameters) -> bool {
    (params.glwe_dimension.0 * params.polynomial_size.0).is_power_of_two()
}

/// The seed of every public key's mask for one compiled circuit: public, derived from the
/// fingerprint, so the mask is uniformly random and no client chooses it.
pub(crate) fn mask_seed(fingerprint: &Fingerprint) -> CompressionSeed {
    let digest =
        Sha256::new().chain_update(b"fheml sanitization public key mask").chain_update(fingerprint.0).finalize();
    let mut seed = [0u8; 16];
    seed.copy_from_slice(&digest[..16]);
    CompressionSeed::from(Seed(u128::from_le_bytes(seed)))
}

/// The client's public key for output sanitization (seeded: `k·N` words on the wire).
#[derive(Serialize, Deserialize)]
pub struct PublicKey {
    fingerprint: Fingerprint,
    #[serde(with = "crate::versioned")]
    key: SeededLweCompactPublicKeyOwned<u64>,
}

/// A public key checked against its circuit and expanded: what a server sanitizes with.
pub struct Sanitizer {
    fingerprint: Fingerprint,
    key: LweCompactPublicKeyOwned<u64>,
}

/// Whether the server sanitizes the ciphertexts it returns.
#[derive(Clone, Copy)]
pub enum Sanitization<'a> {
    /// Returns outputs as computed: their masks and noise depend on the model.
    Off,
    /// Re-randomizes and floods every output with this client's public key.
    On(&'a Sanitizer),
}

impl PublicKey {
    /// Serialises into a checked envelope.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        envelope::seal(Kind::PublicKey, &self.fingerprint, self)
    }

    /// Reads from bytes (bounded by [`PUBLIC_KEY_BYTES`]), refusing a key made for another
    /// model than `expected`. The key is checked against the circuit by
    /// [`CompiledCircuit::sanitizer`].
    pub fn from_bytes(bytes: &[u8], expected: &Fingerprint) -> Result<Self> {
        envelope::open(bytes, Kind::PublicKey, Some(expected), PUBLIC_KEY_BYTES)
    }

    /// The compiled circuit this belongs to.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Size on the wire, in bytes (the seeded key's body).
    pub fn size_bytes(&self) -> usize {
        self.key.as_ref().len() * 8
    }
}

impl ClientSpec {
    /// Client side: the public key a sanitizing server needs, under `key`'s large LWE key.
    pub fn public_key(&self, key: &ClientKey) -> Result<PublicKey> {
        if key.fingerprint() != self.fingerprint {
            return Err(FheError::WrongModel {
                what: "client key",
                expected: self.fingerprint.short(),
                found: key.fingerprint().short(),
            });
        }
        let params = self.parameter_set.set().params;
        if !supports(&params) {
            return Err(FheError::Sanitization(format!(
                "parameter set {} has LWE dimension {}, not a power of two: no compact public key",
                self.parameter_set.set().name,
                params.glwe_dimension.0 * params.polynomial_size.0
            )));
        }
        let (secret, noise) = key.key.encryption_key_and_noise();
        let mut public = SeededLweCompactPublicKeyOwned::new(
            0u64,
            secret.lwe_dimension(),
            mask_seed(&self.fingerprint),
            params.ciphertext_modulus,
        );
        let mut seeder = new_seeder();
        generate_seeded_lwe_compact_public_key(&secret, &mut public, noise, seeder.as_mut());
        Ok(PublicKey { fingerprint: self.fingerprint, key: public })
    }
}

impl CompiledCircuit {
    /// Server side: checks an untrusted public key against this circuit (model, dimension,
    /// modulus, and the mask seed every key of this model must use) and expands it.
    pub fn sanitizer(&self, public: &PublicKey) -> Result<Sanitizer> {
        let fingerprint = self.fingerprint();
        if public.fingerprint != fingerprint {
            return Err(FheError::WrongModel {
                what: "public key",
                expected: fingerprint.short(),
                found: public.fingerprint.short(),
            });
        }
        self.sanitization_plan()?;
        let params = self.plan().parameters.set().params;
        let dimension = LweDimension(params.glwe_dimension.0 * params.polynomial_size.0);
        let conformance = LweCompactPublicKeyConformanceParams {
            encryption_lwe_dimension: dimension,
            ciphertext_modulus: params.ciphertext_modulus,
        };
        if !public.key.is_conformant(&conformance) {
            return Err(FheError::Sanitization(format!(
                "the public key does not fit the model's parameter set (LWE dimension {})",
                dimension.0
            )));
        }
        if public.key.compression_seed() != mask_seed(&fingerprint) {
            return Err(FheError::Sanitization("the public key's mask is not the one this model prescribes".into()));
        }
        let key = public.key.clone().decompress_into_lwe_compact_public_key();
        Ok(Sanitizer { fingerprint, key })
    }

    fn sanitization_plan(&self) -> Result<&crate::plan::SanitizationPlan> {
        self.plan().sanitization.as_ref().ok_or_else(|| {
            FheError::Sanitization(
                "this model was compiled without room for sanitization noise; compile it with sanitization on".into(),
            )
        })
    }

    /// Server side: evaluates, then sanitizes every returned ciphertext when asked (see the
    /// [module doc](crate::sanitize)). A server facing clients uses
    /// [`Sanitization::On`]; [`CompiledCircuit::run`] is `Sanitization::Off`.
    pub fn run_with(
        &self,
        key: &EvaluationKey,
        inputs: &EncryptedInputs,
        sanitization: Sanitization<'_>,
    ) -> Result<EncryptedOutputs> {
        if let Sanitization::On(sanitizer) = sanitization {
            // Refused before any evaluation.
            self.check_sanitizer(sanitizer)?;
        }
        let mut outputs = self.run(key, inputs)?;
        if let Sanitization::On(sanitizer) = sanitization {
            self.sanitize(sanitizer, &mut outputs)?;
        }
        Ok(outputs)
    }

    fn check_sanitizer(&self, sanitizer: &Sanitizer) -> Result<()> {
        let fingerprint = self.fingerprint();
        if sanitizer.fingerprint != fingerprint {
            return Err(FheError::WrongModel {
                what: "public key",
                expected: fingerprint.short(),
                found: sanitizer.fingerprint.short(),
            });
        }
        self.sanitization_plan().map(|_| ())
    }

    /// Server side: re-randomizes every ciphertext of `outputs` with a fresh encryption of
    /// zero under the client's public key, whose body noise floods the output's noise to its
    /// planned budget.
    pub fn sanitize(&self, sanitizer: &Sanitizer, outputs: &mut EncryptedOutputs) -> Result<()> {
        self.check_sanitizer(sanitizer)?;
        if outputs.fingerprint() != self.fingerprint() {
            return Err(FheError::WrongModel {
                what: "encrypted outputs",
                expected: self.fingerprint().short(),
                found: outputs.fingerprint().short(),
            });
        }
        let plan = self.sanitization_plan()?;
        let params = self.plan().parameters.set().params;
        let lwe_size = LweSize(params.glwe_dimension.0 * params.polynomial_size.0 + 1);
        // Flooding std of each output element, on the unit torus.
        let deltas = &self.plan().deltas;
        let floods: Vec<f64> = self
            .circuit()
            .outputs()
            .iter()
            .zip(&plan.flood_std)
            .flat_map(|(id, stds)| {
                stds.iter().enumerate().map(move |(e, std)| std * 2f64.powi(deltas[id.0][e] as i32 - 64))
            })
            .collect();
        let mask_noise = params.glwe_noise_distribution;
        outputs.samples.par_iter_mut().try_for_each(|(list, _)| {
            if list.lwe_ciphertext_count().0 != floods.len()
                || list.lwe_size() != lwe_size
                || list.ciphertext_modulus() != params.ciphertext_modulus
            {
                return Err(FheError::BadCiphertexts(format!(
                    "{} output ciphertexts of size {}, expected {} of size {}",
                    list.lwe_ciphertext_count().0,
                    list.lwe_size().0,
                    floods.len(),
                    lwe_size.0
                )));
            }
            let mut seeder = new_seeder();
            let mut generator =
                EncryptionRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed(), seeder.as_mut());
            let mut zero = LweCiphertextOwned::new(0u64, lwe_size, params.ciphertext_modulus);
            for (mut ct, flood) in list.iter_mut().zip(&floods) {
                let body_noise = if *flood > 0.0 {
                    DynamicDistribution::new_gaussian_from_std_dev(StandardDev(*flood))
                } else {
                    mask_noise
                };
                encrypt_lwe_ciphertext_with_compact_public_key(
                    &sanitizer.key,
                    &mut zero,
                    Plaintext(0u64),
                    mask_noise,
                    body_noise,
                    generator.noise_generator_mut(),
                );
                lwe_ciphertext_add_assign(&mut ct, &zero);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use fheml_circuits::{CircuitBuilder, Interval};
    use ndarray::array;

    use super::*;
    use crate::FheConfig;
    use crate::testing::cached_keys;

    fn compiled(sanitize: bool) -> CompiledCircuit {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[3], Interval::new(0, 255).unwrap());
        let y = b.matmul(x, array![[3], [-2], [1]]).unwrap();
        b.output(y).unwrap();
        CompiledCircuit::compile(b.build().unwrap(), &FheConfig::params().sanitize(sanitize).check().unwrap()).unwrap()
    }

    #[test]
    fn encrypted_public_keys_are_checked_before_use() {
        let model = compiled(true);
        let spec = model.client_spec();
        assert!(spec.sanitized);
        let (client_key, _) = cached_keys(&spec);
        let public = spec.public_key(&client_key).unwrap();
        let bytes = public.to_bytes().unwrap();
        assert!(bytes.len() < PUBLIC_KEY_BYTES && public.size_bytes() == 8 * model.report().ciphertext_dimension);
        let back = PublicKey::from_bytes(&bytes, &model.fingerprint()).unwrap();
        assert!(model.sanitizer(&back).is_ok());

        let err = |r: Result<Sanitizer>| r.err().map(|e| e.to_string()).unwrap_or_default();
        // Made for another model.
        let other = compiled(false);
        assert!(PublicKey::from_bytes(&bytes, &other.fingerprint()).is_err());
        assert!(err(other.sanitizer(&back)).contains("another model"));
        // A model compiled without sanitization refuses to sanitize.
        let unsanitized = other.client_spec().public_key(&other.keygen().0);
        if let Ok(key) = unsanitized {
            assert!(err(other.sanitizer(&key)).contains("compiled without"));
        }
        // A mask the client chose (here from another seed) is refused.
        let params = model.plan().parameters.set().params;
        let dimension = LweDimension(model.report().ciphertext_dimension);
        let chosen = PublicKey {
            fingerprint: model.fingerprint(),
            key: SeededLweCompactPublicKeyOwned::new(
                0u64,
                dimension,
                CompressionSeed::from(Seed(1)),
                params.ciphertext_modulus,
            ),
        };
        assert!(err(model.sanitizer(&chosen)).contains("mask"));
        // A key of another dimension is refused.
        let small = PublicKey {
            fingerprint: model.fingerprint(),
            key: SeededLweCompactPublicKeyOwned::new(
                0u64,
                LweDimension(dimension.0 / 2),
                mask_seed(&model.fingerprint()),
                params.ciphertext_modulus,
            ),
        };
        assert!(err(model.sanitizer(&small)).contains("does not fit"));
        // Oversized or corrupted bytes are refused by the envelope.
        let mut flipped = bytes.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert!(PublicKey::from_bytes(&flipped, &model.fingerprint()).is_err());
    }

    #[test]
    fn encrypted_outputs_of_another_shape_are_refused() {
        let model = compiled(true);
        let spec = model.client_spec();
        let (client_key, eval_key) = cached_keys(&spec);
        let sanitizer = model.sanitizer(&spec.public_key(&client_key).unwrap()).unwrap();
        let inputs = spec.encrypt(&client_key, &[vec![vec![1, 2, 3]]]).unwrap();
        let mut outputs = model.run(&eval_key, &inputs).unwrap();
        outputs.samples[0].0 = LweCiphertextListOwned::new(
            0u64,
            LweSize(3),
            LweCiphertextCount(1),
            model.plan().parameters.set().params.ciphertext_modulus,
        );
        assert!(matches!(model.sanitize(&sanitizer, &mut outputs), Err(FheError::BadCiphertexts(_))));
    }
}
