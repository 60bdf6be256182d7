//! Many-LUT: several tables on the same input share one bootstrap, and Execute still equals
//! Clear on every input value.

use fheml_circuits::testing::{RandomCircuitConfig, random_circuit};
use fheml_circuits::{Circuit, CircuitBuilder, Interval, Lut, RoundingMode, Table};
use fheml_fhe_runtime::testing::cached_keys;
use fheml_fhe_runtime::{CompiledCircuit, FheConfig, ParameterSetId};
use ndarray::array;

fn execute(compiled: &CompiledCircuit, batch: &[Vec<Vec<i64>>]) -> Vec<Vec<Vec<i64>>> {
    let client = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&client);
    let query = client.encrypt(&client_key, batch).unwrap();
    let answer = compiled.run(&eval_key, &query).unwrap();
    client.decrypt(&client_key, &answer).unwrap()
}

/// relu, sign and square of every element of a 2-bit signed input (`[-2, 1]`).
fn relu_sign_square(elements: usize) -> Circuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[elements], Interval::new(-2, 1).unwrap());
    let relu = b.lookup(x, Lut::Single(Table::from_fn(-2, 2, |v| v.max(0)))).unwrap();
    let sign = b.lookup(x, Lut::Single(Table::from_fn(-2, 2, i64::signum))).unwrap();
    let square = b.lookup(x, Lut::Single(Table::from_fn(-2, 2, |v| v * v))).unwrap();
    for y in [relu, sign, square] {
        b.output(y).unwrap();
    }
    b.build().unwrap()
}

#[test]
fn encrypted_three_tables_on_one_input_take_one_bootstrap_per_element() {
    let circuit = relu_sign_square(4);
    assert_eq!(circuit.cost().bootstraps, 4);
    let compiled = CompiledCircuit::compile(circuit, &FheConfig::default()).unwrap();
    let report = compiled.report();
    assert_eq!((report.bootstraps, report.lookups, report.shared_bootstraps), (4, 12, 4), "{report}");
    // Two bits read, two slot bits to keep the three tables apart.
    assert_eq!(report.max_precision.0, 4, "{report}");
    assert!(report.lookup_p_error <= report.p_error);
    // Every input value, once per element.
    let batch = vec![vec![vec![-2, -1, 0, 1]], vec![vec![1, 0, -1, -2]]];
    let expected = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
    assert_eq!(expected[0], vec![vec![0, 0, 0, 1], vec![-1, -1, 0, 1], vec![4, 1, 0, 1]]);
    assert_eq!(execute(&compiled, &batch), expected);
    assert_eq!(compiled.simulate(&batch, 5).unwrap(), expected);
}

#[test]
fn encrypted_per_channel_tables_and_a_rounding_share_one_bootstrap() {
    // Two channels, each spread to two lookups with its own tables; a third lookup reads
    // the same accumulator through the same approximate rounding, and a fourth through a
    // different one (not shared).
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], Interval::new(0, 3).unwrap());
    let spread = b.gather(x, vec![0, 0, 1, 1], &[4]).unwrap();
    let tables = vec![
        Table::from_fn(0, 2, |v| v),
        Table::from_fn(0, 2, |v| 3 - v),
        Table::from_fn(0, 2, |v| v * v),
        Table::from_fn(0, 2, |v| -v),
    ];
    let per_channel = b.lookup(spread, Lut::PerChannel(tables)).unwrap();
    let acc = b.matmul(x, array![[2], [1]]).unwrap(); // [0, 9]
    let r1 = b.round(acc, 1, RoundingMode::Approximate).unwrap();
    let r2 = b.round(acc, 1, RoundingMode::Approximate).unwrap();
    let a = b.lookup(r1, Lut::Single(Table::from_fn(0, 3, |v| v))).unwrap();
    let c = b.lookup(r2, Lut::Single(Table::from_fn(0, 3, |v| 7 - v))).unwrap();
    let r3 = b.round(acc, 2, RoundingMode::Exact).unwrap();
    let d = b.lookup(r3, Lut::Single(Table::from_fn(0, 2, |v| v + 1))).unwrap();
    let sum = b.add(a, c).unwrap();
    for y in [per_channel, sum, d] {
        b.output(y).unwrap();
    }
    let circuit = b.build().unwrap();
    let cost = circuit.cost();
    assert_eq!((cost.lookups.len(), cost.bootstraps, cost.shared_reads), (7, 4, 3));
    let compiled = CompiledCircuit::compile(circuit, &FheConfig::default()).unwrap();
    assert_eq!((compiled.report().bootstraps, compiled.report().shared_bootstraps), (4, 3), "{}", compiled.report());
    let batch: Vec<Vec<Vec<i64>>> = (0..4).map(|v| vec![vec![v, 3 - v]]).collect();
    let expected = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
    let got = execute(&compiled, &batch);
    for (fhe, clear) in got.iter().zip(&expected) {
        assert_eq!(fhe[0], clear[0]);
        assert_eq!(fhe[2], clear[2]);
        // `a + c` is 7 whatever the (shared) approximate rounding reads: both see one box.
        assert_eq!(fhe[1], vec![7]);
    }
}

#[test]
fn fusion_is_declined_where_the_finer_read_misses_p_error() {
    // On the 2+2-bit set a 4-bit read is at the limit: the 5-bit read two tables need misses
    // p_error, so the planner keeps two bootstraps.
    let mut b = CircuitBuilder::new();
    let x = b.input(&[1], Interval::new(0, 15).unwrap());
    let f = b.lookup(x, Lut::Single(Table::from_fn(0, 4, |v| v / 2))).unwrap();
    let g = b.lookup(x, Lut::Single(Table::from_fn(0, 4, |v| 15 - v))).unwrap();
    b.output(f).unwrap();
    b.output(g).unwrap();
    let circuit = b.build().unwrap();
    let only = FheConfig::params().p_error(2f64.powi(-128)).candidates(&[ParameterSetId::M2C2P128]).check().unwrap();
    let compiled = CompiledCircuit::compile(circuit.clone(), &only).unwrap();
    let report = compiled.report();
    assert_eq!((report.bootstraps, report.shared_bootstraps), (2, 0), "{report}");
    assert_eq!(report.max_precision.0, 4);
    let vetted = FheConfig::params().parameter_mode(fheml_fhe_runtime::ParameterMode::Vetted).check().unwrap();
    let any = CompiledCircuit::compile(circuit.clone(), &vetted).unwrap();
    // At 2^-40, two bootstraps on the 2+2-bit set still beat one on the 3+3-bit set.
    assert_eq!((any.report().bootstraps, any.report().shared_bootstraps), (2, 0), "{}", any.report());
    // A set generated for the circuit affords the finer read: one bootstrap, and cheaper.
    let tuned = CompiledCircuit::compile(circuit, &FheConfig::default()).unwrap();
    assert_eq!((tuned.report().bootstraps, tuned.report().shared_bootstraps), (1, 1), "{}", tuned.report());
    assert!(tuned.report().expected_seconds < any.report().expected_seconds);
}

#[test]
fn many_lut_can_be_turned_off() {
    let off = FheConfig::params().many_lut(false).check().unwrap();
    let compiled = CompiledCircuit::compile(relu_sign_square(2), &off).unwrap();
    assert_eq!((compiled.report().bootstraps, compiled.report().shared_bootstraps), (6, 0));
    assert!(compiled.plan().shared.is_empty());
}

#[test]
fn encrypted_random_circuits_with_fused_reads_execute_exactly() {
    // The first random circuits whose plan fuses some shared read (the proptest in
    // `execute.rs` draws them at random; these are fixed).
    let config = RandomCircuitConfig { max_ops: 5, max_weight: 2, max_lookup_bits: 4, lookups: true };
    let fused: Vec<_> = (0..400u64)
        .filter_map(|seed| {
            let (circuit, sample) = random_circuit(seed, config);
            let compiled = CompiledCircuit::compile(circuit, &FheConfig::default()).ok()?;
            (!compiled.plan().shared.is_empty()).then_some((seed, compiled, sample))
        })
        .take(2)
        .collect();
    assert_eq!(fused.len(), 2, "random circuits should fuse some shared reads");
    for (seed, compiled, sample) in fused {
        let batch: Vec<_> = (0..2).map(|i| sample(seed ^ i)).collect();
        let expected = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
        assert_eq!(execute(&compiled, &batch), expected, "seed {seed}");
        assert_eq!(compiled.simulate(&batch, seed).unwrap(), expected, "seed {seed}");
    }
}
