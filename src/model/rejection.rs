//! [`Rejection`]: why a cluster is invalid input, typed, with its text and JSON form.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a cluster was rejected as invalid, for code to match on; its `Display` says it for
/// people. In JSON, `{"rule": "size_below_video_count", "size": 3, "videos": 5, "reason":
/// "size 3 is smaller than the 5 videos given"}`: the variant's snake-case name, its data and
/// the text (`reason` is written, and ignored when read).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rejection {
    /// `id` is empty or only white space.
    EmptyId,
    /// Another cluster earlier in the input has the same id; the first one wins.
    DuplicateId {
        /// Input index of the first cluster with this id.
        first_index: usize,
    },
    /// `videos` is empty: there is nothing to analyse.
    NoVideos,
    /// `size` is smaller than the number of videos given.
    SizeBelowVideoCount {
        /// The cluster's `size`.
        size: u32,
        /// The number of entries in `videos`.
        videos: usize,
    },
    /// A number is NaN or infinite.
    NonFinite {
        /// Where, e.g. `avg_performance` or `videos[2].performance_ratio`.
        field: String,
    },
    /// A number that must not be negative is.
    Negative {
        /// Where, e.g. `avg_performance` or `videos[2].performance_ratio`.
        field: String,
        /// The value found.
        value: f64,
    },
    /// A video's title is empty or only white space.
    EmptyTitle {
        /// Index of the video in `videos`.
        video: usize,
    },
    /// A plug-in scorer returned a quality or priority that is not a finite number.
    ScorerOutput {
        /// Which score.
        what: ScoreKind,
        /// The value returned (`null` in JSON).
        #[serde(deserialize_with = "number_or_nan")]
        value: f64,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyId => f.write_str("id is empty"),
            Self::DuplicateId { first_index } => {
                write!(
                    f,
                    "duplicate id: the cluster at input index {first_index} has it first"
                )
            }
            Self::NoVideos => f.write_str("videos is empty: nothing to analyse"),
            Self::SizeBelowVideoCount { size, videos } => {
                write!(f, "size {size} is smaller than the {videos} videos given")
            }
            Self::NonFinite { field } => write!(f, "{field} is not a finite number"),
            Self::Negative { field, value } => write!(f, "{field} is negative ({value})"),
            Self::EmptyTitle { video } => write!(f, "videos[{video}].title is empty"),
            Self::ScorerOutput { what, value } => {
                write!(
                    f,
                    "the quality scorer returned a non-finite {what} ({value})"
                )
            }
        }
    }
}

impl Rejection {
    /// The variant's snake-case name, as `rule` in JSON: `empty_id`, `duplicate_id`, ...
    pub fn rule(&self) -> &'static str {
        match self {
            Self::EmptyId => "empty_id",
            Self::DuplicateId { .. } => "duplicate_id",
            Self::NoVideos => "no_videos",
            Self::SizeBelowVideoCount { .. } => "size_below_video_count",
            Self::NonFinite { .. } => "non_finite",
            Self::Negative { .. } => "negative",
            Self::EmptyTitle { .. } => "empty_title",
            Self::ScorerOutput { .. } => "scorer_output",
        }
    }
}

// By hand, to write `reason` beside the data (derived, as `Deserialize` is, it could not).
impl Serialize for Rejection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("rule", self.rule())?;
        match self {
            Self::EmptyId | Self::NoVideos => {}
            Self::DuplicateId { first_index } => map.serialize_entry("first_index", first_index)?,
            Self::SizeBelowVideoCount { size, videos } => {
                map.serialize_entry("size", size)?;
                map.serialize_entry("videos", videos)?;
            }
            Self::NonFinite { field } => map.serialize_entry("field", field)?,
            Self::Negative { field, value } => {
                map.serialize_entry("field", field)?;
                map.serialize_entry("value", value)?;
            }
            Self::EmptyTitle { video } => map.serialize_entry("video", video)?,
            Self::ScorerOutput { what, value } => {
                map.serialize_entry("what", what)?;
                map.serialize_entry("value", &value.is_finite().then_some(*value))?;
            }
        }
        map.serialize_entry("reason", &self.to_string())?;
        map.end()
    }
}

/// A number, or `null` for the non-finite values JSON cannot hold.
fn number_or_nan<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Which of a scorer's two numbers ([`Rejection::ScorerOutput`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScoreKind {
    /// [`QualityScorer::quality`](crate::QualityScorer::quality).
    Quality,
    /// [`QualityScorer::priority`](crate::QualityScorer::priority).
    Priority,
}

impl fmt::Display for ScoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quality => "quality",
            Self::Priority => "priority",
        })
    }
}
