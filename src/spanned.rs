//! Values that remember where they were written.
//!
//! Every value a semantic check may complain about (a job name in `needs`, an
//! expression in `run:`) is parsed as [`Sp<T>`], so the error can point at
//! `trun.yaml:LINE:COL`. The wrappers here also give the JSON Schema generator
//! the plain shape of each value, so the schema never mentions spans.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A position in the workflow file: 1-based line and column, and the byte
/// offset of the value's first character when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
    pub offset: Option<usize>,
}

impl Loc {
    pub const UNKNOWN: Loc = Loc {
        line: 0,
        col: 0,
        offset: None,
    };

    pub fn from_saphyr(l: &serde_saphyr::Location) -> Loc {
        Loc {
            line: l.line() as u32,
            col: l.column() as u32,
            offset: l.span().byte_offset().map(|o| o as usize),
        }
    }

    pub fn is_known(&self) -> bool {
        self.line > 0
    }
}

/// A parsed value with the location it came from.
#[derive(Debug, Clone)]
pub struct Sp<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Sp<T> {
    pub fn new(value: T, loc: Loc) -> Sp<T> {
        Sp { value, loc }
    }

    /// A value that was not written in the file (a default).
    pub fn synthetic(value: T) -> Sp<T> {
        Sp {
            value,
            loc: Loc::UNKNOWN,
        }
    }
}

impl<T> std::ops::Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Sp {
            loc: Loc::from_saphyr(&s.referenced),
            value: s.value,
        })
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        T::json_schema(g)
    }
}

/// A YAML mapping kept in file order, with the location of every key.
///
/// Job order is the order a user reads the file in, so `trun list` and the
/// plan follow it; a `BTreeMap` would sort it away and lose the key spans.
#[derive(Debug, Clone)]
pub struct Entries<V>(pub Vec<(Sp<String>, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<V> Entries<V> {
    pub fn iter(&self) -> impl Iterator<Item = (&Sp<String>, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k.value == key).map(|(_, v)| v)
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.value.as_str())
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entries(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(Sp<String>, V)> = Vec::new();
                while let Some(k) = m.next_key::<Sp<KeyString>>()? {
                    // Duplicate keys are rejected by the YAML parser itself
                    // (a linear check here made a thousand jobs quadratic).
                    let key = Sp::new(k.value.0, k.loc);
                    let v = m.next_value::<V>()?;
                    out.push((key, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V_(PhantomData))
    }
}

impl<V: JsonSchema> JsonSchema for Entries<V> {
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let v = g.subschema_for::<V>();
        schemars::json_schema!({ "type": "object", "additionalProperties": v })
    }
}

/// A mapping key, read as the text written: `n:` is the key `n`, not the
/// YAML 1.1 boolean `false`.
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(KeyString(String::deserialize(d)?))
    }
}

/// A scalar read as text: env values and matrix-free strings may be written
/// as `3`, `true` or `1.5` and mean the same characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SV;
        impl<'de> Visitor<'de> for SV {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        d.deserialize_any(SV)
    }
}

impl JsonSchema for Scalar {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({ "type": ["string", "number", "boolean"] })
    }
}

/// `needs: build` or `needs: [build, lint]`: one string or a list of them.
///
/// A single string gets the location of the whole value (filled in by the
/// caller through [`StringList::located`]), a list item its own.
#[derive(Debug, Clone, Default)]
pub struct StringList(pub Vec<Sp<String>>);

impl StringList {
    pub fn iter(&self) -> impl Iterator<Item = &Sp<String>> {
        self.0.iter()
    }
}

impl Sp<StringList> {
    /// The items, each with a known location.
    pub fn located(&self) -> Vec<Sp<String>> {
        self.value
            .0
            .iter()
            .map(|s| {
                if s.loc.is_known() {
                    s.clone()
                } else {
                    Sp::new(s.value.clone(), self.loc)
                }
            })
            .collect()
    }
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LV;
        impl<'de> Visitor<'de> for LV {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<StringList, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<Sp<String>>()? {
                    out.push(v);
                }
                Ok(StringList(out))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList(vec![Sp::synthetic(v.to_string())]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<StringList, E> {
                Ok(StringList(Vec::new()))
            }
        }
        d.deserialize_any(LV)
    }
}

impl JsonSchema for StringList {
    fn schema_name() -> Cow<'static, str> {
        "StringList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "anyOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ]
        })
    }
}
