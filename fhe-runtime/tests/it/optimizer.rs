//! Parameters tuned to the circuit, and real-valued outputs with an error budget.

use fheml_circuits::testing::{RandomCircuitConfig, random_circuit};
use fheml_circuits::{Circuit, CircuitBuilder, Interval, Lut, RoundingMode, Table};
use fheml_fhe_runtime::testing::cached_keys;
use fheml_fhe_runtime::{CompiledCircuit, FheConfig, ParameterMode, Parameters};
use ndarray::Array2;

/// A small two-layer network: 12 inputs of 3 bits, a hidden layer of 8 (`rounding` to 4
/// bits, then a 3-bit ReLU), and 2 wide logits declared real-valued with `step`.
fn network(step: Option<u64>, rounding: RoundingMode) -> Circuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[12], Interval::new(0, 7).unwrap());
    let w1 = Array2::from_shape_fn((12, 8), |(i, j)| ((i * 5 + j * 3) % 7) as i64 - 3);
    let h = b.matmul(x, w1).unwrap();
    let width = b.node_range(h).span_bits().0;
    let lsbs = width.saturating_sub(4);
    let r = b.round(h, lsbs, rounding).unwrap();
    let rr = b.node_range(r);
    let relu = Table::from_fn(rr.lo, rr.span_bits().0, |v| v.clamp(0, 7));
    let a = b.lookup(r, Lut::Single(relu)).unwrap();
    let w2 = Array2::from_shape_fn((8, 2), |(i, j)| ((i * 3 + j * 5) % 7) as i64 - 3);
    let logits = b.matmul(a, w2).unwrap();
    match step {
        Some(s) => b.output_real(logits, s).unwrap(),
        None => b.output(logits).unwrap(),
    }
    b.build().unwrap()
}

fn cost(c: &CompiledCircuit) -> f64 {
    c.report().bootstraps as f64 * c.plan().parameters.set().cost
}

#[test]
fn generated_sets_never_cost_more_than_the_best_vetted_one() {
    let vetted = FheConfig::params().parameter_mode(ParameterMode::Vetted).check().unwrap();
    let mut generated = 0;
    for seed in 0..12u64 {
        let config = RandomCircuitConfig { max_ops: 6, max_weight: 3, max_lookup_bits: 5, lookups: true };
        let (circuit, _) = random_circuit(seed, config);
        let optimized = CompiledCircuit::compile(circuit.clone(), &FheConfig::default());
        let pinned = CompiledCircuit::compile(circuit, &vetted);
        if let (Ok(o), Ok(p)) = (&optimized, &pinned) {
            assert!(cost(o) <= cost(p) * (1.0 + 1e-9), "seed {seed}: {} vs {}", o.report(), p.report());
            generated += usize::from(o.report().generated);
        }
        // Vetted sets are candidates: the optimizer never loses a circuit they can run.
        assert!(pinned.is_err() || optimized.is_ok(), "seed {seed}");
    }
    assert!(generated > 0, "the optimizer found no cheaper set on any random circuit");
}

#[test]
fn generated_parameters_are_secure_and_revalidated_on_load() {
    let compiled =
        CompiledCircuit::compile(network(Some(8), RoundingMode::Approximate), &FheConfig::default()).unwrap();
    let Parameters::Generated(set) = compiled.plan().parameters else {
        panic!("expected a generated set: {}", compiled.report());
    };
    fheml_fhe_runtime::generated::check_security(&set.to_tfhe()).unwrap();
    let bytes = compiled.to_bytes().unwrap();
    assert_eq!(CompiledCircuit::from_bytes(&bytes).unwrap().plan().parameters, compiled.plan().parameters);
    assert!(compiled.client_spec().validate().is_ok());
    // A client part whose set asks for an absurd polynomial is refused before keygen.
    let mut spec = compiled.client_spec();
    spec.parameter_set =
        Parameters::Generated(fheml_fhe_runtime::GeneratedParameters { polynomial_size: 1 << 20, ..set });
    assert!(spec.validate().is_err());
}

#[test]
fn real_outputs_trade_exactness_for_cheaper_parameters() {
    let real = CompiledCircuit::compile(network(Some(8), RoundingMode::Approximate), &FheConfig::default()).unwrap();
    let report = real.report();
    assert!(!report.outputs[0].exact && report.outputs[0].step == 8, "{report}");
    assert!(report.outputs[0].error_std <= 0.25 * 8.0 + 1e-9, "{report}");
    // The same circuit with exact logits needs at least as costly parameters.
    let exact_config = FheConfig::params().exact_outputs(true).check().unwrap();
    let exact = CompiledCircuit::compile(network(Some(8), RoundingMode::Approximate), &exact_config).unwrap();
    assert!(exact.report().outputs[0].exact);
    assert!(cost(&exact) >= cost(&real), "{}\nvs\n{}", exact.report(), real.report());
    assert_eq!(
        CompiledCircuit::compile(network(None, RoundingMode::Approximate), &FheConfig::default()).unwrap().plan(),
        exact.plan()
    );
}

#[test]
fn encrypted_real_outputs_execute_within_their_error_budget() {
    // Exact hidden rounding: every difference from Clear is the outputs' own error.
    let compiled = CompiledCircuit::compile(network(Some(8), RoundingMode::Exact), &FheConfig::default()).unwrap();
    let batch: Vec<Vec<Vec<i64>>> = (0..6).map(|s| vec![(0..12).map(|i| (i * 3 + s * 5) % 8).collect()]).collect();
    let clear = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
    let client = compiled.client_spec();
    let (ck, ek) = cached_keys(&client);
    let answer = compiled.run(&ek, &client.encrypt(&ck, &batch).unwrap()).unwrap();
    let decrypted = client.decrypt(&ck, &answer).unwrap();
    let bound = (8.0 * compiled.report().outputs[0].error_std).max(1.0);
    for (d, c) in decrypted.iter().zip(&clear) {
        for (x, y) in d[0].iter().zip(&c[0]) {
            assert!(((x - y) as f64).abs() <= bound, "{x} vs {y} (bound {bound})");
        }
    }
}

/// A circuit whose outputs sum values that share sources: lookups feed a Gemm → Gemm chain,
/// and a gather repeats an element into the last sum.
fn shared_ancestry(seed: u64) -> Circuit {
    let w = |i: usize, j: usize, salt: u64| ((seed ^ salt).wrapping_mul(0x9e37_79b9) as usize + 7 * i + 3 * j) % 7;
    let mut b = CircuitBuilder::new();
    let x = b.input(&[4], Interval::new(0, 7).unwrap());
    let y = b.lookup(x, Lut::Single(Table::from_fn(0, 3, |v| (v * 5) % 8))).unwrap();
    let w1 = Array2::from_shape_fn((4, 3), |(i, j)| w(i, j, 1) as i64 - 3);
    let h = b.matmul(y, w1).unwrap();
    let w2 = Array2::from_shape_fn((3, 2), |(i, j)| w(i, j, 2) as i64 - 2);
    let o = b.matmul(h, w2).unwrap();
    let again = b.gather(y, vec![2, 2], &[2]).unwrap();
    let out = b.add(o, again).unwrap();
    b.output_real(out, 1).unwrap();
    b.build().unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 6, failure_persistence: None, .. Default::default() })]

    /// Simulate carries real (correlated) noise samples; the analysis must bound what it
    /// measures, and be close to it (exact propagation).
    #[test]
    fn analytic_output_noise_bounds_simulated_noise(seed in proptest::prelude::any::<u64>()) {
        let compiled = CompiledCircuit::compile(shared_ancestry(seed), &FheConfig::default()).unwrap();
        let batch: Vec<Vec<Vec<i64>>> = (0..1500).map(|i| vec![(0..4).map(|k| (i + k) % 8).collect()]).collect();
        let noisy = compiled.simulate_noisy(&batch, seed).unwrap();
        for (e, analytic) in compiled.plan().output_std[0].iter().enumerate() {
            let measured = (noisy.iter().map(|s| s[0][e].noise.powi(2)).sum::<f64>() / noisy.len() as f64).sqrt();
            proptest::prop_assert!(measured <= analytic * 1.15, "element {e}: measured {measured} > analytic {analytic}");
            proptest::prop_assert!(measured >= analytic * 0.8, "element {e}: measured {measured} << analytic {analytic}");
        }
    }
}
