//! The noise analysis of one candidate parameter set: failure probabilities of lookups and
//! outputs, and the flooding that sanitized outputs need.

use fheml_circuits::{Circuit, ElementRef, NodeId, Op, OutputKind, propagate_variance};

use super::reads::{ReadSpec, Reads, bootstrap_inputs};
use crate::noise::{erfc_inverse, two_sided_tail};
use crate::params::NoiseModel;

/// Why a candidate parameter set was rejected, or its failure probabilities.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Evaluation {
    pub(super) max_lookup_p: f64,
    /// Largest failure probability of an exact output element.
    pub(super) max_output_p: f64,
    /// Largest error std of a real-valued output element, in its steps.
    pub(super) max_output_steps: f64,
    pub(super) global_p: f64,
    /// For simulation: per node element, the noise standard deviation at that bootstrap's
    /// input, in units of the value it reads.
    pub(super) sink_std: Vec<Vec<f64>>,
    pub(super) output_std: Vec<Vec<f64>>,
    /// Largest failure probability among the members of each fused group.
    pub(super) group_p: Vec<f64>,
    /// Expected one-step deviations of approximate roundings per evaluation.
    pub(super) rounding_deviations: f64,
    /// Expected real-valued output elements decrypted one unit or more off, per evaluation.
    pub(super) output_deviations: f64,
    /// The tightest lookup: (node, element, resolved bits, noise std in units of the read).
    pub(super) worst_lookup: Option<(NodeId, usize, u32, f64)>,
    /// Sanitization, per output element: the flooding noise's std, in output units.
    pub(super) flood_std: Vec<Vec<f64>>,
    /// Sanitization, per output element: the std of the public-key encryption of zero's own
    /// noise, in output units.
    pub(super) public_key_std: Vec<Vec<f64>>,
    /// Sanitization, per output: the smallest hiding (bits) of its elements (infinite when
    /// not sanitizing).
    pub(super) sanitize_bits: Vec<f64>,
}

/// Share of an output's variance budget a sanitized output fills: the flooding noise tops
/// the output's own noise up to it, so that the total no longer depends on the weights.
pub const FLOOD_SHARE: f64 = 0.99;

/// What sanitizing outputs needs to know of a candidate set.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flooding {
    /// Failure probability of one exact output element, and the tail beyond which the
    /// weights' noise bound may fail.
    pub(super) p: f64,
    /// `k·N`: the dimension of the public key and of every output ciphertext.
    pub(super) big_dimension: usize,
    /// Error budget of real-valued outputs, in steps.
    pub(super) output_std: f64,
}

/// Statistical hiding (bits) of flooding noise of variance `flood` over a weight-dependent
/// noise of variance `weights`: `log2(σ_flood / (z·σ_weights))`, where `z·σ_weights` bounds
/// the weights' noise except with the tail probability `z` stands for.
pub fn hiding_bits(flood: f64, weights: f64, z: f64) -> f64 {
    if weights <= 0.0 {
        f64::INFINITY
    } else if flood <= 0.0 {
        f64::NEG_INFINITY
    } else {
        (flood.sqrt() / (z * weights.sqrt())).log2()
    }
}

/// Whether output `i` must decrypt exactly, and the step a real-valued one is measured in.
pub(super) fn output_step(circuit: &Circuit, i: usize, exact_outputs: bool) -> Option<u64> {
    match circuit.output_kind(i) {
        OutputKind::Real { step } if !exact_outputs => Some(step.max(1)),
        _ => None,
    }
}

/// Probability that an approximate rounding comes out one step off: the dropped bits put
/// the value anywhere in its box (assumed uniform), at distance `k + 1/2` (in units of the
/// read value) from the nearer edge, and the noise crosses that edge with probability
/// `P(N > k + 1/2)`.
fn rounding_deviation(spec: &ReadSpec, variance: f64) -> f64 {
    let unit = 1u64 << (spec.width - spec.read_bits).min(62);
    if unit < 2 {
        return 0.0;
    }
    // The tail falls off like a Gaussian: positions many deviations from an edge add nothing,
    // so the sum stops there instead of visiting every position of a wide box.
    let reach = (variance.sqrt() * 40.0).ceil() as u64 + 1;
    let half = (unit / 2).min(reach);
    let one_sided: f64 = (0..half).map(|k| 0.5 * two_sided_tail(k as f64 + 0.5, variance)).sum();
    2.0 * one_sided / unit as f64
}

/// The noise analysis of `circuit` on one parameter set: every bootstrap and output's
/// failure probability, or why the set cannot run the circuit at all.
pub(super) fn evaluate_candidate(
    circuit: &Circuit,
    deltas: &[Vec<u32>],
    noise: &NoiseModel,
    reads: &Reads,
    exact_outputs: bool,
    flooding: Option<Flooding>,
) -> std::result::Result<Evaluation, String> {
    let var = source_variances(circuit, deltas, noise, reads.small_key);
    let lookups = evaluate_lookups(circuit, &var, noise, reads)?;
    let outputs = evaluate_outputs(circuit, &var, deltas, noise, exact_outputs, flooding, lookups.global_p);
    Ok(Evaluation {
        max_lookup_p: lookups.max_p,
        max_output_p: outputs.max_p,
        max_output_steps: outputs.max_steps,
        global_p: outputs.global_p,
        sink_std: lookups.sink_std,
        output_std: outputs.std,
        group_p: lookups.group_p,
        rounding_deviations: lookups.rounding_deviations,
        output_deviations: outputs.deviations,
        worst_lookup: lookups.worst,
        flood_std: outputs.flood_std,
        public_key_std: outputs.public_key_std,
        sanitize_bits: outputs.sanitize_bits,
    })
}

/// Per node element: the noise variance of its value, in units of its own scale.
fn source_variances(circuit: &Circuit, deltas: &[Vec<u32>], noise: &NoiseModel, small_key: &[bool]) -> Vec<Vec<f64>> {
    propagate_variance(circuit, |node, e| {
        let source = match circuit.node(node).op {
            Op::Input { .. } if small_key[node.0] => noise.small_fresh,
            Op::Input { .. } => noise.fresh,
            _ => noise.bootstrap_output,
        };
        let delta = 2f64.powi(deltas[node.0][e] as i32 - 64);
        source / (delta * delta)
    })
}

/// The bootstraps' side of an [`Evaluation`].
struct LookupNoise {
    max_p: f64,
    /// Sum over bootstraps (a fused group counts once).
    global_p: f64,
    sink_std: Vec<Vec<f64>>,
    group_p: Vec<f64>,
    rounding_deviations: f64,
    worst: Option<(NodeId, usize, u32, f64)>,
}

/// The failure probability of every bootstrap's read, or why the set cannot resolve one.
fn evaluate_lookups(
    circuit: &Circuit,
    var: &[Vec<f64>],
    noise: &NoiseModel,
    reads: &Reads,
) -> std::result::Result<LookupNoise, String> {
    let Reads { materialised, shared, small_key } = *reads;
    let mut sink_std: Vec<Vec<f64>> = circuit.nodes().iter().map(|n| vec![0.0; n.len()]).collect();
    let (mut max_p, mut global_p, mut rounding_deviations) = (0f64, 0f64, 0f64);
    let mut worst: Option<(NodeId, usize, u32, f64)> = None;
    let mut group_p = vec![0f64; shared.len()];
    for (node, e, source, spec) in bootstrap_inputs(circuit, materialised, shared) {
        if spec.resolved_bits() + 1 > noise.log2_polynomial_size {
            return Err(format!(
                "node {node} element {e} reads {} bits; the largest bootstrap resolves {} bits (round the accumulator, or use fewer bits)",
                spec.resolved_bits(),
                noise.log2_polynomial_size - 1
            ));
        }
        let delta = 2f64.powi(-((spec.width + spec.slot_bits) as i32) - 1);
        let switch = if small_key[source.0] { noise.modulus_switch } else { noise.keyswitch_and_modulus_switch };
        let modulus_switch = switch / (delta * delta);
        let variance = var[source.0][e] + modulus_switch;
        let half_box = 0.5 * 2f64.powi((spec.width - spec.read_bits) as i32);
        let p = two_sided_tail(half_box, variance);
        rounding_deviations += rounding_deviation(&spec, variance);
        sink_std[node.0][e] = variance.sqrt();
        if p > max_p || worst.is_none() {
            worst = Some((node, e, spec.resolved_bits(), variance.sqrt() / (2.0 * half_box)));
        }
        max_p = max_p.max(p);
        if let Some(g) = shared.group_of(ElementRef { node, index: e }) {
            group_p[g] = group_p[g].max(p);
            // One bootstrap for the whole group: its failure counts once.
            if shared.groups()[g][0] != (ElementRef { node, index: e }) {
                continue;
            }
        }
        global_p += p;
    }
    Ok(LookupNoise { max_p, global_p, sink_std, group_p, rounding_deviations, worst })
}

/// The outputs' side of an [`Evaluation`].
struct OutputNoise {
    max_p: f64,
    max_steps: f64,
    /// The lookups' failure probability plus the exact outputs'.
    global_p: f64,
    std: Vec<Vec<f64>>,
    deviations: f64,
    flood_std: Vec<Vec<f64>>,
    public_key_std: Vec<Vec<f64>>,
    sanitize_bits: Vec<f64>,
}

/// The decryption error of every output element (flooding included when sanitizing);
/// exact outputs add their failure probability to `global_p`, the lookups' sum.
fn evaluate_outputs(
    circuit: &Circuit,
    var: &[Vec<f64>],
    deltas: &[Vec<u32>],
    noise: &NoiseModel,
    exact_outputs: bool,
    flooding: Option<Flooding>,
    mut global_p: f64,
) -> OutputNoise {
    let mut output_std: Vec<Vec<f64>> = Vec::new();
    let (mut flood_std, mut public_key_std, mut sanitize_bits) = (Vec::new(), Vec::new(), Vec::new());
    let (mut max_p, mut max_steps, mut deviations) = (0f64, 0f64, 0f64);
    for (i, out) in circuit.outputs().iter().enumerate() {
        let step = output_step(circuit, i, exact_outputs);
        let (mut stds, mut floods, mut keys, mut bits) = (Vec::new(), Vec::new(), Vec::new(), f64::INFINITY);
        for (e, weights) in var[out.0].iter().enumerate() {
            let mut v = *weights;
            if let Some(f) = flooding {
                let flood = flood_element(f, noise, deltas[out.0][e], step, v);
                bits = bits.min(flood.hiding_bits);
                floods.push(flood.flood.sqrt());
                keys.push(flood.key.sqrt());
                v += flood.key + flood.flood;
            }
            stds.push(v.sqrt());
            let p = two_sided_tail(0.5, v);
            match step {
                None => {
                    max_p = max_p.max(p);
                    global_p += p;
                }
                Some(step) => {
                    max_steps = max_steps.max(v.sqrt() / step as f64);
                    deviations += p;
                }
            }
        }
        output_std.push(stds);
        flood_std.push(floods);
        public_key_std.push(keys);
        sanitize_bits.push(bits);
    }
    OutputNoise { max_p, max_steps, global_p, std: output_std, deviations, flood_std, public_key_std, sanitize_bits }
}

/// The noise a sanitizing server adds to one output element, in output units (variances).
struct ElementFlood {
    /// The public-key encryption of zero's own noise.
    key: f64,
    /// The flooding noise topping the element up to its budget.
    flood: f64,
    /// The hiding the flood gives over the weights' noise.
    hiding_bits: f64,
}

/// Flooding of an output element of scale `2^delta_log` whose noise, before sanitization,
/// has variance `weights`.
fn flood_element(f: Flooding, noise: &NoiseModel, delta_log: u32, step: Option<u64>, weights: f64) -> ElementFlood {
    // The budget, in output units: the real-valued error budget (never beyond what keeps the
    // value from wrapping), or the exact decryption at `p`.
    let z = std::f64::consts::SQRT_2 * erfc_inverse(f.p);
    let half_range = 2f64.powi(63 - delta_log as i32);
    let budget = match step {
        None => (0.5 / z).powi(2),
        Some(step) => (f.output_std * step as f64).powi(2).min((half_range / z).powi(2)),
    };
    let delta = 2f64.powi(delta_log as i32 - 64);
    // Encryption of zero under the public key: ⟨e_pk, r⟩ - ⟨e₁, s⟩ with r and s binary,
    // `k·N/2` terms of the key noise variance each.
    let key = f.big_dimension as f64 * noise.fresh / (delta * delta);
    let flood = (FLOOD_SHARE * budget - weights - key).max(0.0);
    ElementFlood { key, flood, hiding_bits: hiding_bits(flood, weights, z) }
}
