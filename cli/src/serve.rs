//! `fheml serve`: an HTTP server holding compiled models.
//!
//! - `GET  /health` → `ok`
//! - `GET  /models` → the served model names (JSON)
//! - `GET  /models/{name}/client` → the client part (no weights): a sealed envelope
//! - `POST /models/{name}/keys` (body: compressed evaluation key) → `{"key_id": ...}`;
//!   keys are checked against the model's parameter set, stored under their content hash,
//!   within memory and disk quotas, in a local directory or an object store shared by
//!   replicas (`--key-store`)
//! - `POST /models/{name}/public_key` (body: the client's public key) →
//!   `{"public_key_id": ...}`; checked against the model, stored like evaluation keys
//! - `POST /models/{name}/run[?key_id=...][&public_key_id=...]` (body: encrypted inputs) →
//!   encrypted outputs, sanitized with the client's public key (`--sanitize`, the default):
//!   re-randomized and flooded so that they give nothing of the model's weights away
//!   (docs/privacy.md)
//!
//! Every byte a client sends is treated as hostile: bodies are limited per model and
//! endpoint (derived from the model's parameters), samples per request are capped, keys and
//! ciphertexts are conformance-checked before tfhe-rs expands them, inputs are expanded a
//! chunk at a time, at most a few evaluations run at once with a bounded queue behind them,
//! every request has a deadline, and a panic becomes a generic 500. Every refusal is a
//! status code with a one-line message (docs/http-api.md).
//!
//! With `--tls-cert/--tls-key` the server speaks HTTPS (rustls, ring); `fheml serve` refuses
//! a non-loopback address without TLS and a token unless told a proxy does that job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fheml_fhe_runtime::{
    CompiledCircuit, CompressedEvaluationKey, EncryptedInputs, EvaluationKey, FheError, Kind, PublicKey, Sanitizer,
};
use http_body_util::BodyExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::client_part::ClientPart;
use crate::error::{Error as CliError, Result};
use crate::key_store::{KeyLocation, KeyStore, StoreError};
use crate::model_file::SavedModel;

/// Limits and policies of one server (`fheml serve` flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where uploaded evaluation keys are stored when no `key_store` is given: a local
    /// directory this server owns, within `key_disk_bytes`.
    pub key_dir: PathBuf,
    /// A key store shared with other replicas (`--key-store URL`), used instead of
    /// `key_dir`: keys uploaded to any replica serve requests on all of them. Not evicted
    /// from (`key_disk_bytes` does not apply); each replica keeps its own memory cache.
    pub key_store: Option<String>,
    /// Most samples (rows) in one `/run` request.
    pub max_samples: usize,
    /// Evaluations (and key expansions) running at once; each uses every core.
    pub max_concurrent: usize,
    /// Requests to `/run` and `/keys` admitted at once, running or waiting for a turn;
    /// the next one gets 503 before its body is read.
    pub max_queued: usize,
    /// Deadline of one request, body upload included.
    pub request_timeout: Duration,
    /// Bytes of expanded evaluation keys kept in memory.
    pub key_memory_bytes: u64,
    /// Bytes of compressed evaluation keys kept on disk.
    pub key_disk_bytes: u64,
    /// Bytes of expanded inputs one evaluation holds at a time (it works in chunks of samples).
    pub chunk_bytes: usize,
    /// Lowers every derived body limit (never raises one).
    pub max_body_bytes: Option<usize>,
    /// The bearer token every request but `/health` must carry; `None` serves anyone.
    pub token: Option<String>,
    /// Sanitize every answer with the client's public key (models compiled without room for
    /// it are refused at start).
    pub sanitize: bool,
}

impl ServeOptions {
    /// Defaults for a server storing keys in `key_dir`.
    pub fn new(key_dir: PathBuf) -> Self {
        ServeOptions {
            key_dir,
            key_store: None,
            max_samples: DEFAULT_MAX_SAMPLES,
            max_concurrent: 2,
            max_queued: 32,
            request_timeout: Duration::from_secs(300),
            key_memory_bytes: 8 << 30,
            key_disk_bytes: 32 << 30,
            chunk_bytes: 256 << 20,
            max_body_bytes: None,
            token: None,
            sanitize: true,
        }
    }
}

/// Default most samples per `/run` request.
pub const DEFAULT_MAX_SAMPLES: usize = 64;

/// Room for the envelope header, the bincode framing and the seeds around the coefficients.
const BODY_SLACK: usize = 64 << 10;
/// bincode's variable-length integers take at most 9 bytes for a 64-bit coefficient.
const WIRE_BYTES_PER_COEFFICIENT: usize = 9;
/// Bodies of a model without table lookups to `/keys`: just enough to read the envelope and
/// answer that no key is needed.
const LEVELED_KEY_BODY: usize = 4 << 10;
/// Public keys are small (`k·N` words): their store gets this share of the key quotas.
const PUBLIC_KEY_QUOTA_SHARE: u64 = 32;

struct Served {
    model: SavedModel,
    client_part: Vec<u8>,
    /// The empty key of a model without table lookups (nothing to upload).
    leveled_key: Option<Arc<EvaluationKey>>,
    /// Largest `/keys` body: one compressed key of the model's parameter set.
    keys_body_limit: usize,
    /// Largest `/run` body: `max_samples` samples of the model's inputs.
    run_body_limit: usize,
    /// Largest `/public_key` body: one public key of the model's parameter set.
    public_key_body_limit: usize,
    /// Memory of one expanded key of the model's parameter set.
    expanded_key_bytes: u64,
}

impl Served {
    fn compiled(&self) -> &CompiledCircuit {
        self.model.fhe.compiled()
    }
}

struct AppState {
    models: HashMap<String, Arc<Served>>,
    keys: KeyStore<EvaluationKey>,
    /// Uploaded public keys, checked and expanded, by content hash (sanitizing servers).
    public_keys: Option<KeyStore<Sanitizer>>,
    options: ServeOptions,
    /// Requests admitted to `/run` and `/keys` (running or waiting).
    admitted: Arc<Semaphore>,
    /// Turns to expand keys or evaluate.
    evaluating: Arc<Semaphore>,
    /// SHA-256 of the bearer token: compared in constant time, and equal lengths whatever
    /// the client sends.
    token_digest: Option<[u8; 32]>,
}

struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(status, message.into())
    }
}

/// Longest error line answered: messages quote values from the request (a decoder's
/// complaint about a crafted field), which must not make the answer large.
const MAX_MESSAGE_BYTES: usize = 400;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut message = self.1.replace('\n', " ");
        if message.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES - 3;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        message.push('\n');
        (self.0, message).into_response()
    }
}

impl From<FheError> for ApiError {
    fn from(e: FheError) -> Self {
        let status = match e {
            FheError::WrongModel { .. } => StatusCode::CONFLICT,
            FheError::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

/// A blocking task that died (a panic inside tfhe-rs on input we did not foresee): the
/// client gets a generic line, never the panic text.
fn internal(_: tokio::task::JoinError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error while processing the request")
}

type ApiResult<T> = std::result::Result<T, ApiError>;

fn served(state: &AppState, name: &str) -> ApiResult<Arc<Served>> {
    state
        .models
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no model named `{name}`")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a body of at most `limit` bytes: refused from its Content-Length before reading
/// when it announces more, and cut off as soon as it streams past the limit otherwise.
async fn read_body(body: Body, headers: &axum::http::HeaderMap, limit: usize, what: &str) -> ApiResult<Bytes> {
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("{what} over {limit} bytes, the most this model takes"))
    };
    let announced =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"))),
    }
}

/// Flags an evaluation to stop when its request is dropped (timed out or disconnected).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn list(State(state): State<Arc<AppState>>) -> String {
    let mut names: Vec<&String> = state.models.keys().collect();
    names.sort();
    serde_json::to_string(&names).unwrap_or_default()
}

async fn client(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Vec<u8>> {
    Ok(served(&state, &name)?.client_part.clone())
}

/// Reads, checks and expands a compressed key for `model`; the caller holds an evaluation turn.
fn expand_key(model: &Served, bytes: &[u8]) -> ApiResult<EvaluationKey> {
    let compressed = CompressedEvaluationKey::from_bytes_conformant(bytes, model.compiled())?;
    Ok(compressed.decompress())
}

async fn upload_key(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<String> {
    let model = served(&state, &name)?;
    if model.leveled_key.is_some() {
        // Read nothing: the model has no table lookups and evaluates without a key.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("model `{name}` has no table lookups and takes no evaluation key; call /run without key_id"),
        ));
    }
    let body = read_body(body, &headers, model.keys_body_limit, "evaluation key").await?;
    let key_id = hex(&Sha256::digest(&body));
    // The same bytes were checked on an earlier upload, possibly to another model: the
    // shortcut holds only for a key made for this one.
    let for_this_model = fheml_fhe_runtime::peek_fingerprint(&body, Kind::CompressedEvaluationKey)
        .is_ok_and(|fp| fp == model.compiled().fingerprint());
    if for_this_model && state.keys.in_memory(&key_id).is_some() {
        // Other replicas sharing the store read it there: make sure it still is.
        let (worker_state, id) = (state.clone(), key_id.clone());
        tokio::task::spawn_blocking(move || worker_state.keys.restore(&id, &body).map_err(|e| store_error(&id, e)))
            .await
            .map_err(internal)??;
        return Ok(format!("{{\"key_id\":\"{key_id}\"}}"));
    }
    let turn = state.evaluating.clone().acquire_owned().await.map_err(|_| busy())?;
    let worker_state = state.clone();
    let id = key_id.clone();
    tokio::task::spawn_blocking(move || -> ApiResult<()> {
        let _turn = turn;
        let key = Arc::new(expand_key(&model, &body)?);
        worker_state.keys.insert(&id, &body, key, model.expanded_key_bytes).map_err(|e| store_error(&id, e))
    })
    .await
    .map_err(internal)??;
    Ok(format!("{{\"key_id\":\"{key_id}\"}}"))
}

/// Reads, checks and expands a public key for `model`.
fn expand_public_key(model: &Served, bytes: &[u8]) -> ApiResult<Sanitizer> {
    let public = PublicKey::from_bytes(bytes, &model.compiled().fingerprint())?;
    Ok(model.compiled().sanitizer(&public)?)
}

async fn upload_public_key(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<String> {
    let model = served(&state, &name)?;
    let not_sanitized = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("model `{name}` is served without sanitization and takes no public key"),
        )
    };
    if state.public_keys.is_none() || model.compiled().plan().sanitization.is_none() {
        return Err(not_sanitized());
    }
    let body = read_body(body, &headers, model.public_key_body_limit, "public key").await?;
    let id = hex(&Sha256::digest(&body));
    let for_this_model = fheml_fhe_runtime::peek_fingerprint(&body, Kind::PublicKey)
        .is_ok_and(|fp| fp == model.compiled().fingerprint());
    if for_this_model && state.public_keys.as_ref().is_some_and(|store| store.in_memory(&id).is_some()) {
        let (worker_state, key_id) = (state.clone(), id.clone());
        tokio::task::spawn_blocking(move || match worker_state.public_keys.as_ref() {
            Some(store) => store.restore(&key_id, &body).map_err(|e| store_error(&key_id, e)),
            None => Ok(()),
        })
        .await
        .map_err(internal)??;
        return Ok(format!("{{\"public_key_id\":\"{id}\"}}"));
    }
    let worker_state = state.clone();
    let key_id = id.clone();
    tokio::task::spawn_blocking(move || -> ApiResult<()> {
        let sanitizer = Arc::new(expand_public_key(&model, &body)?);
        let bytes = body.len() as u64;
        let store = worker_state
            .public_keys
            .as_ref()
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "this server takes no public key"))?;
        store.insert(&key_id, &body, sanitizer, 2 * bytes).map_err(|e| store_error(&key_id, e))
    })
    .await
    .map_err(internal)??;
    Ok(format!("{{\"public_key_id\":\"{id}\"}}"))
}

fn store_error(id: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::TooLarge(m) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, m),
        StoreError::Io(m) => {
            // The detail names the server's folders: for the operator, not the client.
            eprintln!("fheml serve: cannot store key {id}: {m}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the key on the server")
        }
        StoreError::Corrupt(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

/// The compressed bytes of key `id` from `store` (not in memory: written by this server
/// before an eviction, or by a replica), checked to hash to `id`; 404 when absent.
fn fetch_stored<K>(store: &KeyStore<K>, id: &str, limit: usize, unknown: impl Fn() -> ApiError) -> ApiResult<Vec<u8>> {
    match store.fetch(id, limit) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(unknown()),
        Err(StoreError::Corrupt(m)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m)),
        Err(StoreError::Io(m) | StoreError::TooLarge(m)) => {
            // The client uploads its key again; the detail is for the operator.
            eprintln!("fheml serve: cannot read key {id}: {m}");
            Err(unknown())
        }
    }
}

/// The expanded public key `id`: from memory, else from the key store, checked again.
/// Runs on a blocking thread.
fn stored_public_key(state: &AppState, model: &Served, id: &str) -> ApiResult<Arc<Sanitizer>> {
    let unknown = || ApiError::new(StatusCode::NOT_FOUND, format!("no public key `{id}`; upload it (again) first"));
    let store = state.public_keys.as_ref().ok_or_else(unknown)?;
    if let Some(key) = store.in_memory(id) {
        return Ok(key);
    }
    let bytes = fetch_stored(store, id, model.public_key_body_limit, unknown)?;
    let key = Arc::new(expand_public_key(model, &bytes)?);
    let _ = store.remember(id, bytes.len() as u64, key.clone(), 2 * bytes.len() as u64);
    Ok(key)
}

#[derive(Deserialize)]
struct RunQuery {
    key_id: Option<String>,
    public_key_id: Option<String>,
}

/// A key id from a query: 64 hex digits, lowercased.
fn checked_id(id: String, what: &str) -> ApiResult<String> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_lowercase())
    } else {
        Err(ApiError::new(StatusCode::BAD_REQUEST, format!("{what} must be 64 hex digits")))
    }
}

/// The expanded key for `key_id`: from memory, else from the key store (written by this
/// server before an eviction, or by a replica), checked again since the store is shared.
/// Runs on a blocking thread holding an evaluation turn.
fn stored_key(state: &AppState, model: &Served, key_id: &str) -> ApiResult<Arc<EvaluationKey>> {
    if let Some(key) = state.keys.in_memory(key_id) {
        return Ok(key);
    }
    let unknown =
        || ApiError::new(StatusCode::NOT_FOUND, format!("no evaluation key `{key_id}`; upload it (again) first"));
    let bytes = fetch_stored(&state.keys, key_id, model.keys_body_limit, unknown)?;
    let key = Arc::new(expand_key(model, &bytes)?);
    // Caching can only fail on a quota the key met when first uploaded; serve this request anyway.
    let _ = state.keys.remember(key_id, bytes.len() as u64, key.clone(), model.expanded_key_bytes);
    Ok(key)
}

fn busy() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server busy; retry later")
}

async fn run(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<RunQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<Vec<u8>> {
    let model = served(&state, &name)?;
    let key_id = match (&model.leveled_key, query.key_id) {
        (Some(_), _) => None,
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "key_id missing: upload an evaluation key to /keys first and pass its id",
            ));
        }
        (None, Some(id)) => Some(checked_id(id, "key_id")?),
    };
    let public_key_id = match (state.options.sanitize, query.public_key_id) {
        (false, _) => None,
        (true, Some(id)) => Some(checked_id(id, "public_key_id")?),
        (true, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "public_key_id missing: this server sanitizes its answers; upload your public key to /public_key first and pass its id",
            ));
        }
    };
    let body = read_body(body, &headers, model.run_body_limit, "encrypted batch").await?;
    let turn = state.evaluating.clone().acquire_owned().await.map_err(|_| busy())?;
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancelled.clone());
    let worker_state = state.clone();
    tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let _turn = turn;
        let compiled = model.compiled();
        // Checked against the model's parameters (`check_inputs`) below, once the sample count
        // is known to be within the cap (413 before 400).
        let inputs = EncryptedInputs::from_bytes(&body, &compiled.fingerprint())?;
        drop(body);
        let max = worker_state.options.max_samples;
        if inputs.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{} samples in one request; this server takes at most {max}", inputs.len()),
            ));
        }
        compiled.check_inputs(&inputs)?;
        let key = match (&model.leveled_key, key_id) {
            (Some(key), _) => key.clone(),
            (None, Some(id)) => stored_key(&worker_state, &model, &id)?,
            (None, None) => return Err(FheError::MissingEvaluationKey.into()),
        };
        let sanitizer = public_key_id.map(|id| stored_public_key(&worker_state, &model, &id)).transpose()?;
        let keep_going = || !cancelled.load(Ordering::Relaxed);
        let mut outputs = compiled.run_chunked(&key, &inputs, worker_state.options.chunk_bytes, &keep_going)?;
        if let Some(sanitizer) = sanitizer {
            compiled.sanitize(&sanitizer, &mut outputs)?;
        }
        Ok(outputs.to_bytes()?)
    })
    .await
    .map_err(internal)?
}

/// Admits a request to an expensive endpoint, or answers 503 at once (before its body is
/// read) when `max_queued` requests are already running or waiting.
async fn admit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match state.admitted.clone().try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => {
            let mut response = busy().into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// Checks the bearer token (every route but `/health`): 401 without the right one.
async fn authenticate(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.token_digest else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Sha256::digest(t.trim().as_bytes()));
    let accepted = given.is_some_and(|digest| bool::from(digest.as_slice().ct_eq(expected)));
    if accepted {
        return next.run(request).await;
    }
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer ...)")
            .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Gives the timeout layer's empty 408 answer its one-line message.
async fn explain_timeout(State(state): State<Arc<AppState>>, response: Response) -> Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT {
        let secs = state.options.request_timeout.as_secs_f64();
        return ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("request not completed within {secs} s"))
            .into_response();
    }
    response
}

fn describe_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

fn served_model(name: String, model: SavedModel, options: &ServeOptions) -> Result<(String, Arc<Served>)> {
    let compiled = model.fhe.compiled();
    if options.sanitize && compiled.plan().sanitization.is_none() {
        return Err(CliError::Usage(format!(
            "model `{name}` was compiled without sanitization, so its answers would give clients its weights \
             (docs/privacy.md): train or import it with --sanitize, or serve it with --sanitize=false"
        )));
    }
    let mut client_part = ClientPart::of(&model);
    // A server that does not sanitize tells its clients not to send a public key.
    client_part.spec.sanitized &= options.sanitize;
    let client_part = client_part.to_bytes()?;
    let set = compiled.plan().parameters.set();
    let n = set.params.polynomial_size.0;
    let coefficients = options.max_samples.saturating_mul(compiled.inputs_per_sample()).div_ceil(n).max(1) * n;
    let derived_run = coefficients.saturating_mul(WIRE_BYTES_PER_COEFFICIENT).saturating_add(BODY_SLACK);
    let leveled_key = compiled.leveled_key().map(Arc::new);
    let derived_keys = if leveled_key.is_some() {
        LEVELED_KEY_BODY
    } else {
        let compressed = usize::try_from(set.compressed_key_bytes()).unwrap_or(usize::MAX);
        (compressed / 8).saturating_mul(WIRE_BYTES_PER_COEFFICIENT).saturating_add(BODY_SLACK)
    };
    let cap = options.max_body_bytes.unwrap_or(usize::MAX);
    let derived_public_key =
        set.big_lwe_dimension().saturating_mul(WIRE_BYTES_PER_COEFFICIENT).saturating_add(BODY_SLACK);
    let served = Served {
        client_part,
        leveled_key,
        keys_body_limit: derived_keys.min(cap),
        run_body_limit: derived_run.min(cap),
        public_key_body_limit: derived_public_key.min(cap),
        expanded_key_bytes: set.evaluation_key_bytes(),
        model,
    };
    Ok((name, Arc::new(served)))
}

/// The router for `models` (name → model) under `options`.
pub fn router(models: Vec<(String, SavedModel)>, options: ServeOptions) -> Result<Router> {
    if options.max_samples == 0 || options.max_concurrent == 0 || options.max_queued == 0 {
        return Err(CliError::Usage("--max-samples, --max-concurrent and --max-queued must be at least 1".into()));
    }
    let location = match &options.key_store {
        Some(url) => KeyLocation::parse(url)?,
        None => KeyLocation::Dir(options.key_dir.clone()),
    };
    let keys = KeyStore::open(&location, options.key_memory_bytes, options.key_disk_bytes)?;
    let public_keys = options
        .sanitize
        .then(|| {
            KeyStore::open(
                &location.child("public"),
                options.key_memory_bytes / PUBLIC_KEY_QUOTA_SHARE,
                options.key_disk_bytes / PUBLIC_KEY_QUOTA_SHARE,
            )
        })
        .transpose()?;
    let models = models
        .into_iter()
        .map(|(name, model)| served_model(name, model, &options))
        .collect::<Result<HashMap<_, _>>>()?;
    let token_digest = options.token.as_ref().map(|t| Sha256::digest(t.trim().as_bytes()).into());
    let state = Arc::new(AppState {
        models,
        keys,
        public_keys,
        admitted: Arc::new(Semaphore::new(options.max_queued)),
        evaluating: Arc::new(Semaphore::new(options.max_concurrent)),
        token_digest,
        options,
    });
    let expensive = Router::new()
        .route("/models/{name}/keys", post(upload_key))
        .route("/models/{name}/public_key", post(upload_public_key))
        .route("/models/{name}/run", post(run))
        .layer(middleware::from_fn_with_state(state.clone(), admit));
    let timeout = state.options.request_timeout;
    Ok(Router::new()
        .route("/models", get(list))
        .route("/models/{name}/client", get(client))
        .merge(expensive)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/health", get(health))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(middleware::map_response_with_state(state.clone(), explain_timeout))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(describe_panic))
        .with_state(state))
}

/// The exposure rule of `fheml serve`: a loopback address serves as asked; any other address
/// (reachable from other machines) needs a bearer token and TLS, or an explicit opt-out for
/// each (`--insecure-no-auth`, `--insecure-no-tls`) saying a proxy in front does that job.
pub fn check_exposure(
    addr: SocketAddr,
    token: bool,
    insecure_no_auth: bool,
    tls: bool,
    insecure_no_tls: bool,
) -> Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !token && !insecure_no_auth {
        missing.push(
            "--token-file FILE (clients send it with --token-file), or --insecure-no-auth behind a proxy that \
             authenticates",
        );
    }
    if !tls && !insecure_no_tls {
        missing.push(
            "--tls-cert and --tls-key (clients trust the certificate, or its CA with --ca-cert), or \
             --insecure-no-tls behind a proxy that terminates TLS",
        );
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(CliError::Usage(format!("{addr} is reachable from other machines: pass {}", missing.join("; and "))))
}

/// A certificate chain and its private key, PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate.
    pub key: PathBuf,
}

/// Serves until Ctrl-C (or until `shutdown` resolves), over TLS when `tls` is given.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    tls: Option<TlsFiles>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let Some(tls) = tls else {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::Usage(format!("cannot bind {addr}: {e}")))?;
        let local = listener.local_addr().map_err(|e| CliError::Usage(e.to_string()))?;
        ready(local);
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| CliError::Usage(format!("server error: {e}")));
    };
    let config = tls_config(&tls).await?;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| CliError::Usage(format!("cannot bind {addr}: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| CliError::Usage(e.to_string()))?;
    let local = listener.local_addr().map_err(|e| CliError::Usage(e.to_string()))?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    // The acceptor gives up on a TLS handshake after 10 s (axum-server's default), so idle
    // half-open connections do not pile up.
    let server = axum_server::from_tcp_rustls(listener, config).handle(handle);
    ready(local);
    server.serve(router.into_make_service()).await.map_err(|e| CliError::Usage(format!("server error: {e}")))
}

/// Largest certificate chain or key file read (a chain of a few certificates is a few KiB).
const TLS_FILE_BYTES: usize = 1 << 20;

/// The rustls configuration for `tls`: TLS 1.2 and 1.3 with ring's cipher suites, HTTP/1.1
/// and HTTP/2 offered by ALPN, no client certificates. Refuses, naming the file, a chain
/// without a certificate, a key file without exactly one private key, or a key that does
/// not match the leaf certificate.
async fn tls_config(tls: &TlsFiles) -> Result<axum_server::tls_rustls::RustlsConfig> {
    // rustls needs one process-wide crypto provider; ring is the one compiled in. An
    // error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = crate::model_file::read_limited(&tls.cert, TLS_FILE_BYTES)?;
    let key = crate::model_file::read_limited(&tls.key, TLS_FILE_BYTES)?;
    if !String::from_utf8_lossy(&cert).contains("-----BEGIN CERTIFICATE-----") {
        return Err(CliError::Data {
            path: tls.cert.display().to_string(),
            detail: "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into(),
        });
    }
    axum_server::tls_rustls::RustlsConfig::from_pem(cert, key).await.map_err(|e| {
        CliError::Usage(format!("cannot serve TLS with {} and {}: {e}", tls.cert.display(), tls.key.display()))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{ApiError, MAX_MESSAGE_BYTES, check_exposure};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn error_answers_are_one_bounded_line() {
        let long = format!("bad value {}\nsecond line é", "9".repeat(1000));
        let response = ApiError::new(StatusCode::BAD_REQUEST, long).into_response();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.len() <= MAX_MESSAGE_BYTES + 1 && text.ends_with("...\n"), "{text}");
        assert_eq!(text.lines().count(), 1);
        let short = ApiError::new(StatusCode::NOT_FOUND, "no model named `x`").into_response();
        let body = short.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"no model named `x`\n");
    }

    #[test]
    fn loopback_serves_as_asked_other_addresses_need_token_and_tls_or_opt_outs() {
        let local = "127.0.0.1:8080".parse().unwrap();
        let local6 = "[::1]:8080".parse().unwrap();
        let any = "0.0.0.0:8080".parse().unwrap();
        assert!(check_exposure(local, false, false, false, false).is_ok());
        assert!(check_exposure(local6, false, false, false, false).is_ok());
        let both = check_exposure(any, false, false, false, false).unwrap_err().to_string();
        assert!(both.contains("--token-file") && both.contains("--tls-cert"), "{both}");
        let no_tls = check_exposure(any, true, false, false, false).unwrap_err().to_string();
        assert!(!no_tls.contains("--token-file") && no_tls.contains("--insecure-no-tls"), "{no_tls}");
        let no_token = check_exposure(any, false, false, true, false).unwrap_err().to_string();
        assert!(no_token.contains("--insecure-no-auth") && !no_token.contains("--tls-cert"), "{no_token}");
        assert!(check_exposure(any, true, false, true, false).is_ok());
        assert!(check_exposure(any, false, true, false, true).is_ok());
        assert!(check_exposure(any, true, false, false, true).is_ok());
    }
}
