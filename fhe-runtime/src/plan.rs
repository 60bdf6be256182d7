//! Compilation: encodings, noise analysis and parameter selection for one circuit.
//!
//! Every ciphertext carries a message `m` scaled by `Δ = 2^delta_log` on `Z/2^64`. Linear
//! operations are ring operations modulo `2^64`, so a value may wrap in the middle of a
//! sum as long as the *sinks* (what a bootstrap reads, what the client decrypts) fit their
//! own encodings: a sink reading `w` bits needs `Δ = 2^(63-w)` (one padding bit for the
//! negacyclic bootstrap), an output of `w` two's-complement bits `Δ = 2^(64-w)`. Each
//! source (fresh input, bootstrap output) gets the largest `Δ` that divides the `Δ` of
//! every sink it reaches, which minimises its relative noise; linear operations lift
//! operands to their own `Δ` by multiplying with a power of two.
//!
//! Noise is tracked relative to each value's own unit (variance in "message units"),
//! which linear maps transform like plain variances. A bootstrap fails when the noise at
//! its input exceeds half a box of what it reads; an output fails when the noise exceeds
//! half a unit. The cheapest vetted parameter set that keeps every such probability under
//! `p_error` (and their sum under `global_p_error`) is chosen.
//!
//! # Many-LUT
//!
//! Lookups that read the same ciphertext through the same rounding ([`SharedReads`]) can
//! share one bootstrap: the accumulator holds their `k` tables side by side, and each result
//! is extracted at its own offset of the rotated accumulator (tfhe-rs's many-LUT). For the
//! rotation to stay inside the first table's slice, the message must occupy only `1/2^s` of
//! the padded torus, `s = ceil(log2 k)` ([`ReadSpec::slot_bits`]): the sink's scale is
//! `Δ = 2^(63 - width - s)`, boxes are `2^s` times narrower on the polynomial, and the
//! keyswitch and modulus-switch noise weigh `4^s` times more in message units (as does the
//! source's own noise, whose `Δ` shrinks with its sink's). The planner therefore decides per
//! group and per parameter set: it starts with every group fused (split into chunks the
//! polynomial can hold), re-runs the noise analysis, un-fuses the groups whose finer read
//! misses `p_error` (or all groups, if something else fails), and keeps the parameter set
//! with the smallest `bootstraps × cost`. A fused group costs one keyswitch and one blind
//! rotation, the same as a single lookup on that set. The `k` outputs of one rotation are
//! treated as independent noise sources, as tfhe-rs does.
//!
//! # Inputs under the small key
//!
//! A fresh input that only ever reaches lookups through leveled operations, never an output
//! and never a sum with a bootstrap's result ([`small_key_nodes`]), is encrypted by the
//! client under the small LWE key, the keyswitch's target: the lookups reading it skip the
//! keyswitch (a fifth to a quarter of a lookup's time on small sets) and its noise, paying the
//! small key's fresh noise and the modulus switch instead. Every lookup of a tree ensemble
//! and every first-layer lookup of a network reads such inputs. When a circuit fits no set
//! that way (large weights in front of small-key inputs), it is planned with every input
//! under the large key.

use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

use fheml_circuits::{
    BitWidth, Circuit, ElementRef, FusedRounding, Interval, NodeId, Op, OutputKind, RoundingMode, SharedReads,
    lookup_source, materialised_rounds, propagate_variance,
};

use crate::error::{FheError, Result};
use crate::noise::{erfc_inverse, log2_probability, two_sided_tail};
use crate::optimizer::{Constraint, optimize_where, undominated};
use crate::params::{NoiseModel, ParameterSet, ParameterSetId, Parameters};

/// Where parameter sets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ParameterMode {
    /// Sets generated for the circuit by the optimizer, and the vetted sets: the cheapest
    /// that fits wins (a generated set never costs more than the best vetted one).
    #[default]
    Optimized,
    /// Only tfhe-rs's vetted sets (`--params vetted`).
    Vetted,
}

impl std::str::FromStr for ParameterMode {
    type Err = FheError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "optimized" | "optimize" | "auto" => Ok(ParameterMode::Optimized),
            "vetted" => Ok(ParameterMode::Vetted),
            other => Err(FheError::Config(format!("unknown parameter mode `{other}`; use optimized or vetted"))),
        }
    }
}

/// What the user asks of compilation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FheConfig {
    p_error: f64,
    global_p_error: Option<f64>,
    candidates: Vec<ParameterSetId>,
    #[serde(default = "yes")]
    many_lut: bool,
    #[serde(default)]
    parameters: ParameterMode,
    #[serde(default = "default_output_std")]
    output_std: f64,
    #[serde(default)]
    exact_outputs: bool,
    #[serde(default)]
    sanitize: bool,
    #[serde(default = "default_sanitize_bits")]
    sanitize_bits: u32,
}

fn yes() -> bool {
    true
}

fn default_sanitize_bits() -> u32 {
    DEFAULT_SANITIZE_BITS
}

/// Default statistical hiding asked of sanitized outputs: the flooding noise is at least
/// `2^16` times the bound on the noise the weights leave in an output (see
/// [`crate::sanitize`]).
pub const DEFAULT_SANITIZE_BITS: u32 = 16;

/// Largest hiding a 64-bit ciphertext can carry above any output noise.
pub const MAX_SANITIZE_BITS: u32 = 40;

fn default_output_std() -> f64 {
    DEFAULT_OUTPUT_STD
}

/// Default error budget of a real-valued output: its standard deviation, in steps.
pub const DEFAULT_OUTPUT_STD: f64 = 0.25;

impl Default for FheConfig {
    fn default() -> Self {
        Self {
            p_error: 2f64.powi(-40),
            global_p_error: None,
            candidates: ParameterSetId::all().to_vec(),
            many_lut: true,
            parameters: ParameterMode::Optimized,
            output_std: DEFAULT_OUTPUT_STD,
            exact_outputs: false,
            sanitize: false,
            sanitize_bits: DEFAULT_SANITIZE_BITS,
        }
    }
}

/// Checked builder for [`FheConfig`].
#[derive(Debug, Clone, Default)]
pub struct FheConfigParams(FheConfig);

impl FheConfig {
    /// Starts from the defaults: `p_error = 2^-40` per lookup (Concrete ML's default), no
    /// global bound, parameters optimized for the circuit (vetted sets as candidates too),
    /// real-valued outputs within a quarter step.
    pub fn params() -> FheConfigParams {
        FheConfigParams::default()
    }

    /// Failure probability allowed per table lookup (and per exact output element).
    pub fn p_error(&self) -> f64 {
        self.p_error
    }

    /// Failure probability allowed for a whole evaluation, if bounded.
    pub fn global_p_error(&self) -> Option<f64> {
        self.global_p_error
    }

    /// Whether lookups of one value may share a bootstrap (many-LUT).
    pub fn many_lut(&self) -> bool {
        self.many_lut
    }

    /// Where parameter sets come from.
    pub fn parameter_mode(&self) -> ParameterMode {
        self.parameters
    }

    /// Largest standard deviation of a real-valued output's decryption error, in its steps.
    pub fn output_std(&self) -> f64 {
        self.output_std
    }

    /// Whether every output is decrypted exactly, real-valued ones included.
    pub fn exact_outputs(&self) -> bool {
        self.exact_outputs
    }

    /// Whether outputs are planned for sanitization (see [`crate::sanitize`]).
    pub fn sanitize(&self) -> bool {
        self.sanitize
    }

    /// Smallest statistical hiding (bits) a sanitized output must reach.
    pub fn sanitize_bits(&self) -> u32 {
        self.sanitize_bits
    }
}

impl FheConfigParams {
    /// Failure probability per lookup, in `(0, 0.5)`.
    pub fn p_error(mut self, p: f64) -> Self {
        self.0.p_error = p;
        self
    }

    /// Failure probability per evaluation, in `(0, 1)`.
    pub fn global_p_error(mut self, p: Option<f64>) -> Self {
        self.0.global_p_error = p;
        self
    }

    /// Restricts compilation to these vetted parameter sets (e.g. to force 2^-128 sets);
    /// implies [`ParameterMode::Vetted`].
    pub fn candidates(mut self, ids: &[ParameterSetId]) -> Self {
        self.0.candidates = ids.to_vec();
        self.0.parameters = ParameterMode::Vetted;
        self
    }

    /// Optimized parameters (the default) or vetted sets only.
    pub fn parameter_mode(mut self, mode: ParameterMode) -> Self {
        self.0.parameters = mode;
        self
    }

    /// Allows (the default) or forbids many-LUT: lookups reading the same value through the
    /// same rounding sharing one bootstrap where the noise budget allows.
    pub fn many_lut(mut self, allow: bool) -> Self {
        self.0.many_lut = allow;
        self
    }

    /// Error budget of real-valued outputs: the largest standard deviation of the decrypted
    /// value, in units of the output's step, in `(0, 8]` (default 0.25).
    pub fn output_std(mut self, std: f64) -> Self {
        self.0.output_std = std;
        self
    }

    /// Decrypts every output exactly, as if none were real-valued.
    pub fn exact_outputs(mut self, exact: bool) -> Self {
        self.0.exact_outputs = exact;
        self
    }

    /// Plans every output for sanitization (off by default): the server re-randomizes each
    /// returned ciphertext with a fresh public-key encryption of zero and floods its noise to
    /// the output's error budget, so that neither its mask nor its noise depends on the
    /// weights ([`crate::sanitize`]). The flooding noise counts in the output errors the
    /// report states, and only parameter sets where it fits are chosen.
    pub fn sanitize(mut self, sanitize: bool) -> Self {
        self.0.sanitize = sanitize;
        self
    }

    /// Smallest statistical hiding of a sanitized output, in bits, in `0..=40` (default 16):
    /// the flooding noise is at least `2^bits` times the high-probability bound on the noise
    /// the weights leave in the output, so one output element is within statistical distance
    /// `2^-bits / √(2π)` (plus `p_error`) of one whose noise owes nothing to the weights.
    pub fn sanitize_bits(mut self, bits: u32) -> Self {
        self.0.sanitize_bits = bits;
        self
    }

    /// Validates.
    pub fn check(self) -> Result<FheConfig> {
        let c = self.0;
        if !(c.p_error > 0.0 && c.p_error < 0.5) {
            return Err(FheError::Config(format!("p_error must lie in (0, 0.5), got {}", c.p_error)));
        }
        if let Some(g) = c.global_p_error
            && !(g > 0.0 && g < 1.0)
        {
            return Err(FheError::Config(format!("global_p_error must lie in (0, 1), got {g}")));
        }
        if c.candidates.is_empty() {
            return Err(FheError::Config("no candidate parameter set".into()));
        }
        if !(c.output_std > 0.0 && c.output_std <= 8.0) {
            return Err(FheError::Config(format!("output_std must lie in (0, 8] steps, got {}", c.output_std)));
        }
        if c.sanitize_bits > MAX_SANITIZE_BITS {
            return Err(FheError::Config(format!(
                "sanitize_bits must lie in 0..={MAX_SANITIZE_BITS}, got {}",
                c.sanitize_bits
            )));
        }
        Ok(c)
    }
}

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
fn bootstrap_inputs(
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
    fn of(config: &FheConfig, p: f64) -> Option<Self> {
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

/// Why a candidate parameter set was rejected, or its failure probabilities.
#[derive(Debug, Clone, PartialEq)]
struct Evaluation {
    max_lookup_p: f64,
    /// Largest failure probability of an exact output element.
    max_output_p: f64,
    /// Largest error std of a real-valued output element, in its steps.
    max_output_steps: f64,
    global_p: f64,
    /// For simulation: per node element, the noise standard deviation at that bootstrap's
    /// input, in units of the value it reads.
    sink_std: Vec<Vec<f64>>,
    output_std: Vec<Vec<f64>>,
    /// Largest failure probability among the members of each fused group.
    group_p: Vec<f64>,
    /// Expected one-step deviations of approximate roundings per evaluation.
    rounding_deviations: f64,
    /// Expected real-valued output elements decrypted one unit or more off, per evaluation.
    output_deviations: f64,
    /// The tightest lookup: (node, element, resolved bits, noise std in units of the read).
    worst_lookup: Option<(NodeId, usize, u32, f64)>,
    /// Sanitization, per output element: the flooding noise's std, in output units.
    flood_std: Vec<Vec<f64>>,
    /// Sanitization, per output element: the std of the public-key encryption of zero's own
    /// noise, in output units.
    public_key_std: Vec<Vec<f64>>,
    /// Sanitization, per output: the smallest hiding (bits) of its elements (infinite when
    /// not sanitizing).
    sanitize_bits: Vec<f64>,
}

/// Share of an output's variance budget a sanitized output fills: the flooding noise tops
/// the output's own noise up to it, so that the total no longer depends on the weights.
pub const FLOOD_SHARE: f64 = 0.99;

/// What sanitizing outputs needs to know of a candidate set.
#[derive(Debug, Clone, Copy)]
struct Flooding {
    /// Failure probability of one exact output element, and the tail beyond which the
    /// weights' noise bound may fail.
    p: f64,
    /// `k·N`: the dimension of the public key and of every output ciphertext.
    big_dimension: usize,
    /// Error budget of real-valued outputs, in steps.
    output_std: f64,
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
fn output_step(circuit: &Circuit, i: usize, exact_outputs: bool) -> Option<u64> {
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

/// How a circuit's bootstraps read: which roundings bootstrap on their own, which lookups
/// share a bootstrap, which values are under the small key.
struct Reads<'a> {
    materialised: &'a [bool],
    shared: &'a SharedReads,
    small_key: &'a [bool],
}

fn evaluate_candidate(
    circuit: &Circuit,
    deltas: &[Vec<u32>],
    noise: &NoiseModel,
    reads: &Reads,
    exact_outputs: bool,
    flooding: Option<Flooding>,
) -> std::result::Result<Evaluation, String> {
    let Reads { materialised, shared, small_key } = *reads;
    let var = propagate_variance(circuit, |node, e| {
        let source = match circuit.node(node).op {
            Op::Input { .. } if small_key[node.0] => noise.small_fresh,
            Op::Input { .. } => noise.fresh,
            _ => noise.bootstrap_output,
        };
        let delta = 2f64.powi(deltas[node.0][e] as i32 - 64);
        source / (delta * delta)
    });
    let mut sink_std: Vec<Vec<f64>> = circuit.nodes().iter().map(|n| vec![0.0; n.len()]).collect();
    let (mut max_lookup_p, mut global_p, mut rounding_deviations) = (0f64, 0f64, 0f64);
    let mut worst_lookup: Option<(NodeId, usize, u32, f64)> = None;
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
        if p > max_lookup_p || worst_lookup.is_none() {
            worst_lookup = Some((node, e, spec.resolved_bits(), variance.sqrt() / (2.0 * half_box)));
        }
        max_lookup_p = max_lookup_p.max(p);
        if let Some(g) = shared.group_of(ElementRef { node, index: e }) {
            group_p[g] = group_p[g].max(p);
            // One bootstrap for the whole group: its failure counts once.
            if shared.groups()[g][0] != (ElementRef { node, index: e }) {
                continue;
            }
        }
        global_p += p;
    }
    let mut output_std: Vec<Vec<f64>> = Vec::new();
    let (mut flood_std, mut public_key_std, mut sanitize_bits) = (Vec::new(), Vec::new(), Vec::new());
    let (mut max_output_p, mut max_output_steps, mut output_deviations) = (0f64, 0f64, 0f64);
    for (i, out) in circuit.outputs().iter().enumerate() {
        let step = output_step(circuit, i, exact_outputs);
        let (mut stds, mut floods, mut keys, mut bits) = (Vec::new(), Vec::new(), Vec::new(), f64::INFINITY);
        for (e, weights) in var[out.0].iter().enumerate() {
            let mut v = *weights;
            if let Some(f) = flooding {
                // The budget, in output units: the real-valued error budget (never beyond
                // what keeps the value from wrapping), or the exact decryption at `p`.
                let z = std::f64::consts::SQRT_2 * erfc_inverse(f.p);
                let half_range = 2f64.powi(63 - deltas[out.0][e] as i32);
                let budget = match step {
                    None => (0.5 / z).powi(2),
                    Some(step) => (f.output_std * step as f64).powi(2).min((half_range / z).powi(2)),
                };
                let delta = 2f64.powi(deltas[out.0][e] as i32 - 64);
                // Encryption of zero under the public key: ⟨e_pk, r⟩ - ⟨e₁, s⟩ with r and s
                // binary, `k·N/2` terms of the key noise variance each.
                let key = f.big_dimension as f64 * noise.fresh / (delta * delta);
                let flood = (FLOOD_SHARE * budget - v - key).max(0.0);
                bits = bits.min(hiding_bits(flood, v, z));
                floods.push(flood.sqrt());
                keys.push(key.sqrt());
                v += key + flood;
            }
            stds.push(v.sqrt());
            let p = two_sided_tail(0.5, v);
            match step {
                None => {
                    max_output_p = max_output_p.max(p);
                    global_p += p;
                }
                Some(step) => {
                    max_output_steps = max_output_steps.max(v.sqrt() / step as f64);
                    output_deviations += p;
                }
            }
        }
        output_std.push(stds);
        flood_std.push(floods);
        public_key_std.push(keys);
        sanitize_bits.push(bits);
    }
    Ok(Evaluation {
        max_lookup_p,
        max_output_p,
        max_output_steps,
        global_p,
        sink_std,
        output_std,
        group_p,
        rounding_deviations,
        output_deviations,
        worst_lookup,
        flood_std,
        public_key_std,
        sanitize_bits,
    })
}

/// How one output is decrypted, and with what error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputReport {
    /// Decrypted exactly (at `p_error`) rather than as a real value.
    pub exact: bool,
    /// Integers per step of a real-valued output (1 for exact ones).
    pub step: u64,
    /// Largest standard deviation of an element's decryption error, in integers.
    pub error_std: f64,
    /// Largest probability that an element decrypts off its clear value.
    pub p_off: f64,
    /// Sanitized outputs: the smallest statistical hiding of an element's noise, in bits
    /// (`error_std` includes the flooding noise).
    #[serde(default)]
    pub sanitize_bits: Option<f64>,
}

/// What compilation decided, reported before any key is generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompileReport {
    /// Chosen parameter set (tfhe-rs name, or the generated set's).
    pub parameter_set: String,
    /// Whether the set was generated for this circuit (rather than a vetted tfhe-rs set).
    #[serde(default)]
    pub generated: bool,
    /// Whether the server needs bootstrapping keys.
    pub needs_evaluation_key: bool,
    /// Bootstraps per evaluation (a many-LUT bootstrap counts once).
    pub bootstraps: usize,
    /// Table lookups (and materialised roundings) per evaluation: `bootstraps` plus what
    /// many-LUT saved.
    #[serde(default)]
    pub lookups: usize,
    /// Many-LUT bootstraps: groups of lookups of one value sharing one bootstrap.
    #[serde(default)]
    pub shared_bootstraps: usize,
    /// Leveled multiply-add terms per evaluation.
    pub leveled_terms: usize,
    /// Largest bootstrap read precision.
    pub max_precision: BitWidth,
    /// Largest 2-norm in front of a bootstrap (unit-noise sources).
    pub max_norm2: f64,
    /// Requested failure probability per lookup.
    pub p_error: f64,
    /// Largest failure probability of one lookup with the chosen parameters.
    pub lookup_p_error: f64,
    /// Largest failure probability of one exactly decrypted output element.
    pub output_p_error: f64,
    /// Failure probability of one whole evaluation (sum over lookups and exact outputs).
    pub global_p_error: f64,
    /// Per output: exact or real-valued, and its decryption error.
    #[serde(default)]
    pub outputs: Vec<OutputReport>,
    /// Expected real-valued output elements per sample that decrypt one unit (or more) off
    /// their clear value.
    #[serde(default)]
    pub output_deviations: f64,
    /// LWE dimension of the exchanged ciphertexts.
    pub ciphertext_dimension: usize,
    /// Input ciphertexts per sample.
    pub input_ciphertexts: usize,
    /// Output ciphertexts per sample.
    pub output_ciphertexts: usize,
    /// Uncompressed evaluation key size in bytes (0 without lookups).
    pub evaluation_key_bytes: u64,
    /// Compressed (seeded) evaluation key size in bytes: what is sent and stored.
    #[serde(default)]
    pub compressed_key_bytes: u64,
    /// Expected number of approximate roundings per evaluation that come out one step off
    /// their clear value (noise near a rounding boundary); 0 without approximate roundings.
    #[serde(default)]
    pub rounding_deviations: f64,
    /// Estimated time of one keyswitch + bootstrap on one thread, in seconds.
    #[serde(default)]
    pub bootstrap_seconds: f64,
    /// Expected server time per sample, in seconds, with `threads` threads.
    pub expected_seconds: f64,
    /// Lookups reading inputs encrypted under the small key: they skip the keyswitch.
    #[serde(default)]
    pub small_key_lookups: usize,
    /// Threads the estimate assumes.
    pub threads: usize,
    /// The hiding asked of sanitized outputs, in bits; `None` when outputs are not planned
    /// for sanitization.
    #[serde(default)]
    pub sanitize_bits: Option<u32>,
}

impl std::fmt::Display for CompileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = if self.generated { " (generated for this circuit)" } else { "" };
        writeln!(f, "parameters        {}{origin}", self.parameter_set)?;
        writeln!(
            f,
            "bootstraps        {} per sample (max {} , 2-norm {:.1})",
            self.bootstraps, self.max_precision, self.max_norm2
        )?;
        if self.shared_bootstraps > 0 {
            writeln!(
                f,
                "many-LUT          {} lookups in {} bootstraps, {} of which serve several tables",
                self.lookups, self.bootstraps, self.shared_bootstraps
            )?;
        }
        if self.small_key_lookups > 0 {
            writeln!(
                f,
                "small-key inputs  {} of {} lookups read inputs encrypted under the small key (no keyswitch)",
                self.small_key_lookups, self.lookups
            )?;
        }
        writeln!(f, "leveled terms     {}", self.leveled_terms)?;
        if self.rounding_deviations > 0.0 {
            writeln!(
                f,
                "approx. rounding  {:.3} one-step deviations from Clear expected per sample",
                self.rounding_deviations
            )?;
        }
        writeln!(
            f,
            "failure prob.     lookup 2^{:.1}, exact output 2^{:.1}, per evaluation 2^{:.1} (asked 2^{:.1} per lookup)",
            log2_probability(self.lookup_p_error),
            log2_probability(self.output_p_error),
            log2_probability(self.global_p_error),
            log2_probability(self.p_error)
        )?;
        for (i, o) in self.outputs.iter().enumerate() {
            let hiding = o.sanitize_bits.map(|b| format!(", sanitized ({b:.1} bits)")).unwrap_or_default();
            if o.exact {
                writeln!(
                    f,
                    "output {i}          exact, error std {:.2e}, off with p 2^{:.1}{hiding}",
                    o.error_std,
                    log2_probability(o.p_off)
                )?;
            } else {
                writeln!(
                    f,
                    "output {i}          real, step {}, error std {:.3} ({:.3} steps), one unit off with p {:.2e}{hiding}",
                    o.step,
                    o.error_std,
                    o.error_std / o.step as f64,
                    o.p_off
                )?;
            }
        }
        if let Some(bits) = self.sanitize_bits {
            writeln!(
                f,
                "sanitization      outputs re-randomized and flooded to their error budget, at least {bits} bits of hiding"
            )?;
        }
        if self.output_deviations > 0.0 {
            writeln!(
                f,
                "output deviations {:.3} elements one unit off Clear expected per sample",
                self.output_deviations
            )?;
        }
        writeln!(
            f,
            "ciphertexts       {} in, {} out (LWE dimension {})",
            self.input_ciphertexts, self.output_ciphertexts, self.ciphertext_dimension
        )?;
        writeln!(
            f,
            "evaluation key    {:.1} MiB compressed, {:.1} MiB expanded on the server",
            self.compressed_key_bytes as f64 / (1 << 20) as f64,
            self.evaluation_key_bytes as f64 / (1 << 20) as f64
        )?;
        write!(
            f,
            "expected time     {:.3} s per sample on {} threads ({:.1} ms per bootstrap)",
            self.expected_seconds,
            self.threads,
            self.bootstrap_seconds * 1e3
        )
    }
}

/// The outcome of parameter selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Chosen parameter set.
    pub parameters: Parameters,
    /// `log2 Δ` of every element of every node.
    pub deltas: Vec<Vec<u32>>,
    /// Noise std at each bootstrap input, in units of the value read (simulation).
    pub sink_std: Vec<Vec<f64>>,
    /// Noise std of each output element, in output units (simulation).
    pub output_std: Vec<Vec<f64>>,
    /// The shared-read groups evaluated by one many-LUT bootstrap each.
    #[serde(default)]
    pub shared: SharedReads,
    /// The report.
    pub report: CompileReport,
    /// How outputs are sanitized, when they are planned for it.
    #[serde(default)]
    pub sanitization: Option<SanitizationPlan>,
    /// Per node: whether its value is under the small LWE key ([`small_key_nodes`]; empty
    /// when every value is under the large key).
    #[serde(default)]
    pub small_key: Vec<bool>,
}

/// The noise a sanitizing server adds to each output element (see [`crate::sanitize`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanitizationPlan {
    /// The hiding asked, in bits.
    pub bits: u32,
    /// Per output: the smallest hiding its elements reach, in bits.
    pub achieved_bits: Vec<f64>,
    /// Per output element: standard deviation of the flooding noise, in output units.
    pub flood_std: Vec<Vec<f64>>,
    /// Per output element: standard deviation of the encryption of zero's own noise, in
    /// output units.
    pub public_key_std: Vec<Vec<f64>>,
}

impl Plan {
    /// Whether `node`'s value is under the small LWE key.
    pub fn is_small_key(&self, node: NodeId) -> bool {
        self.small_key.get(node.0).copied().unwrap_or(false)
    }

    /// The read spec of a bootstrap element under this plan (many-LUT slots included).
    pub fn read_spec(&self, circuit: &Circuit, node: NodeId, e: usize) -> Option<ReadSpec> {
        read_spec_in(circuit, &self.shared, node, e)
    }
}

impl Plan {
    /// Checks a plan read from bytes against the (already validated) circuit it claims to
    /// plan: the parameter set is bounded and secure; every per-node table has one entry per
    /// element; the many-LUT groups are groups the circuit really has; the small-key values
    /// are the ones [`small_key_nodes`] derives; the scales are the ones [`assign_deltas`]
    /// derives (a sanitized plan's may only be finer); the noise analysis, re-run on these
    /// scales and parameters, meets the failure probability the report states; and the
    /// report's counts and sizes are the circuit's. A plan that passes evaluates the circuit
    /// as compiled: no scale, group or size is taken on trust from the file.
    pub fn check(&self, circuit: &Circuit) -> Result<()> {
        let bad = |detail: String| Err(FheError::Format { what: "model", detail: format!("plan: {detail}") });
        self.parameters.validate()?;
        let set = self.parameters.set();
        let nodes = circuit.nodes();
        let per_node = |name: &str, lens: Vec<usize>| -> Result<()> {
            if lens.len() != nodes.len() || lens.iter().zip(nodes).any(|(l, n)| *l != n.len()) {
                return bad(format!("its {name} do not have one entry per element of the circuit"));
            }
            Ok(())
        };
        per_node("scales", self.deltas.iter().map(Vec::len).collect())?;
        per_node("noise estimates", self.sink_std.iter().map(Vec::len).collect())?;
        if self.deltas.iter().flatten().any(|d| !(1..=63).contains(d)) {
            return bad("a scale outside 2^1..2^63".into());
        }
        let per_output = |name: &str, lens: Vec<usize>| -> Result<()> {
            let outs = circuit.outputs();
            if lens.len() != outs.len() || lens.iter().zip(outs).any(|(l, o)| *l != circuit.node(*o).len()) {
                return bad(format!("its {name} do not have one entry per output element"));
            }
            Ok(())
        };
        per_output("output noise estimates", self.output_std.iter().map(Vec::len).collect())?;
        let finite = |v: &[Vec<f64>]| v.iter().flatten().all(|x| x.is_finite() && *x >= 0.0);
        if !finite(&self.sink_std) || !finite(&self.output_std) {
            return bad("a noise estimate that is negative or not finite".into());
        }
        if self.shared.validate(circuit).is_err() {
            return bad("its many-LUT groups are not groups of lookups reading one value".into());
        }
        let derived_small = small_key_nodes(circuit);
        if !self.small_key.is_empty() && self.small_key != derived_small {
            return bad("its small-key values are not the ones the circuit allows".into());
        }
        let small_key = if self.small_key.is_empty() { vec![false; nodes.len()] } else { self.small_key.clone() };
        let derived = assign_deltas(circuit, &self.shared);
        let scales_fit = match self.sanitization {
            None => self.deltas == derived,
            Some(_) => self.deltas.iter().flatten().zip(derived.iter().flatten()).all(|(d, base)| d <= base),
        };
        if !scales_fit {
            return bad("its scales are not the ones the circuit needs".into());
        }
        let report = &self.report;
        let outs = circuit.outputs();
        if report.outputs.len() != outs.len() {
            return bad(format!("{} output reports for {} outputs", report.outputs.len(), outs.len()));
        }
        let exact_outputs = report
            .outputs
            .iter()
            .enumerate()
            .any(|(i, o)| o.exact && matches!(circuit.output_kind(i), OutputKind::Real { .. }));
        if report.outputs.iter().enumerate().any(|(i, o)| o.exact != output_step(circuit, i, exact_outputs).is_none()) {
            return bad("its output reports do not match the circuit's outputs".into());
        }
        let materialised = materialised_rounds(circuit);
        let reads = Reads { materialised: &materialised, shared: &self.shared, small_key: &small_key };
        let eval = match evaluate_candidate(circuit, &self.deltas, &set.noise_model(), &reads, exact_outputs, None) {
            Ok(eval) => eval,
            Err(why) => return bad(why),
        };
        // The same computation as at compile time, so equal up to rounding across machines.
        let slack = |p: f64| p * (1.0 + 1e-6) + f64::MIN_POSITIVE;
        if !(report.p_error > 0.0 && report.p_error < 1.0) {
            return bad(format!("failure probability {} is not in (0, 1)", report.p_error));
        }
        if eval.max_lookup_p > slack(report.p_error) || eval.max_output_p > slack(report.p_error) {
            return bad(format!(
                "its scales fail with probability 2^{:.1} on {}, above the 2^{:.1} it states",
                log2_probability(eval.max_lookup_p.max(eval.max_output_p)),
                set.name,
                log2_probability(report.p_error)
            ));
        }
        let sites = circuit.cost().lookups.len();
        let needs_key = sites > 0;
        let count = |ids: &[NodeId]| ids.iter().map(|id| circuit.node(*id).len()).sum::<usize>();
        let consistent = report.parameter_set == set.name
            && report.generated == matches!(self.parameters, Parameters::Generated(_))
            && report.needs_evaluation_key == needs_key
            && report.lookups == sites
            && Some(report.bootstraps) == sites.checked_sub(self.shared.bootstraps_saved())
            && report.shared_bootstraps == self.shared.len()
            && report.ciphertext_dimension == set.big_lwe_dimension()
            && report.input_ciphertexts == count(circuit.inputs())
            && report.output_ciphertexts == count(outs)
            && report.evaluation_key_bytes == if needs_key { set.evaluation_key_bytes() } else { 0 }
            && report.compressed_key_bytes == if needs_key { set.compressed_key_bytes() } else { 0 }
            && report.sanitize_bits.is_some() == self.sanitization.is_some();
        if !consistent {
            return bad("its report does not match the circuit and parameter set".into());
        }
        if let Some(s) = &self.sanitization {
            if !crate::sanitize::supports(&set.params) {
                return bad(format!("sanitized outputs on {}, which cannot sanitize", set.name));
            }
            per_output("flooding noises", s.flood_std.iter().map(Vec::len).collect())?;
            per_output("public-key noises", s.public_key_std.iter().map(Vec::len).collect())?;
            if s.achieved_bits.len() != outs.len() || !finite(&s.flood_std) || !finite(&s.public_key_std) {
                return bad("its sanitization does not fit the outputs".into());
            }
        }
        Ok(())
    }
}

/// What one parameter set gives, with the groups it fuses.
struct Feasible {
    set: ParameterSet,
    shared: SharedReads,
    deltas: Vec<Vec<u32>>,
    eval: Evaluation,
    bootstraps: usize,
}

/// The shared reads a set can fuse: groups split into chunks whose slots fit the polynomial.
fn fitting_groups(circuit: &Circuit, all: &SharedReads, log2_polynomial_size: u32) -> SharedReads {
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
fn per_site_p(circuit: &Circuit, config: &FheConfig, bootstraps: usize) -> f64 {
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
fn keyswitched_share(circuit: &Circuit, materialised: &[bool], small_key: &[bool]) -> f64 {
    let sites = bootstrap_inputs(circuit, materialised, &SharedReads::none());
    if sites.is_empty() {
        return 1.0;
    }
    sites.iter().filter(|(_, _, source, _)| !small_key[source.0]).count() as f64 / sites.len() as f64
}

/// The cheapest generated set for the circuit (with and without many-LUT fusion), if any.
fn generated_candidate(
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

/// One sentence on why nothing fits: the tightest lookup or output and what to change.
fn why_nothing_fits(circuit: &Circuit, config: &FheConfig) -> String {
    let cost = circuit.cost();
    let widest = cost.lookups.iter().max_by_key(|l| l.precision);
    let noisiest = cost.lookups.iter().max_by(|a, b| a.norm2.total_cmp(&b.norm2));
    let too_wide = widest.filter(|l| l.precision.0 + 1 > crate::generated::bounds::LOG2_POLYNOMIAL_SIZE.1);
    if let Some(l) = too_wide {
        return format!(
            "lookup node {} reads {}, more than any bootstrap resolves; round its accumulator (accumulator_bits) or use fewer bits",
            l.node, l.precision
        );
    }
    let exact_wide = circuit
        .outputs()
        .iter()
        .enumerate()
        .filter(|(i, _)| output_step(circuit, *i, config.exact_outputs).is_none())
        .map(|(i, o)| (i, circuit.node(*o).range()))
        .max_by_key(|(_, r)| r.span_bits());
    match (widest, noisiest) {
        (Some(w), Some(n)) => format!(
            "the widest lookup (node {}, {}) and the noisiest (node {}, {} behind a weight 2-norm of {:.1}) need more than any secure set gives at p_error 2^{:.1}{}; use fewer bits (w_bits, a_bits, n_bits), a smaller accumulator_bits or a smaller layer, or a larger p_error",
            w.node,
            w.precision,
            n.node,
            n.precision,
            n.norm2,
            log2_probability(config.p_error),
            exact_wide
                .map(|(i, r)| format!(" (output {i} is decrypted exactly over {} bits)", r.span_bits()))
                .unwrap_or_default()
        ),
        _ => match exact_wide {
            Some((i, r)) => format!(
                "output {i} must decrypt exactly over {} bits at p_error 2^{:.1}; declare it real-valued, use fewer bits or a larger p_error",
                r.span_bits(),
                log2_probability(config.p_error)
            ),
            None => "no real-valued output meets its error budget; raise output_std or use fewer bits".to_string(),
        },
    }
}

/// One sentence on why sanitized outputs fit no set: the hiding reached, and what to change.
fn why_sanitization_does_not_fit(circuit: &Circuit, config: &FheConfig) -> String {
    let bootstrapped = if circuit.cost().lookups.is_empty() {
        ""
    } else {
        " (outputs fed by lookups carry bootstrap noise, which 64-bit ciphertexts leave little room to flood)"
    };
    let most = most_hiding(circuit, config).map_or_else(
        || "no parameter set fits even without a minimum hiding".to_string(),
        |(bits, plan)| {
            format!(
                "at most {bits} bits fit ({}, every output at least {:.1} bits, {:.3} s per sample expected)",
                plan.report.parameter_set,
                plan.sanitization.as_ref().map_or(0.0, |s| s
                    .achieved_bits
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min)),
                plan.report.expected_seconds
            )
        },
    );
    format!(
        "sanitized outputs must hide their noise behind {} bits of flooding noise within their error budget, and {most}{bootstrapped}: lower sanitize_bits, raise output_std, use fewer bits, or compile without sanitization",
        config.sanitize_bits
    )
}

/// The largest `sanitize_bits` below the asked one that fits, with its plan (a bisection of
/// plans, run only to explain a failure).
fn most_hiding(circuit: &Circuit, config: &FheConfig) -> Option<(u32, Plan)> {
    let attempt = |bits: u32| plan_with(circuit, &FheConfig { sanitize_bits: bits, ..config.clone() }, false).ok();
    let mut best = attempt(0).map(|p| (0, p))?;
    let (mut lo, mut hi) = (0u32, config.sanitize_bits);
    // Invariant: `lo` fits, `hi` does not.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match attempt(mid) {
            Some(p) => {
                best = (mid, p);
                lo = mid;
            }
            None => hi = mid,
        }
    }
    Some(best)
}

/// Chooses encodings, the shared reads to fuse and the cheapest parameter set meeting
/// `config` (smallest `bootstraps × cost`; without lookups, the smallest ciphertexts).
pub fn plan(circuit: &Circuit, config: &FheConfig) -> Result<Plan> {
    plan_with(circuit, config, true)
}

/// [`plan`]; `explain` searches, when sanitization is what fails, for the hiding that fits.
/// Inputs go under the small key where they can ([`small_key_nodes`]) when that is the
/// cheaper plan: it saves the keyswitches, but large weights in front of such inputs
/// multiply the small key's (much larger) fresh noise.
fn plan_with(circuit: &Circuit, config: &FheConfig, explain: bool) -> Result<Plan> {
    let small_key = small_key_nodes(circuit);
    let any_small = circuit.inputs().iter().any(|i| small_key[i.0]);
    let small = if any_small { plan_keys(circuit, config, explain, small_key).ok() } else { None };
    let large = plan_keys(circuit, config, explain, vec![false; circuit.nodes().len()]);
    match (small, large) {
        (Some(s), Ok(l)) if l.report.expected_seconds < s.report.expected_seconds => Ok(l),
        (Some(s), _) => Ok(s),
        (None, large) => large,
    }
}

/// [`plan_with`] for one assignment of values to keys.
fn plan_keys(circuit: &Circuit, config: &FheConfig, explain: bool, small_key: Vec<bool>) -> Result<Plan> {
    let cost = circuit.cost();
    let sites = cost.lookups.len();
    let materialised = materialised_rounds(circuit);
    let all_shared = if config.many_lut { SharedReads::find(circuit) } else { SharedReads::none() };
    let needs_bootstrap = sites > 0;
    let keyswitched = keyswitched_share(circuit, &materialised, &small_key);
    // Per lookup: the bootstrap, and the keyswitch for the share of lookups that need one.
    let per_lookup = |set: &ParameterSet| set.cost - (1.0 - keyswitched) * set.keyswitch_cost();
    let mut candidates: Vec<ParameterSet> = config.candidates.iter().map(|id| id.set()).collect();
    if needs_bootstrap && config.parameters == ParameterMode::Optimized {
        candidates.extend(generated_candidate(circuit, &all_shared, &materialised, &small_key, config, sites));
    }
    // Without lookups only encryption matters: the smallest ciphertexts win.
    if needs_bootstrap {
        candidates.sort_by(|a, b| per_lookup(a).total_cmp(&per_lookup(b)));
    } else {
        candidates.sort_by_key(|s| s.big_lwe_dimension());
    }
    let hides = |eval: &Evaluation| eval.sanitize_bits.iter().all(|b| *b >= config.sanitize_bits as f64);
    let meets = |eval: &Evaluation| {
        eval.max_lookup_p <= config.p_error
            && eval.max_output_p <= config.p_error
            && eval.max_output_steps <= config.output_std
            && config.global_p_error.is_none_or(|g| eval.global_p <= g)
            && (!config.sanitize || hides(eval))
    };
    let flooding_p = per_site_p(circuit, config, sites);
    // Among the sets that meet everything but the hiding: the best hiding reached.
    let mut best_hiding: Option<f64> = None;
    let mut reasons = Vec::new();
    let mut best: Option<Feasible> = None;
    for set in candidates {
        let total = |f: &Feasible| f.bootstraps as f64 * per_lookup(&f.set);
        // Sets are sorted by cost: past this point even full fusion cannot do better.
        if let Some(b) = &best
            && (sites - all_shared.bootstraps_saved()) as f64 * per_lookup(&set) >= total(b)
        {
            break;
        }
        let noise = set.noise_model();
        if config.sanitize && !crate::sanitize::supports(&set.params) {
            reasons.push(format!(
                "{}: its LWE dimension {} is not a power of two, which the sanitizing public key needs",
                set.name,
                set.big_lwe_dimension()
            ));
            continue;
        }
        let flooding = config.sanitize.then_some(Flooding {
            p: flooding_p,
            big_dimension: set.big_lwe_dimension(),
            output_std: config.output_std,
        });
        let mut shared = fitting_groups(circuit, &all_shared, noise.log2_polynomial_size);
        let found = loop {
            let deltas = assign_deltas_in(circuit, &shared, SanitizedScales::of(config, flooding_p));
            let eval = match evaluate_candidate(
                circuit,
                &deltas,
                &noise,
                &Reads { materialised: &materialised, shared: &shared, small_key: &small_key },
                config.exact_outputs,
                flooding,
            ) {
                Ok(e) => e,
                Err(why) => {
                    reasons.push(format!("{}: {why}", set.name));
                    break None;
                }
            };
            if config.sanitize && !hides(&eval) {
                let unsanitized = Evaluation { sanitize_bits: vec![], ..eval.clone() };
                if meets(&unsanitized) {
                    let reached = eval.sanitize_bits.iter().copied().fold(f64::INFINITY, f64::min);
                    best_hiding = Some(best_hiding.map_or(reached, |b: f64| b.max(reached)));
                    reasons.push(format!(
                        "{}: sanitized outputs hidden behind {reached:.1} bits of flooding, {} asked",
                        set.name, config.sanitize_bits
                    ));
                    break None;
                }
            }
            if meets(&eval) {
                let bootstraps = sites - shared.bootstraps_saved();
                break Some(Feasible { set: set.clone(), shared, deltas, eval, bootstraps });
            }
            if shared.is_empty() {
                let worst = eval
                    .worst_lookup
                    .map(|(node, e, bits, std)| {
                        format!(" (node {node} element {e}: {bits} bits read with noise std {std:.3} boxes)")
                    })
                    .unwrap_or_default();
                reasons.push(format!(
                    "{}: lookup failure 2^{:.1}{worst}, exact output failure 2^{:.1}, real output error {:.2} steps",
                    set.name,
                    log2_probability(eval.max_lookup_p),
                    log2_probability(eval.max_output_p),
                    eval.max_output_steps
                ));
                break None;
            }
            // Un-fuse the groups whose finer read fails; if none does, the finer scales
            // hurt something else: un-fuse everything.
            let failing: Vec<bool> = eval.group_p.iter().map(|p| *p > config.p_error).collect();
            shared = if failing.iter().any(|f| *f) {
                shared.retain(circuit, |g, _| !failing[g])
            } else {
                SharedReads::none()
            };
        };
        if let Some(f) = found
            && best.as_ref().is_none_or(|b| total(&f) < total(b))
        {
            best = Some(f);
        }
    }
    let Some(Feasible { set, shared, deltas, eval, bootstraps }) = best else {
        let why = match best_hiding {
            Some(_) if explain => why_sanitization_does_not_fit(circuit, config),
            Some(reached) => format!("sanitized outputs reach {reached:.1} bits of hiding"),
            None => why_nothing_fits(circuit, config),
        };
        return Err(FheError::NoParameters { why, candidates: reasons.join("\n") });
    };
    let threads = rayon::current_num_threads().max(1);
    let input_ciphertexts = circuit.inputs().iter().map(|id| circuit.node(*id).len()).sum();
    let output_ciphertexts = circuit.outputs().iter().map(|id| circuit.node(*id).len()).sum();
    let fused_precision = shared
        .groups()
        .iter()
        .filter_map(|g| read_spec_in(circuit, &shared, g[0].node, g[0].index))
        .map(|s| BitWidth(s.resolved_bits()))
        .max()
        .unwrap_or(BitWidth(0));
    let outputs = circuit
        .outputs()
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let stds = &eval.output_std[i];
            let error_std = stds.iter().copied().fold(0.0, f64::max);
            let step = output_step(circuit, i, config.exact_outputs);
            OutputReport {
                exact: step.is_none(),
                step: step.unwrap_or(1),
                error_std,
                p_off: two_sided_tail(0.5, error_std * error_std),
                sanitize_bits: config.sanitize.then(|| eval.sanitize_bits[i]),
            }
        })
        .collect();
    let report = CompileReport {
        parameter_set: set.name.clone(),
        generated: matches!(set.id, Parameters::Generated(_)),
        needs_evaluation_key: needs_bootstrap,
        bootstraps,
        lookups: sites,
        shared_bootstraps: shared.len(),
        leveled_terms: cost.leveled_terms,
        max_precision: cost.max_precision.max(fused_precision),
        max_norm2: cost.max_norm2,
        p_error: config.p_error,
        lookup_p_error: eval.max_lookup_p,
        output_p_error: eval.max_output_p,
        global_p_error: eval.global_p,
        outputs,
        output_deviations: eval.output_deviations,
        ciphertext_dimension: set.big_lwe_dimension(),
        input_ciphertexts,
        output_ciphertexts,
        evaluation_key_bytes: if needs_bootstrap { set.evaluation_key_bytes() } else { 0 },
        compressed_key_bytes: if needs_bootstrap { set.compressed_key_bytes() } else { 0 },
        rounding_deviations: eval.rounding_deviations,
        bootstrap_seconds: set.bootstrap_seconds(),
        expected_seconds: bootstraps as f64 * per_lookup(&set) / 1e3 / threads as f64,
        small_key_lookups: bootstrap_inputs(circuit, &materialised, &SharedReads::none())
            .iter()
            .filter(|(_, _, source, _)| small_key[source.0])
            .count(),
        threads,
        sanitize_bits: config.sanitize.then_some(config.sanitize_bits),
    };
    let sanitization = config.sanitize.then(|| SanitizationPlan {
        bits: config.sanitize_bits,
        achieved_bits: eval.sanitize_bits.clone(),
        flood_std: eval.flood_std.clone(),
        public_key_std: eval.public_key_std.clone(),
    });
    Ok(Plan {
        parameters: set.id,
        deltas,
        sink_std: eval.sink_std,
        output_std: eval.output_std,
        shared,
        report,
        sanitization,
        small_key: if small_key.iter().any(|s| *s) { small_key } else { Vec::new() },
    })
}
