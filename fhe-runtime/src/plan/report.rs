//! What compilation reports: the chosen set and its errors, or why nothing fits.

use serde::{Deserialize, Serialize};

use fheml_circuits::{BitWidth, Circuit};

use super::config::FheConfig;
use super::evaluate::output_step;
use super::planner::{Plan, plan_with};
use crate::noise::log2_probability;

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

/// One sentence on why nothing fits: the tightest lookup or output and what to change.
pub(super) fn why_nothing_fits(circuit: &Circuit, config: &FheConfig) -> String {
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
pub(super) fn why_sanitization_does_not_fit(circuit: &Circuit, config: &FheConfig) -> String {
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
