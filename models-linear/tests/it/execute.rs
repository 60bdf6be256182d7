//! Execute (real TFHE) predictions equal Clear on every test row, with no bootstrap and no
//! evaluation key.

use fheml_fhe_runtime::{FheConfig, FheModel, Mode};
use fheml_models_linear::{LinearModel, LinearModelKind, LinearParams};

use crate::{breast_cancer, diabetes, iris};

#[test]
fn encrypted_execute_equals_clear_on_every_test_row() {
    let cases = [
        (LinearModelKind::Logistic, breast_cancer()),
        (LinearModelKind::Logistic, iris()),
        (LinearModelKind::LinearSvc, iris()),
        (LinearModelKind::SgdClassifier, breast_cancer()),
        (LinearModelKind::Linear, diabetes()),
        (LinearModelKind::Ridge, diabetes()),
        (LinearModelKind::Lasso, diabetes()),
        (LinearModelKind::ElasticNet, diabetes()),
        (LinearModelKind::LinearSvr, diabetes()),
        (LinearModelKind::SgdRegressor, diabetes()),
        (LinearModelKind::Poisson, diabetes()),
        (LinearModelKind::Gamma, diabetes()),
        (LinearModelKind::Tweedie, diabetes()),
    ];
    for (kind, data) in cases {
        let model = LinearModel::fit(LinearParams::new(kind), data.x_train.view(), data.y_train.view()).unwrap();
        let fhe = FheModel::compile(model.compile(data.x_train.view()).unwrap(), &FheConfig::default()).unwrap();
        fheml_fhe_runtime::testing::use_cached_keys(&fhe);
        let report = fhe.compiled().report();
        assert_eq!(report.bootstraps, 0);
        assert!(!report.needs_evaluation_key);
        let clear = fhe.run_integers(data.x_test.view(), Mode::Clear, 0).unwrap();
        let execute = fhe.run_integers(data.x_test.view(), Mode::Execute, 0).unwrap();
        assert_eq!(clear, execute, "{kind:?}");
        assert_eq!(fhe.decode(&clear).unwrap(), fhe.decode(&execute).unwrap());
    }
}
