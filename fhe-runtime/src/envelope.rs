//! Versioned, checksummed, size-limited envelopes for everything the runtime writes.
//!
//! Layout: magic `FHEML\0` + kind byte + format version byte, the owning circuit's
//! fingerprint (32 bytes), the payload length (u64 LE), the payload's SHA-256, then the
//! payload (bincode 2 of the serde form). Reading checks each field before decoding, and
//! refuses a payload longer than the caller's limit before allocating anything.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{FheError, Result};
use crate::fingerprint::Fingerprint;

const MAGIC: &[u8; 6] = b"FHEML\0";
// 2: plans carry many-LUT groups (`Plan::shared`), reports and configs their fields.
// 4: plans carry their sanitization, client specifications whether outputs are sanitized.
// 5: small-key inputs (plans, reports, client specifications and encrypted inputs).
// 6: keys and ciphertexts hold tfhe-rs objects in tfhe-rs's versioned form (models and
//    client specifications, which hold none, stay at 5).
const FORMAT_VERSION: u8 = 6;
/// The version of kinds that hold no tfhe-rs object.
const MODEL_FORMAT_VERSION: u8 = 5;

/// The format version this build writes and reads for `kind`.
fn format_version(kind: Kind) -> u8 {
    match kind {
        Kind::Model | Kind::ClientSpec => MODEL_FORMAT_VERSION,
        _ => FORMAT_VERSION,
    }
}
const HEADER_LEN: usize = 6 + 1 + 1 + 32 + 8 + 32;

/// What an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A client (secret) key.
    ClientKey = 1,
    /// An evaluation key.
    EvaluationKey = 2,
    /// A compressed evaluation key.
    CompressedEvaluationKey = 3,
    /// Encrypted inputs.
    EncryptedInputs = 4,
    /// Encrypted outputs.
    EncryptedOutputs = 5,
    /// A compiled model (server or client part).
    Model = 6,
    /// The client's part of a compiled model.
    ClientSpec = 7,
    /// A public key for output sanitization.
    PublicKey = 8,
}

impl Kind {
    /// Human name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ClientKey => "client key",
            Kind::EvaluationKey => "evaluation key",
            Kind::CompressedEvaluationKey => "compressed evaluation key",
            Kind::EncryptedInputs => "encrypted inputs",
            Kind::EncryptedOutputs => "encrypted outputs",
            Kind::Model => "model",
            Kind::ClientSpec => "client specification",
            Kind::PublicKey => "public key",
        }
    }

    /// The kind a header byte names, if any.
    pub fn from_byte(byte: u8) -> Option<Kind> {
        [
            Kind::ClientKey,
            Kind::EvaluationKey,
            Kind::CompressedEvaluationKey,
            Kind::EncryptedInputs,
            Kind::EncryptedOutputs,
            Kind::Model,
            Kind::ClientSpec,
            Kind::PublicKey,
        ]
        .into_iter()
        .find(|k| *k as u8 == byte)
    }
}

/// What an fheml file holds, read from its magic and kind bytes alone (no other check):
/// `None` when `bytes` does not start like an fheml file.
pub fn peek_kind(bytes: &[u8]) -> Option<Kind> {
    match bytes.get(..7) {
        Some([magic @ .., kind]) if magic == MAGIC => Kind::from_byte(*kind),
        _ => None,
    }
}

/// Serialises `value` into an envelope.
pub fn seal<T: Serialize>(kind: Kind, fingerprint: &Fingerprint, value: &T) -> Result<Vec<u8>> {
    let payload = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| FheError::Format { what: kind.name(), detail: format!("cannot serialise: {e}") })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.push(format_version(kind));
    out.extend_from_slice(&fingerprint.0);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The fingerprint written in an envelope, after checking magic, kind and version.
pub fn peek_fingerprint(bytes: &[u8], kind: Kind) -> Result<Fingerprint> {
    let what = kind.name();
    let bad = |detail: String| FheError::Format { what, detail };
    if bytes.len() < HEADER_LEN {
        return Err(bad(format!("truncated: {} bytes, the header alone is {HEADER_LEN}", bytes.len())));
    }
    if &bytes[..6] != MAGIC {
        return Err(bad("not an fheml file (bad magic bytes)".into()));
    }
    if bytes[6] != kind as u8 {
        let found = Kind::from_byte(bytes[6]).map_or("something unknown", Kind::name);
        return Err(bad(format!("this file holds {found}, not {what}")));
    }
    let version = format_version(kind);
    if bytes[7] != version {
        let hint = if bytes[7] < version && version == FORMAT_VERSION {
            ": keys and ciphertexts of earlier versions must be generated again"
        } else {
            ""
        };
        return Err(bad(format!(
            "format version {} is not supported (this build reads version {version}){hint}",
            bytes[7]
        )));
    }
    let mut fp = [0u8; 32];
    fp.copy_from_slice(&bytes[8..40]);
    Ok(Fingerprint(fp))
}

/// Opens an envelope: checks magic, kind, version, fingerprint (when `expected` is given),
/// size limit and checksum, then decodes.
pub fn open<T: DeserializeOwned>(bytes: &[u8], kind: Kind, expected: Option<&Fingerprint>, limit: usize) -> Result<T> {
    let what = kind.name();
    let bad = |detail: String| FheError::Format { what, detail };
    let found = peek_fingerprint(bytes, kind)?;
    if let Some(expected) = expected
        && &found != expected
    {
        return Err(FheError::WrongModel { what, expected: expected.short(), found: found.short() });
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[40..48]);
    let len = u64::from_le_bytes(len_bytes);
    if len > limit as u64 {
        return Err(bad(format!("payload of {len} bytes exceeds the limit of {limit} bytes")));
    }
    let len = len as usize;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len {
        return Err(bad(format!(
            "{} payload bytes where the header announces {len}: the file is truncated or has trailing data",
            payload.len()
        )));
    }
    if Sha256::digest(payload).as_slice() != &bytes[48..80] {
        return Err(bad("checksum mismatch: the file is corrupted".into()));
    }
    let config = bincode::config::standard().with_limit::<{ 1 << 34 }>();
    let (value, used) =
        bincode::serde::decode_from_slice(payload, config).map_err(|e| bad(format!("cannot decode: {e}")))?;
    if used != len {
        return Err(bad(format!("{} trailing payload bytes", len - used)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let fp = Fingerprint::of(b"model");
        let bytes = seal(Kind::EncryptedInputs, &fp, &vec![1u64, 2, 3]).unwrap();
        let back: Vec<u64> = open(&bytes, Kind::EncryptedInputs, Some(&fp), 1 << 20).unwrap();
        assert_eq!(back, vec![1, 2, 3]);

        let err = |r: Result<Vec<u64>>| r.unwrap_err().to_string();
        assert!(err(open(&bytes[..10], Kind::EncryptedInputs, Some(&fp), 1 << 20)).contains("truncated"));
        assert!(err(open(&bytes[..bytes.len() - 1], Kind::EncryptedInputs, Some(&fp), 1 << 20)).contains("truncated"));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(err(open(&flipped, Kind::EncryptedInputs, Some(&fp), 1 << 20)).contains("corrupted"));
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(err(open(&magic, Kind::EncryptedInputs, Some(&fp), 1 << 20)).contains("magic"));
        assert!(err(open(&bytes, Kind::ClientKey, Some(&fp), 1 << 20)).contains("holds encrypted inputs"));
        let other = Fingerprint::of(b"other");
        assert!(err(open(&bytes, Kind::EncryptedInputs, Some(&other), 1 << 20)).contains("another model"));
        assert!(err(open(&bytes, Kind::EncryptedInputs, Some(&fp), 2)).contains("exceeds the limit"));
        let mut version = bytes.clone();
        version[7] = 99;
        assert!(err(open(&version, Kind::EncryptedInputs, Some(&fp), 1 << 20)).contains("version 99"));
        assert_eq!(peek_kind(&bytes), Some(Kind::EncryptedInputs));
        assert_eq!(peek_kind(&bytes[..7]), Some(Kind::EncryptedInputs));
        assert_eq!(peek_kind(&bytes[..6]), None);
        assert_eq!(peek_kind(&magic), None);
    }
}
