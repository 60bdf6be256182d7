//! Small dense linear algebra for the in-crate solvers.

use ndarray::{Array1, Array2, ArrayView1};

/// Solves `a·x = b` by Gaussian elimination with partial pivoting; `None` when `a` is
/// (numerically) singular.
pub(crate) fn solve(mut a: Array2<f64>, mut b: Array1<f64>) -> Option<Array1<f64>> {
    let n = b.len();
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[[i, col]].abs().total_cmp(&a[[j, col]].abs()))?;
        if a[[pivot, col]].abs() <= 1e-13 * scale {
            return None;
        }
        if pivot != col {
            for k in 0..n {
                a.swap([col, k], [pivot, k]);
            }
            b.swap(col, pivot);
        }
        for row in col + 1..n {
            let f = a[[row, col]] / a[[col, col]];
            if f != 0.0 {
                for k in col..n {
                    a[[row, k]] -= f * a[[col, k]];
                }
                b[row] -= f * b[col];
            }
        }
    }
    let mut x = Array1::zeros(n);
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[[row, k]] * x[k]).sum();
        x[row] = (b[row] - s) / a[[row, row]];
    }
    Some(x)
}

/// Minimizes a smooth convex objective by Newton's method (any positive semi-definite
/// curvature, e.g. Fisher scoring) with Armijo backtracking. `derivatives` returns
/// (gradient, curvature matrix). Stops when the largest gradient entry is below `tol`,
/// when no step decreases the objective, or after `max_iter` steps. `None` when the
/// curvature matrix is singular.
pub(crate) fn newton(
    start: Array1<f64>,
    max_iter: usize,
    tol: f64,
    objective: impl Fn(ArrayView1<f64>) -> f64,
    derivatives: impl Fn(ArrayView1<f64>) -> (Array1<f64>, Array2<f64>),
) -> Option<Array1<f64>> {
    let mut beta = start;
    let mut value = objective(beta.view());
    for _ in 0..max_iter {
        let (gradient, curvature) = derivatives(beta.view());
        if gradient.iter().all(|g| g.abs() <= tol) {
            break;
        }
        let direction = solve(curvature, gradient.clone())?;
        let slope = gradient.dot(&direction);
        let mut step = 1.0;
        let mut accepted = false;
        while step > 1e-10 {
            let candidate = &beta - &(step * &direction);
            let candidate_value = objective(candidate.view());
            if candidate_value.is_finite() && candidate_value <= value - 1e-4 * step * slope {
                beta = candidate;
                value = candidate_value;
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
    }
    Some(beta)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    #[test]
    fn solves_a_small_system_and_refuses_a_singular_one() {
        let x = solve(array![[2.0, 1.0], [1.0, 3.0]], array![3.0, 5.0]).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
        assert!(solve(array![[1.0, 1.0], [1.0, 1.0]], array![1.0, 2.0]).is_none());
    }

    #[test]
    fn newton_minimizes_a_smooth_convex_function() {
        // f(a, b) = exp(a) - 2a + (b - 3)^2, minimum at (ln 2, 3).
        let f = |v: ArrayView1<f64>| v[0].exp() - 2.0 * v[0] + (v[1] - 3.0).powi(2);
        let d =
            |v: ArrayView1<f64>| (array![v[0].exp() - 2.0, 2.0 * (v[1] - 3.0)], array![[v[0].exp(), 0.0], [0.0, 2.0]]);
        let min = newton(array![5.0, 0.0], 50, 1e-12, f, d).unwrap();
        assert!((min[0] - 2f64.ln()).abs() < 1e-9 && (min[1] - 3.0).abs() < 1e-9);
    }
}
