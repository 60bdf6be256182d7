//! Noise propagation through the leveled operations, sound when summed values share
//! ancestry.
//!
//! Every fresh encryption and every bootstrap is a *noise source*: each element of an
//! `Op::Input`, `Op::Lookup` or `Op::Round` node carries an independent noise `e_s` of a
//! given variance. Every other element is a linear map of its operands (add_const,
//! reshape, narrow, gather and concat move or copy; mul_const, matmul, sum, add and sub
//! combine with integer weights), so its noise is exactly `Σ c_s·e_s` over the source
//! elements `s`. [`propagate_variance`] tracks the sparse coefficient vector `c` of every
//! element, so that the variance `Σ c_s²·var_s` is exact even when a value fans out and is
//! recombined before the next bootstrap (a Gemm feeding a Gemm, a convolution feeding an
//! average pool, `x + 3·x`, a gather that duplicates an element into one sum). Summing
//! `w²·v` over the operands as if they were independent underestimates such variances by
//! up to the fan-in; on circuits where no source reaches an element along two paths, both
//! agree.
//!
//! # Bounded work
//!
//! An element is tracked as `Σ c_s·e_s + r`: the exact part, and a residual `r` that may be
//! correlated with anything, known only through `std(r) ≤ slack` (`slack = 0` for exact
//! elements). Combining elements merges their coefficients (the coefficients of a common
//! source add before they are squared) and adds their slacks as `Σ |w_i|·slack_i`: the
//! standard deviation of a sum is at most the sum of the standard deviations, whatever the
//! correlation (Minkowski). The reported variance is `(√(Σ c_s²·var_s) + slack)²`.
//!
//! Two limits keep the work close to the circuit's leveled term count:
//! - an element whose vector would hold more than [`ELEMENT_CAP`] sources is *collapsed*:
//!   the standard deviation of its exact part moves into its slack (so its own variance stays
//!   exact), and its consumers combine it through the triangle inequality;
//! - once [`WORK_BUDGET`] source terms have been merged over the whole circuit, every further
//!   element is bounded from its operands' standard deviations alone (`std ≤ Σ |w_i|·std_i`).
//!
//! Both fallbacks only overestimate. A collapsed element is deliberately *not* turned into a
//! fresh opaque source: it shares sources with its neighbours, and treating it as
//! independent of them would underestimate again.
//!
//! Coefficient vectors are dropped as soon as the last consumer of their node is done, so
//! memory follows the live values, not the whole circuit.

use std::rc::Rc;

use crate::ir::{Circuit, NodeId, Op};

/// Most sources one element tracks exactly before it is collapsed into a bound.
pub(crate) const ELEMENT_CAP: usize = 4096;

/// Most source terms merged over one circuit before every further element is bounded by the
/// triangle inequality (about 16M terms: a fraction of a second, a few hundred MiB at worst).
pub(crate) const WORK_BUDGET: usize = 1 << 24;

/// Propagates noise variance through the leveled operations.
///
/// `source(node, element)` gives the variance of each source element: every element of the
/// inputs, lookups and roundings (a rounding is a bootstrap when materialised, and is read
/// through by its lookups otherwise, so its own value is then never combined). Each source
/// element is an independent noise; every other element's noise is tracked as an exact
/// linear combination of them, so values that share sources (fan-out then recombination
/// before a bootstrap) get their true variance, not the independent-operand estimate
/// `Σ w²·v`. The result is, per node and element, an upper bound on the noise variance in
/// that element's own units: exact (up to rounding) unless the work caps of the module
/// documentation are hit, in which case it is bounded through the triangle inequality.
pub fn propagate_variance(circuit: &Circuit, source: impl Fn(NodeId, usize) -> f64) -> Vec<Vec<f64>> {
    propagate(circuit, source, Limits::default()).variance
}

/// The work caps (see the module documentation); tests shrink them to reach the fallbacks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most sources per element.
    pub element_cap: usize,
    /// Most source terms merged over the whole circuit.
    pub work_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { element_cap: ELEMENT_CAP, work_budget: WORK_BUDGET }
    }
}

/// What [`propagate`] found.
#[derive(Debug, Clone)]
pub(crate) struct Propagation {
    /// Per node, per element: the variance bound.
    pub variance: Vec<Vec<f64>>,
    /// Per node, per element: whether the variance is exact (no slack).
    #[cfg_attr(not(test), allow(dead_code))]
    pub exact: Vec<Vec<bool>>,
    /// Source terms merged.
    #[cfg_attr(not(test), allow(dead_code))]
    pub work: usize,
    /// Elements collapsed into a bound (over the element cap, or after the budget ran out).
    #[cfg_attr(not(test), allow(dead_code))]
    pub collapsed: usize,
}

/// One element's noise: `Σ c_s·e_s + r` with `std(r) ≤ slack`.
#[derive(Debug, Clone)]
enum Elem {
    /// Source `s` itself (coefficient 1, no residual): no allocation for the most common case.
    Source(u32),
    /// Anything else; copies (gathers, reshapes, ...) share the coefficients.
    Lin {
        /// `(source, coefficient)`: distinct sources, non-zero coefficients.
        terms: Rc<[(u32, f64)]>,
        /// Bound on the standard deviation of the residual.
        slack: f64,
        /// `(√(Σ c_s²·var_s) + slack)²`, kept so that copies cost nothing.
        var: f64,
    },
}

impl Elem {
    /// Known only through a bound on its standard deviation.
    fn bound(std: f64) -> Self {
        Self::Lin { terms: Rc::from(&[][..]), slack: std, var: std * std }
    }

    fn slack(&self) -> f64 {
        match self {
            Elem::Source(_) => 0.0,
            Elem::Lin { slack, .. } => *slack,
        }
    }

    fn size(&self) -> usize {
        match self {
            Elem::Source(_) => 1,
            Elem::Lin { terms, .. } => terms.len(),
        }
    }
}

/// Merges coefficient vectors with a dense scratch array indexed by source.
struct Merger {
    limits: Limits,
    /// Variance of every source so far.
    source_var: Vec<f64>,
    /// The coefficients of the merge in progress; all zero between merges.
    coeff: Vec<f64>,
    /// The sources of the merge in progress (a source may repeat when its coefficient went
    /// back to zero and came back).
    touched: Vec<u32>,
    /// The merged terms before they are copied out.
    merged: Vec<(u32, f64)>,
    /// Bound-only elements share this (empty) slice.
    no_terms: Rc<[(u32, f64)]>,
    work: usize,
    exhausted: bool,
    collapsed: usize,
}

impl Merger {
    fn new(limits: Limits, sources: usize) -> Self {
        Self {
            limits,
            source_var: Vec::with_capacity(sources),
            coeff: Vec::with_capacity(sources),
            touched: Vec::new(),
            merged: Vec::new(),
            no_terms: Rc::from(&[][..]),
            work: 0,
            exhausted: false,
            collapsed: 0,
        }
    }

    fn bound(&self, std: f64, var: f64) -> Elem {
        Elem::Lin { terms: Rc::clone(&self.no_terms), slack: std, var }
    }

    /// A fresh independent source of variance `var`.
    fn source(&mut self, var: f64) -> Elem {
        match u32::try_from(self.source_var.len()) {
            Ok(id) if id < u32::MAX => {
                self.source_var.push(var);
                self.coeff.push(0.0);
                Elem::Source(id)
            }
            // Past 2^32 sources, a source is only known through its bound.
            _ => self.bound(var.sqrt(), var),
        }
    }

    fn var(&self, x: &Elem) -> f64 {
        match x {
            Elem::Source(s) => self.source_var[*s as usize],
            Elem::Lin { var, .. } => *var,
        }
    }

    fn accumulate(&mut self, s: u32, c: f64) {
        let k = s as usize;
        if self.coeff[k] == 0.0 {
            self.touched.push(s);
        }
        self.coeff[k] += c;
    }

    /// `Σ w_i·x_i` for non-zero weights.
    fn combine(&mut self, terms: &[(i64, &Elem)]) -> Elem {
        if let [(1, x)] = terms {
            return (*x).clone();
        }
        let (mut slack, mut size) = (0.0, 0usize);
        for (w, x) in terms {
            let s = x.slack();
            if s != 0.0 {
                slack += (*w as f64).abs() * s;
            }
            size = size.saturating_add(x.size());
        }
        if !self.exhausted && self.work.saturating_add(size) > self.limits.work_budget {
            self.exhausted = true;
        }
        if self.exhausted {
            self.collapsed += 1;
            let std: f64 = terms.iter().map(|(w, x)| (*w as f64).abs() * self.var(x).sqrt()).sum();
            return self.bound(std, std * std);
        }
        self.work += size;
        for (w, x) in terms {
            let w = *w as f64;
            match x {
                Elem::Source(s) => self.accumulate(*s, w),
                Elem::Lin { terms, .. } => {
                    for &(s, c) in terms.iter() {
                        self.accumulate(s, w * c);
                    }
                }
            }
        }
        self.merged.clear();
        for &s in &self.touched {
            let c = std::mem::take(&mut self.coeff[s as usize]);
            if c != 0.0 {
                self.merged.push((s, c));
            }
        }
        self.touched.clear();
        let exact: f64 = self.merged.iter().map(|&(s, c)| c * c * self.source_var[s as usize]).sum();
        if self.merged.len() > self.limits.element_cap {
            self.collapsed += 1;
            // Its own variance stays exact; its consumers see only the bound.
            let var = if slack == 0.0 { exact } else { (exact.sqrt() + slack).powi(2) };
            return self.bound(exact.sqrt() + slack, var);
        }
        let var = if slack == 0.0 { exact } else { (exact.sqrt() + slack).powi(2) };
        Elem::Lin { terms: Rc::from(&self.merged[..]), slack, var }
    }
}

fn at<'a>(elements: &'a [Elem], index: usize, unknown: &'a Elem) -> &'a Elem {
    elements.get(index).unwrap_or(unknown)
}

/// [`propagate_variance`] with explicit limits and statistics.
pub(crate) fn propagate(circuit: &Circuit, source: impl Fn(NodeId, usize) -> f64, limits: Limits) -> Propagation {
    let nodes = circuit.nodes();
    // The last node reading each node: its coefficient vectors are dropped after it.
    let mut last_use: Vec<Option<usize>> = vec![None; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        for operand in node.op.operands() {
            if let Some(slot) = last_use.get_mut(operand.0) {
                *slot = Some(slot.map_or(i, |j| j.max(i)));
            }
        }
    }
    let sources = nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Input { .. } | Op::Lookup(..) | Op::Round { .. }))
        .map(|n| n.len())
        .sum();
    // An element of a malformed circuit (an operand out of place): nothing is known.
    let unknown = Elem::bound(f64::INFINITY);
    let zero = Elem::bound(0.0);
    let mut merger = Merger::new(limits, sources);
    let mut lins: Vec<Vec<Elem>> = Vec::with_capacity(nodes.len());
    let mut variance = Vec::with_capacity(nodes.len());
    let mut exact = Vec::with_capacity(nodes.len());
    let empty: Vec<Elem> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let id = NodeId(i);
        let len = node.len();
        // Operands come earlier; anything else (a malformed circuit) reads as unknown.
        let of = |n: &NodeId| if n.0 < i { lins.get(n.0).unwrap_or(&empty) } else { &empty };
        let mut elements: Vec<Elem> = match &node.op {
            Op::Input { .. } | Op::Lookup(..) | Op::Round { .. } => {
                (0..len).map(|e| merger.source(source(id, e))).collect()
            }
            Op::Add(a, b) | Op::Sub(a, b) => {
                let (xa, xb) = (of(a), of(b));
                let sign = if matches!(node.op, Op::Sub(..)) { -1 } else { 1 };
                (0..len).map(|e| merger.combine(&[(1, at(xa, e, &unknown)), (sign, at(xb, e, &unknown))])).collect()
            }
            Op::AddConst(x, _) | Op::Reshape(x) | Op::Narrow(x) => {
                let xs = of(x);
                (0..len).map(|e| at(xs, e, &unknown).clone()).collect()
            }
            Op::MulConst(x, c) => {
                let xs = of(x);
                match c.broadcast(ndarray::IxDyn(&node.shape)) {
                    Some(cs) => cs
                        .iter()
                        .enumerate()
                        .map(|(e, &c)| if c == 0 { zero.clone() } else { merger.combine(&[(c, at(xs, e, &unknown))]) })
                        .collect(),
                    None => Vec::new(),
                }
            }
            Op::MatMul(x, w) => {
                let xs = of(x);
                let (k, m) = (w.nrows(), w.ncols());
                let mut terms = Vec::with_capacity(k);
                (0..len)
                    .map(|e| {
                        let (r, j) = (e / m.max(1), e % m.max(1));
                        terms.clear();
                        for i in 0..k {
                            match w.get((i, j)) {
                                Some(&wij) if wij != 0 => terms.push((wij, at(xs, r * k + i, &unknown))),
                                Some(_) => {}
                                None => return unknown.clone(),
                            }
                        }
                        merger.combine(&terms)
                    })
                    .collect()
            }
            Op::Sum { input, axis } => {
                let xs = of(input);
                match nodes.get(input.0).filter(|_| input.0 < i).map(|n| n.shape.as_slice()) {
                    Some(shape) if *axis < shape.len() => {
                        // Row-major: output `o·inner + j` sums input `o·n·inner + t·inner + j`.
                        let n = shape[*axis];
                        let inner: usize = shape[axis + 1..].iter().product();
                        let mut terms = Vec::with_capacity(n);
                        (0..len)
                            .map(|e| {
                                let (o, j) = (e / inner.max(1), e % inner.max(1));
                                terms.clear();
                                terms.extend((0..n).map(|t| (1, at(xs, (o * n + t) * inner + j, &unknown))));
                                merger.combine(&terms)
                            })
                            .collect()
                    }
                    _ => Vec::new(),
                }
            }
            Op::Gather { input, indices } => {
                let xs = of(input);
                indices.iter().map(|&j| at(xs, j, &unknown).clone()).collect()
            }
            Op::Concat { inputs, axis } => {
                // Row-major: for each outer index, the blocks of every part in turn.
                let outer: usize = node.shape.iter().take(*axis).product();
                let mut parts = Vec::with_capacity(inputs.len());
                for p in inputs {
                    match nodes.get(p.0).filter(|_| p.0 < i).map(|n| n.shape.as_slice()) {
                        Some(shape) if *axis < shape.len() => {
                            parts.push((of(p), shape[*axis..].iter().product::<usize>()));
                        }
                        _ => parts.clear(),
                    }
                }
                if parts.len() == inputs.len() {
                    let mut out = Vec::with_capacity(len);
                    for o in 0..outer {
                        for (xs, block) in &parts {
                            out.extend((0..*block).map(|t| at(xs, o * block + t, &unknown).clone()));
                        }
                    }
                    out
                } else {
                    Vec::new()
                }
            }
        };
        // A malformed node gets unknown elements rather than a panic.
        elements.resize_with(len, || unknown.clone());
        variance.push(elements.iter().map(|x| merger.var(x)).collect());
        exact.push(elements.iter().map(|x| x.slack() == 0.0).collect());
        lins.push(if last_use[i].is_some() { elements } else { Vec::new() });
        for operand in node.op.operands() {
            if last_use.get(operand.0).copied().flatten() == Some(i)
                && let Some(slot) = lins.get_mut(operand.0)
            {
                *slot = Vec::new();
            }
        }
    }
    Propagation { variance, exact, work: merger.work, collapsed: merger.collapsed }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use ndarray::{Array2, ArrayD, Axis, IxDyn, array};
    use proptest::prelude::*;

    use super::*;
    use crate::backend::{Backend, ElementRef, FusedRounding, evaluate_nodes};
    use crate::builder::CircuitBuilder;
    use crate::error::CircuitError;
    use crate::ir::{Lut, RoundingMode, Table};
    use crate::range::Interval;
    use crate::testing::{RandomCircuitConfig, SplitMix, random_circuit};

    /// Integer source variances that differ from element to element.
    fn src(node: NodeId, e: usize) -> f64 {
        1.0 + ((node.0 * 5 + e * 3) % 4) as f64
    }

    /// The independent-operand estimate: `Σ w²·v` everywhere, `Add`/`Sub` included.
    fn independent(circuit: &Circuit, source: impl Fn(NodeId, usize) -> f64) -> Vec<Vec<f64>> {
        let mut var: Vec<Vec<f64>> = Vec::new();
        for (i, node) in circuit.nodes().iter().enumerate() {
            let v: Vec<f64> = match &node.op {
                Op::Input { .. } | Op::Lookup(..) | Op::Round { .. } => {
                    (0..node.len()).map(|e| source(NodeId(i), e)).collect()
                }
                Op::Add(a, b) | Op::Sub(a, b) => var[a.0].iter().zip(&var[b.0]).map(|(x, y)| x + y).collect(),
                Op::AddConst(x, _) | Op::Reshape(x) | Op::Narrow(x) => var[x.0].clone(),
                Op::MulConst(x, c) => {
                    let c = c.broadcast(IxDyn(&node.shape)).unwrap();
                    var[x.0].iter().zip(c.iter()).map(|(v, c)| v * (*c as f64).powi(2)).collect()
                }
                Op::MatMul(x, w) => {
                    let (k, m) = (w.nrows(), w.ncols());
                    (0..node.len())
                        .map(|e| (0..k).map(|i| (w[[i, e % m]] as f64).powi(2) * var[x.0][(e / m) * k + i]).sum())
                        .collect()
                }
                Op::Sum { input, axis } => {
                    let a = ArrayD::from_shape_vec(IxDyn(&circuit.node(*input).shape), var[input.0].clone()).unwrap();
                    a.sum_axis(Axis(*axis)).iter().copied().collect()
                }
                Op::Gather { input, indices } => indices.iter().map(|&j| var[input.0][j]).collect(),
                Op::Concat { inputs, axis } => {
                    let parts: Vec<ArrayD<f64>> = inputs
                        .iter()
                        .map(|p| ArrayD::from_shape_vec(IxDyn(&circuit.node(*p).shape), var[p.0].clone()).unwrap())
                        .collect();
                    let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
                    ndarray::concatenate(Axis(*axis), &views).unwrap().iter().copied().collect()
                }
            };
            var.push(v);
        }
        var
    }

    /// Carries noise instead of values: sources draw independent Gaussians (or nothing,
    /// with `run: None`), leveled operations combine them with the circuit's weights.
    struct Noise {
        run: Option<u64>,
    }

    impl Noise {
        fn sample(&self, node: NodeId, index: usize) -> f64 {
            let Some(run) = self.run else { return 0.0 };
            let a = SplitMix::new(run).next_u64() ^ node.0 as u64;
            let b = SplitMix::new(a).next_u64() ^ index as u64;
            let mut r = SplitMix::new(b);
            let unit = |x: u64| ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // (0, 1]
            let (u1, u2) = (unit(r.next_u64()), unit(r.next_u64()));
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            z * src(node, index).sqrt()
        }

        fn inputs(&self, circuit: &Circuit, unit: Option<usize>) -> Vec<ArrayD<f64>> {
            circuit
                .inputs()
                .iter()
                .map(|id| {
                    let node = circuit.node(*id);
                    let values = (0..node.len())
                        .map(|e| match unit {
                            Some(u) => f64::from(u8::from(u == e)),
                            None => self.sample(*id, e),
                        })
                        .collect();
                    ArrayD::from_shape_vec(IxDyn(&node.shape), values).unwrap()
                })
                .collect()
        }
    }

    impl Backend for Noise {
        type Value = f64;
        type Error = CircuitError;

        fn linear(&self, terms: &[(i64, &f64)], _constant: i64, _out: ElementRef) -> Result<f64, CircuitError> {
            Ok(terms.iter().map(|(w, v)| *w as f64 * **v).sum())
        }

        fn lookup(&self, _: &f64, _: &Table, _: Option<FusedRounding>, out: ElementRef) -> Result<f64, CircuitError> {
            Ok(self.sample(out.node, out.index))
        }

        fn round(&self, _: &f64, _: FusedRounding, out: ElementRef) -> Result<f64, CircuitError> {
            Ok(self.sample(out.node, out.index))
        }
    }

    /// For a circuit without lookups or roundings and one input: the exact variance of every
    /// element, from its coefficients (the evaluation on each unit vector).
    fn brute_force(circuit: &Circuit) -> Vec<Vec<f64>> {
        let input = circuit.inputs()[0];
        let mut var: Vec<Vec<f64>> = circuit.nodes().iter().map(|n| vec![0.0; n.len()]).collect();
        for s in 0..circuit.node(input).len() {
            let backend = Noise { run: None };
            let values = evaluate_nodes(circuit, &backend, backend.inputs(circuit, Some(s)), true).unwrap();
            for (row, node_values) in var.iter_mut().zip(values) {
                for (v, c) in row.iter_mut().zip(node_values.unwrap().iter()) {
                    *v += c * c * src(input, s);
                }
            }
        }
        var
    }

    /// Compares every element's empirical noise variance over `runs` noisy evaluations with
    /// the analysis: never above it (10% on the standard deviation for sampling error), and
    /// not below it either where the analysis claims to be exact.
    fn check_against_sampling(circuit: &Circuit, limits: Limits, seed: u64, runs: u64) -> Result<(), TestCaseError> {
        let analysis = propagate(circuit, src, limits);
        let mut squares: Vec<Vec<f64>> = circuit.nodes().iter().map(|n| vec![0.0; n.len()]).collect();
        for run in 0..runs {
            let backend = Noise { run: Some(seed.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(run)) };
            let values = evaluate_nodes(circuit, &backend, backend.inputs(circuit, None), true).unwrap();
            for (row, node_values) in squares.iter_mut().zip(values) {
                for (sq, v) in row.iter_mut().zip(node_values.unwrap().iter()) {
                    *sq += v * v;
                }
            }
        }
        for (i, (row, node)) in squares.iter().zip(circuit.nodes()).enumerate() {
            for (e, sq) in row.iter().enumerate() {
                let empirical = sq / runs as f64;
                let analytic = analysis.variance[i][e];
                let slack = 1e-9 * (1.0 + analytic);
                prop_assert!(
                    empirical <= analytic * 1.21 + slack,
                    "node {} ({}) element {}: empirical variance {} above the bound {}",
                    i,
                    node.op.name(),
                    e,
                    empirical,
                    analytic
                );
                if analysis.exact[i][e] {
                    prop_assert!(
                        empirical >= analytic * 0.81 - slack,
                        "node {} ({}) element {}: empirical variance {} far below the exact {}",
                        i,
                        node.op.name(),
                        e,
                        empirical,
                        analytic
                    );
                }
            }
        }
        Ok(())
    }

    fn shape_len(shape: &[usize]) -> usize {
        shape.iter().product()
    }

    fn small_table(b: &CircuitBuilder, x: NodeId, rng: &mut SplitMix) -> Option<Lut> {
        let range = b.node_range(x);
        let bits = range.span_bits().0;
        (bits <= 6).then(|| {
            Lut::Single(Table { input_min: range.lo, values: (0..1i64 << bits).map(|_| rng.range(-3, 3)).collect() })
        })
    }

    /// A random circuit in which values fan out and recombine before any bootstrap: dense
    /// matrix products, `x + c·x`, gathers with repeated indices, sums, self-concatenations,
    /// sums with earlier nodes, self-differences, plus lookups and roundings (fresh sources).
    fn correlated_circuit(seed: u64) -> Circuit {
        let mut rng = SplitMix::new(seed);
        let mut b = CircuitBuilder::new();
        let n = rng.range(1, 4) as usize;
        let mut cur = b.input(&[n], Interval { lo: -3, hi: 3 });
        let mut shape = vec![n];
        let mut history: Vec<(NodeId, Vec<usize>)> = vec![(cur, shape.clone())];
        for _ in 0..rng.range(1, 7) {
            let len = shape_len(&shape);
            let last = shape.len() - 1;
            let mut next_shape = shape.clone();
            let weights = |rng: &mut SplitMix, k: usize, m: usize| Array2::from_shape_fn((k, m), |_| rng.range(-3, 3));
            let next = match rng.range(0, 11) {
                0 => {
                    let m = rng.range(1, 3) as usize;
                    next_shape[last] = m;
                    let w = weights(&mut rng, shape[last], m);
                    b.matmul(cur, w)
                }
                1 => {
                    let c = ArrayD::from_elem(IxDyn(&[]), rng.range(-3, 3));
                    b.mul_const(cur, c).and_then(|scaled| b.add(cur, scaled))
                }
                2 => {
                    let g = rng.range(1, 5) as usize;
                    next_shape = vec![g];
                    let indices = (0..g).map(|_| rng.range(0, len as i64 - 1) as usize).collect();
                    b.gather(cur, indices, &[g])
                }
                3 => {
                    let axis = rng.range(0, last as i64) as usize;
                    next_shape.remove(axis);
                    let summed = b.sum(cur, axis);
                    if next_shape.is_empty() {
                        next_shape = vec![1];
                        summed.and_then(|s| b.reshape(s, &[1]))
                    } else {
                        summed
                    }
                }
                4 => {
                    let axis = rng.range(0, last as i64) as usize;
                    next_shape[axis] *= 2;
                    b.concat(&[cur, cur], axis)
                }
                5 => {
                    let shifted: Vec<usize> = (0..len).map(|i| (i + 1) % len).collect();
                    b.gather(cur, shifted, &shape).and_then(|s| b.sub(cur, s))
                }
                6 => match small_table(&b, cur, &mut rng) {
                    Some(lut) => b.lookup(cur, lut),
                    None => {
                        let mode = if rng.range(0, 1) == 0 { RoundingMode::Exact } else { RoundingMode::Approximate };
                        b.round(cur, rng.range(1, 2) as u32, mode)
                    }
                },
                7 => {
                    let same: Vec<NodeId> = history.iter().filter(|(_, s)| *s == shape).map(|(id, _)| *id).collect();
                    let other = same[rng.range(0, same.len() as i64 - 1) as usize];
                    b.add(cur, other)
                }
                8 if shape.len() == 1 && len.is_multiple_of(2) => {
                    next_shape = vec![2, len / 2];
                    b.reshape(cur, &next_shape)
                }
                8 => {
                    next_shape = vec![len];
                    b.reshape(cur, &next_shape)
                }
                9 => {
                    let c = ArrayD::from_shape_fn(IxDyn(&shape), |_| rng.range(-2, 2));
                    b.mul_const(cur, c)
                }
                10 => {
                    let m = rng.range(1, 3) as usize;
                    next_shape[last] = m;
                    let (w1, w2) = (weights(&mut rng, shape[last], m), weights(&mut rng, shape[last], m));
                    b.matmul(cur, w1).and_then(|y| b.matmul(cur, w2).and_then(|z| b.add(y, z)))
                }
                _ => b.sub(cur, cur),
            };
            match next {
                Ok(id) => {
                    cur = id;
                    shape = next_shape;
                    history.push((cur, shape.clone()));
                }
                Err(_) => break,
            }
        }
        b.output(cur).unwrap();
        b.build().unwrap()
    }

    /// A random circuit in which no source reaches an element along two paths: every node is
    /// read by the next one only, and every operation reads each element at most once.
    fn independent_circuit(seed: u64) -> Circuit {
        let mut rng = SplitMix::new(seed);
        let mut b = CircuitBuilder::new();
        let n = rng.range(2, 6) as usize;
        let mut cur = b.input(&[n], Interval { lo: -3, hi: 3 });
        let mut shape = vec![n];
        for _ in 0..rng.range(1, 8) {
            let len = shape_len(&shape);
            let last = shape.len() - 1;
            let mut next_shape = shape.clone();
            let mut permutation: Vec<usize> = (0..len).collect();
            for i in (1..len).rev() {
                permutation.swap(i, rng.range(0, i as i64) as usize);
            }
            let next = match rng.range(0, 9) {
                0 => {
                    // Each input row feeds at most one output column.
                    let m = rng.range(1, 3) as usize;
                    let mut w = Array2::zeros((shape[last], m));
                    for i in 0..shape[last] {
                        w[[i, rng.range(0, m as i64 - 1) as usize]] = rng.range(-3, 3);
                    }
                    next_shape[last] = m;
                    b.matmul(cur, w)
                }
                1 => {
                    let c = ArrayD::from_shape_fn(IxDyn(&shape), |_| rng.range(-3, 3));
                    b.mul_const(cur, c)
                }
                2 => b.add_const(cur, ArrayD::from_elem(IxDyn(&[]), rng.range(-5, 5))),
                3 => {
                    let axis = rng.range(0, last as i64) as usize;
                    next_shape.remove(axis);
                    let summed = b.sum(cur, axis);
                    if next_shape.is_empty() {
                        next_shape = vec![1];
                        summed.and_then(|s| b.reshape(s, &[1]))
                    } else {
                        summed
                    }
                }
                4 => {
                    let g = rng.range(1, len as i64) as usize;
                    next_shape = vec![g];
                    b.gather(cur, permutation[..g].to_vec(), &[g])
                }
                5 | 6 if len >= 2 => {
                    let h = len / 2;
                    next_shape = vec![h];
                    let left = b.gather(cur, permutation[..h].to_vec(), &[h]);
                    let right = b.gather(cur, permutation[h..2 * h].to_vec(), &[h]);
                    match (left, right) {
                        (Ok(l), Ok(r)) if rng.range(0, 2) == 0 => b.sub(l, r),
                        (Ok(l), Ok(r)) if rng.range(0, 1) == 0 => b.add(l, r),
                        (Ok(l), Ok(r)) => {
                            next_shape = vec![2 * h];
                            b.concat(&[l, r], 0)
                        }
                        (Err(e), _) | (_, Err(e)) => Err(e),
                    }
                }
                7 => match small_table(&b, cur, &mut rng) {
                    Some(lut) => b.lookup(cur, lut),
                    None => b.round(cur, rng.range(1, 3) as u32, RoundingMode::Approximate),
                },
                8 if shape.len() == 1 && len.is_multiple_of(2) => {
                    next_shape = vec![len / 2, 2];
                    b.reshape(cur, &next_shape)
                }
                _ => {
                    next_shape = vec![len];
                    b.reshape(cur, &next_shape)
                }
            };
            match next {
                Ok(id) => {
                    cur = id;
                    shape = next_shape;
                }
                Err(_) => break,
            }
        }
        b.output(cur).unwrap();
        b.build().unwrap()
    }

    fn variance_of(circuit: &Circuit, id: NodeId) -> Vec<f64> {
        propagate_variance(circuit, src)[id.0].clone()
    }

    #[test]
    fn a_value_added_to_itself_has_four_times_its_variance() {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[1], Interval { lo: 0, hi: 3 });
        let doubled = b.add(x, x).unwrap();
        let scaled = b.mul_const(x, ArrayD::from_elem(IxDyn(&[]), 2)).unwrap();
        let tripled = b.add(x, scaled).unwrap();
        let dup = b.gather(x, vec![0, 0], &[2]).unwrap();
        let summed = b.sum(dup, 0).unwrap();
        let cancelled = b.sub(x, x).unwrap();
        b.output(summed).unwrap();
        let c = b.build().unwrap();
        let v = src(x, 0);
        assert_eq!(variance_of(&c, doubled), vec![4.0 * v]);
        assert_eq!(variance_of(&c, tripled), vec![9.0 * v]);
        // Σ w²·v would say 2v: the gather repeats one noise.
        assert_eq!(variance_of(&c, summed), vec![4.0 * v]);
        assert_eq!(independent(&c, src)[summed.0], vec![2.0 * v]);
        assert_eq!(variance_of(&c, cancelled), vec![0.0]);
    }

    #[test]
    fn matmul_outputs_reading_the_same_inputs_recombine_exactly() {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[2], Interval { lo: 0, hi: 3 });
        // y = (x0 + 3 x1, 2 x0 + x1); y0 + y1 = 3 x0 + 4 x1.
        let y = b.matmul(x, array![[1, 2], [3, 1]]).unwrap();
        let s = b.sum(y, 0).unwrap();
        // Both entries of a gather read x0; [x0, x0]·[1, 2]ᵀ = 3 x0.
        let dup = b.gather(x, vec![0, 0], &[2]).unwrap();
        let dot = b.matmul(dup, array![[1], [2]]).unwrap();
        b.output(s).unwrap();
        let c = b.build().unwrap();
        let (v0, v1) = (src(x, 0), src(x, 1));
        assert_eq!(variance_of(&c, y), vec![v0 + 9.0 * v1, 4.0 * v0 + v1]);
        assert_eq!(variance_of(&c, s), vec![9.0 * v0 + 16.0 * v1]);
        assert_eq!(independent(&c, src)[s.0], vec![5.0 * v0 + 10.0 * v1]);
        assert_eq!(variance_of(&c, dot), vec![9.0 * v0]);
    }

    fn gemm_chain() -> (Circuit, Array2<i64>, NodeId) {
        let w1 = array![[1, -2, 3], [2, 1, 0], [-1, 3, 2], [4, 0, -1]];
        let w2 = array![[2, -1], [1, 3], [-3, 1]];
        let mut b = CircuitBuilder::new();
        let x = b.input(&[4], Interval { lo: 0, hi: 7 });
        let h = b.matmul(x, w1.clone()).unwrap();
        let h = b.add_const(h, ArrayD::from_elem(IxDyn(&[]), 5)).unwrap();
        let y = b.matmul(h, w2.clone()).unwrap();
        b.output(y).unwrap();
        (b.build().unwrap(), w1.dot(&w2), y)
    }

    #[test]
    fn gemm_chain_matches_brute_force() {
        let (c, w, y) = gemm_chain();
        let x = c.inputs()[0];
        let expected: Vec<f64> = (0..2).map(|j| (0..4).map(|i| (w[[i, j]] as f64).powi(2) * src(x, i)).sum()).collect();
        assert_eq!(variance_of(&c, y), expected);
        assert_eq!(propagate_variance(&c, src), brute_force(&c));
        // The independent estimate is 10% and 22% short.
        assert_eq!(expected, vec![498.0, 502.0]);
        assert_eq!(independent(&c, src)[y.0], vec![450.0, 390.0]);
    }

    #[test]
    fn fallbacks_only_overestimate() {
        let (c, _, _) = gemm_chain();
        let exact = propagate_variance(&c, src);
        for limits in [
            Limits { element_cap: 1, work_budget: usize::MAX },
            Limits { element_cap: 2, work_budget: 20 },
            Limits { element_cap: usize::MAX, work_budget: 0 },
        ] {
            let p = propagate(&c, src, limits);
            assert!(p.collapsed > 0, "{limits:?}");
            for (bound, exact) in p.variance.iter().flatten().zip(exact.iter().flatten()) {
                assert!(bound.is_finite() && *bound >= *exact * (1.0 - 1e-12), "{limits:?}: {bound} < {exact}");
            }
        }
    }

    #[test]
    fn a_collapsed_sum_keeps_its_own_exact_variance() {
        let n = ELEMENT_CAP + 100;
        let mut b = CircuitBuilder::new();
        let x = b.input(&[n], Interval { lo: 0, hi: 1 });
        let s = b.sum(x, 0).unwrap();
        let t = b.add_const(s, ArrayD::from_elem(IxDyn(&[]), 1)).unwrap();
        b.output(t).unwrap();
        let c = b.build().unwrap();
        let p = propagate(&c, |_, _| 2.0, Limits::default());
        assert_eq!(p.collapsed, 1);
        assert_eq!(p.variance[t.0], vec![2.0 * n as f64]);
    }

    /// Dense layers with lookups in between (MLP 30→120→120→2), a convolution feeding an
    /// average pool, and a tree-like sum over thousands of elements: exact, no collapse, and
    /// the work is the leveled term count when every operand is a source.
    #[test]
    fn large_circuits_stay_exact_with_work_proportional_to_their_terms() {
        let mut rng = SplitMix::new(7);
        let mut w = |k: usize, m: usize| Array2::from_shape_fn((k, m), |_| rng.range(-7, 7));
        let mut b = CircuitBuilder::new();
        let x = b.input(&[30], Interval { lo: 0, hi: 15 });
        let mut h = x;
        let mut terms = 0;
        for (k, m) in [(30, 120), (120, 120)] {
            let wk = w(k, m);
            terms += wk.iter().filter(|v| **v != 0).count();
            let acc = b.matmul(h, wk).unwrap();
            let r = b.node_range(acc);
            let relu = Table::from_fn(r.lo, r.span_bits().0, |v| v.clamp(0, 15));
            h = b.lookup(acc, Lut::Single(relu)).unwrap();
        }
        let w3 = w(120, 2);
        terms += w3.iter().filter(|v| **v != 0).count();
        let y = b.matmul(h, w3).unwrap();
        b.output(y).unwrap();
        let mlp = b.build().unwrap();
        let p = propagate(&mlp, src, Limits::default());
        assert_eq!((p.work, p.collapsed), (terms, 0));
        assert_eq!(p.variance, independent(&mlp, src), "no shared ancestry between lookups");

        // The same network without activations: every layer recombines the previous one.
        let mut b = CircuitBuilder::new();
        let x = b.input(&[30], Interval { lo: 0, hi: 15 });
        let (w1, w2, w3) = (w(30, 120), w(120, 120), w(120, 2));
        let h1 = b.matmul(x, w1.clone()).unwrap();
        let h2 = b.matmul(h1, w2.clone()).unwrap();
        let y = b.matmul(h2, w3.clone()).unwrap();
        b.output(y).unwrap();
        let leveled = b.build().unwrap();
        let p = propagate(&leveled, src, Limits::default());
        assert_eq!(p.collapsed, 0);
        assert!(p.work <= 30 * (120 + 120 * 120 + 2 * 120), "{}", p.work);
        let full = w1.dot(&w2).dot(&w3);
        let expected: Vec<f64> =
            (0..2).map(|j| (0..30).map(|i| (full[[i, j]] as f64).powi(2) * src(x, i)).sum()).collect();
        assert_eq!(p.variance[y.0], expected);

        // 3×3 convolution with 4 channels on 8×8, then 2×2 average pooling (a sum).
        let mut b = CircuitBuilder::new();
        let x = b.input(&[8, 8, 1], Interval { lo: 0, hi: 15 });
        let patches: Vec<usize> =
            (0..6).flat_map(|r| (0..6).flat_map(move |c| (0..9).map(move |t| (r + t / 3) * 8 + c + t % 3))).collect();
        let cols = b.gather(x, patches, &[36, 9]).unwrap();
        let conv = b.matmul(cols, w(9, 4)).unwrap();
        let windows: Vec<usize> = (0..3)
            .flat_map(|r| {
                (0..3).flat_map(move |c| {
                    (0..4).flat_map(move |t| (0..4).map(move |ch| ((2 * r + t / 2) * 6 + 2 * c + t % 2) * 4 + ch))
                })
            })
            .collect();
        let pooled = b.gather(conv, windows, &[9, 4, 4]).unwrap();
        let pool = b.sum(pooled, 1).unwrap();
        b.output(pool).unwrap();
        let cnn = b.build().unwrap();
        let p = propagate(&cnn, src, Limits::default());
        assert_eq!(p.collapsed, 0);
        assert_eq!(p.variance, brute_force(&cnn));

        // A forest-like circuit: 2000 bits, 500 leaves of 4 bits, a lookup per leaf, 3 sums.
        let mut b = CircuitBuilder::new();
        let bits = b.input(&[2000], Interval { lo: 0, hi: 1 });
        let paths = b.gather(bits, (0..2000).collect(), &[500, 4]).unwrap();
        let depth = b.sum(paths, 1).unwrap();
        let leaf = b.lookup(depth, Lut::Single(Table::from_fn(0, 3, |d| i64::from(d == 4)))).unwrap();
        let out = b.matmul(leaf, w(500, 3)).unwrap();
        b.output(out).unwrap();
        let forest = b.build().unwrap();
        let p = propagate(&forest, src, Limits::default());
        assert_eq!(p.collapsed, 0);
        assert!(p.work <= 2000 + 3 * 500, "{}", p.work);
        assert_eq!(p.variance, independent(&forest, src));
    }

    #[test]
    fn malformed_circuits_give_unbounded_variance_instead_of_panicking() {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[2], Interval { lo: 0, hi: 3 });
        let s = b.sum(x, 0).unwrap();
        b.output(s).unwrap();
        let mut c = b.build().unwrap();
        c.nodes[1].op = Op::Sum { input: NodeId(1), axis: 3 };
        assert_eq!(propagate_variance(&c, src)[1], vec![f64::INFINITY]);
        c.nodes[1].op = Op::Gather { input: NodeId(0), indices: vec![7] };
        assert_eq!(propagate_variance(&c, src)[1], vec![f64::INFINITY]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// With fan-out and recombination, no element's sampled noise exceeds the analysis,
        /// and exact elements match it.
        #[test]
        fn analysis_bounds_sampled_noise_with_shared_ancestry(seed in any::<u64>()) {
            check_against_sampling(&correlated_circuit(seed), Limits::default(), seed, 2000)?;
        }

        /// The same through the fallbacks (tiny caps), and on the crate's random circuits.
        #[test]
        fn fallbacks_and_random_circuits_bound_sampled_noise(seed in any::<u64>()) {
            let tiny = Limits { element_cap: 1 + (seed % 3) as usize, work_budget: (seed % 40) as usize };
            check_against_sampling(&correlated_circuit(seed), tiny, seed, 2000)?;
            let (circuit, _) = random_circuit(seed, RandomCircuitConfig::default());
            check_against_sampling(&circuit, Limits::default(), seed, 2000)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Without shared ancestry the variance is exactly the independent `Σ w²·v`.
        #[test]
        fn without_shared_ancestry_the_variance_is_the_independent_sum(seed in any::<u64>()) {
            let circuit = independent_circuit(seed);
            let p = propagate(&circuit, src, Limits::default());
            prop_assert_eq!(&p.variance, &independent(&circuit, src));
            prop_assert!(p.exact.iter().flatten().all(|e| *e));
        }
    }
}
