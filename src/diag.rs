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
        let (message, help) = match err.without_snippet() {
            serde_saphyr::Error::Message { msg, .. } => improve_serde_message(msg),
            serde_saphyr::Error::Budget { breach, .. } => (budget_message(breach), None),
            serde_saphyr::Error::MultipleDocuments { .. } => (
                format!(
                    "{} holds several YAML documents (`---`); a workflow is one document",
                    path.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_else(|| path.to_string_lossy())
                ),
                Some(
                    "remove the `---` line and what follows, or move it to a file of its own"
                        .into(),
                ),
            ),
            serde_saphyr::Error::BinaryNotUtf8 { .. }
            | serde_saphyr::Error::InvalidBinaryBase64 { .. }
            | serde_saphyr::Error::TaggedScalarCannotDeserializeIntoString { .. } => (
                "a tagged value (`!!binary`, `!tag`) cannot stand where text is expected".into(),
                Some("write the value as plain text".into()),
            ),
            other => improve_serde_message(&strip_location_suffix(&other.to_string())),
        };
        let loc = match err.without_snippet() {
            // Point at the `---` that starts the second document, not at
            // what follows it.
            serde_saphyr::Error::MultipleDocuments { .. } if loc.is_known() => text
                .lines()
                .enumerate()
                .take(loc.line as usize)
                .filter(|(_, l)| l.starts_with("---"))
                .last()
                .map_or(loc, |(i, _)| Loc {
                    line: i as u32 + 1,
                    col: 1,
                    offset: None,
                }),
            _ => loc,
        };
        let mut d = Diagnostic::at(path, text, loc, message);
        d.help = help;
        // The parser's word for a key past its look-ahead limit is
        // "expected mapping start"; say what is wrong.
        if d.width > 1024 && d.message.starts_with("expected ") {
            d.message = "this key is longer than 1024 characters, the limit for a YAML key".into();
            d.help = Some("use a shorter key".into());
        }
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
        self.render_as("error", color)
    }

    /// Rendered as a warning: the same shape, `warning` instead of `error`.
    pub fn render_warning(&self, color: bool) -> String {
        self.render_as("warning", color)
    }

    fn render_as(&self, kind: &str, color: bool) -> String {
        let (red, blue, bold, reset) = if color {
            ("\x1b[31m", "\x1b[34m", "\x1b[1m", "\x1b[0m")
        } else {
            ("", "", "", "")
        };
        let mut out = String::new();
        let loc = self.location();
        let message = printable(&self.message);
        if loc.is_empty() {
            out.push_str(&format!(
                "{bold}{red}{kind}{reset}{bold}: {message}{reset}\n"
            ));
        } else {
            out.push_str(&format!(
                "{bold}{loc}: {red}{kind}{reset}{bold}: {message}{reset}\n"
            ));
        }
        if let Some(src) = &self.source_line {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            let (shown, col, width) = excerpt(src, self.col as usize, self.width);
            let shown = printable(&shown);
            let prefix: String = shown
                .chars()
                .take(col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("{blue}{pad} |{reset}\n"));
            out.push_str(&format!("{blue}{num} |{reset} {shown}\n"));
            out.push_str(&format!(
                "{blue}{pad} |{reset} {prefix}{red}{}{reset}\n",
                "^".repeat(width.max(1))
            ));
        }
        if let Some(h) = &self.help {
            out.push_str(&format!("  {blue}help{reset}: {}\n", printable(h)));
        }
        out
    }
}

/// `text` with control characters (an escape sequence in a job id, a NUL)
/// shown as `\u{..}` escapes: a workflow must not be able to drive the
/// terminal of whoever reads its errors. Tabs and newlines stay.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() && c != '\t' && c != '\n' {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// How many characters of a source line a diagnostic shows at most: a
/// minified or generated file may have a line of a megabyte.
pub const EXCERPT_CHARS: usize = 120;

/// The part of `line` to show around 1-based column `col`, with `…` where it
/// was cut, and the column and caret width within that part.
fn excerpt(line: &str, col: usize, width: usize) -> (String, usize, usize) {
    let len = line.chars().count();
    if len <= EXCERPT_CHARS {
        return (line.to_string(), col, width);
    }
    let at = col.saturating_sub(1).min(len);
    // Keep a third of the window before the column, the rest after it.
    let start = at.saturating_sub(EXCERPT_CHARS / 3);
    let end = (start + EXCERPT_CHARS).min(len);
    let start = end.saturating_sub(EXCERPT_CHARS).min(start);
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(start).take(end - start));
    if end < len {
        shown.push('…');
    }
    let col = at - start + 1 + usize::from(start > 0);
    let width = width.min(end.saturating_sub(at)).max(1);
    (shown, col, width)
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
    // A breach inside a value read through serde (a `with:` mapping) comes
    // back as text: `budget breached: Nodes { nodes: 250001 }`.
    if let Some(rest) = raw.strip_prefix("budget breached: ") {
        use serde_saphyr::budget::BudgetBreach as B;
        let kind = rest.split([' ', '{']).next().unwrap_or(rest);
        let breach = match kind {
            "Nodes" => Some(B::Nodes { nodes: 0 }),
            "Events" => Some(B::Events { events: 0 }),
            "Aliases" => Some(B::Aliases { aliases: 0 }),
            "Anchors" => Some(B::Anchors { anchors: 0 }),
            "Depth" => Some(B::Depth { depth: 0 }),
            "ScalarBytes" => Some(B::ScalarBytes {
                total_scalar_bytes: 0,
            }),
            "RecordedAnchorEvents" => Some(B::RecordedAnchorEvents {
                recorded_anchor_events: 0,
            }),
            _ => None,
        };
        if let Some(b) = breach {
            return (budget_message(&b), None);
        }
    }
    if raw == "recursion limit exceeded" {
        return (
            "the file nests lists and mappings too deeply: the limit is 255 levels of `[` and `{`"
                .to_string(),
            None,
        );
    }
    if raw == "invalid floating point" || raw.starts_with("invalid integer") {
        return ("wrong type: expected a number".to_string(), None);
    }
    if let Some(rest) = raw.strip_prefix("invalid type: ") {
        return (format!("wrong type: {rest}"), None);
    }
    (raw.to_string(), None)
}

/// A YAML budget breach in words, naming the limit.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let limits = serde_saphyr::budget::Budget::default();
    let too =
        |what: &str, limit: usize| format!("the file has too many {what}: the limit is {limit}");
    match breach {
        B::Nodes { .. } => too(
            "YAML values (scalars, lists and mappings)",
            limits.max_nodes,
        ),
        B::Events { .. } => too("YAML parser events", limits.max_events),
        B::Aliases { .. } => too("aliases (`*name`)", limits.max_aliases),
        B::Anchors { .. } => too("anchors (`&name`)", limits.max_anchors),
        B::Depth { .. } => format!(
            "the file nests lists and mappings too deeply: the limit is {} levels",
            limits.max_depth
        ),
        B::Documents { .. } => too("YAML documents", limits.max_documents),
        B::ScalarBytes { .. } => format!(
            "the file's values are too large: the limit is {} MiB of text in all",
            limits.max_total_scalar_bytes / (1024 * 1024)
        ),
        B::MergeKeys { .. } => too("merge keys (`<<`)", limits.max_merge_keys),
        B::AliasAnchorRatio { aliases, anchors } => format!(
            "the file uses its {anchors} anchors {aliases} times: aliases that expand \
             exponentially (a \"billion laughs\") are refused"
        ),
        B::RecordedAnchorEvents { .. } | B::RecordedAnchorBytes { .. } => {
            "the file's anchors expand to too much data: the limit is 1000000 values or 64 MiB"
                .into()
        }
        other => format!("the file exceeds a YAML size limit ({other:?})"),
    }
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

/// ` (did you mean `x`?)` for the closest candidate, or "" when none is close: the
/// suffix every "unknown …" message appends.
pub fn did_you_mean_suffix<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    did_you_mean(word, candidates)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
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
    fn a_long_line_is_cut_around_the_column() {
        let line = format!("run: {}BAD{}", "x".repeat(500), "y".repeat(500));
        let d = Diagnostic::at(
            Path::new("trun.yaml"),
            &line,
            Loc {
                line: 1,
                col: 506,
                offset: None,
            },
            "bad",
        )
        .with_width(3);
        let out = d.render(false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "trun.yaml:1:506: error: bad");
        assert!(lines[2].chars().count() < 130, "{}", lines[2]);
        assert!(lines[2].starts_with("1 | …x"), "{}", lines[2]);
        assert!(lines[2].ends_with("y…"), "{}", lines[2]);
        // The caret sits under BAD.
        let text_at = lines[2].chars().position(|c| c == 'B').unwrap();
        let caret_at = lines[3].chars().position(|c| c == '^').unwrap();
        assert_eq!(text_at, caret_at);
        assert_eq!(lines[3].matches('^').count(), 3);
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
