//! How bootstraps read their inputs ([`ReadSpec`]), where they read from, and which values
//! are under the small LWE key.

use serde::{Deserialize, Serialize};

use fheml_circuits::{
    Circuit, ElementRef, FusedRounding, Interval, NodeId, Op, RoundingMode, SharedReads, lookup_source,
    materialised_rounds,
};

/// How a bootstrap reads its input: subtract `offset`, view the result as a `width`-bit
/// message, resolve its top `read_bits` bits; box `i` stands for the value `base + i`
/// before the table (or its rounding, for exact roundings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadSpec {
    /// Subtracted before the bootstrap so the message is non-negative.
    pub offset: i64,
    /// Bits of the (offset) message; the sink's `Δ` is `2^(63 - width)`.
    pub width: u32,
    /// Bits the bootstrap resolves (`width` unless an approximate rounding drops some).
    pub read_bits: u32,
    /// Rounding dropped by the read (approximate) or applied in the table (exact).
    pub rounding: Option<FusedRounding>,
    /// Extra bits resolved by a many-LUT bootstrap to keep `2^slot_bits` tables apart
    /// (0 for a lone lookup): the message then fills only the first `1/2^slot_bits` of the
    /// padded torus.
    #[serde(default)]
    pub slot_bits: u32,
}

impl ReadSpec {
    /// The read of a value ranging over `range` through an optional fused rounding.
    pub fn new(range: Interval, rounding: Option<FusedRounding>) -> Self {
        // One rule for the runtime and the cost model.
        let fheml_circuits::ReadLayout { offset, width, read_bits } = fheml_circuits::read_layout(range, rounding);
        Self { offset, width, read_bits, rounding, slot_bits: 0 }
    }

    /// The value the table is indexed with for box `i` (noise-free semantics).
    pub fn table_index(&self, box_index: i64) -> i64 {
        match self.rounding {
            Some(r) if r.mode == RoundingMode::Approximate => (self.offset >> r.lsbs) + box_index,
            Some(r) => fheml_circuits::round_shift(self.offset + box_index, r.lsbs).unwrap_or(i64::MAX),
            None => self.offset + box_index,
        }
    }

    /// `log2` of the sink's scale.
    pub fn delta_log(&self) -> u32 {
        63 - self.width - self.slot_bits
    }

    /// Bits the blind rotation resolves: the table's boxes and the many-LUT slots.
    pub fn resolved_bits(&self) -> u32 {
        self.read_bits + self.slot_bits
    }
}

/// The read spec of element `e` of a bootstrapping node (a lookup or materialised rounding).
pub fn read_spec_of(circuit: &Circuit, node: NodeId, e: usize) -> Option<ReadSpec> {
    match &circuit.node(node).op {
        Op::Lookup(x, _) => {
            let (source, rounding) = lookup_source(circuit, *x);
            Some(ReadSpec::new(circuit.node(source).ranges[e], rounding))
        }
        Op::Round { input, lsbs, mode } => {
            Some(ReadSpec::new(circuit.node(*input).ranges[e], Some(FusedRounding { lsbs: *lsbs, mode: *mode })))
        }
        _ => None,
    }
}

/// The read spec of a bootstrap element when the groups of `shared` are fused: a member of
/// a group of `k` resolves `ceil(log2 k)` more bits.
pub fn read_spec_in(circuit: &Circuit, shared: &SharedReads, node: NodeId, e: usize) -> Option<ReadSpec> {
    read_spec_of(circuit, node, e)
        .map(|spec| ReadSpec { slot_bits: shared.slot_bits_of(ElementRef { node, index: e }), ..spec })
}

/// Per node: whether its value is under the small LWE key. Inputs are, unless some value
/// computed from them (by leveled operations only) is an output, or is combined with a
/// bootstrap's result, or is read by anything but a bootstrap; leveled nodes are when every
/// operand is. A bootstrap's result is always under the large key.
pub fn small_key_nodes(circuit: &Circuit) -> Vec<bool> {
    let materialised = materialised_rounds(circuit);
    let nodes = circuit.nodes();
    let is_bootstrap = |i: usize| matches!(nodes[i].op, Op::Lookup(..)) || materialised[i];
    let consumers = circuit.consumers();
    let mut banned = vec![false; nodes.len()];
    loop {
        let mut small = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            small[i] = match node.op {
                Op::Input { .. } => !banned[i],
                _ if is_bootstrap(i) => false,
                _ => {
                    let operands = node.op.operands();
                    !operands.is_empty() && operands.iter().all(|o| small[o.0])
                }
            };
        }
        let misused: Vec<usize> = (0..nodes.len())
            .filter(|&i| {
                small[i]
                    && (circuit.outputs().contains(&NodeId(i))
                        || consumers[i].iter().any(|c| !is_bootstrap(c.0) && !small[c.0]))
            })
            .collect();
        if misused.is_empty() {
            return small;
        }
        // Ban the inputs behind every misused value, and look again.
        let mut stack = misused;
        while let Some(i) = stack.pop() {
            if let Op::Input { .. } = nodes[i].op {
                banned[i] = true;
            }
            stack.extend(nodes[i].op.operands().iter().map(|o| o.0).filter(|&o| small[o] && !banned[o]));
        }
    }
}

/// The node and read spec behind each element a bootstrap reads.
pub(super) fn bootstrap_inputs(
    circuit: &Circuit,
    materialised: &[bool],
    shared: &SharedReads,
) -> Vec<(NodeId, usize, NodeId, ReadSpec)> {
    let mut sites = Vec::new();
    for (i, node) in circuit.nodes().iter().enumerate() {
        let source = match &node.op {
            Op::Lookup(x, _) => lookup_source(circuit, *x).0,
            Op::Round { input, .. } if materialised[i] => *input,
            _ => continue,
        };
        for e in 0..node.len() {
            if let Some(spec) = read_spec_in(circuit, shared, NodeId(i), e) {
                sites.push((NodeId(i), e, source, spec));
            }
        }
    }
    sites
}

/// How a circuit's bootstraps read: which roundings bootstrap on their own, which lookups
/// share a bootstrap, which values are under the small key.
pub(super) struct Reads<'a> {
    pub(super) materialised: &'a [bool],
    pub(super) shared: &'a SharedReads,
    pub(super) small_key: &'a [bool],
}
