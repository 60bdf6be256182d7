//! Gaussian tail probabilities, used to turn noise variances into failure probabilities.

/// `P(|N(0, variance)| > bound)`.
pub fn two_sided_tail(bound: f64, variance: f64) -> f64 {
    if variance <= 0.0 {
        return 0.0;
    }
    libm::erfc(bound / (2.0 * variance).sqrt())
}

/// The `z` such that `erfc(z) = p`, by bisection (erfc is decreasing).
pub fn erfc_inverse(p: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if libm::erfc(mid) > p { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

/// `log2(p)`, with `-inf` printed as a large negative number.
pub fn log2_probability(p: f64) -> f64 {
    if p <= 0.0 { -1000.0 } else { p.log2() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_matches_known_values() {
        // One standard deviation: P(|N| > 1) = 0.3173.
        assert!((two_sided_tail(1.0, 1.0) - 0.3173).abs() < 1e-3);
        let z = erfc_inverse(2f64.powi(-40));
        assert!((libm::erfc(z).log2() + 40.0).abs() < 1e-6);
    }
}
