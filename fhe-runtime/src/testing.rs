//! Test support (feature `testing`): keys generated once per parameter set per test process.
//!
//! Key generation dominates short encrypted tests (a bootstrapping key takes seconds). A key
//! holds nothing but its parameter set's secret (and, for the server, the keys derived from
//! it) plus the fingerprint of the compiled circuit it is labelled for, so tests whose
//! circuits land on the same parameter set can share one: [`cached_keys`] generates the
//! shortint keys the first time a parameter set is asked for and labels a copy with each
//! circuit's fingerprint. Not for production: one secret would serve every model.
//! `FHEML_TEST_FRESH_KEYS=1` turns the cache off ([`FRESH_KEYS_VAR`]).
//!
//! Encrypted tests (keygen, encrypt, run) carry `encrypted` in their name, so that
//! `cargo test -- --skip encrypted` skips them and `cargo test encrypted` runs only them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tfhe::shortint::{ClientKey as ShortintClientKey, ServerKey};

use crate::compiled::{ClientKey, ClientSpec, EvaluationKey};
use crate::model::FheModel;
use crate::params::Parameters;

/// The shortint keys of one parameter set, each made on first use.
#[derive(Default)]
struct Keys {
    client: OnceLock<ShortintClientKey>,
    server: OnceLock<ServerKey>,
}

/// Per parameter set; an entry is created under the lock and filled outside it, so tests on
/// different sets generate their keys in parallel.
fn keys_of(parameters: Parameters) -> Arc<Keys> {
    static CACHE: OnceLock<Mutex<HashMap<Parameters, Arc<Keys>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    Arc::clone(cache.entry(parameters).or_default())
}

/// Set (to anything) to make [`cached_keys`] generate fresh keys on every call: to time the
/// tests without the cache, or to check that none depends on keys being shared.
pub const FRESH_KEYS_VAR: &str = "FHEML_TEST_FRESH_KEYS";

/// Keys for `spec`, as [`ClientSpec::keygen`] makes them, from this process's cache.
pub fn cached_keys(spec: &ClientSpec) -> (ClientKey, EvaluationKey) {
    if std::env::var_os(FRESH_KEYS_VAR).is_some() {
        return spec.keygen();
    }
    let keys = keys_of(spec.parameter_set);
    let client = keys.client.get_or_init(|| ShortintClientKey::new(spec.parameter_set.set().params));
    let server = spec.needs_evaluation_key.then(|| keys.server.get_or_init(|| ServerKey::new(client)).clone());
    spec.keys_around(client.clone(), server)
}

/// Gives `model` cached keys ([`cached_keys`]) for Execute mode, unless it has keys already.
pub fn use_cached_keys(model: &FheModel) {
    model.preset_keys(cached_keys(&model.compiled().client_spec()));
}
