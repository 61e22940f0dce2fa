//! The units a rubric writes limits in: durations (`30s`, `500ms`, `2m`) and byte sizes
//! (`64KiB`, `1MB`), with their YAML and JSON Schema forms.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A time limit written as `500ms`, `60s`, `2m`, `1h`, `1m30s`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

/// A size written as `64KiB`, `1MiB`, `1GiB`, `10KB`, `512B`, or a bare number of bytes
/// (binary units: see [`crate::size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// Parses `60s`, `2m`, `1h`, `500ms`, `1m30s`, or a bare number of seconds: the same
/// durations as in workflow files.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text)
}

/// Parses `64KiB`, `1MiB`, `10KB`, `512B`, or a bare number of bytes, with the crate's one
/// size parser ([`crate::size`]): every unit is binary, so `10KB` is 10 240 bytes here as
/// in a container's `memory`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    crate::size::parse(text).map_err(|e| e.to_string())
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            write!(f, "0s")
        } else if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (scale, unit) in UNITS {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A limit written as a number or as text with a unit. Read with a visitor rather than an
/// untagged enum, so that a wrong type says what was expected ("expected a duration like
/// `30s`…") instead of "data did not match any variant of untagged enum".
enum NumberOrText {
    Number(u64),
    Text(String),
}

struct NumberOrTextVisitor(&'static str);

impl serde::de::Visitor<'_> for NumberOrTextVisitor {
    type Value = NumberOrText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<NumberOrText, E> {
        Ok(NumberOrText::Number(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NumberOrText, E> {
        u64::try_from(v)
            .map(NumberOrText::Number)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<NumberOrText, E> {
        // `1.5` means what `"1.5"` means; the text parsers bound it.
        Ok(NumberOrText::Text(v.to_string()))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NumberOrText, E> {
        Ok(NumberOrText::Text(v.to_string()))
    }
}

impl NumberOrText {
    fn read<'de, D: Deserializer<'de>>(d: D, expecting: &'static str) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrTextVisitor(expecting))
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::read(d, "a duration like `30s`, `2m` or a number of seconds")? {
            NumberOrText::Number(n) => Ok(DurationSpec(Duration::from_secs(n))),
            NumberOrText::Text(t) => parse_duration(&t)
                .map(DurationSpec)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: `500ms`, `60s`, `2m`, `1h`, `1m30s`, or a number of seconds.",
            "oneOf": [
                { "type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]+)?\s*(ms|s|sec|secs|m|min|mins|h|hr|hrs|d))+\s*$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::read(d, "a size like `64KiB`, `1MiB` or a number of bytes")? {
            NumberOrText::Number(n) => Ok(ByteSize(n)),
            NumberOrText::Text(t) => parse_size(&t)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: `64KiB`, `1MiB`, `1GiB`, `10KB`, `512B`, or a number of bytes.",
            "oneOf": [
                { "type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*(B|K|k|KiB|M|m|MiB|G|g|GiB|KB|kB|MB|GB)?\s*$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}
