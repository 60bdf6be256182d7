//! `fheml client`: talks to `fheml serve` — fetch the client part, upload the evaluation
//! key once (models with table lookups only) and the public key the server sanitizes
//! answers with (when it does), send encrypted rows, decrypt the answers.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use fheml_circuits::Prediction;
use fheml_fhe_runtime::{ClientKey, EncryptedOutputs, limits};
use ndarray::ArrayView2;

use crate::client_part::ClientPart;
use crate::error::{Error as CliError, Result};
use crate::model_file::{read_limited, write_atomically, write_secret_atomically};

/// A client session against one served model.
pub struct RemoteModel {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    /// The model's client part.
    pub part: ClientPart,
    key: ClientKey,
    /// The compressed evaluation key and its id on the server; `None` for a model without
    /// table lookups, which the server evaluates without a key.
    uploaded: Option<(Vec<u8>, String)>,
    /// The public key and its id on the server; `None` when the server does not sanitize.
    public: Option<(Vec<u8>, String)>,
}

fn http_error(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{what}: {e}"))
}

/// The scheme (lowercased) and host of an `http://` or `https://` URL.
fn scheme_and_host(url: &str) -> Result<(String, String)> {
    let bad = || CliError::Usage(format!("{url}: not an http:// or https:// URL"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(bad());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((scheme, host.to_ascii_lowercase()))
}

/// Whether `host` names this machine (a token may travel over plain HTTP there).
fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The HTTP agent for `url`: refuses to send a token in clear to another machine, and trusts
/// the certificates of `ca_pem` (PEM, one or more) instead of the built-in WebPKI roots.
fn agent_for(url: &str, token: bool, ca_pem: Option<&[u8]>) -> Result<ureq::Agent> {
    let (scheme, host) = scheme_and_host(url)?;
    if scheme == "http" && token && !is_loopback_host(&host) {
        return Err(CliError::Usage(format!(
            "{url}: the token would travel in clear; use https:// (fheml serve --tls-cert/--tls-key, or a TLS proxy)"
        )));
    }
    let mut config = ureq::Agent::config_builder().http_status_as_error(false);
    if let Some(pem) = ca_pem {
        if scheme != "https" {
            return Err(CliError::Usage(format!("{url}: --ca-cert applies to https:// URLs only")));
        }
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(CliError::Usage(format!("--ca-cert: not a PEM file: {e}"))),
            }
        }
        if certs.is_empty() {
            return Err(CliError::Usage("--ca-cert: no certificate (-----BEGIN CERTIFICATE-----) in the file".into()));
        }
        let roots = ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs));
        config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    Ok(config.build().into())
}

/// A transport error, with a hint when TLS refused the server's certificate.
fn transport_error(url: &str, e: ureq::Error) -> CliError {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("certificate") {
        return CliError::Usage(format!(
            "{url}: {text} (the server's certificate is not trusted: pass its CA with --ca-cert, and check \
             that the URL's host is one the certificate names)"
        ));
    }
    http_error(url, text)
}

/// How often a request the server refused as busy (503) is tried again, and the first pause.
const BUSY_RETRIES: u32 = 12;
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// An answer the server refused.
struct Refused(u16, String);

impl RemoteModel {
    fn call_once(&self, url: &str, body: Option<&[u8]>) -> Result<std::result::Result<Vec<u8>, Refused>> {
        Self::call_with(&self.agent, self.token.as_deref(), url, body)
    }

    fn call_with(
        agent: &ureq::Agent,
        token: Option<&str>,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<std::result::Result<Vec<u8>, Refused>> {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut pause = FIRST_PAUSE;
        for attempt in 0..=BUSY_RETRIES {
            let response = match (body, &bearer) {
                (Some(b), Some(auth)) => agent.post(url).header("Authorization", auth).send(b),
                (Some(b), None) => agent.post(url).send(b),
                (None, Some(auth)) => agent.get(url).header("Authorization", auth).call(),
                (None, None) => agent.get(url).call(),
            };
            let mut response = response.map_err(|e| transport_error(url, e))?;
            let status = response.status();
            let mut bytes = Vec::new();
            response
                .body_mut()
                .as_reader()
                .take(limits::CIPHERTEXT_BYTES as u64)
                .read_to_end(&mut bytes)
                .map_err(|e| http_error(url, e))?;
            if status.is_success() {
                return Ok(Ok(bytes));
            }
            // Busy: the server sheds load rather than queueing without bound; wait and retry.
            if status.as_u16() == 503 && attempt < BUSY_RETRIES {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            }
            return Ok(Err(Refused(status.as_u16(), String::from_utf8_lossy(&bytes).trim().to_string())));
        }
        Err(CliError::Usage(format!("{url}: server still busy after {BUSY_RETRIES} retries")))
    }

    fn refused(Refused(status, message): Refused) -> CliError {
        CliError::Usage(format!("server answered {status}: {message}"))
    }

    /// Connects: fetches the client part, loads or generates keys (kept in `key_dir` when
    /// given), uploads the evaluation key when the model needs one. `token` is the server's
    /// bearer token, if it requires one (sent over https, or plain http to loopback only).
    /// `ca_pem` holds the CA certificates to trust instead of the WebPKI roots (https only).
    pub fn connect(
        url: &str,
        name: &str,
        key_dir: Option<&Path>,
        token: Option<String>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self> {
        let agent = agent_for(url, token.is_some(), ca_pem)?;
        let base = format!("{}/models/{name}", url.trim_end_matches('/'));
        let part_bytes =
            Self::call_with(&agent, token.as_deref(), &format!("{base}/client"), None)?.map_err(Self::refused)?;
        let part = ClientPart::from_bytes(&part_bytes)?;
        let fp = part.spec.fingerprint;
        let stored = key_dir.map(|d| d.join(format!("{}.client.key", fp.short())));
        let (key, eval_bytes) = match stored.as_ref().filter(|p| p.exists()) {
            Some(path) => (ClientKey::from_bytes(&read_limited(path, limits::KEY_BYTES)?, &fp)?, None),
            None => {
                let (key, eval) = part.spec.keygen_compressed();
                if let (Some(path), Some(dir)) = (&stored, key_dir) {
                    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
                    write_secret_atomically(path, &key.to_bytes()?)?;
                }
                (key, Some(eval.to_bytes()?))
            }
        };
        let mut remote = Self { agent, base, token, part, key, uploaded: None, public: None };
        if remote.part.spec.sanitized {
            // Kept beside the secret key: the server stores public keys by content too.
            let path = stored.as_ref().map(|p| p.with_extension("public"));
            let public_bytes = match path.as_ref().filter(|p| p.exists()) {
                Some(p) => read_limited(p, fheml_fhe_runtime::sanitize::PUBLIC_KEY_BYTES)?,
                None => {
                    let bytes = remote.part.spec.public_key(&remote.key)?.to_bytes()?;
                    if let Some(p) = &path {
                        write_atomically(p, &bytes)?;
                    }
                    bytes
                }
            };
            let id = remote.upload_to("public_key", &public_bytes)?;
            remote.public = Some((public_bytes, id));
        }
        if !remote.part.spec.needs_evaluation_key {
            return Ok(remote);
        }
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
        let key_id = remote.upload(&eval_bytes)?;
        remote.uploaded = Some((eval_bytes, key_id));
        Ok(remote)
    }

    fn upload(&self, eval_bytes: &[u8]) -> Result<String> {
        self.upload_to("keys", eval_bytes)
    }

    /// Uploads a key to `endpoint` (`keys` or `public_key`); its id on the server.
    fn upload_to(&self, endpoint: &str, bytes: &[u8]) -> Result<String> {
        let answer = self.call_once(&format!("{}/{endpoint}", self.base), Some(bytes))?.map_err(Self::refused)?;
        let text = String::from_utf8_lossy(&answer);
        Ok(text
            .split('"')
            .nth(3)
            .filter(|id| id.len() == 64)
            .ok_or_else(|| CliError::Usage(format!("unexpected key upload answer: {text}")))?
            .to_string())
    }

    /// Encrypts the rows, has the server evaluate them in requests of at most `batch_rows`
    /// rows (the server caps samples per request, `fheml serve --max-samples`), decrypts
    /// the predictions.
    pub fn predict(&self, x: ArrayView2<f64>, batch_rows: usize) -> Result<Vec<Prediction>> {
        let mut predictions = Vec::with_capacity(x.nrows());
        for first in (0..x.nrows()).step_by(batch_rows.max(1)) {
            let rows = x.slice(ndarray::s![first..x.nrows().min(first + batch_rows.max(1)), ..]);
            predictions.extend(self.predict_batch(rows)?);
        }
        Ok(predictions)
    }

    fn predict_batch(&self, x: ArrayView2<f64>) -> Result<Vec<Prediction>> {
        let inputs = x.rows().into_iter().map(|r| self.part.encode(&r.to_vec())).collect::<Result<Vec<_>>>()?;
        let query = self.part.spec.encrypt(&self.key, &inputs)?.to_bytes()?;
        let mut parameters = Vec::new();
        if let Some((_, key_id)) = &self.uploaded {
            parameters.push(format!("key_id={key_id}"));
        }
        if let Some((_, public_key_id)) = &self.public {
            parameters.push(format!("public_key_id={public_key_id}"));
        }
        let url = if parameters.is_empty() {
            format!("{}/run", self.base)
        } else {
            format!("{}/run?{}", self.base, parameters.join("&"))
        };
        // The server evicts keys to stay within its quotas: a key it no longer has is
        // uploaded again (same content-derived id), at most once per kind.
        let mut reuploaded = (false, false);
        let answer = loop {
            match self.call_once(&url, Some(&query))? {
                Ok(answer) => break answer,
                Err(Refused(404, message)) if message.contains("no evaluation key") && !reuploaded.0 => {
                    let (eval_bytes, _) = self.uploaded.as_ref().ok_or_else(|| Self::refused(Refused(404, message)))?;
                    self.upload(eval_bytes)?;
                    reuploaded.0 = true;
                }
                Err(Refused(404, message)) if message.contains("no public key") && !reuploaded.1 => {
                    let (public_bytes, _) = self.public.as_ref().ok_or_else(|| Self::refused(Refused(404, message)))?;
                    self.upload_to("public_key", public_bytes)?;
                    reuploaded.1 = true;
                }
                Err(refused) => return Err(Self::refused(refused)),
            }
        };
        let outputs = EncryptedOutputs::from_bytes(&answer, &self.part.spec.fingerprint)?;
        let decrypted = self.part.spec.decrypt(&self.key, &outputs)?;
        decrypted.iter().map(|o| self.part.decode(o)).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{agent_for, is_loopback_host, scheme_and_host};

    #[test]
    fn urls_split_into_scheme_and_host() {
        let cases = [
            ("http://127.0.0.1:8080", "http", "127.0.0.1"),
            ("HTTPS://Example.COM/base", "https", "example.com"),
            ("http://[::1]:80/x", "http", "::1"),
            ("http://localhost", "http", "localhost"),
            ("http://127.0.0.1@evil.example:80/", "http", "evil.example"),
        ];
        for (url, scheme, host) in cases {
            assert_eq!(scheme_and_host(url).unwrap(), (scheme.to_string(), host.to_string()), "{url}");
        }
        for bad in ["127.0.0.1:8080", "ftp://host", "http://", "http:///path"] {
            assert!(scheme_and_host(bad).is_err(), "{bad}");
        }
        assert!(is_loopback_host("localhost") && is_loopback_host("127.0.0.2") && is_loopback_host("::1"));
        assert!(!is_loopback_host("10.0.0.1") && !is_loopback_host("localhost.example"));
    }

    #[test]
    fn a_token_never_travels_in_clear_to_another_machine() {
        let refused = agent_for("http://10.0.0.1:8080", true, None).err().unwrap().to_string();
        assert!(refused.contains("https://"), "{refused}");
        assert!(agent_for("HTTP://10.0.0.1:8080", true, None).is_err());
        assert!(agent_for("http://127.0.0.1@10.0.0.1:8080", true, None).is_err());
        assert!(agent_for("http://10.0.0.1:8080", false, None).is_ok());
        assert!(agent_for("http://127.0.0.1:8080", true, None).is_ok());
        assert!(agent_for("https://10.0.0.1:8080", true, None).is_ok());
        let ca_on_http = agent_for("http://127.0.0.1:8080", false, Some(b"x")).err().unwrap().to_string();
        assert!(ca_on_http.contains("https://"), "{ca_on_http}");
        let not_pem = agent_for("https://127.0.0.1:8080", false, Some(b"hello")).err().unwrap().to_string();
        assert!(not_pem.contains("no certificate"), "{not_pem}");
    }
}
