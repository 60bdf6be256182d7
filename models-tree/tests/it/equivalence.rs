//! The integer model decides exactly as the float model on dequantized inputs, and the
//! circuit computes exactly the integer model.

use fheml_models_tree::{
    QuantizedEnsemble, TaskKind, TreeEnsemble, TreeModel, TreeModelKind, TreeParams, predict_clear,
};
use ndarray::{Array2, ArrayView2};
use proptest::prelude::*;

use crate::common::{Data, fitted, split};

fn check_decisions(ensemble: &TreeEnsemble, quantized: &QuantizedEnsemble, x: ArrayView2<f64>) {
    for q in quantized.quantize_rows(x).unwrap() {
        let d = quantized.dequantize_row(&q);
        for t in 0..ensemble.trees.len() {
            let float = ensemble.leaf_index(t, &d);
            assert!(float.is_some());
            assert_eq!(float, quantized.leaf_index(t, &q), "tree {t}, q {q:?}");
        }
    }
}

#[test]
fn integer_decisions_equal_float_decisions_on_dequantized_inputs() {
    for data in Data::ALL {
        for kind in TreeModelKind::ALL {
            let s = split(data);
            let f = fitted(data, kind);
            check_decisions(f.model.ensemble(), &f.compiled.quantized, s.x_test.view());
            check_decisions(f.model.ensemble(), &f.compiled.quantized, s.x_train.view());
        }
    }
}

/// The ranges the lowering declares (one leaf per tree contributes) hold every value the
/// circuit computes on the training and test rows.
#[test]
fn narrowed_output_ranges_hold_every_observed_value() {
    for data in Data::ALL {
        for kind in TreeModelKind::ALL {
            let s = split(data);
            let circuit = &fitted(data, kind).circuit().circuit;
            let rows: Vec<Vec<Vec<i64>>> = s
                .x_train
                .rows()
                .into_iter()
                .chain(s.x_test.rows())
                .map(|r| fitted(data, kind).circuit().encode(&r.to_vec()).unwrap())
                .collect();
            let observed = fheml_circuits::observed_ranges(circuit, &rows).unwrap();
            for (node, seen) in circuit.nodes().iter().zip(&observed) {
                for (declared, seen) in node.ranges.iter().zip(seen) {
                    assert!(
                        declared.lo <= seen.lo && seen.hi <= declared.hi,
                        "{} {}: {seen:?} outside {declared:?}",
                        data.name(),
                        kind.name()
                    );
                }
            }
        }
    }
}

#[test]
fn the_circuit_computes_the_integer_model_exactly() {
    for data in Data::ALL {
        for kind in TreeModelKind::ALL {
            let s = split(data);
            let f = fitted(data, kind);
            let q = &f.compiled.quantized;
            let float_q = q.predict_detailed(s.x_test.view()).unwrap();
            for (row, want) in s.x_test.rows().into_iter().zip(&float_q) {
                let row = row.to_vec();
                let (ints, _) = q.quantizer.quantize_row(&row).unwrap();
                let outputs = crate::common::summed_outputs(
                    f.circuit(),
                    f.circuit().circuit.evaluate_clear(&f.circuit().encode(&row).unwrap()).unwrap(),
                );
                assert_eq!(outputs, vec![q.integer_scores(&ints).unwrap()], "{} {}", data.name(), kind.name());
                let got = predict_clear(f.circuit(), &row).unwrap();
                // Per-tree scores are summed by the client, in another order than the model's.
                assert!((got.value - want.value).abs() <= 1e-9 * want.value.abs().max(1.0));
                for (a, b) in got.scores.iter().zip(&want.scores) {
                    assert!((a - b).abs() < 1e-9);
                }
            }
        }
    }
}

#[test]
fn per_tree_outputs_summed_on_the_client_agree() {
    let s = split(Data::Iris);
    let summed = fitted(Data::Iris, TreeModelKind::Gbdt);
    let per_tree = summed.model.clone().with_options(6, None, false).unwrap().compile(s.x_train.view()).unwrap();
    let n_trees = summed.model.ensemble().trees.len();
    let out = per_tree.circuit.outputs()[0];
    assert_eq!(per_tree.circuit.node(out).shape, vec![n_trees, 3]);
    assert_eq!(per_tree.circuit.cost().bootstraps, summed.circuit().circuit.cost().bootstraps);
    for row in s.x_test.rows() {
        let row = row.to_vec();
        let a = predict_clear(summed.circuit(), &row).unwrap();
        let outputs = per_tree.circuit.evaluate_clear(&per_tree.encode(&row).unwrap()).unwrap();
        let b = per_tree.decode(&outputs).unwrap();
        assert_eq!(a.value, b.value);
        for (x, y) in a.scores.iter().zip(&b.scores) {
            assert!((x - y).abs() < 1e-9, "{x} vs {y}");
        }
    }
}

#[test]
fn smartcore_models_import_with_identical_predictions() {
    use smartcore::ensemble::random_forest_classifier::{RandomForestClassifier, RandomForestClassifierParameters};
    use smartcore::ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters};
    use smartcore::linalg::basic::matrix::DenseMatrix;

    let dense =
        |x: &Array2<f64>| DenseMatrix::from_2d_vec(&x.rows().into_iter().map(|r| r.to_vec()).collect()).unwrap();
    let s = split(Data::BreastCancer);
    let y: Vec<u32> = s.y_train.iter().map(|v| *v as u32).collect();
    let rf = RandomForestClassifier::fit(
        &dense(&s.x_train),
        &y,
        RandomForestClassifierParameters::default().with_n_trees(15).with_max_depth(4),
    )
    .unwrap();
    let theirs = rf.predict(&dense(&s.x_test)).unwrap();
    let ours = TreeModel::from_smartcore(TreeModelKind::Forest, TaskKind::Classification, &rf).unwrap();
    let preds = ours.predict(s.x_test.view()).unwrap();
    for (a, b) in preds.iter().zip(&theirs) {
        assert_eq!(*a, f64::from(*b));
    }

    let s = split(Data::Diabetes);
    let rf = RandomForestRegressor::fit(
        &dense(&s.x_train),
        &s.y_train.to_vec(),
        RandomForestRegressorParameters::default().with_n_trees(7).with_max_depth(4),
    )
    .unwrap();
    let theirs = rf.predict(&dense(&s.x_test)).unwrap();
    let ours = TreeModel::from_smartcore(TreeModelKind::Forest, TaskKind::Regression, &rf).unwrap();
    for (a, b) in ours.predict(s.x_test.view()).unwrap().iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{a} vs {b}");
    }
}

/// A small model whose thresholds fall between, on and outside the quantization grid.
fn small_models() -> Vec<(TreeModel, Array2<f64>)> {
    let x = Array2::from_shape_fn((120, 3), |(i, j)| ((i * 37 + j * 11) % 23) as f64 * 0.37 - 2.0 + j as f64);
    let y_class: ndarray::Array1<f64> = x.rows().into_iter().map(|r| f64::from(r[0] * r[1] > r[2])).collect();
    let y_reg: ndarray::Array1<f64> = x.rows().into_iter().map(|r| r[0] * 2.0 - r[1] * r[2]).collect();
    let mut out = Vec::new();
    for kind in TreeModelKind::ALL {
        for (task, y) in [(TaskKind::Classification, &y_class), (TaskKind::Regression, &y_reg)] {
            let params =
                TreeParams::new(kind, task).n_bits(3).n_estimators(if kind == TreeModelKind::Tree { 1 } else { 4 });
            out.push((params.check().unwrap().fit(x.view(), y.view()).unwrap(), x.clone()));
        }
    }
    out
}

fn models() -> &'static Vec<(TreeModel, QuantizedEnsemble, fheml_circuits::ModelCircuit)> {
    static M: std::sync::OnceLock<Vec<(TreeModel, QuantizedEnsemble, fheml_circuits::ModelCircuit)>> =
        std::sync::OnceLock::new();
    M.get_or_init(|| {
        small_models()
            .into_iter()
            .map(|(m, x)| {
                let c = m.compile_detailed(x.view()).unwrap();
                (m, c.quantized, c.circuit)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random rows, inside and outside the calibrated range (clipped): the integer model
    /// decides as the float model on the dequantized row, and the circuit agrees with it.
    #[test]
    fn random_rows_decide_identically(row in proptest::collection::vec(-6.0f64..8.0, 3)) {
        for (model, quantized, circuit) in models() {
            let x = Array2::from_shape_vec((1, 3), row.clone()).unwrap();
            check_decisions(model.ensemble(), quantized, x.view());
            let (q, _) = quantized.quantizer.quantize_row(&row).unwrap();
            let outputs = crate::common::summed_outputs(
                circuit,
                circuit.circuit.evaluate_clear(&circuit.encode(&row).unwrap()).unwrap(),
            );
            prop_assert_eq!(&outputs, &vec![quantized.integer_scores(&q).unwrap()]);
        }
    }
}
