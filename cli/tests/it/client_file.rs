//! `fheml export-client`: the client works from a file without the model's weights.

use sha2::{Digest, Sha256};

use crate::{Scratch, fails, fheml, ok, s, write_iris};

/// The envelope's header: magic, kind, version, fingerprint, length, checksum.
const HEADER: usize = 80;

/// `bytes` with its payload replaced and resealed (valid length and checksum), so that the
/// change reaches the decoder.
fn resealed(bytes: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = bytes[..40].to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// Keys made from the client file, encryption and decryption with it, the server's run
/// with the full model: the same predictions as Clear, for a linear model and a tree.
#[test]
fn client_file_stands_in_for_the_model_on_the_client() {
    let dir = Scratch::new("client-file");
    let (train, test) = write_iris(&dir);
    let tree = ["--model", "tree", "--set", "max_depth=2", "--n-bits", "3"];
    for (name, args) in [("logistic", &["--model", "logistic"][..]), ("tree", &tree[..])] {
        let model = dir.path(&format!("{name}.fheml"));
        ok(&[&["train", "--data", s(&train), "--out", s(&model)], args].concat());
        // Named like a model file: commands tell the two apart by the header.
        let client = dir.path(&format!("{name}-client.fheml"));
        ok(&["export-client", s(&model), "--out", s(&client)]);
        assert!(std::fs::metadata(&client).unwrap().len() < std::fs::metadata(&model).unwrap().len());

        let keys = dir.path(&format!("{name}-keys"));
        ok(&["keygen", "--model", s(&client), "--out-dir", s(&keys)]);
        let client_key = keys.join("client.key");
        let (query, answer) = (dir.path(&format!("{name}-query.bin")), dir.path(&format!("{name}-answer.bin")));
        ok(&["encrypt", "--model", s(&client), "--key", s(&client_key), "--data", s(&test), "--out", s(&query)]);
        let eval_key = keys.join("eval.key");
        ok(&["run", "--model", s(&model), "--eval-key", s(&eval_key), "--in", s(&query), "--out", s(&answer)]);
        let decrypted = ok(&["decrypt", "--model", s(&client), "--key", s(&client_key), "--in", s(&answer)]);
        let clear = ok(&["predict", "--model", s(&model), "--data", s(&test)]);
        assert_eq!(decrypted, clear, "{name}");
        assert_eq!(decrypted.lines().count(), 31, "{name}: a header and 30 rows");
        // The full model decrypts the same answer alike; it encrypts for the same keys.
        assert_eq!(ok(&["decrypt", "--model", s(&model), "--key", s(&client_key), "--in", s(&answer)]), decrypted);
        let query2 = dir.path(&format!("{name}-query2.bin"));
        ok(&["encrypt", "--model", s(&model), "--key", s(&client_key), "--data", s(&test), "--out", s(&query2)]);
        ok(&["run", "--model", s(&model), "--eval-key", s(&eval_key), "--in", s(&query2), "--out", s(&answer)]);
        assert_eq!(ok(&["decrypt", "--model", s(&client), "--key", s(&client_key), "--in", s(&answer)]), clear);

        // The server's commands need the weights: a client file is refused, by name.
        for args in [
            &["run", "--model", s(&client), "--eval-key", s(&eval_key), "--in", s(&query), "--out", s(&answer)][..],
            &["eval", "--model", s(&client), "--data", s(&test)],
            &["predict", "--model", s(&client), "--data", s(&test)],
            &["inspect", s(&client)],
            &["export-client", s(&client), "--out", s(&dir.path("again.client"))],
        ] {
            fails(args, "client file");
        }
    }
    // The client file cannot replace the model it is taken from.
    let model = dir.path("logistic.fheml");
    fails(&["export-client", s(&model), "--out", s(&model)], "would replace the model file");
    // A client file of another model refuses this model's keys and answers.
    let other = dir.path("tree-client.fheml");
    let key = dir.path("logistic-keys").join("client.key");
    fails(
        &["decrypt", "--model", s(&other), "--key", s(&key), "--in", s(&dir.path("logistic-answer.bin"))],
        "another model",
    );
}

/// Truncated, corrupted and crafted client files give a one-line error and a failure
/// status, never a panic.
#[test]
fn damaged_client_files_are_refused() {
    let dir = Scratch::new("client-file-bad");
    let (train, test) = write_iris(&dir);
    let model = dir.path("m.fheml");
    ok(&["train", "--model", "logistic", "--data", s(&train), "--out", s(&model)]);
    let client = dir.path("m.client");
    ok(&["export-client", s(&model), "--out", s(&client)]);
    let keys = dir.path("keys");
    ok(&["keygen", "--model", s(&client), "--out-dir", s(&keys)]);
    let key = keys.join("client.key");
    let bytes = std::fs::read(&client).unwrap();
    let payload = &bytes[HEADER..];

    let mut flipped = bytes.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 0x55;
    let mut version = bytes.clone();
    version[7] = 99;
    let mut lying_length = bytes.clone();
    lying_length[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut grown = payload.to_vec();
    grown.extend_from_slice(&[0xff; 16]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("half", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        ("header", bytes[..30].to_vec(), "truncated"),
        ("empty", Vec::new(), "truncated"),
        ("flipped", flipped, "corrupted"),
        ("version", version, "version 99"),
        ("length", lying_length, "exceeds the limit"),
        ("cut-payload", resealed(&bytes, &payload[..payload.len() / 2]), "client specification"),
        ("trailing", resealed(&bytes, &grown), "client specification"),
    ];
    for (name, damaged, needle) in cases {
        let path = dir.path(&format!("{name}.client"));
        std::fs::write(&path, damaged).unwrap();
        let out = dir.path(&format!("{name}.bin"));
        fails(&["encrypt", "--model", s(&path), "--key", s(&key), "--data", s(&test), "--out", s(&out)], needle);
        assert!(!out.exists(), "{name}: no output left behind");
        fails(&["keygen", "--model", s(&path), "--out-dir", s(&dir.path(&format!("{name}-keys")))], needle);
        let out = fheml(&["decrypt", "--model", s(&path), "--key", s(&key), "--in", s(&out)]);
        assert!(!out.status.success(), "{name}: decrypt accepted a damaged client file");
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1, "{name}: one line");
    }
    // Every single-byte change of the payload, resealed: refused or harmless, never a panic.
    for at in (0..payload.len()).step_by(payload.len().div_ceil(40)) {
        let mut changed = payload.to_vec();
        changed[at] = changed[at].wrapping_add(0x80);
        let path = dir.path("changed.client");
        std::fs::write(&path, resealed(&bytes, &changed)).unwrap();
        let out = fheml(&["keygen", "--model", s(&path), "--out-dir", s(&dir.path("changed-keys")), "--force"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "byte {at}: {err}");
        assert!(out.status.success() || err.lines().count() == 1, "byte {at}: {err}");
    }
}
