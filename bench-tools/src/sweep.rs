//! `cargo xtask bench --sweep`: accuracy and cost against n_bits, one model per family.
//!
//! For each family and each n_bits: `fheml train`, `fheml eval --mode clear` on the whole
//! test split (float and quantized scores, bootstraps, lookup precision), `fheml inspect`
//! (the planner's expected time, key size and ciphertext count), then `fheml eval --mode
//! execute` on the first few rows (real TFHE latency) unless the planner's figures say the
//! point is too big. Writes `sweep.json`, `sweep.csv` and the figure `nbits_sweep.svg`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bench::{build_fheml, case, dataset_files, fheml, machine};
use crate::plot;

/// File names inside `--out-dir`.
pub const DATA_JSON: &str = "sweep.json";
/// The same points, one row each.
pub const DATA_CSV: &str = "sweep.csv";
/// The figure.
pub const FIGURE: &str = "nbits_sweep.svg";
/// Where `cargo xtask bench` looks for the sweep, relative to BENCHMARKS.md's folder.
pub const DEFAULT_OUT_DIR: &str = "bench";
/// The heading of the sweep's section in BENCHMARKS.md (always the file's last section).
const SECTION: &str = "## Accuracy and cost against n_bits";

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SweepOptions {
    pub quick: bool,
    pub dataset: String,
    pub families: Vec<String>,
    pub bits: Vec<u8>,
    pub out_dir: PathBuf,
    pub data_dir: PathBuf,
    pub benchmarks: PathBuf,
    /// Rows run in Execute mode per point.
    pub exec_rows: usize,
    /// Execute only points whose largest lookup reads at most this many bits.
    pub max_exec_bits: u32,
    /// Execute only points the planner expects to take at most this long (all rows, seconds).
    pub max_exec_seconds: f64,
    /// Redraw the figure from an existing `sweep.json` without running anything.
    pub replot: bool,
}

fn parse_bits(v: &str) -> Result<Vec<u8>, String> {
    let mut bits = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let one = |s: &str| s.trim().parse::<u8>().map_err(|_| format!("--bits: `{s}` is not a bit width"));
        match part.split_once('-') {
            Some((a, b)) => bits.extend(one(a)?..=one(b)?),
            None => bits.push(one(part)?),
        }
    }
    bits.sort_unstable();
    bits.dedup();
    match bits.iter().find(|&&b| !(1..=16).contains(&b)) {
        Some(b) => Err(format!("--bits: {b} is outside 1..=16")),
        None if bits.is_empty() => Err("--bits: empty list".into()),
        None => Ok(bits),
    }
}

pub(crate) fn parse(args: &[String]) -> Result<SweepOptions, String> {
    let list = |v: &str| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let mut o = SweepOptions {
        quick: false,
        dataset: "breast_cancer".into(),
        families: list("linear,tree,forest,gbdt,mlp"),
        bits: (2..=8).collect(),
        out_dir: PathBuf::from(DEFAULT_OUT_DIR),
        data_dir: PathBuf::from("../shared/datasets"),
        benchmarks: PathBuf::from("BENCHMARKS.md"),
        exec_rows: 3,
        max_exec_bits: 6,
        max_exec_seconds: 120.0,
        replot: false,
    };
    let mut rows = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--replot" => o.replot = true,
            "--models" => o.families = list(&value()?),
            "--datasets" | "--dataset" => {
                let d = list(&value()?);
                match d.as_slice() {
                    [one] => o.dataset = one.clone(),
                    _ => return Err("--sweep runs on one dataset: give exactly one to --datasets".into()),
                }
            }
            "--bits" => o.bits = parse_bits(&value()?)?,
            "--out-dir" => o.out_dir = PathBuf::from(value()?),
            "--data-dir" => o.data_dir = PathBuf::from(value()?),
            "--out" => o.benchmarks = PathBuf::from(value()?),
            "--limit" => rows = Some(value()?.parse().map_err(|_| "--limit needs a row count".to_string())?),
            "--max-exec-bits" => {
                o.max_exec_bits = value()?.parse().map_err(|_| "--max-exec-bits needs a bit width".to_string())?
            }
            "--max-exec-seconds" => {
                o.max_exec_seconds = value()?.parse().map_err(|_| "--max-exec-seconds needs seconds".to_string())?
            }
            other => return Err(format!("unknown option {other} for --sweep")),
        }
    }
    if o.families.is_empty() {
        return Err("--models: empty list".into());
    }
    o.exec_rows = rows.unwrap_or(if o.quick { 1 } else { 3 });
    Ok(o)
}

/// Execute-mode figures of one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Executed {
    /// Rows run in Execute mode.
    pub rows: usize,
    /// Fraction of them whose prediction equals Clear's.
    pub agree_with_clear: Option<f64>,
    /// Median per-sample latency: quantize + encrypt + evaluate + decrypt, seconds.
    pub latency_s: Option<f64>,
    /// Key generation (and decompression), seconds.
    pub keygen_s: Option<f64>,
    /// Compressed evaluation key, bytes.
    pub eval_key_bytes: Option<f64>,
}

/// One (family, n_bits) measurement; `None` where it could not be measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Point {
    pub family: String,
    /// The `fheml train --model` name.
    pub model: String,
    /// The `--set` hyperparameters.
    pub settings: Vec<String>,
    pub n_bits: u8,
    /// "accuracy" or "r2".
    pub metric: Option<String>,
    /// Float model on the whole test split.
    pub float: Option<f64>,
    /// Quantized model (Clear mode) on the whole test split.
    pub quantized: Option<f64>,
    pub pbs_per_sample: Option<u64>,
    /// Largest lookup precision, bits.
    pub max_tlu_bits: Option<u64>,
    pub parameters: Option<String>,
    /// Input ciphertexts per sample (from `fheml inspect`).
    pub input_ciphertexts: Option<u64>,
    /// The planner's expected server seconds per sample (from `fheml inspect`).
    pub expected_s: Option<f64>,
    /// The planner's uncompressed evaluation key size, MiB (from `fheml inspect`).
    pub eval_key_mib: Option<f64>,
    /// Execute-mode figures, when the point was executed.
    pub execute: Option<Executed>,
    /// Why something is missing (a failed command, a skipped Execute run).
    pub note: Option<String>,
}

impl Point {
    fn new(family: &str, model: &str, settings: &[String], n_bits: u8) -> Self {
        Point {
            family: family.into(),
            model: model.into(),
            settings: settings.to_vec(),
            n_bits,
            metric: None,
            float: None,
            quantized: None,
            pbs_per_sample: None,
            max_tlu_bits: None,
            parameters: None,
            input_ciphertexts: None,
            expected_s: None,
            eval_key_mib: None,
            execute: None,
            note: None,
        }
    }
}

/// A whole sweep, as written to `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sweep {
    pub dataset: String,
    /// The command that produced it.
    pub command: String,
    pub machine: String,
    pub quick: bool,
    pub exec_rows: usize,
    pub max_exec_bits: u32,
    pub max_exec_seconds: f64,
    /// Families whose model this `fheml` does not have.
    #[serde(default)]
    pub skipped_families: Vec<String>,
    pub points: Vec<Point>,
}

/// A finite number from a JSON field (`eval --json` prints NaN as null).
fn num(v: &Value, key: &str) -> Option<f64> {
    v[key].as_f64().filter(|x| x.is_finite())
}

/// Fills the Clear-mode fields of `p` from `eval --mode clear --json`.
pub(crate) fn apply_clear(p: &mut Point, v: &Value) {
    p.metric = v["metric"].as_str().map(str::to_string);
    p.float = num(v, "float");
    p.quantized = num(v, "quantized");
    p.pbs_per_sample = v["pbs_per_sample"].as_u64();
    p.max_tlu_bits = v["max_tlu_bits"].as_u64();
    p.parameters = v["parameters"].as_str().map(str::to_string);
}

/// The Execute-mode figures of `eval --mode execute --json`.
pub(crate) fn executed(v: &Value) -> Executed {
    Executed {
        rows: v["rows"].as_u64().unwrap_or(0) as usize,
        agree_with_clear: num(v, "agree_with_clear"),
        latency_s: num(v, "latency_s"),
        keygen_s: num(v, "keygen_s"),
        eval_key_bytes: num(v, "eval_key_bytes"),
    }
}

/// The planner's figures from `fheml inspect`'s text (which `eval --json` does not carry):
/// input ciphertexts, expected seconds per sample, evaluation key MiB.
pub(crate) fn apply_inspect(p: &mut Point, text: &str) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
    };
    p.input_ciphertexts = field("ciphertexts").and_then(|s| s.parse().ok());
    p.expected_s = field("expected time").and_then(|s| s.parse().ok());
    p.eval_key_mib = field("evaluation key").and_then(|s| s.parse().ok());
}

/// Why a point should not run in Execute mode, if it should not.
pub(crate) fn execute_veto(p: &Point, o: &SweepOptions) -> Option<String> {
    let bits = p.max_tlu_bits?;
    if bits > u64::from(o.max_exec_bits) {
        return Some(format!("{bits}-bit lookups > --max-exec-bits {}", o.max_exec_bits));
    }
    let expected = p.expected_s? * o.exec_rows as f64;
    (expected > o.max_exec_seconds).then(|| {
        format!("planner expects {expected:.0} s for {} rows > --max-exec-seconds {}", o.exec_rows, o.max_exec_seconds)
    })
}

/// The `--set` hyperparameters of `family` at `n_bits`: the benchmark's, and for mlp
/// weights and activations at the same width as the inputs.
pub(crate) fn settings(family: &str, base: &[&str], n_bits: u8) -> Vec<String> {
    if family == "mlp" {
        return vec![format!("w_bits={n_bits}"), format!("a_bits={n_bits}")];
    }
    base.iter().map(|s| s.to_string()).collect()
}

/// Whether a failed `train` means the CLI has no such model (so the family is skipped).
pub(crate) fn unknown_model(error: &str) -> bool {
    error.contains("unknown model")
}

fn one_line(e: &str) -> String {
    e.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

fn measure(
    bin: &Path,
    o: &SweepOptions,
    point: &mut Point,
    model_file: &Path,
    train: &Path,
    test: &Path,
) -> Result<(), String> {
    let classification = o.dataset != "diabetes";
    let task = if classification { "classification" } else { "regression" };
    let (model_s, train_s, test_s) =
        (model_file.display().to_string(), train.display().to_string(), test.display().to_string());
    let bits = point.n_bits.to_string();
    let mut args = vec!["train", "--model", &point.model, "--task", task, "--n-bits", &bits, "--data", &train_s];
    args.extend(["--out", &model_s]);
    for s in &point.settings {
        args.extend(["--set", s]);
    }
    fheml(bin, &args).map_err(|e| format!("train: {}", one_line(&e)))?;
    let clear = fheml(bin, &["eval", "--model", &model_s, "--data", &test_s, "--mode", "clear", "--json"])
        .map_err(|e| format!("eval: {}", one_line(&e)))?;
    apply_clear(point, &serde_json::from_str(&clear).map_err(|e| format!("eval --json: {e}"))?);
    match fheml(bin, &["inspect", &model_s]) {
        Ok(text) => apply_inspect(point, &text),
        Err(e) => eprintln!("note: inspect failed ({}); Execute goes on without the planner's estimate", one_line(&e)),
    }
    if let Some(why) = execute_veto(point, o) {
        eprintln!("note: {} at n_bits {}: Execute skipped: {why}", point.family, point.n_bits);
        point.note = Some(format!("Execute skipped: {why}"));
        return Ok(());
    }
    let rows = o.exec_rows.to_string();
    let args = ["eval", "--model", &model_s, "--data", &test_s, "--mode", "execute", "--limit", &rows, "--json"];
    let run = fheml(bin, &args).map_err(|e| format!("eval --mode execute: {}", one_line(&e)))?;
    point.execute = Some(executed(&serde_json::from_str(&run).map_err(|e| format!("eval --json: {e}"))?));
    Ok(())
}

fn command_line(args: &[String]) -> String {
    let mut c = String::from("cargo xtask bench --sweep");
    for a in args {
        c.push(' ');
        c.push_str(a);
    }
    c
}

/// Runs the sweep (or, with `--replot`, only redraws) and writes data and figure.
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    std::fs::create_dir_all(&o.out_dir).map_err(|e| format!("{}: {e}", o.out_dir.display()))?;
    let json_path = o.out_dir.join(DATA_JSON);
    let sweep = if o.replot {
        let text = std::fs::read_to_string(&json_path).map_err(|e| format!("{}: {e}", json_path.display()))?;
        serde_json::from_str::<Sweep>(&text).map_err(|e| format!("{}: {e}", json_path.display()))?
    } else {
        let sweep = measure_all(&o, args)?;
        let text = serde_json::to_string_pretty(&sweep).map_err(|e| e.to_string())?;
        std::fs::write(&json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
        let csv_path = o.out_dir.join(DATA_CSV);
        std::fs::write(&csv_path, csv(&sweep)).map_err(|e| format!("{}: {e}", csv_path.display()))?;
        eprintln!("wrote {} and {}", json_path.display(), csv_path.display());
        sweep
    };
    let figure = o.out_dir.join(FIGURE);
    plot::draw(&sweep, &figure)?;
    eprintln!("wrote {}", figure.display());
    if o.benchmarks.exists() {
        let md = std::fs::read_to_string(&o.benchmarks).map_err(|e| e.to_string())?;
        let md = with_section(&md, &section(&o.benchmarks, &figure, &json_path, Some(&sweep)));
        std::fs::write(&o.benchmarks, md).map_err(|e| e.to_string())?;
        eprintln!("linked the figure from {}", o.benchmarks.display());
    }
    Ok(())
}

fn measure_all(o: &SweepOptions, args: &[String]) -> Result<Sweep, String> {
    let scratch = std::env::temp_dir().join(format!("fheml-sweep-{}", std::process::id()));
    let bin = build_fheml(&scratch)?;
    let mut skipped_families = Vec::new();
    let result = (|| -> Result<Vec<Point>, String> {
        let (train, test) = dataset_files(&o.data_dir, &bin, &o.dataset, &scratch)?;
        let classification = o.dataset != "diabetes";
        let mut points = Vec::new();
        for family in &o.families {
            let c = case(family, classification).ok_or_else(|| format!("unknown model family {family}"))?;
            for &n_bits in &o.bits {
                let mut p = Point::new(c.family, c.model, &settings(c.family, c.settings, n_bits), n_bits);
                let model_file = scratch.join(format!("{}-{family}-{n_bits}.fheml", o.dataset));
                match measure(&bin, o, &mut p, &model_file, &train, &test) {
                    Err(e) if unknown_model(&e) => {
                        eprintln!("note: skipping family {family}: this fheml has no model `{}` ({e})", c.model);
                        skipped_families.push(family.clone());
                        break;
                    }
                    Err(e) => {
                        eprintln!("note: {family} at n_bits {n_bits}: {e}");
                        p.note = Some(e);
                    }
                    Ok(()) => {}
                }
                let _ = std::fs::remove_file(&model_file);
                points.push(p);
            }
        }
        Ok(points)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Sweep {
        dataset: o.dataset.clone(),
        command: command_line(args),
        machine: machine(),
        quick: o.quick,
        exec_rows: o.exec_rows,
        max_exec_bits: o.max_exec_bits,
        max_exec_seconds: o.max_exec_seconds,
        skipped_families,
        points: result?,
    })
}

fn csv(s: &Sweep) -> String {
    let f = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x}"));
    let u = |x: Option<u64>| x.map_or(String::new(), |x| x.to_string());
    let quote = |t: &str| format!("\"{}\"", t.replace('"', "\"\""));
    let mut out = String::from(
        "dataset,family,model,settings,n_bits,metric,float,quantized,pbs_per_sample,max_tlu_bits,parameters,\
input_ciphertexts,expected_s,eval_key_mib,exec_rows,agree_with_clear,latency_s,keygen_s,eval_key_bytes,note\n",
    );
    for p in &s.points {
        let e = p.execute.as_ref();
        let row = [
            s.dataset.clone(),
            p.family.clone(),
            p.model.clone(),
            quote(&p.settings.join(" ")),
            p.n_bits.to_string(),
            p.metric.clone().unwrap_or_default(),
            f(p.float),
            f(p.quantized),
            u(p.pbs_per_sample),
            u(p.max_tlu_bits),
            p.parameters.clone().unwrap_or_default(),
            u(p.input_ciphertexts),
            f(p.expected_s),
            f(p.eval_key_mib),
            e.map_or(String::new(), |e| e.rows.to_string()),
            f(e.and_then(|e| e.agree_with_clear)),
            f(e.and_then(|e| e.latency_s)),
            f(e.and_then(|e| e.keygen_s)),
            f(e.and_then(|e| e.eval_key_bytes)),
            quote(p.note.as_deref().unwrap_or("")),
        ];
        out += &row.join(",");
        out.push('\n');
    }
    out
}

/// `path` as a link from a Markdown file in `base` (both relative to the current directory).
fn relative(path: &Path, base: &Path) -> String {
    let rel = match base.as_os_str().is_empty() {
        true => Some(path.to_path_buf()),
        false => path.strip_prefix(base).ok().map(Path::to_path_buf).or_else(|| {
            let (p, b) = (path.canonicalize().ok()?, base.canonicalize().ok()?);
            p.strip_prefix(b).ok().map(Path::to_path_buf)
        }),
    };
    rel.unwrap_or_else(|| path.to_path_buf()).display().to_string().replace('\\', "/")
}

/// The BENCHMARKS.md section that shows the figure.
fn section(benchmarks: &Path, figure: &Path, data: &Path, sweep: Option<&Sweep>) -> String {
    let base = benchmarks.parent().unwrap_or(Path::new(""));
    let mut s = format!("\n{SECTION}\n\n![accuracy and cost vs n_bits]({})\n\n", relative(figure, base));
    if let Some(sw) = sweep {
        let families: Vec<&str> = {
            let mut f: Vec<&str> = Vec::new();
            for p in &sw.points {
                if !f.contains(&p.family.as_str()) {
                    f.push(&p.family);
                }
            }
            f
        };
        s += &format!(
            "One model per family ({}) on {}, from `{}` on {}. Float and quantized scores on the whole test split; \
bootstraps and input ciphertexts per sample from the compiled circuit; Execute latency (median per sample, real TFHE) \
on the first {} test row{}, skipped where lookups exceed {} bits or the planner expects more than {} s. ",
            families.join(", "),
            sw.dataset,
            sw.command,
            sw.machine,
            sw.exec_rows,
            if sw.exec_rows == 1 { "" } else { "s" },
            sw.max_exec_bits,
            sw.max_exec_seconds
        );
        if !sw.skipped_families.is_empty() {
            s += &format!("Not in the `fheml` it ran: {}. ", sw.skipped_families.join(", "));
        }
    }
    s += &format!("Data: [{}]({}).\n", relative(data, base), relative(data, base));
    s
}

/// The section for `cargo xtask bench`: empty unless the sweep's figure exists beside `benchmarks`.
pub fn benchmarks_section(benchmarks: &Path) -> String {
    let dir = benchmarks.parent().unwrap_or(Path::new("")).join(DEFAULT_OUT_DIR);
    let (figure, data) = (dir.join(FIGURE), dir.join(DATA_JSON));
    if !figure.exists() {
        return String::new();
    }
    let sweep = std::fs::read_to_string(&data).ok().and_then(|t| serde_json::from_str::<Sweep>(&t).ok());
    section(benchmarks, &figure, &data, sweep.as_ref())
}

/// `md` with its sweep section replaced by (or, without one, followed by) `section`.
fn with_section(md: &str, section: &str) -> String {
    let head = match md.find(&format!("\n{SECTION}\n")) {
        Some(i) => &md[..i],
        None => md.trim_end_matches('\n'),
    };
    format!("{}\n{section}", head.trim_end_matches('\n'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_defaults_and_options() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.dataset, "breast_cancer");
        assert_eq!(o.bits, vec![2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(o.families, ["linear", "tree", "forest", "gbdt", "mlp"]);
        assert_eq!((o.exec_rows, o.max_exec_bits, o.replot), (3, 6, false));
        assert_eq!(o.out_dir, PathBuf::from("bench"));

        let o = parse(&args("--quick --datasets iris --models linear,tree --bits 2,4,6 --out-dir /tmp/x")).unwrap();
        assert_eq!((o.quick, o.exec_rows, o.dataset.as_str()), (true, 1, "iris"));
        assert_eq!(o.families, ["linear", "tree"]);
        assert_eq!(o.bits, vec![2, 4, 6]);
        assert_eq!(o.out_dir, PathBuf::from("/tmp/x"));

        let o = parse(&args("--quick --limit 4 --max-exec-bits 7 --max-exec-seconds 10 --replot")).unwrap();
        assert_eq!((o.exec_rows, o.max_exec_bits, o.max_exec_seconds, o.replot), (4, 7, 10.0, true));
    }

    #[test]
    fn rejects_bad_options() {
        assert!(parse(&args("--datasets iris,diabetes")).is_err());
        assert!(parse(&args("--bits 0,3")).is_err());
        assert!(parse(&args("--bits two")).is_err());
        assert!(parse(&args("--bits")).is_err());
        assert!(parse(&args("--limit x")).is_err());
        assert!(parse(&args("--frobnicate")).is_err());
    }

    #[test]
    fn bit_lists_and_ranges() {
        assert_eq!(parse_bits("2-5").unwrap(), vec![2, 3, 4, 5]);
        assert_eq!(parse_bits("8,2, 4,2").unwrap(), vec![2, 4, 8]);
        assert_eq!(parse_bits("2-3,7").unwrap(), vec![2, 3, 7]);
        assert!(parse_bits("").is_err());
        assert!(parse_bits("17").is_err());
    }

    #[test]
    fn mlp_sweeps_weights_and_activations_too() {
        assert_eq!(settings("mlp", &["w_bits=3", "a_bits=3"], 5), ["w_bits=5", "a_bits=5"]);
        assert_eq!(settings("tree", &["max_depth=5"], 5), ["max_depth=5"]);
        assert!(unknown_model("error: unknown model `mlp`; valid models: linear"));
        assert!(!unknown_model("error: accumulator exceeds 16 bits"));
    }

    const INSPECT: &str = "model             tree (30 features)
circuit           7 nodes, values up to 4 bits
parameters        V1_6_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M40
bootstraps        5 per sample (max 3 bits , 2-norm 2.0)
ciphertexts       7650 in, 2 out (LWE dimension 2048)
evaluation key    118.1 MiB
expected time     0.031 s per sample on 2 threads";

    fn tree_point() -> Point {
        let mut p = Point::new("tree", "tree", &["max_depth=5".into()], 8);
        let clear: Value = serde_json::from_str(
            r#"{"metric":"accuracy","float":0.956,"quantized":0.947,"mode":"clear","score":0.947,"rows":114,
            "agree_with_clear":1.0,"pbs_per_sample":5,"max_tlu_bits":3,"p_error":9.1e-13,
            "parameters":"V1_6_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M40","keygen_s":0.0,"eval_key_bytes":0,
            "latency_s":0.0001}"#,
        )
        .unwrap();
        apply_clear(&mut p, &clear);
        apply_inspect(&mut p, INSPECT);
        p
    }

    #[test]
    fn reads_eval_json_and_inspect_text() {
        let p = tree_point();
        assert_eq!(p.metric.as_deref(), Some("accuracy"));
        assert_eq!((p.float, p.quantized), (Some(0.956), Some(0.947)));
        assert_eq!((p.pbs_per_sample, p.max_tlu_bits), (Some(5), Some(3)));
        assert_eq!((p.input_ciphertexts, p.expected_s, p.eval_key_mib), (Some(7650), Some(0.031), Some(118.1)));
        let e = executed(
            &serde_json::from_str(r#"{"rows":3,"agree_with_clear":1.0,"latency_s":0.1,"score":null}"#).unwrap(),
        );
        assert_eq!((e.rows, e.latency_s, e.keygen_s), (3, Some(0.1), None));
    }

    #[test]
    fn execute_is_vetoed_by_lookup_width_and_expected_time() {
        let o = parse(&[]).unwrap();
        let mut p = tree_point();
        assert_eq!(execute_veto(&p, &o), None);
        p.max_tlu_bits = Some(7);
        assert!(execute_veto(&p, &o).unwrap().contains("7-bit lookups"));
        p.max_tlu_bits = Some(3);
        p.expected_s = Some(50.0);
        assert!(execute_veto(&p, &o).unwrap().contains("planner expects 150 s"));
        p.expected_s = None;
        assert_eq!(execute_veto(&p, &o), None);
    }

    #[test]
    fn sweep_round_trips_and_writes_csv() {
        let mut p = tree_point();
        p.execute = Some(Executed {
            rows: 3,
            agree_with_clear: Some(1.0),
            latency_s: Some(0.1),
            keygen_s: Some(1.2),
            eval_key_bytes: Some(3e7),
        });
        let s = Sweep {
            dataset: "breast_cancer".into(),
            command: "cargo xtask bench --sweep".into(),
            machine: "test".into(),
            quick: false,
            exec_rows: 3,
            max_exec_bits: 6,
            max_exec_seconds: 120.0,
            skipped_families: vec![],
            points: vec![p, Point::new("mlp", "mlp", &[], 2)],
        };
        let back: Sweep = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let text = csv(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let columns = lines[0].split(',').count();
        assert!(lines.iter().all(|l| l.split(',').count() == columns), "{text}");
        assert!(lines[1].starts_with("breast_cancer,tree,tree,\"max_depth=5\",8,accuracy,0.956,0.947,5,3,"));
    }

    #[test]
    fn section_links_the_figure_relative_to_benchmarks_md() {
        let s = section(
            Path::new("BENCHMARKS.md"),
            Path::new("bench/nbits_sweep.svg"),
            Path::new("bench/sweep.json"),
            None,
        );
        assert!(s.contains("![accuracy and cost vs n_bits](bench/nbits_sweep.svg)"));
        assert!(s.contains("[bench/sweep.json](bench/sweep.json)"));
        let s = section(Path::new("docs/B.md"), Path::new("docs/bench/x.svg"), Path::new("docs/bench/s.json"), None);
        assert!(s.contains("](bench/x.svg)"));
    }

    #[test]
    fn section_is_replaced_not_repeated() {
        let md = "# Benchmarks\n\n| a |\n";
        let once = with_section(md, "\n## Accuracy and cost against n_bits\n\nold\n");
        assert_eq!(once, "# Benchmarks\n\n| a |\n\n## Accuracy and cost against n_bits\n\nold\n");
        let twice = with_section(&once, "\n## Accuracy and cost against n_bits\n\nnew\n");
        assert_eq!(twice, "# Benchmarks\n\n| a |\n\n## Accuracy and cost against n_bits\n\nnew\n");
    }

    #[test]
    fn bench_links_the_figure_only_when_it_exists() {
        assert_eq!(benchmarks_section(Path::new("/nonexistent-dir/BENCHMARKS.md")), "");
        let dir = std::env::temp_dir().join(format!("fheml-bench-section-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(DEFAULT_OUT_DIR)).unwrap();
        let md = dir.join("BENCHMARKS.md");
        assert_eq!(benchmarks_section(&md), "");
        std::fs::write(dir.join(DEFAULT_OUT_DIR).join(FIGURE), "<svg/>").unwrap();
        let s = benchmarks_section(&md);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(s.starts_with("\n## Accuracy and cost against n_bits\n"), "{s}");
        assert!(s.contains("![accuracy and cost vs n_bits](bench/nbits_sweep.svg)"), "{s}");
    }
}
