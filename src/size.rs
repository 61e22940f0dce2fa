//! Sizes as written in workflow and rubric files: `512m`, `1.5g`, `64KiB`,
//! `10MB`, `1048576`. The one parser of byte sizes in trun.
//!
//! Every unit is binary, as Docker reads `--memory` and `--shm-size`:
//! `k` = `kb` = `KiB` = 1024 bytes, `m` = `mb` = `MiB` = 1024², `g`, `t`
//! likewise. Units are case-insensitive and the trailing `b`/`ib` is optional;
//! a bare number is bytes; a fraction is allowed (`1.5g`) and rounded to a
//! byte. So `1MB` is 1 048 576 bytes everywhere in trun — in a container's
//! `memory`, in `options: --memory 1mb` and in a rubric's `max-output` —
//! never 10⁶ in one place and 2²⁰ in another.
//!
//! This module does not know what a size is for (a memory limit, an output
//! cap); callers bound it further if they need to.

/// A text that is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a size: write e.g. 512m, 64KiB, 2g or 1048576 (units are binary: 1m = 1MiB = 1048576 bytes)")]
pub struct SizeError {
    pub text: String,
}

/// A byte count as people read it: `512 B`, `1.5 KiB`, `3.2 GiB` (binary units, as
/// [`parse`] reads them).
pub fn format(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses a size in bytes (see the module docs for the units). Negative,
/// not-a-number and values of 2⁶³ bytes or more are errors.
pub fn parse(text: &str) -> Result<u64, SizeError> {
    let err = || SizeError {
        text: text.to_string(),
    };
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(err()),
    };
    let n: f64 = number.parse().map_err(|_| err())?;
    let bytes = n * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= i64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_binary_whatever_its_spelling() {
        for (text, bytes) in [
            ("1048576", 1 << 20),
            ("512b", 512),
            ("64k", 64 << 10),
            ("64kb", 64 << 10),
            ("64KiB", 64 << 10),
            ("1m", 1 << 20),
            ("1MB", 1 << 20),
            ("1MiB", 1 << 20),
            ("1.5g", 3 << 29),
            ("2GB", 2 << 30),
            (" 1t ", 1 << 40),
        ] {
            assert_eq!(parse(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn nonsense_and_absurd_sizes_are_errors() {
        for text in [
            "",
            "lots",
            "-1m",
            "1e400",
            "nan",
            "9999999999t",
            "1 parsec",
            "1.2.3m",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        assert_eq!(
            parse("lots").unwrap_err().to_string(),
            "`lots` is not a size: write e.g. 512m, 64KiB, 2g or 1048576 (units are binary: 1m = 1MiB = 1048576 bytes)"
        );
    }
}
