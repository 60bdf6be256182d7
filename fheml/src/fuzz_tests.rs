//! Fuzzing of the CLI's decoders on the stable toolchain (see fhe-runtime's
//! `tests/it/fuzz.rs`): proptest-driven mutations of valid model files (resealed with a
//! correct length and checksum, so that each reaches the decoder) and of CSV text. Every
//! case must end in `Ok` or a one-line error, never a panic. `FHEML_FUZZ_CASES` multiplies
//! the case counts (`cargo xtask fuzz`).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::OnceLock;

use fheml_fhe_runtime::Mode;
use ndarray::Array2;
use proptest::prelude::*;
use proptest::sample::Index;
use sha2::{Digest, Sha256};

use crate::client_part::ClientPart;
use crate::data::{CsvOptions, RawTable, Selection, Target};
use crate::model_file::{SavedModel, TrainOptions, train};

/// Cases in `cargo test`, times `FHEML_FUZZ_CASES` (default 1).
fn cases(base: u32) -> u32 {
    let factor = std::env::var("FHEML_FUZZ_CASES").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(1);
    base.saturating_mul(factor.max(1))
}

/// Model files of a linear model and of a tree (trained on iris), the test split's CSV text
/// and one row of features.
struct Fixture {
    models: Vec<Vec<u8>>,
    csv: String,
    row: Vec<f64>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (table, _) = crate::data::embedded("iris").unwrap();
        let depth = [("max_depth".to_string(), "2".to_string())];
        let models = [("logistic", &[][..]), ("tree", &depth[..])]
            .into_iter()
            .map(|(model, settings)| {
                let saved = train(&table, &TrainOptions::defaults(model, settings)).unwrap();
                saved.to_bytes().unwrap()
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("fheml-fuzz-{}", std::process::id()));
        crate::data::export_embedded("iris", &dir).unwrap();
        let csv = std::fs::read_to_string(dir.join("iris_test.csv")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Fixture { models, csv, row: table.x.row(0).to_vec() }
    })
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    /// Sets one byte.
    Set(Index, u8),
    /// A bincode varint marker (251..=255) followed by all-ones: a huge length or count.
    Huge(Index, u8),
    /// Inserts bytes.
    Insert(Index, Vec<u8>),
    /// Removes up to 16 bytes.
    Remove(Index, usize),
    /// Keeps the bytes before a position.
    Truncate(Index),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Edit::Set(i, v)),
        2 => (any::<Index>(), 251u8..=255).prop_map(|(i, m)| Edit::Huge(i, m)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Edit::Insert(i, v)),
        1 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        if bytes.is_empty() {
            return;
        }
        match e {
            Edit::Set(i, v) => {
                let at = i.index(bytes.len());
                bytes[at] = *v;
            }
            Edit::Huge(i, marker) => {
                let at = i.index(bytes.len());
                bytes[at] = *marker;
                let end = (at + 17).min(bytes.len());
                bytes[at + 1..end].fill(0xff);
            }
            Edit::Insert(i, v) => {
                let at = i.index(bytes.len());
                bytes.splice(at..at, v.iter().copied());
            }
            Edit::Remove(i, n) => {
                let at = i.index(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Edit::Truncate(i) => {
                let at = i.index(bytes.len());
                bytes.truncate(at);
            }
        }
    }
}

/// `honest` (an envelope) with its payload edited, resealed with a valid length and checksum.
fn reseal(honest: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut payload = honest[80..].to_vec();
    apply(&mut payload, edits);
    let mut out = honest[..40].to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

/// Runs `f`: a panic fails the case; an error must be one short line.
fn never_panics(what: &str, f: impl FnOnce() -> crate::error::Result<()>) -> std::result::Result<(), TestCaseError> {
    let result = catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let text = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        TestCaseError::fail(format!("{what} panicked: {}", text.unwrap_or_default()))
    })?;
    if let Err(e) = result {
        let text = e.to_string();
        prop_assert!(!text.contains('\n') && text.len() <= 600, "{what}: error not one short line: {text:?}");
    }
    Ok(())
}

#[test]
fn honest_fixtures_load() {
    let f = fixture();
    for bytes in &f.models {
        let model = SavedModel::from_file_bytes(Path::new("model.fheml"), &reseal(bytes, &[])).unwrap();
        let x = Array2::from_shape_vec((1, f.row.len()), f.row.clone()).unwrap();
        model.fhe.predict(x.view(), Mode::Clear).unwrap();
    }
    let raw = RawTable::parse("iris_test.csv", &f.csv, CsvOptions { delimiter: None, no_header: false }).unwrap();
    raw.training_table(Target::Named("target"), &[]).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(600)))]

    /// A model file: decode (which validates the compiled circuit and plan and recomputes
    /// the fingerprint), then what `serve`, `predict` and `export-client` do with it: the
    /// client part, and a clear and a simulated prediction of one row.
    #[test]
    fn mutated_model_files_are_refused_or_used_never_panic(edits in edits(), tree in any::<bool>()) {
        let f = fixture();
        let bytes = reseal(&f.models[usize::from(tree)], &edits);
        never_panics("model file", || {
            let model = SavedModel::from_file_bytes(Path::new("model.fheml"), &bytes)?;
            let part = ClientPart::of(&model);
            ClientPart::from_bytes(&part.to_bytes()?)?;
            let x = Array2::from_shape_vec((1, f.row.len()), f.row.clone()).map_err(|e| crate::error::Error::Usage(e.to_string()))?;
            model.fhe.predict(x.view(), Mode::Clear)?;
            model.fhe.predict(x.view(), Mode::Simulate)?;
            Ok(())
        })?;
    }

    /// A CSV file: parse, then build a training table (one-hot encoding a column) and match
    /// it to a model's columns as scoring does.
    #[test]
    fn mutated_csv_files_are_refused_or_read_never_panic(edits in edits(), no_header in prop::bool::weighted(0.2)) {
        let f = fixture();
        let mut bytes = f.csv.clone().into_bytes();
        apply(&mut bytes, &edits);
        let text = String::from_utf8_lossy(&bytes);
        never_panics("csv", || {
            let raw = RawTable::parse("data.csv", &text, CsvOptions { delimiter: None, no_header })?;
            // The honest file's feature columns: the first is also read as categorical.
            let names: Vec<String> =
                f.csv.lines().next().unwrap_or("").split(',').filter(|n| *n != "target").map(String::from).collect();
            let _ = raw.training_table(Target::Named("target"), &names[..1]);
            let _ = raw.training_table(Target::None, &[]);
            let schema = crate::data::DataSchema::numeric(&names);
            let selection = Selection { target: Some("target"), need_target: false, ignore_extra: true, id: None };
            schema.select(&raw, selection)?;
            Ok(())
        })?;
    }
}
