//! Parameter sets generated for one circuit, and the security rule every set obeys.
//!
//! A generated set fixes the dimensions and decompositions only: the LWE dimension `n`, the
//! GLWE dimension `k` and polynomial size `N`, the bootstrap decomposition (base log, levels)
//! and the keyswitch decomposition. Its noise is never chosen: both keys get tfhe-rs's
//! minimal secure TUniform bound for their dimension
//! (`core_crypto::commons::noise_formulas::secure_noise`, 132-bit security), so a generated
//! set is exactly as secure as tfhe-rs's own formulas make it. [`check_security`] verifies
//! that rule for any set, generated or vetted, and refuses noise below it.
//!
//! The noise it produces comes from tfhe-rs's published formulas for the same distributions:
//! bootstrap output variance (`pbs_variance_132_bits_security_tuniform_fft_mul`), keyswitch
//! (`keyswitch_additive_variance_132_bits_security_tuniform`) and the centred modulus switch
//! tfhe-rs applies (`centered_binary_shifted_modulus_switch_additive_variance`).

use serde::{Deserialize, Serialize};
use tfhe::core_crypto::commons::dispersion::StandardDev;
use tfhe::core_crypto::commons::noise_formulas::centered_mean_shifted_modulus_switch::centered_binary_shifted_modulus_switch_additive_variance;
use tfhe::core_crypto::commons::noise_formulas::lwe_keyswitch::{
    keyswitch_additive_variance_132_bits_security_gaussian, keyswitch_additive_variance_132_bits_security_tuniform,
};
use tfhe::core_crypto::commons::noise_formulas::lwe_programmable_bootstrap::{
    pbs_variance_132_bits_security_gaussian_fft_mul, pbs_variance_132_bits_security_tuniform_fft_mul,
};
use tfhe::core_crypto::commons::noise_formulas::secure_noise::{
    minimal_glwe_variance_for_132_bits_security_gaussian, minimal_lwe_bound_for_132_bits_security_tuniform,
    minimal_lwe_variance_for_132_bits_security_gaussian,
};
use tfhe::core_crypto::prelude::{
    CiphertextModulus, DecompositionBaseLog, DecompositionLevelCount, DynamicDistribution, GlweDimension, LweDimension,
    PolynomialSize,
};
use tfhe::shortint::parameters::{
    CarryModulus, ClassicPBSParameters, EncryptionKeyChoice, MaxNoiseLevel, MessageModulus, ModulusSwitchType,
};

use crate::error::{FheError, Result};
use crate::params::NoiseModel;

/// The native ciphertext modulus, `2^64`.
const Q: f64 = 18446744073709551616.0;
/// Bits of an `f64` mantissa: the precision of tfhe-rs's FFT products.
const FFT_MANTISSA: f64 = 53.0;

/// The admissible ranges of generated dimensions: keys and ciphertexts stay bounded even
/// when a set comes from an untrusted file.
pub mod bounds {
    /// Smallest and largest LWE dimension.
    pub const LWE_DIMENSION: (usize, usize) = (256, 2048);
    /// Smallest and largest `log2` of the polynomial size.
    pub const LOG2_POLYNOMIAL_SIZE: (u32, u32) = (8, 16);
    /// Largest GLWE dimension.
    pub const GLWE_DIMENSION: usize = 6;
    /// Largest `k·N` (the size of every exchanged ciphertext).
    pub const BIG_LWE_DIMENSION: usize = 1 << 16;
    /// Largest decomposition level count (bootstrap and keyswitch).
    pub const LEVELS: usize = 16;
}

/// One parameter set tuned to a circuit: dimensions and decompositions; the noise follows
/// from the dimensions (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GeneratedParameters {
    /// LWE dimension `n` of the small key (what the keyswitch lands in).
    pub lwe_dimension: usize,
    /// GLWE dimension `k`.
    pub glwe_dimension: usize,
    /// Polynomial size `N`.
    pub polynomial_size: usize,
    /// Bootstrap decomposition base log.
    pub pbs_base_log: usize,
    /// Bootstrap decomposition levels.
    pub pbs_level: usize,
    /// Keyswitch decomposition base log.
    pub ks_base_log: usize,
    /// Keyswitch decomposition levels.
    pub ks_level: usize,
    /// Gaussian noise (tfhe-rs's Gaussian formulas) instead of TUniform.
    #[serde(default)]
    pub gaussian: bool,
}

impl GeneratedParameters {
    /// Checks the dimensions against [`bounds`] and the decompositions against the 64-bit
    /// torus; a set read from a file goes through this before any key is made.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(FheError::Config(format!("generated parameter set: {what}")));
        let log2_n = self.polynomial_size.trailing_zeros();
        if !self.polynomial_size.is_power_of_two()
            || log2_n < bounds::LOG2_POLYNOMIAL_SIZE.0
            || log2_n > bounds::LOG2_POLYNOMIAL_SIZE.1
        {
            return bad(format!("polynomial size {} is not a power of two in 2^8..=2^16", self.polynomial_size));
        }
        if !(bounds::LWE_DIMENSION.0..=bounds::LWE_DIMENSION.1).contains(&self.lwe_dimension) {
            return bad(format!("LWE dimension {} outside {:?}", self.lwe_dimension, bounds::LWE_DIMENSION));
        }
        if self.glwe_dimension == 0
            || self.glwe_dimension > bounds::GLWE_DIMENSION
            || self.glwe_dimension * self.polynomial_size > bounds::BIG_LWE_DIMENSION
        {
            return bad(format!("GLWE dimension {} x {} too large", self.glwe_dimension, self.polynomial_size));
        }
        for (name, base, level) in
            [("bootstrap", self.pbs_base_log, self.pbs_level), ("keyswitch", self.ks_base_log, self.ks_level)]
        {
            if base == 0 || level == 0 || level > bounds::LEVELS || base * level > 64 {
                return bad(format!("{name} decomposition {level} x 2^{base} does not fit 64 bits"));
            }
        }
        Ok(())
    }

    /// TUniform bound (log2) of the small LWE key's noise: the secure minimum for `n`.
    pub fn lwe_noise_bound_log2(&self) -> u32 {
        minimal_lwe_bound_for_132_bits_security_tuniform(LweDimension(self.lwe_dimension), Q)
    }

    /// TUniform bound (log2) of the GLWE key's noise: the secure minimum for `k·N`.
    pub fn glwe_noise_bound_log2(&self) -> u32 {
        minimal_lwe_bound_for_132_bits_security_tuniform(LweDimension(self.glwe_dimension * self.polynomial_size), Q)
    }

    /// The key noise distributions: the secure minimum for each dimension.
    fn distributions(&self) -> (DynamicDistribution<u64>, DynamicDistribution<u64>) {
        if self.gaussian {
            let std = |dimension: usize| {
                // One part in 10^9 above the minimum, so rounding never lands below it.
                let minimum = minimal_lwe_variance_for_132_bits_security_gaussian(LweDimension(dimension), Q).0;
                DynamicDistribution::new_gaussian_from_std_dev(StandardDev(minimum.sqrt() * (1.0 + 1e-9)))
            };
            (std(self.lwe_dimension), std(self.glwe_dimension * self.polynomial_size))
        } else {
            (
                DynamicDistribution::new_t_uniform(self.lwe_noise_bound_log2()),
                DynamicDistribution::new_t_uniform(self.glwe_noise_bound_log2()),
            )
        }
    }

    /// The set in tfhe-rs's form (keyswitch then bootstrap, centred modulus switch).
    pub fn to_tfhe(&self) -> ClassicPBSParameters {
        let (lwe_noise_distribution, glwe_noise_distribution) = self.distributions();
        ClassicPBSParameters {
            lwe_dimension: LweDimension(self.lwe_dimension),
            glwe_dimension: GlweDimension(self.glwe_dimension),
            polynomial_size: PolynomialSize(self.polynomial_size),
            lwe_noise_distribution,
            glwe_noise_distribution,
            pbs_base_log: DecompositionBaseLog(self.pbs_base_log),
            pbs_level: DecompositionLevelCount(self.pbs_level),
            ks_base_log: DecompositionBaseLog(self.ks_base_log),
            ks_level: DecompositionLevelCount(self.ks_level),
            // The runtime builds its own accumulators and encodings: these only size
            // shortint's bookkeeping, never what a bootstrap reads.
            message_modulus: MessageModulus(2),
            carry_modulus: CarryModulus(1),
            max_noise_level: MaxNoiseLevel::new(1),
            log2_p_fail: -40.0,
            ciphertext_modulus: CiphertextModulus::new_native(),
            encryption_key_choice: EncryptionKeyChoice::Big,
            modulus_switch_noise_reduction_params: ModulusSwitchType::CenteredMeanNoiseReduction,
        }
    }

    /// A short name: `gen_n{n}_k{k}_N{N}_pbs{levels}x{base}_ks{levels}x{base}` (`_gauss`
    /// for Gaussian noise).
    pub fn name(&self) -> String {
        format!(
            "gen_n{}_k{}_N{}_pbs{}x{}_ks{}x{}{}",
            self.lwe_dimension,
            self.glwe_dimension,
            self.polynomial_size,
            self.pbs_level,
            self.pbs_base_log,
            self.ks_level,
            self.ks_base_log,
            if self.gaussian { "_gauss" } else { "" }
        )
    }

    /// Noise figures from tfhe-rs's formulas (variances on the unit torus).
    pub fn noise_model(&self) -> NoiseModel {
        let big = self.glwe_dimension * self.polynomial_size;
        NoiseModel {
            bootstrap_output: bootstrap_variance(
                self.lwe_dimension,
                self.glwe_dimension,
                self.polynomial_size,
                self.pbs_base_log,
                self.pbs_level,
                self.gaussian,
            ),
            fresh: fresh_variance(big, self.gaussian),
            small_fresh: fresh_variance(self.lwe_dimension, self.gaussian),
            modulus_switch: modulus_switch_variance(self.lwe_dimension, self.polynomial_size),
            keyswitch_and_modulus_switch: keyswitch_variance(
                big,
                self.lwe_dimension,
                self.ks_base_log,
                self.ks_level,
                self.gaussian,
            ) + modulus_switch_variance(self.lwe_dimension, self.polynomial_size),
            log2_polynomial_size: self.polynomial_size.trailing_zeros(),
        }
    }

    /// Relative cost of one keyswitch + bootstrap, in tfhe-rs's algorithmic-cost units.
    pub fn cost(&self) -> f64 {
        lookup_cost(self.lwe_dimension, self.glwe_dimension, self.polynomial_size, self.pbs_level, self.ks_level)
    }
}

/// Variance of a TUniform distribution of bound `2^b` on `Z/2^64`, on the unit torus.
pub fn t_uniform_variance(bound_log2: u32) -> f64 {
    ((2f64.powi(2 * bound_log2 as i32 + 1) + 1.0) / 6.0) * 2f64.powi(-128)
}

/// Variance of a fresh encryption under a secure-minimum key of dimension `big` (`k·N`).
pub fn fresh_variance(big: usize, gaussian: bool) -> f64 {
    if gaussian {
        minimal_lwe_variance_for_132_bits_security_gaussian(LweDimension(big), Q).0
    } else {
        t_uniform_variance(minimal_lwe_bound_for_132_bits_security_tuniform(LweDimension(big), Q))
    }
}

/// Variance of a bootstrap's output (tfhe-rs's formula, FFT multiplication included).
pub fn bootstrap_variance(n: usize, k: usize, big_n: usize, base_log: usize, level: usize, gaussian: bool) -> f64 {
    let formula = if gaussian {
        pbs_variance_132_bits_security_gaussian_fft_mul
    } else {
        pbs_variance_132_bits_security_tuniform_fft_mul
    };
    formula(
        LweDimension(n),
        GlweDimension(k),
        PolynomialSize(big_n),
        DecompositionBaseLog(base_log),
        DecompositionLevelCount(level),
        FFT_MANTISSA,
        Q,
    )
    .0
}

/// Variance a keyswitch from dimension `input` to `n` adds.
pub fn keyswitch_variance(input: usize, n: usize, base_log: usize, level: usize, gaussian: bool) -> f64 {
    let formula = if gaussian {
        keyswitch_additive_variance_132_bits_security_gaussian
    } else {
        keyswitch_additive_variance_132_bits_security_tuniform
    };
    formula(LweDimension(input), LweDimension(n), DecompositionBaseLog(base_log), DecompositionLevelCount(level), Q, Q)
        .0
}

/// Variance the centred modulus switch to `2N` adds to an `n`-dimensional sample.
pub fn modulus_switch_variance(n: usize, big_n: usize) -> f64 {
    centered_binary_shifted_modulus_switch_additive_variance(LweDimension(n), Q, 2.0 * big_n as f64).0
}

/// Estimated single-thread time of one keyswitch + bootstrap on the reference machine
/// (AMD EPYC, 2 cores, no AVX-512), in milliseconds. The blind rotation runs `n` external
/// products, each with `(k+1)·(ℓ+1)` FFTs of size `N` and `(k+1)²·ℓ` pointwise products of
/// `N` values that stream the bootstrapping key from memory; the keyswitch streams
/// `k·N·ℓ_ks·(n+1)` key words, which weigh twice an FFT butterfly because they come from
/// memory, not cache; and every lookup pays a fixed cost (modulus switch, sample extraction,
/// allocation). The four weights are a robust least-squares fit of 48 measured shapes
/// (`n` 560–900, `k` 1–4, `N` 512–4096, `ℓ` 1–3, `ℓ_ks` 3–8; thread CPU time, median ratio
/// 1.00, 90% within 10%): `cargo run --release -p fheml-fhe-runtime --example pbs_fit`
/// prints the measurements to refit on another machine. Only ratios between sets steer the
/// optimizer; absolute times feed the compile report's expected latency.
pub fn lookup_cost(n: usize, k: usize, big_n: usize, pbs_level: usize, ks_level: usize) -> f64 {
    bootstrap_cost(n, k, big_n, pbs_level) + keyswitch_cost(n, k, big_n, ks_level)
}

/// The bootstrap's part of [`lookup_cost`] (blind rotation and the fixed cost): what a
/// lookup reading a value encrypted under the small key pays, since it needs no keyswitch.
pub fn bootstrap_cost(n: usize, k: usize, big_n: usize, pbs_level: usize) -> f64 {
    let (n, k, big_n, l) = (n as f64, k as f64, big_n as f64, pbs_level as f64);
    let ffts = n * (k + 1.0) * (l + 1.0) * big_n * big_n.log2();
    let products = n * (k + 1.0).powi(2) * l * big_n;
    (MS_PER_MEGA_BUTTERFLY * ffts + MS_PER_MEGA_PRODUCT * products) / 1e6 + FIXED_MS_PER_LOOKUP
}

/// The keyswitch's part of [`lookup_cost`].
pub fn keyswitch_cost(n: usize, k: usize, big_n: usize, ks_level: usize) -> f64 {
    MS_PER_MEGA_KEYSWITCH_WORD * (k * big_n * ks_level * (n + 1)) as f64 / 1e6
}

/// Fitted weights of [`lookup_cost`], milliseconds per million operations.
const MS_PER_MEGA_BUTTERFLY: f64 = 0.207;
const MS_PER_MEGA_PRODUCT: f64 = 0.817;
const MS_PER_MEGA_KEYSWITCH_WORD: f64 = 0.440;
/// Fitted fixed cost of one lookup, milliseconds.
const FIXED_MS_PER_LOOKUP: f64 = 1.47;

/// Checks that both keys of `params` carry at least the minimal secure noise for their
/// dimension (tfhe-rs's `secure_noise` formulas, 132-bit security): for TUniform noise its
/// bound must reach tfhe-rs's minimal secure bound, for Gaussian noise its variance the
/// minimal secure variance.
pub fn check_security(params: &ClassicPBSParameters) -> Result<()> {
    let lwe = params.lwe_dimension;
    let big = LweDimension(params.glwe_dimension.0 * params.polynomial_size.0);
    let checks = [
        ("LWE", lwe, params.lwe_noise_distribution, minimal_lwe_variance_for_132_bits_security_gaussian(lwe, Q).0),
        (
            "GLWE",
            big,
            params.glwe_noise_distribution,
            minimal_glwe_variance_for_132_bits_security_gaussian(params.glwe_dimension, params.polynomial_size, Q).0,
        ),
    ];
    for (key, dimension, distribution, gaussian_min) in checks {
        match distribution {
            DynamicDistribution::TUniform(t) => {
                let minimum = minimal_lwe_bound_for_132_bits_security_tuniform(dimension, Q);
                if t.bound_log2() < minimum {
                    return Err(FheError::Config(format!(
                        "insecure parameters: {key} TUniform bound 2^{} is below the 132-bit minimum 2^{minimum} for dimension {}",
                        t.bound_log2(),
                        dimension.0
                    )));
                }
            }
            DynamicDistribution::Gaussian(g) => {
                let variance = g.standard_dev().0.powi(2);
                if variance < gaussian_min {
                    return Err(FheError::Config(format!(
                        "insecure parameters: {key} noise variance 2^{:.2} is below the 132-bit minimum 2^{:.2} for dimension {}",
                        variance.log2(),
                        gaussian_min.log2(),
                        dimension.0
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParameterSetId;

    fn example() -> GeneratedParameters {
        GeneratedParameters {
            lwe_dimension: 800,
            glwe_dimension: 1,
            polynomial_size: 2048,
            pbs_base_log: 23,
            pbs_level: 1,
            ks_base_log: 3,
            ks_level: 5,
            gaussian: false,
        }
    }

    #[test]
    fn every_vetted_set_is_secure() {
        for id in ParameterSetId::all() {
            let set = id.set();
            assert!(check_security(&set.params).is_ok(), "{}: {:?}", set.name, check_security(&set.params));
        }
    }

    #[test]
    fn generated_sets_are_secure_at_every_dimension() {
        for n in (bounds::LWE_DIMENSION.0..=bounds::LWE_DIMENSION.1).step_by(7) {
            for log2_n in bounds::LOG2_POLYNOMIAL_SIZE.0..=bounds::LOG2_POLYNOMIAL_SIZE.1 {
                for (k, gaussian) in [(1, false), (2, false), (1, true), (2, true)] {
                    let p = GeneratedParameters {
                        lwe_dimension: n,
                        glwe_dimension: k,
                        polynomial_size: 1 << log2_n,
                        gaussian,
                        ..example()
                    };
                    assert!(check_security(&p.to_tfhe()).is_ok(), "{}", p.name());
                }
            }
        }
    }

    #[test]
    fn noise_below_the_secure_minimum_is_refused() {
        let p = example();
        let mut lower_lwe = p.to_tfhe();
        lower_lwe.lwe_noise_distribution = DynamicDistribution::new_t_uniform(p.lwe_noise_bound_log2() - 1);
        assert!(check_security(&lower_lwe).is_err());
        let mut lower_glwe = p.to_tfhe();
        lower_glwe.glwe_noise_distribution = DynamicDistribution::new_t_uniform(p.glwe_noise_bound_log2() - 1);
        assert!(check_security(&lower_glwe).is_err());
        // Gaussian: 1% less standard deviation than the secure minimum is refused.
        let g = GeneratedParameters { gaussian: true, ..p };
        let mut lower_gaussian = g.to_tfhe();
        if let DynamicDistribution::Gaussian(d) = lower_gaussian.lwe_noise_distribution {
            lower_gaussian.lwe_noise_distribution =
                DynamicDistribution::new_gaussian_from_std_dev(StandardDev(d.standard_dev().0 * 0.99));
        }
        assert!(check_security(&g.to_tfhe()).is_ok());
        assert!(check_security(&lower_gaussian).is_err());
        // Every vetted set, its noise lowered by one bit, fails too: the check is tight.
        for id in [ParameterSetId::M2C2P128, ParameterSetId::M1C1P40] {
            let mut params = id.set().params;
            if let DynamicDistribution::TUniform(t) = params.lwe_noise_distribution {
                params.lwe_noise_distribution = DynamicDistribution::new_t_uniform(t.bound_log2() - 1);
            }
            assert!(check_security(&params).is_err(), "{id:?}");
        }
    }

    #[test]
    fn cost_model_tracks_tfhe_rs_documented_costs() {
        // The model is in milliseconds, tfhe-rs's costs in its own units: their ratio must be
        // about the same for every set, i.e. both rank sets alike.
        let ratios: Vec<(String, f64)> = [
            ParameterSetId::M1C1P128,
            ParameterSetId::M2C2P128,
            ParameterSetId::M3C3P128,
            ParameterSetId::M4C4P128,
            ParameterSetId::M2C2P40,
            ParameterSetId::M3C3P64,
        ]
        .into_iter()
        .map(|id| {
            let set = id.set();
            let p = set.params;
            let model =
                lookup_cost(p.lwe_dimension.0, p.glwe_dimension.0, p.polynomial_size.0, p.pbs_level.0, p.ks_level.0);
            (set.name.clone(), model / set.documented_cost.unwrap_or(f64::NAN))
        })
        .collect();
        let mean = (ratios.iter().map(|(_, r)| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
        for (name, ratio) in &ratios {
            let relative = ratio / mean;
            assert!(
                (0.6..1.6).contains(&relative),
                "{name}: model/documented {ratio:.3} vs mean {mean:.3}: {ratios:?}"
            );
        }
    }

    #[test]
    fn validation_bounds_untrusted_sets() {
        assert!(example().validate().is_ok());
        assert!(GeneratedParameters { polynomial_size: 3000, ..example() }.validate().is_err());
        assert!(GeneratedParameters { polynomial_size: 1 << 20, ..example() }.validate().is_err());
        assert!(GeneratedParameters { lwe_dimension: 10, ..example() }.validate().is_err());
        assert!(GeneratedParameters { pbs_level: 0, ..example() }.validate().is_err());
        assert!(GeneratedParameters { ks_base_log: 20, ks_level: 5, ..example() }.validate().is_err());
    }

    #[test]
    fn noise_model_is_sane() {
        let noise = example().noise_model();
        assert!(noise.bootstrap_output > 0.0 && noise.bootstrap_output < 2f64.powi(-20));
        assert!(noise.keyswitch_and_modulus_switch > noise.bootstrap_output);
        assert!(noise.fresh < noise.bootstrap_output);
    }
}
