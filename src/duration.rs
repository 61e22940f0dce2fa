//! Human durations as written in workflow and rubric files: `500ms`, `1s`,
//! `2m`, `1h30m`, `6h`, `1d`. A bare number is seconds. Also the one place
//! that turns a duration back into text for people ([`format`]).
//!
//! Every duration a file can give is bounded by [`MAX`]: a `1e308` or `.nan`
//! is an error naming the limit, never a panic or a wait of centuries.

use std::time::Duration;

/// The longest wait a workflow or rubric may ask for (a timeout, a retry delay):
/// 30 days. Longer is a typo or an attack, not a plan.
pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// The limit as the user would write it.
pub const MAX_TEXT: &str = "30d";

fn too_long(what: &str) -> String {
    format!("{what} is too long: the limit is {MAX_TEXT} (43200 minutes)")
}

/// `secs` seconds as a duration, if it is a finite number from 0 to [`MAX`].
pub fn from_secs_f64(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{secs}` is not a duration"));
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX => Ok(d),
        _ => Err(too_long(&format!("`{secs}` seconds"))),
    }
}

/// `timeout-minutes` (and rubric minutes): a finite number greater than 0 and
/// at most [`MAX`]. The error says what is wrong in words.
pub fn from_minutes(minutes: f64) -> Result<Duration, String> {
    if minutes.is_nan() {
        return Err("`timeout-minutes` must be a number of minutes, not NaN".into());
    }
    if minutes <= 0.0 {
        return Err("`timeout-minutes` must be greater than 0".into());
    }
    if minutes > MAX.as_secs_f64() / 60.0 {
        // `1e308`, not three hundred digits.
        let shown = if minutes >= 1e15 {
            format!("{minutes:e}")
        } else {
            minutes.to_string()
        };
        return Err(too_long(&format!("`timeout-minutes: {shown}`")));
    }
    Ok(Duration::from_secs_f64(minutes * 60.0))
}

pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("invalid duration `{s}`: use e.g. `500ms`, `10s`, `2m`, `1h30m`");
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return if secs.is_nan() || secs < 0.0 {
            Err(bad())
        } else if secs > MAX.as_secs_f64() {
            Err(too_long(&format!("duration `{s}`")))
        } else {
            Ok(Duration::from_secs_f64(secs))
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
        let part = n * mult;
        if !part.is_finite() || part > MAX.as_secs_f64() {
            return Err(too_long(&format!("duration `{s}`")));
        }
        total += Duration::from_secs_f64(part);
        if total > MAX {
            return Err(too_long(&format!("duration `{s}`")));
        }
    }
    Ok(total)
}

/// `850ms`, `3.2s`, `2m05s`, `1h02m`: how trun shows every duration (reports,
/// history, retry delays, timeouts). Tenths are cut, not rounded, so 59.99 s
/// is `59.9s`, never `60.0s`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{}s", ms / 1000, ms % 1000 / 100)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// [`format`] of a number of milliseconds (as events carry them).
pub fn format_ms(ms: u64) -> String {
    format(Duration::from_millis(ms))
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
    fn out_of_range_is_an_error_naming_the_limit() {
        for s in [
            "1e308",
            "inf",
            "NaN",
            "-1",
            "999999999999d",
            "31d",
            "720h1s",
        ] {
            let e = parse(s).unwrap_err();
            assert!(
                e.contains("30d") || e.starts_with("invalid duration"),
                "{s}: {e}"
            );
        }
        assert_eq!(parse("30d").unwrap(), MAX);
        assert_eq!(
            parse("1e308").unwrap_err(),
            "duration `1e308` is too long: the limit is 30d (43200 minutes)"
        );
        assert_eq!(
            from_minutes(f64::NAN).unwrap_err(),
            "`timeout-minutes` must be a number of minutes, not NaN"
        );
        assert!(from_minutes(1e308).is_err());
        assert!(from_minutes(-1.0).is_err());
        assert!(from_secs_f64(f64::INFINITY).is_err());
        assert_eq!(from_minutes(0.5).unwrap(), Duration::from_secs(30));
    }

    #[test]
    fn formats() {
        assert_eq!(format(Duration::from_millis(850)), "850ms");
        assert_eq!(format(Duration::from_millis(3200)), "3.2s");
        assert_eq!(format(Duration::from_secs(125)), "2m05s");
        assert_eq!(format_ms(59_999), "59.9s");
        assert_eq!(format_ms(3_725_000), "1h02m");
    }
}
