//! `fheml quickstart`: the whole pipeline on the embedded breast-cancer dataset.

use fheml_fhe_runtime::Mode;

use crate::data::embedded;
use crate::error::{Error as CliError, Result};
use crate::eval::evaluate;
use crate::model_file::{TrainOptions, train};
use crate::output::say;

/// Rows run under encryption per model.
const ENCRYPTED_ROWS: usize = 5;

pub fn run() -> Result<()> {
    let (train_set, test_set) = embedded("breast_cancer")?;
    let y = test_set.y.as_ref().ok_or_else(|| CliError::Usage("embedded dataset has no target".into()))?;
    say!(
        "breast cancer (embedded): {} training rows, {} test rows, {} features; p_error 2^-40 per lookup\n",
        train_set.x.nrows(),
        test_set.x.nrows(),
        train_set.x.ncols()
    );
    say!(
        "{:<10} {:>8} {:>10} {:>14} {:>8} {:>10} {:>12} {:>12}",
        "model",
        "float",
        "quantized",
        "fhe (rows)",
        "agree",
        "PBS/sample",
        "keygen s",
        "ms/sample"
    );
    let families = [
        ("logistic", vec![]),
        ("tree", vec![("max_depth".to_string(), "5".to_string())]),
        ("mlp", vec![("hidden".to_string(), "16".to_string())]),
    ];
    for (name, settings) in families {
        let options = TrainOptions::defaults(name, &settings);
        let model = train(&train_set, &options)?;
        let r = evaluate(&model, test_set.x.view(), y, Mode::Execute, Some(ENCRYPTED_ROWS), false)?;
        say!(
            "{:<10} {:>8.3} {:>10.3} {:>9.3} ({:>2}) {:>7.0}% {:>10} {:>12.2} {:>12.3}",
            name,
            r.float,
            r.quantized,
            r.score,
            r.rows,
            100.0 * r.agree_with_clear,
            r.pbs_per_sample,
            r.keygen_s,
            1e3 * r.latency_s
        );
    }
    say!(
        "\nfhe = real TFHE (encrypt, evaluate on ciphertexts, decrypt); agree = same prediction as the clear integer model"
    );
    Ok(())
}
