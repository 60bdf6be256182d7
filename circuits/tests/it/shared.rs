//! Shared reads (many-LUT): detection, counting, and evaluation through `many_lookup`.

use fheml_circuits::testing::{RandomCircuitConfig, random_circuit};
use fheml_circuits::{
    Backend, CircuitBuilder, CircuitError, ClearBackend, CountingBackend, ElementRef, FusedRounding, Interval, Lut,
    SharedReads, Table, evaluate, shape_inputs,
};
use proptest::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Clear evaluation that takes every shared read as one group (the driver's fused path),
/// counting the groups it evaluates.
struct FusingClear {
    shared: SharedReads,
    groups: AtomicUsize,
}

impl Backend for FusingClear {
    type Value = i64;
    type Error = CircuitError;

    fn linear(&self, terms: &[(i64, &i64)], constant: i64, out: ElementRef) -> Result<i64, CircuitError> {
        ClearBackend.linear(terms, constant, out)
    }

    fn lookup(&self, x: &i64, t: &Table, r: Option<FusedRounding>, out: ElementRef) -> Result<i64, CircuitError> {
        ClearBackend.lookup(x, t, r, out)
    }

    fn shared_reads(&self) -> Option<&SharedReads> {
        Some(&self.shared)
    }

    fn many_lookup(
        &self,
        x: &i64,
        tables: &[&Table],
        r: Option<FusedRounding>,
        outs: &[ElementRef],
    ) -> Result<Vec<i64>, CircuitError> {
        self.groups.fetch_add(1, Ordering::Relaxed);
        tables.iter().zip(outs).map(|(t, o)| ClearBackend.lookup(x, t, r, *o)).collect()
    }

    fn round(&self, x: &i64, r: FusedRounding, out: ElementRef) -> Result<i64, CircuitError> {
        ClearBackend.round(x, r, out)
    }
}

fn relu_sign_square() -> fheml_circuits::Circuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[3], Interval::new(-2, 1).unwrap());
    let relu = b.lookup(x, Lut::Single(Table::from_fn(-2, 2, |v| v.max(0)))).unwrap();
    let sign = b.lookup(x, Lut::Single(Table::from_fn(-2, 2, i64::signum))).unwrap();
    let square = b.lookup(x, Lut::Single(Table::from_fn(-2, 2, |v| v * v))).unwrap();
    let sum = b.add(relu, sign).unwrap();
    b.output(sum).unwrap();
    b.output(square).unwrap();
    b.build().unwrap()
}

#[test]
fn three_tables_on_one_input_cost_one_bootstrap_per_element() {
    let circuit = relu_sign_square();
    let cost = circuit.cost();
    assert_eq!(cost.lookups.len(), 9);
    assert_eq!(cost.bootstraps, 3);
    assert_eq!(cost.shared_reads, 3);
    assert_eq!(cost.shared_reads_saved, 6);
    assert!(cost.lookups.iter().all(|l| l.shared_read.is_some()));

    let counting = CountingBackend::sharing(SharedReads::find(&circuit));
    counting.count(&circuit).unwrap();
    assert_eq!(counting.bootstraps(), 3);
    let unshared = CountingBackend::default();
    unshared.count(&circuit).unwrap();
    assert_eq!(unshared.bootstraps(), 9);

    for v in -2..=1 {
        let inputs = vec![vec![v, -2, 1]];
        let fusing = FusingClear { shared: SharedReads::find(&circuit), groups: AtomicUsize::new(0) };
        let got = evaluate(&circuit, &fusing, shape_inputs(&circuit, &inputs).unwrap()).unwrap();
        let got: Vec<Vec<i64>> = got.into_iter().map(|t| t.iter().copied().collect()).collect();
        assert_eq!(got, circuit.evaluate_clear(&inputs).unwrap());
        assert_eq!(fusing.groups.load(Ordering::Relaxed), 3);
    }
}

#[test]
fn per_channel_tables_on_one_element_share_a_read() {
    // One value, broadcast to three channels by a gather, one table per channel.
    let mut b = CircuitBuilder::new();
    let x = b.input(&[1], Interval::new(0, 3).unwrap());
    let spread = b.gather(x, vec![0, 0, 0], &[3]).unwrap();
    let tables = vec![Table::from_fn(0, 2, |v| v), Table::from_fn(0, 2, |v| 3 - v), Table::from_fn(0, 2, |v| v * v)];
    let y = b.lookup(spread, Lut::PerChannel(tables)).unwrap();
    b.output(y).unwrap();
    let circuit = b.build().unwrap();
    assert_eq!(circuit.cost().bootstraps, 1);
    for v in 0..=3 {
        let fusing = FusingClear { shared: SharedReads::find(&circuit), groups: AtomicUsize::new(0) };
        let got = evaluate(&circuit, &fusing, shape_inputs(&circuit, &[vec![v]]).unwrap()).unwrap();
        assert_eq!(got[0].iter().copied().collect::<Vec<_>>(), vec![v, 3 - v, v * v]);
        assert_eq!(fusing.groups.load(Ordering::Relaxed), 1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Evaluating shared reads through `many_lookup` gives the Clear result, and counts one
    /// bootstrap per group as the cost model does.
    #[test]
    fn shared_reads_evaluate_and_count_like_the_cost_model(seed in any::<u64>(), input_seed in any::<u64>()) {
        let (circuit, sample) = random_circuit(seed, RandomCircuitConfig::default());
        let inputs = sample(input_seed);
        let shared = SharedReads::find(&circuit);
        let fusing = FusingClear { shared: shared.clone(), groups: AtomicUsize::new(0) };
        let got = evaluate(&circuit, &fusing, shape_inputs(&circuit, &inputs).unwrap());
        let expected = circuit.evaluate_clear(&inputs);
        match (got, expected) {
            (Ok(got), Ok(expected)) => {
                let got: Vec<Vec<i64>> = got.into_iter().map(|t| t.iter().copied().collect()).collect();
                prop_assert_eq!(got, expected);
                prop_assert_eq!(fusing.groups.load(Ordering::Relaxed), shared.len());
            }
            (Err(_), Err(_)) => {}
            (got, expected) => prop_assert!(false, "fused {:?} vs clear {:?}", got.is_ok(), expected.is_ok()),
        }
        let counting = CountingBackend::sharing(shared);
        counting.count(&circuit).unwrap();
        prop_assert_eq!(counting.bootstraps(), circuit.cost().bootstraps);
    }
}

#[test]
fn random_circuits_share_reads() {
    let with_shared = (0..200u64)
        .filter(|seed| !SharedReads::find(&random_circuit(*seed, RandomCircuitConfig::default()).0).is_empty())
        .count();
    assert!(with_shared >= 20, "only {with_shared} of 200 random circuits share a read");
}
