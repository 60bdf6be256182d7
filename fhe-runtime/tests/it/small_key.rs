//! Inputs under the small LWE key: which values go there, and Execute still equals Clear
//! when lookups read them without a keyswitch.

use fheml_circuits::{CircuitBuilder, Interval, Lut, NodeId, Table};
use fheml_fhe_runtime::plan::small_key_nodes;
use fheml_fhe_runtime::testing::cached_keys;
use fheml_fhe_runtime::{CompiledCircuit, FheConfig};
use ndarray::array;

fn identity() -> Lut {
    Lut::Single(Table::from_fn(0, 8, |v| v))
}

#[test]
fn inputs_read_by_lookups_alone_go_under_the_small_key() {
    // a -> matmul -> lookup -> output: a and the product are small, the lookup is not.
    let mut b = CircuitBuilder::new();
    let a = b.input(&[2], Interval::new(0, 3).unwrap());
    let s = b.matmul(a, array![[1], [1]]).unwrap();
    let y = b.lookup(s, identity()).unwrap();
    b.output(y).unwrap();
    let small = small_key_nodes(&b.build().unwrap());
    assert_eq!(small, vec![true, true, false]);
    assert_eq!((a, s, y), (NodeId(0), NodeId(1), NodeId(2)));
}

#[test]
fn encrypted_inputs_that_reach_an_output_or_mix_with_a_bootstrap_stay_under_the_large_key() {
    // x is read by a lookup but also added to the lookup's result: large key.
    // z only reaches an output: large key. w feeds a lookup alone: small key.
    let mut b = CircuitBuilder::new();
    let x = b.input(&[1], Interval::new(0, 3).unwrap());
    let z = b.input(&[1], Interval::new(0, 3).unwrap());
    let w = b.input(&[1], Interval::new(0, 3).unwrap());
    let y = b.lookup(x, identity()).unwrap();
    let mixed = b.add(x, y).unwrap();
    let v = b.lookup(w, identity()).unwrap();
    b.output(mixed).unwrap();
    b.output(z).unwrap();
    b.output(v).unwrap();
    let circuit = b.build().unwrap();
    let small = small_key_nodes(&circuit);
    assert!(!small[x.0] && !small[z.0] && small[w.0], "{small:?}");
    assert!(!small[y.0] && !small[mixed.0] && !small[v.0]);

    let compiled = CompiledCircuit::compile(circuit, &FheConfig::default()).unwrap();
    assert_eq!(compiled.report().small_key_lookups, 1);
    let client = compiled.client_spec();
    assert_eq!(client.small_key_inputs, vec![false, false, true]);
    let batch: Vec<Vec<Vec<i64>>> = (0..4).map(|i| vec![vec![i], vec![3 - i], vec![(i + 1) % 4]]).collect();
    let (client_key, eval_key) = cached_keys(&client);
    let answer = compiled.run(&eval_key, &client.encrypt(&client_key, &batch).unwrap()).unwrap();
    let expected = compiled.circuit().evaluate_clear_batch(&batch).unwrap();
    assert_eq!(client.decrypt(&client_key, &answer).unwrap(), expected);
    assert_eq!(compiled.simulate(&batch, 3).unwrap(), expected);
}

/// A product column of zero weights is a constant: it takes its node's key, so the sum it
/// joins (under the small key) stays on one key.
#[test]
fn encrypted_constants_in_small_key_nodes_take_the_small_key() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], Interval::new(0, 3).unwrap());
    let p = b.matmul(x, array![[1, 0], [1, 0]]).unwrap();
    let s = b.matmul(p, array![[1], [1]]).unwrap();
    let y = b.lookup(s, identity()).unwrap();
    b.output(y).unwrap();
    let compiled = CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap();
    assert!(compiled.plan().is_small_key(p) && compiled.plan().is_small_key(s));
    let client = compiled.client_spec();
    let (client_key, eval_key) = cached_keys(&client);
    let batch = vec![vec![vec![1, 2]], vec![vec![3, 3]]];
    let answer = compiled.run(&eval_key, &client.encrypt(&client_key, &batch).unwrap()).unwrap();
    assert_eq!(client.decrypt(&client_key, &answer).unwrap(), compiled.circuit().evaluate_clear_batch(&batch).unwrap());
}
