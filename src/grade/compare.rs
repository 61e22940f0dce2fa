//! Comparing a command's output with what the rubric expects.
//!
//! Both sides are normalised the same way before comparing: CRLF and lone CR become LF
//! (a student on Windows must not fail on line endings) and surrounding whitespace is
//! trimmed (a missing final newline is not a wrong answer). This module only decides
//! match or no match; it does not know about points or statuses.

use crate::rubric::Compare;

/// Line endings to `\n`, then surrounding whitespace removed.
pub fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .trim()
        .to_string()
}

/// True when `actual` satisfies `expected` under `mode`. A regex that does not compile
/// never matches (validation rejects such rubrics before anything runs).
pub fn matches(mode: Compare, expected: &str, actual: &str) -> bool {
    let expected = normalize(expected);
    let actual = normalize(actual);
    match mode {
        Compare::Exact => actual == expected,
        Compare::Contains => actual.contains(&expected),
        Compare::Regex => regex::Regex::new(&expected).is_ok_and(|re| re.is_match(&actual)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ignores_crlf_and_surrounding_space() {
        assert!(matches(Compare::Exact, "5", "5\r\n"));
        assert!(matches(Compare::Exact, "a\nb", "  a\r\nb\n\n"));
        assert!(!matches(Compare::Exact, "5", "50"));
    }

    #[test]
    fn contains_and_regex_search_anywhere() {
        assert!(matches(Compare::Contains, "sum", "the sum is 5"));
        assert!(!matches(Compare::Contains, "total", "the sum is 5"));
        assert!(matches(Compare::Regex, r"is \d+", "the sum is 5\n"));
        assert!(matches(Compare::Regex, r"^5$", "5\r\n"));
        assert!(!matches(Compare::Regex, r"^\d+$", "sum 5"));
    }
}
