//! Float vs quantized (Clear) quality, and bootstraps against Concrete ML.

use fheml_models_tree::{TreeModelKind, predict_clear};

use crate::common::{Data, fitted, metric, split};

fn evaluate(data: Data, kind: TreeModelKind) -> (f64, f64, usize, usize) {
    let s = split(data);
    let f = fitted(data, kind);
    let float = f.model.predict(s.x_test.view()).unwrap().to_vec();
    let clear: Vec<f64> =
        s.x_test.rows().into_iter().map(|r| predict_clear(f.circuit(), &r.to_vec()).unwrap().value).collect();
    let bootstraps = f.circuit().circuit.cost().bootstraps;
    assert_eq!(bootstraps, f.compiled.summary.bootstraps);
    (metric(data, &float, &s.y_test), metric(data, &clear, &s.y_test), bootstraps, f.model.gemm_bootstraps())
}

#[test]
fn quantized_quality_and_bootstraps() {
    println!(
        "| dataset | model | metric | float | quantized (clear) | PBS/sample ours | GEMM form on our model | Concrete ML PBS/sample | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    for data in Data::ALL {
        for kind in TreeModelKind::ALL {
            let (float, quant, ours, gemm) = evaluate(data, kind);
            let cml = data.concrete_ml_pbs(kind);
            let metric_name = if data == Data::Diabetes { "r2" } else { "accuracy" };
            println!(
                "| {} | {} | {metric_name} | {float:.3} | {quant:.3} | {ours} | {gemm} | {cml} | {:.1}x |",
                data.name(),
                kind.name(),
                cml as f64 / ours.max(1) as f64
            );
            if ours * 4 > cml {
                failures.push(format!("{} {}: {ours} bootstraps > {cml}/4", data.name(), kind.name()));
            }
            if data == Data::Diabetes {
                // A single depth-5 regression tree is a poor, high-variance model here:
                // scikit-learn's own scores R² 0.03 on this split's raw features (the CART
                // learner matches it exactly on the same data). It must still beat the mean.
                let floor = if kind == TreeModelKind::Tree { 0.0 } else { 0.1 };
                if quant < floor || quant < float - 0.05 {
                    failures.push(format!("{} {}: R2 {quant:.3} (float {float:.3})", data.name(), kind.name()));
                }
            } else if quant < float - 0.01 {
                failures.push(format!("{} {}: accuracy {quant:.3} vs float {float:.3}", data.name(), kind.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
