//! The vetted TFHE parameter sets the runtime chooses from, and the noise model of each.
//!
//! Every candidate is a tfhe-rs KS-PBS parameter set (TUniform noise at 2^-40, 2^-64 and
//! 2^-128; the Gaussian 2^-128 family, which has a set for every message/carry split and so
//! offers 3, 5 and 7-bit reads between the TUniform sizes), published with a
//! failure probability and a maximal 2-norm. From the set's documented design point we
//! derive the noise the runtime's analysis needs (all variances on the unit torus):
//! the bootstrap output variance comes from tfhe-rs's own noise formula, fresh
//! encryptions use the set's GLWE noise, and the keyswitch + modulus-switch variance is
//! what remains of the documented failure probability once `norm2² · σ²_pbs` is taken out.
//! We never change a (dimension, noise) pair, so security is that of the vetted sets.

use serde::{Deserialize, Serialize};
use tfhe::core_crypto::commons::noise_formulas::lwe_programmable_bootstrap::{
    pbs_variance_132_bits_security_gaussian_fft_mul, pbs_variance_132_bits_security_tuniform_fft_mul,
};
use tfhe::shortint::parameters::{ClassicPBSParameters, DynamicDistribution, v1_6, v1_8};

use crate::generated::GeneratedParameters;
use crate::noise::erfc_inverse;

/// Identifies one candidate parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ParameterSetId {
    /// 1 message + 1 carry bit, failure probability 2^-40 at its design point.
    M1C1P40,
    /// 2 + 2 bits, 2^-40.
    M2C2P40,
    /// 3 + 3 bits, 2^-40.
    M3C3P40,
    /// 4 + 4 bits, 2^-40.
    M4C4P40,
    /// 1 + 1 bits, 2^-64.
    M1C1P64,
    /// 2 + 2 bits, 2^-64.
    M2C2P64,
    /// 3 + 3 bits, 2^-64.
    M3C3P64,
    /// 4 + 4 bits, 2^-64.
    M4C4P64,
    /// 1 + 1 bits, 2^-128.
    M1C1P128,
    /// 2 + 2 bits, 2^-128.
    M2C2P128,
    /// 3 + 3 bits, 2^-128.
    M3C3P128,
    /// 4 + 4 bits, 2^-128.
    M4C4P128,
    /// 1 message + 0 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G1C0P128,
    /// 2 message + 0 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G2C0P128,
    /// 1 message + 1 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G1C1P128,
    /// 1 message + 2 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G1C2P128,
    /// 2 message + 1 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G2C1P128,
    /// 3 message + 0 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G3C0P128,
    /// 2 message + 2 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G2C2P128,
    /// 3 message + 1 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G3C1P128,
    /// 4 message + 0 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G4C0P128,
    /// 1 message + 3 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G1C3P128,
    /// 5 message + 0 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G5C0P128,
    /// 4 message + 1 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G4C1P128,
    /// 3 message + 2 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G3C2P128,
    /// 1 message + 4 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G1C4P128,
    /// 2 message + 3 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G2C3P128,
    /// 3 message + 3 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G3C3P128,
    /// 4 message + 2 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G4C2P128,
    /// 5 message + 1 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G5C1P128,
    /// 6 message + 0 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G6C0P128,
    /// 2 message + 4 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G2C4P128,
    /// 1 message + 5 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G1C5P128,
    /// 5 message + 2 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G5C2P128,
    /// 6 message + 1 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G6C1P128,
    /// 7 message + 0 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G7C0P128,
    /// 4 message + 3 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G4C3P128,
    /// 3 message + 4 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G3C4P128,
    /// 2 message + 5 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G2C5P128,
    /// 1 message + 6 carry bits, Gaussian noise, failure probability 2^-128 at its design point.
    G1C6P128,
}

/// Which parameter set a circuit runs on: one of tfhe-rs's vetted sets, or one generated
/// for the circuit (see [`crate::generated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Parameters {
    /// A vetted tfhe-rs set.
    Vetted(ParameterSetId),
    /// A set generated for the circuit by the optimizer.
    Generated(GeneratedParameters),
}

impl Parameters {
    /// The parameter set.
    pub fn set(&self) -> ParameterSet {
        match self {
            Parameters::Vetted(id) => id.set(),
            Parameters::Generated(g) => ParameterSet {
                id: *self,
                name: g.name(),
                params: g.to_tfhe(),
                cost: g.cost(),
                documented_cost: None,
                max_norm2: None,
            },
        }
    }

    /// Checks a set read from an untrusted file: bounded dimensions, secure noise.
    pub fn validate(&self) -> crate::error::Result<()> {
        if let Parameters::Generated(g) = self {
            g.validate()?;
        }
        crate::generated::check_security(&self.set().params)
    }
}

/// One parameter set with what the runtime needs to know about it.
#[derive(Debug, Clone)]
pub struct ParameterSet {
    /// Which set.
    pub id: Parameters,
    /// tfhe-rs's name for it (or the generated set's own).
    pub name: String,
    /// The parameters themselves.
    pub params: ClassicPBSParameters,
    /// Estimated cost of one lookup: milliseconds on the reference machine
    /// ([`crate::generated::lookup_cost`]), the same model for vetted and generated sets.
    pub cost: f64,
    /// tfhe-rs's documented algorithmic cost (vetted sets only).
    pub documented_cost: Option<f64>,
    /// Maximal 2-norm at the design point, as documented (vetted sets only).
    pub max_norm2: Option<f64>,
}

const ALL: [ParameterSetId; 40] = [
    ParameterSetId::M1C1P40,
    ParameterSetId::M2C2P40,
    ParameterSetId::M3C3P40,
    ParameterSetId::M4C4P40,
    ParameterSetId::M1C1P64,
    ParameterSetId::M2C2P64,
    ParameterSetId::M3C3P64,
    ParameterSetId::M4C4P64,
    ParameterSetId::M1C1P128,
    ParameterSetId::M2C2P128,
    ParameterSetId::M3C3P128,
    ParameterSetId::M4C4P128,
    ParameterSetId::G1C0P128,
    ParameterSetId::G2C0P128,
    ParameterSetId::G1C1P128,
    ParameterSetId::G1C2P128,
    ParameterSetId::G2C1P128,
    ParameterSetId::G3C0P128,
    ParameterSetId::G2C2P128,
    ParameterSetId::G3C1P128,
    ParameterSetId::G4C0P128,
    ParameterSetId::G1C3P128,
    ParameterSetId::G5C0P128,
    ParameterSetId::G4C1P128,
    ParameterSetId::G3C2P128,
    ParameterSetId::G1C4P128,
    ParameterSetId::G2C3P128,
    ParameterSetId::G3C3P128,
    ParameterSetId::G4C2P128,
    ParameterSetId::G5C1P128,
    ParameterSetId::G6C0P128,
    ParameterSetId::G2C4P128,
    ParameterSetId::G1C5P128,
    ParameterSetId::G5C2P128,
    ParameterSetId::G6C1P128,
    ParameterSetId::G7C0P128,
    ParameterSetId::G4C3P128,
    ParameterSetId::G3C4P128,
    ParameterSetId::G2C5P128,
    ParameterSetId::G1C6P128,
];

impl ParameterSetId {
    /// Every candidate.
    pub fn all() -> &'static [ParameterSetId] {
        &ALL
    }

    /// The parameter set.
    pub fn set(self) -> ParameterSet {
        use ParameterSetId::*;
        // Costs and 2-norms are those documented beside each constant in tfhe-rs.
        let (name, params, cost, max_norm2) = match self {
            M1C1P40 => (
                "V1_6_PARAM_MESSAGE_1_CARRY_1_KS_PBS_TUNIFORM_2M40",
                v1_6::V1_6_PARAM_MESSAGE_1_CARRY_1_KS_PBS_TUNIFORM_2M40,
                49.0,
                3.0,
            ),
            M2C2P40 => (
                "V1_6_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M40",
                v1_6::V1_6_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M40,
                107.0,
                5.0,
            ),
            M3C3P40 => (
                "V1_6_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M40",
                v1_6::V1_6_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M40,
                816.0,
                9.0,
            ),
            M4C4P40 => (
                "V1_6_PARAM_MESSAGE_4_CARRY_4_KS_PBS_TUNIFORM_2M40",
                v1_6::V1_6_PARAM_MESSAGE_4_CARRY_4_KS_PBS_TUNIFORM_2M40,
                4165.0,
                17.0,
            ),
            M1C1P64 => (
                "V1_6_PARAM_MESSAGE_1_CARRY_1_KS_PBS_TUNIFORM_2M64",
                v1_6::V1_6_PARAM_MESSAGE_1_CARRY_1_KS_PBS_TUNIFORM_2M64,
                64.0,
                3.0,
            ),
            M2C2P64 => (
                "V1_6_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M64",
                v1_6::V1_6_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M64,
                112.0,
                5.0,
            ),
            M3C3P64 => (
                "V1_6_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M64",
                v1_6::V1_6_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M64,
                850.0,
                9.0,
            ),
            M4C4P64 => (
                "V1_6_PARAM_MESSAGE_4_CARRY_4_KS_PBS_TUNIFORM_2M64",
                v1_6::V1_6_PARAM_MESSAGE_4_CARRY_4_KS_PBS_TUNIFORM_2M64,
                6737.0,
                17.0,
            ),
            M1C1P128 => (
                "V1_8_PARAM_MESSAGE_1_CARRY_1_KS_PBS_TUNIFORM_2M128",
                v1_8::V1_8_PARAM_MESSAGE_1_CARRY_1_KS_PBS_TUNIFORM_2M128,
                67.0,
                3.0,
            ),
            M2C2P128 => (
                "V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128",
                v1_8::V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128,
                113.0,
                5.0,
            ),
            M3C3P128 => (
                "V1_8_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128",
                v1_8::V1_8_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128,
                900.0,
                9.0,
            ),
            M4C4P128 => (
                "V1_8_PARAM_MESSAGE_4_CARRY_4_KS_PBS_TUNIFORM_2M128",
                v1_8::V1_8_PARAM_MESSAGE_4_CARRY_4_KS_PBS_TUNIFORM_2M128,
                11860.0,
                17.0,
            ),
            G1C0P128 => (
                "V1_6_PARAM_MESSAGE_1_CARRY_0_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_1_CARRY_0_KS_PBS_GAUSSIAN_2M128,
                40.0,
                1.0,
            ),
            G2C0P128 => (
                "V1_6_PARAM_MESSAGE_2_CARRY_0_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_2_CARRY_0_KS_PBS_GAUSSIAN_2M128,
                49.0,
                1.0,
            ),
            G1C1P128 => (
                "V1_6_PARAM_MESSAGE_1_CARRY_1_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_1_CARRY_1_KS_PBS_GAUSSIAN_2M128,
                64.0,
                3.0,
            ),
            G1C2P128 => (
                "V1_6_PARAM_MESSAGE_1_CARRY_2_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_1_CARRY_2_KS_PBS_GAUSSIAN_2M128,
                79.0,
                7.0,
            ),
            G2C1P128 => (
                "V1_6_PARAM_MESSAGE_2_CARRY_1_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_2_CARRY_1_KS_PBS_GAUSSIAN_2M128,
                79.0,
                2.0,
            ),
            G3C0P128 => (
                "V1_6_PARAM_MESSAGE_3_CARRY_0_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_3_CARRY_0_KS_PBS_GAUSSIAN_2M128,
                79.0,
                1.0,
            ),
            G2C2P128 => (
                "V1_6_PARAM_MESSAGE_2_CARRY_2_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_2_CARRY_2_KS_PBS_GAUSSIAN_2M128,
                110.0,
                5.0,
            ),
            G3C1P128 => (
                "V1_6_PARAM_MESSAGE_3_CARRY_1_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_3_CARRY_1_KS_PBS_GAUSSIAN_2M128,
                110.0,
                2.0,
            ),
            G4C0P128 => (
                "V1_6_PARAM_MESSAGE_4_CARRY_0_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_4_CARRY_0_KS_PBS_GAUSSIAN_2M128,
                110.0,
                1.0,
            ),
            G1C3P128 => (
                "V1_6_PARAM_MESSAGE_1_CARRY_3_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_1_CARRY_3_KS_PBS_GAUSSIAN_2M128,
                119.0,
                15.0,
            ),
            G5C0P128 => (
                "V1_6_PARAM_MESSAGE_5_CARRY_0_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_5_CARRY_0_KS_PBS_GAUSSIAN_2M128,
                259.0,
                1.0,
            ),
            G4C1P128 => (
                "V1_6_PARAM_MESSAGE_4_CARRY_1_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_4_CARRY_1_KS_PBS_GAUSSIAN_2M128,
                260.0,
                2.0,
            ),
            G3C2P128 => (
                "V1_6_PARAM_MESSAGE_3_CARRY_2_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_3_CARRY_2_KS_PBS_GAUSSIAN_2M128,
                281.0,
                4.0,
            ),
            G1C4P128 => (
                "V1_6_PARAM_MESSAGE_1_CARRY_4_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_1_CARRY_4_KS_PBS_GAUSSIAN_2M128,
                373.0,
                31.0,
            ),
            G2C3P128 => (
                "V1_6_PARAM_MESSAGE_2_CARRY_3_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_2_CARRY_3_KS_PBS_GAUSSIAN_2M128,
                373.0,
                10.0,
            ),
            G3C3P128 => (
                "V1_6_PARAM_MESSAGE_3_CARRY_3_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_3_CARRY_3_KS_PBS_GAUSSIAN_2M128,
                874.0,
                9.0,
            ),
            G4C2P128 => (
                "V1_6_PARAM_MESSAGE_4_CARRY_2_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_4_CARRY_2_KS_PBS_GAUSSIAN_2M128,
                874.0,
                4.0,
            ),
            G5C1P128 => (
                "V1_6_PARAM_MESSAGE_5_CARRY_1_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_5_CARRY_1_KS_PBS_GAUSSIAN_2M128,
                874.0,
                2.0,
            ),
            G6C0P128 => (
                "V1_6_PARAM_MESSAGE_6_CARRY_0_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_6_CARRY_0_KS_PBS_GAUSSIAN_2M128,
                874.0,
                1.0,
            ),
            G2C4P128 => (
                "V1_6_PARAM_MESSAGE_2_CARRY_4_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_2_CARRY_4_KS_PBS_GAUSSIAN_2M128,
                875.0,
                21.0,
            ),
            G1C5P128 => (
                "V1_6_PARAM_MESSAGE_1_CARRY_5_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_1_CARRY_5_KS_PBS_GAUSSIAN_2M128,
                878.0,
                63.0,
            ),
            G5C2P128 => (
                "V1_6_PARAM_MESSAGE_5_CARRY_2_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_5_CARRY_2_KS_PBS_GAUSSIAN_2M128,
                2075.0,
                4.0,
            ),
            G6C1P128 => (
                "V1_6_PARAM_MESSAGE_6_CARRY_1_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_6_CARRY_1_KS_PBS_GAUSSIAN_2M128,
                2075.0,
                2.0,
            ),
            G7C0P128 => (
                "V1_6_PARAM_MESSAGE_7_CARRY_0_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_7_CARRY_0_KS_PBS_GAUSSIAN_2M128,
                2075.0,
                1.0,
            ),
            G4C3P128 => (
                "V1_6_PARAM_MESSAGE_4_CARRY_3_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_4_CARRY_3_KS_PBS_GAUSSIAN_2M128,
                2079.0,
                8.0,
            ),
            G3C4P128 => (
                "V1_6_PARAM_MESSAGE_3_CARRY_4_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_3_CARRY_4_KS_PBS_GAUSSIAN_2M128,
                2104.0,
                18.0,
            ),
            G2C5P128 => (
                "V1_6_PARAM_MESSAGE_2_CARRY_5_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_2_CARRY_5_KS_PBS_GAUSSIAN_2M128,
                2662.0,
                42.0,
            ),
            G1C6P128 => (
                "V1_6_PARAM_MESSAGE_1_CARRY_6_KS_PBS_GAUSSIAN_2M128",
                v1_6::V1_6_PARAM_MESSAGE_1_CARRY_6_KS_PBS_GAUSSIAN_2M128,
                2675.0,
                127.0,
            ),
        };
        // Vetted and generated sets are compared on one cost model; the documented costs
        // only check it (see `generated::tests`).
        let documented_cost = Some(cost);
        let cost = crate::generated::lookup_cost(
            params.lwe_dimension.0,
            params.glwe_dimension.0,
            params.polynomial_size.0,
            params.pbs_level.0,
            params.ks_level.0,
        );
        ParameterSet {
            id: Parameters::Vetted(self),
            name: name.to_string(),
            params,
            cost,
            documented_cost,
            max_norm2: Some(max_norm2),
        }
    }
}

fn t_uniform_variance(distribution: DynamicDistribution<u64>) -> f64 {
    match distribution {
        DynamicDistribution::TUniform(t) => crate::generated::t_uniform_variance(t.bound_log2()),
        DynamicDistribution::Gaussian(g) => g.standard_dev().0.powi(2),
    }
}

/// The noise figures of one parameter set, as variances on the unit torus.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseModel {
    /// Variance of a bootstrap's output.
    pub bootstrap_output: f64,
    /// Variance of a fresh encryption under the large (GLWE) key.
    pub fresh: f64,
    /// Variance of a fresh encryption under the small LWE key (the keyswitch's target):
    /// what inputs read by lookups alone are encrypted under (see [`crate::plan::small_key_nodes`]).
    pub small_fresh: f64,
    /// Variance the modulus switch alone adds in front of a bootstrap reading a small-key
    /// value (no keyswitch).
    pub modulus_switch: f64,
    /// Variance added by keyswitch and modulus switch in front of every bootstrap.
    pub keyswitch_and_modulus_switch: f64,
    /// log2 of the GLWE polynomial size: the finest precision a bootstrap can read.
    pub log2_polynomial_size: u32,
}

impl ParameterSet {
    /// Message + carry bits: the precision the set was designed for (padding excluded).
    pub fn design_bits(&self) -> u32 {
        (self.params.message_modulus.0 * self.params.carry_modulus.0).trailing_zeros()
    }

    /// The set's documented failure probability at its design point.
    pub fn documented_p_fail(&self) -> f64 {
        2f64.powf(self.params.log2_p_fail)
    }

    /// The noise model: for a vetted set, derived from its documented design point (see the
    /// module doc); for a generated set, tfhe-rs's formulas.
    pub fn noise_model(&self) -> NoiseModel {
        let max_norm2 = match (&self.id, self.max_norm2) {
            (Parameters::Vetted(_), Some(norm)) => norm,
            (Parameters::Generated(g), _) => return g.noise_model(),
            (Parameters::Vetted(_), None) => 1.0,
        };
        let p = &self.params;
        let formula = match p.glwe_noise_distribution {
            DynamicDistribution::TUniform(_) => pbs_variance_132_bits_security_tuniform_fft_mul,
            DynamicDistribution::Gaussian(_) => pbs_variance_132_bits_security_gaussian_fft_mul,
        };
        let bootstrap_output = formula(
            p.lwe_dimension,
            p.glwe_dimension,
            p.polynomial_size,
            p.pbs_base_log,
            p.pbs_level,
            53.0,
            2f64.powi(64),
        )
        .0;
        // At the design point a message of `design_bits` plus padding fills the torus: the
        // bootstrap fails when the noise passes half a box.
        let half_box = 2f64.powi(-(self.design_bits() as i32) - 2);
        let total_std = half_box / (std::f64::consts::SQRT_2 * erfc_inverse(self.documented_p_fail()));
        let rest = total_std.powi(2) - max_norm2.powi(2) * bootstrap_output;
        NoiseModel {
            bootstrap_output,
            fresh: t_uniform_variance(p.glwe_noise_distribution),
            small_fresh: t_uniform_variance(p.lwe_noise_distribution),
            // Conservative: the documented point gives keyswitch and modulus switch together.
            modulus_switch: rest.max(0.5 * total_std.powi(2)),
            // Should the formula disagree with the documented point, stay conservative.
            keyswitch_and_modulus_switch: rest.max(0.5 * total_std.powi(2)),
            log2_polynomial_size: p.polynomial_size.0.trailing_zeros(),
        }
    }

    /// Large LWE dimension (`k·N`): the size of every ciphertext the client and server exchange.
    pub fn big_lwe_dimension(&self) -> usize {
        self.params.glwe_dimension.0 * self.params.polynomial_size.0
    }

    /// Bytes of the server's evaluation key (keyswitch + bootstrapping key, uncompressed).
    pub fn evaluation_key_bytes(&self) -> u64 {
        let p = &self.params;
        let (n, k, big_n) = (p.lwe_dimension.0 as u64, p.glwe_dimension.0 as u64, p.polynomial_size.0 as u64);
        let ksk = (k * big_n) * p.ks_level.0 as u64 * (n + 1) * 8;
        let bsk = n * p.pbs_level.0 as u64 * (k + 1) * (k + 1) * big_n * 8;
        ksk + bsk
    }

    /// Bytes of the evaluation key in its seeded form (masks regenerated from a seed): the
    /// bootstrapping key keeps one body polynomial per GLWE row, the keyswitching key one
    /// body per row.
    pub fn compressed_key_bytes(&self) -> u64 {
        let p = &self.params;
        let (n, k, big_n) = (p.lwe_dimension.0 as u64, p.glwe_dimension.0 as u64, p.polynomial_size.0 as u64);
        let ksk = (k * big_n) * p.ks_level.0 as u64 * 8;
        let bsk = n * p.pbs_level.0 as u64 * (k + 1) * big_n * 8;
        ksk + bsk
    }

    /// The keyswitch's share of [`ParameterSet::cost`], milliseconds: what a lookup reading
    /// a small-key value saves.
    pub fn keyswitch_cost(&self) -> f64 {
        let p = &self.params;
        crate::generated::keyswitch_cost(p.lwe_dimension.0, p.glwe_dimension.0, p.polynomial_size.0, p.ks_level.0)
    }

    /// Estimated single-thread time of one lookup (keyswitch + bootstrap) on the reference
    /// machine, seconds ([`crate::generated::lookup_cost`]).
    pub fn bootstrap_seconds(&self) -> f64 {
        self.cost / 1e3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_models_are_consistent() {
        for id in ParameterSetId::all() {
            let set = id.set();
            let noise = set.noise_model();
            assert!(noise.bootstrap_output > 0.0 && noise.fresh > 0.0, "{}", set.name);
            assert!(noise.keyswitch_and_modulus_switch > 0.0, "{}", set.name);
            // Fresh encryptions are far less noisy than a bootstrap's design budget.
            assert!(noise.fresh < 2f64.powi(-2 * set.design_bits() as i32 - 10), "{}", set.name);
        }
    }
}
