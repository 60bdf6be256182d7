//! Linear SVMs by dual coordinate descent (liblinear's solvers: Hsieh et al. 2008 for
//! classification, Ho & Lin 2012 for regression), minimizing scikit-learn's objectives
//!
//! - `LinearSVC`: `½‖w‖² + C Σ max(0, 1 - yᵢ f(xᵢ))` (hinge) or its square (squared hinge);
//! - `LinearSVR`: `½‖w‖² + C Σ max(0, |yᵢ - f(xᵢ)| - ε)` or its square.
//!
//! As in liblinear, the intercept is the weight of a constant feature equal to 1, so it
//! is penalised like the other weights.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::Rows;
use crate::params::Loss;

/// Solver settings shared by both SVMs.
pub(crate) struct DualSettings {
    /// Inverse penalty.
    pub c: f64,
    /// Hinge / squared hinge, or (squared) epsilon-insensitive.
    pub loss: Loss,
    /// Epochs.
    pub max_iter: usize,
    /// Stopping tolerance (liblinear's `eps`).
    pub tol: f64,
    /// Shuffle seed.
    pub seed: u64,
}

/// The constant feature carrying the intercept.
const BIAS: f64 = 1.0;

fn dot(w: &[f64], x: &[f64]) -> f64 {
    w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + w[x.len()] * BIAS
}

fn axpy(w: &mut [f64], a: f64, x: &[f64]) {
    for (wi, xi) in w.iter_mut().zip(x) {
        *wi += a * xi;
    }
    w[x.len()] += a * BIAS;
}

/// Binary classifier on labels `±1`; returns the weights and the intercept.
pub(crate) fn fit_svc(rows: &Rows, y: &[f64], s: &DualSettings) -> (Vec<f64>, f64) {
    let (upper, diag) = match s.loss {
        Loss::Hinge => (s.c, 0.0),
        _ => (f64::INFINITY, 0.5 / s.c),
    };
    let q: Vec<f64> = rows.iter().map(|x| x.iter().map(|v| v * v).sum::<f64>() + BIAS * BIAS + diag).collect();
    let mut alpha = vec![0.0; rows.n];
    let mut w = vec![0.0; rows.p + 1];
    let mut order: Vec<usize> = (0..rows.n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    for _ in 0..s.max_iter {
        order.shuffle(&mut rng);
        let (mut pg_max, mut pg_min) = (f64::NEG_INFINITY, f64::INFINITY);
        for &i in &order {
            let x = rows.row(i);
            let g = y[i] * dot(&w, x) - 1.0 + diag * alpha[i];
            let pg = if alpha[i] == 0.0 {
                g.min(0.0)
            } else if alpha[i] >= upper {
                g.max(0.0)
            } else {
                g
            };
            pg_max = pg_max.max(pg);
            pg_min = pg_min.min(pg);
            if pg.abs() > 1e-12 {
                let old = alpha[i];
                alpha[i] = (old - g / q[i]).clamp(0.0, upper);
                axpy(&mut w, (alpha[i] - old) * y[i], x);
            }
        }
        if pg_max - pg_min <= s.tol {
            break;
        }
    }
    let b = w[rows.p] * BIAS;
    w.truncate(rows.p);
    (w, b)
}

/// Regressor with tube width `epsilon`; returns the weights and the intercept.
pub(crate) fn fit_svr(rows: &Rows, y: &[f64], epsilon: f64, s: &DualSettings) -> (Vec<f64>, f64) {
    let (upper, lambda) = match s.loss {
        Loss::EpsilonInsensitive => (s.c, 0.0),
        _ => (f64::INFINITY, 0.5 / s.c),
    };
    let h: Vec<f64> = rows.iter().map(|x| x.iter().map(|v| v * v).sum::<f64>() + BIAS * BIAS + lambda).collect();
    let mut beta = vec![0.0; rows.n];
    let mut w = vec![0.0; rows.p + 1];
    let mut order: Vec<usize> = (0..rows.n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let mut first_violation = None;
    for _ in 0..s.max_iter {
        order.shuffle(&mut rng);
        let mut violation = 0.0;
        for &i in &order {
            let x = rows.row(i);
            let g = dot(&w, x) - y[i] + lambda * beta[i];
            let (gp, gn) = (g + epsilon, g - epsilon);
            let b = beta[i];
            violation += if b == 0.0 {
                gn.max(-gp).max(0.0)
            } else if b >= upper {
                gp.max(0.0)
            } else if b <= -upper {
                (-gn).max(0.0)
            } else if b > 0.0 {
                gp.abs()
            } else {
                gn.abs()
            };
            // One-variable Newton step on the piecewise quadratic, then the box.
            let d = if gp < h[i] * b {
                -gp / h[i]
            } else if gn > h[i] * b {
                -gn / h[i]
            } else {
                -b
            };
            let new = (b + d).clamp(-upper, upper);
            if (new - b).abs() > 1e-12 {
                beta[i] = new;
                axpy(&mut w, new - b, x);
            }
        }
        let first: f64 = *first_violation.get_or_insert(violation);
        if violation <= s.tol * first {
            break;
        }
    }
    let b = w[rows.p] * BIAS;
    w.truncate(rows.p);
    (w, b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::{Array2, array};

    fn settings(c: f64, loss: Loss) -> DualSettings {
        DualSettings { c, loss, max_iter: 10_000, tol: 1e-10, seed: 7 }
    }

    #[test]
    fn two_symmetric_points_have_closed_form_solutions() {
        // x = ±1 with labels ±1: by symmetry b = 0, and
        // squared hinge: min ½w² + 2C(1 - w)²  ->  w = 4C / (1 + 4C);
        // hinge:         min ½w² + 2C(1 - w)   ->  w = min(2C, 1).
        let x = array![[1.0], [-1.0]];
        let rows = Rows::new(x.view());
        let y = [1.0, -1.0];
        for c in [0.1, 1.0, 10.0] {
            let (w, b) = fit_svc(&rows, &y, &settings(c, Loss::SquaredHinge));
            assert!((w[0] - 4.0 * c / (1.0 + 4.0 * c)).abs() < 1e-8 && b.abs() < 1e-8, "C={c}: {w:?} {b}");
            let (w, b) = fit_svc(&rows, &y, &settings(c, Loss::Hinge));
            assert!((w[0] - (2.0 * c).min(1.0)).abs() < 1e-8 && b.abs() < 1e-8, "C={c}: {w:?} {b}");
        }
    }

    #[test]
    fn separable_data_is_separated() {
        let x = Array2::from_shape_fn((40, 2), |(i, j)| ((i * 17 + j * 29) % 23) as f64 / 23.0 - 0.5);
        let y: Vec<f64> = x.rows().into_iter().map(|r| if r[0] - 0.5 * r[1] > 0.05 { 1.0 } else { -1.0 }).collect();
        let rows = Rows::new(x.view());
        for loss in [Loss::Hinge, Loss::SquaredHinge] {
            let (w, b) = fit_svc(&rows, &y, &settings(1000.0, loss));
            for (r, t) in x.rows().into_iter().zip(&y) {
                assert!((r[0] * w[0] + r[1] * w[1] + b) * t > 0.0, "{loss:?}");
            }
        }
    }

    #[test]
    fn regression_recovers_an_exact_line() {
        // Noise-free y = 2x - 1: with a large C the tube fits the line (the penalty on the
        // intercept vanishes as C grows).
        let x = Array2::from_shape_fn((21, 1), |(i, _)| i as f64 / 10.0 - 1.0);
        let y: Vec<f64> = x.column(0).iter().map(|v| 2.0 * v - 1.0).collect();
        let rows = Rows::new(x.view());
        for loss in [Loss::EpsilonInsensitive, Loss::SquaredEpsilonInsensitive] {
            let (w, b) = fit_svr(&rows, &y, 0.0, &settings(1e4, loss));
            assert!((w[0] - 2.0).abs() < 1e-3 && (b + 1.0).abs() < 1e-3, "{loss:?}: {w:?} {b}");
        }
        // Two points y = ±1 at x = ±1, squared loss, ε = 0: min ½w² + ½b² + 2C(1 - w)²
        // with b = 0 by symmetry -> w = 4C / (1 + 4C).
        let rows = Rows::new(array![[1.0], [-1.0]].view());
        let (w, b) = fit_svr(&rows, &[1.0, -1.0], 0.0, &settings(1.0, Loss::SquaredEpsilonInsensitive));
        assert!((w[0] - 0.8).abs() < 1e-8 && b.abs() < 1e-8, "{w:?} {b}");
    }
}
