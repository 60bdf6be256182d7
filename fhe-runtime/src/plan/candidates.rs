//! Which parameter sets to try: the set the optimizer generates for the circuit, from its
//! noise constraints, and the groups each polynomial size can fuse.

use fheml_circuits::{Circuit, NodeId, Op, SharedReads, propagate_variance};

use super::config::FheConfig;
use super::deltas::{SanitizedScales, assign_deltas_in};
use super::evaluate::{FLOOD_SHARE, output_step};
use super::reads::{bootstrap_inputs, read_spec_of};
use crate::noise::erfc_inverse;
use crate::optimizer::{Constraint, optimize_where, undominated};
use crate::params::{ParameterSet, Parameters};

/// The shared reads a set can fuse: groups split into chunks whose slots fit the polynomial.
pub(super) fn fitting_groups(circuit: &Circuit, all: &SharedReads, log2_polynomial_size: u32) -> SharedReads {
    all.split(circuit, |members| {
        let read_bits =
            members.first().and_then(|m| read_spec_of(circuit, m.node, m.index)).map_or(64, |s| s.read_bits);
        match log2_polynomial_size.checked_sub(read_bits + 1) {
            Some(free) if free > 0 => 1usize << free.min(16),
            _ => 1,
        }
    })
}

/// The failure probability each lookup (and exact output) may have: `p_error`, or less when a
/// global bound shared by all of them is tighter.
pub(super) fn per_site_p(circuit: &Circuit, config: &FheConfig, bootstraps: usize) -> f64 {
    let exact_outputs: usize = circuit
        .outputs()
        .iter()
        .enumerate()
        .filter(|(i, _)| output_step(circuit, *i, config.exact_outputs).is_none())
        .map(|(_, o)| circuit.node(*o).len())
        .sum();
    match config.global_p_error {
        Some(g) => config.p_error.min(g / (bootstraps + exact_outputs).max(1) as f64),
        None => config.p_error,
    }
}

/// The circuit's noise requirements under `shared`, for the optimizer, and the smallest
/// polynomial size (log2) its reads allow.
fn constraints(
    circuit: &Circuit,
    shared: &SharedReads,
    materialised: &[bool],
    small_key: &[bool],
    config: &FheConfig,
    p: f64,
) -> (Vec<Constraint>, u32) {
    let deltas = assign_deltas_in(circuit, shared, SanitizedScales::of(config, p));
    let unit = |node: NodeId, e: usize| 2f64.powi(2 * (64 - deltas[node.0][e] as i32));
    let is_input = |node: NodeId| matches!(circuit.node(node).op, Op::Input { .. });
    let bootstrap = propagate_variance(circuit, |node, e| if is_input(node) { 0.0 } else { unit(node, e) });
    let fresh =
        propagate_variance(circuit, |node, e| if is_input(node) && !small_key[node.0] { unit(node, e) } else { 0.0 });
    let small_fresh =
        propagate_variance(circuit, |node, e| if is_input(node) && small_key[node.0] { unit(node, e) } else { 0.0 });
    // P(|N(0, v)| > b) <= p  <=>  v <= b² / (2 erfc⁻¹(p)²).
    let z2 = 2.0 * erfc_inverse(p).powi(2);
    let mut all = Vec::new();
    let mut min_log2 = 1;
    for (_, e, source, spec) in bootstrap_inputs(circuit, materialised, shared) {
        min_log2 = min_log2.max(spec.resolved_bits() + 1);
        let half_box = 0.5 * 2f64.powi((spec.width - spec.read_bits) as i32);
        let tolerated = half_box * half_box / z2;
        let sink_unit = 2f64.powi(2 * (spec.width + spec.slot_bits) as i32 + 2);
        let (keyswitch, modulus_switch) =
            if small_key[source.0] { (0.0, sink_unit / tolerated) } else { (sink_unit / tolerated, 0.0) };
        all.push(Constraint {
            bootstrap: bootstrap[source.0][e] / tolerated,
            fresh: fresh[source.0][e] / tolerated,
            small_fresh: small_fresh[source.0][e] / tolerated,
            keyswitch,
            modulus_switch,
        });
    }
    // Sanitized outputs keep room for flooding noise `2^bits · z` times the output's own.
    let flooding = if config.sanitize {
        let factor = 2f64.powi(config.sanitize_bits as i32) * z2.sqrt();
        FLOOD_SHARE / (1.0 + factor * factor)
    } else {
        1.0
    };
    for (i, out) in circuit.outputs().iter().enumerate() {
        let tolerated = flooding
            * match output_step(circuit, i, config.exact_outputs) {
                None => 0.25 / z2,
                Some(step) => (config.output_std * step as f64).powi(2),
            };
        for e in 0..circuit.node(*out).len() {
            all.push(Constraint {
                bootstrap: bootstrap[out.0][e] / tolerated,
                fresh: fresh[out.0][e] / tolerated,
                small_fresh: small_fresh[out.0][e] / tolerated,
                ..Constraint::default()
            });
        }
    }
    (undominated(all), min_log2)
}

/// The share of lookups (0 to 1) that read a large-key value and so keyswitch.
pub(super) fn keyswitched_share(circuit: &Circuit, materialised: &[bool], small_key: &[bool]) -> f64 {
    let sites = bootstrap_inputs(circuit, materialised, &SharedReads::none());
    if sites.is_empty() {
        return 1.0;
    }
    sites.iter().filter(|(_, _, source, _)| !small_key[source.0]).count() as f64 / sites.len() as f64
}

/// The cheapest generated set for the circuit (with and without many-LUT fusion), if any.
pub(super) fn generated_candidate(
    circuit: &Circuit,
    all_shared: &SharedReads,
    materialised: &[bool],
    small_key: &[bool],
    config: &FheConfig,
    sites: usize,
) -> Option<ParameterSet> {
    let p = per_site_p(circuit, config, sites);
    let keyswitched = keyswitched_share(circuit, materialised, small_key);
    let plain = constraints(circuit, &SharedReads::none(), materialised, small_key, config, p);
    let mut best: Option<(ParameterSet, f64)> = None;
    let mut consider = |set: crate::generated::GeneratedParameters, cost: f64, bootstraps: usize| {
        let total = cost * bootstraps as f64;
        if best.as_ref().is_none_or(|(_, b)| total < *b) {
            best = Some((Parameters::Generated(set).set(), total));
        }
    };
    let mut fused_cache: Option<(SharedReads, (Vec<Constraint>, u32))> = None;
    // The sanitizing public key needs `k·N` to be a power of two.
    let allow_k = |k: usize| !config.sanitize || k.is_power_of_two();
    let (low, high) = crate::generated::bounds::LOG2_POLYNOMIAL_SIZE;
    for log2_n in low.max(plain.1)..=high {
        if let Some((set, cost)) = optimize_where(log2_n, &plain.0, keyswitched, allow_k) {
            consider(set, cost, sites);
        }
        if all_shared.is_empty() {
            continue;
        }
        let shared = fitting_groups(circuit, all_shared, log2_n);
        if shared.is_empty() {
            continue;
        }
        let fused = match &fused_cache {
            Some((cached, c)) if *cached == shared => c.clone(),
            _ => {
                let c = constraints(circuit, &shared, materialised, small_key, config, p);
                fused_cache = Some((shared.clone(), c.clone()));
                c
            }
        };
        if fused.1 <= log2_n
            && let Some((set, cost)) = optimize_where(log2_n, &fused.0, keyswitched, allow_k)
        {
            consider(set, cost, sites - shared.bootstraps_saved());
        }
    }
    best.map(|(set, _)| set)
}
