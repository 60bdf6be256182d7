//! The [`Backend`] trait every evaluator implements, and the generic evaluation driver.
//!
//! A backend sees the circuit element by element: every arithmetic node is a clear-weighted
//! sum of operand elements plus a constant ([`Backend::linear`]), every table lookup one
//! [`Backend::lookup`] (a programmable bootstrap under TFHE). Structural nodes (gather,
//! reshape, concat) only move values and never reach the backend. A rounding that feeds
//! lookups only is fused into them: the lookup reads the unrounded value.
//!
//! Lookups that read the same ciphertext through the same rounding may share one bootstrap
//! (many-LUT, see [`SharedReads`]): a backend that wants this returns the groups from
//! [`Backend::shared_reads`]; the driver then calls [`Backend::many_lookup`] once per group,
//! when it reaches the group's first member, and keeps the other results until their nodes
//! are evaluated. Backends that do not fuse (clear evaluation) see one `lookup` per element.

use ndarray::{ArrayD, Axis, IxDyn};
use rayon::prelude::*;

use std::collections::HashMap;

use crate::error::CircuitError;
use crate::ir::{Circuit, NodeId, Op, RoundingMode, Table};
use crate::shared::{SharedReads, driver_read, table_of};

/// Names one element of one node: the element a backend call produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ElementRef {
    /// The node.
    pub node: NodeId,
    /// The flat (row-major) index inside the node's tensor.
    pub index: usize,
}

/// A rounding fused into a lookup: the lookup's table is indexed by `round(x / 2^lsbs)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FusedRounding {
    /// Low bits dropped.
    pub lsbs: u32,
    /// Exact or approximate.
    pub mode: RoundingMode,
}

/// An evaluator of circuits: clear integers, counting, simulation, TFHE.
pub trait Backend: Sync {
    /// One element of a tensor (an integer, a ciphertext, ...).
    type Value: Clone + Send + Sync;
    /// The backend's error.
    type Error: From<CircuitError> + Send;

    /// `Σ weight·value + constant`, producing element `out`. Zero weights are never passed.
    fn linear(&self, terms: &[(i64, &Self::Value)], constant: i64, out: ElementRef)
    -> Result<Self::Value, Self::Error>;

    /// `table[round(x)]` (or `table[x]` without rounding), producing element `out`.
    fn lookup(
        &self,
        x: &Self::Value,
        table: &Table,
        rounding: Option<FusedRounding>,
        out: ElementRef,
    ) -> Result<Self::Value, Self::Error>;

    /// The lookups this backend evaluates together, one bootstrap per group (`None`: every
    /// lookup element on its own). The groups must come from [`SharedReads::find`] on the
    /// circuit being evaluated (possibly thinned out or split).
    fn shared_reads(&self) -> Option<&SharedReads> {
        None
    }

    /// The lookups of one shared-read group: `tables[j]` applied to `x` through `rounding`,
    /// producing `outs[j]`. The default evaluates them one by one; a backend that fuses
    /// overrides it with one bootstrap.
    fn many_lookup(
        &self,
        x: &Self::Value,
        tables: &[&Table],
        rounding: Option<FusedRounding>,
        outs: &[ElementRef],
    ) -> Result<Vec<Self::Value>, Self::Error> {
        tables.iter().zip(outs).map(|(table, out)| self.lookup(x, table, rounding, *out)).collect()
    }

    /// A rounding whose result is used by something other than a lookup.
    fn round(&self, x: &Self::Value, rounding: FusedRounding, out: ElementRef) -> Result<Self::Value, Self::Error>;

    /// Whether the elements of one node should be computed in parallel (worth it when an
    /// element costs far more than a rayon task).
    fn parallel_elements(&self) -> bool {
        false
    }
}

/// A tensor of backend values.
pub type Tensor<V> = ArrayD<V>;

/// The inputs (or outputs) of many samples.
pub type Batch<V> = Vec<Vec<Tensor<V>>>;

/// Every node's value, where kept.
type NodeValues<V> = Vec<Option<Tensor<V>>>;

/// Which round nodes must be materialised (some consumer is not a lookup, or it is an
/// output); the others are fused into the lookups that read them.
pub fn materialised_rounds(circuit: &Circuit) -> Vec<bool> {
    let consumers = circuit.consumers();
    circuit
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, node)| {
            matches!(node.op, Op::Round { .. })
                && (circuit.outputs().contains(&NodeId(i))
                    || consumers[i].iter().any(|c| !matches!(circuit.node(*c).op, Op::Lookup(..))))
        })
        .collect()
}

fn map_elements<B: Backend, T: Send>(
    backend: &B,
    len: usize,
    f: impl Fn(usize) -> Result<T, B::Error> + Sync + Send,
) -> Result<Vec<T>, B::Error> {
    if backend.parallel_elements() { (0..len).into_par_iter().map(f).collect() } else { (0..len).map(f).collect() }
}

/// Evaluates `circuit` on one sample with `backend`; returns the outputs in order.
pub fn evaluate<B: Backend>(
    circuit: &Circuit,
    backend: &B,
    inputs: Vec<Tensor<B::Value>>,
) -> Result<Vec<Tensor<B::Value>>, B::Error> {
    let values = evaluate_nodes(circuit, backend, inputs, false)?;
    circuit.outputs().iter().map(|id| values[id.0].clone().ok_or_else(|| CircuitError::NoOutput.into())).collect()
}

/// Evaluates many samples in parallel.
pub fn evaluate_batch<B: Backend>(
    circuit: &Circuit,
    backend: &B,
    batch: Batch<B::Value>,
) -> Result<Batch<B::Value>, B::Error> {
    batch.into_par_iter().map(|inputs| evaluate(circuit, backend, inputs)).collect()
}

/// Evaluates every node; with `keep_all` no intermediate value is dropped early.
pub(crate) fn evaluate_nodes<B: Backend>(
    circuit: &Circuit,
    backend: &B,
    inputs: Vec<Tensor<B::Value>>,
    keep_all: bool,
) -> Result<NodeValues<B::Value>, B::Error> {
    if inputs.len() != circuit.inputs().len() {
        return Err(CircuitError::BadInput {
            input: inputs.len(),
            detail: format!("the circuit takes {} inputs, got {}", circuit.inputs().len(), inputs.len()),
        }
        .into());
    }
    for (index, (tensor, id)) in inputs.iter().zip(circuit.inputs()).enumerate() {
        let expected = &circuit.node(*id).shape;
        if tensor.shape() != expected.as_slice() {
            return Err(CircuitError::BadInput {
                input: index,
                detail: format!("expected shape {:?}, got {:?}", expected, tensor.shape()),
            }
            .into());
        }
    }
    let materialise: Vec<bool> = if keep_all {
        circuit.nodes().iter().map(|n| matches!(n.op, Op::Round { .. })).collect()
    } else {
        materialised_rounds(circuit)
    };
    // What each node actually reads: a lookup reads through a fused rounding to its source.
    let reads: Vec<Vec<NodeId>> = circuit
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, node)| match &node.op {
            Op::Round { .. } if !materialise[i] => vec![],
            Op::Lookup(x, _) => match &circuit.node(*x).op {
                Op::Round { input, .. } if !materialise[x.0] => vec![*input],
                _ => vec![*x],
            },
            op => op.operands(),
        })
        .collect();
    // Remaining reads per node, so that large ciphertext tensors are freed as soon as possible.
    let mut remaining = vec![0usize; circuit.nodes().len()];
    for operand in reads.iter().flatten().chain(circuit.outputs()) {
        remaining[operand.0] += 1;
    }
    let mut inputs: Vec<Option<Tensor<B::Value>>> = inputs.into_iter().map(Some).collect();
    let mut values: Vec<Option<Tensor<B::Value>>> = vec![None; circuit.nodes().len()];
    let shared = if keep_all { None } else { backend.shared_reads().filter(|s| !s.is_empty()) };
    // Results of shared-read groups computed at their leader, waiting for their own node.
    let mut pending: HashMap<ElementRef, B::Value> = HashMap::new();

    for (i, node) in circuit.nodes().iter().enumerate() {
        let id = NodeId(i);
        let shape = IxDyn(&node.shape);
        let get = |n: &NodeId| values[n.0].as_ref().ok_or(CircuitError::DanglingNode { node: id, operand: *n });
        let flat = |v: Vec<B::Value>| {
            ArrayD::from_shape_vec(shape.clone(), v).map_err(|e| CircuitError::ShapeMismatch {
                node: id,
                op: node.op.name(),
                detail: e.to_string(),
            })
        };
        let out = |index| ElementRef { node: id, index };
        let result: Option<Tensor<B::Value>> = match &node.op {
            Op::Input { index } => inputs[*index].take(),
            Op::Add(a, b) | Op::Sub(a, b) => {
                let a: Vec<&B::Value> = get(a)?.iter().collect();
                let b: Vec<&B::Value> = get(b)?.iter().collect();
                let sign = if matches!(node.op, Op::Sub(..)) { -1 } else { 1 };
                Some(flat(map_elements(backend, node.len(), |e| {
                    backend.linear(&[(1, a[e]), (sign, b[e])], 0, out(e))
                })?)?)
            }
            Op::AddConst(x, c) | Op::MulConst(x, c) => {
                let xs = get(x)?;
                let cs = c.broadcast(shape.clone()).ok_or(CircuitError::ShapeMismatch {
                    node: id,
                    op: node.op.name(),
                    detail: "constant does not broadcast".into(),
                })?;
                let cs: Vec<i64> = cs.iter().copied().collect();
                let xs: Vec<&B::Value> = xs.iter().collect();
                let is_add = matches!(node.op, Op::AddConst(..));
                Some(flat(map_elements(backend, node.len(), |e| {
                    if is_add {
                        backend.linear(&[(1, xs[e])], cs[e], out(e))
                    } else if cs[e] == 0 {
                        backend.linear(&[], 0, out(e))
                    } else {
                        backend.linear(&[(cs[e], xs[e])], 0, out(e))
                    }
                })?)?)
            }
            Op::MatMul(x, w) => {
                let xs: Vec<&B::Value> = get(x)?.iter().collect();
                let (k, m) = (w.nrows(), w.ncols());
                Some(flat(map_elements(backend, node.len(), |e| {
                    let (r, j) = (e / m.max(1), e % m.max(1));
                    let terms: Vec<(i64, &B::Value)> =
                        (0..k).filter(|&i| w[[i, j]] != 0).map(|i| (w[[i, j]], xs[r * k + i])).collect();
                    backend.linear(&terms, 0, out(e))
                })?)?)
            }
            Op::Sum { input, axis } => {
                let source = get(input)?;
                let ids = ArrayD::from_shape_vec(source.raw_dim(), (0..source.len()).collect::<Vec<usize>>())
                    .map_err(|e| CircuitError::ShapeMismatch { node: id, op: "sum", detail: e.to_string() })?;
                let lanes: Vec<Vec<usize>> = ids.lanes(Axis(*axis)).into_iter().map(|l| l.to_vec()).collect();
                let xs: Vec<&B::Value> = source.iter().collect();
                Some(flat(map_elements(backend, node.len(), |e| {
                    let terms: Vec<(i64, &B::Value)> = lanes[e].iter().map(|&i| (1, xs[i])).collect();
                    backend.linear(&terms, 0, out(e))
                })?)?)
            }
            Op::Lookup(x, lut) => {
                let (source, rounding) = driver_read(circuit, &materialise, *x);
                let xs: Vec<&B::Value> = get(&source)?.iter().collect();
                let channels = node.shape.last().copied().unwrap_or(1);
                match shared {
                    None => Some(flat(map_elements(backend, node.len(), |e| {
                        backend.lookup(xs[e], lut.table_for(e, channels), rounding, out(e))
                    })?)?),
                    Some(shared) => {
                        let computed = map_elements(backend, node.len(), |e| {
                            let Some(g) = shared.group_of(out(e)) else {
                                return backend
                                    .lookup(xs[e], lut.table_for(e, channels), rounding, out(e))
                                    .map(|v| vec![v]);
                            };
                            let members = &shared.groups()[g];
                            if members[0] != out(e) {
                                return Ok(vec![]); // computed with its leader
                            }
                            let tables = members
                                .iter()
                                .map(|m| table_of(circuit, *m))
                                .collect::<Option<Vec<&Table>>>()
                                .ok_or(CircuitError::SharedRead { node: id })?;
                            backend.many_lookup(xs[e], &tables, rounding, members)
                        })?;
                        let mut slots: Vec<Option<B::Value>> = vec![None; node.len()];
                        for (e, results) in computed.into_iter().enumerate() {
                            match shared.group_of(out(e)) {
                                None => slots[e] = results.into_iter().next(),
                                Some(g) => {
                                    let members = &shared.groups()[g];
                                    if results.len() > members.len() {
                                        return Err(CircuitError::SharedRead { node: id }.into());
                                    }
                                    for (m, v) in members.iter().zip(results) {
                                        if m.node == id {
                                            slots[m.index] = Some(v);
                                        } else {
                                            pending.insert(*m, v);
                                        }
                                    }
                                }
                            }
                        }
                        let values: Vec<B::Value> = slots
                            .into_iter()
                            .enumerate()
                            .map(|(e, v)| v.or_else(|| pending.remove(&out(e))))
                            .collect::<Option<_>>()
                            .ok_or(CircuitError::SharedRead { node: id })?;
                        Some(flat(values)?)
                    }
                }
            }
            Op::Round { input, lsbs, mode } => {
                if materialise[i] {
                    let xs: Vec<&B::Value> = get(input)?.iter().collect();
                    let rounding = FusedRounding { lsbs: *lsbs, mode: *mode };
                    Some(flat(map_elements(backend, node.len(), |e| backend.round(xs[e], rounding, out(e)))?)?)
                } else {
                    None
                }
            }
            Op::Gather { input, indices } => {
                let xs: Vec<&B::Value> = get(input)?.iter().collect();
                Some(flat(indices.iter().map(|&j| xs[j].clone()).collect())?)
            }
            Op::Reshape(x) | Op::Narrow(x) => Some(flat(get(x)?.iter().cloned().collect())?),
            Op::Concat { inputs: parts, axis } => {
                let views = parts.iter().map(|p| get(p).map(|t| t.view())).collect::<Result<Vec<_>, _>>()?;
                Some(ndarray::concatenate(Axis(*axis), &views).map_err(|e| CircuitError::ShapeMismatch {
                    node: id,
                    op: "concat",
                    detail: e.to_string(),
                })?)
            }
        };
        values[i] = result;
        if !keep_all {
            for operand in &reads[i] {
                remaining[operand.0] = remaining[operand.0].saturating_sub(1);
                if remaining[operand.0] == 0 {
                    values[operand.0] = None;
                }
            }
        }
    }
    Ok(values)
}
