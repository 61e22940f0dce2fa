//! Markdown rubrics: a `rubric.md` a teacher can also hand to students, parsed into the
//! same [`Rubric`] as `rubric.yaml`.
//!
//! The format, line by line (everything else is prose and ignored):
//!
//! ````markdown
//! # Calculator lab                     <- optional title, ignored
//!
//! setup: make                          <- rubric keys, before the first `##`:
//! timeout: 10s                            setup, timeout, max-output, shell, watch
//! watch: src/**, Makefile                 (comma-separated), image, dockerfile
//!
//! ## Builds (0 pts)                    <- one `##` heading per criterion, points in
//!                                         parentheses: (10 pts), (1 pt), (2.5 points)
//! - id: builds                         <- criterion keys, plain or as a list item:
//!                                         id, needs (comma-separated), timeout,
//! ```sh                                   max-output, hidden (yes/no), setup, stdin,
//! make                                    exit-code, stdout, stderr,
//! ```                                     compare (exact|contains|regex),
//!                                         score (`junit [FILE]` or `fraction`)
//! ## add: two arguments (10 pts)
//! - needs: builds
//! - stdout: 5                          <- a one-line expected stdout ...
//!
//! ```sh                                <- the command: the first block fenced as sh,
//! ./calc add 2 3                          bash, shell, console, run, or with no language
//! ```
//!
//! ```stdout                            <- ... or a multi-line one; `stdin` and `stderr`
//! 5                                       blocks work the same way; blocks in other
//! ```                                     languages are examples and ignored
//! ````
//!
//! A criterion without `id:` gets one from its title (`add: two arguments` ->
//! `add-two-arguments`). Values may be wrapped in backticks or double quotes
//! (`stdout: "5"`). This module only parses; validation is the rubric's.

use super::{
    parse_duration, parse_size, ByteSize, Compare, Container, Criterion, DurationSpec, Expect, Pos,
    Rubric, RubricError, ScoreFrom, ScoreSource, Shell,
};

/// Parses and validates a Markdown rubric; `origin` names it in messages.
pub fn from_markdown(text: &str, origin: &str) -> Result<Rubric, RubricError> {
    let mut p = Parser {
        origin,
        rubric: Rubric {
            version: 1,
            container: None,
            setup: None,
            defaults: Default::default(),
            watch: None,
            criteria: Vec::new(),
        },
        current: None,
    };
    let mut fence: Option<Fence> = None;
    for (i, line) in text.lines().enumerate() {
        let lineno = i as u64 + 1;
        if let Some(f) = fence.as_mut() {
            if f.closes(line) {
                let done = fence.take().expect("fence is open");
                p.block(done)?;
            } else {
                f.body.push(line.to_string());
            }
            continue;
        }
        if let Some(f) = Fence::opens(line, lineno) {
            fence = Some(f);
        } else if let Some(title) = line.strip_prefix("## ") {
            p.heading(title, lineno)?;
        } else {
            p.key_line(line, lineno)?;
        }
    }
    if let Some(f) = fence {
        return Err(p.error(f.line, "this code block is never closed"));
    }
    p.finish_criterion()?;
    p.rubric.validate(origin)?;
    Ok(p.rubric)
}

struct Parser<'a> {
    origin: &'a str,
    rubric: Rubric,
    current: Option<Draft>,
}

/// A criterion being read; `run` is still missing until its block is found.
struct Draft {
    criterion: Criterion,
    line: u64,
    has_run: bool,
    has_id: bool,
}

struct Fence {
    marker: String,
    info: String,
    line: u64,
    body: Vec<String>,
}

impl Fence {
    fn opens(line: &str, lineno: u64) -> Option<Fence> {
        let t = line.trim_start();
        let ch = t.chars().next().filter(|c| *c == '`' || *c == '~')?;
        let len = t.chars().take_while(|c| *c == ch).count();
        (len >= 3).then(|| Fence {
            marker: ch.to_string().repeat(len),
            info: t[len..].trim().to_lowercase(),
            line: lineno,
            body: Vec::new(),
        })
    }

    fn closes(&self, line: &str) -> bool {
        let t = line.trim();
        t.starts_with(&self.marker) && t.chars().all(|c| self.marker.starts_with(c))
    }

    fn text(&self) -> String {
        self.body.join("\n")
    }
}

fn parse_points(title: &str) -> Option<(String, f64)> {
    let t = title.trim_end();
    let inner = t.strip_suffix(')')?;
    let open = inner.rfind('(')?;
    let spec = inner[open + 1..].trim();
    let number = ["points", "point", "pts", "pt"]
        .iter()
        .find_map(|unit| spec.strip_suffix(unit))?;
    let points: f64 = number.trim().parse().ok()?;
    Some((inner[..open].trim().to_string(), points))
}

/// `add: two arguments` -> `add-two-arguments`.
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "criterion".to_string()
    } else {
        out
    }
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['`', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| unquote(s).to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn syntax(origin: &str, line: u64, message: String) -> RubricError {
    RubricError::Syntax {
        origin: origin.to_string(),
        pos: Some(Pos { line, col: 1 }),
        message,
    }
}

fn expect_of(c: &mut Criterion) -> &mut Expect {
    c.expect.get_or_insert(Expect {
        exit_code: None,
        stdout: None,
        stderr: None,
        compare: Compare::Exact,
    })
}

const RUBRIC_KEYS: &[&str] = &[
    "setup",
    "timeout",
    "max-output",
    "shell",
    "watch",
    "image",
    "dockerfile",
];
const CRITERION_KEYS: &[&str] = &[
    "id",
    "needs",
    "timeout",
    "max-output",
    "hidden",
    "setup",
    "stdin",
    "exit-code",
    "stdout",
    "stderr",
    "compare",
    "score",
];

impl Parser<'_> {
    fn error(&self, line: u64, message: impl Into<String>) -> RubricError {
        syntax(self.origin, line, message.into())
    }

    fn heading(&mut self, title: &str, line: u64) -> Result<(), RubricError> {
        self.finish_criterion()?;
        let Some((title, points)) = parse_points(title) else {
            return Err(self.error(
                line,
                format!(
                    "heading `## {}` has no points; write it as `## {} (10 pts)`",
                    title.trim(),
                    title.trim()
                ),
            ));
        };
        let mut c = Criterion::new(slug(&title), points, "");
        c.title = Some(title);
        c.span.id = Some(Pos { line, col: 1 });
        c.span.points = Some(Pos { line, col: 1 });
        self.current = Some(Draft {
            criterion: c,
            line,
            has_run: false,
            has_id: false,
        });
        Ok(())
    }

    fn finish_criterion(&mut self) -> Result<(), RubricError> {
        let Some(d) = self.current.take() else {
            return Ok(());
        };
        if !d.has_run {
            return Err(self.error(
                d.line,
                format!(
                    "criterion `{}` has no command; put it in a ```sh block under the heading",
                    d.criterion.id
                ),
            ));
        }
        self.rubric.criteria.push(d.criterion);
        Ok(())
    }

    fn key_line(&mut self, line: &str, lineno: u64) -> Result<(), RubricError> {
        let t = line.trim();
        let t = t
            .strip_prefix("- ")
            .or_else(|| t.strip_prefix("* "))
            .unwrap_or(t)
            .trim();
        let Some((key, value)) = t.split_once(':') else {
            return Ok(());
        };
        let key = unquote(key).trim().to_lowercase();
        let keys = if self.current.is_some() {
            CRITERION_KEYS
        } else {
            RUBRIC_KEYS
        };
        if !keys.contains(&key.as_str()) {
            return Ok(());
        }
        let value = unquote(value).to_string();
        let origin = self.origin;
        let error = |message: String| syntax(origin, lineno, message);
        let duration = |v: &str| parse_duration(v).map(DurationSpec).map_err(error);
        let size = |v: &str| parse_size(v).map(ByteSize).map_err(error);
        let Some(draft) = self.current.as_mut() else {
            let r = &mut self.rubric;
            match key.as_str() {
                "setup" => r.setup = Some(value),
                "timeout" => r.defaults.timeout = duration(&value)?,
                "max-output" => r.defaults.max_output = size(&value)?,
                "shell" => {
                    r.defaults.shell = match value.as_str() {
                        "sh" => Shell::Sh,
                        "bash" => Shell::Bash,
                        other => return Err(error(format!("shell `{other}` is not sh or bash"))),
                    }
                }
                "watch" => r.watch = Some(list(&value)),
                "image" | "dockerfile" => {
                    let c = r.container.get_or_insert(Container {
                        image: None,
                        dockerfile: None,
                        context: None,
                    });
                    if key == "image" {
                        c.image = Some(value);
                    } else {
                        c.dockerfile = Some(value);
                    }
                }
                _ => {}
            }
            return Ok(());
        };
        let timeout = if key == "timeout" {
            Some(duration(&value)?)
        } else {
            None
        };
        let max_output = if key == "max-output" {
            Some(size(&value)?)
        } else {
            None
        };
        let c = &mut draft.criterion;
        match key.as_str() {
            "id" => {
                c.id = value;
                draft.has_id = true;
            }
            "needs" => {
                c.needs = list(&value);
                c.span.needs = vec![
                    Some(Pos {
                        line: lineno,
                        col: 1
                    });
                    c.needs.len()
                ];
            }
            "timeout" => c.timeout = timeout,
            "max-output" => c.max_output = max_output,
            "hidden" => {
                c.hidden = match value.to_lowercase().as_str() {
                    "yes" | "true" => true,
                    "no" | "false" => false,
                    other => return Err(error(format!("hidden: `{other}` is not yes or no"))),
                }
            }
            "setup" => c.setup = Some(value),
            "stdin" => c.stdin = Some(value),
            "exit-code" => {
                let code = value
                    .parse()
                    .map_err(|_| error(format!("exit-code: `{value}` is not a whole number")))?;
                expect_of(c).exit_code = Some(code);
            }
            "stdout" => expect_of(c).stdout = Some(value),
            "stderr" => expect_of(c).stderr = Some(value),
            "compare" => {
                expect_of(c).compare = match value.as_str() {
                    "exact" => Compare::Exact,
                    "contains" => Compare::Contains,
                    "regex" => Compare::Regex,
                    other => {
                        return Err(error(format!(
                            "compare: `{other}` is not exact, contains or regex"
                        )))
                    }
                }
            }
            "score" => {
                let mut words = value.split_whitespace();
                let from = match words.next() {
                    Some("junit") => ScoreFrom::Junit,
                    Some("fraction") => ScoreFrom::Fraction,
                    _ => {
                        return Err(error(format!(
                            "score: `{value}` is not `junit [FILE]` or `fraction`"
                        )))
                    }
                };
                c.score = Some(ScoreSource {
                    from,
                    file: words.next().map(str::to_string),
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn block(&mut self, fence: Fence) -> Result<(), RubricError> {
        let Some(draft) = self.current.as_mut() else {
            return Ok(());
        };
        let lang = fence.info.split_whitespace().next().unwrap_or("");
        let c = &mut draft.criterion;
        match lang {
            "" | "sh" | "bash" | "shell" | "console" | "run" => {
                if draft.has_run {
                    let id = c.id.clone();
                    return Err(self.error(
                        fence.line,
                        format!(
                            "criterion `{id}` has a second command block; fence extra blocks as ```stdin, ```stdout or ```text"
                        ),
                    ));
                }
                c.run = fence.text();
                draft.has_run = true;
            }
            "stdin" => c.stdin = Some(format!("{}\n", fence.text())),
            "stdout" | "expect" | "expected" | "stderr" => {
                let e = expect_of(c);
                if lang == "stderr" {
                    e.stderr = Some(fence.text());
                } else {
                    e.stdout = Some(fence.text());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = r#"# Calculator lab

Students write a calculator. Note: prose like this is ignored.

setup: make
timeout: 10s

## Builds (0 pts)

- id: builds

```sh
make
```

## add: two arguments (10 pts)

- needs: builds
- stdout: "5"

```sh
./calc add 2 3
```

## Reads stdin (2.5 points)

- id: stdin
- compare: contains
- hidden: yes

```bash
./calc sum
```

```stdin
1
2
```

```stdout
3
```
"#;

    #[test]
    fn parses_headings_keys_and_blocks() {
        let r = from_markdown(MD, "rubric.md").expect("valid");
        assert_eq!(r.setup.as_deref(), Some("make"));
        assert_eq!(r.defaults.timeout.0.as_secs(), 10);
        let ids: Vec<&str> = r.criteria.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["builds", "add-two-arguments", "stdin"]);
        let add = &r.criteria[1];
        assert_eq!(add.points, 10.0);
        assert_eq!(add.needs, ["builds"]);
        assert_eq!(add.run, "./calc add 2 3");
        assert_eq!(
            add.expect.as_ref().and_then(|e| e.stdout.as_deref()),
            Some("5")
        );
        let s = &r.criteria[2];
        assert_eq!(s.points, 2.5);
        assert!(s.hidden);
        assert_eq!(s.stdin.as_deref(), Some("1\n2\n"));
        assert_eq!(
            s.expect.as_ref().map(|e| e.compare),
            Some(Compare::Contains)
        );
        assert_eq!(
            s.expect.as_ref().and_then(|e| e.stdout.as_deref()),
            Some("3")
        );
    }

    #[test]
    fn heading_without_points_is_an_error() {
        let e = from_markdown("## Builds\n```sh\nmake\n```\n", "rubric.md")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("rubric.md:1:1: heading `## Builds` has no points; write it as `## Builds (10 pts)`")
        );
    }

    #[test]
    fn missing_command_and_unknown_need_point_at_lines() {
        let e = from_markdown("## A (1 pt)\nno block\n", "r.md")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "r.md:1:1: criterion `a` has no command; put it in a ```sh block under the heading"
            )
        );
        let e = from_markdown("## A (1 pt)\nneeds: b\n```\nx\n```\n", "r.md")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("r.md:2:1: criterion `a` needs unknown criterion `b`")
        );
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("add: two arguments"), "add-two-arguments");
        assert_eq!(slug("  Builds!  "), "builds");
        assert_eq!(slug("???"), "criterion");
    }
}
