//! `--output`, shared by the examples that call a server.

use dynbatch::prompt::OutputMode;

/// The output mode `--output` names.
pub(crate) fn parse_output(value: &str) -> Result<OutputMode, String> {
    Ok(match value {
        "auto" => OutputMode::Auto,
        "object" => OutputMode::JsonObject,
        "strict" => OutputMode::StrictSchema,
        "object-schema" => OutputMode::JsonObjectWithSchema,
        "text" => OutputMode::Text,
        other => {
            return Err(format!(
                "--output {other:?}: auto, object, strict, object-schema or text"
            ));
        }
    })
}
