//! Encodings: the scale (`log2 Δ`) of every element, from what its sinks read.

use ndarray::{ArrayD, Axis, IxDyn};

use fheml_circuits::{Circuit, Interval, NodeId, Op, SharedReads, materialised_rounds};

use super::config::FheConfig;
use super::evaluate::output_step;
use super::reads::bootstrap_inputs;
use crate::noise::erfc_inverse;

/// Two's-complement width of an output, sign bit always included.
fn output_bits(range: Interval) -> u32 {
    let signed = range.signed_bits().0;
    if range.lo >= 0 { signed + 1 } else { signed }
}

const UNCONSTRAINED: u32 = 63;

/// Flat index maps for axis operations: for every output element, the input elements it reads.
fn lanes(shape: &[usize], axis: usize) -> Vec<Vec<usize>> {
    let len = shape.iter().product();
    match ArrayD::from_shape_vec(IxDyn(shape), (0..len).collect::<Vec<usize>>()) {
        Ok(ids) => ids.lanes(Axis(axis)).into_iter().map(|l| l.iter().copied().collect()).collect(),
        Err(_) => vec![],
    }
}

fn concat_sources(circuit: &Circuit, parts: &[NodeId], axis: usize) -> Vec<(usize, usize)> {
    let arrays: Vec<ArrayD<(usize, usize)>> = parts
        .iter()
        .enumerate()
        .filter_map(|(p, id)| {
            let shape = &circuit.node(*id).shape;
            let n = shape.iter().product();
            ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|e| (p, e)).collect()).ok()
        })
        .collect();
    let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
    ndarray::concatenate(Axis(axis), &views).map(|a| a.iter().copied().collect()).unwrap_or_default()
}

/// The scale (`log2 Δ`) of every element of every node, with the groups of `shared` fused.
pub fn assign_deltas(circuit: &Circuit, shared: &SharedReads) -> Vec<Vec<u32>> {
    assign_deltas_in(circuit, shared, None)
}

/// How a sanitized plan lays out its scales: real-valued outputs use their whole error budget
/// (the flood), so their encoding keeps room beyond their range for `z` budget deviations, so
/// that a value at the edge of its range does not wrap around it.
#[derive(Debug, Clone, Copy)]
pub struct SanitizedScales {
    /// Error budget of real-valued outputs, in steps.
    pub output_std: f64,
    /// Deviations of room: `√2·erfc⁻¹(p)` for the failure probability `p` of an element.
    pub z: f64,
    /// Whether every output is decrypted exactly.
    pub exact_outputs: bool,
}

impl SanitizedScales {
    pub(super) fn of(config: &FheConfig, p: f64) -> Option<Self> {
        config.sanitize.then(|| SanitizedScales {
            output_std: config.output_std,
            z: std::f64::consts::SQRT_2 * erfc_inverse(p),
            exact_outputs: config.exact_outputs,
        })
    }
}

/// [`assign_deltas`] for a sanitized plan (`sanitized` given): every element of one input
/// (and of one output) gets the same scale, the finest any of them needs, and real-valued
/// outputs keep room for their error budget beyond their range ([`SanitizedScales`]). The
/// client sees these scales (it encrypts and decodes with them): per element they would tell
/// which input elements feed nothing (a zero weight, a tree threshold no comparison uses) and
/// each output element's range.
pub fn assign_deltas_in(circuit: &Circuit, shared: &SharedReads, sanitized: Option<SanitizedScales>) -> Vec<Vec<u32>> {
    let uniform = sanitized.is_some();
    let materialised = materialised_rounds(circuit);
    let mut need: Vec<Vec<u32>> = circuit.nodes().iter().map(|n| vec![UNCONSTRAINED; n.len()]).collect();
    for (i, out) in circuit.outputs().iter().enumerate() {
        let node = circuit.node(*out);
        let margin = match (sanitized, output_step(circuit, i, sanitized.is_some_and(|s| s.exact_outputs))) {
            (Some(s), Some(step)) => (s.z * s.output_std * step as f64).ceil().min(1e15) as i64,
            _ => 0,
        };
        for (e, r) in node.ranges.iter().enumerate() {
            let room = Interval { lo: r.lo.saturating_sub(margin), hi: r.hi.saturating_add(margin) };
            need[out.0][e] = need[out.0][e].min(64 - output_bits(room).min(63));
        }
        if uniform {
            let finest = need[out.0].iter().copied().min().unwrap_or(UNCONSTRAINED);
            need[out.0].iter_mut().for_each(|d| *d = finest);
        }
    }
    for (_, e, source, spec) in bootstrap_inputs(circuit, &materialised, shared) {
        need[source.0][e] = need[source.0][e].min(spec.delta_log());
    }
    // Reverse topological order: a node's needs are final before its operands are visited.
    for (i, node) in circuit.nodes().iter().enumerate().rev() {
        let mine = need[i].clone();
        let mut lift = |operand: NodeId, e: usize, d: u32| {
            let slot = &mut need[operand.0][e];
            *slot = (*slot).min(d);
        };
        match &node.op {
            Op::Add(a, b) | Op::Sub(a, b) => {
                for (e, d) in mine.iter().enumerate() {
                    lift(*a, e, *d);
                    lift(*b, e, *d);
                }
            }
            Op::AddConst(x, _) | Op::MulConst(x, _) | Op::Reshape(x) | Op::Narrow(x) => {
                for (e, d) in mine.iter().enumerate() {
                    lift(*x, e, *d);
                }
            }
            Op::MatMul(x, w) => {
                let (k, m) = (w.nrows(), w.ncols().max(1));
                for (e, d) in mine.iter().enumerate() {
                    let (r, j) = (e / m, e % m);
                    for row in 0..k {
                        if w[[row, j]] != 0 {
                            lift(*x, r * k + row, *d);
                        }
                    }
                }
            }
            Op::Sum { input, axis } => {
                for (e, lane) in lanes(&circuit.node(*input).shape, *axis).iter().enumerate() {
                    for &src in lane {
                        lift(*input, src, mine[e]);
                    }
                }
            }
            Op::Gather { input, indices } => {
                for (e, &src) in indices.iter().enumerate() {
                    lift(*input, src, mine[e]);
                }
            }
            Op::Concat { inputs, axis } => {
                for (e, (part, src)) in concat_sources(circuit, inputs, *axis).into_iter().enumerate() {
                    lift(inputs[part], src, mine[e]);
                }
            }
            Op::Input { .. } | Op::Lookup(..) | Op::Round { .. } => {}
        }
    }
    if uniform {
        // Inputs feed only their consumers, which lift them: a finer scale is always valid.
        for id in circuit.inputs() {
            let finest = need[id.0].iter().copied().min().unwrap_or(UNCONSTRAINED);
            need[id.0].iter_mut().for_each(|d| *d = finest);
        }
    }
    need
}
