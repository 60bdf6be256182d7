//! Malformed graphs give typed errors, never panics.

use fheml_circuits::{CircuitBuilder, CircuitError, Interval, Lut, NodeId, RoundingMode, Table};
use ndarray::{ArrayD, IxDyn, array};

fn range(lo: i64, hi: i64) -> Interval {
    Interval::new(lo, hi).unwrap()
}

#[test]
fn shape_mismatch_is_reported() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], range(0, 3));
    let y = b.input(&[3], range(0, 3));
    assert!(matches!(b.add(x, y), Err(CircuitError::ShapeMismatch { op: "add", .. })));
    assert!(matches!(b.matmul(x, array![[1], [2], [3]]), Err(CircuitError::ShapeMismatch { op: "matmul", .. })));
    assert!(matches!(b.reshape(x, &[3]), Err(CircuitError::ShapeMismatch { op: "reshape", .. })));
    let c = ArrayD::from_elem(IxDyn(&[3]), 1);
    assert!(matches!(b.add_const(x, c), Err(CircuitError::ShapeMismatch { op: "add_const", .. })));
    assert!(matches!(b.concat(&[x, y], 1), Err(CircuitError::InvalidArgument { .. })));
    let z = b.input(&[2, 2], range(0, 3));
    assert!(matches!(b.concat(&[x, z], 0), Err(CircuitError::ShapeMismatch { op: "concat", .. })));
}

#[test]
fn dangling_node_is_reported() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], range(0, 3));
    assert!(matches!(b.add(x, NodeId(7)), Err(CircuitError::DanglingNode { operand: NodeId(7), .. })));
    assert!(matches!(b.output(NodeId(9)), Err(CircuitError::DanglingNode { .. })));
}

#[test]
fn malformed_tables_are_reported() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], range(0, 3));
    let three = Table { input_min: 0, values: vec![1, 2, 3] };
    assert!(matches!(b.lookup(x, Lut::Single(three)), Err(CircuitError::BadTable { .. })));
    let empty = Table { input_min: 0, values: vec![] };
    assert!(matches!(b.lookup(x, Lut::Single(empty)), Err(CircuitError::BadTable { .. })));
    // Covers [1, 4], but x reaches 0.
    let shifted = Table { input_min: 1, values: vec![0; 4] };
    assert!(matches!(b.lookup(x, Lut::Single(shifted)), Err(CircuitError::BadTable { .. })));
    let per_channel = Lut::PerChannel(vec![Table::from_fn(0, 2, |v| v)]);
    assert!(matches!(b.lookup(x, per_channel), Err(CircuitError::BadTable { .. })));
    assert!(b.lookup(x, Lut::Single(Table::from_fn(0, 2, |v| v * v))).is_ok());
}

#[test]
fn possible_overflow_is_reported() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], range(-(1 << 40), 1 << 40));
    assert!(matches!(
        b.matmul(x, array![[1 << 30], [1 << 30]]),
        Err(CircuitError::PossibleOverflow { op: "matmul", .. })
    ));
    let c = ArrayD::from_elem(IxDyn(&[]), i64::MAX / 4);
    assert!(matches!(b.mul_const(x, c), Err(CircuitError::PossibleOverflow { .. })));
}

#[test]
fn invalid_arguments_are_reported() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], range(0, 3));
    assert!(matches!(b.sum(x, 1), Err(CircuitError::InvalidArgument { .. })));
    assert!(matches!(b.round(x, 0, RoundingMode::Exact), Err(CircuitError::InvalidArgument { .. })));
    assert!(matches!(b.gather(x, vec![0, 5], &[2]), Err(CircuitError::InvalidArgument { .. })));
    assert!(matches!(b.gather(x, vec![0], &[2]), Err(CircuitError::ShapeMismatch { .. })));
    assert!(matches!(CircuitBuilder::new().build(), Err(CircuitError::NoOutput)));
}

#[test]
fn evaluation_rejects_bad_inputs() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2], range(0, 3));
    b.output(x).unwrap();
    let c = b.build().unwrap();
    assert!(matches!(c.evaluate_clear(&[vec![1]]), Err(CircuitError::BadInput { .. })));
    assert!(matches!(c.evaluate_clear(&[vec![1, 9]]), Err(CircuitError::InputOutOfRange { value: 9, .. })));
    assert!(matches!(c.evaluate_clear(&[]), Err(CircuitError::BadInput { .. })));
    assert_eq!(c.evaluate_clear(&[vec![1, 3]]).unwrap(), vec![vec![1, 3]]);
}

#[test]
fn every_op_evaluates_as_specified() {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[2, 2], range(-8, 7));
    let doubled = b.mul_const(x, ArrayD::from_elem(IxDyn(&[2]), 2)).unwrap();
    let shifted = b.add_const(doubled, ArrayD::from_shape_vec(IxDyn(&[2]), vec![1, -1]).unwrap()).unwrap();
    let mixed = b.matmul(shifted, array![[1, 0, 2], [-1, 1, 0]]).unwrap(); // [2, 3]
    let rounded = b.round(mixed, 2, RoundingMode::Exact).unwrap();
    let relu = b.lookup(rounded, Lut::Single(Table::from_fn(-16, 5, |v| v.max(0)))).unwrap();
    let total = b.sum(relu, 0).unwrap(); // [3]
    let picked = b.gather(total, vec![2, 0], &[2]).unwrap();
    let flat = b.reshape(x, &[4]).unwrap();
    let joined = b.concat(&[picked, flat], 0).unwrap();
    let diff = b.sub(joined, joined).unwrap();
    b.output(joined).unwrap();
    b.output(diff).unwrap();
    let c = b.build().unwrap();
    // x = [[1, 2], [-3, 4]] -> 2x + [1, -1] = [[3, 3], [-5, 7]]
    // matmul rows: [3-3, 3, 6] = [0, 3, 6]; [-5-7, 7, -10] = [-12, 7, -10]
    // round /4 half up: [0, 1, 2]; [-3, 2, -2] -> relu [0,1,2]; [0,2,0] -> sum [0, 3, 2]
    let out = c.evaluate_clear(&[vec![1, 2, -3, 4]]).unwrap();
    assert_eq!(out[0], vec![2, 0, 1, 2, -3, 4]);
    assert_eq!(out[1], vec![0; 6]);
    let cost = c.cost();
    assert_eq!(cost.bootstraps, 6);
    // Exact rounding reads the whole accumulator: column 0 spans [-28, 32].
    assert_eq!(cost.lookups[0].precision.0, 6);
}
