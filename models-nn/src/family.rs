//! Networks as a [`ModelFamily`]: the library's registry lists [`NnFamily`]. Trained MLPs
//! fit here; imported ONNX networks are models of this family too.

use std::any::Any;

use fheml_circuits::{
    FamilyError, FitHooks, FitProgress, FitRequest, FittedModel, ModelCircuit, ModelFamily, Task, TaskKind,
    decode_model, encode_model,
};
use ndarray::ArrayView2;

use crate::budget::{BudgetSearch, size_for_budget};
use crate::error::NnError;
use crate::model::NnModel;
use crate::params::{MlpParams, NnTask};

/// The network family: `mlp` (quantization-aware training).
pub struct NnFamily;

impl From<NnError> for FamilyError {
    fn from(e: NnError) -> Self {
        FamilyError::model(e)
    }
}

impl ModelFamily for NnFamily {
    fn name(&self) -> &'static str {
        "nn"
    }

    fn model_names(&self) -> Vec<&'static str> {
        vec!["mlp"]
    }

    fn fit(&self, request: &FitRequest<'_>, hooks: &mut dyn FitHooks) -> Result<Box<dyn FittedModel>, FamilyError> {
        let task = match request.task_or_inferred() {
            TaskKind::Classification => NnTask::Classification,
            TaskKind::Regression => NnTask::Regression,
        };
        let n_bits = request.n_bits.map(|n| n.to_string());
        let settings = n_bits
            .iter()
            .map(|n| ("n_bits", n.as_str()))
            .chain(request.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut params = MlpParams::from_options(task, settings)?;
        if let Some(budget_ms) = request.budget_ms {
            let set = |key: &str| request.settings.iter().any(|(k, _)| k == key);
            let search = BudgetSearch { width: !set("hidden"), bits: !set("w_bits") && !set("a_bits") };
            let mut candidates = 0;
            let choice = size_for_budget(&params, request.x, request.y, budget_ms, search, &mut |circuit| {
                candidates += 1;
                hooks.progress(FitProgress::Priced { candidates });
                hooks.expected_ms(circuit)
            })?;
            let p = choice.params.get();
            let widths = |hidden: &[usize]| hidden.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
            let tried: Vec<String> = choice
                .trials
                .iter()
                .map(|t| match &t.expected_ms {
                    Ok(ms) => format!("{}@{}b {ms:.0} ms", widths(&t.hidden), t.bits.0),
                    Err(_) => format!("{}@{}b does not compile", widths(&t.hidden), t.bits.0),
                })
                .collect();
            hooks.note(&format!(
                "budget {budget_ms} ms: hidden={}, w_bits={}, a_bits={} (expected {:.0} ms per sample; tried {})",
                widths(&p.hidden),
                p.w_bits,
                p.a_bits,
                choice.expected_ms,
                tried.join(", ")
            ));
            params = choice.params;
        }
        let model = params.fit_observed(request.x, request.y, &mut |report| {
            hooks.progress(FitProgress::Epoch { epoch: report.epoch, of: report.epochs, loss: report.loss });
        })?;
        Ok(Box::new(model))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn FittedModel>, FamilyError> {
        Ok(Box::new(decode_model::<NnModel>(bytes)?))
    }
}

impl FittedModel for NnModel {
    fn family(&self) -> &'static str {
        "nn"
    }

    fn model_name(&self) -> String {
        if self.params().is_some() { "mlp" } else { "onnx" }.to_string()
    }

    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FamilyError> {
        Ok(NnModel::predict(self, x)?.to_vec())
    }

    fn lower(&self, _calibration: ArrayView2<f64>) -> Result<ModelCircuit, FamilyError> {
        // Activations were calibrated when the network was trained or imported.
        Ok(self.compile()?)
    }

    fn task(&self) -> Task {
        NnModel::task(self).clone()
    }

    fn describe(&self) -> String {
        format!("{} layers", self.network().layers().len())
    }

    fn to_bytes(&self) -> Result<Vec<u8>, FamilyError> {
        encode_model(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
