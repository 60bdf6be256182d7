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
//! Lookups that read the same ciphertext through the same rounding
//! ([`SharedReads`](fheml_circuits::SharedReads)) can share one bootstrap: the accumulator
//! holds their `k` tables side by side, and each result is extracted at its own offset of the
//! rotated accumulator (tfhe-rs's many-LUT). For the rotation to stay inside the first
//! table's slice, the message must occupy only `1/2^s` of the padded torus,
//! `s = ceil(log2 k)` ([`ReadSpec::slot_bits`]): the sink's scale is
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

mod candidates;
mod check;
mod config;
mod deltas;
mod evaluate;
mod planner;
mod reads;
mod report;

pub use config::{
    DEFAULT_OUTPUT_STD, DEFAULT_SANITIZE_BITS, FheConfig, FheConfigParams, MAX_SANITIZE_BITS, ParameterMode,
};
pub use deltas::{SanitizedScales, assign_deltas, assign_deltas_in};
pub use evaluate::{FLOOD_SHARE, hiding_bits};
pub use planner::{Plan, SanitizationPlan, plan};
pub use reads::{ReadSpec, read_spec_in, read_spec_of, small_key_nodes};
pub use report::{CompileReport, OutputReport};
