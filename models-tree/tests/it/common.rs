//! Embedded datasets with a fixed split, and the models fitted on them (once per binary).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use fheml_circuits::ModelCircuit;
use fheml_models_tree::{CompiledTrees, TaskKind, TreeModel, TreeModelKind, TreeParams};
use ndarray::{Array1, Array2};
use smartcore::dataset::{Dataset, breast_cancer, diabetes, iris};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Data {
    BreastCancer,
    Iris,
    Diabetes,
}

impl Data {
    pub const ALL: [Data; 3] = [Data::BreastCancer, Data::Iris, Data::Diabetes];

    pub fn name(self) -> &'static str {
        match self {
            Data::BreastCancer => "breast_cancer",
            Data::Iris => "iris",
            Data::Diabetes => "diabetes",
        }
    }

    pub fn task(self) -> TaskKind {
        if self == Data::Diabetes { TaskKind::Regression } else { TaskKind::Classification }
    }

    /// Concrete ML 1.9's measured PBS per sample (ANCHORS.md) for tree, forest, gbdt.
    pub fn concrete_ml_pbs(self, kind: TreeModelKind) -> usize {
        match (self, kind) {
            (Data::BreastCancer, TreeModelKind::Tree) => 154,
            (Data::BreastCancer, TreeModelKind::Forest) => 2360,
            (Data::BreastCancer, TreeModelKind::Gbdt) => 1280,
            (Data::Iris, TreeModelKind::Tree) => 73,
            (Data::Iris, TreeModelKind::Forest) => 1640,
            (Data::Iris, TreeModelKind::Gbdt) => 2220,
            (Data::Diabetes, TreeModelKind::Tree) => 253,
            (Data::Diabetes, TreeModelKind::Forest) => 2720,
            (Data::Diabetes, TreeModelKind::Gbdt) => 1280,
        }
    }
}

pub use fheml_quant::data::Split;

fn to_arrays(d: Dataset<f32, u32>) -> (Array2<f64>, Array1<f64>) {
    let x = Array2::from_shape_vec((d.num_samples, d.num_features), d.data.iter().map(|v| f64::from(*v)).collect())
        .unwrap();
    (x, d.target.iter().map(|v| f64::from(*v)).collect())
}

/// Every fifth row is a test row (the embedded iris is sorted by class: this stratifies).
pub fn split(data: Data) -> &'static Split {
    static SPLITS: OnceLock<Mutex<HashMap<Data, &'static Split>>> = OnceLock::new();
    let mut map = SPLITS.get_or_init(Default::default).lock().unwrap();
    map.entry(data).or_insert_with(|| {
        let (x, y) = to_arrays(match data {
            Data::BreastCancer => breast_cancer::load_dataset(),
            Data::Iris => iris::load_dataset(),
            Data::Diabetes => diabetes::load_dataset(),
        });
        Box::leak(Box::new(Split::every_fifth(x.view(), y.view())))
    })
}

pub struct Fitted {
    pub model: TreeModel,
    pub compiled: CompiledTrees,
}

impl Fitted {
    pub fn circuit(&self) -> &ModelCircuit {
        &self.compiled.circuit
    }
}

/// The benchmark models (Concrete ML's hyperparameters, n_bits 6), fitted and compiled once.
pub fn fitted(data: Data, kind: TreeModelKind) -> &'static Fitted {
    static MODELS: OnceLock<Mutex<HashMap<(Data, TreeModelKind), &'static Fitted>>> = OnceLock::new();
    let map = MODELS.get_or_init(Default::default);
    if let Some(f) = map.lock().unwrap().get(&(data, kind)) {
        return f;
    }
    let s = split(data);
    let params = TreeParams::new(kind, data.task()).n_bits(6).check().unwrap();
    let model = params.fit(s.x_train.view(), s.y_train.view()).unwrap();
    let compiled = model.compile_detailed(s.x_train.view()).unwrap();
    let f: &'static Fitted = Box::leak(Box::new(Fitted { model, compiled }));
    map.lock().unwrap().insert((data, kind), f);
    f
}

pub fn accuracy(pred: &[f64], y: &Array1<f64>) -> f64 {
    fheml_quant::metrics::accuracy(pred, &y.to_vec())
}

pub fn r2(pred: &[f64], y: &Array1<f64>) -> f64 {
    fheml_quant::metrics::r2(pred, &y.to_vec())
}

pub fn metric(data: Data, pred: &[f64], y: &Array1<f64>) -> f64 {
    if data.task() == TaskKind::Regression { r2(pred, y) } else { accuracy(pred, y) }
}

/// Circuit outputs with per-tree groups summed, as the client does after decryption.
pub fn summed_outputs(circuit: &ModelCircuit, outputs: Vec<Vec<i64>>) -> Vec<Vec<i64>> {
    outputs
        .into_iter()
        .zip(&circuit.outputs)
        .map(|(values, spec)| {
            if spec.groups <= 1 {
                return values;
            }
            let k = values.len() / spec.groups;
            let mut sums = vec![0i64; k];
            for (i, v) in values.iter().enumerate() {
                sums[i % k] += v;
            }
            sums
        })
        .collect()
}
