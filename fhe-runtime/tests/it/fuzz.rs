//! Fuzzing on the stable toolchain: proptest-driven mutations of valid envelopes, resealed
//! with a correct length and checksum so that every mutation reaches the decoder (random
//! bytes would almost all stop at the checksum). Each decoder of untrusted bytes is followed
//! by what its reader does next with what decoded: the server checks a batch and evaluates
//! it, checks a key and expands it; the client decrypts an answer. Every case must end in
//! `Ok` or a typed one-line error: no panic. `FHEML_FUZZ_CASES` multiplies the case counts
//! (`cargo xtask fuzz` runs them longer).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use fheml_circuits::{CircuitBuilder, Interval, Lut, Table};
use fheml_fhe_runtime::{
    ClientKey, ClientSpec, CompiledCircuit, CompressedEvaluationKey, EncryptedInputs, EncryptedOutputs, EvaluationKey,
    FheConfig, FheError,
};
use ndarray::Array2;
use proptest::prelude::*;
use proptest::sample::Index;
use sha2::{Digest, Sha256};

/// Magic, kind, version, fingerprint, payload length, checksum.
const HEADER_LEN: usize = 80;

/// Cases per decoder in `cargo test`, times `FHEML_FUZZ_CASES` (default 1).
fn cases(base: u32) -> u32 {
    let factor = std::env::var("FHEML_FUZZ_CASES").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
    base.saturating_mul(factor.max(1))
}

/// One honest model of each kind (with and without lookups), its keys and honest bytes.
struct Fixture {
    lookup: CompiledCircuit,
    leveled: CompiledCircuit,
    lookup_spec: ClientSpec,
    client_key: ClientKey,
    eval_key: EvaluationKey,
    leveled_key: EvaluationKey,
    inputs: Vec<u8>,
    leveled_inputs: Vec<u8>,
    compressed_key: Vec<u8>,
    outputs: Vec<u8>,
    client_key_bytes: Vec<u8>,
    /// The model files of `lookup` and `leveled`.
    models: [Vec<u8>; 2],
    /// `eval_key` expanded, as a server that stores expanded keys would read it back.
    expanded_key: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[2], Interval::new(0, 3).unwrap());
        let y = b.lookup(x, Lut::Single(Table::from_fn(0, 2, |v| 3 - v))).unwrap();
        b.output(y).unwrap();
        let lookup = CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap();
        let mut b = CircuitBuilder::new();
        let x = b.input(&[3], Interval::new(0, 15).unwrap());
        let y = b.matmul(x, Array2::from_shape_vec((3, 2), vec![3, -1, 2, 5, -4, 1]).unwrap()).unwrap();
        b.output(y).unwrap();
        let leveled = CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap();

        let lookup_spec = lookup.client_spec();
        let (client_key, compressed) = lookup_spec.keygen_compressed();
        let compressed_key = compressed.to_bytes().unwrap();
        let eval_key = compressed.decompress();
        let query = lookup_spec.encrypt(&client_key, &[vec![vec![1, 2]], vec![vec![3, 0]]]).unwrap();
        let outputs = lookup.run(&eval_key, &query).unwrap().to_bytes().unwrap();
        let (leveled_client, _) = leveled.client_spec().keygen();
        let leveled_inputs =
            leveled.client_spec().encrypt(&leveled_client, &[vec![vec![1, 7, 15]]]).unwrap().to_bytes().unwrap();
        Fixture {
            models: [lookup.to_bytes().unwrap(), leveled.to_bytes().unwrap()],
            expanded_key: eval_key.to_bytes().unwrap(),
            leveled_key: leveled.leveled_key().unwrap(),
            client_key_bytes: client_key.to_bytes().unwrap(),
            inputs: query.to_bytes().unwrap(),
            lookup,
            leveled,
            lookup_spec,
            client_key,
            eval_key,
            leveled_inputs,
            compressed_key,
            outputs,
        }
    })
}

/// Where an edit goes: anywhere in the payload, or on a structural byte (see
/// [`structural_offsets`]); taken modulo the payload's length.
#[derive(Debug, Clone)]
struct Pos {
    structural: bool,
    index: Index,
}

/// One edit of a payload.
#[derive(Debug, Clone)]
enum Mutation {
    /// Sets one byte.
    Set(Pos, u8),
    /// Writes bytes over the payload from a position (cut at its end).
    Overwrite(Pos, Vec<u8>),
    /// Writes a bincode variable-length integer marker (251..=255: a 2-, 4-, 8- or 16-byte
    /// integer follows) and all-ones after it: a huge length or count.
    Huge(Pos, u8),
    /// Inserts bytes.
    Insert(Pos, Vec<u8>),
    /// Removes up to 16 bytes.
    Remove(Pos, usize),
    /// Keeps only the bytes before a position.
    Truncate(Pos),
    /// Makes the integer at a position small (0..=3), keeping its encoding's width: on a
    /// varint marker, its value bytes become the small value (a size or count of 0 or 1).
    Small(Pos, u8),
}

fn pos() -> impl Strategy<Value = Pos> {
    (prop::bool::weighted(0.8), any::<Index>()).prop_map(|(structural, index)| Pos { structural, index })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (pos(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        2 => (pos(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Overwrite(i, v)),
        3 => (pos(), 251u8..=255).prop_map(|(i, m)| Mutation::Huge(i, m)),
        1 => (pos(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (pos(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => pos().prop_map(Mutation::Truncate),
        3 => (pos(), 0u8..=3).prop_map(|(i, v)| Mutation::Small(i, v)),
    ]
}

/// The offsets of a bincode payload outside its runs of 64-bit ciphertext coefficients
/// (and past the fingerprint every payload starts with, which only ever gives "another
/// model"). Uniform coefficients encode as a marker byte 253 and 8 bytes, so those runs are
/// a 9-byte period; what breaks the period (lengths, dimensions, moduli, seeds, tags, small
/// values) is where a decoder's decisions are, though it is a small part of the bytes.
fn structural_offsets(payload: &[u8]) -> Vec<usize> {
    const U64_MARKER: u8 = 253;
    const FINGERPRINT: usize = 32;
    let mut structural = Vec::new();
    let mut i = FINGERPRINT;
    while i < payload.len() {
        let unit = payload[i] == U64_MARKER
            && (payload.get(i + 9) == Some(&U64_MARKER) || (i >= 9 && payload[i - 9] == U64_MARKER));
        if unit && i + 9 <= payload.len() {
            i += 9;
        } else {
            structural.push(i);
            i += 1;
        }
    }
    structural
}

/// Applies `mutations` to the payload of the envelope `honest`, and reseals it: the header
/// (kind, version, fingerprint) kept, length and checksum recomputed.
fn mutate(honest: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut payload = honest[HEADER_LEN..].to_vec();
    let structural = structural_offsets(&payload);
    for m in mutations {
        if payload.is_empty() {
            break;
        }
        let len = payload.len();
        let at = |p: &Pos| {
            if p.structural && !structural.is_empty() {
                structural[p.index.index(structural.len())].min(len - 1)
            } else {
                p.index.index(len)
            }
        };
        match m {
            Mutation::Set(i, v) => {
                let p = at(i);
                payload[p] = *v;
            }
            Mutation::Overwrite(i, bytes) => {
                let p = at(i);
                let n = bytes.len().min(payload.len() - p);
                payload[p..p + n].copy_from_slice(&bytes[..n]);
            }
            Mutation::Huge(i, marker) => {
                let p = at(i);
                payload[p] = *marker;
                let end = (p + 17).min(payload.len());
                payload[p + 1..end].fill(0xff);
            }
            Mutation::Insert(i, bytes) => {
                let p = at(i);
                payload.splice(p..p, bytes.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let p = at(i);
                let end = (p + n).min(payload.len());
                payload.drain(p..end);
            }
            Mutation::Truncate(i) => {
                let p = at(i);
                payload.truncate(p);
            }
            Mutation::Small(i, v) => {
                let p = at(i);
                let width = match payload[p] {
                    251 => 2,
                    252 => 4,
                    253 => 8,
                    254 => 16,
                    _ => 0,
                };
                if width == 0 || p + width >= payload.len() {
                    payload[p] = *v;
                } else {
                    payload[p + 1..=p + width].fill(0);
                    payload[p + 1] = *v;
                }
            }
        }
    }
    let mut out = honest[..40].to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

/// A refusal must be one bounded line (it may become an HTTP answer).
fn check_message(what: &str, e: &FheError) -> std::result::Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.contains('\n') && text.len() <= 400, "{what}: error not one short line: {text:?}");
    Ok(())
}

/// Runs `f`, turning a panic into a test failure that names the decoder.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> std::result::Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let text = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        TestCaseError::fail(format!("{what} panicked: {}", text.unwrap_or_default()))
    })
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1500)))]

    /// The server's path for a batch: decode, check against the model, evaluate (batches
    /// of a leveled model always; of the lookup model when they hold at most 2 samples).
    #[test]
    fn mutated_batches_are_refused_or_evaluated_never_panic(m in mutations(), leveled in any::<bool>()) {
        let f = fixture();
        let (compiled, key, honest) =
            if leveled { (&f.leveled, &f.leveled_key, &f.leveled_inputs) } else { (&f.lookup, &f.eval_key, &f.inputs) };
        let bytes = mutate(honest, &m);
        let result = no_panic("batch", || {
            let inputs = EncryptedInputs::from_bytes(&bytes, &compiled.fingerprint())?;
            compiled.check_inputs(&inputs)?;
            if leveled || inputs.len() <= 2 {
                compiled.run_chunked(key, &inputs, 1 << 20, &|| true)?;
            }
            Ok::<_, FheError>(())
        })?;
        if let Err(e) = result {
            check_message("batch", &e)?;
        }
    }

    /// The client's path for an answer from a server it does not trust: decode, decrypt.
    #[test]
    fn mutated_answers_are_refused_or_decrypted_never_panic(m in mutations()) {
        let f = fixture();
        let bytes = mutate(&f.outputs, &m);
        let result = no_panic("answer", || {
            let outputs = EncryptedOutputs::from_bytes(&bytes, &f.lookup.fingerprint())?;
            f.lookup_spec.decrypt(&f.client_key, &outputs)
        })?;
        if let Err(e) = result {
            check_message("answer", &e)?;
        }
    }

    /// A client key file: decode, then decrypt an honest answer with it.
    #[test]
    fn mutated_client_keys_are_refused_or_used_never_panic(m in mutations()) {
        let f = fixture();
        let bytes = mutate(&f.client_key_bytes, &m);
        let result = no_panic("client key", || {
            let key = ClientKey::from_bytes(&bytes, &f.lookup.fingerprint())?;
            let outputs = EncryptedOutputs::from_bytes(&f.outputs, &f.lookup.fingerprint())?;
            f.lookup_spec.decrypt(&key, &outputs)
        })?;
        if let Err(e) = result {
            check_message("client key", &e)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1000)))]

    /// A model file (the server's own, but a file anyone may have edited): decode, which
    /// validates the circuit and plan and recomputes the fingerprint, then what a server does
    /// with a model: its client part, a clear and a simulated evaluation.
    #[test]
    fn mutated_model_files_are_refused_or_used_never_panic(m in mutations(), leveled in any::<bool>()) {
        let f = fixture();
        let bytes = mutate(&f.models[usize::from(leveled)], &m);
        let result = no_panic("model file", || {
            let compiled = CompiledCircuit::from_bytes(&bytes)?;
            let spec = compiled.client_spec();
            spec.validate()?;
            let sample: Vec<Vec<i64>> = spec.inputs.iter().map(|(_, ranges, _)| ranges.iter().map(|r| r.lo).collect()).collect();
            compiled.circuit().evaluate_clear(&sample)?;
            compiled.simulate(&[sample], 7)?;
            Ok::<_, FheError>(())
        })?;
        if let Err(e) = result {
            check_message("model file", &e)?;
        }
    }
}

proptest! {
    // Each case copies and decodes megabytes of key and each conformant one evaluates with
    // it (seconds in a debug build): few cases here, more with `cargo xtask fuzz`.
    #![proptest_config(ProptestConfig::with_cases(cases(16)))]

    /// An expanded evaluation key read back (from a key store, a file): decode, conformance
    /// check, then evaluate an honest batch with it.
    #[test]
    fn mutated_expanded_keys_are_refused_or_used_never_panic(m in mutations()) {
        let f = fixture();
        let bytes = mutate(&f.expanded_key, &m);
        let result = no_panic("expanded key", || {
            let key = EvaluationKey::from_bytes_conformant(&bytes, &f.lookup)?;
            let inputs = EncryptedInputs::from_bytes_conformant(&f.inputs, &f.lookup)?;
            f.lookup.run(&key, &inputs)?;
            Ok::<_, FheError>(())
        })?;
        if let Err(e) = result {
            check_message("expanded key", &e)?;
        }
    }
}

proptest! {
    // Each conformant case expands a key (tens of milliseconds): fewer cases.
    #![proptest_config(ProptestConfig::with_cases(cases(200)))]

    /// The server's path for an uploaded key: decode, conformance check, expand.
    #[test]
    fn mutated_keys_are_refused_or_expanded_never_panic(m in mutations()) {
        let f = fixture();
        let bytes = mutate(&f.compressed_key, &m);
        let result = no_panic("compressed key", || {
            let key = CompressedEvaluationKey::from_bytes_conformant(&bytes, &f.lookup)?;
            key.decompress();
            Ok::<_, FheError>(())
        })?;
        if let Err(e) = result {
            check_message("compressed key", &e)?;
        }
    }
}

#[test]
fn resealing_keeps_honest_bytes_valid_and_structure_is_found() {
    let f = fixture();
    // Ciphertexts and keys are mostly coefficients (a secret key is all small values).
    for honest in [&f.inputs, &f.outputs, &f.compressed_key] {
        let payload = &honest[HEADER_LEN..];
        let structural = structural_offsets(payload).len();
        assert!(structural > 0 && structural * 4 < payload.len(), "{structural} of {}", payload.len());
    }
    // No mutation: the resealed envelope is the honest one, and decodes.
    assert_eq!(mutate(&f.inputs, &[]), f.inputs);
    assert!(EncryptedInputs::from_bytes(&mutate(&f.outputs, &[]), &f.lookup.fingerprint()).is_err());
    assert!(EncryptedOutputs::from_bytes(&mutate(&f.outputs, &[]), &f.lookup.fingerprint()).is_ok());
}

/// Found by the fuzzer: an answer claiming LWE size 0 made the client divide by zero
/// inside tfhe-rs (`lwe_ciphertext_count`) before any size was compared.
#[test]
fn an_answer_of_lwe_size_zero_is_refused() {
    let f = fixture();
    let lwe_size = f.lookup.plan().parameters.set().big_lwe_dimension() + 1;
    // bincode's varint of a size in 251..65536: marker 251, then the size as u16 LE.
    let encoded = [251u8, (lwe_size & 0xff) as u8, (lwe_size >> 8) as u8];
    let payload = &f.outputs[HEADER_LEN..];
    let at = payload.windows(3).position(|w| w == encoded).unwrap();
    let mut edited = payload.to_vec();
    edited[at + 1..at + 3].fill(0);
    let mut bytes = f.outputs[..40].to_vec();
    bytes.extend_from_slice(&(edited.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&Sha256::digest(&edited));
    bytes.extend_from_slice(&edited);
    let outputs = EncryptedOutputs::from_bytes(&bytes, &f.lookup.fingerprint()).unwrap();
    let err = f.lookup_spec.decrypt(&f.client_key, &outputs).unwrap_err();
    assert!(err.to_string().contains("LWE size 0"), "{err}");
}
