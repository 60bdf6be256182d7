//! Simulation: clear integer evaluation that injects bootstrap errors with the
//! probabilities of the compiled parameters (seeded, deterministic).
//!
//! At every bootstrap the simulator adds Gaussian noise with the standard deviation the
//! noise analysis predicts at that bootstrap's input and reads the box the noisy value
//! falls in, exactly as the accumulator would: errors (and approximate-rounding flips near
//! box edges) happen with the same probability as under encryption.

use fheml_circuits::{Backend, Circuit, CircuitError, ElementRef, FusedRounding, Table};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::plan::{Plan, ReadSpec, read_spec_of};

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

    /// The box a noisy read of `x` lands in, and whether it wrapped past the padding bit.
    fn noisy_box(&self, x: i64, spec: &ReadSpec, out: ElementRef) -> (i64, bool) {
        let std = self.plan.sink_std[out.node.0][out.index];
        let c = (x - spec.offset) as f64 + self.gaussian(out, std);
        let unit = 2f64.powi((spec.width - spec.read_bits) as i32);
        let boxes = 1i64 << spec.read_bits;
        let b = (c / unit).round() as i64;
        // Past either end the negacyclic accumulator returns the negated wrapped entry.
        if b < 0 && c < -unit / 2.0 {
            (b.rem_euclid(boxes), true)
        } else if b >= boxes {
            (b - boxes, true)
        } else {
            (b.max(0), false)
        }
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
        let spec = read_spec_of(self.circuit, out.node, out.index).ok_or(CircuitError::NoOutput)?;
        let (b, negated) = self.noisy_box(*x, &spec, out);
        let v = table.get(spec.table_index(b)).unwrap_or(0);
        Ok(if negated { -v } else { v })
    }

    fn round(&self, x: &i64, _r: FusedRounding, out: ElementRef) -> Result<i64, CircuitError> {
        let spec = read_spec_of(self.circuit, out.node, out.index).ok_or(CircuitError::NoOutput)?;
        let (b, negated) = self.noisy_box(*x, &spec, out);
        let v = spec.table_index(b);
        Ok(if negated { -v } else { v })
    }
}
