//! Tweedie GLMs with log link (Poisson, Gamma, compound Poisson–Gamma) by Fisher scoring
//! (IRLS) with step halving, minimizing scikit-learn's objective
//! `1/(2n) Σ deviance(yᵢ, exp(xᵢ·w + b)) + α/2 ‖w‖²` (the intercept is not penalised).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, s};

use crate::coefficients::LinearCoefficients;
use crate::error::{LinearError, Result};

/// Half the unit deviance up to terms free of `mu`: its mean is the data term of the objective.
fn half_deviance(power: f64, y: f64, mu: f64) -> f64 {
    if power == 1.0 {
        mu - y * mu.ln()
    } else if power == 2.0 {
        y / mu + mu.ln()
    } else {
        mu.powf(2.0 - power) / (2.0 - power) - y * mu.powf(1.0 - power) / (1.0 - power)
    }
}

/// Refuses targets outside the distribution's support.
pub(crate) fn check_targets(model: &'static str, y: ArrayView1<f64>, power: f64) -> Result<()> {
    let bad = |reason: &str| Err(LinearError::InvalidTargets { model, reason: reason.into() });
    if power >= 2.0 && y.iter().any(|v| *v <= 0.0) {
        return bad("targets must be positive");
    }
    if power > 0.0 && y.iter().any(|v| *v < 0.0) {
        return bad("targets must be non-negative");
    }
    if y.mean().is_none_or(|m| m <= 0.0) {
        return bad("the mean target must be positive for a log link");
    }
    Ok(())
}

/// Fits on (standardized) features `z`.
pub(crate) fn fit(
    model: &'static str,
    z: ArrayView2<f64>,
    y: ArrayView1<f64>,
    power: f64,
    alpha: f64,
    max_iter: usize,
    tol: f64,
) -> Result<LinearCoefficients> {
    let (n, p) = z.dim();
    let nf = n as f64;
    // Design with the intercept first.
    let mut a = Array2::ones((n, p + 1));
    a.slice_mut(s![.., 1..]).assign(&z);
    let means = |beta: ArrayView1<f64>| a.dot(&beta).mapv(|eta| eta.min(700.0).exp());
    let objective = |beta: ArrayView1<f64>| {
        let mu = means(beta);
        let data: f64 = y.iter().zip(&mu).map(|(&yi, &m)| half_deviance(power, yi, m)).sum::<f64>() / nf;
        data + 0.5 * alpha * beta.slice(s![1..]).dot(&beta.slice(s![1..]))
    };
    let derivatives = |beta: ArrayView1<f64>| {
        let mu = means(beta);
        // d/dη of the mean half deviance, and the Fisher weight.
        let slope = Array1::from_shape_fn(n, |i| (mu[i].powf(2.0 - power) - y[i] * mu[i].powf(1.0 - power)) / nf);
        let weight = mu.mapv(|m| m.powf(2.0 - power) / nf);
        let mut gradient = a.t().dot(&slope);
        let mut curvature = a.t().dot(&(&a * &weight.view().insert_axis(Axis(1))));
        for j in 1..=p {
            gradient[j] += alpha * beta[j];
            curvature[[j, j]] += alpha;
        }
        (gradient, curvature)
    };
    let mut start = Array1::zeros(p + 1);
    // Start at the mean response: from zero the log link can overshoot on large targets.
    start[0] = y.mean().unwrap_or(1.0).ln();
    let beta =
        super::linalg::newton(start, max_iter, tol, objective, derivatives).ok_or_else(|| LinearError::Solver {
            model,
            detail: "singular curvature matrix; add regularization (alpha > 0) or drop collinear features".into(),
        })?;
    if beta.iter().any(|v| !v.is_finite()) {
        return Err(LinearError::Solver { model, detail: "the solver diverged".into() });
    }
    Ok(LinearCoefficients::from_parts(
        beta.slice(s![1..]).to_owned().insert_axis(Axis(1)),
        beta.slice(s![..1]).to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn design() -> Array2<f64> {
        Array2::from_shape_fn((60, 2), |(i, j)| (((i * 7 + j * 3) % 11) as f64 - 5.0) / 3.0)
    }

    #[test]
    fn exact_means_give_back_the_generating_coefficients() {
        // With y equal to the true means, the unpenalised fit is exact for every power.
        let x = design();
        let mu = x.map_axis(Axis(1), |r| (0.4 * r[0] - 0.25 * r[1] + 1.2).exp());
        for power in [0.0, 1.0, 1.5, 2.0, 3.0] {
            let c = fit("tweedie", x.view(), mu.view(), power, 0.0, 100, 1e-12).unwrap();
            assert!((c.weights()[[0, 0]] - 0.4).abs() < 1e-7, "power {power}: {c:?}");
            assert!((c.weights()[[1, 0]] + 0.25).abs() < 1e-7, "power {power}: {c:?}");
            assert!((c.intercept()[0] - 1.2).abs() < 1e-7, "power {power}: {c:?}");
        }
    }

    #[test]
    fn penalised_fit_zeroes_the_objective_gradient() {
        // Poisson counts around known means; at the optimum, Xᵀ(μ - y)/n + α w = 0.
        let x = design();
        let y = x.map_axis(Axis(1), |r| (0.4 * r[0] - 0.25 * r[1] + 1.2).exp().round());
        let alpha = 0.3;
        let c = fit("poisson", x.view(), y.view(), 1.0, alpha, 100, 1e-12).unwrap();
        let mu = (x.dot(c.weights()) + c.intercept()).column(0).mapv(f64::exp);
        let residual = (&mu - &y) / 60.0;
        assert!(residual.sum().abs() < 1e-9);
        let g = x.t().dot(&residual) + alpha * &c.weights().column(0);
        assert!(g.iter().all(|v| v.abs() < 1e-9), "{g}");
    }

    #[test]
    fn targets_outside_the_support_are_refused() {
        let y = ndarray::array![1.0, 0.0, 2.0];
        assert!(check_targets("gamma", y.view(), 2.0).is_err());
        assert!(check_targets("poisson", y.view(), 1.0).is_ok());
        assert!(check_targets("poisson", ndarray::array![1.0, -1.0].view(), 1.0).is_err());
        assert!(check_targets("poisson", ndarray::array![0.0, 0.0].view(), 1.0).is_err());
    }
}
