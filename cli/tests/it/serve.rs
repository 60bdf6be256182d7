//! The HTTP server on loopback: encrypted predictions equal the file-based ones, bad
//! requests get 4xx answers, concurrent clients are all served correctly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use crate::{Scratch, fails, fheml, ok, s, write_dataset};

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(model: &std::path::Path, keys: &std::path::Path) -> Server {
    spawn(&["serve", "--model", s(model), "--addr", "127.0.0.1:0", "--key-dir", s(keys), "--max-body-bytes", "200000"])
}

/// Starts `fheml serve` with `args`; the server and its address (`host:port`).
fn spawn(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fheml")).args(args).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("://").nth(1).unwrap_or_else(|| panic!("no address in `{line}`"));
    let addr = addr.split_whitespace().next().unwrap().to_string();
    Server(child, addr)
}

/// Whether the keys in `keys` still decrypt `answer` to `expected`.
fn out_matches(keys: &std::path::Path, answer: &std::path::Path, model: &std::path::Path, expected: &str) -> bool {
    ok(&["decrypt", "--model", s(model), "--key", s(&keys.join("client.key")), "--in", s(answer)]) == expected
}

/// One raw HTTP/1.1 request; returns the status code.
fn raw(addr: &str, request: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    // The server may answer (413) and close before reading a large body.
    let _ = stream.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_whitespace().nth(1).unwrap_or("0").parse().unwrap()
}

#[test]
fn server_answers_match_files_and_survive_bad_requests() {
    let dir = Scratch::new("serve");
    let (train, test) = write_dataset(&dir);
    let model = dir.path("cancer.fheml");
    // Compiled for sanitization, which `fheml serve` requires by default.
    ok(&["train", "--model", "logistic", "--data", s(&train), "--out", s(&model), "--sanitize"]);
    let keys = dir.path("keys");
    ok(&["keygen", "--model", s(&model), "--out-dir", s(&keys)]);
    assert!(keys.join("public.key").exists(), "keygen writes the public key of a sanitized model");
    let (query, answer) = (dir.path("q.bin"), dir.path("a.bin"));
    ok(&[
        "encrypt",
        "--model",
        s(&model),
        "--key",
        s(&keys.join("client.key")),
        "--data",
        s(&test),
        "--out",
        s(&query),
    ]);
    let eval_key = keys.join("eval.key");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--model", s(&model), "--eval-key", s(&eval_key)];
        args.extend(["--in", s(&query), "--out", s(&answer)]);
        args.extend(extra);
        fheml(&args)
    };
    // A sanitized model's answer needs the client's public key (or an explicit opt-out).
    let refused = run(&[]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--public-key"));
    let sanitized = run(&["--public-key", s(&keys.join("public.key"))]);
    assert!(sanitized.status.success(), "{}", String::from_utf8_lossy(&sanitized.stderr));
    let expected = ok(&["decrypt", "--model", s(&model), "--key", s(&keys.join("client.key")), "--in", s(&answer)]);

    // The secret key is readable by its owner only; keygen does not overwrite keys silently.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("client.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "client.key mode {mode:o}");
    }
    fails(&["keygen", "--model", s(&model), "--out-dir", s(&keys)], "--force");
    assert!(out_matches(&keys, &answer, &model, &expected), "the refused keygen kept the old keys");
    // A server reachable from other machines needs a token (or an explicit opt-out).
    fails(&["serve", "--model", s(&model), "--addr", "0.0.0.0:0"], "--token-file");
    // By default a server refuses a model compiled without sanitization.
    let plain = dir.path("plain.fheml");
    ok(&["train", "--model", "logistic", "--data", s(&train), "--out", s(&plain)]);
    fails(&["serve", "--model", s(&plain)], "--sanitize=false");

    let server = start(&model, &dir.path("server-keys"));
    let url = format!("http://{}", server.1);
    assert_eq!(raw(&server.1, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 200);
    let client_dir = dir.path("client-keys");
    let got = ok(&["client", "--url", &url, "--name", "cancer", "--data", s(&test), "--key-dir", s(&client_dir)]);
    assert_eq!(got, expected);

    // Bad requests: unknown model, malformed key id, garbage bodies, unknown key.
    let bad_body =
        "POST /models/cancer/run?key_id=zz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(raw(&server.1, bad_body), 400);
    let garbage_key =
        "POST /models/cancer/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(raw(&server.1, garbage_key), 400);
    let missing = format!(
        "POST /models/cancer/run?key_id={} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        "0".repeat(64)
    );
    // A model without table lookups takes no key: the id is ignored, the garbage refused.
    assert_eq!(raw(&server.1, &missing), 400);
    assert_eq!(raw(&server.1, "GET /models/nope/client HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 404);
    let oversized = format!(
        "POST /models/cancer/run?public_key_id={} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\nConnection: close\r\n\r\n{}",
        "0".repeat(64),
        "x".repeat(5_000_000)
    );
    assert_eq!(raw(&server.1, &oversized), 413);
    // A sanitizing server answers nothing without the client's public key, and takes only a
    // public key made for the model.
    let no_public_key =
        "POST /models/cancer/run HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(raw(&server.1, no_public_key), 400);
    let garbage_public_key =
        "POST /models/cancer/public_key HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(raw(&server.1, garbage_public_key), 400);
    let (five, small_query) = (dir.path("five.csv"), dir.path("q5.bin"));
    let text = std::fs::read_to_string(&test).unwrap();
    std::fs::write(&five, text.lines().take(6).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let client_key = keys.join("client.key");
    ok(&["encrypt", "--model", s(&model), "--key", s(&client_key), "--data", s(&five), "--out", s(&small_query)]);
    let small = std::fs::read(&small_query).unwrap();
    let unknown_public_key = format!(
        "POST /models/cancer/run?public_key_id={} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        "0".repeat(64),
        small.len()
    );
    let mut stream = TcpStream::connect(&server.1).unwrap();
    stream.write_all(unknown_public_key.as_bytes()).unwrap();
    stream.write_all(&small).unwrap();
    let mut answer_text = String::new();
    let _ = stream.read_to_string(&mut answer_text);
    assert!(answer_text.starts_with("HTTP/1.1 404") && answer_text.contains("no public key"), "{answer_text}");
    let out = fheml(&["client", "--url", &url, "--name", "nope", "--data", s(&test)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    // Bounded load: 4 concurrent clients x 3 requests each, every answer decrypts correctly.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (url, test, keys) = (url.clone(), test.clone(), dir.path(&format!("load-{i}")));
            std::thread::spawn(move || {
                (0..3)
                    .map(|_| {
                        ok(&["client", "--url", &url, "--name", "cancer", "--data", s(&test), "--key-dir", s(&keys)])
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for answer in h.join().unwrap() {
            assert_eq!(answer, expected);
        }
    }
    assert_eq!(raw(&server.1, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 200, "still serving");
}

/// A private CA and a server certificate it signed for `localhost` (only), as PEM
/// files in `dir`: (ca.pem, cert.pem, key.pem).
fn private_ca(dir: &Scratch) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "fheml test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf_params.distinguished_name.push(DnType::CommonName, "fheml test server");
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let paths = (dir.path("ca.pem"), dir.path("cert.pem"), dir.path("key.pem"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, leaf_key.serialize_pem()).unwrap();
    paths
}

/// A depth-2 iris tree compiled with sanitization (its answers are re-randomized with the
/// client's public key, uploaded beside its evaluation key), five test rows, and Clear's
/// predictions of them.
fn sanitized_iris_tree(dir: &Scratch) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let data = dir.path("data");
    ok(&["dataset", "--name", "iris", "--out-dir", s(&data)]);
    let (train, test) = (data.join("iris_train.csv"), data.join("iris_test.csv"));
    let model = dir.path("tree.fheml");
    let tree = ["train", "--model", "tree", "--data", s(&train), "--set", "max_depth=2", "--n-bits", "3"];
    ok(&[&tree[..], &["--out", s(&model), "--sanitize"]].concat());
    let five = dir.path("five.csv");
    let text = std::fs::read_to_string(&test).unwrap();
    std::fs::write(&five, text.lines().take(6).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let expected = ok(&["predict", "--model", s(&model), "--data", s(&five)]);
    (model, five, expected)
}

#[test]
fn tls_serves_an_encrypted_tree_request_end_to_end() {
    let dir = Scratch::new("tls");
    let (model, five, expected) = sanitized_iris_tree(&dir);
    let (ca, cert, key) = private_ca(&dir);
    let token = dir.path("token");
    std::fs::write(&token, "tls-test-token\n").unwrap();

    // Certificates that cannot serve are refused at startup, naming the files.
    fails(&["serve", "--model", s(&model), "--tls-cert", s(&key), "--tls-key", s(&key)], "no PEM certificate");
    fails(&["serve", "--model", s(&model), "--tls-cert", s(&ca), "--tls-key", s(&key)], "ca.pem");
    fails(&["serve", "--model", s(&model), "--tls-cert", s(&cert)], "--tls-key");
    // Off loopback, a token alone is not enough: TLS too, or the explicit opt-out.
    fails(&["serve", "--model", s(&model), "--addr", "0.0.0.0:0", "--token-file", s(&token)], "--tls-cert");

    let server = spawn(&[
        "serve",
        "--model",
        s(&model),
        "--addr",
        "127.0.0.1:0",
        "--key-dir",
        s(&dir.path("server-keys")),
        "--token-file",
        s(&token),
        "--tls-cert",
        s(&cert),
        "--tls-key",
        s(&key),
    ]);
    let port = server.1.rsplit(':').next().unwrap().to_string();
    let client_keys = dir.path("client-keys");
    let client = |url: &str, ca: Option<&std::path::Path>| {
        let mut args = vec!["client", "--url", url, "--name", "tree", "--data", s(&five), "--token-file", s(&token)];
        args.extend(["--key-dir", s(&client_keys)]);
        if let Some(ca) = ca {
            args.extend(["--ca-cert", s(ca)]);
        }
        fheml(&args)
    };
    // Key upload and one encrypted batch over TLS.
    let url = format!("https://localhost:{port}");
    let out = client(&url, Some(&ca));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    // The client verifies the server: without the private CA it refuses the certificate,
    // and with it a host the certificate does not name.
    for (url, ca) in [(url.as_str(), None), (&format!("https://127.0.0.1:{port}"), Some(ca.as_path()))] {
        let refused = client(url, ca);
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{url} {ca:?} accepted");
        assert!(err.contains("--ca-cert") && !err.contains("panicked"), "{err}");
    }
    // Plain HTTP to the TLS port gets no HTTP answer; the client refuses to send its token
    // in clear to another machine, before connecting anywhere.
    let mut stream = TcpStream::connect(&server.1).unwrap();
    let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP answered on the TLS port");
    let clear = client("http://192.0.2.1:9", None);
    assert!(String::from_utf8_lossy(&clear.stderr).contains("in clear"));
    let again = client(&url, Some(&ca));
    assert!(again.status.success(), "server down after the refused connections");
    assert_eq!(String::from_utf8(again.stdout).unwrap(), expected);
}

/// One HTTP/1.1 POST of `body` to `path`; the status code and the answer's body.
fn post(addr: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, answer[split + 4..].to_vec())
}

/// The value of `field` in a one-field JSON answer such as `{"key_id":"..."}`.
fn json_id(answer: &[u8], field: &str) -> String {
    let value: serde_json::Value = serde_json::from_slice(answer).unwrap();
    value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}")).to_string()
}

#[test]
fn replicas_sharing_a_key_store_serve_keys_uploaded_to_either() {
    let dir = Scratch::new("replicas");
    let (model, five, expected) = sanitized_iris_tree(&dir);
    let keys = dir.path("keys");
    ok(&["keygen", "--model", s(&model), "--out-dir", s(&keys)]);
    let query = dir.path("q.bin");
    let client_key = keys.join("client.key");
    ok(&["encrypt", "--model", s(&model), "--key", s(&client_key), "--data", s(&five), "--out", s(&query)]);

    // Two replicas, each with its own (empty, unused) key folder, over one shared store.
    let store = format!("file://{}", dir.path("shared-store").display());
    let replica = |name: &str| {
        let own = dir.path(name);
        spawn(&["serve", "--model", s(&model), "--addr", "127.0.0.1:0", "--key-dir", s(&own), "--key-store", &store])
    };
    let (a, b) = (replica("a-keys"), replica("b-keys"));
    // Both keys go to A only.
    let (status, answer) = post(&a.1, "/models/tree/keys", &std::fs::read(keys.join("eval.key")).unwrap());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let key_id = json_id(&answer, "key_id");
    let (status, answer) = post(&a.1, "/models/tree/public_key", &std::fs::read(keys.join("public.key")).unwrap());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let public_key_id = json_id(&answer, "public_key_id");
    // The encrypted batch goes to B, which never saw either key.
    let run = format!("/models/tree/run?key_id={key_id}&public_key_id={public_key_id}");
    let (status, answer) = post(&b.1, &run, &std::fs::read(&query).unwrap());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let out = dir.path("a.bin");
    std::fs::write(&out, answer).unwrap();
    let got = ok(&["decrypt", "--model", s(&model), "--key", s(&client_key), "--in", s(&out)]);
    assert_eq!(got, expected, "B's answer decrypts to the clear predictions");
    for own in ["a-keys", "b-keys"] {
        let files = std::fs::read_dir(dir.path(own)).map(|d| d.count()).unwrap_or(0);
        assert_eq!(files, 0, "{own}: a replica keeps no keys of its own");
    }
    // A key id no replica has is still unknown on both.
    let unknown = format!("/models/tree/run?key_id={}&public_key_id={public_key_id}", "0".repeat(64));
    let (status, _) = post(&a.1, &unknown, &std::fs::read(&query).unwrap());
    assert_eq!(status, 404);
    // A cloud store needs the cloud-keys feature (off in this build).
    if !cfg!(feature = "cloud-keys") {
        fails(
            &["serve", "--model", s(&model), "--addr", "127.0.0.1:0", "--key-store", "s3://bucket/keys"],
            "cloud-keys",
        );
    }
}
