//! Quantization of a tree ensemble: per-feature input quantizers, integer thresholds that
//! reproduce every float decision on dequantized inputs for models fitted on the grid (and
//! follow the calibration data in the one bin a threshold of an imported model falls in),
//! and integer leaf values on one scale for the whole ensemble.

use fheml_circuits::{PostProcessing, Prediction, Task};
use fheml_quant::{PerFeatureQuantizer, QuantizerConfig, UniformQuantizer};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use fheml_quant::DataError;

use crate::ensemble::{TreeEnsemble, TreeNode};
use crate::error::{Result, TreeError};

/// A node of a [`QuantizedTree`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuantizedNode {
    /// `q[feature] <= threshold` goes to `left`, otherwise to `right`. The threshold may lie
    /// outside the quantized range: below it the split always goes right, at or above
    /// `qmax` always left.
    Split {
        /// The feature compared.
        feature: usize,
        /// The integer threshold.
        threshold: i64,
        /// Node taken when `q <= threshold`.
        left: usize,
        /// Node taken otherwise.
        right: usize,
    },
    /// Adds `value` (integer) to output `output`.
    Leaf {
        /// The output.
        output: usize,
        /// The quantized value.
        value: i64,
    },
}

/// A tree over quantized features; node indices are those of the float tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantizedTree {
    /// The nodes, root first.
    pub nodes: Vec<QuantizedNode>,
}

/// How leaf values became integers: `value ≈ offset + scale · q`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeafQuantization {
    /// Step between two integer leaf values.
    pub scale: f64,
    /// The float value of integer 0 (added once per tree to the output the tree feeds).
    pub offset: f64,
}

/// A quantized tree ensemble: the exact integer model the circuit computes.
///
/// The integer score of output `o` is the sum of the integer values of the leaves reached
/// that add to `o`; the float score is `output_scale · integer + output_offset[o]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizedEnsemble {
    /// The input quantizers (unsigned, `n_bits`, one per feature).
    pub quantizer: PerFeatureQuantizer,
    /// The integer trees.
    pub trees: Vec<QuantizedTree>,
    /// Number of outputs.
    pub n_outputs: usize,
    /// How leaf values were quantized.
    pub leaves: LeafQuantization,
    /// Multiplies integer scores.
    pub output_scale: f64,
    /// Added to each decoded score (`base_score[o] + tree_offset ·` the number of trees
    /// adding to `o`).
    pub output_offset: Vec<f64>,
    /// What one tree's integer 0 stands for in output units (`scale · leaf offset`).
    pub tree_offset: f64,
    /// The ensemble's base scores.
    pub base_score: Vec<f64>,
    /// What the client computes after decoding.
    pub post: PostProcessing,
    /// Classification or regression.
    pub task: Task,
}

/// The integer threshold of a split: the largest `q` in `[qmin, qmax]` whose inputs go
/// left, or `qmin - 1` when none does.
///
/// Every bin (the inputs that round to one `q`) lies on one side of the threshold but the
/// one the threshold falls in. A bin goes where its centre, the dequantized value, goes;
/// the values going left are then a prefix of the range (dequantization is increasing and
/// every split rule is monotone), which a binary search finds. The bin that holds the
/// threshold goes instead where most of the calibration values that round into it go,
/// when they do not split evenly. That matters for imported models, fitted on the raw
/// features: XGBoost's thresholds are feature values (`x < t` with many inputs equal to
/// `t`), a bootstrap sample can put a scikit-learn midpoint on a feature value, and in
/// both cases the centre may lie on the other side of `t` than the inputs equal to it.
/// Models fitted on the grid (fheml's own: every threshold between two grid values or on
/// one) keep the centre's side: a threshold within a thousandth of a step of its bin's
/// centre is left to the centre, and a bin that a threshold bounds holds calibration
/// values of one side only.
///
/// `sorted` holds the feature's calibration values in increasing order.
fn integer_threshold(ensemble: &TreeEnsemble, q: &UniformQuantizer, threshold: f64, sorted: &[f64]) -> i64 {
    let goes_left = |v: i64| ensemble.goes_left(q.dequantize_value(v), threshold);
    let (mut lo, mut hi) = (q.qmin(), q.qmax() + 1); // invariant: left below lo, right from hi
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if goes_left(mid) { lo = mid + 1 } else { hi = mid }
    }
    let by_centre = lo - 1;
    let Ok((bin, _)) = q.quantize_value(threshold) else {
        return by_centre;
    };
    let (centre, step) = (q.dequantize_value(bin), q.scale());
    if (threshold - centre).abs() <= step * 1e-3 {
        return by_centre;
    }
    // The calibration values that round to `bin` lie within a step of its centre.
    let start = sorted.partition_point(|x| *x < centre - step);
    let (mut left, mut right) = (0usize, 0usize);
    for &x in sorted[start..].iter().take_while(|x| **x <= centre + step) {
        if q.quantize_value(x).is_ok_and(|(v, _)| v == bin) {
            if ensemble.goes_left(x, threshold) { left += 1 } else { right += 1 }
        }
    }
    match left.cmp(&right) {
        std::cmp::Ordering::Greater => by_centre.max(bin),
        std::cmp::Ordering::Less => by_centre.min(bin - 1),
        std::cmp::Ordering::Equal => by_centre,
    }
}

/// Picks the leaf quantization: exact when every leaf value is a small integer (vote
/// counting), affine from the smallest leaf value when each tree adds to one output only,
/// symmetric around zero otherwise.
fn leaf_quantization(ensemble: &TreeEnsemble, leaf_bits: u8) -> LeafQuantization {
    let values: Vec<f64> = ensemble
        .trees
        .iter()
        .flat_map(|t| t.nodes.iter())
        .filter_map(|n| match n {
            TreeNode::Leaf { value, .. } => Some(*value),
            TreeNode::Split { .. } => None,
        })
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let levels = ((1u64 << leaf_bits) - 1) as f64;
    if values.iter().all(|v| v.fract() == 0.0) && hi - lo <= levels && lo >= -levels {
        return LeafQuantization { scale: 1.0, offset: 0.0 };
    }
    let single_output = ensemble.trees.iter().all(|t| {
        let mut outputs = t.nodes.iter().filter_map(|n| match n {
            TreeNode::Leaf { output, .. } => Some(*output),
            TreeNode::Split { .. } => None,
        });
        let first = outputs.next();
        outputs.all(|o| Some(o) == first)
    });
    if single_output {
        let scale = if hi > lo { (hi - lo) / levels } else { 1.0 };
        LeafQuantization { scale, offset: lo }
    } else {
        let m = lo.abs().max(hi.abs());
        let half = ((1u64 << (leaf_bits - 1)) - 1).max(1) as f64;
        LeafQuantization { scale: if m > 0.0 { m / half } else { 1.0 }, offset: 0.0 }
    }
}

impl QuantizedEnsemble {
    /// Quantizes `ensemble`: input quantizers calibrated per feature on `calibration`
    /// (unsigned, `n_bits`), thresholds mapped to integers (see `integer_threshold`: the
    /// calibration rows also decide the bin a threshold falls in), leaf values on
    /// `leaf_bits`.
    pub fn new(ensemble: &TreeEnsemble, calibration: ArrayView2<f64>, n_bits: u8, leaf_bits: u8) -> Result<Self> {
        ensemble.validate()?;
        ensemble.check_rows(calibration)?;
        if calibration.nrows() == 0 {
            return Err(TreeError::Data("no calibration row".into()));
        }
        if !(2..=16).contains(&leaf_bits) {
            return Err(TreeError::param("leaf_bits", format!("must be in 2..=16, got {leaf_bits}")));
        }
        let config = QuantizerConfig::params().n_bits(n_bits).signed(false).symmetric(false).check()?;
        let quantizer = PerFeatureQuantizer::calibrate(&config, calibration)?;
        let leaves = leaf_quantization(ensemble, leaf_bits);
        let sorted: Vec<Vec<f64>> = calibration
            .columns()
            .into_iter()
            .map(|c| {
                let mut c = c.to_vec();
                c.sort_by(f64::total_cmp);
                c
            })
            .collect();
        let mut trees = Vec::with_capacity(ensemble.trees.len());
        let mut trees_per_output = vec![0usize; ensemble.n_outputs];
        for tree in &ensemble.trees {
            let mut nodes = Vec::with_capacity(tree.nodes.len());
            let mut first_output = None;
            for node in &tree.nodes {
                nodes.push(match node {
                    TreeNode::Split { feature, threshold, left, right } => {
                        let q = quantizer.get(*feature).ok_or(TreeError::Input(DataError::FeatureCount {
                            expected: ensemble.n_features,
                            got: quantizer.len(),
                        }))?;
                        QuantizedNode::Split {
                            feature: *feature,
                            threshold: integer_threshold(ensemble, q, *threshold, &sorted[*feature]),
                            left: *left,
                            right: *right,
                        }
                    }
                    TreeNode::Leaf { output, value } => {
                        first_output.get_or_insert(*output);
                        let q = ((value - leaves.offset) / leaves.scale).round();
                        QuantizedNode::Leaf { output: *output, value: q as i64 }
                    }
                });
            }
            if let Some(o) = first_output {
                trees_per_output[o] += 1;
            }
            trees.push(QuantizedTree { nodes });
        }
        let output_scale = ensemble.scale * leaves.scale;
        let output_offset = ensemble
            .base_score
            .iter()
            .zip(&trees_per_output)
            .map(|(b, n)| b + ensemble.scale * leaves.offset * *n as f64)
            .collect();
        Ok(Self {
            quantizer,
            trees,
            n_outputs: ensemble.n_outputs,
            leaves,
            output_scale,
            output_offset,
            tree_offset: ensemble.scale * leaves.offset,
            base_score: ensemble.base_score.clone(),
            post: ensemble.post,
            task: ensemble.task.clone(),
        })
    }

    /// Checks the structure (what [`crate::lower::lower`] relies on): every node reached
    /// once from its root, features, children and outputs in range, one offset per output.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TreeError::InvalidEnsemble(m));
        if self.trees.is_empty() || self.n_outputs == 0 || self.quantizer.is_empty() {
            return bad("a quantized ensemble needs trees, outputs and features".into());
        }
        if self.output_offset.len() != self.n_outputs || self.base_score.len() != self.n_outputs {
            return bad(format!("{} offsets for {} outputs", self.output_offset.len(), self.n_outputs));
        }
        for (t, tree) in self.trees.iter().enumerate() {
            let n = tree.nodes.len();
            let mut seen = vec![false; n];
            let mut stack = vec![0usize];
            while let Some(id) = stack.pop() {
                let Some(node) = tree.nodes.get(id) else {
                    return bad(format!("tree {t}: node {id} out of range ({n} nodes)"));
                };
                if std::mem::replace(&mut seen[id], true) {
                    return bad(format!("tree {t}: node {id} is reached twice"));
                }
                match node {
                    QuantizedNode::Split { feature, left, right, .. } => {
                        if *feature >= self.n_features() {
                            return bad(format!("tree {t} node {id}: feature {feature} of {}", self.n_features()));
                        }
                        stack.push(*right);
                        stack.push(*left);
                    }
                    QuantizedNode::Leaf { output, .. } => {
                        if *output >= self.n_outputs {
                            return bad(format!("tree {t} node {id}: output {output} of {}", self.n_outputs));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.quantizer.len()
    }

    /// Index of the leaf of tree `t` that the quantized row `q` reaches; `None` when there
    /// is no tree `t` or `q` is too short.
    pub fn leaf_index(&self, t: usize, q: &[i64]) -> Option<usize> {
        let nodes = &self.trees.get(t)?.nodes;
        let mut id = 0;
        for _ in 0..nodes.len() {
            match nodes.get(id)? {
                QuantizedNode::Leaf { .. } => return Some(id),
                QuantizedNode::Split { feature, threshold, left, right } => {
                    id = if *q.get(*feature)? <= *threshold { *left } else { *right };
                }
            }
        }
        None
    }

    /// Integer scores of a quantized row: per output, the sum of the reached leaves' values.
    pub fn integer_scores(&self, q: &[i64]) -> Result<Vec<i64>> {
        if q.len() != self.n_features() {
            return Err(TreeError::Input(DataError::FeatureCount { expected: self.n_features(), got: q.len() }));
        }
        let mut sums = vec![0i64; self.n_outputs];
        for t in 0..self.trees.len() {
            let leaf = self.leaf_index(t, q).and_then(|i| self.trees[t].nodes.get(i));
            if let Some(QuantizedNode::Leaf { output, value }) = leaf
                && let Some(s) = sums.get_mut(*output)
            {
                *s += value;
            }
        }
        Ok(sums)
    }

    /// Float scores from integer scores.
    pub fn decode(&self, integer: &[i64]) -> Vec<f64> {
        integer.iter().zip(&self.output_offset).map(|(s, o)| self.output_scale * *s as f64 + o).collect()
    }

    /// Quantizes float rows (clipping to the calibrated range), `[rows][features]`.
    pub fn quantize_rows(&self, x: ArrayView2<f64>) -> Result<Vec<Vec<i64>>> {
        fheml_quant::data::check_prediction_rows(x, self.n_features())?;
        x.rows().into_iter().map(|r| Ok(self.quantizer.quantize_row(&r.to_vec())?.0)).collect()
    }

    /// Predictions of the integer model (what the circuit computes, without the circuit).
    pub fn predict_detailed(&self, x: ArrayView2<f64>) -> Result<Vec<Prediction>> {
        self.quantize_rows(x)?
            .iter()
            .map(|q| {
                let scores = self.decode(&self.integer_scores(q)?);
                self.post.apply(scores, &self.task).map_err(TreeError::from)
            })
            .collect()
    }

    /// Dequantizes a quantized row.
    pub fn dequantize_row(&self, q: &[i64]) -> Vec<f64> {
        q.iter().zip(self.quantizer.quantizers()).map(|(v, qz)| qz.dequantize_value(*v)).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ensemble::{Precision, SplitRule, Tree};
    use ndarray::{Array2, array};

    fn ensemble(rule: SplitRule, threshold: f64) -> TreeEnsemble {
        TreeEnsemble {
            trees: vec![Tree {
                nodes: vec![
                    TreeNode::Split { feature: 0, threshold, left: 1, right: 2 },
                    TreeNode::Leaf { output: 0, value: -1.0 },
                    TreeNode::Leaf { output: 0, value: 0.5 },
                ],
            }],
            n_features: 1,
            n_outputs: 1,
            rule,
            precision: Precision::F64,
            base_score: vec![0.0],
            scale: 1.0,
            post: PostProcessing::Identity,
            task: Task::Regression,
        }
    }

    #[test]
    fn thresholds_on_a_grid_point_follow_the_rule() {
        // Calibrated on [0, 7] with 3 bits: q = x exactly.
        let calib = array![[0.0], [7.0]];
        let le = QuantizedEnsemble::new(&ensemble(SplitRule::LessOrEqual, 3.0), calib.view(), 3, 6).unwrap();
        assert!(matches!(le.trees[0].nodes[0], QuantizedNode::Split { threshold: 3, .. }));
        let lt = QuantizedEnsemble::new(&ensemble(SplitRule::Less, 3.0), calib.view(), 3, 6).unwrap();
        assert!(matches!(lt.trees[0].nodes[0], QuantizedNode::Split { threshold: 2, .. }));
        // Outside the range: always right / always left.
        let below = QuantizedEnsemble::new(&ensemble(SplitRule::Less, -5.0), calib.view(), 3, 6).unwrap();
        assert!(matches!(below.trees[0].nodes[0], QuantizedNode::Split { threshold: -1, .. }));
        let above = QuantizedEnsemble::new(&ensemble(SplitRule::Less, 50.0), calib.view(), 3, 6).unwrap();
        assert!(matches!(above.trees[0].nodes[0], QuantizedNode::Split { threshold: 7, .. }));
    }

    #[test]
    fn the_bin_holding_a_threshold_follows_its_calibration_values() {
        // 3 bits on [0, 7]: step 1, the bin of 3 holds [2.5, 3.5).
        let threshold = |rule, t: f64, extra: &[f64]| {
            let mut values = vec![0.0, 7.0];
            values.extend_from_slice(extra);
            let calib = Array2::from_shape_vec((values.len(), 1), values).unwrap();
            match QuantizedEnsemble::new(&ensemble(rule, t), calib.view(), 3, 6).unwrap().trees[0].nodes[0] {
                QuantizedNode::Split { threshold, .. } => threshold,
                QuantizedNode::Leaf { .. } => panic!("a leaf"),
            }
        };
        // Without calibration values in the bin, its centre decides: 3 < 3.3, left.
        assert_eq!(threshold(SplitRule::Less, 3.3, &[]), 3);
        // Inputs equal to an XGBoost threshold (`x < 3.3` is false at 3.3) send it right.
        assert_eq!(threshold(SplitRule::Less, 3.3, &[3.3, 3.3, 3.0]), 2);
        assert_eq!(threshold(SplitRule::Less, 3.3, &[3.3, 3.0, 2.9]), 3);
        assert_eq!(threshold(SplitRule::Less, 3.3, &[3.3, 3.0]), 3, "a tie keeps the centre");
        // `x <= 2.8` is true at 2.8: the bin of 3 goes left although its centre does not.
        assert_eq!(threshold(SplitRule::LessOrEqual, 2.8, &[]), 2);
        assert_eq!(threshold(SplitRule::LessOrEqual, 2.8, &[2.8, 2.7]), 3);
        // A threshold on (or within a thousandth of a step of) a centre keeps the centre.
        assert_eq!(threshold(SplitRule::Less, 3.0 + 1e-6, &[3.2, 3.4, 3.1]), 3);
        // Values elsewhere do not count.
        assert_eq!(threshold(SplitRule::Less, 3.3, &[3.6, 3.6, 3.6, 2.4, 2.4]), 3);
    }

    #[test]
    fn affine_leaves_decode_exactly_at_the_extremes() {
        let calib = array![[0.0], [7.0]];
        let q = QuantizedEnsemble::new(&ensemble(SplitRule::LessOrEqual, 3.0), calib.view(), 3, 4).unwrap();
        assert_eq!(q.leaves.offset, -1.0);
        let low = q.decode(&q.integer_scores(&[1]).unwrap());
        let high = q.decode(&q.integer_scores(&[5]).unwrap());
        assert!((low[0] + 1.0).abs() < 1e-12 && (high[0] - 0.5).abs() < 1e-12);
    }
}
