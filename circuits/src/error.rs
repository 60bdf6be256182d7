//! The circuit crate's error type.

use crate::ir::NodeId;

/// Everything that can go wrong while building, analysing or evaluating a circuit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CircuitError {
    /// An operand refers to a node that does not exist (yet): graphs are built in order.
    #[error("node {node} refers to node {operand}, which does not exist (nodes must be added after their operands)")]
    DanglingNode {
        /// The node being added.
        node: NodeId,
        /// The missing operand.
        operand: NodeId,
    },
    /// Two shapes that must agree do not.
    #[error("node {node} ({op}): shape mismatch, {detail}")]
    ShapeMismatch {
        /// The node being added.
        node: NodeId,
        /// The operation's name.
        op: &'static str,
        /// What did not match.
        detail: String,
    },
    /// A lookup table's size is not a power of two, is empty or too big, or does not cover its input.
    #[error("node {node}: table lookup is malformed: {detail}")]
    BadTable {
        /// The table-lookup node.
        node: NodeId,
        /// What is wrong with the table.
        detail: String,
    },
    /// A value of this node may leave the i64 range for some admissible input.
    #[error("node {node} ({op}) may overflow i64 (its range reaches [{lo}, {hi}]); use fewer bits or smaller weights")]
    PossibleOverflow {
        /// The offending node.
        node: NodeId,
        /// The operation's name.
        op: &'static str,
        /// Lower end of the computed range.
        lo: i128,
        /// Upper end of the computed range.
        hi: i128,
    },
    /// An argument is invalid (an axis out of bounds, a zero rounding, an empty input range, ...).
    #[error("node {node}: invalid argument: {detail}")]
    InvalidArgument {
        /// The node being added.
        node: NodeId,
        /// What is wrong.
        detail: String,
    },
    /// A circuit must have at least one output.
    #[error("the circuit has no output; call `output` on the builder")]
    NoOutput,
    /// Evaluation got the wrong number of inputs or an input of the wrong shape.
    #[error("input {input}: {detail}")]
    BadInput {
        /// Index of the input.
        input: usize,
        /// What is wrong.
        detail: String,
    },
    /// An input value lies outside the range the circuit was compiled for.
    #[error("input {input}, element {element}: value {value} is outside the declared range [{lo}, {hi}]")]
    InputOutOfRange {
        /// Index of the input.
        input: usize,
        /// Flat element index.
        element: usize,
        /// The value.
        value: i64,
        /// Declared lower bound.
        lo: i64,
        /// Declared upper bound.
        hi: i64,
    },
    /// Clear evaluation overflowed i64 (range analysis should have prevented this).
    #[error("node {node}: i64 overflow during clear evaluation")]
    Overflow {
        /// The node whose evaluation overflowed.
        node: NodeId,
    },
    /// A client-side feature could not be quantized (NaN, wrong feature count, ...).
    #[error(transparent)]
    Quant(#[from] fheml_quant::QuantError),
    /// Decrypted outputs do not match what the model's output decoding expects.
    #[error("output decoding: {detail}")]
    Decoding {
        /// What did not match.
        detail: String,
    },
    /// The shared-read groups a backend evaluates do not fit the circuit (they were found
    /// on another circuit).
    #[error("node {node}: the shared-read (many-LUT) groups do not match this circuit")]
    SharedRead {
        /// The lookup node being evaluated.
        node: NodeId,
    },
    /// A table lookup received a value outside its table.
    #[error("node {node}: lookup index {value} is outside the table domain [{lo}, {hi}]")]
    LookupOutOfDomain {
        /// The table-lookup node.
        node: NodeId,
        /// The value looked up.
        value: i64,
        /// First value of the domain.
        lo: i64,
        /// Last value of the domain.
        hi: i64,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = CircuitError> = std::result::Result<T, E>;
