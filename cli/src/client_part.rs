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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use fheml_fhe_runtime::FheConfig;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use sha2::{Digest, Sha256};

    use super::ClientPart;
    use crate::model_file::{TrainOptions, train};

    /// Honest client parts of a linear model (quantized inputs) and a tree (thermometer
    /// inputs), as a server sends them, and a row of features.
    fn parts() -> &'static (Vec<Vec<u8>>, Vec<f64>) {
        static PARTS: std::sync::OnceLock<(Vec<Vec<u8>>, Vec<f64>)> = std::sync::OnceLock::new();
        PARTS.get_or_init(|| {
            let (table, _) = crate::data::embedded("iris").unwrap();
            let depth = [("max_depth".to_string(), "2".to_string())];
            let bytes = [("logistic", &[][..]), ("tree", &depth[..])]
                .into_iter()
                .map(|(model, settings)| {
                    let options = TrainOptions {
                        model,
                        task: None,
                        n_bits: None,
                        settings,
                        budget_ms: None,
                        config: FheConfig::default(),
                    };
                    ClientPart::of(&train(&table, &options).unwrap()).to_bytes().unwrap()
                })
                .collect();
            (bytes, table.x.row(0).to_vec())
        })
    }

    /// `honest` with bytes of its payload set (uniformly: a client part is all structure),
    /// resealed with a valid length and checksum so the edit reaches the decoder.
    fn mutate(honest: &[u8], edits: &[(Index, u8, bool)]) -> Vec<u8> {
        let mut payload = honest[80..].to_vec();
        for (at, value, truncate) in edits {
            if payload.is_empty() {
                break;
            }
            let at = at.index(payload.len());
            if *truncate {
                payload.truncate(at);
            } else {
                payload[at] = *value;
            }
        }
        let mut out = honest[..40].to_vec();
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&Sha256::digest(&payload));
        out.extend_from_slice(&payload);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// A client part from a server the client does not trust: decoded, validated, then
        /// used to encode a row and decode outputs (what `fheml client` does before and
        /// after the server's work). Never a panic, never an allocation the part dictates:
        /// `Ok` or a one-line error.
        #[test]
        fn mutated_client_parts_are_refused_or_used_never_panic(
            tree in any::<bool>(),
            edits in prop::collection::vec((any::<Index>(), any::<u8>(), prop::bool::weighted(0.05)), 1..4),
        ) {
            let (honest, row) = parts();
            let bytes = mutate(&honest[usize::from(tree)], &edits);
            let used = std::panic::catch_unwind(|| -> crate::error::Result<()> {
                let part = ClientPart::from_bytes(&bytes)?;
                part.encode(row)?;
                let zeros: Vec<Vec<i64>> = part.spec.outputs.iter().map(|n| vec![0; (*n).min(1 << 16)]).collect();
                part.decode(&zeros)?;
                Ok(())
            });
            let result = used.map_err(|_| TestCaseError::fail("a mutated client part panicked"))?;
            if let Err(e) = result {
                let text = e.to_string();
                prop_assert!(!text.contains('\n') && text.len() <= 400, "{text:?}");
            }
        }
    }
}
