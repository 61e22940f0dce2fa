//! A tiny key=value parser: the crate whose CI `.github/workflows/ci.yml` runs.

/// Parses `key=value` lines, skipping blanks and `#` comments.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                if cfg!(feature = "strict") && v.trim().is_empty() {
                    return Err(format!("line {}: empty value", i + 1));
                }
                out.push((k.trim().to_string(), v.trim().to_string()))
            }
            _ => return Err(format!("line {}: expected key=value", i + 1)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn pairs_comments_and_blanks() {
        let v = parse("# c\n\na = 1\nb=two\n").unwrap();
        assert_eq!(
            v,
            vec![("a".into(), "1".into()), ("b".into(), "two".into())]
        );
    }

    #[test]
    fn a_line_without_equals_is_an_error() {
        assert_eq!(parse("nope").unwrap_err(), "line 1: expected key=value");
    }
}
