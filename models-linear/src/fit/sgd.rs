//! Plain stochastic gradient descent with an L2 penalty, as scikit-learn's `SGDClassifier`
//! and `SGDRegressor` run it: seeded shuffles each epoch, the step schedules `optimal`,
//! `constant` and `invscaling`, and early stopping once the epoch loss has not improved by
//! `tol·n` for five epochs.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::Rows;
use crate::params::{LearningRate, Loss};

/// Epochs without improvement before stopping (scikit-learn's `n_iter_no_change`).
const PATIENCE: usize = 5;

/// SGD settings.
pub(crate) struct SgdSettings {
    /// The loss (targets are `±1` for classification losses).
    pub loss: Loss,
    /// L2 penalty.
    pub alpha: f64,
    /// Tube width of the epsilon-insensitive losses.
    pub epsilon: f64,
    /// Step schedule.
    pub learning_rate: LearningRate,
    /// Initial step (constant, invscaling).
    pub eta0: f64,
    /// Invscaling exponent.
    pub power_t: f64,
    /// Maximum epochs.
    pub max_iter: usize,
    /// Improvement threshold per sample.
    pub tol: f64,
    /// Shuffle seed.
    pub seed: u64,
}

impl Loss {
    /// The loss at prediction `p` for target `y`, and its derivative in `p`.
    fn value_and_slope(self, p: f64, y: f64, epsilon: f64) -> (f64, f64) {
        match self {
            Loss::Hinge => {
                let z = p * y;
                if z <= 1.0 { (1.0 - z, -y) } else { (0.0, 0.0) }
            }
            Loss::SquaredHinge => {
                let m = (1.0 - p * y).max(0.0);
                (m * m, -2.0 * y * m)
            }
            Loss::LogLoss => {
                let z = p * y;
                // log(1 + e^-z) and -y / (1 + e^z), both stable for large |z|.
                let value = if z > 18.0 {
                    (-z).exp()
                } else if z < -18.0 {
                    -z
                } else {
                    (-z).exp().ln_1p()
                };
                let slope = if z > 18.0 {
                    -y * (-z).exp()
                } else if z < -18.0 {
                    -y
                } else {
                    -y / (1.0 + z.exp())
                };
                (value, slope)
            }
            Loss::SquaredError => (0.5 * (p - y) * (p - y), p - y),
            Loss::EpsilonInsensitive => {
                let r = y - p;
                let excess = (r.abs() - epsilon).max(0.0);
                (excess, if excess > 0.0 { -r.signum() } else { 0.0 })
            }
            Loss::SquaredEpsilonInsensitive => {
                let r = y - p;
                let excess = (r.abs() - epsilon).max(0.0);
                (excess * excess, -2.0 * r.signum() * excess)
            }
        }
    }
}

/// Fits one linear score; `None` when the iterates stop being finite (step too large).
pub(crate) fn fit(rows: &Rows, y: &[f64], s: &SgdSettings) -> Option<(Vec<f64>, f64)> {
    let mut w = vec![0.0; rows.p];
    let mut b = 0.0;
    let mut order: Vec<usize> = (0..rows.n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    // Bottou's heuristic for the optimal schedule's offset (scikit-learn's `optimal_init`).
    let typical_w = (1.0 / s.alpha.sqrt()).sqrt();
    let initial_eta = typical_w / s.loss.value_and_slope(-typical_w, 1.0, s.epsilon).1.max(1.0);
    let t0 = 1.0 / (initial_eta * s.alpha);
    let mut t = 1.0f64;
    let (mut best, mut stale) = (f64::INFINITY, 0);
    for _ in 0..s.max_iter {
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for &i in &order {
            let x = rows.row(i);
            let p = w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + b;
            let eta = match s.learning_rate {
                LearningRate::Optimal => 1.0 / (s.alpha * (t0 + t - 1.0)),
                LearningRate::InvScaling => s.eta0 / t.powf(s.power_t),
                LearningRate::Constant => s.eta0,
            };
            let (loss, slope) = s.loss.value_and_slope(p, y[i], s.epsilon);
            total += loss;
            let update = -eta * slope.clamp(-1e12, 1e12);
            let decay = (1.0 - eta * s.alpha).max(0.0);
            for (wj, xj) in w.iter_mut().zip(x) {
                *wj = *wj * decay + update * xj;
            }
            b += update;
            t += 1.0;
        }
        if !(total.is_finite() && b.is_finite()) {
            return None;
        }
        if total > best - s.tol * rows.n as f64 {
            stale += 1;
        } else {
            stale = 0;
        }
        best = best.min(total);
        if stale >= PATIENCE {
            break;
        }
    }
    w.iter().all(|v| v.is_finite()).then_some((w, b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::Array2;

    fn settings(loss: Loss, alpha: f64, learning_rate: LearningRate) -> SgdSettings {
        SgdSettings {
            loss,
            alpha,
            epsilon: 0.0,
            learning_rate,
            eta0: 0.01,
            power_t: 0.25,
            max_iter: 1000,
            tol: 1e-9,
            seed: 3,
        }
    }

    fn design() -> Array2<f64> {
        Array2::from_shape_fn((200, 3), |(i, j)| (((i * 37 + j * 11) % 41) as f64 - 20.0) / 12.0)
    }

    #[test]
    fn squared_loss_converges_to_the_generating_line() {
        let x = design();
        let y: Vec<f64> = x.rows().into_iter().map(|r| 1.5 * r[0] - 2.0 * r[1] + 0.5 * r[2] + 0.7).collect();
        let s = SgdSettings {
            learning_rate: LearningRate::InvScaling,
            eta0: 0.05,
            ..settings(Loss::SquaredError, 1e-8, LearningRate::InvScaling)
        };
        let (w, b) = fit(&Rows::new(x.view()), &y, &s).unwrap();
        for (got, want) in w.iter().zip([1.5, -2.0, 0.5]) {
            assert!((got - want).abs() < 1e-2, "{w:?}");
        }
        assert!((b - 0.7).abs() < 1e-2, "{b}");
    }

    #[test]
    fn classification_losses_separate_separable_data() {
        // Keep a margin of 0.3 around the separating plane.
        let all = design();
        let side = |r: ndarray::ArrayView1<f64>| r[0] + 0.5 * r[1] - 0.2;
        let keep: Vec<usize> = (0..all.nrows()).filter(|&i| side(all.row(i)).abs() > 0.3).collect();
        let x = all.select(ndarray::Axis(0), &keep);
        let y: Vec<f64> = x.rows().into_iter().map(|r| side(r).signum()).collect();
        for loss in [Loss::Hinge, Loss::LogLoss, Loss::SquaredHinge] {
            let (w, b) = fit(&Rows::new(x.view()), &y, &settings(loss, 1e-5, LearningRate::Optimal)).unwrap();
            let correct = x
                .rows()
                .into_iter()
                .zip(&y)
                .filter(|(r, t)| (r.iter().zip(&w).map(|(a, c)| a * c).sum::<f64>() + b) * **t > 0.0)
                .count();
            assert_eq!(correct, y.len(), "{loss:?}");
        }
    }

    #[test]
    fn log_loss_approaches_the_penalised_logistic_optimum() {
        // SGD minimizes mean log-loss + α/2‖w‖² (intercept free); Newton finds the optimum.
        let x = design();
        let y: Vec<f64> = x
            .rows()
            .into_iter()
            .enumerate()
            .map(|(i, r)| if r[0] - r[2] + 0.3 + if i % 7 == 0 { 2.0 } else { 0.0 } > 0.0 { 1.0 } else { -1.0 })
            .collect();
        let alpha = 0.01;
        let n = y.len() as f64;
        let mut a = ndarray::Array2::ones((200, 4));
        a.slice_mut(ndarray::s![.., ..3]).assign(&x);
        let yv = ndarray::Array1::from(y.clone());
        let objective = |b: ndarray::ArrayView1<f64>| {
            let m = a.dot(&b) * &yv;
            m.mapv(|v| (-v).exp().ln_1p()).sum() / n
                + 0.5 * alpha * b.slice(ndarray::s![..3]).dot(&b.slice(ndarray::s![..3]))
        };
        let derivatives = |b: ndarray::ArrayView1<f64>| {
            let m = a.dot(&b) * &yv;
            let slope = ndarray::Array1::from_shape_fn(200, |i| -yv[i] / (1.0 + m[i].exp()) / n);
            let weight = m.mapv(|v| 1.0 / ((1.0 + v.exp()) * (1.0 + (-v).exp())) / n);
            let mut g = a.t().dot(&slope);
            let mut h = a.t().dot(&(&a * &weight.view().insert_axis(ndarray::Axis(1))));
            for j in 0..3 {
                g[j] += alpha * b[j];
                h[[j, j]] += alpha;
            }
            (g, h)
        };
        let exact =
            super::super::linalg::newton(ndarray::Array1::zeros(4), 100, 1e-12, objective, derivatives).unwrap();
        let s = SgdSettings { max_iter: 300, tol: 1e-12, ..settings(Loss::LogLoss, alpha, LearningRate::Optimal) };
        let (w, b) = fit(&Rows::new(x.view()), &y, &s).unwrap();
        for (got, want) in w.iter().chain([&b]).zip(&exact) {
            assert!(
                (got - want).abs() < 0.02 * exact.iter().fold(0.0f64, |m, v| m.max(v.abs())),
                "{w:?} {b} vs {exact}"
            );
        }
    }

    #[test]
    fn a_huge_constant_step_diverges_to_none() {
        let x = design() * 1e150;
        let y = vec![1.0; 200];
        let s = SgdSettings { eta0: 1e150, ..settings(Loss::SquaredError, 1e-4, LearningRate::Constant) };
        assert!(fit(&Rows::new(x.view()), &y, &s).is_none());
    }
}
