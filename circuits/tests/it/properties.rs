//! Properties over random circuits and inputs.

use fheml_circuits::testing::{RandomCircuitConfig, random_circuit};
use fheml_circuits::{CircuitBuilder, Interval, evaluate_all_nodes};
use fheml_quant::{QuantizedLinear, QuantizerConfig, UniformQuantizer};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Static range analysis contains every value the clear evaluator produces.
    #[test]
    fn range_analysis_contains_every_value(seed in any::<u64>(), input_seed in any::<u64>()) {
        let (circuit, sample) = random_circuit(seed, RandomCircuitConfig::default());
        let inputs = sample(input_seed);
        let values = evaluate_all_nodes(&circuit, &inputs).unwrap();
        for (node, vals) in circuit.nodes().iter().zip(&values) {
            prop_assert_eq!(node.len(), vals.len());
            for (v, r) in vals.iter().zip(&node.ranges) {
                prop_assert!(r.contains(*v), "{} outside [{}, {}] in {:?}", v, r.lo, r.hi, node.op.name());
            }
        }
    }

    /// A quantized linear layer lowered to the IR evaluates to the quant crate's integer reference.
    #[test]
    fn lowered_linear_layer_matches_integer_reference(
        k in 1usize..6,
        m in 1usize..4,
        n_bits in 2u8..9,
        seed in any::<u64>(),
    ) {
        let mut rng = fheml_circuits::testing::SplitMix::new(seed);
        let mut unit = || (rng.next_u64() % 2001) as f64 / 1000.0 - 1.0;
        let weights = Array2::from_shape_fn((k, m), |_| unit());
        let bias = Array1::from_shape_fn(m, |_| unit());
        let xs = Array2::from_shape_fn((8, k), |_| 3.0 * unit());
        let x_config = QuantizerConfig::params().n_bits(n_bits).check().unwrap();
        let x_quant = UniformQuantizer::calibrate(&x_config, xs.iter().copied()).unwrap();
        let w_config = QuantizerConfig::params().n_bits(n_bits).signed(true).symmetric(true).check().unwrap();
        let layer = QuantizedLinear::from_float(weights.view(), bias.view(), &w_config).unwrap();
        let q_x = x_quant.quantize(&xs).unwrap().values;
        let reference = layer.integer_accumulate(q_x.view(), x_quant.zero_point()).unwrap();

        // Lowering: (q - z)·W = q·W - z·ΣW, the zero-point correction as a constant.
        let mut b = CircuitBuilder::new();
        let x = b.input(&[k], Interval::new(x_quant.qmin(), x_quant.qmax()).unwrap());
        let acc = b.matmul(x, layer.weights.clone()).unwrap();
        let correction: Vec<i64> = (0..m).map(|j| -x_quant.zero_point() * layer.weights.column(j).sum()).collect();
        let y = b.add_const(acc, ArrayD::from_shape_vec(IxDyn(&[m]), correction).unwrap()).unwrap();
        b.output(y).unwrap();
        let circuit = b.build().unwrap();
        for (row, expected) in q_x.rows().into_iter().zip(reference.rows()) {
            let got = circuit.evaluate_clear(&[row.to_vec()]).unwrap();
            prop_assert_eq!(&got[0], &expected.to_vec());
        }
    }
}
