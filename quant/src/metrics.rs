//! Scores of predictions, the same for every family, the command and the benchmarks.
//! Empty input scores NaN: there is nothing to score.

/// Fraction of predictions equal to the truth.
pub fn accuracy(predicted: &[f64], truth: &[f64]) -> f64 {
    if truth.is_empty() {
        return f64::NAN;
    }
    predicted.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / truth.len() as f64
}

/// Coefficient of determination `1 - SS_res / SS_tot` (NaN when the truth is constant).
pub fn r2(predicted: &[f64], truth: &[f64]) -> f64 {
    if truth.is_empty() {
        return f64::NAN;
    }
    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
    let residual: f64 = predicted.iter().zip(truth).map(|(p, t)| (p - t).powi(2)).sum();
    let total: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    if total > 0.0 { 1.0 - residual / total } else { f64::NAN }
}

/// Accuracy for a classifier, R² otherwise.
pub fn score(classifier: bool, predicted: &[f64], truth: &[f64]) -> f64 {
    if classifier { accuracy(predicted, truth) } else { r2(predicted, truth) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_agree_with_their_definitions() {
        assert_eq!(accuracy(&[1.0, 0.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 0.0]), 0.5);
        assert_eq!(r2(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 1.0);
        assert_eq!(r2(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]), 0.0);
        assert!(accuracy(&[], &[]).is_nan() && r2(&[], &[]).is_nan() && r2(&[1.0], &[1.0]).is_nan());
        assert_eq!(score(true, &[1.0], &[1.0]), 1.0);
    }
}
