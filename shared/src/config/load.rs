//! Reading a pipeline file: text → [`PipelineConfig`] → validated, or one error that lists
//! every problem with file, line and field.

use std::path::Path;

use super::model::PipelineConfig;
use super::source_map::SourceMap;
use super::validate;
use super::{ConfigError, LoadedConfig, Problem};

/// Reads, parses and validates a pipeline file.
pub fn load(file: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    load_str(&text, file)
}

/// Parses and validates pipeline text; `file` names it in messages and anchors relative paths.
pub fn load_str(text: &str, file: &Path) -> Result<LoadedConfig, ConfigError> {
    let config: PipelineConfig =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Invalid {
            file: file.to_path_buf(),
            problems: vec![serde_problem(&e)],
        })?;
    let loaded = LoadedConfig {
        config,
        file: file.to_path_buf(),
        source_map: SourceMap::new(text),
    };
    let problems = validate::validate(&loaded);
    if problems.is_empty() {
        Ok(loaded)
    } else {
        Err(loaded.invalid(problems))
    }
}

/// serde_yaml messages read `path: message at line L column C`; split them into our parts.
fn serde_problem(e: &serde_yaml_ng::Error) -> Problem {
    let mut message = e.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    let mut path = String::new();
    // The path prefix is present when the error is inside a nested value.
    if let Some((head, rest)) = message.split_once(": ")
        && !head.contains(' ')
        && !head.is_empty()
    {
        path = head.to_string();
        message = rest.to_string();
    }
    Problem {
        path,
        line: e.location().map(|l| l.line()),
        message,
    }
}
