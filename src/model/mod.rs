//! The input data model: [`Cluster`] and [`Video`], and the validation of one cluster.
//!
//! Field names are the upstream service's `snake_case` names. Fields this crate does not know are
//! kept in `extra` (so a custom scorer can read them) and written back on serialization.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, de};

mod extra;
pub(crate) mod read;
mod rejection;

pub use extra::Extra;
use extra::ExtraBuilder;
pub use read::{ReadError, read_clusters, read_clusters_parallel};
pub use rejection::{Rejection, ScoreKind};

/// One video of a cluster: its title and how well it performed against its channel's baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Video {
    /// The video's title, as published. Untrusted text.
    pub title: String,
    /// Views relative to the channel's typical video (2.0 = twice the usual).
    pub performance_ratio: f64,
    /// Fields of the upstream record this crate does not interpret, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Video {
    /// A video with no extra fields.
    pub fn new(title: impl Into<String>, performance_ratio: f64) -> Self {
        Self {
            title: title.into(),
            performance_ratio,
            extra: Extra::new(),
        }
    }
}

/// A cluster of similar videos found upstream.
///
/// `size` is the cluster's size upstream; `videos` may be a sample of it (typically the top
/// performers), so `size >= videos.len()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    /// Identifier, unique within one input. JSON numbers are accepted and kept as their text.
    pub id: String,
    /// Number of videos in the cluster upstream.
    pub size: u32,
    /// Mean performance ratio of the cluster upstream.
    pub avg_performance: f64,
    /// Where the cluster's videos came from (channels, searches, threads).
    pub thread_sources: Vec<String>,
    /// `true` for a WIDE pattern (seen across many sources), `false` for a DEEP one.
    pub is_wide: bool,
    /// The videos given for analysis, best first.
    pub videos: Vec<Video>,
    /// Fields of the upstream record this crate does not interpret, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Cluster {
    /// A cluster with the given id and videos; `size` is the number of videos, `avg_performance`
    /// their mean ratio, no sources, DEEP. Adjust the public fields as needed.
    pub fn new(id: impl Into<String>, videos: Vec<Video>) -> Self {
        let size = u32::try_from(videos.len()).unwrap_or(u32::MAX);
        let avg_performance = mean(videos.iter().map(|v| v.performance_ratio)).unwrap_or(0.0);
        Self {
            id: id.into(),
            size,
            avg_performance,
            thread_sources: Vec::new(),
            is_wide: false,
            videos,
            extra: Extra::new(),
        }
    }

    /// Checks what every planner needs of one cluster on its own (duplicate ids are a property
    /// of the whole input and are checked by the planner).
    ///
    /// # Errors
    /// The first problem found, in this order: empty id, no videos, `size` below the number of
    /// videos, a non-finite or negative `avg_performance`, then per video an empty title or a
    /// non-finite or negative `performance_ratio`.
    pub fn validate(&self) -> Result<(), Rejection> {
        if is_blank(&self.id) {
            return Err(Rejection::EmptyId);
        }
        self.validate_content()
    }

    /// [`Cluster::validate`] but for the id, which the planner checks in a pass of its own.
    pub(crate) fn validate_content(&self) -> Result<(), Rejection> {
        if self.videos.is_empty() {
            return Err(Rejection::NoVideos);
        }
        if (self.size as usize) < self.videos.len() {
            return Err(Rejection::SizeBelowVideoCount {
                size: self.size,
                videos: self.videos.len(),
            });
        }
        check_number(|| "avg_performance".to_owned(), self.avg_performance)?;
        for (i, video) in self.videos.iter().enumerate() {
            if is_blank(&video.title) {
                return Err(Rejection::EmptyTitle { video: i });
            }
            check_number(
                || format!("videos[{i}].performance_ratio"),
                video.performance_ratio,
            )?;
        }
        Ok(())
    }
}

/// Empty or only white space (Unicode's definition). Decided by the first byte in the common
/// case of a printable ASCII character, without decoding the string.
pub(crate) fn is_blank(text: &str) -> bool {
    match text.as_bytes().first() {
        None => true,
        Some(b) if (0x21..=0x7e).contains(b) => false,
        Some(_) => text.chars().all(char::is_whitespace),
    }
}

/// `field` names the place; it is only built when there is a problem to report.
fn check_number(field: impl FnOnce() -> String, value: f64) -> Result<(), Rejection> {
    if !value.is_finite() {
        return Err(Rejection::NonFinite { field: field() });
    }
    if value < 0.0 {
        return Err(Rejection::Negative {
            field: field(),
            value,
        });
    }
    Ok(())
}

/// The arithmetic mean, `None` for no values.
pub(crate) fn mean(values: impl ExactSizeIterator<Item = f64>) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)] // video counts are far below 2^52
    Some(values.sum::<f64>() / n as f64)
}

// Deserialization by hand rather than derived: `#[serde(flatten)]` (for `extra`) makes serde
// buffer every record in an intermediate tree before reading it, which tripled the memory and
// the time of reading a large input. Known fields are read straight into their types; only
// unknown ones become `Value`s.

/// A field name: one of the known ones (no allocation), or another kept for `extra`
/// (borrowed from the input when it can be).
enum Field<'de> {
    Known(usize),
    Other(std::borrow::Cow<'de, str>),
}

struct FieldVisitor<const N: usize>(&'static [&'static str; N]);

impl<'de, const N: usize> de::DeserializeSeed<'de> for FieldVisitor<N> {
    type Value = Field<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field<'de>, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<const N: usize> FieldVisitor<N> {
    fn known(&self, v: &str) -> Option<usize> {
        self.0.iter().position(|k| *k == v)
    }
}

impl<'de, const N: usize> de::Visitor<'de> for FieldVisitor<N> {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(match self.known(v) {
            Some(i) => Field::Known(i),
            None => Field::Other(v.to_owned().into()),
        })
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(match self.known(v) {
            Some(i) => Field::Known(i),
            None => Field::Other(v.into()),
        })
    }
}

/// Fills a field once; a second value for it is an error, as with derived impls.
fn set<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

fn required<T, E: de::Error>(slot: Option<T>, name: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| E::missing_field(name))
}

const VIDEO_FIELDS: [&str; 2] = ["title", "performance_ratio"];

impl<'de> Deserialize<'de> for Video {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Video;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a video (an object with title and performance_ratio)")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Video, A::Error> {
                let (mut title, mut ratio, mut extra) = (None, None, ExtraBuilder::default());
                while let Some(field) = map.next_key_seed(FieldVisitor(&VIDEO_FIELDS))? {
                    match field {
                        Field::Known(0) => set(&mut title, "title", map.next_value()?)?,
                        Field::Known(_) => {
                            set(&mut ratio, "performance_ratio", map.next_value()?)?;
                        }
                        Field::Other(key) => extra.read(&key, &mut map)?,
                    }
                }
                Ok(Video {
                    title: required(title, "title")?,
                    performance_ratio: required(ratio, "performance_ratio")?,
                    extra: extra.finish(),
                })
            }
        }
        d.deserialize_map(Visitor)
    }
}

const CLUSTER_FIELDS: [&str; 6] = [
    "id",
    "size",
    "avg_performance",
    "thread_sources",
    "is_wide",
    "videos",
];

impl<'de> Deserialize<'de> for Cluster {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Cluster;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cluster (an object with id, size, avg_performance, thread_sources, is_wide and videos)")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Cluster, A::Error> {
                let mut id: Option<Id> = None;
                let (mut size, mut avg, mut sources, mut wide, mut videos) =
                    (None, None, None, None, None);
                let mut extra = ExtraBuilder::default();
                while let Some(field) = map.next_key_seed(FieldVisitor(&CLUSTER_FIELDS))? {
                    match field {
                        Field::Known(0) => set(&mut id, "id", map.next_value()?)?,
                        Field::Known(1) => set(&mut size, "size", map.next_value()?)?,
                        Field::Known(2) => set(&mut avg, "avg_performance", map.next_value()?)?,
                        Field::Known(3) => {
                            set(&mut sources, "thread_sources", map.next_value()?)?;
                        }
                        Field::Known(4) => set(&mut wide, "is_wide", map.next_value()?)?,
                        Field::Known(_) => set(&mut videos, "videos", map.next_value()?)?,
                        Field::Other(key) => extra.read(&key, &mut map)?,
                    }
                }
                Ok(Cluster {
                    id: required(id, "id")?.0,
                    size: required(size, "size")?,
                    avg_performance: required(avg, "avg_performance")?,
                    thread_sources: required(sources, "thread_sources")?,
                    is_wide: required(wide, "is_wide")?,
                    videos: required(videos, "videos")?,
                    extra: extra.finish(),
                })
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// An id: a string, or an integer kept as its text.
struct Id(String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("id must be a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
                Ok(Id(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster::new("a", vec![Video::new("One", 1.0), Video::new("Two", 3.0)])
    }

    #[test]
    fn new_fills_size_and_mean() {
        let c = cluster();
        assert_eq!(c.size, 2);
        assert!((c.avg_performance - 2.0).abs() < 1e-12);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_problem_and_where() {
        let mut c = cluster();
        c.videos[1].performance_ratio = f64::NAN;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "videos[1].performance_ratio is not a finite number"
        );
        let mut c = cluster();
        c.videos[0].title = "  ".into();
        assert_eq!(c.validate(), Err(Rejection::EmptyTitle { video: 0 }));
        let mut c = cluster();
        c.size = 1;
        assert_eq!(
            c.validate(),
            Err(Rejection::SizeBelowVideoCount { size: 1, videos: 2 })
        );
        let mut c = cluster();
        c.avg_performance = -1.0;
        assert!(matches!(c.validate(), Err(Rejection::Negative { .. })));
        let mut c = cluster();
        c.videos.clear();
        assert_eq!(c.validate(), Err(Rejection::NoVideos));
        let mut c = cluster();
        c.id = String::new();
        assert_eq!(c.validate(), Err(Rejection::EmptyId));
    }

    #[test]
    fn unknown_fields_round_trip_and_numeric_ids_are_accepted() {
        let json = r#"{"id": 42, "size": 3, "avg_performance": 2.5, "thread_sources": ["a"],
            "is_wide": true, "channel": "x", "videos": [{"title": "T", "performance_ratio": 2.0,
            "views": 1000}]}"#;
        let c: Cluster = serde_json::from_str(json).unwrap();
        assert_eq!(c.id, "42");
        assert_eq!(c.extra.get("channel").unwrap(), "x");
        assert_eq!(c.videos[0].extra.get("views").unwrap(), 1000);
        assert_eq!(c.videos[0].extra.as_json(), r#"{"views":1000}"#);
        assert!(c.extra.get("size").is_none(), "known fields are not extra");
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["channel"], "x");
        assert_eq!(back["videos"][0]["views"], 1000);
        let again: Cluster = serde_json::from_value(back).unwrap();
        assert_eq!(again, c);
        // Escapes, nesting and several fields survive.
        let json =
            r#"{"title": "T", "performance_ratio": 1.0, "a\"b": {"x": [1, "é\n"]}, "z": null}"#;
        let v: Video = serde_json::from_str(json).unwrap();
        assert_eq!(v.extra.len(), 2);
        assert_eq!(
            v.extra.get("a\"b").unwrap(),
            serde_json::json!({"x": [1, "é\n"]})
        );
        assert_eq!(v.extra.get("z").unwrap(), serde_json::Value::Null);
        let mut v = v;
        v.extra.insert("w", serde_json::json!(2));
        assert_eq!(
            v.extra.to_map().keys().collect::<Vec<_>>(),
            ["a\"b", "w", "z"]
        );
        assert_eq!(Video::new("T", 1.0).extra, Extra::default());
    }

    #[test]
    fn parse_errors_name_the_field() {
        let err = |json: &str| {
            serde_json::from_str::<Cluster>(json)
                .unwrap_err()
                .to_string()
        };
        let video = r#"{"title": "T", "performance_ratio": 1.0}"#;
        let base = format!(
            r#""size": 3, "avg_performance": 2.5, "thread_sources": [], "is_wide": false, "videos": [{video}]"#
        );
        assert!(err(&format!("{{{base}}}")).contains("missing field `id`"));
        assert!(
            err(&format!(r#"{{"id": 1.5, {base}}}"#)).contains("id must be a string or an integer")
        );
        assert!(
            err(&format!(r#"{{"id": "a", "id": "b", {base}}}"#)).contains("duplicate field `id`")
        );
        let twice = r#"{"id": "a", "size": 3, "avg_performance": 2.5, "thread_sources": [],
            "is_wide": false, "videos": [{"title": "T", "title": "U", "performance_ratio": 1.0}]}"#;
        assert!(err(twice).contains("duplicate field `title`"));
        let missing = r#"{"id": "a", "size": 3, "avg_performance": 2.5, "thread_sources": [],
            "is_wide": false, "videos": [{"title": "T"}]}"#;
        assert!(err(missing).contains("missing field `performance_ratio`"));
        assert!(err("[1, 2]").contains("a cluster"));
    }

    #[test]
    fn negative_size_is_a_parse_error_not_a_panic() {
        let json = r#"{"id": "a", "size": -3, "avg_performance": 2.5, "thread_sources": [],
            "is_wide": false, "videos": []}"#;
        assert!(serde_json::from_str::<Cluster>(json).is_err());
    }
}
