//! `fheml serve`: an HTTP server holding compiled models.
//!
//! - `GET  /health` → `ok`
//! - `GET  /models` → the served model names (JSON)
//! - `GET  /models/{name}/client` → the client part (no weights): a sealed envelope
//! - `POST /models/{name}/keys` (body: compressed evaluation key) → `{"key_id": ...}`;
//!   keys are stored on disk under their content hash and loaded once
//! - `POST /models/{name}/run?key_id=...` (body: encrypted inputs) → encrypted outputs
//!
//! Bodies are size-limited; every bad request gets a 4xx with a one-line message, and
//! evaluations run on blocking threads so the server keeps answering.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fheml_fhe_runtime::{CompressedEvaluationKey, EncryptedInputs, EvaluationKey, FheError, limits};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::client_part::ClientPart;
use crate::error::{CliError, Result};
use crate::model_file::SavedModel;

/// Default largest request body: an evaluation key of the large vetted sets fits.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 30;

struct Served {
    model: SavedModel,
    client_part: Vec<u8>,
}

struct AppState {
    models: HashMap<String, Arc<Served>>,
    key_dir: PathBuf,
    keys: Mutex<HashMap<String, Arc<EvaluationKey>>>,
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1 + "\n").into_response()
    }
}

impl From<FheError> for ApiError {
    fn from(e: FheError) -> Self {
        let status = match e {
            FheError::WrongModel { .. } => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

fn served(state: &AppState, name: &str) -> ApiResult<Arc<Served>> {
    state.models.get(name).cloned().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no model named `{name}`")))
}

async fn health() -> &'static str {
    "ok"
}

async fn list(State(state): State<Arc<AppState>>) -> String {
    let names: Vec<&String> = state.models.keys().collect();
    serde_json::to_string(&names).unwrap_or_default()
}

async fn client(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Vec<u8>> {
    Ok(served(&state, &name)?.client_part.clone())
}

async fn upload_key(State(state): State<Arc<AppState>>, Path(name): Path<String>, body: Bytes) -> ApiResult<String> {
    let model = served(&state, &name)?;
    let fp = model.model.fhe.compiled().fingerprint();
    let key_id = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let bytes = body.to_vec();
    let path = state.key_dir.join(format!("{key_id}.key"));
    let key = tokio::task::spawn_blocking(move || -> ApiResult<EvaluationKey> {
        let key = CompressedEvaluationKey::from_bytes(&bytes, &fp)?.decompress();
        if !path.exists() {
            crate::model_file::write_atomically(&path, &bytes)
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        }
        Ok(key)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    if let Ok(mut keys) = state.keys.lock() {
        keys.insert(key_id.clone(), Arc::new(key));
    }
    Ok(format!("{{\"key_id\":\"{key_id}\"}}"))
}

#[derive(Deserialize)]
struct RunQuery {
    key_id: String,
}

fn stored_key(state: &AppState, served: &Served, key_id: &str) -> ApiResult<Arc<EvaluationKey>> {
    if !key_id.chars().all(|c| c.is_ascii_hexdigit()) || key_id.len() != 64 {
        return Err(ApiError(StatusCode::BAD_REQUEST, "key_id must be 64 hex digits".into()));
    }
    if let Some(key) = state.keys.lock().ok().and_then(|k| k.get(key_id).cloned()) {
        return Ok(key);
    }
    let path = state.key_dir.join(format!("{key_id}.key"));
    let bytes = std::fs::read(&path)
        .map_err(|_| ApiError(StatusCode::NOT_FOUND, format!("no evaluation key `{key_id}`; upload it first")))?;
    let key =
        Arc::new(CompressedEvaluationKey::from_bytes(&bytes, &served.model.fhe.compiled().fingerprint())?.decompress());
    if let Ok(mut keys) = state.keys.lock() {
        keys.insert(key_id.to_string(), key.clone());
    }
    Ok(key)
}

async fn run(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<RunQuery>,
    body: Bytes,
) -> ApiResult<Vec<u8>> {
    let model = served(&state, &name)?;
    let key = {
        let (state, model, key_id) = (state.clone(), model.clone(), query.key_id.clone());
        tokio::task::spawn_blocking(move || stored_key(&state, &model, &key_id))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
    };
    tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
        let compiled = model.model.fhe.compiled();
        if body.len() > limits::CIPHERTEXT_BYTES {
            return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, "ciphertext batch too large".into()));
        }
        let inputs = EncryptedInputs::from_bytes(&body, &compiled.fingerprint())?;
        let outputs = compiled.run(&key, &inputs)?;
        Ok(outputs.to_bytes()?)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// The router for `models` (name → model), storing uploaded keys in `key_dir`, refusing
/// bodies over `body_limit` bytes with 413.
pub fn router(models: Vec<(String, SavedModel)>, key_dir: PathBuf, body_limit: usize) -> Result<Router> {
    std::fs::create_dir_all(&key_dir).map_err(|e| CliError::io(&key_dir, e))?;
    let models = models
        .into_iter()
        .map(|(name, model)| {
            let client_part = ClientPart::of(&model).to_bytes()?;
            Ok((name, Arc::new(Served { model, client_part })))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    let state = Arc::new(AppState { models, key_dir, keys: Mutex::new(HashMap::new()) });
    Ok(Router::new()
        .route("/health", get(health))
        .route("/models", get(list))
        .route("/models/{name}/client", get(client))
        .route("/models/{name}/keys", post(upload_key))
        .route("/models/{name}/run", post(run))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state))
}

/// Serves until Ctrl-C (or until `shutdown` resolves).
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| CliError::Usage(format!("cannot bind {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| CliError::Usage(e.to_string()))?;
    ready(local);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| CliError::Usage(format!("server error: {e}")))
}
