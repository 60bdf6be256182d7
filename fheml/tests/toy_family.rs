//! A model family from outside the workspace, added through the public trait alone: a
//! decision stump on one feature. It trains, compiles, runs in Simulate and round-trips
//! through the model file with no change to the library, the command or xtask.

#![allow(clippy::unwrap_used)]

use std::any::Any;
use std::path::Path;

use fheml::prelude::*;
use fheml_circuits::{
    CircuitBuilder, FamilyError, FitRequest, InputEncoding, InputSpec, Interval, Lut, ModelCircuit, NoHooks,
    OutputSpec, PostProcessing, Table as LookupTable, decode_model, encode_model,
};
use fheml_quant::{PerFeatureQuantizer, QuantizerConfig};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Predicts `classes[1]` when feature `feature` exceeds `threshold`.
#[derive(Serialize, Deserialize)]
struct Stump {
    feature: usize,
    n_features: usize,
    threshold: f64,
    classes: [f64; 2],
}

struct StumpFamily;

impl ModelFamily for StumpFamily {
    fn name(&self) -> &'static str {
        "stump"
    }

    fn model_names(&self) -> Vec<&'static str> {
        vec!["stump"]
    }

    fn fit(&self, request: &FitRequest<'_>, _hooks: &mut dyn FitHooks) -> Result<Box<dyn FittedModel>, FamilyError> {
        request.refuse_budget()?;
        let mut feature = 0;
        for (key, value) in request.settings {
            match key.as_str() {
                "feature" => {
                    feature = value.parse().map_err(|_| FamilyError::Invalid(format!("feature: `{value}`")))?;
                }
                other => return Err(FamilyError::Invalid(format!("unknown option `{other}` for stump"))),
            }
        }
        if feature >= request.x.ncols() {
            return Err(FamilyError::Invalid(format!("feature {feature} of {}", request.x.ncols())));
        }
        let mut classes: Vec<f64> = request.y.to_vec();
        classes.sort_by(f64::total_cmp);
        classes.dedup();
        let [low, high] = classes[..] else {
            return Err(FamilyError::Invalid(format!("a stump needs two classes, not {}", classes.len())));
        };
        let mean = |class: f64| {
            let values: Vec<f64> = request
                .x
                .column(feature)
                .iter()
                .zip(request.y)
                .filter(|(_, y)| **y == class)
                .map(|(x, _)| *x)
                .collect();
            values.iter().sum::<f64>() / values.len() as f64
        };
        let (m_low, m_high) = (mean(low), mean(high));
        let classes = if m_high > m_low { [low, high] } else { [high, low] };
        Ok(Box::new(Stump { feature, n_features: request.x.ncols(), threshold: (m_low + m_high) / 2.0, classes }))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Box<dyn FittedModel>, FamilyError> {
        Ok(Box::new(decode_model::<Stump>(bytes)?))
    }
}

impl FittedModel for Stump {
    fn family(&self) -> &'static str {
        "stump"
    }

    fn model_name(&self) -> String {
        "stump".into()
    }

    fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, FamilyError> {
        Ok(x.rows().into_iter().map(|r| self.classes[usize::from(r[self.feature] > self.threshold)]).collect())
    }

    fn lower(&self, calibration: ArrayView2<f64>) -> Result<ModelCircuit, FamilyError> {
        let config = QuantizerConfig::params().n_bits(4).check().map_err(FamilyError::model)?;
        let quantizer = PerFeatureQuantizer::calibrate(&config, calibration).map_err(FamilyError::model)?;
        let q = quantizer.quantizers()[self.feature];
        let (lo, hi) = (q.qmin(), q.qmax());
        // The largest integer whose value is at most the threshold.
        let at_most = (lo..=hi).filter(|v| q.dequantize_value(*v) <= self.threshold).max().unwrap_or(lo - 1);
        let mut b = CircuitBuilder::new();
        let x = b.input(
            &[self.n_features],
            Interval::new(lo, hi).ok_or_else(|| FamilyError::Invalid("empty range".into()))?,
        );
        let mut pick = Array2::zeros((self.n_features, 1));
        pick[[self.feature, 0]] = 1;
        let value = b.matmul(x, pick).map_err(FamilyError::model)?;
        let above = LookupTable::from_fn(lo, 4, |v| i64::from(v > at_most));
        let y = b.lookup(value, Lut::Single(above)).map_err(FamilyError::model)?;
        b.output(y).map_err(FamilyError::model)?;
        Ok(ModelCircuit {
            circuit: b.build().map_err(FamilyError::model)?,
            inputs: vec![InputSpec { quantizer, encoding: InputEncoding::Quantized }],
            outputs: vec![OutputSpec::affine(1.0, -0.5)],
            post: PostProcessing::Sign,
            task: self.task(),
        })
    }

    fn task(&self) -> Task {
        Task::Classification { classes: self.classes.to_vec() }
    }

    fn describe(&self) -> String {
        format!("stump on feature {}", self.feature)
    }

    fn to_bytes(&self) -> Result<Vec<u8>, FamilyError> {
        encode_model(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[test]
fn a_family_added_through_the_trait_trains_compiles_and_simulates() {
    let registry = Registry::with(StumpFamily).unwrap();
    assert!(registry.model_names().contains(&"stump") && registry.model_names().contains(&"logistic"));
    assert!(Registry::with(StumpFamily).is_ok(), "a registry is a value: adding twice to the builtin is fine");

    let (train, test) = fheml::data::embedded("breast_cancer").unwrap();
    let settings = [("feature".to_string(), "0".to_string())];
    let options = TrainOptions::defaults("stump", &settings);
    // The built-in registry does not know the family.
    let unknown = fheml::train(&train, &options).err().unwrap().to_string();
    assert!(unknown.contains("unknown model `stump`"), "{unknown}");
    let model = fheml::train_with_registry(&registry, &train, &options, &mut NoHooks).unwrap();
    assert_eq!((model.name.as_str(), model.float.family()), ("stump", "stump"));
    assert_eq!(model.fhe.compiled().report().bootstraps, 1);

    let truth = test.y.as_ref().unwrap();
    let float = model.float.predict(test.x.view()).unwrap();
    let accuracy = float.iter().zip(truth).filter(|(p, y)| p == y).count() as f64 / truth.len() as f64;
    assert!(accuracy > 0.8, "a stump on the mean radius: {accuracy}");
    let clear: Vec<f64> = model.fhe.predict(test.x.view(), Mode::Clear).unwrap().iter().map(|p| p.value).collect();
    let simulated: Vec<f64> =
        model.fhe.predict(test.x.view(), Mode::Simulate).unwrap().iter().map(|p| p.value).collect();
    assert_eq!(simulated, clear);
    let agree = clear.iter().zip(&float).filter(|(c, f)| c == f).count();
    assert!(agree as f64 >= 0.95 * float.len() as f64, "4-bit inputs keep the stump: {agree}/{}", float.len());

    // The model file names the family; only a registry that knows it reads the file back.
    let bytes = model.to_bytes().unwrap();
    let path = Path::new("stump.fheml");
    let loaded = fheml::SavedModel::from_file_bytes_with(&registry, path, &bytes).unwrap();
    assert_eq!(loaded.float.predict(test.x.view()).unwrap(), float);
    let unknown = fheml::SavedModel::from_file_bytes(path, &bytes).err().unwrap().to_string();

    assert!(unknown.contains("`stump` family"), "{unknown}");

    // Options are the family's: a bad one is the user's error, named.
    let bad = [("depth".to_string(), "3".to_string())];
    let err = fheml::train_with_registry(&registry, &train, &TrainOptions::defaults("stump", &bad), &mut NoHooks);
    assert!(matches!(err, Err(fheml::Error::Usage(m)) if m.contains("`depth`")));
}
