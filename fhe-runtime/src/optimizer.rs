//! The parameter optimizer: the cheapest secure set for a circuit's noise constraints.
//!
//! The planner reduces a circuit to a few numbers per bootstrap input and per output (see
//! [`Constraint`]): how much of the bootstrap-output, fresh-encryption and keyswitch +
//! modulus-switch variances reach it, relative to what its read tolerates at `p_error`.
//! The optimizer then searches LWE dimension, GLWE dimension, decompositions of bootstrap
//! and keyswitch for one polynomial size, with noise fixed to the secure minimum of each
//! dimension ([`crate::generated`]), and keeps the set of smallest estimated lookup cost
//! that meets every constraint. As in concrete-optimizer, the best decomposition base for a
//! given level count is the one minimising the variance; those minima do not depend on the
//! circuit and are computed once per process.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::generated::{
    GeneratedParameters, bootstrap_cost, bootstrap_variance, bounds, fresh_variance, keyswitch_cost,
    keyswitch_variance, modulus_switch_variance,
};
use crate::params::NoiseModel;

/// One noise requirement, normalised so that it holds when the leveled standard deviations
/// `√(bootstrap·σ²_bs) + √(fresh·σ²_fresh) + √(small_fresh·σ²_small)`, squared, plus
/// `keyswitch·σ²_ks+ms` and `modulus_switch·σ²_ms` stay at or below 1 (variances on the
/// unit torus). The leveled parts are bounded separately and added as standard deviations,
/// which stays sound whatever their correlation. A bootstrap reading a value under the large
/// key pays the keyswitch and the modulus switch; one reading a value under the small key
/// (fresh inputs read by lookups alone) pays the modulus switch only.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Constraint {
    /// Weight of the bootstrap-output variance.
    pub bootstrap: f64,
    /// Weight of the fresh-encryption variance (large key).
    pub fresh: f64,
    /// Weight of the fresh-encryption variance under the small key.
    pub small_fresh: f64,
    /// Weight of the keyswitch + modulus-switch variance.
    pub keyswitch: f64,
    /// Weight of the modulus-switch variance alone.
    pub modulus_switch: f64,
}

impl Constraint {
    /// Whether it holds for the variances of `noise`.
    pub fn holds(&self, noise: &NoiseModel) -> bool {
        let leveled = (self.bootstrap * noise.bootstrap_output).sqrt()
            + (self.fresh * noise.fresh).sqrt()
            + (self.small_fresh * noise.small_fresh).sqrt();
        leveled * leveled
            + self.keyswitch * noise.keyswitch_and_modulus_switch
            + self.modulus_switch * noise.modulus_switch
            <= 1.0
    }

    fn weights(&self) -> [f64; 5] {
        [self.bootstrap, self.fresh, self.small_fresh, self.keyswitch, self.modulus_switch]
    }

    fn dominates(&self, other: &Constraint) -> bool {
        self.weights().iter().zip(other.weights()).all(|(a, b)| *a >= b)
    }
}

/// Keeps the constraints no other one implies (a tighter one in every weight).
pub fn undominated(mut all: Vec<Constraint>) -> Vec<Constraint> {
    let total = |c: &Constraint| c.weights().iter().sum::<f64>();
    all.sort_by(|a, b| total(b).total_cmp(&total(a)));
    let mut kept: Vec<Constraint> = Vec::new();
    for c in all {
        if !c.weights().iter().all(|w| w.is_finite()) {
            return vec![c];
        }
        if !kept.iter().any(|k| k.dominates(&c)) {
            kept.push(c);
        }
    }
    kept
}

/// LWE dimensions searched: multiples of 16, so that small-key inputs pack 16 or more to a
/// mask ([`crate::compiled::small_key_polynomial_size`]).
const LWE_STEP: usize = 16;
const LWE_RANGE: (usize, usize) = (384, 1536);
const MAX_PBS_LEVEL: usize = 6;
const MAX_KS_LEVEL: usize = 12;
/// GLWE dimensions searched.
const MAX_GLWE_DIMENSION: usize = 4;

/// Per `(k, N, n)`: the smallest bootstrap-output variance (and its base log) for each
/// level count; per `(k·N, n)`: the smallest keyswitch + modulus-switch variance.
struct Tables {
    /// `[glwe_index][lwe_index][level - 1] = (variance, base_log)`
    pbs: Vec<Vec<[(f64, usize); MAX_PBS_LEVEL]>>,
    /// `[glwe_index][lwe_index][level - 1] = (variance incl. modulus switch, base_log)`
    ks: Vec<Vec<[(f64, usize); MAX_KS_LEVEL]>>,
    /// `[glwe_index][lwe_index]`: the modulus switch's variance alone.
    ms: Vec<Vec<f64>>,
    /// `(k, log2 N)` of each glwe index.
    glwe: Vec<(usize, u32)>,
    lwe: Vec<usize>,
}

fn best_base(level: usize, variance: impl Fn(usize) -> f64) -> (f64, usize) {
    (1..=(64 / level).min(63))
        .map(|b| (variance(b), b))
        .fold((f64::INFINITY, 1), |best, cur| if cur.0.is_finite() && cur.0 < best.0 { cur } else { best })
}

/// The tables for TUniform (`false`) or Gaussian (`true`) key noise.
fn tables(gaussian: bool) -> &'static Tables {
    static TUNIFORM: OnceLock<Tables> = OnceLock::new();
    static GAUSSIAN: OnceLock<Tables> = OnceLock::new();
    let cell = if gaussian { &GAUSSIAN } else { &TUNIFORM };
    cell.get_or_init(|| {
        let lwe: Vec<usize> = (LWE_RANGE.0..=LWE_RANGE.1).step_by(LWE_STEP).collect();
        let mut glwe = Vec::new();
        for log2_n in bounds::LOG2_POLYNOMIAL_SIZE.0..=bounds::LOG2_POLYNOMIAL_SIZE.1 {
            for k in 1..=MAX_GLWE_DIMENSION {
                if (k << log2_n) <= bounds::BIG_LWE_DIMENSION && (k << log2_n) >= 512 {
                    glwe.push((k, log2_n));
                }
            }
        }
        let pbs = glwe
            .par_iter()
            .map(|&(k, log2_n)| {
                lwe.iter()
                    .map(|&n| {
                        std::array::from_fn(|l| {
                            best_base(l + 1, |b| bootstrap_variance(n, k, 1 << log2_n, b, l + 1, gaussian))
                        })
                    })
                    .collect()
            })
            .collect();
        let ks = glwe
            .par_iter()
            .map(|&(k, log2_n)| {
                lwe.iter()
                    .map(|&n| {
                        let ms = modulus_switch_variance(n, 1 << log2_n);
                        std::array::from_fn(|l| {
                            let (v, b) = best_base(l + 1, |b| keyswitch_variance(k << log2_n, n, b, l + 1, gaussian));
                            (v + ms, b)
                        })
                    })
                    .collect()
            })
            .collect();
        let ms = glwe
            .iter()
            .map(|&(_, log2_n)| lwe.iter().map(|&n| modulus_switch_variance(n, 1 << log2_n)).collect())
            .collect();
        Tables { pbs, ks, ms, glwe, lwe }
    })
}

/// The cheapest generated set with polynomial size `2^log2_n` meeting every constraint,
/// with its cost per lookup; `None` when no set of that size does.
pub fn optimize(log2_n: u32, constraints: &[Constraint]) -> Option<(GeneratedParameters, f64)> {
    optimize_where(log2_n, constraints, 1.0, |_| true)
}

/// [`optimize`] among the GLWE dimensions `k` that `allow_k` accepts (output sanitization
/// needs `k·N` to be a power of two, see [`crate::sanitize`]), for a circuit in which the
/// share `keyswitched` (0 to 1) of the lookups keyswitches (the others read small-key
/// values); the cost returned is per lookup, averaged accordingly.
pub fn optimize_where(
    log2_n: u32,
    constraints: &[Constraint],
    keyswitched: f64,
    allow_k: impl Fn(usize) -> bool,
) -> Option<(GeneratedParameters, f64)> {
    let mut best: Option<(GeneratedParameters, f64)> = None;
    for gaussian in [false, true] {
        let t = tables(gaussian);
        for (g, &(k, log2)) in t.glwe.iter().enumerate() {
            if log2 != log2_n || !allow_k(k) {
                continue;
            }
            let fresh = fresh_variance(k << log2_n, gaussian);
            for (i, &n) in t.lwe.iter().enumerate() {
                let small_fresh = fresh_variance(n, gaussian);
                for pbs_level in 1..=MAX_PBS_LEVEL {
                    let (bs_var, pbs_base) = t.pbs[g][i][pbs_level - 1];
                    let rotation = bootstrap_cost(n, k, 1 << log2_n, pbs_level);
                    for ks_level in 1..=MAX_KS_LEVEL {
                        let cost = rotation + keyswitched * keyswitch_cost(n, k, 1 << log2_n, ks_level);
                        if best.as_ref().is_some_and(|(_, c)| *c <= cost) {
                            // Costs grow with the keyswitch levels: no later one is cheaper.
                            break;
                        }
                        let (ks_var, ks_base) = t.ks[g][i][ks_level - 1];
                        let noise = NoiseModel {
                            bootstrap_output: bs_var,
                            fresh,
                            small_fresh,
                            modulus_switch: t.ms[g][i],
                            keyswitch_and_modulus_switch: ks_var,
                            log2_polynomial_size: log2_n,
                        };
                        if constraints.iter().all(|c| c.holds(&noise)) {
                            let set = GeneratedParameters {
                                lwe_dimension: n,
                                glwe_dimension: k,
                                polynomial_size: 1 << log2_n,
                                pbs_base_log: pbs_base,
                                pbs_level,
                                ks_base_log: ks_base,
                                ks_level,
                                gaussian,
                            };
                            best = Some((set, cost));
                            break;
                        }
                    }
                }
            }
        }
    }
    best
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use crate::generated::check_security;

    /// A lookup reading `bits` bits with a weight 2-norm `norm2` in front, at failure `z`
    /// standard deviations (z ≈ 7.1 for 2^-40).
    fn lookup(bits: u32, norm2: f64, z: f64) -> Constraint {
        // The sink's scale is 2^-(bits+1) of the torus; half a box is 1/2 in message units.
        let unit = 2f64.powi(-(bits as i32) - 1);
        let tolerated = (0.5 * unit / z).powi(2);
        Constraint { bootstrap: norm2 * norm2 / tolerated, keyswitch: 1.0 / tolerated, ..Default::default() }
    }

    #[test]
    fn finds_secure_sets_that_meet_the_constraints() {
        for bits in 1..=6 {
            let c = [lookup(bits, 3.0, 7.1)];
            let (set, cost) = (bits + 1..=16).find_map(|log2_n| optimize(log2_n, &c)).expect("a set");
            assert!(set.validate().is_ok());
            assert!(check_security(&set.to_tfhe()).is_ok());
            let noise = set.noise_model();
            assert!(c[0].holds(&noise));
            assert!(cost > 0.0);
        }
    }

    #[test]
    fn more_precision_costs_more() {
        let cheapest = |bits: u32| {
            (bits + 1..=16)
                .filter_map(|log2_n| optimize(log2_n, &[lookup(bits, 3.0, 7.1)]))
                .map(|(_, c)| c)
                .fold(f64::INFINITY, f64::min)
        };
        let costs: Vec<f64> = (1..=6).map(cheapest).collect();
        assert!(costs.windows(2).all(|w| w[0] <= w[1]), "{costs:?}");
    }

    #[test]
    fn dominated_constraints_are_dropped() {
        let a = Constraint { bootstrap: 2.0, fresh: 1.0, keyswitch: 3.0, ..Default::default() };
        let b = Constraint { bootstrap: 1.0, fresh: 1.0, keyswitch: 1.0, ..Default::default() };
        let c = Constraint { bootstrap: 3.0, fresh: 0.0, keyswitch: 0.0, ..Default::default() };
        assert_eq!(undominated(vec![b, a, c, a]), vec![a, c]);
    }

    /// A lookup reading fresh inputs under the small key pays no keyswitch: it is never
    /// costlier, and with no keyswitched lookup the optimizer does not pay for one.
    #[test]
    fn small_key_reads_skip_the_keyswitch() {
        let big = lookup(3, 1.0, 7.1);
        let small = Constraint { small_fresh: big.bootstrap, modulus_switch: big.keyswitch, ..Default::default() };
        let cheapest = |c: Constraint, keyswitched: f64| {
            (4..=16)
                .filter_map(|log2_n| optimize_where(log2_n, &[c], keyswitched, |_| true))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("a set")
        };
        let (big_set, big_cost) = cheapest(big, 1.0);
        let (small_set, small_cost) = cheapest(small, 0.0);
        assert!(small_cost < big_cost, "{small_cost} vs {big_cost}");
        assert!(small.holds(&small_set.noise_model()));
        assert!(big.holds(&big_set.noise_model()));
        // The small-key read's own noise: fresh small-key noise and the modulus switch.
        let noise = small_set.noise_model();
        assert!(noise.small_fresh > noise.fresh && noise.modulus_switch < noise.keyswitch_and_modulus_switch);
    }
}
