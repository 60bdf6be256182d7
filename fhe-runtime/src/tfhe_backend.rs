//! Evaluation on real TFHE ciphertexts.
//!
//! Ciphertexts are LWE samples under the large (GLWE-derived) key. Leveled operations are
//! computed directly on the samples modulo 2^64; every table lookup is one keyswitch +
//! programmable bootstrap through tfhe-rs's shortint server key, with an accumulator we
//! build ourselves so that input and output encodings are free (see [`crate::plan`]).
//!
//! Lookups of one value that the plan fuses (many-LUT) share one keyswitch and blind
//! rotation: the accumulator holds the `k` tables one after the other, each over
//! `2^read_bits` boxes of `N / 2^(read_bits + slot_bits)` coefficients; the input is scaled
//! so that its phase stays within the first table's slice, and table `j`'s result is the
//! sample extracted at coefficient `j · 2^read_bits · box` (tfhe-rs's
//! `apply_many_lookup_table`, with our own accumulator and per-table output scales).
//!
//! Inputs that lookups alone read come under the small LWE key ([`crate::plan::small_key_nodes`]):
//! leveled operations keep them there (samples of `n+1` words), and a lookup reading one
//! goes straight to the modulus switch and blind rotation with the server key's bootstrapping
//! key, skipping the keyswitch.

use std::cell::RefCell;

use fheml_circuits::{Backend, Circuit, ElementRef, FusedRounding, SharedReads, Table};
use tfhe::core_crypto::prelude::{
    ComputationBuffers, Fft, GlweCiphertextOwned, LweCiphertextOwned, LweSize, MonomialDegree,
    blind_rotate_assign_mem_optimized, blind_rotate_assign_mem_optimized_requirement,
    extract_lwe_sample_from_glwe_ciphertext,
};
use tfhe::shortint::atomic_pattern::AtomicPatternServerKey;
use tfhe::shortint::ciphertext::{Degree, MaxDegree, NoiseLevel};
use tfhe::shortint::parameters::{AtomicPatternKind, ClassicPBSParameters, PBSOrder};
use tfhe::shortint::server_key::ShortintBootstrappingKey;
use tfhe::shortint::server_key::{LookupTableOwned, ManyLookupTableOwned};
use tfhe::shortint::{Ciphertext, ServerKey};

use crate::error::{FheError, Result};
use crate::plan::{ReadSpec, read_spec_in, read_spec_of};

/// One encrypted element: an LWE sample and the `log2 Δ` of its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct {
    /// The sample.
    pub lwe: LweCiphertextOwned<u64>,
    /// `log2` of the message scale.
    pub delta_log: u32,
}

/// The server-side backend.
pub struct TfheBackend<'a> {
    pub(crate) circuit: &'a Circuit,
    pub(crate) deltas: &'a [Vec<u32>],
    pub(crate) server_key: Option<&'a ServerKey>,
    pub(crate) params: ClassicPBSParameters,
    pub(crate) lwe_size: LweSize,
    /// The lookups evaluated together (from the plan).
    pub(crate) shared: &'a SharedReads,
    /// Per node: whether its value is under the small key (from the plan; empty: none is).
    pub(crate) small_key: &'a [bool],
}

thread_local! {
    /// Scratch memory of the blind rotations run on this thread.
    static BUFFERS: RefCell<ComputationBuffers> = RefCell::new(ComputationBuffers::new());
}

/// Blind rotation of `acc` by a small-key sample: modulus switch (with the server key's
/// noise-reduction configuration) and rotation, as tfhe-rs's bootstrap does after its
/// keyswitch.
pub(crate) fn rotate_small(
    server_key: &ServerKey,
    lwe: &LweCiphertextOwned<u64>,
    acc: &mut GlweCiphertextOwned<u64>,
) -> Result<()> {
    let AtomicPatternServerKey::Standard(standard) = &server_key.atomic_pattern else {
        return Err(FheError::BadKey("small-key inputs need a standard (keyswitch-bootstrap) server key".into()));
    };
    let ShortintBootstrappingKey::Classic { bsk, modulus_switch_noise_reduction_key } = &standard.bootstrapping_key
    else {
        return Err(FheError::BadKey("small-key inputs need a classic bootstrapping key".into()));
    };
    if lwe.lwe_size() != bsk.input_lwe_dimension().to_lwe_size() {
        return Err(FheError::BadCiphertexts(format!(
            "a small-key sample of LWE size {}; the bootstrapping key reads size {}",
            lwe.lwe_size().0,
            bsk.input_lwe_dimension().to_lwe_size().0
        )));
    }
    let log_modulus = bsk.polynomial_size().to_blind_rotation_input_modulus_log();
    let switched = modulus_switch_noise_reduction_key.lwe_ciphertext_modulus_switch::<usize, _>(lwe, log_modulus);
    let fft = Fft::new(bsk.polynomial_size());
    let fft = fft.as_view();
    BUFFERS.with(|buffers| {
        let mut buffers = buffers.borrow_mut();
        buffers.resize(
            blind_rotate_assign_mem_optimized_requirement::<u64>(acc.glwe_size(), acc.polynomial_size(), fft)
                .unaligned_bytes_required(),
        );
        blind_rotate_assign_mem_optimized(&switched, acc, bsk, fft, buffers.stack());
    });
    Ok(())
}

impl TfheBackend<'_> {
    fn delta(&self, out: ElementRef) -> u32 {
        self.deltas[out.node.0][out.index]
    }

    /// Builds the accumulator for the tables of `slots` (output scale `2^out_delta`, function
    /// of the box index) over `2^read_bits` centred boxes each; with more than one slot the
    /// blind rotation resolves `spec.slot_bits` more bits and table `j` starts at box
    /// `j · 2^read_bits`.
    fn accumulator(&self, spec: &ReadSpec, slots: &[(u32, &dyn Fn(i64) -> i64)]) -> GlweCiphertextOwned<u64> {
        let p = &self.params;
        let n = p.polynomial_size.0;
        let mut acc =
            GlweCiphertextOwned::new(0u64, p.glwe_dimension.to_glwe_size(), p.polynomial_size, p.ciphertext_modulus);
        let boxes = 1usize << spec.read_bits;
        let box_size = n >> spec.resolved_bits();
        {
            let mut body = acc.get_mut_body();
            let coefficients = body.as_mut();
            for (j, (out_delta, f)) in slots.iter().enumerate() {
                for i in 0..boxes {
                    let value = (f(i as i64) as u64).wrapping_shl(*out_delta);
                    let start = (j * boxes + i) * box_size;
                    coefficients[start..start + box_size].fill(value);
                }
            }
            // Centre box 0 on zero: the negacyclic wrap turns the first half box into the
            // end of the polynomial, negated.
            let half = box_size / 2;
            for c in &mut coefficients[..half] {
                *c = c.wrapping_neg();
            }
            coefficients.rotate_left(half);
        }
        acc
    }

    /// `x` rescaled to the sink's `Δ` and offset, as a shortint ciphertext ready to bootstrap.
    fn sink(&self, x: &Ct, spec: &ReadSpec, out: ElementRef) -> Result<Ciphertext> {
        let sink_delta = spec.delta_log();
        let shift = sink_delta.checked_sub(x.delta_log).ok_or_else(|| {
            FheError::BadCiphertexts(format!("encoding of the input of node {} is finer than planned", out.node))
        })?;
        let factor = 1u64.wrapping_shl(shift);
        let mut lwe = x.lwe.clone();
        for c in lwe.as_mut() {
            *c = c.wrapping_mul(factor);
        }
        let body = lwe.get_mut_body();
        *body.data = body.data.wrapping_sub((spec.offset as u64).wrapping_shl(sink_delta));
        if spec.width > spec.read_bits && sink_delta > 0 {
            // An approximate rounding: half a unit of the read value moves every integer off
            // the box edges (which fall on integers), so only noise can cross an edge and the
            // noise-free read is exactly the clear rounding (half up).
            *body.data = body.data.wrapping_add(1u64 << (sink_delta - 1));
        }
        let p = &self.params;
        Ok(Ciphertext::new(
            lwe,
            Degree::new(0),
            NoiseLevel::NOMINAL,
            p.message_modulus,
            p.carry_modulus,
            AtomicPatternKind::Standard(PBSOrder::KeyswitchBootstrap),
        ))
    }

    fn spec(&self, out: ElementRef) -> Result<ReadSpec> {
        read_spec_in(self.circuit, self.shared, out.node, out.index)
            .ok_or_else(|| FheError::BadCiphertexts(format!("node {} is not a bootstrap", out.node)))
    }

    fn bootstrap(&self, x: &Ct, out: ElementRef, f: impl Fn(i64) -> i64) -> Result<Ct> {
        let server_key = self.server_key.ok_or(FheError::MissingEvaluationKey)?;
        let spec = self.spec(out)?;
        let mut ct = self.sink(x, &spec, out)?;
        let out_delta = self.delta(out);
        let mut acc = self.accumulator(&spec, &[(out_delta, &f)]);
        if self.is_small(x) {
            rotate_small(server_key, &ct.ct, &mut acc)?;
            let mut lwe = LweCiphertextOwned::new(0u64, self.lwe_size, self.params.ciphertext_modulus);
            extract_lwe_sample_from_glwe_ciphertext(&acc, &mut lwe, MonomialDegree(0));
            return Ok(Ct { lwe, delta_log: out_delta });
        }
        server_key.apply_lookup_table_assign(&mut ct, &LookupTableOwned { acc, degree: Degree::new(0) });
        Ok(Ct { lwe: ct.ct, delta_log: out_delta })
    }

    /// Whether `x` is a sample under the small key (shorter than the large key's).
    fn is_small(&self, x: &Ct) -> bool {
        x.lwe.lwe_size() != self.lwe_size
    }
}

impl Backend for TfheBackend<'_> {
    type Value = Ct;
    type Error = FheError;

    fn linear(&self, terms: &[(i64, &Ct)], constant: i64, out: ElementRef) -> Result<Ct> {
        let delta = self.delta(out);
        // Under the key the plan gives the node (its operands' key; an element without terms,
        // a constant, takes it too).
        let size = if self.small_key.get(out.node.0).copied().unwrap_or(false) {
            self.params.lwe_dimension.to_lwe_size()
        } else {
            self.lwe_size
        };
        let mut acc = LweCiphertextOwned::new(0u64, size, self.params.ciphertext_modulus);
        for (weight, ct) in terms {
            if ct.lwe.lwe_size() != size {
                return Err(FheError::BadCiphertexts(format!(
                    "node {} sums samples under two different keys",
                    out.node
                )));
            }
            let shift = delta.checked_sub(ct.delta_log).ok_or_else(|| {
                FheError::BadCiphertexts(format!("operand of node {} is encoded finer than planned", out.node))
            })?;
            let factor = (*weight as u64).wrapping_shl(shift);
            for (a, c) in acc.as_mut().iter_mut().zip(ct.lwe.as_ref()) {
                *a = a.wrapping_add(c.wrapping_mul(factor));
            }
        }
        let body = acc.get_mut_body();
        *body.data = body.data.wrapping_add((constant as u64).wrapping_shl(delta));
        Ok(Ct { lwe: acc, delta_log: delta })
    }

    fn lookup(&self, x: &Ct, table: &Table, rounding: Option<FusedRounding>, out: ElementRef) -> Result<Ct> {
        let _ = rounding; // The read spec derived from the circuit carries the rounding.
        let spec = read_spec_of(self.circuit, out.node, out.index);
        self.bootstrap(x, out, |i| spec.and_then(|s| table.get(s.table_index(i))).unwrap_or(0))
    }

    fn shared_reads(&self) -> Option<&SharedReads> {
        Some(self.shared)
    }

    fn many_lookup(
        &self,
        x: &Ct,
        tables: &[&Table],
        _rounding: Option<FusedRounding>,
        outs: &[ElementRef],
    ) -> Result<Vec<Ct>> {
        let server_key = self.server_key.ok_or(FheError::MissingEvaluationKey)?;
        let leader = *outs.first().ok_or_else(|| FheError::BadCiphertexts("empty many-LUT group".into()))?;
        let spec = self.spec(leader)?;
        if tables.len() != outs.len() || tables.len() > 1usize << spec.slot_bits {
            return Err(FheError::BadCiphertexts(format!(
                "many-LUT group at node {} does not fit its read",
                leader.node
            )));
        }
        let ct = self.sink(x, &spec, leader)?;
        let functions: Vec<Box<dyn Fn(i64) -> i64 + '_>> = tables
            .iter()
            .map(|t| Box::new(move |i| t.get(spec.table_index(i)).unwrap_or(0)) as Box<dyn Fn(i64) -> i64>)
            .collect();
        let slots: Vec<(u32, &dyn Fn(i64) -> i64)> =
            outs.iter().zip(&functions).map(|(out, f)| (self.delta(*out), f.as_ref())).collect();
        let mut acc = self.accumulator(&spec, &slots);
        let box_size = self.params.polynomial_size.0 >> spec.resolved_bits();
        if self.is_small(x) {
            rotate_small(server_key, &ct.ct, &mut acc)?;
            let stride = box_size << spec.read_bits;
            return Ok(outs
                .iter()
                .enumerate()
                .map(|(j, out)| {
                    let mut lwe = LweCiphertextOwned::new(0u64, self.lwe_size, self.params.ciphertext_modulus);
                    extract_lwe_sample_from_glwe_ciphertext(&acc, &mut lwe, MonomialDegree(j * stride));
                    Ct { lwe, delta_log: self.delta(*out) }
                })
                .collect());
        }
        let lut = ManyLookupTableOwned {
            acc,
            input_max_degree: MaxDegree::new(0),
            sample_extraction_stride: box_size << spec.read_bits,
            per_function_output_degree: vec![Degree::new(0); outs.len()],
        };
        let results = server_key.apply_many_lookup_table(&ct, &lut);
        Ok(results.into_iter().zip(outs).map(|(ct, out)| Ct { lwe: ct.ct, delta_log: self.delta(*out) }).collect())
    }

    fn round(&self, x: &Ct, _rounding: FusedRounding, out: ElementRef) -> Result<Ct> {
        let spec = read_spec_of(self.circuit, out.node, out.index);
        self.bootstrap(x, out, |i| spec.map_or(0, |s| s.table_index(i)))
    }

    fn parallel_elements(&self) -> bool {
        true
    }
}
