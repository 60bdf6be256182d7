//! One quantizer per feature (column) of a 2-D array.

use ndarray::{Array2, ArrayView2, Ix2};
use serde::{Deserialize, Serialize};

use crate::config::QuantizerConfig;
use crate::error::QuantError;
use crate::quantizer::{Quantized, Real, UniformQuantizer};

/// One [`UniformQuantizer`] per column: features with different ranges each get the
/// whole integer range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerFeatureQuantizer {
    quantizers: Vec<UniformQuantizer>,
}

impl PerFeatureQuantizer {
    /// From explicit quantizers, one per feature.
    pub fn new(quantizers: Vec<UniformQuantizer>) -> Self {
        Self { quantizers }
    }

    /// Calibrates one quantizer on each column of `data` (rows are samples).
    pub fn calibrate(config: &QuantizerConfig, data: ArrayView2<f64>) -> Result<Self, QuantError> {
        if data.is_empty() {
            return Err(QuantError::EmptyData);
        }
        let quantizers = data
            .columns()
            .into_iter()
            .enumerate()
            .map(|(column, values)| {
                UniformQuantizer::calibrate(config, values.iter().copied()).map_err(|e| match e {
                    QuantError::NonFinite { value, row, .. } => QuantError::NonFinite { value, row, column },
                    other => other,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { quantizers })
    }

    /// The number of features.
    pub fn len(&self) -> usize {
        self.quantizers.len()
    }

    /// Whether there is no feature.
    pub fn is_empty(&self) -> bool {
        self.quantizers.is_empty()
    }

    /// The quantizer of feature `i`.
    pub fn get(&self, i: usize) -> Option<&UniformQuantizer> {
        self.quantizers.get(i)
    }

    /// All quantizers, in feature order.
    pub fn quantizers(&self) -> &[UniformQuantizer] {
        &self.quantizers
    }

    fn check_features(&self, got: usize) -> Result<(), QuantError> {
        if got == self.len() { Ok(()) } else { Err(QuantError::FeatureCount { expected: self.len(), got }) }
    }

    /// Quantizes `[rows, features]` of `f32` or `f64`, counting clipped values.
    pub fn quantize<A: Real>(&self, x: ArrayView2<A>) -> Result<Quantized<Ix2>, QuantError> {
        self.check_features(x.ncols())?;
        let mut values = Array2::zeros(x.raw_dim());
        let mut clipped = 0;
        for ((row, column), &v) in x.indexed_iter() {
            let value: f64 = v.into();
            if !value.is_finite() {
                return Err(QuantError::NonFinite { value, row, column });
            }
            // `column < len()`: checked above.
            let (q, was_clipped) = self.quantizers[column].quantize_finite(value);
            values[[row, column]] = q;
            clipped += usize::from(was_clipped);
        }
        Ok(Quantized { values, clipped })
    }

    /// Quantizes one row of features: the integers and how many were clipped.
    pub fn quantize_row(&self, row: &[f64]) -> Result<(Vec<i64>, usize), QuantError> {
        self.check_features(row.len())?;
        let mut clipped = 0;
        let values = row
            .iter()
            .zip(&self.quantizers)
            .enumerate()
            .map(|(column, (&value, quantizer))| {
                if !value.is_finite() {
                    return Err(QuantError::NonFinite { value, row: 0, column });
                }
                let (q, was_clipped) = quantizer.quantize_finite(value);
                clipped += usize::from(was_clipped);
                Ok(q)
            })
            .collect::<Result<_, _>>()?;
        Ok((values, clipped))
    }

    /// Dequantizes `[rows, features]` integers.
    pub fn dequantize(&self, q: ArrayView2<i64>) -> Result<Array2<f64>, QuantError> {
        self.check_features(q.ncols())?;
        let mut out = q.mapv(|v| v as f64);
        for ((mut column, values), quantizer) in out.columns_mut().into_iter().zip(q.columns()).zip(&self.quantizers) {
            column.assign(&quantizer.dequantize(&values));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ndarray::array;

    use super::*;

    #[test]
    fn each_column_gets_its_own_range() {
        let config = QuantizerConfig::params().n_bits(4).check().unwrap();
        let data = array![[0.0, -100.0], [1.0, 200.0]];
        let per = PerFeatureQuantizer::calibrate(&config, data.view()).unwrap();
        assert_eq!(per.len(), 2);
        let q = per.quantize(data.view()).unwrap();
        assert_eq!(q.values, array![[0, 0], [15, 15]]);
        assert_eq!(per.dequantize(q.values.view()).unwrap(), data);
        assert_eq!(per.quantize_row(&[1.0, -100.0]).unwrap(), (vec![15, 0], 0));
        assert_eq!(per.get(1).unwrap().scale(), 20.0);
        assert!(per.get(2).is_none());
    }

    #[test]
    fn positions_and_counts_are_reported() {
        let config = QuantizerConfig::default();
        let per = PerFeatureQuantizer::calibrate(&config, array![[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]].view()).unwrap();
        let x = array![[0.5f32, 2.0, -1.0], [0.5, f32::INFINITY, 0.5]];
        assert!(matches!(per.quantize(x.view()), Err(QuantError::NonFinite { row: 1, column: 1, .. })));
        assert_eq!(per.quantize(x.slice(ndarray::s![..1, ..])).unwrap().clipped, 2);
        assert_eq!(per.quantize_row(&[0.0, 1.0]), Err(QuantError::FeatureCount { expected: 3, got: 2 }));
        assert!(per.dequantize(array![[1i64]].view()).is_err());
        let empty = ndarray::Array2::<f64>::zeros((0, 3));
        assert_eq!(PerFeatureQuantizer::calibrate(&config, empty.view()), Err(QuantError::EmptyData));
    }
}
