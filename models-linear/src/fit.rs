//! Fitting: smartcore where it has the model, otherwise standard methods here (Newton for
//! GLMs and squared-hinge SVMs, seeded SGD), always on standardised features with the
//! coefficients mapped back to raw features.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::error::{LinearError, Result};
use crate::kind::LinearModelKind;
use crate::params::LinearParams;
use crate::solve::{newton, with_intercept};

/// Fitted coefficients on raw features: `scores = x·weights + intercept`.
pub(crate) struct Coefficients {
    pub weights: Array2<f64>,
    pub intercept: Array1<f64>,
}

struct Standardizer {
    mean: Array1<f64>,
    std: Array1<f64>,
}

impl Standardizer {
    fn fit(x: ArrayView2<f64>) -> Self {
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(x.ncols()));
        let std = x.std_axis(Axis(0), 0.0).mapv(|s| if s > 1e-12 { s } else { 1.0 });
        Self { mean, std }
    }

    fn transform(&self, x: ArrayView2<f64>) -> Array2<f64> {
        (&x - &self.mean) / &self.std
    }

    /// Maps coefficients fitted on standardised features back to raw features.
    fn unscale(&self, c: Coefficients) -> Coefficients {
        let weights = &c.weights / &self.std.view().insert_axis(Axis(1));
        let intercept = &c.intercept - &self.mean.dot(&weights);
        Coefficients { weights, intercept }
    }
}

fn dense(x: ArrayView2<f64>) -> Result<DenseMatrix<f64>> {
    let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
    DenseMatrix::from_2d_vec(&rows).map_err(|e| LinearError::Fit(e.to_string()))
}

fn smartcore_coefficients(coef: &DenseMatrix<f64>, intercept: &DenseMatrix<f64>) -> Result<Coefficients> {
    use smartcore::linalg::basic::arrays::Array;
    let (rows, cols) = coef.shape();
    // smartcore stores (outputs, features) for logistic and (features, 1) for regressors.
    let (outputs, features, transposed) = if cols == 1 && rows > 1 { (1, rows, false) } else { (rows, cols, true) };
    let weights =
        Array2::from_shape_fn(
            (features, outputs),
            |(f, o)| {
                if transposed { *coef.get((o, f)) } else { *coef.get((f, o)) }
            },
        );
    let (ir, ic) = intercept.shape();
    let intercept =
        Array1::from_shape_fn(outputs, |o| if ir >= ic { *intercept.get((o, 0)) } else { *intercept.get((0, o)) });
    Ok(Coefficients { weights, intercept })
}

/// Fits `kind` on `x`, with `y` as class indices (classifiers) or targets.
pub(crate) fn fit(
    params: &LinearParams,
    x: ArrayView2<f64>,
    y: ArrayView1<f64>,
    n_classes: usize,
) -> Result<Coefficients> {
    use LinearModelKind::*;
    let scaler = Standardizer::fit(x);
    let z = scaler.transform(x);
    let fitted = match params.kind {
        Ridge => ridge(&z, y, params.alpha)?,
        Linear | Lasso | ElasticNet => {
            let xs = dense(z.view())?;
            let ys: Vec<f64> = y.to_vec();
            let fail = |e: smartcore::error::Failed| LinearError::Fit(e.to_string());
            match params.kind {
                Linear => {
                    let m = smartcore::linear::linear_regression::LinearRegression::fit(&xs, &ys, Default::default())
                        .map_err(fail)?;
                    linear_coefficients(m.coefficients(), *m.intercept())?
                }
                Lasso => {
                    let p = smartcore::linear::lasso::LassoParameters::default()
                        .with_alpha(params.alpha)
                        .with_normalize(false)
                        .with_max_iter(params.max_iter);
                    let m = smartcore::linear::lasso::Lasso::fit(&xs, &ys, p).map_err(fail)?;
                    linear_coefficients(m.coefficients(), *m.intercept())?
                }
                _ => {
                    let p = smartcore::linear::elastic_net::ElasticNetParameters::default()
                        .with_alpha(params.alpha)
                        .with_l1_ratio(params.l1_ratio)
                        .with_normalize(false)
                        .with_max_iter(params.max_iter);
                    let m = smartcore::linear::elastic_net::ElasticNet::fit(&xs, &ys, p).map_err(fail)?;
                    linear_coefficients(m.coefficients(), *m.intercept())?
                }
            }
        }
        Logistic => {
            let xs = dense(z.view())?;
            let ys: Vec<i64> = y.iter().map(|v| *v as i64).collect();
            let p = smartcore::linear::logistic_regression::LogisticRegressionParameters::default()
                .with_alpha(params.alpha);
            let m = smartcore::linear::logistic_regression::LogisticRegression::fit(&xs, &ys, p)
                .map_err(|e| LinearError::Fit(e.to_string()))?;
            smartcore_coefficients(m.coefficients(), m.intercept())?
        }
        Poisson | Gamma | Tweedie => glm(&z, y, params)?,
        LinearSvc => one_vs_rest(n_classes, y, |targets| svm(&z, targets.view(), params, false))?,
        LinearSvr => svm(&z, y, params, true)?,
        SgdClassifier => one_vs_rest(n_classes, y, |targets| sgd(&z, targets.view(), params, true))?,
        SgdRegressor => sgd(&z, y, params, false)?,
    };
    Ok(scaler.unscale(fitted))
}

fn linear_coefficients(coef: &DenseMatrix<f64>, intercept: f64) -> Result<Coefficients> {
    use smartcore::linalg::basic::arrays::Array;
    let (rows, cols) = coef.shape();
    let features = rows.max(cols);
    let weights =
        Array2::from_shape_fn((features, 1), |(f, _)| if cols == 1 { *coef.get((f, 0)) } else { *coef.get((0, f)) });
    Ok(Coefficients { weights, intercept: Array1::from_elem(1, intercept) })
}

/// Ridge in closed form, `(XᵀX + αI)β = Xᵀy` with the intercept unpenalised (smartcore's
/// ridge drops the intercept when it does not normalise itself).
fn ridge(z: &Array2<f64>, y: ArrayView1<f64>, alpha: f64) -> Result<Coefficients> {
    let xb = with_intercept(z.view());
    let mut gram = xb.t().dot(&xb);
    for j in 1..gram.nrows() {
        gram[[j, j]] += alpha;
    }
    crate::solve::solve(gram, xb.t().dot(&y)).map(split)
}

/// Binary problems give one score; more classes one score per class, each fitted against the rest.
fn one_vs_rest(
    n_classes: usize,
    y: ArrayView1<f64>,
    fit_binary: impl Fn(Array1<f64>) -> Result<Coefficients>,
) -> Result<Coefficients> {
    let targets = |c: usize| y.mapv(|v| if v as usize == c { 1.0 } else { -1.0 });
    if n_classes <= 2 {
        return fit_binary(targets(1));
    }
    let fits = (0..n_classes).map(|c| fit_binary(targets(c))).collect::<Result<Vec<_>>>()?;
    let features = fits[0].weights.nrows();
    Ok(Coefficients {
        weights: Array2::from_shape_fn((features, n_classes), |(f, c)| fits[c].weights[[f, 0]]),
        intercept: Array1::from_shape_fn(n_classes, |c| fits[c].intercept[0]),
    })
}

fn split(beta: Array1<f64>) -> Coefficients {
    let intercept = Array1::from_elem(1, beta[0]);
    let weights = beta.slice(ndarray::s![1..]).to_owned().insert_axis(Axis(1));
    Coefficients { weights, intercept }
}

/// Tweedie GLM with log link by Fisher scoring: minimises
/// `mean(unit deviance) / 2 + alpha/2 ‖w‖²` (scikit-learn's objective).
fn glm(z: &Array2<f64>, y: ArrayView1<f64>, params: &LinearParams) -> Result<Coefficients> {
    let power = match params.kind {
        LinearModelKind::Poisson => 1.0,
        LinearModelKind::Gamma => 2.0,
        _ => params.power,
    };
    if y.iter().any(|v| *v < 0.0 || (power >= 2.0 && *v <= 0.0)) {
        return Err(LinearError::Data(format!(
            "targets must be {} for this GLM",
            if power >= 2.0 { "positive" } else { "non-negative" }
        )));
    }
    let xb = with_intercept(z.view());
    let n = y.len() as f64;
    let mean = y.mean().unwrap_or(1.0).max(1e-12);
    let dim = xb.ncols();
    let mut start = Array1::zeros(dim);
    // Start at the mean response: from zero the log link can overshoot on large targets.
    start[0] = mean.ln();
    newton(start, params.max_iter.max(1), |beta| {
        let mu = xb.dot(&beta).mapv(f64::exp);
        let g_eta = (&mu.mapv(|m| m.powf(2.0 - power)) - &(&y * &mu.mapv(|m| m.powf(1.0 - power)))) / n;
        let w = mu.mapv(|m| m.powf(2.0 - power)) / n;
        let mut gradient = xb.t().dot(&g_eta);
        let mut hessian = xb.t().dot(&(&xb * &w.view().insert_axis(Axis(1))));
        for j in 1..dim {
            gradient[j] += params.alpha * beta[j];
            hessian[[j, j]] += params.alpha;
        }
        hessian[[0, 0]] += 1e-12;
        (gradient, hessian)
    })
    .map(split)
}

/// L2-regularised squared hinge (classifier, targets ±1) or squared epsilon-insensitive
/// loss (regressor), by generalised Newton: `½‖w‖² + C Σ loss`.
fn svm(z: &Array2<f64>, y: ArrayView1<f64>, params: &LinearParams, regression: bool) -> Result<Coefficients> {
    let xb = with_intercept(z.view());
    let dim = xb.ncols();
    let c = params.c;
    newton(Array1::zeros(dim), params.max_iter.max(1), |beta| {
        let f = xb.dot(&beta);
        let mut gradient = beta.to_owned();
        gradient[0] = 0.0;
        let mut hessian = Array2::eye(dim);
        hessian[[0, 0]] = 1e-8;
        for (i, row) in xb.rows().into_iter().enumerate() {
            let (active, slope) = if regression {
                let r = f[i] - y[i];
                let excess = r.abs() - params.epsilon;
                (excess > 0.0, 2.0 * c * excess * r.signum())
            } else {
                let margin = 1.0 - y[i] * f[i];
                (margin > 0.0, -2.0 * c * margin * y[i])
            };
            if active {
                gradient.scaled_add(slope, &row);
                for a in 0..dim {
                    for b in 0..dim {
                        hessian[[a, b]] += 2.0 * c * row[a] * row[b];
                    }
                }
            }
        }
        (gradient, hessian)
    })
    .map(split)
}

/// Plain seeded SGD with L2 penalty `alpha` and a decaying step.
fn sgd(z: &Array2<f64>, y: ArrayView1<f64>, params: &LinearParams, classify: bool) -> Result<Coefficients> {
    let xb = with_intercept(z.view());
    let (n, dim) = xb.dim();
    let mut beta = Array1::<f64>::zeros(dim);
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = params.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut t = 0f64;
    for _ in 0..params.epochs {
        for i in (1..n).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        for &i in &order {
            let row = xb.row(i);
            let f = row.dot(&beta);
            let gradient_f = if classify {
                // Log loss with targets ±1.
                -y[i] / (1.0 + (y[i] * f).exp())
            } else {
                f - y[i]
            };
            let eta = params.learning_rate / (1.0 + params.learning_rate * params.alpha * t);
            let intercept = beta[0];
            beta *= 1.0 - eta * params.alpha;
            beta[0] = intercept;
            beta.scaled_add(-eta * gradient_f, &row);
            t += 1.0;
        }
    }
    if beta.iter().any(|v| !v.is_finite()) {
        return Err(LinearError::Fit("SGD diverged; lower learning_rate".into()));
    }
    Ok(split(beta))
}
