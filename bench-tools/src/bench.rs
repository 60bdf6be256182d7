//! End-to-end benchmarks against Concrete ML, through the release `fheml` binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::cargo;

/// One benchmarked configuration.
pub(crate) struct Case {
    pub(crate) family: &'static str,
    pub(crate) model: &'static str,
    pub(crate) settings: &'static [&'static str],
    pub(crate) n_bits: &'static str,
}

impl Case {
    /// The Concrete ML row this one is compared with (`mlp-pruned` is Concrete ML's network).
    fn compared_with(&self) -> &'static str {
        if self.family == "mlp-pruned" { "mlp" } else { self.family }
    }
}

/// Hyperparameters as in ../shared/ANCHORS.md, so rows compare like with like.
pub(crate) fn case(family: &str, classification: bool) -> Option<Case> {
    Some(match family {
        "linear" if classification => Case { family: "linear", model: "logistic", settings: &[], n_bits: "8" },
        "linear" => Case { family: "linear", model: "linear", settings: &[], n_bits: "8" },
        "tree" => Case { family: "tree", model: "tree", settings: &["max_depth=5"], n_bits: "6" },
        "forest" => {
            Case { family: "forest", model: "forest", settings: &["n_estimators=20", "max_depth=4"], n_bits: "6" }
        }
        "gbdt" => Case { family: "gbdt", model: "gbdt", settings: &["n_estimators=20", "max_depth=3"], n_bits: "6" },
        // Concrete ML's architecture: `cargo xtask bench` adds two hidden layers of 4x the features.
        "mlp" => Case { family: "mlp", model: "mlp", settings: &["w_bits=3", "a_bits=3"], n_bits: "3" },
        // Concrete ML's architecture pruned as Concrete ML prunes its own (L1, a bounded number of
        // inputs per neuron; its default keeps accumulators to 8 bits), with accumulators rounded
        // to 3 bits: its own row, compared with Concrete ML's network.
        "mlp-pruned" => Case {
            family: "mlp-pruned",
            model: "mlp",
            settings: &["w_bits=3", "a_bits=3", "max_fan_in=8", "accumulator_bits=3"],
            n_bits: "3",
        },
        // fheml's own default network (one hidden layer of 16): a different model, its own row.
        "mlp-small" => Case { family: "mlp-small", model: "mlp", settings: &["w_bits=3", "a_bits=3"], n_bits: "3" },
        // The default network at 6 and 8 bits of weights and activations.
        "mlp-6bit" => Case { family: "mlp-6bit", model: "mlp", settings: &["w_bits=6", "a_bits=6"], n_bits: "3" },
        "mlp-8bit" => Case { family: "mlp-8bit", model: "mlp", settings: &["w_bits=8", "a_bits=8"], n_bits: "3" },
        _ => return None,
    })
}

struct Options {
    quick: bool,
    models: Vec<String>,
    datasets: Vec<String>,
    anchors: PathBuf,
    /// Concrete ML measured on this machine in the same sitting: overrides `anchors`' rows.
    here: Option<PathBuf>,
    out: PathBuf,
    data_dir: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let list = |v: &str| v.split(',').map(str::to_string).collect::<Vec<_>>();
    let mut o = Options {
        quick: false,
        models: list("linear,tree,forest,gbdt,mlp,mlp-pruned,mlp-small,mlp-6bit,mlp-8bit"),
        datasets: list("breast_cancer,iris,diabetes"),
        anchors: PathBuf::from("../shared/ANCHORS.jsonl"),
        here: None,
        out: PathBuf::from("BENCHMARKS.md"),
        data_dir: PathBuf::from("../shared/datasets"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--models" => o.models = list(&value()?),
            "--datasets" => o.datasets = list(&value()?),
            "--anchors" => o.anchors = PathBuf::from(value()?),
            "--here" => o.here = Some(PathBuf::from(value()?)),
            "--out" => o.out = PathBuf::from(value()?),
            "--data-dir" => o.data_dir = PathBuf::from(value()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

pub(crate) fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // tfhe-rs's FFT is markedly faster with AVX-512: say which machine the figures come from.
    let avx512 = if info.contains("avx512f") { "AVX-512" } else { "no AVX-512" };
    let cpu = Some(info.as_str())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cpu}, {avx512}, {threads} threads")
}

fn anchors(path: &Path) -> BTreeMap<(String, String), Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let key = (v["dataset"].as_str()?.to_string(), v["model"].as_str()?.to_string());
            Some((key, v))
        })
        .collect()
}

/// Concrete ML runs made on this machine (several per row): per row, the run of median
/// latency, marked `"here": true`.
fn anchors_here(path: &Path) -> Result<BTreeMap<(String, String), Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut runs: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        if let (Some(d), Some(m)) = (v["dataset"].as_str(), v["model"].as_str()) {
            runs.entry((d.to_string(), m.to_string())).or_default().push(v);
        }
    }
    Ok(runs
        .into_iter()
        .map(|(key, mut v)| {
            v.sort_by(|a, b| {
                a["fhe_latency_s"].as_f64().unwrap_or(0.0).total_cmp(&b["fhe_latency_s"].as_f64().unwrap_or(0.0))
            });
            let mut median = v[v.len() / 2].clone();
            median["here"] = Value::Bool(true);
            median["runs"] = Value::from(v.len());
            (key, median)
        })
        .collect())
}

/// Where the CSV splits are: ../shared/datasets, else the splits committed in bench/datasets
/// (digits), else the embedded datasets exported by `fheml`.
pub(crate) fn dataset_files(
    data_dir: &Path,
    fheml: &Path,
    dataset: &str,
    scratch: &Path,
) -> Result<(PathBuf, PathBuf), String> {
    for dir in [data_dir, Path::new("bench/datasets")] {
        let (train, test) = (dir.join(format!("{dataset}_train.csv")), dir.join(format!("{dataset}_test.csv")));
        if train.exists() && test.exists() {
            return Ok((train, test));
        }
    }
    self::fheml(fheml, &["dataset", "--name", dataset, "--out-dir", &scratch.display().to_string()])?;
    Ok((scratch.join(format!("{dataset}_train.csv")), scratch.join(format!("{dataset}_test.csv"))))
}

/// Runs `fheml` with `args`, echoing the command; its stdout, or its stderr as the error.
pub(crate) fn fheml(bin: &Path, args: &[&str]) -> Result<String, String> {
    eprintln!("$ fheml {}", args.join(" "));
    let out = Command::new(bin).args(args).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn cell(v: &Value, key: &str, digits: usize) -> String {
    v[key].as_f64().map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn ratio(theirs: Option<f64>, ours: Option<f64>) -> String {
    match (theirs, ours) {
        (Some(t), Some(o)) if o > 0.0 => format!("{:.1}x", t / o),
        (Some(t), Some(_)) if t > 0.0 => "∞".into(),
        _ => "–".into(),
    }
}

/// Builds the release `fheml` and copies it into `scratch`, so that another build in a shared
/// target directory cannot swap the binary in the middle of a run.
pub(crate) fn build_fheml(scratch: &Path) -> Result<PathBuf, String> {
    if !cargo(&["build", "--release", "-p", "fheml-cli"]) {
        return Err("building fheml failed".into());
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let built = PathBuf::from(target).join("release/fheml");
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let copy = scratch.join("fheml");
    std::fs::copy(&built, &copy).map_err(|e| format!("copying {}: {e}", built.display()))?;
    Ok(copy)
}

/// The tree learner parity table that `scripts/tree_parity.sh` keeps in `bench/tree_parity.md`
/// beside `benchmarks`, as a section (empty when the script was never run), so that a
/// benchmark run does not drop it.
fn parity_section(benchmarks: &Path) -> String {
    let path = benchmarks.parent().unwrap_or(Path::new("")).join("bench/tree_parity.md");
    match std::fs::read_to_string(path) {
        Ok(text) => format!("\n#{}\n", text.trim_end()),
        Err(_) => String::new(),
    }
}

/// Feature columns of a training CSV (all columns but the target).
fn feature_count(train: &Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(train).map_err(|e| format!("reading {}: {e}", train.display()))?;
    let header = text.lines().next().ok_or_else(|| format!("{} is empty", train.display()))?;
    Ok(header.split(',').count().saturating_sub(1).max(1))
}

/// `cargo xtask bench`.
pub fn run_bench(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let scratch = std::env::temp_dir().join(format!("fheml-bench-{}", std::process::id()));
    let fheml = build_fheml(&scratch)?;
    let mut anchors = anchors(&o.anchors);
    if let Some(here) = &o.here {
        anchors.extend(anchors_here(here)?);
    }
    let mut rows = Vec::new();
    for dataset in &o.datasets {
        let classification = dataset != "diabetes";
        let (train, test) = dataset_files(&o.data_dir, &fheml, dataset, &scratch)?;
        for family in &o.models {
            let Some(c) = case(family, classification) else { return Err(format!("unknown model family {family}")) };
            let model_file = scratch.join(format!("{dataset}-{family}.fheml"));
            let task = if classification { "classification" } else { "regression" };
            let mut train_args: Vec<String> = ["train", "--model", c.model, "--task", task, "--n-bits", c.n_bits]
                .iter()
                .map(|s| s.to_string())
                .collect();
            train_args.extend([
                "--data".into(),
                train.display().to_string(),
                "--out".into(),
                model_file.display().to_string(),
            ]);
            let mut settings: Vec<String> = c.settings.iter().map(|s| s.to_string()).collect();
            if c.family == "mlp" || c.family == "mlp-pruned" {
                let width = 4 * feature_count(&train)?;
                settings.push(format!("hidden={width},{width}"));
            }
            for s in &settings {
                train_args.extend(["--set".to_string(), s.clone()]);
            }
            let train_refs: Vec<&str> = train_args.iter().map(String::as_str).collect();
            let limit = match (c.family, o.quick) {
                ("linear", false) => "20",
                ("linear", true) => "5",
                (_, false) => "5",
                (_, true) => "2",
            };
            let result = self::fheml(&fheml, &train_refs).and_then(|_| {
                self::fheml(
                    &fheml,
                    &[
                        "eval",
                        "--model",
                        &model_file.display().to_string(),
                        "--data",
                        &test.display().to_string(),
                        "--mode",
                        "execute",
                        "--limit",
                        limit,
                        "--json",
                    ],
                )
            });
            let anchor = anchors.get(&(dataset.clone(), c.compared_with().to_string())).cloned();
            rows.push((
                dataset.clone(),
                c,
                settings,
                result.and_then(|s| serde_json::from_str::<Value>(&s).map_err(|e| e.to_string())),
                anchor,
            ));
        }
    }
    let mut md = String::new();
    md += "# Benchmarks\n\nGenerated by `cargo xtask bench`";
    md += if o.quick { " --quick" } else { "" };
    md += &format!(
        ". Machine: {}. Concrete ML figures from `{}` (Concrete ML 1.9.0, p_error 2^-40, same splits and hyperparameters). \
fheml uses p_error 2^-40 per lookup. Latency: median per sample of quantize + encrypt + evaluate + decrypt, in Execute mode \
(real TFHE), on the first rows of the test split. Bootstrap ms: one lookup on the chosen set, one thread, measured in the \
same run (a keyswitch + bootstrap; lookups that read inputs encrypted under the small key skip the keyswitch, and the figure \
is then the average over the circuit's lookups); bootstrap-bound ratio: latency ÷ (bootstraps × bootstrap ms ÷ threads). Parameters named `gen_...` \
were generated for the circuit by the optimizer (`--params vetted` pins tfhe-rs's sets). The mlp rows use Concrete ML's \
architecture (two hidden layers of 4x the features); the row with `max_fan_in` prunes it as Concrete ML prunes its own \
(L1, a bounded number of inputs per neuron), rounds accumulators to 3 bits and is compared with the same Concrete ML row; \
mlp rows without `hidden=` are fheml's default network, a different model, not compared. Agrees w/ clear: the same label, \
or for regression a value within one output step of Clear's (real-valued outputs decrypt within an error budget).\n\n",
        machine(),
        o.anchors.display()
    );
    if let Some(here) = &o.here {
        md += &format!(
            "† Concrete ML run on this machine in the same sitting (`scripts/concrete_ml_side_by_side.sh`, raw runs in `{}`; \
the run of median latency per row); other Concrete ML figures come from the reference machine above.\n\n",
            here.display()
        );
    }
    md += "| dataset | model | metric | float | quantized | FHE (rows) | agrees w/ clear | PBS/sample (CML) | max bits | parameters | keygen s | eval key MB | latency ms | CML latency ms | speed-up | bootstrap ms | bootstrap-bound ratio |\n";
    md += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (dataset, c, settings, result, anchor) in rows {
        let name = format!(
            "{} ({}n_bits {})",
            c.model,
            settings.iter().map(|s| format!("{s}, ")).collect::<String>(),
            c.n_bits
        );
        match result {
            Ok(v) => {
                let cml_pbs = anchor.as_ref().and_then(|a| a["pbs_count"].as_f64());
                let cml_latency = anchor.as_ref().and_then(|a| a["fhe_latency_s"].as_f64());
                md += &format!(
                    "| {dataset} | {name} | {} | {} | {} | {} ({}) | {} | {} ({}) | {} | {} | {} | {:.1} | {:.3} | {} | {} | {} | {} |\n",
                    v["metric"].as_str().unwrap_or("?"),
                    cell(&v, "float", 3),
                    cell(&v, "quantized", 3),
                    cell(&v, "score", 3),
                    v["rows"],
                    cell(&v, "agree_with_clear", 2),
                    v["pbs_per_sample"],
                    cml_pbs.map_or("–".into(), |p| format!("{p:.0}")),
                    v["max_tlu_bits"],
                    v["parameters"].as_str().unwrap_or("?").replace("_PARAM_", " ").replace("_KS_PBS_TUNIFORM", ""),
                    cell(&v, "keygen_s", 2),
                    v["eval_key_bytes"].as_f64().unwrap_or(0.0) / 1e6,
                    1e3 * v["latency_s"].as_f64().unwrap_or(f64::NAN),
                    cml_latency.map_or("–".into(), |l| format!(
                        "{:.1}{}",
                        1e3 * l,
                        if anchor.as_ref().is_some_and(|a| a["here"] == Value::Bool(true)) { " †" } else { "" }
                    )),
                    ratio(cml_latency, v["latency_s"].as_f64()),
                    v["bootstrap_s"].as_f64().filter(|b| *b > 0.0).map_or("–".into(), |b| format!("{:.2}", 1e3 * b)),
                    v["bootstrap_bound_ratio"].as_f64().map_or("–".into(), |r| format!("{r:.2}")),
                );
            }
            Err(e) => {
                let first = e.lines().last().unwrap_or("").replace('|', "/");
                md += &format!("| {dataset} | {name} | not available: {first} |||||||||||||||\n");
            }
        }
    }
    md += &parity_section(&o.out);
    md += &crate::sweep::benchmarks_section(&o.out);
    std::fs::write(&o.out, md).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("wrote {}", o.out.display());
    Ok(())
}

/// Entry point: `--sweep` runs the n_bits sweep, anything else the benchmarks.
pub fn run(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--sweep") {
        let rest: Vec<String> = args.iter().filter(|a| *a != "--sweep").cloned().collect();
        return crate::sweep::run(&rest);
    }
    run_bench(args)
}
