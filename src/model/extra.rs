//! [`Extra`]: the fields of an upstream record this crate does not interpret, kept verbatim as
//! one compact JSON text.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Fields of an upstream record this crate does not interpret (a video's `video_id` and
/// `views`, a cluster's `label`, …), kept verbatim and written back on serialization.
///
/// Stored as one compact JSON object text, not as a map of values: a large input's records
/// carry a few such fields each, and a map of [`Value`]s per record took several times the
/// memory of the input. Reading a field parses the text ([`Extra::get`]), which is cheap for
/// the few fields a record has; [`Extra::to_map`] gives them all.
///
/// ```
/// use dynbatch::Cluster;
/// let c: Cluster = serde_json::from_str(
///     r#"{"id": "a", "size": 1, "avg_performance": 2.0, "thread_sources": [], "is_wide": false,
///         "videos": [{"title": "T", "performance_ratio": 2.0, "views": 1000}], "label": "x"}"#,
/// )?;
/// assert_eq!(c.extra.get("label"), Some(serde_json::json!("x")));
/// assert_eq!(c.videos[0].extra.get("views"), Some(serde_json::json!(1000)));
/// assert!(c.videos[0].extra.get("missing").is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Extra(Option<Box<str>>);

impl Extra {
    /// No fields.
    pub const fn new() -> Self {
        Self(None)
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The fields as a map, in their order.
    pub fn to_map(&self) -> Map<String, Value> {
        self.0
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }

    /// The field `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.to_map().remove(key)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.to_map().len()
    }

    /// Sets the field `key` (replacing one of that name).
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let mut map = self.to_map();
        map.insert(key.into(), value);
        *self = Self::from(map);
    }

    /// The fields as their JSON object text (`{}` when there is none).
    pub fn as_json(&self) -> &str {
        self.0.as_deref().unwrap_or("{}")
    }
}

impl From<Map<String, Value>> for Extra {
    fn from(map: Map<String, Value>) -> Self {
        if map.is_empty() {
            return Self(None);
        }
        Self(Some(Value::Object(map).to_string().into_boxed_str()))
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_json())
    }
}

/// Builds an [`Extra`] field by field while a record is read, with no map in between. The
/// text is written into a scratch buffer kept per thread (records nest, so there is a small
/// stack of them) and copied once into an allocation of its exact size.
#[derive(Default)]
pub(crate) struct ExtraBuilder(Option<String>);

thread_local! {
    /// Scratch buffers of finished builders, for the next ones.
    static SCRATCH: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl ExtraBuilder {
    /// Adds the field `key`; its value is the map's next value, written as compact JSON as it
    /// is read (no [`Value`] in between).
    pub(crate) fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let text = if let Some(text) = &mut self.0 {
            text.push(',');
            text
        } else {
            let mut text = SCRATCH
                .with(|s| s.borrow_mut().pop())
                .unwrap_or_else(|| String::with_capacity(256));
            text.push('{');
            self.0.insert(text)
        };
        write_str(text, key);
        text.push(':');
        map.next_value_seed(Compact(text))
    }

    pub(crate) fn finish(self) -> Extra {
        let Some(mut text) = self.0 else {
            return Extra(None);
        };
        text.push('}');
        let extra = Extra(Some(Box::from(text.as_str())));
        // Kept for the next record unless one huge record made it large.
        if text.capacity() <= 1 << 16 {
            text.clear();
            SCRATCH.with(|s| s.borrow_mut().push(text));
        }
        extra
    }
}

impl Serialize for Extra {
    /// As a map of its fields, so `#[serde(flatten)]` writes them beside the known ones.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let map = self.to_map();
        let mut out = s.serialize_map(Some(map.len()))?;
        for (k, v) in &map {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d).map_err(de::Error::custom)?;
        Ok(Self::from(map))
    }
}

/// Writes the value it is given as compact JSON, as `serde_json` would write it: strings
/// escaped the same way, floats with the same shortest round-trip digits (`NaN` and infinities
/// as `null`), object keys in their input order.
struct Compact<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for Compact<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Compact<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.push_str(itoa::Buffer::new().format(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.push_str(itoa::Buffer::new().format(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => self.0.push_str(&n.to_string()),
            None => self.0.push_str("null"),
        }
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_str(self.0, v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push_str("null");
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.0.push_str("null");
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push('[');
        let mut first = true;
        loop {
            let mark = self.0.len();
            if !first {
                self.0.push(',');
            }
            if seq.next_element_seed(Compact(self.0))?.is_none() {
                self.0.truncate(mark);
                break;
            }
            first = false;
        }
        self.0.push(']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push('{');
        let mut first = true;
        loop {
            let mark = self.0.len();
            if !first {
                self.0.push(',');
            }
            if map.next_key_seed(Compact(self.0))?.is_none() {
                self.0.truncate(mark);
                break;
            }
            self.0.push(':');
            map.next_value_seed(Compact(self.0))?;
            first = false;
        }
        self.0.push('}');
        Ok(())
    }
}

/// `text` as a JSON string, escaped as `serde_json` escapes it: `"`, `\\` and control
/// characters (`\b`, `\f`, `\n`, `\r`, `\t`, else `\u00XX`); everything else as it is.
fn write_str(out: &mut String, text: &str) {
    out.push('"');
    let mut rest = text;
    while let Some(i) = rest
        .bytes()
        .position(|b| b < 0x20 || b == b'"' || b == b'\\')
    {
        out.push_str(&rest[..i]);
        let b = rest.as_bytes()[i];
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The fields of `json` (an object) as the builder stores them.
    fn built(json: &str) -> String {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Extra;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Extra, A::Error> {
                let mut extra = ExtraBuilder::default();
                while let Some(key) = map.next_key::<String>()? {
                    extra.read(&key, &mut map)?;
                }
                Ok(extra.finish())
            }
        }
        let mut d = serde_json::Deserializer::from_str(json);
        d.deserialize_map(Fields).unwrap().as_json().to_owned()
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        for value in [
            r#""plain""#,
            r#""quote \" backslash \\ slash / tab \t nl \n cr \r bs \b ff \f nul \u0000 us \u001f""#,
            r#""unicode é ☕ 𝄞 \u2028""#,
            "0",
            "-17",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "1.0",
            "0.1",
            "1e300",
            "-2.5e-8",
            "123456789.123456789",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            r#"[1, "a", [null, {"k": [true]}], {"z": 1, "a": 2}]"#,
            r#"{"b": {"c": [1.5, "x\ny"]}, "a": null}"#,
        ] {
            let json = format!(r#"{{"k\"ey": {value}, "other": 1}}"#);
            let ours = built(&json);
            // serde_json's own compact text of the same object (keys are ordered by its map,
            // so compare as values, and the text of each field exactly where it has no map).
            let theirs: Value = serde_json::from_str(&json).unwrap();
            let back: Value = serde_json::from_str(&ours).unwrap();
            assert_eq!(back, theirs, "{value}");
            if !value.contains('{') {
                assert_eq!(ours, theirs.to_string(), "{value}");
            }
        }
    }
}
