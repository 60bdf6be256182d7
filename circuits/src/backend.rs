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
//! when it reaches the first member it evaluates, and keeps the other results until their
//! nodes are evaluated. Backends that do not fuse (clear evaluation) see one `lookup` per
//! element.
//!
//! Bootstraps dominate the cost, so the driver schedules them in *waves*: cheap nodes run as
//! soon as their operands are ready, and every bootstrapping node (lookup or materialised
//! rounding) whose operand is ready joins one parallel pass over all the elements of the
//! wave. Independent lookup nodes with few elements each (neurons split by rounding, lookups
//! of one value) then keep every thread busy instead of meeting at a barrier after each
//! node. The schedule depends on the circuit only, and every element is computed by the same
//! backend call as in node order, so results do not depend on it. Structural nodes move the
//! operands they read last instead of copying them.

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

/// How the driver orders the bootstrapping nodes (lookups and materialised roundings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// One bootstrapping node at a time, in node order: a barrier after every node.
    Sequential,
    /// Every bootstrapping node whose operands are ready, in one parallel pass over all their
    /// elements (a *wave*): independent nodes with few elements each (per-tree lookups,
    /// lookups of one value with different roundings) keep every thread busy.
    Waves,
}

/// One step of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A node without bootstrap: input, arithmetic, structure, or a fused rounding.
    Node(usize),
    /// Bootstrapping nodes whose elements are evaluated together, in node order.
    Wave(Vec<usize>),
}

/// Orders the nodes for evaluation: every node after what it `reads`, cheap nodes as soon as
/// they can run, and bootstrapping nodes grouped by `schedule`. The order depends on the
/// circuit only, never on values.
pub(crate) fn schedule(reads: &[Vec<NodeId>], bootstrapping: &[bool], schedule: Schedule) -> Vec<Step> {
    let n = reads.len();
    let mut done = vec![false; n];
    let mut steps = Vec::with_capacity(n);
    let mut first_open = 0;
    let ready = |done: &[bool], i: usize| reads[i].iter().all(|r| done.get(r.0).copied().unwrap_or(false));
    while first_open < n {
        let before = steps.len();
        // Cheap nodes: one pass in node order catches chains of them.
        for i in first_open..n {
            if !done[i] && !bootstrapping[i] && ready(&done, i) {
                done[i] = true;
                steps.push(Step::Node(i));
            }
        }
        let mut wave = Vec::new();
        for i in first_open..n {
            if !done[i] && bootstrapping[i] && ready(&done, i) {
                wave.push(i);
                if schedule == Schedule::Sequential {
                    break;
                }
            }
        }
        // Marked only now: no node of a wave reads another one of the same wave.
        for &i in &wave {
            done[i] = true;
        }
        if !wave.is_empty() {
            steps.push(Step::Wave(wave));
        }
        if steps.len() == before {
            // Only a malformed circuit (an operand after its reader) gets here: evaluate the
            // rest in node order, where the evaluation reports the dangling operand.
            for i in (first_open..n).filter(|&i| !done[i]) {
                steps.push(if bootstrapping[i] { Step::Wave(vec![i]) } else { Step::Node(i) });
            }
            break;
        }
        while first_open < n && done[first_open] {
            first_open += 1;
        }
    }
    steps
}

/// What each node actually reads (a lookup reads through a fused rounding to its source; a
/// fused rounding reads nothing), and whether it bootstraps (lookups and materialised
/// roundings).
fn reads_of(circuit: &Circuit, materialise: &[bool]) -> (Vec<Vec<NodeId>>, Vec<bool>) {
    circuit
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, node)| match &node.op {
            Op::Round { .. } if !materialise[i] => (vec![], false),
            Op::Round { input, .. } => (vec![*input], true),
            Op::Lookup(x, _) => (vec![driver_read(circuit, materialise, *x).0], true),
            op => (op.operands(), false),
        })
        .unzip()
}

/// Evaluates every node; with `keep_all` no intermediate value is dropped early.
pub(crate) fn evaluate_nodes<B: Backend>(
    circuit: &Circuit,
    backend: &B,
    inputs: Vec<Tensor<B::Value>>,
    keep_all: bool,
) -> Result<NodeValues<B::Value>, B::Error> {
    evaluate_nodes_with(circuit, backend, inputs, keep_all, Schedule::Waves)
}

/// The evaluation state of one sample.
struct Evaluation<'c, V> {
    circuit: &'c Circuit,
    keep_all: bool,
    materialise: Vec<bool>,
    /// What each node actually reads (a lookup reads through a fused rounding to its source).
    reads: Vec<Vec<NodeId>>,
    /// Remaining reads per node, so that large ciphertext tensors are freed as soon as possible.
    remaining: Vec<usize>,
    values: NodeValues<V>,
    inputs: Vec<Option<Tensor<V>>>,
    shared: Option<&'c SharedReads>,
    /// Per shared-read group: whether its bootstrap was started.
    started: Vec<bool>,
    /// Results of shared-read groups computed before their own node.
    pending: HashMap<ElementRef, V>,
}

/// Evaluates every node in the order of `order`.
pub(crate) fn evaluate_nodes_with<B: Backend>(
    circuit: &Circuit,
    backend: &B,
    inputs: Vec<Tensor<B::Value>>,
    keep_all: bool,
    order: Schedule,
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
    let (reads, bootstrapping) = reads_of(circuit, &materialise);
    let mut remaining = vec![0usize; circuit.nodes().len()];
    for operand in reads.iter().flatten().chain(circuit.outputs()) {
        if let Some(r) = remaining.get_mut(operand.0) {
            *r += 1;
        }
    }
    let steps = schedule(&reads, &bootstrapping, order);
    let shared = if keep_all { None } else { backend.shared_reads().filter(|s| !s.is_empty()) };
    let mut state = Evaluation {
        circuit,
        keep_all,
        materialise,
        reads,
        remaining,
        values: vec![None; circuit.nodes().len()],
        inputs: inputs.into_iter().map(Some).collect(),
        shared,
        started: vec![false; shared.map_or(0, SharedReads::len)],
        pending: HashMap::new(),
    };
    for step in steps {
        match step {
            Step::Node(i) => {
                let value = state.node(backend, i)?;
                state.finish(i, value);
            }
            Step::Wave(nodes) => {
                for (i, value) in nodes.iter().zip(state.wave(backend, &nodes)?) {
                    state.finish(*i, Some(value));
                }
            }
        }
    }
    Ok(state.values)
}

/// A bootstrap of a wave.
enum Task<'a, V> {
    /// One lookup element.
    Lookup { x: &'a V, table: &'a Table, rounding: Option<FusedRounding>, out: ElementRef },
    /// A whole shared-read group, started by its first member to be evaluated.
    Group { x: &'a V, tables: Vec<&'a Table>, rounding: Option<FusedRounding>, group: usize },
    /// One materialised rounding element.
    Round { x: &'a V, rounding: FusedRounding, out: ElementRef },
}

impl<'c, V: Clone + Send + Sync> Evaluation<'c, V> {
    fn get(&self, id: NodeId, operand: NodeId) -> Result<&Tensor<V>, CircuitError> {
        self.values.get(operand.0).and_then(Option::as_ref).ok_or(CircuitError::DanglingNode { node: id, operand })
    }

    /// Stores node `i`'s value and frees the operands nobody reads any more.
    fn finish(&mut self, i: usize, value: Option<Tensor<V>>) {
        self.values[i] = value;
        if self.keep_all {
            return;
        }
        for operand in &self.reads[i] {
            if let Some(r) = self.remaining.get_mut(operand.0) {
                *r = r.saturating_sub(1);
                if *r == 0 {
                    self.values[operand.0] = None;
                }
            }
        }
    }

    fn flat(&self, id: NodeId, values: Vec<V>) -> Result<Tensor<V>, CircuitError> {
        let node = self.circuit.node(id);
        ArrayD::from_shape_vec(IxDyn(&node.shape), values).map_err(|e| CircuitError::ShapeMismatch {
            node: id,
            op: node.op.name(),
            detail: e.to_string(),
        })
    }

    /// Evaluates a node without bootstrap.
    fn node<B: Backend<Value = V>>(&mut self, backend: &B, i: usize) -> Result<Option<Tensor<V>>, B::Error> {
        let circuit = self.circuit;
        let node = circuit.node(NodeId(i));
        let id = NodeId(i);
        let out = |index| ElementRef { node: id, index };
        let values = match &node.op {
            Op::Input { index } => return Ok(self.inputs.get_mut(*index).and_then(Option::take)),
            Op::Round { .. } if !self.materialise[i] => return Ok(None),
            Op::Lookup(..) | Op::Round { .. } => return Ok(self.wave(backend, &[i])?.into_iter().next()),
            Op::Gather { .. } | Op::Reshape(_) | Op::Narrow(_) | Op::Concat { .. } => {
                return Ok(Some(self.structural(i)?));
            }
            Op::Add(a, b) | Op::Sub(a, b) => {
                let a: Vec<&V> = self.get(id, *a)?.iter().collect();
                let b: Vec<&V> = self.get(id, *b)?.iter().collect();
                let sign = if matches!(node.op, Op::Sub(..)) { -1 } else { 1 };
                map_elements(backend, node.len(), |e| backend.linear(&[(1, a[e]), (sign, b[e])], 0, out(e)))?
            }
            Op::AddConst(x, c) | Op::MulConst(x, c) => {
                let xs: Vec<&V> = self.get(id, *x)?.iter().collect();
                let cs = c.broadcast(IxDyn(&node.shape)).ok_or(CircuitError::ShapeMismatch {
                    node: id,
                    op: node.op.name(),
                    detail: "constant does not broadcast".into(),
                })?;
                let cs: Vec<i64> = cs.iter().copied().collect();
                let is_add = matches!(node.op, Op::AddConst(..));
                map_elements(backend, node.len(), |e| {
                    if is_add {
                        backend.linear(&[(1, xs[e])], cs[e], out(e))
                    } else if cs[e] == 0 {
                        backend.linear(&[], 0, out(e))
                    } else {
                        backend.linear(&[(cs[e], xs[e])], 0, out(e))
                    }
                })?
            }
            Op::MatMul(x, w) => {
                let xs: Vec<&V> = self.get(id, *x)?.iter().collect();
                let (k, m) = (w.nrows(), w.ncols());
                map_elements(backend, node.len(), |e| {
                    let (r, j) = (e / m.max(1), e % m.max(1));
                    let terms: Vec<(i64, &V)> =
                        (0..k).filter(|&i| w[[i, j]] != 0).map(|i| (w[[i, j]], xs[r * k + i])).collect();
                    backend.linear(&terms, 0, out(e))
                })?
            }
            Op::Sum { input, axis } => {
                let source = self.get(id, *input)?;
                let ids = ArrayD::from_shape_vec(source.raw_dim(), (0..source.len()).collect::<Vec<usize>>())
                    .map_err(|e| CircuitError::ShapeMismatch { node: id, op: "sum", detail: e.to_string() })?;
                let lanes: Vec<Vec<usize>> = ids.lanes(Axis(*axis)).into_iter().map(|l| l.to_vec()).collect();
                let xs: Vec<&V> = source.iter().collect();
                map_elements(backend, node.len(), |e| {
                    let terms: Vec<(i64, &V)> = lanes[e].iter().map(|&i| (1, xs[i])).collect();
                    backend.linear(&terms, 0, out(e))
                })?
            }
        };
        Ok(Some(self.flat(id, values)?))
    }

    /// Gathers, reshapes, narrows and concatenations only move values: an operand read for
    /// the last time is moved rather than copied (a ciphertext is kilobytes).
    fn structural(&mut self, i: usize) -> Result<Tensor<V>, CircuitError> {
        let circuit = self.circuit;
        let id = NodeId(i);
        let node = circuit.node(id);
        let operands = node.op.operands();
        let len_of = |n: NodeId| circuit.nodes().get(n.0).map_or(0, |n| n.len());
        // Where each element comes from: (operand position, flat index).
        let sources: Vec<(usize, usize)> = match &node.op {
            Op::Gather { indices, .. } => indices.iter().map(|&j| (0, j)).collect(),
            Op::Concat { axis, .. } => {
                let shape_error = |e: ndarray::ShapeError| CircuitError::ShapeMismatch {
                    node: id,
                    op: "concat",
                    detail: e.to_string(),
                };
                let parts = operands
                    .iter()
                    .enumerate()
                    .map(|(p, part)| {
                        let shape = IxDyn(&circuit.node(*part).shape);
                        ArrayD::from_shape_vec(shape, (0..len_of(*part)).map(|e| (p, e)).collect())
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(shape_error)?;
                let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
                ndarray::concatenate(Axis(*axis), &views).map_err(shape_error)?.iter().copied().collect()
            }
            _ => (0..operands.first().map_or(0, |x| len_of(*x))).map(|e| (0, e)).collect(),
        };
        // An operand listed twice (`concat(x, x)`) is handled at its first position.
        let canonical: Vec<usize> =
            operands.iter().map(|o| operands.iter().position(|q| q == o).unwrap_or(0)).collect();
        // Operands that nothing reads after this node (and that are no output) are consumed.
        let mut owned: Vec<Option<Vec<Option<V>>>> = (0..operands.len()).map(|_| None).collect();
        for (p, operand) in operands.iter().enumerate() {
            let reads_here = operands.iter().filter(|o| *o == operand).count();
            if canonical[p] == p && !self.keep_all && self.remaining.get(operand.0) == Some(&reads_here) {
                owned[p] =
                    self.values.get_mut(operand.0).and_then(Option::take).map(|t| t.into_iter().map(Some).collect());
            }
        }
        // The last use of a consumed element moves it; earlier uses clone it.
        let mut last: Vec<Vec<usize>> =
            owned.iter().map(|o| o.as_ref().map_or_else(Vec::new, |v| vec![usize::MAX; v.len()])).collect();
        for (k, &(p, e)) in sources.iter().enumerate() {
            if let Some(slot) = canonical.get(p).and_then(|&p| last.get_mut(p)).and_then(|l| l.get_mut(e)) {
                *slot = k;
            }
        }
        let borrowed: Vec<Option<Vec<&V>>> = operands
            .iter()
            .enumerate()
            .map(|(p, o)| {
                if canonical[p] == p && owned[p].is_none() {
                    self.values.get(o.0).and_then(Option::as_ref).map(|t| t.iter().collect())
                } else {
                    None
                }
            })
            .collect();
        let mut out = Vec::with_capacity(sources.len());
        for (k, &(p, e)) in sources.iter().enumerate() {
            let p = canonical.get(p).copied().unwrap_or(p);
            let value = match (owned.get_mut(p).and_then(Option::as_mut), borrowed.get(p).and_then(Option::as_ref)) {
                (Some(elements), _) => elements
                    .get_mut(e)
                    .and_then(|slot| if last[p].get(e) == Some(&k) { slot.take() } else { slot.clone() }),
                (None, Some(refs)) => refs.get(e).map(|v| (*v).clone()),
                (None, None) => None,
            };
            let operand = operands.get(p).copied().unwrap_or(id);
            out.push(value.ok_or(CircuitError::DanglingNode { node: id, operand })?);
        }
        drop(borrowed);
        self.flat(id, out)
    }

    /// Evaluates the bootstrapping nodes `nodes` (none reading another) in one pass over all
    /// their elements; returns their tensors in order.
    fn wave<B: Backend<Value = V>>(&mut self, backend: &B, nodes: &[usize]) -> Result<Vec<Tensor<V>>, B::Error> {
        let circuit = self.circuit;
        let (values, started, shared) = (&self.values, &mut self.started, self.shared);
        let get = |id: NodeId, operand: NodeId| {
            values.get(operand.0).and_then(Option::as_ref).ok_or(CircuitError::DanglingNode { node: id, operand })
        };
        let mut tasks: Vec<Task<'_, V>> = Vec::new();
        for &i in nodes {
            let id = NodeId(i);
            let node = circuit.node(id);
            let out = |index| ElementRef { node: id, index };
            match &node.op {
                Op::Round { input, lsbs, mode } => {
                    let rounding = FusedRounding { lsbs: *lsbs, mode: *mode };
                    let xs = get(id, *input)?;
                    tasks.extend(xs.iter().enumerate().map(|(e, x)| Task::Round { x, rounding, out: out(e) }));
                }
                Op::Lookup(x, lut) => {
                    let (source, rounding) = driver_read(circuit, &self.materialise, *x);
                    let xs = get(id, source)?;
                    if xs.len() != node.len() {
                        return Err(CircuitError::ShapeMismatch {
                            node: id,
                            op: "lookup",
                            detail: format!("{} elements read, {} expected", xs.len(), node.len()),
                        }
                        .into());
                    }
                    let channels = node.shape.last().copied().unwrap_or(1);
                    for (e, x) in xs.iter().enumerate() {
                        let group = shared.and_then(|s| s.group_of(out(e)).map(|g| (s, g)));
                        match group {
                            None => {
                                tasks.push(Task::Lookup { x, table: lut.table_for(e, channels), rounding, out: out(e) })
                            }
                            // Computed with its group, which an earlier member started.
                            Some((_, g)) if started.get(g).copied().unwrap_or(true) => {}
                            Some((shared, g)) => {
                                started[g] = true;
                                let tables = shared.groups()[g]
                                    .iter()
                                    .map(|m| table_of(circuit, *m))
                                    .collect::<Option<Vec<&Table>>>()
                                    .ok_or(CircuitError::SharedRead { node: id })?;
                                tasks.push(Task::Group { x, tables, rounding, group: g });
                            }
                        }
                    }
                }
                _ => return Err(CircuitError::SharedRead { node: id }.into()),
            }
        }
        let results = map_elements(backend, tasks.len(), |t| match &tasks[t] {
            Task::Lookup { x, table, rounding, out } => backend.lookup(x, table, *rounding, *out).map(|v| vec![v]),
            Task::Round { x, rounding, out } => backend.round(x, *rounding, *out).map(|v| vec![v]),
            Task::Group { x, tables, rounding, group } => {
                let members = shared.map(|s| s.groups()[*group].as_slice()).unwrap_or_default();
                backend.many_lookup(x, tables, *rounding, members)
            }
        })?;
        let targets: Vec<Option<ElementRef>> = tasks
            .iter()
            .map(|t| match t {
                Task::Lookup { out, .. } | Task::Round { out, .. } => Some(*out),
                Task::Group { .. } => None,
            })
            .collect();
        let groups: Vec<Option<usize>> =
            tasks.iter().map(|t| if let Task::Group { group, .. } = t { Some(*group) } else { None }).collect();
        drop(tasks);
        let mut slots: Vec<Vec<Option<V>>> = nodes.iter().map(|&i| vec![None; circuit.node(NodeId(i)).len()]).collect();
        let position = |node: NodeId| nodes.iter().position(|&i| i == node.0);
        for ((target, group), results) in targets.into_iter().zip(groups).zip(results) {
            match (target, group) {
                (Some(out), _) => {
                    if let (Some(p), Some(v)) = (position(out.node), results.into_iter().next()) {
                        slots[p][out.index] = Some(v);
                    }
                }
                (None, Some(g)) => {
                    let members = self.shared.map(|s| s.groups()[g].as_slice()).unwrap_or_default();
                    if results.len() > members.len() {
                        let node = members.first().map_or(NodeId(nodes[0]), |m| m.node);
                        return Err(CircuitError::SharedRead { node }.into());
                    }
                    for (m, v) in members.iter().zip(results) {
                        match position(m.node) {
                            Some(p) if m.index < slots[p].len() => slots[p][m.index] = Some(v),
                            _ => {
                                self.pending.insert(*m, v);
                            }
                        }
                    }
                }
                (None, None) => {}
            }
        }
        nodes
            .iter()
            .zip(slots)
            .map(|(&i, slots)| {
                let id = NodeId(i);
                let values = slots
                    .into_iter()
                    .enumerate()
                    .map(|(e, v)| v.or_else(|| self.pending.remove(&ElementRef { node: id, index: e })))
                    .collect::<Option<Vec<V>>>()
                    .ok_or(CircuitError::SharedRead { node: id })?;
                Ok(self.flat(id, values)?)
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;
    use crate::builder::CircuitBuilder;
    use crate::clear::{ClearBackend, shape_inputs};
    use crate::ir::{Lut, RoundingMode};
    use crate::range::Interval;
    use crate::testing::{RandomCircuitConfig, random_circuit};

    /// Clear values, parallel elements, every shared read fused; records every bootstrap
    /// (the element it produces, or a group's leader) and the value it read.
    struct Recording {
        shared: SharedReads,
        bootstraps: Mutex<Vec<(ElementRef, i64)>>,
    }

    impl Recording {
        fn new(circuit: &Circuit) -> Self {
            Self { shared: SharedReads::find(circuit), bootstraps: Mutex::new(Vec::new()) }
        }

        fn sorted_bootstraps(&self) -> Vec<(ElementRef, i64)> {
            let mut b = self.bootstraps.lock().unwrap().clone();
            b.sort();
            b
        }
    }

    impl Backend for Recording {
        type Value = i64;
        type Error = CircuitError;

        fn linear(&self, terms: &[(i64, &i64)], constant: i64, out: ElementRef) -> Result<i64, CircuitError> {
            ClearBackend.linear(terms, constant, out)
        }

        fn lookup(&self, x: &i64, t: &Table, r: Option<FusedRounding>, out: ElementRef) -> Result<i64, CircuitError> {
            self.bootstraps.lock().unwrap().push((out, *x));
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
            self.bootstraps.lock().unwrap().push((outs[0], *x));
            tables.iter().zip(outs).map(|(t, o)| ClearBackend.lookup(x, t, r, *o)).collect()
        }

        fn round(&self, x: &i64, r: FusedRounding, out: ElementRef) -> Result<i64, CircuitError> {
            self.bootstraps.lock().unwrap().push((out, *x));
            ClearBackend.round(x, r, out)
        }

        fn parallel_elements(&self) -> bool {
            true
        }
    }

    fn run(
        circuit: &Circuit,
        inputs: &[Vec<i64>],
        order: Schedule,
    ) -> (Result<Vec<Vec<i64>>, CircuitError>, Recording) {
        let backend = Recording::new(circuit);
        let outputs = shape_inputs(circuit, inputs)
            .and_then(|inputs| evaluate_nodes_with(circuit, &backend, inputs, false, order))
            .and_then(|values| {
                circuit
                    .outputs()
                    .iter()
                    .map(|id| values[id.0].as_ref().map(|t| t.iter().copied().collect()).ok_or(CircuitError::NoOutput))
                    .collect()
            });
        (outputs, backend)
    }

    fn steps_of(circuit: &Circuit, order: Schedule) -> Vec<Step> {
        let (reads, bootstrapping) = reads_of(circuit, &materialised_rounds(circuit));
        let steps = schedule(&reads, &bootstrapping, order);
        // Every node exactly once, after everything it reads.
        let mut position = vec![usize::MAX; circuit.nodes().len()];
        for (k, step) in steps.iter().enumerate() {
            let nodes = match step {
                Step::Node(i) => vec![*i],
                Step::Wave(w) => w.clone(),
            };
            for i in nodes {
                assert_eq!(position[i], usize::MAX, "node {i} scheduled twice");
                assert_eq!(bootstrapping[i], matches!(step, Step::Wave(_)));
                position[i] = k;
            }
        }
        for (i, r) in reads.iter().enumerate() {
            assert!(r.iter().all(|o| position[o.0] < position[i]), "node {i} scheduled before an operand");
        }
        steps
    }

    /// An MLP-like layer: two groups of neurons rounded differently, each its own lookup node.
    #[test]
    fn independent_lookup_nodes_share_one_wave() {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[4], Interval::new(0, 15).unwrap());
        let low = b.gather(x, vec![0, 1], &[2]).unwrap();
        let high = b.gather(x, vec![2, 3], &[2]).unwrap();
        let low_r = b.round(low, 1, RoundingMode::Approximate).unwrap();
        let high_r = b.round(high, 2, RoundingMode::Approximate).unwrap();
        let f = b.lookup(low_r, Lut::Single(Table::from_fn(0, 4, |v| v / 2))).unwrap();
        let g = b.lookup(high_r, Lut::Single(Table::from_fn(0, 3, |v| v + 1))).unwrap();
        let joined = b.concat(&[f, g], 0).unwrap();
        let y = b.lookup(joined, Lut::Single(Table::from_fn(0, 4, |v| v % 3))).unwrap();
        b.output(y).unwrap();
        let circuit = b.build().unwrap();
        let waves = |order| -> Vec<Vec<usize>> {
            steps_of(&circuit, order)
                .into_iter()
                .filter_map(|s| if let Step::Wave(w) = s { Some(w) } else { None })
                .collect()
        };
        assert_eq!(waves(Schedule::Waves), vec![vec![f.0, g.0], vec![y.0]]);
        assert_eq!(waves(Schedule::Sequential), vec![vec![f.0], vec![g.0], vec![y.0]]);
        let inputs = vec![vec![3, 9, 14, 6]];
        let (waved, w) = run(&circuit, &inputs, Schedule::Waves);
        let (sequential, s) = run(&circuit, &inputs, Schedule::Sequential);
        assert_eq!(waved.unwrap(), circuit.evaluate_clear(&inputs).unwrap());
        assert_eq!(sequential.unwrap(), circuit.evaluate_clear(&inputs).unwrap());
        assert_eq!(w.sorted_bootstraps(), s.sorted_bootstraps());
        assert_eq!(w.sorted_bootstraps().len(), 4 + 4);
    }

    /// A shared-read group whose leader's node is ready only after a later member's node:
    /// the first member evaluated computes the group, once.
    #[test]
    fn a_group_is_computed_once_by_its_first_ready_member() {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[1], Interval::new(0, 3).unwrap());
        let z = b.input(&[1], Interval::new(0, 3).unwrap());
        let y = b.lookup(z, Lut::Single(Table::from_fn(0, 2, |v| 3 - v))).unwrap();
        let c = b.concat(&[x, y], 0).unwrap();
        let leader = b.lookup(c, Lut::Single(Table::from_fn(0, 2, |v| v * 2))).unwrap();
        let member = b.lookup(x, Lut::Single(Table::from_fn(0, 2, |v| v * v))).unwrap();
        b.output(leader).unwrap();
        b.output(member).unwrap();
        let circuit = b.build().unwrap();
        let recording = Recording::new(&circuit);
        let at = |node, index| ElementRef { node, index };
        assert_eq!(recording.shared.groups(), &[vec![at(leader, 0), at(member, 0)]]);
        let steps = steps_of(&circuit, Schedule::Waves);
        assert!(steps.contains(&Step::Wave(vec![y.0, member.0])), "{steps:?}");
        for v in 0..=3 {
            let inputs = vec![vec![v], vec![3 - v]];
            let expected = circuit.evaluate_clear(&inputs).unwrap();
            assert_eq!(expected, vec![vec![2 * v, 2 * v], vec![v * v]]);
            let (waved, w) = run(&circuit, &inputs, Schedule::Waves);
            let (sequential, s) = run(&circuit, &inputs, Schedule::Sequential);
            assert_eq!(waved.unwrap(), expected);
            assert_eq!(sequential.unwrap(), expected);
            // y, the group (named by its leader) and the leader node's own second element.
            assert_eq!(w.sorted_bootstraps(), vec![(at(y, 0), 3 - v), (at(leader, 0), v), (at(leader, 1), v)]);
            assert_eq!(s.sorted_bootstraps(), w.sorted_bootstraps());
        }
    }

    /// Structural nodes move operands read for the last time, duplicates included.
    #[test]
    fn structural_nodes_move_or_copy_exactly() {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[3], Interval::new(0, 7).unwrap());
        let a = b.add_const(x, ArrayD::from_elem(IxDyn(&[]), 1)).unwrap();
        let g = b.gather(a, vec![2, 0, 2, 1], &[4]).unwrap();
        let c = b.concat(&[g, g], 0).unwrap();
        let r = b.reshape(c, &[2, 4]).unwrap();
        let kept = b.gather(x, vec![1], &[1]).unwrap();
        b.output(r).unwrap();
        b.output(kept).unwrap();
        b.output(x).unwrap();
        let circuit = b.build().unwrap();
        let inputs = vec![vec![4, 5, 6]];
        let (got, _) = run(&circuit, &inputs, Schedule::Waves);
        assert_eq!(got.unwrap(), vec![vec![7, 5, 7, 6, 7, 5, 7, 6], vec![5], vec![4, 5, 6]]);
        assert_eq!(circuit.evaluate_clear(&inputs).unwrap()[0], vec![7, 5, 7, 6, 7, 5, 7, 6]);
    }

    #[test]
    fn random_circuits_have_multi_node_waves() {
        let config = RandomCircuitConfig { max_ops: 8, ..RandomCircuitConfig::default() };
        let with_waves = (0..300u64)
            .filter(|seed| {
                let circuit = random_circuit(*seed, config).0;
                steps_of(&circuit, Schedule::Waves).iter().any(|s| matches!(s, Step::Wave(w) if w.len() > 1))
            })
            .count();
        assert!(with_waves >= 20, "only {with_waves} of 300 random circuits have a wave of several nodes");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Waves give the sequential driver's results, with the same bootstraps on the same
        /// values, and the Clear results.
        #[test]
        fn waves_match_the_sequential_driver(seed in any::<u64>(), input_seed in any::<u64>()) {
            let (circuit, sample) = random_circuit(seed, RandomCircuitConfig { max_ops: 8, ..RandomCircuitConfig::default() });
            steps_of(&circuit, Schedule::Waves);
            steps_of(&circuit, Schedule::Sequential);
            let inputs = sample(input_seed);
            let (waved, w) = run(&circuit, &inputs, Schedule::Waves);
            let (sequential, s) = run(&circuit, &inputs, Schedule::Sequential);
            match (waved, sequential, circuit.evaluate_clear(&inputs)) {
                (Ok(a), Ok(b), Ok(clear)) => {
                    prop_assert_eq!(&a, &b);
                    prop_assert_eq!(&a, &clear);
                    prop_assert_eq!(w.sorted_bootstraps(), s.sorted_bootstraps());
                }
                (Err(_), Err(_), Err(_)) => {}
                (a, b, c) => prop_assert!(false, "waves {:?}, sequential {:?}, clear {:?}", a.is_ok(), b.is_ok(), c.is_ok()),
            }
        }
    }
}
