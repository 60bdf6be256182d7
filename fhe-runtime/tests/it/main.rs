//! Integration tests of the TFHE runtime: real encryption, Execute against Clear.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod execute;
mod fuzz;
mod many_lut;
mod optimizer;
mod serialization;
mod small_key;
mod validated_load;
