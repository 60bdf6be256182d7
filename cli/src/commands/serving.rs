//! `serve` and `client`: the HTTP server and its client.

use crate::*;

/// The arguments of `serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Model files (repeatable).
    #[arg(long = "model", required = true)]
    models: Vec<PathBuf>,
    /// Address to listen on. Any address but loopback needs --token-file (or
    /// --insecure-no-auth) and --tls-cert/--tls-key (or --insecure-no-tls).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Directory for uploaded evaluation keys, owned by this server (--key-disk-bytes
    /// applies); unused with --key-store.
    #[arg(long, default_value = "fheml-keys")]
    key_dir: PathBuf,
    /// A key store shared by replicas, instead of --key-dir: file:///path (or a path), or
    /// with the cloud-keys feature s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix (credentials from the environment). Keys uploaded to one
    /// replica serve requests on all; none is evicted from it (--key-disk-bytes does not
    /// apply); --key-memory-bytes bounds each replica's cache.
    #[arg(long, value_name = "URL")]
    key_store: Option<String>,
    /// File holding the bearer token every request but /health must carry.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve a non-loopback address without a token (behind a proxy that authenticates).
    #[arg(long)]
    insecure_no_auth: bool,
    /// Serve a non-loopback address over plain HTTP (behind a proxy or mesh that
    /// terminates TLS on the same host or a private link).
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_no_tls: bool,
    /// Most samples (rows) in one /run request; the /run body limit follows from it.
    #[arg(long, default_value_t = serve::DEFAULT_MAX_SAMPLES)]
    max_samples: usize,
    /// Evaluations and key expansions running at once (each uses every core).
    #[arg(long, default_value_t = 2)]
    max_concurrent: usize,
    /// Requests to /run and /keys admitted at once, running or waiting; more get 503.
    #[arg(long, default_value_t = 32)]
    max_queued: usize,
    /// Deadline of one request in seconds, upload included; later ones get 408.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Bytes of expanded evaluation keys kept in memory (least recently used evicted).
    #[arg(long, default_value_t = 8 << 30)]
    key_memory_bytes: u64,
    /// Bytes of compressed evaluation keys kept in --key-dir (least recently used evicted;
    /// not applied to a shared --key-store).
    #[arg(long, default_value_t = 32 << 30)]
    key_disk_bytes: u64,
    /// Bytes of expanded inputs one evaluation holds at a time (it works in chunks).
    #[arg(long, default_value_t = 256 << 20)]
    chunk_bytes: usize,
    /// Lowers the body limits derived from each model (never raises them).
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Sanitize every answer with the client's public key, so that answers give nothing of
    /// the weights away (docs/privacy.md). On by default: a model compiled without
    /// sanitization is refused unless `--sanitize=false`.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    sanitize: bool,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM); needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let ServeArgs {
            models,
            addr,
            key_dir,
            key_store,
            token_file,
            insecure_no_auth,
            insecure_no_tls,
            max_samples,
            max_concurrent,
            max_queued,
            timeout_secs,
            key_memory_bytes,
            key_disk_bytes,
            chunk_bytes,
            max_body_bytes,
            sanitize,
            tls_cert,
            tls_key,
        } = self;
        let token = token_file.as_deref().map(read_token).transpose()?;
        let tls = tls_cert.zip(tls_key).map(|(cert, key)| serve::TlsFiles { cert, key });
        serve::check_exposure(addr, token.is_some(), insecure_no_auth, tls.is_some(), insecure_no_tls)?;
        let mut served = Vec::new();
        for path in &models {
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
            served.push((name, SavedModel::load(path)?));
        }
        let names: Vec<String> = served.iter().map(|(n, _)| n.clone()).collect();
        let options = serve::ServeOptions {
            max_samples,
            max_concurrent,
            max_queued,
            request_timeout: std::time::Duration::from_secs(timeout_secs.max(1)),
            key_memory_bytes,
            key_disk_bytes,
            chunk_bytes,
            max_body_bytes,
            token,
            sanitize,
            key_store,
            ..serve::ServeOptions::new(key_dir)
        };
        let router = serve::router(served, options)?;
        let runtime = tokio::runtime::Runtime::new().map_err(|e| CliError::Usage(e.to_string()))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        runtime.block_on(serve::serve(
            router,
            addr,
            tls,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            |local| eprintln!("serving {} on {scheme}://{local} (Ctrl-C to stop)", names.join(", ")),
        ))
    }
}

/// The arguments of `client`.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Served model name (its file stem).
    #[arg(long)]
    name: String,
    #[command(flatten)]
    data: DataArgs,
    /// Drop columns the model does not use instead of refusing them.
    #[arg(long)]
    ignore_extra: bool,
    /// Where the client keeps its keys between runs.
    #[arg(long)]
    key_dir: Option<PathBuf>,
    /// File holding the server's bearer token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Trust the CA certificates in this PEM file for an https:// server instead of the
    /// built-in WebPKI roots (a private CA, or the server's self-signed certificate).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Rows per request: at most the server's --max-samples.
    #[arg(long, default_value_t = serve::DEFAULT_MAX_SAMPLES)]
    batch_rows: usize,
    #[command(flatten)]
    print: PrintArgs,
}

impl ClientArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let ClientArgs { url, name, data, ignore_extra, key_dir, token_file, ca_cert, batch_rows, print } = self;
        let token = token_file.as_deref().map(read_token).transpose()?;
        let ca = ca_cert.as_deref().map(|p| read_limited(p, 1 << 20)).transpose()?;
        let remote = http_client::RemoteModel::connect(&url, &name, key_dir.as_deref(), token, ca.as_deref())?;
        let x = data.select(&remote.part.schema, false, ignore_extra, None)?.x;
        print_predictions(&remote.predict(x.view(), batch_rows)?, &remote.part.schema, &remote.part.task, &print)
    }
}

/// A bearer token from its file: one line, surrounding whitespace ignored, never empty.
fn read_token(path: &std::path::Path) -> Result<String> {
    let text = read_limited(path, 4096)?;
    let token = String::from_utf8(text)
        .map_err(|_| CliError::Usage(format!("{}: the token is not UTF-8 text", path.display())))?
        .trim()
        .to_string();
    if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(CliError::Usage(format!("{}: the token must be one non-empty word", path.display())));
    }
    Ok(token)
}
