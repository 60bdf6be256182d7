//! Checking a plan read from a file against its circuit: nothing in it is taken on trust.

use fheml_circuits::{Circuit, NodeId, OutputKind, materialised_rounds};

use super::deltas::assign_deltas;
use super::evaluate::{evaluate_candidate, output_step};
use super::planner::Plan;
use super::reads::{Reads, small_key_nodes};
use crate::error::{FheError, Result};
use crate::noise::log2_probability;
use crate::params::Parameters;

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
