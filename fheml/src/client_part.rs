//! What a client needs from a model: quantizers, encodings, decoding and the
//! cryptographic specification — never the weights or thresholds. A server sends it
//! (`GET /models/{name}`); `fheml export-client` writes it to a file (a `.client` file) for
//! `keygen`, `encrypt` and `decrypt`.

use std::path::Path;

use fheml_circuits::{InputEncoding, InputSpec, OutputSpec, PostProcessing, Prediction, Task};
use fheml_fhe_runtime::{ClientSpec, Kind, limits};
use serde::{Deserialize, Serialize};

use crate::data::DataSchema;
use crate::error::{Error, Result};
use crate::model_file::{SavedModel, read_limited};

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
        Ok(fheml_circuits::encode_inputs(&self.inputs, row)?)
    }

    /// Prediction from decrypted outputs.
    pub fn decode(&self, outputs: &[Vec<i64>]) -> Result<Prediction> {
        Ok(fheml_circuits::decode_outputs(&self.outputs, self.post, &self.task, outputs)?)
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
            return Err(Error::Usage("client part: fingerprint does not match its content".into()));
        }
        // A hostile server could name an insecure or enormous parameter set: refuse it before keygen.
        part.spec.validate()?;
        part.check_consistent()?;
        Ok(part)
    }

    /// The client part of a file holding either a whole model or only its client part (as
    /// `fheml export-client` writes it), told apart by the file's header, not its name.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = read_limited(path, limits::MODEL_BYTES)?;
        if fheml_fhe_runtime::peek_kind(&bytes) == Some(Kind::ClientSpec) {
            let data = |e: Error| Error::Data { path: path.display().to_string(), detail: e.to_string() };
            Self::from_bytes(&bytes).map_err(data)
        } else {
            Ok(Self::of(&SavedModel::from_file_bytes(path, &bytes)?))
        }
    }

    /// Refuses a part whose pieces disagree (a corrupt or crafted file, or a hostile
    /// server): the columns, the quantizers, the encrypted elements and the decoders must
    /// describe the same model, so that encoding a row never allocates more than the part
    /// itself holds and decoding never indexes past it.
    fn check_consistent(&self) -> Result<()> {
        let bad = |detail: String| Err(Error::Usage(format!("client part: {detail}")));
        let features = self.feature_names.len();
        if self.schema.n_features() != features {
            return bad(format!(
                "its data columns give {} features, its feature names {features}",
                self.schema.n_features()
            ));
        }
        if self.inputs.len() != self.spec.inputs.len() {
            return bad(format!(
                "{} input encodings for {} encrypted inputs",
                self.inputs.len(),
                self.spec.inputs.len()
            ));
        }
        for (i, (input, (shape, ranges, deltas))) in self.inputs.iter().zip(&self.spec.inputs).enumerate() {
            if input.n_features() != features {
                return bad(format!("input {i} quantizes {} features, the model has {features}", input.n_features()));
            }
            let per_feature = match input.encoding {
                InputEncoding::Quantized => 1,
                InputEncoding::Thermometer => input.thermometer_levels(),
            };
            let elements = per_feature.checked_mul(features);
            let shaped = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
            if elements != Some(ranges.len()) || shaped != Some(ranges.len()) || deltas.len() != ranges.len() {
                return bad(format!(
                    "input {i}: its encoding, shape {shape:?}, {} ranges and {} scales disagree",
                    ranges.len(),
                    deltas.len()
                ));
            }
        }
        if self.outputs.len() != self.spec.outputs.len() {
            return bad(format!(
                "{} output decoders for {} encrypted outputs",
                self.outputs.len(),
                self.spec.outputs.len()
            ));
        }
        for (i, (output, n)) in self.outputs.iter().zip(&self.spec.outputs).enumerate() {
            let covers = |v: &[f64]| v.len() == 1 || v.len() >= *n;
            if !covers(&output.scale) || !covers(&output.offset) || !n.is_multiple_of(output.groups.max(1)) {
                return bad(format!(
                    "output {i}: {n} elements, {} scales, {} offsets, {} groups",
                    output.scale.len(),
                    output.offset.len(),
                    output.groups
                ));
            }
        }
        if let (Some(labels), Task::Classification { classes }) = (&self.schema.labels, &self.task)
            && labels.len() != classes.len()
        {
            return bad(format!("{} class labels for {} classes", labels.len(), classes.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
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
                    let options = TrainOptions::defaults(model, settings);
                    ClientPart::of(&train(&table, &options).unwrap()).to_bytes().unwrap()
                })
                .collect();
            (bytes, table.x.row(0).to_vec())
        })
    }

    /// The client part of a linear model holds none of its float weights or intercepts (nor
    /// the circuit), and reads back as the same part.
    #[test]
    fn a_client_part_holds_no_weights() {
        let (table, _) = crate::data::embedded("iris").unwrap();
        let options = TrainOptions::defaults("logistic", &[]);
        let saved = train(&table, &options).unwrap();
        let linear = saved.float.as_any().downcast_ref::<fheml_models_linear::LinearModel>().unwrap();
        let bytes = ClientPart::of(&saved).to_bytes().unwrap();
        let secrets: Vec<f64> = linear.weights().iter().chain(linear.intercept().iter()).copied().collect();
        assert!(!secrets.is_empty());
        for w in secrets {
            let pattern = w.to_le_bytes();
            assert!(!bytes.windows(8).any(|b| b == pattern), "weight {w} in the client part");
        }
        let back = ClientPart::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes().unwrap(), bytes);
        assert_eq!(back.spec.fingerprint, saved.fhe.compiled().fingerprint());
    }

    /// Honest parts of every family pass the consistency check (a tree's thermometer
    /// inputs, a network's lookups, a boosted ensemble's grouped outputs).
    #[test]
    fn honest_parts_are_consistent() {
        let (table, _) = crate::data::embedded("iris").unwrap();
        let settings = [
            ("tree", vec![("max_depth", "3")]),
            ("gbdt", vec![("n_estimators", "3"), ("max_depth", "2")]),
            ("forest", vec![("n_estimators", "3"), ("max_depth", "2")]),
            ("mlp", vec![("hidden", "4"), ("epochs", "2")]),
        ];
        for (model, settings) in settings {
            let settings: Vec<(String, String)> =
                settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let options = TrainOptions::defaults(model, &settings);
            let part = ClientPart::of(&train(&table, &options).unwrap());
            part.check_consistent().unwrap_or_else(|e| panic!("{model}: {e}"));
            ClientPart::from_bytes(&part.to_bytes().unwrap()).unwrap();
        }
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
