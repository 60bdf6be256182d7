//! Fitting: smartcore where it has the model (least squares, ridge, lasso, elastic net,
//! logistic regression), standard methods here otherwise (IRLS for the GLMs, dual
//! coordinate descent for the SVMs, plain SGD). Every solver sees centred features
//! (scaled too when `standardize` is on); the coefficients are mapped back to raw features.

mod glm;
pub(crate) mod linalg;
mod sgd;
mod smartcore;
mod svm;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::coefficients::LinearCoefficients;
use crate::data::Standardizer;
use crate::error::{LinearError, Result};
use crate::kind::LinearModelKind;
use crate::params::LinearParams;

pub(crate) use glm::check_targets as check_glm_targets;

/// A feature matrix as contiguous rows, for the per-sample solvers.
pub(crate) struct Rows {
    data: Vec<f64>,
    /// Number of rows.
    pub n: usize,
    /// Number of features.
    pub p: usize,
}

impl Rows {
    pub(crate) fn new(x: ArrayView2<f64>) -> Self {
        Self { data: x.iter().copied().collect(), n: x.nrows(), p: x.ncols() }
    }

    pub(crate) fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.p..(i + 1) * self.p]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &[f64]> {
        self.data.chunks_exact(self.p.max(1))
    }
}

/// What the model is fitted to.
pub(crate) enum Target<'a> {
    /// Class indices `0..n_classes`.
    Classes { index: &'a [usize], n_classes: usize },
    /// Real targets.
    Values(ArrayView1<'a, f64>),
}

/// Fits `params.kind` on raw features `x`; returns coefficients on raw features.
pub(crate) fn fit(params: &LinearParams, x: ArrayView2<f64>, target: Target) -> Result<LinearCoefficients> {
    use LinearModelKind::*;
    let model = params.kind.name();
    // Least squares does not depend on the scaling: always scale, for conditioning.
    let scaler = Standardizer::fit(x, params.standardize || params.kind == Linear);
    let z = scaler.transform(x);
    let fitted = match (params.kind, target) {
        (Linear, Target::Values(y)) => smartcore::linear(z.view(), y)?,
        (Ridge, Target::Values(y)) => smartcore::ridge(z.view(), y, params.alpha)?,
        (Lasso, Target::Values(y)) => smartcore::lasso(z.view(), y, params.alpha, params.max_iter, params.tol)?,
        (ElasticNet, Target::Values(y)) => {
            smartcore::elastic_net(z.view(), y, params.alpha, params.l1_ratio, params.max_iter, params.tol)?
        }
        (Logistic, Target::Classes { index, .. }) => smartcore::logistic(z.view(), index, params.alpha)?,
        (Poisson | Gamma | Tweedie, Target::Values(y)) => {
            glm::fit(model, z.view(), y, params.tweedie_power(), params.alpha, params.max_iter, params.tol)?
        }
        (LinearSvc, Target::Classes { index, n_classes }) => {
            let rows = Rows::new(z.view());
            one_vs_rest(index, n_classes, params.seed, |y, seed| {
                Some(svm::fit_svc(&rows, y, &dual_settings(params, seed)))
            })
            .ok_or_else(|| diverged(model))?
        }
        (SgdClassifier, Target::Classes { index, n_classes }) => {
            let rows = Rows::new(z.view());
            one_vs_rest(index, n_classes, params.seed, |y, seed| sgd::fit(&rows, y, &sgd_settings(params, seed)))
                .ok_or_else(|| diverged(model))?
        }
        (LinearSvr | SgdRegressor, Target::Values(y)) => {
            // Centring the targets spares the penalised (SVR) or slowly learnt (SGD) intercept.
            let offset = if params.standardize { y.mean().unwrap_or(0.0) } else { 0.0 };
            let y: Vec<f64> = y.iter().map(|v| v - offset).collect();
            let rows = Rows::new(z.view());
            let (w, b) = if params.kind == LinearSvr {
                svm::fit_svr(&rows, &y, params.epsilon, &dual_settings(params, params.seed))
            } else {
                sgd::fit(&rows, &y, &sgd_settings(params, params.seed)).ok_or_else(|| diverged(model))?
            };
            single(w, b + offset)
        }
        _ => {
            return Err(LinearError::Solver { model, detail: "the targets do not match the model's task".into() });
        }
    };
    let (weights, intercept) = scaler.unscale(fitted.weights().clone(), fitted.intercept().clone());
    if weights.iter().chain(&intercept).any(|v| !v.is_finite()) {
        return Err(diverged(model));
    }
    Ok(LinearCoefficients::from_parts(weights, intercept))
}

fn diverged(model: &'static str) -> LinearError {
    LinearError::Solver {
        model,
        detail: "the iterates diverged; lower the step (eta0) or standardize the features".into(),
    }
}

fn dual_settings(params: &LinearParams, seed: u64) -> svm::DualSettings {
    svm::DualSettings { c: params.c, loss: params.loss, max_iter: params.max_iter, tol: params.tol, seed }
}

fn sgd_settings(params: &LinearParams, seed: u64) -> sgd::SgdSettings {
    sgd::SgdSettings {
        loss: params.loss,
        alpha: params.alpha,
        epsilon: params.epsilon,
        learning_rate: params.learning_rate,
        eta0: params.eta0,
        power_t: params.power_t,
        max_iter: params.max_iter,
        tol: params.tol,
        seed,
    }
}

fn single(w: Vec<f64>, b: f64) -> LinearCoefficients {
    LinearCoefficients::from_parts(Array1::from(w).insert_axis(Axis(1)), Array1::from_elem(1, b))
}

/// One binary fit (labels `±1`) for two classes, otherwise one per class against the rest.
fn one_vs_rest(
    index: &[usize],
    n_classes: usize,
    seed: u64,
    fit_binary: impl Fn(&[f64], u64) -> Option<(Vec<f64>, f64)>,
) -> Option<LinearCoefficients> {
    let labels = |c: usize| -> Vec<f64> { index.iter().map(|&i| if i == c { 1.0 } else { -1.0 }).collect() };
    if n_classes <= 2 {
        let (w, b) = fit_binary(&labels(1), seed)?;
        return Some(single(w, b));
    }
    let fits =
        (0..n_classes).map(|c| fit_binary(&labels(c), seed.wrapping_add(c as u64))).collect::<Option<Vec<_>>>()?;
    let p = fits.first().map_or(0, |(w, _)| w.len());
    let weights = Array2::from_shape_fn((p, n_classes), |(f, c)| fits[c].0[f]);
    let intercept = fits.iter().map(|(_, b)| *b).collect();
    Some(LinearCoefficients::from_parts(weights, intercept))
}
