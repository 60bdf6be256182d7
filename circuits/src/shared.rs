//! Shared reads: table lookups that read the same value through the same rounding, and may
//! therefore share one bootstrap (tfhe-rs's *many-LUT*).
//!
//! A programmable bootstrap rotates an accumulator by the (noisy) phase of its input and
//! extracts one coefficient. When several lookups read the *same* ciphertext (the same
//! element of the same source, possibly through gathers, reshapes and concatenations,
//! which only move ciphertexts) through the *same* fused rounding, one blind rotation can
//! serve all of them: the accumulator packs the `k` tables side by side and each result is
//! a sample extraction at its own offset. The read then has to resolve `ceil(log2 k)` more
//! bits, so whether a group is worth fusing is a matter of noise and precision, decided by
//! whoever picks the parameters (the runtime's planner). This module only *detects* the
//! groups: it is not a user-facing operation, and a circuit means the same with or without
//! fusion.
//!
//! [`SharedReads::find`] lists every group of two or more lookup elements with a common
//! read; a backend that fuses returns the groups it wants from
//! [`crate::Backend::shared_reads`], and the evaluation driver then calls
//! [`crate::Backend::many_lookup`] once per group, at its first member (the *leader*), and
//! hands the other results to their nodes when those are reached.

use std::collections::HashMap;

use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

use crate::backend::{ElementRef, FusedRounding, materialised_rounds};
use crate::ir::{Circuit, NodeId, Op, Table};
use crate::range::Interval;

const NONE: u32 = u32::MAX;

/// Groups of lookup elements that read the same ciphertext through the same rounding.
///
/// Members of a group are in evaluation order (node, then element); the first one is the
/// group's leader. An element belongs to at most one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedReads {
    groups: Vec<Vec<ElementRef>>,
    /// Per node, per element: the group index, or `NONE`. Empty for nodes without a member.
    member_of: Vec<Vec<u32>>,
}

/// What a lookup element reads: where the ciphertext comes from and how it is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ReadKey {
    root: ElementRef,
    rounding: Option<FusedRounding>,
    range: Interval,
}

/// For every element of every node, the element that actually holds its ciphertext:
/// gathers, reshapes and concatenations only move values.
fn roots(circuit: &Circuit) -> Vec<Vec<ElementRef>> {
    let mut roots: Vec<Vec<ElementRef>> = Vec::with_capacity(circuit.nodes().len());
    for (i, node) in circuit.nodes().iter().enumerate() {
        let own = |index| ElementRef { node: NodeId(i), index };
        let r: Vec<ElementRef> = match &node.op {
            Op::Gather { input, indices } => indices.iter().map(|&j| roots[input.0][j]).collect(),
            Op::Reshape(x) | Op::Narrow(x) => roots[x.0].clone(),
            Op::Concat { inputs, axis } => {
                let parts: Vec<ArrayD<ElementRef>> = inputs
                    .iter()
                    .filter_map(|p| ArrayD::from_shape_vec(IxDyn(&circuit.node(*p).shape), roots[p.0].clone()).ok())
                    .collect();
                let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
                match ndarray::concatenate(Axis(*axis), &views) {
                    Ok(a) if a.len() == node.len() => a.iter().copied().collect(),
                    _ => (0..node.len()).map(own).collect(),
                }
            }
            _ => (0..node.len()).map(own).collect(),
        };
        roots.push(r);
    }
    roots
}

/// The node a lookup's bootstraps read and the rounding fused in between, as the evaluation
/// driver sees it (a materialised rounding is a value of its own).
pub(crate) fn driver_read(
    circuit: &Circuit,
    materialised: &[bool],
    lookup_input: NodeId,
) -> (NodeId, Option<FusedRounding>) {
    match &circuit.node(lookup_input).op {
        Op::Round { input, lsbs, mode } if !materialised[lookup_input.0] => {
            (*input, Some(FusedRounding { lsbs: *lsbs, mode: *mode }))
        }
        _ => (lookup_input, None),
    }
}

impl SharedReads {
    /// No group: every lookup is its own bootstrap.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every group of two or more lookup elements reading the same ciphertext (the same
    /// element of the same source, through any gathers, reshapes and concatenations) through
    /// the same fused rounding.
    pub fn find(circuit: &Circuit) -> Self {
        let materialised = materialised_rounds(circuit);
        let roots = roots(circuit);
        let mut by_key: HashMap<ReadKey, usize> = HashMap::new();
        let mut candidates: Vec<Vec<ElementRef>> = Vec::new();
        for (i, node) in circuit.nodes().iter().enumerate() {
            let Op::Lookup(x, _) = &node.op else { continue };
            let (source, rounding) = driver_read(circuit, &materialised, *x);
            let ranges = &circuit.node(source).ranges;
            for (e, (root, range)) in roots[source.0].iter().zip(ranges).enumerate().take(node.len()) {
                let key = ReadKey { root: *root, rounding, range: *range };
                let slot = *by_key.entry(key).or_insert_with(|| {
                    candidates.push(Vec::new());
                    candidates.len() - 1
                });
                candidates[slot].push(ElementRef { node: NodeId(i), index: e });
            }
        }
        Self::from_groups(circuit, candidates.into_iter().filter(|g| g.len() >= 2).collect())
    }

    /// Builds the index of the given groups (each in evaluation order, two or more members,
    /// disjoint; others are dropped).
    fn from_groups(circuit: &Circuit, groups: Vec<Vec<ElementRef>>) -> Self {
        let mut member_of: Vec<Vec<u32>> = vec![Vec::new(); circuit.nodes().len()];
        let mut kept = Vec::with_capacity(groups.len());
        for group in groups {
            if group.len() < 2
                || group.iter().any(|m| {
                    m.node.0 >= circuit.nodes().len()
                        || m.index >= circuit.node(m.node).len()
                        || member_of[m.node.0].get(m.index).is_some_and(|g| *g != NONE)
                })
            {
                continue;
            }
            for m in &group {
                let slots = &mut member_of[m.node.0];
                if slots.is_empty() {
                    *slots = vec![NONE; circuit.node(m.node).len()];
                }
                slots[m.index] = kept.len() as u32;
            }
            kept.push(group);
        }
        Self { groups: kept, member_of }
    }

    /// Checks groups read from bytes against `circuit`: each group is a set of two or more
    /// distinct lookup elements, in evaluation order, that [`SharedReads::find`] puts in one
    /// group (they read the same ciphertext through the same rounding), no element is in two
    /// groups, and the stored index agrees with the groups. A decoded plan's groups are
    /// otherwise trusted: a bootstrap would serve lookups that read different values.
    pub fn validate(&self, circuit: &Circuit) -> crate::error::Result<()> {
        let bad = |node: NodeId| Err(crate::error::CircuitError::SharedRead { node });
        let found = Self::find(circuit);
        for group in &self.groups {
            let Some(leader) = group.first() else { return bad(NodeId(0)) };
            let Some(target) = found.group_of(*leader) else { return bad(leader.node) };
            if group.len() < 2 || group.windows(2).any(|w| (w[0].node, w[0].index) >= (w[1].node, w[1].index)) {
                return bad(leader.node);
            }
            if let Some(m) = group.iter().find(|m| found.group_of(**m) != Some(target)) {
                return bad(m.node);
            }
        }
        if Self::from_groups(circuit, self.groups.clone()) != *self {
            return bad(self.groups.first().and_then(|g| g.first()).map_or(NodeId(0), |m| m.node));
        }
        Ok(())
    }

    /// The groups, each in evaluation order (the first member is the leader).
    pub fn groups(&self) -> &[Vec<ElementRef>] {
        &self.groups
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The group `site` belongs to.
    pub fn group_of(&self, site: ElementRef) -> Option<usize> {
        self.member_of
            .get(site.node.0)
            .and_then(|slots| slots.get(site.index))
            .and_then(|g| (*g != NONE).then_some(*g as usize))
    }

    /// Bootstraps saved by sharing: `Σ (k - 1)` over the groups.
    pub fn bootstraps_saved(&self) -> usize {
        self.groups.iter().map(|g| g.len() - 1).sum()
    }

    /// Only the groups for which `keep(index, members)` holds (for the planner's choice).
    pub fn retain(&self, circuit: &Circuit, mut keep: impl FnMut(usize, &[ElementRef]) -> bool) -> Self {
        let groups = self.groups.iter().enumerate().filter(|(g, m)| keep(*g, m)).map(|(_, m)| m.clone()).collect();
        Self::from_groups(circuit, groups)
    }

    /// Splits every group into consecutive chunks of at most `max_members` (a bootstrap can
    /// only pack as many tables as its polynomial has room for); `max_members(group)` may
    /// depend on the group. Chunks of one member are dropped.
    pub fn split(&self, circuit: &Circuit, mut max_members: impl FnMut(&[ElementRef]) -> usize) -> Self {
        let mut groups = Vec::new();
        for g in &self.groups {
            let k = max_members(g);
            if k >= 2 {
                groups.extend(g.chunks(k).map(<[ElementRef]>::to_vec));
            }
        }
        Self::from_groups(circuit, groups)
    }

    /// Extra bits a bootstrap resolves to keep the tables of a group of `k` apart:
    /// `ceil(log2 k)` (0 for a lone lookup).
    pub fn slot_bits(k: usize) -> u32 {
        k.max(1).next_power_of_two().trailing_zeros()
    }

    /// The slot bits of the group `site` belongs to (0 when it is alone).
    pub fn slot_bits_of(&self, site: ElementRef) -> u32 {
        self.group_of(site).map_or(0, |g| Self::slot_bits(self.groups[g].len()))
    }
}

/// The table a lookup element applies.
pub fn table_of(circuit: &Circuit, site: ElementRef) -> Option<&Table> {
    let node = circuit.nodes().get(site.node.0)?;
    match &node.op {
        Op::Lookup(_, lut) => Some(lut.table_for(site.index, node.shape.last().copied().unwrap_or(1))),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::builder::CircuitBuilder;
    use crate::ir::{Lut, RoundingMode};

    #[test]
    fn lookups_of_one_value_share_through_structural_nodes() {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[2], Interval::new(0, 3).unwrap());
        let t = |k: i64| Lut::Single(Table::from_fn(0, 2, move |v| v * k));
        let a = b.lookup(x, t(1)).unwrap();
        let c = b.lookup(x, t(2)).unwrap();
        let swapped = b.gather(x, vec![1, 0], &[2]).unwrap();
        let d = b.lookup(swapped, t(3)).unwrap();
        // A rounding changes the read: not shared with the plain reads.
        let r = b.round(x, 1, RoundingMode::Approximate).unwrap();
        let e = b.lookup(r, Lut::Single(Table::from_fn(0, 2, |v| v))).unwrap();
        for id in [a, c, d, e] {
            b.output(id).unwrap();
        }
        let circuit = b.build().unwrap();
        let shared = SharedReads::find(&circuit);
        let at = |node, index| ElementRef { node, index };
        assert_eq!(shared.groups(), &[vec![at(a, 0), at(c, 0), at(d, 1)], vec![at(a, 1), at(c, 1), at(d, 0)]]);
        assert_eq!(shared.group_of(at(e, 0)), None);
        assert_eq!(shared.bootstraps_saved(), 4);
        assert_eq!(SharedReads::slot_bits(3), 2);
        assert_eq!(shared.slot_bits_of(at(c, 1)), 2);
        let split = shared.split(&circuit, |_| 2);
        assert_eq!(split.groups(), &[vec![at(a, 0), at(c, 0)], vec![at(a, 1), at(c, 1)]]);
        let kept = shared.retain(&circuit, |g, _| g == 1);
        assert_eq!(kept.groups().len(), 1);
        assert_eq!(kept.group_of(at(a, 0)), None);
        assert_eq!(kept.group_of(at(d, 0)), Some(0));
    }
}
