//! The contract between model crates, the runtime and the client: a lowered model is a
//! circuit plus how the client encodes its features and decodes the outputs.

use fheml_quant::PerFeatureQuantizer;
use serde::{Deserialize, Serialize};

use crate::error::{CircuitError, Result};
use crate::ir::Circuit;

/// How the client turns its quantized features into the circuit's input elements. Each
/// encoding depends only on the quantizers, never on the model's thresholds or weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputEncoding {
    /// One element per feature: the quantized integer itself.
    Quantized,
    /// Per feature, the bits `[q > t]` for every level `t` in `qmin..qmax`
    /// (shape `[features, qmax - qmin]`): comparisons become free choices of ciphertext.
    Thermometer,
}

/// What one circuit input is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Float features to integers, one quantizer per feature.
    pub quantizer: PerFeatureQuantizer,
    /// Integers to circuit elements.
    pub encoding: InputEncoding,
}

impl InputSpec {
    /// Number of float features the client provides.
    pub fn n_features(&self) -> usize {
        self.quantizer.len()
    }

    /// Thermometer levels per feature (the width of the second axis).
    pub fn thermometer_levels(&self) -> usize {
        self.quantizer.quantizers().iter().map(|q| (q.qmax() - q.qmin()) as usize).max().unwrap_or(0)
    }

    /// The flat circuit input for one row of float features.
    pub fn encode(&self, features: &[f64]) -> Result<Vec<i64>> {
        let (q, _clipped) = self.quantizer.quantize_row(features)?;
        Ok(self.encode_quantized(&q))
    }

    /// The flat circuit input for already quantized features.
    pub fn encode_quantized(&self, q: &[i64]) -> Vec<i64> {
        match self.encoding {
            InputEncoding::Quantized => q.to_vec(),
            InputEncoding::Thermometer => {
                let levels = self.thermometer_levels();
                let mut bits = Vec::with_capacity(q.len() * levels);
                for (value, quantizer) in q.iter().zip(self.quantizer.quantizers()) {
                    bits.extend((0..levels as i64).map(|t| i64::from(*value > quantizer.qmin() + t)));
                }
                bits
            }
        }
    }
}

/// How one circuit output becomes floats: `y[i] = scale[i]·q[i] + offset[i]`, where a
/// vector of length one applies to every element; with `groups > 1` the output is laid
/// out as `[groups, k]` and the client sums the groups (e.g. per-tree scores of an
/// ensemble, summed after decryption instead of under encryption).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// Per-element (or shared) scale.
    pub scale: Vec<f64>,
    /// Per-element (or shared) offset.
    pub offset: Vec<f64>,
    /// Number of leading groups summed by the client (1: none).
    #[serde(default = "one")]
    pub groups: usize,
}

fn one() -> usize {
    1
}

impl OutputSpec {
    /// Plain integers.
    pub fn identity() -> Self {
        Self { scale: vec![1.0], offset: vec![0.0], groups: 1 }
    }

    /// `y = scale·q + offset` for every element, no grouping.
    pub fn affine(scale: f64, offset: f64) -> Self {
        Self { scale: vec![scale], offset: vec![offset], groups: 1 }
    }

    /// Dequantizes one output.
    pub fn decode(&self, q: &[i64]) -> Result<Vec<f64>> {
        let pick = |v: &[f64], i: usize| -> Result<f64> {
            match v.len() {
                1 => Ok(v[0]),
                n if i < n => Ok(v[i]),
                n => Err(CircuitError::Decoding { detail: format!("{} outputs for {n} decoding entries", q.len()) }),
            }
        };
        let decoded: Vec<f64> = q
            .iter()
            .enumerate()
            .map(|(i, x)| Ok(pick(&self.scale, i)? * *x as f64 + pick(&self.offset, i)?))
            .collect::<Result<_>>()?;
        if self.groups <= 1 {
            return Ok(decoded);
        }
        if !decoded.len().is_multiple_of(self.groups) {
            return Err(CircuitError::Decoding {
                detail: format!("{} values in {} groups", decoded.len(), self.groups),
            });
        }
        let k = decoded.len() / self.groups;
        let mut sums = vec![0.0; k];
        for (i, v) in decoded.iter().enumerate() {
            sums[i % k] += v;
        }
        Ok(sums)
    }
}

/// What the client computes after decoding (never under encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PostProcessing {
    /// The decoded values are the prediction (regression).
    Identity,
    /// `exp` of the decoded value (log-link regression: Poisson, Gamma, Tweedie).
    Exp,
    /// One score; probability of the second class is `sigmoid(score)`.
    Sigmoid,
    /// One score per class; probabilities by softmax.
    Softmax,
    /// One score (or vote count) per class; the largest wins; probabilities are the
    /// normalised non-negative scores.
    Argmax,
    /// One signed score; the second class wins when it is positive (margin classifiers).
    Sign,
}

/// Classification (with its labels) or regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Task {
    /// Predicts one of these labels.
    Classification {
        /// The labels, in class-index order.
        classes: Vec<f64>,
    },
    /// Predicts a real value.
    Regression,
}

/// The client's view of one prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The predicted label or value.
    pub value: f64,
    /// Class probabilities (classification only).
    pub probabilities: Option<Vec<f64>>,
    /// The decoded scores before post-processing.
    pub scores: Vec<f64>,
}

fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / total).collect()
}

fn argmax(values: &[f64]) -> usize {
    // Ties go to the lowest index, as numpy's argmax does.
    values.iter().enumerate().fold(0, |best, (i, v)| if *v > values[best] { i } else { best })
}

impl PostProcessing {
    /// Turns decoded scores into a prediction.
    pub fn apply(&self, scores: Vec<f64>, task: &Task) -> Result<Prediction> {
        let first = *scores.first().ok_or(CircuitError::Decoding { detail: "no output value".into() })?;
        let classes = match task {
            Task::Classification { classes } => classes.as_slice(),
            Task::Regression => &[],
        };
        let label = |i: usize| -> Result<f64> {
            classes.get(i).copied().ok_or(CircuitError::Decoding {
                detail: format!("class index {i} but the model has {} classes", classes.len()),
            })
        };
        let (value, probabilities) = match self {
            PostProcessing::Identity => (first, None),
            PostProcessing::Exp => (first.exp(), None),
            PostProcessing::Sigmoid => {
                let p = 1.0 / (1.0 + (-first).exp());
                (label(usize::from(p > 0.5))?, Some(vec![1.0 - p, p]))
            }
            PostProcessing::Sign => (label(usize::from(first > 0.0))?, None),
            PostProcessing::Softmax => {
                let p = softmax(&scores);
                (label(argmax(&p))?, Some(p))
            }
            PostProcessing::Argmax => {
                let total: f64 = scores.iter().map(|s| s.max(0.0)).sum();
                let p = (total > 0.0).then(|| scores.iter().map(|s| s.max(0.0) / total).collect());
                (label(argmax(&scores))?, p)
            }
        };
        Ok(Prediction { value, probabilities, scores })
    }
}

/// Client side: the circuit inputs for one row of float features, one per input spec.
pub fn encode_inputs(inputs: &[InputSpec], features: &[f64]) -> Result<Vec<Vec<i64>>> {
    inputs.iter().map(|spec| spec.encode(features)).collect()
}

/// Client side: decrypted circuit outputs (one per output spec) to a prediction. The one
/// decoder of every model, whether the client holds the whole model or only its client part.
pub fn decode_outputs(
    specs: &[OutputSpec],
    post: PostProcessing,
    task: &Task,
    outputs: &[Vec<i64>],
) -> Result<Prediction> {
    if outputs.len() != specs.len() {
        return Err(CircuitError::Decoding {
            detail: format!("{} outputs, the model has {}", outputs.len(), specs.len()),
        });
    }
    let mut scores = Vec::new();
    for (q, spec) in outputs.iter().zip(specs) {
        scores.extend(spec.decode(q)?);
    }
    post.apply(scores, task)
}

/// What every lowered model hands the runtime and the client.
pub trait IntegerCircuit {
    /// The circuit the server evaluates.
    fn circuit(&self) -> &Circuit;
    /// How the client builds each circuit input.
    fn input_encoding(&self) -> &[InputSpec];
    /// How the client decodes each circuit output.
    fn output_decoding(&self) -> &[OutputSpec];
    /// What the client does after decoding.
    fn post_processing(&self) -> PostProcessing;
    /// Classification labels or regression.
    fn task(&self) -> &Task;
}

/// A lowered model: the serialisable form of [`IntegerCircuit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCircuit {
    /// The circuit.
    pub circuit: Circuit,
    /// One spec per circuit input.
    pub inputs: Vec<InputSpec>,
    /// One spec per circuit output.
    pub outputs: Vec<OutputSpec>,
    /// Client-side post-processing.
    pub post: PostProcessing,
    /// Classification or regression.
    pub task: Task,
}

impl IntegerCircuit for ModelCircuit {
    fn circuit(&self) -> &Circuit {
        &self.circuit
    }
    fn input_encoding(&self) -> &[InputSpec] {
        &self.inputs
    }
    fn output_decoding(&self) -> &[OutputSpec] {
        &self.outputs
    }
    fn post_processing(&self) -> PostProcessing {
        self.post
    }
    fn task(&self) -> &Task {
        &self.task
    }
}

impl ModelCircuit {
    /// Client side: the circuit inputs for one row of float features (the model's single
    /// input spec).
    pub fn encode(&self, features: &[f64]) -> Result<Vec<Vec<i64>>> {
        encode_inputs(&self.inputs, features)
    }

    /// Client side: decrypted circuit outputs to a prediction.
    pub fn decode(&self, outputs: &[Vec<i64>]) -> Result<Prediction> {
        decode_outputs(&self.outputs, self.post, &self.task, outputs)
    }

    /// Clear (exact integer) prediction of one row.
    pub fn predict_clear(&self, features: &[f64]) -> Result<Prediction> {
        let outputs = self.circuit.evaluate_clear(&self.encode(features)?)?;
        self.decode(&outputs)
    }
}
