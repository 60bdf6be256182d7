//! tfhe-rs objects in fheml's envelopes are written in tfhe-rs's *versioned* form (what its
//! `safe_serialization` writes after its header): each object carries the version of its own
//! layout, so that a later tfhe-rs reads what this one wrote, and decoding goes through
//! tfhe-rs's `unversionize` (the same path as `safe_deserialize`). The envelope gives what
//! the rest of `safe_serialization` gives — a named kind, a format version and a size limit
//! checked before decoding — and the readers check conformance with the model's parameter
//! set before anything is expanded or evaluated (`check_conformant`, `check_inputs`).
//!
//! Use as `#[serde(with = "fheml_fhe_runtime::versioned")]` on a field of a tfhe-rs type (or
//! an `Option` of one), e.g. to mirror an envelope's payload in a test that crafts hostile
//! bodies.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tfhe::{Unversionize, Versionize};

/// Writes `value` in its versioned form.
pub fn serialize<T: Versionize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    value.versionize().serialize(serializer)
}

/// Reads the versioned form and upgrades it to the current layout.
pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: Unversionize,
    T::VersionedOwned: DeserializeOwned,
    D: Deserializer<'de>,
{
    let versioned = T::VersionedOwned::deserialize(deserializer)?;
    T::unversionize(versioned).map_err(|e| D::Error::custom(format!("tfhe-rs object: {e}")))
}

/// The same for a list of `(tfhe-rs object, extra)` pairs.
pub mod pairs {
    use super::*;

    /// Writes each object in its versioned form beside its extra.
    pub fn serialize<T: Versionize, E: Serialize, S: Serializer>(
        values: &[(T, E)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(|(v, e)| (v.versionize(), e)))
    }

    /// Reads and upgrades each object.
    pub fn deserialize<'de, T, E, D>(deserializer: D) -> Result<Vec<(T, E)>, D::Error>
    where
        T: Unversionize,
        T::VersionedOwned: DeserializeOwned,
        E: DeserializeOwned,
        D: Deserializer<'de>,
    {
        let raw: Vec<(T::VersionedOwned, E)> = Vec::deserialize(deserializer)?;
        raw.into_iter()
            .map(|(v, e)| {
                T::unversionize(v).map(|t| (t, e)).map_err(|e| D::Error::custom(format!("tfhe-rs object: {e}")))
            })
            .collect()
    }
}
