//! Neural networks for fheml (quantization-aware training with burn, ONNX import).
//!
//! Not implemented yet: this crate is an empty shell until the neural-network issue
//! lands. The lowering it will provide is described in the repository's design notes:
//! leveled linear and convolution layers, one table lookup per hidden activation on a
//! rounded accumulator, softmax/argmax on the client.
