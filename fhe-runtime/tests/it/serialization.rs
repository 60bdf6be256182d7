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
