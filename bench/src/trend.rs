//! Whether a series sampled over time grows: the least-squares slope, and a
//! verdict that tells a trend from sampling noise.
//!
//! Under churn a server's open files and resident memory move up and down
//! from one sample to the next with the connections open at that instant;
//! a leak is a steady climb under that noise. The series is judged to grow
//! when the slope, carried over the whole window, adds more than both
//! [`NOISE_SIGMAS`] standard deviations of the samples around the fitted
//! line and [`TOLERANCE`] of the series' mean.

use serde::Serialize;

/// Growth within this many residual standard deviations is noise.
const NOISE_SIGMAS: f64 = 3.0;
/// Growth under this fraction of the mean is too small to matter even when
/// the samples are very steady (an allocator settling, a few buffers).
const TOLERANCE: f64 = 0.02;

/// The fitted line over one series and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    pub samples: usize,
    pub mean: f64,
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    /// Units per minute.
    pub slope_per_min: f64,
    /// The slope carried over the window (first to last sample).
    pub growth_over_window: f64,
    /// Standard deviation of the samples around the fitted line.
    pub residual_sd: f64,
    /// The growth that counts as growing: max(3 sd, 2% of the mean).
    pub threshold: f64,
    pub grows: bool,
}

/// Fits `points` (seconds, value). `None` with fewer than three points.
pub fn fit(points: &[(f64, f64)]) -> Option<Trend> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = mean - slope * mean_t;
    let residual_sd = (points
        .iter()
        .map(|p| (p.1 - (intercept + slope * p.0)).powi(2))
        .sum::<f64>()
        / (n - 2.0))
        .sqrt();
    let window = points[points.len() - 1].0 - points[0].0;
    let growth_over_window = slope * window;
    let threshold = (NOISE_SIGMAS * residual_sd).max(TOLERANCE * mean.abs());
    let values = points.iter().map(|p| p.1);
    Some(Trend {
        samples: points.len(),
        mean,
        first: points[0].1,
        last: points[points.len() - 1].1,
        min: values.clone().fold(f64::INFINITY, f64::min),
        max: values.fold(f64::NEG_INFINITY, f64::max),
        slope_per_min: slope * 60.0,
        growth_over_window,
        residual_sd,
        threshold,
        grows: growth_over_window > threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..30).map(|i| (i as f64 * 10.0, f(i as f64))).collect()
    }

    #[test]
    fn a_flat_noisy_series_does_not_grow() {
        // +-5% alternating noise around 100 MB: a churning server.
        let trend = fit(&series(|i| {
            100_000.0 + if i as u64 % 2 == 0 { 5_000.0 } else { -5_000.0 }
        }))
        .unwrap();
        assert!(trend.slope_per_min.abs() < 500.0, "{trend:?}");
        assert!(!trend.grows, "{trend:?}");
    }

    #[test]
    fn a_steady_climb_grows() {
        // 1 MB a minute (samples every 10 s) over 100 MB, with noise.
        let trend = fit(&series(|i| {
            100_000.0 + i * 1_000.0 / 6.0 + if i as u64 % 2 == 0 { 200.0 } else { -200.0 }
        }))
        .unwrap();
        assert!((trend.slope_per_min - 1_000.0).abs() < 20.0, "{trend:?}");
        assert!(trend.grows, "{trend:?}");
    }

    #[test]
    fn a_fall_or_a_tiny_drift_is_not_growth() {
        assert!(!fit(&series(|i| 50_000.0 - i * 100.0)).unwrap().grows);
        // 0.5% over the window on a perfectly steady series: under 2%.
        let trend = fit(&series(|i| 1_000.0 + i * 5.0 / 29.0)).unwrap();
        assert!(!trend.grows, "{trend:?}");
    }

    #[test]
    fn too_few_points_give_no_verdict() {
        assert!(fit(&[(0.0, 1.0), (10.0, 2.0)]).is_none());
        assert!(fit(&[(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)]).is_none());
    }
}
