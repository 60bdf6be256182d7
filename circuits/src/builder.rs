//! Builds validated circuits: every method checks shapes, operands and ranges, and
//! returns a typed error instead of producing a malformed graph.

use ndarray::{Array2, ArrayD, Axis, IxDyn};

use crate::error::{CircuitError, Result};
use crate::ir::{Circuit, Lut, Node, NodeId, Op, OutputKind, RoundingMode};
use crate::range::{Interval, WideInterval};

/// The largest table a lookup may use (16-bit input).
pub const MAX_TABLE_BITS: u32 = 16;

/// Builds a [`Circuit`] node by node; operands must already exist.
#[derive(Debug, Default, Clone)]
pub struct CircuitBuilder {
    nodes: Vec<Node>,
    inputs: Vec<NodeId>,
    outputs: Vec<NodeId>,
    output_kinds: Vec<OutputKind>,
}

fn shape_len(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl CircuitBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_id(&self) -> NodeId {
        NodeId(self.nodes.len())
    }

    fn get(&self, id: NodeId) -> Result<&Node> {
        self.nodes.get(id.0).ok_or(CircuitError::DanglingNode { node: self.next_id(), operand: id })
    }

    fn push(&mut self, op: Op, shape: Vec<usize>, ranges: Vec<Interval>) -> NodeId {
        let id = self.next_id();
        self.nodes.push(Node { op, shape, ranges });
        id
    }

    fn mismatch(&self, op: &'static str, detail: String) -> CircuitError {
        CircuitError::ShapeMismatch { node: self.next_id(), op, detail }
    }

    fn invalid(&self, detail: String) -> CircuitError {
        CircuitError::InvalidArgument { node: self.next_id(), detail }
    }

    /// A new encrypted input whose elements all lie in `range`.
    pub fn input(&mut self, shape: &[usize], range: Interval) -> NodeId {
        let index = self.inputs.len();
        let id = self.push(Op::Input { index }, shape.to_vec(), vec![range; shape_len(shape)]);
        self.inputs.push(id);
        id
    }

    /// A new encrypted input with one interval per (flat) element.
    pub fn input_with_ranges(&mut self, shape: &[usize], ranges: Vec<Interval>) -> Result<NodeId> {
        if ranges.len() != shape_len(shape) {
            return Err(self.mismatch(
                "input",
                format!("{} ranges for shape {:?} ({} elements)", ranges.len(), shape, shape_len(shape)),
            ));
        }
        let index = self.inputs.len();
        let id = self.push(Op::Input { index }, shape.to_vec(), ranges);
        self.inputs.push(id);
        Ok(id)
    }

    fn elementwise(&mut self, a: NodeId, b: NodeId, subtract: bool) -> Result<NodeId> {
        let (na, nb) = (self.get(a)?, self.get(b)?);
        let name = if subtract { "sub" } else { "add" };
        if na.shape != nb.shape {
            return Err(self.mismatch(name, format!("{:?} vs {:?}", na.shape, nb.shape)));
        }
        let shape = na.shape.clone();
        let id = self.next_id();
        let ranges = na
            .ranges
            .iter()
            .zip(&nb.ranges)
            .map(|(x, y)| {
                let (x, y) = (WideInterval::from(*x), WideInterval::from(*y));
                if subtract { x.sub(y) } else { x.add(y) }.narrow(id, name)
            })
            .collect::<Result<Vec<_>>>()?;
        let op = if subtract { Op::Sub(a, b) } else { Op::Add(a, b) };
        Ok(self.push(op, shape, ranges))
    }

    /// Element-wise `a + b`.
    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.elementwise(a, b, false)
    }

    /// Element-wise `a - b`.
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.elementwise(a, b, true)
    }

    fn broadcast_const(&self, x: NodeId, c: &ArrayD<i64>, op: &'static str) -> Result<Vec<i64>> {
        let node = self.get(x)?;
        let view = c.broadcast(IxDyn(&node.shape)).ok_or_else(|| {
            self.mismatch(op, format!("constant of shape {:?} does not broadcast to {:?}", c.shape(), node.shape))
        })?;
        Ok(view.iter().copied().collect())
    }

    /// `x + c`, `c` broadcast to `x`'s shape.
    pub fn add_const(&mut self, x: NodeId, c: ArrayD<i64>) -> Result<NodeId> {
        let values = self.broadcast_const(x, &c, "add_const")?;
        let id = self.next_id();
        let node = self.get(x)?;
        let ranges = node
            .ranges
            .iter()
            .zip(values)
            .map(|(r, v)| WideInterval::from(*r).add(WideInterval::from(Interval::point(v))).narrow(id, "add_const"))
            .collect::<Result<Vec<_>>>()?;
        let shape = node.shape.clone();
        Ok(self.push(Op::AddConst(x, c), shape, ranges))
    }

    /// `x * c` element-wise, `c` broadcast to `x`'s shape.
    pub fn mul_const(&mut self, x: NodeId, c: ArrayD<i64>) -> Result<NodeId> {
        let values = self.broadcast_const(x, &c, "mul_const")?;
        let id = self.next_id();
        let node = self.get(x)?;
        let ranges = node
            .ranges
            .iter()
            .zip(values)
            .map(|(r, v)| WideInterval::from(*r).scale(v).narrow(id, "mul_const"))
            .collect::<Result<Vec<_>>>()?;
        let shape = node.shape.clone();
        Ok(self.push(Op::MulConst(x, c), shape, ranges))
    }

    /// `x · W` over `x`'s last axis: `[.., k] × [k, m] → [.., m]`.
    pub fn matmul(&mut self, x: NodeId, weights: Array2<i64>) -> Result<NodeId> {
        let node = self.get(x)?;
        let k = *node.shape.last().ok_or_else(|| self.mismatch("matmul", "input is a scalar".into()))?;
        if weights.nrows() != k {
            return Err(self.mismatch(
                "matmul",
                format!("input's last axis is {k} but the weight matrix has {} rows", weights.nrows()),
            ));
        }
        let m = weights.ncols();
        let rows = node.len().checked_div(k).unwrap_or(0);
        let id = self.next_id();
        let mut ranges = Vec::with_capacity(rows * m);
        for r in 0..rows {
            let row = &node.ranges[r * k..(r + 1) * k];
            for j in 0..m {
                let mut acc = WideInterval::from(Interval::point(0));
                for (i, xr) in row.iter().enumerate() {
                    let w = weights[[i, j]];
                    if w != 0 {
                        acc = acc.add(WideInterval::from(*xr).scale(w));
                    }
                }
                ranges.push(acc.narrow(id, "matmul")?);
            }
        }
        let mut shape = node.shape.clone();
        if let Some(last) = shape.last_mut() {
            *last = m;
        }
        Ok(self.push(Op::MatMul(x, weights), shape, ranges))
    }

    /// Sum along `axis`, which is removed from the shape.
    pub fn sum(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        let node = self.get(x)?;
        if axis >= node.shape.len() {
            return Err(self.invalid(format!("sum axis {axis} out of bounds for shape {:?}", node.shape)));
        }
        let id = self.next_id();
        let ranges = ArrayD::from_shape_vec(IxDyn(&node.shape), node.ranges.clone())
            .map_err(|e| self.mismatch("sum", e.to_string()))?;
        let summed = ranges
            .lanes(Axis(axis))
            .into_iter()
            .map(|lane| {
                lane.iter()
                    .fold(WideInterval::from(Interval::point(0)), |acc, r| acc.add(WideInterval::from(*r)))
                    .narrow(id, "sum")
            })
            .collect::<Result<Vec<_>>>()?;
        let mut shape = node.shape.clone();
        shape.remove(axis);
        Ok(self.push(Op::Sum { input: x, axis }, shape, summed))
    }

    /// Element-wise table lookup. Every element's range must lie inside its table's domain.
    pub fn lookup(&mut self, x: NodeId, lut: Lut) -> Result<NodeId> {
        let id = self.next_id();
        let node = self.get(x)?;
        let channels = node.shape.last().copied().unwrap_or(1);
        if let Lut::PerChannel(tables) = &lut
            && tables.len() != channels
        {
            return Err(CircuitError::BadTable {
                node: id,
                detail: format!("{} per-channel tables for a last axis of {channels}", tables.len()),
            });
        }
        for table in lut.tables() {
            let len = table.values.len();
            if len == 0 || !len.is_power_of_two() || len > 1 << MAX_TABLE_BITS {
                return Err(CircuitError::BadTable {
                    node: id,
                    detail: format!("table of {len} entries; it must have 2^b entries, 1 <= b <= {MAX_TABLE_BITS}"),
                });
            }
            if table.input_min.checked_add(len as i64).is_none() {
                return Err(CircuitError::BadTable { node: id, detail: "table domain overflows i64".into() });
            }
        }
        // The lookup reads the operand of a fused rounding through that rounding.
        let mut ranges = Vec::with_capacity(node.len());
        for (i, r) in node.ranges.iter().enumerate() {
            let table = lut.table_for(i, channels);
            if r.lo < table.input_min || r.hi > table.input_max() {
                return Err(CircuitError::BadTable {
                    node: id,
                    detail: format!(
                        "element {i} ranges over [{}, {}] but its table covers [{}, {}]",
                        r.lo,
                        r.hi,
                        table.input_min,
                        table.input_max()
                    ),
                });
            }
            let start = (r.lo - table.input_min) as usize;
            let end = (r.hi - table.input_min) as usize;
            let slice = &table.values[start..=end];
            let lo = slice.iter().copied().min().unwrap_or(0);
            let hi = slice.iter().copied().max().unwrap_or(0);
            ranges.push(Interval { lo, hi });
        }
        let shape = node.shape.clone();
        Ok(self.push(Op::Lookup(x, lut), shape, ranges))
    }

    /// `round(x / 2^lsbs)`, half up.
    pub fn round(&mut self, x: NodeId, lsbs: u32, mode: RoundingMode) -> Result<NodeId> {
        if lsbs == 0 || lsbs > 62 {
            return Err(self.invalid(format!("rounding must drop between 1 and 62 bits, not {lsbs}")));
        }
        let node = self.get(x)?;
        let id = self.next_id();
        let ranges = node
            .ranges
            .iter()
            .map(|r| {
                let lo = round_shift(r.lo, lsbs).ok_or(CircuitError::Overflow { node: id })?;
                let hi = round_shift(r.hi, lsbs).ok_or(CircuitError::Overflow { node: id })?;
                Ok(Interval { lo, hi })
            })
            .collect::<Result<Vec<_>>>()?;
        let shape = node.shape.clone();
        Ok(self.push(Op::Round { input: x, lsbs, mode }, shape, ranges))
    }

    /// Picks flat elements of `x` by constant indices into a tensor of `shape`.
    pub fn gather(&mut self, x: NodeId, indices: Vec<usize>, shape: &[usize]) -> Result<NodeId> {
        let node = self.get(x)?;
        if indices.len() != shape_len(shape) {
            return Err(self.mismatch("gather", format!("{} indices for shape {:?}", indices.len(), shape)));
        }
        if let Some(bad) = indices.iter().find(|&&i| i >= node.len()) {
            return Err(self.invalid(format!("gather index {bad} out of bounds for {} elements", node.len())));
        }
        let ranges = indices.iter().map(|&i| node.ranges[i]).collect();
        Ok(self.push(Op::Gather { input: x, indices }, shape.to_vec(), ranges))
    }

    /// Same elements, new shape.
    pub fn reshape(&mut self, x: NodeId, shape: &[usize]) -> Result<NodeId> {
        let node = self.get(x)?;
        if shape_len(shape) != node.len() {
            return Err(self.mismatch("reshape", format!("{:?} cannot hold {:?}", shape, node.shape)));
        }
        let ranges = node.ranges.clone();
        Ok(self.push(Op::Reshape(x), shape.to_vec(), ranges))
    }

    /// The same values with the tighter per-element `ranges` the caller guarantees; each
    /// must lie inside the range the analysis derived.
    pub fn narrow(&mut self, x: NodeId, ranges: Vec<Interval>) -> Result<NodeId> {
        let node = self.get(x)?;
        if ranges.len() != node.len() {
            return Err(self.mismatch("narrow", format!("{} ranges for {} elements", ranges.len(), node.len())));
        }
        if let Some((i, (r, wide))) =
            ranges.iter().zip(&node.ranges).enumerate().find(|(_, (r, w))| r.lo > r.hi || r.lo < w.lo || r.hi > w.hi)
        {
            return Err(self.invalid(format!(
                "narrowed range [{}, {}] of element {i} is not inside [{}, {}]",
                r.lo, r.hi, wide.lo, wide.hi
            )));
        }
        let shape = node.shape.clone();
        Ok(self.push(Op::Narrow(x), shape, ranges))
    }

    /// Concatenation along `axis`; all other axes must agree.
    pub fn concat(&mut self, inputs: &[NodeId], axis: usize) -> Result<NodeId> {
        let first = self.get(*inputs.first().ok_or_else(|| self.invalid("concat of nothing".into()))?)?;
        if axis >= first.shape.len() {
            return Err(self.invalid(format!("concat axis {axis} out of bounds for shape {:?}", first.shape)));
        }
        let mut arrays = Vec::with_capacity(inputs.len());
        for &id in inputs {
            let node = self.get(id)?;
            let a = ArrayD::from_shape_vec(IxDyn(&node.shape), node.ranges.clone())
                .map_err(|e| self.mismatch("concat", e.to_string()))?;
            arrays.push(a);
        }
        let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
        let joined = ndarray::concatenate(Axis(axis), &views).map_err(|_| {
            let shapes: Vec<_> = arrays.iter().map(|a| a.shape().to_vec()).collect();
            self.mismatch("concat", format!("shapes {shapes:?} differ off axis {axis}"))
        })?;
        let shape = joined.shape().to_vec();
        let ranges = joined.iter().copied().collect();
        Ok(self.push(Op::Concat { inputs: inputs.to_vec(), axis }, shape, ranges))
    }

    /// The hull of a node's element ranges (`[0, 0]` for an unknown node).
    pub fn node_range(&self, id: NodeId) -> Interval {
        self.nodes.get(id.0).map_or(Interval::point(0), Node::range)
    }

    /// The range of every (flat) element of a node (empty for an unknown node).
    pub fn element_ranges(&self, id: NodeId) -> &[Interval] {
        self.nodes.get(id.0).map_or(&[], |n| n.ranges.as_slice())
    }

    /// Marks `x` as the next output, decrypted exactly.
    pub fn output(&mut self, x: NodeId) -> Result<()> {
        self.output_as(x, OutputKind::Exact)
    }

    /// Marks `x` as the next output, a real value whose meaningful resolution is `step`
    /// integers: the client may decrypt it with a small error (see [`OutputKind::Real`]).
    pub fn output_real(&mut self, x: NodeId, step: u64) -> Result<()> {
        self.output_as(x, OutputKind::Real { step: step.max(1) })
    }

    fn output_as(&mut self, x: NodeId, kind: OutputKind) -> Result<()> {
        self.get(x)?;
        self.outputs.push(x);
        self.output_kinds.push(kind);
        Ok(())
    }

    /// The finished circuit.
    pub fn build(self) -> Result<Circuit> {
        if self.outputs.is_empty() {
            return Err(CircuitError::NoOutput);
        }
        Ok(Circuit { nodes: self.nodes, inputs: self.inputs, outputs: self.outputs, output_kinds: self.output_kinds })
    }
}

impl Circuit {
    /// Checks a circuit read from bytes (a file, a server) as the builder would have checked
    /// it: every node is replayed through a [`CircuitBuilder`] (operands must precede their
    /// node, shapes agree, tables have `2^b` entries covering their inputs, no value may
    /// overflow i64, inputs are numbered in order) and the shape and ranges stored with each
    /// node must be exactly those the builder derives. A decoded circuit is otherwise
    /// trusted blindly: its stored ranges decide encodings, and evaluation indexes by them.
    pub fn validate(&self) -> Result<()> {
        let mut b = CircuitBuilder::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let id = NodeId(i);
            let stated = node.shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d));
            if stated != Some(node.ranges.len()) {
                return Err(CircuitError::ShapeMismatch {
                    node: id,
                    op: node.op.name(),
                    detail: format!("shape {:?} stored with {} element ranges", node.shape, node.ranges.len()),
                });
            }
            let built = match &node.op {
                Op::Input { index } => {
                    if *index != b.inputs.len() {
                        return Err(CircuitError::InvalidArgument {
                            node: id,
                            detail: format!("input numbered {index}, expected {}", b.inputs.len()),
                        });
                    }
                    if let Some(r) = node.ranges.iter().find(|r| r.lo > r.hi) {
                        return Err(CircuitError::InvalidArgument {
                            node: id,
                            detail: format!("empty input range [{}, {}]", r.lo, r.hi),
                        });
                    }
                    b.input_with_ranges(&node.shape, node.ranges.clone())?
                }
                Op::Add(x, y) => b.add(*x, *y)?,
                Op::Sub(x, y) => b.sub(*x, *y)?,
                Op::AddConst(x, c) => b.add_const(*x, c.clone())?,
                Op::MulConst(x, c) => b.mul_const(*x, c.clone())?,
                Op::MatMul(x, w) => {
                    // The product's size, before the builder allocates it: it must be the
                    // stored one (a crafted operand and weight shape could ask for far more).
                    let rows = b.nodes.get(x.0).map(|n| n.len().checked_div(w.nrows()).unwrap_or(0));
                    if rows.is_some_and(|r| r.checked_mul(w.ncols()) != Some(node.len())) {
                        return Err(CircuitError::ShapeMismatch {
                            node: id,
                            op: "matmul",
                            detail: format!(
                                "a {}x{} weight matrix cannot give {} elements",
                                w.nrows(),
                                w.ncols(),
                                node.len()
                            ),
                        });
                    }
                    b.matmul(*x, w.clone())?
                }
                Op::Sum { input, axis } => b.sum(*input, *axis)?,
                Op::Lookup(x, lut) => b.lookup(*x, lut.clone())?,
                Op::Round { input, lsbs, mode } => b.round(*input, *lsbs, *mode)?,
                Op::Gather { input, indices } => b.gather(*input, indices.clone(), &node.shape)?,
                Op::Reshape(x) => b.reshape(*x, &node.shape)?,
                Op::Narrow(x) => b.narrow(*x, node.ranges.clone())?,
                Op::Concat { inputs, axis } => b.concat(inputs, *axis)?,
            };
            let derived = &b.nodes[built.0];
            if derived.shape != node.shape || derived.ranges != node.ranges {
                return Err(CircuitError::InvalidArgument {
                    node: id,
                    detail: format!(
                        "stored {} node does not match what its operands give (shape {:?}, range {:?}; derived {:?}, {:?})",
                        node.op.name(),
                        node.shape,
                        node.range(),
                        derived.shape,
                        derived.range()
                    ),
                });
            }
        }
        if self.inputs != b.inputs {
            return Err(CircuitError::InvalidArgument {
                node: b.next_id(),
                detail: "the input list does not match the input nodes".into(),
            });
        }
        if self.output_kinds.len() > self.outputs.len() {
            return Err(CircuitError::InvalidArgument {
                node: b.next_id(),
                detail: format!("{} output kinds for {} outputs", self.output_kinds.len(), self.outputs.len()),
            });
        }
        for (i, out) in self.outputs.iter().enumerate() {
            match self.output_kind(i) {
                OutputKind::Real { step: 0 } => {
                    return Err(CircuitError::InvalidArgument {
                        node: *out,
                        detail: "a real-valued output with a step of 0".into(),
                    });
                }
                kind => b.output_as(*out, kind)?,
            }
        }
        b.build().map(|_| ())
    }
}

/// `floor((x + 2^(k-1)) / 2^k)`: rounding half up, the rule every backend implements.
pub fn round_shift(x: i64, lsbs: u32) -> Option<i64> {
    let half = 1i64.checked_shl(lsbs - 1)?;
    Some(x.checked_add(half)?.div_euclid(1i64.checked_shl(lsbs)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn narrow_accepts_tighter_ranges_only() {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[2], Interval { lo: 0, hi: 3 });
        let s = b.sum(x, 0).unwrap();
        assert!(b.narrow(s, vec![Interval { lo: 0, hi: 7 }]).is_err(), "wider than [0, 6]");
        assert!(b.narrow(s, vec![Interval { lo: 0, hi: 1 }, Interval { lo: 0, hi: 1 }]).is_err(), "element count");
        let n = b.narrow(s, vec![Interval { lo: 0, hi: 3 }]).unwrap();
        assert_eq!(b.node_range(n), Interval { lo: 0, hi: 3 });
    }

    #[test]
    fn round_shift_rounds_half_up() {
        assert_eq!(round_shift(5, 1), Some(3));
        assert_eq!(round_shift(4, 1), Some(2));
        assert_eq!(round_shift(-5, 1), Some(-2));
        assert_eq!(round_shift(-6, 2), Some(-1));
        assert_eq!(round_shift(7, 3), Some(1));
        assert_eq!(round_shift(3, 3), Some(0));
    }
}
