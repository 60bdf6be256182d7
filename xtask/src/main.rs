//! `cargo xtask`: project automation.
//!
//! - `cargo xtask ci`: `cargo fmt --check`, clippy with `-D warnings`, the tests.
//! - `cargo xtask bench [--quick] [--models a,b] [--datasets a,b] [--anchors FILE] [--here FILE] [--out FILE] [--micro]`:
//!   end-to-end benchmarks through the `fheml` command, written to BENCHMARKS.md beside
//!   Concrete ML's figures (`--micro` runs the crates' criterion benches instead), with a link
//!   to the n_bits sweep's figure when `bench/nbits_sweep.svg` exists. Runs `fheml-bench`
//!   (bench-tools/), as does `--sweep`.
//! - `cargo xtask bench --sweep [--quick] [--datasets one] [--models linear,tree,..] [--bits 2-8]
//!   [--limit ROWS] [--max-exec-bits 6] [--max-exec-seconds 120] [--out-dir bench] [--replot]`:
//!   accuracy, bootstraps, input ciphertexts and Execute latency against n_bits, one model per
//!   family, to `bench/sweep.{json,csv}` and the figure `bench/nbits_sweep.svg`.
//! - `cargo xtask fuzz [--factor N]`: every decoder fuzz test (fhe-runtime's envelopes, keys,
//!   batches, answers and model files; the CLI's model files, CSV files and client parts; the
//!   ONNX, ONNX-ML and XGBoost importers) with N times their `cargo test` case counts
//!   (default 20), in release mode.
//! - `cargo xtask release <version> [--execute] [--no-verify]`: lockstep version bump of every
//!   crate and inter-crate requirement, Cargo.lock, the CHANGELOG heading, the publish order, and
//!   `cargo publish --dry-run` of the bumped crates, all on a temporary copy; prints the commit and
//!   tag commands, which `--execute` runs after making the same edits here (it neither pushes nor
//!   uploads). See `release.rs`.

mod json;
mod release;

use std::process::{Command, ExitCode};

/// Runs `cargo` with `args`, echoing the command.
pub fn cargo(args: &[&str]) -> bool {
    eprintln!("$ cargo {}", args.join(" "));
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn ci() -> bool {
    cargo(&["fmt", "--all", "--", "--check"])
        && cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])
        && cargo(&["test", "--workspace"])
}

/// Runs the decoder fuzz tests with `FHEML_FUZZ_CASES` set to the factor (`--factor N`).
fn fuzz(args: &[String]) -> Result<(), String> {
    let factor = match args {
        [] => 20,
        [flag, n] if flag == "--factor" => n.parse::<u32>().map_err(|_| format!("--factor {n}: not a number"))?,
        _ => return Err("usage: cargo xtask fuzz [--factor N]".into()),
    };
    // Each crate's fuzz tests, selected by name (the client part's fuzz runs its fixed count).
    let runs: [&[&str]; 4] = [
        &["-p", "fheml-fhe-runtime", "--test", "it", "fuzz"],
        &["-p", "fheml", "--lib", "--", "fuzz_tests", "mutated_client_parts"],
        &["-p", "fheml-models-tree", "--test", "it", "fuzz"],
        &["-p", "fheml-models-nn", "--test", "onnx", "fuzz"],
    ];
    let mut failed = Vec::new();
    for run in runs {
        let args: Vec<&str> = ["test", "--release"].into_iter().chain(run.iter().copied()).collect();
        eprintln!("$ FHEML_FUZZ_CASES={factor} cargo {}", args.join(" "));
        let ok = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(&args)
            .env("FHEML_FUZZ_CASES", factor.to_string())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            failed.push(run[1]);
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(format!("fuzz failed in {}", failed.join(", "))) }
}

/// `cargo xtask bench`: `--micro` runs the crates' criterion benches; anything else runs
/// `fheml-bench` (bench-tools), which holds the JSON handling and the plotting.
fn bench(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--micro") {
        return cargo(&["bench", "--workspace"]).then_some(()).ok_or_else(|| "benches failed".into());
    }
    let mut run = vec!["run", "--quiet", "-p", "fheml-bench", "--"];
    run.extend(args.iter().map(String::as_str));
    cargo(&run).then_some(()).ok_or_else(|| "fheml-bench failed".into())
}

const USAGE: &str = "usage: cargo xtask ci | fuzz [--factor N] | release <version> [--execute] [--no-verify] | bench [--quick] [--models linear,tree,forest,gbdt,mlp] \
[--datasets breast_cancer,iris,diabetes] [--anchors FILE] [--here FILE] [--out FILE] [--micro] \
| bench --sweep [--quick] [--datasets breast_cancer] [--models ...] [--bits 2,3,4,5,6,7,8] [--limit 3] \
[--max-exec-bits 6] [--max-exec-seconds 120] [--out-dir bench] [--replot]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci().then_some(()).ok_or_else(|| "ci failed".to_string()),
        Some("bench") => bench(&args[1..]),
        Some("release") => release::run(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
