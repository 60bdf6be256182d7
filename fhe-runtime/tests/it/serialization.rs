//! Keys and ciphertexts survive serialization, and every bad byte string is refused with a
//! typed error.

use fheml_circuits::{CircuitBuilder, Interval, Lut, Table};
use fheml_fhe_runtime::{
    ClientKey, CompiledCircuit, CompressedEvaluationKey, EncryptedInputs, EncryptedOutputs, EvaluationKey, FheConfig,
    FheError,
};

fn lookup_circuit(offset: i64) -> CompiledCircuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], Interval::new(0, 3).unwrap());
    let y = b.lookup(x, Lut::Single(Table::from_fn(0, 2, move |v| v + offset))).unwrap();
    b.output(y).unwrap();
    CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap()
}

#[test]
fn keys_and_ciphertexts_round_trip_and_bad_bytes_are_refused() {
    let compiled = lookup_circuit(1);
    let other = lookup_circuit(2);
    let fp = compiled.fingerprint();
    let client = compiled.client_spec();
    let (client_key, compressed) = client.keygen_compressed();

    let ck_bytes = client_key.to_bytes().unwrap();
    let client_key = ClientKey::from_bytes(&ck_bytes, &fp).unwrap();
    let ek_bytes = compressed.to_bytes().unwrap();
    let eval_key = CompressedEvaluationKey::from_bytes(&ek_bytes, &fp).unwrap().decompress();
    let full_bytes = eval_key.to_bytes().unwrap();
    assert!(ek_bytes.len() * 2 < full_bytes.len(), "the compressed key is much smaller");

    let query = client.encrypt(&client_key, &[vec![vec![1, 3]]]).unwrap();
    let q_bytes = query.to_bytes().unwrap();
    let query = EncryptedInputs::from_bytes(&q_bytes, &fp).unwrap();
    let answer = compiled.run(&EvaluationKey::from_bytes(&full_bytes, &fp).unwrap(), &query).unwrap();
    let a_bytes = answer.to_bytes().unwrap();
    let answer = EncryptedOutputs::from_bytes(&a_bytes, &fp).unwrap();
    assert_eq!(client.decrypt(&client_key, &answer).unwrap(), vec![vec![vec![2, 4]]]);

    // Truncated, corrupted and mismatched bytes.
    for bytes in [&ck_bytes, &ek_bytes, &q_bytes, &a_bytes] {
        for cut in [0, 10, 79, bytes.len() / 2, bytes.len() - 1] {
            assert!(matches!(EncryptedInputs::from_bytes(&bytes[..cut], &fp), Err(FheError::Format { .. })));
        }
    }
    let mut corrupt = q_bytes.clone();
    let middle = corrupt.len() - 20;
    corrupt[middle] ^= 0x40;
    assert!(EncryptedInputs::from_bytes(&corrupt, &fp).unwrap_err().to_string().contains("corrupted"));
    assert!(matches!(ClientKey::from_bytes(&q_bytes, &fp), Err(FheError::Format { .. })), "wrong kind");
    assert!(matches!(EncryptedInputs::from_bytes(&q_bytes, &other.fingerprint()), Err(FheError::WrongModel { .. })));
    assert!(matches!(
        CompressedEvaluationKey::from_bytes(&ek_bytes, &other.fingerprint()),
        Err(FheError::WrongModel { .. })
    ));

    // Objects of another model are refused at use, too.
    let (other_ck, other_ek) = other.client_spec().keygen();
    assert!(matches!(other.run(&other_ek, &query), Err(FheError::WrongModel { .. })));
    assert!(matches!(compiled.run(&other_ek, &query), Err(FheError::WrongModel { .. })));
    assert!(matches!(client.encrypt(&other_ck, &[vec![vec![1, 3]]]), Err(FheError::WrongModel { .. })));
    assert!(matches!(client.decrypt(&other_ck, &answer), Err(FheError::WrongModel { .. })));

    // Inputs outside the compiled ranges or of the wrong size are refused before encryption.
    assert!(matches!(client.encrypt(&client_key, &[vec![vec![1, 9]]]), Err(FheError::BadInput(_))));
    assert!(matches!(client.encrypt(&client_key, &[vec![vec![1]]]), Err(FheError::BadInput(_))));

    // A model file round-trips and refuses corruption.
    let model_bytes = compiled.to_bytes().unwrap();
    assert_eq!(CompiledCircuit::from_bytes(&model_bytes).unwrap(), compiled);
    let mut bad = model_bytes.clone();
    let at = bad.len() - 3;
    bad[at] ^= 1;
    assert!(CompiledCircuit::from_bytes(&bad).is_err());
}

#[test]
fn oversized_payloads_are_refused_before_decoding() {
    let compiled = lookup_circuit(0);
    let fp = compiled.fingerprint();
    let client = compiled.client_spec();
    let (client_key, _) = client.keygen();
    let mut bytes = client.encrypt(&client_key, &[vec![vec![0, 1]]]).unwrap().to_bytes().unwrap();
    // Announce a 2 GiB payload.
    bytes[40..48].copy_from_slice(&(2u64 << 30).to_le_bytes());
    let err = EncryptedInputs::from_bytes(&bytes, &fp).unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}

/// `bytes` (an envelope) made to claim the model `fingerprint`, in its header and in its
/// content (every payload starts with it), checksum recomputed: what a hostile client can do.
/// The error of a result whose value has no `Debug`.
fn error<T>(result: Result<T, FheError>) -> FheError {
    match result {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

fn relabelled(bytes: &[u8], fingerprint: &fheml_fhe_runtime::Fingerprint) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut payload = bytes[80..].to_vec();
    payload[..32].copy_from_slice(&fingerprint.0);
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&fingerprint.0);
    out.extend_from_slice(&bytes[40..48]);
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

#[test]
fn keys_of_another_parameter_set_are_refused_before_expansion() {
    use fheml_fhe_runtime::ParameterMode;

    let model = lookup_circuit(1);
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], Interval::new(0, 3).unwrap());
    let y = b.lookup(x, Lut::Single(Table::from_fn(0, 2, |v| v + 1))).unwrap();
    b.output(y).unwrap();
    let vetted = FheConfig::params().parameter_mode(ParameterMode::Vetted).check().unwrap();
    let other = CompiledCircuit::compile(b.build().unwrap(), &vetted).unwrap();
    assert_ne!(model.plan().parameters, other.plan().parameters, "two parameter sets");
    let fp = model.fingerprint();

    // Honest keys pass.
    let (_, honest) = model.client_spec().keygen_compressed();
    let honest_bytes = honest.to_bytes().unwrap();
    let key = CompressedEvaluationKey::from_bytes_conformant(&honest_bytes, &model).unwrap();
    let expanded = key.decompress().to_bytes().unwrap();
    EvaluationKey::from_bytes_conformant(&expanded, &model).unwrap();

    // A key of another parameter set (other dimensions), labelled for this model: refused by
    // the conformance check, which runs before anything is expanded.
    let (_, foreign) = other.client_spec().keygen_compressed();
    let hostile = relabelled(&foreign.to_bytes().unwrap(), &fp);
    assert!(CompressedEvaluationKey::from_bytes(&hostile, &fp).is_ok(), "it decodes: only conformance tells");
    let err = error(CompressedEvaluationKey::from_bytes_conformant(&hostile, &model));
    assert!(matches!(err, FheError::BadKey(_)), "{err}");
    assert!(err.to_string().contains("dimensions do not match"), "{err}");
    let hostile_expanded = relabelled(&foreign.decompress().to_bytes().unwrap(), &fp);
    let err = error(EvaluationKey::from_bytes_conformant(&hostile_expanded, &model));
    assert!(matches!(err, FheError::BadKey(_)), "{err}");

    // A leveled model takes no key at all.
    let leveled = {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[2], Interval::new(0, 3).unwrap());
        let y = b.add_const(x, ndarray::arr1(&[1]).into_dyn()).unwrap();
        b.output(y).unwrap();
        CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap()
    };
    let err = error(CompressedEvaluationKey::from_bytes_conformant(
        &relabelled(&honest_bytes, &leveled.fingerprint()),
        &leveled,
    ));
    assert!(err.to_string().contains("takes no evaluation key"), "{err}");

    // Keys written before tfhe-rs objects were versioned (format 5) are refused, saying why.
    let mut old = honest_bytes.clone();
    old[7] = 5;
    let err = error(CompressedEvaluationKey::from_bytes_conformant(&old, &model)).to_string();
    assert!(err.contains("format version 5") && err.contains("generated again"), "{err}");
}

#[test]
fn batches_that_do_not_conform_are_refused_on_decoding() {
    let model = lookup_circuit(1);
    let client = model.client_spec();
    let (client_key, _) = client.keygen();
    let honest = client.encrypt(&client_key, &[vec![vec![1, 2]]]).unwrap().to_bytes().unwrap();
    EncryptedInputs::from_bytes_conformant(&honest, &model).unwrap();
    // A batch of another parameter set's ciphertexts, labelled for this model.
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], Interval::new(0, 3).unwrap());
    let y = b.lookup(x, Lut::Single(Table::from_fn(0, 2, |v| v + 1))).unwrap();
    b.output(y).unwrap();
    let vetted = FheConfig::params().parameter_mode(fheml_fhe_runtime::ParameterMode::Vetted).check().unwrap();
    let other = CompiledCircuit::compile(b.build().unwrap(), &vetted).unwrap();
    let (other_key, _) = other.client_spec().keygen();
    let foreign = other.client_spec().encrypt(&other_key, &[vec![vec![1, 2]]]).unwrap().to_bytes().unwrap();
    let err = EncryptedInputs::from_bytes_conformant(&relabelled(&foreign, &model.fingerprint()), &model).unwrap_err();
    assert!(matches!(err, FheError::BadCiphertexts(_)), "{err}");
}
