//! Human durations as written in workflow and rubric files: `500ms`, `1s`,
//! `2m`, `1h30m`, `6h`, `1d`. A bare number is seconds.

use std::time::Duration;

pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("invalid duration `{s}`: use e.g. `500ms`, `10s`, `2m`, `1h30m`");
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return if secs >= 0.0 {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(bad())
        };
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_end].trim();
        rest = &rest[unit_end..];
        let mult = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(n * mult);
    }
    Ok(total)
}

/// `850ms`, `3.2s`, `2m05s`, `1h02m`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2").unwrap(), Duration::from_secs(2));
        assert!(parse("3 parsecs").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format(Duration::from_millis(850)), "850ms");
        assert_eq!(format(Duration::from_millis(3200)), "3.2s");
        assert_eq!(format(Duration::from_secs(125)), "2m05s");
    }
}
