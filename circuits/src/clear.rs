//! Exact clear evaluation on `i64` (overflow is an error, never a wrap), and a backend
//! that only counts operations.

use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{ArrayD, IxDyn};

use crate::backend::{Backend, ElementRef, FusedRounding, evaluate, evaluate_batch, evaluate_nodes};
use crate::builder::round_shift;
use crate::error::{CircuitError, Result};
use crate::ir::{Circuit, Table};
use crate::shared::SharedReads;

/// Exact integer evaluation.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClearBackend;

impl Backend for ClearBackend {
    type Value = i64;
    type Error = CircuitError;

    fn linear(&self, terms: &[(i64, &i64)], constant: i64, out: ElementRef) -> Result<i64> {
        terms
            .iter()
            .try_fold(constant, |acc, (w, v)| w.checked_mul(**v).and_then(|p| acc.checked_add(p)))
            .ok_or(CircuitError::Overflow { node: out.node })
    }

    fn lookup(&self, x: &i64, table: &Table, rounding: Option<FusedRounding>, out: ElementRef) -> Result<i64> {
        let index = match rounding {
            Some(r) => round_shift(*x, r.lsbs).ok_or(CircuitError::Overflow { node: out.node })?,
            None => *x,
        };
        table.get(index).ok_or(CircuitError::LookupOutOfDomain {
            node: out.node,
            value: index,
            lo: table.input_min,
            hi: table.input_max(),
        })
    }

    fn round(&self, x: &i64, rounding: FusedRounding, out: ElementRef) -> Result<i64> {
        round_shift(*x, rounding.lsbs).ok_or(CircuitError::Overflow { node: out.node })
    }
}

/// Checks flat inputs against the circuit's shapes and declared ranges, and shapes them.
pub fn shape_inputs(circuit: &Circuit, inputs: &[Vec<i64>]) -> Result<Vec<ArrayD<i64>>> {
    if inputs.len() != circuit.inputs().len() {
        return Err(CircuitError::BadInput {
            input: inputs.len(),
            detail: format!("the circuit takes {} inputs, got {}", circuit.inputs().len(), inputs.len()),
        });
    }
    inputs
        .iter()
        .zip(circuit.inputs())
        .enumerate()
        .map(|(index, (values, id))| {
            let node = circuit.node(*id);
            if values.len() != node.len() {
                return Err(CircuitError::BadInput {
                    input: index,
                    detail: format!("expected {} values (shape {:?}), got {}", node.len(), node.shape, values.len()),
                });
            }
            for (element, (v, r)) in values.iter().zip(&node.ranges).enumerate() {
                if !r.contains(*v) {
                    return Err(CircuitError::InputOutOfRange { input: index, element, value: *v, lo: r.lo, hi: r.hi });
                }
            }
            ArrayD::from_shape_vec(IxDyn(&node.shape), values.clone())
                .map_err(|e| CircuitError::BadInput { input: index, detail: e.to_string() })
        })
        .collect()
}

impl Circuit {
    /// Exact evaluation of one sample given as flat inputs; returns flat outputs.
    pub fn evaluate_clear(&self, inputs: &[Vec<i64>]) -> Result<Vec<Vec<i64>>> {
        let outs = evaluate(self, &ClearBackend, shape_inputs(self, inputs)?)?;
        Ok(outs.into_iter().map(|t| t.iter().copied().collect()).collect())
    }

    /// Exact evaluation of many samples (in parallel).
    pub fn evaluate_clear_batch(&self, batch: &[Vec<Vec<i64>>]) -> Result<Vec<Vec<Vec<i64>>>> {
        let shaped = batch.iter().map(|s| shape_inputs(self, s)).collect::<Result<Vec<_>>>()?;
        let outs = evaluate_batch(self, &ClearBackend, shaped)?;
        Ok(outs.into_iter().map(|sample| sample.into_iter().map(|t| t.iter().copied().collect()).collect()).collect())
    }
}

/// Every node's flat values for one sample (roundings included).
pub fn evaluate_all_nodes(circuit: &Circuit, inputs: &[Vec<i64>]) -> Result<Vec<Vec<i64>>> {
    let values = evaluate_nodes(circuit, &ClearBackend, shape_inputs(circuit, inputs)?, true)?;
    values.into_iter().map(|v| v.map(|t| t.iter().copied().collect()).ok_or(CircuitError::NoOutput)).collect()
}

/// Counts what an evaluation costs: bootstraps and leveled multiply-adds.
///
/// By default every lookup element is one bootstrap; [`CountingBackend::sharing`] counts one
/// bootstrap per shared-read group instead (many-LUT).
#[derive(Debug, Default)]
pub struct CountingBackend {
    bootstraps: AtomicUsize,
    leveled_terms: AtomicUsize,
    shared: Option<SharedReads>,
}

impl CountingBackend {
    /// A counter that evaluates each group of `shared` with one bootstrap.
    pub fn sharing(shared: SharedReads) -> Self {
        Self { shared: Some(shared), ..Self::default() }
    }

    /// Bootstraps counted so far.
    pub fn bootstraps(&self) -> usize {
        self.bootstraps.load(Ordering::Relaxed)
    }

    /// Leveled multiply-add terms counted so far.
    pub fn leveled_terms(&self) -> usize {
        self.leveled_terms.load(Ordering::Relaxed)
    }

    /// Counts one evaluation of `circuit`.
    pub fn count(&self, circuit: &Circuit) -> Result<()> {
        let inputs = circuit.nodes().iter().filter(|n| matches!(n.op, crate::ir::Op::Input { .. }));
        let tensors = inputs.map(|n| ArrayD::from_elem(IxDyn(&n.shape), ())).collect();
        evaluate(circuit, self, tensors).map(|_| ())
    }
}

impl Backend for CountingBackend {
    type Value = ();
    type Error = CircuitError;

    fn linear(&self, terms: &[(i64, &())], _constant: i64, _out: ElementRef) -> Result<()> {
        self.leveled_terms.fetch_add(terms.len(), Ordering::Relaxed);
        Ok(())
    }

    fn lookup(&self, _x: &(), _t: &Table, _r: Option<FusedRounding>, _out: ElementRef) -> Result<()> {
        self.bootstraps.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn shared_reads(&self) -> Option<&SharedReads> {
        self.shared.as_ref()
    }

    fn many_lookup(
        &self,
        _x: &(),
        tables: &[&Table],
        _r: Option<FusedRounding>,
        _outs: &[ElementRef],
    ) -> Result<Vec<()>> {
        self.bootstraps.fetch_add(1, Ordering::Relaxed);
        Ok(vec![(); tables.len()])
    }

    fn round(&self, _x: &(), _r: FusedRounding, _out: ElementRef) -> Result<()> {
        self.bootstraps.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
