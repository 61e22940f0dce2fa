//! The files a step writes to talk back: `$TRUN_OUTPUT` / `$GITHUB_OUTPUT`
//! (step outputs), `$GITHUB_ENV` (env for later steps) and `$GITHUB_PATH`
//! (PATH entries for later steps), in GitHub Actions' formats so existing
//! scripts work unchanged.

use std::collections::BTreeMap;
use std::path::Path;

/// Parse `key=value` lines and heredoc blocks:
///
/// ```text
/// name=value
/// notes<<EOF
/// line 1
/// line 2
/// EOF
/// ```
pub fn parse_kv(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        let heredoc = line.find("<<").filter(|&i| !line[..i].contains('='));
        if let Some(i) = heredoc {
            let key = line[..i].trim();
            let delim = line[i + 2..].trim();
            if key.is_empty() || delim.is_empty() {
                return Err(format!("malformed line `{line}`"));
            }
            let mut value: Vec<&str> = Vec::new();
            let mut closed = false;
            for l in lines.by_ref() {
                if l == delim {
                    closed = true;
                    break;
                }
                value.push(l);
            }
            if !closed {
                return Err(format!("`{key}<<{delim}` has no closing `{delim}` line"));
            }
            out.insert(key.to_string(), value.join("\n"));
        } else if let Some((k, v)) = line.split_once('=') {
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("malformed line `{line}`: empty name"));
            }
            out.insert(k.to_string(), v.to_string());
        } else {
            return Err(format!(
                "malformed line `{line}`: expected `name=value` or `name<<DELIMITER`"
            ));
        }
    }
    Ok(out)
}

/// Read and parse a file the step may or may not have written.
pub fn read_kv(path: &Path) -> Result<BTreeMap<String, String>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => parse_kv(&t).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// `$GITHUB_PATH`: one directory per line.
pub fn read_path_file(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_heredoc() {
        let m = parse_kv("a=1\nb=x=y\nnotes<<EOF\nl1\nl2\nEOF\n").unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x=y");
        assert_eq!(m["notes"], "l1\nl2");
    }

    #[test]
    fn unclosed_heredoc_is_an_error() {
        assert!(parse_kv("n<<EOF\nl1\n")
            .unwrap_err()
            .contains("no closing `EOF`"));
    }
}
