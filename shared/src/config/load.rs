//! Reading a pipeline file: text → [`PipelineConfig`] → validated, or one error that lists
//! every problem with file, line and field.

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::PipelineConfig;
use super::source_map::SourceMap;
use super::validate;

/// One thing wrong with a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path such as `tables[1].window.size`; empty when serde could not tell.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// A pipeline file that cannot be used. Binaries exit with status 2 on it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read pipeline file {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render(file: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{}: {} problem{} in the pipeline file",
        file.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.located(file));
    }
    out
}

impl Problem {
    /// `file:line: field: message`, the form editors and CI logs link.
    pub fn located(&self, file: &Path) -> String {
        let mut s = file.display().to_string();
        if let Some(line) = self.line {
            s.push_str(&format!(":{line}"));
        }
        s.push_str(": ");
        if !self.path.is_empty() {
            s.push_str(&self.path);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        s
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// A parsed and validated pipeline file, with what is needed to report later problems
/// (the binaries run checks of their own) against its lines.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: PipelineConfig,
    /// The file as named by the user.
    pub file: PathBuf,
    source_map: SourceMap,
}

impl LoadedConfig {
    /// Directory that relative paths in the file are taken from.
    pub fn base_dir(&self) -> &Path {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// `path` taken relative to the pipeline file when it is not absolute.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir().join(path)
        }
    }

    /// A problem at a field path, with its line looked up.
    pub fn problem(&self, path: impl Into<String>, message: impl Into<String>) -> Problem {
        let path = path.into();
        Problem {
            line: self.source_map.line_of(&path),
            path,
            message: message.into(),
        }
    }

    /// The error for problems found after loading.
    pub fn invalid(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            problems,
        }
    }
}

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
