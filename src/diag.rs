//! Errors about the workflow file, rendered the way a person wants to read
//! them: `trun.yaml:LINE:COL: message`, the offending line, a caret under the
//! offending text, and a hint when we have one.
//!
//! Every user-caused error about the file goes through [`Diagnostic`]; the
//! rendering lives here and nowhere else. Errors about running (a step
//! failed) are not diagnostics: they are events.

use crate::spanned::Loc;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: Option<PathBuf>,
    pub line: u32,
    pub col: u32,
    pub message: String,
    /// The source line the error is on, for the caret display.
    pub source_line: Option<String>,
    /// How many characters the caret underlines.
    pub width: usize,
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error that is about no particular place in the file.
    pub fn plain(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            path: None,
            line: 0,
            col: 0,
            message: message.into(),
            source_line: None,
            width: 0,
            help: None,
        }
    }

    pub fn at(path: &Path, text: &str, loc: Loc, message: impl Into<String>) -> Diagnostic {
        let message = message.into();
        if !loc.is_known() {
            return Diagnostic {
                path: Some(path.to_path_buf()),
                ..Diagnostic::plain(message)
            };
        }
        let source_line = text.lines().nth(loc.line as usize - 1).map(str::to_string);
        let width = source_line
            .as_deref()
            .map(|l| token_width(l, loc.col as usize))
            .unwrap_or(1);
        Diagnostic {
            path: Some(path.to_path_buf()),
            line: loc.line,
            col: loc.col,
            message,
            source_line,
            width,
            help: None,
        }
    }

    /// Point at byte `offset` of the file (e.g. an expression inside a block scalar).
    pub fn at_offset(
        path: &Path,
        text: &str,
        offset: usize,
        len: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() as u32 + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() as u32 + 1;
        let mut d = Diagnostic::at(
            path,
            text,
            Loc {
                line,
                col,
                offset: Some(offset),
            },
            message,
        );
        if len > 0 {
            let rest = &text[offset..];
            let end = rest.find('\n').unwrap_or(rest.len()).min(len);
            d.width = rest[..end].chars().count().max(1);
        }
        d
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_width(mut self, width: usize) -> Diagnostic {
        self.width = width.max(1);
        self
    }

    /// Convert a YAML parse or shape error into a diagnostic, adding a
    /// did-you-mean to serde's "unknown field" messages.
    pub fn from_yaml(path: &Path, text: &str, err: &serde_saphyr::Error) -> Diagnostic {
        let loc = err
            .location()
            .map(|l| Loc::from_saphyr(&l))
            .unwrap_or(Loc::UNKNOWN);
        let raw = match err.without_snippet() {
            serde_saphyr::Error::Message { msg, .. } => msg.clone(),
            other => strip_location_suffix(&other.to_string()),
        };
        let (message, help) = improve_serde_message(&raw);
        let mut d = Diagnostic::at(path, text, loc, message);
        d.help = help;
        d
    }

    /// `trun.yaml:3:5`, or just the path when the location is unknown.
    pub fn location(&self) -> String {
        match &self.path {
            Some(p) if self.line > 0 => format!("{}:{}:{}", p.display(), self.line, self.col),
            Some(p) => p.display().to_string(),
            None => String::new(),
        }
    }

    /// The full, multi-line rendering.
    pub fn render(&self, color: bool) -> String {
        let (red, blue, bold, reset) = if color {
            ("\x1b[31m", "\x1b[34m", "\x1b[1m", "\x1b[0m")
        } else {
            ("", "", "", "")
        };
        let mut out = String::new();
        let loc = self.location();
        if loc.is_empty() {
            out.push_str(&format!(
                "{bold}{red}error{reset}{bold}: {}{reset}\n",
                self.message
            ));
        } else {
            out.push_str(&format!(
                "{bold}{loc}: {red}error{reset}{bold}: {}{reset}\n",
                self.message
            ));
        }
        if let Some(src) = &self.source_line {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            let prefix: String = src
                .chars()
                .take(self.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("{blue}{pad} |{reset}\n"));
            out.push_str(&format!("{blue}{num} |{reset} {src}\n"));
            out.push_str(&format!(
                "{blue}{pad} |{reset} {prefix}{red}{}{reset}\n",
                "^".repeat(self.width.max(1))
            ));
        }
        if let Some(h) = &self.help {
            out.push_str(&format!("  {blue}help{reset}: {h}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostic {}

/// Width of the token starting at 1-based `col`: up to the next space, `,`,
/// `]`, `}` or `:` outside quotes, so the caret underlines the word in error.
fn token_width(line: &str, col: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(col.saturating_sub(1)).collect();
    if rest.is_empty() {
        return 1;
    }
    if rest[0] == '"' || rest[0] == '\'' {
        let q = rest[0];
        let end = rest[1..].iter().position(|&c| c == q).map(|p| p + 2);
        return end.unwrap_or(rest.len());
    }
    let n = rest
        .iter()
        .position(|&c| c.is_whitespace() || matches!(c, ',' | ']' | '}') || (c == ':'))
        .unwrap_or(rest.len());
    n.max(1)
}

fn strip_location_suffix(s: &str) -> String {
    // serde-saphyr appends " at line X column Y" to some messages; we show
    // the location ourselves.
    let first = s.lines().next().unwrap_or(s);
    match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

/// Turn serde's generic messages into ours: "unknown field `neds`, expected
/// one of `name`, `needs`" becomes "unknown key `neds` (did you mean `needs`?)".
fn improve_serde_message(raw: &str) -> (String, Option<String>) {
    let raw = strip_location_suffix(raw);
    for (prefix, noun) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        let Some(rest) = raw.strip_prefix(prefix) else {
            continue;
        };
        let Some(end) = rest.find('`') else { continue };
        let word = &rest[..end];
        let expected = expected_list(&rest[end + 1..]);
        let msg = match did_you_mean(word, expected.iter().map(String::as_str)) {
            Some(s) => format!("unknown {noun} `{word}` (did you mean `{s}`?)"),
            None => format!("unknown {noun} `{word}`"),
        };
        let help = if expected.is_empty() {
            None
        } else if noun == "key" {
            Some(format!("valid keys here: {}", expected.join(", ")))
        } else {
            Some(format!("expected one of: {}", expected.join(", ")))
        };
        return (msg, help);
    }
    if let Some(rest) = raw.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return (
            format!("duplicate key `{key}`"),
            Some("each key may appear once in a mapping".into()),
        );
    }
    if let Some(rest) = raw.strip_prefix("missing field `") {
        if let Some(end) = rest.find('`') {
            return (format!("missing required key `{}`", &rest[..end]), None);
        }
    }
    if raw == "invalid floating point" || raw.starts_with("invalid integer") {
        return ("wrong type: expected a number".to_string(), None);
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        return (format!("wrong type: {rest}"), None);
    }
    (raw.to_string(), None)
}

/// `, expected one of a, b, c` (with or without backticks) -> [a, b, c].
fn expected_list(s: &str) -> Vec<String> {
    let s = s.trim_start_matches(',').trim();
    let s = s
        .strip_prefix("expected one of")
        .or_else(|| s.strip_prefix("expected"))
        .unwrap_or("");
    s.split(',')
        .map(|w| w.trim().trim_matches('`').to_string())
        .filter(|w| !w.is_empty() && !w.contains(' '))
        .collect()
}

/// The closest candidate to `word`, if it is close enough to be a typo: the one place
/// trun decides what "did you mean" suggests, for keys, jobs, steps, actions, expression
/// names and rubric criteria alike. Case is ignored. Edit distance (with
/// transpositions) catches typos, within 1 edit for names up to 3 characters, 2 up to 6,
/// 3 beyond, and never a whole word's worth; Jaro-Winkler also catches a truncated name (`build` for `build-app`), which
/// edit distance ranks as far away. The nearest wins, then the most similar.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = match word.chars().count() {
        0..=3 => 1,
        4..=6 => 2,
        _ => 3,
    };
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| {
            let c_lower = c.to_lowercase();
            let distance = strsim::damerau_levenshtein(&lower, &c_lower);
            let similarity = strsim::jaro_winkler(&lower, &c_lower);
            (distance, similarity, c)
        })
        // Replacing every character of a short word is not a typo (`c` is not `a`).
        .filter(|(d, sim, _)| (*d <= limit && *d < lower.chars().count()) || *sim >= 0.88)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_gets_did_you_mean() {
        let (m, h) =
            improve_serde_message("unknown field `neds`, expected one of `name`, `needs`, `if`");
        assert_eq!(m, "unknown key `neds` (did you mean `needs`?)");
        assert_eq!(h.as_deref(), Some("valid keys here: name, needs, if"));
        let (m, h) = improve_serde_message(
            "unknown field `neds`, expected one of name, needs, if at line 3, column 5",
        );
        assert_eq!(m, "unknown key `neds` (did you mean `needs`?)");
        assert_eq!(h.as_deref(), Some("valid keys here: name, needs, if"));
    }

    #[test]
    fn caret_under_token() {
        let d = Diagnostic::at(
            Path::new("trun.yaml"),
            "jobs:\n  a:\n    needs: biuld\n",
            Loc {
                line: 3,
                col: 12,
                offset: None,
            },
            "unknown job `biuld`",
        );
        assert_eq!(
            d.render(false),
            "trun.yaml:3:12: error: unknown job `biuld`\n  |\n3 |     needs: biuld\n  |            ^^^^^\n"
        );
    }
}
