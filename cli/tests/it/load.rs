//! A bounded load test of `fheml serve`: concurrent honest clients beside crafted hostile
//! requests. Every hostile request gets a 4xx, every honest answer decrypts to the Clear
//! predictions, the key store stays within its quotas, the server is still up at the end,
//! and its peak resident memory stays under a stated cap. Small on purpose (a depth-2 tree
//! with one bootstrap per sample and a linear model): it runs in seconds on 2 cores.
//! The figures it prints are recorded in RELIABILITY.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use fheml_fhe_runtime::{Fingerprint, Kind, Parameters};
use serde::{Deserialize, Serialize};
use tfhe::core_crypto::prelude::{
    CiphertextModulus, LweDimension, PolynomialSize, SeededGlweCiphertextList, SeededGlweCiphertextListOwned,
};

use crate::{Scratch, json, ok, s};

/// Peak resident memory the server may reach under this test: the key memory quota
/// (3.5 expanded tree keys), plus, for each of the two evaluation turns, a key being
/// expanded (its standard form and its Fourier form side by side, about twice its final
/// size), plus 128 MiB for the process (about 64 MiB), buffers and the admitted bodies
/// (eight, at most one compressed key or `--max-samples` rows each).
fn peak_rss_cap_kib(expanded_tree_key: u64) -> u64 {
    (expanded_tree_key * 7 / 2 + 2 * 2 * expanded_tree_key + (128 << 20)) / 1024
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The layouts of the runtime's envelopes, to craft hostile bodies from honest ones.
#[derive(Serialize, Deserialize)]
struct Inputs {
    fingerprint: Fingerprint,
    samples: usize,
    #[serde(with = "fheml_fhe_runtime::versioned")]
    packed: SeededGlweCiphertextListOwned<u64>,
    #[serde(with = "fheml_fhe_runtime::versioned")]
    small: Option<SeededGlweCiphertextListOwned<u64>>,
}

#[derive(Serialize, Deserialize)]
struct CompressedKey {
    fingerprint: Fingerprint,
    #[serde(with = "fheml_fhe_runtime::versioned")]
    key: Option<tfhe::shortint::CompressedServerKey>,
}

#[derive(Serialize, Deserialize)]
struct SecretKey {
    fingerprint: Fingerprint,
    parameter_set: Parameters,
    #[serde(with = "fheml_fhe_runtime::versioned")]
    key: tfhe::shortint::ClientKey,
}

/// A crafted request: what it tries, path, bearer token, body, the status it must get.
type Hostile<'a> = (&'a str, String, Option<&'a str>, Vec<u8>, u16);

/// One HTTP/1.1 request with a binary body; the status and the body of the answer.
fn post(addr: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    // The server may answer (413, 401) and close before reading a large body: send it from
    // another thread while this one reads, so the answer is read before the reset that
    // writing to a closed connection provokes.
    let mut writer = stream.try_clone().unwrap();
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&message);
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = sender.join();
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer.split_whitespace().nth(1).unwrap_or("0").parse().unwrap();
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

fn get(addr: &str, path: &str, token: Option<&str>) -> u16 {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_whitespace().nth(1).unwrap_or("0").parse().unwrap()
}

/// An error answer: one line, short, and nothing of the server's insides (panic text, source
/// locations, the server's folders, Rust paths of internal types).
fn assert_clean(what: &str, message: &str, scratch: &str) {
    assert!(message.ends_with('\n') && message.lines().count() == 1, "{what}: one line, got {message:?}");
    assert!(message.len() <= 400, "{what}: {} bytes: {message}", message.len());
    for internal in ["panicked", ".rs:", "RUST_BACKTRACE", scratch, "fheml_", "src/", "::"] {
        assert!(!message.contains(internal), "{what}: `{internal}` in {message:?}");
    }
}

/// `honest` (an envelope) with a few bytes of its payload edited, resealed with a valid
/// length and checksum. Edits land past the fingerprint, mostly outside the runs of 64-bit
/// coefficients (bincode marker 253 every 9 bytes), where lengths, sizes and seeds are.
fn mutate_resealed(honest: &[u8], seed: u64) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut payload = honest[80..].to_vec();
    let mut structural = Vec::new();
    let mut i = 32;
    while i < payload.len() {
        let unit = payload[i] == 253 && (payload.get(i + 9) == Some(&253) || (i >= 9 && payload[i - 9] == 253));
        if unit && i + 9 <= payload.len() {
            i += 9;
        } else {
            structural.push(i);
            i += 1;
        }
    }
    for _ in 0..1 + next() % 3 {
        let at = structural[next() as usize % structural.len()].min(payload.len() - 1);
        match next() % 4 {
            0 => payload[at] = next() as u8,
            1 => payload[at] = 251 + (next() % 5) as u8,
            2 => payload[at] = (next() % 4) as u8,
            _ => payload.truncate(at),
        }
    }
    let mut out = honest[..40].to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn seal_inputs(value: &Inputs) -> Vec<u8> {
    fheml_fhe_runtime::seal(Kind::EncryptedInputs, &value.fingerprint, value).unwrap()
}

fn seal_key(value: &CompressedKey) -> Vec<u8> {
    fheml_fhe_runtime::seal(Kind::CompressedEvaluationKey, &value.fingerprint, value).unwrap()
}

fn open<T: serde::de::DeserializeOwned>(bytes: &[u8], kind: Kind) -> T {
    fheml_fhe_runtime::open(bytes, kind, None, 1 << 30).unwrap()
}

#[test]
fn load_with_hostile_requests_stays_bounded_and_correct() {
    let started = std::time::Instant::now();
    let dir = Scratch::new("load");
    let data = dir.path("data");
    ok(&["dataset", "--name", "iris", "--out-dir", s(&data)]);
    let (train, test) = (data.join("iris_train.csv"), data.join("iris_test.csv"));
    let tree = dir.path("tree.fheml");
    let linear = dir.path("linear.fheml");
    ok(&["train", "--model", "tree", "--data", s(&train), "--set", "max_depth=2", "--n-bits", "3", "--out", s(&tree)]);
    ok(&["train", "--model", "logistic", "--data", s(&train), "--out", s(&linear)]);
    let clear_tree = ok(&["predict", "--model", s(&tree), "--data", s(&test)]);
    let clear_linear = ok(&["predict", "--model", s(&linear), "--data", s(&test)]);

    // Honest keys and a batch, made with the file commands, to craft hostile bodies from.
    let keys = dir.path("keys");
    ok(&["keygen", "--model", s(&tree), "--out-dir", s(&keys)]);
    // One expanded key of the tree's parameter set, as `fheml inspect` reports it, and one
    // compressed key, as uploaded.
    let expanded_tree_key = json(&["inspect", "--json", s(&tree)])["expanded_key_bytes"].as_u64().unwrap();
    let compressed_tree_key = std::fs::metadata(keys.join("eval.key")).unwrap().len();
    let peak_cap_kib = peak_rss_cap_kib(expanded_tree_key);
    let query = dir.path("q.bin");
    let sixteen = dir.path("sixteen.csv");
    let text = std::fs::read_to_string(&test).unwrap();
    std::fs::write(&sixteen, text.lines().take(17).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    ok(&[
        "encrypt",
        "--model",
        s(&tree),
        "--key",
        s(&keys.join("client.key")),
        "--data",
        s(&sixteen),
        "--out",
        s(&query),
    ]);

    // An honest batch for the linear model too, to mutate.
    let linear_keys = dir.path("linear-keys");
    ok(&["keygen", "--model", s(&linear), "--out-dir", s(&linear_keys)]);
    let linear_query = dir.path("lq.bin");
    ok(&[
        "encrypt",
        "--model",
        s(&linear),
        "--key",
        s(&linear_keys.join("client.key")),
        "--data",
        s(&sixteen),
        "--out",
        s(&linear_query),
    ]);

    let token_file = dir.path("token");
    std::fs::write(&token_file, "load-test-token\n").unwrap();
    let token = Some("load-test-token");
    let server_keys = dir.path("server-keys");
    // Three tree keys fit each quota; a fourth evicts the least recently used.
    let memory_quota = (expanded_tree_key * 7 / 2).to_string();
    let disk_quota = (compressed_tree_key * 7 / 2).to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fheml"))
        .args([
            "serve",
            "--model",
            s(&tree),
            "--model",
            s(&linear),
            "--addr",
            "127.0.0.1:0",
            "--key-dir",
            s(&server_keys),
            "--token-file",
            s(&token_file),
            "--max-samples",
            "16",
            "--max-concurrent",
            "2",
            "--max-queued",
            "8",
            "--key-memory-bytes",
            &memory_quota,
            "--key-disk-bytes",
            &disk_quota,
            // Bounds under load, on models compiled without sanitization (tests/it/serve.rs
            // covers sanitized serving).
            "--sanitize=false",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let server = Server(child);
    let url = format!("http://{addr}");

    // Hostile bodies, crafted from honest ones.
    let honest_query = std::fs::read(&query).unwrap();
    let honest = || open::<Inputs>(&honest_query, Kind::EncryptedInputs);
    let with_list = |samples: usize, list: SeededGlweCiphertextListOwned<u64>| {
        seal_inputs(&Inputs { fingerprint: honest().fingerprint, samples, packed: list, small: honest().small })
    };
    // The tree's thermometer bits are small-key LWE samples: their list is checked too.
    let honest_small = honest().small.expect("tree inputs under the small key");
    let with_small = |data: Vec<u64>, modulus: CiphertextModulus<u64>| {
        let small = SeededGlweCiphertextList::from_container(
            data,
            honest_small.glwe_size(),
            honest_small.polynomial_size(),
            honest_small.compression_seed(),
            modulus,
        );
        seal_inputs(&Inputs { small: Some(small), ..honest() })
    };
    let small_data = honest_small.as_ref().to_vec();
    let relist = |data: Vec<u64>, poly: usize, modulus: CiphertextModulus<u64>| {
        let p = honest().packed;
        SeededGlweCiphertextList::from_container(
            data,
            p.glwe_size(),
            PolynomialSize(poly),
            p.compression_seed(),
            modulus,
        )
    };
    let p = honest().packed;
    let (n, data) = (p.polynomial_size().0, p.as_ref().to_vec());
    let native = p.ciphertext_modulus();
    let mut twice = data.clone();
    twice.extend_from_slice(&data);
    let secret: SecretKey = open(&std::fs::read(keys.join("client.key")).unwrap(), Kind::ClientKey);
    // A key of the model's parameter set but for a smaller LWE dimension: a conformant
    // envelope for the right model, the wrong dimensions inside.
    let mut smaller = secret.parameter_set.set().params;
    smaller.lwe_dimension = LweDimension(smaller.lwe_dimension.0 - 16);
    let wrong_dimension = seal_key(&CompressedKey {
        fingerprint: secret.fingerprint,
        key: Some(tfhe::shortint::CompressedServerKey::new(&tfhe::shortint::ClientKey::new(smaller))),
    });
    let no_bootstrapping_key = seal_key(&CompressedKey { fingerprint: secret.fingerprint, key: None });
    let honest_key = std::fs::read(keys.join("eval.key")).unwrap();
    let mut random = vec![0u8; 20_000];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let unknown_key = format!("/models/tree/run?key_id={}", "ab".repeat(32));
    let hostile: Vec<Hostile> = vec![
        ("no token", "/models/tree/run".into(), None, honest_query.clone(), 401),
        ("wrong token", "/models/tree/keys".into(), Some("guess"), honest_key.clone(), 401),
        ("a million samples claimed", unknown_key.clone(), token, with_list(1_000_000, honest().packed), 413),
        ("17 samples, over --max-samples", unknown_key.clone(), token, with_list(17, honest().packed), 413),
        ("count does not match the samples", unknown_key.clone(), token, with_list(16, relist(twice, n, native)), 400),
        (
            "modulus 2^32",
            unknown_key.clone(),
            token,
            with_list(16, relist(data.clone(), n, CiphertextModulus::try_new_power_of_2(32).unwrap())),
            400,
        ),
        ("polynomial size N/2", unknown_key.clone(), token, with_list(16, relist(data.clone(), n / 2, native)), 400),
        (
            "small-key coefficients missing",
            unknown_key.clone(),
            token,
            with_small(small_data[..small_data.len() - honest_small.polynomial_size().0].to_vec(), native),
            400,
        ),
        (
            "small-key modulus 2^32",
            unknown_key.clone(),
            token,
            with_small(small_data.clone(), CiphertextModulus::try_new_power_of_2(32).unwrap()),
            400,
        ),
        ("random bytes to /run", "/models/linear/run".into(), token, random.clone(), 400),
        ("random bytes to /keys", "/models/tree/keys".into(), token, random.clone(), 400),
        ("oversized /run body", "/models/linear/run".into(), token, vec![0u8; 3 << 20], 413),
        ("oversized /keys body", "/models/tree/keys".into(), token, vec![0u8; 13 << 20], 413),
        ("wrong-dimension key", "/models/tree/keys".into(), token, wrong_dimension, 400),
        ("key without bootstrapping key", "/models/tree/keys".into(), token, no_bootstrapping_key, 400),
        ("a key for a model without lookups", "/models/linear/keys".into(), token, honest_key.clone(), 400),
        ("a tree batch for the linear model", "/models/linear/run".into(), token, honest_query.clone(), 409),
        ("unknown key id", unknown_key.clone(), token, honest_query.clone(), 404),
        ("malformed key id", "/models/tree/run?key_id=../../etc".into(), token, honest_query.clone(), 400),
    ];

    // Honest load: three tree clients (two rounds each, keeping their keys) and a linear
    // client, while the hostile requests are sent three times over.
    let honest_threads: Vec<_> = (0..4)
        .map(|i| {
            let (url, test, token_file) = (url.clone(), test.clone(), token_file.clone());
            let client_keys = dir.path(&format!("client-{i}"));
            let (name, rounds) = if i < 3 { ("tree", 2) } else { ("linear", 4) };
            std::thread::spawn(move || {
                (0..rounds)
                    .map(|_| {
                        let answer = ok(&[
                            "client",
                            "--url",
                            &url,
                            "--name",
                            name,
                            "--data",
                            s(&test),
                            "--key-dir",
                            s(&client_keys),
                            "--token-file",
                            s(&token_file),
                            "--batch-rows",
                            "16",
                        ]);
                        (name, answer)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let scratch = dir.path("");
    let scratch = s(&scratch).trim_end_matches('/').to_string();
    let mut refused = 0;
    for round in 0..3 {
        for (what, path, token, body, expected) in &hostile {
            let (status, message) = post(&addr, path, *token, body);
            assert_eq!(status, *expected, "round {round}, {what}: {message}");
            assert_clean(what, &message, &scratch);
            refused += 1;
        }
    }
    // Mutated honest batches (structural bytes edited, envelope resealed with a valid
    // checksum, so they reach the decoders): each is evaluated (200) or refused with a 4xx,
    // never a 5xx, and no answer carries server internals.
    let honest_linear = std::fs::read(&linear_query).unwrap();
    let (mut mutated, mut evaluated) = (0, 0);
    for (seed, (path, honest)) in
        [("/models/linear/run".to_string(), &honest_linear), (unknown_key.clone(), &honest_query)]
            .iter()
            .cycle()
            .take(80)
            .enumerate()
    {
        let body = mutate_resealed(honest, seed as u64 + 1);
        let (status, message) = post(&addr, path, token, &body);
        assert!(status == 200 || (400..500).contains(&status), "mutated batch {seed} to {path}: {status} {message}");
        if status == 200 {
            evaluated += 1;
        } else {
            assert_clean("mutated batch", &message, &scratch);
        }
        mutated += 1;
    }
    let mut answers = 0;
    for handle in honest_threads {
        for (name, answer) in handle.join().unwrap() {
            assert_eq!(&answer, if name == "tree" { &clear_tree } else { &clear_linear }, "{name}");
            answers += 1;
        }
    }
    assert_eq!(std::fs::read_dir(&server_keys).unwrap().count(), 3, "only the three honest keys are stored");

    // A fourth key evicts the least recently used one, in memory and on disk; the client
    // whose key went re-uploads it when the server answers 404.
    for i in [3, 0, 1, 2] {
        let answer = ok(&[
            "client",
            "--url",
            &url,
            "--name",
            "tree",
            "--data",
            s(&test),
            "--key-dir",
            s(&dir.path(&format!("client-{i}"))),
            "--token-file",
            s(&token_file),
            "--batch-rows",
            "16",
        ]);
        assert_eq!(answer, clear_tree);
        answers += 1;
        assert!(std::fs::read_dir(&server_keys).unwrap().count() <= 3, "the disk quota holds");
    }

    assert_eq!(get(&addr, "/health", None), 200, "still serving");
    assert_eq!(get(&addr, "/models", None), 401);
    assert_eq!(get(&addr, "/models", token), 200);
    let peak = peak_rss_kib(server.0.id());
    eprintln!(
        "load: {answers} honest answers (30 rows each) all equal to Clear, {refused} hostile requests all 4xx, \
         {mutated} mutated batches 200 ({evaluated}) or 4xx, \
         server peak RSS {:.1} MiB (cap {} MiB), {:.1} s",
        peak as f64 / 1024.0,
        peak_cap_kib / 1024,
        started.elapsed().as_secs_f64()
    );
    assert!(peak < peak_cap_kib, "server peak RSS {peak} KiB over the {peak_cap_kib} KiB cap");
}
