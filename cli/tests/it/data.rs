//! Data as people have it: columns matched by header name, an explicit target, text labels,
//! categorical columns, other separators; per-row predictions; a closed pipe is no failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Scratch, fails, ok, s};

const SPECIES: [&str; 3] = ["setosa", "versicolor", "virginica"];

/// The embedded iris split as `fheml dataset` writes it, its features renamed `f0..f3` (as in
/// the shared datasets), then `target` with labels 0, 1, 2.
fn iris(dir: &Scratch) -> (PathBuf, PathBuf) {
    let out = dir.path("iris");
    ok(&["dataset", "--name", "iris", "--out-dir", s(&out)]);
    let short = |h: Vec<&str>| (0..4).map(|i| format!("f{i}")).chain([h[4].to_string()]).collect();
    (
        rewrite(&out.join("iris_train.csv"), dir.path("iris_train.csv"), short, owned),
        rewrite(&out.join("iris_test.csv"), dir.path("iris_test.csv"), short, owned),
    )
}

/// Rewrites a CSV file: `header` maps the header cells, `row` each data row's cells.
fn rewrite(
    from: &Path,
    to: PathBuf,
    header: impl Fn(Vec<&str>) -> Vec<String>,
    row: impl Fn(Vec<&str>) -> Vec<String>,
) -> PathBuf {
    let text = std::fs::read_to_string(from).unwrap();
    let mut lines = text.lines();
    let mut out = header(lines.next().unwrap().split(',').collect()).join(",") + "\n";
    for line in lines {
        out += &(row(line.split(',').collect()).join(",") + "\n");
    }
    std::fs::write(&to, out).unwrap();
    to
}

fn owned(cells: Vec<&str>) -> Vec<String> {
    cells.into_iter().map(str::to_string).collect()
}

/// Moves the last column first.
fn target_first(cells: Vec<&str>) -> Vec<String> {
    let mut cells = owned(cells);
    let last = cells.pop().unwrap();
    cells.insert(0, last);
    cells
}

/// The iris label number as its species name.
fn species(cells: Vec<&str>) -> Vec<String> {
    let mut cells = owned(cells);
    let label: usize = cells[4].parse::<f64>().unwrap() as usize;
    cells[4] = SPECIES[label].to_string();
    cells
}

/// Predictions as printed (header skipped), one per row.
fn predictions(csv: &str) -> Vec<String> {
    csv.lines().skip(1).map(str::to_string).collect()
}

#[test]
fn columns_match_by_name_and_the_target_is_never_guessed() {
    let dir = Scratch::new("names");
    let (train, test) = iris(&dir);
    let model = dir.path("m.fheml");
    ok(&["train", "--model", "logistic", "--data", s(&train), "--out", s(&model)]);
    let baseline = ok(&["predict", "--model", s(&model), "--data", s(&test)]);
    assert_eq!(predictions(&baseline).len(), 30);

    // Shuffled columns (target first, features reversed) give identical predictions.
    let shuffled = rewrite(
        &test,
        dir.path("shuffled.csv"),
        |h| vec![h[4], h[3], h[1], h[2], h[0]].into_iter().map(str::to_string).collect(),
        |r| vec![r[4], r[3], r[1], r[2], r[0]].into_iter().map(str::to_string).collect(),
    );
    assert_eq!(ok(&["predict", "--model", s(&model), "--data", s(&shuffled)]), baseline);
    // Scores only: the JSON also carries timings.
    let scores = |json: String| {
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        (v["float"].clone(), v["quantized"].clone(), v["score"].clone(), v["rows"].clone())
    };
    let eval = |data: &Path| scores(ok(&["eval", "--model", s(&model), "--data", s(data), "--json"]));
    assert_eq!(eval(&shuffled), eval(&test));

    // A renamed or missing column is refused by name; an extra one unless --ignore-extra.
    let renamed = rewrite(
        &test,
        dir.path("renamed.csv"),
        |h| owned(h).into_iter().map(|c| c.replace("f2", "petal")).collect(),
        owned,
    );
    fails(&["predict", "--model", s(&model), "--data", s(&renamed)], "missing column(s) `f2`");
    fails(&["predict", "--model", s(&model), "--data", s(&renamed)], "`petal`");
    let missing = rewrite(&test, dir.path("missing.csv"), |h| owned(h[1..].to_vec()), |r| owned(r[1..].to_vec()));
    fails(&["eval", "--model", s(&model), "--data", s(&missing)], "missing column(s) `f0`");
    let extra = rewrite(
        &test,
        dir.path("extra.csv"),
        |h| [owned(h), vec!["note".to_string()]].concat(),
        |r| [owned(r), vec!["x".to_string()]].concat(),
    );
    fails(&["predict", "--model", s(&model), "--data", s(&extra)], "`note`");
    assert_eq!(ok(&["predict", "--model", s(&model), "--data", s(&extra), "--ignore-extra"]), baseline);

    // A target-first file whose target is not called `target` is refused until it is named.
    let labelled = rewrite(
        &train,
        dir.path("labelled.csv"),
        |h| target_first(h).into_iter().map(|c| c.replace("target", "label")).collect(),
        target_first,
    );
    let other = dir.path("other.fheml");
    fails(&["train", "--model", "logistic", "--data", s(&labelled), "--out", s(&other)], "no target column `target`");
    assert!(!other.exists());
    ok(&["train", "--model", "logistic", "--data", s(&labelled), "--target", "label", "--out", s(&other)]);
    // Named `target`, target-first works as is; the model records `label` as its target.
    let first = rewrite(&test, dir.path("first.csv"), target_first, target_first);
    assert_eq!(ok(&["predict", "--model", s(&model), "--data", s(&first)]), baseline);
    assert_eq!(ok(&["predict", "--model", s(&other), "--data", s(&first), "--target", "target"]), baseline);
    assert!(ok(&["inspect", s(&other)]).contains("target            label"));
    fails(&["train", "--model", "logistic", "--data", s(&train), "--no-target", "--out", s(&other)], "target");

    // A headerless file is refused, and read by position with --no-header.
    let text = std::fs::read_to_string(&test).unwrap();
    let headerless = dir.path("headerless.csv");
    std::fs::write(&headerless, text.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
    fails(&["predict", "--model", s(&model), "--data", s(&headerless)], "no header row");
    fails(&["train", "--model", "logistic", "--data", s(&headerless), "--out", s(&other)], "no header row");
    fails(&["predict", "--model", s(&model), "--data", s(&headerless), "--no-header"], "the model takes 4");
    let eval_headerless =
        scores(ok(&["eval", "--model", s(&model), "--data", s(&headerless), "--no-header", "--json"]));
    assert_eq!(eval_headerless, eval(&test));

    // `;` and tab separators are detected.
    let semicolons = dir.path("semicolons.csv");
    std::fs::write(&semicolons, text.replace(',', ";")).unwrap();
    assert_eq!(ok(&["predict", "--model", s(&model), "--data", s(&semicolons)]), baseline);
    let tabs = dir.path("tabs.tsv");
    std::fs::write(&tabs, text.replace(',', "\t")).unwrap();
    assert_eq!(ok(&["predict", "--model", s(&model), "--data", s(&tabs)]), baseline);
    assert_eq!(ok(&["predict", "--model", s(&model), "--data", s(&tabs), "--delimiter", "tab"]), baseline);
}

#[test]
fn text_labels_round_trip_and_predict_matches_eval() {
    let dir = Scratch::new("labels");
    let (train, test) = iris(&dir);
    let (train, test) =
        (rewrite(&train, dir.path("train.csv"), owned, species), rewrite(&test, dir.path("test.csv"), owned, species));
    let model = dir.path("tree.fheml");
    ok(&["train", "--model", "tree", "--set", "max_depth=3", "--data", s(&train), "--out", s(&model)]);
    let eval: serde_json::Value =
        serde_json::from_str(&ok(&["eval", "--model", s(&model), "--data", s(&test), "--json"])).unwrap();

    let printed = ok(&["predict", "--model", s(&model), "--data", s(&test), "--id", "target", "--proba"]);
    let mut lines = printed.lines();
    assert_eq!(lines.next().unwrap(), "target,prediction,proba_setosa,proba_versicolor,proba_virginica");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 30);
    for row in &rows {
        assert!(SPECIES.contains(&row[1]), "{row:?}");
        let total: f64 = row[2..].iter().map(|p| p.parse::<f64>().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-9, "{row:?}");
    }
    // The accuracy of predict's labels is eval's clear score.
    let accuracy = rows.iter().filter(|r| r[0] == r[1]).count() as f64 / rows.len() as f64;
    assert_eq!(accuracy, eval["quantized"].as_f64().unwrap());
    assert_eq!(accuracy, eval["score"].as_f64().unwrap());
    assert!(accuracy > 0.8, "{eval}");

    // JSON lines, a file output, Simulate, and Execute on two rows give the same labels.
    let json = ok(&["predict", "--model", s(&model), "--data", s(&test), "--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["prediction"], rows[0][1]);
    let out = dir.path("preds.csv");
    ok(&["predict", "--model", s(&model), "--data", s(&test), "--mode", "simulate", "--out", s(&out)]);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 31);
    let text = std::fs::read_to_string(&test).unwrap();
    let two = dir.path("two.csv");
    std::fs::write(&two, text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    let executed = ok(&["predict", "--model", s(&model), "--data", s(&two), "--mode", "execute"]);
    let expected: Vec<String> = rows[..2].iter().map(|r| r[1].to_string()).collect();
    assert_eq!(predictions(&executed), expected);
    assert!(ok(&["inspect", s(&model)]).contains("classes           setosa, versicolor, virginica"));

    // Through the file-based deployment too (a linear model: no bootstrapping key to make).
    let linear = dir.path("logistic.fheml");
    ok(&["train", "--model", "logistic", "--data", s(&train), "--out", s(&linear)]);
    let keys = dir.path("keys");
    ok(&["keygen", "--model", s(&linear), "--out-dir", s(&keys)]);
    let (query, answer) = (dir.path("q.bin"), dir.path("a.bin"));
    let client_key = keys.join("client.key");
    ok(&["encrypt", "--model", s(&linear), "--key", s(&client_key), "--data", s(&two), "--out", s(&query)]);
    ok(&[
        "run",
        "--model",
        s(&linear),
        "--eval-key",
        s(&keys.join("eval.key")),
        "--in",
        s(&query),
        "--out",
        s(&answer),
    ]);
    let decrypted = ok(&["decrypt", "--model", s(&linear), "--key", s(&client_key), "--in", s(&answer)]);
    assert_eq!(decrypted, ok(&["predict", "--model", s(&linear), "--data", s(&two)]));
    assert!(predictions(&decrypted).iter().all(|l| SPECIES.contains(&l.as_str())), "{decrypted}");
    let json = ok(&["decrypt", "--model", s(&linear), "--key", s(&client_key), "--in", s(&answer), "--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert!(first["prediction"].is_string(), "{json}");

    // Labels the model never saw, and text labels for a regressor, are refused by name.
    let unseen = dir.path("unseen.csv");
    std::fs::write(&unseen, text.replacen("setosa", "rosa", 1)).unwrap();
    fails(&["eval", "--model", s(&model), "--data", s(&unseen)], "label `rosa`");
    fails(&["train", "--model", "ridge", "--data", s(&train), "--out", s(&dir.path("r.fheml"))], "text labels");
    fails(&["predict", "--model", s(&model), "--data", s(&test), "--id", "nope"], "`nope`");
}

#[test]
fn categorical_columns_are_one_hot_encoded() {
    let dir = Scratch::new("categorical");
    let (train, test) = iris(&dir);
    // A text column derived from f0, so it carries signal.
    let size = |cells: Vec<&str>| {
        let mut cells = owned(cells);
        let f0: f64 = cells[0].parse().unwrap();
        cells[0] = (if f0 < 5.5 {
            "small"
        } else if f0 < 6.5 {
            "medium"
        } else {
            "large"
        })
        .to_string();
        cells
    };
    let header = |h: Vec<&str>| owned(h).into_iter().map(|c| c.replace("f0", "size")).collect();
    let (train, test) =
        (rewrite(&train, dir.path("train.csv"), header, size), rewrite(&test, dir.path("test.csv"), header, size));
    let model = dir.path("m.fheml");
    fails(&["train", "--model", "logistic", "--data", s(&train), "--out", s(&model)], "--categorical size");
    ok(&["train", "--model", "logistic", "--data", s(&train), "--categorical", "size", "--out", s(&model)]);
    let inspect = ok(&["inspect", s(&model)]);
    assert!(inspect.contains("`size` (one-hot: large|medium|small)"), "{inspect}");
    assert_eq!(predictions(&ok(&["predict", "--model", s(&model), "--data", s(&test)])).len(), 30);
    let odd = dir.path("odd.csv");
    std::fs::write(&odd, std::fs::read_to_string(&test).unwrap().replacen("small", "tiny", 1)).unwrap();
    fails(&["predict", "--model", s(&model), "--data", s(&odd)], "category `tiny`");
}

#[test]
fn a_closed_pipe_is_not_a_failure_and_p_error_reads_powers_of_two() {
    let dir = Scratch::new("pipe");
    let (train, test) = iris(&dir);
    let model = dir.path("m.fheml");
    ok(&["train", "--model", "logistic", "--p-error", "2^-30", "--data", s(&train), "--out", s(&model)]);
    let inspect = ok(&["inspect", s(&model)]);
    assert!(inspect.contains("p_error           2^-30.0"), "{inspect}");
    assert!(inspect.contains("compressed (the file keygen writes"), "{inspect}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["inspect", s(&model), "--json"])).unwrap();
    assert_eq!(json["p_error_log2"], -30.0);
    assert_eq!(json["columns"].as_array().unwrap().len(), 4);
    ok(&["train", "--model", "logistic", "--p-error", "1e-12", "--data", s(&train), "--out", s(&model)]);
    fails(&["train", "--model", "logistic", "--p-error", "2^x", "--data", s(&train), "--out", s(&model)], "2^x");
    let help = ok(&["train", "--help"]);
    assert!(help.contains("[default: 2^-40]"), "{help}");

    // `fheml inspect m | head -1`: the reader closes the pipe before the command writes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_fheml"))
        .args(["inspect", s(&model)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    // More output than a pipe buffers, read one line: the writer meets the closed pipe mid-way.
    let text = std::fs::read_to_string(&test).unwrap();
    let mut big = text.clone();
    for _ in 0..100 {
        big += &text.lines().skip(1).map(|l| l.to_string() + "\n").collect::<String>();
    }
    let rows = dir.path("big.csv");
    std::fs::write(&rows, big).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fheml"))
        .args(["predict", "--model", s(&model), "--data", s(&rows), "--proba"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("prediction"));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
}
