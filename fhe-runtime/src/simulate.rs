//! Simulation: clear integer evaluation that injects bootstrap errors with the
//! probabilities of the compiled parameters (seeded, deterministic).
//!
//! At every bootstrap the simulator adds Gaussian noise with the standard deviation the
//! noise analysis predicts at that bootstrap's input and reads the box the noisy value
//! falls in, exactly as the accumulator would: errors (and approximate-rounding flips near
//! box edges) happen with the same probability as under encryption.
//!
//! A many-LUT group (lookups of one value sharing one bootstrap) draws its noise once, at
//! its leader: every table of the group reads the same noisy box, as under encryption. A
//! read that overflows its slice lands in the neighbouring table's boxes (or wraps,
//! negated, past the end of the polynomial), as the accumulator would; the neighbour's
//! entry is then taken in the reading table's own scale.

use fheml_circuits::{Backend, Circuit, CircuitError, ElementRef, FusedRounding, SharedReads, Table};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::plan::{Plan, ReadSpec};

/// The simulating backend for one sample.
pub struct SimulatedBackend<'a> {
    pub(crate) circuit: &'a Circuit,
    pub(crate) plan: &'a Plan,
    pub(crate) seed: u64,
}

impl SimulatedBackend<'_> {
    fn gaussian(&self, out: ElementRef, std: f64) -> f64 {
        if std <= 0.0 {
            return 0.0;
        }
        let stream = self.seed ^ ((out.node.0 as u64) << 40) ^ (out.index as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(stream);
        // Box–Muller.
        let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.r#gen());
        std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// The box a noisy read of `x` lands in, counted from the first box of the polynomial
    /// (outside `0..2^resolved_bits` when the noise wraps past the padding bit).
    fn noisy_box(&self, x: i64, spec: &ReadSpec, out: ElementRef) -> i64 {
        let std = self.plan.sink_std[out.node.0][out.index];
        // Approximate roundings read half a unit higher (see the TFHE backend's sink).
        let shift = if spec.width > spec.read_bits { 0.5 } else { 0.0 };
        let c = (x - spec.offset) as f64 + shift + self.gaussian(out, std);
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

    fn spec(&self, out: ElementRef) -> Result<ReadSpec, CircuitError> {
        self.plan.read_spec(self.circuit, out.node, out.index).ok_or(CircuitError::NoOutput)
    }
}

impl Backend for SimulatedBackend<'_> {
    type Value = i64;
    type Error = CircuitError;

    fn linear(&self, terms: &[(i64, &i64)], constant: i64, out: ElementRef) -> Result<i64, CircuitError> {
        terms
            .iter()
            .try_fold(constant, |acc, (w, v)| w.checked_mul(**v).and_then(|p| acc.checked_add(p)))
            .ok_or(CircuitError::Overflow { node: out.node })
    }

    fn lookup(&self, x: &i64, table: &Table, _r: Option<FusedRounding>, out: ElementRef) -> Result<i64, CircuitError> {
        let spec = self.spec(out)?;
        let (slot, entry, negated) = Self::resolve(self.noisy_box(*x, &spec, out), 0, &spec);
        let v = if slot == 0 { table.get(spec.table_index(entry)).unwrap_or(0) } else { 0 };
        Ok(if negated { -v } else { v })
    }

    fn shared_reads(&self) -> Option<&SharedReads> {
        Some(&self.plan.shared)
    }

    fn many_lookup(
        &self,
        x: &i64,
        tables: &[&Table],
        _r: Option<FusedRounding>,
        outs: &[ElementRef],
    ) -> Result<Vec<i64>, CircuitError> {
        let leader = *outs.first().ok_or(CircuitError::NoOutput)?;
        let spec = self.spec(leader)?;
        let b = self.noisy_box(*x, &spec, leader);
        Ok((0..tables.len())
            .map(|j| {
                let (slot, entry, negated) = Self::resolve(b, j, &spec);
                let v = tables.get(slot).and_then(|t| t.get(spec.table_index(entry))).unwrap_or(0);
                if negated { -v } else { v }
            })
            .collect())
    }

    fn round(&self, x: &i64, _r: FusedRounding, out: ElementRef) -> Result<i64, CircuitError> {
        let spec = self.spec(out)?;
        let (_, entry, negated) = Self::resolve(self.noisy_box(*x, &spec, out), 0, &spec);
        let v = spec.table_index(entry);
        Ok(if negated { -v } else { v })
    }
}
