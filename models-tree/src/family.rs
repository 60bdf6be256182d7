//! Trees, forests and boosting as a [`ModelFamily`]: the library's registry lists
//! [`TreeFamily`].

use std::any::Any;

use fheml_circuits::{
    FamilyError, FitHooks, FitRequest, FittedModel, ModelCircuit, ModelFamily, Task, TaskKind as Asked, decode_model,
    encode_model,
};
use ndarray::ArrayView2;

use crate::error::TreeError;
use crate::model::TreeModel;
use crate::params::{TaskKind, TreeModelKind, TreeParams};

/// The tree family: `tree`, `forest` and `gbdt`.
pub struct TreeFamily;

impl From<TreeError> for FamilyError {
    fn from(e: TreeError) -> Self {
        FamilyError::model(e)
    }
}

impl From<Asked> for TaskKind {
    fn from(task: Asked) -> Self {
        match task {
            Asked::Classification => TaskKind::Classification,
            Asked::Regression => TaskKind::Regression,
        }
    }
}

impl ModelFamily for TreeFamily {
    fn name(&self) -> &'static str {
        "tree"
    }

    fn model_names(&self) -> Vec<&'static str> {
        TreeModelKind::ALL.iter().map(|k| k.name()).collect()
    }

    fn accepts(&self, model: &str) -> bool {
        TreeModelKind::from_name(model).is_ok()
    }

    fn fit(&self, request: &FitRequest<'_>, _hooks: &mut dyn FitHooks) -> Result<Box<dyn FittedModel>, FamilyError> {
        request.refuse_budget()?;
        let kind = TreeModelKind::from_name(request.model)?;
        let mut params = TreeParams::new(kind, request.task_or_inferred().into());
        if let Some(n) = request.n_bits {
            params = params.set("n_bits", &n.to_string())?;
        }
        for (key, value) in request.settings {
            params = params.set(key, value)?;
        }
        Ok(Box::new(TreeModel::fit(&params.check()?, request.x, request.y)?))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn FittedModel>, FamilyError> {
        Ok(Box::new(decode_model::<TreeModel>(bytes)?))
    }
}

impl FittedModel for TreeModel {
    fn family(&self) -> &'static str {
        "tree"
    }

    fn model_name(&self) -> String {
        self.params().get().kind.name().to_string()
    }

    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FamilyError> {
        Ok(TreeModel::predict(self, x)?.to_vec())
    }

    fn lower(&self, calibration: ArrayView2<f64>) -> Result<ModelCircuit, FamilyError> {
        Ok(self.compile(calibration)?)
    }

    fn task(&self) -> Task {
        TreeModel::task(self).clone()
    }

    fn describe(&self) -> String {
        let e = self.ensemble();
        format!("{}, {} single-output trees of depth {}", self.params().get().kind.name(), e.trees.len(), e.max_depth())
    }

    fn to_bytes(&self) -> Result<Vec<u8>, FamilyError> {
        encode_model(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
