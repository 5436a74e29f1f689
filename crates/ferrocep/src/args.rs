//! Argument values shared by several commands.

/// Parses a duration argument: `250ms`, `1.5s`, `10s`, `10m`, `2h`, `1d` or
/// integer milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    if let Ok(ms) = ferrocep_core::time::parse_duration_ms(text) {
        return Ok(ms);
    }
    // Also accept decimal seconds such as `1.5s`, handy for demo windows.
    if let Some(secs) = text.trim().strip_suffix('s') {
        if let Ok(v) = secs.parse::<f64>() {
            if v.is_finite() && v >= 0.0 && v * 1000.0 < i64::MAX as f64 {
                return Ok((v * 1000.0).round() as i64);
            }
        }
    }
    Err(format!(
        "invalid duration '{text}': expected milliseconds or a number with unit ms, s, m, h or d (e.g. 250ms, 1.5s, 10m)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1500ms"), Ok(1500));
        assert_eq!(parse_duration("1s"), Ok(1000));
        assert_eq!(parse_duration("1.5s"), Ok(1500));
        assert_eq!(parse_duration("80"), Ok(80));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
