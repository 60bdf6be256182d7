//! Integration tests of the circuit crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod errors;
mod properties;
mod shared;
