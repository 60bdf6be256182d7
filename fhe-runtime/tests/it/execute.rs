//! Execute mode gives exactly the Clear result.

use fheml_circuits::testing::{RandomCircuitConfig, random_circuit};
use fheml_circuits::{CircuitBuilder, Interval, Lut, RoundingMode, Table};
use fheml_fhe_runtime::testing::cached_keys;
use fheml_fhe_runtime::{CompiledCircuit, FheConfig};
use ndarray::{Array2, array};
use proptest::prelude::*;

fn execute(compiled: &CompiledCircuit, batch: &[Vec<Vec<i64>>]) -> Vec<Vec<Vec<i64>>> {
    let client = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&client);
    let query = client.encrypt(&client_key, batch).unwrap();
    let answer = compiled.run(&eval_key, &query).unwrap();
    client.decrypt(&client_key, &answer).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, failure_persistence: None, .. ProptestConfig::default() })]

    /// Random circuits with lookups: Execute equals Clear on random inputs.
    #[test]
    fn encrypted_random_circuits_execute_exactly(seed in any::<u64>()) {
        let config = RandomCircuitConfig { max_ops: 5, max_weight: 2, max_lookup_bits: 4, lookups: true };
        let (circuit, sample) = random_circuit(seed, config);
        let batch: Vec<_> = (0..3).map(|i| sample(seed ^ i)).collect();
        let expected = circuit.evaluate_clear_batch(&batch).unwrap();
        let compiled = CompiledCircuit::compile(circuit, &FheConfig::default()).unwrap();
        prop_assert_eq!(execute(&compiled, &batch), expected);
    }
}

#[test]
fn encrypted_leveled_dot_product_needs_no_evaluation_key() {
    // 30 inputs of 8 bits, 8-bit signed weights.
    let weights = Array2::from_shape_fn((30, 1), |(i, _)| ((i as i64 * 37) % 255) - 127);
    let mut b = CircuitBuilder::new();
    let x = b.input(&[30], Interval::new(0, 255).unwrap());
    let y = b.matmul(x, weights).unwrap();
    b.output(y).unwrap();
    let compiled = CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap();
    assert!(!compiled.report().needs_evaluation_key);
    assert_eq!(compiled.report().bootstraps, 0);
    let batch: Vec<Vec<Vec<i64>>> = (0..4).map(|s| vec![(0..30).map(|i| (i * 7 + s * 61) % 256).collect()]).collect();
    assert_eq!(execute(&compiled, &batch), compiled.circuit().evaluate_clear_batch(&batch).unwrap());
}

#[test]
fn encrypted_roundings_and_per_channel_tables_execute_exactly() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[3], Interval::new(-4, 3).unwrap());
    let acc = b.matmul(x, array![[2, -1], [1, 3], [-2, 1]]).unwrap(); // up to 5 bits
    let rounded = b.round(acc, 2, RoundingMode::Exact).unwrap();
    let relu = b.lookup(rounded, Lut::Single(Table::from_fn(-8, 4, |v| v.max(0)))).unwrap();
    let per_channel =
        b.lookup(relu, Lut::PerChannel(vec![Table::from_fn(0, 3, |v| 3 * v), Table::from_fn(0, 3, |v| -v)])).unwrap();
    b.output(per_channel).unwrap();
    let standalone = b.round(acc, 1, RoundingMode::Exact).unwrap();
    b.output(standalone).unwrap();
    let compiled = CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap();
    let batch: Vec<Vec<Vec<i64>>> = vec![vec![vec![-4, 3, -4]], vec![vec![3, -4, 3]], vec![vec![1, 2, -1]]];
    assert_eq!(execute(&compiled, &batch), compiled.circuit().evaluate_clear_batch(&batch).unwrap());
}

#[test]
fn encrypted_approximate_rounding_is_within_one() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[4], Interval::new(0, 15).unwrap());
    let acc = b.matmul(x, array![[3], [5], [7], [2]]).unwrap(); // [0, 255]: 8 bits
    let rounded = b.round(acc, 5, RoundingMode::Approximate).unwrap(); // read 3 bits
    let id = b.lookup(rounded, Lut::Single(Table::from_fn(0, 4, |v| v))).unwrap();
    b.output(id).unwrap();
    let compiled = CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap();
    assert!(compiled.report().max_precision.0 <= 4);
    let batch: Vec<Vec<Vec<i64>>> = (0..6).map(|s| vec![(0..4).map(|i| (i * 5 + s * 3) % 16).collect()]).collect();
    let clear = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
    for (fhe, clear) in execute(&compiled, &batch).iter().zip(&clear) {
        assert!((fhe[0][0] - clear[0][0]).abs() <= 1, "{fhe:?} vs {clear:?}");
    }
}

#[test]
fn simulation_matches_clear_at_the_compiled_failure_rate() {
    let (circuit, sample) = random_circuit(7, RandomCircuitConfig { max_lookup_bits: 4, ..Default::default() });
    let compiled = CompiledCircuit::compile(circuit, &FheConfig::default()).unwrap();
    let batch: Vec<_> = (0..200).map(sample).collect();
    assert_eq!(compiled.simulate(&batch, 1).unwrap(), compiled.circuit().evaluate_clear_batch(&batch).unwrap());

    // With a loose p_error the simulator does inject errors, reproducibly.
    let mut b = CircuitBuilder::new();
    let x = b.input(&[8], Interval::new(0, 15).unwrap());
    let acc = b.matmul(x, Array2::from_elem((8, 1), 1)).unwrap();
    let rounded = b.round(acc, 3, RoundingMode::Approximate).unwrap();
    let y = b.lookup(rounded, Lut::Single(Table::from_fn(0, 5, |v| v))).unwrap();
    b.output(y).unwrap();
    let loose = FheConfig::params().p_error(0.1).check().unwrap();
    let compiled = CompiledCircuit::compile(b.build().unwrap(), &loose).unwrap();
    let batch: Vec<Vec<Vec<i64>>> = (0..300).map(|s| vec![(0..8).map(|i| (i * 3 + s * 7) % 16).collect()]).collect();
    let a = compiled.simulate(&batch, 3).unwrap();
    assert_eq!(a, compiled.simulate(&batch, 3).unwrap(), "seeded");
    let clear = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
    let differing = a.iter().zip(&clear).filter(|(x, y)| x != y).count();
    assert!(differing > 0, "approximate rounding flips some reads");
    assert!(a.iter().zip(&clear).all(|(x, y)| (x[0][0] - y[0][0]).abs() <= 1));
}

#[test]
fn impossible_requirements_are_reported() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[1], Interval::new(0, (1 << 16) - 1).unwrap());
    let y = b.lookup(x, Lut::Single(Table::from_fn(0, 16, |v| v / 2))).unwrap();
    b.output(y).unwrap();
    let err = CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap_err();
    // One sentence naming the lookup and what to change; the candidate list stays apart.
    let message = err.to_string();
    assert!(message.contains("node #1 reads 16 bits") && message.contains("accumulator_bits"), "{message}");
    assert!(!message.contains('\n') && !message.contains("V1_"), "{message}");
    match err {
        fheml_fhe_runtime::FheError::NoParameters { candidates, .. } => assert!(candidates.contains("V1_")),
        other => panic!("{other}"),
    }
    assert!(FheConfig::params().p_error(0.0).check().is_err());
    assert!(FheConfig::params().global_p_error(Some(2.0)).check().is_err());
}

#[test]
fn encrypted_a_rounding_that_is_also_an_output_feeds_lookups() {
    // The rounding is materialised (one bootstrap of its own); the lookups then read its
    // value, and share that read.
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], Interval::new(0, 15).unwrap());
    let r = b.round(x, 2, RoundingMode::Exact).unwrap(); // [0, 4]
    let f = b.lookup(r, Lut::Single(Table::from_fn(0, 3, |v| 2 * v))).unwrap();
    let g = b.lookup(r, Lut::Single(Table::from_fn(0, 3, |v| 5 - v))).unwrap();
    for y in [r, f, g] {
        b.output(y).unwrap();
    }
    let circuit = b.build().unwrap();
    assert_eq!(circuit.cost().bootstraps, 4);
    let compiled = CompiledCircuit::compile(circuit, &FheConfig::default()).unwrap();
    let batch: Vec<Vec<Vec<i64>>> = (0..8).map(|s| vec![vec![2 * s, 15 - 2 * s]]).collect();
    assert_eq!(execute(&compiled, &batch), compiled.circuit().evaluate_clear_batch(&batch).unwrap());
}
