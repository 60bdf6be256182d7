//! `fheml client`: talks to `fheml serve` — fetch the client part, upload the evaluation
//! key once, send encrypted rows, decrypt the answers.

use std::io::Read;
use std::path::Path;

use fheml_circuits::Prediction;
use fheml_fhe_runtime::{ClientKey, EncryptedOutputs, limits};
use ndarray::ArrayView2;

use crate::client_part::ClientPart;
use crate::error::{CliError, Result};
use crate::model_file::{read_limited, write_atomically};

/// A client session against one served model.
pub struct RemoteModel {
    agent: ureq::Agent,
    base: String,
    /// The model's client part.
    pub part: ClientPart,
    key: ClientKey,
    key_id: String,
}

fn http_error(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{what}: {e}"))
}

impl RemoteModel {
    fn call(agent: &ureq::Agent, method: &str, url: &str, body: Option<&[u8]>) -> Result<Vec<u8>> {
        let response = match body {
            Some(b) => agent.post(url).send(b),
            None if method == "GET" => agent.get(url).call(),
            None => agent.post(url).send_empty(),
        };
        let mut response = response.map_err(|e| http_error(url, e))?;
        let status = response.status();
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(limits::CIPHERTEXT_BYTES as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| http_error(url, e))?;
        if !status.is_success() {
            return Err(CliError::Usage(format!(
                "server answered {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            )));
        }
        Ok(bytes)
    }

    /// Connects: fetches the client part, loads or generates keys (kept in `key_dir` when
    /// given), uploads the evaluation key.
    pub fn connect(url: &str, name: &str, key_dir: Option<&Path>) -> Result<Self> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let base = format!("{}/models/{name}", url.trim_end_matches('/'));
        let part = ClientPart::from_bytes(&Self::call(&agent, "GET", &format!("{base}/client"), None)?)?;
        let fp = part.spec.fingerprint;
        let stored = key_dir.map(|d| d.join(format!("{}.client.key", fp.short())));
        let (key, eval_bytes) = match stored.as_ref().filter(|p| p.exists()) {
            Some(path) => (ClientKey::from_bytes(&read_limited(path, limits::KEY_BYTES)?, &fp)?, None),
            None => {
                let (key, eval) = part.spec.keygen_compressed();
                if let (Some(path), Some(dir)) = (&stored, key_dir) {
                    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
                    write_atomically(path, &key.to_bytes()?)?;
                }
                (key, Some(eval.to_bytes()?))
            }
        };
        // The server stores keys by content: re-uploading the same key is harmless, and a
        // client with a stored secret key regenerates nothing.
        let eval_bytes = match eval_bytes {
            Some(b) => b,
            None => {
                let path = stored
                    .as_ref()
                    .map(|p| p.with_extension("eval"))
                    .ok_or_else(|| CliError::Usage("no key directory".into()))?;
                read_limited(&path, limits::KEY_BYTES)?
            }
        };
        if let Some(path) = stored.as_ref().map(|p| p.with_extension("eval")).filter(|p| !p.exists()) {
            write_atomically(&path, &eval_bytes)?;
        }
        let answer = Self::call(&agent, "POST", &format!("{base}/keys"), Some(&eval_bytes))?;
        let text = String::from_utf8_lossy(&answer);
        let key_id = text
            .split('"')
            .nth(3)
            .filter(|id| id.len() == 64)
            .ok_or_else(|| CliError::Usage(format!("unexpected key upload answer: {text}")))?
            .to_string();
        Ok(Self { agent, base, part, key, key_id })
    }

    /// Encrypts the rows, has the server evaluate them, decrypts the predictions.
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<Prediction>> {
        let inputs = x.rows().into_iter().map(|r| self.part.encode(&r.to_vec())).collect::<Result<Vec<_>>>()?;
        let query = self.part.spec.encrypt(&self.key, &inputs)?;
        let url = format!("{}/run?key_id={}", self.base, self.key_id);
        let answer = Self::call(&self.agent, "POST", &url, Some(&query.to_bytes()?))?;
        let outputs = EncryptedOutputs::from_bytes(&answer, &self.part.spec.fingerprint)?;
        let decrypted = self.part.spec.decrypt(&self.key, &outputs)?;
        decrypted.iter().map(|o| self.part.decode(o)).collect()
    }
}
