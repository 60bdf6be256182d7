//! fheml's TFHE runtime: runs any [`fheml_circuits::Circuit`] on encrypted inputs.
//!
//! [`CompiledCircuit::compile`] picks encodings and the cheapest parameter set that meets
//! the requested failure probability and output error budget ([`FheConfig`]): one generated
//! for the circuit by the [`optimizer`] (dimensions and decompositions searched, noise fixed
//! at tfhe-rs's secure minimum, see [`generated`]) or one of tfhe-rs's vetted sets, whichever
//! is cheaper. Real-valued outputs ([`fheml_circuits::OutputKind::Real`]) decrypt within a
//! standard-deviation budget instead of exactly. The choice is reported before any key exists. The client generates keys from the [`ClientSpec`],
//! encrypts, the server [`CompiledCircuit::run`]s with the evaluation key only, and the
//! client decrypts. Leveled-only circuits need no evaluation key at all.
//!
//! A server facing clients sanitizes what it returns ([`sanitize`]): without it an answer is
//! a deterministic function of the client's ciphertexts and the model, and gives the client
//! the weights. Compile with [`FheConfigParams::sanitize`], have the client send
//! [`ClientSpec::public_key`], and answer with [`CompiledCircuit::run_with`] and
//! [`Sanitization::On`] (or [`CompiledCircuit::sanitize`] after any run).
//!
//! ```
//! use fheml_circuits::{CircuitBuilder, Interval};
//! use fheml_fhe_runtime::{CompiledCircuit, FheConfig};
//! use ndarray::array;
//!
//! let mut b = CircuitBuilder::new();
//! let x = b.input(&[3], Interval::new(0, 255).unwrap());
//! let y = b.matmul(x, array![[3], [-2], [1]])?;
//! b.output(y)?;
//! let compiled = CompiledCircuit::compile(b.build()?, &FheConfig::default())?;
//! assert!(!compiled.report().needs_evaluation_key);
//!
//! let client = compiled.client_spec();
//! let (client_key, eval_key) = client.keygen();
//! let query = client.encrypt(&client_key, &[vec![vec![10, 20, 30]]])?;
//! let answer = compiled.run(&eval_key, &query)?;            // server: no secret key
//! assert_eq!(client.decrypt(&client_key, &answer)?, vec![vec![vec![20]]]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod compiled;
mod envelope;
mod error;
mod fingerprint;
pub mod generated;
mod model;
pub mod noise;
pub mod optimizer;
pub mod params;
pub mod plan;
pub mod sanitize;
mod simulate;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tfhe_backend;
pub mod versioned;

#[cfg(test)]
mod noise_tests;
#[cfg(test)]
mod sanitize_tests;

pub use compiled::{
    ClientKey, ClientSpec, CompiledCircuit, CompressedEvaluationKey, EncryptedInputs, EncryptedOutputs, EvaluationKey,
    limits,
};
pub use envelope::{Kind, open, peek_fingerprint, peek_kind, seal};
pub use error::{FheError, Result};
pub use fingerprint::Fingerprint;
pub use generated::GeneratedParameters;
pub use model::{FheModel, Mode};
pub use params::{NoiseModel, ParameterSet, ParameterSetId, Parameters};
pub use plan::{
    CompileReport, FheConfig, FheConfigParams, OutputReport, ParameterMode, Plan, ReadSpec, SanitizationPlan,
};
pub use sanitize::{PublicKey, Sanitization, Sanitizer};
pub use simulate::{Noisy, SimulatedBackend};
pub use tfhe_backend::{Ct, TfheBackend};
