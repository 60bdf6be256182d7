//! What a client needs from a served model: quantizers, encodings, decoding and the
//! cryptographic specification — never the weights or thresholds.

use fheml_circuits::{InputSpec, OutputSpec, PostProcessing, Prediction, Task};
use fheml_fhe_runtime::{ClientSpec, Kind, limits};
use serde::{Deserialize, Serialize};

use crate::data::DataSchema;
use crate::error::{CliError, Result};
use crate::model_file::SavedModel;

/// The client's part of a compiled model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientPart {
    /// Model name.
    pub name: String,
    /// Feature names, in order.
    pub feature_names: Vec<String>,
    /// Input quantizers and encodings.
    pub inputs: Vec<InputSpec>,
    /// Output decoding.
    pub outputs: Vec<OutputSpec>,
    /// Post-processing.
    pub post: PostProcessing,
    /// Labels or regression.
    pub task: Task,
    /// Encryption parameters and encodings.
    pub spec: ClientSpec,
    /// The data file's columns by name and the text class labels. Last, so that a part sent
    /// by a server from before it existed fails to decode as this layout and is read as
    /// [`ClientPartV1`] (positional names, numeric labels).
    pub schema: DataSchema,
}

/// The client part's layout before [`DataSchema`] was sent.
#[derive(Deserialize)]
struct ClientPartV1 {
    name: String,
    feature_names: Vec<String>,
    inputs: Vec<InputSpec>,
    outputs: Vec<OutputSpec>,
    post: PostProcessing,
    task: Task,
    spec: ClientSpec,
}

impl ClientPart {
    /// Extracts the client part of a model.
    pub fn of(model: &SavedModel) -> Self {
        let m = model.fhe.model();
        ClientPart {
            name: model.name.clone(),
            feature_names: model.feature_names.clone(),
            inputs: m.inputs.clone(),
            outputs: m.outputs.clone(),
            post: m.post,
            task: m.task.clone(),
            spec: model.fhe.compiled().client_spec(),
            schema: model.schema.clone(),
        }
    }

    /// Circuit inputs of one row.
    pub fn encode(&self, row: &[f64]) -> Result<Vec<Vec<i64>>> {
        Ok(self.inputs.iter().map(|s| s.encode(row)).collect::<std::result::Result<_, _>>()?)
    }

    /// Prediction from decrypted outputs.
    pub fn decode(&self, outputs: &[Vec<i64>]) -> Result<Prediction> {
        let mut scores = Vec::new();
        for (q, spec) in outputs.iter().zip(&self.outputs) {
            scores.extend(spec.decode(q)?);
        }
        Ok(self.post.apply(scores, &self.task)?)
    }

    /// Sealed bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(fheml_fhe_runtime::seal(Kind::ClientSpec, &self.spec.fingerprint, self)?)
    }

    /// Reads sealed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let part = match fheml_fhe_runtime::open::<Self>(bytes, Kind::ClientSpec, None, limits::MODEL_BYTES) {
            Ok(part) => part,
            Err(current) => {
                let v1: ClientPartV1 =
                    fheml_fhe_runtime::open(bytes, Kind::ClientSpec, None, limits::MODEL_BYTES).map_err(|_| current)?;
                ClientPart {
                    schema: DataSchema::numeric(&v1.feature_names),
                    name: v1.name,
                    feature_names: v1.feature_names,
                    inputs: v1.inputs,
                    outputs: v1.outputs,
                    post: v1.post,
                    task: v1.task,
                    spec: v1.spec,
                }
            }
        };
        if fheml_fhe_runtime::peek_fingerprint(bytes, Kind::ClientSpec)? != part.spec.fingerprint {
            return Err(CliError::Usage("client part: fingerprint does not match its content".into()));
        }
        // A hostile server could name an insecure or enormous parameter set: refuse it before keygen.
        part.spec.validate()?;
        Ok(part)
    }
}
