//! Linear models as a [`ModelFamily`]: the library's registry lists [`LinearFamily`].

use std::any::Any;

use fheml_circuits::{
    FamilyError, FitHooks, FitRequest, FittedModel, ModelCircuit, ModelFamily, Task, TaskKind, decode_model,
    encode_model,
};
use ndarray::ArrayView2;

use crate::error::LinearError;
use crate::kind::LinearModelKind;
use crate::model::LinearModel;
use crate::params::LinearParams;

/// The linear family: every [`LinearModelKind`].
pub struct LinearFamily;

impl From<LinearError> for FamilyError {
    fn from(e: LinearError) -> Self {
        FamilyError::model(e)
    }
}

impl ModelFamily for LinearFamily {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn model_names(&self) -> Vec<&'static str> {
        LinearModelKind::NAMES.to_vec()
    }

    fn fit(&self, request: &FitRequest<'_>, _hooks: &mut dyn FitHooks) -> Result<Box<dyn FittedModel>, FamilyError> {
        request.refuse_budget()?;
        let kind = LinearModelKind::from_name(request.model)
            .map_err(|_| FamilyError::Invalid(format!("`{}` is not a linear model", request.model)))?;
        if let Some(task) = request.task
            && (task == TaskKind::Classification) != kind.is_classifier()
        {
            return Err(FamilyError::Invalid(format!("{} does not do {}", kind.name(), task.name())));
        }
        let mut params = LinearParams::new(kind);
        if let Some(n) = request.n_bits {
            params.n_bits = n;
        }
        for (key, value) in request.settings {
            params = params.set(key, value)?;
        }
        Ok(Box::new(LinearModel::fit(params, request.x, request.y)?))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn FittedModel>, FamilyError> {
        Ok(Box::new(decode_model::<LinearModel>(bytes)?))
    }
}

impl FittedModel for LinearModel {
    fn family(&self) -> &'static str {
        "linear"
    }

    fn model_name(&self) -> String {
        self.kind().name().to_string()
    }

    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FamilyError> {
        Ok(LinearModel::predict(self, x)?.to_vec())
    }

    fn lower(&self, calibration: ArrayView2<f64>) -> Result<ModelCircuit, FamilyError> {
        Ok(self.compile(calibration)?)
    }

    fn task(&self) -> Task {
        LinearModel::task(self).clone()
    }

    fn describe(&self) -> String {
        let outputs = self.weights().ncols();
        format!(
            "{}, {} features, {outputs} output{}",
            self.kind().name(),
            self.n_features(),
            if outputs == 1 { "" } else { "s" }
        )
    }

    fn to_bytes(&self) -> Result<Vec<u8>, FamilyError> {
        encode_model(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
