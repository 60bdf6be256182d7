//! Lowering a quantized ensemble to an integer circuit with one bootstrap per leaf at most.
//!
//! The client encrypts a thermometer encoding of every quantized feature: bit `i` of feature
//! `f` is `[q_f > qmin + i]`. A split `q_f <= T` is then `1 - bit(T - qmin)`, and its
//! negation `bit(T - qmin)`: comparisons cost nothing. Along a leaf's path the conditions on
//! one feature collapse into an interval `a <= q_f <= b`, at most two bits. The path sum
//! `s` of those bits (or their complements) equals the number of terms `n` exactly when
//! the leaf is reached, so:
//!
//! 1. one matrix product from the flattened bits to every leaf (entries ±1), plus a constant
//!    for the complemented bits, gives every leaf's `s` (leveled);
//! 2. one per-channel table lookup maps `s == n` to the leaf's integer value, anything else
//!    to 0: one bootstrap per leaf, reading `log2(n + 1)` bits;
//! 3. one matrix product (0/±1 entries) adds the leaves of all trees into each output
//!    (leveled), and a constant adds the baselines.
//!
//! Exactly one leaf of every tree is reached, so each tree's most common leaf contribution
//! (its baseline) is added as a constant and only the other leaves need a bootstrap, with
//! their difference to the baseline as table value; leaves that no quantized input can
//! reach are dropped. Vote counting (classifier leaves add 1 to their class) uses one
//! bootstrap per leaf that does not vote like the baseline.

use fheml_circuits::{CircuitBuilder, InputEncoding, InputSpec, Interval, Lut, ModelCircuit, OutputSpec, Table};
use ndarray::{Array2, ArrayD, IxDyn};

use crate::error::{Result, TreeError};
use crate::quantize::{QuantizedEnsemble, QuantizedNode};

/// A reachable leaf: the thermometer terms of its path and its contribution.
struct ReachableLeaf {
    /// `(flat bit index, complemented)`.
    terms: Vec<(usize, bool)>,
    output: usize,
    value: i64,
}

/// One bootstrap: a leaf's path sum looked up into `value`, added into `targets`.
struct Channel {
    terms: Vec<(usize, bool)>,
    value: i64,
    targets: Vec<(usize, i64)>,
}

/// Per-feature intervals `(feature, lo, hi)` narrowed along a path.
type Intervals = Vec<(usize, i64, i64)>;

/// Walks a quantized tree and returns its reachable leaves with their interval terms.
fn reachable_leaves(q: &QuantizedEnsemble, t: usize, levels: usize) -> Vec<ReachableLeaf> {
    let quantizers = q.quantizer.quantizers();
    let nodes = &q.trees[t].nodes;
    let mut out = Vec::new();
    // (node, per-feature intervals narrowed along the path)
    let mut stack: Vec<(usize, Intervals)> = vec![(0, Vec::new())];
    while let Some((id, intervals)) = stack.pop() {
        match nodes.get(id) {
            Some(QuantizedNode::Leaf { output, value }) => {
                let mut terms = Vec::new();
                for &(f, a, b) in &intervals {
                    let (qmin, qmax) = (quantizers[f].qmin(), quantizers[f].qmax());
                    if a > qmin {
                        terms.push((f * levels + (a - 1 - qmin) as usize, false));
                    }
                    if b < qmax {
                        terms.push((f * levels + (b - qmin) as usize, true));
                    }
                }
                out.push(ReachableLeaf { terms, output: *output, value: *value });
            }
            Some(QuantizedNode::Split { feature, threshold, left, right }) => {
                let (qmin, qmax) = (quantizers[*feature].qmin(), quantizers[*feature].qmax());
                let current = intervals.iter().find(|(f, ..)| f == feature).map_or((qmin, qmax), |&(_, a, b)| (a, b));
                let narrowed = |a: i64, b: i64| {
                    let mut next: Vec<_> = intervals.iter().copied().filter(|(f, ..)| f != feature).collect();
                    next.push((*feature, a, b));
                    next
                };
                // Right: q > threshold. Left: q <= threshold. Empty intervals are unreachable.
                let (ra, rb) = (current.0.max(threshold.saturating_add(1)), current.1);
                if ra <= rb {
                    stack.push((*right, narrowed(ra, rb)));
                }
                let (la, lb) = (current.0, current.1.min(*threshold));
                if la <= lb {
                    stack.push((*left, narrowed(la, lb)));
                }
            }
            None => {}
        }
    }
    out
}

/// Bits of a table covering `0..=n`.
fn table_bits(n: usize) -> u32 {
    (usize::BITS - n.leading_zeros()).max(1)
}

/// What [`lower`] produced, besides the circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoweringSummary {
    /// Table lookups (= bootstraps per sample).
    pub bootstraps: usize,
    /// Reachable leaves over all trees.
    pub reachable_leaves: usize,
    /// Largest number of path terms of a looked-up leaf.
    pub max_path_terms: usize,
}

/// Lowers `q` to a circuit. With `sum_in_fhe` the outputs are the integer scores
/// (`[n_outputs]`); otherwise they are per-tree scores (`[n_trees, n_outputs]`) that the
/// client sums after decryption (see [`fheml_circuits::OutputSpec`]'s groups).
pub fn lower(q: &QuantizedEnsemble, sum_in_fhe: bool) -> Result<(ModelCircuit, LoweringSummary)> {
    q.validate()?;
    let spec = InputSpec { quantizer: q.quantizer.clone(), encoding: InputEncoding::Thermometer };
    let levels = spec.thermometer_levels();
    let n_features = q.n_features();
    let n_trees = q.trees.len();
    let n_out = q.n_outputs;
    let width = if sum_in_fhe { n_out } else { n_trees * n_out };
    let slot = |t: usize, o: usize| if sum_in_fhe { o } else { t * n_out + o };

    let mut channels: Vec<Channel> = Vec::new();
    let mut constants = vec![0i64; width];
    // Exactly one leaf of each tree is reached: each output moves, per tree, between the
    // smallest and largest contribution of a single leaf (the baseline contributes 0).
    let (mut exclusive_lo, mut exclusive_hi) = (vec![0i64; width], vec![0i64; width]);
    let mut reachable = 0;
    for t in 0..n_trees {
        let (mut tree_lo, mut tree_hi) = (vec![0i64; width], vec![0i64; width]);
        let leaves = reachable_leaves(q, t, levels);
        reachable += leaves.len();
        // The baseline: the most common contribution (ties to the first seen).
        let mut counts: Vec<((usize, i64), usize)> = Vec::new();
        for leaf in &leaves {
            match counts.iter_mut().find(|(k, _)| *k == (leaf.output, leaf.value)) {
                Some((_, c)) => *c += 1,
                None => counts.push(((leaf.output, leaf.value), 1)),
            }
        }
        let Some(&((base_out, base_value), _)) = counts.iter().rev().max_by_key(|(_, c)| *c) else {
            return Err(TreeError::InvalidEnsemble(format!("tree {t} has no reachable leaf")));
        };
        constants[slot(t, base_out)] += base_value;
        for leaf in leaves {
            if (leaf.output, leaf.value) == (base_out, base_value) {
                continue;
            }
            let mut new: Vec<(i64, Vec<(usize, i64)>)> = Vec::new();
            if leaf.output == base_out {
                new.push((leaf.value - base_value, vec![(slot(t, leaf.output), 1)]));
            } else if leaf.value == base_value {
                new.push((leaf.value, vec![(slot(t, leaf.output), 1), (slot(t, base_out), -1)]));
            } else {
                if leaf.value != 0 {
                    new.push((leaf.value, vec![(slot(t, leaf.output), 1)]));
                }
                if base_value != 0 {
                    new.push((base_value, vec![(slot(t, base_out), -1)]));
                }
            }
            let mut contribution = vec![0i64; width];
            for (value, targets) in &new {
                for &(o, w) in targets {
                    contribution[o] += w * value;
                }
            }
            if !leaf.terms.is_empty() {
                for o in 0..width {
                    tree_lo[o] = tree_lo[o].min(contribution[o]);
                    tree_hi[o] = tree_hi[o].max(contribution[o]);
                }
            }
            for (value, targets) in new {
                if leaf.terms.is_empty() {
                    // Always reached (cannot happen beside a baseline, kept for safety).
                    for (o, w) in targets {
                        constants[o] += w * value;
                    }
                } else {
                    channels.push(Channel { terms: leaf.terms.clone(), value, targets });
                }
            }
        }
        for o in 0..width {
            exclusive_lo[o] += tree_lo[o];
            exclusive_hi[o] += tree_hi[o];
        }
    }

    let mut b = CircuitBuilder::new();
    let input = b.input(&[n_features, levels], Interval { lo: 0, hi: 1 });
    let bits = b.reshape(input, &[n_features * levels])?;
    let summed = if channels.is_empty() {
        b.matmul(bits, Array2::zeros((n_features * levels, width)))?
    } else {
        let c = channels.len();
        let mut w1 = Array2::<i64>::zeros((n_features * levels, c));
        let mut c1 = vec![0i64; c];
        let mut w2 = Array2::<i64>::zeros((c, width));
        let mut tables = Vec::with_capacity(c);
        for (j, ch) in channels.iter().enumerate() {
            for &(bit, complemented) in &ch.terms {
                if complemented {
                    w1[[bit, j]] -= 1;
                    c1[j] += 1;
                } else {
                    w1[[bit, j]] += 1;
                }
            }
            let n = ch.terms.len() as i64;
            let value = ch.value;
            tables.push(Table::from_fn(0, table_bits(ch.terms.len()), move |s| if s == n { value } else { 0 }));
            for &(o, w) in &ch.targets {
                w2[[j, o]] += w;
            }
        }
        let sums = b.matmul(bits, w1)?;
        let sums = b.add_const(sums, ArrayD::from_shape_vec(IxDyn(&[c]), c1).map_err(shape_error)?)?;
        let looked_up = b.lookup(sums, Lut::PerChannel(tables))?;
        b.matmul(looked_up, w2)?
    };
    let mut out =
        b.add_const(summed, ArrayD::from_shape_vec(IxDyn(&[width]), constants.clone()).map_err(shape_error)?)?;
    let exclusive: Vec<Interval> = b
        .element_ranges(out)
        .iter()
        .enumerate()
        .map(|(o, wide)| Interval {
            lo: (constants[o] + exclusive_lo[o]).clamp(wide.lo, wide.hi),
            hi: (constants[o] + exclusive_hi[o]).clamp(wide.lo, wide.hi),
        })
        .collect();
    if exclusive.as_slice() != b.element_ranges(out) {
        out = b.narrow(out, exclusive)?;
    }
    if !sum_in_fhe {
        out = b.reshape(out, &[n_trees, n_out])?;
    }
    // Vote counts are compared as integers (ties included): exact. Margins and regression
    // values are real: one unit of error is one quantization step of a leaf value.
    if q.post == fheml_circuits::PostProcessing::Argmax {
        b.output(out)?;
    } else {
        b.output_real(out, 1)?;
    }
    let circuit = b.build()?;

    let offset = if sum_in_fhe {
        q.output_offset.clone()
    } else {
        // Per tree: its share of the leaf offset; the base score once, on tree 0.
        let mut offsets = vec![0.0; width];
        for (t, tree) in q.trees.iter().enumerate() {
            if let Some(o) = tree.nodes.iter().find_map(|n| match n {
                QuantizedNode::Leaf { output, .. } => Some(*output),
                QuantizedNode::Split { .. } => None,
            }) {
                offsets[slot(t, o)] += q.tree_offset;
            }
        }
        for (o, base) in q.base_score.iter().enumerate() {
            offsets[slot(0, o)] += base;
        }
        offsets
    };
    let summary = LoweringSummary {
        bootstraps: channels.len(),
        reachable_leaves: reachable,
        max_path_terms: channels.iter().map(|c| c.terms.len()).max().unwrap_or(0),
    };
    let model = ModelCircuit {
        circuit,
        inputs: vec![spec],
        outputs: vec![OutputSpec { scale: vec![q.output_scale], offset, groups: if sum_in_fhe { 1 } else { n_trees } }],
        post: q.post,
        task: q.task.clone(),
    };
    Ok((model, summary))
}

fn shape_error(e: ndarray::ShapeError) -> TreeError {
    TreeError::InvalidEnsemble(format!("internal shape error: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    use crate::ensemble::{Precision, SplitRule, Tree, TreeEnsemble, TreeNode};
    use fheml_circuits::{PostProcessing, Task};
    use ndarray::array;

    fn regression(trees: Vec<Tree>) -> TreeEnsemble {
        TreeEnsemble {
            trees,
            n_features: 2,
            n_outputs: 1,
            rule: SplitRule::LessOrEqual,
            precision: Precision::F64,
            base_score: vec![0.0],
            scale: 1.0,
            post: PostProcessing::Identity,
            task: Task::Regression,
        }
    }

    fn split(feature: usize, threshold: f64, left: usize, right: usize) -> TreeNode {
        TreeNode::Split { feature, threshold, left, right }
    }

    fn leaf(value: f64) -> TreeNode {
        TreeNode::Leaf { output: 0, value }
    }

    /// Every quantized input (3 bits, two features) gives the integer model's scores.
    fn exhaustive(e: &TreeEnsemble) -> LoweringSummary {
        let calib = array![[0.0, 0.0], [7.0, 7.0]];
        let q = QuantizedEnsemble::new(e, calib.view(), 3, 4).unwrap();
        let (model, summary) = lower(&q, true).unwrap();
        assert_eq!(model.circuit.cost().bootstraps, summary.bootstraps);
        for a in 0..8 {
            for b in 0..8 {
                let bits = model.inputs[0].encode_quantized(&[a, b]);
                let out = model.circuit.evaluate_clear(&[bits]).unwrap();
                assert_eq!(out, vec![q.integer_scores(&[a, b]).unwrap()], "q = ({a}, {b})");
            }
        }
        summary
    }

    #[test]
    fn a_stump_needs_one_bootstrap() {
        let e = regression(vec![Tree { nodes: vec![split(0, 2.5, 1, 2), leaf(1.0), leaf(3.0)] }]);
        assert_eq!(exhaustive(&e).bootstraps, 1);
    }

    #[test]
    fn repeated_features_collapse_and_unreachable_leaves_are_dropped() {
        // Root x0 <= 4.5; left: x0 <= 1.5 (two conditions on x0: one interval); right:
        // x1 <= 9 (always true on [0, 7]), whose right leaf is unreachable.
        let e = regression(vec![Tree {
            nodes: vec![
                split(0, 4.5, 1, 2),
                split(0, 1.5, 3, 4),
                split(1, 9.0, 5, 6),
                leaf(-2.0),
                leaf(0.5),
                leaf(1.0),
                leaf(7.0),
            ],
        }]);
        let s = exhaustive(&e);
        assert_eq!(s.reachable_leaves, 3);
        assert_eq!(s.bootstraps, 2);
        // The middle leaf 1.5 < x0 <= 4.5 reads two bits.
        assert_eq!(s.max_path_terms, 2);
    }

    #[test]
    fn several_trees_and_duplicate_values() {
        let t1 = Tree { nodes: vec![split(0, 3.5, 1, 2), leaf(1.0), split(1, 5.5, 3, 4), leaf(1.0), leaf(-1.0)] };
        let t2 = Tree { nodes: vec![split(1, 0.5, 1, 2), leaf(0.25), leaf(2.0)] };
        let s = exhaustive(&regression(vec![t1, t2, Tree::leaf(0, 0.75)]));
        assert_eq!(s.bootstraps, 2);
    }

    #[test]
    fn table_bits_cover_the_path_sum() {
        assert_eq!(table_bits(1), 1);
        assert_eq!(table_bits(2), 2);
        assert_eq!(table_bits(3), 2);
        assert_eq!(table_bits(4), 3);
        assert_eq!(table_bits(5), 3);
        assert_eq!(table_bits(8), 4);
    }
}
