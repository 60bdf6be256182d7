//! Real TFHE: Execute gives exactly the Clear outputs for tree, forest and boosted models.

use fheml_fhe_runtime::{FheConfig, FheModel, Mode};
use fheml_models_tree::TreeModelKind;
use ndarray::s;

use crate::common::{Data, fitted, split};

#[test]
fn encrypted_execute_equals_clear_on_breast_cancer() {
    let data = Data::BreastCancer;
    let rows = split(data).x_test.slice(s![..2, ..]).to_owned();
    for kind in [TreeModelKind::Tree, TreeModelKind::Forest, TreeModelKind::Gbdt] {
        let fhe = FheModel::compile(fitted(data, kind).circuit().clone(), &FheConfig::default()).unwrap();
        fheml_fhe_runtime::testing::use_cached_keys(&fhe);
        let clear = fhe.run_integers(rows.view(), Mode::Clear, 0).unwrap();
        let execute = fhe.run_integers(rows.view(), Mode::Execute, 0).unwrap();
        assert_eq!(clear, execute, "{kind:?}");
        assert_eq!(fhe.decode(&clear).unwrap(), fhe.decode(&execute).unwrap());
    }
}
