//! The file-based deployment flow: `export-client`, `keygen`, `encrypt`, `run` and `decrypt`.

use crate::*;

/// The arguments of `export-client`.
#[derive(clap::Args)]
pub struct ExportClientArgs {
    /// Model file.
    #[arg(value_name = "MODEL.fheml")]
    model: PathBuf,
    /// Output client file.
    #[arg(long)]
    out: PathBuf,
}

impl ExportClientArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let ExportClientArgs { model, out } = self;
        let saved = SavedModel::load(&model)?;
        if std::fs::canonicalize(&out).is_ok_and(|o| std::fs::canonicalize(&model).is_ok_and(|m| m == o)) {
            return Err(CliError::Usage(format!("--out {} would replace the model file", out.display())));
        }
        let bytes = ClientPart::of(&saved).to_bytes()?;
        write_atomically(&out, &bytes)?;
        say!(
            "wrote {} ({} bytes): the client part of {} (fingerprint {}), without its weights; keygen, encrypt \
             and decrypt take it in place of the model file",
            out.display(),
            bytes.len(),
            model.display(),
            saved.fhe.compiled().fingerprint().short()
        );
        Ok(())
    }
}

/// The arguments of `keygen`.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Model file, or the client file `fheml export-client` writes from it.
    #[arg(long)]
    model: PathBuf,
    /// Directory for client.key, eval.key (and public.key).
    #[arg(long)]
    out_dir: PathBuf,
    /// Replace keys already in the directory (answers encrypted for the old key can then
    /// no longer be decrypted).
    #[arg(long)]
    force: bool,
}

impl KeygenArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let KeygenArgs { model, out_dir, force } = self;
        let part = ClientPart::load(&model)?;
        for existing in ["client.key", "eval.key", "public.key"].map(|f| out_dir.join(f)) {
            if existing.exists() && !force {
                return Err(CliError::Usage(format!(
                    "{} exists; pass --force to replace it (answers encrypted under the old key could no longer be decrypted)",
                    existing.display()
                )));
            }
        }
        std::fs::create_dir_all(&out_dir).map_err(|e| CliError::io(&out_dir, e))?;
        let spec = &part.spec;
        let (client_key, eval_key) = spec.keygen_compressed();
        model_file::write_secret_atomically(&out_dir.join("client.key"), &client_key.to_bytes()?)?;
        write_atomically(&out_dir.join("eval.key"), &eval_key.to_bytes()?)?;
        if spec.sanitized {
            write_atomically(&out_dir.join("public.key"), &spec.public_key(&client_key)?.to_bytes()?)?;
            say!(
                "wrote {0}/client.key (keep it secret), {0}/eval.key and {0}/public.key (send both to the server)",
                out_dir.display()
            );
        } else {
            say!("wrote {0}/client.key (keep it secret) and {0}/eval.key (send it to the server)", out_dir.display());
        }
        Ok(())
    }
}

/// The arguments of `encrypt`.
#[derive(clap::Args)]
pub struct EncryptArgs {
    /// Model file, or the client file `fheml export-client` writes from it.
    #[arg(long)]
    model: PathBuf,
    /// Client key.
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Drop columns the model does not use instead of refusing them.
    #[arg(long)]
    ignore_extra: bool,
    /// Encrypted query file.
    #[arg(long)]
    out: PathBuf,
}

impl EncryptArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let EncryptArgs { model, key, data, ignore_extra, out } = self;
        let part = ClientPart::load(&model)?;
        let client_key = ClientKey::from_bytes(&read_limited(&key, limits::KEY_BYTES)?, &part.spec.fingerprint)?;
        let x = data.select(&part.schema, false, ignore_extra, None)?.x;
        let inputs = x.rows().into_iter().map(|row| part.encode(&row.to_vec())).collect::<Result<Vec<_>>>()?;
        let query = part.spec.encrypt(&client_key, &inputs)?;
        write_atomically(&out, &query.to_bytes()?)?;
        say!("encrypted {} rows into {}", x.nrows(), out.display());
        Ok(())
    }
}

/// The arguments of `run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Model file.
    #[arg(long)]
    model: PathBuf,
    /// Evaluation key.
    #[arg(long)]
    eval_key: PathBuf,
    /// The client's public key (keygen's public.key): sanitizes the answer, as
    /// `fheml serve` does. Needed for a model compiled with sanitization.
    #[arg(long)]
    public_key: Option<PathBuf>,
    /// Answer a model compiled with sanitization without sanitizing (its answer then
    /// gives the client the model's weights).
    #[arg(long, conflicts_with = "public_key")]
    no_sanitize: bool,
    /// Encrypted query.
    #[arg(long = "in")]
    input: PathBuf,
    /// Encrypted answer file.
    #[arg(long)]
    out: PathBuf,
}

impl RunArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let RunArgs { model, eval_key, public_key, no_sanitize, input, out } = self;
        let saved = SavedModel::load(&model)?;
        let compiled = saved.fhe.compiled();
        let fp = compiled.fingerprint();
        let sanitizer = match public_key {
            Some(path) => {
                let public = PublicKey::from_bytes(&read_limited(&path, sanitize::PUBLIC_KEY_BYTES)?, &fp)?;
                Some(compiled.sanitizer(&public)?)
            }
            None if compiled.plan().sanitization.is_some() && !no_sanitize => {
                return Err(CliError::Usage(
                    "this model sanitizes its answers: pass the client's public key (--public-key, keygen's \
                     public.key), or --no-sanitize"
                        .into(),
                ));
            }
            None => None,
        };
        let key =
            CompressedEvaluationKey::from_bytes_conformant(&read_limited(&eval_key, limits::KEY_BYTES)?, compiled)?;
        let key = key.decompress();
        let query = EncryptedInputs::from_bytes_conformant(&read_limited(&input, limits::CIPHERTEXT_BYTES)?, compiled)?;
        let sanitization = sanitizer.as_ref().map_or(Sanitization::Off, Sanitization::On);
        let answer = compiled.run_with(&key, &query, sanitization)?;
        write_atomically(&out, &answer.to_bytes()?)?;
        say!("evaluated {} encrypted rows into {}", query.len(), out.display());
        Ok(())
    }
}

/// The arguments of `decrypt`.
#[derive(clap::Args)]
pub struct DecryptArgs {
    /// Model file, or the client file `fheml export-client` writes from it.
    #[arg(long)]
    model: PathBuf,
    /// Client key.
    #[arg(long)]
    key: PathBuf,
    /// Encrypted answer.
    #[arg(long = "in")]
    input: PathBuf,
    #[command(flatten)]
    print: PrintArgs,
}

impl DecryptArgs {
    /// Runs the command.
    pub fn run(self) -> Result<()> {
        let DecryptArgs { model, key, input, print } = self;
        let part = ClientPart::load(&model)?;
        let fp = &part.spec.fingerprint;
        let client_key = ClientKey::from_bytes(&read_limited(&key, limits::KEY_BYTES)?, fp)?;
        let answer = EncryptedOutputs::from_bytes(&read_limited(&input, limits::CIPHERTEXT_BYTES)?, fp)?;
        let outputs = part.spec.decrypt(&client_key, &answer)?;
        let predictions = outputs.iter().map(|o| part.decode(o)).collect::<Result<Vec<_>>>()?;
        print_predictions(&predictions, &part.schema, &part.task, &print)
    }
}
