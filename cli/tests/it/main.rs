//! End-to-end tests of the `fheml` command through files, and its handling of bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod client_file;
mod data;
mod import;
mod load;
mod nn;
mod onnx_ml;
mod serve;

pub(crate) struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("fheml-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn fheml(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fheml")).args(args).output().unwrap()
}

pub(crate) fn ok(args: &[&str]) -> String {
    let out = fheml(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with a one-line error containing `needle`.
pub(crate) fn fails(args: &[&str], needle: &str) {
    let out = fheml(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

/// Writes the embedded breast-cancer data as train/test CSVs (target last).
pub(crate) fn write_dataset(dir: &Scratch) -> (PathBuf, PathBuf) {
    let d = smartcore::dataset::breast_cancer::load_dataset();
    let mut header: Vec<String> = (0..d.num_features).map(|i| format!("f{i}")).collect();
    header.push("target".into());
    let mut train = header.join(",") + "\n";
    let mut test = train.clone();
    for r in 0..d.num_samples {
        let row = &d.data[r * d.num_features..(r + 1) * d.num_features];
        let line = row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",") + &format!(",{}\n", d.target[r]);
        if r % 5 == 0 { test += &line } else { train += &line }
    }
    let (a, b) = (dir.path("train.csv"), dir.path("test.csv"));
    std::fs::write(&a, train).unwrap();
    std::fs::write(&b, test).unwrap();
    (a, b)
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The embedded iris split (4 features, labels 0, 1, 2 in the last column), as `fheml dataset` writes it.
pub(crate) fn write_iris(dir: &Scratch) -> (PathBuf, PathBuf) {
    let out = dir.path("iris");
    ok(&["dataset", "--name", "iris", "--out-dir", s(&out)]);
    (out.join("iris_train.csv"), out.join("iris_test.csv"))
}

/// A command's JSON output.
pub(crate) fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

#[test]
fn files_round_trip_gives_clear_predictions() {
    let dir = Scratch::new("e2e");
    let (train, test) = write_dataset(&dir);
    let model = dir.path("model.fheml");
    ok(&["train", "--model", "logistic", "--data", s(&train), "--out", s(&model)]);
    let eval: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&test),
        "--mode",
        "execute",
        "--limit",
        "5",
        "--json",
    ]))
    .unwrap();
    assert_eq!(eval["agree_with_clear"], 1.0);
    let loose: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&test),
        "--mode",
        "simulate",
        "--p-error",
        "0.001",
        "--json",
    ]))
    .unwrap();
    assert_eq!(loose["p_error"], 0.001);
    assert_eq!(eval["pbs_per_sample"], 0);
    assert!(eval["quantized"].as_f64().unwrap() > 0.9);
    ok(&["inspect", s(&model)]);

    let keys = dir.path("keys");
    ok(&["keygen", "--model", s(&model), "--out-dir", s(&keys)]);
    let (query, answer) = (dir.path("query.bin"), dir.path("answer.bin"));
    let client_key = keys.join("client.key");
    ok(&["encrypt", "--model", s(&model), "--key", s(&client_key), "--data", s(&test), "--out", s(&query)]);
    ok(&["run", "--model", s(&model), "--eval-key", s(&keys.join("eval.key")), "--in", s(&query), "--out", s(&answer)]);
    let decrypted = ok(&["decrypt", "--model", s(&model), "--key", s(&client_key), "--in", s(&answer)]);
    let fhe: Vec<f64> = decrypted.lines().skip(1).map(|l| l.parse().unwrap()).collect();

    let clear: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--model", s(&model), "--data", s(&test), "--json"])).unwrap();
    assert_eq!(fhe.len(), 114);
    // The clear score recomputed from the decrypted predictions equals eval's clear score.
    let truth: Vec<f64> = std::fs::read_to_string(&test)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let accuracy = fhe.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64;
    assert_eq!(accuracy, clear["quantized"].as_f64().unwrap());

    // A key or ciphertext of another model is refused by name, and no output is left behind.
    let other = dir.path("other.fheml");
    ok(&["train", "--model", "ridge", "--data", s(&train), "--out", s(&other)]);
    let stale = dir.path("stale.bin");
    fails(
        &["run", "--model", s(&other), "--eval-key", s(&keys.join("eval.key")), "--in", s(&query), "--out", s(&stale)],
        "another model",
    );
    assert!(!stale.exists());
    fails(&["decrypt", "--model", s(&other), "--key", s(&client_key), "--in", s(&answer)], "another model");

    // Truncated and corrupted files.
    let bytes = std::fs::read(&model).unwrap();
    let truncated = dir.path("truncated.fheml");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    fails(&["inspect", s(&truncated)], "truncated");
    let mut flipped = bytes.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0xff;
    let corrupt = dir.path("corrupt.fheml");
    std::fs::write(&corrupt, flipped).unwrap();
    fails(&["inspect", s(&corrupt)], "corrupted");
    let key_bytes = std::fs::read(&client_key).unwrap();
    let bad_key = dir.path("bad.key");
    std::fs::write(&bad_key, &key_bytes[..100]).unwrap();
    fails(&["decrypt", "--model", s(&model), "--key", s(&bad_key), "--in", s(&answer)], "truncated");
    fails(&["decrypt", "--model", s(&model), "--key", s(&query), "--in", s(&answer)], "not client key");
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = Scratch::new("bad");
    let (train, _) = write_dataset(&dir);
    let out = dir.path("m.fheml");
    let csv = |name: &str, text: &str| {
        let p = dir.path(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ragged = csv("ragged.csv", "a,b,target\n1,2,0\n1,2\n");
    fails(&["train", "--model", "logistic", "--data", s(&ragged), "--out", s(&out)], "line 3");
    let nan = csv("nan.csv", "a,b,target\n1,2,0\nNaN,2,1\n");
    fails(&["train", "--model", "logistic", "--data", s(&nan), "--out", s(&out)], "not finite");
    let inf = csv("inf.csv", "a,b,target\n1,inf,0\n3,2,1\n");
    fails(&["train", "--model", "logistic", "--data", s(&inf), "--out", s(&out)], "not finite");
    let text = csv("text.csv", "a,b,target\n1,x,0\n");
    fails(&["train", "--model", "logistic", "--data", s(&text), "--out", s(&out)], "not a number");
    let empty = csv("empty.csv", "a,b,target\n");
    fails(&["train", "--model", "logistic", "--data", s(&empty), "--out", s(&out)], "no data rows");
    fails(&["train", "--model", "nope", "--data", s(&train), "--out", s(&out)], "unknown model");
    fails(
        &["train", "--model", "logistic", "--data", s(&train), "--set", "depth=3", "--out", s(&out)],
        "unknown option",
    );
    fails(&["train", "--model", "logistic", "--data", s(&train), "--set", "alpha", "--out", s(&out)], "key=value");
    fails(
        &["train", "--model", "logistic", "--data", s(&train), "--target", "zzz", "--out", s(&out)],
        "no target column `zzz`",
    );
    fails(&["train", "--model", "logistic", "--data", s(&dir.path("missing.csv")), "--out", s(&out)], "missing.csv");
    assert!(!out.exists(), "no partial model file");

    ok(&["train", "--model", "logistic", "--data", s(&train), "--out", s(&out)]);
    let narrow = csv("narrow.csv", "a,b,target\n1,2,0\n");
    fails(&["eval", "--model", s(&out), "--data", s(&narrow)], "missing column(s) `f0`");
    fails(&["eval", "--model", s(&out), "--data", s(&train), "--mode", "fast"], "unknown mode");
    fails(&["eval", "--model", s(&out), "--data", s(&train), "--p-error", "2"], "p_error");
}
