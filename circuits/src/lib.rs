//! The integer circuit every fheml model lowers to.
//!
//! A [`Circuit`] is a tensor-level DAG of integer operations (inputs, additions,
//! clear-weight multiplications and matrix products, sums, table lookups, roundings,
//! gathers, reshapes, concatenations), built and validated by [`CircuitBuilder`]. While a
//! circuit is built, range analysis gives every element an [`Interval`], so overflow past
//! `i64` and tables that do not cover their inputs are refused early. The [`Backend`]
//! trait is what every evaluator implements: the exact [`ClearBackend`] here, the counting
//! backend, and the TFHE runtime in `fheml-fhe-runtime`. [`ModelCircuit`] (the
//! [`IntegerCircuit`] trait) carries what the client needs: input encodings and output
//! decoding.
//!
//! ```
//! use fheml_circuits::{CircuitBuilder, Interval, Lut, Table};
//! use ndarray::array;
//!
//! let mut b = CircuitBuilder::new();
//! let x = b.input(&[3], Interval::new(0, 15).unwrap());
//! let dot = b.matmul(x, array![[2], [-1], [3]])?;        // [3] · [3, 1] -> [1]
//! let relu = Table::from_fn(-15, 7, |v| v.max(0));        // covers [-15, 112]
//! let y = b.lookup(dot, Lut::Single(relu))?;
//! b.output(y)?;
//! let circuit = b.build()?;
//!
//! assert_eq!(circuit.evaluate_clear(&[vec![1, 9, 2]])?, vec![vec![0]]);
//! assert_eq!(circuit.cost().bootstraps, 1);
//! # Ok::<(), fheml_circuits::CircuitError>(())
//! ```

mod backend;
mod builder;
mod clear;
mod cost;
mod error;
mod family;
mod ir;
mod model;
mod noise;
mod range;
mod read;
mod shared;
pub mod testing;

pub use backend::{Backend, Batch, ElementRef, FusedRounding, Tensor, evaluate, evaluate_batch, materialised_rounds};
pub use builder::{CircuitBuilder, MAX_TABLE_BITS, round_shift};
pub use clear::{ClearBackend, CountingBackend, evaluate_all_nodes, shape_inputs};
pub use cost::{CostReport, LookupSite, lookup_source, read_precision};
pub use error::{CircuitError, Result};
pub use family::{
    FamilyError, FitHooks, FitProgress, FitRequest, FittedModel, MAX_MODEL_BYTES, ModelFamily, NoHooks, TaskKind,
    decode_model, encode_model,
};
pub use ir::{Circuit, Lut, Node, NodeId, Op, OutputKind, RoundingMode, Table};
pub use model::{
    InputEncoding, InputSpec, IntegerCircuit, ModelCircuit, OutputSpec, PostProcessing, Prediction, Task,
    decode_outputs, encode_inputs,
};
pub use noise::propagate_variance;
pub use range::{BitWidth, Interval, observed_ranges};
pub use read::{ReadLayout, read_layout};
pub use shared::{SharedReads, table_of};
