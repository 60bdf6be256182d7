//! The weight-recovery attacks a client can run on returned ciphertexts, and output
//! sanitization defeating them (see [`crate::sanitize`]).
//!
//! The attacker is the client: it holds its input ciphertexts (their masks), its secret key
//! and the evaluation key it generated, and sees the answers. Every attack below succeeds on
//! the answers of [`CompiledCircuit::run`] and fails on those of
//! [`CompiledCircuit::run_with`] with [`Sanitization::On`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fheml_circuits::{CircuitBuilder, Interval, Lut, Table};
use ndarray::{Array2, ArrayD, IxDyn, array};
use tfhe::core_crypto::prelude::*;

use crate::compiled::{ClientKey, EncryptedInputs, EncryptedOutputs};
use crate::testing::cached_keys;
use crate::{ClientSpec, CompiledCircuit, FheConfig, Sanitization};

const FEATURES: usize = 6;
const BIAS: [i64; 2] = [12345, -4321];

/// The server's secret: integer weights of a two-output linear model.
fn weights() -> Array2<i64> {
    array![[37, -5], [-90, 12], [4, 77], [-61, -100], [100, 3], [-7, 55]]
}

fn linear(sanitize: bool) -> CompiledCircuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[FEATURES], Interval::new(0, 255).unwrap());
    let y = b.matmul(x, weights()).unwrap();
    let y = b.add_const(y, ArrayD::from_shape_vec(IxDyn(&[2]), BIAS.to_vec()).unwrap()).unwrap();
    b.output_real(y, 1).unwrap();
    let config = FheConfig::params().sanitize(sanitize).check().unwrap();
    CompiledCircuit::compile(b.build().unwrap(), &config).unwrap()
}

fn sample(i: usize) -> Vec<Vec<i64>> {
    vec![(0..FEATURES).map(|j| ((i * 37 + j * 101 + 13) % 256) as i64).collect()]
}

/// The client's view of its own inputs: each input element as the LWE sample the server
/// extracts from the packed GLWE ciphertexts (the masks come from the client's seed).
fn input_samples(compiled: &CompiledCircuit, inputs: &EncryptedInputs) -> Vec<LweCiphertextOwned<u64>> {
    let params = compiled.plan().parameters.set().params;
    let n = params.polynomial_size.0;
    let lwe_size = LweSize(params.glwe_dimension.0 * n + 1);
    let packed = inputs.packed.clone().decompress_into_glwe_ciphertext_list();
    (0..inputs.len() * FEATURES)
        .map(|j| {
            let mut lwe = LweCiphertextOwned::new(0u64, lwe_size, params.ciphertext_modulus);
            extract_lwe_sample_from_glwe_ciphertext(&packed.get(j / n), &mut lwe, MonomialDegree(j % n));
            lwe
        })
        .collect()
}

/// The inverse of an odd number modulo 2^64 (Newton: each step doubles the correct bits).
fn inverse_odd(a: u64) -> u64 {
    let mut x = a;
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

/// Solves `Σⱼ xⱼ·columns[j] ≡ target (mod 2^64)` by elimination on odd pivots; also says
/// whether every equation not used as a pivot holds.
fn solve_mod_2_64(columns: &[Vec<u64>], target: &[u64]) -> Option<(Vec<u64>, bool)> {
    let n = columns.len();
    let mut rows: Vec<Vec<u64>> =
        (0..target.len()).map(|r| columns.iter().map(|c| c[r]).chain([target[r]]).collect()).collect();
    let mut pivots: Vec<usize> = Vec::new();
    for j in 0..n {
        let p = (0..rows.len()).find(|r| !pivots.contains(r) && rows[*r][j] & 1 == 1)?;
        let inverse = inverse_odd(rows[p][j]);
        rows[p].iter_mut().for_each(|v| *v = v.wrapping_mul(inverse));
        let pivot = rows[p].clone();
        for (r, row) in rows.iter_mut().enumerate() {
            let f = row[j];
            if r != p && f != 0 {
                row.iter_mut().zip(&pivot).for_each(|(v, q)| *v = v.wrapping_sub(f.wrapping_mul(*q)));
            }
        }
        pivots.push(p);
    }
    let solution = pivots.iter().map(|p| rows[*p][n]).collect();
    let consistent = (0..rows.len()).filter(|r| !pivots.contains(r)).all(|r| rows[r][n] == 0);
    Some((solution, consistent))
}

/// What the mask attack recovers from one answer element: the weights (in units of the
/// output), the constant, and whether all `k·N` mask equations agree with them.
struct Recovered {
    weights: Vec<i64>,
    bias: i64,
    consistent: bool,
}

/// The mask attack: no secret key, only the input ciphertexts and one answer element.
/// The answer's mask is `Σⱼ wⱼ·2^sⱼ·aⱼ` (`sⱼ` the shift from input to output scale): its
/// `k·N` coordinates are `k·N` linear equations in the `FEATURES` unknowns; the body then
/// gives the bias.
fn mask_attack(
    spec: &ClientSpec,
    inputs: &[LweCiphertextOwned<u64>],
    answer: LweCiphertextView<'_, u64>,
    out_delta: u32,
) -> Option<Recovered> {
    let columns: Vec<Vec<u64>> = inputs.iter().map(|c| c.get_mask().as_ref().to_vec()).collect();
    let (x, consistent) = solve_mod_2_64(&columns, answer.get_mask().as_ref())?;
    let in_deltas = &spec.inputs[0].2;
    let weights = x.iter().zip(in_deltas).map(|(v, d)| (*v as i64) >> (out_delta - d)).collect();
    let known: u64 =
        x.iter().zip(inputs).fold(0u64, |acc, (v, c)| acc.wrapping_add(v.wrapping_mul(*c.get_body().data)));
    let bias = ((*answer.get_body().data).wrapping_sub(known) as i64) >> out_delta;
    Some(Recovered { weights, bias, consistent })
}

/// Runs the mask attack on every output element of the first sample.
fn attack_answer(
    compiled: &CompiledCircuit,
    inputs: &EncryptedInputs,
    answer: &EncryptedOutputs,
) -> Vec<Option<Recovered>> {
    let spec = compiled.client_spec();
    let samples = input_samples(compiled, inputs);
    let (list, deltas) = &answer.samples[0];
    list.iter().zip(deltas).map(|(ct, d)| mask_attack(&spec, &samples[..FEATURES], ct, *d)).collect()
}

fn column(j: usize) -> Vec<i64> {
    weights().column(j).to_vec()
}

#[test]
fn encrypted_one_unsanitized_answer_gives_every_weight_and_the_bias_without_any_secret() {
    let compiled = linear(false);
    let spec = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&spec);
    let inputs = spec.encrypt(&client_key, &[sample(0)]).unwrap();
    let answer = compiled.run(&eval_key, &inputs).unwrap();
    for (j, recovered) in attack_answer(&compiled, &inputs, &answer).into_iter().enumerate() {
        let r = recovered.expect("the input masks have an odd pivot in every column");
        assert!(r.consistent, "all k·N mask equations agree");
        assert_eq!(r.weights, column(j), "output {j}: weights");
        assert_eq!(r.bias, BIAS[j], "output {j}: bias");
    }
}

#[test]
fn encrypted_sanitized_answers_defeat_the_mask_attack() {
    let compiled = linear(true);
    let spec = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&spec);
    let public = spec.public_key(&client_key).unwrap();
    let sanitizer = compiled.sanitizer(&public).unwrap();
    let batch = [sample(0)];
    let inputs = spec.encrypt(&client_key, &batch).unwrap();
    // Unsanitized, the same model on the same parameters gives itself away.
    let plain = compiled.run(&eval_key, &inputs).unwrap();
    for (j, r) in attack_answer(&compiled, &inputs, &plain).into_iter().enumerate() {
        let r = r.unwrap();
        assert!(r.consistent && r.weights == column(j) && r.bias == BIAS[j]);
    }
    let answer = compiled.run_with(&eval_key, &inputs, Sanitization::On(&sanitizer)).unwrap();
    // The answer still decrypts to the prediction, within the planned error.
    let clear = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
    let got = spec.decrypt(&client_key, &answer).unwrap();
    for (g, c) in got[0][0].iter().zip(&clear[0][0]) {
        assert!((g - c).abs() <= 2, "{g} vs {c}");
    }
    let samples = input_samples(&compiled, &inputs);
    let (list, deltas) = &answer.samples[0];
    for (j, (ct, d)) in list.iter().zip(deltas).enumerate() {
        if let Some(r) = mask_attack(&spec, &samples[..FEATURES], ct, *d) {
            assert!(!r.consistent, "output {j}: the mask equations no longer have a solution");
            assert_ne!(r.weights, column(j), "output {j}: wrong weights");
        }
        // Even with the true weights, what remains of the mask is uniformly random: the
        // server's encryption of zero, not a small correction.
        let truth: Vec<u64> =
            column(j).iter().zip(&spec.inputs[0].2).map(|(w, din)| (*w as u64) << (d - din)).collect();
        let mut residual = ct.get_mask().as_ref().to_vec();
        for (w, c) in truth.iter().zip(&samples[..FEATURES]) {
            for (r, a) in residual.iter_mut().zip(c.get_mask().as_ref()) {
                *r = r.wrapping_sub(w.wrapping_mul(*a));
            }
        }
        let small = residual.iter().filter(|r| (**r as i64).unsigned_abs() < 1 << 48).count();
        assert!(small <= 2, "output {j}: {small} of {} mask coordinates near zero", residual.len());
        // Each of the top bits is set about half of the time.
        for bit in 56..64 {
            let ones = residual.iter().filter(|r| (**r >> bit) & 1 == 1).count() as f64 / residual.len() as f64;
            assert!((ones - 0.5).abs() < 0.05, "output {j}: bit {bit} set in {ones:.3} of coordinates");
        }
    }
}

/// The noise each answer element carries beyond its decrypted value, and the noise of each
/// input element: what a client computes with its secret key.
fn noises(
    compiled: &CompiledCircuit,
    key: &ClientKey,
    batch: &[Vec<Vec<i64>>],
    inputs: &EncryptedInputs,
    answer: &EncryptedOutputs,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let spec = compiled.client_spec();
    let secret = key.key.encryption_key();
    let in_deltas = &spec.inputs[0].2;
    let samples = input_samples(compiled, inputs);
    let input_noise = batch
        .iter()
        .enumerate()
        .map(|(s, x)| {
            (0..FEATURES)
                .map(|j| {
                    let phase = decrypt_lwe_ciphertext(&secret, &samples[s * FEATURES + j]).0;
                    phase.wrapping_sub((x[0][j] as u64) << in_deltas[j]) as i64 as f64
                })
                .collect()
        })
        .collect();
    let decrypted = spec.decrypt(key, answer).unwrap();
    let output_noise = answer
        .samples
        .iter()
        .zip(&decrypted)
        .map(|((list, deltas), values)| {
            list.iter()
                .zip(deltas)
                .zip(&values[0])
                .map(|((ct, d), v)| {
                    let phase = decrypt_lwe_ciphertext(&secret, &ct).0;
                    phase.wrapping_sub((*v as u64) << d) as i64 as f64
                })
                .collect()
        })
        .collect();
    (input_noise, output_noise)
}

/// Least squares: the `u` minimising `Σ_q (y_q - Σⱼ uⱼ·e_qj)²` (normal equations, partial
/// pivoting).
fn least_squares(e: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let n = e[0].len();
    let mut m: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n).map(|j| e.iter().map(|r| r[i] * r[j]).sum()).collect();
            row.push(e.iter().zip(y).map(|(r, v)| r[i] * v).sum());
            row
        })
        .collect();
    for c in 0..n {
        let p = (c..n).max_by(|a, b| m[*a][c].abs().total_cmp(&m[*b][c].abs())).unwrap();
        m.swap(c, p);
        for r in 0..n {
            if r != c {
                let f = m[r][c] / m[c][c];
                let pivot = m[c].clone();
                m[r].iter_mut().zip(&pivot).for_each(|(v, q)| *v -= f * q);
            }
        }
    }
    (0..n).map(|i| m[i][n] / m[i][i]).collect()
}

/// The noise attack: with its secret key the client knows each input's noise `eⱼ` and each
/// answer's noise `Σⱼ wⱼ·eⱼ`: one linear equation in the weights per answer. Returns the
/// weights least squares finds from `queries` answers, for output 0.
fn noise_attack(compiled: &CompiledCircuit, sanitize: bool, queries: usize) -> Vec<f64> {
    let spec = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&spec);
    let batch: Vec<Vec<Vec<i64>>> = (0..queries).map(sample).collect();
    let inputs = spec.encrypt(&client_key, &batch).unwrap();
    let answer = if sanitize {
        let sanitizer = compiled.sanitizer(&spec.public_key(&client_key).unwrap()).unwrap();
        compiled.run_with(&eval_key, &inputs, Sanitization::On(&sanitizer)).unwrap()
    } else {
        compiled.run(&eval_key, &inputs).unwrap()
    };
    let (e, y) = noises(compiled, &client_key, &batch, &inputs, &answer);
    let y0: Vec<f64> = y.iter().map(|o| o[0]).collect();
    let out_delta = answer.samples[0].1[0];
    least_squares(&e, &y0).iter().zip(&spec.inputs[0].2).map(|(u, d)| u / 2f64.powi((out_delta - d) as i32)).collect()
}

#[test]
fn encrypted_unsanitized_noise_gives_the_weights_and_flooding_hides_it() {
    let queries = 3 * FEATURES;
    let truth: Vec<f64> = column(0).iter().map(|w| *w as f64).collect();
    let plain = noise_attack(&linear(false), false, queries);
    for (w, t) in plain.iter().zip(&truth) {
        assert!((w - t).abs() < 0.01, "unsanitized: {plain:?} vs {truth:?}");
    }
    let sanitized = noise_attack(&linear(true), true, queries);
    let worst = sanitized.iter().zip(&truth).map(|(w, t)| (w - t).abs()).fold(0.0, f64::max);
    // The flood is at least 2^16 times the weights' noise: least squares from 18 answers
    // misses by thousands of times the weights themselves.
    assert!(worst > 1e5, "sanitized: {sanitized:?} vs {truth:?}");
}

/// A one-lookup circuit whose table is the server's secret.
fn lookup_circuit(table: [i64; 4], config: &FheConfig) -> CompiledCircuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[1], Interval::new(0, 3).unwrap());
    let y = b.lookup(x, Lut::Single(Table::from_fn(0, 2, |v| table[v as usize]))).unwrap();
    b.output(y).unwrap();
    CompiledCircuit::compile(b.build().unwrap(), config).unwrap()
}

#[test]
fn encrypted_unsanitized_lookup_answers_tell_tables_apart_that_decrypt_alike() {
    // Two tables that agree on the queried input (the client learns 5 either way) and
    // differ elsewhere. A bootstrap is deterministic: the client, who generated the
    // evaluation key, re-runs it with each candidate table and compares.
    let config = FheConfig::params().sanitize(true).sanitize_bits(0).check().unwrap();
    let server = lookup_circuit([5, 1, 7, 2], &config);
    let other = lookup_circuit([5, 2, 1, 7], &config);
    assert_eq!(server.plan().parameters, other.plan().parameters);
    assert_eq!(server.plan().deltas, other.plan().deltas);
    let spec = server.client_spec();
    let (client_key, eval_key) = cached_keys(&spec);
    let inputs = spec.encrypt(&client_key, &[vec![vec![0]]]).unwrap();
    let answer = server.run(&eval_key, &inputs).unwrap();
    assert_eq!(spec.decrypt(&client_key, &answer).unwrap(), vec![vec![vec![5]]]);

    let recompute = |candidate: &CompiledCircuit| {
        let key = eval_key.relabelled(candidate.fingerprint());
        candidate.run(&key, &inputs.relabelled(candidate.fingerprint())).unwrap().samples[0].0.clone()
    };
    let (mine, theirs) = (recompute(&server), recompute(&other));
    assert_eq!(answer.samples[0].0, mine, "the answer is exactly the server's table's bootstrap");
    assert_ne!(answer.samples[0].0, theirs, "and not the other table's");

    // Sanitized, the answer matches neither candidate (nor itself on a second run).
    let sanitizer = server.sanitizer(&spec.public_key(&client_key).unwrap()).unwrap();
    let first = server.run_with(&eval_key, &inputs, Sanitization::On(&sanitizer)).unwrap();
    let second = server.run_with(&eval_key, &inputs, Sanitization::On(&sanitizer)).unwrap();
    assert_eq!(spec.decrypt(&client_key, &first).unwrap(), vec![vec![vec![5]]]);
    for candidate in [&mine, &theirs, &second.samples[0].0] {
        let got = &first.samples[0].0;
        let equal = got.as_ref().iter().zip(candidate.as_ref()).filter(|(a, b)| a == b).count();
        assert!(equal <= 2, "{equal} of {} words equal", got.as_ref().len());
    }
    // Bootstrap noise leaves little room for flooding: the hiding reached is reported.
    let bits = server.report().outputs[0].sanitize_bits.unwrap();
    assert!(bits.is_finite(), "{bits}");
}

#[test]
fn encrypted_sanitized_plans_account_for_the_flood() {
    let plain = linear(false);
    let compiled = linear(true);
    let report = compiled.report();
    assert_eq!(report.sanitize_bits, Some(crate::plan::DEFAULT_SANITIZE_BITS));
    assert!(crate::sanitize::supports(&compiled.plan().parameters.set().params));
    for o in &report.outputs {
        let bits = o.sanitize_bits.unwrap();
        assert!(bits >= 16.0, "{bits}");
        // The flood fills 99% of the variance budget (a quarter step).
        assert!((o.error_std - 0.25 * 0.99f64.sqrt()).abs() < 1e-6, "{}", o.error_std);
    }
    assert!(plain.report().outputs.iter().all(|o| o.sanitize_bits.is_none() && o.error_std < 0.25));
    assert!(report.to_string().contains("sanitization"));

    // Execute and Simulate both show the planned error: a quarter-step std rounds one unit
    // off for about 4.6% of the elements.
    let batch: Vec<Vec<Vec<i64>>> = (0..160).map(sample).collect();
    let clear = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
    let off = |got: &[Vec<Vec<i64>>]| {
        got.iter().zip(&clear).flat_map(|(g, c)| g[0].iter().zip(&c[0]).map(|(a, b)| (a - b).abs())).collect::<Vec<_>>()
    };
    let spec = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&spec);
    let sanitizer = compiled.sanitizer(&spec.public_key(&client_key).unwrap()).unwrap();
    let inputs = spec.encrypt(&client_key, &batch).unwrap();
    let answer = compiled.run_with(&eval_key, &inputs, Sanitization::On(&sanitizer)).unwrap();
    let executed = off(&spec.decrypt(&client_key, &answer).unwrap());
    let simulated = off(&compiled.simulate(&batch, 7).unwrap());
    for (what, errors) in [("execute", executed), ("simulate", simulated)] {
        assert!(errors.iter().all(|e| *e <= 2), "{what}: {errors:?}");
        let ones = errors.iter().filter(|e| **e == 1).count();
        // 320 elements, p ≈ 0.045: about 14 expected.
        assert!((1..=36).contains(&ones), "{what}: {ones} of {} one unit off", errors.len());
    }
}

#[test]
fn bootstrapped_outputs_pay_for_their_hiding() {
    let compile = |config: FheConfig| {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[1], Interval::new(0, 3).unwrap());
        let y = b.lookup(x, Lut::Single(Table::from_fn(0, 2, |v| 2 * v))).unwrap();
        b.output(y).unwrap();
        CompiledCircuit::compile(b.build().unwrap(), &config)
    };
    let plain = compile(FheConfig::default()).unwrap();
    let sanitized = compile(FheConfig::params().sanitize(true).check().unwrap()).unwrap();
    // Bootstrap noise is far above fresh noise: hiding it behind 2^16 times its bound within
    // the output's budget takes a set with a quieter (costlier) bootstrap.
    assert!(sanitized.report().outputs[0].sanitize_bits.unwrap() >= 16.0);
    assert!(sanitized.report().bootstrap_seconds > plain.report().bootstrap_seconds);
    let err = compile(FheConfig::params().sanitize(true).sanitize_bits(40).check().unwrap()).unwrap_err().to_string();
    assert!(err.contains("sanitize_bits") && err.contains("bootstrap noise"), "{err}");
    // The error says how much hiding fits, and that much does.
    let most: u32 = err.split("at most ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!((16..40).contains(&most), "{err}");
    let fits = compile(FheConfig::params().sanitize(true).sanitize_bits(most).check().unwrap()).unwrap();
    assert!(fits.report().outputs[0].sanitize_bits.unwrap() >= most as f64);
}

#[test]
fn encrypted_sanitized_plans_give_every_element_of_an_input_or_output_one_scale() {
    // Feature 1 has no weight; output 1 spans far fewer bits than output 0.
    let compile = |sanitize: bool| {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[3], Interval::new(0, 255).unwrap());
        let y = b.matmul(x, array![[1000, 1], [0, 0], [-700, 2]]).unwrap();
        b.output_real(y, 1).unwrap();
        CompiledCircuit::compile(b.build().unwrap(), &FheConfig::params().sanitize(sanitize).check().unwrap()).unwrap()
    };
    let scales = |c: &CompiledCircuit| {
        let spec = c.client_spec();
        let (key, eval) = cached_keys(&spec);
        let answer = c.run(&eval, &spec.encrypt(&key, &[vec![vec![1, 2, 3]]]).unwrap()).unwrap();
        (spec.inputs[0].2.clone(), answer.samples[0].1.clone())
    };
    // Unsanitized, the scales the client sees give away the unused feature and the ranges.
    let (inputs, outputs) = scales(&compile(false));
    assert!(inputs[1] != inputs[0] && outputs[0] != outputs[1], "{inputs:?} {outputs:?}");
    let (inputs, outputs) = scales(&compile(true));
    assert!(inputs.iter().all(|d| *d == inputs[0]) && outputs[0] == outputs[1], "{inputs:?} {outputs:?}");
}

#[test]
fn encrypted_flooded_values_at_the_edge_of_their_range_do_not_wrap() {
    // [-64, 63] fills 7 two's-complement bits exactly: a flooded 63 that comes out one unit
    // high must not decrypt as -64.
    let mut b = CircuitBuilder::new();
    let x = b.input(&[1], Interval::new(-64, 63).unwrap());
    let y = b.matmul(x, array![[1]]).unwrap();
    b.output_real(y, 1).unwrap();
    let compiled =
        CompiledCircuit::compile(b.build().unwrap(), &FheConfig::params().sanitize(true).check().unwrap()).unwrap();
    let spec = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&spec);
    let sanitizer = compiled.sanitizer(&spec.public_key(&client_key).unwrap()).unwrap();
    let batch: Vec<Vec<Vec<i64>>> = (0..200).map(|i| vec![vec![if i % 2 == 0 { 63 } else { -64 }]]).collect();
    let inputs = spec.encrypt(&client_key, &batch).unwrap();
    let answer = compiled.run_with(&eval_key, &inputs, Sanitization::On(&sanitizer)).unwrap();
    let got = spec.decrypt(&client_key, &answer).unwrap();
    let errors: Vec<i64> = got.iter().zip(&batch).map(|(g, x)| g[0][0] - x[0][0]).collect();
    assert!(errors.iter().all(|e| e.abs() <= 2), "{errors:?}");
    assert!(errors.iter().any(|e| *e != 0), "the flood shows");
}
