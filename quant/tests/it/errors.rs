//! Every user mistake is a typed error with a message that says what to do.

use fheml_quant::{NBits, QuantError, QuantizerConfig};

#[test]
fn bad_bit_widths() {
    for bits in [0, 17, 255] {
        assert_eq!(NBits::new(bits), Err(QuantError::InvalidBits(bits)));
        assert_eq!(QuantizerConfig::params().n_bits(bits).check(), Err(QuantError::InvalidBits(bits)));
    }
    assert_eq!(
        QuantizerConfig::params().n_bits(1).signed(true).symmetric(true).check(),
        Err(QuantError::SymmetricNeedsTwoBits)
    );
}

#[test]
fn messages_name_the_problem_and_the_remedy() {
    let cases = [
        (QuantError::InvalidBits(0), "between 1 and 16"),
        (QuantError::EmptyData, "at least one value"),
        (QuantError::NonFinite { value: f64::NAN, row: 3, column: 1 }, "row 3, column 1"),
        (QuantError::FeatureCount { expected: 4, got: 3 }, "expected 4 features, got 3"),
        (QuantError::UnrepresentableRange { min: 1e9, max: 1e9, n_bits: 8 }, "center the data"),
    ];
    for (error, expected) in cases {
        assert!(error.to_string().contains(expected), "{error}");
    }
}
