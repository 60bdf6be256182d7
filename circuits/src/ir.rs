//! The integer-circuit IR: a tensor-level DAG of integer operations.
//!
//! Nodes are stored in topological order (a node's operands always precede it), so a
//! single forward pass evaluates the circuit. Every node carries its shape and, after
//! range analysis (done while building), one [`Interval`] per element.

use ndarray::{Array2, ArrayD};
use serde::{Deserialize, Serialize};

use crate::range::Interval;

/// Index of a node in its circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub usize);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A univariate table over a contiguous domain `[input_min, input_min + len)`.
///
/// The length is a power of two, so that a bootstrap reading `log2(len)` bits of the
/// (offset) input evaluates it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// The input value of the first entry.
    pub input_min: i64,
    /// `values[i]` is the output for input `input_min + i`.
    pub values: Vec<i64>,
}

impl Table {
    /// Tabulates `f` over `[input_min, input_min + 2^bits)`.
    pub fn from_fn(input_min: i64, bits: u32, f: impl Fn(i64) -> i64) -> Self {
        let len = 1i64 << bits;
        Self { input_min, values: (input_min..input_min + len).map(f).collect() }
    }

    /// Number of input bits this table reads (`log2(len)`).
    pub fn input_bits(&self) -> u32 {
        self.values.len().trailing_zeros()
    }

    /// Last value of the domain.
    pub fn input_max(&self) -> i64 {
        self.input_min + self.values.len() as i64 - 1
    }

    /// Looks `x` up, or `None` outside the domain.
    pub fn get(&self, x: i64) -> Option<i64> {
        let offset = x.checked_sub(self.input_min)?;
        usize::try_from(offset).ok().and_then(|i| self.values.get(i)).copied()
    }
}

/// One table for every element, or one table per channel (the last axis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lut {
    /// The same table for every element.
    Single(Table),
    /// `tables[c]` applies to the elements whose last-axis index is `c`.
    PerChannel(Vec<Table>),
}

impl Lut {
    /// The table applying to flat element `index` of a tensor whose last axis has `channels`.
    pub fn table_for(&self, index: usize, channels: usize) -> &Table {
        match self {
            Lut::Single(t) => t,
            Lut::PerChannel(ts) => &ts[index % channels.max(1)],
        }
    }

    /// All tables.
    pub fn tables(&self) -> &[Table] {
        match self {
            Lut::Single(t) => std::slice::from_ref(t),
            Lut::PerChannel(ts) => ts,
        }
    }
}

/// How a rounding before a table lookup is carried out under encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum RoundingMode {
    /// The result is exactly `round(x / 2^lsbs)`; under TFHE the lookup then reads every
    /// bit of `x`, so it costs the precision of `x`.
    #[default]
    Exact,
    /// Under TFHE the dropped bits are left in the ciphertext and act as noise: the lookup
    /// reads only the kept bits (cheap), and may see `round(x / 2^lsbs) ± 1` near a
    /// rounding boundary. Clear evaluation computes the exact rounding.
    Approximate,
}

/// An operation. Operands are [`NodeId`]s of earlier nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Encrypted input number `index`; every element lies in its declared interval.
    Input {
        /// Position among the circuit's inputs.
        index: usize,
    },
    /// Element-wise `a + b` (same shapes).
    Add(NodeId, NodeId),
    /// Element-wise `a - b` (same shapes).
    Sub(NodeId, NodeId),
    /// `x + c`, with `c` a clear integer tensor broadcast to `x`'s shape.
    AddConst(NodeId, ArrayD<i64>),
    /// `x * c` element-wise, with `c` a clear integer tensor broadcast to `x`'s shape.
    MulConst(NodeId, ArrayD<i64>),
    /// `x · W` over the last axis of `x`: `[.., k] × [k, m] → [.., m]`.
    MatMul(NodeId, Array2<i64>),
    /// Sum along `axis` (the axis is removed).
    Sum {
        /// The summed tensor.
        input: NodeId,
        /// The axis removed.
        axis: usize,
    },
    /// Element-wise table lookup: one programmable bootstrap per element, except that
    /// lookups reading the same value through the same rounding may share one (many-LUT,
    /// see [`crate::SharedReads`]).
    Lookup(NodeId, Lut),
    /// `round(x / 2^lsbs)` (half up), dropping `lsbs` low bits before a lookup.
    Round {
        /// The rounded tensor.
        input: NodeId,
        /// Number of low bits dropped.
        lsbs: u32,
        /// Exact or approximate under encryption.
        mode: RoundingMode,
    },
    /// Picks flat elements of the input by constant indices; the result has `shape`.
    Gather {
        /// The source tensor.
        input: NodeId,
        /// Flat indices into the source, in the row-major order of the result.
        indices: Vec<usize>,
    },
    /// Same elements, new shape.
    Reshape(NodeId),
    /// The same values with tighter ranges that the lowering guarantees but interval
    /// arithmetic cannot see (e.g. a sum over the leaves of a tree, of which exactly one
    /// contributes). Every evaluation is the identity; narrower outputs get coarser, cheaper
    /// encodings. The lowering that emits it must guarantee it (its tests compare
    /// [`crate::observed_ranges`] with the declared ranges).
    Narrow(NodeId),
    /// Concatenation along `axis`.
    Concat {
        /// The concatenated tensors.
        inputs: Vec<NodeId>,
        /// The axis joined along.
        axis: usize,
    },
}

impl Op {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Add(..) => "add",
            Op::Sub(..) => "sub",
            Op::AddConst(..) => "add_const",
            Op::MulConst(..) => "mul_const",
            Op::MatMul(..) => "matmul",
            Op::Sum { .. } => "sum",
            Op::Lookup(..) => "lookup",
            Op::Round { .. } => "round",
            Op::Gather { .. } => "gather",
            Op::Reshape(..) => "reshape",
            Op::Narrow(..) => "narrow",
            Op::Concat { .. } => "concat",
        }
    }

    /// The nodes this operation reads.
    pub fn operands(&self) -> Vec<NodeId> {
        match self {
            Op::Input { .. } => vec![],
            Op::Add(a, b) | Op::Sub(a, b) => vec![*a, *b],
            Op::AddConst(x, _)
            | Op::MulConst(x, _)
            | Op::MatMul(x, _)
            | Op::Lookup(x, _)
            | Op::Reshape(x)
            | Op::Narrow(x) => vec![*x],
            Op::Sum { input, .. } | Op::Round { input, .. } | Op::Gather { input, .. } => {
                vec![*input]
            }
            Op::Concat { inputs, .. } => inputs.clone(),
        }
    }
}

/// A node: an operation, the shape of its result, and the range of every element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// What the node computes.
    pub op: Op,
    /// The result's shape (row-major).
    pub shape: Vec<usize>,
    /// Statically derived interval of each flat element.
    pub ranges: Vec<Interval>,
}

impl Node {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the node has no element.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The union of all element ranges.
    pub fn range(&self) -> Interval {
        Interval::hull(self.ranges.iter().copied())
    }
}

/// How exactly the client needs one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OutputKind {
    /// Decrypted exactly, at the compiled failure probability (labels, anything the client
    /// compares as an integer).
    #[default]
    Exact,
    /// A real value (score, logit, margin, regression value): the client may decrypt it with a
    /// small error, measured in units of `step` integers (the value's own resolution). The
    /// runtime bounds the error's standard deviation in those units instead of asking for
    /// an exact decryption, so a wide accumulator does not size the whole circuit.
    Real {
        /// Integers per meaningful step of the value (at least 1).
        step: u64,
    },
}

/// A validated integer circuit. Build one with [`crate::CircuitBuilder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Circuit {
    pub(crate) nodes: Vec<Node>,
    pub(crate) inputs: Vec<NodeId>,
    pub(crate) outputs: Vec<NodeId>,
    /// Per output, how exactly it is needed (missing entries: exact).
    #[serde(default)]
    pub(crate) output_kinds: Vec<OutputKind>,
}

impl Circuit {
    /// All nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// Input nodes, by input index.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    /// Output nodes, in output order.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// How exactly output `i` is needed.
    pub fn output_kind(&self, i: usize) -> OutputKind {
        self.output_kinds.get(i).copied().unwrap_or_default()
    }

    /// The same circuit with every output decrypted exactly (a user's `exact` request).
    pub fn with_exact_outputs(mut self) -> Self {
        self.output_kinds.clear();
        self
    }

    /// Shapes of the inputs.
    pub fn input_shapes(&self) -> Vec<Vec<usize>> {
        self.inputs.iter().map(|id| self.node(*id).shape.clone()).collect()
    }

    /// For every node, the nodes that read it.
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut users = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for operand in node.op.operands() {
                users[operand.0].push(NodeId(i));
            }
        }
        users
    }
}
