//! Small dense solvers used by the in-crate fitting methods.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::error::{LinearError, Result};

/// Solves `a·x = b` by Gaussian elimination with partial pivoting.
pub fn solve(mut a: Array2<f64>, mut b: Array1<f64>) -> Result<Array1<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[[i, col]].abs().total_cmp(&a[[j, col]].abs()))
            .ok_or_else(|| LinearError::Fit("empty system".into()))?;
        if a[[pivot, col]].abs() < 1e-12 {
            return Err(LinearError::Fit("singular system; add regularization (alpha > 0)".into()));
        }
        for k in 0..n {
            a.swap([col, k], [pivot, k]);
        }
        b.swap(col, pivot);
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
    Ok(x)
}

/// Adds a column of ones (the intercept) in front.
pub fn with_intercept(x: ArrayView2<f64>) -> Array2<f64> {
    let mut out = Array2::ones((x.nrows(), x.ncols() + 1));
    out.slice_mut(ndarray::s![.., 1..]).assign(&x);
    out
}

/// Newton iterations on a twice-differentiable convex loss over `[intercept, weights]`;
/// `step` returns (gradient, Hessian) at a point. The intercept is not penalised.
pub fn newton(
    start: Array1<f64>,
    iterations: usize,
    mut step: impl FnMut(ArrayView1<f64>) -> (Array1<f64>, Array2<f64>),
) -> Result<Array1<f64>> {
    let mut beta = start;
    for _ in 0..iterations {
        let (gradient, hessian) = step(beta.view());
        let delta = solve(hessian, gradient)?;
        beta -= &delta;
        if delta.iter().map(|d| d.abs()).fold(0.0, f64::max) < 1e-10 {
            break;
        }
    }
    Ok(beta)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    #[test]
    fn solves_a_small_system() {
        let x = solve(array![[2.0, 1.0], [1.0, 3.0]], array![3.0, 5.0]).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
        assert!(solve(array![[1.0, 1.0], [1.0, 1.0]], array![1.0, 2.0]).is_err());
    }
}
