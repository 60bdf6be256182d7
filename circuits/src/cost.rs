//! The cost model: bootstraps, lookup precisions, and the noise amplification (weight
//! 2-norm) in front of every lookup, which is what TFHE parameter selection needs.

use serde::{Deserialize, Serialize};

use crate::backend::{ElementRef, FusedRounding};
use crate::ir::{Circuit, NodeId, Op};
use crate::noise::propagate_variance;
use crate::range::{BitWidth, Interval};
use crate::read::read_layout;
use crate::shared::SharedReads;

/// Where a bootstrap happens and what it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupSite {
    /// The lookup (or materialised rounding) node.
    pub node: NodeId,
    /// Flat element index.
    pub element: usize,
    /// The range of the value the bootstrap reads (before a fused rounding).
    pub input_range: Interval,
    /// The rounding fused in front, if any.
    pub rounding_lsbs: u32,
    /// Whether that rounding is approximate (the bootstrap then reads only the kept bits).
    pub approximate: bool,
    /// The precision the bootstrap must resolve.
    pub precision: BitWidth,
    /// 2-norm of the weights between the noise sources (inputs, earlier lookups) and this
    /// bootstrap's input, with every source counted as unit noise.
    pub norm2: f64,
    /// The shared-read group (see [`SharedReads`]) this lookup belongs to, if any: all the
    /// lookups of a group can share one bootstrap.
    pub shared_read: Option<usize>,
}

/// What evaluating a circuit once costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// Programmable bootstraps per evaluation, with every shared-read group evaluated by one
    /// many-LUT bootstrap (`lookups.len() - shared_reads_saved`). The runtime's planner may
    /// fuse fewer groups when the finer read does not meet the failure probability; its
    /// report gives the count it actually runs.
    pub bootstraps: usize,
    /// Shared-read groups (lookups reading the same value through the same rounding).
    pub shared_reads: usize,
    /// Bootstraps saved by sharing: `Σ (k - 1)` over the groups.
    pub shared_reads_saved: usize,
    /// Leveled multiply-add terms per evaluation.
    pub leveled_terms: usize,
    /// Every bootstrap site (a lookup or materialised rounding element); the lookups of a
    /// shared-read group are listed one by one.
    pub lookups: Vec<LookupSite>,
    /// Largest bootstrap precision (0 without any).
    pub max_precision: BitWidth,
    /// Largest 2-norm in front of a bootstrap (0 without any).
    pub max_norm2: f64,
    /// Largest signed width of any value in the circuit.
    pub max_value_bits: BitWidth,
}

/// For a lookup node: the node its bootstraps read, and the rounding fused in between.
///
/// A rounding is fused only where the evaluation driver fuses it (see
/// [`crate::materialised_rounds`]): one that is an output or feeds something other than a
/// lookup is a bootstrap of its own, and the lookups then read its value.
pub fn lookup_source(circuit: &Circuit, lookup_input: NodeId) -> (NodeId, Option<FusedRounding>) {
    match &circuit.node(lookup_input).op {
        Op::Round { input, lsbs, mode } if !round_is_materialised(circuit, lookup_input) => {
            (*input, Some(FusedRounding { lsbs: *lsbs, mode: *mode }))
        }
        _ => (lookup_input, None),
    }
}

/// Whether the rounding node `id` is materialised (an output, or read by a non-lookup).
fn round_is_materialised(circuit: &Circuit, id: NodeId) -> bool {
    circuit.outputs().contains(&id)
        || circuit.nodes()[id.0 + 1..].iter().any(|n| !matches!(n.op, Op::Lookup(..)) && n.op.operands().contains(&id))
}

/// The precision a bootstrap needs to read `range` through `rounding`: the bits the
/// runtime resolves ([`read_layout`]'s `read_bits`).
pub fn read_precision(range: Interval, rounding: Option<FusedRounding>) -> BitWidth {
    BitWidth(read_layout(range, rounding).read_bits)
}

impl Circuit {
    /// The cost model of this circuit.
    #[allow(clippy::needless_range_loop)] // element indices address several parallel arrays
    pub fn cost(&self) -> CostReport {
        let var = propagate_variance(self, |_, _| 1.0);
        let shared = SharedReads::find(self);
        let mut lookups = Vec::new();
        let mut leveled_terms = 0;
        for (i, node) in self.nodes().iter().enumerate() {
            match &node.op {
                Op::Lookup(x, _) => {
                    let (source, rounding) = lookup_source(self, *x);
                    for e in 0..node.len() {
                        let input_range = self.node(source).ranges[e];
                        lookups.push(LookupSite {
                            node: NodeId(i),
                            element: e,
                            input_range,
                            rounding_lsbs: rounding.map_or(0, |r| r.lsbs),
                            approximate: rounding.is_some_and(|r| r.mode == crate::ir::RoundingMode::Approximate),
                            precision: read_precision(input_range, rounding),
                            norm2: var[source.0][e].sqrt(),
                            shared_read: shared.group_of(ElementRef { node: NodeId(i), index: e }),
                        });
                    }
                }
                Op::Round { input, lsbs, mode }
                    if self.outputs().contains(&NodeId(i))
                        || self.consumers()[i].iter().any(|c| !matches!(self.node(*c).op, Op::Lookup(..))) =>
                {
                    let rounding = Some(FusedRounding { lsbs: *lsbs, mode: *mode });
                    for e in 0..node.len() {
                        let input_range = self.node(*input).ranges[e];
                        lookups.push(LookupSite {
                            node: NodeId(i),
                            element: e,
                            input_range,
                            rounding_lsbs: *lsbs,
                            approximate: *mode == crate::ir::RoundingMode::Approximate,
                            precision: read_precision(input_range, rounding),
                            norm2: var[input.0][e].sqrt(),
                            shared_read: None,
                        });
                    }
                }
                Op::Add(..) | Op::Sub(..) => leveled_terms += 2 * node.len(),
                Op::AddConst(..) | Op::MulConst(..) => leveled_terms += node.len(),
                Op::MatMul(_, w) => {
                    let rows = node.len() / w.ncols().max(1);
                    leveled_terms += rows * w.iter().filter(|v| **v != 0).count();
                }
                Op::Sum { input, .. } => leveled_terms += self.node(*input).len(),
                _ => {}
            }
        }
        CostReport {
            bootstraps: lookups.len() - shared.bootstraps_saved(),
            shared_reads: shared.len(),
            shared_reads_saved: shared.bootstraps_saved(),
            leveled_terms,
            max_precision: lookups.iter().map(|l| l.precision).max().unwrap_or(BitWidth(0)),
            max_norm2: lookups.iter().map(|l| l.norm2).fold(0.0, f64::max),
            max_value_bits: self.nodes().iter().map(|n| n.range().signed_bits()).max().unwrap_or(BitWidth(1)),
            lookups,
        }
    }
}
