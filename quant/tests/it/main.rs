//! Integration tests of fheml-quant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod errors;
mod matmul;
mod per_feature;
mod quantizer;

use fheml_quant::QuantizerConfig;
use proptest::test_runner::{Config, FileFailurePersistence};

/// Proptest settings that keep regressions in `quant/proptest-regressions/it/` (tests run
/// from the package root), where they are committed.
fn proptest_config(cases: u32, regressions: &'static str) -> Config {
    // PROPTEST_CASES, when set, overrides the per-test count (for long soak runs).
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    }
}

/// A checked config, or `None` for the one invalid combination (symmetric with 1 bit).
fn try_config(n_bits: u8, signed: bool, symmetric: bool) -> Option<QuantizerConfig> {
    let checked = QuantizerConfig::params().n_bits(n_bits).signed(signed).symmetric(symmetric).check();
    assert_eq!(checked.is_err(), symmetric && n_bits < 2, "{checked:?}");
    checked.ok()
}
