//! Integration tests of fheml-models-tree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod accuracy;
mod common;
mod equivalence;
mod errors;
mod execute;
mod fuzz;
mod onnx_ml;
mod xgboost_fixture;
