//! Scores of predictions: accuracy and R².

use ndarray::ArrayView1;

/// Fraction of equal labels.
pub fn accuracy(predicted: ArrayView1<f64>, truth: ArrayView1<f64>) -> f64 {
    let hits = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    hits as f64 / truth.len().max(1) as f64
}

/// Coefficient of determination `1 - SS_res / SS_tot`.
pub fn r2(predicted: ArrayView1<f64>, truth: ArrayView1<f64>) -> f64 {
    let mean = truth.mean().unwrap_or(0.0);
    let residual: f64 = predicted.iter().zip(truth).map(|(p, t)| (p - t).powi(2)).sum();
    let total: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    if total > 0.0 { 1.0 - residual / total } else { f64::NAN }
}
