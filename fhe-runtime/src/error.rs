//! The runtime's error type.

use fheml_circuits::CircuitError;

/// Everything that can go wrong while compiling, generating keys, encrypting, evaluating,
/// decrypting or (de)serialising.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FheError {
    /// The circuit itself is malformed or failed in clear evaluation.
    #[error(transparent)]
    Circuit(#[from] CircuitError),
    /// No parameter set, generated or vetted, evaluates the circuit within the requested
    /// failure probability and output error.
    #[error("no parameter set fits: {why}")]
    NoParameters {
        /// One sentence: the tightest lookup or output, and what to change.
        why: String,
        /// Each candidate considered and why it failed, one per line (for `--verbose`).
        candidates: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Evaluation needs an evaluation key with bootstrapping keys, and none was given.
    #[error("this circuit has table lookups: the server needs an evaluation key with bootstrapping keys")]
    MissingEvaluationKey,
    /// A file or byte buffer is not what it claims to be.
    #[error("{what}: {detail}")]
    Format {
        /// The kind of object being read.
        what: &'static str,
        /// What is wrong, and what to do.
        detail: String,
    },
    /// A key or ciphertext was made for another compiled circuit.
    #[error(
        "{what} belongs to another model (fingerprint {found}, this model is {expected}); generate keys and ciphertexts with this model"
    )]
    WrongModel {
        /// The kind of object.
        what: &'static str,
        /// The model's fingerprint.
        expected: String,
        /// The object's fingerprint.
        found: String,
    },
    /// Ciphertexts have the wrong count or size for this circuit.
    #[error("ciphertext batch does not fit the circuit: {0}")]
    BadCiphertexts(String),
    /// An evaluation key does not fit the circuit's parameter set.
    #[error("evaluation key rejected: {0}")]
    BadKey(String),
    /// The caller asked an evaluation to stop (its client gave up or timed out).
    #[error("evaluation interrupted")]
    Interrupted,
    /// Output sanitization cannot be done as asked (a model compiled without room for it, a
    /// public key that does not fit the model).
    #[error("output sanitization: {0}")]
    Sanitization(String),
    /// Input values do not fit the circuit.
    #[error("input rejected: {0}")]
    BadInput(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = FheError> = std::result::Result<T, E>;
