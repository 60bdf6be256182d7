//! The planner: tries candidate parameter sets, un-fusing shared reads that miss their
//! budget, and keeps the cheapest plan that meets the configuration.

use serde::{Deserialize, Serialize};

use fheml_circuits::{BitWidth, Circuit, CostReport, NodeId, SharedReads, materialised_rounds};

use super::candidates::{fitting_groups, generated_candidate, keyswitched_share, per_site_p};
use super::config::{FheConfig, ParameterMode};
use super::deltas::{SanitizedScales, assign_deltas_in};
use super::evaluate::{Evaluation, Flooding, evaluate_candidate, output_step};
use super::reads::{ReadSpec, Reads, bootstrap_inputs, read_spec_in, small_key_nodes};
use super::report::{CompileReport, OutputReport, why_nothing_fits, why_sanitization_does_not_fit};
use crate::error::{FheError, Result};
use crate::noise::{log2_probability, two_sided_tail};
use crate::params::{ParameterSet, Parameters};

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

/// What one parameter set gives, with the groups it fuses.
pub(super) struct Feasible {
    pub(super) set: ParameterSet,
    pub(super) shared: SharedReads,
    pub(super) deltas: Vec<Vec<u32>>,
    pub(super) eval: Evaluation,
    pub(super) bootstraps: usize,
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
pub(super) fn plan_with(circuit: &Circuit, config: &FheConfig, explain: bool) -> Result<Plan> {
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
    let search = Search::new(circuit, config, small_key);
    let mut log = Rejections::default();
    let mut best: Option<Feasible> = None;
    for set in search.candidates() {
        // Sets are sorted by cost: past this point even full fusion cannot do better.
        if let Some(b) = &best
            && search.fully_fused_total(&set) >= search.total(b)
        {
            break;
        }
        if let Some(f) = search.try_set(set, &mut log)
            && best.as_ref().is_none_or(|b| search.total(&f) < search.total(b))
        {
            best = Some(f);
        }
    }
    let Some(found) = best else {
        let why = match log.best_hiding {
            Some(_) if explain => why_sanitization_does_not_fit(circuit, config),
            Some(reached) => format!("sanitized outputs reach {reached:.1} bits of hiding"),
            None => why_nothing_fits(circuit, config),
        };
        return Err(FheError::NoParameters { why, candidates: log.reasons.join("\n") });
    };
    Ok(search.into_plan(found))
}

/// Why candidate sets were rejected, gathered for the error when none fits.
#[derive(Default)]
struct Rejections {
    /// One line per rejected set.
    reasons: Vec<String>,
    /// Among the sets that meet everything but the hiding: the best hiding reached.
    best_hiding: Option<f64>,
}

/// One key assignment's search for the cheapest parameter set, and what every candidate
/// shares.
struct Search<'a> {
    circuit: &'a Circuit,
    config: &'a FheConfig,
    small_key: Vec<bool>,
    materialised: Vec<bool>,
    cost: CostReport,
    /// Lookups per evaluation (before many-LUT fusion).
    sites: usize,
    /// Every group of lookups that could share a bootstrap.
    all_shared: SharedReads,
    /// The share of lookups that keyswitch (those reading large-key values).
    keyswitched: f64,
    /// The failure probability each lookup and exact output may have.
    flooding_p: f64,
}

impl<'a> Search<'a> {
    fn new(circuit: &'a Circuit, config: &'a FheConfig, small_key: Vec<bool>) -> Self {
        let cost = circuit.cost();
        let sites = cost.lookups.len();
        let materialised = materialised_rounds(circuit);
        let all_shared = if config.many_lut { SharedReads::find(circuit) } else { SharedReads::none() };
        let keyswitched = keyswitched_share(circuit, &materialised, &small_key);
        let flooding_p = per_site_p(circuit, config, sites);
        Self { circuit, config, small_key, materialised, cost, sites, all_shared, keyswitched, flooding_p }
    }

    fn needs_bootstrap(&self) -> bool {
        self.sites > 0
    }

    /// Per lookup: the bootstrap, and the keyswitch for the share of lookups that need one.
    fn per_lookup(&self, set: &ParameterSet) -> f64 {
        set.cost - (1.0 - self.keyswitched) * set.keyswitch_cost()
    }

    fn total(&self, f: &Feasible) -> f64 {
        f.bootstraps as f64 * self.per_lookup(&f.set)
    }

    /// The cost of `set` with every shared read fused: no fusion choice does better.
    fn fully_fused_total(&self, set: &ParameterSet) -> f64 {
        (self.sites - self.all_shared.bootstraps_saved()) as f64 * self.per_lookup(set)
    }

    /// The sets to try, cheapest first: the vetted candidates and, when optimizing, the set
    /// generated for the circuit.
    fn candidates(&self) -> Vec<ParameterSet> {
        let config = self.config;
        let mut candidates: Vec<ParameterSet> = config.candidates.iter().map(|id| id.set()).collect();
        if self.needs_bootstrap() && config.parameters == ParameterMode::Optimized {
            candidates.extend(generated_candidate(
                self.circuit,
                &self.all_shared,
                &self.materialised,
                &self.small_key,
                config,
                self.sites,
            ));
        }
        // Without lookups only encryption matters: the smallest ciphertexts win.
        if self.needs_bootstrap() {
            candidates.sort_by(|a, b| self.per_lookup(a).total_cmp(&self.per_lookup(b)));
        } else {
            candidates.sort_by_key(|s| s.big_lwe_dimension());
        }
        candidates
    }

    fn hides(&self, eval: &Evaluation) -> bool {
        eval.sanitize_bits.iter().all(|b| *b >= self.config.sanitize_bits as f64)
    }

    fn meets(&self, eval: &Evaluation) -> bool {
        let config = self.config;
        eval.max_lookup_p <= config.p_error
            && eval.max_output_p <= config.p_error
            && eval.max_output_steps <= config.output_std
            && config.global_p_error.is_none_or(|g| eval.global_p <= g)
            && (!config.sanitize || self.hides(eval))
    }

    /// What `set` gives: it starts with every group fused that its polynomial holds, and
    /// un-fuses groups until the plan meets the configuration or nothing is left to un-fuse.
    /// A rejection is logged.
    fn try_set(&self, set: ParameterSet, log: &mut Rejections) -> Option<Feasible> {
        let (circuit, config) = (self.circuit, self.config);
        let noise = set.noise_model();
        if config.sanitize && !crate::sanitize::supports(&set.params) {
            log.reasons.push(format!(
                "{}: its LWE dimension {} is not a power of two, which the sanitizing public key needs",
                set.name,
                set.big_lwe_dimension()
            ));
            return None;
        }
        let flooding = config.sanitize.then_some(Flooding {
            p: self.flooding_p,
            big_dimension: set.big_lwe_dimension(),
            output_std: config.output_std,
        });
        let mut shared = fitting_groups(circuit, &self.all_shared, noise.log2_polynomial_size);
        loop {
            let deltas = assign_deltas_in(circuit, &shared, SanitizedScales::of(config, self.flooding_p));
            let reads = Reads { materialised: &self.materialised, shared: &shared, small_key: &self.small_key };
            let eval = match evaluate_candidate(circuit, &deltas, &noise, &reads, config.exact_outputs, flooding) {
                Ok(e) => e,
                Err(why) => {
                    log.reasons.push(format!("{}: {why}", set.name));
                    return None;
                }
            };
            if config.sanitize && !self.hides(&eval) && self.meets_unsanitized(&eval) {
                let reached = eval.sanitize_bits.iter().copied().fold(f64::INFINITY, f64::min);
                log.best_hiding = Some(log.best_hiding.map_or(reached, |b: f64| b.max(reached)));
                log.reasons.push(format!(
                    "{}: sanitized outputs hidden behind {reached:.1} bits of flooding, {} asked",
                    set.name, config.sanitize_bits
                ));
                return None;
            }
            if self.meets(&eval) {
                let bootstraps = self.sites - shared.bootstraps_saved();
                return Some(Feasible { set, shared, deltas, eval, bootstraps });
            }
            if shared.is_empty() {
                log.reasons.push(failure_line(&set, &eval));
                return None;
            }
            // Un-fuse the groups whose finer read fails; if none does, the finer scales
            // hurt something else: un-fuse everything.
            let failing: Vec<bool> = eval.group_p.iter().map(|p| *p > config.p_error).collect();
            shared = if failing.iter().any(|f| *f) {
                shared.retain(circuit, |g, _| !failing[g])
            } else {
                SharedReads::none()
            };
        }
    }

    /// Whether `eval` meets everything but the hiding asked of sanitized outputs.
    fn meets_unsanitized(&self, eval: &Evaluation) -> bool {
        self.meets(&Evaluation { sanitize_bits: vec![], ..eval.clone() })
    }

    /// The plan of the chosen set, with its report.
    fn into_plan(self, found: Feasible) -> Plan {
        let config = self.config;
        let report = compile_report(self.circuit, config, &found, &self);
        let Feasible { set, shared, deltas, eval, .. } = found;
        let sanitization = config.sanitize.then(|| SanitizationPlan {
            bits: config.sanitize_bits,
            achieved_bits: eval.sanitize_bits.clone(),
            flood_std: eval.flood_std.clone(),
            public_key_std: eval.public_key_std.clone(),
        });
        let small_key = self.small_key;
        Plan {
            parameters: set.id,
            deltas,
            sink_std: eval.sink_std,
            output_std: eval.output_std,
            shared,
            report,
            sanitization,
            small_key: if small_key.iter().any(|s| *s) { small_key } else { Vec::new() },
        }
    }
}

/// Why a set whose reads are all unfused still misses the configuration.
fn failure_line(set: &ParameterSet, eval: &Evaluation) -> String {
    let worst = eval
        .worst_lookup
        .map(|(node, e, bits, std)| {
            format!(" (node {node} element {e}: {bits} bits read with noise std {std:.3} boxes)")
        })
        .unwrap_or_default();
    format!(
        "{}: lookup failure 2^{:.1}{worst}, exact output failure 2^{:.1}, real output error {:.2} steps",
        set.name,
        log2_probability(eval.max_lookup_p),
        log2_probability(eval.max_output_p),
        eval.max_output_steps
    )
}

/// The report of the chosen set `found`.
fn compile_report(circuit: &Circuit, config: &FheConfig, found: &Feasible, search: &Search) -> CompileReport {
    let Feasible { set, shared, eval, bootstraps, .. } = found;
    let (cost, needs_bootstrap) = (&search.cost, search.needs_bootstrap());
    let threads = rayon::current_num_threads().max(1);
    let input_ciphertexts = circuit.inputs().iter().map(|id| circuit.node(*id).len()).sum();
    let output_ciphertexts = circuit.outputs().iter().map(|id| circuit.node(*id).len()).sum();
    let fused_precision = shared
        .groups()
        .iter()
        .filter_map(|g| read_spec_in(circuit, shared, g[0].node, g[0].index))
        .map(|s| BitWidth(s.resolved_bits()))
        .max()
        .unwrap_or(BitWidth(0));
    CompileReport {
        parameter_set: set.name.clone(),
        generated: matches!(set.id, Parameters::Generated(_)),
        needs_evaluation_key: needs_bootstrap,
        bootstraps: *bootstraps,
        lookups: search.sites,
        shared_bootstraps: shared.len(),
        leveled_terms: cost.leveled_terms,
        max_precision: cost.max_precision.max(fused_precision),
        max_norm2: cost.max_norm2,
        p_error: config.p_error,
        lookup_p_error: eval.max_lookup_p,
        output_p_error: eval.max_output_p,
        global_p_error: eval.global_p,
        outputs: output_reports(circuit, config, eval),
        output_deviations: eval.output_deviations,
        ciphertext_dimension: set.big_lwe_dimension(),
        input_ciphertexts,
        output_ciphertexts,
        evaluation_key_bytes: if needs_bootstrap { set.evaluation_key_bytes() } else { 0 },
        compressed_key_bytes: if needs_bootstrap { set.compressed_key_bytes() } else { 0 },
        rounding_deviations: eval.rounding_deviations,
        bootstrap_seconds: set.bootstrap_seconds(),
        expected_seconds: *bootstraps as f64 * search.per_lookup(set) / 1e3 / threads as f64,
        small_key_lookups: bootstrap_inputs(circuit, &search.materialised, &SharedReads::none())
            .iter()
            .filter(|(_, _, source, _)| search.small_key[source.0])
            .count(),
        threads,
        sanitize_bits: config.sanitize.then_some(config.sanitize_bits),
    }
}

/// Per output: exact or real-valued, and its decryption error under `eval`.
fn output_reports(circuit: &Circuit, config: &FheConfig, eval: &Evaluation) -> Vec<OutputReport> {
    (0..circuit.outputs().len())
        .map(|i| {
            let error_std = eval.output_std[i].iter().copied().fold(0.0, f64::max);
            let step = output_step(circuit, i, config.exact_outputs);
            OutputReport {
                exact: step.is_none(),
                step: step.unwrap_or(1),
                error_std,
                p_off: two_sided_tail(0.5, error_std * error_std),
                sanitize_bits: config.sanitize.then(|| eval.sanitize_bits[i]),
            }
        })
        .collect()
}
