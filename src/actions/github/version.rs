//! Version requests as the `actions/setup-*` actions and `dtolnay/rust-toolchain` take
//! them (`3.11`, `3.x`, `20`, `>=1.21 <2`, `^1.21`, `~3.10`, `lts/*`), matched against
//! the version a host tool reports. Only what can be decided without a network: a
//! request that names a channel (`latest`, `lts/*`, `stable`) matches any release and
//! says so, since which release that is today is only known online.

use std::cmp::Ordering;
use std::fmt;

/// A released version: `3.11.7` is `[3, 11, 7]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub Vec<u64>);

impl Version {
    /// The first `1.2.3`-shaped run of digits and dots in `text` (`Python 3.11.7`,
    /// `v20.11.0`, `go version go1.22.3 linux/amd64`, `openjdk version "17.0.9"`).
    pub fn find(text: &str) -> Option<Version> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit()
                && (i == 0
                    || !bytes[i - 1].is_ascii_alphanumeric()
                    || matches!(bytes[i - 1], b'v' | b'o'))
            {
                let end = text[i..]
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .map_or(text.len(), |e| i + e);
                let run = text[i..end].trim_end_matches('.');
                if run.contains('.') {
                    return Version::parse(run);
                }
                i = end.max(i + 1);
            } else {
                i += 1;
            }
        }
        None
    }

    pub fn parse(text: &str) -> Option<Version> {
        let t = text.trim().trim_start_matches('v');
        let parts: Option<Vec<u64>> = t.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty() && p.len() <= 4).map(Version)
    }

    fn cmp_padded(&self, other: &[u64]) -> Ordering {
        let n = self.0.len().max(other.len());
        for i in 0..n {
            let a = self.0.get(i).copied().unwrap_or(0);
            let b = other.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        Ordering::Equal
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// The given components equal (`3.11` matches `3.11.7`).
    Prefix,
    Ge,
    Gt,
    Le,
    Lt,
    /// `^1.21`: the same first non-zero component, at least this.
    Caret,
    /// `~1.21`: the same major and minor, at least this.
    Tilde,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparator {
    op: Op,
    parts: Vec<u64>,
}

/// A parsed version request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Any release: a channel (`latest`, `lts/*`, `stable`, `node`) or `x`.
    Channel(String),
    /// Alternatives (`||`), each a conjunction of comparators.
    Ranges(Vec<Vec<Comparator>>),
}

impl Request {
    /// `Err` says why the request cannot be decided offline.
    pub fn parse(text: &str) -> Result<Request, String> {
        let t = text.trim();
        let lower = t.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "" | "x" | "*" | "latest" | "stable" | "lts/*" | "lts" | "node" | "current"
        ) {
            return Ok(Request::Channel(t.to_string()));
        }
        let mut alternatives = Vec::new();
        for alt in t.split("||") {
            let mut all = Vec::new();
            // `>= 3.8` and `>=3.8, <3.13` are both written.
            let normalized = alt.replace(',', " ");
            let mut words = normalized.split_whitespace().peekable();
            while let Some(w) = words.next() {
                let mut word = w.to_string();
                if matches!(word.as_str(), ">=" | "<=" | ">" | "<" | "=" | "^" | "~") {
                    match words.next() {
                        Some(n) => word.push_str(n),
                        None => return Err(format!("`{t}` ends with `{word}`")),
                    }
                }
                all.push(comparator(&word).ok_or_else(|| {
                    format!("`{t}` is not a version request trun understands (like `3.11`, `3.x`, `>=1.21`, `^20`)")
                })?);
            }
            if all.is_empty() {
                return Err(format!("`{t}` has an empty alternative"));
            }
            alternatives.push(all);
        }
        Ok(Request::Ranges(alternatives))
    }

    pub fn matches(&self, v: &Version) -> bool {
        match self {
            Request::Channel(_) => true,
            Request::Ranges(alts) => alts.iter().any(|all| all.iter().all(|c| c.matches(v))),
        }
    }

    /// The channel name when the request is one (for the "cannot check offline" note).
    pub fn channel(&self) -> Option<&str> {
        match self {
            Request::Channel(c) => Some(c),
            Request::Ranges(_) => None,
        }
    }
}

fn comparator(word: &str) -> Option<Comparator> {
    let (op, rest) = [
        (">=", Op::Ge),
        ("<=", Op::Le),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("=", Op::Prefix),
        ("^", Op::Caret),
        ("~", Op::Tilde),
    ]
    .into_iter()
    .find_map(|(p, op)| word.strip_prefix(p).map(|r| (op, r)))
    .unwrap_or((Op::Prefix, word));
    let rest = rest.trim_start_matches('v');
    let mut parts = Vec::new();
    for p in rest.split('.') {
        if matches!(p, "x" | "X" | "*") {
            break;
        }
        parts.push(p.parse().ok()?);
    }
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    Some(Comparator { op, parts })
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        let p = &self.parts;
        match self.op {
            Op::Prefix => v.0.len() >= p.len() && v.0[..p.len()] == p[..],
            Op::Ge => v.cmp_padded(p) != Ordering::Less,
            Op::Gt => v.cmp_padded(p) == Ordering::Greater,
            Op::Le => v.cmp_padded(p) != Ordering::Greater,
            Op::Lt => v.cmp_padded(p) == Ordering::Less,
            Op::Caret => {
                let lead = p.iter().position(|&x| x != 0).unwrap_or(p.len() - 1);
                v.cmp_padded(p) != Ordering::Less && v.0.len() > lead && v.0[..=lead] == p[..=lead]
            }
            Op::Tilde => {
                let keep = if p.len() >= 2 { 2 } else { 1 };
                v.cmp_padded(p) != Ordering::Less && v.0.len() >= keep && v.0[..keep] == p[..keep]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(req: &str, v: &str) -> bool {
        Request::parse(req)
            .unwrap()
            .matches(&Version::parse(v).unwrap())
    }

    #[test]
    fn finds_versions_in_tool_output() {
        let f = |s: &str| Version::find(s).map(|v| v.to_string());
        assert_eq!(f("Python 3.11.7").as_deref(), Some("3.11.7"));
        assert_eq!(f("v20.11.0").as_deref(), Some("20.11.0"));
        assert_eq!(
            f("go version go1.22.3 linux/amd64").as_deref(),
            Some("1.22.3")
        );
        assert_eq!(
            f("openjdk version \"17.0.9\" 2023-10-17").as_deref(),
            Some("17.0.9")
        );
        assert_eq!(
            f("rustc 1.91.0 (f8297e351 2025-10-28)").as_deref(),
            Some("1.91.0")
        );
        assert_eq!(f("no digits"), None);
    }

    #[test]
    fn prefixes_and_wildcards() {
        assert!(ok("3.11", "3.11.7"));
        assert!(!ok("3.1", "3.11.7"));
        assert!(ok("3", "3.11.7"));
        assert!(ok("3.x", "3.12.0"));
        assert!(ok("3.11.x", "3.11.2"));
        assert!(ok("20", "20.11.0"));
        assert!(ok("v20", "20.11.0"));
        assert!(!ok("18.x", "20.11.0"));
        assert!(ok("3.11.7", "3.11.7"));
        assert!(!ok("3.11.8", "3.11.7"));
    }

    #[test]
    fn ranges() {
        assert!(ok(">=3.8", "3.11.7"));
        assert!(ok(">= 3.8, <3.13", "3.12.1"));
        assert!(!ok(">=3.8 <3.11", "3.11.0"));
        assert!(ok("^1.21", "1.22.3"));
        assert!(!ok("^1.21", "2.0.0"));
        assert!(!ok("^1.21", "1.20.9"));
        assert!(ok("~3.10", "3.10.4"));
        assert!(!ok("~3.10", "3.11.0"));
        assert!(ok("16 || 18 || 20", "20.1.0"));
        assert!(ok("lts/*", "21.0.0"));
        assert_eq!(Request::parse("lts/*").unwrap().channel(), Some("lts/*"));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "pypy3.10",
            "3.13t",
            "$(rm -rf /)",
            ">=",
            "1.2.3.4.5",
            "graalpy-24",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
    }
}
