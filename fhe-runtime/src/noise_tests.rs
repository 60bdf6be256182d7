//! Noise measurements against the model parameter selection relies on, in the manner of
//! tfhe-rs's noise checks: sample many ciphertexts, decrypt the raw phase, compare the
//! measured variance with the predicted one.

#![allow(clippy::unwrap_used, clippy::panic)]

use fheml_circuits::{CircuitBuilder, Interval, Lut, Table};
use tfhe::core_crypto::prelude::*;

use crate::compiled::CompiledCircuit;
use crate::plan::FheConfig;
use crate::testing::cached_keys;
use crate::tfhe_backend::{Ct, TfheBackend};

/// Signed error of a decrypted phase against the expected plaintext, on the unit torus.
fn torus_error(phase: u64, expected: u64) -> f64 {
    phase.wrapping_sub(expected) as i64 as f64 / 2f64.powi(64)
}

fn variance(errors: &[f64]) -> f64 {
    errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64
}

/// A lookup of an input that is also an output, so that the input stays under the large key.
fn lookup_circuit() -> CompiledCircuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[1], Interval::new(0, 3).unwrap());
    let y = b.lookup(x, Lut::Single(Table::from_fn(0, 2, |v| v))).unwrap();
    b.output(y).unwrap();
    b.output(x).unwrap();
    let compiled = CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap();
    assert!(compiled.plan().small_key.is_empty());
    compiled
}

/// Inputs under the small key: their fresh noise and the modulus switch in front of the
/// blind rotation (in units of the rotation's `2N`), measured against the model, and the
/// bootstraps that read them without a keyswitch give the table's values.
#[test]
fn encrypted_small_key_inputs_noise_matches_the_model() {
    use tfhe::shortint::atomic_pattern::AtomicPatternServerKey;
    use tfhe::shortint::client_key::atomic_pattern::AtomicPatternClientKey;
    use tfhe::shortint::server_key::ShortintBootstrappingKey;

    let mut b = CircuitBuilder::new();
    let x = b.input(&[1], Interval::new(0, 3).unwrap());
    let y = b.lookup(x, Lut::Single(Table::from_fn(0, 3, |v| 3 - v))).unwrap();
    b.output(y).unwrap();
    let compiled = CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap();
    assert!(compiled.plan().is_small_key(fheml_circuits::NodeId(0)));
    assert_eq!(compiled.report().small_key_lookups, 1);
    let model = compiled.plan().parameters.set().noise_model();
    let client = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&client);
    let AtomicPatternClientKey::Standard(standard) = &client_key.key.atomic_pattern else { panic!("standard key") };
    let small = standard.small_lwe_secret_key();

    let batch: Vec<Vec<Vec<i64>>> = (0..2000).map(|_| vec![vec![0]]).collect();
    let query = client.encrypt(&client_key, &batch).unwrap();
    let packed = query.small.clone().unwrap().decompress_into_glwe_ciphertext_list();
    let poly = packed.polynomial_size().0;
    assert!(poly >= 16, "{poly} inputs per mask");
    let list: Vec<LweCiphertextOwned<u64>> = (0..batch.len())
        .map(|i| {
            let mut lwe =
                LweCiphertextOwned::new(0u64, small.lwe_dimension().to_lwe_size(), packed.ciphertext_modulus());
            extract_lwe_sample_from_glwe_ciphertext(&packed.get(i / poly), &mut lwe, MonomialDegree(i % poly));
            lwe
        })
        .collect();
    let errors: Vec<f64> = list.iter().map(|c| torus_error(decrypt_lwe_ciphertext(&small, c).0, 0)).collect();
    let ratio = variance(&errors) / model.small_fresh;
    assert!((0.8..1.25).contains(&ratio), "small-key fresh variance ratio {ratio}");

    // The phase after the server key's modulus switch, in units of 1/2N.
    let server_key = eval_key.key.as_ref().unwrap();
    let AtomicPatternServerKey::Standard(server) = &server_key.atomic_pattern else { panic!("standard key") };
    let ShortintBootstrappingKey::Classic { bsk, modulus_switch_noise_reduction_key } = &server.bootstrapping_key
    else {
        panic!("classic key")
    };
    let log_modulus = bsk.polynomial_size().to_blind_rotation_input_modulus_log();
    let two_n = 1usize << log_modulus.0;
    let switched: Vec<f64> = list
        .iter()
        .map(|c| {
            let ms = modulus_switch_noise_reduction_key.lwe_ciphertext_modulus_switch::<usize, _>(c, log_modulus);
            let dot = ms.mask().zip(small.as_ref()).fold(0usize, |acc, (a, s)| acc.wrapping_add(a * *s as usize));
            let phase = ms.body().wrapping_sub(dot) % two_n;
            let signed = if phase >= two_n / 2 { phase as f64 - two_n as f64 } else { phase as f64 };
            signed / two_n as f64
        })
        .collect();
    let ratio = variance(&switched) / (model.small_fresh + model.modulus_switch);
    assert!((0.75..1.3).contains(&ratio), "small-key modulus-switch variance ratio {ratio}");

    // Bootstraps without keyswitch: every value through the table.
    let inputs: Vec<Vec<Vec<i64>>> = (0..8).map(|i| vec![vec![i % 4]]).collect();
    let answer = compiled.run(&eval_key, &client.encrypt(&client_key, &inputs).unwrap()).unwrap();
    let decrypted = client.decrypt(&client_key, &answer).unwrap();
    for (input, out) in inputs.iter().zip(&decrypted) {
        assert_eq!(out[0][0], 3 - input[0][0]);
    }
}

#[test]
fn encrypted_fresh_leveled_and_bootstrap_noise_match_the_model() {
    let compiled = lookup_circuit();
    let set = compiled.plan().parameters.set();
    let model = set.noise_model();
    let client = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&client);
    let secret = client_key.key.encryption_key();

    // Fresh encryptions of 0.
    let batch: Vec<Vec<Vec<i64>>> = (0..2000).map(|_| vec![vec![0]]).collect();
    let query = client.encrypt(&client_key, &batch).unwrap();
    let list = query.packed.clone().decompress_into_glwe_ciphertext_list();
    let n = list.polynomial_size().0;
    let fresh: Vec<LweCiphertextOwned<u64>> = (0..query.samples)
        .map(|s| {
            let mut lwe =
                LweCiphertextOwned::new(0u64, secret.lwe_dimension().to_lwe_size(), list.ciphertext_modulus());
            extract_lwe_sample_from_glwe_ciphertext(&list.get(s / n), &mut lwe, MonomialDegree(s % n));
            lwe
        })
        .collect();
    let errors: Vec<f64> = fresh.iter().map(|c| torus_error(decrypt_lwe_ciphertext(&secret, c).0, 0)).collect();
    let ratio = variance(&errors) / model.fresh;
    assert!((0.8..1.25).contains(&ratio), "fresh variance ratio {ratio}");

    // A leveled combination Σ 3·c_i over 10 ciphertexts: variance 90·σ².
    let backend = TfheBackend {
        circuit: compiled.circuit(),
        deltas: &compiled.plan().deltas,
        server_key: None,
        params: set.params,
        lwe_size: LweSize(set.big_lwe_dimension() + 1),
        shared: &compiled.plan().shared,
        small_key: &compiled.plan().small_key,
    };
    let out = fheml_circuits::ElementRef { node: fheml_circuits::NodeId(0), index: 0 };
    let same = compiled.plan().deltas[0][0];
    let cts: Vec<Ct> = fresh.iter().map(|lwe| Ct { lwe: lwe.clone(), delta_log: same }).collect();
    let combined: Vec<f64> = cts
        .chunks(10)
        .map(|chunk| {
            let terms: Vec<(i64, &Ct)> = chunk.iter().map(|c| (3, c)).collect();
            let sum = fheml_circuits::Backend::linear(&backend, &terms, 0, out).unwrap();
            torus_error(decrypt_lwe_ciphertext(&secret, &sum.lwe).0, 0)
        })
        .collect();
    let ratio = variance(&combined) / (90.0 * model.fresh);
    assert!((0.6..1.5).contains(&ratio), "leveled variance ratio {ratio}");

    // Bootstrap outputs: identity table, so the expected plaintext is known.
    let inputs: Vec<Vec<Vec<i64>>> = (0..120).map(|i| vec![vec![i % 4]]).collect();
    let answer = compiled.run(&eval_key, &client.encrypt(&client_key, &inputs).unwrap()).unwrap();
    let errors: Vec<f64> = answer
        .samples
        .iter()
        .zip(&inputs)
        .map(|((list, deltas), input)| {
            let ct = list.iter().next().unwrap();
            let expected = (input[0][0] as u64) << deltas[0];
            torus_error(decrypt_lwe_ciphertext(&secret, &ct).0, expected)
        })
        .collect();
    let ratio = variance(&errors) / model.bootstrap_output;
    // The formula is tfhe-rs's estimate for these parameters: the measurement must not exceed it.
    assert!((0.2..1.5).contains(&ratio), "bootstrap output variance ratio {ratio}");
}

/// A generated set's keyswitch and bootstrap output noise, measured on real keys, against
/// tfhe-rs's formulas the optimizer relies on (tfhe-rs's own noise checks allow 1/16 on the
/// variance over many more samples). The sample variance of `n` draws has a relative std of
/// about `sqrt(2 / n)`: 1600 keyswitches leave 3.5% (the bounds sit 8 of those away; with 400
/// a 0.69 was once drawn), 300 bootstraps 8%.
#[test]
fn encrypted_generated_set_noise_matches_tfhe_rs_formulas() {
    use crate::generated::keyswitch_variance;
    use crate::optimizer::{Constraint, optimize};
    use tfhe::shortint::atomic_pattern::AtomicPatternServerKey;
    use tfhe::shortint::client_key::atomic_pattern::AtomicPatternClientKey;

    // A 2-bit read behind a weight 2-norm of 3 at 2^-40: what a small tree needs.
    let tolerated = (0.5 * 2f64.powi(-3) / 7.1).powi(2);
    let need = Constraint { bootstrap: 9.0 / tolerated, keyswitch: 1.0 / tolerated, ..Default::default() };
    let (set, _) = (10..=12).find_map(|log2_n| optimize(log2_n, &[need])).unwrap();
    let params = set.to_tfhe();
    crate::generated::check_security(&params).unwrap();
    let noise = set.noise_model();
    let client = tfhe::shortint::ClientKey::new(params);
    let server = tfhe::shortint::ServerKey::new(&client);
    let (AtomicPatternClientKey::Standard(ck), AtomicPatternServerKey::Standard(sk)) =
        (&client.atomic_pattern, &server.atomic_pattern)
    else {
        panic!("standard atomic pattern expected");
    };
    let big = client.encryption_key();
    let small = ck.small_lwe_secret_key();

    // Keyswitch: fresh encryptions of 0 under the large key, switched to the small one.
    let mut generator = EncryptionRandomGenerator::<DefaultRandomGenerator>::new(
        tfhe::core_crypto::seeders::new_seeder().seed(),
        tfhe::core_crypto::seeders::new_seeder().as_mut(),
    );
    let errors: Vec<f64> = (0..1600)
        .map(|_| {
            let mut ct = LweCiphertextOwned::new(0u64, big.lwe_dimension().to_lwe_size(), params.ciphertext_modulus);
            encrypt_lwe_ciphertext(&big, &mut ct, Plaintext(0), params.glwe_noise_distribution, &mut generator);
            let mut out = LweCiphertextOwned::new(0u64, small.lwe_dimension().to_lwe_size(), params.ciphertext_modulus);
            keyswitch_lwe_ciphertext(&sk.key_switching_key, &ct, &mut out);
            torus_error(decrypt_lwe_ciphertext(&small, &out).0, 0)
        })
        .collect();
    let predicted = noise.fresh
        + keyswitch_variance(
            set.glwe_dimension * set.polynomial_size,
            set.lwe_dimension,
            set.ks_base_log,
            set.ks_level,
            set.gaussian,
        );
    let ratio = variance(&errors) / predicted;
    assert!((0.7..1.4).contains(&ratio), "keyswitch variance ratio {ratio} ({})", set.name());

    // Bootstrap output: identity table on a 1-bit message.
    let lut = server.generate_lookup_table(|x| x);
    let delta = 1u64 << 62;
    let errors: Vec<f64> = (0..300u64)
        .map(|i| {
            let out = server.apply_lookup_table(&client.encrypt(i % 2), &lut);
            torus_error(decrypt_lwe_ciphertext(&big, &out.ct).0, (i % 2) * delta)
        })
        .collect();
    let ratio = variance(&errors) / noise.bootstrap_output;
    assert!((0.3..1.4).contains(&ratio), "bootstrap output variance ratio {ratio} ({})", set.name());
}

/// Encrypted inputs whose small-key part is missing or has another shape are refused before
/// anything is expanded.
#[test]
fn encrypted_small_key_inputs_are_checked() {
    let circuit = |small_input: bool| {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[2], Interval::new(0, 3).unwrap());
        let y = b.lookup(x, Lut::Single(Table::from_fn(0, 3, |v| v))).unwrap();
        b.output(y).unwrap();
        if !small_input {
            b.output(x).unwrap();
        }
        CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap()
    };
    let (small, large) = (circuit(true), circuit(false));
    assert_eq!(small.client_spec().small_key_inputs, vec![true]);
    assert!(large.client_spec().small_key_inputs.is_empty());
    let encrypt = |compiled: &CompiledCircuit, rows: usize| {
        let client = compiled.client_spec();
        let (client_key, _) = cached_keys(&client);
        client.encrypt(&client_key, &vec![vec![vec![1, 2]]; rows]).unwrap()
    };
    // No small part where the circuit needs one.
    let forged = encrypt(&large, 1).relabelled(small.fingerprint());
    let err = small.check_inputs(&forged).unwrap_err().to_string();
    assert!(err.contains("small-key"), "{err}");
    // A small part where the circuit has none.
    let forged = encrypt(&small, 1).relabelled(large.fingerprint());
    let err = large.check_inputs(&forged).unwrap_err().to_string();
    assert!(err.contains("small-key"), "{err}");
    // One sample's small-key coefficients claimed as a thousand samples.
    let mut forged = encrypt(&small, 1);
    forged.samples = 1000;
    let err = small.check_inputs(&forged).unwrap_err().to_string();
    assert!(err.contains("small-key packed coefficients") || err.contains("packed"), "{err}");
}
