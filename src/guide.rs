//! The guide: what the README leaves out, one chapter per module. The chapters are the files
//! under `docs/` in the repository; here their examples compile and run as doctests.

#[doc = include_str!("../docs/planning.md")]
pub mod planning {}

#[doc = include_str!("../docs/running.md")]
pub mod running {}

#[doc = include_str!("../docs/backends.md")]
pub mod backends {}

#[doc = include_str!("../docs/batch.md")]
pub mod batch {}

#[doc = include_str!("../docs/consolidation.md")]
pub mod consolidation {}

#[doc = include_str!("../docs/reports.md")]
pub mod reports {}

#[doc = include_str!("../docs/evaluation.md")]
pub mod evaluation {}

#[doc = include_str!("../docs/tokens.md")]
pub mod tokens {}

#[doc = include_str!("../docs/plugins.md")]
pub mod plugins {}

#[doc = include_str!("../docs/differences.md")]
pub mod differences {}
