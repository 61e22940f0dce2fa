//! Values of the expression language and GitHub's rules for them: truthiness,
//! loose (`==`) equality and ordering with type coercion, case-insensitive
//! string comparison, and how a value prints as a string.
//!
//! A [`Val`] borrows from the evaluation contexts where it can, so reading
//! `github.event` copies nothing, and so that `==` between two arrays or objects
//! compares identity, as GitHub does (`a == a` is true, `fromJSON('[]') ==
//! fromJSON('[]')` is false). This module neither parses nor evaluates
//! expressions.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value as Json};
use std::borrow::Cow;
use std::cmp::Ordering;

/// An expression value. Arrays and objects are either borrowed from a context or
/// owned (computed, e.g. by `fromJSON`). Arrays hold the `Vec` itself, not a
/// slice: the address of the `Vec` is the array's identity for `==` (every empty
/// slice has the same address).
#[derive(Debug, Clone)]
#[allow(clippy::owned_cow)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    Arr(Cow<'a, Vec<Json>>),
    Obj(Cow<'a, Map<String, Json>>),
    /// An object borrowed from a context plus one member kept beside it: `github`
    /// and its `event`, which every job and step shares rather than copying it
    /// into each context (a payload may be megabytes). The key is not in the map.
    ObjWith(&'a Map<String, Json>, &'a str, &'a Json),
    /// The result of an object filter (`x.*`, `x[*].name`): a new array.
    Filtered(Vec<Val<'a>>),
}

/// The kinds GitHub's coercion rules distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValKind {
    Null,
    Bool,
    Num,
    Str,
    Arr,
    Obj,
}

impl<'a> Val<'a> {
    /// A view of a context value, copying nothing but numbers.
    pub fn borrowed(j: &'a Json) -> Val<'a> {
        match j {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(*b),
            Json::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
            Json::String(s) => Val::Str(Cow::Borrowed(s)),
            Json::Array(a) => Val::Arr(Cow::Borrowed(a)),
            Json::Object(o) => Val::Obj(Cow::Borrowed(o)),
        }
    }

    pub fn owned<'x>(j: Json) -> Val<'x> {
        match j {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(b),
            Json::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
            Json::String(s) => Val::Str(Cow::Owned(s)),
            Json::Array(a) => Val::Arr(Cow::Owned(a)),
            Json::Object(o) => Val::Obj(Cow::Owned(o)),
        }
    }

    pub fn kind(&self) -> ValKind {
        match self {
            Val::Null => ValKind::Null,
            Val::Bool(_) => ValKind::Bool,
            Val::Num(_) => ValKind::Num,
            Val::Str(_) => ValKind::Str,
            Val::Arr(_) | Val::Filtered(_) => ValKind::Arr,
            Val::Obj(_) | Val::ObjWith(..) => ValKind::Obj,
        }
    }

    pub fn is_primitive(&self) -> bool {
        !matches!(self.kind(), ValKind::Arr | ValKind::Obj)
    }

    /// GitHub's truthiness: false, 0, NaN, "" and null are false; everything
    /// else, including empty arrays and objects, is true.
    pub fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => *b,
            Val::Num(n) => *n != 0.0 && !n.is_nan(),
            Val::Str(s) => !s.is_empty(),
            Val::Arr(_) | Val::Obj(_) | Val::ObjWith(..) | Val::Filtered(_) => true,
        }
    }

    /// The value as a string, as GitHub coerces it (in `format`, `join`,
    /// `contains`, and text around `${{ }}`): null is "", numbers as .NET's
    /// `G15` prints them, arrays and objects as the words `Array` and `Object`.
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Val::Null => Cow::Borrowed(""),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Num(n) => Cow::Owned(format_number(*n)),
            Val::Str(s) => Cow::Borrowed(s),
            Val::Arr(_) | Val::Filtered(_) => Cow::Borrowed("Array"),
            Val::Obj(_) | Val::ObjWith(..) => Cow::Borrowed("Object"),
        }
    }

    /// The value as a number: null 0, booleans 0/1, strings as JavaScript's
    /// `Number()` reads them, arrays and objects NaN.
    pub fn to_number(&self) -> f64 {
        match self {
            Val::Null => 0.0,
            Val::Bool(b) => f64::from(u8::from(*b)),
            Val::Num(n) => *n,
            Val::Str(s) => super::syntax::parse_number(s),
            _ => f64::NAN,
        }
    }

    /// The value as JSON for callers. A number that is a whole number (and
    /// exactly representable) becomes a JSON integer; NaN and the infinities,
    /// which JSON cannot hold, become the strings GitHub prints for them.
    pub fn to_json(&self) -> Json {
        match self {
            Val::Null => Json::Null,
            Val::Bool(b) => Json::Bool(*b),
            Val::Num(n) => number_json(*n),
            Val::Str(s) => Json::String(s.to_string()),
            Val::Arr(a) => Json::Array(a.as_ref().clone()),
            Val::Obj(o) => Json::Object(o.as_ref().clone()),
            Val::ObjWith(m, k, v) => {
                let mut o = (*m).clone();
                o.insert((*k).to_string(), (*v).clone());
                Json::Object(o)
            }
            Val::Filtered(items) => Json::Array(items.iter().map(Val::to_json).collect()),
        }
    }

    /// The identity of a borrowed array or object, for `==`.
    fn identity(&self) -> Option<usize> {
        match self {
            Val::Arr(Cow::Borrowed(a)) => Some(*a as *const Vec<Json> as usize),
            Val::Obj(Cow::Borrowed(o)) | Val::ObjWith(o, ..) => {
                Some(*o as *const Map<String, Json> as usize)
            }
            _ => None,
        }
    }
}

pub(crate) fn number_json(n: f64) -> Json {
    if !n.is_finite() {
        return Json::String(format_number(n));
    }
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        return Json::from(n as i64);
    }
    serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
}

/// A number as GitHub prints it: .NET's `G15` format (15 significant digits,
/// `E+XX` notation from 1e15 and below 1e-4), `NaN`, `Infinity`, and negative
/// zero as `0`.
pub(crate) fn format_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".to_string();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if n == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{:.14e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let sign = if n < 0.0 { "-" } else { "" };
    if !(-4..15).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{point}{rest}E{exp_sign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        let pad = "0".repeat(int_len - digits.len());
        format!("{sign}{digits}{pad}")
    } else {
        let (int, frac) = digits.split_at(int_len);
        format!("{sign}{int}.{frac}")
    }
}

/// Folds a character for GitHub's case-insensitive (OrdinalIgnoreCase)
/// comparison: its simple uppercase form. The dotless `ı` is left alone, as
/// GitHub does (it is not the same letter as `I`).
fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    if c == 'ı' {
        return c;
    }
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// `s` folded for case-insensitive comparison and searching (one char per char,
/// so positions and lengths agree with the original).
pub(crate) fn fold(s: &str) -> String {
    s.chars().map(fold_char).collect()
}

pub(crate) fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    a.chars().map(fold_char).cmp(b.chars().map(fold_char))
}

pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b) || cmp_ignore_case(a, b) == Ordering::Equal
}

/// A property of an object by name: the exact key if present, else the first
/// key equal ignoring case (GitHub's objects are case-insensitive).
pub(crate) fn lookup<'m>(map: &'m Map<String, Json>, name: &str) -> Option<&'m Json> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| eq_ignore_case(k, name))
            .map(|(_, v)| v)
    })
}

/// `name` of an object with one member kept beside its map ([`Val::ObjWith`]).
pub(crate) fn lookup_with<'m>(
    map: &'m Map<String, Json>,
    key: &str,
    value: &'m Json,
    name: &str,
) -> Option<&'m Json> {
    if eq_ignore_case(key, name) {
        Some(value)
    } else {
        lookup(map, name)
    }
}

/// Like [`lookup`], but takes the value out of an owned object.
pub(crate) fn take(map: &mut Map<String, Json>, name: &str) -> Option<Json> {
    if let Some(v) = map.get_mut(name) {
        return Some(v.take());
    }
    map.iter_mut()
        .find(|(k, _)| eq_ignore_case(k, name))
        .map(|(_, v)| v.take())
}

/// A primitive after coercion, or a collection with its identity.
#[derive(Debug, Clone, Copy)]
enum Coerced<'v> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'v str),
    Coll(ValKind, Option<usize>),
}

impl Coerced<'_> {
    fn kind(&self) -> ValKind {
        match self {
            Coerced::Null => ValKind::Null,
            Coerced::Bool(_) => ValKind::Bool,
            Coerced::Num(_) => ValKind::Num,
            Coerced::Str(_) => ValKind::Str,
            Coerced::Coll(k, _) => *k,
        }
    }

    fn number(&self) -> f64 {
        match self {
            Coerced::Null => 0.0,
            Coerced::Bool(b) => f64::from(u8::from(*b)),
            Coerced::Num(n) => *n,
            Coerced::Str(s) => super::syntax::parse_number(s),
            Coerced::Coll(..) => f64::NAN,
        }
    }
}

fn coerced<'v>(v: &'v Val<'_>) -> Coerced<'v> {
    match v {
        Val::Null => Coerced::Null,
        Val::Bool(b) => Coerced::Bool(*b),
        Val::Num(n) => Coerced::Num(*n),
        Val::Str(s) => Coerced::Str(s),
        other => Coerced::Coll(other.kind(), other.identity()),
    }
}

/// GitHub's type coercion before comparing two values of different kinds
/// (JavaScript's abstract equality, except that arrays and objects are never
/// converted): number and string compare as numbers; a boolean or null becomes
/// a number and the rule is applied again.
fn coerce<'v>(l: Coerced<'v>, r: Coerced<'v>) -> (Coerced<'v>, Coerced<'v>) {
    let (lk, rk) = (l.kind(), r.kind());
    if lk == rk {
        return (l, r);
    }
    match (lk, rk) {
        (ValKind::Num, ValKind::Str) => (l, Coerced::Num(r.number())),
        (ValKind::Str, ValKind::Num) => (Coerced::Num(l.number()), r),
        (ValKind::Bool | ValKind::Null, _) => coerce(Coerced::Num(l.number()), r),
        (_, ValKind::Bool | ValKind::Null) => coerce(l, Coerced::Num(r.number())),
        _ => (l, r),
    }
}

/// `l == r` as GitHub evaluates it.
pub(crate) fn loose_eq(l: &Val, r: &Val) -> bool {
    match coerce(coerced(l), coerced(r)) {
        (Coerced::Null, Coerced::Null) => true,
        (Coerced::Num(a), Coerced::Num(b)) => a == b,
        (Coerced::Str(a), Coerced::Str(b)) => eq_ignore_case(a, b),
        (Coerced::Bool(a), Coerced::Bool(b)) => a == b,
        (Coerced::Coll(ka, Some(a)), Coerced::Coll(kb, Some(b))) => ka == kb && a == b,
        _ => false,
    }
}

/// The order of `l` and `r` for `<` and `>`, or None when they do not compare
/// (different kinds after coercion, NaN, arrays, objects, null).
pub(crate) fn loose_cmp(l: &Val, r: &Val) -> Option<Ordering> {
    match coerce(coerced(l), coerced(r)) {
        (Coerced::Num(a), Coerced::Num(b)) => a.partial_cmp(&b),
        (Coerced::Str(a), Coerced::Str(b)) => Some(cmp_ignore_case(a, b)),
        (Coerced::Bool(a), Coerced::Bool(b)) => Some(a.cmp(&b)),
        _ => None,
    }
}

/// Serializes a value as JSON the way `toJSON` prints it (numbers as GitHub
/// prints them: whole numbers without a fraction).
pub(crate) struct AsJson<'v, 'a>(pub &'v Val<'a>);

struct JsonRef<'v>(&'v Json);

fn serialize_number<S: Serializer>(n: f64, s: S) -> Result<S::Ok, S::Error> {
    match number_json(n) {
        Json::Number(num) => num.serialize(s),
        // NaN and the infinities have no JSON form.
        _ => s.serialize_unit(),
    }
}

impl Serialize for JsonRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Json::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => s.serialize_i64(i),
                (_, Some(u)) => s.serialize_u64(u),
                _ => serialize_number(n.as_f64().unwrap_or(f64::NAN), s),
            },
            Json::Array(items) => serialize_items(items, s),
            Json::Object(map) => serialize_members(map.iter(), map.len(), s),
            other => other.serialize(s),
        }
    }
}

impl Serialize for AsJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Val::Null => s.serialize_unit(),
            Val::Bool(b) => s.serialize_bool(*b),
            Val::Num(n) => serialize_number(*n, s),
            Val::Str(t) => s.serialize_str(t),
            Val::Arr(a) => serialize_items(a, s),
            Val::Obj(o) => serialize_members(o.iter(), o.len(), s),
            Val::ObjWith(o, key, value) => serialize_members(
                o.iter()
                    .map(|(k, v)| (k.as_str(), v))
                    .chain([(*key, *value)]),
                o.len() + 1,
                s,
            ),
            Val::Filtered(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&AsJson(item))?;
                }
                seq.end()
            }
        }
    }
}

fn serialize_members<'j, K: Serialize + 'j, S: Serializer>(
    members: impl Iterator<Item = (K, &'j Json)>,
    len: usize,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(len))?;
    for (k, v) in members {
        m.serialize_entry(&k, &JsonRef(v))?;
    }
    m.end()
}

fn serialize_items<S: Serializer>(items: &[Json], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(items.len()))?;
    for item in items {
        seq.serialize_element(&JsonRef(item))?;
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_like_dotnet_g15() {
        for (n, want) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-2.0, "-2"),
            (0.5, "0.5"),
            (123456.789, "123456.789"),
            (0.845_512_408_225_570_1, "0.84551240822557"),
            (1.2e2, "120"),
            (0.012, "0.012"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (123_456_789_012_345.0, "123456789012345"),
            (1e15, "1E+15"),
            (1e21, "1E+21"),
            (1.5e300, "1.5E+300"),
            (9_007_199_254_740_993.0, "9.00719925474099E+15"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(format_number(n), want, "{n}");
        }
    }

    #[test]
    fn loose_equality() {
        let s = |x: &'static str| Val::Str(Cow::Borrowed(x));
        assert!(loose_eq(&s("ABC"), &s("abc")));
        assert!(loose_eq(&Val::Num(1.0), &s("1")));
        assert!(loose_eq(&Val::Null, &Val::Num(0.0)));
        assert!(loose_eq(&Val::Bool(true), &Val::Num(1.0)));
        assert!(!loose_eq(&Val::Bool(true), &s("true")));
        assert!(!loose_eq(&Val::Num(f64::NAN), &Val::Num(f64::NAN)));
        assert!(loose_eq(&s("ς"), &s("Σ")));
        assert!(!loose_eq(&s("ı"), &s("I")));
        let j = json!([1]);
        let a = Val::borrowed(&j);
        assert!(loose_eq(&a, &a.clone()));
        assert!(!loose_eq(&a, &Val::owned(json!([1]))));
    }
}
