//! `fheml-bench`: end-to-end benchmarks through the release `fheml` binary, and the n_bits
//! sweep with its figure. `cargo xtask bench` runs it, which keeps JSON and plotting out of
//! the task runner's dependencies.
//!
//! - `fheml-bench [--quick] [--models a,b] [--datasets a,b] [--anchors FILE] [--here FILE] [--out FILE]`:
//!   BENCHMARKS.md beside Concrete ML's figures, with a link to the n_bits sweep's figure when
//!   `bench/nbits_sweep.svg` exists.
//! - `fheml-bench --sweep [--quick] [--datasets one] [--models linear,tree,..] [--bits 2-8] [--limit ROWS]
//!   [--max-exec-bits 6] [--max-exec-seconds 120] [--out-dir bench] [--replot]`: accuracy,
//!   bootstraps, input ciphertexts and Execute latency against n_bits, one model per family, to
//!   `bench/sweep.{json,csv}` and the figure `bench/nbits_sweep.svg`.

mod bench;
mod plot;
mod sweep;

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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match bench::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
