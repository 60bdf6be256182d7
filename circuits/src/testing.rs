//! Random circuits for property tests (here and in the runtime).

use ndarray::{Array2, ArrayD, IxDyn};

use crate::builder::CircuitBuilder;
use crate::ir::{Circuit, Lut, NodeId, Table};
use crate::range::Interval;

/// A small deterministic generator (SplitMix64), so that a proptest seed reproduces a circuit.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }
}

/// Shape of random circuits.
#[derive(Debug, Clone, Copy)]
pub struct RandomCircuitConfig {
    /// Operations after the input.
    pub max_ops: usize,
    /// Largest |weight| in matrix products and constant multiplications.
    pub max_weight: i64,
    /// Lookups are only inserted on values of at most this many bits (span).
    pub max_lookup_bits: u32,
    /// Whether lookups may appear at all.
    pub lookups: bool,
}

impl Default for RandomCircuitConfig {
    fn default() -> Self {
        Self { max_ops: 5, max_weight: 3, max_lookup_bits: 8, lookups: true }
    }
}

/// A random valid circuit with one input and one or two outputs, and a matching random
/// input sampler.
pub fn random_circuit(seed: u64, config: RandomCircuitConfig) -> (Circuit, impl Fn(u64) -> Vec<Vec<i64>>) {
    let mut rng = SplitMix::new(seed);
    let mut b = CircuitBuilder::new();
    let n = rng.range(1, 4) as usize;
    let lo = rng.range(-4, 2);
    let bits = rng.range(1, 3);
    let range = Interval { lo, hi: lo + (1 << bits) - 1 };
    let x = b.input(&[n], range);
    let mut cur = x;
    let mut shape = vec![n];
    let mut extra_output: Option<NodeId> = None;
    for _ in 0..rng.range(1, config.max_ops as i64) {
        let op = rng.range(0, 7);
        let cur_range = b_range(&b, cur);
        let next = match op {
            0 => {
                let m = rng.range(1, 3) as usize;
                let k = shape[shape.len() - 1];
                let w = Array2::from_shape_fn((k, m), |_| rng.range(-config.max_weight, config.max_weight));
                *shape.last_mut().unwrap_or(&mut 0) = m;
                b.matmul(cur, w)
            }
            1 => b.add_const(cur, ArrayD::from_elem(IxDyn(&[]), rng.range(-5, 5))),
            2 => b.mul_const(cur, ArrayD::from_elem(IxDyn(&[]), rng.range(-config.max_weight, config.max_weight))),
            3 if config.lookups && cur_range.span_bits().0 <= config.max_lookup_bits => {
                let width = cur_range.span_bits().0;
                let values: Vec<i64> = (0..1i64 << width).map(|_| rng.range(-7, 7)).collect();
                b.lookup(cur, Lut::Single(Table { input_min: cur_range.lo, values }))
            }
            4 => {
                // Mix the tensor with a permutation of itself (shared noise sources).
                let len: usize = shape.iter().product();
                let indices: Vec<usize> = (0..len).map(|i| (i + 1) % len).collect();
                let shifted = b.gather(cur, indices, &shape.clone());
                match shifted {
                    Ok(s) if rng.range(0, 1) == 0 => b.add(cur, s),
                    Ok(s) => b.sub(cur, s),
                    Err(e) => Err(e),
                }
            }
            7 if config.lookups && cur_range.span_bits().0 <= config.max_lookup_bits => {
                // Two or three lookups of the same value (a shared read: one many-LUT
                // bootstrap per element), joined by a sum or a concatenation.
                let width = cur_range.span_bits().0;
                let channels = shape[shape.len() - 1];
                let mut table = || Table {
                    input_min: cur_range.lo,
                    values: (0..1i64 << width).map(|_| rng.range(-7, 7)).collect(),
                };
                let luts: Vec<Lut> = vec![
                    Lut::Single(table()),
                    Lut::PerChannel((0..channels).map(|_| table()).collect()),
                    Lut::Single(table()),
                ];
                let count = rng.range(2, 3) as usize;
                let sum = rng.range(0, 1) == 0;
                let looked_up: Result<Vec<NodeId>, _> =
                    luts.into_iter().take(count).map(|l| b.lookup(cur, l)).collect();
                match looked_up {
                    Ok(ids) if sum => ids.iter().skip(1).try_fold(ids[0], |acc, id| b.add(acc, *id)),
                    Ok(ids) => {
                        if let Some(last) = shape.last_mut() {
                            *last *= ids.len();
                        }
                        b.concat(&ids, shape.len() - 1)
                    }
                    Err(e) => Err(e),
                }
            }
            5 => {
                extra_output.get_or_insert(cur);
                let joined = b.concat(&[cur, cur], shape.len() - 1);
                if let Some(last) = shape.last_mut() {
                    *last *= 2;
                }
                joined
            }
            _ => {
                let summed = b.sum(cur, 0);
                shape = vec![1];
                summed.and_then(|s| b.reshape(s, &[1]))
            }
        };
        match next {
            Ok(id) => cur = id,
            Err(_) => break,
        }
    }
    let _ = b.output(cur);
    if let Some(extra) = extra_output {
        let _ = b.output(extra);
    }
    let circuit = b.build().unwrap_or_else(|_| fallback_circuit());
    let input_range = circuit.node(circuit.inputs()[0]).ranges.clone();
    let sampler = move |s: u64| {
        let mut r = SplitMix::new(s);
        vec![input_range.iter().map(|i| r.range(i.lo, i.hi)).collect()]
    };
    (circuit, sampler)
}

fn b_range(b: &CircuitBuilder, id: NodeId) -> Interval {
    b.node_range(id)
}

fn fallback_circuit() -> Circuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[1], Interval::point(0));
    let _ = b.output(x);
    // A one-node circuit with an output always builds.
    b.build().unwrap_or_else(|_| Circuit { nodes: vec![], inputs: vec![], outputs: vec![], output_kinds: vec![] })
}
