//! Simulation: clear integer evaluation that carries a sampled noise beside every value, as
//! a ciphertext does (seeded, deterministic).
//!
//! Every value is the clear integer plus a noise in units of its own message. Fresh inputs
//! start with a Gaussian sample of the encryption noise; leveled operations combine the
//! noises with the same integer weights as the values, so noises that share an ancestor stay
//! correlated exactly as under encryption; a bootstrap adds the keyswitch and modulus-switch
//! noise to what it reads (the modulus switch alone for small-key inputs, whose fresh
//! noise is the small key's), reads the box the noisy value falls in (approximate-rounding
//! flips near box edges and failures happen with the same probability as under
//! encryption), and starts its output with a fresh sample of the bootstrap-output noise.
//! Outputs decrypt to the nearest integer of value + noise, so real-valued outputs show the
//! error the compile report states.
//!
//! A many-LUT group (lookups of one value sharing one bootstrap) reads once, at its leader:
//! every table of the group reads the same noisy box, as under encryption. A read that
//! overflows its slice lands in the neighbouring table's boxes (or wraps, negated, past the
//! end of the polynomial), as the accumulator would; the neighbour's entry is then taken in
//! the reading table's own scale.

use fheml_circuits::{
    Backend, Circuit, CircuitError, ElementRef, FusedRounding, NodeId, Op, SharedReads, Table, lookup_source,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::params::NoiseModel;
use crate::plan::{Plan, ReadSpec};

/// A simulated ciphertext: the clear value and its noise, in units of its message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noisy {
    /// The clear value.
    pub value: i64,
    /// The noise, in units of the value.
    pub noise: f64,
}

impl Noisy {
    /// What decryption gives: the nearest integer of value + noise.
    pub fn decrypt(&self) -> i64 {
        self.value.saturating_add(self.noise.round() as i64)
    }
}

/// Where a noise sample is drawn: separate streams for one element's different noises.
#[derive(Clone, Copy)]
enum Draw {
    Fresh = 1,
    Read = 2,
    Output = 3,
    Sanitize = 4,
}

/// The simulating backend for one sample.
pub struct SimulatedBackend<'a> {
    pub(crate) circuit: &'a Circuit,
    pub(crate) plan: &'a Plan,
    pub(crate) noise: NoiseModel,
    pub(crate) seed: u64,
}

impl SimulatedBackend<'_> {
    fn gaussian(&self, out: ElementRef, draw: Draw, std: f64) -> f64 {
        if std <= 0.0 {
            return 0.0;
        }
        let stream = self.seed ^ ((draw as u64) << 60) ^ ((out.node.0 as u64) << 32) ^ (out.index as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(stream);
        // Box–Muller.
        let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.r#gen());
        std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Scale of an element on the unit torus.
    fn delta(&self, node: NodeId, e: usize) -> f64 {
        2f64.powi(self.plan.deltas[node.0][e] as i32 - 64)
    }

    /// A fresh encryption of `value` as input element `e` of `node`.
    pub fn encrypt(&self, node: NodeId, e: usize, value: i64) -> Noisy {
        let fresh = if self.plan.is_small_key(node) { self.noise.small_fresh } else { self.noise.fresh };
        let std = fresh.sqrt() / self.delta(node, e);
        Noisy { value, noise: self.gaussian(ElementRef { node, index: e }, Draw::Fresh, std) }
    }

    /// A bootstrap's result: `value` with a fresh sample of the bootstrap-output noise.
    fn bootstrapped(&self, out: ElementRef, value: i64) -> Noisy {
        let std = self.noise.bootstrap_output.sqrt() / self.delta(out.node, out.index);
        Noisy { value, noise: self.gaussian(out, Draw::Output, std) }
    }

    /// What a sanitizing server returns for element `e` of output `output`: `x` with the
    /// flooding noise and the public-key encryption's noise added, when the plan sanitizes.
    pub fn sanitized(&self, output: usize, e: usize, x: Noisy) -> Noisy {
        let Some(plan) = &self.plan.sanitization else { return x };
        let (Some(node), Some(flood), Some(key)) = (
            self.circuit.outputs().get(output),
            plan.flood_std.get(output).and_then(|o| o.get(e)),
            plan.public_key_std.get(output).and_then(|o| o.get(e)),
        ) else {
            return x;
        };
        let std = flood.hypot(*key);
        Noisy {
            value: x.value,
            noise: x.noise + self.gaussian(ElementRef { node: *node, index: e }, Draw::Sanitize, std),
        }
    }

    /// The box a noisy read of `x` lands in, counted from the first box of the polynomial
    /// (outside `0..2^resolved_bits` when the noise wraps past the padding bit).
    fn noisy_box(&self, x: &Noisy, spec: &ReadSpec, out: ElementRef) -> i64 {
        // Keyswitch and modulus switch (the latter alone for a small-key value), in units of
        // the read message.
        let switch =
            if self.reads_small_key(out) { self.noise.modulus_switch } else { self.noise.keyswitch_and_modulus_switch };
        let switch_std = switch.sqrt() * 2f64.powi((spec.width + spec.slot_bits) as i32 + 1);
        // Approximate roundings read half a unit higher (see the TFHE backend's sink).
        let shift = if spec.width > spec.read_bits { 0.5 } else { 0.0 };
        let c = (x.value - spec.offset) as f64 + shift + x.noise + self.gaussian(out, Draw::Read, switch_std);
        let unit = 2f64.powi((spec.width - spec.read_bits) as i32);
        let b = (c / unit).round() as i64;
        // Exactly half a box below zero still rounds into box 0 (the box is centred).
        if b < 0 && c >= -unit / 2.0 { 0 } else { b }
    }

    /// What slot `slot` of a read landing in box `b` returns: the slot (table) whose box it
    /// hits, the entry inside that table, and whether the negacyclic wrap negates it.
    fn resolve(b: i64, slot: usize, spec: &ReadSpec) -> (usize, i64, bool) {
        let boxes = 1i64 << spec.read_bits;
        let total = 1i64 << spec.resolved_bits();
        let global = b + slot as i64 * boxes;
        let negated = global.div_euclid(total).rem_euclid(2) == 1;
        let position = global.rem_euclid(total);
        ((position / boxes) as usize, position % boxes, negated)
    }

    /// Whether the bootstrap `out` reads a small-key value.
    fn reads_small_key(&self, out: ElementRef) -> bool {
        let source = match &self.circuit.node(out.node).op {
            Op::Lookup(x, _) => lookup_source(self.circuit, *x).0,
            Op::Round { input, .. } => *input,
            _ => return false,
        };
        self.plan.is_small_key(source)
    }

    fn spec(&self, out: ElementRef) -> Result<ReadSpec, CircuitError> {
        self.plan.read_spec(self.circuit, out.node, out.index).ok_or(CircuitError::NoOutput)
    }
}

impl Backend for SimulatedBackend<'_> {
    type Value = Noisy;
    type Error = CircuitError;

    fn linear(&self, terms: &[(i64, &Noisy)], constant: i64, out: ElementRef) -> Result<Noisy, CircuitError> {
        let value = terms
            .iter()
            .try_fold(constant, |acc, (w, v)| w.checked_mul(v.value).and_then(|p| acc.checked_add(p)))
            .ok_or(CircuitError::Overflow { node: out.node })?;
        let noise = terms.iter().map(|(w, v)| *w as f64 * v.noise).sum();
        Ok(Noisy { value, noise })
    }

    fn lookup(
        &self,
        x: &Noisy,
        table: &Table,
        _r: Option<FusedRounding>,
        out: ElementRef,
    ) -> Result<Noisy, CircuitError> {
        let spec = self.spec(out)?;
        let (slot, entry, negated) = Self::resolve(self.noisy_box(x, &spec, out), 0, &spec);
        let v = if slot == 0 { table.get(spec.table_index(entry)).unwrap_or(0) } else { 0 };
        Ok(self.bootstrapped(out, if negated { -v } else { v }))
    }

    fn shared_reads(&self) -> Option<&SharedReads> {
        Some(&self.plan.shared)
    }

    fn many_lookup(
        &self,
        x: &Noisy,
        tables: &[&Table],
        _r: Option<FusedRounding>,
        outs: &[ElementRef],
    ) -> Result<Vec<Noisy>, CircuitError> {
        let leader = *outs.first().ok_or(CircuitError::NoOutput)?;
        let spec = self.spec(leader)?;
        let b = self.noisy_box(x, &spec, leader);
        Ok((0..tables.len())
            .zip(outs)
            .map(|(j, out)| {
                let (slot, entry, negated) = Self::resolve(b, j, &spec);
                let v = tables.get(slot).and_then(|t| t.get(spec.table_index(entry))).unwrap_or(0);
                self.bootstrapped(*out, if negated { -v } else { v })
            })
            .collect())
    }

    fn round(&self, x: &Noisy, _r: FusedRounding, out: ElementRef) -> Result<Noisy, CircuitError> {
        let spec = self.spec(out)?;
        let (_, entry, negated) = Self::resolve(self.noisy_box(x, &spec, out), 0, &spec);
        let v = spec.table_index(entry);
        Ok(self.bootstrapped(out, if negated { -v } else { v }))
    }
}
