//! [`Extra`]: the fields of an upstream record this crate does not interpret, kept verbatim as
//! one compact JSON text.

use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess};
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

/// Builds an [`Extra`] field by field while a record is read, with no map in between.
#[derive(Default)]
pub(crate) struct ExtraBuilder(String);

impl ExtraBuilder {
    /// Adds the field `key`; its value is the map's next value, read as it comes.
    pub(crate) fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let value: Value = map.next_value()?;
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        // `Value`'s `Display` is its compact JSON; writing into a `String` cannot fail.
        let _ = write!(self.0, "{}:{value}", Value::from(key));
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Extra {
        if self.0.is_empty() {
            return Extra(None);
        }
        self.0.push('}');
        Extra(Some(self.0.into_boxed_str()))
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
