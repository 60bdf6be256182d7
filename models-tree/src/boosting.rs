//! Gradient-boosted trees trained in Rust with `hessboost` (second-order boosting, XGBoost's
//! algorithm and parameter names), exported to XGBoost's JSON format and read back by the
//! same reader as models trained by XGBoost itself.

use fheml_circuits::Task;
use hessboost::objective::Multiclass;
use hessboost::prelude::{DMatrix, ModelFormat, Objective, RegLoss, TrainingParams, TreeMethod, train};
use ndarray::ArrayView2;

use crate::ensemble::TreeEnsemble;
use crate::error::{Result, TreeError};
use crate::params::ValidTreeParams;
use crate::xgboost::ensemble_from_xgboost_json;

fn fail(e: hessboost::prelude::HessboostError) -> TreeError {
    TreeError::Fit(e.to_string())
}

/// Row-major `f32` copy of `x` (hessboost, like XGBoost, trains in single precision).
pub(crate) fn to_f32(x: ArrayView2<f64>) -> Vec<f32> {
    x.rows().into_iter().flat_map(|r| r.iter().map(|v| *v as f32).collect::<Vec<_>>()).collect()
}

/// Trains the booster and returns it as XGBoost JSON text.
pub(crate) fn train_xgboost_json(
    params: &ValidTreeParams,
    x: ArrayView2<f64>,
    y: &[f64],
    n_classes: Option<usize>,
) -> Result<String> {
    let p = params.get();
    let objective = match n_classes {
        None => Objective::SquaredError(RegLoss::default()),
        Some(2) => Objective::BinaryLogistic(RegLoss::default()),
        Some(k) => Objective::Softprob(Multiclass::new(k).map_err(fail)?),
    };
    let labels: Vec<f32> = y.iter().map(|v| *v as f32).collect();
    let data =
        DMatrix::from_dense(&to_f32(x), x.nrows(), x.ncols()).map_err(fail)?.with_labels(&labels).map_err(fail)?;
    let training = TrainingParams::builder()
        .objective(objective)
        .tree_method(TreeMethod::Exact)
        .max_depth(p.max_depth)
        .eta(p.learning_rate)
        .lambda(p.lambda)
        .min_child_weight(p.min_child_weight)
        .seed(p.seed)
        .build()
        .map_err(fail)?;
    let model = train(&training, &data, p.n_estimators).map_err(fail)?;
    let bytes = model.encode(ModelFormat::XgboostJson).map_err(fail)?;
    String::from_utf8(bytes).map_err(|e| TreeError::Fit(format!("hessboost wrote non-UTF-8 JSON: {e}")))
}

/// Trains a boosted ensemble. `y` holds class indices for classifiers (`classes` the labels).
pub(crate) fn fit(
    params: &ValidTreeParams,
    x: ArrayView2<f64>,
    y: &[f64],
    classes: Option<Vec<f64>>,
) -> Result<TreeEnsemble> {
    let json = train_xgboost_json(params, x, y, classes.as_ref().map(Vec::len))?;
    let mut ensemble = ensemble_from_xgboost_json(&json)?;
    if let Some(classes) = classes {
        ensemble.task = Task::Classification { classes };
    }
    ensemble.validate()?;
    Ok(ensemble)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::params::{TaskKind, TreeModelKind, TreeParams};
    use hessboost::prelude::{BoostedModel, Iterations};
    use ndarray::Array2;

    #[test]
    fn our_float_margins_equal_hessboost_predictions() {
        let x = Array2::from_shape_fn((80, 3), |(i, j)| ((i * 7 + j * 13) % 17) as f64 / 3.0 - 2.0);
        let y: Vec<f64> = x.rows().into_iter().map(|r| f64::from(r[0] + 0.5 * r[1] > 0.0)).collect();
        let params = TreeParams::new(TreeModelKind::Gbdt, TaskKind::Classification).n_estimators(5).check().unwrap();
        let json = train_xgboost_json(&params, x.view(), &y, Some(2)).unwrap();
        let ensemble = ensemble_from_xgboost_json(&json).unwrap();
        let model = BoostedModel::decode(json.as_bytes(), ModelFormat::XgboostJson).unwrap();
        let data = DMatrix::from_dense(&to_f32(x.view()), x.nrows(), x.ncols()).unwrap();
        let theirs = model.predict_margin(&data, Iterations::Best).unwrap();
        let ours = ensemble.decision_function(x.view()).unwrap();
        for (i, s) in ours.iter().enumerate() {
            let m = f64::from(*theirs.get(i, 0).unwrap());
            assert!((s[0] - m).abs() < 1e-5, "row {i}: {} vs {m}", s[0]);
        }
    }
}
