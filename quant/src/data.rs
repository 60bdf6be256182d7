//! The data vocabulary every model family shares: what is wrong with rows of features or
//! targets ([`DataError`]), the checks that find it, and the fixed 80/20 split of the
//! benchmarks and tests. Families wrap [`DataError`] in their own error with `#[from]`, so
//! the same mistake reads the same whatever the model.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// What is wrong with the rows given to a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// No rows or no features.
    #[error("no data: {rows} rows of {features} features")]
    Empty {
        /// Rows given.
        rows: usize,
        /// Features given.
        features: usize,
    },
    /// A feature is NaN or infinite.
    #[error("non-finite feature value {value} at row {row}, column {column}; clean or impute the data first")]
    NonFiniteFeature {
        /// The value.
        value: f64,
        /// Its row.
        row: usize,
        /// Its column.
        column: usize,
    },
    /// A target is NaN or infinite.
    #[error("non-finite target {value} at row {row}; clean or impute the data first")]
    NonFiniteTarget {
        /// The value.
        value: f64,
        /// Its row.
        row: usize,
    },
    /// Rows and targets differ in number.
    #[error("{rows} rows but {targets} targets")]
    LengthMismatch {
        /// Rows of features.
        rows: usize,
        /// Targets.
        targets: usize,
    },
    /// The rows have another number of features than the model.
    #[error("the model takes {expected} features, the data has {got}")]
    FeatureCount {
        /// The model's feature count.
        expected: usize,
        /// The data's feature count.
        got: usize,
    },
}

/// Refuses NaN and infinite features, naming the first.
pub fn check_finite(x: ArrayView2<f64>) -> Result<(), DataError> {
    match x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, column), value)) => Err(DataError::NonFiniteFeature { value: *value, row, column }),
        None => Ok(()),
    }
}

/// Refuses a feature count other than the model's.
pub fn check_feature_count(expected: usize, got: usize) -> Result<(), DataError> {
    if expected == got { Ok(()) } else { Err(DataError::FeatureCount { expected, got }) }
}

/// Refuses rows a model cannot predict: another feature count, NaN or infinite values.
pub fn check_prediction_rows(x: ArrayView2<f64>, expected: usize) -> Result<(), DataError> {
    check_feature_count(expected, x.ncols())?;
    check_finite(x)
}

/// Refuses training data that is empty, non-finite or of mismatched lengths.
pub fn check_training(x: ArrayView2<f64>, y: ArrayView1<f64>) -> Result<(), DataError> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(DataError::Empty { rows: x.nrows(), features: x.ncols() });
    }
    check_finite(x)?;
    if x.nrows() != y.len() {
        return Err(DataError::LengthMismatch { rows: x.nrows(), targets: y.len() });
    }
    match y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((row, value)) => Err(DataError::NonFiniteTarget { value: *value, row }),
        None => Ok(()),
    }
}

/// The benchmarks' fixed split of `rows` rows: every fifth row (0, 5, 10, ...) is a test
/// row, the others train. Returns `(train, test)` row indices.
pub fn split_every_fifth(rows: usize) -> (Vec<usize>, Vec<usize>) {
    let (test, train) = (0..rows).partition(|i| i % 5 == 0);
    (train, test)
}

/// Training and test rows.
#[derive(Debug, Clone)]
pub struct Split {
    /// Training features.
    pub x_train: Array2<f64>,
    /// Training targets.
    pub y_train: Array1<f64>,
    /// Test features.
    pub x_test: Array2<f64>,
    /// Test targets.
    pub y_test: Array1<f64>,
}

impl Split {
    /// [`split_every_fifth`] of `(x, y)` (on a dataset sorted by class, this stratifies).
    pub fn every_fifth(x: ArrayView2<f64>, y: ArrayView1<f64>) -> Split {
        let (train, test) = split_every_fifth(x.nrows());
        Split {
            x_train: x.select(Axis(0), &train),
            y_train: y.select(Axis(0), &train),
            x_test: x.select(Axis(0), &test),
            y_test: y.select(Axis(0), &test),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ndarray::{array, aview1};

    use super::*;

    #[test]
    fn checks_name_the_first_problem() {
        let x = array![[1.0, 2.0], [3.0, f64::NAN]];
        assert!(matches!(check_finite(x.view()), Err(DataError::NonFiniteFeature { row: 1, column: 1, .. })));
        assert_eq!(check_prediction_rows(x.view(), 3), Err(DataError::FeatureCount { expected: 3, got: 2 }));
        let good = array![[1.0], [2.0]];
        assert_eq!(check_training(good.view(), aview1(&[0.0])), Err(DataError::LengthMismatch { rows: 2, targets: 1 }));
        assert_eq!(
            check_training(good.view(), aview1(&[0.0, f64::INFINITY])),
            Err(DataError::NonFiniteTarget { value: f64::INFINITY, row: 1 })
        );
        let empty = ndarray::Array2::<f64>::zeros((0, 2));
        assert_eq!(check_training(empty.view(), aview1(&[])), Err(DataError::Empty { rows: 0, features: 2 }));
        assert!(check_training(good.view(), aview1(&[0.0, 1.0])).is_ok());
    }

    #[test]
    fn every_fifth_row_is_a_test_row() {
        assert_eq!(split_every_fifth(11), (vec![1, 2, 3, 4, 6, 7, 8, 9], vec![0, 5, 10]));
    }
}
