//! Axis arithmetic shared by the terminal and SVG charts: "nice" tick positions (1, 2, 5 ×
//! 10^k), ticks for a log axis, and short number labels.

/// Ticks for a linear axis over `[lo, hi]`: multiples of a step of 1, 2 or 5 × 10^k, chosen
/// so that about `target` ticks fall inside the range. Returns the ticks and the step.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return (vec![lo], 1.0);
    }
    let step = nice_step((hi - lo) / target.max(1) as f64);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    // `+ 0.0` turns -0.0 into 0.0 so that no label reads "-0".
    let ticks = (first..=last).map(|k| k as f64 * step + 0.0).collect();
    (ticks, step)
}

/// The one of 1, 2, 5 × 10^k nearest to `raw` (by ratio).
pub fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let distance = |step: f64| (step / raw).ln().abs();
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .min_by(|a, b| distance(*a).total_cmp(&distance(*b)))
        .unwrap_or(magnitude)
}

/// Ticks for a log axis over `[lo, hi]` (both > 0): only powers of ten when the range spans
/// many decades, 1, 2, 5 × 10^k when that gives at least three ticks, every 1..9 × 10^k
/// when that gives four, and evenly spaced nice ticks within a narrower range.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi.is_finite() && hi > lo) {
        return vec![lo];
    }
    let candidates = |mantissas: &[f64]| -> Vec<f64> {
        let first = lo.log10().floor() as i32;
        let last = hi.log10().ceil() as i32;
        let mut out = Vec::new();
        for exponent in first..=last {
            for m in mantissas {
                let value = m * 10f64.powi(exponent);
                if value >= lo * (1.0 - 1e-9) && value <= hi * (1.0 + 1e-9) {
                    out.push(value);
                }
            }
        }
        out
    };
    let decades = candidates(&[1.0]);
    if decades.len() >= 4 {
        return decades;
    }
    let coarse = candidates(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        return coarse;
    }
    let fine = candidates(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if fine.len() >= 4 {
        return fine;
    }
    // Less than a decade: evenly spaced ticks label it better.
    nice_ticks(lo, hi, 5).0
}

/// Decimal places that show a multiple of `step` exactly (0.25 → 2, 500 → 0).
pub fn decimals_for(step: f64) -> usize {
    if !(step.is_finite() && step > 0.0) {
        return 2;
    }
    let mut decimals = 0;
    while decimals < 8
        && ((step * 10f64.powi(decimals as i32)).round() - step * 10f64.powi(decimals as i32)).abs() > 1e-6
    {
        decimals += 1;
    }
    decimals
}

/// `value` with `decimals` places.
pub fn format_fixed(value: f64, decimals: usize) -> String {
    format!("{:.*}", decimals, value + 0.0)
}

/// A short label for a count such as a step or token number: 950, 12k, 1.5M, 2.25B. The
/// suffix is chosen from `scale` (the largest value on the axis) so all ticks share it.
pub fn format_count(value: f64, scale: f64, step: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    let (divisor, suffix) = count_unit(scale);
    let decimals = decimals_for(step / divisor);
    format!("{}{}", format_fixed(value / divisor, decimals), suffix)
}

/// The divisor and suffix for counts up to `scale`: none below 10 000, then k, M, B.
pub fn count_unit(scale: f64) -> (f64, &'static str) {
    let scale = scale.abs();
    if scale >= 1e10 {
        (1e9, "B")
    } else if scale >= 1e7 {
        (1e6, "M")
    } else if scale >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

/// A compact label for any value (used where no common step exists): up to four
/// significant digits, trailing zeros trimmed.
pub fn format_short(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs().log10().floor() as i32;
    if !(-4..6).contains(&magnitude) {
        return format!("{value:.2e}");
    }
    let decimals = (3 - magnitude).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_use_one_two_five_steps() {
        let (ticks, step) = nice_ticks(1.43, 4.31, 6);
        assert_eq!(step, 0.5);
        assert_eq!(ticks, vec![1.5, 2.0, 2.5, 3.0, 3.5, 4.0]);
        let (ticks, step) = nice_ticks(0.0, 5000.0, 6);
        assert_eq!(step, 1000.0);
        assert_eq!(ticks.first(), Some(&0.0));
        assert_eq!(ticks.last(), Some(&5000.0));
        assert_eq!(nice_step(0.3), 0.2);
        assert_eq!(nice_step(0.4), 0.5);
        assert_eq!(nice_step(8.0), 10.0);
        assert_eq!(nice_step(0.02), 0.02);
    }

    #[test]
    fn log_ticks_adapt_to_the_range() {
        assert_eq!(log_ticks(0.5, 200.0), vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]);
        assert_eq!(log_ticks(1.4, 4.5), vec![1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]);
        assert_eq!(log_ticks(1.4, 9.5), vec![2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(log_ticks(1.0, 11.0), vec![1.0, 2.0, 5.0, 10.0]);
        assert_eq!(log_ticks(0.001, 100.0), vec![0.001, 0.01, 0.1, 1.0, 10.0, 100.0]);
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(decimals_for(0.25), 2);
        assert_eq!(decimals_for(500.0), 0);
        assert_eq!(format_count(12_000.0, 50_000.0, 2000.0), "12k");
        assert_eq!(format_count(1_500_000.0, 30_000_000.0, 500_000.0), "1.5M");
        assert_eq!(format_count(950.0, 5000.0, 50.0), "950");
        assert_eq!(format_count(0.0, 5e7, 1e7), "0");
        assert_eq!(format_short(1.88412), "1.884");
        assert_eq!(format_short(4.0), "4");
        assert_eq!(format_short(-0.0), "0");
    }
}
